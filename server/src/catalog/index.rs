//! The in-memory read model of the catalog: every stitched entity, pre-serialized,
//! with an inverted index of its search rows.
//!
//! It is filled only by `feed` from the database's change feed, so every replica
//! converges on the same content. It holds no business rules: it answers filters,
//! orderings, full-text matches and facet counts with bitmaps over entity ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use roaring::RoaringBitmap;
use serde_json::Value;
use smallvec::SmallVec;

use super::filter::{Condition, EntityFilter};
use super::search::{search_rows, SearchRow};

/// One stored entity as readers see it.
#[derive(Debug)]
pub struct Doc {
    pub id: u32,
    pub uid: String,
    /// Lowercased `kind:namespace/name`.
    pub ref_key: String,
    /// The entity's JSON, exactly as served.
    pub json: Bytes,
}

impl Doc {
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Entity ids for one value; most values belong to one entity only.
#[derive(Debug, Clone)]
enum Ids {
    One(u32),
    Many(RoaringBitmap),
}

impl Ids {
    fn insert(&mut self, id: u32) {
        match self {
            Ids::One(existing) if *existing == id => {}
            Ids::One(existing) => {
                let mut b = RoaringBitmap::new();
                b.insert(*existing);
                b.insert(id);
                *self = Ids::Many(b);
            }
            Ids::Many(b) => {
                b.insert(id);
            }
        }
    }
    /// Removes `id`; true when nothing is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Ids::One(existing) => *existing == id,
            Ids::Many(b) => {
                b.remove(id);
                if b.len() == 1 {
                    if let Some(only) = b.min() {
                        *self = Ids::One(only);
                    }
                }
                false
            }
        }
    }
    fn union_into(&self, out: &mut RoaringBitmap) {
        match self {
            Ids::One(id) => {
                out.insert(*id);
            }
            Ids::Many(b) => *out |= b,
        }
    }
    fn count_in(&self, within: Option<&RoaringBitmap>) -> u64 {
        match (self, within) {
            (Ids::One(_), None) => 1,
            (Ids::One(id), Some(w)) => u64::from(w.contains(*id)),
            (Ids::Many(b), None) => b.len(),
            (Ids::Many(b), Some(w)) => b.intersection_len(w),
        }
    }
}

#[derive(Debug)]
struct Posting {
    /// The value as written, when it differs from the lowercased key.
    original: Option<Box<str>>,
    ids: Ids,
}

type Postings = SmallVec<[Posting; 1]>;

#[derive(Debug, Default)]
struct KeyIndex {
    exists: RoaringBitmap,
    /// Nearly every value has one posting, kept inline to save an allocation per value.
    values: BTreeMap<Box<str>, Postings>,
}

impl KeyIndex {
    fn value_ids(&self, value: &str, out: &mut RoaringBitmap) {
        if let Some(postings) = self.values.get(value) {
            for p in postings {
                p.ids.union_into(out);
            }
        }
    }
}

/// The index itself; wrap it in a lock to share it.
#[derive(Debug, Default)]
pub struct Index {
    docs: HashMap<u32, Arc<Doc>>,
    all: RoaringBitmap,
    by_uid: HashMap<String, u32>,
    by_ref: BTreeMap<String, u32>,
    keys: HashMap<Box<str>, KeyIndex>,
    /// Full-text columns built on demand; any write clears them.
    text_columns: Mutex<HashMap<Box<str>, Arc<TextColumn>>>,
}

/// Every value of one key laid end to end, NUL-separated, so that a substring
/// search is one SIMD pass over contiguous memory rather than a walk of the tree.
#[derive(Debug)]
struct TextColumn {
    text: Vec<u8>,
    starts: Vec<usize>,
    ids: Vec<Ids>,
}

impl TextColumn {
    fn build(k: &KeyIndex) -> TextColumn {
        let mut col = TextColumn {
            text: Vec::new(),
            starts: Vec::with_capacity(k.values.len()),
            ids: Vec::with_capacity(k.values.len()),
        };
        for (value, postings) in &k.values {
            col.starts.push(col.text.len());
            col.text.extend_from_slice(value.as_bytes());
            col.text.push(0);
            let ids = match postings.as_slice() {
                [one] => one.ids.clone(),
                many => {
                    let mut b = RoaringBitmap::new();
                    for p in many {
                        p.ids.union_into(&mut b);
                    }
                    Ids::Many(b)
                }
            };
            col.ids.push(ids);
        }
        col
    }

