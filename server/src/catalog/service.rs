//! The catalog's operations, as the API and the background loop use them.
//!
//! Reads are answered from the in-memory index. Writes go through `ingest`, and
//! the change feed is applied before a write returns, so the caller sees it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use parking_lot::RwLock;
use rand::Rng;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::feed::Feed;
use super::filter::EntityFilter;
use super::index::{Doc, Index, Order};
use super::ingest::{self, LocationSpec, Outcome, Rules};
use super::model::EntityRef;
use super::provider::{self, EntityProvider};
use super::reader::Reader;
use super::store::{self, locations};
use super::{now_ms, CatalogError};
use crate::config::{Config, OrphanStrategy};
use crate::db::Db;

/// How long a claim on a due location holds off other replicas, at least.
const DEFAULT_LEASE: Duration = Duration::from_secs(10 * 60);

/// The largest page a caller may ask for.
pub const MAX_LIMIT: u64 = 10_000;
const DEFAULT_QUERY_LIMIT: u64 = 200;

/// The source of locations the server registered itself (the scaffolder's
/// published output): they may be files, as configured locations may.
const TRUSTED_SOURCE: &str = "scaffolder";

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct CatalogStats {
    pub processing_errors: std::sync::atomic::AtomicU64,
    pub processed_locations: std::sync::atomic::AtomicU64,
}

pub struct CatalogService {
    pub db: Db,
    pub index: Arc<RwLock<Index>>,
    pub feed: Arc<Feed>,
    reader: Reader,
    rules: Rules,
    orphan_strategy: OrphanStrategy,
    interval: Duration,
    pub readonly: bool,
    config_locations: Vec<LocationSpec>,
    /// The entity providers of the configuration, each with its own location.
    providers: Vec<Arc<dyn EntityProvider>>,
    /// How long a claim on a due location holds off other replicas.
    lease: Duration,
    pub stats: CatalogStats,
}

/// A location as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LocationView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    /// Problems of the latest processing, when it had any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl From<&locations::Model> for LocationView {
    fn from(m: &locations::Model) -> Self {
        LocationView {
            id: m.id.clone(),
            kind: m.kind.clone(),
            target: m.target.clone(),
            errors: m
                .errors
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or_default(),
        }
    }
}

/// What an on-demand sync of an entity provider left in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    /// The provider's location, `kind:id`.
    pub provider: String,
    pub location_id: String,
    /// Entities the catalog now holds from the provider, of every kind.
    pub entities: u64,
    pub users: u64,
    pub groups: u64,
    /// Problems with single entities (invalid, or held by another location);
    /// the sync itself succeeded.
    pub errors: Vec<String>,
}

/// A field to order by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderField {
    pub field: String,
    pub order: Order,
}

/// `GET /entities` parameters, parsed.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: EntityFilter,
    pub fields: Option<Vec<String>>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub order: Vec<OrderField>,
}

/// A page of `GET /entities`.
pub struct ListPage {
    pub body: Bytes,
    /// Offset of the next page, when there is one.
    pub next_offset: Option<u64>,
}

/// `GET /entities/by-query`'s cursor: opaque to clients, stable across replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub order_fields: Vec<OrderField>,
    pub filter: EntityFilter,
    #[serde(default)]
    pub full_text: Option<FullText>,
    /// The (sort value, id) position the page starts after or ends before.
    pub position: Option<(Option<String>, u32)>,
    pub is_previous: bool,
    pub total_items: u64,
    /// The first item of the whole result: no previous page before it.
    pub first: Option<(Option<String>, u32)>,
}

