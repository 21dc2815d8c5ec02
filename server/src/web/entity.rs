//! The entity page, `/catalog/{namespace}/{kind}/{name}` (Backstage's front-end
//! URL shape), and its two actions: refresh (owners and admins) and unregister
//! (admins).
//!
//! Everything on the page comes from the catalog's in-memory index: the entity
//! itself, its neighbours, and the entities it owns, each looked up once per
//! request and capped, so a page costs the same at ten or ten thousand
//! entities. Only unregistering asks the database (for the entity's location).
//! Catalog text reaches the page through askama's escaping alone; link targets
//! pass `safe_href` first. The graph's geometry lives in `graph.rs`.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;

use super::graph::{self, Graph, GraphEntity, RelationGroup};
use super::{safe_href, short_ref, Layout, PageContext, PageError};
use crate::auth::Principal;
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::model::EntityRef;
use crate::catalog::service::{CatalogService, ListParams, QueryParams};
use crate::catalog::CatalogError;

/// Rows shown in one table; the rest are counted.
const TABLE_LIMIT: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/catalog/{namespace}/{kind}/{name}",
        web::get().to(entity_page),
    )
    .route(
        "/catalog/{namespace}/{kind}/{name}/refresh",
        web::post().to(refresh),
    )
    .route(
        "/catalog/{namespace}/{kind}/{name}/unregister",
        web::post().to(unregister),
    );
}

type Svc = web::Data<CatalogService>;
type RefPath = web::Path<(String, String, String)>;

/// The page's link to an entity: kind and namespace lowercased, as Backstage's front end writes them.
pub fn entity_href(r: &EntityRef) -> String {
    format!(
        "/catalog/{}/{}/{}",
        path_segment(&r.namespace.to_lowercase()),
        path_segment(&r.kind.to_lowercase()),
        path_segment(&r.name)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_ref(path: &(String, String, String)) -> EntityRef {
    let (namespace, kind, name) = path;
    EntityRef {
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
    }
}

fn not_found(r: &EntityRef) -> PageError {
    PageError::NotFound(format!(
        "There is no {} named \"{}\" in namespace \"{}\".",
        r.kind, r.name, r.namespace
    ))
}

// ------------------------------------------------------------------ the page

#[derive(Deserialize)]
struct PageQuery {
    notice: Option<String>,
}

/// A link to another page.
pub struct Link {
    pub href: String,
    pub label: String,
}

/// A badge in the header; linked when it names an entity.
pub struct Badge {
    pub term: &'static str,
    pub text: String,
    pub href: Option<String>,
}

/// One line of the About card: a term and its values, each possibly a link.
pub struct Fact {
    pub term: &'static str,
    pub values: Vec<FactValue>,
}

pub struct FactValue {
    pub text: String,
    pub href: Option<String>,
}

/// An entry of `metadata.links`: linked only when its scheme is http(s).
pub struct LinkItem {
    pub label: String,
    pub url: String,
    pub href: Option<String>,
}

pub struct Annotation {
    pub key: String,
    pub value: String,
    pub href: Option<String>,
}

/// A table of related entities.
pub struct Table {
    pub id: &'static str,
    pub heading: &'static str,
    pub hint: &'static str,
    pub empty: &'static str,
    pub rows: Vec<Row>,
    /// Rows left out beyond [`TABLE_LIMIT`].
    pub more: usize,
    pub show_owner: bool,
}

pub struct Row {
    pub href: String,
    pub title: String,
    pub kind: String,
    pub owner: Option<Link>,
    /// `spec.type`.
    pub spec_type: String,
    pub lifecycle: String,
    pub description: String,
    /// The ref names no entity in the catalog.
    pub missing: bool,
}

pub struct Member {
    pub href: String,
    pub name: String,
    pub entity_ref: String,
    pub email: Option<String>,
    pub mailto: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/entity.html")]
struct EntityPage {
    layout: Layout,
    notice: Option<&'static str>,
    self_href: String,
    entity_ref: String,
    kind: String,
    title: String,
    badges: Vec<Badge>,
    description: String,
    facts: Vec<Fact>,
    links: Vec<LinkItem>,
    tags: Vec<String>,
    annotations: Vec<Annotation>,
    errors: Vec<String>,
    graph: Graph,
    members: Option<Vec<Member>>,
    members_more: usize,
    tables: Vec<Table>,
    yaml: String,
    can_refresh: bool,
    can_unregister: bool,
}

async fn entity_page(
    ctx: PageContext,
    svc: Svc,
    path: RefPath,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    ctx.respond(page(&ctx, &svc, &path, q.notice.as_deref()))
}

fn page(
    ctx: &PageContext,
    svc: &CatalogService,
    path: &(String, String, String),
    notice: Option<&str>,
) -> Result<EntityPage, PageError> {
    ctx.require_viewer()?;
    let r = path_ref(path);
    let bytes = svc.by_ref(&r).ok_or_else(|| not_found(&r))?;
    let entity: Value = serde_json::from_slice(&bytes)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("stored entity: {e}")))?;
    let me = EntityRef::of_entity(&entity)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("stored entity: {e}")))?;
    let yaml = serde_json::from_slice::<serde_yaml_ng::Value>(&bytes)
        .ok()
        .and_then(|v| serde_yaml_ng::to_string(&v).ok())
        .unwrap_or_default();
    let view = View::build(svc, &entity, &me)?;
    // Forms need the session's token: without a session there are no buttons.
    let has_session = ctx.principal.user().is_some_and(|u| u.csrf.is_some());
    let can_refresh = has_session && may_refresh(&ctx.principal, svc, &me);
    let can_unregister = has_session && ctx.principal.is_admin() && !svc.readonly;
    Ok(EntityPage {
        layout: ctx.layout(view.title.clone(), "catalog"),
        notice: notice.and_then(notice_text),
        self_href: entity_href(&me),
        entity_ref: me.to_string(),
        kind: view.kind,
        title: view.title,
        badges: view.badges,
        description: view.description,
        facts: view.facts,
        links: view.links,
        tags: view.tags,
        annotations: view.annotations,
        errors: view.errors,
        graph: view.graph,
        members: view.members,
        members_more: view.members_more,
        tables: view.tables,
        yaml,
        can_refresh,
        can_unregister,
    })
}

