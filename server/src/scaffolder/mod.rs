//! The scaffolder: runs Backstage software templates as durable tasks.
//!
//! A task request is checked against its template (form schemas, repo
//! allow-lists, secrets schema) before a task row exists. Workers claim open
//! tasks from the database, run their steps (`runner`), checkpoint each
//! finished step together with the workspace, and append every log line,
//! redacted, to the task's event log, which the API streams.

pub mod actions;
pub mod api;
pub mod curation;
pub mod expr;
pub mod params;
pub mod redact;
pub mod runner;
pub mod store;
pub mod template;
mod worker;
pub mod workspace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::auth::crypto::SecretKeys;
use crate::auth::Principal;
use crate::catalog::model::EntityRef;
use crate::catalog::now_ms;
use crate::catalog::service::CatalogService;
use crate::config::Config;
use crate::db::Db;
use actions::{Registry, Services, TemplateInfo};
use expr::{Engine, Limits};
use params::FieldError;
use runner::{TaskSpec, TaskState};
use template::Template;
use workspace::{Confined, TreeFile};

/// Largest packed workspace kept with a checkpoint.
const MAX_WORKSPACE_BYTES: usize = 64 * 1024 * 1024;
pub const NOTIFY_CHANNEL: &str = "stagedoor_scaffolder";

