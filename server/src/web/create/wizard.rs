//! A template's form, `/create/templates/{namespace}/{name}`: every page of
//! `spec.parameters` as a fieldset of one form. Without script all pages show
//! at once; `create.js` turns them into a wizard that asks
//! `POST …/validate` about each page before the next, then shows a review.
//!
//! `POST` on the form's URL is the one that counts: it reads the fields into
//! typed values and secrets (`form.rs`), checks them with the scaffolder's
//! checks, and either shows the form again with each problem next to its
//! field, or creates the task as the signed-in person and goes to its page.
//! `?preview=1` lets admins see any template's form, Create disabled.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::super::entity::entity_href;
use super::super::{short_ref, Layout, PageContext, PageError};
use super::form::{self, FieldSpec, FormError, Kind, PageSpec, Submitted};
use super::gallery::Owner;
use super::{require_user, title_of, Svc};
use crate::catalog::filter::EntityFilter;
use crate::catalog::index::Order;
use crate::catalog::model::EntityRef;
use crate::catalog::service::{CatalogService, OrderField, QueryParams};
use crate::error::{ApiError, RenderedPage};
use crate::scaffolder::template::Template;
use crate::scaffolder::{ScaffolderError, ScaffolderService, TaskRequest};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/create/templates/{namespace}/{name}", web::get().to(show))
        .route(
            "/create/templates/{namespace}/{name}",
            web::post().to(create),
        )
        .route(
            "/create/templates/{namespace}/{name}/validate",
            web::post().to(validate),
        );
}

/// Entities a picker offers before anything is typed (the script searches the rest).
const PICKER_SUGGESTIONS: u64 = 100;

pub struct OptionView {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct RepoView {
    /// Empty: the host is typed.
    pub hosts: Vec<OptionView>,
    pub host: String,
    pub owners: Vec<OptionView>,
    pub owner: String,
    pub repos: Vec<OptionView>,
    pub repo: String,
}

/// One field as the page shows it.
pub struct FieldView {
    pub kind: &'static str,
    pub name: String,
    pub id: String,
    pub label: String,
    pub description: Option<String>,
    pub help: Option<String>,
    pub required: bool,
    pub autofocus: bool,
    pub readonly: bool,
    pub placeholder: String,
    /// Text fields' text.
    pub value: String,
    pub checked: bool,
    pub options: Vec<OptionView>,
    /// `<input type>` of text-like fields.
    pub input_type: &'static str,
    /// Number fields' `step`.
    pub step: &'static str,
    /// Pickers: the catalog API's `filter` parameters, as JSON.
    pub filters: String,
    pub repo: Option<RepoView>,
    pub error: Option<String>,
    /// The ids that describe the control: description, help and error.
    pub described_by: String,
    /// A secret that was given but is not sent back: it must be typed again.
    pub retype: bool,
}

pub struct PageView {
    pub index: usize,
    pub title: String,
    pub description: Option<String>,
    pub fields: Vec<FieldView>,
    pub has_error: bool,
}

#[derive(askama::Template)]
#[template(path = "pages/create_form.html")]
struct FormPage {
    layout: Layout,
    title: String,
    description: String,
    entity_ref: String,
    owner: Option<Owner>,
    action: String,
    validate: String,
    pages: Vec<PageView>,
    preview: bool,
    /// Admins looking at an unpublished template.
    unpublished: bool,
    /// Problems that belong to no one field.
    errors: Vec<String>,
}

#[derive(serde::Deserialize)]
struct PreviewQuery {
    preview: Option<String>,
}

/// The template behind a form URL, if this person may see its form.
struct Loaded {
    template: Template,
    preview: bool,
    unpublished: bool,
}

async fn load(
    ctx: &PageContext,
    svc: &ScaffolderService,
    path: &(String, String),
    preview: bool,
) -> Result<Loaded, PageError> {
    require_user(ctx)?;
    let (namespace, name) = path;
    let template = svc.template(&format!("template:{namespace}/{name}"))?;
    let curation = svc.curation(&template.entity_ref).await?;
    let admin = ctx.principal.is_admin();
    if preview && !admin {
        return Err(PageError::Forbidden("Previews are for admins.".into()));
    }
    let usable = curation.published && ScaffolderService::may_use(&ctx.principal, &curation);
    if !usable && !admin {
        // As the API answers: a template one may not use is not there.
        return Err(PageError::NotFound(format!(
            "Template {} not found",
            template.entity_ref
        )));
    }
    Ok(Loaded {
        preview: preview || !usable,
        unpublished: !curation.published,
        template,
    })
}

async fn show(
    ctx: PageContext,
    svc: Svc,
    path: web::Path<(String, String)>,
    q: web::Query<PreviewQuery>,
) -> HttpResponse {
    let preview = q
        .preview
        .as_deref()
        .is_some_and(|p| p == "1" || p == "true");
    let result = async {
        let loaded = load(&ctx, &svc, &path, preview).await?;
        Ok(form_page(&ctx, &svc.catalog, &loaded, None, &[]))
    }
    .await;
    ctx.respond(result)
}

fn form_page(
    ctx: &PageContext,
    catalog: &CatalogService,
    loaded: &Loaded,
    submitted: Option<&Submitted>,
    errors: &[FormError],
) -> FormPage {
    let t = &loaded.template;
    let specs = form::pages(t);
    let pages: Vec<PageView> = specs
        .iter()
        .enumerate()
        .map(|(i, p)| page_view(catalog, i, p, submitted, errors))
        .collect();
    let title = t.title();
    let r = EntityRef::parse(&t.entity_ref, Some("template"), "default").ok();
    let owner = t.entity["spec"]["owner"].as_str().and_then(|o| {
        EntityRef::parse(
            o,
            Some("group"),
            r.as_ref().map_or("default", |r| r.namespace.as_str()),
        )
        .ok()
    });
    let action = super::form_href(&t.entity_ref).unwrap_or_default();
    FormPage {
        layout: ctx.layout(
            if loaded.preview {
                format!("Preview: {title}")
            } else {
                title.clone()
            },
            "create",
        ),
        description: t.entity["metadata"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        entity_ref: t.entity_ref.clone(),
        owner: owner.map(|o| Owner {
            label: short_ref(&o.to_string()),
            href: entity_href(&o),
        }),
        validate: format!("{action}/validate"),
        action,
        pages,
        preview: loaded.preview,
        unpublished: loaded.unpublished,
        errors: errors
            .iter()
            .filter(|e| e.field.is_empty())
            .map(|e| e.message.clone())
            .collect(),
        title,
    }
}

fn page_view(
    catalog: &CatalogService,
    index: usize,
    page: &PageSpec,
    submitted: Option<&Submitted>,
    errors: &[FormError],
) -> PageView {
    let fields: Vec<FieldView> = page
        .fields
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let error = errors
                .iter()
                .find(|e| e.field == f.name)
                .map(|e| e.message.clone());
            field_view(catalog, &format!("f-{index}-{n}"), f, submitted, error)
        })
        .collect();
    PageView {
        index,
        title: page.title.clone(),
        description: page.description.clone(),
        has_error: fields.iter().any(|f| f.error.is_some()),
        fields,
    }
}