/// The notices that actions redirect with; anything else is ignored.
fn notice_text(code: &str) -> Option<&'static str> {
    match code {
        "refreshed" => Some("Refreshed: the entity's location was read again."),
        _ => None,
    }
}

/// Admins, the entity's owners, and a user refreshing their own User entity: as the API decides.
fn may_refresh(principal: &Principal, svc: &CatalogService, r: &EntityRef) -> bool {
    if principal.is_admin() {
        return true;
    }
    let is_self = principal
        .user()
        .is_some_and(|u| u.identity.user_ref.eq_ignore_ascii_case(&r.to_string()));
    is_self
        || svc
            .owners_of(r)
            .iter()
            .any(|o| principal.owns(Some(o.as_str())))
}

// ------------------------------------------------------------------ actions

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Re-reads the entity's location now, then goes back to the page.
async fn refresh(
    ctx: PageContext,
    req: HttpRequest,
    svc: Svc,
    path: RefPath,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let result = async {
        ctx.check_form(&req, &form.csrf)?;
        let me = stored_ref(&svc, &path_ref(&path))?;
        if !may_refresh(&ctx.principal, &svc, &me) {
            return Err(PageError::Forbidden(format!(
                "Only the owners of {me} and admins may refresh it."
            )));
        }
        svc.refresh_entity(&me).await?;
        Ok(see_other(format!("{}?notice=refreshed", entity_href(&me))))
    }
    .await;
    result.unwrap_or_else(|e| ctx.error_page(&e))
}

/// Removes the location the entity came from, and with it every entity it provided.
async fn unregister(
    ctx: PageContext,
    req: HttpRequest,
    svc: Svc,
    path: RefPath,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let result = async {
        ctx.check_form(&req, &form.csrf)?;
        if !ctx.principal.is_admin() {
            return Err(PageError::Forbidden(
                "Only admins may unregister entities.".into(),
            ));
        }
        let me = stored_ref(&svc, &path_ref(&path))?;
        let location = svc.location_by_entity(&me).await?;
        svc.delete_location(&location.id)
            .await
            .map_err(|e| match e {
                CatalogError::NotAllowed(m) => {
                    PageError::Forbidden(format!("{me} cannot be unregistered here: {m}"))
                }
                other => other.into(),
            })?;
        let notice = format!(
            "Unregistered {me}: its location {}:{} and every entity from it left the catalog",
            location.kind, location.target
        );
        Ok(super::see_other_with_flash(&ctx.auth, "/catalog", &notice))
    }
    .await;
    result.unwrap_or_else(|e| ctx.error_page(&e))
}

