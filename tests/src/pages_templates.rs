//! The admin's template pages over plain HTTP, as a signed-in browser sees
//! them: registering template locations (refused templates' problems on their
//! location), publishing and restricting templates (and the task API keeping
//! to it), dry-runs with their file tree and without secrets, and the table
//! of every task; each refused to members, with CSRF and Origin checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::LOCATION;
use serde_json::{json, Value};
use stagedoor_tests::{
    cookie_client, poll_until, spawn, status_and_json, HttpFixture, Spawn, TestApp, ALL_KINDS_RULE,
};

const ORG: &str = r#"
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-b}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: admins}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: dev}
spec: {memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: boss}
spec: {memberOf: [admins]}
"#;

/// A template entity as JSON (which is YAML) with the given steps.
fn template(name: &str, title: &str, steps: Value) -> String {
    json!({
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {"name": name, "title": title},
        "spec": {
            "owner": "group:default/team-a",
            "type": "service",
            "parameters": [
                {"title": "About", "required": ["name"], "properties": {
                    "name": {"type": "string", "pattern": "^[a-z-]+$"},
                    "port": {"type": "number", "default": 8080}}},
                {"title": "More", "properties": {"flavour": {"type": "string", "default": "plain"}}}
            ],
            "secrets": {"schema": {"type": "object", "properties": {"token": {"type": "string", "minLength": 8}}}},
            "steps": steps,
            "output": {"text": [{"title": "Made", "content": "made ${{ parameters.name }} on ${{ parameters.port }}"}]}
        }
    })
    .to_string()
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// The catalog on disk: the org, a good template with a skeleton (text, a
/// nested directory, a binary file, a script), and templates to register
/// from the page: a broken one and a good one below the allowed root, and
/// one outside it.
fn fixtures(root: &Path) {
    write(&root.join("org.yaml"), ORG.as_bytes());
    let good = root.join("templates/good");
    write(
        &good.join("template.yaml"),
        template(
            "good-service",
            "Good <service>",
            json!([
                {"id": "fetch", "name": "Render", "action": "fetch:template",
                 "input": {"url": "./skeleton", "values": {"name": "${{ parameters.name }}", "port": "${{ parameters.port }}"}}},
                {"id": "say", "name": "Say", "action": "debug:log", "input": {"message": "token is ${{ secrets.token }}"}},
                {"id": "publish", "name": "Publish", "action": "publish:file", "input": {"path": "${{ parameters.name }}"}}
            ]),
        )
        .as_bytes(),
    );
    write(
        &good.join("skeleton/README.md"),
        b"# ${{ values.name }} <on> ${{ values.port }}\n",
    );
    write(
        &good.join("skeleton/src/app/main.txt"),
        b"main of ${{ values.name }}\n",
    );
    write(
        &good.join("skeleton/assets/logo.bin"),
        &[0x89, b'P', 0, 0, 7, 1],
    );
    write(&good.join("skeleton/run.sh"), b"#!/bin/sh\necho hi\n");
    write(
        &root.join("registrable/broken/template.yaml"),
        template(
            "broken-service",
            "Broken",
            json!([
                {"id": "dup", "action": "debug:log", "input": {"message": "${{ parameters.name | nofilter }}"}},
                {"id": "dup", "action": "debug:log", "input": {"message": "again"}},
                {"id": "third", "action": "no:such"}
            ]),
        )
        .as_bytes(),
    );
    write(
        &root.join("registrable/second/template.yaml"),
        template(
            "second-service",
            "Second",
            json!([{"id": "log", "action": "debug:log", "input": {"message": "hello"}}]),
        )
        .as_bytes(),
    );
    write(
        &root.join("outside/template.yaml"),
        template(
            "outside-service",
            "Outside",
            json!([{"id": "log", "action": "debug:log", "input": {"message": "hello"}}]),
        )
        .as_bytes(),
    );
    for (name, steps) in [
        (
            "quick",
            json!([{"id": "log", "action": "debug:log", "input": {"message": "quick"}}]),
        ),
        (
            "failing",
            json!([{"id": "fetch", "action": "fetch:plain:file", "input": {"url": "./missing.txt", "targetPath": "x.txt"}}]),
        ),
    ] {
        write(
            &root.join(format!("templates/{name}/template.yaml")),
            template(name, name, steps).as_bytes(),
        );
    }
}

/// The configuration: `user` signs in with the guest button, and is an
/// admin when in `group:default/admins`; `roots` is the YAML list of
/// `scaffolder.templateFiles.allowedRoots`; `extra` is more YAML.
fn config(root: &Path, user: &str, roots: &str, extra: &str) -> String {
    format!(
        "auth:\n  providers:\n    guest: {{userEntityRef: '{user}'}}\n\
         stagedoor:\n  admins: {{groups: ['group:default/admins']}}\n\
         catalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n  locations:\n\
         \x20   - {{type: file, target: '{org}'}}\n\
         \x20   - {{type: file, target: '{good}'}}\n\
         \x20   - {{type: file, target: '{quick}'}}\n\
         \x20   - {{type: file, target: '{failing}'}}\n\
         scaffolder:\n  templateFiles: {{allowedRoots: {roots}}}\n  publishFile: {{allowedRoots: ['{published}']}}\n{extra}",
        org = root.join("org.yaml").display(),
        good = root.join("templates/good/template.yaml").display(),
        quick = root.join("templates/quick/template.yaml").display(),
        failing = root.join("templates/failing/template.yaml").display(),
        published = root.join("published").display(),
    )
}

fn allowed(root: &Path) -> String {
    format!("['{}']", root.join("registrable").display())
}

/// An admin, through `group:default/admins`.
const ADMIN: &str = "user:default/boss";
/// A member of team-a.
const MEMBER: &str = "user:default/dev";

/// A scratch directory, by its real path (the server registers real paths).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let root = std::fs::canonicalize(dir.path()).expect("real path");
    (dir, root)
}

