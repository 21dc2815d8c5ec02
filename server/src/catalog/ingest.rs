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
    /// The processed entity; None when it failed validation.
    pub entity: Option<Value>,
    pub errors: Vec<String>,
    pub relations: Vec<Relation>,
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

/// Splits multi-document YAML into JSON values, one result per document.
/// Errors carry the 1-based document number.
pub fn parse_documents(bytes: &[u8]) -> Vec<(usize, Result<Value, String>)> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return vec![(1, Err(format!("not UTF-8 text: {e}")))],
    };
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let parsed = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| format!("invalid YAML: {e}"))
            .and_then(|v| {
                serde_json::to_value(&v).map_err(|e| format!("unsupported YAML value: {e}"))
            });
        let failed = parsed.is_err();
        out.push((n, parsed));
        if failed && out.len() > 10_000 {
            break;
        }
        if out.len() > 100_000 {
            out.push((n + 1, Err("too many documents in one file".into())));
            break;
        }
    }
    out
}

/// Validates and processes one document. Err carries messages for the location.
pub fn process_document(
    raw: Value,
    location: &LocationSpec,
    root: &LocationSpec,
    rules: &Rules,
) -> Result<Emitted, (Option<EntityRef>, Vec<String>)> {
    let entity_ref = EntityRef::of_entity(&raw).ok();
    if let Err(errors) = model::validate_entity(&raw, rules.policy()) {
        return Err((entity_ref, errors.iter().map(ToString::to_string).collect()));
    }
    let Some(entity_ref) = entity_ref else {
        return Err((None, vec!["entity has no valid kind and name".into()]));
    };
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
    let mut entity = raw;
    prepare(&mut entity, location, root);
    let relations = model::generate_relations(&entity)
        .map_err(|e| (Some(entity_ref.clone()), vec![e.to_string()]))?;
    let hash = content_hash(&entity);
    Ok(Emitted {
        entity_ref,
        entity: Some(entity),
        errors: vec![],
        relations,
        hash,
        is_root_location: false,
    })
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
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
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
    Emitted {
        entity_ref: EntityRef {
            kind: "Location".into(),
            namespace: model::DEFAULT_NAMESPACE.into(),
            name: root.generated_name(),
        },
        hash: content_hash(&entity),
        entity: Some(entity),
        errors: vec![],
        relations: vec![],
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
        for (n, doc) in parse_documents(&bytes) {
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
            match process_document(raw, &loc, root, rules) {
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
                        let entity = emitted.entity.as_ref().unwrap_or(&Value::Null);
                        enqueue_targets(entity, &loc, depth, &mut queue, &mut out, n);
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
                                relations: vec![],
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
    }
    out
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
            (Some(h), Some(mut entity)) => {
                if h.hash == e.hash && h.errors == errors {
                    return Ok(());
                }
                set_uid(&mut entity, &h.uid);
                let old = store::relations_from(txn, &[h.id]).await?;
                self.stitch_refs
                    .extend(old.into_iter().map(|r| r.source_ref));
                store::delete_relations_from(txn, &[h.id]).await?;
                let rows = relation_rows(h.id, &e.relations);
                self.stitch_refs
                    .extend(rows.iter().map(|r| r.source_ref.clone()));
                store::insert_relations(txn, rows).await?;
                store::update_processed(txn, h.id, &e.hash, &entity.to_string(), errors, now)
                    .await?;
                self.changed_ids.insert(h.id);
                self.stitch_refs.insert(key);
            }
            (None, Some(mut entity)) => {
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
                    e.relations,
                ));
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
        if !self.new_rows.is_empty() {
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
        }
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

fn set_uid(entity: &mut Value, uid: &str) {
    if let Some(meta) = entity.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("uid".into(), json!(uid));
    }
}

/// Recomputes the final JSON of the given entities; returns the ids that changed.
async fn stitch(
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
            store::update_final(txn, m.id, &text, &etag).await?;
            changed.push(m.id);
        }
    }
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
    fn duplicate_keys_are_refused() {
        let docs = parse_documents(b"kind: Component\nkind: API\n");
        assert!(docs[0].1.is_err());
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
