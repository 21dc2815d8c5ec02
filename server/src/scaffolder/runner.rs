//! Runs a task's steps as Backstage's workflow runner does: `if`, `each`,
//! rendered and schema-checked inputs, outputs under `steps.<id>.output`, and
//! the template's `output` rendered at the end.
//!
//! Each finished step is checkpointed with its output before the next one
//! starts, so a run that resumes after a crash restores the outputs and goes
//! on from the first unfinished step, never running a finished one again.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::actions::{
    example_output, ActionContext, ActionError, Registry, Services, TemplateInfo,
};
use super::expr::{Context, Engine, ExprError};
use super::redact::Redactor;
use super::template::Step;
use super::workspace::Confined;
use crate::catalog::now_ms;

/// What a task runs: Backstage's v1beta3 task spec.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    pub api_version: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub parameters: Value,
    #[serde(default)]
    pub user: Value,
    pub template_info: TemplateInfo,
}

/// A step's checkpoint.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    pub status: String,
    #[serde(default)]
    pub output: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
}

/// Everything checkpointed about a task.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskState {
    #[serde(default)]
    pub steps: BTreeMap<String, StepState>,
}

impl TaskState {
    fn done(&self, id: &str) -> bool {
        self.steps
            .get(id)
            .is_some_and(|s| s.status == "completed" || s.status == "skipped")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Step(String),
    #[error("the task was cancelled")]
    Cancelled,
    /// Another worker holds the task now: stop without touching it.
    #[error("this worker no longer holds the task")]
    Lost,
    #[error("{0}")]
    Storage(String),
}

/// Where a run reports to: the database for tasks, memory for dry-runs.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Records a log event's body (`message`, and `stepId` and `status` when
    /// they apply), already redacted.
    async fn log(&self, body: Value);
    /// Saves the checkpoint; false when the task was taken from this worker.
    async fn checkpoint(&self, state: &TaskState) -> Result<bool, String>;
}

pub struct Runner<'a> {
    pub services: &'a Services,
    pub registry: &'a Registry,
    pub engine: &'a Engine,
    pub sink: &'a dyn Sink,
    pub task_id: &'a str,
    pub spec: &'a TaskSpec,
    pub secrets: &'a Map<String, Value>,
    pub workspace: &'a Confined,
    pub dry_run: bool,
    pub cancel: tokio::sync::watch::Receiver<bool>,
    pub redactor: &'a parking_lot::Mutex<Redactor>,
}

/// Backstage's `isTruthy`: arrays by length, everything else as JavaScript would.
fn truthy(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => true,
    }
}

