//! The entity page, `/catalog/{namespace}/{kind}/{name}`, as a browser sees it:
//! signed in with the guest provider and a cookie jar, reading the HTML.
//!
//! Each test starts a portal whose guest user is one person of a small
//! organisation: alice (in team-a, which owns most things), bob (in no group)
//! or root (in the admins group). The catalog comes from file locations; a
//! `url` location registered through the API stands in for one an admin may
//! unregister.

use reqwest::header::{CONTENT_TYPE, LOCATION};
use stagedoor_tests::peers::free_port;
use stagedoor_tests::{cookie_client, spawn, HttpFixture, Spawn, TestApp};

const TOKEN: &str = "pages-entity-static-token";

const ORG: &str = r#"
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: eng, title: Engineering}
spec: {type: department, children: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a, title: Team A}
spec: {type: team, parent: eng, children: [], profile: {email: team-a@example.com}}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: admins}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: alice}
spec: {profile: {email: alice@example.com, displayName: Alice Adams}, memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: bob}
spec: {profile: {email: bob@example.com}, memberOf: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: root}
spec: {profile: {email: root@example.com}, memberOf: [admins]}
"#;

const SOFTWARE: &str = r#"
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata: {name: commerce}
spec: {owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: shop, description: Everything that sells}
spec: {owner: team-a, domain: commerce}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
  title: Checkout Service
  description: "Takes <b>payments</b> & <script>alert(1)</script>"
  tags: [payments, java]
  annotations:
    github.com/project-slug: org/checkout
    example.com/dashboard: https://grafana.example.com/d/checkout
    example.com/evil: "javascript:alert(2)"
  links:
    - {url: "https://docs.example.com/checkout", title: Runbook}
    - {url: "file:///etc/passwd", title: Sneaky}
    - {url: "ftp://files.example.com/checkout"}
spec:
  type: service
  lifecycle: production
  owner: team-a
  system: shop
  providesApis: [checkout-api]
  consumesApis: [payments-api]
  dependsOn: [resource:orders-db]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: cart, title: "Cart <em>&</em> Basket"}
spec: {type: website, lifecycle: experimental, owner: user:bob, system: shop, dependsOn: [component:checkout]}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: checkout-api, description: Checkout over HTTP}
spec: {type: openapi, lifecycle: production, owner: team-a, system: shop, definition: "openapi: 3.0.0"}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: payments-api}
spec: {type: grpc, lifecycle: production, owner: eng, definition: "syntax = proto3;"}
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: orders-db}
spec: {type: database, owner: team-a, system: shop}
"#;

/// A component that is valid, or carries a `javascript:` link, which the catalog refuses.
fn flaky(valid: bool) -> String {
    let link = if valid {
        "https://flaky.example.com"
    } else {
        "javascript:alert(document.cookie)"
    };
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: flaky\n  links: [{{url: '{link}', title: Home}}]\nspec: {{type: service, lifecycle: production, owner: team-a}}\n"
    )
}

/// A portal whose guest user is `guest`, with the fixture catalog loaded.
struct Site {
    app: TestApp,
    catalog: tempfile::TempDir,
}

impl Site {
    async fn start(guest: &str) -> Site {
        Self::start_with(guest, "").await
    }

    /// `reading` lists extra hosts that `url` locations may read.
    async fn start_with(guest: &str, reading: &str) -> Site {
        let catalog = tempfile::tempdir().expect("temp dir");
        let files = [
            ("org.yaml", ORG.to_string()),
            ("software.yaml", SOFTWARE.to_string()),
            ("flaky.yaml", flaky(true)),
        ];
        let mut locations = String::new();
        for (name, content) in &files {
            let path = catalog.path().join(name);
            std::fs::write(&path, content).expect("write catalog");
            locations.push_str(&format!(
                "    - {{type: file, target: '{}'}}\n",
                path.display()
            ));
        }
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let reading = if reading.is_empty() {
            String::new()
        } else {
            format!("  reading:\n    allow:\n      - host: '{reading}'\n")
        };
        let config = format!(
            r#"app: {{baseUrl: "{base}"}}
backend:
  baseUrl: "{base}"
  listen: {{host: 127.0.0.1, port: {port}}}
  auth:
    externalAccess:
      - type: static
        options: {{token: {TOKEN}, subject: tests}}
{reading}auth:
  providers:
    guest: {{userEntityRef: '{guest}'}}
stagedoor:
  admins: {{groups: [admins]}}
catalog:
  locations:
{locations}"#
        );
        let app = spawn(Spawn {
            config,
            ..Default::default()
        })
        .await;
        app.process_due().await;
        Site { app, catalog }
    }

