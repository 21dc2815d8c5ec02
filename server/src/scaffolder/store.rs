//! The scaffolder's tables and the queries on them. Claims are single
//! statements: on PostgreSQL the candidate row is locked with
//! `FOR UPDATE SKIP LOCKED`, so two servers never take the same task; on
//! SQLite the statement itself is atomic.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, QueryOrder, QuerySelect, Statement,
};

pub mod tasks {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scaffolder_tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The task spec, JSON.
        #[sea_orm(column_type = "Text")]
        pub spec: String,
        pub status: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub created_by: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub template_ref: Option<String>,
        pub created_at: i64,
        pub last_heartbeat_at: Option<i64>,
        pub claimed_by: Option<String>,
        /// The secrets, sealed; erased when the task ends.
        #[sea_orm(column_type = "Text", nullable)]
        pub secrets: Option<String>,
        /// Checkpoints: each finished step's status and output, JSON.
        #[sea_orm(column_type = "Text")]
        pub state: String,
        /// The workspace as of the last checkpoint, packed, so that any
        /// replica can resume the task.
        #[sea_orm(column_type = "Text", nullable)]
        pub workspace: Option<String>,
        pub cancel_requested: bool,
        pub attempts: i32,
        pub finished_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scaffolder_task_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub task_id: String,
        pub event_type: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod templates {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scaffolder_templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
        pub entity_ref: String,
        pub published: bool,
        /// JSON list of group refs; empty means everyone.
        #[sea_orm(column_type = "Text")]
        pub allowed_groups: String,
        pub updated_at: i64,
        #[sea_orm(column_type = "Text", nullable)]
        pub updated_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn insert_task(db: &impl ConnectionTrait, m: tasks::Model) -> Result<(), DbErr> {
    tasks::ActiveModel::from(m).insert(db).await.map(|_| ())
}

pub async fn task(db: &impl ConnectionTrait, id: &str) -> Result<Option<tasks::Model>, DbErr> {
    tasks::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn list_tasks(
    db: &impl ConnectionTrait,
    created_by: Option<&str>,
    status: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<tasks::Model>, u64), DbErr> {
    let mut q = tasks::Entity::find();
    if let Some(c) = created_by {
        q = q.filter(tasks::Column::CreatedBy.eq(c));
    }
    if let Some(s) = status {
        q = q.filter(tasks::Column::Status.eq(s));
    }
    let total = q.clone().count(db).await?;
    let rows = q
        .order_by_desc(tasks::Column::CreatedAt)
        .order_by_desc(tasks::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Takes the oldest open task for this worker, if any.
pub async fn claim(
    db: &impl ConnectionTrait,
    worker: &str,
    now: i64,
) -> Result<Option<tasks::Model>, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let (w, n) = placeholders(backend);
    let sql = format!(
        "UPDATE scaffolder_tasks SET status = 'processing', claimed_by = {w}, \
         last_heartbeat_at = {n}, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM scaffolder_tasks WHERE status = 'open' \
         ORDER BY created_at, id LIMIT 1{lock}) AND status = 'open' \
         RETURNING id, spec, status, created_by, template_ref, created_at, last_heartbeat_at, \
         claimed_by, secrets, state, workspace, cancel_requested, attempts, finished_at"
    );
    // All rows are read, so that the statement runs to its end: a statement
    // left open would keep SQLite's write lock.
    let rows = tasks::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [worker.into(), now.into()],
        ))
        .all(db)
        .await?;
    Ok(rows.into_iter().next())
}

fn placeholders(backend: DatabaseBackend) -> (&'static str, &'static str) {
    if backend == DatabaseBackend::Postgres {
        ("$1", "$2")
    } else {
        ("?", "?")
    }
}

/// The task, while this worker runs it.
fn held_by(id: &str, worker: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(tasks::Column::Id.eq(id))
        .add(tasks::Column::ClaimedBy.eq(worker))
        .add(tasks::Column::Status.eq("processing"))
}

/// Marks the task alive; false when this worker no longer holds it.
pub async fn heartbeat(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let r = tasks::Entity::update_many()
        .col_expr(tasks::Column::LastHeartbeatAt, Expr::value(now))
        .filter(held_by(id, worker))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Saves the checkpoint; false when this worker no longer holds the task.
pub async fn save_state(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    state: &str,
    workspace: Option<String>,
    now: i64,
) -> Result<bool, DbErr> {
    let r = tasks::Entity::update_many()
        .col_expr(tasks::Column::State, Expr::value(state))
        .col_expr(tasks::Column::Workspace, Expr::value(workspace))
        .col_expr(tasks::Column::LastHeartbeatAt, Expr::value(now))
        .filter(held_by(id, worker))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Ends a task this worker holds; its secrets are erased.
pub async fn finish(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    status: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let mut q = tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value(status))
        .col_expr(tasks::Column::FinishedAt, Expr::value(now))
        .col_expr(tasks::Column::Secrets, Expr::value(Option::<String>::None))
        .col_expr(
            tasks::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        );
    // A failed or cancelled task keeps its workspace, for a retry to go on with.
    if status == "completed" {
        q = q.col_expr(
            tasks::Column::Workspace,
            Expr::value(Option::<String>::None),
        );
    }
    let r = q.filter(held_by(id, worker)).exec(db).await?;
    Ok(r.rows_affected == 1)
}

/// Cancels an open task at once, or flags a running one. Returns the new status.
pub async fn request_cancel(
    db: &impl ConnectionTrait,
    id: &str,
    now: i64,
) -> Result<Option<String>, DbErr> {
    let open = tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value("cancelled"))
        .col_expr(tasks::Column::FinishedAt, Expr::value(now))
        .col_expr(tasks::Column::Secrets, Expr::value(Option::<String>::None))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::Status.eq("open"))
        .exec(db)
        .await?;
    if open.rows_affected == 1 {
        return Ok(Some("cancelled".into()));
    }
    tasks::Entity::update_many()
        .col_expr(tasks::Column::CancelRequested, Expr::value(true))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::Status.eq("processing"))
        .exec(db)
        .await?;
    Ok(task(db, id).await?.map(|t| t.status))
}