impl Runner<'_> {
    async fn log(&self, message: impl Into<String>, step: Option<&str>, status: Option<&str>) {
        let mut body = json!({ "message": self.redactor.lock().text(&message.into()) });
        if let Some(s) = step {
            body["stepId"] = json!(s);
        }
        if let Some(s) = status {
            body["status"] = json!(s);
        }
        self.sink.log(body).await;
    }

    fn render(&self, v: &Value, ctx: &Context) -> Result<Option<Value>, ExprError> {
        let r = self.engine.render_tree(v, ctx)?;
        if !r.secret_fragments.is_empty() {
            let mut red = self.redactor.lock();
            for f in &r.secret_fragments {
                red.add_fragment(f);
            }
        }
        Ok(r.value)
    }

    fn base_context(&self, steps: &Map<String, Value>) -> Value {
        json!({
            "parameters": self.spec.parameters,
            "steps": steps,
            "user": self.spec.user,
            "context": {"task": {"id": self.task_id}},
        })
    }

    fn checked(&self) -> Result<(), RunError> {
        if *self.cancel.borrow() {
            Err(RunError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs the remaining steps and renders the output.
    pub async fn run(&mut self, mut state: TaskState) -> Result<Value, RunError> {
        {
            let mut red = self.redactor.lock();
            for v in self.secrets.values() {
                if let Some(s) = v.as_str() {
                    red.add_secret(s);
                }
            }
        }
        let mut steps = Map::new();
        let resumed = self.spec.steps.iter().filter(|s| state.done(&s.id)).count();
        for s in &self.spec.steps {
            if let Some(st) = state.steps.get(&s.id).filter(|_| state.done(&s.id)) {
                steps.insert(s.id.clone(), json!({"output": st.output}));
            }
        }
        if resumed == 0 {
            self.log(
                format!("Starting up task with {} steps", self.spec.steps.len()),
                None,
                None,
            )
            .await;
        }
        for step in &self.spec.steps {
            if state.done(&step.id) {
                continue;
            }
            self.checked()?;
            let started = now_ms();
            self.log(
                format!("Beginning step {}", step.name),
                Some(&step.id),
                Some("processing"),
            )
            .await;
            match self.step(step, &mut steps).await {
                Ok(status) => {
                    let output = steps
                        .get(&step.id)
                        .and_then(|s| s.get("output"))
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    state.steps.insert(
                        step.id.clone(),
                        StepState {
                            status: status.to_string(),
                            output,
                            started_at: Some(started),
                            ended_at: Some(now_ms()),
                        },
                    );
                    if !self
                        .sink
                        .checkpoint(&state)
                        .await
                        .map_err(RunError::Storage)?
                    {
                        return Err(RunError::Lost);
                    }
                    if status == "completed" {
                        self.log(
                            format!("Finished step {}", step.name),
                            Some(&step.id),
                            Some("completed"),
                        )
                        .await;
                    }
                }
                Err(RunError::Cancelled) => {
                    self.log(
                        format!("Step {} has been cancelled.", step.id),
                        Some(&step.id),
                        Some("cancelled"),
                    )
                    .await;
                    return Err(RunError::Cancelled);
                }
                Err(RunError::Step(message)) => {
                    let message = self.redactor.lock().text(&message);
                    state.steps.insert(
                        step.id.clone(),
                        StepState {
                            status: "failed".into(),
                            output: Map::new(),
                            started_at: Some(started),
                            ended_at: Some(now_ms()),
                        },
                    );
                    let _ = self.sink.checkpoint(&state).await;
                    self.log(message.clone(), Some(&step.id), Some("failed"))
                        .await;
                    return Err(RunError::Step(message));
                }
                Err(other) => return Err(other),
            }
        }
        let ctx = Context::new(self.base_context(&steps));
        let output = self
            .render(&self.spec.output, &ctx)
            .map_err(|e| RunError::Step(format!("Rendering the template output failed: {e}")))?
            .unwrap_or_else(|| json!({}));
        Ok(self.redactor.lock().value(&output))
    }

    /// One step; returns "completed" or "skipped".
    async fn step(
        &self,
        step: &Step,
        steps: &mut Map<String, Value>,
    ) -> Result<&'static str, RunError> {
        let fail = |m: String| RunError::Step(m);
        let expr =
            |e: ExprError, what: &str| RunError::Step(format!("Step {} ({what}): {e}", step.id));
        let secrets = if self.dry_run {
            Value::Object(Map::new())
        } else {
            Value::Object(self.secrets.clone())
        };
        let with_secrets = Context::new(self.base_context(steps)).with_secrets(secrets.clone());
        if let Some(cond) = &step.if_ {
            let skip = match cond {
                Value::Bool(false) => true,
                Value::String(_) if step.each.is_none() => !truthy(
                    &self
                        .render(cond, &with_secrets)
                        .map_err(|e| expr(e, "if"))?,
                ),
                _ => false,
            };
            if skip {
                self.log(
                    format!(
                        "Skipping step {} because its if condition was false",
                        step.id
                    ),
                    Some(&step.id),
                    Some("skipped"),
                )
                .await;
                steps.insert(step.id.clone(), json!({"output": {}}));
                return Ok("skipped");
            }
        }
        let action = self.registry.get(&step.action).ok_or_else(|| {
            fail(format!(
                "Template action with ID '{}' is not registered.",
                step.action
            ))
        })?;
        if self.dry_run {
            let masked: Map<String, Value> = self
                .secrets
                .keys()
                .map(|k| (k.clone(), json!("***")))
                .collect();
            let debug_ctx =
                Context::new(self.base_context(steps)).with_secrets(Value::Object(masked));
            let shown = match &step.input {
                Some(i) => self.render(i, &debug_ctx).map_err(|e| expr(e, "input"))?,
                None => None,
            }
            .unwrap_or_else(|| json!({}));
            self.log(
                format!(
                    "Running {} in dry-run mode with inputs (secrets redacted): {}",
                    action.id(),
                    serde_json::to_string_pretty(&shown).unwrap_or_default()
                ),
                Some(&step.id),
                None,
            )
            .await;
            if !action.supports_dry_run() {
                self.log(
                    format!("Skipping because {} does not support dry-run", action.id()),
                    Some(&step.id),
                    Some("skipped"),
                )
                .await;
                steps.insert(
                    step.id.clone(),
                    json!({"output": example_output(&action.output_schema())}),
                );
                return Ok("completed");
            }
        }
        // `each`: one run of the action per element (arrays) or entry (objects).
        let iterations: Vec<Option<Value>> = match &step.each {
            None => vec![None],
            Some(each) => {
                let resolved = self
                    .render(each, &with_secrets)
                    .map_err(|e| expr(e, "each"))?;
                match resolved {
                    Some(Value::Array(items)) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Some(json!({"key": i.to_string(), "value": v})))
                        .collect(),
                    Some(Value::Object(m)) => m
                        .into_iter()
                        .map(|(k, v)| Some(json!({"key": k, "value": v})))
                        .collect(),
                    _ => {
                        return Err(fail(format!(
                            "Invalid value on action {}.each parameter, \"{}\" cannot be resolved to a value",
                            action.id(),
                            each
                        )))
                    }
                }
            }
        };
        let mut runs = Vec::new();
        for each in iterations {
            let mut root = self.base_context(steps);
            if let Some(e) = &each {
                root["each"] = e.clone();
            }
            let ctx = Context::new(root).with_secrets(secrets.clone());
            let should_run = match (&each, &step.if_) {
                (Some(_), Some(cond)) => {
                    truthy(&self.render(cond, &ctx).map_err(|e| expr(e, "if"))?)
                }
                _ => true,
            };
            let input = match &step.input {
                Some(i) => self.render(i, &ctx).map_err(|e| expr(e, "input"))?,
                None => None,
            }
            .unwrap_or_else(|| json!({}));
            if should_run {
                let id = match &each {
                    Some(e) => format!("{}[{}]", action.id(), e["key"].as_str().unwrap_or("")),
                    None => action.id().to_string(),
                };
                self.registry
                    .check_input(action.id(), &input)
                    .map_err(|errors| {
                        fail(format!("Invalid input passed to action {id}, {errors}"))
                    })?;
            }
            runs.push((each, should_run, input));
        }
        let mut output = Map::new();
        for (each, should_run, input) in runs {
            if let Some(e) = &each {
                let shown = json!({"key": e["key"], "value": e["value"].to_string()});
                let verb = if should_run { "Running" } else { "Skipping" };
                self.log(format!("{verb} step each: {shown}"), Some(&step.id), None)
                    .await;
                if !should_run {
                    continue;
                }
            }
            let out = self.run_action(step, action.as_ref(), input).await?;
            for (k, v) in out {
                if each.is_some() {
                    let entry = output.entry(k).or_insert_with(|| json!([]));
                    if let Value::Array(a) = entry {
                        a.push(v);
                    }
                } else {
                    output.insert(k, v);
                }
            }
        }
        let output = self.redactor.lock().value(&Value::Object(output));
        steps.insert(step.id.clone(), json!({ "output": output }));
        self.checked()?;
        Ok("completed")
    }

    async fn run_action(
        &self,
        step: &Step,
        action: &dyn super::actions::Action,
        input: Value,
    ) -> Result<Map<String, Value>, RunError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let cancel = self.cancel.clone();
        let mut actx = ActionContext::new(
            self.task_id,
            &step.id,
            input,
            self.workspace,
            &self.spec.template_info,
            &self.spec.user,
            self.dry_run,
            self.services,
            &cancel,
            &tx,
        );
        let mut watch = self.cancel.clone();
        let result = {
            let fut = action.run(&mut actx);
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    Some(line) = rx.recv() => self.log(line, Some(&step.id), None).await,
                    changed = watch.changed() => {
                        if changed.is_err() || *watch.borrow() {
                            break Err(ActionError::Cancelled);
                        }
                    }
                }
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.log(line, Some(&step.id), None).await;
        }
        match result {
            Ok(()) => Ok(actx.into_output()),
            Err(ActionError::Cancelled) => Err(RunError::Cancelled),
            Err(e) => Err(RunError::Step(format!("Step {} failed: {e}", step.id))),
        }
    }
}
