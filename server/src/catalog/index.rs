//! The in-memory read model of the catalog: every stitched entity, pre-serialized
//! and compressed, with an inverted index of its search rows.
//!
//! It is filled only by `feed` from the database's change feed, so every replica
//! converges on the same content. It holds no business rules: it answers filters,
//! orderings, full-text matches and facet counts with bitmaps over entity ids.
//!
//! Each search key keeps its values in one sorted, contiguous column (the values
//! laid end to end, NUL-separated, beside a vector of their postings) plus a small
//! sorted delta of values added since the column was last rebuilt. `settle` folds
//! the delta in after each batch of writes. This keeps the index to a few large
//! allocations rather than one tree node and string per value, and makes a
//! substring search one SIMD pass over contiguous memory.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use roaring::RoaringBitmap;
use serde_json::Value;
use smallvec::SmallVec;

use super::filter::{Condition, EntityFilter};
use super::packed;
use super::search::{search_rows, SearchRow};

/// One stored entity as readers see it.
#[derive(Debug)]
pub struct Doc {
    pub id: u32,
    pub uid: Box<str>,
    /// Lowercased `kind:namespace/name`.
    pub ref_key: Arc<str>,
    /// The entity's JSON exactly as served, compressed.
    packed: Box<[u8]>,
}

impl Doc {
    pub fn new(id: u32, uid: String, ref_key: String, json: &[u8]) -> Doc {
        Doc {
            id,
            uid: uid.into_boxed_str(),
            ref_key: Arc::from(ref_key),
            packed: packed::pack(json),
        }
    }

    /// The entity's JSON, exactly as served.
    pub fn json(&self) -> Bytes {
        packed::unpack(&self.packed).unwrap_or_else(|| {
            tracing::error!(id = self.id, "an indexed entity failed to unpack");
            Bytes::from_static(b"null")
        })
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json()).unwrap_or(Value::Null)
    }
}

/// Entity ids for one value. Most values belong to one entity, and most of the rest
/// to a handful, so small sets are one exact-size sorted slice; a bitmap (several
/// allocations) is kept only for large ones.
#[derive(Debug, Clone, Default)]
enum Ids {
    #[default]
    None,
    One(u32),
    /// Sorted, between 2 and `FEW_IDS` ids.
    Few(Box<[u32]>),
    Many(Box<RoaringBitmap>),
}

/// The largest set kept as a sorted slice.
const FEW_IDS: usize = 32;