async fn start(root: &Path, user: &str, extra: &str) -> TestApp {
    fixtures(root);
    let app = spawn(Spawn {
        config: config(root, user, &allowed(root), extra),
        ..Default::default()
    })
    .await;
    app.process_due().await;
    app
}

/// Starts the server again on the same database, with another guest user.
async fn sign_in_as(app: &mut TestApp, root: &Path, user: &str) -> reqwest::Client {
    app.restart_with(&config(root, user, &allowed(root), ""))
        .await;
    guest(app).await
}

async fn guest(app: &TestApp) -> reqwest::Client {
    let b = cookie_client();
    let res = b
        .post(app.url("/login/guest"))
        .header("Origin", app.base.clone())
        .form(&[("returnTo", "/profile")])
        .send()
        .await
        .expect("guest sign-in");
    assert_eq!(res.status(), 303);
    b
}

/// An identity token for the browser's session, for API calls.
async fn identity_token(app: &TestApp, b: &reqwest::Client) -> String {
    let res = b
        .get(app.url("/api/auth/guest/refresh"))
        .header("X-Requested-With", "XMLHttpRequest")
        .send()
        .await
        .expect("refresh");
    let (status, id) = status_and_json(res).await;
    assert_eq!(status, 200, "{id}");
    id["backstageIdentity"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

async fn page(b: &reqwest::Client, url: String) -> (u16, String) {
    let res = b.get(url).send().await.expect("page");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

async fn post(
    app: &TestApp,
    b: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let res = b
        .post(app.url(path))
        .header("Origin", app.base.clone())
        .form(form)
        .send()
        .await
        .expect("post");
    let status = res.status().as_u16();
    let to = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, to, res.text().await.expect("body"))
}

/// The value of the first hidden `csrf` input.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_string()
}

/// The notice the previous action left, as text.
fn notice(html: &str) -> String {
    let notice = html.split("id=\"flash\">").nth(1).expect("a notice");
    unescape(&notice[..notice.find("</p>").expect("end")])
}

/// The page's text with the escapes askama writes undone.
fn unescape(html: &str) -> String {
    html.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// From the first `marker` to the end of its table row.
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// The row of the table `id` where `marker` first shows.
fn row_in<'a>(html: &'a str, id: &str, marker: &str) -> &'a str {
    let table = html
        .split(&format!("id=\"{id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("table {id} in {html}"));
    row(table, marker)
}

async fn templates_page(app: &TestApp, b: &reqwest::Client) -> String {
    let (status, html) = page(b, app.url("/admin/templates")).await;
    assert_eq!(status, 200, "{html}");
    html
}

#[tokio::test]
async fn members_and_strangers_are_kept_out() {
    let (_dir, root) = scratch();
    // Identities are required (as with any externalAccess token), so a
    // stranger is asked to sign in rather than let in as on an open server.
    let app = start(
        &root,
        MEMBER,
        "backend:\n  auth:\n    externalAccess:\n      - {type: static, options: {token: a-static-token-for-tests, subject: tests}}\n",
    )
    .await;
    for path in [
        "/admin/templates",
        "/admin/tasks",
        "/admin/templates/default/good-service/dry-run",
    ] {
        let (status, _) = page(&cookie_client(), app.url(path)).await;
        assert_eq!(status, 303, "{path}: signed out, to the sign-in page");
    }
    let b = guest(&app).await;
    for path in [
        "/admin/templates",
        "/admin/tasks",
        "/admin/tasks?status=failed",
        "/admin/templates/default/good-service/dry-run",
    ] {
        let (status, html) = page(&b, app.url(path)).await;
        assert_eq!(status, 403, "{path}");
        assert!(html.contains("This page is for admins."), "{path}");
    }
    // The forms refuse a member even with a good token.
    let (_, profile) = page(&b, app.url("/profile")).await;
    let token = csrf(&profile);
    let target = &root.join("registrable/second/template.yaml");
    let target = target.to_str().expect("path");
    for (path, form) in [
        (
            "/admin/templates/locations",
            vec![("csrf", token.as_str()), ("target", target)],
        ),
        (
            "/admin/templates/default/good-service/publish",
            vec![("csrf", token.as_str()), ("published", "false")],
        ),
        (
            "/admin/templates/default/good-service/groups",
            vec![("csrf", token.as_str()), ("groups", "team-b")],
        ),
        (
            "/admin/templates/default/good-service/dry-run",
            vec![("csrf", token.as_str()), ("values", "{}")],
        ),
    ] {
        let (status, _, html) = post(&app, &b, path, &form).await;
        assert_eq!(status, 403, "{path}: {html}");
    }
    let locations = app
        .server()
        .catalog
        .location_states()
        .await
        .expect("locations");
    assert!(
        !locations.iter().any(|l| l.target.contains("second")),
        "nothing was registered"
    );
    app.stop().await;
}

#[tokio::test]
async fn admins_register_template_locations_and_see_refused_templates_problems() {
    let (_dir, root) = scratch();
    let fixture = HttpFixture::start().await;
    fixture.set_body(
        "/tpl/template.yaml",
        &template(
            "url-service",
            "From a URL",
            json!([{"id": "log", "action": "debug:log", "input": {"message": "hi"}}]),
        ),
    );
    let extra = format!(
        "backend:\n  reading:\n    allow:\n      - host: '{}'\n",
        fixture.host()
    );
    let app = start(&root, ADMIN, &extra).await;
    let b = guest(&app).await;
    let html = templates_page(&app, &b).await;
    let token = csrf(&html);
    assert!(
        html.contains("href=\"/admin/templates\" aria-current=\"page\""),
        "the admin sub-navigation marks this page"
    );

    // The configured template: title, name, owner, location, no problems, a preview link.
    let good = unescape(row(&html, "data-ref=\"template:default/good-service\""));
    assert!(good.contains("Good <service>"), "{good}");
    assert!(
        good.contains("href=\"/catalog/default/group/team-a\">team-a</a>"),
        "{good}"
    );
    let origin = format!(
        "file:{}",
        &root.join("templates/good/template.yaml").display()
    );
    assert!(good.contains(&origin), "{good}");
    assert!(
        !good.contains("template-problems"),
        "a good template has no problems: {good}"
    );
    assert!(
        good.contains("badge ok\">published"),
        "new templates are published: {good}"
    );
    assert!(
        good.contains("href=\"/create/templates/default/good-service?preview=1\""),
        "{good}"
    );
    assert!(good.contains("href=\"/admin/templates/default/good-service/dry-run\""));

    // A broken template is refused; its problems show on its location.
    let broken = &root.join("registrable/broken/template.yaml");
    let (status, to, body) = post(
        &app,
        &b,
        "/admin/templates/locations",
        &[
            ("csrf", token.as_str()),
            ("target", broken.to_str().expect("path")),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(to, "/admin/templates");
    let html = templates_page(&app, &b).await;
    let flash = notice(&html);
    assert!(
        flash.starts_with(&format!(
            "Registered {} with 0 templates; it has 1 problems",
            broken.display()
        )),
        "{flash}"
    );
    let location = unescape(row_in(
        &html,
        "template-locations",
        &broken.display().to_string(),
    ));
    for message in [
        "template:default/broken-service",
        "spec.steps[1].id: step id \"dup\" is used by more than one step",
        "spec.steps[2].action: unknown action \"no:such\"",
        "spec.steps[0].input: Unknown template filter \"nofilter\"",
    ] {
        assert!(location.contains(message), "{message}: {location}");
    }
    assert!(!html.contains("data-ref=\"template:default/broken-service\""));

    // A good one from a file and one from a URL are listed with their locations.
    let second = &root.join("registrable/second/template.yaml");
    let url = fixture.url("/tpl/template.yaml");
    for target in [format!("file://{}", second.display()), url.clone()] {
        let (status, _, body) = post(
            &app,
            &b,
            "/admin/templates/locations",
            &[("csrf", token.as_str()), ("target", &target)],
        )
        .await;
        assert_eq!(status, 303, "{target}: {body}");
    }
    let html = templates_page(&app, &b).await;
    let flash = notice(&html);
    assert!(
        flash.starts_with(&format!("Registered {url} with 1 templates")),
        "{flash}"
    );
    assert!(!flash.contains("problems"), "{flash}");
    let row_second = unescape(row(&html, "data-ref=\"template:default/second-service\""));
    assert!(
        row_second.contains(&format!("file:{}", second.display())),
        "{row_second}"
    );
    let row_url = unescape(row(&html, "data-ref=\"template:default/url-service\""));
    assert!(row_url.contains(&format!("url:{url}")), "{row_url}");
    assert!(row_url.contains("From a URL"));

    // Bad input gets a page that says what is wrong, and registers nothing.
    let outside = &root.join("outside/template.yaml");
    let sneaky = &root.join("registrable/../outside/template.yaml");
    let missing = &root.join("registrable/nope.yaml");
    for (target, message) in [
        ("", "Give the URL or the file path"),
        (
            "template.yaml",
            "neither an http(s) URL nor an absolute file path",
        ),
        (
            "ftp://example.com/t.yaml",
            "neither an http(s) URL nor an absolute file path",
        ),
        (
            outside.to_str().expect("path"),
            "is not below scaffolder.templateFiles.allowedRoots",
        ),
        (sneaky.to_str().expect("path"), "without \"..\""),
        (missing.to_str().expect("path"), "cannot be read"),
        (broken.to_str().expect("path"), "already exists"),
        (
            "https://not-allowed.example/t.yaml",
            "is not allowed by backend.reading.allow",
        ),
    ] {
        let (status, _, body) = post(
            &app,
            &b,
            "/admin/templates/locations",
            &[("csrf", token.as_str()), ("target", target)],
        )
        .await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            unescape(&body).contains(message),
            "{target}: {message}: {body}"
        );
    }
    let (status, _, _) = post(
        &app,
        &b,
        "/admin/templates/locations",
        &[("csrf", "forged"), ("target", &url)],
    )
    .await;
    assert_eq!(status, 403, "a forged token is refused");
    let res = b
        .post(app.url("/admin/templates/locations"))
        .header("Origin", "https://evil.example")
        .form(&[("csrf", token.as_str()), ("target", url.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403, "another site's form is refused");

    // Unregistering takes the location and its templates away.
    let html = templates_page(&app, &b).await;
    let second_row = row_in(&html, "template-locations", &second.display().to_string());
    let action = second_row
        .split("action=\"")
        .filter_map(|s| s.split('"').next())
        .find(|a| a.ends_with("/unregister"))
        .expect("an unregister form")
        .to_string();
    let (status, _, body) = post(&app, &b, &action, &[("csrf", token.as_str())]).await;
    assert_eq!(status, 303, "{body}");
    let html = templates_page(&app, &b).await;
    assert!(!html.contains("data-ref=\"template:default/second-service\""));
    assert_eq!(notice(&html), format!("Unregistered {}", second.display()));
    let tables = html
        .split("id=\"template-locations\"")
        .nth(1)
        .expect("locations");
    assert!(!tables.contains(&second.display().to_string()), "{tables}");
    assert!(html.contains("data-ref=\"template:default/url-service\""));
    // A configured location cannot be unregistered here.
    let config_id = app
        .server()
        .catalog
        .location_states()
        .await
        .expect("locations")
        .into_iter()
        .find(|l| l.source == "config")
        .expect("a configured location")
        .id;
    let (status, _, body) = post(
        &app,
        &b,
        &format!("/admin/templates/locations/{config_id}/unregister"),
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn file_locations_need_allowed_roots() {
    let (_dir, root) = scratch();
    fixtures(&root);
    let app = spawn(Spawn {
        config: config(&root, ADMIN, "[]", ""),
        ..Default::default()
    })
    .await;
    app.process_due().await;
    let b = guest(&app).await;
    let html = templates_page(&app, &b).await;
    assert!(html.contains("Only URLs"), "the form says so");
    let token = csrf(&html);
    let target = root.join("registrable/second/template.yaml");
    let (status, _, body) = post(
        &app,
        &b,
        "/admin/templates/locations",
        &[
            ("csrf", token.as_str()),
            ("target", target.to_str().expect("path")),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("none is configured"), "{body}");
    app.stop().await;
}

/// Creates a task as the bearer of `token`.
async fn create_task(app: &TestApp, token: &str, template: &str, values: Value) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/api/scaffolder/v2/tasks"))
        .bearer_auth(token)
        .json(&json!({"templateRef": template, "values": values}))
        .send()
        .await
        .expect("create task");
    status_and_json(res).await
}

#[tokio::test]
async fn publishing_and_groups_decide_who_may_use_a_template() {
    let (_dir, root) = scratch();
    let mut app = start(&root, ADMIN, "").await;
    let b = guest(&app).await;
    let html = templates_page(&app, &b).await;
    let token = csrf(&html);
    let publish = |name: &str| format!("/admin/templates/default/{name}/publish");
    let groups = |name: &str| format!("/admin/templates/default/{name}/groups");

    // quick: unpublished; failing: only team-b; good-service: only team-a.
    let (status, _, body) = post(
        &app,
        &b,
        &publish("quick"),
        &[("csrf", token.as_str()), ("published", "false")],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let html = templates_page(&app, &b).await;
    let quick = row(&html, "data-ref=\"template:default/quick\"");
    assert!(quick.contains("badge warn\">unpublished"), "{quick}");
    assert!(
        quick.contains("class=\"small primary publish-template\""),
        "{quick}"
    );
    let (status, _, body) = post(
        &app,
        &b,
        &groups("failing"),
        &[("csrf", token.as_str()), ("groups", "team-b")],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (status, _, body) = post(
        &app,
        &b,
        &groups("good-service"),
        &[
            ("csrf", token.as_str()),
            ("groups", "group:default/team-a,\n team-a"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let html = templates_page(&app, &b).await;
    let failing = row(&html, "data-ref=\"template:default/failing\"");
    assert!(
        failing.contains("<code>group:default/team-b</code>"),
        "written in full: {failing}"
    );
    let good = row(&html, "data-ref=\"template:default/good-service\"");
    assert_eq!(
        good.matches("<li><code>group:default/team-a</code></li>")
            .count(),
        1,
        "once: {good}"
    );
    assert!(good.contains("badge ok\">published"), "{good}");

    // Refused: not a group, an unknown group, a bad value, a forged token, an unknown template.
    for (path, form, status, message) in [
        (
            groups("quick"),
            vec![("groups", "user:default/dev")],
            400,
            "is not a group",
        ),
        (
            groups("quick"),
            vec![("groups", "team-zz")],
            400,
            "There is no group group:default/team-zz in the catalog",
        ),
        (
            publish("quick"),
            vec![("published", "maybe")],
            400,
            "must be true or false",
        ),
        (
            publish("nope"),
            vec![("published", "true")],
            404,
            "Template template:default/nope not found",
        ),
    ] {
        let mut form = form;
        form.push(("csrf", token.as_str()));
        let (got, _, body) = post(&app, &b, &path, &form).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(unescape(&body).contains(message), "{path}: {body}");
    }
    let (status, _, _) = post(
        &app,
        &b,
        &publish("quick"),
        &[("csrf", "forged"), ("published", "true")],
    )
    .await;
    assert_eq!(status, 403);
    let html = templates_page(&app, &b).await;
    assert!(row(&html, "data-ref=\"template:default/quick\"").contains("unpublished"));

    // Admins may still use every template.
    let admin_token = identity_token(&app, &b).await;
    let (status, body) = create_task(
        &app,
        &admin_token,
        "template:default/quick",
        json!({"name": "a"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Ended before the restart, so that no task is left half-run.
    tasks_settle(&app, &admin_token).await;

    // dev, in team-a and not an admin, through the task API.
    let dev = sign_in_as(&mut app, &root, MEMBER).await;
    let dev_token = identity_token(&app, &dev).await;
    let (status, body) = create_task(
        &app,
        &dev_token,
        "template:default/quick",
        json!({"name": "a"}),
    )
    .await;
    assert_eq!(status, 403, "unpublished: {body}");
    let (status, body) = create_task(
        &app,
        &dev_token,
        "template:default/failing",
        json!({"name": "a"}),
    )
    .await;
    assert_eq!(status, 403, "restricted to team-b: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("may not run"),
        "{body}"
    );
    let res = app
        .client
        .get(app.url("/api/scaffolder/v2/templates/default/template/failing/parameter-schema"))
        .bearer_auth(&dev_token)
        .send()
        .await
        .expect("schema");
    assert_eq!(
        res.status(),
        404,
        "a template dev may not use is not there for dev"
    );
    let (status, body) = create_task(
        &app,
        &dev_token,
        "template:default/good-service",
        json!({"name": "a"}),
    )
    .await;
    assert_eq!(status, 201, "dev is in team-a: {body}");
    tasks_settle(&app, &dev_token).await;
    app.stop().await;
}

#[tokio::test]
async fn dry_runs_show_steps_output_and_files_but_never_secrets() {
    let (_dir, root) = scratch();
    let app = start(&root, ADMIN, "").await;
    let b = guest(&app).await;
    let path = "/admin/templates/default/good-service/dry-run";
    let (status, html) = page(&b, app.url(path)).await;
    assert_eq!(status, 200, "{html}");
    let token = csrf(&html);
    let text = unescape(&html);
    let values = text
        .split("id=\"dry-run-values\"")
        .nth(1)
        .and_then(|s| s.split_once('>'))
        .and_then(|(_, s)| s.split("</textarea>").next())
        .expect("the values field");
    let defaults: Value = serde_json::from_str(values).expect("JSON");
    assert_eq!(
        defaults,
        json!({"port": 8080, "flavour": "plain"}),
        "the schema's defaults"
    );
    assert!(html.contains("href=\"/create/templates/default/good-service?preview=1\""));

    let secret = "sup3r-s3cret-value";
    let (status, _, html) = post(
        &app,
        &b,
        path,
        &[
            ("csrf", token.as_str()),
            ("values", "{\"name\": \"pea-sorter\", \"port\": 9090}"),
            ("secrets", &format!("{{\"token\": \"{secret}\"}}")),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains(secret), "the secret is nowhere on the page");
    let text = unescape(&html);
    assert!(
        text.contains("id=\"dry-run-ok\">The dry-run finished: 4 files."),
        "{text}"
    );
    let steps = text.split("id=\"dry-run-steps\"").nth(1).expect("steps");
    let steps = &steps[..steps.find("</ol>").expect("end")];
    for (id, status) in [
        ("fetch", "completed"),
        ("say", "completed"),
        ("publish", "skipped"),
    ] {
        let at = steps.find(&format!("<code>{id}</code>")).expect(id);
        let before = &steps[..at];
        let li = &before[before.rfind("<li>").expect("li")..];
        assert!(li.contains(&format!(">{status}</span>")), "{id}: {li}");
    }
    assert!(text.contains("made pea-sorter on 9090"), "the output");
    let log = text.split("id=\"dry-run-log\"").nth(1).expect("log");
    assert!(
        log.contains("token is ***"),
        "secrets are masked in the log: {log}"
    );
    assert!(
        log.contains("publish:file does not support dry-run"),
        "{log}"
    );

    // The files as a tree: directories nest, text shows, binary files are named.
    let files = text.split("id=\"dry-run-files\"").nth(1).expect("files");
    let files = &files[..files.find("id=\"dry-run-log\"").expect("end")];
    assert!(files.contains("data-path=\"README.md\""), "{files}");
    assert!(
        files.contains("# pea-sorter <on> 9090"),
        "rendered and escaped: {files}"
    );
    assert!(
        html.contains("# pea-sorter &#60;on&#62; 9090")
            || html.contains("# pea-sorter &lt;on&gt; 9090")
    );
    let src = files.find("<code>src/</code>").expect("src directory");
    let app_dir = files.find("<code>app/</code>").expect("src/app directory");
    let main = files
        .find("data-path=\"src/app/main.txt\"")
        .expect("main.txt");
    assert!(src < app_dir && app_dir < main, "nested: {files}");
    let between = &files[src..main];
    assert_eq!(
        between.matches("<details class=\"tree-dir\"").count(),
        1,
        "app opens inside src"
    );
    assert!(files.contains("main of pea-sorter"));
    let logo = files
        .split("data-path=\"assets/logo.bin\"")
        .nth(1)
        .expect("logo");
    assert!(
        logo[..logo.find("</details>").expect("end")].contains("binary, 6 bytes"),
        "{logo}"
    );
    assert!(files.contains("data-path=\"run.sh\""));
    assert_eq!(
        files.matches("<details class=\"tree-dir\"").count(),
        files.matches("</div></details>").count(),
        "every directory closes"
    );
    assert!(
        !&root.join("published").exists(),
        "a dry-run publishes nothing"
    );

    // Refused input: the form comes back with what is wrong, still without the secret.
    for (values, secrets, message) in [
        ("{\"name\": ", "", "The values are not valid JSON"),
        ("[1, 2]", "", "The values must be a JSON object"),
        ("{\"name\": \"Not Valid\"}", "", "instance.name"),
        (
            "{\"name\": \"ok\"}",
            "{\"token\": sup3r-s3cret-value}",
            "The secrets are not valid JSON",
        ),
        (
            "{\"name\": \"ok\"}",
            "{\"token\": \"s3cr\"}",
            "secrets.token",
        ),
    ] {
        let (status, _, html) = post(
            &app,
            &b,
            path,
            &[
                ("csrf", token.as_str()),
                ("values", values),
                ("secrets", secrets),
            ],
        )
        .await;
        assert_eq!(status, 400, "{values} {secrets}: {html}");
        let text = unescape(&html);
        assert!(text.contains("id=\"dry-run-refused\""), "{html}");
        assert!(text.contains(message), "{message}: {text}");
        assert!(text.contains(values), "the values are kept");
        assert!(
            !html.contains("sup3r-s3cret") && !text.contains("\"s3cr\""),
            "no secret: {text}"
        );
    }
    let (status, _, _) = post(&app, &b, path, &[("csrf", "forged"), ("values", "{}")]).await;
    assert_eq!(status, 403);
    let (status, _) = page(&b, app.url("/admin/templates/default/nope/dry-run")).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// Waits until no task is open or running.
async fn tasks_settle(app: &TestApp, token: &str) {
    poll_until("tasks to end", Duration::from_secs(60), || async {
        let res = app
            .client
            .get(app.url("/api/scaffolder/v2/tasks?limit=1000"))
            .bearer_auth(token)
            .send()
            .await
            .expect("tasks");
        let (_, body) = status_and_json(res).await;
        let busy = body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| matches!(t["status"].as_str(), Some("open" | "processing")));
        (!busy).then_some(())
    })
    .await;
}

#[tokio::test]
async fn admins_see_every_users_tasks_by_status_and_page() {
    let (_dir, root) = scratch();
    let mut app = start(&root, MEMBER, "").await;
    // dev runs one task that fails, then 26 quick ones.
    let dev = guest(&app).await;
    let dev_token = identity_token(&app, &dev).await;
    let (status, body) = create_task(
        &app,
        &dev_token,
        "template:default/failing",
        json!({"name": "a"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let failed_id = body["id"].as_str().expect("id").to_string();
    // Ended before the others start, so that it is strictly the oldest.
    tasks_settle(&app, &dev_token).await;
    for i in 0..26 {
        let (status, body) = create_task(
            &app,
            &dev_token,
            "template:default/quick",
            json!({"name": "a"}),
        )
        .await;
        assert_eq!(status, 201, "{i}: {body}");
    }
    tasks_settle(&app, &dev_token).await;
    let (status, _) = page(&dev, app.url("/admin/tasks")).await;
    assert_eq!(status, 403, "dev is not an admin");

    // boss, an admin, sees them all.
    let boss = sign_in_as(&mut app, &root, ADMIN).await;
    let (status, html) = page(&boss, app.url("/admin/tasks")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/admin/tasks\" aria-current=\"page\""));
    let text = unescape(&html);
    assert!(text.contains("Tasks 1–25 of 27."), "{text}");
    assert_eq!(html.matches("class=\"task-row\"").count(), 25);
    assert!(html.contains("href=\"/catalog/default/user/dev\">user:default/dev</a>"));
    assert!(html.contains("href=\"/catalog/default/template/quick\">template:default/quick</a>"));
    let first = row(&html, "class=\"task-row\"");
    assert!(first.contains(">completed</span>"), "{first}");
    assert!(first.contains("href=\"/create/tasks/"), "{first}");
    assert!(first.contains("UTC"), "{first}");
    let next = html
        .split("id=\"tasks-next\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("a next page")
        .replace("&amp;", "&");
    assert_eq!(next, "/admin/tasks?page=2");

    let (status, html) = page(&boss, app.url(&next)).await;
    assert_eq!(status, 200);
    assert!(unescape(&html).contains("Tasks 26–27 of 27."), "{html}");
    assert_eq!(html.matches("class=\"task-row\"").count(), 2);
    // Newest first: the failed task, created first, comes last.
    let rows: Vec<&str> = html.split("class=\"task-row\"").skip(1).collect();
    let last = rows.last().expect("rows");
    assert!(
        last.contains(&format!("href=\"/create/tasks/{failed_id}\"")),
        "{last}"
    );
    assert!(last.contains(">failed</span>"), "{last}");
    assert!(html.contains("id=\"tasks-prev\"") && !html.contains("id=\"tasks-next\""));

    let (status, html) = page(&boss, app.url("/admin/tasks?status=failed")).await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("class=\"task-row\"").count(), 1);
    assert!(html.contains(&format!("/create/tasks/{failed_id}")));
    assert!(
        html.contains("<option value=\"failed\" selected>"),
        "the filter shows its choice"
    );
    let (_, html) = page(&boss, app.url("/admin/tasks?status=completed&page=2")).await;
    assert_eq!(
        html.matches("class=\"task-row\" data-status=\"completed\"")
            .count(),
        1
    );
    let (_, html) = page(&boss, app.url("/admin/tasks?status=cancelled")).await;
    assert!(html.contains("No tasks with status cancelled."));
    let (status, html) = page(&boss, app.url("/admin/tasks?page=9")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No tasks on this page; there are 27."),
        "{html}"
    );
    assert!(
        html.contains("href=\"/admin/tasks?page=2\" rel=\"prev\""),
        "back to the last page"
    );

    for (query, message) in [
        ("status=done", "\"done\" is not a task status"),
        ("page=0", "\"0\" is not a page number"),
        ("page=two", "\"two\" is not a page number"),
    ] {
        let (status, html) = page(&boss, app.url(&format!("/admin/tasks?{query}"))).await;
        assert_eq!(status, 400, "{query}");
        assert!(unescape(&html).contains(message), "{query}: {html}");
    }
    app.stop().await;
}
