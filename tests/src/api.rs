//! The `/api/catalog` REST API, route by route, against the real server.
//!
//! Every test loads a small fixed catalog (or its own), checks behaviour with
//! explicit assertions and pins each response shape with an insta snapshot.
//! Values that differ between runs (uids, etags, ids, scratch paths, ports) are
//! scrubbed before snapshotting, so the snapshots hold on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use stagedoor_tests::{spawn_with, TestApp};

// ------------------------------------------------------------------ fixtures

const ROOT_YAML: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Location
metadata:
  name: fixture-root
  description: The fixture catalog
spec:
  targets:
    - ./org.yaml
    - ./software.yaml
";

const ORG_YAML: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: team-a
spec:
  type: team
  profile:
    displayName: Team A
  children: [team-b]
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: team-b
spec:
  type: team
  parent: team-a
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata:
  name: alice
spec:
  memberOf: [team-a]
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata:
  name: bob
spec:
  memberOf: [team-b]
";

const SOFTWARE_YAML: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata:
  name: commerce
spec:
  owner: team-a
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: shop
spec:
  owner: team-a
  domain: commerce
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
  title: Checkout Service
  tags: [java, payments]
spec:
  type: service
  lifecycle: production
  owner: team-a
  system: shop
  providesApis: [checkout-api]
  dependsOn: [resource:orders-db]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: cart
  tags: [typescript]
spec:
  type: website
  lifecycle: experimental
  owner: team-b
  system: shop
  consumesApis: [checkout-api]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: Billing-Worker
  tags: [java]
  labels:
    tier: backend
spec:
  type: service
  lifecycle: production
  owner: group:default/team-b
  dependsOn: [component:checkout]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
spec:
  type: library
  lifecycle: deprecated
  owner: user:alice
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: checkout-api
spec:
  type: openapi
  lifecycle: production
  owner: team-a
  system: shop
  definition: 'openapi: 3.0.0'
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata:
  name: orders-db
spec:
  type: database
  owner: team-a
  system: shop
";

/// Every entity of the fixture catalog, in Backstage's default (entity ref) order.
const FIXTURE_REFS: &[&str] = &[
    "api:default/checkout-api",
    "component:default/billing-worker",
    "component:default/cart",
    "component:default/checkout",
    "component:default/ledger",
    "domain:default/commerce",
    "group:default/team-a",
    "group:default/team-b",
    "location:default/fixture-root",
    "location:default/generated-<sha1>",
    "resource:default/orders-db",
    "system:default/shop",
    "user:default/alice",
    "user:default/bob",
];

