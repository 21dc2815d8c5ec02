//! Template actions: the registry, and what an action gets to work with.
//!
//! Each action keeps Backstage's id, inputs, defaults and outputs. Inputs are
//! validated against the action's JSON Schema before it runs; extra inputs are
//! accepted, since real templates pass them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::expr::Engine;
use super::workspace::{Confined, PathError};
use crate::catalog::reader::Reader;
use crate::catalog::service::CatalogService;

mod catalog;
mod debug;
mod fetch;
mod fs;
mod publish;

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Path(#[from] PathError),
    #[error("{0} is not configured on this server")]
    NotConfigured(String),
    #[error("{0}")]
    Failed(String),
    #[error("the task was cancelled")]
    Cancelled,
}

/// What the template knows about itself, as Backstage's `templateInfo`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    pub entity_ref: String,
    /// `file:///dir/template.yaml` or `https://…/template.yaml`: relative
    /// `url` inputs resolve against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// What every action may use; built once per server.
pub struct Services {
    pub engine: Arc<Engine>,
    pub reader: Reader,
    pub catalog: Arc<CatalogService>,
    pub publish_roots: Vec<PathBuf>,
}

/// A line for the task's log, sent while the action runs.
pub type LogSink = tokio::sync::mpsc::UnboundedSender<String>;

/// One run of one action.
pub struct ActionContext<'a> {
    pub task_id: &'a str,
    pub step_id: &'a str,
    pub input: Value,
    pub workspace: &'a Confined,
    pub template: &'a TemplateInfo,
    pub user: &'a Value,
    pub dry_run: bool,
    pub services: &'a Services,
    pub cancel: &'a tokio::sync::watch::Receiver<bool>,
    log: &'a LogSink,
    output: Map<String, Value>,
}

