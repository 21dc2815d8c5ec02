//! The scaffolder's pages over plain HTTP: the template gallery and its
//! filters, the form with every kind of field, inline errors from the server,
//! CSRF, creating a task and its page (steps, log, output, safe markdown),
//! cancel and retry, and who may see which task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use serde_json::Value;
use stagedoor_tests::{
    cookie_client, poll_until, spawn, HttpFixture, Route, Spawn, TestApp, ALL_KINDS_RULE,
};

const WAIT: Duration = Duration::from_secs(30);

const ORG: &str = r#"
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a, title: Team A}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: other-team}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: platform-team}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: shop}
spec: {owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: dev}
spec: {memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: ann}
spec: {memberOf: [other-team]}
"#;

/// A template with one field of each kind, and output with links and markdown.
const FIELDS: &str = r#"
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata:
  name: fields
  title: Every field
  description: One field of each kind
  tags: [testing]
spec:
  owner: group:default/team-a
  type: service
  parameters:
    - title: Basics
      required: [name]
      properties:
        name: {title: Name, type: string, description: A lowercase name, pattern: '^[a-z]+$', 'ui:autofocus': true, 'ui:help': Letters only}
        summary: {title: Summary, type: string, 'ui:widget': textarea, default: A summary}
        port: {title: Port, type: number, default: 8080, minimum: 1024}
        replicas: {title: Replicas, type: integer}
        public: {title: Public, type: boolean}
        language: {title: Language, type: string, enum: [go, rust], enumNames: [Go lang, Rust lang]}
        features: {title: Features, type: array, uniqueItems: true, items: {type: string, enum: [metrics, tracing]}, 'ui:widget': checkboxes}
        hosts: {title: Hosts, type: array, items: {type: string}}
    - title: Where
      required: [owner]
      properties:
        owner: {title: Owner, type: string, 'ui:field': OwnerPicker, 'ui:options': {catalogFilter: {kind: Group}}}
        system: {title: System, type: string, 'ui:field': EntityPicker, 'ui:options': {allowedKinds: [System]}}
        component: {title: Component name, type: string, 'ui:field': EntityNamePicker}
        repoUrl: {title: Repository, type: string, 'ui:field': RepoUrlPicker, 'ui:options': {allowedHosts: [github.com, gitlab.com], allowedOwners: [acme]}}
        token: {title: Token, type: string, 'ui:field': Secret}
  steps:
    - id: hello
      name: Say hello
      action: debug:log
      input: {message: 'Hello ${{ parameters.name }} on ${{ parameters.port }}'}
    - id: second
      name: Second step
      action: debug:log
      input: {message: 'the token is ${{ secrets.token }}'}
  output:
    links:
      - title: The owner
        entityRef: ${{ parameters.owner }}
      - title: Docs
        url: https://example.com/docs
      - title: Sneaky
        url: 'javascript:alert(1)'
    text:
      - title: Notes
        content: "**${{ parameters.name }}** is ready <script>alert('x')</script> [bad](javascript:alert(2))"
"#;

fn simple_template(name: &str, title: &str) -> String {
    format!(
        "apiVersion: scaffolder.backstage.io/v1beta3\nkind: Template\nmetadata: {{name: {name}, title: {title}}}\n\
         spec:\n  owner: group:default/other-team\n  type: service\n  parameters: []\n  steps:\n    - {{id: one, action: debug:log, input: {{message: hi}}}}\n"
    )
}

/// A template whose second step waits at a gated URL, for cancel and retry.
fn gated_template(fx: &HttpFixture) -> String {
    format!(
        "apiVersion: scaffolder.backstage.io/v1beta3\nkind: Template\nmetadata: {{name: gated, title: Gated}}\n\
         spec:\n  owner: group:default/team-a\n  type: service\n  parameters: []\n  steps:\n\
         \x20   - {{id: first, name: First, action: debug:log, input: {{message: first step ran}}}}\n\
         \x20   - {{id: slow, name: Slow, action: 'fetch:plain:file', input: {{url: '{}', targetPath: slow.txt}}}}\n",
        fx.url("/slow.txt")
    )
}

struct Site {
    app: TestApp,
    catalog: tempfile::TempDir,
}

