//! The home page, `GET /`: a search box into the catalog, what the signed-in
//! person and their teams own, and what changed in the catalog lately. Owned
//! entities come from the in-memory index (a filter on `relations.ownedBy`
//! with the session's ownership refs); recent changes from the catalog's
//! change feed. Signed out on an open server, only the search and the changes.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::catalog::{
    count_of_kind, facet_values, Cell, KindLink, Table, OWNED_COLUMNS, RECENT_COLUMNS,
};
use super::{Layout, PageContext, PageError};
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::index::Order;
use crate::catalog::service::{CatalogService, OrderField, QueryParams};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home_page));
}

/// Owned entities listed on the page; the catalog page has the rest.
const OWNED_SHOWN: u64 = 20;
const RECENT_SHOWN: usize = 10;

#[derive(Template)]
#[template(path = "pages/home.html")]
struct HomePage {
    layout: Layout,
    owned: Option<Owned>,
    recent: Table,
}

/// What the signed-in person and their groups own.
struct Owned {
    total: u64,
    table: Table,
    /// The full lists, one per kind, on the catalog page.
    kinds: Vec<KindLink>,
}

async fn home_page(ctx: PageContext, svc: web::Data<CatalogService>) -> HttpResponse {
    let result = match ctx.require_viewer() {
        Ok(()) => build_page(&ctx, &svc).await,
        Err(e) => Err(e),
    };
    ctx.respond(result)
}

async fn build_page(ctx: &PageContext, svc: &CatalogService) -> Result<HomePage, PageError> {
    let owned = match ctx.principal.user() {
        Some(user) => Some(owned(svc, &user.identity.ownership)?),
        None => None,
    };
    let changes = svc.recently_changed(RECENT_SHOWN).await?;
    let now = crate::catalog::now_ms();
    let (entities, times): (Vec<Value>, Vec<Cell>) = changes
        .iter()
        .filter_map(|c| {
            let entity = serde_json::from_slice(&c.entity).ok()?;
            Some((entity, changed_cell(c.changed_at, now)))
        })
        .unzip();
    let mut recent = Table::new(
        "recent-changes",
        "Recently changed entities".into(),
        RECENT_COLUMNS,
        &entities,
    );
    recent.push_column("Changed", false, times);
    Ok(HomePage {
        layout: ctx.layout("Home", "home"),
        owned,
        recent,
    })
}

fn owned(svc: &CatalogService, ownership: &[String]) -> Result<Owned, PageError> {
    let filter = EntityFilter {
        any_of: vec![vec![Condition {
            key: "relations.ownedby".into(),
            values: Some(ownership.iter().map(|r| r.to_lowercase()).collect()),
        }]],
    };
    let page = svc.query(&QueryParams {
        filter: filter.clone(),
        limit: Some(OWNED_SHOWN),
        order_fields: vec![OrderField {
            field: "metadata.name".into(),
            order: Order::Asc,
        }],
        ..Default::default()
    })?;
    let entities: Vec<Value> = page
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let owners = super::encode(&ownership.join(","));
    let facets = svc.facets(&["kind".to_string()], &filter);
    let mut kinds = facet_values(&facets, "kind");
    kinds.sort();
    Ok(Owned {
        total: page.total_items,
        table: Table::new(
            "owned-entities",
            "Entities owned by you and your teams".into(),
            OWNED_COLUMNS,
            &entities,
        ),
        kinds: kinds
            .into_iter()
            .map(|(kind, n)| KindLink {
                href: format!(
                    "/catalog?kind={}&owner={owners}",
                    super::encode(&kind.to_lowercase())
                ),
                text: count_of_kind(&kind, n),
            })
            .collect(),
    })
}

/// "5 minutes ago", with the exact time for machines and tooltips.
fn changed_cell(at_ms: i64, now_ms: i64) -> Cell {
    let Some(at) = chrono::DateTime::from_timestamp_millis(at_ms) else {
        return Cell::Empty;
    };
    Cell::Time {
        iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        text: ago(now_ms.saturating_sub(at_ms) / 1000, &at),
    }
}

fn ago(seconds: i64, at: &chrono::DateTime<chrono::Utc>) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match seconds {
        s if s < 60 => "just now".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s if s < 7 * 86_400 => plural(s / 86_400, "day"),
        _ => at.format("%Y-%m-%d").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let at = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
        assert_eq!(ago(5, &at), "just now");
        assert_eq!(ago(60, &at), "1 minute ago");
        assert_eq!(ago(7200, &at), "2 hours ago");
        assert_eq!(ago(86_400 * 3, &at), "3 days ago");
        assert_eq!(ago(86_400 * 30, &at), "1970-01-01");
    }
}