/// The entity's ref as stored (its own spelling), or the 404 page.
fn stored_ref(svc: &CatalogService, r: &EntityRef) -> Result<EntityRef, PageError> {
    let bytes = svc.by_ref(r).ok_or_else(|| not_found(r))?;
    let entity: Value = serde_json::from_slice(&bytes)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("stored entity: {e}")))?;
    EntityRef::of_entity(&entity)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("stored entity: {e}")))
}

// ------------------------------------------------------------------ reading the index

/// What the page shows of a related entity.
struct Summary {
    kind: String,
    title: String,
    description: String,
    spec_type: String,
    lifecycle: String,
    owners: Vec<String>,
    email: Option<String>,
    relations: Vec<(String, String)>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn relations_of(entity: &Value) -> Vec<(String, String)> {
    entity["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["type"].as_str()?.to_string(),
                r["targetRef"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The title people know an entity by: `metadata.title`, a profile's display name, or the name.
fn title_of(entity: &Value) -> String {
    text(entity, "/metadata/title")
        .or_else(|| text(entity, "/spec/profile/displayName"))
        .or_else(|| text(entity, "/metadata/name"))
        .unwrap_or_default()
        .to_string()
}

fn summary_of(entity: &Value) -> Summary {
    let relations = relations_of(entity);
    Summary {
        kind: text(entity, "/kind").unwrap_or_default().to_string(),
        title: title_of(entity),
        description: text(entity, "/metadata/description")
            .unwrap_or_default()
            .to_string(),
        spec_type: text(entity, "/spec/type").unwrap_or_default().to_string(),
        lifecycle: text(entity, "/spec/lifecycle")
            .unwrap_or_default()
            .to_string(),
        owners: relations
            .iter()
            .filter(|(t, _)| t == "ownedBy")
            .map(|(_, r)| r.clone())
            .collect(),
        email: text(entity, "/spec/profile/email").map(str::to_string),
        relations,
    }
}

/// Related entities, each read from the index at most once per page.
struct Lookup<'a> {
    svc: &'a CatalogService,
    found: HashMap<String, Option<Summary>>,
}

impl<'a> Lookup<'a> {
    fn new(svc: &'a CatalogService) -> Self {
        Lookup {
            svc,
            found: HashMap::new(),
        }
    }

    fn key(r: &str) -> String {
        EntityRef::parse(r, None, "default")
            .map(|r| r.key())
            .unwrap_or_else(|_| r.to_lowercase())
    }

    /// Reads the entities not read yet, and then their owners, for the owner column.
    fn fetch<'r>(&mut self, refs: impl IntoIterator<Item = &'r String>) {
        let fresh = self.fetch_exact(refs);
        let owners: Vec<String> = fresh
            .iter()
            .filter_map(|r| self.get(r)?.owners.first().cloned())
            .collect();
        self.fetch_exact(&owners);
    }

    /// Reads the entities not read yet; returns the refs it read.
    fn fetch_exact<'r>(&mut self, refs: impl IntoIterator<Item = &'r String>) -> Vec<String> {
        let mut missing: Vec<String> = refs
            .into_iter()
            .filter(|r| !self.found.contains_key(&Self::key(r)))
            .cloned()
            .collect();
        sort_refs(&mut missing);
        if missing.is_empty() {
            return missing;
        }
        let docs = self.svc.by_refs(&missing, &None, &EntityFilter::default());
        for (r, doc) in missing.iter().zip(docs) {
            let summary = doc
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .map(|v| summary_of(&v));
            self.found.insert(Self::key(r), summary);
        }
        missing
    }

    fn get(&self, r: &str) -> Option<&Summary> {
        self.found.get(&Self::key(r)).and_then(Option::as_ref)
    }

    /// A link to an entity, labelled with its title when it is known.
    fn link(&self, r: &str) -> Link {
        Link {
            href: href_of(r),
            label: self
                .get(r)
                .map(|s| s.title.clone())
                .unwrap_or_else(|| short_ref(r)),
        }
    }

    fn row(&self, r: &str) -> Row {
        let parsed = EntityRef::parse(r, None, "default").ok();
        match self.get(r) {
            Some(s) => Row {
                href: href_of(r),
                title: s.title.clone(),
                kind: s.kind.clone(),
                owner: s.owners.first().map(|o| self.link(o)),
                spec_type: s.spec_type.clone(),
                lifecycle: s.lifecycle.clone(),
                description: s.description.clone(),
                missing: false,
            },
            None => Row {
                href: href_of(r),
                title: parsed
                    .as_ref()
                    .map_or_else(|| r.to_string(), |p| p.name.clone()),
                kind: parsed.map(|p| p.kind).unwrap_or_default(),
                owner: None,
                spec_type: String::new(),
                lifecycle: String::new(),
                description: String::new(),
                missing: true,
            },
        }
    }

    fn graph_entity(&self, r: &str) -> GraphEntity {
        let row = self.row(r);
        GraphEntity {
            href: row.href,
            kind: row.kind,
            label: row.title,
            entity_ref: r.to_string(),
        }
    }
}

fn href_of(r: &str) -> String {
    EntityRef::parse(r, None, "default")
        .map(|r| entity_href(&r))
        .unwrap_or_else(|_| "/catalog".into())
}

/// Sorts refs by their comparison key and drops duplicates; each key is computed once.
fn sort_refs(refs: &mut Vec<String>) {
    let mut keyed: Vec<(String, String)> = refs.drain(..).map(|r| (Lookup::key(&r), r)).collect();
    keyed.sort();
    keyed.dedup_by(|a, b| a.0 == b.0);
    refs.extend(keyed.into_iter().map(|(_, r)| r));
}

/// The entity's relation targets by type, each list sorted by ref.
struct Related(BTreeMap<String, Vec<String>>);

impl Related {
    fn of_entity(entity: &Value) -> Related {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, target) in relations_of(entity) {
            out.entry(t).or_default().push(target);
        }
        for list in out.values_mut() {
            sort_refs(list);
        }
        Related(out)
    }

