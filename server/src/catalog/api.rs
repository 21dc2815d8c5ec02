//! `/api/catalog`: Backstage's catalog REST API, route for route.
//!
//! Handlers parse their input, call one `CatalogService` operation and shape the
//! reply exactly as Backstage does. No rules live here.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::filter::EntityFilter;
use super::index::Order;
use super::ingest::LocationSpec;
use super::model::EntityRef;
use super::service::{
    CatalogService, Cursor, FullText, ListParams, OrderField, QueryParams, MAX_LIMIT,
};
use crate::auth::Principal;
use crate::error::ApiError;

const OPENAPI: &str = include_str!("openapi.json");
const MAX_REFS: usize = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/catalog")
            .route("/openapi.json", web::get().to(openapi))
            .route("/entities", web::get().to(list_entities))
            .route("/entities/by-query", web::get().to(query_entities))
            .route("/entities/by-refs", web::post().to(entities_by_refs))
            .route("/entities/by-uid/{uid}", web::get().to(entity_by_uid))
            .route("/entities/by-uid/{uid}", web::delete().to(delete_entity))
            .route(
                "/entities/by-name/{kind}/{namespace}/{name}",
                web::get().to(entity_by_name),
            )
            .route(
                "/entities/by-name/{kind}/{namespace}/{name}/ancestry",
                web::get().to(entity_ancestry),
            )
            .route("/entity-facets", web::get().to(facets))
            .route("/refresh", web::post().to(refresh))
            .route("/locations", web::get().to(list_locations))
            .route("/locations", web::post().to(add_location))
            .route(
                "/locations/by-entity/{kind}/{namespace}/{name}",
                web::get().to(location_by_entity),
            )
            .route("/locations/{id}", web::get().to(get_location))
            .route("/locations/{id}", web::delete().to(delete_location))
            .route("/validate-entity", web::post().to(validate_entity))
            .route("/analyze-location", web::post().to(analyze_location)),
    );
}

type Svc = web::Data<CatalogService>;

fn json_bytes<B: actix_web::body::MessageBody + 'static>(
    status: actix_web::http::StatusCode,
    body: B,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
        .body(body)
}

fn ok_json<B: actix_web::body::MessageBody + 'static>(body: B) -> HttpResponse {
    json_bytes(actix_web::http::StatusCode::OK, body)
}

/// The query string as ordered pairs; repeated keys stay repeated.
fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, ApiError> {
    let values = all(pairs, key);
    match values.len() {
        0 => Ok(None),
        1 => Ok(Some(values[0])),
        _ => Err(ApiError::input(format!(
            "Only one {key} parameter is allowed"
        ))),
    }
}

fn number(pairs: &[(String, String)], key: &str, max: u64) -> Result<Option<u64>, ApiError> {
    let Some(raw) = one(pairs, key)? else {
        return Ok(None);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(ApiError::input(format!(
            "Invalid {key} \"{raw}\": expected an integer from 0 to {max}"
        ))),
    }
}

fn fields(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let list: Vec<String> = all(pairs, "fields")
        .into_iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    (!list.is_empty()).then_some(list)
}

fn filter(pairs: &[(String, String)]) -> Result<EntityFilter, ApiError> {
    Ok(EntityFilter::parse_params(&all(pairs, "filter"))?)
}

fn parse_order(raw: &str, sep: char, field_first: bool) -> Result<OrderField, ApiError> {
    let bad = || {
        ApiError::input(if field_first {
            format!("Invalid orderField \"{raw}\", expected field,asc or field,desc")
        } else {
            format!("Invalid order \"{raw}\", expected asc:field or desc:field")
        })
    };
    let (a, b) = raw.split_once(sep).ok_or_else(bad)?;
    let (field, dir) = if field_first { (a, b) } else { (b, a) };
    let order = match dir.trim() {
        "asc" => Order::Asc,
        "desc" => Order::Desc,
        _ => return Err(bad()),
    };
    let field = field.trim();
    if field.is_empty() {
        return Err(bad());
    }
    Ok(OrderField {
        field: field.to_lowercase(),
        order,
    })
}

#[derive(serde::Serialize, Deserialize)]
struct AfterCursor {
    offset: u64,
}

async fn openapi() -> HttpResponse {
    ok_json(OPENAPI)
}