pub async fn cancel_requested(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(task(db, id).await?.is_some_and(|t| t.cancel_requested))
}

/// Opens a failed or cancelled task again; its checkpoints are kept.
pub async fn reopen(
    db: &impl ConnectionTrait,
    id: &str,
    secrets: Option<String>,
) -> Result<bool, DbErr> {
    let mut q = tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value("open"))
        .col_expr(tasks::Column::CancelRequested, Expr::value(false))
        .col_expr(tasks::Column::FinishedAt, Expr::value(Option::<i64>::None))
        .col_expr(
            tasks::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        );
    if secrets.is_some() {
        q = q.col_expr(tasks::Column::Secrets, Expr::value(secrets));
    }
    let r = q
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::Status.is_in(["failed", "cancelled"]))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Running tasks whose worker stopped beating before `cutoff` go back to open.
pub async fn release_stale(db: &impl ConnectionTrait, cutoff: i64) -> Result<Vec<String>, DbErr> {
    let stale: Vec<String> = tasks::Entity::find()
        .select_only()
        .column(tasks::Column::Id)
        .filter(tasks::Column::Status.eq("processing"))
        .filter(tasks::Column::LastHeartbeatAt.lt(cutoff))
        .into_tuple()
        .all(db)
        .await?;
    let mut released = Vec::new();
    for id in stale {
        let r = tasks::Entity::update_many()
            .col_expr(tasks::Column::Status, Expr::value("open"))
            .col_expr(
                tasks::Column::ClaimedBy,
                Expr::value(Option::<String>::None),
            )
            .filter(tasks::Column::Id.eq(&id))
            .filter(tasks::Column::Status.eq("processing"))
            .filter(tasks::Column::LastHeartbeatAt.lt(cutoff))
            .exec(db)
            .await?;
        if r.rows_affected == 1 {
            released.push(id);
        }
    }
    Ok(released)
}

pub async fn append_event(
    db: &impl ConnectionTrait,
    task_id: &str,
    event_type: &str,
    body: &str,
    now: i64,
) -> Result<i64, DbErr> {
    let m = events::ActiveModel {
        task_id: Set(task_id.to_string()),
        event_type: Set(event_type.to_string()),
        body: Set(body.to_string()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(m.id)
}

pub async fn events_after(
    db: &impl ConnectionTrait,
    task_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<events::Model>, DbErr> {
    events::Entity::find()
        .filter(events::Column::TaskId.eq(task_id))
        .filter(events::Column::Id.gt(after))
        .order_by_asc(events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn template_settings(db: &impl ConnectionTrait) -> Result<Vec<templates::Model>, DbErr> {
    templates::Entity::find().all(db).await
}

pub async fn template_setting(
    db: &impl ConnectionTrait,
    entity_ref: &str,
) -> Result<Option<templates::Model>, DbErr> {
    templates::Entity::find_by_id(entity_ref.to_string())
        .one(db)
        .await
}

pub async fn put_template_setting(
    db: &impl ConnectionTrait,
    m: templates::Model,
) -> Result<(), DbErr> {
    templates::Entity::insert(templates::ActiveModel::from(m))
        .on_conflict(
            OnConflict::column(templates::Column::EntityRef)
                .update_columns([
                    templates::Column::Published,
                    templates::Column::AllowedGroups,
                    templates::Column::UpdatedAt,
                    templates::Column::UpdatedBy,
                ])
                .to_owned(),
        )
        .exec(db)
        .await
        .map(|_| ())
}