    fn of(&self, relation: &str) -> &[String] {
        self.0.get(relation).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Links to the targets of one relation, for the About card.
    fn links(&self, relation: &str, lookup: &Lookup<'_>) -> Vec<FactValue> {
        self.of(relation)
            .iter()
            .map(|r| {
                let l = lookup.link(r);
                FactValue {
                    text: l.label,
                    href: Some(l.href),
                }
            })
            .collect()
    }
}

/// Tables of related entities, by the relation they list.
struct TableSpec {
    id: &'static str,
    heading: &'static str,
    hint: &'static str,
    empty: &'static str,
    relation: &'static str,
    /// Kinds (lowercase) that always show the table, empty or not.
    kinds: &'static [&'static str],
}

const TABLES: &[TableSpec] = &[
    TableSpec {
        id: "entity-parts",
        heading: "Parts",
        hint: "Entities that are part of this one.",
        empty: "Nothing is part of it yet.",
        relation: "hasPart",
        kinds: &["system", "domain"],
    },
    TableSpec {
        id: "entity-apis-provided",
        heading: "APIs provided",
        hint: "",
        empty: "It provides no APIs.",
        relation: "providesApi",
        kinds: &["component", "system"],
    },
    TableSpec {
        id: "entity-apis-consumed",
        heading: "APIs consumed",
        hint: "",
        empty: "It consumes no APIs.",
        relation: "consumesApi",
        kinds: &["component", "system"],
    },
    TableSpec {
        id: "api-providers",
        heading: "Provided by",
        hint: "",
        empty: "No component provides this API.",
        relation: "apiProvidedBy",
        kinds: &["api"],
    },
    TableSpec {
        id: "api-consumers",
        heading: "Consumed by",
        hint: "",
        empty: "No component consumes this API.",
        relation: "apiConsumedBy",
        kinds: &["api"],
    },
    TableSpec {
        id: "entity-dependencies",
        heading: "Dependencies",
        hint: "What this entity depends on.",
        empty: "It depends on nothing in the catalog.",
        relation: "dependsOn",
        kinds: &["component", "resource"],
    },
    TableSpec {
        id: "entity-dependents",
        heading: "Depended on by",
        hint: "What depends on this entity.",
        empty: "Nothing in the catalog depends on it.",
        relation: "dependencyOf",
        kinds: &["component", "resource"],
    },
];

/// Everything the page shows about one entity, read from the index.
struct View {
    kind: String,
    title: String,
    badges: Vec<Badge>,
    description: String,
    facts: Vec<Fact>,
    links: Vec<LinkItem>,
    tags: Vec<String>,
    annotations: Vec<Annotation>,
    errors: Vec<String>,
    graph: Graph,
    members: Option<Vec<Member>>,
    members_more: usize,
    tables: Vec<Table>,
}

