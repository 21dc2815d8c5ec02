//! Turns a location's contents into stored entities.
//!
//! Reading (`read_location`) touches no database: it follows nested Location
//! entities, parses every YAML document on its own (so one bad document never
//! hides its siblings), validates, applies `catalog.rules` and computes relations.
//! Writing (`write_location`) applies that outcome in one transaction: conflicts,
//! unchanged content (by hash), orphans, and the stitching of every entity whose
//! relations or status changed, recorded in the change feed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::model::{self, EntityRef, KindPolicy, Relation};
use super::reader::{resolve_target, ReadError, Reader};
use super::store::{self, relations as rel_rows, EntityHead, NewEntity};
use super::{now_ms, CatalogError};
use crate::config::{CatalogRule, OrphanStrategy};
use crate::db::Db;

pub const ANNOTATION_LOCATION: &str = "backstage.io/managed-by-location";
pub const ANNOTATION_ORIGIN_LOCATION: &str = "backstage.io/managed-by-origin-location";
pub const ANNOTATION_ORPHAN: &str = "backstage.io/orphan";
const MAX_NESTING: usize = 10;
const MAX_LOCATIONS_PER_TREE: usize = 1000;

/// A location: `type` and `target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub struct LocationSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
}

impl LocationSpec {
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.target)
    }

    /// The Location entity Backstage generates for a registered location.
    pub fn generated_name(&self) -> String {
        use sha1::Digest as _;
        let digest = sha1::Sha1::digest(self.key().as_bytes());
        format!("generated-{}", hex::encode(digest))
    }
}

/// One entity as a location emitted it.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub entity_ref: EntityRef,
    /// The processed entity as compact JSON, before it has a uid; None when it
    /// failed validation. Kept as text so a large location stays small in memory.
    pub entity: Option<String>,
    pub errors: Vec<String>,
    pub hash: String,
    pub is_root_location: bool,
}

/// Everything read from one root location.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub emitted: Vec<Emitted>,
    pub location_errors: Vec<String>,
    /// False when a file or a document could not be read: orphans are then left alone.
    pub complete: bool,
}

/// Which kinds may come from which locations (Backstage's catalog rules).
#[derive(Debug, Clone)]
pub struct Rules {
    global: Vec<CatalogRule>,
    per_location: Vec<(LocationSpec, Vec<CatalogRule>)>,
    policy: KindPolicy,
}

impl Rules {
    pub fn new(
        global: Option<Vec<CatalogRule>>,
        per_location: Vec<(LocationSpec, Vec<CatalogRule>)>,
    ) -> Rules {
        let global = global.unwrap_or_else(|| {
            vec![CatalogRule {
                allow: vec!["Component".into(), "API".into(), "Location".into()],
                locations: None,
            }]
        });
        let builtin: HashSet<String> = super::BUILTIN_KINDS
            .iter()
            .map(|k| k.to_lowercase())
            .collect();
        let extra: Vec<String> = global
            .iter()
            .chain(per_location.iter().flat_map(|(_, r)| r.iter()))
            .flat_map(|r| r.allow.iter())
            .filter(|k| !builtin.contains(&k.to_lowercase()))
            .cloned()
            .collect();
        Rules {
            global,
            per_location,
            policy: KindPolicy::with_extra_kinds(extra),
        }
    }

    /// Allows every built-in kind from everywhere (the demo and `catalog validate`).
    pub fn allow_builtin() -> Rules {
        Rules::new(
            Some(vec![CatalogRule {
                allow: super::BUILTIN_KINDS.iter().map(|k| k.to_string()).collect(),
                locations: None,
            }]),
            vec![],
        )
    }

    pub fn policy(&self) -> &KindPolicy {
        &self.policy
    }

    fn allows(&self, kind: &str, location: &LocationSpec, root: &LocationSpec) -> bool {
        let kind_ok = |r: &CatalogRule| r.allow.iter().any(|k| k.eq_ignore_ascii_case(kind));
        let global = self.global.iter().any(|r| {
            kind_ok(r)
                && match &r.locations {
                    None => true,
                    Some(locs) => locs.iter().any(|l| {
                        l.kind == location.kind
                            && match (&l.target, &l.pattern) {
                                (Some(t), _) => t == &location.target || t == &root.target,
                                (None, Some(p)) => glob_match(p, &location.target),
                                (None, None) => true,
                            }
                    }),
                }
        });
        global
            || self.per_location.iter().any(|(spec, rules)| {
                (spec == root || spec == location) && rules.iter().any(kind_ok)
            })
    }
}

/// `*` matches within a path segment, `**` across segments.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(text))
}

/// Deepest flow nesting (`[` and `{`) that a document may have. The YAML parser
/// refuses far less deep nesting itself, but it takes time quadratic in the
/// depth of flow collections to get there, so deeper documents are refused
/// before they are parsed.
pub const MAX_FLOW_DEPTH: usize = 1000;

/// The documents of a YAML stream, split at `---` markers in the first column,
/// each as (byte range, deepest flow nesting). Brackets are counted without
/// regard to quoting: an over-estimate, which is what a limit needs.
fn document_spans(text: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let mut spans = Vec::new();
    let (mut start, mut depth, mut max) = (0usize, 0usize, 0usize);
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let marker = line.strip_prefix("---").is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_whitespace())
        });
        if marker && offset > start {
            spans.push((start..offset, max));
            (start, depth, max) = (offset, 0, 0);
        }
        for b in line.bytes() {
            match b {
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        offset += line.len();
    }
    spans.push((start..text.len(), max));
    // What precedes the first marker is no document when it is only blanks and comments.
    if spans.len() > 1 {
        let first = &text[spans[0].0.clone()];
        if first
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            spans.remove(0);
        }
    }
    spans
}

/// Most documents read from one file.
const MAX_DOCUMENTS: usize = 100_000;
/// Documents parsed ahead of their processing.
const PARSE_AHEAD: usize = 32;

/// Splits multi-document YAML into JSON values, one result per document.
/// Errors carry the 1-based document number.
pub fn parse_documents(bytes: &[u8]) -> Vec<(usize, Result<Value, String>)> {
    documents(bytes).collect()
}

