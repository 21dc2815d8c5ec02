//! `/api/scaffolder`: Backstage's scaffolder routes, JSON shapes and errors.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::{DryRunRequest, ScaffolderService, TaskRequest};
use crate::auth::Principal;
use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/scaffolder/v2")
            .route(
                "/templates/{namespace}/{kind}/{name}/parameter-schema",
                web::get().to(parameter_schema),
            )
            .route("/actions", web::get().to(actions))
            .route("/tasks", web::post().to(create_task))
            .route("/tasks", web::get().to(list_tasks))
            .route("/tasks/{id}", web::get().to(get_task))
            .route("/tasks/{id}/cancel", web::post().to(cancel))
            .route("/tasks/{id}/retry", web::post().to(retry))
            .route("/tasks/{id}/eventstream", web::get().to(eventstream))
            .route("/tasks/{id}/events", web::get().to(events))
            .route("/dry-run", web::post().to(dry_run)),
    );
}

async fn parameter_schema(
    s: web::Data<ScaffolderService>,
    who: Principal,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (namespace, kind, name) = path.into_inner();
    let template = s.template(&format!("{kind}:{namespace}/{name}"))?;
    let curation = s.curation(&template.entity_ref).await?;
    if !ScaffolderService::may_use(&who, &curation) {
        return Err(ApiError::not_found(format!(
            "Template {} not found",
            template.entity_ref
        )));
    }
    Ok(HttpResponse::Ok().json(template.parameter_schema()))
}

async fn actions(s: web::Data<ScaffolderService>) -> HttpResponse {
    HttpResponse::Ok().json(s.registry.list())
}

async fn create_task(
    s: web::Data<ScaffolderService>,
    who: Principal,
    body: web::Json<TaskRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = s.create_task(&who, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(json!({ "id": id })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    created_by: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

async fn list_tasks(
    s: web::Data<ScaffolderService>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tasks, total) = s
        .list(
            &who,
            q.created_by.as_deref(),
            q.status.as_deref(),
            q.limit.unwrap_or(100),
            q.offset.unwrap_or(0),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "totalTasks": total })))
}

async fn get_task(
    s: web::Data<ScaffolderService>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.task(&who, &id).await?))
}

async fn cancel(
    s: web::Data<ScaffolderService>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = s.cancel(&who, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": status })))
}

#[derive(Debug, Default, serde::Deserialize)]
struct RetryBody {
    secrets: Option<Map<String, Value>>,
}

async fn retry(
    s: web::Data<ScaffolderService>,
    who: Principal,
    id: web::Path<String>,
    body: Option<web::Json<RetryBody>>,
) -> Result<HttpResponse, ApiError> {
    let secrets = body.and_then(|b| b.into_inner().secrets);
    s.retry(&who, &id, secrets).await?;
    Ok(HttpResponse::Created().json(json!({ "id": id.into_inner() })))
}

#[derive(Debug, serde::Deserialize)]
struct After {
    after: Option<i64>,
}

/// Long-poll: events after `after`, waiting up to 30 s for the first.
async fn events(
    s: web::Data<ScaffolderService>,
    who: Principal,
    id: web::Path<String>,
    q: web::Query<After>,
) -> Result<HttpResponse, ApiError> {
    let list = s
        .events(&who, &id, q.after.unwrap_or(0), Duration::from_secs(30))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

fn ends_stream(event: &Value) -> bool {
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("completion") | Some("cancelled")
    )
}

/// Server-sent events: `event: <type>` and the event as `data`, until the task ends.
async fn eventstream(
    s: web::Data<ScaffolderService>,
    who: Principal,
    id: web::Path<String>,
    q: web::Query<After>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    // Checked once up front, so that an unknown task is a 404 and not an empty stream.
    s.task(&who, &id).await?;
    let state = (s, who, id, q.after.unwrap_or(0), false);
    let stream = futures_util::stream::unfold(state, |(s, who, id, after, done)| async move {
        if done {
            return None;
        }
        let list = match s.events(&who, &id, after, Duration::from_secs(15)).await {
            Ok(l) => l,
            Err(e) => {
                let chunk = format!(
                    "event: error\ndata: {}\n\n",
                    json!({"message": e.to_string()})
                );
                return Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                    (s, who, id, after, true),
                ));
            }
        };
        if list.is_empty() {
            return Some((
                Ok(web::Bytes::from_static(b": keep-alive\n\n")),
                (s, who, id, after, false),
            ));
        }
        let mut chunk = String::new();
        let mut last = after;
        let mut end = false;
        for e in &list {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("log");
            chunk.push_str(&format!("event: {kind}\ndata: {e}\n\n"));
            last = e.get("id").and_then(Value::as_i64).unwrap_or(last);
            end |= ends_stream(e);
        }
        Some((Ok(web::Bytes::from(chunk)), (s, who, id, last, end)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

async fn dry_run(
    s: web::Data<ScaffolderService>,
    who: Principal,
    body: web::Json<DryRunRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.dry_run(&who, body.into_inner()).await?))
}