async fn list_entities(svc: Svc, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    let mut offset = number(&pairs, "offset", u64::MAX >> 1)?;
    if let Some(after) = one(&pairs, "after")? {
        let decoded: AfterCursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(after.trim())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::input("Malformed after cursor"))?;
        offset = Some(decoded.offset);
    }
    let params = ListParams {
        filter: filter(&pairs)?,
        fields: fields(&pairs),
        limit: number(&pairs, "limit", MAX_LIMIT)?,
        offset,
        order: all(&pairs, "order")
            .into_iter()
            .map(|o| parse_order(o, ':', false))
            .collect::<Result<_, _>>()?,
    };
    let page = svc.list(&params)?;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"));
    if let Some(next) = page.next_offset {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&AfterCursor { offset: next }).unwrap_or_default());
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != "offset" && k != "after") {
            query.append_pair(k, v);
        }
        query.append_pair("after", &cursor);
        res.insert_header((
            header::LINK,
            format!("<{}?{}>; rel=\"next\"", req.path(), query.finish()),
        ));
    }
    Ok(res.body(page.body))
}

async fn query_entities(svc: Svc, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    let cursor = match one(&pairs, "cursor")? {
        None => None,
        Some(raw) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .ok()
                .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
                .ok_or_else(|| ApiError::input("Malformed cursor, could not be parsed"))?,
        ),
    };
    let term = one(&pairs, "fullTextFilterTerm")?.map(|t| t.trim().to_lowercase());
    let ft_fields: Vec<String> = one(&pairs, "fullTextFilterFields")?
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let params = QueryParams {
        filter: filter(&pairs)?,
        fields: fields(&pairs),
        limit: number(&pairs, "limit", MAX_LIMIT)?,
        offset: number(&pairs, "offset", u64::MAX >> 1)?,
        order_fields: all(&pairs, "orderField")
            .into_iter()
            .map(|o| parse_order(o, ',', true))
            .collect::<Result<_, _>>()?,
        cursor,
        full_text: term.filter(|t| !t.is_empty()).map(|term| FullText {
            term,
            fields: ft_fields,
        }),
    };
    let page = svc.query(&params)?;
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(b"{\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"],\"totalItems\":");
    body.extend_from_slice(page.total_items.to_string().as_bytes());
    let mut info = serde_json::Map::new();
    if let Some(n) = page.next_cursor {
        info.insert("nextCursor".into(), json!(n));
    }
    if let Some(p) = page.prev_cursor {
        info.insert("prevCursor".into(), json!(p));
    }
    body.extend_from_slice(b",\"pageInfo\":");
    body.extend_from_slice(Value::Object(info).to_string().as_bytes());
    body.push(b'}');
    Ok(ok_json(body))
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with an entityRefs array of strings"
)]
struct ByRefsBody {
    entity_refs: Vec<Value>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

async fn entities_by_refs(
    svc: Svc,
    req: HttpRequest,
    body: web::Json<ByRefsBody>,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    let body = body.into_inner();
    if body.entity_refs.len() > MAX_REFS {
        return Err(ApiError::input(format!(
            "At most {MAX_REFS} entityRefs may be requested at once"
        )));
    }
    let refs: Vec<String> = body
        .entity_refs
        .iter()
        .map(|r| {
            r.as_str()
                .map(String::from)
                .ok_or_else(|| ApiError::input("entityRefs must be strings"))
        })
        .collect::<Result<_, _>>()?;
    let fields = body
        .fields
        .filter(|f| !f.is_empty())
        .or_else(|| fields(&pairs));
    let items = svc.by_refs(&refs, &fields, &filter(&pairs)?);
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item {
            Some(b) => out.extend_from_slice(b),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"]}");
    Ok(ok_json(out))
}

async fn entity_by_uid(svc: Svc, uid: web::Path<String>) -> Result<HttpResponse, ApiError> {
    svc.by_uid(&uid)
        .map(ok_json)
        .ok_or_else(|| ApiError::not_found(format!("No entity with uid {uid}")))
}

async fn delete_entity(
    svc: Svc,
    principal: Principal,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&principal, "delete entities")?;
    svc.delete_entity_by_uid(&uid).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn require_admin(principal: &Principal, what: &str) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::not_allowed(format!("Only admins may {what}")))
    }
}

fn path_ref(p: &(String, String, String)) -> Result<EntityRef, ApiError> {
    let r = EntityRef {
        kind: p.0.clone(),
        namespace: p.1.clone(),
        name: p.2.clone(),
    };
    if r.kind.is_empty() || r.namespace.is_empty() || r.name.is_empty() {
        return Err(ApiError::input("Entity reference parts must not be empty"));
    }
    Ok(r)
}