impl Site {
    /// A portal whose guest is `user`; `reading` allows one more host.
    async fn start(user: &str, reading: Option<&str>, gated: Option<&HttpFixture>) -> Site {
        let catalog = tempfile::tempdir().expect("temp dir");
        let dir = catalog.path();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/demo/catalog/templates");
        copy_tree(&demo, &dir.join("templates"));
        std::fs::write(dir.join("org.yaml"), ORG).expect("org");
        std::fs::write(dir.join("fields.yaml"), FIELDS).expect("fields");
        std::fs::write(
            dir.join("hidden.yaml"),
            simple_template("hidden-one", "Hidden one"),
        )
        .expect("hidden");
        std::fs::write(
            dir.join("restricted.yaml"),
            simple_template("restricted", "Restricted"),
        )
        .expect("restricted");
        let mut files = vec![
            "org.yaml".to_string(),
            "fields.yaml".into(),
            "hidden.yaml".into(),
            "restricted.yaml".into(),
            "templates/service/template.yaml".into(),
        ];
        if let Some(fx) = gated {
            std::fs::write(dir.join("gated.yaml"), gated_template(fx)).expect("gated");
            files.push("gated.yaml".into());
        }
        let locations: String = files
            .iter()
            .map(|f| {
                format!(
                    "    - {{type: file, target: '{}'}}\n",
                    dir.join(f).display()
                )
            })
            .collect();
        let reading = reading
            .map(|h| format!("backend:\n  reading:\n    allow:\n      - host: '{h}'\n"))
            .unwrap_or_default();
        let app = spawn(Spawn {
            config: site_config(user, &locations, &reading, dir),
            ..Default::default()
        })
        .await;
        app.process_due().await;
        let site = Site { app, catalog };
        site.curate("template:default/hidden-one", false, &[]).await;
        site.curate(
            "template:default/restricted",
            true,
            &["group:default/other-team"],
        )
        .await;
        site
    }

    /// Sets an admin's curation of a template, as the admin pages do.
    async fn curate(&self, template: &str, published: bool, groups: &[&str]) {
        stagedoor::scaffolder::store::put_template_setting(
            &self.app.server().catalog.db.conn,
            stagedoor::scaffolder::store::templates::Model {
                entity_ref: template.to_string(),
                published,
                allowed_groups: serde_json::to_string(groups).expect("json"),
                updated_at: 0,
                updated_by: None,
            },
        )
        .await
        .expect("curation stored");
    }

    async fn sign_in(&self) -> reqwest::Client {
        let b = cookie_client();
        let res = b
            .post(self.app.url("/login/guest"))
            .header("Origin", &self.app.base)
            .form(&[("returnTo", "/")])
            .send()
            .await
            .expect("guest sign-in");
        assert_eq!(res.status(), 303, "guest sign-in");
        b
    }