/// A server with the fixture catalog loaded, and the scratch directory it reads.
struct Fixture {
    app: TestApp,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with("").await
    }

    /// Starts with the fixture catalog and `extra` YAML merged over the configuration.
    async fn start_with(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        write_file(dir.path(), "all.yaml", ROOT_YAML);
        write_file(dir.path(), "org.yaml", ORG_YAML);
        write_file(dir.path(), "software.yaml", SOFTWARE_YAML);
        let config = format!(
            "catalog:\n  locations:\n    - type: file\n      target: '{}'\n{extra}",
            dir.path().join("all.yaml").display()
        );
        let app = spawn_with(&config).await;
        app.process_due().await;
        Fixture { app, dir }
    }

    fn scrub(&self, v: Value) -> Value {
        scrub(
            v,
            &[(self.dir.path().display().to_string(), "<fixtures>".into())],
        )
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn write_file(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::write(&p, content).expect("write fixture");
    p
}

/// Replaces what differs between runs with stable placeholders.
fn scrub(v: Value, replace: &[(String, String)]) -> Value {
    fn text(s: &str, replace: &[(String, String)]) -> String {
        let mut s = s.to_string();
        for (from, to) in replace {
            s = s.replace(from.as_str(), to);
        }
        // Generated Location names carry a SHA-1 of the (scratch) target.
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(pos) = rest.find("generated-") {
            let after = &rest[pos + "generated-".len()..];
            out.push_str(&rest[..pos]);
            let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
            if hex == 40 {
                out.push_str("generated-<sha1>");
                rest = &after[40..];
            } else {
                out.push_str("generated-");
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
    fn walk(key: Option<&str>, v: Value, replace: &[(String, String)]) -> Value {
        match (key, v) {
            (Some("uid"), Value::String(_)) => json!("[uid]"),
            (Some("etag"), Value::String(_)) => json!("[etag]"),
            (Some("id"), Value::String(s)) if uuid::Uuid::parse_str(&s).is_ok() => json!("[id]"),
            (Some("nextCursor"), Value::String(_)) => json!("[cursor]"),
            (Some("prevCursor"), Value::String(_)) => json!("[cursor]"),
            (_, Value::String(s)) => Value::String(text(&s, replace)),
            (_, Value::Array(items)) => {
                Value::Array(items.into_iter().map(|i| walk(None, i, replace)).collect())
            }
            (_, Value::Object(map)) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = walk(Some(&k), v, replace);
                        (text(&k, replace), v)
                    })
                    .collect(),
            ),
            (_, other) => other,
        }
    }
    walk(None, v, replace)
}

/// `kind:namespace/name` of an entity, lowercased, as the catalog compares refs.
fn entity_ref(e: &Value) -> String {
    format!(
        "{}:{}/{}",
        e["kind"].as_str().unwrap_or_default(),
        e["metadata"]["namespace"].as_str().unwrap_or("default"),
        e["metadata"]["name"].as_str().unwrap_or_default()
    )
    .to_lowercase()
}

fn refs(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| a.iter().map(entity_ref).collect())
        .unwrap_or_default()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Checks Backstage's error shape and returns `(name, message)`.
fn assert_error_shape(body: &Value, status: u16, method: &str, path: &str) -> (String, String) {
    assert_eq!(body["response"]["statusCode"], status, "{body}");
    assert_eq!(body["request"]["method"], method, "{body}");
    assert_eq!(body["request"]["url"], path, "{body}");
    let name = body["error"]["name"]
        .as_str()
        .expect("error.name")
        .to_string();
    let message = body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_string();
    assert!(!message.is_empty(), "{body}");
    let expected_name = match status {
        400 => "InputError",
        401 => "AuthenticationError",
        403 => "NotAllowedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        _ => name.as_str(),
    };
    assert_eq!(name, expected_name, "{body}");
    (name, message)
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn entity(app: &TestApp, kind: &str, name: &str) -> Value {
    let (status, body) = app
        .get_json(&format!(
            "/api/catalog/entities/by-name/{kind}/default/{name}"
        ))
        .await;
    assert_eq!(status, 200, "{kind}/{name}: {body}");
    body
}

// -------------------------------------------------- a tiny HTTP file server

/// Serves fixed files over HTTP on 127.0.0.1, for `url` locations.
struct FileServer {
    addr: std::net::SocketAddr,
    files: Arc<served::Files>,
    task: tokio::task::JoinHandle<()>,
}

mod served {
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Files(pub Mutex<HashMap<String, String>>);
}

impl FileServer {
    async fn start(files: &[(&str, &str)]) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let store = Arc::new(served::Files::default());
        for (p, c) in files {
            store
                .0
                .lock()
                .expect("lock")
                .insert(p.to_string(), c.to_string());
        }
        let shared = store.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let files = shared.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_string();
                    let found = files.0.lock().expect("lock").get(&path).cloned();
                    let (status, body) = match found {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", "not found".to_string()),
                    };
                    let res = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(res.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FileServer {
            addr,
            files: store,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, path: &str, content: &str) {
        self.files
            .0
            .lock()
            .expect("lock")
            .insert(path.to_string(), content.to_string());
    }

    fn allow_yaml(&self) -> String {
        format!(
            "backend:\n  reading:\n    allow:\n      - host: '{}'\n",
            self.addr
        )
    }

    fn scrub_pairs(&self) -> Vec<(String, String)> {
        vec![(self.addr.to_string(), "<files>".to_string())]
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const URL_CATALOG: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: url-a
spec:
  type: service
  lifecycle: production
  owner: team-x
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: url-b
spec:
  type: website
  lifecycle: experimental
  owner: team-x
";

// --------------------------------------------------------- GET /entities

#[tokio::test]
async fn list_entities_returns_every_entity_in_ref_order() {
    let fx = Fixture::start().await;
    let (status, body) = fx.app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 200);
    let body = fx.scrub(body);
    assert_eq!(refs(&body), FIXTURE_REFS);
    insta::assert_json_snapshot!("entities_all", body);
    fx.stop().await;
}

#[tokio::test]
async fn list_entities_filters() {
    let fx = Fixture::start().await;
    let cases: &[(&str, &[&str])] = &[
        (
            "filter=kind=component",
            &["Billing-Worker", "cart", "checkout", "ledger"],
        ),
        // AND within a filter, case-insensitive keys and values.
        (
            "filter=Kind=COMPONENT,spec.lifecycle=Production",
            &["Billing-Worker", "checkout"],
        ),
        // OR across filter parameters.
        (
            "filter=kind=api&filter=kind=resource",
            &["checkout-api", "orders-db"],
        ),
        // The same key twice in one filter matches either value.
        (
            "filter=kind=component,spec.type=website,spec.type=library",
            &["cart", "ledger"],
        ),
        // A key alone tests existence.
        (
            "filter=kind=component,metadata.tags",
            &["Billing-Worker", "cart", "checkout"],
        ),
        ("filter=spec.system,kind=component", &["cart", "checkout"]),
        ("filter=metadata.title", &["checkout"]),
        // Array items.
        ("filter=metadata.tags=JAVA", &["Billing-Worker", "checkout"]),
        ("filter=metadata.tags.java", &["Billing-Worker", "checkout"]),
        (
            "filter=metadata.tags.java=true",
            &["Billing-Worker", "checkout"],
        ),
        ("filter=spec.memberOf=team-b", &["bob"]),
        ("filter=metadata.labels.tier=backend", &["Billing-Worker"]),
        ("filter=metadata.name=billing-worker", &["Billing-Worker"]),
        (
            "filter=metadata.namespace=default,kind=user",
            &["alice", "bob"],
        ),
        // Relations, with full refs, in either case.
        (
            "filter=relations.ownedBy=group:default/team-b",
            &["Billing-Worker", "cart"],
        ),
        (
            "filter=relations.ownedby=GROUP:DEFAULT/TEAM-B",
            &["Billing-Worker", "cart"],
        ),
        ("filter=relations.ownedBy=user:default/alice", &["ledger"]),
        ("filter=relations.hasMember=user:default/alice", &["team-a"]),
        ("filter=relations.childOf=group:default/team-a", &["team-b"]),
        (
            "filter=relations.apiConsumedBy=component:default/cart",
            &["checkout-api"],
        ),
        (
            "filter=relations.hasPart=component:default/checkout",
            &["shop"],
        ),
        // Values are matched whole, not as prefixes.
        ("filter=metadata.name=check", &[]),
        ("filter=kind=template", &[]),
        ("filter=spec.nothing", &[]),
        // Empty statements are ignored.
        ("filter=kind=domain,,", &["commerce"]),
    ];
    for (query, expected) in cases {
        let (status, body) = fx
            .app
            .get_json(&format!("/api/catalog/entities?{query}"))
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(
            sorted(names(&body)),
            sorted(expected.iter().map(|s| s.to_string()).collect()),
            "{query}"
        );
    }
    fx.stop().await;
}

#[tokio::test]
async fn list_entities_fields_projection() {
    let fx = Fixture::start().await;
    let (status, body) = fx
        .app
        .get_json("/api/catalog/entities?filter=kind=component&fields=kind,metadata.name,spec.type,metadata.tags")
        .await;
    assert_eq!(status, 200);
    for e in body.as_array().expect("array") {
        let keys: BTreeSet<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&BTreeSet::from(["kind", "metadata", "spec"])),
            "{e}"
        );
    }
    insta::assert_json_snapshot!("entities_fields", body);
    // Repeated `fields` parameters add up.
    let (status, repeated) = fx
        .app
        .get_json("/api/catalog/entities?filter=kind=component&fields=kind,metadata.name&fields=spec.type&fields=metadata.tags")
        .await;
    assert_eq!(status, 200);
    assert_eq!(repeated, body);
    fx.stop().await;
}

/// The `after` value of a `Link: <...>; rel="next"` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    let target = link.strip_prefix('<')?.split('>').next()?.to_string();
    assert!(target.starts_with("/api/catalog/entities?"), "{link}");
    Some(target)
}

#[tokio::test]
async fn list_entities_paging_with_link_header() {
    let fx = Fixture::start().await;
    let (_, all) = fx.app.get_json("/api/catalog/entities").await;
    let all = refs(&fx.scrub(all));
    for limit in [1, 3, 5, 14, 20] {
        let mut path = format!("/api/catalog/entities?limit={limit}");
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (status, headers, body) =
                send(&fx.app, reqwest::Method::GET, &path, None, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            let page = refs(&fx.scrub(body));
            assert!(page.len() <= limit, "{path}");
            seen.extend(page);
            pages += 1;
            match next_link(&headers) {
                Some(next) => {
                    assert!(next.contains(&format!("limit={limit}")), "{next}");
                    path = next;
                }
                None => break,
            }
            assert!(pages <= all.len(), "paging does not end");
        }
        assert_eq!(seen, all, "limit {limit}");
        assert_eq!(pages, all.len().div_ceil(limit), "limit {limit}");
    }
    // offset without limit; offset past the end.
    let (_, body) = fx.app.get_json("/api/catalog/entities?offset=10").await;
    assert_eq!(refs(&fx.scrub(body)), all[10..]);
    let (status, headers, body) = send(
        &fx.app,
        reqwest::Method::GET,
        "/api/catalog/entities?offset=12&limit=5",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(refs(&fx.scrub(body)), all[12..]);
    assert!(next_link(&headers).is_none());
    let (_, body) = fx.app.get_json("/api/catalog/entities?offset=99").await;
    assert_eq!(body, json!([]));
    // The next link keeps the filter and the order.
    let (status, headers, body) = send(
        &fx.app,
        reqwest::Method::GET,
        "/api/catalog/entities?filter=kind=component&order=desc:metadata.name&limit=3",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(names(&body), ["ledger", "checkout", "cart"]);
    let next = next_link(&headers).expect("a next page");
    let (_, headers, body) = send(&fx.app, reqwest::Method::GET, &next, None, None).await;
    assert_eq!(names(&body), ["Billing-Worker"]);
    assert!(next_link(&headers).is_none());
    fx.stop().await;
}

#[tokio::test]
async fn list_entities_order() {
    let fx = Fixture::start().await;
    let get = |q: &'static str| {
        let app = &fx.app;
        async move {
            let (status, body) = app.get_json(&format!("/api/catalog/entities?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            names(&body)
        }
    };
    assert_eq!(
        get("filter=kind=component&order=asc:metadata.name").await,
        ["Billing-Worker", "cart", "checkout", "ledger"]
    );
    assert_eq!(
        get("filter=kind=component&order=desc:metadata.name").await,
        ["ledger", "checkout", "cart", "Billing-Worker"]
    );
    // Later order fields break ties of earlier ones.
    assert_eq!(
        get("filter=kind=component&order=desc:spec.type&order=asc:metadata.name").await,
        ["cart", "Billing-Worker", "checkout", "ledger"]
    );
    assert_eq!(
        get("filter=kind=component&order=desc:spec.type&order=desc:metadata.name").await,
        ["cart", "checkout", "Billing-Worker", "ledger"]
    );
    // Entities without the field come last, whatever the direction.
    for q in [
        "filter=kind=component&order=asc:metadata.title",
        "filter=kind=component&order=desc:metadata.title",
    ] {
        let got = get(q).await;
        assert_eq!(got[0], "checkout", "{q}");
        assert_eq!(
            sorted(got[1..].to_vec()),
            ["Billing-Worker", "cart", "ledger"],
            "{q}"
        );
    }
    fx.stop().await;
}

// ------------------------------------------------------ GET /entities/by-query

async fn query(app: &TestApp, q: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/api/catalog/entities/by-query?{q}"))
        .await;
    assert_eq!(status, 200, "{q}: {body}");
    body
}

#[tokio::test]
async fn by_query_shape_and_cursors() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let first = query(
        app,
        "filter=kind=component&orderField=metadata.name,asc&limit=2",
    )
    .await;
    assert_eq!(first["totalItems"], 4);
    assert_eq!(names(&first["items"]), ["Billing-Worker", "cart"]);
    assert!(first["pageInfo"]["prevCursor"].is_null());
    insta::assert_json_snapshot!("by_query_first_page", fx.scrub(first.clone()));

    let next = first["pageInfo"]["nextCursor"]
        .as_str()
        .expect("nextCursor");
    let second = query(app, &format!("cursor={}", enc(next))).await;
    assert_eq!(names(&second["items"]), ["checkout", "ledger"]);
    assert_eq!(second["totalItems"], 4);
    assert!(second["pageInfo"]["nextCursor"].is_null(), "{second}");
    insta::assert_json_snapshot!(
        "by_query_last_page",
        fx.scrub(json!({"totalItems": second["totalItems"], "pageInfo": second["pageInfo"]}))
    );

    let prev = second["pageInfo"]["prevCursor"]
        .as_str()
        .expect("prevCursor");
    let back = query(app, &format!("cursor={}", enc(prev))).await;
    assert_eq!(back["items"], first["items"]);
    assert!(back["pageInfo"]["prevCursor"].is_null(), "{back}");
    assert!(back["pageInfo"]["nextCursor"].is_string(), "{back}");

    // Every page size, both directions, both orders: forward then back again.
    for order in ["asc", "desc"] {
        let q =
            format!("filter=kind=component,kind=user,kind=group&orderField=metadata.name,{order}");
        let all = names(&query(app, &format!("{q}&limit=100")).await["items"]);
        assert_eq!(all.len(), 8);
        let mut expected = all.clone();
        expected.sort_by_key(|n| n.to_lowercase());
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(all, expected);
        for limit in 1..=5 {
            let mut pages = vec![query(app, &format!("{q}&limit={limit}")).await];
            while let Some(c) = pages
                .last()
                .and_then(|p| p["pageInfo"]["nextCursor"].as_str())
            {
                let c = enc(c);
                pages.push(query(app, &format!("cursor={c}&limit={limit}")).await);
                assert!(pages.len() <= all.len(), "paging does not end");
            }
            let forward: Vec<String> = pages.iter().flat_map(|p| names(&p["items"])).collect();
            assert_eq!(forward, all, "{order} limit {limit}");
            assert!(pages.iter().all(|p| p["totalItems"] == 8));
            // Back from the last page to the first.
            let mut backward = names(&pages.last().expect("a page")["items"]);
            let mut page = pages.last().expect("a page").clone();
            while let Some(c) = page["pageInfo"]["prevCursor"].as_str() {
                page = query(app, &format!("cursor={}&limit={limit}", enc(c))).await;
                let mut items = names(&page["items"]);
                items.extend(backward);
                backward = items;
            }
            assert_eq!(backward, all, "{order} limit {limit} backwards");
        }
    }
    fx.stop().await;
}

#[tokio::test]
async fn by_query_full_text_and_fields() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let cases: &[(&str, &[&str])] = &[
        (
            "fullTextFilterTerm=CHECK&fullTextFilterFields=metadata.name&orderField=metadata.name,asc",
            &["checkout", "checkout-api"],
        ),
        // Without fields, the term applies to the order field.
        (
            "fullTextFilterTerm=out&orderField=metadata.name,asc",
            &["checkout", "checkout-api"],
        ),
        (
            "fullTextFilterTerm=serv&fullTextFilterFields=spec.type,metadata.title&orderField=metadata.name,asc",
            &["Billing-Worker", "checkout"],
        ),
        // The term combines with the filter.
        (
            "filter=kind=api&fullTextFilterTerm=check&fullTextFilterFields=metadata.name",
            &["checkout-api"],
        ),
        (
            "fullTextFilterTerm=zzz&fullTextFilterFields=metadata.name",
            &[],
        ),
        // A blank term filters nothing.
        (
            "filter=kind=user&fullTextFilterTerm=%20&orderField=metadata.name,asc",
            &["alice", "bob"],
        ),
    ];
    for (q, expected) in cases {
        let body = query(app, q).await;
        assert_eq!(names(&body["items"]), *expected, "{q}");
        assert_eq!(body["totalItems"], expected.len(), "{q}");
    }
    let body = query(
        app,
        "filter=kind=user&orderField=metadata.name,desc&fields=metadata.name,spec",
    )
    .await;
    insta::assert_json_snapshot!("by_query_fields", body);
    fx.stop().await;
}

// ------------------------------------------- by-uid, by-name, ancestry, by-refs

#[tokio::test]
async fn by_uid_by_name_and_ancestry() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let checkout = entity(app, "component", "checkout").await;
    let uid = checkout["metadata"]["uid"].as_str().expect("uid");
    let (status, by_uid) = app
        .get_json(&format!("/api/catalog/entities/by-uid/{uid}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_uid, checkout);
    insta::assert_json_snapshot!("entity_by_name", fx.scrub(checkout.clone()));
    // Refs compare case-insensitively.
    let (status, same) = app
        .get_json("/api/catalog/entities/by-name/Component/DEFAULT/Checkout")
        .await;
    assert_eq!(status, 200);
    assert_eq!(same, checkout);
    let worker = entity(app, "component", "billing-worker").await;
    assert_eq!(worker["metadata"]["name"], "Billing-Worker");

    let (status, body) = app
        .get_json("/api/catalog/entities/by-name/component/default/checkout/ancestry")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["rootEntityRef"], "component:default/checkout");
    let chain: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| entity_ref(&i["entity"]))
        .collect();
    assert_eq!(
        chain[..2],
        [
            "component:default/checkout",
            "location:default/fixture-root"
        ]
    );
    insta::assert_json_snapshot!("ancestry", fx.scrub(body));

    for path in [
        "/api/catalog/entities/by-uid/00000000-0000-0000-0000-000000000000",
        "/api/catalog/entities/by-name/component/default/nothing",
        "/api/catalog/entities/by-name/component/other/checkout",
        "/api/catalog/entities/by-name/component/default/nothing/ancestry",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_error_shape(&body, 404, "GET", path);
    }
    fx.stop().await;
}

#[tokio::test]
async fn by_refs_keeps_request_order_with_nulls() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let request = json!({"entityRefs": [
        "group:default/team-b",
        "component:default/missing",
        "api:checkout-api",
        "Component:Default/CHECKOUT",
        "not a valid ref:/",
    ]});
    let (status, body) = app
        .post_json("/api/catalog/entities/by-refs", &request)
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    assert_eq!(entity_ref(&items[0]), "group:default/team-b");
    assert!(items[1].is_null());
    assert_eq!(entity_ref(&items[2]), "api:default/checkout-api");
    assert_eq!(entity_ref(&items[3]), "component:default/checkout");
    assert!(items[4].is_null());
    assert_eq!(items[3], entity(app, "component", "checkout").await);

    let (status, body) = app
        .post_json(
            "/api/catalog/entities/by-refs",
            &json!({"entityRefs": ["user:alice", "user:nobody", "group:team-a"], "fields": ["kind", "metadata.name"]}),
        )
        .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("by_refs_fields", body);

    // A filter in the query string turns non-matching entities into null.
    let (status, body) = app
        .post_json(
            "/api/catalog/entities/by-refs?filter=kind=user",
            &json!({"entityRefs": ["user:alice", "group:team-a"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&json!([body["items"][0]])), ["alice"]);
    assert!(body["items"][1].is_null());

    let (status, body) = app
        .post_json("/api/catalog/entities/by-refs", &json!({"entityRefs": []}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"items": []}));
    fx.stop().await;
}

#[tokio::test]
async fn entity_facets() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let (status, body) = app
        .get_json("/api/catalog/entity-facets?facet=kind&facet=metadata.tags&facet=spec.lifecycle&facet=relations.ownedBy")
        .await;
    assert_eq!(status, 200);
    let kinds: BTreeMap<String, u64> = body["facets"]["kind"]
        .as_array()
        .expect("kind facet")
        .iter()
        .map(|f| {
            (
                f["value"].as_str().expect("value").to_string(),
                f["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(kinds["Component"], 4);
    assert_eq!(kinds["Location"], 2);
    assert_eq!(kinds.values().sum::<u64>(), FIXTURE_REFS.len() as u64);
    insta::assert_json_snapshot!("facets", body);

    let (status, body) = app
        .get_json("/api/catalog/entity-facets?facet=spec.type&filter=kind=component")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"facets": {"spec.type": [
            {"value": "service", "count": 2},
            {"value": "library", "count": 1},
            {"value": "website", "count": 1},
        ]}})
    );
    let (status, body) = app
        .get_json("/api/catalog/entity-facets?facet=spec.nothing")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"facets": {"spec.nothing": []}}));
    fx.stop().await;
}