impl View {
    fn build(svc: &CatalogService, entity: &Value, me: &EntityRef) -> Result<View, PageError> {
        let kind_lc = me.kind.to_lowercase();
        let related = Related::of_entity(entity);

        // Each related entity is read once per page: first the graph's candidates
        // (which the header and About share), then what the tables add.
        let mut lookup = Lookup::new(svc);
        lookup.fetch(
            related
                .0
                .values()
                .flat_map(|list| list.iter().take(graph::MAX_NODES)),
        );

        let mut view = View {
            kind: text(entity, "/kind").unwrap_or(&me.kind).to_string(),
            title: title_of(entity),
            badges: badges(entity, &related, &lookup),
            description: text(entity, "/metadata/description")
                .unwrap_or_default()
                .to_string(),
            facts: facts(entity, me, &related, &lookup),
            links: links_of(entity),
            tags: entity["metadata"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            annotations: annotations_of(entity),
            errors: errors_of(entity),
            graph: graph_of(entity, me, &related, &lookup),
            members: None,
            members_more: 0,
            tables: relation_tables(svc, &kind_lc, &related, &mut lookup),
        };

        // Groups list their members; groups and users what they own.
        match kind_lc.as_str() {
            "group" => {
                let members = related.of("hasMember");
                lookup.fetch_exact(members.iter().take(TABLE_LIMIT));
                view.members = Some(
                    members
                        .iter()
                        .take(TABLE_LIMIT)
                        .map(|r| member_of(&lookup, r))
                        .collect(),
                );
                view.members_more = members.len().saturating_sub(TABLE_LIMIT);
                view.tables.push(owned_table(
                    svc,
                    &[me.to_string()],
                    false,
                    "It owns nothing yet.",
                )?);
            }
            "user" => {
                let mut owners = vec![me.to_string()];
                owners.extend(related.of("memberOf").iter().cloned());
                view.tables.push(owned_table(
                    svc,
                    &owners,
                    true,
                    "Neither this user nor their groups own anything yet.",
                )?);
            }
            _ => {}
        }
        Ok(view)
    }
}

/// Header badges: owners and what it is part of link; lifecycle and type do not.
fn badges(entity: &Value, related: &Related, lookup: &Lookup<'_>) -> Vec<Badge> {
    let mut out = Vec::new();
    for o in related.of("ownedBy") {
        let l = lookup.link(o);
        out.push(Badge {
            term: "owner",
            text: l.label,
            href: Some(l.href),
        });
    }
    for p in related.of("partOf") {
        let l = lookup.link(p);
        let term = match EntityRef::parse(p, None, "default")
            .map(|r| r.kind.to_lowercase())
            .as_deref()
        {
            Ok("system") => "system",
            Ok("domain") => "domain",
            _ => "part of",
        };
        out.push(Badge {
            term,
            text: l.label,
            href: Some(l.href),
        });
    }
    for (term, pointer) in [("lifecycle", "/spec/lifecycle"), ("type", "/spec/type")] {
        if let Some(v) = text(entity, pointer) {
            out.push(Badge {
                term,
                text: v.to_string(),
                href: None,
            });
        }
    }
    out
}

/// The About card's facts; each appears only when it has a value.
fn facts(entity: &Value, me: &EntityRef, related: &Related, lookup: &Lookup<'_>) -> Vec<Fact> {
    let email = text(entity, "/spec/profile/email").map(|e| {
        vec![FactValue {
            text: e.to_string(),
            href: mailto(e),
        }]
    });
    let source = text(
        entity,
        "/metadata/annotations/backstage.io~1managed-by-location",
    )
    .map(plain);
    [
        ("Email", email.unwrap_or_default()),
        ("Owner", related.links("ownedBy", lookup)),
        ("Part of", related.links("partOf", lookup)),
        ("Parent", related.links("childOf", lookup)),
        ("Children", related.links("parentOf", lookup)),
        ("Member of", related.links("memberOf", lookup)),
        ("Namespace", plain(&me.namespace)),
        ("Source", source.unwrap_or_default()),
    ]
    .into_iter()
    .filter(|(_, values)| !values.is_empty())
    .map(|(term, values)| Fact { term, values })
    .collect()
}

/// The tables of [`TABLES`] that apply to this kind or have rows.
fn relation_tables(
    svc: &CatalogService,
    kind_lc: &str,
    related: &Related,
    lookup: &mut Lookup<'_>,
) -> Vec<Table> {
    let system_apis = (kind_lc == "system").then(|| system_apis(svc, related.of("hasPart")));
    let mut out = Vec::new();
    for spec in TABLES {
        let targets: &[String] = match (&system_apis, spec.relation) {
            (Some((provided, _)), "providesApi") => provided,
            (Some((_, consumed)), "consumesApi") => consumed,
            _ => related.of(spec.relation),
        };
        if targets.is_empty() && !spec.kinds.contains(&kind_lc) {
            continue;
        }
        lookup.fetch(targets.iter().take(TABLE_LIMIT));
        out.push(Table {
            id: spec.id,
            heading: spec.heading,
            hint: if kind_lc == "system" && spec.relation.ends_with("Api") {
                "Of the system's components and APIs."
            } else {
                spec.hint
            },
            empty: spec.empty,
            rows: targets
                .iter()
                .take(TABLE_LIMIT)
                .map(|r| lookup.row(r))
                .collect(),
            more: targets.len().saturating_sub(TABLE_LIMIT),
            show_owner: true,
        });
    }
    out
}

fn plain(s: &str) -> Vec<FactValue> {
    vec![FactValue {
        text: s.to_string(),
        href: None,
    }]
}

/// A `mailto:` link for a plain address; anything odd stays text.
fn mailto(email: &str) -> Option<String> {
    let ok = email.contains('@')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"'?&:/\\".contains(c));
    ok.then(|| format!("mailto:{email}"))
}

