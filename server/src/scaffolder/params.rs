//! A task request's values and secrets, checked against the template before
//! any task exists: every form page's JSON Schema (with the form-only `ui:*`
//! keys ignored), the RepoUrlPicker's allow-lists, and `spec.secrets.schema`.

use serde_json::{json, Map, Value};

use super::expr::{repo_url_parts, RepoUrlError};
use super::template::Template;

/// Largest `values` (or `secrets`) a task may be created with, as JSON.
pub const MAX_VALUES_BYTES: usize = 256 * 1024;

/// One problem with one field, in Backstage's (jsonschema's) shape.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FieldError {
    pub path: Vec<String>,
    pub property: String,
    pub message: String,
    pub name: String,
    pub stack: String,
}

impl FieldError {
    fn new(path: Vec<String>, name: &str, message: String) -> FieldError {
        let property = std::iter::once("instance".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(".");
        FieldError {
            stack: format!("{property} {message}"),
            path,
            property,
            message,
            name: name.to_string(),
        }
    }
}

/// Removes the form-only keys (`ui:*`, `backstage:*`) from a schema.
pub fn strip_form_keys(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with("ui:") && !k.starts_with("backstage:"))
                .map(|(k, v)| (k.clone(), strip_form_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_form_keys).collect()),
        other => other.clone(),
    }
}

fn schema_errors(schema: &Value, instance: &Value, out: &mut Vec<FieldError>) {
    let stripped = strip_form_keys(schema);
    let validator = match jsonschema::draft7::new(&stripped) {
        Ok(v) => v,
        Err(e) => {
            out.push(FieldError::new(
                vec![],
                "schema",
                format!("the template's form schema is invalid: {e}"),
            ));
            return;
        }
    };
    for e in validator.iter_errors(instance) {
        let path: Vec<String> = e
            .instance_path()
            .to_string()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let name = format!("{:?}", e.kind())
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("invalid")
            .to_lowercase();
        out.push(FieldError::new(path, &name, e.to_string()));
    }
}

/// Checks values against every page, and RepoUrlPicker fields against their allow-lists.
pub fn check_values(template: &Template, values: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !values.is_object() {
        out.push(FieldError::new(
            vec![],
            "type",
            "values must be an object".into(),
        ));
        return out;
    }
    for page in &template.pages {
        schema_errors(page, values, &mut out);
        let mut pickers = Vec::new();
        repo_url_pickers(page, &mut pickers);
        for (name, options) in pickers {
            if let Some(Value::String(v)) = values.get(&name) {
                if let Err(m) = check_repo_url(v, &options) {
                    out.push(FieldError::new(vec![name.clone()], "repoUrl", m));
                }
            }
        }
    }
    out
}

/// Checks secrets against `spec.secrets.schema`; secrets are strings.
pub fn check_secrets(template: &Template, secrets: &Map<String, Value>) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (k, v) in secrets {
        if !v.is_string() {
            out.push(FieldError::new(
                vec![k.clone()],
                "type",
                "a secret must be a string".into(),
            ));
        }
    }
    if let Some(schema) = &template.secrets_schema {
        schema_errors(schema, &Value::Object(secrets.clone()), &mut out);
    }
    out
}

/// Every `ui:field: RepoUrlPicker` property, with its `ui:options`.
fn repo_url_pickers(schema: &Value, out: &mut Vec<(String, Value)>) {
    match schema {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (name, prop) in props {
                    if prop.get("ui:field").and_then(Value::as_str) == Some("RepoUrlPicker") {
                        out.push((
                            name.clone(),
                            prop.get("ui:options").cloned().unwrap_or_else(|| json!({})),
                        ));
                    }
                }
            }
            for (k, v) in m {
                if k != "properties" {
                    repo_url_pickers(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| repo_url_pickers(v, out)),
        _ => {}
    }
}

/// `github.com?owner=o&repo=r`, parsed as Backstage's `parseRepoUrl` does.
pub fn parse_repo_url(raw: &str) -> Result<Map<String, Value>, String> {
    let parts = repo_url_parts(raw).map_err(|e| match e {
        RepoUrlError::Invalid(_) => {
            format!("\"{raw}\" is not a repository URL of the form host?owner=…&repo=…")
        }
        RepoUrlError::NoHost => format!("\"{raw}\" has no host"),
        RepoUrlError::MissingRepo => format!("\"{raw}\" is missing the repo"),
    })?;
    Ok(parts
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect())
}

fn check_repo_url(raw: &str, options: &Value) -> Result<(), String> {
    let parsed = parse_repo_url(raw)?;
    let listed = |key: &str| -> Option<Vec<String>> {
        options.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    };
    let field = |key: &str| parsed.get(key).and_then(Value::as_str).unwrap_or_default();
    for (option, key, what) in [
        ("allowedHosts", "host", "host"),
        ("allowedOwners", "owner", "owner"),
        ("allowedOrganizations", "organization", "organization"),
        ("allowedRepos", "repo", "repository"),
    ] {
        if let Some(allowed) = listed(option) {
            let v = field(key);
            if !allowed.iter().any(|a| a == v) {
                return Err(format!(
                    "the {what} \"{v}\" is not allowed; allowed: {}",
                    allowed.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(parameters: Value) -> Template {
        Template::from_entity(&json!({
            "apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template",
            "metadata": {"name": "t"},
            "spec": {"type": "service", "parameters": parameters, "steps": [{"action": "debug:log"}],
                     "secrets": {"schema": {"type": "object", "required": ["token"]}}}
        }))
        .expect("template")
    }

    #[test]
    fn pages_are_checked_with_ui_keys_ignored() {
        let t = template(json!([
            {"required": ["name"], "properties": {"name": {"type": "string", "ui:autofocus": true, "maxLength": 5}}},
            {"properties": {"count": {"type": "number"}}}
        ]));
        assert!(check_values(&t, &json!({"name": "abc", "count": 2})).is_empty());
        let errors = check_values(&t, &json!({"name": "toolongname", "count": "x"}));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].path, vec!["name"]);
        assert_eq!(errors[1].property, "instance.count");
        let missing = check_values(&t, &json!({}));
        assert_eq!(missing[0].name, "required", "{missing:?}");
    }

    #[test]
    fn repo_url_picker_allow_lists_are_enforced() {
        let t = template(
            json!({"properties": {"repoUrl": {"type": "string", "ui:field": "RepoUrlPicker",
            "ui:options": {"allowedHosts": ["github.com"], "allowedOwners": ["acme"]}}}}),
        );
        assert!(check_values(&t, &json!({"repoUrl": "github.com?owner=acme&repo=x"})).is_empty());
        let e = check_values(&t, &json!({"repoUrl": "github.com?owner=evil&repo=x"}));
        assert!(e[0].message.contains("owner \"evil\""), "{e:?}");
        let e = check_values(&t, &json!({"repoUrl": "gitlab.com?owner=acme&repo=x"}));
        assert!(e[0].message.contains("host"), "{e:?}");
    }

    #[test]
    fn secrets_follow_their_schema() {
        let t = template(json!({}));
        assert!(!check_secrets(&t, &Map::new()).is_empty());
        let mut s = Map::new();
        s.insert("token".into(), json!("x"));
        assert!(check_secrets(&t, &s).is_empty());
        s.insert("n".into(), json!(1));
        assert_eq!(check_secrets(&t, &s)[0].path, vec!["n"]);
    }
}
