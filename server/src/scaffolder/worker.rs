//! Claims open tasks and runs them, up to `scaffolder.concurrentTasksLimit`
//! at once on this replica. Woken by new tasks here, by PostgreSQL's NOTIFY
//! from other replicas, and by a poll as the fallback.
//!
//! A running task's worker beats every few seconds and reads cancel requests
//! on the same beat; a task whose worker stopped beating is released and
//! resumed elsewhere from its last checkpoint.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::runner::{RunError, Runner, Sink, TaskSpec, TaskState};
use super::workspace::Confined;
use super::{now_ms, pack_workspace, store, unpack_workspace, ScaffolderService};

const HEARTBEAT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_secs(2);

impl ScaffolderService {
    /// Runs until shutdown: recovers stale tasks, claims and runs open ones.
    pub async fn run_workers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.db.backend() == sea_orm::DatabaseBackend::Sqlite {
            // A single node claims on SQLite: anything still running was ours, and died.
            self.release_stale(i64::MAX).await;
        }
        let listener = self.clone().listen();
        let limit = Arc::new(tokio::sync::Semaphore::new(self.config.concurrent_tasks));
        let mut running = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.release_stale(now_ms() - self.config.recover_after.as_millis() as i64)
                .await;
            while let Ok(permit) = limit.clone().try_acquire_owned() {
                let claimed = self
                    .db
                    .write_turn(store::claim(&self.db.conn, &self.worker_id, now_ms()))
                    .await;
                match claimed {
                    Ok(Some(task)) => {
                        let me = self.clone();
                        running.spawn(async move {
                            me.execute(task).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "scaffolder: claiming a task failed");
                        break;
                    }
                }
            }
            while running.try_join_next().is_some() {}
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = running.join_next(), if !running.is_empty() => {}
                _ = shutdown.changed() => {}
            }
        }
        // Tasks still running stop where they are, without ending: their
        // claims lapse and another worker (or this one, restarted) resumes them.
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for tx in self.running.lock().values() {
            let _ = tx.send(true);
        }
        running.shutdown().await;
        if let Some(l) = listener {
            l.abort();
        }
    }

    async fn release_stale(&self, cutoff: i64) {
        let released = self
            .db
            .write_turn(store::release_stale(&self.db.conn, cutoff))
            .await;
        match released {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(task = %id, "scaffolder: resuming a task whose worker stopped");
                    let _ = self
                        .append(
                            &id,
                            "recovered",
                            json!({"message": "The task's worker stopped; it resumes from its first unfinished step", "status": "open"}),
                        )
                        .await;
                }
                self.wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "scaffolder: releasing stale tasks failed"),
        }
    }

    /// On PostgreSQL, wakes this replica when another one adds a task.
    fn listen(self: Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let pool = match &self.db.conn {
            sea_orm::DatabaseConnection::SqlxPostgresPoolConnection(_) => {
                self.db.conn.get_postgres_connection_pool().clone()
            }
            _ => return None,
        };
        Some(tokio::spawn(async move {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "scaffolder: LISTEN failed; polling");
                    return;
                }
            };
            if let Err(e) = listener.listen(super::NOTIFY_CHANNEL).await {
                tracing::warn!(error = %e, "scaffolder: LISTEN failed; polling");
                return;
            }
            while listener.recv().await.is_ok() {
                self.wake.notify_waiters();
            }
        }))
    }

    async fn execute(self: &Arc<Self>, task: store::tasks::Model) {
        let id = task.id.clone();
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(task.cancel_requested);
        self.running.lock().insert(id.clone(), cancel_tx.clone());
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let beat = {
            let me = self.clone();
            let id = id.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let beat = me
                        .db
                        .write_turn(store::heartbeat(&me.db.conn, &id, &me.worker_id, now_ms()))
                        .await;
                    match beat {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = lost_tx.send(true);
                            let _ = cancel_tx.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "scaffolder: heartbeat failed"),
                    }
                    if store::cancel_requested(&me.db.conn, &id)
                        .await
                        .unwrap_or(false)
                    {
                        let _ = cancel_tx.send(true);
                    }
                }
            })
        };
        let outcome = self.run_claimed(&task, cancel_rx).await;
        beat.abort();
        self.running.lock().remove(&id);
        if *lost_rx.borrow() {
            tracing::warn!(task = %id, "scaffolder: the task was taken over; this worker stops");
            return;
        }
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::info!(task = %id, "scaffolder: shutting down; the task resumes after restart");
            return;
        }
        let (status, kind, body) = match outcome {
            Ok(output) => (
                "completed",
                "completion",
                json!({"message": "Run completed with status: completed", "status": "completed", "output": output}),
            ),
            Err(RunError::Cancelled) => (
                "cancelled",
                "cancelled",
                json!({"message": "Run completed with status: cancelled", "status": "cancelled"}),
            ),
            Err(RunError::Lost) => return,
            Err(e) => (
                "failed",
                "completion",
                json!({"message": "Run completed with status: failed", "status": "failed",
                       "error": {"name": "Error", "message": e.to_string()}}),
            ),
        };
        let finished = self
            .db
            .write_turn(store::finish(
                &self.db.conn,
                &id,
                &self.worker_id,
                status,
                now_ms(),
            ))
            .await;
        match finished {
            Ok(true) => {
                let _ = self.append(&id, kind, body).await;
            }
            Ok(false) => {
                tracing::warn!(task = %id, "scaffolder: the task was taken over before it finished")
            }
            Err(e) => {
                tracing::error!(task = %id, error = %e, "scaffolder: recording the end of a task failed")
            }
        }
        let _ = std::fs::remove_dir_all(self.config.work_dir.join(&id));
    }

    async fn run_claimed(
        self: &Arc<Self>,
        task: &store::tasks::Model,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Value, RunError> {
        let spec: TaskSpec = serde_json::from_str(&task.spec)
            .map_err(|e| RunError::Step(format!("the stored task spec is unreadable: {e}")))?;
        let state: TaskState = serde_json::from_str(&task.state).unwrap_or_default();
        let secrets: Map<String, Value> = match &task.secrets {
            None => Map::new(),
            Some(sealed) => {
                let plain = self.keys.open(sealed).ok_or_else(|| {
                    RunError::Step(
                        "The task's secrets can no longer be read (auth.session.secret is unset or changed); retry it with its secrets".into(),
                    )
                })?;
                serde_json::from_slice(&plain).unwrap_or_default()
            }
        };
        let dir = self.config.work_dir.join(&task.id);
        let _ = std::fs::remove_dir_all(&dir);
        let workspace = Confined::create(&dir).map_err(|e| RunError::Storage(e.to_string()))?;
        if let Some(packed) = &task.workspace {
            unpack_workspace(packed, &workspace).map_err(RunError::Storage)?;
        }
        let sink = DbSink {
            service: self.clone(),
            task_id: task.id.clone(),
            workspace: workspace.clone(),
        };
        let redactor = parking_lot::Mutex::new(super::redact::Redactor::new());
        let mut runner = Runner {
            services: &self.services,
            registry: &self.registry,
            engine: &self.engine,
            sink: &sink,
            task_id: &task.id,
            spec: &spec,
            secrets: &secrets,
            workspace: &workspace,
            dry_run: false,
            cancel,
            redactor: &redactor,
        };
        match tokio::time::timeout(self.config.task_timeout, runner.run(state)).await {
            Ok(r) => r,
            Err(_) => Err(RunError::Step(format!(
                "The task did not finish within scaffolder.taskTimeout ({} s)",
                self.config.task_timeout.as_secs()
            ))),
        }
    }
}

/// Writes a task's events and checkpoints to the database.
struct DbSink {
    service: Arc<ScaffolderService>,
    task_id: String,
    workspace: Confined,
}

#[async_trait::async_trait]
impl Sink for DbSink {
    async fn log(&self, body: Value) {
        if let Err(e) = self.service.append(&self.task_id, "log", body).await {
            tracing::warn!(task = %self.task_id, error = %e, "scaffolder: writing a log event failed");
        }
    }

    async fn checkpoint(&self, state: &TaskState) -> Result<bool, String> {
        let files = self.workspace.files().map_err(|e| e.to_string())?;
        let packed = pack_workspace(&files)?;
        let state = serde_json::to_string(state).map_err(|e| e.to_string())?;
        let db = &self.service.db;
        let save = store::save_state(
            &db.conn,
            &self.task_id,
            &self.service.worker_id,
            &state,
            Some(packed),
            now_ms(),
        );
        db.write_turn(save).await.map_err(|e| e.to_string())
    }
}
