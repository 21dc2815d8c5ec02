//! The tasks people start: `GET /create/tasks` (mine, newest first) and
//! `GET /create/tasks/{id}`: the steps as a timeline with status, duration
//! and log lines, rendered from the task's events so far; `create.js` then
//! follows the API's event stream and appends lines as they come. When the
//! task ends the page shows its output: links (an `entityRef` links to the
//! catalog page) and texts, as markdown made safe (`markdown.rs`).
//!
//! Cancel and retry are form POSTs with the session's token. Only the
//! creator and admins see a task; to anyone else it does not exist (404),
//! as the API answers.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{Map, Value};

use super::super::entity::entity_href;
use super::super::{encode, Layout, PageContext, PageError};
use super::form::{self, Kind};
use super::markdown::{self, SafeHtml};
use super::{form_href, require_user, status_class, title_of, when, Svc};
use crate::catalog::model::EntityRef;
use crate::scaffolder::ScaffolderService;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/create/tasks", web::get().to(list))
        .route("/create/tasks/{id}", web::get().to(show))
        .route("/create/tasks/{id}/cancel", web::post().to(cancel))
        .route("/create/tasks/{id}/retry", web::post().to(retry));
}

const PAGE_SIZE: u64 = 25;
/// Log lines a page renders; a longer log shows its end.
const MAX_EVENTS: usize = 5000;
const EVENTS_PER_READ: usize = 1000;

// ------------------------------------------------------------------ my tasks

pub struct TaskRow {
    pub id: String,
    pub href: String,
    pub template: String,
    pub status: String,
    pub status_class: &'static str,
    pub created: String,
    pub created_iso: String,
}

#[derive(Template)]
#[template(path = "pages/create_tasks.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<TaskRow>,
    total: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(serde::Deserialize)]
struct ListQuery {
    offset: Option<u64>,
}

async fn list(ctx: PageContext, svc: Svc, q: web::Query<ListQuery>) -> HttpResponse {
    let result = async {
        let user = require_user(&ctx)?;
        let offset = q.offset.unwrap_or(0);
        let (tasks, total) = svc
            .list(
                &ctx.principal,
                Some(&user.identity.user_ref),
                None,
                PAGE_SIZE,
                offset,
            )
            .await?;
        let mut titles: HashMap<String, String> = HashMap::new();
        let rows = tasks
            .iter()
            .map(|t| {
                let template_ref = t["spec"]["templateInfo"]["entityRef"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let template = titles
                    .entry(template_ref.clone())
                    .or_insert_with(|| template_title(&svc, &template_ref))
                    .clone();
                let status = t["status"].as_str().unwrap_or_default().to_string();
                let id = t["id"].as_str().unwrap_or_default().to_string();
                let created_iso = t["createdAt"].as_str().unwrap_or_default().to_string();
                TaskRow {
                    href: format!("/create/tasks/{}", encode(&id)),
                    id,
                    template,
                    status_class: status_class(&status),
                    status,
                    created: parse_ms(&created_iso).map(when).unwrap_or_default(),
                    created_iso,
                }
            })
            .collect();
        let page_href = |o: u64| format!("/create/tasks?offset={o}");
        Ok(ListPage {
            layout: ctx.layout("My tasks", "create"),
            rows,
            total,
            prev_href: (offset > 0).then(|| page_href(offset.saturating_sub(PAGE_SIZE))),
            next_href: (offset + PAGE_SIZE < total).then(|| page_href(offset + PAGE_SIZE)),
        })
    }
    .await;
    ctx.respond(result)
}

/// A template's title from the catalog, else its ref.
fn template_title(svc: &ScaffolderService, template_ref: &str) -> String {
    EntityRef::parse(template_ref, Some("template"), "default")
        .ok()
        .and_then(|r| svc.catalog.by_ref(&r))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|e| title_of(&e))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| template_ref.to_string())
}

fn parse_ms(iso: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(iso)
        .ok()
        .map(|t| t.timestamp_millis())
}

// ------------------------------------------------------------------ one task

pub struct LogLine {
    pub id: i64,
    pub time: String,
    pub message: String,
}

pub struct StepView {
    pub id: String,
    pub name: String,
    pub action: String,
    pub status: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub started_ms: Option<i64>,
    pub duration: String,
    pub lines: Vec<LogLine>,
}

pub struct LinkView {
    pub title: String,
    pub href: Option<String>,
    pub icon: String,
    /// Goes to the catalog (an `entityRef`) rather than out.
    pub internal: bool,
}

pub struct TextView {
    pub title: String,
    pub html: SafeHtml,
}

pub struct SecretInput {
    pub name: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "pages/create_task.html")]