    /// Signs in with the guest button; returns the browser holding the session.
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
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = res.text().await.expect("body");
        if status == 200 || status >= 400 {
            assert!(
                content_type.starts_with("text/html"),
                "{path}: {content_type}"
            );
        }
        (status, body)
    }

    async fn ok_page(&self, b: &reqwest::Client, path: &str) -> String {
        let (status, body) = self.page(b, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Posts an action form; returns the status, Location and body.
    async fn post_form(
        &self,
        b: &reqwest::Client,
        path: &str,
        origin: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, String) {
        let res = b
            .post(self.app.url(path))
            .header("Origin", origin)
            .form(fields)
            .send()
            .await
            .expect("form");
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, location, res.text().await.unwrap_or_default())
    }

    async fn stop(self) {
        self.app.stop().await;
        drop(self.catalog);
    }
}

/// The session's synchronizer token, from a page's hidden `csrf` input.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let end = html[start..].find('"').expect("end of the csrf value");
    html[start..start + end].to_string()
}

/// The element that opens with `<tag ... id="id"`, through its matching closing tag.
fn element<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let start = html[..at].rfind(&open).expect("opening tag");
    // Count nested elements of the same tag (an SVG holds SVGs) to find the match.
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let next_open = html[i..].find(&open).map(|p| p + i);
        let next_close = html[i..].find(&close).map(|p| p + i).expect("closing tag");
        match next_open {
            Some(o) if o < next_close => {
                depth += 1;
                i = o + open.len();
            }
            _ => {
                depth -= 1;
                i = next_close + close.len();
                if depth == 0 {
                    return &html[start..i];
                }
            }
        }
    }
}

fn hrefs(html: &str) -> Vec<&str> {
    html.match_indices("href=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').unwrap_or(rest.len())]
        })
        .collect()
}