    async fn page(&self, b: &reqwest::Client, path: &str) -> (u16, String) {
        let res = b.get(self.app.url(path)).send().await.expect("page");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    async fn ok_page(&self, b: &reqwest::Client, path: &str) -> String {
        let (status, body) = self.page(b, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Posts a form from our own origin; returns status, Location and body.
    async fn post(
        &self,
        b: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, String) {
        let res = b
            .post(self.app.url(path))
            .header("Origin", &self.app.base)
            .form(fields)
            .send()
            .await
            .expect("post");
        let status = res.status().as_u16();
        let location = location(res.headers());
        (status, location, res.text().await.unwrap_or_default())
    }

    /// Waits until the task page shows the task ended with `status`.
    async fn task_ends(&self, b: &reqwest::Client, href: &str, status: &str) -> String {
        poll_until(&format!("{href} shows {status}"), WAIT, || async {
            let (code, html) = self.page(b, href).await;
            assert_eq!(code, 200, "{html}");
            html.contains(&format!(
                "task-status\" id=\"task-status\" role=\"status\">{status}<"
            ))
            .then_some(html)
        })
        .await
    }
}

fn site_config(user: &str, locations: &str, reading: &str, dir: &Path) -> String {
    format!(
        "{reading}auth:\n  session: {{secret: 'a-session-secret-of-at-least-32-characters'}}\n  providers:\n    guest: {{userEntityRef: '{user}'}}\n\
         stagedoor:\n  admins: {{groups: ['user:default/boss']}}\n\
         catalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n  locations:\n{locations}\
         scaffolder:\n  publishFile:\n    allowedRoots: ['{}']\n",
        dir.join("published").display()
    )
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn location(h: &HeaderMap) -> String {
    h.get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The value of the first hidden `csrf` input.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_string()
}

/// The gallery's template refs, in order.
fn cards(html: &str) -> Vec<String> {
    html.split("class=\"card template-card\" data-ref=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The HTML of one field's wrapper.
fn field<'h>(html: &'h str, name: &str) -> &'h str {
    let start = html
        .find(&format!("data-field=\"{name}\""))
        .unwrap_or_else(|| panic!("no field {name}"));
    let rest = &html[start..];
    let end = rest[1..]
        .find("data-field=\"")
        .map(|e| e + 1)
        .unwrap_or(rest.len());
    &rest[..end]
}

/// A good answer for every field of the `fields` template.
fn good_values(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("p.name", "widget".into()),
        ("p.summary", "Makes widgets".into()),
        ("p.port", "9090".into()),
        ("p.replicas", "2".into()),
        ("p.public", "true".into()),
        ("p.language", "rust".into()),
        ("p.features", "metrics".into()),
        ("p.features", "tracing".into()),
        ("p.hosts", "a.example\nb.example".into()),
        ("p.owner", "group:default/team-a".into()),
        ("p.system", "system:default/shop".into()),
        ("p.component", "widget-svc".into()),
        ("p.repoUrl#host", "github.com".into()),
        ("p.repoUrl#owner", "acme".into()),
        ("p.repoUrl#repo", "widget".into()),
        ("p.token", token.into()),
    ]
}

fn with_csrf<'a>(csrf: &'a str, values: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![("csrf", csrf)];
    out.extend(values.iter().map(|(k, v)| (*k, v.as_str())));
    out
}

#[tokio::test]
async fn the_gallery_lists_usable_templates_and_filters_them() {
    let site = Site::start("user:default/dev", None, None).await;
    let (status, _) = site.page(&cookie_client(), "/create").await;
    assert_eq!(status, 303, "signed out, the gallery asks to sign in");
    let b = site.sign_in().await;
    let html = site.ok_page(&b, "/create").await;
    assert!(
        html.contains("href=\"/create\" aria-current=\"page\""),
        "the Create nav entry"
    );
    let all = cards(&html);
    assert_eq!(
        all,
        [
            "template:default/fields",
            "template:default/kestrel-service"
        ],
        "unpublished and restricted templates are not offered"
    );
    assert!(html.contains("One field of each kind"));
    assert!(
        html.contains("href=\"/create/templates/default/fields\""),
        "a Choose link"
    );
    assert!(
        html.contains("href=\"/catalog/default/group/team-a\""),
        "the owner links to the catalog"
    );

    let html = site.ok_page(&b, "/create?q=KESTREL").await;
    assert_eq!(
        cards(&html),
        ["template:default/kestrel-service"],
        "search is case-blind"
    );
    let html = site.ok_page(&b, "/create?q=each+kind").await;
    assert_eq!(
        cards(&html),
        ["template:default/fields"],
        "search covers descriptions"
    );
    let html = site.ok_page(&b, "/create?tag=testing").await;
    assert_eq!(cards(&html), ["template:default/fields"]);
    assert!(
        html.contains("<option value=\"testing\" selected>"),
        "{html}"
    );
    let html = site
        .ok_page(&b, "/create?owner=group%3Adefault%2Fplatform-team")
        .await;
    assert_eq!(cards(&html), ["template:default/kestrel-service"]);
    let html = site.ok_page(&b, "/create?q=nothing-like-this").await;
    assert!(cards(&html).is_empty());
    assert!(html.contains("No template matches"));

    // A member of the allowed group sees the restricted template.
    let mut app = site.app;
    app.restart_with(&site_config(
        "user:default/ann",
        &format!(
            "    - {{type: file, target: '{}'}}\n    - {{type: file, target: '{}'}}\n",
            site.catalog.path().join("org.yaml").display(),
            site.catalog.path().join("restricted.yaml").display()
        ),
        "",
        site.catalog.path(),
    ))
    .await;
    app.process_due().await;
    let site = Site {
        app,
        catalog: site.catalog,
    };
    let ann = site.sign_in().await;
    let html = site.ok_page(&ann, "/create").await;
    assert!(
        cards(&html).contains(&"template:default/restricted".to_string()),
        "{:?}",
        cards(&html)
    );
    site.app.stop().await;
}

#[tokio::test]
async fn the_form_renders_every_kind_of_field() {
    let site = Site::start("user:default/dev", None, None).await;
    let b = site.sign_in().await;
    let html = site.ok_page(&b, "/create/templates/default/fields").await;
    assert!(html.contains("<legend class=\"page-title\">Basics</legend>"));
    assert!(html.contains("<legend class=\"page-title\">Where</legend>"));
    assert!(html.contains(" novalidate"), "the server does the checking");
    assert!(html.contains("src=\"/static/js/create.js\" nonce=\""));

    let name = field(&html, "p.name");
    assert!(name.contains("type=\"text\""), "{name}");
    assert!(name.contains(" required aria-required=\"true\""), "{name}");
    assert!(name.contains(" autofocus"), "{name}");
    assert!(
        name.contains("A lowercase name") && name.contains("Letters only"),
        "description and help: {name}"
    );
    assert!(
        name.contains("aria-describedby=\"f-0-0-desc f-0-0-help\""),
        "{name}"
    );
    assert!(
        !name.contains("pattern="),
        "patterns are checked by the server: {name}"
    );

    let summary = field(&html, "p.summary");
    assert!(
        summary.contains("<textarea") && summary.contains(">A summary</textarea>"),
        "{summary}"
    );
    let port = field(&html, "p.port");
    assert!(
        port.contains("type=\"number\"") && port.contains("value=\"8080\""),
        "{port}"
    );
    assert!(field(&html, "p.replicas").contains("step=\"1\""));
    assert!(field(&html, "p.public").contains("type=\"checkbox\""));
    let language = field(&html, "p.language");
    assert!(
        language.contains("<option value=\"rust\">Rust lang</option>"),
        "{language}"
    );
    let features = field(&html, "p.features");
    assert_eq!(
        features.matches("type=\"checkbox\"").count(),
        2,
        "{features}"
    );
    assert!(field(&html, "p.hosts").contains("One per line"));
    let token = field(&html, "p.token");
    assert!(
        token.contains("type=\"password\"") && !token.contains("value="),
        "{token}"
    );
    let owner = field(&html, "p.owner");
    assert!(
        owner.contains("data-picker=\"[&#34;kind=Group&#34;]\""),
        "{owner}"
    );
    assert!(
        owner.contains("<option value=\"group:default/team-a\">Team A (Group)</option>"),
        "the catalog's groups are suggested: {owner}"
    );
    assert!(!owner.contains("system:default/shop"), "{owner}");
    let system = field(&html, "p.system");
    assert!(
        system.contains("<option value=\"system:default/shop\">"),
        "{system}"
    );
    assert!(field(&html, "p.component").contains("data-kind=\"entity-name\""));
    let repo = field(&html, "p.repoUrl");
    assert!(repo.contains("name=\"p.repoUrl#host\""), "{repo}");
    assert!(
        repo.contains("<option value=\"gitlab.com\">gitlab.com</option>"),
        "{repo}"
    );
    assert!(
        repo.contains("<option value=\"acme\">acme</option>"),
        "{repo}"
    );
    assert!(repo.contains("name=\"p.repoUrl#repo\""), "{repo}");

    // Unpublished: not there for people; a preview is for admins only.
    let (status, html) = site.page(&b, "/create/templates/default/hidden-one").await;
    assert_eq!(status, 404, "{html}");
    let (status, _) = site
        .page(&b, "/create/templates/default/fields?preview=1")
        .await;
    assert_eq!(status, 403);
    let (status, _) = site.page(&b, "/create/templates/default/no-such").await;
    assert_eq!(status, 404);
    site.app.stop().await;
}

#[tokio::test]
async fn admins_preview_any_template_with_create_disabled() {
    let site = Site::start("user:default/boss", None, None).await;
    let b = site.sign_in().await;
    let html = site
        .ok_page(&b, "/create/templates/default/hidden-one?preview=1")
        .await;
    assert!(html.contains("id=\"preview-notice\""), "{html}");
    assert!(html.contains("not published"), "{html}");
    assert!(html.contains("id=\"create-task\" disabled"), "{html}");
    let html = site
        .ok_page(&b, "/create/templates/default/fields?preview=1")
        .await;
    assert!(html.contains("id=\"create-task\" disabled"));
    let html = site.ok_page(&b, "/create").await;
    assert!(
        !cards(&html).contains(&"template:default/hidden-one".to_string()),
        "the gallery shows published templates only, admins too"
    );
    site.app.stop().await;
}

#[tokio::test]
async fn bad_values_come_back_inline_and_forms_need_their_token() {
    let site = Site::start("user:default/dev", None, None).await;
    let b = site.sign_in().await;
    let path = "/create/templates/default/fields";
    let html = site.ok_page(&b, path).await;
    let token = csrf(&html);
    let secret = "tok-Sup3r-secret";
    let mut values = good_values(secret);
    values[0].1 = "Bad Name".into();
    values[2].1 = "80".into();

    // Without the token, or from elsewhere: refused, nothing created.
    let (status, _, body) = site.post(&b, path, &with_csrf("wrong", &values)).await;
    assert_eq!(status, 403, "{body}");
    let res = b
        .post(site.app.url(path))
        .header("Origin", "https://evil.example")
        .form(&with_csrf(&token, &values))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    let (status, _, body) = site
        .post(&cookie_client(), path, &with_csrf(&token, &values))
        .await;
    assert_eq!(status, 303, "signed out: sign in first: {body}");

    let (status, _, html) = site.post(&b, path, &with_csrf(&token, &values)).await;
    assert_eq!(status, 422, "{html}");
    let name = field(&html, "p.name");
    assert!(name.contains("aria-invalid=\"true\""), "{name}");
    assert!(
        name.contains("aria-describedby=\"f-0-0-desc f-0-0-help f-0-0-error\""),
        "{name}"
    );
    assert!(name.contains("does not match"), "{name}");
    assert!(
        name.contains("value=\"Bad Name\""),
        "the value is kept: {name}"
    );
    assert!(
        field(&html, "p.port").contains("1024"),
        "the second problem too"
    );
    assert!(!field(&html, "p.summary").contains("aria-invalid"));
    assert!(field(&html, "p.summary").contains(">Makes widgets</textarea>"));
    assert!(field(&html, "p.language").contains("<option value=\"rust\" selected>"));
    assert!(field(&html, "p.repoUrl").contains("<option value=\"acme\" selected>"));
    assert!(!html.contains(secret), "a secret is never sent back");
    assert!(field(&html, "p.token").contains("enter it again"));
    let list = site.ok_page(&b, "/create/tasks").await;
    assert!(list.contains("id=\"no-tasks\""), "nothing was created");

    // A repo owner outside the allow-list is the picker's problem.
    let mut values = good_values(secret);
    values[13].1 = "evil".into();
    let (status, _, html) = site.post(&b, path, &with_csrf(&token, &values)).await;
    assert_eq!(status, 422);
    let repo = field(&html, "p.repoUrl");
    assert!(
        repo.contains("owner &#34;evil&#34; is not allowed"),
        "{repo}"
    );

    // The wizard's check of one page.
    let validate = format!("{path}/validate");
    let res = b
        .post(site.app.url(&validate))
        .header("Origin", &site.app.base)
        .form(&[
            ("csrf", token.as_str()),
            ("page", "0"),
            ("p.name", "Nope 1"),
            ("p.port", "x"),
        ])
        .send()
        .await
        .expect("validate");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["p.name", "p.port"], "{body}");
    let res = b
        .post(site.app.url(&validate))
        .header("Origin", &site.app.base)
        .form(&[("csrf", token.as_str()), ("page", "1")])
        .send()
        .await
        .expect("validate");
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["field"], "p.owner",
        "only page two is checked: {body}"
    );
    assert_eq!(body["errors"][0]["message"], "This is required.");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    let res = b
        .post(site.app.url(&validate))
        .header("Origin", &site.app.base)
        .form(&[("csrf", token.as_str()), ("page", "0"), ("p.name", "fine")])
        .send()
        .await
        .expect("validate");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["errors"], serde_json::json!([]), "{body}");
    let res = b
        .post(site.app.url(&validate))
        .header("Origin", &site.app.base)
        .form(&[("csrf", "wrong"), ("page", "0")])
        .send()
        .await
        .expect("validate");
    assert_eq!(res.status(), 403);
    let res = b
        .post(site.app.url(&validate))
        .header("Origin", &site.app.base)
        .form(&[("csrf", token.as_str()), ("page", "7")])
        .send()
        .await
        .expect("validate");
    assert_eq!(res.status(), 400);
    site.app.stop().await;
}

