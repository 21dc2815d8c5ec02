//! Admin: the catalog's locations, with their processing state and last
//! error; registering a location (a dry-run preview first, then confirm) and
//! unregistering one. Admins only; every form carries the session's token.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;

use super::{Layout, PageContext, PageError};
use crate::catalog::ingest::LocationSpec;
use crate::catalog::model::EntityRef;
use crate::catalog::service::CatalogService;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/locations", web::get().to(list))
        .route("/admin/locations", web::post().to(register))
        .route("/admin/locations/preview", web::post().to(preview))
        .route(
            "/admin/locations/{id}/unregister",
            web::post().to(unregister),
        )
        .route("/admin/providers/{kind}/{id}/sync", web::post().to(sync));
}

type Svc = web::Data<CatalogService>;

pub struct LocationRow {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub from_config: bool,
    /// A configured entity provider (such as a Cognito user pool), which can sync now.
    pub provider: bool,
    pub refreshed: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/admin_locations.html")]
struct ListPage {
    layout: Layout,
    locations: Vec<LocationRow>,
}

async fn list(ctx: PageContext, svc: Svc) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        let mut locations: Vec<LocationRow> = svc
            .location_states()
            .await?
            .into_iter()
            .map(|l| LocationRow {
                from_config: l.source == "config",
                provider: svc.is_provider_location(&l.kind, &l.target),
                refreshed: l
                    .last_refreshed_at
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "not yet".into()),
                error: l.errors.as_deref().and_then(first_error),
                id: l.id,
                kind: l.kind,
                target: l.target,
            })
            .collect();
        locations
            .sort_by(|a, b| (a.error.is_none(), &a.target).cmp(&(b.error.is_none(), &b.target)));
        Ok(ListPage {
            layout: ctx.layout("Locations", "admin"),
            locations,
        })
    }
    .await;
    ctx.respond(result)
}

/// Location errors are stored as a JSON list of messages.
fn first_error(errors: &str) -> Option<String> {
    let list: Vec<Value> = serde_json::from_str(errors).ok()?;
    let messages: Vec<String> = list
        .iter()
        .filter_map(|e| {
            e.as_str()
                .map(str::to_string)
                .or_else(|| e["message"].as_str().map(str::to_string))
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

#[derive(Deserialize)]
struct TargetForm {
    csrf: String,
    target: String,
}

pub struct PreviewEntity {
    pub entity_ref: String,
    pub title: String,
}

#[derive(Template)]
#[template(path = "pages/admin_location_preview.html")]
struct PreviewPage {
    layout: Layout,
    target: String,
    exists: bool,
    entities: Vec<PreviewEntity>,
}

fn spec(target: &str) -> Result<LocationSpec, PageError> {
    let target = target.trim();
    let url = url::Url::parse(target)
        .map_err(|_| PageError::Input(format!("\"{target}\" is not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PageError::Input(
            "Only http and https locations can be registered here".into(),
        ));
    }
    Ok(LocationSpec {
        kind: "url".into(),
        target: target.to_string(),
    })
}

/// Reads the location without writing: what would be registered.
async fn preview(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    form: web::Form<TargetForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let (_, entities, exists) = svc.add_location(spec(&form.target)?, true).await?;
        Ok(PreviewPage {
            layout: ctx.layout("Register a location", "admin"),
            target: form.target.trim().to_string(),
            exists,
            entities: entities
                .iter()
                .map(|e| PreviewEntity {
                    entity_ref: EntityRef::of_entity(e)
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    title: e["metadata"]["title"]
                        .as_str()
                        .or_else(|| e["metadata"]["name"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect(),
        })
    }
    .await;
    ctx.respond(result)
}

async fn register(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    form: web::Form<TargetForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let (location, entities, _) = svc.add_location(spec(&form.target)?, false).await?;
        Ok::<_, PageError>(format!(
            "Registered {} with {} entities",
            location.target,
            entities.len()
        ))
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/locations", &notice),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn unregister(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let location = svc.get_location(&id).await?;
        svc.delete_location(&id).await?;
        Ok::<_, PageError>(format!("Unregistered {}", location.target))
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/locations", &notice),
        Err(e) => ctx.error_page(&e),
    }
}

/// Syncs an entity provider now, instead of at its next scheduled run.
async fn sync(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let (kind, id) = path.into_inner();
        let s = svc.sync_provider(&kind, &id).await?;
        let mut notice = format!(
            "Synced {}: {} users, {} groups",
            s.provider, s.users, s.groups
        );
        if !s.errors.is_empty() {
            notice.push_str(&format!(
                "; {} problems: {}",
                s.errors.len(),
                s.errors.join("; ")
            ));
        }
        Ok::<_, PageError>(notice)
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/locations", &notice),
        Err(e) => ctx.error_page(&e),
    }
}