#[tokio::test]
async fn pages_entity_shows_header_about_tags_and_annotations() {
    let site = Site::start("user:default/alice").await;
    let b = site.sign_in().await;
    let html = site
        .ok_page(&b, "/catalog/default/component/checkout")
        .await;

    let title = element(&html, "h1", "entity-title");
    assert!(title.contains("Checkout Service"), "{title}");
    assert!(
        html.contains("<title>Checkout Service"),
        "the document title"
    );
    assert!(html.contains("component:default/checkout"));
    for (term, text, href) in [
        ("owner", "Team A", Some("/catalog/default/group/team-a")),
        ("system", "shop", Some("/catalog/default/system/shop")),
        ("lifecycle", "production", None),
        ("type", "service", None),
    ] {
        let badge = format!(r#"<span class="badge-term">{term}</span> {text}"#);
        assert!(html.contains(&badge), "badge {term}: {html}");
        if let Some(h) = href {
            assert!(
                html.contains(&format!(r#"<a class="badge" href="{h}">{badge}"#)),
                "badge {term} links to {h}"
            );
        }
    }

    // About: the description escaped, links only for http(s).
    assert!(
        html.contains(
            "Takes &#60;b&#62;payments&#60;/b&#62; &#38; &#60;script&#62;alert(1)&#60;/script&#62;"
        ),
        "escaped description"
    );
    assert!(!html.contains("<script>alert(1)"), "no raw script");
    assert!(!html.contains("<b>payments"), "no raw HTML");
    let links = element(&html, "ul", "entity-links");
    assert!(links
        .contains(r#"<a href="https://docs.example.com/checkout" rel="noreferrer">Runbook</a>"#));
    assert!(links.contains("Sneaky"), "the unsafe link is still named");
    for h in hrefs(&html) {
        let h = h.trim().to_ascii_lowercase();
        assert!(
            h.starts_with('/')
                || h.starts_with("https://")
                || h.starts_with("http://")
                || h.starts_with("mailto:")
                || h.starts_with('#'),
            "unexpected link target {h}"
        );
    }
    assert!(!html.to_ascii_lowercase().contains("href=\"javascript:"));

    // Tags and annotations; web URLs in annotations link.
    let tags = element(&html, "ul", "entity-tags");
    assert!(tags.contains("payments") && tags.contains("java"), "{tags}");
    let annotations = element(&html, "dl", "entity-annotations");
    assert!(annotations.contains("github.com/project-slug"));
    assert!(annotations.contains("org/checkout"));
    assert!(annotations.contains(
        r#"<a href="https://grafana.example.com/d/checkout" rel="noreferrer">https://grafana.example.com/d/checkout</a>"#
    ));
    assert!(annotations.contains("javascript:alert(2)"), "shown as text");
    assert!(annotations.contains("backstage.io/managed-by-location"));

    // The YAML as the API serves it, escaped.
    assert!(html.contains("apiVersion: backstage.io/v1alpha1"));
    assert!(html.contains("kind: Component"));
    assert!(html.contains("relations:"));

    // Kind and namespace are case-insensitive, as in Backstage's URLs.
    let again = site
        .ok_page(&b, "/catalog/Default/COMPONENT/checkout")
        .await;
    assert!(element(&again, "h1", "entity-title").contains("Checkout Service"));
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_graph_and_tables_link_every_relation() {
    let site = Site::start("user:default/alice").await;
    let b = site.sign_in().await;
    let html = site
        .ok_page(&b, "/catalog/default/component/checkout")
        .await;

    let graph = element(&html, "svg", "relations-graph");
    assert!(
        graph.contains(r#"role="img""#)
            && graph.contains("aria-label=\"Relations of Checkout Service")
    );
    assert!(graph.contains("<title>Relations of Checkout Service"));
    for (relation, href) in [
        ("ownedBy", "/catalog/default/group/team-a"),
        ("partOf", "/catalog/default/system/shop"),
        ("providesApi", "/catalog/default/api/checkout-api"),
        ("consumesApi", "/catalog/default/api/payments-api"),
        ("dependsOn", "/catalog/default/resource/orders-db"),
        ("dependencyOf", "/catalog/default/component/cart"),
    ] {
        assert!(
            graph.contains(&format!(r#"<a class="graph-node node" href="{href}">"#)),
            "graph node for {relation}: {graph}"
        );
        assert!(
            graph.contains(&format!(">{relation}</text>")),
            "edge label {relation}"
        );
    }
    // Catalog text in the picture is escaped too.
    assert!(
        graph.contains("Cart &#60;em&#62;&#38;&#60;/em&#62; Basket"),
        "{graph}"
    );
    assert!(!html.contains("<em>&"));

    for (id, href) in [
        ("entity-apis-provided", "/catalog/default/api/checkout-api"),
        ("entity-apis-consumed", "/catalog/default/api/payments-api"),
        ("entity-dependencies", "/catalog/default/resource/orders-db"),
        ("entity-dependents", "/catalog/default/component/cart"),
    ] {
        let table = element(&html, "table", id);
        assert!(
            table.contains(&format!(r#"<a href="{href}">"#)),
            "{id}: {table}"
        );
    }
    let provided = element(&html, "table", "entity-apis-provided");
    assert!(
        provided.contains("API") && provided.contains("Team A") && provided.contains("production")
    );

    // A system lists its parts, and the APIs of its components.
    let html = site.ok_page(&b, "/catalog/default/system/shop").await;
    let parts = element(&html, "table", "entity-parts");
    for href in [
        "/catalog/default/component/checkout",
        "/catalog/default/component/cart",
        "/catalog/default/api/checkout-api",
        "/catalog/default/resource/orders-db",
    ] {
        assert!(
            parts.contains(&format!(r#"<a href="{href}">"#)),
            "{href}: {parts}"
        );
    }
    assert!(parts.contains("Checkout Service"));
    assert!(element(&html, "table", "entity-apis-provided")
        .contains("/catalog/default/api/checkout-api"));
    assert!(element(&html, "table", "entity-apis-consumed")
        .contains("/catalog/default/api/payments-api"));
    let graph = element(&html, "svg", "relations-graph");
    assert!(graph.contains(r#"href="/catalog/default/domain/commerce""#));
    assert!(graph.contains(">hasPart</text>"));
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_group_and_user_pages_list_members_and_owned_entities() {
    let site = Site::start("user:default/bob").await;
    let b = site.sign_in().await;
    let html = site.ok_page(&b, "/catalog/default/group/team-a").await;
    assert!(element(&html, "h1", "entity-title").contains("Team A"));
    let members = element(&html, "table", "group-members");
    assert!(
        members.contains(r#"<a href="/catalog/default/user/alice">Alice Adams</a>"#),
        "{members}"
    );
    assert!(members.contains(r#"<a href="mailto:alice@example.com">alice@example.com</a>"#));
    let owned = element(&html, "table", "owned-entities");
    for href in [
        "/catalog/default/component/checkout",
        "/catalog/default/system/shop",
        "/catalog/default/domain/commerce",
        "/catalog/default/api/checkout-api",
        "/catalog/default/resource/orders-db",
        "/catalog/default/component/flaky",
    ] {
        assert!(
            owned.contains(&format!(r#"<a href="{href}">"#)),
            "{href}: {owned}"
        );
    }
    assert!(
        !owned.contains("/catalog/default/component/cart"),
        "owned by bob"
    );
    assert!(!owned.contains("payments-api"), "owned by eng");
    // Parent in About, and the graph.
    assert!(
        html.contains(
            r#"<dt>Parent</dt><dd><a href="/catalog/default/group/eng">Engineering</a></dd>"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"href="mailto:team-a@example.com""#));
    let graph = element(&html, "svg", "relations-graph");
    for rel in ["childOf", "hasMember", "ownerOf"] {
        assert!(graph.contains(&format!(">{rel}</text>")), "{rel}");
    }

    // The parent group lists its children.
    let html = site.ok_page(&b, "/catalog/default/group/eng").await;
    assert!(html.contains(
        r#"<dt>Children</dt><dd><a href="/catalog/default/group/team-a">Team A</a></dd>"#
    ));
    assert!(element(&html, "table", "owned-entities").contains("/catalog/default/api/payments-api"));

    // A user: email, groups, and what they and their groups own.
    let html = site.ok_page(&b, "/catalog/default/user/alice").await;
    assert!(element(&html, "h1", "entity-title").contains("Alice Adams"));
    assert!(html.contains(r#"<a href="mailto:alice@example.com">alice@example.com</a>"#));
    assert!(html.contains(
        r#"<dt>Member of</dt><dd><a href="/catalog/default/group/team-a">Team A</a></dd>"#
    ));
    let owned = element(&html, "table", "owned-entities");
    assert!(
        owned.contains("/catalog/default/component/checkout"),
        "{owned}"
    );
    assert!(
        owned.contains(r#"<a href="/catalog/default/group/team-a">Team A</a>"#),
        "owner column"
    );
    let html = site.ok_page(&b, "/catalog/default/user/bob").await;
    let owned = element(&html, "table", "owned-entities");
    assert!(owned.contains("/catalog/default/component/cart"), "{owned}");
    assert!(!owned.contains("/catalog/default/component/checkout"));
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_shows_processing_errors_and_javascript_links_never_link() {
    let site = Site::start("user:default/bob").await;
    let b = site.sign_in().await;
    let html = site.ok_page(&b, "/catalog/default/component/flaky").await;
    assert!(!html.contains("processing-errors"), "no errors yet");
    assert_eq!(
        site.page(&b, "/catalog/default/component/nope").await.0,
        404
    );

    std::fs::write(site.catalog.path().join("flaky.yaml"), flaky(false)).expect("write");
    site.app.refresh_all().await;
    let html = site.ok_page(&b, "/catalog/default/component/flaky").await;
    let errors = element(&html, "section", "processing-errors");
    assert!(errors.contains("Processing errors"), "{errors}");
    assert!(
        errors.contains("metadata.links[0].url: the javascript scheme is not allowed"),
        "{errors}"
    );
    assert!(html.contains(r##"href="#processing-errors">1 processing error</a>"##));
    // The last valid content stays, and the refused link never becomes one.
    assert!(html.contains(r#"<a href="https://flaky.example.com/" rel="noreferrer">Home</a>"#));
    assert!(!html.to_ascii_lowercase().contains("href=\"javascript:"));

    // Unknown entities: the 404 page, in HTML.
    let (status, body) = site.page(&b, "/catalog/default/component/nope").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("Not found") && body.contains("nope"),
        "{body}"
    );
    let (status, _) = site.page(&b, "/catalog/default/nokind/checkout").await;
    assert_eq!(status, 404);

    // Signed out: sent to sign in, and back here afterwards.
    let res = site
        .app
        .client
        .get(site.app.url("/catalog/default/component/flaky"))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), 303);
    let to = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(to.starts_with("/login?returnTo="), "{to}");
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_owners_refresh_and_forms_are_checked() {
    let site = Site::start("user:default/alice").await;
    let b = site.sign_in().await;
    let path = "/catalog/default/component/checkout";
    let html = site.ok_page(&b, path).await;
    assert!(
        html.contains(r#"id="refresh-entity""#),
        "owners may refresh"
    );
    assert!(
        !html.contains(r#"id="unregister-entity""#),
        "only admins unregister"
    );
    assert!(html.contains(&format!(r#"action="{path}/refresh""#)));
    let csrf = csrf_of(&html);
    let base = site.app.base.clone();

    // Refused: no token, a wrong token, another site.
    let refresh = format!("{path}/refresh");
    for (origin, fields) in [
        (base.as_str(), vec![]),
        (base.as_str(), vec![("csrf", "not-the-token")]),
        ("http://evil.example", vec![("csrf", csrf.as_str())]),
    ] {
        let (status, _, body) = site.post_form(&b, &refresh, origin, &fields).await;
        assert_eq!(status, 403, "{origin} {fields:?}: {body}");
        assert!(body.contains("Not allowed"), "the 403 page: {body}");
    }

    // Accepted: back to the page with a notice.
    let (status, location, body) = site
        .post_form(&b, &refresh, &base, &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location, format!("{path}?notice=refreshed"));
    let html = site.ok_page(&b, &location).await;
    assert!(html.contains("Refreshed: the entity"), "the notice");
    // Unknown notices are ignored, not echoed.
    let html = site.ok_page(&b, &format!("{path}?notice=%3Cb%3Ehi")).await;
    assert!(!html.contains("hi</b>") && !html.contains("&#60;b&#62;hi"));

    // An owner cannot unregister, and cannot refresh what they do not own.
    let (status, _, body) = site
        .post_form(&b, &format!("{path}/unregister"), &base, &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 403, "{body}");
    let html = site.ok_page(&b, "/catalog/default/component/cart").await;
    assert!(!html.contains(r#"id="refresh-entity""#), "cart is bob's");
    let (status, _, _) = site
        .post_form(
            &b,
            "/catalog/default/component/cart/refresh",
            &base,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 403);
    // A user refreshes their own User entity.
    let html = site.ok_page(&b, "/catalog/default/user/alice").await;
    assert!(html.contains(r#"id="refresh-entity""#));
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_others_see_no_actions_and_are_refused() {
    let site = Site::start("user:default/bob").await;
    let b = site.sign_in().await;
    let path = "/catalog/default/component/checkout";
    let html = site.ok_page(&b, path).await;
    assert!(!html.contains(r#"id="refresh-entity""#));
    assert!(!html.contains(r#"id="unregister-entity""#));
    let csrf = csrf_of(&html);
    let base = site.app.base.clone();
    for action in ["refresh", "unregister"] {
        let (status, _, body) = site
            .post_form(&b, &format!("{path}/{action}"), &base, &[("csrf", &csrf)])
            .await;
        assert_eq!(status, 403, "{action}: {body}");
        assert!(body.contains("Not allowed"), "{body}");
    }
    // Unknown entities are 404 pages here too.
    let (status, _, body) = site
        .post_form(
            &b,
            "/catalog/default/component/nope/refresh",
            &base,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 404, "{body}");
    site.stop().await;
}

#[tokio::test]
async fn pages_entity_admins_refresh_and_unregister() {
    let fx = HttpFixture::start().await;
    fx.set_body(
        "/catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: registered}\nspec: {type: service, lifecycle: beta, owner: team-a}\n",
    );
    let site = Site::start_with("user:default/root", &fx.host()).await;
    let res = site
        .app
        .client
        .post(site.app.url("/api/catalog/locations"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"type": "url", "target": fx.url("/catalog-info.yaml")}))
        .send()
        .await
        .expect("register");
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );

    let b = site.sign_in().await;
    let path = "/catalog/default/component/registered";
    let html = site.ok_page(&b, path).await;
    assert!(html.contains(r#"id="refresh-entity""#));
    let form = element(&html, "form", "unregister-entity");
    assert!(form.contains(&format!(r#"action="{path}/unregister""#)));
    assert!(form.contains("data-confirm="), "asks first");
    let csrf = csrf_of(&html);
    let base = site.app.base.clone();

    let (status, location, _) = site
        .post_form(&b, &format!("{path}/refresh"), &base, &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (
            303,
            "/catalog/default/component/registered?notice=refreshed"
        )
    );

    // Not from another site, even for an admin.
    let (status, _, _) = site
        .post_form(
            &b,
            &format!("{path}/unregister"),
            "http://evil.example",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(site.page(&b, path).await.0, 200, "still there");

    // Locations from the configuration are refused, and say why.
    let (status, _, body) = site
        .post_form(
            &b,
            "/catalog/default/component/checkout/unregister",
            &base,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("catalog.locations"), "{body}");
    assert_eq!(
        site.page(&b, "/catalog/default/component/checkout").await.0,
        200
    );

    let (status, location, body) = site
        .post_form(&b, &format!("{path}/unregister"), &base, &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location, "/catalog", "no message in the URL");
    let (_, html) = site.page(&b, "/catalog").await;
    assert!(
        html.contains("Unregistered component:default/registered"),
        "the message shows on the next page"
    );
    assert_eq!(site.page(&b, path).await.0, 404, "gone from the catalog");
    site.stop().await;
}
