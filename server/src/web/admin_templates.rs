//! Admin: the scaffolder's templates. Registers and unregisters the locations
//! they come from, lists every Template with its owner, origin and problems
//! (and the refused ones' problems on their locations), publishes and
//! unpublishes them, and restricts them to groups. Admins only; every form
//! carries the session's token.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::entity::entity_href;
use super::{Layout, PageContext, PageError};
use crate::catalog::model::EntityRef;
use crate::scaffolder::{Curation, ScaffolderError, ScaffolderService};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/templates", web::get().to(list))
        .route("/admin/templates/locations", web::post().to(register))
        .route(
            "/admin/templates/locations/{id}/unregister",
            web::post().to(unregister),
        )
        .route(
            "/admin/templates/{namespace}/{name}/publish",
            web::post().to(publish),
        )
        .route(
            "/admin/templates/{namespace}/{name}/groups",
            web::post().to(groups),
        );
}

type Svc = web::Data<ScaffolderService>;

/// The one mapping of the scaffolder's errors to pages.
pub(super) fn page_error(e: ScaffolderError) -> PageError {
    match e {
        ScaffolderError::Input(m) | ScaffolderError::Conflict(m) | ScaffolderError::TooLarge(m) => {
            PageError::Input(m)
        }
        ScaffolderError::Invalid { message, .. } => PageError::Input(message),
        ScaffolderError::NotFound(m) => PageError::NotFound(m),
        ScaffolderError::NotAllowed(m) => PageError::Forbidden(m),
        ScaffolderError::Database(e) => PageError::Internal(e.into()),
        ScaffolderError::Internal(e) => PageError::Internal(e),
    }
}

/// `/admin/templates/<namespace>/<name>`: where a template's admin forms post.
pub(super) fn admin_base(r: &EntityRef) -> String {
    format!(
        "/admin/templates/{}/{}",
        super::encode(&r.namespace.to_lowercase()),
        super::encode(&r.name)
    )
}

/// The Create page's form of the template, as an admin previews it.
pub(super) fn preview_href(r: &EntityRef) -> String {
    format!(
        "/create/templates/{}/{}?preview=1",
        super::encode(&r.namespace.to_lowercase()),
        super::encode(&r.name)
    )
}

/// The template a path names, `template:<namespace>/<name>`.
pub(super) fn template_ref(path: &(String, String)) -> String {
    format!("template:{}/{}", path.0, path.1)
}

pub(super) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub struct LocationRow {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub from_config: bool,
    pub refreshed: String,
    pub templates: usize,
    pub errors: Vec<String>,
}

pub struct Link {
    pub text: String,
    pub href: String,
}

pub struct TemplateRow {
    pub entity_ref: String,
    pub href: String,
    pub title: String,
    pub owner: Option<Link>,
    pub origin: Option<String>,
    pub problems: Vec<String>,
    pub published: bool,
    pub groups: Vec<String>,
    /// The groups as the form shows them, one per line.
    pub groups_text: String,
    pub admin_base: String,
    pub preview_href: String,
}

#[derive(Template)]
#[template(path = "pages/admin_templates.html")]
struct ListPage {
    layout: Layout,
    files_allowed: bool,
    locations: Vec<LocationRow>,
    templates: Vec<TemplateRow>,
}