/// The documents of multi-document YAML, parsed one at a time, so that a large
/// file never has to be held parsed in memory all at once.
pub fn documents(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<Value, String>)> + '_ {
    let (text, not_utf8) = match std::str::from_utf8(bytes) {
        Ok(t) => (t, None),
        Err(e) => ("", Some(Err(format!("not UTF-8 text: {e}")))),
    };
    let spans = document_spans(text);
    // Parse each document on its own when one is nested too deeply, leaving it out.
    let parts: Vec<(&str, bool)> = if not_utf8.is_some() {
        vec![]
    } else if spans.iter().any(|(_, depth)| *depth > MAX_FLOW_DEPTH) {
        spans
            .into_iter()
            .map(|(range, depth)| (&text[range], depth > MAX_FLOW_DEPTH))
            .collect()
    } else {
        vec![(text, false)]
    };
    let parsed = parts.into_iter().flat_map(|(part, too_deep)| {
        let deep = too_deep.then(|| {
            Err(format!(
                "invalid YAML: nesting deeper than {MAX_FLOW_DEPTH} levels"
            ))
        });
        let stream = (!too_deep).then(|| YamlStream::new(part));
        deep.into_iter().chain(stream.into_iter().flatten())
    });
    not_utf8
        .into_iter()
        .chain(parsed)
        .enumerate()
        .map(|(i, doc)| (i + 1, doc))
        .take(MAX_DOCUMENTS + 1)
        .map(|(n, doc)| {
            if n > MAX_DOCUMENTS {
                (n, Err("too many documents in one file".into()))
            } else {
                (n, doc)
            }
        })
}

/// The documents of one YAML stream, as JSON values.
struct YamlStream<'a> {
    docs: serde_yaml_ng::Deserializer<'a>,
    last_error: Option<String>,
    done: bool,
}

impl<'a> YamlStream<'a> {
    fn new(text: &'a str) -> Self {
        YamlStream {
            docs: serde_yaml_ng::Deserializer::from_str(text),
            last_error: None,
            done: false,
        }
    }
}

impl Iterator for YamlStream<'_> {
    type Item = Result<Value, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let doc = self.docs.next()?;
        let parsed = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| format!("invalid YAML: {e}"))
            .and_then(|v| {
                serde_json::to_value(&v).map_err(|e| format!("unsupported YAML value: {e}"))
            });
        // After a syntax error the parser cannot resynchronise and repeats the same
        // error for ever; an error within one document (a duplicate key) is not repeated.
        match &parsed {
            Err(e) if self.last_error.as_ref() == Some(e) => {
                self.done = true;
                return None;
            }
            Err(e) => self.last_error = Some(e.clone()),
            Ok(_) => self.last_error = None,
        }
        Some(parsed)
    }
}

/// Validates and processes one document. Err carries messages for the location.
pub fn process_document(
    raw: Value,
    location: &LocationSpec,
    root: &LocationSpec,
    rules: &Rules,
) -> Result<Emitted, (Option<EntityRef>, Vec<String>)> {
    let entity_ref = validated_ref(&raw, rules.policy())?;
    if !rules.allows(&entity_ref.kind, location, root) {
        return Err((
            None,
            vec![format!(
                "{entity_ref}: kind {} is not allowed from {} by catalog.rules",
                entity_ref.kind,
                location.key()
            )],
        ));
    }
    finish_processing(raw, entity_ref, location, root)
}

/// Validates and processes one entity of an entity provider, whose location is
/// its root. `catalog.rules` govern locations only, as in Backstage, so they do
/// not apply here.
pub fn process_provided(
    raw: Value,
    root: &LocationSpec,
    policy: &KindPolicy,
) -> Result<Emitted, (Option<EntityRef>, Vec<String>)> {
    let entity_ref = validated_ref(&raw, policy)?;
    finish_processing(raw, entity_ref, root, root)
}

/// The ref of an entity that passes validation.
fn validated_ref(
    raw: &Value,
    policy: &KindPolicy,
) -> Result<EntityRef, (Option<EntityRef>, Vec<String>)> {
    let entity_ref = EntityRef::of_entity(raw).ok();
    if let Err(errors) = model::validate_entity(raw, policy) {
        return Err((entity_ref, errors.iter().map(ToString::to_string).collect()));
    }
    entity_ref.ok_or_else(|| (None, vec!["entity has no valid kind and name".into()]))
}

/// Sets the server-owned fields of a valid entity and checks its relations.
fn finish_processing(
    mut entity: Value,
    entity_ref: EntityRef,
    location: &LocationSpec,
    root: &LocationSpec,
) -> Result<Emitted, (Option<EntityRef>, Vec<String>)> {
    prepare(&mut entity, location, root);
    // Relations are generated again when the entity is written; here they are checked.
    model::generate_relations(&entity)
        .map_err(|e| (Some(entity_ref.clone()), vec![e.to_string()]))?;
    let text = entity.to_string();
    Ok(Emitted {
        entity_ref,
        hash: text_hash(&text),
        entity: Some(text),
        errors: vec![],
        is_root_location: false,
    })
}

/// `process_document`, after resolving the document's placeholders as `location`
/// reads them: what ingestion does with each document.
pub async fn process_document_resolved(
    reader: &Reader,
    raw: Value,
    location: &LocationSpec,
    root: &LocationSpec,
    rules: &Rules,
    allow_file: bool,
) -> Result<Emitted, (Option<EntityRef>, Vec<String>)> {
    let raw =
        resolve_placeholders_if_allowed(reader, location, root, rules, allow_file, raw).await?;
    process_document(raw, location, root, rules)
}

/// Sets the server-owned metadata of a processed entity.
fn prepare(entity: &mut Value, location: &LocationSpec, root: &LocationSpec) {
    let Some(obj) = entity.as_object_mut() else {
        return;
    };
    obj.remove("relations");
    obj.remove("status");
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    meta.remove("uid");
    meta.remove("etag");
    meta.remove("generation");
    if !meta.contains_key("namespace") {
        meta.insert("namespace".into(), json!(model::DEFAULT_NAMESPACE));
    }
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(ANNOTATION_LOCATION.into(), json!(location.key()));
        a.insert(ANNOTATION_ORIGIN_LOCATION.into(), json!(root.key()));
    }
}

fn content_hash(v: &Value) -> String {
    text_hash(&v.to_string())
}