impl Cursor {
    /// Reads a cursor that `query` handed out.
    pub fn parse(raw: &str) -> Result<Cursor, CatalogError> {
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
            .ok_or_else(|| CatalogError::Input("Malformed cursor, could not be parsed".into()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullText {
    pub term: String,
    pub fields: Vec<String>,
}

/// `GET /entities/by-query` parameters.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pub filter: EntityFilter,
    pub fields: Option<Vec<String>>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub order_fields: Vec<OrderField>,
    pub cursor: Option<Cursor>,
    pub full_text: Option<FullText>,
}

/// An entity that changed lately, and when (milliseconds since the epoch).
pub struct RecentChange {
    pub entity: Bytes,
    pub changed_at: i64,
}

pub struct QueryPage {
    pub items: Vec<Bytes>,
    pub total_items: u64,
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
}

impl CatalogService {
    pub async fn new(
        db: Db,
        config: &Config,
        providers: Vec<Arc<dyn EntityProvider>>,
    ) -> anyhow::Result<CatalogService> {
        let index = Arc::new(RwLock::new(Index::default()));
        let feed = Arc::new(Feed::new(db.clone(), index.clone()));
        let per_location = config
            .locations
            .iter()
            .filter_map(|l| {
                l.rules.clone().map(|r| {
                    (
                        LocationSpec {
                            kind: l.kind.clone(),
                            target: l.target.clone(),
                        },
                        r,
                    )
                })
            })
            .collect();
        // A claim must outlast the longest provider run.
        let lease = providers
            .iter()
            .map(|p| p.schedule().timeout + Duration::from_secs(60))
            .fold(DEFAULT_LEASE, Duration::max);
        Ok(CatalogService {
            reader: Reader::new(&config.reading_allow)?,
            rules: Rules::new(config.rules.clone(), per_location),
            orphan_strategy: config.orphan_strategy,
            interval: config.processing_interval,
            readonly: config.readonly,
            config_locations: config
                .locations
                .iter()
                .map(|l| LocationSpec {
                    kind: l.kind.clone(),
                    target: l.target.clone(),
                })
                .collect(),
            providers,
            lease,
            db,
            index,
            feed,
            stats: CatalogStats::default(),
        })
    }

    /// The reader of files and allow-listed URLs, which the scaffolder's fetches share.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    // ------------------------------------------------------------ reads

    fn project(doc: &Doc, fields: &Option<Vec<String>>) -> Bytes {
        match fields {
            None => doc.json(),
            Some(fields) => {
                let value = doc.value();
                let projected = project_fields(&value, fields);
                Bytes::from(serde_json::to_vec(&projected).unwrap_or_default())
            }
        }
    }

    pub fn list(&self, p: &ListParams) -> Result<ListPage, CatalogError> {
        let index = self.index.read();
        let ids = index.eval(&p.filter);
        let total = ids.len() as usize;
        let offset = p.offset.unwrap_or(0) as usize;
        let limit = p.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        let end = offset.saturating_add(limit).min(total);
        let page: Vec<u32> = if p.order.is_empty() {
            // The default order needs only the page itself, not the whole ordering.
            index.ref_order_page(&ids, offset, limit)
        } else {
            let ordered = ordered_by_fields(&index, &ids, &p.order);
            ordered
                .get(offset.min(ordered.len())..end)
                .unwrap_or(&[])
                .to_vec()
        };
        let body = join_json(
            page.iter()
                .filter_map(|id| index.get(*id))
                .map(|d| Self::project(d, &p.fields)),
        );
        let next_offset = (p.limit.is_some() && end < total).then_some(end as u64);
        Ok(ListPage { body, next_offset })
    }

    pub fn query(&self, p: &QueryParams) -> Result<QueryPage, CatalogError> {
        let (order_fields, filter, full_text, position, is_previous, first, total_from_cursor) =
            match &p.cursor {
                Some(c) => (
                    c.order_fields.clone(),
                    c.filter.clone(),
                    c.full_text.clone(),
                    c.position.clone(),
                    c.is_previous,
                    c.first.clone(),
                    Some(c.total_items),
                ),
                None => (
                    p.order_fields.clone(),
                    p.filter.clone(),
                    p.full_text.clone(),
                    None,
                    false,
                    None,
                    None,
                ),
            };
        let limit = p.limit.unwrap_or(DEFAULT_QUERY_LIMIT) as usize;
        let index = self.index.read();
        let mut ids = index.eval(&filter);
        if let Some(ft) = &full_text {
            if !ft.term.is_empty() {
                let fields = if ft.fields.is_empty() {
                    vec![order_fields
                        .first()
                        .map(|o| o.field.clone())
                        .unwrap_or_else(|| "metadata.uid".into())]
                } else {
                    ft.fields.clone()
                };
                ids &= index.full_text(&ft.term, &fields);
            }
        }
        let total_items = total_from_cursor.unwrap_or(ids.len());
        let sort_key = order_fields.first().map(|o| o.field.clone());
        let ordered: Vec<u32> = match order_fields.first() {
            None => ids.iter().collect(),
            Some(o) => index.ordered_by(&ids, &o.field, o.order),
        };
        let pos_of = |(value, id): &(Option<String>, u32)| -> Option<usize> {
            let _ = value;
            ordered.iter().position(|x| x == id)
        };
        // Where the page starts in `ordered`, and whether it ends before the cursor.
        let (start, end) = match (&position, is_previous) {
            (None, _) => {
                let s = if p.cursor.is_none() {
                    p.offset.unwrap_or(0) as usize
                } else {
                    0
                };
                let s = s.min(ordered.len());
                (s, (s + limit).min(ordered.len()))
            }
            (Some(pos), false) => {
                let s = match pos_of(pos) {
                    Some(i) => i + 1,
                    None => {
                        after_position(&ordered, pos, &index, sort_key.as_deref(), &order_fields)
                    }
                };
                (s, (s + limit).min(ordered.len()))
            }
            (Some(pos), true) => {
                let e = pos_of(pos).unwrap_or_else(|| {
                    after_position(&ordered, pos, &index, sort_key.as_deref(), &order_fields)
                });
                (e.saturating_sub(limit), e)
            }
        };
        let page = &ordered[start..end];
        let position_of = |id: u32| -> (Option<String>, u32) {
            (
                sort_key.as_deref().and_then(|k| index.sort_value(id, k)),
                id,
            )
        };
        let first = first.or_else(|| ordered.first().map(|id| position_of(*id)));
        let make = |position: (Option<String>, u32), is_previous: bool| -> String {
            let c = Cursor {
                order_fields: order_fields.clone(),
                filter: filter.clone(),
                full_text: full_text.clone(),
                position: Some(position),
                is_previous,
                total_items,
                first: first.clone(),
            };
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&c).unwrap_or_default())
        };
        let next_cursor = (end < ordered.len())
            .then(|| page.last().map(|id| make(position_of(*id), false)))
            .flatten();
        let prev_cursor = (start > 0)
            .then(|| page.first().map(|id| make(position_of(*id), true)))
            .flatten();
        let items = page
            .iter()
            .filter_map(|id| index.get(*id))
            .map(|d| Self::project(d, &p.fields))
            .collect();
        Ok(QueryPage {
            items,
            total_items,
            next_cursor,
            prev_cursor,
        })
    }

    pub fn by_uid(&self, uid: &str) -> Option<Bytes> {
        self.index.read().by_uid(uid).map(|d| d.json())
    }

    pub fn by_ref(&self, r: &EntityRef) -> Option<Bytes> {
        self.index.read().by_ref(&r.key()).map(|d| d.json())
    }

    /// The owners of an entity, as full refs from its `ownedBy` relations.
    pub fn owners_of(&self, r: &EntityRef) -> Vec<String> {
        let Some(bytes) = self.by_ref(r) else {
            return vec![];
        };
        let entity: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        entity["relations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|rel| rel["type"].as_str() == Some("ownedBy"))
            .filter_map(|rel| rel["targetRef"].as_str().map(str::to_string))
            .collect()
    }

    pub fn by_refs(
        &self,
        refs: &[String],
        fields: &Option<Vec<String>>,
        filter: &EntityFilter,
    ) -> Vec<Option<Bytes>> {
        let index = self.index.read();
        let allowed = (!filter.is_empty()).then(|| index.eval(filter));
        refs.iter()
            .map(|r| {
                let key = EntityRef::parse(r, None, "default").ok()?.key();
                let doc = index.by_ref(&key)?;
                if let Some(a) = &allowed {
                    if !a.contains(doc.id) {
                        return None;
                    }
                }
                Some(Self::project(doc, fields))
            })
            .collect()
    }

    pub fn facets(&self, facets: &[String], filter: &EntityFilter) -> Value {
        let index = self.index.read();
        let within: Option<RoaringBitmap> = (!filter.is_empty()).then(|| index.eval(filter));
        let mut out = serde_json::Map::new();
        for f in facets {
            let counts = index.facet(&f.to_lowercase(), within.as_ref());
            out.insert(
                f.clone(),
                Value::Array(
                    counts
                        .into_iter()
                        .map(|(value, count)| json!({"value": value, "count": count}))
                        .collect(),
                ),
            );
        }
        json!({ "facets": out })
    }

    /// Entities per kind, as written, most numerous first: all of them, or
    /// those that match a full-text search.
    pub fn kinds(&self, full_text: Option<&FullText>) -> Vec<(String, u64)> {
        let index = self.index.read();
        let within = full_text
            .filter(|ft| !ft.term.is_empty())
            .map(|ft| index.full_text(&ft.term, &ft.fields));
        index.facet("kind", within.as_ref())
    }

    /// The `limit` entities that changed last, newest first.
    ///
    /// Read from the change feed backwards along its primary key, a window at a
    /// time, so the cost does not grow with the catalog (`entities.updated_at`
    /// has no index: ordering by it reads the whole table). The feed records
    /// every change to an entity's final JSON, relations and status included:
    /// a Group that gained a member has changed. Entities deleted since, or not
    /// yet in this replica's index, are skipped.
    pub async fn recently_changed(&self, limit: usize) -> Result<Vec<RecentChange>, CatalogError> {
        const WINDOW: u64 = 200;
        const MAX_WINDOWS: usize = 5;
        if limit == 0 {
            return Ok(vec![]);
        }
        let mut out = Vec::with_capacity(limit);
        let mut seen = std::collections::HashSet::new();
        let mut before = None;
        for _ in 0..MAX_WINDOWS {
            let changes = store::changes_before(&self.db.conn, before, WINDOW).await?;
            let Some(oldest) = changes.last() else {
                break;
            };
            before = Some(oldest.seq);
            {
                let index = self.index.read();
                for c in &changes {
                    if !seen.insert(c.entity_id) {
                        continue;
                    }
                    let Some(doc) = u32::try_from(c.entity_id).ok().and_then(|id| index.get(id))
                    else {
                        continue;
                    };
                    out.push(RecentChange {
                        entity: doc.json(),
                        changed_at: c.created_at,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if (changes.len() as u64) < WINDOW {
                break;
            }
        }
        Ok(out)
    }

    /// The chain of Location entities that led to an entity.
    pub fn ancestry(&self, r: &EntityRef) -> Result<Value, CatalogError> {
        let index = self.index.read();
        let start = index
            .by_ref(&r.key())
            .ok_or_else(|| CatalogError::NotFound(format!("No entity {r} found")))?
            .value();
        let locations: Vec<Value> = {
            let f = EntityFilter::parse_params(&["kind=location"])?;
            index
                .eval(&f)
                .iter()
                .filter_map(|id| index.get(id))
                .map(|d| d.value())
                .collect()
        };
        let mut items = Vec::new();
        let mut current = start;
        let mut seen = std::collections::HashSet::new();
        while let Ok(cur_ref) = EntityRef::of_entity(&current) {
            if !seen.insert(cur_ref.key()) {
                break;
            }
            let parent = parent_location(&current, &locations);
            let parent_refs: Vec<String> = parent
                .as_ref()
                .and_then(|p| EntityRef::of_entity(p).ok())
                .map(|p| vec![p.to_string()])
                .unwrap_or_default();
            items.push(json!({"entity": current, "parentEntityRefs": parent_refs}));
            match parent {
                Some(p) => current = p,
                None => break,
            }
        }
        Ok(json!({"rootEntityRef": r.to_string(), "items": items}))
    }

    // ------------------------------------------------------------ locations

    pub async fn list_locations(&self) -> Result<Vec<LocationView>, CatalogError> {
        Ok(store::all_locations(&self.db.conn)
            .await?
            .iter()
            .map(LocationView::from)
            .collect())
    }

    /// Every location with its processing state, for the admin page.
    pub async fn location_states(&self) -> Result<Vec<locations::Model>, CatalogError> {
        Ok(store::all_locations(&self.db.conn).await?)
    }

    pub async fn get_location(&self, id: &str) -> Result<LocationView, CatalogError> {
        store::location_by_id(&self.db.conn, id)
            .await?
            .map(|m| LocationView::from(&m))
            .ok_or_else(|| CatalogError::NotFound(format!("Found no location with ID {id}")))
    }

    pub async fn location_by_entity(&self, r: &EntityRef) -> Result<LocationView, CatalogError> {
        let heads = store::heads_by_refs(&self.db.conn, &[r.key()]).await?;
        let head = heads
            .first()
            .ok_or_else(|| CatalogError::NotFound(format!("No entity {r} found")))?;
        self.get_location(&head.location_id).await
    }

    fn check_writable(&self) -> Result<(), CatalogError> {
        if self.readonly {
            return Err(CatalogError::NotAllowed(
                "This catalog is in read-only mode (catalog.readonly)".into(),
            ));
        }
        Ok(())
    }

    fn check_spec(&self, spec: &LocationSpec) -> Result<(), CatalogError> {
        if spec.kind != "url" {
            return Err(CatalogError::Input(format!(
                "Location type \"{}\" cannot be registered through the API; only \"url\" can (file locations belong in catalog.locations)",
                spec.kind
            )));
        }
        if spec.target.trim().is_empty() {
            return Err(CatalogError::Input(
                "Location target must not be empty".into(),
            ));
        }
        self.reader
            .check_url(&spec.target)
            .map_err(|e| CatalogError::Input(e.to_string()))?;
        Ok(())
    }

    /// Registers a location and ingests it before returning.
    pub async fn add_location(
        &self,
        spec: LocationSpec,
        dry_run: bool,
    ) -> Result<(LocationView, Vec<Value>, bool), CatalogError> {
        if !dry_run {
            self.check_writable()?;
        }
        self.check_spec(&spec)?;
        self.register_location(spec, dry_run, "api").await
    }

    /// Registers a location that the server itself produced (the scaffolder's
    /// published output), which may be a file: the caller has checked where it is.
    pub async fn add_trusted_location(
        &self,
        spec: LocationSpec,
    ) -> Result<(LocationView, Vec<Value>, bool), CatalogError> {
        self.check_writable()?;
        self.register_location(spec, false, TRUSTED_SOURCE).await
    }

    async fn register_location(
        &self,
        spec: LocationSpec,
        dry_run: bool,
        source: &str,
    ) -> Result<(LocationView, Vec<Value>, bool), CatalogError> {
        let allow_file = source == TRUSTED_SOURCE;
        let existing = store::location_by_target(&self.db.conn, &spec.kind, &spec.target).await?;
        if existing.is_some() && !dry_run {
            return Err(CatalogError::Conflict(format!(
                "Location {} already exists",
                spec.key()
            )));
        }
        let outcome = ingest::read_location(&self.reader, &self.rules, &spec, allow_file).await;
        if !outcome.complete && outcome.emitted.len() <= 1 {
            return Err(CatalogError::Input(format!(
                "Unable to read {}: {}",
                spec.key(),
                outcome.location_errors.join("; ")
            )));
        }
        let entities: Vec<Value> = outcome
            .emitted
            .iter()
            .filter_map(|e| serde_json::from_str(e.entity.as_deref()?).ok())
            .collect();
        if dry_run {
            let view = match &existing {
                Some(m) => LocationView::from(m),
                None => LocationView {
                    id: uuid::Uuid::new_v4().to_string(),
                    kind: spec.kind,
                    target: spec.target,
                    errors: vec![],
                },
            };
            return Ok((view, entities, existing.is_some()));
        }
        let now = now_ms();
        let model = locations::Model {
            id: uuid::Uuid::new_v4().to_string(),
            kind: spec.kind,
            target: spec.target,
            source: source.into(),
            created_at: now,
            next_refresh_at: self.next_refresh(now),
            last_refreshed_at: None,
            errors: None,
        };
        store::insert_location(&self.db.conn, model.clone())
            .await
            .map_err(|_| {
                CatalogError::Conflict(format!(
                    "Location {}:{} already exists",
                    model.kind, model.target
                ))
            })?;
        let next_refresh_at = model.next_refresh_at;
        self.write(&model.id, outcome, self.orphan_strategy, next_refresh_at)
            .await?;
        let stored = self.entities_of_origin(&format!("{}:{}", model.kind, model.target));
        Ok((LocationView::from(&model), stored, false))
    }

    /// The stored entities that a root location provides, in ref order.
    fn entities_of_origin(&self, origin: &str) -> Vec<Value> {
        let filter = EntityFilter {
            any_of: vec![vec![super::filter::Condition {
                key: format!(
                    "metadata.annotations.{}",
                    ingest::ANNOTATION_ORIGIN_LOCATION
                ),
                values: Some(vec![origin.to_lowercase()]),
            }]],
        };
        let index = self.index.read();
        let ids = index.eval(&filter);
        index
            .ordered_by_ref(&ids)
            .into_iter()
            .filter_map(|id| index.get(id))
            .map(|d| d.value())
            .collect()
    }

    pub async fn delete_location(&self, id: &str) -> Result<(), CatalogError> {
        self.check_writable()?;
        let loc = store::location_by_id(&self.db.conn, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("Found no location with ID {id}")))?;
        if loc.source == "config" {
            return Err(CatalogError::NotAllowed(format!(
                "Location {id} comes from catalog.locations in the configuration; remove it there"
            )));
        }
        ingest::delete_location(&self.db, id).await?;
        self.feed.catch_up().await?;
        Ok(())
    }

    pub async fn delete_entity_by_uid(&self, uid: &str) -> Result<(), CatalogError> {
        self.check_writable()?;
        let id =
            self.index.read().by_uid(uid).map(|d| d.id).ok_or_else(|| {
                CatalogError::NotFound(format!("Entity with uid {uid} not found"))
            })?;
        ingest::delete_entity(&self.db, i64::from(id)).await?;
        self.feed.catch_up().await?;
        Ok(())
    }

    /// Re-reads the location that provides an entity, now.
    pub async fn refresh_entity(&self, r: &EntityRef) -> Result<(), CatalogError> {
        let heads = store::heads_by_refs(&self.db.conn, &[r.key()]).await?;
        let head = heads
            .first()
            .ok_or_else(|| CatalogError::NotFound(format!("No entity {r} found")))?;
        let loc = store::location_by_id(&self.db.conn, &head.location_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("The location of {r} is gone")))?;
        self.process_location(&loc).await
    }

    /// Validates an entity as if `location` emitted it.
    /// Validates an entity as ingestion would, placeholders included. Placeholders of a
    /// `file` location are not read: the API never reads the server's files.
    pub async fn validate(&self, entity: Value, location: &str) -> Result<(), CatalogError> {
        let spec = match location.split_once(':') {
            Some((kind, target)) if !kind.is_empty() && !target.is_empty() => LocationSpec {
                kind: kind.to_string(),
                target: target.to_string(),
            },
            _ => {
                return Err(CatalogError::Input(format!(
                    "Invalid location ref \"{location}\", expected type:target"
                )))
            }
        };
        match ingest::process_document_resolved(
            &self.reader,
            entity,
            &spec,
            &spec,
            &self.rules,
            false,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err((_, errors)) => Err(CatalogError::Validation(
                format!("Entity is invalid: {}", errors.join("; ")),
                errors,
            )),
        }
    }

    /// What a location holds and whether it is registered, as `/analyze-location` reports.
    pub async fn analyze(&self, spec: LocationSpec) -> Result<Value, CatalogError> {
        self.check_spec(&spec)?;
        let outcome = ingest::read_location(&self.reader, &self.rules, &spec, false).await;
        if !outcome.complete && outcome.emitted.len() <= 1 {
            return Err(CatalogError::Input(format!(
                "Unable to read {}: {}",
                spec.key(),
                outcome.location_errors.join("; ")
            )));
        }
        let registered = store::location_by_target(&self.db.conn, &spec.kind, &spec.target)
            .await?
            .is_some();
        let files: Vec<Value> = outcome
            .emitted
            .iter()
            .filter(|e| !e.is_root_location)
            .filter_map(|e| {
                let entity: Value = serde_json::from_str(e.entity.as_deref()?).ok()?;
                let managed = entity
                    .pointer("/metadata/annotations/backstage.io~1managed-by-location")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let (kind, target) = managed.split_once(':').unwrap_or(("url", managed.as_str()));
                Some(json!({
                    "location": {"type": kind, "target": target},
                    "isRegistered": registered,
                    "entity": entity,
                }))
            })
            .collect();
        Ok(json!({"existingEntityFiles": files, "generateEntities": []}))
    }

    // ------------------------------------------------------------ processing

    fn next_refresh(&self, now: i64) -> i64 {
        let base = self.interval.as_millis() as f64;
        let jitter = rand::rng().random_range(0.8..1.2);
        now + (base * jitter) as i64
    }

    async fn write(
        &self,
        location_id: &str,
        outcome: Outcome,
        orphan_strategy: OrphanStrategy,
        next_refresh_at: i64,
    ) -> Result<ingest::WriteResult, CatalogError> {
        let result = ingest::write_location(
            &self.db,
            location_id,
            outcome,
            orphan_strategy,
            next_refresh_at,
        )
        .await?;
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.processed_locations.fetch_add(1, Relaxed);
        if !result.location_errors.is_empty() {
            self.stats
                .processing_errors
                .fetch_add(result.location_errors.len() as u64, Relaxed);
            for e in &result.location_errors {
                tracing::warn!(location = location_id, error = %e, "catalog processing error");
            }
        }
        if result.changed > 0 {
            self.feed.catch_up().await?;
        }
        Ok(result)
    }

    pub async fn process_location(&self, loc: &locations::Model) -> Result<(), CatalogError> {
        if let Some(p) = self.provider(&loc.kind, &loc.target) {
            return self.run_provider(p.as_ref(), &loc.id).await.map(|_| ());
        }
        let spec = LocationSpec {
            kind: loc.kind.clone(),
            target: loc.target.clone(),
        };
        let outcome = ingest::read_location(
            &self.reader,
            &self.rules,
            &spec,
            loc.source == "config" || loc.source == TRUSTED_SOURCE,
        )
        .await;
        self.write(
            &loc.id,
            outcome,
            self.orphan_strategy,
            self.next_refresh(now_ms()),
        )
        .await
        .map(|_| ())
    }

    // ------------------------------------------------------------ entity providers

    /// Whether a location belongs to a configured entity provider.
    pub fn is_provider_location(&self, kind: &str, target: &str) -> bool {
        self.provider(kind, target).is_some()
    }

    fn provider(&self, kind: &str, id: &str) -> Option<&Arc<dyn EntityProvider>> {
        self.providers
            .iter()
            .find(|p| p.kind() == kind && p.id() == id)
    }

    /// Reads a provider and writes what it returned as the full set its location
    /// owns: entities it no longer returns are deleted, whatever
    /// `catalog.orphanStrategy` says, as Backstage's full mutation does. The
    /// next run is one `frequency` away. Err inside Ok: the read failed, the
    /// previous entities stay and the error is on the location.
    async fn run_provider(
        &self,
        p: &dyn EntityProvider,
        location_id: &str,
    ) -> Result<(ingest::WriteResult, Result<(), String>), CatalogError> {
        let (outcome, read) = provider::read(p, self.rules.policy()).await;
        let next_refresh_at = now_ms().saturating_add(millis(p.schedule().frequency));
        let written = self
            .write(
                location_id,
                outcome,
                OrphanStrategy::Delete,
                next_refresh_at,
            )
            .await?;
        Ok((written, read))
    }

    /// Syncs an entity provider now, as its schedule would, and reports what the
    /// catalog holds from it afterwards. A failed read is `Unavailable`; the
    /// entities of the last good read stay and the error is on the location.
    pub async fn sync_provider(&self, kind: &str, id: &str) -> Result<SyncSummary, CatalogError> {
        let p = self.provider(kind, id).cloned().ok_or_else(|| {
            CatalogError::NotFound(format!("No entity provider {kind}:{id} is configured"))
        })?;
        let spec = provider::location_spec(p.as_ref());
        let loc = match store::location_by_target(&self.db.conn, &spec.kind, &spec.target).await? {
            Some(loc) => loc,
            // Another replica's start-up may have removed it, under an older configuration.
            None => {
                self.sync_config_locations().await?;
                store::location_by_target(&self.db.conn, &spec.kind, &spec.target)
                    .await?
                    .ok_or_else(|| {
                        CatalogError::NotFound(format!("The location of {} is gone", spec.key()))
                    })?
            }
        };
        let (written, read) = self.run_provider(p.as_ref(), &loc.id).await?;
        read.map_err(CatalogError::Unavailable)?;
        let origin = spec.key();
        Ok(SyncSummary {
            entities: self.count_of_origin(&origin, None),
            users: self.count_of_origin(&origin, Some("user")),
            groups: self.count_of_origin(&origin, Some("group")),
            provider: origin,
            location_id: loc.id,
            errors: written.location_errors,
        })
    }

    /// How many entities, of one kind or of every kind but Location, came from a root location.
    fn count_of_origin(&self, origin: &str, kind: Option<&str>) -> u64 {
        use super::filter::Condition;
        let mut all_of = vec![Condition {
            key: format!(
                "metadata.annotations.{}",
                ingest::ANNOTATION_ORIGIN_LOCATION
            ),
            values: Some(vec![origin.to_lowercase()]),
        }];
        if let Some(k) = kind {
            all_of.push(Condition {
                key: "kind".into(),
                values: Some(vec![k.to_lowercase()]),
            });
        }
        let index = self.index.read();
        let mut ids = index.eval(&EntityFilter {
            any_of: vec![all_of],
        });
        if kind.is_none() {
            ids -= index.eval(&EntityFilter {
                any_of: vec![vec![Condition {
                    key: "kind".into(),
                    values: Some(vec!["location".into()]),
                }]],
            });
        }
        ids.len()
    }

    /// Makes the stored config locations match `catalog.locations` and the
    /// entity providers: a new one is added, and one that left the configuration
    /// is removed with its entities.
    pub async fn sync_config_locations(&self) -> Result<(), CatalogError> {
        let stored = store::all_locations(&self.db.conn).await?;
        let now = now_ms();
        // A provider's first run waits for its initial delay; an earlier due time
        // means the schedule was made shorter.
        let provider_specs = self.providers.iter().map(|p| {
            let schedule = p.schedule();
            let first = now.saturating_add(millis(schedule.initial_delay));
            let latest = first.saturating_add(millis(schedule.frequency));
            (provider::location_spec(p.as_ref()), first, Some(latest))
        });
        let wanted: Vec<(LocationSpec, i64, Option<i64>)> = self
            .config_locations
            .iter()
            .map(|spec| (spec.clone(), now, None))
            .chain(provider_specs)
            .collect();
        for (spec, first, _) in &wanted {
            if !stored
                .iter()
                .any(|m| m.kind == spec.kind && m.target == spec.target)
            {
                store::insert_location(
                    &self.db.conn,
                    locations::Model {
                        id: uuid::Uuid::new_v4().to_string(),
                        kind: spec.kind.clone(),
                        target: spec.target.clone(),
                        source: "config".into(),
                        created_at: now,
                        next_refresh_at: *first,
                        last_refreshed_at: None,
                        errors: None,
                    },
                )
                .await
                .or_else(|e| match e {
                    // Another replica inserted it first.
                    sea_orm::DbErr::Exec(_) | sea_orm::DbErr::Query(_) => Ok(()),
                    other => Err(other),
                })?;
            }
        }
        for (spec, first, latest) in &wanted {
            let Some(latest) = latest else { continue };
            if let Some(m) = stored.iter().find(|m| {
                m.kind == spec.kind && m.target == spec.target && m.next_refresh_at > *latest
            }) {
                store::set_next_refresh(&self.db.conn, &m.id, *first).await?;
            }
        }
        for m in stored.iter().filter(|m| m.source == "config") {
            if !wanted
                .iter()
                .any(|(s, _, _)| s.kind == m.kind && s.target == m.target)
            {
                tracing::info!(location = %m.target, "location left the configuration; removing it");
                ingest::delete_location(&self.db, &m.id).await?;
            }
        }
        self.feed.catch_up().await?;
        Ok(())
    }

    /// Processes due locations until `shutdown` fires.
    pub async fn run_refresh_loop(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let worked = match self.refresh_due().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "catalog refresh failed");
                    false
                }
            };
            if worked {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Processes the locations that are due; returns how many.
    pub async fn refresh_due(&self) -> Result<usize, CatalogError> {
        let now = now_ms();
        let lease = now.saturating_add(millis(self.lease));
        let claimed = store::claim_due_locations(&self.db.conn, now, lease, 4).await?;
        for loc in &claimed {
            if let Err(e) = self.process_location(loc).await {
                tracing::warn!(location = %loc.target, error = %e, "processing a location failed");
            }
        }
        Ok(claimed.len())
    }

    /// Makes every location due now.
    pub async fn make_all_due(&self) -> Result<(), CatalogError> {
        store::make_all_due(&self.db.conn, now_ms()).await?;
        Ok(())
    }

    pub async fn queue_depth(&self) -> u64 {
        store::due_location_count(&self.db.conn, now_ms())
            .await
            .unwrap_or(0)
    }
}

/// A duration in the catalog's millisecond timestamps.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `ids` ordered by every field in turn, as `GET /entities?order=..&order=..`
/// does: entities without a field come after those with it, whatever the
/// direction, and the first field's tie order (by id) decides what remains.
fn ordered_by_fields(index: &Index, ids: &RoaringBitmap, order: &[OrderField]) -> Vec<u32> {
    let (first, rest) = match order {
        [] => return index.ordered_by_ref(ids),
        [first, rest @ ..] => (first, rest),
    };
    let mut out = index.ordered_by(ids, &first.field, first.order);
    if rest.is_empty() {
        return out;
    }
    // Each entity's sort value per field: the one its group comes first under,
    // the smallest ascending and the largest descending, as `ordered_by` does.
    let keys: std::collections::HashMap<u32, Vec<Option<String>>> = out
        .iter()
        .map(|id| {
            let rows = index
                .get(*id)
                .map(|d| super::search::search_rows(&d.value()))
                .unwrap_or_default();
            let values = order
                .iter()
                .map(|o| {
                    let values = rows
                        .iter()
                        .filter(|r| r.key == o.field)
                        .filter_map(|r| r.value.clone());
                    match o.order {
                        Order::Asc => values.min(),
                        Order::Desc => values.max(),
                    }
                })
                .collect();
            (*id, values)
        })
        .collect();
    out.sort_by(|a, b| {
        use std::cmp::Ordering;
        let (ka, kb) = (&keys[a], &keys[b]);
        for (i, o) in order.iter().enumerate() {
            let c = match (&ka[i], &kb[i]) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => match o.order {
                    Order::Asc => x.cmp(y),
                    Order::Desc => y.cmp(x),
                },
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    });
    out
}

/// Where a sorted list continues after a position whose id is no longer there.
fn after_position(
    ordered: &[u32],
    pos: &(Option<String>, u32),
    index: &Index,
    sort_key: Option<&str>,
    order: &[OrderField],
) -> usize {
    let desc = order.first().is_some_and(|o| o.order == Order::Desc);
    let key_of =
        |id: u32| -> (Option<String>, u32) { (sort_key.and_then(|k| index.sort_value(id, k)), id) };
    let cmp = |a: &(Option<String>, u32), b: &(Option<String>, u32)| {
        use std::cmp::Ordering;
        let by_value = match (&a.0, &b.0) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                if desc {
                    y.cmp(x)
                } else {
                    x.cmp(y)
                }
            }
        };
        by_value.then_with(|| if desc { b.1.cmp(&a.1) } else { a.1.cmp(&b.1) })
    };
    ordered
        .iter()
        .position(|id| cmp(&key_of(*id), pos) == std::cmp::Ordering::Greater)
        .unwrap_or(ordered.len())
}

fn parent_location(entity: &Value, locations: &[Value]) -> Option<Value> {
    let annotations = entity.pointer("/metadata/annotations")?;
    let managed = annotations
        .get("backstage.io/managed-by-location")
        .and_then(Value::as_str)?;
    let origin = annotations
        .get("backstage.io/managed-by-origin-location")
        .and_then(Value::as_str)?;
    let own = EntityRef::of_entity(entity).ok()?.key();
    // The nested Location entity whose targets include this entity's file.
    for l in locations {
        let lref = EntityRef::of_entity(l).ok()?.key();
        if lref == own {
            continue;
        }
        let l_ann = l.pointer("/metadata/annotations")?;
        if l_ann
            .get("backstage.io/managed-by-origin-location")
            .and_then(Value::as_str)
            != Some(origin)
        {
            continue;
        }
        let l_managed = l_ann
            .get("backstage.io/managed-by-location")
            .and_then(Value::as_str)?;
        let (lkind, lbase) = l_managed.split_once(':')?;
        let spec = l.get("spec");
        let kind = spec
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or(lkind);
        let mut targets: Vec<String> = spec
            .and_then(|s| s.get("targets"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(t) = spec.and_then(|s| s.get("target")).and_then(Value::as_str) {
            targets.push(t.to_string());
        }
        let is_generated = l
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with("generated-"));
        for t in targets {
            let resolved = if is_generated {
                t.clone()
            } else {
                match super::reader::resolve_target(kind, lbase, &t) {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            };
            if format!("{kind}:{resolved}") == managed {
                return Some(l.clone());
            }
        }
    }
    None
}

fn join_json(items: impl Iterator<Item = Bytes>) -> Bytes {
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item);
    }
    out.push(b']');
    Bytes::from(out)
}

/// Backstage's `fields` projection: keep only the listed dotted paths.
pub fn project_fields(entity: &Value, fields: &[String]) -> Value {
    let mut out = Value::Object(Default::default());
    for field in fields {
        let parts: Vec<&str> = field.split('.').collect();
        let mut src = entity;
        let mut found = true;
        for p in &parts {
            match src.get(*p) {
                Some(v) => src = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut dst = &mut out;
        for (i, p) in parts.iter().enumerate() {
            let Some(map) = dst.as_object_mut() else {
                break;
            };
            if i + 1 == parts.len() {
                map.insert((*p).to_string(), src.clone());
                break;
            }
            dst = map
                .entry((*p).to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection() {
        let e = json!({"kind": "Component", "metadata": {"name": "a", "tags": ["x"]}, "spec": {"type": "s"}});
        assert_eq!(
            project_fields(
                &e,
                &["metadata.name".into(), "kind".into(), "spec.missing".into()]
            ),
            json!({"kind": "Component", "metadata": {"name": "a"}})
        );
    }
}
