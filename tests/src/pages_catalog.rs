//! The catalog page and the home page, as a browser sees them: kind tabs,
//! filters, full-text search, paging, the 400 page for bad parameters,
//! escaping of catalog data, and the home page's owned and changed entities.

use std::path::Path;

use stagedoor_tests::peers::free_port;
use stagedoor_tests::{cookie_client, spawn_with, TestApp};

/// Components that need paging: 30 services of team-a, a website of team-b,
/// and one owned by the guest user, with HTML in its title and description.
fn catalog_yaml() -> String {
    let mut out = String::from(
        r#"apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: eng}
spec: {type: department, children: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a}
spec: {type: team, parent: eng, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-b}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: alice}
spec: {profile: {displayName: Alice Archer, email: alice@example.com}, memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: x}
spec: {profile: {displayName: Xavier}, memberOf: [team-b]}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: web-ui
  description: The storefront in the browser
  tags: [frontend]
spec: {type: website, lifecycle: experimental, owner: team-b}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: evil
  title: "<script>alert(1)</script>"
  description: "<img src=x onerror=alert(2)>"
spec: {type: library, lifecycle: production, owner: "user:x"}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: payments-api, description: Takes money}
spec: {type: openapi, lifecycle: production, owner: team-a, definition: "openapi: 3.0.0"}
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: shop}
spec: {owner: team-a}
---
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata: {name: new-service, title: A new service}
spec: {type: service, owner: team-a, steps: [{id: log, action: debug:log}]}
"#,
    );
    for i in 0..30 {
        out.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: svc-{i:02}, description: Service number {i}}}\nspec: {{type: service, lifecycle: production, owner: team-a}}\n"
        ));
    }
    out
}

const COMPONENTS: usize = 32;

/// A server with the catalog above, and the directory of its file.
async fn start(extra_config: &str) -> (TestApp, tempfile::TempDir) {
    start_with("", extra_config).await
}

/// Same, with more keys under `catalog` (indented) and more configuration.
async fn start_with(catalog: &str, extra_config: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, catalog_yaml()).expect("write catalog");
    let config = format!(
        "catalog:\n  locations:\n    - {{type: file, target: '{}'}}\n{catalog}{extra_config}",
        file.display()
    );
    let app = spawn_with(&config).await;
    app.process_due().await;
    (app, dir)
}

/// Status, content type and body of a page.
async fn page(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let res = client.get(url).send().await.expect("request");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, res.text().await.expect("body"))
}

async fn html(app: &TestApp, path: &str) -> String {
    let (status, content_type, body) = page(&app.client, &app.url(path)).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    body
}

/// Undoes HTML escaping in attribute values.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of every `attr="..."` that follows `marker`.
fn attrs_after(body: &str, marker: &str, attr: &str) -> Vec<String> {
    body.match_indices(marker)
        .filter_map(|(i, _)| {
            let tail = &body[i..];
            let start = tail.find(&format!("{attr}=\""))? + attr.len() + 2;
            let end = tail[start..].find('"')?;
            Some(unescape(&tail[start..start + end]))
        })
        .collect()
}

/// The hrefs of the result rows' entity links.
fn entity_links(body: &str) -> Vec<String> {
    attrs_after(body, "class=\"entity-link\"", "href")
}

fn names(body: &str) -> Vec<String> {
    entity_links(body)
        .iter()
        .map(|h| h.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

/// The href of the pager's link with this rel.
fn pager_link(body: &str, rel: &str) -> Option<String> {
    let i = body.find(&format!("rel=\"{rel}\""))?;
    let start = body[..i].rfind("href=\"")? + 6;
    let end = body[start..].find('"')?;
    Some(unescape(&body[start..start + end]))
}

/// The slice of the page between two markers.
fn between<'a>(body: &'a str, from: &str, to: &str) -> &'a str {
    let start = body
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {body}"));
    let end = body[start..].find(to).map_or(body.len(), |e| start + e);
    &body[start..end]
}