impl Ids {
    fn is_empty(&self) -> bool {
        matches!(self, Ids::None)
    }
    fn insert(&mut self, id: u32) {
        match self {
            Ids::None => *self = Ids::One(id),
            Ids::One(existing) if *existing == id => {}
            Ids::One(existing) => {
                let (a, b) = (*existing, id);
                *self = Ids::Few(Box::new([a.min(b), a.max(b)]));
            }
            Ids::Few(ids) => {
                let Err(at) = ids.binary_search(&id) else {
                    return;
                };
                if ids.len() < FEW_IDS {
                    *ids = [&ids[..at], &[id], &ids[at..]].concat().into_boxed_slice();
                } else {
                    let mut b =
                        RoaringBitmap::from_sorted_iter(ids.iter().copied()).unwrap_or_default();
                    b.insert(id);
                    *self = Ids::Many(Box::new(b));
                }
            }
            Ids::Many(b) => {
                b.insert(id);
            }
        }
    }
    /// Removes `id`; true when nothing is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Ids::None => {}
            Ids::One(existing) => {
                if *existing == id {
                    *self = Ids::None;
                }
            }
            Ids::Few(ids) => {
                if let Ok(at) = ids.binary_search(&id) {
                    *self = match ids.len() {
                        2 => Ids::One(ids[1 - at]),
                        _ => Ids::Few([&ids[..at], &ids[at + 1..]].concat().into_boxed_slice()),
                    };
                }
            }
            Ids::Many(b) => {
                b.remove(id);
                if b.len() <= FEW_IDS as u64 {
                    *self = match b.len() {
                        0 => Ids::None,
                        1 => b.min().map_or(Ids::None, Ids::One),
                        _ => Ids::Few(b.iter().collect::<Vec<_>>().into_boxed_slice()),
                    };
                }
            }
        }
        self.is_empty()
    }
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (one, few, many) = match self {
            Ids::None => (None, None, None),
            Ids::One(id) => (Some(*id), None, None),
            Ids::Few(ids) => (None, Some(ids.iter().copied()), None),
            Ids::Many(b) => (None, None, Some(b.iter())),
        };
        one.into_iter()
            .chain(few.into_iter().flatten())
            .chain(many.into_iter().flatten())
    }
    fn union_into(&self, out: &mut RoaringBitmap) {
        match self {
            Ids::None => {}
            Ids::One(id) => {
                out.insert(*id);
            }
            Ids::Few(ids) => {
                out.extend(ids.iter().copied());
            }
            Ids::Many(b) => *out |= b.as_ref(),
        }
    }
    fn to_bitmap(&self) -> RoaringBitmap {
        match self {
            Ids::Many(b) => b.as_ref().clone(),
            other => {
                let mut out = RoaringBitmap::new();
                other.union_into(&mut out);
                out
            }
        }
    }
    fn count_in(&self, within: Option<&RoaringBitmap>) -> u64 {
        match (self, within) {
            (Ids::None, _) => 0,
            (Ids::One(_), None) => 1,
            (Ids::One(id), Some(w)) => u64::from(w.contains(*id)),
            (Ids::Few(ids), None) => ids.len() as u64,
            (Ids::Few(ids), Some(w)) => ids.iter().filter(|&&id| w.contains(id)).count() as u64,
            (Ids::Many(b), None) => b.len(),
            (Ids::Many(b), Some(w)) => b.intersection_len(w),
        }
    }
}

#[derive(Debug)]
struct Posting {
    /// The value as written, when it differs from the lowercased value.
    original: Option<Box<str>>,
    ids: Ids,
}

/// Nearly every value has one posting, kept inline to save an allocation per value.
type Postings = SmallVec<[Posting; 1]>;

fn add_posting(postings: &mut Postings, id: u32, original: Option<Box<str>>) {
    match postings.iter_mut().find(|p| p.original == original) {
        Some(p) => p.ids.insert(id),
        None => postings.push(Posting {
            original,
            ids: Ids::One(id),
        }),
    }
}

/// Removes `id` from every posting; true when no posting is left.
fn remove_posting(postings: &mut Postings, id: u32) -> bool {
    postings.retain(|p| !p.ids.remove(id));
    postings.is_empty()
}

fn union_postings(postings: &Postings, out: &mut RoaringBitmap) {
    for p in postings {
        p.ids.union_into(out);
    }
}

/// The sorted values of one key, laid end to end.
#[derive(Debug, Default)]
struct Column {
    /// Every value followed by a NUL.
    text: Vec<u8>,
    /// Each value's start in `text` and its postings (empty once every id left).
    entries: Vec<(u32, Postings)>,
}

impl Column {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn value(&self, i: usize) -> &[u8] {
        let start = self.entries[i].0 as usize;
        let end = self
            .entries
            .get(i + 1)
            .map_or(self.text.len(), |e| e.0 as usize);
        &self.text[start..end - 1]
    }
    fn find(&self, value: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.value(mid).cmp(value) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }
    /// Appends a value that sorts after every value already here; dead ones are dropped.
    fn push(&mut self, value: &[u8], postings: Postings) {
        if postings.is_empty() {
            return;
        }
        self.entries.push((self.text.len() as u32, postings));
        self.text.extend_from_slice(value);
        self.text.push(0);
    }
    fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &Postings)> + '_ {
        (0..self.entries.len()).map(move |i| (self.value(i), &self.entries[i].1))
    }
}

