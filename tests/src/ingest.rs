//! Ingestion: the compatibility corpus, server-set fields, locations, url
//! reading and bad input, each against the real server.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use stagedoor_tests::{compat_dir, poll_until, spawn_with, HttpFixture, Route, TestApp};

// ------------------------------------------------------------------ helpers

const ANNOTATION_LOCATION: &str = "backstage.io/managed-by-location";
const ANNOTATION_ORIGIN: &str = "backstage.io/managed-by-origin-location";
const ANNOTATION_ORPHAN: &str = "backstage.io/orphan";
const PROCESSING: &str = "backstage.io/catalog-processing";
const FIFTY_MB: usize = 50 * 1024 * 1024;

fn component(name: &str, description: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n  description: {description}\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n"
    )
}

/// `catalog.locations` of file targets, plus any other catalog keys.
fn file_locations(targets: &[&Path], catalog_extra: &str) -> String {
    let mut s = String::from("catalog:\n");
    s.push_str(catalog_extra);
    s.push_str("  locations:\n");
    for t in targets {
        s.push_str(&format!(
            "    - type: file\n      target: '{}'\n",
            t.display()
        ));
    }
    s
}

fn reading_allow(hosts: &[String]) -> String {
    let mut s = String::from("backend:\n  reading:\n    allow:\n");
    for h in hosts {
        s.push_str(&format!("      - host: '{h}'\n"));
    }
    s
}

fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

async fn all_entities(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().expect("an array")
}

/// An entity by `kind:namespace/name`, or None on 404.
async fn entity(app: &TestApp, r: &str) -> Option<Value> {
    let (kind, rest) = r.split_once(':').expect("kind:namespace/name");
    let (ns, name) = rest.split_once('/').expect("kind:namespace/name");
    let (status, body) = app
        .get_json(&format!("/api/catalog/entities/by-name/{kind}/{ns}/{name}"))
        .await;
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("GET {r}: {other} {body}"),
    }
}

async fn must(app: &TestApp, r: &str) -> Value {
    entity(app, r)
        .await
        .unwrap_or_else(|| panic!("{r} is not served"))
}

/// The processing errors of an entity; each must have Backstage's item shape.
fn status_errors(e: &Value) -> Vec<String> {
    let Some(items) = e.pointer("/status/items").and_then(Value::as_array) else {
        return vec![];
    };
    items
        .iter()
        .map(|i| {
            assert_eq!(i["type"], PROCESSING, "{i}");
            assert_eq!(i["level"], "error", "{i}");
            assert!(i["error"]["name"].is_string(), "{i}");
            i["error"]["message"]
                .as_str()
                .expect("a message")
                .to_string()
        })
        .collect()
}

/// The errors on the generated Location entity of a root location (`type:target`).
async fn location_errors(app: &TestApp, key: &str) -> Vec<String> {
    let (status, body) = app
        .get_json("/api/catalog/entities?filter=kind=location")
        .await;
    assert_eq!(status, 200, "{body}");
    let generated: Vec<&Value> = body
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| {
            e.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with("generated-"))
                && e["metadata"]["annotations"][ANNOTATION_LOCATION] == json!(key)
        })
        .collect();
    assert_eq!(
        generated.len(),
        1,
        "one generated Location entity for {key}"
    );
    status_errors(generated[0])
}

fn assert_error(errors: &[String], needles: &[&str]) {
    assert!(
        errors.iter().any(|e| needles.iter().all(|n| e.contains(n))),
        "no error containing {needles:?} in {errors:#?}"
    );
}

fn description(e: &Value) -> &str {
    e.pointer("/metadata/description")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Registers a url location through the API; returns (status, body).
async fn register(app: &TestApp, target: &str) -> (u16, Value) {
    app.post_json(
        "/api/catalog/locations",
        &json!({"type": "url", "target": target}),
    )
    .await
}

fn assert_input_error(status: u16, body: &Value, needles: &[&str]) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["name"], "InputError", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for n in needles {
        assert!(message.contains(n), "{n:?} not in {message:?}");
    }
}

// ------------------------------------------- a reference model of the corpus

/// Parses every YAML document of a file on its own, as plain data.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read corpus file");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let v = serde_yaml_ng::Value::deserialize(d).expect("corpus YAML parses");
            serde_json::to_value(v).expect("corpus YAML is JSON data")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `(kind, namespace, name)` with kind and namespace lowercased, as refs compare.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ref {
    kind: String,
    namespace: String,
    name: String,
}