// ------------------------------------------------------------ entity writes

#[tokio::test]
async fn delete_by_uid_and_refresh() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let cart = entity(app, "component", "cart").await;
    let uid = cart["metadata"]["uid"].as_str().expect("uid").to_string();
    let path = format!("/api/catalog/entities/by-uid/{uid}");
    let (status, _) = app.delete(&path).await;
    assert_eq!(status, 204);
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/cart")
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.delete(&path).await;
    assert_eq!(status, 404);
    assert_error_shape(&body, 404, "DELETE", &path);
    // The relations it originated are gone from the entities at their other end.
    for (kind, name) in [
        ("api", "checkout-api"),
        ("group", "team-b"),
        ("system", "shop"),
    ] {
        let e = entity(app, kind, name).await;
        let relations = e["relations"].as_array().expect("relations");
        assert!(
            !relations
                .iter()
                .any(|r| r["targetRef"] == "component:default/cart"),
            "{kind}:{name} still points at the deleted entity: {e}"
        );
    }
    let (_, found) = app
        .get_json("/api/catalog/entities?filter=relations.apiConsumedBy=component:default/cart")
        .await;
    assert_eq!(found, json!([]));

    // Refresh re-reads the entity's location now: new content shows up, and the
    // deleted entity, still in its file, comes back.
    write_file(
        fx.dir.path(),
        "software.yaml",
        &SOFTWARE_YAML.replace(
            "lifecycle: production\n  owner: team-a\n  system: shop\n  providesApis",
            "lifecycle: experimental\n  owner: team-a\n  system: shop\n  providesApis",
        ),
    );
    let (status, _) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:default/checkout"}),
        )
        .await;
    assert_eq!(status, 200);
    let checkout = entity(app, "component", "checkout").await;
    assert_eq!(checkout["spec"]["lifecycle"], "experimental");
    let cart = entity(app, "component", "cart").await;
    assert_ne!(cart["metadata"]["uid"], uid);

    let (status, body) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:default/nothing"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_error_shape(&body, 404, "POST", "/api/catalog/refresh");
    fx.stop().await;
}