/// The hash of an entity's compact JSON text.
fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The Location entity standing for a root location.
pub fn generated_location_entity(root: &LocationSpec) -> Emitted {
    let mut entity = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": root.generated_name()},
        "spec": {"type": root.kind, "target": root.target},
    });
    prepare(&mut entity, root, root);
    let text = entity.to_string();
    Emitted {
        entity_ref: EntityRef {
            kind: "Location".into(),
            namespace: model::DEFAULT_NAMESPACE.into(),
            name: root.generated_name(),
        },
        hash: text_hash(&text),
        entity: Some(text),
        errors: vec![],
        is_root_location: true,
    }
}

fn label(location: &LocationSpec) -> String {
    location.target.clone()
}

/// Reads a root location and everything it nests.
pub async fn read_location(
    reader: &Reader,
    rules: &Rules,
    root: &LocationSpec,
    allow_file: bool,
) -> Outcome {
    let mut out = Outcome {
        emitted: vec![generated_location_entity(root)],
        location_errors: vec![],
        complete: true,
    };
    let mut seen_refs: HashMap<String, String> = HashMap::new();
    let mut visited: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(LocationSpec, usize, bool)> = VecDeque::new();
    queue.push_back((root.clone(), 0, false));
    while let Some((loc, depth, optional)) = queue.pop_front() {
        if !visited.insert(loc.key()) {
            continue;
        }
        if visited.len() > MAX_LOCATIONS_PER_TREE {
            out.location_errors.push(format!(
                "{}: more than {MAX_LOCATIONS_PER_TREE} nested locations",
                label(root)
            ));
            out.complete = false;
            break;
        }
        let bytes = match read_one(reader, &loc, allow_file).await {
            Ok(b) => b,
            Err(ReadError::NotFound(_)) if optional => continue,
            Err(e) => {
                out.location_errors.push(format!("{}: {e}", label(&loc)));
                out.complete = false;
                continue;
            }
        };
        // Parsed on a blocking thread a few documents ahead, never all at once.
        let (tx, mut parsed) = tokio::sync::mpsc::channel(PARSE_AHEAD);
        let parser = tokio::task::spawn_blocking(move || {
            for doc in documents(&bytes) {
                if tx.blocking_send(doc).is_err() {
                    break;
                }
            }
        });
        while let Some((n, doc)) = parsed.recv().await {
            let raw = match doc {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    out.location_errors
                        .push(format!("{}:{n}: {e}", label(&loc)));
                    out.complete = false;
                    continue;
                }
            };
            match process_document_resolved(reader, raw, &loc, root, rules, allow_file).await {
                Ok(emitted) => {
                    let key = emitted.entity_ref.key();
                    if let Some(first) = seen_refs.get(&key) {
                        out.location_errors.push(format!(
                            "{}:{n}: {} is also defined in {first}; the first definition is kept",
                            label(&loc),
                            emitted.entity_ref
                        ));
                        continue;
                    }
                    seen_refs.insert(key, format!("{}:{n}", label(&loc)));
                    if emitted.entity_ref.kind.eq_ignore_ascii_case("location") {
                        let entity = emitted
                            .entity
                            .as_deref()
                            .and_then(|t| serde_json::from_str::<Value>(t).ok())
                            .unwrap_or(Value::Null);
                        enqueue_targets(&entity, &loc, depth, &mut queue, &mut out, n);
                    }
                    out.emitted.push(emitted);
                }
                Err((entity_ref, errors)) => {
                    let message = errors.join("; ");
                    match entity_ref {
                        // Known ref: the entity keeps its last good content and shows the error.
                        Some(r) if !seen_refs.contains_key(&r.key()) => {
                            seen_refs.insert(r.key(), format!("{}:{n}", label(&loc)));
                            out.location_errors
                                .push(format!("{}:{n}: {r}: {message}", label(&loc)));
                            out.emitted.push(Emitted {
                                entity_ref: r,
                                entity: None,
                                errors,
                                hash: String::new(),
                                is_root_location: false,
                            });
                        }
                        _ => out
                            .location_errors
                            .push(format!("{}:{n}: {message}", label(&loc))),
                    }
                }
            }
        }
        if let Err(e) = parser.await {
            out.location_errors
                .push(format!("{}: parsing failed: {e}", label(&loc)));
            out.complete = false;
        }
    }
    out
}

/// Most placeholders resolved in one entity.
pub const MAX_PLACEHOLDERS: usize = 1000;
/// Most bytes that the placeholders of one entity may read, together.
pub const MAX_PLACEHOLDER_BYTES: usize = super::reader::MAX_READ_BYTES;

/// Which placeholder a one-key object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaceholderKind {
    Text,
    Json,
    Yaml,
}

impl PlaceholderKind {
    fn of(key: &str) -> Option<PlaceholderKind> {
        match key {
            "$text" => Some(PlaceholderKind::Text),
            "$json" => Some(PlaceholderKind::Json),
            "$yaml" => Some(PlaceholderKind::Yaml),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            PlaceholderKind::Text => "$text",
            PlaceholderKind::Json => "$json",
            PlaceholderKind::Yaml => "$yaml",
        }
    }
}

/// One placeholder found in an entity: where it is, which it is, and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    /// JSON pointer of the placeholder object.
    pointer: String,
    /// Dotted path, for messages (`spec.definition`).
    path: String,
    kind: PlaceholderKind,
    target: String,
}

/// Finds placeholders as Backstage's PlaceholderProcessor does: an object whose
/// only key is `$text`, `$json` or `$yaml` with a string value. An object with
/// any other `$`-key (JSON Schema's `$ref`, say), or a `$`-key among others, is
/// left alone, and so is everything inside it.
fn find_placeholders(
    value: &Value,
    pointer: &mut String,
    path: &mut String,
    out: &mut Vec<Placeholder>,
) {
    match value {
        Value::Object(map) => {
            if map.keys().any(|k| k.starts_with('$')) {
                if map.len() == 1 {
                    if let Some((key, Value::String(target))) = map.iter().next() {
                        if let Some(kind) = PlaceholderKind::of(key) {
                            out.push(Placeholder {
                                pointer: pointer.clone(),
                                path: if path.is_empty() {
                                    "<root>".into()
                                } else {
                                    path.clone()
                                },
                                kind,
                                target: target.clone(),
                            });
                        }
                    }
                }
                return;
            }
            for (k, v) in map {
                let (pl, pa) = (pointer.len(), path.len());
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                find_placeholders(v, pointer, path, out);
                pointer.truncate(pl);
                path.truncate(pa);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let (pl, pa) = (pointer.len(), path.len());
                pointer.push_str(&format!("/{i}"));
                path.push_str(&format!("[{i}]"));
                find_placeholders(v, pointer, path, out);
                pointer.truncate(pl);
                path.truncate(pa);
            }
        }
        _ => {}
    }
}