struct TaskPage {
    layout: Layout,
    id: String,
    status: String,
    status_class: &'static str,
    template: String,
    template_href: Option<String>,
    created: String,
    created_by: String,
    finished: Option<String>,
    steps: Vec<StepView>,
    /// Lines about the task as a whole (start, end, recovery).
    task_lines: Vec<LogLine>,
    links: Vec<LinkView>,
    texts: Vec<TextView>,
    error: Option<String>,
    can_cancel: bool,
    can_retry: bool,
    live: bool,
    last_event: i64,
    /// The template's secrets, to give again on retry (they are erased when a task ends).
    retry_secrets: Vec<SecretInput>,
    /// Lines left out at the start of a very long log.
    truncated: bool,
}

async fn show(ctx: PageContext, svc: Svc, id: web::Path<String>) -> HttpResponse {
    let result = task_page(&ctx, &svc, &id).await;
    ctx.respond(result)
}

async fn task_page(
    ctx: &PageContext,
    svc: &ScaffolderService,
    id: &str,
) -> Result<TaskPage, PageError> {
    require_user(ctx)?;
    let task = svc.task(&ctx.principal, id).await?;
    let mut events: Vec<Value> = Vec::new();
    let mut truncated = false;
    loop {
        let after = events.last().and_then(|e| e["id"].as_i64()).unwrap_or(0);
        let batch = svc
            .events(&ctx.principal, id, after, Duration::ZERO)
            .await?;
        let n = batch.len();
        events.extend(batch);
        if events.len() > MAX_EVENTS {
            let cut = events.len() - MAX_EVENTS;
            events.drain(..cut);
            truncated = true;
        }
        if n < EVENTS_PER_READ {
            break;
        }
    }
    let status = task["status"].as_str().unwrap_or_default().to_string();
    let template_ref = task["spec"]["templateInfo"]["entityRef"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let mut steps: Vec<StepView> = task["spec"]["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| StepView {
                    id: s["id"].as_str().unwrap_or_default().to_string(),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    action: s["action"].as_str().unwrap_or_default().to_string(),
                    status: "open".into(),
                    status_label: step_label("open"),
                    status_class: "",
                    started_ms: None,
                    duration: String::new(),
                    lines: vec![],
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ended: HashMap<String, i64> = HashMap::new();
    let mut task_lines = Vec::new();
    let mut output = Value::Null;
    let mut error = None;
    for e in &events {
        let body = &e["body"];
        let at = e["createdAt"].as_str().and_then(parse_ms);
        let line = LogLine {
            id: e["id"].as_i64().unwrap_or(0),
            time: at
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default(),
            message: body["message"].as_str().unwrap_or_default().to_string(),
        };
        if e["type"] == "completion" {
            output = body["output"].clone();
            error = body["error"]["message"].as_str().map(str::to_string);
        }
        let step = body["stepId"]
            .as_str()
            .and_then(|s| steps.iter_mut().find(|x| x.id == s));
        match step {
            Some(step) => {
                if let Some(s) = body["status"].as_str() {
                    step.status = s.to_string();
                    if s == "processing" {
                        step.started_ms = at;
                        ended.remove(&step.id);
                    } else if let Some(at) = at {
                        ended.insert(step.id.clone(), at);
                    }
                }
                step.lines.push(line);
            }
            None => task_lines.push(line),
        }
    }
    let finished_ms = task["completedAt"].as_str().and_then(parse_ms);
    let now = crate::catalog::now_ms();
    for s in &mut steps {
        // A step the task stopped in, without a word of its own, ended with it.
        if s.status == "processing" && matches!(status.as_str(), "failed" | "cancelled") {
            s.status = status.clone();
        }
        s.status_label = step_label(&s.status);
        s.status_class = status_class(&s.status);
        if let Some(start) = s.started_ms {
            let end = ended
                .get(&s.id)
                .copied()
                .or(finished_ms)
                .unwrap_or(now)
                .max(start);
            s.duration = duration(end - start);
        }
    }

    let live = matches!(status.as_str(), "open" | "processing");
    let retry_secrets = if status == "failed" || status == "cancelled" {
        retry_secret_inputs(svc, &template_ref)
    } else {
        vec![]
    };
    Ok(TaskPage {
        layout: ctx.layout(format!("Task {}", short_id(id)), "create"),
        id: id.to_string(),
        status_class: status_class(&status),
        template: template_title(svc, &template_ref),
        template_href: form_href(&template_ref),
        created: task["createdAt"]
            .as_str()
            .and_then(parse_ms)
            .map(when)
            .unwrap_or_default(),
        created_by: task["createdBy"].as_str().unwrap_or_default().to_string(),
        finished: finished_ms.map(when),
        links: links(&output),
        texts: texts(&output),
        error,
        can_cancel: live,
        can_retry: status == "failed" || status == "cancelled",
        live,
        last_event: events.last().and_then(|e| e["id"].as_i64()).unwrap_or(0),
        steps,
        task_lines,
        retry_secrets,
        truncated,
        status,
    })
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

fn step_label(status: &str) -> &'static str {
    match status {
        "processing" => "running",
        "completed" => "done",
        "failed" => "failed",
        "skipped" => "skipped",
        "cancelled" => "cancelled",
        _ => "waiting",
    }
}

/// `0.4 s`, `12 s`, `3 min 4 s`, `1 h 2 min`.
fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match ms {
        ms if ms < 10_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ if s < 60 => format!("{s} s"),
        _ if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// `output.links[]`: `{title, url, entityRef, icon}`; unsafe targets lose their link.
fn links(output: &Value) -> Vec<LinkView> {
    output["links"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l.is_object())
                .map(|l| {
                    let entity = l["entityRef"]
                        .as_str()
                        .and_then(|r| EntityRef::parse(r, None, "default").ok());
                    let url = l["url"].as_str().and_then(markdown::safe_target);
                    let internal = url.is_none() && entity.is_some();
                    let href = url.or_else(|| entity.as_ref().map(entity_href));
                    let title = l["title"]
                        .as_str()
                        .filter(|t| !t.trim().is_empty())
                        .map(str::to_string)
                        .or_else(|| l["url"].as_str().map(str::to_string))
                        .or_else(|| entity.as_ref().map(ToString::to_string))
                        .unwrap_or_else(|| "Link".into());
                    LinkView {
                        title,
                        href,
                        icon: l["icon"].as_str().unwrap_or_default().to_string(),
                        internal,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `output.text[]`: `{title, content}`, content as markdown.
fn texts(output: &Value) -> Vec<TextView> {
    output["text"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t.is_object())
                .map(|t| TextView {
                    title: t["title"].as_str().unwrap_or_default().to_string(),
                    html: markdown::render(&match &t["content"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => format!(
                            "```\n{}\n```",
                            serde_json::to_string_pretty(other).unwrap_or_default()
                        ),
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Password inputs for the template's secret fields.
fn retry_secret_inputs(svc: &ScaffolderService, template_ref: &str) -> Vec<SecretInput> {
    let Ok(template) = svc.template(template_ref) else {
        return vec![];
    };
    form::pages(&template)
        .iter()
        .flat_map(|p| p.fields.iter())
        .filter(|f| f.kind == Kind::Secret)
        .filter_map(|f| {
            Some(SecretInput {
                name: format!("secret.{}", f.path.last()?),
                label: f.label(),
            })
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn cancel(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Form<CsrfForm>,
) -> HttpResponse {
    let result = async {
        require_user(&ctx)?;
        ctx.check_form(&req, &body.csrf)?;
        let status = svc.cancel(&ctx.principal, &id).await?;
        Ok::<_, PageError>(if status == "cancelled" {
            "The task was cancelled.".to_string()
        } else {
            "Cancelling: the running step stops at its next chance.".to_string()
        })
    }
    .await;
    match result {
        Ok(notice) => super::super::see_other_with_flash(
            &ctx.auth,
            &format!("/create/tasks/{}", encode(&id)),
            &notice,
        ),
        Err(e) => ctx.error_page(&e),
    }
}

async fn retry(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let form = form::Submitted::parse(&body);
    let result = async {
        require_user(&ctx)?;
        ctx.check_form(&req, form.get("csrf").unwrap_or_default())?;
        let secrets: Map<String, Value> = form
            .pairs()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("secret.")?;
                (!v.is_empty()).then(|| (key.to_string(), Value::String(v.to_string())))
            })
            .collect();
        svc.retry(&ctx.principal, &id, Some(secrets)).await?;
        Ok::<_, PageError>(())
    }
    .await;
    match result {
        Ok(()) => super::super::see_other_with_flash(
            &ctx.auth,
            &format!("/create/tasks/{}", encode(&id)),
            "The task was retried: it resumes from its first unfinished step.",
        ),
        Err(e) => ctx.error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(420), "0.4 s");
        assert_eq!(duration(42_000), "42 s");
        assert_eq!(duration(184_000), "3 min 4 s");
        assert_eq!(duration(3_720_000), "1 h 2 min");
    }

    #[test]
    fn output_links_are_checked() {
        let l = links(&json!({"links": [
            {"title": "Catalog", "entityRef": "component:default/x"},
            {"title": "Repo", "url": "https://example.com/r"},
            {"title": "Bad", "url": "javascript:alert(1)"},
            {"url": "/docs"}
        ]}));
        assert_eq!(l[0].href.as_deref(), Some("/catalog/default/component/x"));
        assert!(l[0].internal);
        assert_eq!(l[1].href.as_deref(), Some("https://example.com/r"));
        assert_eq!(l[2].href, None);
        assert_eq!(l[3].title, "/docs");
    }
}