    /// Adds the ids of every value containing the finder's needle (which holds no NUL).
    fn search(&self, finder: &memchr::memmem::Finder<'_>, out: &mut RoaringBitmap) {
        let mut pos = 0;
        while pos < self.text.len() {
            let Some(i) = finder.find(&self.text[pos..]) else {
                break;
            };
            let at = pos + i;
            let v = self.starts.partition_point(|s| *s <= at) - 1;
            self.ids[v].union_into(out);
            pos = self.starts.get(v + 1).copied().unwrap_or(self.text.len());
        }
    }
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
        self.by_uid.get(uid).and_then(|id| self.docs.get(id))
    }
    pub fn by_ref(&self, ref_key: &str) -> Option<&Arc<Doc>> {
        self.by_ref.get(ref_key).and_then(|id| self.docs.get(id))
    }

    /// Adds or replaces an entity.
    pub fn upsert(&mut self, doc: Doc, value: &Value) {
        self.upsert_rows(doc, search_rows(value));
    }

    /// Adds or replaces an entity whose search rows were computed beforehand.
    pub fn upsert_rows(&mut self, doc: Doc, rows: Vec<SearchRow>) {
        self.text_columns.get_mut().clear();
        let id = doc.id;
        self.remove(id);
        if let Some(other) = self.by_ref.get(&doc.ref_key).copied() {
            self.remove(other);
        }
        for row in rows {
            self.add_row(id, row);
        }
        self.all.insert(id);
        self.by_uid.insert(doc.uid.clone(), id);
        self.by_ref.insert(doc.ref_key.clone(), id);
        self.docs.insert(id, Arc::new(doc));
    }

    /// Removes an entity; unknown ids are ignored.
    pub fn remove(&mut self, id: u32) {
        let Some(doc) = self.docs.remove(&id) else {
            return;
        };
        self.text_columns.get_mut().clear();
        self.all.remove(id);
        self.by_uid.remove(&doc.uid);
        if self.by_ref.get(&doc.ref_key) == Some(&id) {
            self.by_ref.remove(&doc.ref_key);
        }
        for row in search_rows(&doc.value()) {
            let Some(k) = self.keys.get_mut(row.key.as_str()) else {
                continue;
            };
            k.exists.remove(id);
            if let Some(value) = &row.value {
                if let Some(postings) = k.values.get_mut(value.as_str()) {
                    postings.retain(|p| !p.ids.remove(id));
                    if postings.is_empty() {
                        k.values.remove(value.as_str());
                    }
                }
            }
            if k.exists.is_empty() {
                self.keys.remove(row.key.as_str());
            }
        }
    }

    fn add_row(&mut self, id: u32, row: SearchRow) {
        let k = self.keys.entry(row.key.into_boxed_str()).or_default();
        k.exists.insert(id);
        let (Some(value), Some(original)) = (row.value, row.original) else {
            return;
        };
        let original = (original != value).then(|| original.into_boxed_str());
        let postings = k.values.entry(value.into_boxed_str()).or_default();
        match postings.iter_mut().find(|p| p.original == original) {
            Some(p) => p.ids.insert(id),
            None => postings.push(Posting {
                original,
                ids: Ids::One(id),
            }),
        }
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
            None => k.exists.clone(),
            Some(values) => {
                let mut out = RoaringBitmap::new();
                for v in values {
                    k.value_ids(v, &mut out);
                }
                out
            }
        }
    }

    /// Ids whose value of any of `keys` contains `term` (lowercased), as Backstage's full-text filter.
    pub fn full_text(&self, term: &str, keys: &[String]) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let finder = memchr::memmem::Finder::new(term.as_bytes());
        if !term.is_empty() && !term.contains('\0') {
            for key in keys {
                if let Some(col) = self.text_column(key) {
                    col.search(&finder, &mut out);
                }
            }
            return out;
        }
        for key in keys {
            if let Some(k) = self.keys.get(key.as_str()) {
                for (value, postings) in &k.values {
                    if finder.find(value.as_bytes()).is_some() {
                        for p in postings {
                            p.ids.union_into(&mut out);
                        }
                    }
                }
            }
        }
        out
    }

    fn text_column(&self, key: &str) -> Option<Arc<TextColumn>> {
        let k = self.keys.get(key)?;
        let mut columns = self.text_columns.lock();
        Some(
            columns
                .entry(key.into())
                .or_insert_with(|| Arc::new(TextColumn::build(k)))
                .clone(),
        )
    }

    /// `ids` ordered by the value of `key`, ties by id, entities without the key last.
    pub fn ordered_by(&self, ids: &RoaringBitmap, key: &str, order: Order) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() as usize);
        let mut seen = RoaringBitmap::new();
        if let Some(k) = self.keys.get(key) {
            let mut step = |postings: &Postings| {
                let mut group = RoaringBitmap::new();
                for p in postings {
                    p.ids.union_into(&mut group);
                }
                group &= ids;
                group -= &seen;
                match order {
                    Order::Asc => out.extend(group.iter()),
                    Order::Desc => out.extend(group.iter().rev()),
                }
                seen |= group;
            };
            match order {
                Order::Asc => k.values.values().for_each(&mut step),
                Order::Desc => k.values.values().rev().for_each(&mut step),
            }
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
                .filter_map(|id| self.docs.get(&id).map(|d| (d.ref_key.as_str(), id)))
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
            for (value, postings) in &k.values {
                for p in postings {
                    let n = p.ids.count_in(within);
                    if n > 0 {
                        let original = p.original.as_deref().unwrap_or(value);
                        *counts.entry(original).or_default() += n;
                    }
                }
            }
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
        let d = Doc {
            id,
            uid: format!("uid-{id}"),
            ref_key: format!("{}:default/{}", kind.to_lowercase(), name.to_lowercase()),
            json: Bytes::from(serde_json::to_vec(&v).expect("json")),
        };
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
            for (value, postings) in &k.values {
                if value.contains(term) {
                    for p in postings {
                        p.ids.union_into(&mut out);
                    }
                }
            }
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