/// Reads what a placeholder names, relative to the location of its entity.
/// File locations read files (as nested Location targets do) and absolute
/// http(s) URLs; url locations read only URLs, through the allow-list.
async fn read_placeholder_target(
    reader: &Reader,
    loc: &LocationSpec,
    allow_file: bool,
    target: &str,
) -> Result<(String, Vec<u8>), String> {
    let absolute_url = url::Url::parse(target)
        .ok()
        .filter(|u| u.scheme().len() > 1 && !u.cannot_be_a_base());
    match (loc.kind.as_str(), absolute_url) {
        (_, Some(url)) => {
            let shown = url.to_string();
            reader
                .read_url(url.as_str())
                .await
                .map(|b| (shown, b))
                .map_err(|e| e.to_string())
        }
        ("file", None) if allow_file => {
            let path = resolve_target("file", &loc.target, target)?;
            reader
                .read_file(std::path::Path::new(&path))
                .await
                .map(|b| (path.clone(), b))
                .map_err(|e| e.to_string())
        }
        ("url", None) => {
            let url = resolve_target("url", &loc.target, target)?;
            reader
                .read_url(&url)
                .await
                .map(|b| (url.clone(), b))
                .map_err(|e| e.to_string())
        }
        (other, None) => Err(format!("a {other} location cannot read \"{target}\"")),
    }
}

/// Turns the bytes a placeholder read into its value.
fn placeholder_value(kind: PlaceholderKind, bytes: &[u8]) -> Result<Value, String> {
    match kind {
        PlaceholderKind::Text => Ok(Value::String(String::from_utf8_lossy(bytes).into_owned())),
        PlaceholderKind::Json => {
            serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))
        }
        PlaceholderKind::Yaml => {
            let docs: Vec<(usize, Result<Value, String>)> = parse_documents(bytes)
                .into_iter()
                .filter(|(_, d)| !matches!(d, Ok(Value::Null)))
                .collect();
            if let Some((n, Err(e))) = docs.iter().find(|(_, d)| d.is_err()) {
                return Err(format!("document {n}: {e}"));
            }
            match <[_; 1]>::try_from(docs) {
                Ok([(_, Ok(v))]) => Ok(v),
                Ok([(_, Err(e))]) => Err(e),
                Err(docs) => Err(format!(
                    "expected exactly one YAML document, found {}",
                    docs.len()
                )),
            }
        }
    }
}

/// Resolves every `$text`, `$json` and `$yaml` placeholder of an entity, as
/// Backstage's PlaceholderProcessor does, before the entity is validated.
/// The error names the placeholder, its field and its target.
pub async fn resolve_placeholders(
    reader: &Reader,
    loc: &LocationSpec,
    allow_file: bool,
    mut entity: Value,
) -> Result<Value, String> {
    let mut found = Vec::new();
    find_placeholders(&entity, &mut String::new(), &mut String::new(), &mut found);
    if found.len() > MAX_PLACEHOLDERS {
        return Err(format!(
            "{} placeholders in one entity; at most {MAX_PLACEHOLDERS} are resolved",
            found.len()
        ));
    }
    let mut budget = MAX_PLACEHOLDER_BYTES;
    for p in found {
        let what = format!("{}: placeholder {} \"{}\"", p.path, p.kind.key(), p.target);
        let (resolved, bytes) = read_placeholder_target(reader, loc, allow_file, &p.target)
            .await
            .map_err(|e| format!("{what} could not be read: {e}"))?;
        budget = budget.checked_sub(bytes.len()).ok_or_else(|| {
            format!(
                "{what}: the placeholders of this entity read more than {MAX_PLACEHOLDER_BYTES} bytes"
            )
        })?;
        let value = placeholder_value(p.kind, &bytes)
            .map_err(|e| format!("{what} (read from {resolved}) could not be parsed: {e}"))?;
        match entity.pointer_mut(&p.pointer) {
            Some(slot) => *slot = value,
            None => return Err(format!("{what}: the placeholder vanished")),
        }
    }
    Ok(entity)
}

/// Resolves placeholders unless the entity would be refused anyway: a kind
/// that `catalog.rules` does not allow here is never read for.
async fn resolve_placeholders_if_allowed(
    reader: &Reader,
    loc: &LocationSpec,
    root: &LocationSpec,
    rules: &Rules,
    allow_file: bool,
    raw: Value,
) -> Result<Value, (Option<EntityRef>, Vec<String>)> {
    let entity_ref = EntityRef::of_entity(&raw).ok();
    if entity_ref
        .as_ref()
        .is_some_and(|r| !rules.allows(&r.kind, loc, root))
    {
        return Ok(raw);
    }
    resolve_placeholders(reader, loc, allow_file, raw)
        .await
        .map_err(|e| (entity_ref, vec![e]))
}

fn enqueue_targets(
    entity: &Value,
    loc: &LocationSpec,
    depth: usize,
    queue: &mut VecDeque<(LocationSpec, usize, bool)>,
    out: &mut Outcome,
    n: usize,
) {
    let spec = entity.get("spec");
    let kind = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or(&loc.kind)
        .to_string();
    let optional = spec.and_then(|s| s.get("presence")).and_then(Value::as_str) == Some("optional");
    let mut targets: Vec<String> = Vec::new();
    if let Some(t) = spec.and_then(|s| s.get("target")).and_then(Value::as_str) {
        targets.push(t.to_string());
    }
    if let Some(Value::Array(ts)) = spec.and_then(|s| s.get("targets")) {
        targets.extend(ts.iter().filter_map(Value::as_str).map(String::from));
    }
    if depth + 1 > MAX_NESTING {
        out.location_errors.push(format!(
            "{}:{n}: locations nest deeper than {MAX_NESTING} levels",
            label(loc)
        ));
        out.complete = false;
        return;
    }
    for t in targets {
        // A nested target may not change the type of reading: a URL file cannot name local files.
        if kind != loc.kind {
            out.location_errors.push(format!(
                "{}:{n}: a {} location cannot name a {kind} target",
                label(loc),
                loc.kind
            ));
            continue;
        }
        match resolve_target(&kind, &loc.target, &t) {
            Ok(target) => queue.push_back((
                LocationSpec {
                    kind: kind.clone(),
                    target,
                },
                depth + 1,
                optional,
            )),
            Err(e) => out.location_errors.push(format!("{}:{n}: {e}", label(loc))),
        }
    }
}

