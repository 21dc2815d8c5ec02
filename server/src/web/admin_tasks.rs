//! Admin: every scaffolder task, of every user, newest first, with a status
//! filter and pages in the URL. Each task links to its page on /create.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::admin_templates::{page_error, when};
use super::entity::entity_href;
use super::{Layout, PageContext, PageError};
use crate::catalog::model::EntityRef;
use crate::scaffolder::ScaffolderService;

const PAGE_SIZE: u64 = 25;
/// The statuses a task can have, as the filter offers them.
const STATUSES: [&str; 6] = [
    "open",
    "processing",
    "completed",
    "failed",
    "cancelled",
    "skipped",
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/tasks", web::get().to(list));
}

pub struct TaskRow {
    pub id: String,
    pub href: String,
    pub status: String,
    pub template: Option<String>,
    pub template_href: Option<String>,
    pub created_by: Option<String>,
    pub created_by_href: Option<String>,
    pub created: String,
}

#[derive(Template)]
#[template(path = "pages/admin_tasks.html")]
struct TasksPage {
    layout: Layout,
    /// Each status, and whether the filter has it.
    statuses: Vec<(&'static str, bool)>,
    status: String,
    tasks: Vec<TaskRow>,
    /// How many there are, and which of them this page shows.
    summary: String,
    prev_href: Option<String>,
    next_href: Option<String>,
}

/// `?status=&page=`, checked.
fn parse_query(raw: &str) -> Result<(Option<String>, u64), PageError> {
    let mut status = None;
    let mut page = 1;
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let v = v.trim();
        match k.as_ref() {
            "status" if v.is_empty() => {}
            "status" => {
                if !STATUSES.contains(&v) {
                    return Err(PageError::Input(format!(
                        "\"{v}\" is not a task status; use one of {}",
                        STATUSES.join(", ")
                    )));
                }
                status = Some(v.to_string());
            }
            "page" => {
                page = v
                    .parse::<u64>()
                    .ok()
                    .filter(|p| (1..=1_000_000).contains(p))
                    .ok_or_else(|| PageError::Input(format!("\"{v}\" is not a page number")))?;
            }
            _ => {}
        }
    }
    Ok((status, page))
}

fn summary(status: Option<&str>, total: u64, offset: u64, shown: u64) -> String {
    let with = status
        .map(|s| format!(" with status {s}"))
        .unwrap_or_default();
    match (total, shown) {
        (0, _) => format!("No tasks{with}."),
        (_, 0) => format!("No tasks on this page; there are {total}{with}."),
        _ => format!("Tasks {}–{} of {total}{with}.", offset + 1, offset + shown),
    }
}

fn href(status: &Option<String>, page: u64) -> String {
    match status {
        Some(s) => format!("/admin/tasks?status={}&page={page}", super::encode(s)),
        None => format!("/admin/tasks?page={page}"),
    }
}

fn row(t: &Value) -> TaskRow {
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let template = t
        .pointer("/spec/templateInfo/entityRef")
        .and_then(Value::as_str)
        .map(str::to_string);
    let created_by = t["createdBy"].as_str().map(str::to_string);
    let link = |r: &Option<String>, kind| {
        r.as_deref()
            .and_then(|r| EntityRef::parse(r, Some(kind), "default").ok())
            .map(|r| entity_href(&r))
    };
    TaskRow {
        href: format!("/create/tasks/{}", super::encode(&id)),
        status: t["status"].as_str().unwrap_or_default().to_string(),
        template_href: link(&template, "template"),
        created_by_href: link(&created_by, "user"),
        template,
        created_by,
        created: t["createdAt"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| when(d.timestamp_millis()))
            .unwrap_or_default(),
        id,
    }
}

async fn list(
    ctx: PageContext,
    svc: web::Data<ScaffolderService>,
    req: HttpRequest,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        let (status, page) = parse_query(req.query_string())?;
        let offset = (page - 1) * PAGE_SIZE;
        let (tasks, total) = svc
            .list(&ctx.principal, None, status.as_deref(), PAGE_SIZE, offset)
            .await
            .map_err(page_error)?;
        let tasks: Vec<TaskRow> = tasks.iter().map(row).collect();
        let shown = tasks.len() as u64;
        Ok(TasksPage {
            layout: ctx.layout("Tasks", "admin"),
            statuses: STATUSES
                .iter()
                .map(|s| (*s, status.as_deref() == Some(*s)))
                .collect(),
            status: status.clone().unwrap_or_default(),
            summary: summary(status.as_deref(), total, offset, shown),
            tasks,
            // Past the end, back leads to the last page.
            prev_href: (page > 1)
                .then(|| href(&status, (page - 1).min(total.div_ceil(PAGE_SIZE).max(1)))),
            next_href: (offset + shown < total).then(|| href(&status, page + 1)),
        })
    }
    .await;
    ctx.respond(result)
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn the_summary_counts_the_page() {
        use super::summary;
        assert_eq!(summary(None, 0, 0, 0), "No tasks.");
        assert_eq!(
            summary(Some("failed"), 30, 25, 5),
            "Tasks 26–30 of 30 with status failed."
        );
        assert_eq!(
            summary(None, 3, 50, 0),
            "No tasks on this page; there are 3."
        );
    }

    #[test]
    fn the_query_is_checked() {
        assert_eq!(parse_query("").expect("ok"), (None, 1));
        assert_eq!(
            parse_query("status=failed&page=3").expect("ok"),
            (Some("failed".into()), 3)
        );
        assert_eq!(parse_query("status=&page=2").expect("ok"), (None, 2));
        assert!(parse_query("status=done").is_err());
        assert!(parse_query("page=0").is_err());
        assert!(parse_query("page=x").is_err());
    }
}