#[derive(Debug, thiserror::Error)]
pub enum ScaffolderError {
    #[error("{0}")]
    Input(String),
    #[error("{message}")]
    Invalid {
        message: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<workspace::PathError> for ScaffolderError {
    fn from(e: workspace::PathError) -> Self {
        ScaffolderError::Internal(anyhow::Error::from(e))
    }
}

impl From<ScaffolderError> for crate::error::ApiError {
    fn from(e: ScaffolderError) -> Self {
        use crate::error::{ApiError, ErrorKind};
        match e {
            ScaffolderError::Input(m) => ApiError::input(m),
            ScaffolderError::Invalid { message, errors } => ApiError::input(message)
                .with_extra("errors", serde_json::to_value(errors).unwrap_or_default()),
            ScaffolderError::NotFound(m) => ApiError::not_found(m),
            ScaffolderError::NotAllowed(m) => ApiError::not_allowed(m),
            ScaffolderError::Conflict(m) => ApiError::conflict(m),
            ScaffolderError::TooLarge(m) => ApiError::new(ErrorKind::PayloadTooLarge, m),
            ScaffolderError::Database(e) => ApiError::internal(e),
            ScaffolderError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// An admin's curation of one template. No row means published, for everyone.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Curation {
    pub published: bool,
    pub allowed_groups: Vec<String>,
}

impl Default for Curation {
    fn default() -> Self {
        Curation {
            published: true,
            allowed_groups: vec![],
        }
    }
}

pub struct ScaffolderService {
    pub db: Db,
    pub catalog: Arc<CatalogService>,
    pub registry: Registry,
    pub engine: Arc<Engine>,
    pub services: Services,
    keys: SecretKeys,
    config: crate::config::ScaffolderConfig,
    worker_id: String,
    /// Wakes this replica's workers and event listeners.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) events: tokio::sync::broadcast::Sender<String>,
    /// Set at shutdown: running tasks stop without ending, to be resumed.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Cancel switches of the tasks running here.
    pub(crate) running: parking_lot::Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A task request, as `POST /v2/tasks` takes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRequest {
    pub template_ref: String,
    #[serde(default)]
    pub values: Value,
    #[serde(default)]
    pub secrets: Option<Map<String, Value>>,
}

/// `POST /v2/dry-run`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunRequest {
    pub template: Value,
    #[serde(default)]
    pub values: Value,
    #[serde(default)]
    pub secrets: Option<Map<String, Value>>,
    #[serde(default)]
    pub directory_contents: Vec<DryRunFile>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunFile {
    pub path: String,
    #[serde(default)]
    pub executable: bool,
    pub base64_content: String,
}

impl ScaffolderService {
    pub fn new(db: Db, catalog: Arc<CatalogService>, config: &Config) -> anyhow::Result<Self> {
        let engine = Arc::new(Engine::new(Limits::default()));
        let services = Services {
            engine: engine.clone(),
            reader: catalog.reader().clone(),
            catalog: catalog.clone(),
            publish_roots: config.scaffolder.publish_roots.clone(),
        };
        Ok(ScaffolderService {
            db,
            catalog,
            registry: Registry::builtin(),
            engine,
            services,
            keys: SecretKeys::new(config.auth.session_secret.as_ref())?,
            config: config.scaffolder.clone(),
            worker_id: uuid::Uuid::new_v4().to_string(),
            wake: tokio::sync::Notify::new(),
            events: tokio::sync::broadcast::channel(1024).0,
            running: parking_lot::Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A template from the catalog.
    pub fn template(&self, entity_ref: &str) -> Result<Template, ScaffolderError> {
        let r = EntityRef::parse(entity_ref, Some("template"), "default")
            .map_err(|e| ScaffolderError::Input(e.to_string()))?;
        if !r.kind.eq_ignore_ascii_case("template") {
            return Err(ScaffolderError::Input(format!(
                "{entity_ref} is not a Template"
            )));
        }
        let bytes = self
            .catalog
            .by_ref(&r)
            .ok_or_else(|| ScaffolderError::NotFound(format!("Template {r} not found")))?;
        let entity: Value =
            serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("stored template: {e}"))?;
        Template::from_entity(&entity).map_err(ScaffolderError::Input)
    }

    pub async fn curation(&self, entity_ref: &str) -> Result<Curation, ScaffolderError> {
        Ok(
            match store::template_setting(&self.db.conn, entity_ref).await? {
                None => Curation::default(),
                Some(m) => Curation {
                    published: m.published,
                    allowed_groups: serde_json::from_str(&m.allowed_groups).unwrap_or_default(),
                },
            },
        )
    }

    pub async fn curations(&self) -> Result<HashMap<String, Curation>, ScaffolderError> {
        Ok(store::template_settings(&self.db.conn)
            .await?
            .into_iter()
            .map(|m| {
                (
                    m.entity_ref,
                    Curation {
                        published: m.published,
                        allowed_groups: serde_json::from_str(&m.allowed_groups).unwrap_or_default(),
                    },
                )
            })
            .collect())
    }

    pub async fn set_curation(
        &self,
        who: &Principal,
        entity_ref: &str,
        curation: Curation,
    ) -> Result<(), ScaffolderError> {
        if !who.is_admin() {
            return Err(ScaffolderError::NotAllowed(
                "Only admins curate templates".into(),
            ));
        }
        let template = self.template(entity_ref)?;
        let stored = self.curation(&template.entity_ref).await?.allowed_groups;
        let groups = self.group_refs(&curation.allowed_groups, &stored)?;
        store::put_template_setting(
            &self.db.conn,
            store::templates::Model {
                entity_ref: template.entity_ref,
                published: curation.published,
                allowed_groups: serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()),
                updated_at: now_ms(),
                updated_by: who.user().map(|u| u.identity.user_ref.clone()),
            },
        )
        .await?;
        Ok(())
    }

    /// Group refs as written (`team-a`, `group:default/team-a`), in the full
    /// form that ownership refs take. A group newly named must be in the
    /// catalog, since a typo would shut everyone out without a word; one
    /// already `stored` may have left it and still be kept.
    fn group_refs(
        &self,
        written: &[String],
        stored: &[String],
    ) -> Result<Vec<String>, ScaffolderError> {
        let mut out: Vec<String> = Vec::new();
        for g in written.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            let r = EntityRef::parse(g, Some("group"), "default")
                .map_err(|e| ScaffolderError::Input(format!("\"{g}\": {e}")))?;
            if !r.kind.eq_ignore_ascii_case("group") {
                return Err(ScaffolderError::Input(format!(
                    "\"{g}\" is not a group; give group refs such as group:default/team-a"
                )));
            }
            let full = r.to_string();
            let known = stored.iter().any(|s| s.eq_ignore_ascii_case(&full));
            if !known && self.catalog.by_ref(&r).is_none() {
                return Err(ScaffolderError::Input(format!(
                    "There is no group {full} in the catalog"
                )));
            }
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&full)) {
                out.push(full);
            }
        }
        Ok(out)
    }

    /// Whether the caller may see and run the template.
    pub fn may_use(who: &Principal, c: &Curation) -> bool {
        if who.is_admin() {
            return true;
        }
        if !c.published {
            return false;
        }
        if c.allowed_groups.is_empty() {
            return true;
        }
        match who.user() {
            Some(u) => c.allowed_groups.iter().any(|g| {
                u.identity
                    .ownership
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(g))
            }),
            None => matches!(who, Principal::Service { .. }),
        }
    }

    /// `user` in the task spec: the caller's ref and entity.
    fn user_of(&self, who: &Principal) -> Value {
        match who.user() {
            Some(u) => {
                let entity = EntityRef::parse(&u.identity.user_ref, Some("user"), "default")
                    .ok()
                    .and_then(|r| self.catalog.by_ref(&r))
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                let mut out = json!({"ref": u.identity.user_ref});
                if let Some(e) = entity {
                    out["entity"] = e;
                }
                out
            }
            None => json!({}),
        }
    }

    fn check_size(what: &str, v: &impl serde::Serialize) -> Result<(), ScaffolderError> {
        let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > params::MAX_VALUES_BYTES {
            return Err(ScaffolderError::TooLarge(format!(
                "{what} are {size} bytes; at most {} are allowed",
                params::MAX_VALUES_BYTES
            )));
        }
        Ok(())
    }

    fn validate(
        template: &Template,
        values: &Value,
        secrets: &Map<String, Value>,
    ) -> Result<(), ScaffolderError> {
        Self::check_size("values", values)?;
        Self::check_size("secrets", secrets)?;
        let mut errors = params::check_values(template, values);
        // A schema message quotes the value it refuses: a secret's is masked.
        let mut red = redact::Redactor::new();
        for v in secrets.values().filter_map(Value::as_str) {
            red.add_secret(v);
        }
        let secret_errors = params::check_secrets(template, secrets);
        errors.extend(secret_errors.into_iter().map(|mut e| {
            e.property = e.property.replacen("instance", "secrets", 1);
            e.message = red.text(&e.message);
            e.stack = red.text(&e.stack);
            e
        }));
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors
            .iter()
            .map(|e| format!("{}: {}", e.property, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err(ScaffolderError::Invalid {
            message: format!("Invalid parameters for {}: {message}", template.entity_ref),
            errors,
        })
    }

    /// Checks the request and stores a new open task.
    pub async fn create_task(
        &self,
        who: &Principal,
        req: TaskRequest,
    ) -> Result<String, ScaffolderError> {
        let template = self.template(&req.template_ref)?;
        let curation = self.curation(&template.entity_ref).await?;
        if !Self::may_use(who, &curation) {
            return Err(ScaffolderError::NotAllowed(format!(
                "You may not run {}",
                template.entity_ref
            )));
        }
        let values = if req.values.is_null() {
            json!({})
        } else {
            req.values
        };
        let secrets = req.secrets.unwrap_or_default();
        Self::validate(&template, &values, &secrets)?;
        let spec = TaskSpec {
            api_version: "scaffolder.backstage.io/v1beta3".into(),
            steps: template.steps.clone(),
            output: template.output.clone(),
            parameters: values,
            user: self.user_of(who),
            template_info: TemplateInfo {
                entity_ref: template.entity_ref.clone(),
                base_url: template.base_url.clone(),
            },
        };
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = if secrets.is_empty() {
            None
        } else {
            Some(
                self.keys
                    .seal(&serde_json::to_vec(&secrets).map_err(anyhow::Error::from)?)?,
            )
        };
        let spec = serde_json::to_string(&spec).map_err(anyhow::Error::from)?;
        let row = store::insert_task(
            &self.db.conn,
            store::tasks::Model {
                id: id.clone(),
                spec,
                status: "open".into(),
                created_by: who.user().map(|u| u.identity.user_ref.clone()),
                template_ref: Some(template.entity_ref),
                created_at: now_ms(),
                last_heartbeat_at: None,
                claimed_by: None,
                secrets: sealed,
                state: "{}".into(),
                workspace: None,
                cancel_requested: false,
                attempts: 0,
                finished_at: None,
            },
        );
        self.db.write_turn(row).await?;
        self.notify().await;
        Ok(id)
    }

    /// Wakes workers here and, on PostgreSQL, on the other replicas.
    async fn notify(&self) {
        self.wake.notify_waiters();
        if self.db.backend() == sea_orm::DatabaseBackend::Postgres {
            use sea_orm::ConnectionTrait;
            let _ = self
                .db
                .conn
                .execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .await;
        }
    }

    fn may_see(who: &Principal, task: &store::tasks::Model) -> bool {
        match who.user() {
            Some(u) if !u.identity.admin => {
                task.created_by.as_deref() == Some(u.identity.user_ref.as_str())
            }
            _ => who.is_admin() || matches!(who, Principal::Service { .. }),
        }
    }

    pub async fn task(&self, who: &Principal, id: &str) -> Result<Value, ScaffolderError> {
        let t = self.task_row(who, id).await?;
        Ok(serialize_task(&t))
    }

    async fn task_row(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<store::tasks::Model, ScaffolderError> {
        store::task(&self.db.conn, id)
            .await?
            .filter(|t| Self::may_see(who, t))
            .ok_or_else(|| ScaffolderError::NotFound(format!("Task with id {id} does not exist")))
    }

    /// `GET /v2/tasks`: users see their own tasks, admins all.
    pub async fn list(
        &self,
        who: &Principal,
        created_by: Option<&str>,
        status: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Value>, u64), ScaffolderError> {
        let own;
        let created_by = match who.user() {
            Some(u) if !u.identity.admin => {
                if created_by.is_some_and(|c| !c.eq_ignore_ascii_case(&u.identity.user_ref)) {
                    return Ok((vec![], 0));
                }
                own = u.identity.user_ref.clone();
                Some(own.as_str())
            }
            _ => created_by,
        };
        if let Some(s) = status {
            if !matches!(
                s,
                "open" | "processing" | "completed" | "failed" | "cancelled" | "skipped"
            ) {
                return Err(ScaffolderError::Input(format!("unknown status {s:?}")));
            }
        }
        let (rows, total) =
            store::list_tasks(&self.db.conn, created_by, status, limit.min(1000), offset).await?;
        Ok((rows.iter().map(serialize_task).collect(), total))
    }

    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<String, ScaffolderError> {
        let t = self.task_row(who, id).await?;
        let status = self
            .db
            .write_turn(store::request_cancel(&self.db.conn, &t.id, now_ms()))
            .await?
            .unwrap_or_else(|| t.status.clone());
        if status == "cancelled" && t.status == "open" {
            self.append(
                &t.id,
                "cancelled",
                json!({"message": "Run completed with status: cancelled", "status": "cancelled"}),
            )
            .await?;
        }
        if let Some(tx) = self.running.lock().get(&t.id) {
            let _ = tx.send(true);
        }
        self.notify().await;
        Ok(status)
    }

    pub async fn retry(
        &self,
        who: &Principal,
        id: &str,
        secrets: Option<Map<String, Value>>,
    ) -> Result<(), ScaffolderError> {
        let t = self.task_row(who, id).await?;
        let sealed = match secrets {
            Some(s) if !s.is_empty() => Some(
                self.keys
                    .seal(&serde_json::to_vec(&s).map_err(anyhow::Error::from)?)?,
            ),
            _ => None,
        };
        let reopened = self
            .db
            .write_turn(store::reopen(&self.db.conn, &t.id, sealed))
            .await?;
        if !reopened {
            return Err(ScaffolderError::Conflict(format!(
                "Task {id} is {}; only failed or cancelled tasks can be retried",
                t.status
            )));
        }
        self.append(&t.id, "recovered", json!({"message": "Task retried: it resumes from its first unfinished step", "status": "open"}))
            .await?;
        self.notify().await;
        Ok(())
    }

    pub(crate) async fn append(
        &self,
        task_id: &str,
        kind: &str,
        body: Value,
    ) -> Result<i64, ScaffolderError> {
        let id = self
            .db
            .write_turn(store::append_event(
                &self.db.conn,
                task_id,
                kind,
                &body.to_string(),
                now_ms(),
            ))
            .await?;
        let _ = self.events.send(task_id.to_string());
        Ok(id)
    }

    /// Events after `after`, waiting up to `wait` for the first one.
    pub async fn events(
        &self,
        who: &Principal,
        id: &str,
        after: i64,
        wait: Duration,
    ) -> Result<Vec<Value>, ScaffolderError> {
        self.task_row(who, id).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.events.subscribe();
        loop {
            let rows = store::events_after(&self.db.conn, id, after, 1000).await?;
            if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(rows.iter().map(serialize_event).collect());
            }
            // Woken by this replica's writes; other replicas' show up on the next poll.
            let poll = tokio::time::sleep(
                Duration::from_millis(500)
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            );
            tokio::select! {
                _ = rx.recv() => {}
                _ = poll => {}
            }
        }
    }

    /// Runs a template against given files without storing anything.
    pub async fn dry_run(
        &self,
        who: &Principal,
        req: DryRunRequest,
    ) -> Result<Value, ScaffolderError> {
        if who.user().is_none() && !who.is_admin() {
            return Err(ScaffolderError::NotAllowed(
                "Sign in to dry-run templates".into(),
            ));
        }
        let problems = template::problems(&req.template);
        if !problems.is_empty() {
            return Err(ScaffolderError::Input(format!(
                "Invalid template: {}",
                problems
                    .iter()
                    .map(|(p, m)| format!("{p}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let template = Template::from_entity(&req.template).map_err(ScaffolderError::Input)?;
        let values = if req.values.is_null() {
            json!({})
        } else {
            req.values
        };
        let secrets = req.secrets.unwrap_or_default();
        Self::validate(&template, &values, &secrets)?;
        let dir = self.dry_run_dir()?;
        let template_dir = Confined::create(&dir.path().join("template"))?;
        let mut total = 0usize;
        for f in &req.directory_contents {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&f.base64_content)
                .map_err(|e| ScaffolderError::Input(format!("{}: invalid base64: {e}", f.path)))?;
            total += bytes.len();
            if total > MAX_WORKSPACE_BYTES {
                return Err(ScaffolderError::TooLarge(
                    "directoryContents are too large".into(),
                ));
            }
            template_dir
                .write(
                    &f.path,
                    &bytes,
                    Some(if f.executable { 0o755 } else { 0o644 }),
                )
                .map_err(|e| ScaffolderError::Input(e.to_string()))?;
        }
        let base_url = format!("file://{}/template.yaml", template_dir.root().display());
        self.run_dry(who, &template, values, &secrets, Some(base_url), &dir)
            .await
    }

    /// Dry-runs a template of the catalog, whose relative fetches read the
    /// files next to it (a `file` location's directory, or its URL's), as a
    /// real task of it would.
    pub async fn dry_run_template(
        &self,
        who: &Principal,
        entity_ref: &str,
        values: Value,
        secrets: Map<String, Value>,
    ) -> Result<Value, ScaffolderError> {
        let template = self.template(entity_ref)?;
        let curation = self.curation(&template.entity_ref).await?;
        if (who.user().is_none() && !who.is_admin()) || !Self::may_use(who, &curation) {
            return Err(ScaffolderError::NotFound(format!(
                "Template {} not found",
                template.entity_ref
            )));
        }
        let values = if values.is_null() { json!({}) } else { values };
        Self::validate(&template, &values, &secrets)?;
        let dir = self.dry_run_dir()?;
        let base_url = template.base_url.clone();
        self.run_dry(who, &template, values, &secrets, base_url, &dir)
            .await
    }

    fn dry_run_dir(&self) -> Result<tempfile::TempDir, ScaffolderError> {
        Ok(tempfile::Builder::new()
            .prefix("dry-run-")
            .tempdir_in(self.work_dir()?)
            .map_err(anyhow::Error::from)?)
    }

    /// Runs checked values through the template in a scratch workspace under
    /// `dir`: the log, the files it would produce, the output and the steps.
    async fn run_dry(
        &self,
        who: &Principal,
        template: &Template,
        values: Value,
        secrets: &Map<String, Value>,
        base_url: Option<String>,
        dir: &tempfile::TempDir,
    ) -> Result<Value, ScaffolderError> {
        let workspace = Confined::create(&dir.path().join("workspace"))?;
        let spec = TaskSpec {
            api_version: "scaffolder.backstage.io/v1beta3".into(),
            steps: template.steps.clone(),
            output: template.output.clone(),
            parameters: values,
            user: self.user_of(who),
            template_info: TemplateInfo {
                entity_ref: template.entity_ref.clone(),
                base_url,
            },
        };
        let sink = MemorySink::default();
        let redactor = parking_lot::Mutex::new(redact::Redactor::new());
        let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
        let task_id = format!("dry-run-{}", uuid::Uuid::new_v4());
        let mut runner = runner::Runner {
            services: &self.services,
            registry: &self.registry,
            engine: &self.engine,
            sink: &sink,
            task_id: &task_id,
            spec: &spec,
            secrets,
            workspace: &workspace,
            dry_run: true,
            cancel,
            redactor: &redactor,
        };
        let result =
            tokio::time::timeout(self.config.task_timeout, runner.run(TaskState::default()))
                .await
                .unwrap_or_else(|_| Err(runner::RunError::Step("the dry-run timed out".into())));
        let red = redactor.lock().clone();
        let log: Vec<Value> = sink.lines.lock().iter().map(|l| red.value(l)).collect();
        let (output, error) = match result {
            Ok(o) => (o, None),
            Err(e) => (json!({}), Some(red.text(&e.to_string()))),
        };
        let files: Vec<Value> = workspace
            .files()
            .map_err(|e| ScaffolderError::Input(e.to_string()))?
            .into_iter()
            .map(|f| {
                json!({
                    "path": f.path,
                    "executable": f.executable,
                    "base64Content": base64::engine::general_purpose::STANDARD.encode(&f.content),
                })
            })
            .collect();
        let steps: Vec<Value> = spec
            .steps
            .iter()
            .map(|s| json!({"id": s.id, "name": s.name, "action": s.action}))
            .collect();
        let mut out = json!({
            "log": log,
            "directoryContents": files,
            "output": red.value(&output),
            "steps": steps,
        });
        if let Some(e) = error {
            out["error"] = json!({"name": "Error", "message": e});
        }
        Ok(out)
    }

    fn work_dir(&self) -> Result<std::path::PathBuf, ScaffolderError> {
        std::fs::create_dir_all(&self.config.work_dir).map_err(|e| {
            anyhow::anyhow!("cannot create {}: {e}", self.config.work_dir.display())
        })?;
        Ok(self.config.work_dir.clone())
    }
}

/// The dry-run's log, kept in memory.
#[derive(Default)]
struct MemorySink {
    lines: parking_lot::Mutex<Vec<Value>>,
}

#[async_trait::async_trait]
impl runner::Sink for MemorySink {
    async fn log(&self, body: Value) {
        self.lines.lock().push(json!({ "body": body }));
    }
    async fn checkpoint(&self, _state: &TaskState) -> Result<bool, String> {
        Ok(true)
    }
}

/// Backstage's `SerializedTask`.
pub fn serialize_task(t: &store::tasks::Model) -> Value {
    let spec: Value = serde_json::from_str(&t.spec).unwrap_or_default();
    let state: Value = serde_json::from_str(&t.state).unwrap_or_else(|_| json!({}));
    let mut out = json!({
        "id": t.id,
        "spec": spec,
        "status": t.status,
        "createdAt": iso(t.created_at),
        "createdBy": t.created_by,
        "state": state,
    });
    if let Some(h) = t.last_heartbeat_at {
        out["lastHeartbeatAt"] = json!(iso(h));
    }
    if let Some(f) = t.finished_at {
        out["completedAt"] = json!(iso(f));
    }
    out
}

/// Backstage's `SerializedTaskEvent`.
pub fn serialize_event(e: &store::events::Model) -> Value {
    json!({
        "id": e.id,
        "taskId": e.task_id,
        "type": e.event_type,
        "body": serde_json::from_str::<Value>(&e.body).unwrap_or_default(),
        "createdAt": iso(e.created_at),
    })
}

/// Packs a workspace for a checkpoint: lz4-compressed JSON, base64.
pub fn pack_workspace(files: &[TreeFile]) -> Result<String, String> {
    let list: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "path": f.path,
                "executable": f.executable,
                "symlink": f.symlink,
                "content": base64::engine::general_purpose::STANDARD.encode(&f.content),
            })
        })
        .collect();
    let raw = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
    if raw.len() > MAX_WORKSPACE_BYTES {
        return Err(format!(
            "the workspace is larger than {MAX_WORKSPACE_BYTES} bytes and cannot be checkpointed"
        ));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(lz4_flex::compress_prepend_size(&raw)))
}

/// Restores a packed workspace into an empty directory.
pub fn unpack_workspace(packed: &str, into: &Confined) -> Result<(), String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .map_err(|e| e.to_string())?;
    let raw = lz4_flex::decompress_size_prepended(&compressed).map_err(|e| e.to_string())?;
    let list: Vec<Value> = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
    for f in list {
        let path = f["path"].as_str().unwrap_or_default();
        let content = base64::engine::general_purpose::STANDARD
            .decode(f["content"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if f["symlink"].as_bool().unwrap_or(false) {
            into.symlink(path, &String::from_utf8_lossy(&content))
                .map_err(|e| e.to_string())?;
        } else {
            let mode = if f["executable"].as_bool().unwrap_or(false) {
                0o755
            } else {
                0o644
            };
            into.write(path, &content, Some(mode))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