impl Ref {
    fn of(e: &Value) -> Ref {
        Ref {
            kind: e["kind"].as_str().expect("kind").to_lowercase(),
            namespace: e["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_lowercase(),
            name: e["metadata"]["name"].as_str().expect("name").to_string(),
        }
    }

    /// `[kind:][namespace/]name` with defaults, as the issue's relation table reads spec fields.
    fn parse(s: &str, default_kind: Option<&str>, default_namespace: &str) -> Ref {
        let (kind, rest) = match s.split_once(':') {
            Some((k, rest)) if !k.contains('/') => (Some(k), rest),
            _ => (None, s),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (default_namespace, rest),
        };
        Ref {
            kind: kind
                .or(default_kind)
                .unwrap_or_else(|| panic!("{s} has no kind"))
                .to_lowercase(),
            namespace: namespace.to_lowercase(),
            name: name.to_string(),
        }
    }

    /// Backstage's stringified ref: kind and namespace lowercased, name as written.
    fn string(&self) -> String {
        format!("{}:{}/{}", self.kind, self.namespace, self.name)
    }

    fn key(&self) -> String {
        self.string().to_lowercase()
    }
}

/// One entity document of the corpus, with its `$text` placeholders resolved.
struct CorpusEntity {
    file: PathBuf,
    value: Value,
    /// Set when a placeholder names a URL: such reads need the GitHub integration.
    remote_placeholder: Option<String>,
}

/// Follows the Location tree from a root file, as the issue describes ingestion.
fn corpus_tree(root: &Path) -> Vec<CorpusEntity> {
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root.to_path_buf()]);
    let mut seen = BTreeSet::new();
    while let Some(file) = queue.pop_front() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let dir = file.parent().expect("a directory").to_path_buf();
        for mut value in yaml_docs(&file) {
            if value["kind"] == "Location" {
                let spec = &value["spec"];
                let targets = spec["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(spec.get("target").cloned());
                for t in targets {
                    let t = t.as_str().expect("target is a string");
                    queue.push_back(normalize(&dir.join(t)));
                }
            }
            let mut remote = None;
            resolve_text_placeholders(&mut value, &dir, &mut remote);
            out.push(CorpusEntity {
                file: file.clone(),
                value,
                remote_placeholder: remote,
            });
        }
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn resolve_text_placeholders(v: &mut Value, dir: &Path, remote: &mut Option<String>) {
    match v {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(target)) = map.get("$text") {
                    if target.starts_with("http://") || target.starts_with("https://") {
                        *remote = Some(target.clone());
                    } else {
                        *v = Value::String(
                            std::fs::read_to_string(dir.join(target)).expect("placeholder file"),
                        );
                    }
                    return;
                }
            }
            assert!(
                !map.keys().any(|k| k == "$json" || k == "$yaml"),
                "the corpus uses only $text"
            );
            for item in map.values_mut() {
                resolve_text_placeholders(item, dir, remote);
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_text_placeholders(item, dir, remote);
            }
        }
        _ => {}
    }
}

/// The relations the issue's table implies, keyed by the source's ref key:
/// a set of `(type, targetRef)`.
fn expected_relations(entities: &[&Value]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    // (kinds it applies to, or any; field; default kind; forward; reverse)
    type Row = (
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        &'static str,
        &'static str,
    );
    const TABLE: &[Row] = &[
        (None, "owner", Some("group"), "ownedBy", "ownerOf"),
        (
            Some("component"),
            "subcomponentOf",
            Some("component"),
            "partOf",
            "hasPart",
        ),
        (None, "system", Some("system"), "partOf", "hasPart"),
        (
            Some("system"),
            "domain",
            Some("domain"),
            "partOf",
            "hasPart",
        ),
        (
            Some("domain"),
            "subdomainOf",
            Some("domain"),
            "partOf",
            "hasPart",
        ),
        (
            None,
            "providesApis",
            Some("api"),
            "providesApi",
            "apiProvidedBy",
        ),
        (
            None,
            "consumesApis",
            Some("api"),
            "consumesApi",
            "apiConsumedBy",
        ),
        (None, "dependsOn", None, "dependsOn", "dependencyOf"),
        (None, "dependencyOf", None, "dependencyOf", "dependsOn"),
        (
            Some("user"),
            "memberOf",
            Some("group"),
            "memberOf",
            "hasMember",
        ),
        (
            Some("group"),
            "members",
            Some("user"),
            "hasMember",
            "memberOf",
        ),
        (
            Some("group"),
            "parent",
            Some("group"),
            "childOf",
            "parentOf",
        ),
        (
            Some("group"),
            "children",
            Some("group"),
            "parentOf",
            "childOf",
        ),
    ];
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for e in entities {
        let me = Ref::of(e);
        for (kind, field, default_kind, forward, reverse) in TABLE {
            if kind.is_some_and(|k| k != me.kind) {
                continue;
            }
            let values: Vec<&str> = match &e["spec"][field] {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => continue,
            };
            for v in values {
                let target = Ref::parse(v, *default_kind, &me.namespace);
                out.entry(me.key())
                    .or_default()
                    .insert((forward.to_string(), target.string()));
                out.entry(target.key())
                    .or_default()
                    .insert((reverse.to_string(), me.string()));
            }
        }
    }
    out
}

/// Validators for every kind schema, `$ref`s to the shared schemas registered as resources.
fn kind_validators(schema_dir: &Path) -> BTreeMap<String, jsonschema::Validator> {
    let read = |p: PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(&p).expect("schema file")).expect("JSON")
    };
    let shared = [
        ("Entity", schema_dir.join("Entity.schema.json")),
        (
            "EntityEnvelope",
            schema_dir.join("EntityEnvelope.schema.json"),
        ),
        ("EntityMeta", schema_dir.join("EntityMeta.schema.json")),
        ("common", schema_dir.join("shared/common.schema.json")),
    ];
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(schema_dir.join("kinds")).expect("kinds dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let Some(stem) = name.strip_suffix(".schema.json") else {
            continue;
        };
        let mut options = jsonschema::options().with_draft(jsonschema::Draft::Draft7);
        for (id, file) in &shared {
            options = options.with_resource(
                format!("json-schema:///{id}"),
                jsonschema::Resource::from_contents(read(file.clone())),
            );
        }
        let validator = options
            .build(&read(path.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.insert(stem.to_lowercase(), validator);
    }
    assert!(out.len() >= 10, "kind schemas found: {:?}", out.keys());
    out
}