fn member_of(lookup: &Lookup<'_>, r: &str) -> Member {
    let row = lookup.row(r);
    let email = lookup.get(r).and_then(|s| s.email.clone());
    Member {
        href: row.href,
        name: row.title,
        entity_ref: r.to_string(),
        mailto: email.as_deref().and_then(mailto),
        email,
    }
}

/// The APIs a system provides and consumes: its API parts, and those of its components.
fn system_apis(svc: &CatalogService, parts: &[String]) -> (Vec<String>, Vec<String>) {
    let mut lookup = Lookup::new(svc);
    lookup.fetch_exact(parts.iter().take(TABLE_LIMIT));
    let mut provided = Vec::new();
    let mut consumed = Vec::new();
    for p in parts.iter().take(TABLE_LIMIT) {
        if p.starts_with("api:") {
            provided.push(p.clone());
        }
        if let Some(s) = lookup.get(p) {
            for (t, target) in &s.relations {
                match t.as_str() {
                    "providesApi" => provided.push(target.clone()),
                    "consumesApi" => consumed.push(target.clone()),
                    _ => {}
                }
            }
        }
    }
    sort_refs(&mut provided);
    sort_refs(&mut consumed);
    (provided, consumed)
}

/// Entities whose `ownedBy` relation names one of `owners`, from the index, in ref order.
fn owned_table(
    svc: &CatalogService,
    owners: &[String],
    show_owner: bool,
    empty: &'static str,
) -> Result<Table, PageError> {
    let filter = EntityFilter {
        any_of: vec![vec![Condition {
            key: "relations.ownedby".into(),
            values: Some(owners.iter().map(|o| o.to_lowercase()).collect()),
        }]],
    };
    let total = svc
        .query(&QueryParams {
            filter: filter.clone(),
            limit: Some(0),
            ..Default::default()
        })?
        .total_items;
    let page = svc.list(&ListParams {
        filter,
        limit: Some(TABLE_LIMIT as u64),
        ..Default::default()
    })?;
    let entities: Vec<Value> = serde_json::from_slice(&page.body)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("owned entities: {e}")))?;
    // Owners shown are the ones asked about: a user's own and their groups'.
    let rows: Vec<(EntityRef, Summary, Option<String>)> = entities
        .iter()
        .filter_map(|e| {
            let r = EntityRef::of_entity(e).ok()?;
            let s = summary_of(e);
            let owner = s
                .owners
                .iter()
                .find(|o| owners.iter().any(|w| w.eq_ignore_ascii_case(o)))
                .or(s.owners.first())
                .cloned();
            Some((r, s, owner))
        })
        .collect();
    let mut lookup = Lookup::new(svc);
    lookup.fetch_exact(rows.iter().filter_map(|(_, _, o)| o.as_ref()));
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(r, s, owner)| Row {
            href: entity_href(&r),
            title: s.title,
            kind: s.kind,
            owner: owner.map(|o| lookup.link(&o)),
            spec_type: s.spec_type,
            lifecycle: s.lifecycle,
            description: s.description,
            missing: false,
        })
        .collect();
    let shown = rows.len();
    Ok(Table {
        id: "owned-entities",
        heading: "Owned entities",
        hint: if show_owner {
            "Owned by this user or by one of their groups."
        } else {
            ""
        },
        empty,
        rows,
        more: usize::try_from(total)
            .unwrap_or(usize::MAX)
            .saturating_sub(shown),
        show_owner,
    })
}