async fn entity_by_name(
    svc: Svc,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let r = path_ref(&path)?;
    svc.by_ref(&r).map(ok_json).ok_or_else(|| {
        ApiError::not_found(format!(
            "No entity named '{}' found, with kind '{}' in namespace '{}'",
            r.name, r.kind, r.namespace
        ))
    })
}

async fn entity_ancestry(
    svc: Svc,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let r = path_ref(&path)?;
    Ok(ok_json(svc.ancestry(&r)?.to_string()))
}

async fn facets(svc: Svc, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    let facets: Vec<String> = all(&pairs, "facet")
        .into_iter()
        .map(|f| f.trim().to_string())
        .collect();
    if facets.is_empty() || facets.iter().any(String::is_empty) {
        return Err(ApiError::input(
            "At least one non-empty facet parameter is required",
        ));
    }
    Ok(ok_json(svc.facets(&facets, &filter(&pairs)?).to_string()))
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with an entityRef string"
)]
struct RefreshBody {
    entity_ref: String,
    #[serde(default)]
    #[allow(dead_code)]
    authorization_token: Option<String>,
}

async fn refresh(
    svc: Svc,
    principal: Principal,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let r = EntityRef::parse(&body.entity_ref, None, "default")
        .map_err(|e| ApiError::input(e.to_string()))?;
    if !principal.is_admin() {
        let owners = svc.owners_of(&r);
        let is_self = principal
            .user()
            .is_some_and(|u| u.identity.user_ref.eq_ignore_ascii_case(&r.to_string()));
        if !is_self && !owners.iter().any(|o| principal.owns(Some(o))) {
            return Err(ApiError::not_allowed(format!(
                "Only the owners of {r} and admins may refresh it"
            )));
        }
    }
    svc.refresh_entity(&r).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn list_locations(svc: Svc) -> Result<HttpResponse, ApiError> {
    let list: Vec<Value> = svc
        .list_locations()
        .await?
        .into_iter()
        .map(|l| json!({ "data": l }))
        .collect();
    Ok(ok_json(Value::Array(list).to_string()))
}

#[derive(Deserialize)]
#[serde(expecting = "a location: an object with type and target strings")]
struct LocationBody {
    #[serde(rename = "type")]
    kind: String,
    target: String,
}

async fn add_location(
    svc: Svc,
    principal: Principal,
    req: HttpRequest,
    body: web::Json<LocationBody>,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    let dry_run = match one(&pairs, "dryRun")? {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::input(format!(
                "Invalid dryRun \"{other}\", expected true or false"
            )))
        }
    };
    if !dry_run {
        require_admin(&principal, "register locations")?;
    }
    let body = body.into_inner();
    let (location, entities, exists) = svc
        .add_location(
            LocationSpec {
                kind: body.kind,
                target: body.target,
            },
            dry_run,
        )
        .await?;
    let mut out = json!({"location": location, "entities": entities});
    if dry_run {
        out["exists"] = json!(exists);
    }
    Ok(json_bytes(
        actix_web::http::StatusCode::CREATED,
        out.to_string(),
    ))
}

async fn get_location(svc: Svc, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(ok_json(
        serde_json::to_string(&svc.get_location(&id).await?).unwrap_or_default(),
    ))
}

async fn delete_location(
    svc: Svc,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&principal, "unregister locations")?;
    svc.delete_location(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn location_by_entity(
    svc: Svc,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let r = path_ref(&path)?;
    Ok(ok_json(
        serde_json::to_string(&svc.location_by_entity(&r).await?).unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
#[serde(expecting = "an object with an entity object and a location string")]
struct ValidateBody {
    entity: Value,
    location: String,
}

async fn validate_entity(
    svc: Svc,
    body: web::Json<ValidateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !body.entity.is_object() {
        return Err(ApiError::input("entity must be an object"));
    }
    svc.validate(body.entity, &body.location).await?;
    Ok(HttpResponse::Ok().finish())
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with a location of type and target"
)]
struct AnalyzeBody {
    location: LocationBody,
    #[serde(default)]
    #[allow(dead_code)]
    catalog_filename: Option<String>,
}

async fn analyze_location(
    svc: Svc,
    body: web::Json<AnalyzeBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let out = svc
        .analyze(LocationSpec {
            kind: body.location.kind,
            target: body.location.target,
        })
        .await?;
    Ok(ok_json(out.to_string()))
}