// ----------------------------------------------------------------- locations

#[tokio::test]
async fn locations_lifecycle() {
    let files = FileServer::start(&[("/catalog.yaml", URL_CATALOG)]).await;
    let app = spawn_with(&files.allow_yaml()).await;
    let target = files.url("/catalog.yaml");
    let loc = json!({"type": "url", "target": target});
    let pairs = files.scrub_pairs();

    // A dry run reads the location and stores nothing.
    let (status, dry) = app
        .post_json("/api/catalog/locations?dryRun=true", &loc)
        .await;
    assert_eq!(status, 201, "{dry}");
    assert_eq!(dry["exists"], false);
    insta::assert_json_snapshot!("location_dry_run", scrub(dry, &pairs));
    let (_, list) = app.get_json("/api/catalog/entities").await;
    assert_eq!(list, json!([]));
    let (_, list) = app.get_json("/api/catalog/locations").await;
    assert_eq!(list, json!([]));

    // Registering stores the location and its entities before it answers.
    let (status, created) = app.post_json("/api/catalog/locations", &loc).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("exists").is_none(), "{created}");
    let id = created["location"]["id"].as_str().expect("id").to_string();
    assert_eq!(created["location"]["type"], "url");
    assert_eq!(created["location"]["target"], target);
    insta::assert_json_snapshot!("location_created", scrub(created.clone(), &pairs));
    let a = entity(&app, "component", "url-a").await;
    assert_eq!(
        a["metadata"]["annotations"]["backstage.io/managed-by-location"],
        format!("url:{target}")
    );

    // The same target again: 409, while a dry run says it exists.
    let (status, body) = app.post_json("/api/catalog/locations", &loc).await;
    assert_eq!(status, 409);
    assert_error_shape(&body, 409, "POST", "/api/catalog/locations");
    let (status, dry) = app
        .post_json("/api/catalog/locations?dryRun=true", &loc)
        .await;
    assert_eq!(status, 201);
    assert_eq!(dry["exists"], true);
    assert_eq!(dry["location"]["id"], id.as_str());

    let (status, list) = app.get_json("/api/catalog/locations").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([{"data": created["location"]}]));
    insta::assert_json_snapshot!("locations_list", scrub(list, &pairs));
    let (status, one) = app.get_json(&format!("/api/catalog/locations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one, created["location"]);
    let (status, by_entity) = app
        .get_json("/api/catalog/locations/by-entity/component/default/url-b")
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_entity, created["location"]);

    // Deleting the location deletes its entities.
    let (status, _) = app.delete(&format!("/api/catalog/locations/{id}")).await;
    assert_eq!(status, 204);
    let (_, list) = app.get_json("/api/catalog/entities").await;
    assert_eq!(list, json!([]));
    for path in [
        format!("/api/catalog/locations/{id}"),
        "/api/catalog/locations/by-entity/component/default/url-b".to_string(),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 404, "{path}");
        assert_error_shape(&body, 404, "GET", &path);
    }
    let path = format!("/api/catalog/locations/{id}");
    let (status, body) = app.delete(&path).await;
    assert_eq!(status, 404);
    assert_error_shape(&body, 404, "DELETE", &path);

    // What cannot be registered.
    for bad in [
        json!({"type": "file", "target": "/etc/passwd"}),
        json!({"type": "url", "target": files.url("/missing.yaml")}),
        json!({"type": "url", "target": "http://disallowed.example/catalog.yaml"}),
        json!({"type": "url", "target": "not a url"}),
        json!({"type": "url", "target": ""}),
        json!({"type": "url"}),
    ] {
        let (status, body) = app.post_json("/api/catalog/locations", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error_shape(&body, 400, "POST", "/api/catalog/locations");
    }
    let (_, list) = app.get_json("/api/catalog/locations").await;
    assert_eq!(list, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn configured_locations_are_listed_and_cannot_be_deleted() {
    let fx = Fixture::start().await;
    let (status, list) = fx.app.get_json("/api/catalog/locations").await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("locations_configured", fx.scrub(list.clone()));
    let id = list[0]["data"]["id"].as_str().expect("id");
    let path = format!("/api/catalog/locations/{id}");
    let (status, body) = fx.app.delete(&path).await;
    assert_eq!(status, 403);
    assert_error_shape(&body, 403, "DELETE", &path);
    let (status, by_entity) = fx
        .app
        .get_json("/api/catalog/locations/by-entity/user/default/alice")
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_entity, list[0]["data"]);
    fx.stop().await;
}

#[tokio::test]
async fn analyze_location() {
    let files = FileServer::start(&[("/catalog.yaml", URL_CATALOG)]).await;
    let app = spawn_with(&files.allow_yaml()).await;
    let pairs = files.scrub_pairs();
    let request = json!({"location": {"type": "url", "target": files.url("/catalog.yaml")}});
    let (status, body) = app
        .post_json("/api/catalog/analyze-location", &request)
        .await;
    assert_eq!(status, 200, "{body}");
    let found: Vec<String> = body["existingEntityFiles"]
        .as_array()
        .expect("existingEntityFiles")
        .iter()
        .map(|f| entity_ref(&f["entity"]))
        .collect();
    assert_eq!(
        found,
        ["component:default/url-a", "component:default/url-b"]
    );
    assert!(body["existingEntityFiles"]
        .as_array()
        .expect("files")
        .iter()
        .all(|f| f["isRegistered"] == false));
    insta::assert_json_snapshot!("analyze_location", scrub(body, &pairs));

    let (status, _) = app
        .post_json("/api/catalog/locations", &request["location"])
        .await;
    assert_eq!(status, 201);
    let (_, body) = app
        .post_json("/api/catalog/analyze-location", &request)
        .await;
    assert!(body["existingEntityFiles"]
        .as_array()
        .expect("files")
        .iter()
        .all(|f| f["isRegistered"] == true));

    for bad in [
        json!({"location": {"type": "url", "target": files.url("/missing.yaml")}}),
        json!({"location": {"type": "url", "target": "http://disallowed.example/x.yaml"}}),
        json!({"location": {"type": "file", "target": "/etc/hostname"}}),
        json!({}),
    ] {
        let (status, body) = app.post_json("/api/catalog/analyze-location", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error_shape(&body, 400, "POST", "/api/catalog/analyze-location");
    }
    app.stop().await;
}

#[tokio::test]
async fn url_location_refresh_picks_up_changes() {
    let files = FileServer::start(&[("/catalog.yaml", URL_CATALOG)]).await;
    let app = spawn_with(&files.allow_yaml()).await;
    let (status, _) = app
        .post_json(
            "/api/catalog/locations",
            &json!({"type": "url", "target": files.url("/catalog.yaml")}),
        )
        .await;
    assert_eq!(status, 201);
    files.set(
        "/catalog.yaml",
        &URL_CATALOG.replace("name: url-b", "name: url-c"),
    );
    let (status, _) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:url-a"}),
        )
        .await;
    assert_eq!(status, 200);
    entity(&app, "component", "url-c").await;
    let b = entity(&app, "component", "url-b").await;
    assert_eq!(
        b["metadata"]["annotations"]["backstage.io/orphan"], "true",
        "{b}"
    );
    app.stop().await;
}

// ------------------------------------------------------------ validate-entity

#[tokio::test]
async fn validate_entity() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let valid = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "fresh"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    });
    let (status, _) = app
        .post_json(
            "/api/catalog/validate-entity",
            &json!({"entity": valid, "location": "url:https://example.com/catalog-info.yaml"}),
        )
        .await;
    assert_eq!(status, 200);
    // Validation stores nothing.
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/fresh")
        .await;
    assert_eq!(status, 404);

    let invalid = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "bad name!"},
        "spec": {"lifecycle": "production", "owner": "team-a"},
    });
    let (status, body) = app
        .post_json(
            "/api/catalog/validate-entity",
            &json!({"entity": invalid, "location": "url:https://example.com/catalog-info.yaml"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_error_shape(&body, 400, "POST", "/api/catalog/validate-entity");
    let errors = body["errors"].as_array().expect("errors");
    assert!(!errors.is_empty());
    assert!(errors
        .iter()
        .all(|e| e["name"].is_string() && e["message"].is_string()));
    insta::assert_json_snapshot!("validate_entity_invalid", body);

    // Placeholders are resolved as ingestion resolves them: through the allow-list only,
    // and never from the server's own files.
    let with_placeholder = |location: &str| {
        json!({
            "entity": {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "API",
                "metadata": {"name": "placeholder-api"},
                "spec": {"type": "openapi", "lifecycle": "production", "owner": "team-a",
                         "definition": {"$text": "./openapi.yaml"}},
            },
            "location": location,
        })
    };
    for location in [
        "url:https://example.com/catalog-info.yaml",
        "file:/etc/catalog-info.yaml",
    ] {
        let (status, body) = app
            .post_json("/api/catalog/validate-entity", &with_placeholder(location))
            .await;
        assert_eq!(status, 400, "{location}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("$text") && message.contains("openapi.yaml"),
            "{location}: {message}"
        );
    }

    for bad in [
        json!({"entity": valid, "location": "no-type"}),
        json!({"entity": "not an object", "location": "url:https://example.com/x.yaml"}),
        json!({"entity": {"kind": "Nope", "apiVersion": "x/v1", "metadata": {"name": "x"}}, "location": "url:https://example.com/x.yaml"}),
        json!({"location": "url:https://example.com/x.yaml"}),
    ] {
        let (status, body) = app.post_json("/api/catalog/validate-entity", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error_shape(&body, 400, "POST", "/api/catalog/validate-entity");
    }
    fx.stop().await;
}

// ------------------------------------------------------------------- OpenAPI

#[tokio::test]
async fn openapi_document_describes_served_routes() {
    let fx = Fixture::start().await;
    let (status, doc) = fx.app.get_json("/api/catalog/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_some() {
                listed.push(format!("{} {path}", method.to_uppercase()));
                // Every documented route exists on the server.
                let concrete = path
                    .replace("{uid}", "00000000-0000-0000-0000-000000000000")
                    .replace("{kind}", "component")
                    .replace("{namespace}", "default")
                    .replace("{name}", "nothing")
                    .replace("{id}", "00000000-0000-0000-0000-000000000000");
                let m =
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let (status, _, body) = send(
                    &fx.app,
                    m,
                    &format!("/api/catalog{concrete}"),
                    (method == "post").then_some("{}"),
                    None,
                )
                .await;
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with("No route"),
                    "{method} {path} is documented but not served: {body}"
                );
                assert!(status < 500, "{method} {path}: {status} {body}");
            }
        }
    }
    listed.sort();
    insta::assert_json_snapshot!("openapi_operations", listed);
    fx.stop().await;
}