async fn read_one(
    reader: &Reader,
    loc: &LocationSpec,
    allow_file: bool,
) -> Result<Vec<u8>, ReadError> {
    match loc.kind.as_str() {
        "file" if allow_file => reader.read_file(std::path::Path::new(&loc.target)).await,
        "url" => reader.read_url(&loc.target).await,
        other => Err(ReadError::NotAllowed(format!("location type {other}"))),
    }
}

/// What one write changed.
#[derive(Debug, Default)]
pub struct WriteResult {
    pub changed: usize,
    pub location_errors: Vec<String>,
}

/// Applies a root location's outcome in one transaction.
pub async fn write_location(
    db: &Db,
    location_id: &str,
    outcome: Outcome,
    orphan_strategy: OrphanStrategy,
    next_refresh_at: i64,
) -> Result<WriteResult, CatalogError> {
    let now = now_ms();
    let guard = db.begin_write().await?;
    let txn = &guard.txn;
    let mine: HashMap<String, EntityHead> = store::heads_by_location(txn, location_id)
        .await?
        .into_iter()
        .map(|h| (h.entity_ref.clone(), h))
        .collect();
    let foreign_refs: Vec<String> = outcome
        .emitted
        .iter()
        .map(|e| e.entity_ref.key())
        .filter(|k| !mine.contains_key(k))
        .collect();
    let foreign: HashMap<String, EntityHead> = store::heads_by_refs(txn, &foreign_refs)
        .await?
        .into_iter()
        .map(|h| (h.entity_ref.clone(), h))
        .collect();

    let mut location_errors = outcome.location_errors;
    let mut w = Writer::default();
    let mut emitted_refs: HashSet<String> = HashSet::new();
    let mut root = None;
    for e in outcome.emitted {
        let key = e.entity_ref.key();
        if let Some(other) = foreign.get(&key) {
            location_errors.push(format!(
                "{}: conflicts with the same entity from another location ({}); the first location keeps it",
                e.entity_ref, other.location_id
            ));
            continue;
        }
        emitted_refs.insert(key.clone());
        if e.is_root_location {
            root = Some(e);
            continue;
        }
        w.apply(
            txn,
            location_id,
            e,
            mine.get(&key),
            &mut location_errors,
            now,
        )
        .await?;
    }
    if let Some(mut r) = root {
        r.errors = location_errors.clone();
        let key = r.entity_ref.key();
        w.apply(txn, location_id, r, mine.get(&key), &mut Vec::new(), now)
            .await?;
    }

    if outcome.complete {
        let orphans: Vec<&EntityHead> = mine
            .values()
            .filter(|h| !emitted_refs.contains(&h.entity_ref))
            .collect();
        match orphan_strategy {
            OrphanStrategy::Delete => {
                let ids: Vec<i64> = orphans.iter().map(|h| h.id).collect();
                w.delete(txn, &ids).await?;
            }
            OrphanStrategy::Keep => {
                let ids: Vec<i64> = orphans.iter().map(|h| h.id).collect();
                for m in store::entities_by_ids(txn, &ids).await? {
                    let Ok(mut processed) = serde_json::from_str::<Value>(&m.processed) else {
                        continue;
                    };
                    let already = processed
                        .pointer("/metadata/annotations/backstage.io~1orphan")
                        .is_some();
                    if already {
                        continue;
                    }
                    if let Some(a) = processed
                        .pointer_mut("/metadata/annotations")
                        .and_then(Value::as_object_mut)
                    {
                        a.insert(ANNOTATION_ORPHAN.into(), json!("true"));
                    }
                    let hash = format!("orphan:{}", m.hash);
                    store::update_processed(
                        txn,
                        m.id,
                        &hash,
                        &processed.to_string(),
                        m.errors.clone(),
                        now,
                    )
                    .await?;
                    w.changed_ids.insert(m.id);
                    w.stitch_refs.insert(m.entity_ref.clone());
                }
            }
        }
    }

    let errors_json = (!location_errors.is_empty())
        .then(|| serde_json::to_string(&location_errors).unwrap_or_default());
    store::set_location_result(txn, location_id, errors_json, now, next_refresh_at).await?;
    let changed = w.finish(db, txn, now).await?;
    guard.txn.commit().await?;
    Ok(WriteResult {
        changed,
        location_errors,
    })
}

/// Deletes a location and every entity it provided.
pub async fn delete_location(db: &Db, location_id: &str) -> Result<usize, CatalogError> {
    let now = now_ms();
    let guard = db.begin_write().await?;
    let txn = &guard.txn;
    let ids: Vec<i64> = store::heads_by_location(txn, location_id)
        .await?
        .iter()
        .map(|h| h.id)
        .collect();
    let mut w = Writer::default();
    w.delete(txn, &ids).await?;
    store::delete_location(txn, location_id).await?;
    let changed = w.finish(db, txn, now).await?;
    guard.txn.commit().await?;
    Ok(changed)
}

/// Deletes one entity; it returns if its location still emits it.
pub async fn delete_entity(db: &Db, id: i64) -> Result<usize, CatalogError> {
    let now = now_ms();
    let guard = db.begin_write().await?;
    let txn = &guard.txn;
    let mut w = Writer::default();
    w.delete(txn, &[id]).await?;
    let changed = w.finish(db, txn, now).await?;
    guard.txn.commit().await?;
    Ok(changed)
}

/// Accumulates one transaction's changes and stitches at the end.
#[derive(Default)]
struct Writer {
    changed_ids: BTreeSet<i64>,
    deleted_ids: BTreeSet<i64>,
    stitch_refs: BTreeSet<String>,
    new_rows: Vec<(NewEntity, Vec<Relation>)>,
}