fn links_of(entity: &Value) -> Vec<LinkItem> {
    entity["metadata"]["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let url = l["url"].as_str()?.trim().to_string();
            let label = text(l, "/title").map_or_else(|| url.clone(), str::to_string);
            Some(LinkItem {
                label,
                href: safe_href(&url),
                url,
            })
        })
        .collect()
}

fn annotations_of(entity: &Value) -> Vec<Annotation> {
    entity["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let looks_like_url = value.starts_with("http://") || value.starts_with("https://");
            Annotation {
                key: key.clone(),
                href: looks_like_url.then(|| safe_href(&value)).flatten(),
                value,
            }
        })
        .collect()
}

/// The messages of the entity's processing errors (`status.items` of level error).
fn errors_of(entity: &Value) -> Vec<String> {
    entity
        .pointer("/status/items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i["level"].as_str() == Some("error"))
        .filter_map(|i| {
            text(i, "/error/message")
                .or_else(|| text(i, "/message"))
                .map(str::to_string)
        })
        .collect()
}

fn graph_of(entity: &Value, me: &EntityRef, related: &Related, lookup: &Lookup<'_>) -> Graph {
    let centre = GraphEntity {
        href: entity_href(me),
        kind: text(entity, "/kind").unwrap_or(&me.kind).to_string(),
        label: title_of(entity),
        entity_ref: me.to_string(),
    };
    let groups = related
        .0
        .iter()
        .map(|(t, targets)| RelationGroup {
            relation: t.clone(),
            members: targets
                .iter()
                .take(graph::MAX_NODES)
                .map(|r| lookup.graph_entity(r))
                .collect(),
            total: targets.len(),
        })
        .collect();
    graph::layout(&centre, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hrefs_lowercase_kind_and_namespace_and_encode_names() {
        let r = EntityRef {
            kind: "Component".into(),
            namespace: "Payments".into(),
            name: "My Svc/x".into(),
        };
        assert_eq!(entity_href(&r), "/catalog/payments/component/My%20Svc%2Fx");
    }

    #[test]
    fn only_http_links_get_an_href() {
        let e = json!({"metadata": {"links": [
            {"url": "https://example.com/docs", "title": "Docs"},
            {"url": "javascript:alert(1)", "title": "Evil"},
            {"url": "data:text/html,<b>x</b>"},
        ]}});
        let links = links_of(&e);
        assert_eq!(links.len(), 3);
        assert_eq!(links[0].href.as_deref(), Some("https://example.com/docs"));
        assert!(links[1].href.is_none() && links[2].href.is_none());
        assert_eq!(links[2].label, "data:text/html,<b>x</b>");
    }

    #[test]
    fn annotation_values_link_only_when_they_are_web_urls() {
        let e = json!({"metadata": {"annotations": {
            "a": "https://github.com/org/repo",
            "b": "url:https://github.com/org/repo/catalog-info.yaml",
            "c": "javascript:alert(1)",
        }}});
        let a = annotations_of(&e);
        assert!(a[0].href.is_some());
        assert!(a[1].href.is_none() && a[2].href.is_none());
    }

    #[test]
    fn only_error_items_are_errors() {
        let e = json!({"status": {"items": [
            {"level": "error", "message": "InputError: bad", "error": {"name": "InputError", "message": "bad"}},
            {"level": "warning", "message": "meh"},
        ]}});
        assert_eq!(errors_of(&e), vec!["bad".to_string()]);
    }

    #[test]
    fn mailto_only_for_plain_addresses() {
        assert_eq!(
            mailto("a@example.com").as_deref(),
            Some("mailto:a@example.com")
        );
        assert!(mailto("javascript:a@b").is_none());
        assert!(mailto("a@b?subject=x").is_none());
        assert!(mailto("nobody").is_none());
    }
}