#[derive(Debug, Default)]
struct KeyIndex {
    exists: Ids,
    column: Column,
    /// Values added since the column was last rebuilt; never also in the column.
    delta: BTreeMap<Box<str>, Postings>,
    /// Column entries with no posting left.
    dead: usize,
}

/// Columns this small are rebuilt after every batch, so they never keep a delta tree.
const SMALL_COLUMN: usize = 2048;

impl KeyIndex {
    fn get(&self, value: &str) -> Option<&Postings> {
        match self.column.find(value.as_bytes()) {
            Ok(i) => Some(&self.column.entries[i].1),
            Err(_) => self.delta.get(value),
        }
    }

    fn add(&mut self, id: u32, value: String, original: Option<Box<str>>) {
        match self.column.find(value.as_bytes()) {
            Ok(i) => {
                let postings = &mut self.column.entries[i].1;
                if postings.is_empty() {
                    self.dead -= 1;
                }
                add_posting(postings, id, original);
            }
            Err(_) => add_posting(
                self.delta.entry(value.into_boxed_str()).or_default(),
                id,
                original,
            ),
        }
    }

    fn remove(&mut self, id: u32, value: &str) {
        match self.column.find(value.as_bytes()) {
            Ok(i) => {
                let postings = &mut self.column.entries[i].1;
                if !postings.is_empty() && remove_posting(postings, id) {
                    self.dead += 1;
                }
            }
            Err(_) => {
                if let Some(postings) = self.delta.get_mut(value) {
                    if remove_posting(postings, id) {
                        self.delta.remove(value);
                    }
                }
            }
        }
    }

    /// Folds the delta into the column and drops dead entries, when worth it.
    fn settle(&mut self) {
        let n = self.column.len();
        let worth = (!self.delta.is_empty() && (n < SMALL_COLUMN || self.delta.len() * 8 >= n))
            || self.dead * 4 > n;
        if !worth {
            return;
        }
        let mut old = std::mem::take(&mut self.column);
        let delta = std::mem::take(&mut self.delta);
        let live = old.len() - self.dead + delta.len();
        let bytes = old.text.len() + delta.keys().map(|k| k.len() + 1).sum::<usize>();
        let mut column = Column {
            text: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(live),
        };
        let mut delta = delta.into_iter().peekable();
        let mut i = 0;
        loop {
            let take_column = match (i < old.len(), delta.peek()) {
                (false, None) => break,
                (true, None) => true,
                (false, Some(_)) => false,
                (true, Some((d, _))) => old.value(i) < d.as_bytes(),
            };
            if take_column {
                let postings = std::mem::take(&mut old.entries[i].1);
                column.push(old.value(i), postings);
                i += 1;
            } else if let Some((value, postings)) = delta.next() {
                column.push(value.as_bytes(), postings);
            }
        }
        self.column = column;
        self.dead = 0;
    }

    /// Every value with its postings, in order.
    fn for_each<'a>(&'a self, order: Order, mut f: impl FnMut(&'a [u8], &'a Postings)) {
        let delta = self.delta.iter().map(|(k, p)| (k.as_bytes(), p));
        match order {
            Order::Asc => merge(self.column.iter(), delta, |a, b| a <= b, &mut f),
            Order::Desc => merge(self.column.iter().rev(), delta.rev(), |a, b| a >= b, &mut f),
        }
    }
}

/// Visits two sorted sequences as one; `first(a, b)` says whether `a` comes first.
fn merge<'a>(
    a: impl Iterator<Item = (&'a [u8], &'a Postings)>,
    b: impl Iterator<Item = (&'a [u8], &'a Postings)>,
    first: impl Fn(&[u8], &[u8]) -> bool,
    f: &mut impl FnMut(&'a [u8], &'a Postings),
) {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((x, _)), Some((y, _))) => first(x, y),
        };
        let next = if take_a { a.next() } else { b.next() };
        if let Some((value, postings)) = next {
            f(value, postings);
        }
    }
}

