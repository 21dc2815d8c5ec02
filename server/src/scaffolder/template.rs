//! Template entities (`scaffolder.backstage.io/v1beta3`): checked when the
//! catalog ingests them, and parsed into the task spec a run executes.
//!
//! On top of Backstage's JSON Schema a template must have unique step ids,
//! only known actions and filters, and `${{ }}` expressions that parse; a
//! template that fails any of these is refused with every problem named.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::actions::BUILTIN_IDS;
use super::expr::{Engine, Limits};

/// Backstage's schema for the kind, with the envelope's `$ref` removed: the
/// catalog checks the envelope itself.
fn schema() -> Option<&'static jsonschema::Validator> {
    static SCHEMA: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut s: Value =
                serde_json::from_str(include_str!("schema/Template.v1beta3.schema.json")).ok()?;
            if let Some(all) = s.get_mut("allOf").and_then(Value::as_array_mut) {
                all.retain(|part| part.get("$ref").is_none());
            }
            if let Some(o) = s.as_object_mut() {
                o.remove("$id");
            }
            jsonschema::validator_for(&s).ok()
        })
        .as_ref()
}

/// Every problem with a Template entity, as (path, message) pairs.
pub fn problems(entity: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match schema() {
        Some(v) => {
            for e in v.iter_errors(entity) {
                let at = e.instance_path().to_string();
                let path = if at.is_empty() {
                    "<root>".to_string()
                } else {
                    at.trim_start_matches('/').replace('/', ".")
                };
                out.push((path, e.to_string()));
            }
        }
        None => out.push((
            "<root>".into(),
            "the template schema could not be loaded".into(),
        )),
    }
    let Some(spec) = entity.get("spec").and_then(Value::as_object) else {
        return out;
    };
    let steps = spec
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, step) in steps.iter().enumerate() {
        let id = step_id(step, i);
        if !seen.insert(id.clone()) {
            out.push((
                format!("spec.steps[{i}].id"),
                format!("step id \"{id}\" is used by more than one step"),
            ));
        }
        if let Some(action) = step.get("action").and_then(Value::as_str) {
            if !BUILTIN_IDS.contains(&action) {
                out.push((
                    format!("spec.steps[{i}].action"),
                    format!("unknown action \"{action}\""),
                ));
            }
        }
        for key in ["input", "if", "each"] {
            if let Some(v) = step.get(key) {
                for e in expression_errors(v) {
                    out.push((format!("spec.steps[{i}].{key}"), e));
                }
            }
        }
    }
    if let Some(output) = spec.get("output") {
        for e in expression_errors(output) {
            out.push(("spec.output".into(), e));
        }
    }
    out
}

fn expression_errors(v: &Value) -> Vec<String> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| Engine::new(Limits::default()));
    match engine.check_expressions(v) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Backstage's default id: `step-<n>`, counting from one.
fn step_id(step: &Value, index: usize) -> String {
    step.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("step-{}", index + 1))
}

/// One step of a task, as the task spec stores it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<Value>,
}

/// A template, parsed from its (valid) entity.
#[derive(Debug, Clone)]
pub struct Template {
    pub entity_ref: String,
    pub entity: Value,
    /// Form pages, each a JSON Schema object.
    pub pages: Vec<Value>,
    pub secrets_schema: Option<Value>,
    pub steps: Vec<Step>,
    pub output: Value,
    pub base_url: Option<String>,
}