// ------------------------------------------------------------ errors and auth

#[tokio::test]
async fn error_shapes() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let mut shapes = BTreeMap::new();
    for (label, method, path, body, status) in [
        (
            "400 bad limit",
            reqwest::Method::GET,
            "/api/catalog/entities?limit=abc",
            None,
            400,
        ),
        (
            "404 unknown uid",
            reqwest::Method::GET,
            "/api/catalog/entities/by-uid/nope",
            None,
            404,
        ),
        (
            "404 unknown route",
            reqwest::Method::GET,
            "/api/catalog/nothing-here",
            None,
            404,
        ),
        (
            "400 malformed body",
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs",
            Some("{\"entityRefs\": ["),
            400,
        ),
    ] {
        let (got, _, body) = send(app, method.clone(), path, body, None).await;
        assert_eq!(got, status, "{label}: {body}");
        assert_error_shape(&body, status, method.as_str(), path);
        shapes.insert(label, body);
    }
    insta::assert_json_snapshot!("error_shapes", shapes);
    fx.stop().await;
}

const TOKEN: &str = "s3cret-token-for-tests";

#[tokio::test]
async fn static_token_auth() {
    let fx = Fixture::start_with(&format!(
        "backend:\n  auth:\n    externalAccess:\n      - type: static\n        options:\n          token: {TOKEN}\n          subject: ci-bot\n"
    ))
    .await;
    let app = &fx.app;
    let mut shapes = BTreeMap::new();
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/catalog/entities", None),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-name/component/default/checkout",
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs",
            Some("{\"entityRefs\": [\"component:checkout\"]}"),
        ),
        (reqwest::Method::GET, "/api/catalog/locations", None),
    ] {
        let (status, _, none) = send(app, method.clone(), path, body, None).await;
        assert_eq!(status, 401, "{path} without a token");
        let (_, message) = assert_error_shape(&none, 401, method.as_str(), path);
        shapes.insert("missing", message);
        for wrong in ["wrong-token-value", "s3cret-token-for-test", ""] {
            let (status, _, bad) = send(app, method.clone(), path, body, Some(wrong)).await;
            assert_eq!(status, 401, "{path} with {wrong:?}");
            let (_, message) = assert_error_shape(&bad, 401, method.as_str(), path);
            shapes.insert("wrong", message);
        }
        let (status, _, ok) = send(app, method.clone(), path, body, Some(TOKEN)).await;
        assert_eq!(status, 200, "{path} with the token: {ok}");
    }
    // Not a bearer token.
    let res = app
        .client
        .get(app.url("/api/catalog/entities"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 401);
    // Health stays open.
    let (status, _) = app.get_json("/.backstage/health/v1/liveness").await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("auth_messages", shapes);
    fx.stop().await;

    let fx = Fixture::start_with(&format!(
        "backend:\n  auth:\n    dangerouslyDisableDefaultAuthPolicy: true\n    externalAccess:\n      - type: static\n        options:\n          token: {TOKEN}\n          subject: ci-bot\n"
    ))
    .await;
    let (status, _) = fx.app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn readonly_refuses_writes() {
    let files = FileServer::start(&[("/catalog.yaml", URL_CATALOG)]).await;
    let fx = Fixture::start_with(&format!("  readonly: true\n{}", files.allow_yaml())).await;
    let app = &fx.app;
    let cart = entity(app, "component", "cart").await;
    let uid = cart["metadata"]["uid"].as_str().expect("uid");
    let (_, locations) = app.get_json("/api/catalog/locations").await;
    let loc_id = locations[0]["data"]["id"].as_str().expect("id");
    let loc = json!({"type": "url", "target": files.url("/catalog.yaml")}).to_string();
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/catalog/locations".to_string(),
            Some(loc.as_str()),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/catalog/locations/{loc_id}"),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/catalog/entities/by-uid/{uid}"),
            None,
        ),
    ] {
        let (status, _, body) = send(app, method.clone(), &path, body, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_error_shape(&body, 403, method.as_str(), &path);
    }
    // Nothing changed, and reads and dry runs still work.
    entity(app, "component", "cart").await;
    let (_, after) = app.get_json("/api/catalog/locations").await;
    assert_eq!(after, locations);
    let (status, dry) = app
        .post_json(
            "/api/catalog/locations?dryRun=true",
            &serde_json::from_str(&loc).expect("json"),
        )
        .await;
    assert_eq!(status, 201, "{dry}");
    assert_eq!(dry["exists"], false);
    fx.stop().await;
}