/// The index itself; wrap it in a lock to share it.
#[derive(Debug, Default)]
pub struct Index {
    docs: HashMap<u32, Arc<Doc>>,
    all: RoaringBitmap,
    by_ref: BTreeMap<Arc<str>, u32>,
    keys: HashMap<Box<str>, KeyIndex>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

impl Index {
    pub fn len(&self) -> usize {
        self.docs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
    pub fn get(&self, id: u32) -> Option<&Arc<Doc>> {
        self.docs.get(&id)
    }
    pub fn by_uid(&self, uid: &str) -> Option<&Arc<Doc>> {
        let postings = self.keys.get("metadata.uid")?.get(&uid.to_lowercase())?;
        postings
            .iter()
            .flat_map(|p| p.ids.iter())
            .filter_map(|id| self.docs.get(&id))
            .find(|d| &*d.uid == uid)
    }
    pub fn by_ref(&self, ref_key: &str) -> Option<&Arc<Doc>> {
        self.by_ref.get(ref_key).and_then(|id| self.docs.get(id))
    }

    /// Adds or replaces an entity, and settles the index.
    pub fn upsert(&mut self, doc: Doc, value: &Value) {
        self.upsert_rows(doc, search_rows(value));
        self.settle();
    }

    /// Adds or replaces an entity whose search rows were computed beforehand.
    /// Call `settle` after a batch of these.
    pub fn upsert_rows(&mut self, doc: Doc, rows: Vec<SearchRow>) {
        let id = doc.id;
        self.remove(id);
        if let Some(other) = self.by_ref.get(&*doc.ref_key).copied() {
            self.remove(other);
        }
        for row in rows {
            self.add_row(id, row);
        }
        self.all.insert(id);
        self.by_ref.insert(doc.ref_key.clone(), id);
        self.docs.insert(id, Arc::new(doc));
    }

    /// Removes an entity; unknown ids are ignored. Call `settle` after a batch of these.
    pub fn remove(&mut self, id: u32) {
        let Some(doc) = self.docs.remove(&id) else {
            return;
        };
        self.all.remove(id);
        if self.by_ref.get(&*doc.ref_key) == Some(&id) {
            self.by_ref.remove(&*doc.ref_key);
        }
        for row in search_rows(&doc.value()) {
            let Some(k) = self.keys.get_mut(row.key.as_str()) else {
                continue;
            };
            k.exists.remove(id);
            if let Some(value) = &row.value {
                k.remove(id, value);
            }
            if k.exists.is_empty() {
                self.keys.remove(row.key.as_str());
            }
        }
    }

    /// Folds recent writes into the compact columns. Reads are correct either way;
    /// this keeps them fast and the index small.
    pub fn settle(&mut self) {
        for k in self.keys.values_mut() {
            k.settle();
        }
    }

    fn add_row(&mut self, id: u32, row: SearchRow) {
        let k = match self.keys.get_mut(row.key.as_str()) {
            Some(k) => k,
            None => self.keys.entry(row.key.into_boxed_str()).or_default(),
        };
        k.exists.insert(id);
        let (Some(value), Some(original)) = (row.value, row.original) else {
            return;
        };
        let original = (original != value).then(|| original.into_boxed_str());
        k.add(id, value, original);
    }

    /// Every entity id.
    pub fn all_ids(&self) -> RoaringBitmap {
        self.all.clone()
    }

    /// The ids matching a filter; an empty filter matches everything.
    pub fn eval(&self, filter: &EntityFilter) -> RoaringBitmap {
        if filter.is_empty() {
            return self.all.clone();
        }
        let mut out = RoaringBitmap::new();
        for conj in &filter.any_of {
            let mut acc: Option<RoaringBitmap> = None;
            for cond in conj {
                let ids = self.condition(cond);
                acc = Some(match acc {
                    None => ids,
                    Some(a) => a & ids,
                });
                if acc.as_ref().is_some_and(RoaringBitmap::is_empty) {
                    break;
                }
            }
            if let Some(a) = acc {
                out |= a;
            }
        }
        out
    }

    fn condition(&self, cond: &Condition) -> RoaringBitmap {
        let Some(k) = self.keys.get(cond.key.as_str()) else {
            return RoaringBitmap::new();
        };
        match &cond.values {
            None => k.exists.to_bitmap(),
            Some(values) => {
                let mut out = RoaringBitmap::new();
                for v in values {
                    if let Some(postings) = k.get(v) {
                        union_postings(postings, &mut out);
                    }
                }
                out
            }
        }
    }

    /// Ids whose value of any of `keys` contains `term` (lowercased), as Backstage's full-text filter.
    pub fn full_text(&self, term: &str, keys: &[String]) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let finder = memchr::memmem::Finder::new(term.as_bytes());
        for key in keys {
            let Some(k) = self.keys.get(key.as_str()) else {
                continue;
            };
            if term.is_empty() || term.contains('\0') {
                k.for_each(Order::Asc, |value, postings| {
                    if finder.find(value).is_some() {
                        union_postings(postings, &mut out);
                    }
                });
                continue;
            }
            // The column: one pass over its text, jumping to the next value after a hit.
            let col = &k.column;
            let mut pos = 0;
            while let Some(i) = finder.find(&col.text[pos..]) {
                let at = pos + i;
                let v = col.entries.partition_point(|e| e.0 as usize <= at) - 1;
                union_postings(&col.entries[v].1, &mut out);
                pos = col
                    .entries
                    .get(v + 1)
                    .map_or(col.text.len(), |e| e.0 as usize);
            }
            for (value, postings) in &k.delta {
                if finder.find(value.as_bytes()).is_some() {
                    union_postings(postings, &mut out);
                }
            }
        }
        out
    }