fn field_view(
    catalog: &CatalogService,
    id: &str,
    f: &FieldSpec,
    submitted: Option<&Submitted>,
    error: Option<String>,
) -> FieldView {
    let initial = form::initial(f, submitted);
    let first = initial.first().cloned().unwrap_or_default();
    let description = f.str_key("description");
    let help = f.str_key("ui:help");
    let options = match f.kind {
        Kind::Select | Kind::Radio | Kind::Checkboxes => f
            .choices()
            .into_iter()
            .map(|(v, label)| {
                let value = form::plain(&v);
                OptionView {
                    selected: initial.contains(&value),
                    value,
                    label,
                }
            })
            .collect(),
        Kind::Picker => picker_options(catalog, f),
        _ => vec![],
    };
    let filters = if f.kind == Kind::Picker {
        serde_json::to_string(&form::picker_filters(f)).unwrap_or_else(|_| "[]".into())
    } else {
        String::new()
    };
    let repo = (f.kind == Kind::RepoUrl).then(|| {
        let (host, owner, repo) = form::initial_repo(f, submitted);
        let listed = |key: &str, chosen: &str| -> Vec<OptionView> {
            f.ui_options()
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|v| OptionView {
                            value: v.to_string(),
                            label: v.to_string(),
                            selected: v == chosen,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        RepoView {
            hosts: listed("allowedHosts", &host),
            owners: listed("allowedOwners", &owner),
            repos: listed("allowedRepos", &repo),
            host,
            owner,
            repo,
        }
    });
    let mut described_by = Vec::new();
    if description.is_some() {
        described_by.push(format!("{id}-desc"));
    }
    if help.is_some() {
        described_by.push(format!("{id}-help"));
    }
    if error.is_some() {
        described_by.push(format!("{id}-error"));
    }
    let flag = |key: &str| f.schema.get(key).and_then(Value::as_bool).unwrap_or(false);
    FieldView {
        kind: f.kind.as_str(),
        name: f.name.clone(),
        id: id.to_string(),
        label: f.label(),
        description,
        help,
        required: f.required,
        autofocus: flag("ui:autofocus"),
        readonly: flag("ui:readonly") || flag("ui:disabled") || flag("readOnly"),
        placeholder: f.str_key("ui:placeholder").unwrap_or_default(),
        value: if f.kind == Kind::Secret {
            String::new()
        } else {
            first.clone()
        },
        checked: initial.iter().any(|v| v == "true"),
        options,
        input_type: match f.kind {
            Kind::Number | Kind::Integer => "number",
            Kind::Secret | Kind::Password => "password",
            _ => "text",
        },
        step: if f.kind == Kind::Integer { "1" } else { "any" },
        filters,
        repo,
        error,
        described_by: described_by.join(" "),
        retype: f.kind == Kind::Secret && submitted.is_some() && !first.is_empty(),
    }
}

/// The first entities a picker's filters match, for a datalist that works without script.
fn picker_options(catalog: &CatalogService, f: &FieldSpec) -> Vec<OptionView> {
    let Ok(filter) = EntityFilter::parse_params(&form::picker_filters(f)) else {
        return vec![];
    };
    let Ok(page) = catalog.query(&QueryParams {
        filter,
        limit: Some(PICKER_SUGGESTIONS),
        order_fields: vec![OrderField {
            field: "metadata.name".into(),
            order: Order::Asc,
        }],
        ..Default::default()
    }) else {
        return vec![];
    };
    page.items
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter_map(|e| {
            let r = EntityRef::of_entity(&e).ok()?;
            let title = title_of(&e);
            Some(OptionView {
                label: format!("{title} ({})", r.kind),
                value: r.to_string(),
                selected: false,
            })
        })
        .collect()
}

/// `POST …/validate`: the problems with one page of the form, as JSON
/// (`{"errors": [{"field", "message"}]}`), for the wizard's Next. Refusals
/// are the API's error JSON.
async fn validate(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let submitted = Submitted::parse(&body);
    let loaded = async {
        require_user(&ctx)?;
        ctx.check_form(&req, submitted.get("csrf").unwrap_or_default())?;
        load(&ctx, &svc, &path, false).await
    }
    .await
    .map_err(|e| match e {
        PageError::SignIn(_) => ApiError::unauthenticated("Sign in again."),
        PageError::Forbidden(m) => ApiError::not_allowed(m),
        PageError::NotFound(m) => ApiError::not_found(m),
        PageError::Input(m) => ApiError::input(m),
        PageError::Internal(e) => ApiError::internal(e),
    })?;
    let specs = form::pages(&loaded.template);
    let index = submitted
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|i| *i < specs.len())
        .ok_or_else(|| ApiError::input(format!("page must be a number below {}", specs.len())))?;
    let fields: Vec<&FieldSpec> = specs[index].fields.iter().collect();
    let decoded = form::decode(fields.iter().copied(), &submitted);
    let errors = form::check(&loaded.template, &[index], &fields, &decoded, false);
    Ok(HttpResponse::Ok().json(json!({ "page": index, "errors": errors })))
}

/// `POST` on the form: create the task, or show the form again with its problems.
async fn create(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let submitted = Submitted::parse(&body);
    let result = async {
        // Signed out is "sign in", not "expired form".
        require_user(&ctx)?;
        ctx.check_form(&req, submitted.get("csrf").unwrap_or_default())?;
        let loaded = load(&ctx, &svc, &path, false).await?;
        let specs = form::pages(&loaded.template);
        let fields: Vec<&FieldSpec> = specs.iter().flat_map(|p| p.fields.iter()).collect();
        let decoded = form::decode(fields.iter().copied(), &submitted);
        let all: Vec<usize> = (0..specs.len()).collect();
        let mut errors = form::check(&loaded.template, &all, &fields, &decoded, true);
        if errors.is_empty() {
            let request = TaskRequest {
                template_ref: loaded.template.entity_ref.clone(),
                values: Value::Object(decoded.values),
                secrets: Some(decoded.secrets),
            };
            match svc.create_task(&ctx.principal, request).await {
                Ok(id) => return Ok(Ok(id)),
                // Checked above already; should the template have changed in between, say so the same way.
                Err(ScaffolderError::Invalid { message, .. }) => errors.push(FormError {
                    field: String::new(),
                    message,
                }),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Err(form_page(
            &ctx,
            &svc.catalog,
            &loaded,
            Some(&submitted),
            &errors,
        )))
    }
    .await;
    match result {
        Ok(Ok(id)) => HttpResponse::SeeOther()
            .insert_header((
                actix_web::http::header::LOCATION,
                format!("/create/tasks/{}", super::super::encode(&id)),
            ))
            .finish(),
        Ok(Err(page)) => {
            let mut res = ctx.respond(Ok::<_, PageError>(page));
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            // A page, not an API error: keep its body.
            res.extensions_mut().insert(RenderedPage);
            res
        }
        Err(e) => ctx.error_page(&e),
    }
}