// ----------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let b64 = |s: &str| {
        use base64_lite::encode;
        enc(&encode(s.as_bytes()))
    };
    let huge = format!(
        "{{\"entityRefs\": [{}]}}",
        vec!["\"component:default/x\""; 150_000].join(",")
    );
    let cases: Vec<(reqwest::Method, String, Option<String>)> = vec![
        // Filters.
        (
            reqwest::Method::GET,
            "/api/catalog/entities?filter==x".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?filter=kind=component,%3Dx".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?filter==component".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entity-facets?facet=kind&filter==x".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entity-facets".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entity-facets?facet=".into(),
            None,
        ),
        // Limits and offsets.
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=-1".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=abc".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=1.5".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=10001".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=99999999999999999999999".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?limit=1&limit=2".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?offset=-5".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?limit=-1".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?limit=18446744073709551616".into(),
            None,
        ),
        // Orders.
        (
            reqwest::Method::GET,
            "/api/catalog/entities?order=sideways:metadata.name".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?order=asc".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities?order=asc:".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?orderField=metadata.name,up".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?orderField=metadata.name".into(),
            None,
        ),
        // Cursors.
        (
            reqwest::Method::GET,
            "/api/catalog/entities?after=garbage".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/catalog/entities?after={}", b64("{\"offset\":-1}")),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/catalog/entities/by-query?cursor=garbage!".into(),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/catalog/entities/by-query?cursor={}", b64("{}")),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/catalog/entities/by-query?cursor={}", b64("[1,2,3]")),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/catalog/entities/by-query?cursor={}", b64("not json")),
            None,
        ),
        // Bodies.
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs".into(),
            Some("{".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs".into(),
            Some("[]".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs".into(),
            Some("{\"entityRefs\": \"component:x\"}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs".into(),
            Some("{\"entityRefs\": [1, 2]}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/entities/by-refs".into(),
            Some(huge),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/locations".into(),
            Some("{\"type\": \"url\", ".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/locations?dryRun=maybe".into(),
            Some("{\"type\": \"url\", \"target\": \"http://x.example/a.yaml\"}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/refresh".into(),
            Some("{}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/refresh".into(),
            Some("{\"entityRef\": \"\"}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/refresh".into(),
            Some("{\"entityRef\": \"component:default/\"}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/refresh".into(),
            Some("{\"entityRef\": \"a:b:c/d/e\"}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/validate-entity".into(),
            Some("{}".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/validate-entity".into(),
            Some("null".into()),
        ),
        (
            reqwest::Method::POST,
            "/api/catalog/analyze-location".into(),
            Some("{\"location\": 5}".into()),
        ),
    ];
    let mut report = Vec::new();
    for (method, path, body) in &cases {
        let (status, _, res) = send(app, method.clone(), path, body.as_deref(), None).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {res}"
        );
        let (name, message) = assert_error_shape(&res, status, method.as_str(), path);
        let shown = if path.len() > 120 {
            format!("{}…", &path[..120])
        } else {
            path.clone()
        };
        report.push(json!({"request": format!("{method} {shown}"), "status": status, "name": name, "message": message}));
    }
    // A body over the JSON limit is refused before it is parsed.
    let last = report.iter().find(|r| r["status"] == 413);
    assert!(last.is_some(), "the oversized body is refused with 413");
    insta::assert_json_snapshot!("bad_input", report);

    // Wrong content type.
    let res = app
        .client
        .post(app.url("/api/catalog/entities/by-refs"))
        .header("content-type", "text/plain")
        .body("{\"entityRefs\": []}")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 400);

    // No good entity was lost along the way.
    let (_, all) = app.get_json("/api/catalog/entities").await;
    assert_eq!(refs(&fx.scrub(all)), FIXTURE_REFS);
    fx.stop().await;
}

/// Standard base64, for hand-made cursors (the tests crate has no base64 dependency).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn tampered_cursors_never_fail_the_server() {
    let fx = Fixture::start().await;
    let app = &fx.app;
    let first = query(app, "orderField=metadata.name,asc&limit=3").await;
    let cursor = first["pageInfo"]["nextCursor"].as_str().expect("cursor");
    // Decode, change a field, re-encode: every variant is answered without a 5xx.
    let decoded = decode_b64(cursor);
    let mut value: Value = serde_json::from_slice(&decoded).expect("cursor is JSON");
    let variants = [
        ("/position", json!([null, 999_999])),
        ("/position", json!(["zzz", 4_000_000_000u64])),
        ("/totalItems", json!(-1)),
        (
            "/orderFields",
            json!([{"field": "spec.nothing", "order": "desc"}]),
        ),
        (
            "/filter",
            json!({"any_of": [[{"key": "kind", "values": ["user"]}]]}),
        ),
        ("/isPrevious", json!("yes")),
    ];
    for (pointer, replacement) in variants {
        let original = value.pointer(pointer).cloned();
        *value.pointer_mut(pointer).expect("field exists") = replacement.clone();
        let c = base64_lite::encode(value.to_string().as_bytes());
        let (status, body) = app
            .get_json(&format!(
                "/api/catalog/entities/by-query?cursor={}",
                enc(&c)
            ))
            .await;
        assert!(
            status == 200 || status == 400,
            "{pointer}={replacement}: {status} {body}"
        );
        *value.pointer_mut(pointer).expect("field exists") = original.expect("original");
    }
    fx.stop().await;
}

fn decode_b64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    out
}

// ------------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_expose_requests_entities_queue_and_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_file(dir.path(), "all.yaml", ROOT_YAML);
    write_file(dir.path(), "org.yaml", ORG_YAML);
    write_file(dir.path(), "software.yaml", SOFTWARE_YAML);
    write_file(
        dir.path(),
        "broken.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: 'no good'}\nspec: {}\n",
    );
    let app = spawn_with(&format!(
        "catalog:\n  locations:\n    - {{type: file, target: '{}'}}\n    - {{type: file, target: '{}'}}\n",
        dir.path().join("all.yaml").display(),
        dir.path().join("broken.yaml").display()
    ))
    .await;
    let (_, _) = app.get_json("/api/catalog/entities").await;
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("catalog_processing_queue_depth 2"),
        "two locations wait before processing:\n{metrics}"
    );
    app.process_due().await;
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/checkout")
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/nothing")
        .await;
    assert_eq!(status, 404);
    let res = app.get("/metrics").await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let metrics = res.text().await.expect("text");
    for line in [
        "http_requests_total{method=\"GET\",route=\"/api/catalog/entities/by-name/{kind}/{namespace}/{name}\",status=\"200\"} 1",
        "http_requests_total{method=\"GET\",route=\"/api/catalog/entities/by-name/{kind}/{namespace}/{name}\",status=\"404\"} 1",
        "http_requests_total{method=\"GET\",route=\"/api/catalog/entities\",status=\"200\"} 1",
        "catalog_entities{kind=\"component\"} 4",
        "catalog_entities{kind=\"group\"} 2",
        "catalog_entities{kind=\"location\"} 3",
        "catalog_processing_queue_depth 0",
        "catalog_locations_with_errors 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(metrics.contains(
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/catalog/entities\""
    ));
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("catalog_processing_errors_total "))
        .expect("catalog_processing_errors_total")
        .trim()
        .parse()
        .expect("a number");
    assert!(errors >= 1.0, "{metrics}");
    app.stop().await;
}