    /// `ids` ordered by the value of `key`, ties by id, entities without the key last.
    pub fn ordered_by(&self, ids: &RoaringBitmap, key: &str, order: Order) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() as usize);
        let mut seen = RoaringBitmap::new();
        if let Some(k) = self.keys.get(key) {
            let mut group = RoaringBitmap::new();
            k.for_each(order, |_, postings| {
                if let [Posting {
                    ids: Ids::One(id), ..
                }] = postings.as_slice()
                {
                    if ids.contains(*id) && seen.insert(*id) {
                        out.push(*id);
                    }
                    return;
                }
                group.clear();
                union_postings(postings, &mut group);
                group &= ids;
                group -= &seen;
                match order {
                    Order::Asc => out.extend(group.iter()),
                    Order::Desc => out.extend(group.iter().rev()),
                }
                seen |= &group;
            });
        }
        let rest = ids - &seen;
        match order {
            Order::Asc => out.extend(rest.iter()),
            Order::Desc => out.extend(rest.iter().rev()),
        }
        out
    }

    /// The first value of `key` for an entity, as the sort saw it.
    pub fn sort_value(&self, id: u32, key: &str) -> Option<String> {
        let doc = self.docs.get(&id)?;
        search_rows(&doc.value())
            .into_iter()
            .filter(|r| r.key == key)
            .filter_map(|r| r.value)
            .min()
    }

    /// `ids` in entity-ref order: Backstage's default order for `GET /entities`.
    pub fn ordered_by_ref(&self, ids: &RoaringBitmap) -> Vec<u32> {
        if ids.len() as usize * 8 < self.by_ref.len() {
            let mut v: Vec<(&str, u32)> = ids
                .iter()
                .filter_map(|id| self.docs.get(&id).map(|d| (&*d.ref_key, id)))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, id)| id).collect()
        } else {
            self.by_ref
                .values()
                .copied()
                .filter(|id| ids.contains(*id))
                .collect()
        }
    }

    /// The page `offset..offset + limit` of `ids` in entity-ref order.
    pub fn ref_order_page(&self, ids: &RoaringBitmap, offset: usize, limit: usize) -> Vec<u32> {
        if ids.len() as usize * 8 < self.by_ref.len() {
            return self
                .ordered_by_ref(ids)
                .into_iter()
                .skip(offset)
                .take(limit)
                .collect();
        }
        self.by_ref
            .values()
            .copied()
            .filter(|id| ids.contains(*id))
            .skip(offset)
            .take(limit)
            .collect()
    }

    /// Counts per original value of `key` among `within` (all entities when None).
    pub fn facet(&self, key: &str, within: Option<&RoaringBitmap>) -> Vec<(String, u64)> {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        if let Some(k) = self.keys.get(key) {
            k.for_each(Order::Asc, |value, postings| {
                for p in postings {
                    let n = p.ids.count_in(within);
                    if n > 0 {
                        // Column text is whole values copied from strings: always UTF-8.
                        let original = p
                            .original
                            .as_deref()
                            .unwrap_or_else(|| std::str::from_utf8(value).unwrap_or_default());
                        *counts.entry(original).or_default() += n;
                    }
                }
            });
        }
        let mut out: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Entity counts per kind, for metrics.
    pub fn kind_counts(&self) -> Vec<(String, u64)> {
        self.facet("kind", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(id: u32, kind: &str, name: &str, extra: Value) -> (Doc, Value) {
        let mut v = json!({"apiVersion": "backstage.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{id}")}});
        if let (Some(spec), Value::Object(map)) = (v.as_object_mut(), extra) {
            spec.insert("spec".into(), Value::Object(map));
        }
        let d = Doc::new(
            id,
            format!("uid-{id}"),
            format!("{}:default/{}", kind.to_lowercase(), name.to_lowercase()),
            &serde_json::to_vec(&v).expect("json"),
        );
        (d, v)
    }

    fn index() -> Index {
        let mut idx = Index::default();
        for (id, kind, name, spec) in [
            (
                1,
                "Component",
                "b-svc",
                json!({"type": "service", "lifecycle": "production"}),
            ),
            (
                2,
                "Component",
                "a-web",
                json!({"type": "Website", "lifecycle": "production"}),
            ),
            (3, "API", "c-api", json!({"type": "openapi"})),
            (4, "Component", "d-lib", json!({"type": "library"})),
        ] {
            let (d, v) = doc(id, kind, name, spec);
            idx.upsert(d, &v);
        }
        idx
    }

    #[test]
    fn filters_and_facets() {
        let idx = index();
        let f =
            EntityFilter::parse_params(&["kind=component,spec.lifecycle=PRODUCTION"]).expect("ok");
        assert_eq!(idx.eval(&f).iter().collect::<Vec<_>>(), vec![1, 2]);
        let f = EntityFilter::parse_params(&["kind=api", "spec.type=library"]).expect("ok");
        assert_eq!(idx.eval(&f).iter().collect::<Vec<_>>(), vec![3, 4]);
        let f = EntityFilter::parse_params(&["spec.lifecycle"]).expect("ok");
        assert_eq!(idx.eval(&f).len(), 2);
        let facets = idx.facet("spec.type", None);
        assert!(facets.contains(&("Website".to_string(), 1)));
        assert_eq!(idx.ordered_by_ref(&idx.all_ids()), vec![3, 2, 1, 4]);
        assert_eq!(
            idx.ordered_by(&idx.all_ids(), "metadata.name", Order::Desc),
            vec![4, 3, 1, 2]
        );
    }

    #[test]
    fn replace_and_remove_leave_no_trace() {
        let mut idx = index();
        let (d, v) = doc(1, "Component", "b-svc", json!({"type": "tool"}));
        idx.upsert(d, &v);
        let f = EntityFilter::parse_params(&["spec.type=service"]).expect("ok");
        assert!(idx.eval(&f).is_empty());
        idx.remove(1);
        idx.remove(2);
        idx.remove(3);
        idx.remove(4);
        assert!(idx.is_empty());
        assert!(
            idx.keys.is_empty(),
            "{:?}",
            idx.keys.keys().collect::<Vec<_>>()
        );
    }

    /// The walk over every value that full-text search replaces.
    fn full_text_by_walk(idx: &Index, term: &str, key: &str) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        if let Some(k) = idx.keys.get(key) {
            k.for_each(Order::Asc, |value, postings| {
                if memchr::memmem::find(value, term.as_bytes()).is_some() {
                    union_postings(postings, &mut out);
                }
            });
        }
        out
    }

    #[test]
    fn full_text_columns_follow_writes() {
        let mut idx = index();
        let keys = vec!["metadata.name".to_string()];
        assert_eq!(
            idx.full_text("svc", &keys).iter().collect::<Vec<_>>(),
            vec![1]
        );
        let (d, v) = doc(5, "Component", "e-svc", json!({"type": "service"}));
        idx.upsert(d, &v);
        assert_eq!(
            idx.full_text("svc", &keys).iter().collect::<Vec<_>>(),
            vec![1, 5]
        );
        idx.remove(1);
        assert_eq!(
            idx.full_text("svc", &keys).iter().collect::<Vec<_>>(),
            vec![5]
        );
        // A term never matches across two values.
        assert!(idx.full_text("libe", &keys).is_empty());
    }

    #[test]
    fn ref_order_pages_are_windows_of_the_full_order() {
        let idx = index();
        let all = idx.ordered_by_ref(&idx.all_ids());
        for offset in 0..6 {
            for limit in 0..6 {
                let want: Vec<u32> = all.iter().copied().skip(offset).take(limit).collect();
                assert_eq!(idx.ref_order_page(&idx.all_ids(), offset, limit), want);
            }
        }
    }

    /// One write in a random history: upsert entity `id` with a type, tags and a
    /// name suffix; remove it; or settle the index.
    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u32, &'static str, Vec<&'static str>, u8),
        Remove(u32),
        Settle,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let word = || proptest::sample::select(vec!["Java", "java", "go", "rust", "Web", "lib"]);
        prop_oneof![
            6 => (1u32..72, word(), proptest::collection::vec(word(), 0..3), 0u8..5)
                .prop_map(|(id, t, tags, n)| Op::Upsert(id, t, tags, n)),
            2 => (1u32..72).prop_map(Op::Remove),
            1 => Just(Op::Settle),
        ]
    }

    proptest::proptest! {
        /// Whatever the history of writes and settles, every read answers as a
        /// plain scan of the live entities would.
        #[test]
        fn reads_match_a_scan_after_any_history(ops in proptest::collection::vec(op(), 1..120)) {
            use std::collections::BTreeMap;
            let mut idx = Index::default();
            let mut live: BTreeMap<u32, Value> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Upsert(id, t, tags, n) => {
                        let (d, mut v) = doc(id, "Component", &format!("c{n}-{id}"), json!({"type": t}));
                        v["metadata"]["tags"] = json!(tags.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>());
                        let d = Doc::new(d.id, d.uid.to_string(), d.ref_key.to_string(), &serde_json::to_vec(&v).expect("json"));
                        idx.upsert_rows(d, search_rows(&v));
                        live.insert(id, v);
                    }
                    Op::Remove(id) => {
                        idx.remove(id);
                        live.remove(&id);
                    }
                    Op::Settle => idx.settle(),
                }
                let scan = |pred: &dyn Fn(&Value) -> bool| -> Vec<u32> {
                    live.iter().filter(|(_, v)| pred(v)).map(|(id, _)| *id).collect()
                };
                let ids = |b: RoaringBitmap| b.iter().collect::<Vec<u32>>();
                for word in ["java", "go", "web"] {
                    let f = EntityFilter::parse_params(&[format!("spec.type={word}").as_str()]).expect("filter");
                    proptest::prop_assert_eq!(
                        ids(idx.eval(&f)),
                        scan(&|v| v["spec"]["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(word)))
                    );
                    let f = EntityFilter::parse_params(&[format!("metadata.tags={word}").as_str()]).expect("filter");
                    proptest::prop_assert_eq!(
                        ids(idx.eval(&f)),
                        scan(&|v| v["metadata"]["tags"].as_array().is_some_and(|a| a.iter().any(|t| t == word)))
                    );
                }
                let f = EntityFilter::parse_params(&["metadata.tags"]).expect("filter");
                proptest::prop_assert_eq!(
                    ids(idx.eval(&f)),
                    scan(&|v| v["metadata"]["tags"].as_array().is_some_and(|a| !a.is_empty()))
                );
                let keys = vec!["metadata.name".to_string()];
                proptest::prop_assert_eq!(
                    ids(idx.full_text("c1", &keys)),
                    scan(&|v| v["metadata"]["name"].as_str().is_some_and(|n| n.contains("c1")))
                );
                let mut by_name: Vec<(String, u32)> = live
                    .iter()
                    .map(|(id, v)| (v["metadata"]["name"].as_str().unwrap_or_default().to_string(), *id))
                    .collect();
                by_name.sort();
                let asc: Vec<u32> = by_name.iter().map(|(_, id)| *id).collect();
                proptest::prop_assert_eq!(idx.ordered_by(&idx.all_ids(), "metadata.name", Order::Asc), asc.clone());
                let desc: Vec<u32> = asc.iter().rev().copied().collect();
                proptest::prop_assert_eq!(idx.ordered_by(&idx.all_ids(), "metadata.name", Order::Desc), desc);
                let mut facets: BTreeMap<String, u64> = BTreeMap::new();
                for v in live.values() {
                    *facets.entry(v["spec"]["type"].as_str().unwrap_or_default().to_string()).or_default() += 1;
                }
                let mut got = idx.facet("spec.type", None);
                got.sort();
                proptest::prop_assert_eq!(got, facets.into_iter().collect::<Vec<_>>());
                for (id, v) in &live {
                    let uid = v["metadata"]["uid"].as_str().unwrap_or_default();
                    proptest::prop_assert_eq!(idx.by_uid(uid).map(|d| d.id), Some(*id));
                    proptest::prop_assert_eq!(idx.get(*id).map(|d| d.value()), Some(v.clone()));
                }
                proptest::prop_assert_eq!(idx.len(), live.len());
            }
            for id in 1..72 {
                idx.remove(id);
            }
            idx.settle();
            proptest::prop_assert!(idx.keys.is_empty());
        }
    }

    proptest::proptest! {
        /// An id set answers as a plain set does, across every change of representation.
        #[test]
        fn id_sets_match_a_plain_set(ops in proptest::collection::vec((proptest::bool::ANY, 0u32..80), 1..400)) {
            let mut ids = Ids::None;
            let mut model = std::collections::BTreeSet::new();
            let within: RoaringBitmap = (0..80).step_by(3).collect();
            for (insert, id) in ops {
                if insert {
                    ids.insert(id);
                    model.insert(id);
                } else {
                    let empty = ids.remove(id);
                    model.remove(&id);
                    proptest::prop_assert_eq!(empty, model.is_empty());
                }
                proptest::prop_assert_eq!(ids.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                proptest::prop_assert_eq!(ids.to_bitmap().iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                proptest::prop_assert_eq!(ids.count_in(None), model.len() as u64);
                proptest::prop_assert_eq!(ids.count_in(Some(&within)), model.iter().filter(|&&x| x % 3 == 0).count() as u64);
                let small = matches!(ids, Ids::None | Ids::One(_) | Ids::Few(_));
                proptest::prop_assert_eq!(small, model.len() <= FEW_IDS, "{} ids", model.len());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn full_text_matches_a_walk_of_every_value(
            names in proptest::collection::vec("[a-c]{1,6}", 1..40),
            term in "[a-c]{1,3}",
        ) {
            let mut idx = Index::default();
            for (i, name) in names.iter().enumerate() {
                let (d, v) = doc(i as u32 + 1, "Component", &format!("{name}-{i}"), json!({}));
                idx.upsert(d, &v);
            }
            let keys = vec!["metadata.name".to_string()];
            proptest::prop_assert_eq!(
                idx.full_text(&term, &keys),
                full_text_by_walk(&idx, &term, "metadata.name")
            );
        }
    }
}