#[tokio::test]
async fn pages_catalog_kind_tabs_list_the_right_entities() {
    let (app, _dir) = start("").await;

    let body = html(&app, "/catalog").await;
    let tabs = between(&body, "<nav class=\"tabs\" aria-label=\"Kinds\">", "</nav>");
    for kind in [
        "component",
        "api",
        "system",
        "group",
        "user",
        "template",
        "location",
    ] {
        assert!(tabs.contains(&format!("href=\"?kind={kind}\"")), "{tabs}");
    }
    assert!(
        tabs.contains("href=\"?kind=component\" aria-current=\"page\">Components <span class=\"tab-count\">32</span>"),
        "{tabs}"
    );
    assert!(body.contains("<table id=\"catalog-results\""));
    let links = entity_links(&body);
    assert_eq!(links.len(), 25, "one page of components");
    assert!(links
        .iter()
        .all(|l| l.starts_with("/catalog/default/component/")));
    assert_eq!(
        links[0], "/catalog/default/component/evil",
        "ordered by name"
    );
    assert!(body.contains("<strong>32 components</strong>"), "{body}");

    let body = html(&app, "/catalog?kind=api").await;
    assert_eq!(entity_links(&body), ["/catalog/default/api/payments-api"]);
    assert!(body.contains("Takes money"));
    assert!(body.contains("<span class=\"badge ok\">production</span>"));
    assert!(between(&body, "<nav class=\"tabs\"", "</nav>")
        .contains("href=\"?kind=api\" aria-current=\"page\""));

    let body = html(&app, "/catalog?kind=User").await;
    assert_eq!(names(&body), ["alice", "x"]);
    assert!(body.contains("Alice Archer") && body.contains("alice@example.com"));
    assert!(body.contains("href=\"/catalog/default/group/team-a\""));

    let body = html(&app, "/catalog?kind=group").await;
    assert_eq!(names(&body), ["eng", "team-a", "team-b"]);
    let team_a = between(&body, "/catalog/default/group/team-a\"", "</tr>");
    assert!(
        team_a.contains("/catalog/default/group/eng"),
        "parent: {team_a}"
    );
    assert!(
        team_a.contains(">1<") || team_a.contains(">1\n"),
        "{team_a}"
    );

    let body = html(&app, "/catalog?kind=template").await;
    assert_eq!(names(&body), ["new-service"]);
    assert!(body.contains("A new service"));

    let body = html(&app, "/catalog?kind=location").await;
    assert_eq!(entity_links(&body).len(), 1, "the root location");
    assert!(body.contains("catalog.yaml"));

    let body = html(&app, "/catalog?kind=resource").await;
    assert!(entity_links(&body).is_empty());
    assert!(body.contains("<strong>0 resources</strong>"));
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_filters_and_search_narrow_the_results() {
    let (app, _dir) = start("").await;

    let body = html(&app, "/catalog").await;
    let form = between(
        &body,
        "<form id=\"catalog-filters\" method=\"get\" action=\"/catalog\"",
        "</form>",
    );
    assert!(form.contains("<input type=\"search\" name=\"q\" id=\"catalog-search\""));
    assert!(form.contains("<input type=\"hidden\" name=\"kind\" value=\"component\">"));
    assert!(form.contains("id=\"apply-filters\""));
    for name in ["type", "owner", "lifecycle", "tag", "namespace"] {
        assert!(
            form.contains(&format!("<select name=\"{name}\" id=\"filter-{name}\"")),
            "{name}"
        );
        assert!(form.contains(&format!("<label for=\"filter-{name}\">")));
    }
    let types = between(form, "id=\"filter-type\"", "</select>");
    assert!(
        types.contains("<option value=\"service\">service (30)</option>"),
        "{types}"
    );
    assert!(types.contains("<option value=\"website\">website (1)</option>"));
    let owners = between(form, "id=\"filter-owner\"", "</select>");
    assert!(
        owners.contains("value=\"group:default/team-a\">team-a (30)</option>"),
        "{owners}"
    );
    assert!(owners.contains(">user:x (1)</option>"), "{owners}");

    for (query, expected) in [
        ("type=website", vec!["web-ui"]),
        ("type=WEBSITE", vec!["web-ui"]),
        ("owner=team-b", vec!["web-ui"]),
        ("owner=group:default/team-b", vec!["web-ui"]),
        ("owner=user:default/x,team-b", vec!["evil", "web-ui"]),
        ("lifecycle=experimental", vec!["web-ui"]),
        ("tag=frontend", vec!["web-ui"]),
        ("q=storefront", vec!["web-ui"]),
        (
            "q=svc-2&type=service",
            vec![
                "svc-20", "svc-21", "svc-22", "svc-23", "svc-24", "svc-25", "svc-26", "svc-27",
                "svc-28", "svc-29",
            ],
        ),
        ("q=number+7", vec!["svc-07"]),
        ("type=service&lifecycle=experimental", vec![]),
        ("type=no-such-type", vec![]),
        ("namespace=default&type=library", vec!["evil"]),
    ] {
        let body = html(&app, &format!("/catalog?kind=component&{query}")).await;
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(names(&body), expected, "{query}");
    }

    // The form keeps what the URL chose, and the filters are shareable links.
    let body = html(&app, "/catalog?kind=component&type=website&q=store").await;
    assert!(
        body.contains("<option value=\"website\" selected>"),
        "{body}"
    );
    assert!(body.contains("id=\"catalog-search\" value=\"store\""));
    assert!(
        body.contains("<strong>1 component matches</strong>"),
        "{body}"
    );
    assert!(body.contains("href=\"/catalog?kind=component\">Clear the filters"));
    let body = html(&app, "/catalog?kind=component&type=no-such-type").await;
    assert!(
        body.contains("<option value=\"no-such-type\" selected>"),
        "{body}"
    );

    // A search names the other kinds it matches.
    let body = html(&app, "/catalog?q=alice").await;
    assert!(names(&body).is_empty());
    assert!(
        body.contains("<a href=\"/catalog?kind=user&amp;q=alice\">1 user</a>")
            || body.contains("<a href=\"/catalog?kind=user&#38;q=alice\">1 user</a>"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_pages_move_through_the_results() {
    let (app, _dir) = start("").await;

    let first = html(&app, "/catalog?kind=component").await;
    assert!(pager_link(&first, "prev").is_none());
    let next = pager_link(&first, "next").expect("a next page");
    assert!(
        next.starts_with("/catalog?kind=component&cursor="),
        "{next}"
    );
    let second = html(&app, &next).await;
    assert!(pager_link(&second, "next").is_none(), "two pages in all");
    let mut all = names(&first);
    all.extend(names(&second));
    assert_eq!(all.len(), COMPONENTS);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), COMPONENTS, "no entity twice");
    assert_eq!(all, sorted, "in name order across pages");

    let prev = pager_link(&second, "prev").expect("a previous page");
    assert_eq!(names(&html(&app, &prev).await), names(&first));

    // Filters and search stay with the pages.
    let first = html(&app, "/catalog?kind=component&type=service&q=service").await;
    assert_eq!(names(&first).len(), 25);
    let next = pager_link(&first, "next").expect("a next page");
    assert!(
        next.contains("type=service") && next.contains("q=service"),
        "{next}"
    );
    let second = html(&app, &next).await;
    assert_eq!(
        names(&second),
        ["svc-25", "svc-26", "svc-27", "svc-28", "svc-29"]
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_bad_parameters_get_a_400_page() {
    let (app, _dir) = start("").await;
    let first = html(&app, "/catalog?kind=component&type=service").await;
    let cursor = pager_link(&first, "next")
        .and_then(|n| n.split("cursor=").nth(1).map(str::to_string))
        .expect("a cursor");

    for (query, message) in [
        ("kind=nope", "The catalog has no kind &quot;nope&quot;"),
        ("kind=component&kind=api", "given more than once"),
        ("owner=team%20a", "is not an owner"),
        ("owner=user:", "is not an owner"),
        ("namespace=Bad_Namespace", "is not a valid namespace"),
        ("cursor=not-a-cursor", "The page link is damaged"),
        (
            &format!("kind=component&type=website&cursor={cursor}"),
            "The page link belongs to other filters",
        ),
        (
            &format!("q={}", "x".repeat(201)),
            "longer than 200 characters",
        ),
    ] {
        let (status, content_type, body) =
            page(&app.client, &app.url(&format!("/catalog?{query}"))).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            content_type.starts_with("text/html"),
            "{query}: {content_type}"
        );
        assert!(
            unescape(&body).contains(&unescape(message)),
            "{query}: {body}"
        );
        assert!(body.contains("<h1>Cannot do that</h1>"), "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_escapes_catalog_data() {
    let (app, _dir) = start("").await;
    for path in [
        "/catalog?kind=component",
        "/catalog?kind=component&q=alert",
        "/",
    ] {
        let body = html(&app, path).await;
        assert!(!body.contains("<script>alert"), "{path}");
        assert!(!body.contains("<img src=x"), "{path}");
        if path != "/" {
            // Shown, as text.
            let text = unescape(&body);
            assert!(text.contains("<script>alert(1)</script>"), "{path}: {body}");
            assert!(text.contains("<img src=x onerror=alert(2)>"), "{path}");
        }
    }
    // The search term comes back escaped too.
    let body = html(&app, "/catalog?q=%22%3E%3Cscript%3Ealert(3)%3C%2Fscript%3E").await;
    assert!(!body.contains("<script>alert(3)"));
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_home_shows_owned_entities_to_a_signed_in_user() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (app, _dir) = start(&format!(
        "app: {{baseUrl: '{base}'}}\nbackend:\n  baseUrl: '{base}'\n  listen: {{host: 127.0.0.1, port: {port}}}\nauth:\n  providers:\n    guest: {{userEntityRef: 'user:default/x'}}\n"
    ))
    .await;
    assert_eq!(app.base, base);

    // Signed out, on an open server: search and recent changes only.
    let body = html(&app, "/").await;
    assert!(body.contains("<form id=\"home-search\" method=\"get\" action=\"/catalog\""));
    assert!(between(&body, "id=\"home-search\"", "</form>").contains("name=\"q\""));
    assert!(!body.contains("Owned by me"));
    assert!(body.contains("Recently changed"));

    let browser = cookie_client();
    let res = browser
        .post(app.url("/login/guest"))
        .header("Origin", base.clone())
        .form(&[("returnTo", "/")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303);

    let (status, _, body) = page(&browser, &app.url("/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Welcome, Xavier"), "{body}");
    let owned = between(&body, "Owned by me and my teams", "</section>");
    assert_eq!(names(owned), ["evil", "web-ui"], "{owned}");
    let link = attrs_after(owned, "All of it in the catalog:", "href")
        .into_iter()
        .next()
        .expect("a link to the full list");
    assert_eq!(
        link,
        "/catalog?kind=component&owner=user%3Adefault%2Fx%2Cgroup%3Adefault%2Fteam-b"
    );
    let (status, _, full) = page(&browser, &app.url(&link)).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(names(&full), ["evil", "web-ui"]);
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_home_lists_recent_changes() {
    let (app, dir) = start_with("  orphanStrategy: delete\n", "").await;
    let body = html(&app, "/").await;
    let recent = between(&body, "Recently changed", "</section>");
    assert_eq!(entity_links(recent).len(), 10, "{recent}");

    // Delete one entity, then change another: the changed one comes first,
    // the deleted one is gone, and its owner changed (it lost a relation).
    let without_shop = catalog_yaml().replace(
        "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata: {name: shop}\nspec: {owner: team-a}\n---\n",
        "",
    );
    let file = Path::new(dir.path()).join("catalog.yaml");
    std::fs::write(&file, &without_shop).expect("write");
    app.refresh_all().await;
    std::fs::write(
        &file,
        without_shop.replace("The storefront in the browser", "The new storefront"),
    )
    .expect("write");
    app.refresh_all().await;
    let body = html(&app, "/").await;
    let recent = between(&body, "Recently changed", "</section>");
    let links = entity_links(recent);
    assert_eq!(links[0], "/catalog/default/component/web-ui", "{recent}");
    assert!(links.contains(&"/catalog/default/group/team-a".to_string()));
    assert!(!links.iter().any(|l| l.ends_with("/shop")));
    assert!(recent.contains("just now"));
    app.stop().await;
}

#[tokio::test]
async fn pages_catalog_pages_ask_for_sign_in_when_identities_are_required() {
    let (app, _dir) = start(
        "backend:\n  auth:\n    externalAccess:\n      - {type: static, options: {token: a-static-token-for-tests, subject: tests}}\n",
    )
    .await;
    for path in ["/", "/catalog?kind=api"] {
        let res = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(res.status(), 303, "{path}");
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(location.starts_with("/login?returnTo="), "{location}");
    }
    app.stop().await;
}