fn relation_rows(origin: i64, relations: &[Relation]) -> Vec<rel_rows::Model> {
    relations
        .iter()
        .map(|r| rel_rows::Model {
            originating_entity_id: origin,
            source_ref: r.source.key(),
            kind: r.r#type.clone(),
            target_ref: r.target.to_string(),
        })
        .collect()
}

fn errors_json(errors: &[String]) -> Option<String> {
    (!errors.is_empty()).then(|| serde_json::to_string(errors).unwrap_or_default())
}

impl Writer {
    async fn apply(
        &mut self,
        txn: &impl sea_orm::ConnectionTrait,
        location_id: &str,
        e: Emitted,
        existing: Option<&EntityHead>,
        location_errors: &mut Vec<String>,
        now: i64,
    ) -> Result<(), CatalogError> {
        let key = e.entity_ref.key();
        let errors = errors_json(&e.errors);
        match (existing, e.entity) {
            (Some(h), Some(text)) => {
                if h.hash == e.hash && h.errors == errors {
                    return Ok(());
                }
                let (mut entity, relations) = parse_processed(&text)?;
                set_uid(&mut entity, &h.uid);
                let old = store::relations_from(txn, &[h.id]).await?;
                self.stitch_refs
                    .extend(old.into_iter().map(|r| r.source_ref));
                store::delete_relations_from(txn, &[h.id]).await?;
                let rows = relation_rows(h.id, &relations);
                self.stitch_refs
                    .extend(rows.iter().map(|r| r.source_ref.clone()));
                store::insert_relations(txn, rows).await?;
                store::update_processed(txn, h.id, &e.hash, &entity.to_string(), errors, now)
                    .await?;
                self.changed_ids.insert(h.id);
                self.stitch_refs.insert(key);
            }
            (None, Some(text)) => {
                let (mut entity, relations) = parse_processed(&text)?;
                let uid = uuid::Uuid::new_v4().to_string();
                set_uid(&mut entity, &uid);
                self.new_rows.push((
                    NewEntity {
                        uid,
                        kind: e.entity_ref.kind.to_lowercase(),
                        entity_ref: key,
                        location_id: location_id.to_string(),
                        hash: e.hash,
                        processed: entity.to_string(),
                        errors,
                        updated_at: now,
                    },
                    relations,
                ));
                if self.new_rows.len() >= WRITE_BATCH {
                    self.insert_new(txn).await?;
                }
            }
            (Some(h), None) => {
                if h.errors != errors {
                    store::update_errors(txn, h.id, errors).await?;
                    self.changed_ids.insert(h.id);
                    self.stitch_refs.insert(key);
                }
            }
            (None, None) => {
                // Nothing to keep: the error is already on the location.
                let _ = location_errors;
            }
        }
        Ok(())
    }

    /// Inserts the new entities collected so far, with their relations.
    async fn insert_new(
        &mut self,
        txn: &impl sea_orm::ConnectionTrait,
    ) -> Result<(), CatalogError> {
        if self.new_rows.is_empty() {
            return Ok(());
        }
        let (rows, relations): (Vec<NewEntity>, Vec<Vec<Relation>>) =
            std::mem::take(&mut self.new_rows).into_iter().unzip();
        self.stitch_refs
            .extend(rows.iter().map(|r| r.entity_ref.clone()));
        let ids = store::insert_entities(txn, rows).await?;
        let mut all = Vec::new();
        for (id, rels) in ids.iter().zip(relations) {
            let rows = relation_rows(*id, &rels);
            self.stitch_refs
                .extend(rows.iter().map(|r| r.source_ref.clone()));
            all.extend(rows);
        }
        store::insert_relations(txn, all).await?;
        self.changed_ids.extend(ids);
        Ok(())
    }

    async fn delete(
        &mut self,
        txn: &impl sea_orm::ConnectionTrait,
        ids: &[i64],
    ) -> Result<(), CatalogError> {
        if ids.is_empty() {
            return Ok(());
        }
        let old = store::relations_from(txn, ids).await?;
        self.stitch_refs
            .extend(old.into_iter().map(|r| r.source_ref));
        store::delete_relations_from(txn, ids).await?;
        store::delete_entities(txn, ids).await?;
        self.deleted_ids.extend(ids.iter().copied());
        Ok(())
    }

    /// Inserts new entities, stitches everything affected and records the feed.
    async fn finish(
        mut self,
        db: &Db,
        txn: &impl sea_orm::ConnectionTrait,
        now: i64,
    ) -> Result<usize, CatalogError> {
        self.insert_new(txn).await?;
        let refs: Vec<String> = self.stitch_refs.iter().cloned().collect();
        let stitched = stitch(txn, &refs).await?;
        self.changed_ids.extend(stitched);
        let mut feed: Vec<i64> = self.changed_ids.iter().copied().collect();
        feed.extend(self.deleted_ids.iter().copied());
        feed.sort_unstable();
        feed.dedup();
        if !feed.is_empty() {
            store::record_changes(txn, &feed, now).await?;
            if db.backend() == sea_orm::DatabaseBackend::Postgres {
                txn.execute_unprepared(&format!("NOTIFY {}", super::feed::NOTIFY_CHANNEL))
                    .await?;
            }
        }
        Ok(feed.len())
    }
}

/// New entities inserted per statement batch: bounds the memory a large write needs.
const WRITE_BATCH: usize = 500;

/// A processed entity's JSON as written by `process_document`, with its relations.
fn parse_processed(text: &str) -> Result<(Value, Vec<Relation>), CatalogError> {
    let entity: Value = serde_json::from_str(text)
        .map_err(|e| CatalogError::Internal(anyhow::anyhow!("processed entity: {e}")))?;
    let relations = model::generate_relations(&entity)
        .map_err(|e| CatalogError::Internal(anyhow::anyhow!("processed entity: {e}")))?;
    Ok((entity, relations))
}

fn set_uid(entity: &mut Value, uid: &str) {
    if let Some(meta) = entity.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("uid".into(), json!(uid));
    }
}

/// Entities stitched per round: bounds the memory a large write needs.
const STITCH_CHUNK: usize = 1000;