#[tokio::test]
async fn creating_goes_to_the_task_page_with_steps_and_safe_output() {
    let site = Site::start("user:default/dev", None, None).await;
    let b = site.sign_in().await;
    let path = "/create/templates/default/fields";
    let token = csrf(&site.ok_page(&b, path).await);
    let secret = "tok-Sup3r-secret";
    let values = good_values(secret);
    let (status, href, body) = site.post(&b, path, &with_csrf(&token, &values)).await;
    assert_eq!(status, 303, "{body}");
    assert!(href.starts_with("/create/tasks/"), "{href}");
    let id = href.trim_start_matches("/create/tasks/").to_string();

    let html = site.task_ends(&b, &href, "completed").await;
    assert!(
        html.contains("<span class=\"step-name\">Say hello</span>"),
        "{html}"
    );
    assert!(html.contains("<span class=\"step-name\">Second step</span>"));
    assert_eq!(
        html.matches("step-status\">done</span>").count(),
        2,
        "{html}"
    );
    assert!(
        html.contains("Hello widget on 9090"),
        "typed values reach the steps: {html}"
    );
    assert!(!html.contains(secret), "secrets stay out of the page");
    assert!(
        html.contains("the token is ***"),
        "the log line is redacted: {html}"
    );
    assert!(
        html.contains("href=\"/catalog/default/group/team-a\""),
        "an entityRef links to the catalog"
    );
    assert!(html.contains(">The owner</a>"));
    assert!(html.contains("href=\"https://example.com/docs\""));
    assert!(
        html.contains("<span>Sneaky</span>"),
        "an unsafe link is shown without its target"
    );
    assert!(!html.contains("javascript:"), "{html}");
    assert!(
        html.contains("<strong>widget</strong>"),
        "markdown is rendered"
    );
    assert!(!html.contains("<script>alert"), "raw HTML is never a tag");
    assert!(html.contains("&lt;script&gt;alert"), "{html}");
    assert!(
        !html.contains("data-stream="),
        "an ended task is not followed live"
    );
    assert!(!html.contains("id=\"cancel-task\"") && !html.contains("id=\"retry-task\""));

    // The task holds typed values, and the secret only as its mask.
    let task: Value = b
        .get(site.app.url(&format!("/api/scaffolder/v2/tasks/{id}")))
        .send()
        .await
        .expect("task")
        .json()
        .await
        .expect("json");
    let p = &task["spec"]["parameters"];
    assert_eq!(p["port"], 9090);
    assert_eq!(p["public"], true);
    assert_eq!(p["features"], serde_json::json!(["metrics", "tracing"]));
    assert_eq!(p["hosts"], serde_json::json!(["a.example", "b.example"]));
    assert_eq!(p["repoUrl"], "github.com?owner=acme&repo=widget");
    assert_eq!(p["token"], "*".repeat(secret.len()));
    assert_eq!(task["createdBy"], "user:default/dev");

    let list = site.ok_page(&b, "/create/tasks").await;
    assert!(list.contains(&format!("data-task=\"{id}\"")), "{list}");
    assert!(list.contains("<td>Every field</td>"), "{list}");
    let (status, _, body) = site
        .post(&b, &format!("{href}/retry"), &[("csrf", token.as_str())])
        .await;
    assert_eq!(status, 400, "a completed task is not retried: {body}");
    site.app.stop().await;
}