async fn list(ctx: PageContext, svc: Svc) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        let overview = svc
            .template_overview(&ctx.principal)
            .await
            .map_err(page_error)?;
        let templates = overview
            .templates
            .into_iter()
            .map(|t| TemplateRow {
                href: entity_href(&t.entity_ref),
                title: t.title,
                owner: t.owner.map(|o| Link {
                    href: EntityRef::parse(&o, Some("group"), &t.entity_ref.namespace)
                        .map(|r| entity_href(&r))
                        .unwrap_or_default(),
                    text: super::short_ref(&o),
                }),
                origin: t.origin,
                problems: t.problems,
                published: t.curation.published,
                groups_text: t.curation.allowed_groups.join("\n"),
                groups: t.curation.allowed_groups,
                admin_base: admin_base(&t.entity_ref),
                preview_href: preview_href(&t.entity_ref),
                entity_ref: t.entity_ref.to_string(),
            })
            .collect();
        let locations = overview
            .locations
            .into_iter()
            .map(|l| LocationRow {
                refreshed: l
                    .last_refreshed_at
                    .map(when)
                    .unwrap_or_else(|| "not yet".into()),
                id: l.id,
                kind: l.kind,
                target: l.target,
                from_config: l.from_config,
                templates: l.templates,
                errors: l.errors,
            })
            .collect();
        Ok(ListPage {
            layout: ctx.layout("Templates", "admin"),
            files_allowed: svc.template_files_allowed(),
            locations,
            templates,
        })
    }
    .await;
    ctx.respond(result)
}

#[derive(Deserialize)]
struct TargetForm {
    csrf: String,
    #[serde(default)]
    target: String,
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
        let (location, entities) = svc
            .register_template_location(&ctx.principal, &form.target)
            .await
            .map_err(page_error)?;
        let templates = entities
            .iter()
            .filter(|e| {
                e["kind"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case("template"))
            })
            .count();
        let mut notice = format!("Registered {} with {templates} templates", location.target);
        if !location.errors.is_empty() {
            notice.push_str(&format!(
                "; it has {} problems, listed with the location",
                location.errors.len()
            ));
        }
        Ok::<_, PageError>(notice)
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/templates", &notice),
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
        let location = svc
            .unregister_template_location(&ctx.principal, &id)
            .await
            .map_err(page_error)?;
        Ok::<_, PageError>(format!("Unregistered {}", location.target))
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/templates", &notice),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Deserialize)]
struct PublishForm {
    csrf: String,
    #[serde(default)]
    published: String,
}

async fn publish(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<PublishForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let published = match form.published.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(PageError::Input(format!(
                    "\"published\" must be true or false, not \"{other}\""
                )))
            }
        };
        let template = svc.template(&template_ref(&path)).map_err(page_error)?;
        let current = svc
            .curation(&template.entity_ref)
            .await
            .map_err(page_error)?;
        svc.set_curation(
            &ctx.principal,
            &template.entity_ref,
            Curation {
                published,
                ..current
            },
        )
        .await
        .map_err(page_error)?;
        Ok(format!(
            "{} is {}",
            template.entity_ref,
            if published {
                "published: it shows on the Create page"
            } else {
                "unpublished: only admins see it"
            }
        ))
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/templates", &notice),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Deserialize)]
struct GroupsForm {
    csrf: String,
    #[serde(default)]
    groups: String,
}

async fn groups(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<GroupsForm>,
) -> HttpResponse {
    let result = async {
        ctx.require_admin()?;
        ctx.check_form(&req, &form.csrf)?;
        let template = svc.template(&template_ref(&path)).map_err(page_error)?;
        let current = svc
            .curation(&template.entity_ref)
            .await
            .map_err(page_error)?;
        let written: Vec<String> = form
            .groups
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        let everyone = written.is_empty();
        svc.set_curation(
            &ctx.principal,
            &template.entity_ref,
            Curation {
                allowed_groups: written,
                ..current
            },
        )
        .await
        .map_err(page_error)?;
        let stored = svc
            .curation(&template.entity_ref)
            .await
            .map_err(page_error)?;
        Ok(if everyone {
            format!("{} is open to everyone", template.entity_ref)
        } else {
            format!(
                "{} is restricted to {}",
                template.entity_ref,
                stored.allowed_groups.join(", ")
            )
        })
    }
    .await;
    match result {
        Ok(notice) => super::see_other_with_flash(&ctx.auth, "/admin/templates", &notice),
        Err(e) => ctx.error_page(&e),
    }
}