impl<'a> ActionContext<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        task_id: &'a str,
        step_id: &'a str,
        input: Value,
        workspace: &'a Confined,
        template: &'a TemplateInfo,
        user: &'a Value,
        dry_run: bool,
        services: &'a Services,
        cancel: &'a tokio::sync::watch::Receiver<bool>,
        log: &'a LogSink,
    ) -> ActionContext<'a> {
        ActionContext {
            task_id,
            step_id,
            input,
            workspace,
            template,
            user,
            dry_run,
            services,
            cancel,
            log,
            output: Map::new(),
        }
    }

    pub fn log(&self, message: impl Into<String>) {
        let _ = self.log.send(message.into());
    }

    pub fn output(&mut self, name: &str, value: Value) {
        self.output.insert(name.to_string(), value);
    }

    pub fn into_output(self) -> Map<String, Value> {
        self.output
    }

    /// Fails if the task was cancelled: actions call it between units of work.
    pub fn check_cancelled(&self) -> Result<(), ActionError> {
        if *self.cancel.borrow() {
            Err(ActionError::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn str_input(&self, key: &str) -> Option<&str> {
        self.input.get(key).and_then(Value::as_str)
    }

    pub fn bool_input(&self, key: &str) -> bool {
        self.input
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[async_trait::async_trait]
pub trait Action: Send + Sync {
    fn id(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn input_schema(&self) -> Value;
    fn output_schema(&self) -> Value {
        json!({"type": "object", "properties": {}})
    }
    fn supports_dry_run(&self) -> bool {
        false
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError>;
}

/// The actions this server can run, by id.
pub struct Registry {
    actions: BTreeMap<&'static str, Arc<dyn Action>>,
    /// Compiled input schemas, made on the first task rather than at start.
    validators: std::sync::OnceLock<BTreeMap<&'static str, jsonschema::Validator>>,
}

/// Every built-in action id, for template validation (which runs without a registry).
pub const BUILTIN_IDS: &[&str] = &[
    "catalog:register",
    "catalog:write",
    "debug:log",
    "fetch:plain",
    "fetch:plain:file",
    "fetch:template",
    "fs:delete",
    "fs:rename",
    "publish:bitbucket",
    "publish:bitbucketCloud",
    "publish:bitbucketServer",
    "publish:file",
    "publish:gerrit",
    "publish:github",
    "publish:github:pull-request",
    "publish:gitlab",
    "publish:gitlab:merge-request",
    "github:actions:dispatch",
    "github:repo:create",
    "github:repo:push",
    "github:webhook",
];

impl Registry {
    pub fn builtin() -> Registry {
        let mut actions: Vec<Arc<dyn Action>> = vec![
            Arc::new(debug::Log),
            Arc::new(fetch::Template),
            Arc::new(fetch::Plain),
            Arc::new(fetch::PlainFile),
            Arc::new(fs::Rename),
            Arc::new(fs::Delete),
            Arc::new(catalog::Register),
            Arc::new(catalog::Write),
            Arc::new(publish::File),
        ];
        for id in publish::NOT_CONFIGURED {
            actions.push(Arc::new(publish::NotConfigured(id)));
        }
        Registry {
            actions: actions.into_iter().map(|a| (a.id(), a)).collect(),
            validators: std::sync::OnceLock::new(),
        }
    }

    fn validators(&self) -> &BTreeMap<&'static str, jsonschema::Validator> {
        self.validators.get_or_init(|| {
            self.actions
                .iter()
                .filter_map(|(id, a)| {
                    Some((*id, jsonschema::validator_for(&a.input_schema()).ok()?))
                })
                .collect()
        })
    }

    pub fn get(&self, id: &str) -> Option<Arc<dyn Action>> {
        self.actions.get(id).cloned()
    }

    /// Validates rendered input against the action's schema.
    pub fn check_input(&self, id: &str, input: &Value) -> Result<(), String> {
        let Some(v) = self.validators().get(id) else {
            return Ok(());
        };
        let errors: Vec<String> = v
            .iter_errors(input)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join(", "))
        }
    }

    /// `GET /v2/actions`: Backstage's shape.
    pub fn list(&self) -> Value {
        Value::Array(
            self.actions
                .values()
                .map(|a| {
                    json!({
                        "id": a.id(),
                        "description": a.description(),
                        "schema": {"input": a.input_schema(), "output": a.output_schema()},
                    })
                })
                .collect(),
        )
    }
}

/// Backstage's `generateExampleOutput`: what a skipped action "returns" in a dry-run.
pub fn example_output(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => Value::Object(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), example_output(v)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("array") => match schema.get("items") {
            Some(Value::Array(items)) => items.first().map(example_output).into_iter().collect(),
            Some(item @ Value::Object(_)) => Value::Array(vec![example_output(item)]),
            _ => json!([]),
        },
        Some("string") => json!("<example>"),
        Some("number") | Some("integer") => json!(0),
        Some("boolean") => json!(false),
        _ => json!("<unknown>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_id_is_registered_and_schemas_compile() {
        let r = Registry::builtin();
        for id in BUILTIN_IDS {
            assert!(r.get(id).is_some(), "{id} is listed but not registered");
            assert!(
                r.validators().contains_key(id),
                "{id}'s input schema compiles"
            );
        }
        assert_eq!(r.actions.len(), BUILTIN_IDS.len());
    }

    #[test]
    fn input_errors_name_the_field() {
        let r = Registry::builtin();
        let err = r
            .check_input("fetch:template", &json!({"targetPath": 3}))
            .expect_err("url is required and targetPath a string");
        assert!(err.contains("url"), "{err}");
        assert!(err.contains("/targetPath"), "{err}");
        r.check_input("fetch:template", &json!({"url": "./s", "extra": 1}))
            .expect("extra inputs are accepted");
    }

    #[test]
    fn example_outputs_follow_backstage() {
        let s = json!({"type": "object", "properties": {
            "remoteUrl": {"type": "string"}, "n": {"type": "number"},
            "ex": {"type": "string", "examples": ["x"]}, "list": {"type": "array", "items": {"type": "boolean"}}
        }});
        assert_eq!(
            example_output(&s),
            json!({"remoteUrl": "<example>", "n": 0, "ex": "x", "list": [false]})
        );
    }
}