/// Problems of an entity under its kind's schema (the per-type schema when there is one).
fn schema_problems(validators: &BTreeMap<String, jsonschema::Validator>, e: &Value) -> Vec<String> {
    let kind = e["kind"].as_str().unwrap_or_default().to_lowercase();
    let version = e["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit('/').next())
        .unwrap_or_default()
        .replace("v1beta1", "v1alpha1");
    let spec_type = e["spec"]["type"].as_str().unwrap_or_default();
    let validator = validators
        .get(&format!("{kind}.{version}.{spec_type}"))
        .or_else(|| validators.get(&format!("{kind}.{version}")))
        .unwrap_or_else(|| panic!("no schema for {kind} {version}"));
    validator
        .iter_errors(e)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

#[test]
fn the_reference_relations_follow_the_table() {
    let group = json!({"kind": "Group", "metadata": {"name": "team", "namespace": "ops"},
        "spec": {"parent": "org", "children": ["default/sub"], "members": ["user:jo"]}});
    let comp = json!({"kind": "Component", "metadata": {"name": "Svc"},
        "spec": {"owner": "user:jo", "system": "other/sys", "dependsOn": ["resource:db"]}});
    let rels = expected_relations(&[&group, &comp]);
    assert!(rels["group:ops/team"].contains(&("childOf".into(), "group:ops/org".into())));
    assert!(rels["group:ops/org"].contains(&("parentOf".into(), "group:ops/team".into())));
    assert!(rels["group:default/sub"].contains(&("childOf".into(), "group:ops/team".into())));
    assert!(rels["user:ops/jo"].contains(&("memberOf".into(), "group:ops/team".into())));
    assert!(rels["component:default/svc"].contains(&("ownedBy".into(), "user:default/jo".into())));
    assert!(rels["user:default/jo"].contains(&("ownerOf".into(), "component:default/Svc".into())));
    assert!(rels["system:other/sys"].contains(&("hasPart".into(), "component:default/Svc".into())));
    assert!(rels["resource:default/db"]
        .contains(&("dependencyOf".into(), "component:default/Svc".into())));
}

// ------------------------------------------------------------ the corpus

/// API entities of the corpus whose `$text` names a GitHub URL. Such URLs are
/// read through the GitHub integration, which comes later; until then the host
/// is not in `backend.reading.allow` and the entity is refused with that reason.
const GITHUB_PLACEHOLDER_ENTITIES: &[&str] = &[
    "api:default/spotify",
    "api:default/wayback-archive",
    "api:default/wayback-search",
];

#[tokio::test]
async fn compat_corpus_is_ingested_as_backstage_models_it() {
    let Some(compat) = compat_dir() else { return };
    let examples = compat.join("catalog-examples");
    let roots = [examples.join("all.yaml"), examples.join("acme-corp.yaml")];
    let app = spawn_with(&file_locations(&[&roots[0], &roots[1]], "")).await;
    app.process_due().await;
    let validators = kind_validators(&examples.join("schema"));
    // The validators check what they should: the kind's spec and, through $ref, the envelope.
    let probe = yaml_docs(&examples.join("components/petstore-component.yaml"))
        .pop()
        .expect("a component");
    assert!(schema_problems(&validators, &probe).is_empty());
    let mut no_owner = probe.clone();
    no_owner["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("owner");
    assert!(!schema_problems(&validators, &no_owner).is_empty());
    let mut no_name = probe.clone();
    no_name["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("name");
    assert!(!schema_problems(&validators, &no_name).is_empty());
    let mut bad_relation = probe.clone();
    bad_relation["relations"] = json!([{"type": "ownedBy"}]);
    assert!(!schema_problems(&validators, &bad_relation).is_empty());

    // What the files hold, read independently of the server.
    let mut corpus: Vec<(String, CorpusEntity)> = Vec::new();
    for root in &roots {
        for e in corpus_tree(root) {
            corpus.push((format!("file:{}", root.display()), e));
        }
    }
    assert!(corpus.len() > 40, "corpus has {} entities", corpus.len());
    let remote: BTreeSet<String> = corpus
        .iter()
        .filter(|(_, e)| e.remote_placeholder.is_some())
        .map(|(_, e)| Ref::of(&e.value).key())
        .collect();
    let listed: BTreeSet<String> = GITHUB_PLACEHOLDER_ENTITIES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(remote, listed, "entities with a remote $text");

    let stored = all_entities(&app).await;
    let stored_by_key: BTreeMap<String, &Value> =
        stored.iter().map(|e| (Ref::of(e).key(), e)).collect();
    let mut accepted: Vec<&Value> = Vec::new();
    for (root, c) in &corpus {
        let r = Ref::of(&c.value);
        let errors = location_errors(&app, root).await;
        if let Some(url) = &c.remote_placeholder {
            assert!(
                !stored_by_key.contains_key(&r.key()),
                "{} is stored",
                r.key()
            );
            let host = url::Url::parse(url)
                .expect("url")
                .host_str()
                .expect("host")
                .to_string();
            assert_eq!(host, "github.com");
            assert_error(
                &errors,
                &[
                    &r.string(),
                    "placeholder $text",
                    url,
                    "not allowed by backend.reading.allow",
                ],
            );
            continue;
        }
        let problems = schema_problems(&validators, &c.value);
        if !problems.is_empty() {
            assert!(
                !stored_by_key.contains_key(&r.key()),
                "invalid {} is stored: {problems:?}",
                r.key()
            );
            assert_error(&errors, &[&r.string()]);
            continue;
        }
        let s = stored_by_key.get(&r.key()).unwrap_or_else(|| {
            panic!(
                "valid {} ({}) was not stored: {errors:#?}",
                r.key(),
                c.file.display()
            )
        });
        // The stored entity is the file's, with the placeholders resolved.
        assert_eq!(s["spec"], c.value["spec"], "{}", r.key());
        assert_eq!(
            s["metadata"]["annotations"][ANNOTATION_LOCATION],
            json!(format!("file:{}", c.file.display())),
            "{}",
            r.key()
        );
        assert_eq!(
            s["metadata"]["annotations"][ANNOTATION_ORIGIN],
            json!(root),
            "{}",
            r.key()
        );
        assert!(status_errors(s).is_empty(), "{}: {s}", r.key());
        accepted.push(&c.value);
    }
    // petstore-webhook's definition came from the file next to it.
    let webhook = stored_by_key["api:default/petstore-webhook"];
    let oas =
        std::fs::read_to_string(examples.join("apis/petstore-webhook.oas.yaml")).expect("oas");
    assert_eq!(webhook["spec"]["definition"], json!(oas));

    // Nothing but the corpus and one generated Location entity per root.
    let mut expected_keys: BTreeSet<String> = accepted.iter().map(|e| Ref::of(e).key()).collect();
    let generated: Vec<&Value> = stored
        .iter()
        .filter(|e| {
            e["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("generated-"))
        })
        .collect();
    assert_eq!(generated.len(), roots.len());
    expected_keys.extend(generated.iter().map(|e| Ref::of(e).key()));
    assert_eq!(
        stored_by_key.keys().cloned().collect::<BTreeSet<_>>(),
        expected_keys
    );

    // Every stored entity validates against its kind's JSON Schema.
    for e in &stored {
        let problems = schema_problems(&validators, e);
        assert!(problems.is_empty(), "{}: {problems:#?}", Ref::of(e).key());
    }

    // Relations are exactly those the table implies.
    let expected = expected_relations(&accepted);
    for e in &stored {
        let key = Ref::of(e).key();
        let got: BTreeSet<(String, String)> = e["relations"]
            .as_array()
            .expect("relations array")
            .iter()
            .map(|r| {
                (
                    r["type"].as_str().expect("type").to_string(),
                    r["targetRef"].as_str().expect("targetRef").to_string(),
                )
            })
            .collect();
        let want = expected.get(&key).cloned().unwrap_or_default();
        assert_eq!(got, want, "relations of {key}");
    }
    assert!(expected.values().map(BTreeSet::len).sum::<usize>() > 100);
    app.stop().await;
}

// ------------------------------------------------------- server-set fields

#[tokio::test]
async fn server_sets_uid_etag_annotations_and_processing_errors() {
    let cat = tempfile::tempdir().expect("tmp");
    let root = cat.path().join("root.yaml");
    let file = cat.path().join("team/catalog-info.yaml");
    write(
        &root,
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: root\nspec:\n  target: ./team/catalog-info.yaml\n",
    );
    write(&file, &component("svc", "first"));
    let app = spawn_with(&file_locations(&[&root], "")).await;
    app.process_due().await;

    let first = must(&app, "component:default/svc").await;
    let uid = first["metadata"]["uid"].as_str().expect("uid").to_string();
    let etag = first["metadata"]["etag"]
        .as_str()
        .expect("etag")
        .to_string();
    assert!(!uid.is_empty() && !etag.is_empty());
    let annotations = &first["metadata"]["annotations"];
    assert_eq!(
        annotations[ANNOTATION_LOCATION],
        json!(format!("file:{}", file.display()))
    );
    assert_eq!(
        annotations[ANNOTATION_ORIGIN],
        json!(format!("file:{}", root.display()))
    );
    let nested = must(&app, "location:default/root").await;
    assert_eq!(
        nested["metadata"]["annotations"][ANNOTATION_LOCATION],
        json!(format!("file:{}", root.display()))
    );

    // Unchanged content: the same entity, byte for byte, and no write.
    let seq = app.change_seq().await;
    app.refresh_all().await;
    assert_eq!(must(&app, "component:default/svc").await, first);
    assert_eq!(app.change_seq().await, seq);

    // Changed content: same uid, new etag.
    write(&file, &component("svc", "second"));
    app.refresh_all().await;
    let second = must(&app, "component:default/svc").await;
    assert_eq!(second["metadata"]["uid"], json!(uid));
    assert_ne!(second["metadata"]["etag"], json!(etag));
    assert_eq!(description(&second), "second");
    assert!(app.change_seq().await > seq);

    // Invalid content: the last good content stays, with the error in status.items.
    write(
        &file,
        &component("svc", "third").replace("  lifecycle: production\n", ""),
    );
    app.refresh_all().await;
    let broken = must(&app, "component:default/svc").await;
    assert_eq!(broken["metadata"]["uid"], json!(uid));
    assert_eq!(description(&broken), "second");
    assert_eq!(broken["spec"], second["spec"]);
    assert_ne!(broken["metadata"]["etag"], second["metadata"]["etag"]);
    assert_error(&status_errors(&broken), &["spec.lifecycle", "required"]);

    // Fixed again: the error goes.
    write(&file, &component("svc", "fourth"));
    app.refresh_all().await;
    let fixed = must(&app, "component:default/svc").await;
    assert_eq!(fixed["metadata"]["uid"], json!(uid));
    assert_eq!(description(&fixed), "fourth");
    assert!(fixed.get("status").is_none(), "{fixed}");
    app.stop().await;
}

#[tokio::test]
async fn unchanged_content_writes_nothing() {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    // One good entity, one refused document, one entity that fails after being stored.
    write(
        &file,
        &format!(
            "{}---\n{}---\nkind: [\n",
            component("a", "x"),
            component("b", "y")
        ),
    );
    let app = spawn_with(&file_locations(&[&file], "")).await;
    app.process_due().await;
    write(
        &file,
        &format!(
            "{}---\n{}---\nkind: [\n",
            component("a", "x"),
            component("b", "z").replace("  owner: team-a\n", "")
        ),
    );
    app.refresh_all().await;
    let key = format!("file:{}", file.display());
    let before = all_entities(&app).await;
    assert_error(&location_errors(&app, &key).await, &["invalid YAML"]);
    assert_error(
        &status_errors(&must(&app, "component:default/b").await),
        &["spec.owner"],
    );
    let seq = app.change_seq().await;
    for _ in 0..3 {
        app.refresh_all().await;
        assert_eq!(
            app.change_seq().await,
            seq,
            "a refresh of unchanged content wrote"
        );
    }
    assert_eq!(all_entities(&app).await, before);
    app.stop().await;
}

// ----------------------------------------------------------------- locations

#[tokio::test]
async fn nested_locations_resolve_targets_against_their_own_file() {
    let cat = tempfile::tempdir().expect("tmp");
    let d = cat.path();
    let root = d.join("root.yaml");
    write(
        &root,
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: top\nspec:\n  targets: [./a/one.yaml, a/two.yaml]\n---\napiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: to-b\nspec:\n  target: ./b/nested.yaml\n",
    );
    write(&d.join("a/one.yaml"), &component("one", "first"));
    write(&d.join("a/two.yaml"), &component("two", "second"));
    write(
        &d.join("b/nested.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: deeper\nspec:\n  targets: [../c/three.yaml, ./missing.yaml]\n---\napiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: maybe\nspec:\n  target: ./optional.yaml\n  presence: optional\n",
    );
    write(&d.join("c/three.yaml"), &component("three", "third"));
    let app = spawn_with(&file_locations(&[&root], "")).await;
    app.process_due().await;
    let origin = json!(format!("file:{}", root.display()));
    for (name, file) in [
        ("one", "a/one.yaml"),
        ("two", "a/two.yaml"),
        ("three", "c/three.yaml"),
    ] {
        let e = must(&app, &format!("component:default/{name}")).await;
        let annotations = &e["metadata"]["annotations"];
        assert_eq!(
            annotations[ANNOTATION_LOCATION],
            json!(format!("file:{}", d.join(file).display()))
        );
        assert_eq!(annotations[ANNOTATION_ORIGIN], origin);
    }
    for name in ["top", "to-b", "deeper", "maybe"] {
        must(&app, &format!("location:default/{name}")).await;
    }
    let errors = location_errors(&app, &format!("file:{}", root.display())).await;
    assert_error(
        &errors,
        &[&d.join("b/missing.yaml").display().to_string(), "not found"],
    );
    assert!(
        !errors.iter().any(|e| e.contains("optional.yaml")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    app.stop().await;
}

#[tokio::test]
async fn same_entity_from_two_locations_is_a_conflict_and_location_deletion_removes_entities() {
    let fx = HttpFixture::start().await;
    fx.set_body(
        "/a.yaml",
        &format!(
            "{}---\n{}",
            component("dup", "from-a"),
            component("only-a", "a")
        ),
    );
    fx.set_body(
        "/b.yaml",
        &format!(
            "{}---\n{}",
            component("dup", "from-b"),
            component("only-b", "b")
        ),
    );
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    let (status, a) = register(&app, &fx.url("/a.yaml")).await;
    assert_eq!(status, 201, "{a}");
    let (status, b) = register(&app, &fx.url("/b.yaml")).await;
    assert_eq!(status, 201, "{b}");

    let dup = must(&app, "component:default/dup").await;
    assert_eq!(description(&dup), "from-a");
    assert_eq!(
        dup["metadata"]["annotations"][ANNOTATION_LOCATION],
        json!(format!("url:{}", fx.url("/a.yaml")))
    );
    must(&app, "component:default/only-b").await;
    let b_key = format!("url:{}", fx.url("/b.yaml"));
    assert_error(
        &location_errors(&app, &b_key).await,
        &["component:default/dup", "conflict"],
    );
    assert!(location_errors(&app, &format!("url:{}", fx.url("/a.yaml")))
        .await
        .is_empty());
    // A refresh does not hand it over.
    app.refresh_all().await;
    assert_eq!(
        description(&must(&app, "component:default/dup").await),
        "from-a"
    );

    // Deleting location a deletes its entities; b then takes dup over.
    let a_id = a["location"]["id"].as_str().expect("id");
    let (status, body) = app.delete(&format!("/api/catalog/locations/{a_id}")).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    assert!(entity(&app, "component:default/only-a").await.is_none());
    assert!(entity(&app, "component:default/dup").await.is_none());
    let (status, _) = app
        .get_json(&format!("/api/catalog/locations/{a_id}"))
        .await;
    assert_eq!(status, 404);
    app.refresh_all().await;
    assert_eq!(
        description(&must(&app, "component:default/dup").await),
        "from-b"
    );
    assert!(location_errors(&app, &b_key).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn orphans_are_annotated_and_come_back() {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    write(
        &file,
        &format!(
            "{}---\n{}",
            component("stays", "s"),
            component("leaves", "l")
        ),
    );
    let app = spawn_with(&file_locations(&[&file], "")).await;
    app.process_due().await;
    let before = must(&app, "component:default/leaves").await;
    assert!(before["metadata"]["annotations"]
        .get(ANNOTATION_ORPHAN)
        .is_none());

    write(&file, &component("stays", "s"));
    app.refresh_all().await;
    let orphan = must(&app, "component:default/leaves").await;
    assert_eq!(
        orphan["metadata"]["annotations"][ANNOTATION_ORPHAN],
        json!("true")
    );
    assert_eq!(orphan["metadata"]["uid"], before["metadata"]["uid"]);
    assert_ne!(orphan["metadata"]["etag"], before["metadata"]["etag"]);
    let stays = must(&app, "component:default/stays").await;
    assert!(stays["metadata"]["annotations"]
        .get(ANNOTATION_ORPHAN)
        .is_none());

    write(
        &file,
        &format!(
            "{}---\n{}",
            component("stays", "s"),
            component("leaves", "l")
        ),
    );
    app.refresh_all().await;
    let back = must(&app, "component:default/leaves").await;
    assert!(
        back["metadata"]["annotations"]
            .get(ANNOTATION_ORPHAN)
            .is_none(),
        "{back}"
    );
    assert_eq!(back["metadata"]["uid"], before["metadata"]["uid"]);
    app.stop().await;
}

#[tokio::test]
async fn orphans_are_deleted_under_orphan_strategy_delete() {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    write(
        &file,
        &format!(
            "{}---\n{}",
            component("stays", "s"),
            component("leaves", "l")
        ),
    );
    let app = spawn_with(&file_locations(&[&file], "  orphanStrategy: delete\n")).await;
    app.process_due().await;
    must(&app, "component:default/leaves").await;
    write(&file, &component("stays", "s"));
    app.refresh_all().await;
    assert!(entity(&app, "component:default/leaves").await.is_none());
    must(&app, "component:default/stays").await;
    app.stop().await;
}

#[tokio::test]
async fn refresh_endpoint_rereads_at_once() {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    write(&file, &component("svc", "old"));
    let app = spawn_with(&file_locations(&[&file], "")).await;
    app.process_due().await;
    assert_eq!(
        description(&must(&app, "component:default/svc").await),
        "old"
    );
    write(&file, &component("svc", "new"));
    let (status, body) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:default/svc"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        description(&must(&app, "component:default/svc").await),
        "new"
    );
    let (status, body) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:default/absent"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn registered_locations_are_visible_before_the_response() {
    let fx = HttpFixture::start().await;
    fx.set_body("/catalog-info.yaml", &component("svc", "registered"));
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    let (status, body) = register(&app, &fx.url("/catalog-info.yaml")).await;
    assert_eq!(status, 201, "{body}");
    let listed: Vec<&Value> = body["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter(|e| e["kind"] == "Component")
        .collect();
    assert_eq!(listed.len(), 1, "{body}");
    // No waiting: the entity is served as soon as the registration answered.
    let served = must(&app, "component:default/svc").await;
    assert_eq!(served["metadata"]["uid"], listed[0]["metadata"]["uid"]);
    assert_eq!(description(&served), "registered");
    assert_eq!(fx.hits("/catalog-info.yaml"), 1);
    app.stop().await;
}

// ------------------------------------------------------------- url reading

#[tokio::test]
async fn url_locations_read_only_allowed_hosts() {
    let fx = HttpFixture::start().await;
    let other = HttpFixture::start().await;
    other.set_body("/x.yaml", &component("elsewhere", "e"));
    fx.set_body("/real.yaml", &component("svc", "real"));
    fx.set("/to-real", Route::Redirect(fx.url("/real.yaml")));
    fx.set(
        "/to-metadata",
        Route::Redirect("http://169.254.169.254/latest/meta-data/".into()),
    );
    fx.set("/to-other", Route::Redirect(other.url("/x.yaml")));
    // The metadata address is even listed: the link-local rule still refuses it.
    let app = spawn_with(&reading_allow(&[fx.host(), "169.254.169.254".into()])).await;

    let (status, body) = register(&app, &other.url("/x.yaml")).await;
    assert_input_error(status, &body, &[&other.url("/x.yaml"), "not allowed"]);
    let (status, body) = register(
        &app,
        "https://github.com/acme/repo/blob/main/catalog-info.yaml",
    )
    .await;
    assert_input_error(status, &body, &["github.com", "not allowed"]);
    let (status, body) = register(&app, &fx.url("/to-metadata")).await;
    assert_input_error(status, &body, &["169.254.169.254"]);
    let (status, body) = register(&app, &fx.url("/to-other")).await;
    assert_input_error(status, &body, &[&other.url("/x.yaml"), "not allowed"]);
    assert_eq!(other.hits("/x.yaml"), 0, "the unlisted host was contacted");
    assert!(entity(&app, "component:default/elsewhere").await.is_none());
    let (status, body) = app.get_json("/api/catalog/locations").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([]), "refused locations are not stored");

    // A redirect within the allow-list is followed.
    let (status, body) = register(&app, &fx.url("/to-real")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        description(&must(&app, "component:default/svc").await),
        "real"
    );
    app.stop().await;
}

#[tokio::test]
async fn url_placeholders_read_relative_to_the_location() {
    let fx = HttpFixture::start().await;
    let api = "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: petstore\nspec:\n  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition:\n    $text: ./openapi.yaml\n";
    let other = "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: remote\nspec:\n  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition:\n    $text: https://github.com/acme/api/blob/main/openapi.yaml\n";
    fx.set_body("/repo/catalog-info.yaml", &format!("{api}---\n{other}"));
    fx.set_body("/repo/openapi.yaml", "openapi: 3.0.0\n");
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    let (status, body) = register(&app, &fx.url("/repo/catalog-info.yaml")).await;
    assert_eq!(status, 201, "{body}");
    let petstore = must(&app, "api:default/petstore").await;
    assert_eq!(petstore["spec"]["definition"], json!("openapi: 3.0.0\n"));
    assert!(entity(&app, "api:default/remote").await.is_none());
    let key = format!("url:{}", fx.url("/repo/catalog-info.yaml"));
    assert_error(
        &location_errors(&app, &key).await,
        &[
            "api:default/remote",
            "placeholder $text",
            "github.com",
            "not allowed",
        ],
    );

    // A placeholder that stops resolving keeps the last good content, with the error.
    fx.set_body(
        "/repo/catalog-info.yaml",
        &api.replace("./openapi.yaml", "./gone.yaml"),
    );
    app.refresh_all().await;
    let kept = must(&app, "api:default/petstore").await;
    assert_eq!(kept["spec"]["definition"], json!("openapi: 3.0.0\n"));
    assert_error(
        &status_errors(&kept),
        &["placeholder $text", "./gone.yaml", "not found"],
    );
    // A changed target changes the entity.
    fx.set_body("/repo/catalog-info.yaml", api);
    fx.set_body("/repo/openapi.yaml", "openapi: 3.1.0\n");
    app.refresh_all().await;
    let changed = must(&app, "api:default/petstore").await;
    assert_eq!(changed["spec"]["definition"], json!("openapi: 3.1.0\n"));
    assert!(status_errors(&changed).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn url_size_limit_is_a_location_error() {
    let fx = HttpFixture::start().await;
    let big = Arc::new(vec![b'#'; FIFTY_MB]);
    fx.set("/big.yaml", Route::Body(big.clone()));
    fx.set("/big-unsized.yaml", Route::Unsized(big.clone()));
    fx.set_body("/grows.yaml", &component("svc", "small"));
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    for path in ["/big.yaml", "/big-unsized.yaml"] {
        let (status, body) = register(&app, &fx.url(path)).await;
        assert_input_error(status, &body, &[&fx.url(path), "size limit"]);
    }
    let (status, body) = register(&app, &fx.url("/grows.yaml")).await;
    assert_eq!(status, 201, "{body}");
    let good = must(&app, "component:default/svc").await;
    fx.set("/grows.yaml", Route::Body(big));
    app.refresh_all().await;
    assert_eq!(
        must(&app, "component:default/svc").await["metadata"]["uid"],
        good["metadata"]["uid"]
    );
    let errors = location_errors(&app, &format!("url:{}", fx.url("/grows.yaml"))).await;
    assert_error(&errors, &["size limit"]);
    app.stop().await;
}

#[tokio::test]
async fn url_timeout_is_a_location_error() {
    let fx = HttpFixture::start().await;
    fx.set_body("/slow.yaml", &component("svc", "fast"));
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    let (status, body) = register(&app, &fx.url("/slow.yaml")).await;
    assert_eq!(status, 201, "{body}");
    fx.set("/slow.yaml", Route::Hang);
    app.refresh_all().await;
    assert_eq!(
        description(&must(&app, "component:default/svc").await),
        "fast"
    );
    let errors = location_errors(&app, &format!("url:{}", fx.url("/slow.yaml"))).await;
    assert_error(&errors, &["timed out"]);
    app.stop().await;
}

// --------------------------------------------------------------- bad input

/// Ingests a good entity, then replaces the file with `broken`; the good entity
/// must still be served as it was, and the errors (on the location and on the
/// entity) are returned for the test to check.
async fn good_then_broken(broken: &str) -> (TestApp, Vec<String>, tempfile::TempDir) {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    write(&file, &component("good", "good"));
    let app = spawn_with(&file_locations(&[&file], "")).await;
    app.process_due().await;
    let good = must(&app, "component:default/good").await;
    write(&file, broken);
    app.refresh_all().await;
    let after = must(&app, "component:default/good").await;
    for field in ["apiVersion", "kind", "spec"] {
        assert_eq!(after[field], good[field], "{field}");
    }
    assert_eq!(after["metadata"]["uid"], good["metadata"]["uid"]);
    assert_eq!(description(&after), "good");
    assert!(after["metadata"]["annotations"]
        .get(ANNOTATION_ORPHAN)
        .is_none());
    let (status, _) = app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 200);
    let mut errors = location_errors(&app, &format!("file:{}", file.display())).await;
    errors.extend(status_errors(&after));
    (app, errors, cat)
}

#[tokio::test]
async fn bad_input_malformed_yaml() {
    let broken = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: good\n  description: [unclosed\nspec: {type: service\n";
    let (app, errors, _cat) = good_then_broken(broken).await;
    assert_error(&errors, &["catalog-info.yaml:1", "invalid YAML"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_alias_bomb() {
    let mut bomb = String::from("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: good\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (app, errors, _cat) = good_then_broken(&bomb).await;
    assert_error(&errors, &["catalog-info.yaml:1", "invalid YAML"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_fifty_megabyte_document() {
    let mut broken = component("good", "good");
    broken.push_str("---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: huge\n  description: ");
    broken.push_str(&"x".repeat(FIFTY_MB));
    broken.push('\n');
    let (app, errors, _cat) = good_then_broken(&broken).await;
    assert_error(&errors, &["size limit"]);
    assert!(entity(&app, "component:default/huge").await.is_none());
    app.stop().await;
}

#[tokio::test]
async fn bad_input_deep_nesting() {
    // 2 MB of brackets: the YAML parser needs time quadratic in this depth, so the
    // document must be refused before it is parsed.
    let depth = 1_000_000;
    let broken = format!(
        "{}---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: deep\n  labels: {}{}\n",
        component("good", "good"),
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let started = std::time::Instant::now();
    let (app, errors, _cat) = good_then_broken(&broken).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_error(&errors, &["catalog-info.yaml:2", "invalid YAML", "nesting"]);
    assert!(entity(&app, "component:default/deep").await.is_none());
    app.stop().await;

    // Nesting the parser can take is still refused, by the parser.
    let broken = format!(
        "{}---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: deep\n  labels: {}{}\n",
        component("good", "good"),
        "{a: ".repeat(500),
        "}".repeat(500)
    );
    let (app, errors, _cat) = good_then_broken(&broken).await;
    assert_error(&errors, &["catalog-info.yaml:2", "invalid YAML"]);
    assert!(entity(&app, "component:default/deep").await.is_none());
    app.stop().await;
}

#[tokio::test]
async fn bad_input_invalid_names_refs_and_kinds() {
    let broken = [
        component("good", "good"),
        component("-bad-name-", "n"),
        component("bad-ref", "r").replace("owner: team-a", "owner: 'group:'"),
        component("bad-kind", "k").replace("kind: Component", "kind: Widget"),
        component("bad-kind-syntax", "k").replace("kind: Component", "kind: 9lives"),
        component("bad-namespace", "k").replace(
            "  name: bad-namespace\n",
            "  name: bad-namespace\n  namespace: Not_A_Label\n",
        ),
    ]
    .join("---\n");
    let (app, errors, _cat) = good_then_broken(&broken).await;
    assert_error(
        &errors,
        &["catalog-info.yaml:2", "metadata.name", "-bad-name-"],
    );
    assert_error(&errors, &["catalog-info.yaml:3", "spec.owner", "group:"]);
    assert_error(&errors, &["catalog-info.yaml:4", "Widget", "catalog.rules"]);
    assert_error(&errors, &["catalog-info.yaml:5", "kind", "9lives"]);
    assert_error(
        &errors,
        &["catalog-info.yaml:6", "metadata.namespace", "Not_A_Label"],
    );
    let kinds: BTreeSet<String> = all_entities(&app)
        .await
        .iter()
        .map(|e| Ref::of(e).key())
        .collect();
    assert_eq!(
        kinds.len(),
        2,
        "only good and the generated location: {kinds:?}"
    );
    app.stop().await;

    // The stored entity itself turning invalid keeps its last good content.
    let (app, errors, _cat) =
        good_then_broken(&component("good", "changed").replace("owner: team-a", "owner: 'a:b:c/'"))
            .await;
    assert_error(&errors, &["spec.owner"]);
    let kept = must(&app, "component:default/good").await;
    assert_error(&status_errors(&kept), &["spec.owner"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_duplicate_keys() {
    let broken = component("good", "good")
        .replace("  owner: team-a\n", "  owner: team-a\n  owner: team-b\n");
    let (app, errors, _cat) = good_then_broken(&broken).await;
    assert_error(&errors, &["catalog-info.yaml:1", "duplicate"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_relation_to_a_missing_entity_is_kept() {
    let cat = tempfile::tempdir().expect("tmp");
    let file = cat.path().join("catalog-info.yaml");
    write(
        &file,
        &component("svc", "s").replace(
            "owner: team-a",
            "owner: team-missing\n  dependsOn: [resource:default/absent-db]",
        ),
    );
    let app = spawn_with(&file_locations(&[&file], "")).await;
    app.process_due().await;
    let svc = must(&app, "component:default/svc").await;
    let relations: BTreeSet<(String, String)> = svc["relations"]
        .as_array()
        .expect("relations")
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or_default().into(),
                r["targetRef"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        relations,
        BTreeSet::from([
            (
                "ownedBy".to_string(),
                "group:default/team-missing".to_string()
            ),
            (
                "dependsOn".to_string(),
                "resource:default/absent-db".to_string()
            ),
        ])
    );
    assert!(status_errors(&svc).is_empty());
    assert!(location_errors(&app, &format!("file:{}", file.display()))
        .await
        .is_empty());
    // The missing entity arriving later gets the reverse relation.
    write(
        &cat.path().join("catalog-info.yaml"),
        &format!(
            "{}---\napiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n  name: absent-db\nspec:\n  type: database\n  owner: team-missing\n",
            component("svc", "s").replace("owner: team-a", "owner: team-missing\n  dependsOn: [resource:default/absent-db]")
        ),
    );
    app.refresh_all().await;
    let db = must(&app, "resource:default/absent-db").await;
    let reverse: Vec<&Value> = db["relations"]
        .as_array()
        .expect("relations")
        .iter()
        .filter(|r| r["type"] == "dependencyOf")
        .collect();
    assert_eq!(reverse.len(), 1, "{db}");
    assert_eq!(reverse[0]["targetRef"], "component:default/svc");
    app.stop().await;
}

// ------------------------------------------------------- two servers, one db

#[tokio::test]
async fn two_servers_on_one_database_see_each_others_writes() {
    let fx = HttpFixture::start().await;
    fx.set_body("/a.yaml", &component("svc", "one"));
    fx.set_body("/b.yaml", &component("other", "two"));
    let app = spawn_with(&reading_allow(&[fx.host()])).await;
    let peer = app.spawn_peer().await;
    let deadline = Duration::from_secs(15);

    let (status, body) = register(&app, &fx.url("/a.yaml")).await;
    assert_eq!(status, 201, "{body}");
    let uid = must(&app, "component:default/svc").await["metadata"]["uid"].clone();
    let seen = poll_until("the peer to serve the new entity", deadline, || async {
        entity(&peer, "component:default/svc").await
    })
    .await;
    assert_eq!(seen["metadata"]["uid"], uid);

    // An update through the first is served by the second.
    fx.set_body("/a.yaml", &component("svc", "updated"));
    let (status, body) = app
        .post_json(
            "/api/catalog/refresh",
            &json!({"entityRef": "component:default/svc"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    poll_until("the peer to serve the update", deadline, || async {
        entity(&peer, "component:default/svc")
            .await
            .filter(|e| description(e) == "updated")
    })
    .await;

    // And the other way round.
    let (status, body) = register(&peer, &fx.url("/b.yaml")).await;
    assert_eq!(status, 201, "{body}");
    poll_until(
        "the first server to serve the peer's write",
        deadline,
        || async { entity(&app, "component:default/other").await },
    )
    .await;

    // A deletion, too.
    let id = body["location"]["id"].as_str().expect("id").to_string();
    let (status, _) = app.delete(&format!("/api/catalog/locations/{id}")).await;
    assert!(status == 204 || status == 200);
    poll_until("the peer to drop the deleted entity", deadline, || async {
        entity(&peer, "component:default/other")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    peer.stop().await;
    app.stop().await;
}
