//! Flattens an entity into Backstage's search rows: the `(key, value)` pairs that
//! filters, facets, ordering and full-text search work on.
//!
//! This mirrors Backstage's `buildEntitySearch` so that every filter a
//! Backstage client sends matches the same entities here.

use serde_json::Value;

const MAX_KEY_LENGTH: usize = 200;
const MAX_VALUE_LENGTH: usize = 200;
const SPECIAL_KEYS: &[&str] = &[
    "attachments",
    "relations",
    "status",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.etag",
];

/// One search row. `value` is lowercased; both are None for null or over-long values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRow {
    pub key: String,
    pub value: Option<String>,
    pub original: Option<String>,
}

/// The search rows of a (stitched) entity, deduplicated on (key, value).
pub fn search_rows(entity: &Value) -> Vec<SearchRow> {
    let mut raw: Vec<(String, Option<String>)> = Vec::new();
    visit("", entity, &mut raw);
    let meta = entity.get("metadata");
    let text = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    if let Some(name) = text("name") {
        raw.push(("metadata.name".into(), Some(name.into())));
    }
    raw.push((
        "metadata.namespace".into(),
        Some(text("namespace").unwrap_or("default").into()),
    ));
    if let Some(uid) = text("uid") {
        raw.push(("metadata.uid".into(), Some(uid.into())));
    }
    if let Some(Value::Array(relations)) = entity.get("relations") {
        for r in relations {
            if let (Some(t), Some(target)) = (
                r.get("type").and_then(Value::as_str),
                r.get("targetRef").and_then(Value::as_str),
            ) {
                raw.push((format!("relations.{t}"), Some(target.into())));
            }
        }
    }
    let mut rows: Vec<SearchRow> = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    for (key, original) in raw {
        let key = key.to_lowercase();
        if key.len() > MAX_KEY_LENGTH {
            continue;
        }
        let (value, original) = match original {
            Some(o) => {
                let v = o.to_lowercase();
                if v.len() <= MAX_VALUE_LENGTH {
                    (Some(v), Some(o))
                } else {
                    (None, None)
                }
            }
            None => (None, None),
        };
        if seen.insert((key.clone(), value.clone())) {
            rows.push(SearchRow {
                key,
                value,
                original,
            });
        }
    }
    rows
}

fn visit(path: &str, current: &Value, out: &mut Vec<(String, Option<String>)>) {
    if SPECIAL_KEYS.contains(&path) {
        return;
    }
    match current {
        Value::Null => out.push((path.to_string(), None)),
        Value::Bool(b) => out.push((path.to_string(), Some(b.to_string()))),
        Value::Number(n) => out.push((path.to_string(), Some(n.to_string()))),
        Value::String(s) => out.push((path.to_string(), Some(s.clone()))),
        Value::Array(items) => {
            for item in items {
                visit(path, item, out);
                if let Value::String(s) = item {
                    let item_key = format!("{path}.{s}");
                    let lower = item_key.to_lowercase();
                    if !out.iter().any(|(k, _)| k.to_lowercase() == lower) {
                        out.push((item_key, Some("true".into())));
                    }
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                visit(&child, v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_follow_backstage() {
        let e = json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "Foo", "tags": ["Java", "java"], "uid": "u1", "etag": "e"},
            "spec": {"type": "service", "owner": null},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/Team"}],
            "status": {"items": []}
        });
        let rows = search_rows(&e);
        let has =
            |k: &str, v: Option<&str>| rows.iter().any(|r| r.key == k && r.value.as_deref() == v);
        assert!(has("kind", Some("component")));
        assert!(has("metadata.name", Some("foo")));
        assert!(has("metadata.namespace", Some("default")));
        assert!(has("metadata.tags", Some("java")));
        assert!(has("metadata.tags.java", Some("true")));
        assert!(has("spec.owner", None));
        assert!(has("relations.ownedby", Some("group:default/team")));
        assert!(!rows
            .iter()
            .any(|r| r.key.starts_with("status") || r.key == "metadata.etag"));
        // Java and java collapse to one (key, value) row.
        assert_eq!(rows.iter().filter(|r| r.key == "metadata.tags").count(), 1);
    }

    #[test]
    fn long_values_become_null() {
        let long = "x".repeat(201);
        let rows = search_rows(&json!({"kind": "C", "spec": {"d": long}}));
        assert!(rows.iter().any(|r| r.key == "spec.d" && r.value.is_none()));
    }
}
