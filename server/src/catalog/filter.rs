//! Entity filters as Backstage clients send them, parsed once at the edge.
//!
//! `filter=kind=component,spec.type=service` is one filter: its statements are
//! AND-ed, and several `filter` parameters are OR-ed. `key` alone tests that the
//! key exists. The same key twice within one filter matches either value.
//! Matching is case-insensitive.

use super::CatalogError;

/// A whole filter: any of the alternatives, each a conjunction.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EntityFilter {
    pub any_of: Vec<Vec<Condition>>,
}

/// One condition on a lowercased key: it exists, or it has one of the values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    pub key: String,
    /// None tests existence; otherwise lowercased values, any of which matches.
    pub values: Option<Vec<String>>,
}

impl EntityFilter {
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }

    /// Parses the repeated `filter` query parameters.
    pub fn parse_params<S: AsRef<str>>(params: &[S]) -> Result<EntityFilter, CatalogError> {
        let mut any_of = Vec::new();
        for param in params {
            let conj = parse_one(param.as_ref())?;
            if !conj.is_empty() {
                any_of.push(conj);
            }
        }
        Ok(EntityFilter { any_of })
    }

    /// Both filters must hold.
    pub fn and(self, other: EntityFilter) -> EntityFilter {
        match (self.is_empty(), other.is_empty()) {
            (true, _) => other,
            (_, true) => self,
            _ => {
                let mut any_of = Vec::new();
                for a in &self.any_of {
                    for b in &other.any_of {
                        let mut c = a.clone();
                        c.extend(b.iter().cloned());
                        any_of.push(c);
                    }
                }
                EntityFilter { any_of }
            }
        }
    }
}

fn parse_one(param: &str) -> Result<Vec<Condition>, CatalogError> {
    let mut conditions: Vec<Condition> = Vec::new();
    for statement in param.split(',') {
        let statement = statement.trim();
        if statement.is_empty() {
            continue;
        }
        let (key, value) = match statement.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (statement, None),
        };
        if key.is_empty() {
            return Err(CatalogError::Input(format!(
                "Invalid filter, '{statement}' is not a valid statement (expected a string on the form a=b or a= or a)"
            )));
        }
        let key = key.to_lowercase();
        match value {
            None => {
                if !conditions
                    .iter()
                    .any(|c| c.key == key && c.values.is_none())
                {
                    conditions.push(Condition { key, values: None });
                }
            }
            Some(v) => {
                let v = v.to_lowercase();
                match conditions
                    .iter_mut()
                    .find(|c| c.key == key && c.values.is_some())
                {
                    Some(Condition {
                        values: Some(values),
                        ..
                    }) => {
                        if !values.contains(&v) {
                            values.push(v)
                        }
                    }
                    _ => conditions.push(Condition {
                        key,
                        values: Some(vec![v]),
                    }),
                }
            }
        }
    }
    Ok(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_backstage_syntax() {
        let f = EntityFilter::parse_params(&[
            "kind=Component,spec.type=service,spec.type=website,metadata.tags",
            "kind=api",
        ])
        .expect("valid");
        assert_eq!(f.any_of.len(), 2);
        assert_eq!(
            f.any_of[0],
            vec![
                Condition {
                    key: "kind".into(),
                    values: Some(vec!["component".into()])
                },
                Condition {
                    key: "spec.type".into(),
                    values: Some(vec!["service".into(), "website".into()])
                },
                Condition {
                    key: "metadata.tags".into(),
                    values: None
                },
            ]
        );
    }

    #[test]
    fn empty_key_is_an_input_error() {
        assert!(matches!(
            EntityFilter::parse_params(&["=x"]),
            Err(CatalogError::Input(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_and_keys_are_lowercase(s in ".{0,64}") {
            if let Ok(f) = EntityFilter::parse_params(&[s]) {
                for c in f.any_of.iter().flatten() {
                    prop_assert!(!c.key.is_empty());
                    prop_assert_eq!(c.key.clone(), c.key.to_lowercase());
                }
            }
        }

        #[test]
        fn statement_roundtrip(key in "[a-zA-Z][a-zA-Z0-9.]{0,20}", value in "[a-zA-Z0-9-]{0,12}") {
            let f = EntityFilter::parse_params(&[format!("{key}={value}")]).expect("valid");
            prop_assert_eq!(f.any_of, vec![vec![Condition { key: key.to_lowercase(), values: Some(vec![value.to_lowercase()]) }]]);
        }
    }
}