/// Recomputes the final JSON of the given entities; returns the ids that changed.
async fn stitch(
    txn: &impl sea_orm::ConnectionTrait,
    refs: &[String],
) -> Result<Vec<i64>, CatalogError> {
    let mut changed = Vec::new();
    for chunk in refs.chunks(STITCH_CHUNK) {
        changed.extend(stitch_chunk(txn, chunk).await?);
    }
    Ok(changed)
}

async fn stitch_chunk(
    txn: &impl sea_orm::ConnectionTrait,
    refs: &[String],
) -> Result<Vec<i64>, CatalogError> {
    let entities = store::entities_by_refs(txn, refs).await?;
    if entities.is_empty() {
        return Ok(vec![]);
    }
    let present: Vec<String> = entities.iter().map(|e| e.entity_ref.clone()).collect();
    let mut by_source: HashMap<String, BTreeSet<(String, String)>> = HashMap::new();
    for r in store::relations_with_source(txn, &present).await? {
        by_source
            .entry(r.source_ref)
            .or_default()
            .insert((r.kind, r.target_ref));
    }
    let mut changed = Vec::new();
    let mut updates = Vec::new();
    for m in entities {
        let Ok(mut entity) = serde_json::from_str::<Value>(&m.processed) else {
            continue;
        };
        let relations: Vec<Value> = by_source
            .get(&m.entity_ref)
            .map(|set| {
                set.iter()
                    .map(|(t, target)| json!({"type": t, "targetRef": target}))
                    .collect()
            })
            .unwrap_or_default();
        let errors: Vec<String> = m
            .errors
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        if let Some(obj) = entity.as_object_mut() {
            obj.insert("relations".into(), Value::Array(relations));
            if !errors.is_empty() {
                let items: Vec<Value> = errors
                    .iter()
                    .map(|message| {
                        json!({
                            "type": "backstage.io/catalog-processing",
                            "level": "error",
                            "message": format!("InputError: {message}"),
                            "error": {"name": "InputError", "message": message},
                        })
                    })
                    .collect();
                obj.insert("status".into(), json!({"items": items}));
            }
        }
        let etag = content_hash(&entity)[..32].to_string();
        if let Some(meta) = entity.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("etag".into(), json!(etag));
        }
        let text = entity.to_string();
        if text != m.final_entity {
            changed.push(m.id);
            updates.push((m.id, text, etag));
        }
    }
    store::update_finals(txn, &updates).await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_fail_alone() {
        let docs = parse_documents(b"a: 1\n---\nb: [\n---\nc: 3\n");
        assert!(docs[0].1.is_ok());
        assert!(docs.iter().any(|(_, d)| d.is_err()));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        let docs = parse_documents(bomb.as_bytes());
        assert!(
            docs[0].1.is_err(),
            "{:?}",
            docs[0].1.as_ref().map(|_| "parsed")
        );
    }

    #[test]
    fn deep_flow_nesting_is_refused_quickly_and_alone() {
        let depth = 2_000_000;
        let text = format!(
            "a: 1\n---\nb: {}{}\n---\n# c\nc: [[3]]\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let started = std::time::Instant::now();
        let docs = parse_documents(text.as_bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(docs.len(), 3, "{docs:?}");
        assert_eq!(docs[0], (1, Ok(json!({"a": 1}))));
        assert_eq!(docs[1].0, 2);
        assert!(docs[1]
            .1
            .as_ref()
            .is_err_and(|e| e.contains("nesting deeper")));
        assert_eq!(docs[2], (3, Ok(json!({"c": [[3]]}))));
        // Moderate nesting goes to the parser, which has its own, lower limit.
        let docs = parse_documents(format!("x: {}{}", "[".repeat(500), "]".repeat(500)).as_bytes());
        assert!(docs[0].1.is_err());
        let docs = parse_documents(b"# only a comment\n---\nx: 1\n---\ny: 2\n");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let docs = parse_documents(b"kind: Component\nkind: API\n");
        assert!(docs[0].1.is_err());
    }

    fn file_loc(path: &std::path::Path) -> LocationSpec {
        LocationSpec {
            kind: "file".into(),
            target: path.display().to_string(),
        }
    }

    fn api_entity(definition: Value) -> Value {
        json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "API",
            "metadata": {"name": "petstore"},
            "spec": {"type": "openapi", "lifecycle": "production", "owner": "team-a",
                     "definition": definition}
        })
    }

    #[test]
    fn placeholders_are_found_as_backstage_finds_them() {
        let v = json!({
            "a": {"$text": "./a.txt"},
            "b": [{"$json": "b.json"}, {"x": {"$yaml": "c.yaml"}}],
            "schema": {"$ref": "#/definitions/x"},
            "two": {"$text": "x", "other": 1},
            "nested": {"$other": {"$text": "never"}},
            "not_string": {"$text": 5},
            "we/ird~key": {"$text": "w"}
        });
        let mut out = Vec::new();
        find_placeholders(&v, &mut String::new(), &mut String::new(), &mut out);
        let mut got: Vec<(String, String, &str, String)> = out
            .into_iter()
            .map(|p| (p.pointer, p.path, p.kind.key(), p.target))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("/a".into(), "a".into(), "$text", "./a.txt".into()),
                ("/b/0".into(), "b[0]".into(), "$json", "b.json".into()),
                ("/b/1/x".into(), "b[1].x".into(), "$yaml", "c.yaml".into()),
                (
                    "/we~1ird~0key".into(),
                    "we/ird~key".into(),
                    "$text",
                    "w".into()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn placeholders_read_files_next_to_the_entity() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("apis/specs")).expect("mkdir");
        std::fs::write(
            dir.path().join("apis/specs/openapi.yaml"),
            "openapi: 3.0.0\n",
        )
        .expect("w");
        std::fs::write(dir.path().join("apis/data.json"), r#"{"x": [1, 2]}"#).expect("w");
        std::fs::write(dir.path().join("apis/data.yaml"), "# c\ny: {z: true}\n").expect("w");
        let loc = file_loc(&dir.path().join("apis/catalog-info.yaml"));
        let reader = Reader::new(&[]).expect("reader");
        let mut entity = api_entity(json!({"$text": "./specs/openapi.yaml"}));
        entity["metadata"]["annotations"] = json!({"x/json": "keep"});
        entity["spec"]["extra"] = json!([{"$json": "data.json"}, {"$yaml": "./data.yaml"}]);
        let out = resolve_placeholders(&reader, &loc, true, entity)
            .await
            .expect("resolved");
        assert_eq!(out["spec"]["definition"], json!("openapi: 3.0.0\n"));
        assert_eq!(
            out["spec"]["extra"],
            json!([{"x": [1, 2]}, {"y": {"z": true}}])
        );
        assert!(model::validate_entity(&out, &KindPolicy::builtin()).is_ok());
        // Resolved content is not resolved again.
        std::fs::write(dir.path().join("apis/inner.json"), r#"{"$text": "x"}"#).expect("w");
        let out = resolve_placeholders(&reader, &loc, true, json!({"a": {"$json": "inner.json"}}))
            .await
            .expect("resolved");
        assert_eq!(out, json!({"a": {"$text": "x"}}));
    }

    #[tokio::test]
    async fn placeholder_failures_name_the_placeholder_and_target() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("bad.json"), "{nope").expect("w");
        std::fs::write(dir.path().join("two.yaml"), "a: 1\n---\nb: 2\n").expect("w");
        std::fs::write(dir.path().join("bad.yaml"), "a: [\n").expect("w");
        let loc = file_loc(&dir.path().join("catalog-info.yaml"));
        let reader = Reader::new(&[]).expect("reader");
        let cases = [
            (json!({"$text": "missing.txt"}), "was not found"),
            (json!({"$json": "bad.json"}), "invalid JSON"),
            (
                json!({"$yaml": "two.yaml"}),
                "exactly one YAML document, found 2",
            ),
            (json!({"$yaml": "bad.yaml"}), "invalid YAML"),
            (
                json!({"$text": "https://github.com/o/r/blob/main/x.yaml"}),
                "https://github.com/o/r/blob/main/x.yaml is not allowed by backend.reading.allow",
            ),
        ];
        for (placeholder, reason) in cases {
            let key = placeholder
                .as_object()
                .and_then(|m| m.iter().next())
                .map(|(k, v)| format!("{k} \"{}\"", v.as_str().unwrap_or_default()))
                .unwrap_or_default();
            let err = resolve_placeholders(&reader, &loc, true, api_entity(placeholder))
                .await
                .expect_err("fails");
            assert!(
                err.starts_with(&format!("spec.definition: placeholder {key}")),
                "{err}"
            );
            assert!(err.contains(reason), "{err}");
        }
        // A location that may not read files cannot read them through a placeholder.
        std::fs::write(dir.path().join("ok.txt"), "x").expect("w");
        let err = resolve_placeholders(&reader, &loc, false, json!({"a": {"$text": "ok.txt"}}))
            .await
            .expect_err("refused");
        assert!(err.contains("cannot read"), "{err}");
    }

    #[tokio::test]
    async fn url_locations_resolve_placeholders_against_their_url_only() {
        let reader = Reader::new(&[]).expect("reader");
        let loc = LocationSpec {
            kind: "url".into(),
            target: "https://example.com/repo/catalog-info.yaml".into(),
        };
        for (target, shown) in [
            (
                "./openapi.yaml",
                "https://example.com/repo/openapi.yaml is not allowed",
            ),
            (
                "/etc/passwd",
                "https://example.com/etc/passwd is not allowed",
            ),
            ("file:///etc/passwd", "file:///etc/passwd is not allowed"),
        ] {
            let err = resolve_placeholders(&reader, &loc, false, json!({"d": {"$text": target}}))
                .await
                .expect_err("refused");
            assert!(err.contains(shown), "{target}: {err}");
        }
    }

    #[tokio::test]
    async fn read_location_resolves_placeholders_before_validation() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("spec.yaml"), "openapi: 3.0.0\n").expect("w");
        let good =
            serde_yaml_ng::to_string(&api_entity(json!({"$text": "./spec.yaml"}))).expect("yaml");
        let mut bad_entity = api_entity(json!({"$text": "./absent.yaml"}));
        bad_entity["metadata"]["name"] = json!("broken");
        let bad = serde_yaml_ng::to_string(&bad_entity).expect("yaml");
        let file = dir.path().join("catalog-info.yaml");
        std::fs::write(&file, format!("{good}---\n{bad}")).expect("w");
        let root = file_loc(&file);
        let reader = Reader::new(&[]).expect("reader");
        let out = read_location(&reader, &Rules::allow_builtin(), &root, true).await;
        let petstore = out
            .emitted
            .iter()
            .find(|e| e.entity_ref.name == "petstore")
            .and_then(|e| e.entity.as_deref())
            .expect("petstore accepted");
        let petstore: Value = serde_json::from_str(petstore).expect("json");
        assert_eq!(petstore["spec"]["definition"], json!("openapi: 3.0.0\n"));
        let broken = out
            .emitted
            .iter()
            .find(|e| e.entity_ref.name == "broken")
            .expect("broken reported");
        assert!(broken.entity.is_none());
        assert!(broken.errors[0].contains("placeholder $text \"./absent.yaml\""));
        assert!(out
            .location_errors
            .iter()
            .any(|e| e.contains("api:default/broken") && e.contains("absent.yaml")));
        // A kind that the rules refuse is refused for that, without reading anything.
        let rules = Rules::new(None, vec![]);
        let mut group = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Group",
            "metadata": {"name": "g"}, "spec": {"type": "team", "children": [],
            "profile": {"$text": "./absent.txt"}}});
        let resolved =
            resolve_placeholders_if_allowed(&reader, &root, &root, &rules, true, group.take())
                .await
                .expect("not read");
        assert_eq!(
            resolved["spec"]["profile"],
            json!({"$text": "./absent.txt"})
        );
    }

    #[test]
    fn generated_name_matches_backstage() {
        let l = LocationSpec {
            kind: "url".into(),
            target: "https://example.com/catalog-info.yaml".into(),
        };
        let name = l.generated_name();
        assert!(name.starts_with("generated-") && name.len() == 50);
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "https://github.com/org/**/catalog-info.yaml",
            "https://github.com/org/a/b/catalog-info.yaml"
        ));
        assert!(!glob_match(
            "https://github.com/org/*/x.yaml",
            "https://github.com/org/a/b/x.yaml"
        ));
    }
}
