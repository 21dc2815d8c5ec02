//! `GET /create`: the templates this person may run, as cards, narrowed by a
//! search over title, name and description and by tag and owner. The filters
//! are a GET form, so a view works without script and can be shared.
//!
//! Only templates that are published and usable by the viewer (the admins'
//! curation, `ScaffolderService::may_use`) are listed; admins see unpublished
//! ones on the admin page, not here.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;

use super::super::entity::entity_href;
use super::super::{short_ref, Layout, PageContext, PageError};
use super::{form_href, require_user, title_of, Svc};
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::model::EntityRef;
use crate::catalog::service::QueryParams;
use crate::scaffolder::ScaffolderService;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/create", web::get().to(gallery));
}

/// More templates than any catalog holds; the page lists them all at once.
const MAX_TEMPLATES: u64 = 2000;
const MAX_QUERY: usize = 200;

#[derive(Deserialize)]
struct GalleryQuery {
    q: Option<String>,
    tag: Option<String>,
    owner: Option<String>,
}

pub struct Card {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub owner: Option<Owner>,
    pub href: String,
    pub entity_ref: String,
}

pub struct Owner {
    pub label: String,
    pub href: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "pages/create_gallery.html")]
struct GalleryPage {
    layout: Layout,
    q: String,
    tags: Vec<Choice>,
    owners: Vec<Choice>,
    cards: Vec<Card>,
    /// Templates usable before the filters.
    usable: usize,
    filtered: bool,
}

async fn gallery(ctx: PageContext, svc: Svc, q: web::Query<GalleryQuery>) -> HttpResponse {
    let result = build(&ctx, &svc, &q).await;
    ctx.respond(result)
}

/// A template entity and what the cards and filters need of it.
struct Listed {
    entity: Value,
    entity_ref: EntityRef,
    owner: Option<EntityRef>,
}

async fn build(
    ctx: &PageContext,
    svc: &ScaffolderService,
    q: &GalleryQuery,
) -> Result<GalleryPage, PageError> {
    require_user(ctx)?;
    let text = q.q.as_deref().unwrap_or_default().trim().to_string();
    if text.chars().count() > MAX_QUERY {
        return Err(PageError::Input(format!(
            "The search is longer than {MAX_QUERY} characters."
        )));
    }
    let tag = q.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let owner = q.owner.as_deref().map(str::trim).filter(|o| !o.is_empty());

    let page = svc.catalog.query(&QueryParams {
        filter: EntityFilter {
            any_of: vec![vec![Condition {
                key: "kind".into(),
                values: Some(vec!["template".into()]),
            }]],
        },
        limit: Some(MAX_TEMPLATES),
        ..Default::default()
    })?;
    let curations = svc.curations().await?;
    let mut usable: Vec<Listed> = page
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter_map(|entity| {
            let entity_ref = EntityRef::of_entity(&entity).ok()?;
            let curation = curations
                .get(&entity_ref.to_string())
                .cloned()
                .unwrap_or_default();
            if !curation.published || !ScaffolderService::may_use(&ctx.principal, &curation) {
                return None;
            }
            let owner = entity["spec"]["owner"]
                .as_str()
                .and_then(|o| EntityRef::parse(o, Some("group"), &entity_ref.namespace).ok());
            Some(Listed {
                entity,
                entity_ref,
                owner,
            })
        })
        .collect();
    usable.sort_by_key(|l| (title_of(&l.entity).to_lowercase(), l.entity_ref.key()));

    let tags = choices(
        usable.iter().flat_map(|l| tags_of(&l.entity)),
        |t| t.clone(),
        tag,
    );
    let owners = choices(
        usable.iter().filter_map(|l| l.owner.clone()),
        |r| short_ref(&r.to_string()),
        owner,
    );
    let needle = text.to_lowercase();
    let cards: Vec<Card> = usable
        .iter()
        .filter(|l| {
            let meta = &l.entity["metadata"];
            needle.is_empty()
                || ["title", "name", "description"].iter().any(|k| {
                    meta[*k]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(&needle))
                })
        })
        .filter(|l| tag.is_none_or(|t| tags_of(&l.entity).iter().any(|x| x == t)))
        .filter(|l| owner.is_none_or(|o| l.owner.as_ref().is_some_and(|r| r.to_string() == o)))
        .filter_map(|l| {
            Some(Card {
                title: title_of(&l.entity),
                description: l.entity["metadata"]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                tags: tags_of(&l.entity),
                owner: l.owner.as_ref().map(|r| Owner {
                    label: short_ref(&r.to_string()),
                    href: entity_href(r),
                }),
                href: form_href(&l.entity_ref.to_string())?,
                entity_ref: l.entity_ref.to_string(),
            })
        })
        .collect();
    Ok(GalleryPage {
        layout: ctx.layout("Create", "create"),
        q: text.clone(),
        tags,
        owners,
        usable: usable.len(),
        filtered: !text.is_empty() || tag.is_some() || owner.is_some(),
        cards,
    })
}

fn tags_of(entity: &Value) -> Vec<String> {
    entity["metadata"]["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The distinct values for a filter's select, with their counts, by label.
fn choices<T: ToString>(
    items: impl Iterator<Item = T>,
    label: impl Fn(&T) -> String,
    chosen: Option<&str>,
) -> Vec<Choice> {
    let mut counts: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    for item in items {
        let value = item.to_string();
        counts.entry(value).or_insert_with(|| (label(&item), 0)).1 += 1;
    }
    let mut out: Vec<Choice> = counts
        .into_iter()
        .map(|(value, (label, n))| Choice {
            selected: chosen == Some(value.as_str()),
            label: format!("{label} ({n})"),
            value,
        })
        .collect();
    // A chosen value that no template has any longer still shows as chosen.
    if let Some(c) = chosen {
        if !out.iter().any(|o| o.selected) {
            out.push(Choice {
                value: c.to_string(),
                label: format!("{c} (0)"),
                selected: true,
            });
        }
    }
    out.sort_by_key(|c| c.label.to_lowercase());
    out
}