impl Template {
    pub fn from_entity(entity: &Value) -> Result<Template, String> {
        let r = crate::catalog::model::EntityRef::of_entity(entity).map_err(|e| e.to_string())?;
        let spec = entity
            .get("spec")
            .and_then(Value::as_object)
            .ok_or("the template has no spec")?;
        let pages = match spec.get("parameters") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            Some(_) => return Err("spec.parameters must be an object or a list".into()),
        };
        let steps = spec
            .get("steps")
            .and_then(Value::as_array)
            .ok_or("spec.steps must be a list")?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let action = s
                    .get("action")
                    .and_then(Value::as_str)
                    .ok_or(format!("spec.steps[{i}].action is required"))?
                    .to_string();
                Ok(Step {
                    id: step_id(s, i),
                    name: s
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(&action)
                        .to_string(),
                    action,
                    input: s.get("input").cloned(),
                    if_: s.get("if").cloned(),
                    each: s.get("each").cloned(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Template {
            entity_ref: r.to_string(),
            entity: entity.clone(),
            pages,
            secrets_schema: spec.get("secrets").and_then(|s| s.get("schema")).cloned(),
            steps,
            output: spec.get("output").cloned().unwrap_or_else(|| json!({})),
            base_url: base_url(entity),
        })
    }

    pub fn title(&self) -> String {
        let meta = self.entity.get("metadata");
        meta.and_then(|m| m.get("title"))
            .or_else(|| meta.and_then(|m| m.get("name")))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// The values a form starts with: each property's `default`, page by
    /// page, nested objects included (a later page's default wins a clash).
    pub fn default_values(&self) -> Value {
        fn defaults(schema: &Value, into: &mut Map<String, Value>) {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (name, prop) in props {
                if let Some(d) = prop.get("default") {
                    into.insert(name.clone(), d.clone());
                } else if prop.get("properties").is_some() {
                    let mut nested = Map::new();
                    defaults(prop, &mut nested);
                    if !nested.is_empty() {
                        into.insert(name.clone(), Value::Object(nested));
                    }
                }
            }
        }
        let mut out = Map::new();
        for page in &self.pages {
            defaults(page, &mut out);
        }
        Value::Object(out)
    }

    /// `GET …/parameter-schema`: Backstage's shape.
    pub fn parameter_schema(&self) -> Value {
        let meta = self.entity.get("metadata").cloned().unwrap_or_default();
        let spec = self.entity.get("spec").cloned().unwrap_or_default();
        let mut out = Map::new();
        out.insert("title".into(), json!(self.title()));
        if let Some(d) = meta.get("description") {
            out.insert("description".into(), d.clone());
        }
        if let Some(p) = spec.get("presentation") {
            out.insert("presentation".into(), p.clone());
        }
        let steps: Vec<Value> = self
            .pages
            .iter()
            .map(|page| {
                let mut schema = page.clone();
                let title = schema
                    .as_object_mut()
                    .and_then(|o| o.remove("title"))
                    .unwrap_or_else(|| json!("Please enter the following information"));
                let description = schema.as_object_mut().and_then(|o| o.remove("description"));
                let mut step = Map::new();
                step.insert("title".into(), title);
                if let Some(d) = description {
                    step.insert("description".into(), d);
                }
                step.insert("schema".into(), schema);
                Value::Object(step)
            })
            .collect();
        out.insert("steps".into(), Value::Array(steps));
        if let Some(d) = spec.get("EXPERIMENTAL_formDecorators") {
            out.insert("EXPERIMENTAL_formDecorators".into(), d.clone());
        }
        Value::Object(out)
    }
}

/// Backstage's `getEntityBaseUrl`: the source location, else the managing location.
fn base_url(entity: &Value) -> Option<String> {
    let annotations = entity.get("metadata")?.get("annotations")?;
    let location = annotations
        .get("backstage.io/source-location")
        .or_else(|| annotations.get("backstage.io/managed-by-location"))?
        .as_str()?;
    let (kind, target) = location.split_once(':')?;
    match kind {
        "url" => Some(target.to_string()),
        "file" => Some(format!("file://{target}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(steps: Value) -> Value {
        json!({
            "apiVersion": "scaffolder.backstage.io/v1beta3",
            "kind": "Template",
            "metadata": {"name": "t", "annotations": {"backstage.io/managed-by-location": "file:/srv/t/template.yaml"}},
            "spec": {"type": "service", "parameters": {"title": "Page", "properties": {"name": {"type": "string"}}}, "steps": steps}
        })
    }

    #[test]
    fn unknown_actions_and_duplicate_ids_are_problems() {
        let t = template(json!([
            {"id": "a", "action": "debug:log"},
            {"id": "a", "action": "debug:log"},
            {"id": "b", "action": "no:such"}
        ]));
        let p = problems(&t);
        assert!(
            p.iter()
                .any(|(path, m)| path == "spec.steps[1].id" && m.contains("\"a\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|(path, m)| path == "spec.steps[2].action" && m.contains("no:such")),
            "{p:?}"
        );
    }

    #[test]
    fn schema_problems_are_reported() {
        let mut t = template(json!([{"id": "a", "action": "debug:log"}]));
        t["spec"]["steps"][0]["action"] = json!(5);
        let p = problems(&t);
        assert!(
            p.iter().any(|(path, _)| path == "spec.steps.0.action"),
            "{p:?}"
        );
        assert!(problems(&template(json!([{"id": "a", "action": "debug:log"}]))).is_empty());
    }

    #[test]
    fn parses_defaults_and_parameter_schema() {
        let t = Template::from_entity(&template(json!([{"action": "debug:log"}]))).expect("parse");
        assert_eq!(t.steps[0].id, "step-1");
        assert_eq!(t.steps[0].name, "debug:log");
        assert_eq!(t.base_url.as_deref(), Some("file:///srv/t/template.yaml"));
        let s = t.parameter_schema();
        assert_eq!(s["steps"][0]["title"], "Page");
        assert!(s["steps"][0]["schema"].get("title").is_none());
        assert_eq!(
            s["steps"][0]["schema"]["properties"]["name"]["type"],
            "string"
        );
    }

    #[test]
    fn default_values_come_from_every_page() {
        let mut e = template(json!([{"action": "debug:log"}]));
        e["spec"]["parameters"] = json!([
            {"properties": {"name": {"type": "string"}, "port": {"type": "number", "default": 8080}}},
            {"properties": {"db": {"type": "object", "properties": {"engine": {"type": "string", "default": "pg"}, "size": {"type": "number"}}},
                            "tags": {"type": "array", "default": ["a"]}}}
        ]);
        let t = Template::from_entity(&e).expect("parse");
        assert_eq!(
            t.default_values(),
            json!({"port": 8080, "db": {"engine": "pg"}, "tags": ["a"]})
        );
    }
}
