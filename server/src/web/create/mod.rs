//! The scaffolder's pages for developers: the gallery of templates to choose
//! from (`gallery.rs`), a template's form as a wizard (`wizard.rs`, with the
//! form model in `form.rs`), and the tasks it starts (`tasks.rs`, with task
//! output markdown in `markdown.rs`).
//!
//! Handlers ask `ScaffolderService` (which templates are published and usable,
//! tasks and their events) and the catalog (templates, entity pages); they
//! never touch the scaffolder's storage. Every page needs a signed-in person,
//! since tasks belong to the one who starts them.

mod form;
mod gallery;
mod markdown;
mod tasks;
mod wizard;

use actix_web::web;
use serde_json::Value;

use super::{PageContext, PageError};
use crate::auth::UserPrincipal;
use crate::scaffolder::{ScaffolderError, ScaffolderService};

pub fn routes(cfg: &mut web::ServiceConfig) {
    gallery::routes(cfg);
    wizard::routes(cfg);
    tasks::routes(cfg);
}

type Svc = web::Data<ScaffolderService>;

impl From<ScaffolderError> for PageError {
    fn from(e: ScaffolderError) -> Self {
        match e {
            ScaffolderError::Input(m)
            | ScaffolderError::Invalid { message: m, .. }
            | ScaffolderError::Conflict(m)
            | ScaffolderError::TooLarge(m) => PageError::Input(m),
            ScaffolderError::NotFound(m) => PageError::NotFound(m),
            ScaffolderError::NotAllowed(m) => PageError::Forbidden(m),
            ScaffolderError::Database(e) => PageError::Internal(e.into()),
            ScaffolderError::Internal(e) => PageError::Internal(e),
        }
    }
}

/// The signed-in person; anyone else is sent to sign in.
fn require_user(ctx: &PageContext) -> Result<&UserPrincipal, PageError> {
    ctx.principal
        .user()
        .ok_or_else(|| PageError::SignIn(ctx.path_and_query.clone()))
}

/// `metadata.title`, else `metadata.name`.
fn title_of(entity: &Value) -> String {
    let meta = &entity["metadata"];
    meta["title"]
        .as_str()
        .or_else(|| meta["name"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// `/create/templates/<namespace>/<name>` for a template ref.
fn form_href(template_ref: &str) -> Option<String> {
    let r =
        crate::catalog::model::EntityRef::parse(template_ref, Some("template"), "default").ok()?;
    Some(format!(
        "/create/templates/{}/{}",
        super::encode(&r.namespace.to_lowercase()),
        super::encode(&r.name)
    ))
}

/// A time for people, in UTC.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A task status's badge class.
fn status_class(status: &str) -> &'static str {
    match status {
        "completed" => "ok",
        "failed" => "bad",
        "cancelled" | "skipped" => "warn",
        "processing" => "live",
        _ => "",
    }
}