#[tokio::test]
async fn cancel_and_retry_from_the_task_page() {
    let fx = HttpFixture::start().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    fx.set(
        "/slow.txt",
        Route::Gated(gate.clone(), Arc::new(b"slow".to_vec())),
    );
    let site = Site::start("user:default/dev", Some(&fx.host()), Some(&fx)).await;
    let b = site.sign_in().await;
    let path = "/create/templates/default/gated";
    let token = csrf(&site.ok_page(&b, path).await);
    let (status, href, _) = site.post(&b, path, &[("csrf", token.as_str())]).await;
    assert_eq!(status, 303);
    let html = poll_until("the slow step runs", WAIT, || async {
        let html = site.ok_page(&b, &href).await;
        html.contains("data-step=\"slow\" data-status=\"processing\"")
            .then_some(html)
    })
    .await;
    assert!(
        html.contains("data-stream=\"/api/scaffolder/v2/tasks/"),
        "a running task is followed live"
    );
    assert!(html.contains("id=\"cancel-task\""));
    assert!(html.contains("first step ran"));

    // The event stream the page follows answers the session's cookie.
    let last = html
        .split("data-last=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("data-last");
    let id = href.trim_start_matches("/create/tasks/");
    let res = b
        .get(site.app.url(&format!(
            "/api/scaffolder/v2/tasks/{id}/eventstream?after={last}"
        )))
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/event-stream"));
    drop(res);

    let (status, _, _) = site
        .post(&b, &format!("{href}/cancel"), &[("csrf", "wrong")])
        .await;
    assert_eq!(status, 403, "cancel needs the token");
    let (status, to, _) = site
        .post(&b, &format!("{href}/cancel"), &[("csrf", token.as_str())])
        .await;
    assert_eq!(status, 303);
    assert_eq!(to, href);
    let html = site.task_ends(&b, &href, "cancelled").await;
    assert!(html.contains("id=\"retry-task\""), "{html}");
    fx.set("/slow.txt", Route::Body(Arc::new(b"slow".to_vec())));
    let (status, to, _) = site
        .post(&b, &format!("{href}/retry"), &[("csrf", token.as_str())])
        .await;
    assert_eq!(status, 303);
    assert_eq!(to, href);
    let html = site.task_ends(&b, &href, "completed").await;
    assert_eq!(
        html.matches("first step ran").count(),
        1,
        "the finished step did not run again"
    );
    gate.notify_waiters();
    site.app.stop().await;
}

#[tokio::test]
async fn people_see_only_their_own_tasks() {
    let site = Site::start("user:default/dev", None, None).await;
    let dev = site.sign_in().await;
    let path = "/create/templates/default/kestrel-service";
    let token = csrf(&site.ok_page(&dev, path).await);
    let (status, href, body) = site
        .post(
            &dev,
            path,
            &[
                ("csrf", token.as_str()),
                ("p.name", "mine"),
                ("p.owner", "group:default/team-a"),
                ("p.language", "go"),
                ("p.port", "8080"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    site.task_ends(&dev, &href, "completed").await;

    // Another person, on the same database (sessions outlive the restart).
    let mut app = site.app;
    let catalog = site.catalog;
    app.restart_with(&site_config(
        "user:default/ann",
        &format!(
            "    - {{type: file, target: '{}'}}\n    - {{type: file, target: '{}'}}\n",
            catalog.path().join("org.yaml").display(),
            catalog
                .path()
                .join("templates/service/template.yaml")
                .display()
        ),
        "",
        catalog.path(),
    ))
    .await;
    let site = Site { app, catalog };
    let ann = site.sign_in().await;
    let list = site.ok_page(&ann, "/create/tasks").await;
    assert!(list.contains("id=\"no-tasks\""), "{list}");
    let (status, html) = site.page(&ann, &href).await;
    assert_eq!(
        status, 404,
        "another person's task does not exist for them: {html}"
    );
    let ann_token = csrf(&site.ok_page(&ann, "/create/tasks").await);
    let (status, _, _) = site
        .post(
            &ann,
            &format!("{href}/cancel"),
            &[("csrf", ann_token.as_str())],
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = site
        .post(
            &ann,
            &format!("{href}/retry"),
            &[("csrf", ann_token.as_str())],
        )
        .await;
    assert_eq!(status, 404);

    let list = site.ok_page(&dev, "/create/tasks").await;
    assert!(list.contains(&href), "the creator still has it: {list}");
    assert!(list.contains("<td>Kestrel service</td>"));
    let html = site.ok_page(&dev, &href).await;
    assert!(
        html.contains("href=\"/catalog/default/component/mine\""),
        "{html}"
    );
    site.app.stop().await;
}