// ---------------------------------------------------------- filter properties

/// One generated entity, with what the reference evaluation needs.
#[derive(Debug, Clone)]
struct GenEntity {
    kind: &'static str,
    name: String,
    spec_type: Option<&'static str>,
    lifecycle: Option<&'static str>,
    tags: Vec<&'static str>,
    owner: &'static str,
}

const GEN_KINDS: &[&str] = &["Component", "API", "Resource"];
const GEN_TYPES: &[&str] = &["service", "website", "Library", "openapi"];
const GEN_LIFECYCLES: &[&str] = &["production", "experimental", "Deprecated"];
const GEN_TAGS: &[&str] = &["java", "go", "rust", "payments"];
const GEN_OWNERS: &[&str] = &["team-a", "team-b", "user:alice"];

impl GenEntity {
    fn yaml(&self) -> String {
        let mut spec = vec![format!("owner: {}", self.owner)];
        // Component and API need a type and a lifecycle; Resource needs a type.
        let spec_type = self.spec_type.unwrap_or("other");
        spec.push(format!("type: {spec_type}"));
        if self.kind != "Resource" {
            spec.push(format!(
                "lifecycle: {}",
                self.lifecycle.unwrap_or("experimental")
            ));
        }
        if self.kind == "API" {
            spec.push("definition: x".into());
        }
        format!(
            "apiVersion: backstage.io/v1alpha1\nkind: {}\nmetadata:\n  name: {}\n  tags: [{}]\nspec:\n{}\n",
            self.kind,
            self.name,
            self.tags.join(", "),
            spec.iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// The (key, value) pairs a filter can match, lowercased; None means "exists".
    fn facts(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("kind".into(), self.kind.to_lowercase()),
            ("metadata.name".into(), self.name.to_lowercase()),
            ("metadata.namespace".into(), "default".into()),
            ("spec.owner".into(), self.owner.to_lowercase()),
            (
                "spec.type".into(),
                self.spec_type.unwrap_or("other").to_lowercase(),
            ),
        ];
        if self.kind != "Resource" {
            f.push((
                "spec.lifecycle".into(),
                self.lifecycle.unwrap_or("experimental").to_lowercase(),
            ));
        }
        for t in &self.tags {
            f.push(("metadata.tags".into(), (*t).into()));
            f.push((format!("metadata.tags.{t}"), "true".into()));
        }
        if self.kind == "API" {
            f.push(("spec.definition".into(), "x".into()));
        }
        let owner_ref = if self.owner.contains(':') {
            self.owner.replace(':', ":default/")
        } else {
            format!("group:default/{}", self.owner)
        };
        f.push(("relations.ownedby".into(), owner_ref));
        f
    }
}

fn gen_entity(i: usize) -> impl Strategy<Value = GenEntity> {
    (
        proptest::sample::select(GEN_KINDS),
        proptest::option::of(proptest::sample::select(GEN_TYPES)),
        proptest::option::of(proptest::sample::select(GEN_LIFECYCLES)),
        proptest::sample::subsequence(GEN_TAGS, 0..=GEN_TAGS.len()),
        proptest::sample::select(GEN_OWNERS),
    )
        .prop_map(move |(kind, spec_type, lifecycle, tags, owner)| GenEntity {
            kind,
            name: format!("e{i}"),
            spec_type,
            lifecycle,
            tags,
            owner,
        })
}

/// One statement: a key alone, or key=value with values drawn from the generated vocabulary.
fn gen_statement() -> impl Strategy<Value = String> {
    let value_keys = prop_oneof![
        proptest::sample::select(GEN_KINDS).prop_map(|v| ("kind", v.to_string())),
        proptest::sample::select(GEN_TYPES).prop_map(|v| ("spec.type", v.to_string())),
        proptest::sample::select(GEN_LIFECYCLES).prop_map(|v| ("spec.lifecycle", v.to_string())),
        proptest::sample::select(GEN_TAGS).prop_map(|v| ("metadata.tags", v.to_string())),
        proptest::sample::select(GEN_OWNERS).prop_map(|v| ("spec.owner", v.to_string())),
        proptest::sample::select(
            &[
                "group:default/team-a",
                "group:default/team-b",
                "user:default/alice"
            ][..]
        )
        .prop_map(|v| ("relations.ownedBy", v.to_string())),
        (0usize..12).prop_map(|i| ("metadata.name", format!("E{i}"))),
    ];
    let exists_keys = proptest::sample::select(
        &[
            "spec.lifecycle",
            "metadata.tags",
            "metadata.tags.java",
            "metadata.tags.payments",
            "spec.definition",
            "spec.nothing",
        ][..],
    );
    prop_oneof![
        3 => (value_keys, any::<bool>()).prop_map(|((k, v), upper)| {
            if upper { format!("{}={}", k.to_uppercase(), v.to_uppercase()) } else { format!("{k}={v}") }
        }),
        1 => exists_keys.prop_map(String::from),
    ]
}

/// A whole filter: 1–3 `filter` parameters of 1–3 statements each.
fn gen_filter() -> impl Strategy<Value = Vec<Vec<String>>> {
    proptest::collection::vec(proptest::collection::vec(gen_statement(), 1..=3), 1..=3)
}

/// Backstage's semantics, evaluated directly on the generated entities.
fn reference_eval(entities: &[GenEntity], filter: &[Vec<String>]) -> BTreeSet<String> {
    entities
        .iter()
        .filter(|e| {
            let facts = e.facts();
            filter.iter().any(|conj| {
                // Same key twice in one filter: either value matches.
                let mut by_key: HashMap<String, Vec<Option<String>>> = HashMap::new();
                for s in conj {
                    let (k, v) = match s.split_once('=') {
                        Some((k, v)) => (k.to_lowercase(), Some(v.to_lowercase())),
                        None => (s.to_lowercase(), None),
                    };
                    by_key.entry(k).or_default().push(v);
                }
                by_key.iter().all(|(k, wanted)| {
                    let exists = facts.iter().any(|(fk, _)| fk == k);
                    let values: Vec<&String> = wanted.iter().flatten().collect();
                    let exists_ok = !wanted.iter().any(Option::is_none) || exists;
                    let value_ok = values.is_empty()
                        || facts.iter().any(|(fk, fv)| fk == k && values.contains(&fv));
                    exists_ok && value_ok
                })
            })
        })
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn filters_match_a_reference_evaluation() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 3,
        failure_persistence: None,
        ..Default::default()
    });
    let entities = (0usize..12).map(gen_entity).collect::<Vec<_>>();
    runner
        .run(&entities, |set| {
            let dir = tempfile::tempdir().expect("temp dir");
            let yaml = set
                .iter()
                .map(GenEntity::yaml)
                .collect::<Vec<_>>()
                .join("---\n");
            let file = write_file(dir.path(), "gen.yaml", &yaml);
            let app = rt.block_on(async {
                let app = spawn_with(&format!(
                    "catalog:\n  locations:\n    - {{type: file, target: '{}'}}\n",
                    file.display()
                ))
                .await;
                app.process_due().await;
                app
            });
            let (_, all) = rt.block_on(app.get_json("/api/catalog/entities?filter=metadata.name"));
            prop_assert_eq!(all.as_array().map(Vec::len), Some(set.len() + 1), "{}", all);
            let mut inner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
                cases: 48,
                failure_persistence: None,
                ..Default::default()
            });
            // Filters that select some but not all entities: the ones that can tell.
            let telling = std::cell::Cell::new(0usize);
            let result = inner.run(&gen_filter(), |filter| {
                let query: String = filter
                    .iter()
                    .map(|conj| format!("filter={}", enc(&conj.join(","))))
                    .collect::<Vec<_>>()
                    .join("&");
                let (status, body) =
                    rt.block_on(app.get_json(&format!("/api/catalog/entities?{query}")));
                prop_assert_eq!(status, 200);
                let got: BTreeSet<String> = names(&body)
                    .into_iter()
                    .filter(|n| n.starts_with('e'))
                    .collect();
                prop_assert_eq!(got.clone(), reference_eval(&set, &filter), "{}", query);
                if !got.is_empty() && got.len() < set.len() {
                    telling.set(telling.get() + 1);
                }
                // by-query agrees with the list.
                let (_, q) = rt.block_on(
                    app.get_json(&format!("/api/catalog/entities/by-query?{query}&limit=100")),
                );
                let got_q: BTreeSet<String> = names(&q["items"])
                    .into_iter()
                    .filter(|n| n.starts_with('e'))
                    .collect();
                prop_assert_eq!(&got_q, &got, "by-query {}", query);
                Ok(())
            });
            rt.block_on(app.stop());
            result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                telling.get() >= 8,
                "too few selective filters: {}",
                telling.get()
            );
            Ok(())
        })
        .expect("filters agree with the reference");
}
