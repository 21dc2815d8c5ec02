//! The catalog page, `GET /catalog`: the entities of one kind in a table whose
//! columns suit the kind, narrowed by filters built from the index's facets and
//! by full-text search, and paged with the catalog service's cursors. Every
//! choice lives in the URL, so that a view can be shared.
//!
//! It reads the in-memory index through `CatalogService` only, never the
//! database, and never renders catalog data unescaped. The table model here
//! (`Table`, `Cell`, the column extractors) also serves the home page. Links
//! to entities are the entity page's (`entity::entity_href`).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::entity::entity_href;
use super::{safe_href, Layout, PageContext, PageError};
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::index::Order;
use crate::catalog::model::{is_valid_name, is_valid_namespace, EntityRef, DEFAULT_NAMESPACE};
use crate::catalog::service::{CatalogService, Cursor, FullText, OrderField, QueryParams};
use crate::catalog::BUILTIN_KINDS;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/catalog", web::get().to(catalog_page));
}

/// Rows per page.
const PAGE_SIZE: u64 = 25;
const DEFAULT_KIND: &str = "component";
/// The index does not keep longer values, so a longer one can match nothing.
const MAX_VALUE_LENGTH: usize = 200;
/// Owners in one `owner` parameter: the signed-in user and their groups fit.
const MAX_OWNERS: usize = 200;
/// Where full-text search looks (index keys are lowercase).
const TEXT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.title",
    "metadata.description",
    "spec.profile.displayname",
    "metadata.tags",
];
/// Kinds in the order their tabs appear; other kinds follow by name.
const TAB_ORDER: &[&str] = &[
    "component",
    "api",
    "resource",
    "system",
    "domain",
    "group",
    "user",
    "template",
    "location",
    "airesource",
];

/// One filter of the form: its query parameter and the index key it tests.
#[derive(Debug)]
struct FilterDef {
    param: &'static str,
    key: &'static str,
    label: &'static str,
}

/// The filters in the form's order.
const FILTERS: &[FilterDef] = &[
    FilterDef {
        param: "type",
        key: "spec.type",
        label: "Type",
    },
    FilterDef {
        param: "owner",
        key: "relations.ownedby",
        label: "Owner",
    },
    FilterDef {
        param: "lifecycle",
        key: "spec.lifecycle",
        label: "Lifecycle",
    },
    FilterDef {
        param: "tag",
        key: "metadata.tags",
        label: "Tag",
    },
    FilterDef {
        param: "namespace",
        key: "metadata.namespace",
        label: "Namespace",
    },
];

// ---------------------------------------------------------------- parameters

/// A filter that the URL sets.
#[derive(Debug)]
struct Chosen {
    def: &'static FilterDef,
    /// The value as it goes back into the URL and the select.
    shown: String,
    /// Lowercased values, any of which matches.
    values: Vec<String>,
}

/// `GET /catalog`'s parameters, parsed once.
#[derive(Debug)]
struct CatalogQuery {
    /// Lowercased.
    kind: String,
    chosen: Vec<Chosen>,
    /// The search as typed, trimmed.
    q: Option<String>,
    cursor: Option<Cursor>,
}

impl CatalogQuery {
    /// Reads the query string. `known_kinds` are the lowercased kinds a URL may name.
    fn parse(raw: &str, known_kinds: &[String]) -> Result<CatalogQuery, PageError> {
        let mut given: Vec<(&'static str, String)> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let Some(param) = ["kind", "q", "cursor"]
                .into_iter()
                .chain(FILTERS.iter().map(|f| f.param))
                .find(|p| *p == key)
            else {
                // Unknown parameters (tracking tags, Backstage's own) are ignored.
                continue;
            };
            if given.iter().any(|(p, _)| *p == param) {
                return Err(PageError::Input(format!(
                    "The parameter \"{param}\" is given more than once; give it once."
                )));
            }
            let value = value.trim();
            // Cursors are long, and owners are checked one by one.
            if !matches!(param, "cursor" | "owner") && value.chars().count() > MAX_VALUE_LENGTH {
                return Err(PageError::Input(format!(
                    "The parameter \"{param}\" is longer than {MAX_VALUE_LENGTH} characters."
                )));
            }
            if !value.is_empty() {
                given.push((param, value.to_string()));
            }
        }
        let get = |p: &str| given.iter().find(|(k, _)| *k == p).map(|(_, v)| v.as_str());

        let kind = get("kind").unwrap_or(DEFAULT_KIND).to_lowercase();
        if !known_kinds.contains(&kind) {
            return Err(PageError::Input(format!(
                "The catalog has no kind \"{kind}\". Choose one of: {}.",
                known_kinds.join(", ")
            )));
        }
        let mut chosen = Vec::new();
        for def in FILTERS {
            let Some(value) = get(def.param) else {
                continue;
            };
            let (shown, values) = match def.param {
                "owner" => {
                    let refs = parse_owners(value)?;
                    if refs.is_empty() {
                        continue;
                    }
                    (
                        refs.join(","),
                        refs.iter().map(|r| r.to_lowercase()).collect(),
                    )
                }
                "namespace" => {
                    let ns = value.to_lowercase();
                    if !is_valid_namespace(&ns) {
                        return Err(PageError::Input(format!(
                            "\"{value}\" is not a valid namespace: use lowercase letters, digits and dashes."
                        )));
                    }
                    (ns.clone(), vec![ns])
                }
                _ => (value.to_string(), vec![value.to_lowercase()]),
            };
            chosen.push(Chosen { def, shown, values });
        }
        let q = get("q").map(str::to_string);
        let cursor = get("cursor")
            .map(|raw| {
                Cursor::parse(raw).map_err(|_| {
                    PageError::Input(
                        "The page link is damaged. Go back to the first page and try again.".into(),
                    )
                })
            })
            .transpose()?;
        let query = CatalogQuery {
            kind,
            chosen,
            q,
            cursor,
        };
        if let Some(c) = &query.cursor {
            if c.filter != query.filter()
                || c.full_text != query.full_text()
                || c.order_fields != order_fields()
            {
                return Err(PageError::Input(
                    "The page link belongs to other filters. Go back to the first page and try again."
                        .into(),
                ));
            }
        }
        Ok(query)
    }

    /// The kind, and every filter the URL sets.
    fn filter(&self) -> EntityFilter {
        let mut conditions = vec![Condition {
            key: "kind".into(),
            values: Some(vec![self.kind.clone()]),
        }];
        conditions.extend(self.chosen.iter().map(|c| Condition {
            key: c.def.key.into(),
            values: Some(c.values.clone()),
        }));
        EntityFilter {
            any_of: vec![conditions],
        }
    }

    fn full_text(&self) -> Option<FullText> {
        self.q.as_ref().map(|q| text_search(q))
    }

    fn chosen(&self, param: &str) -> Option<&Chosen> {
        self.chosen.iter().find(|c| c.def.param == param)
    }

    /// This view's URL, on the page that `cursor` points to.
    fn href(&self, cursor: Option<&str>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("kind", &self.kind);
        if let Some(q) = &self.q {
            s.append_pair("q", q);
        }
        for c in &self.chosen {
            s.append_pair(c.def.param, &c.shown);
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        format!("/catalog?{}", s.finish())
    }
}

/// `owner=team-a,user:default/jane`: refs, Group by default, as Backstage writes them.
fn parse_owners(value: &str) -> Result<Vec<String>, PageError> {
    let mut refs = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            PageError::Input(format!(
                "\"{part}\" is not an owner: expected an entity reference such as team-a or user:default/jane."
            ))
        };
        let r = EntityRef::parse(part, Some("group"), DEFAULT_NAMESPACE).map_err(|_| bad())?;
        if !is_valid_name(&r.name) || !is_valid_namespace(&r.namespace.to_lowercase()) {
            return Err(bad());
        }
        let r = r.to_string();
        if !refs.contains(&r) {
            if refs.len() == MAX_OWNERS {
                return Err(PageError::Input(format!(
                    "Give at most {MAX_OWNERS} owners."
                )));
            }
            refs.push(r);
        }
    }
    Ok(refs)
}

/// The full-text search for a typed term.
fn text_search(term: &str) -> FullText {
    FullText {
        term: term.trim().to_lowercase(),
        fields: TEXT_FIELDS.iter().map(|f| f.to_string()).collect(),
    }
}

fn order_fields() -> Vec<OrderField> {
    vec![OrderField {
        field: "metadata.name".into(),
        order: Order::Asc,
    }]
}

// ---------------------------------------------------------------- the page

#[derive(Template)]
#[template(path = "pages/catalog.html")]
struct CatalogPage {
    layout: Layout,
    kind: String,
    tabs: Vec<Tab>,
    q: String,
    selects: Vec<Select>,
    filtered: bool,
    /// e.g. "42 components".
    summary: String,
    /// The same search in other kinds, when searching.
    elsewhere: Vec<KindLink>,
    table: Table,
    prev_href: Option<String>,
    next_href: Option<String>,
    clear_href: String,
}

struct Tab {
    kind: String,
    label: String,
    count: u64,
    current: bool,
}

struct Select {
    name: &'static str,
    id: String,
    label: &'static str,
    options: Vec<SelectOption>,
    disabled: bool,
}

struct SelectOption {
    value: String,
    label: String,
    count: Option<u64>,
    selected: bool,
}

pub(super) struct KindLink {
    pub href: String,
    pub text: String,
}

async fn catalog_page(
    ctx: PageContext,
    svc: web::Data<CatalogService>,
    req: HttpRequest,
) -> HttpResponse {
    let result = ctx
        .require_viewer()
        .and_then(|()| build_page(&ctx, &svc, req.query_string()));
    ctx.respond(result)
}

fn build_page(
    ctx: &PageContext,
    svc: &CatalogService,
    raw_query: &str,
) -> Result<CatalogPage, PageError> {
    let counts = kind_counts(&svc.kinds(None));
    let known: Vec<String> = known_kinds(&counts);
    let query = CatalogQuery::parse(raw_query, &known)?;
    let words = KindWords::of(&query.kind, &counts);

    let page = svc.query(&QueryParams {
        filter: query.filter(),
        limit: Some(PAGE_SIZE),
        order_fields: order_fields(),
        cursor: query.cursor.clone(),
        full_text: query.full_text(),
        ..Default::default()
    })?;
    let entities: Vec<Value> = page
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();

    let kind_only = EntityFilter {
        any_of: vec![vec![Condition {
            key: "kind".into(),
            values: Some(vec![query.kind.clone()]),
        }]],
    };
    let keys: Vec<String> = FILTERS.iter().map(|f| f.key.to_string()).collect();
    let facets = svc.facets(&keys, &kind_only);
    let selects = FILTERS
        .iter()
        .map(|def| select(def, facet_values(&facets, def.key), query.chosen(def.param)))
        .collect();

    let elsewhere = match query.full_text() {
        Some(ft) => kind_counts(&svc.kinds(Some(&ft)))
            .into_iter()
            .filter(|c| c.kind != query.kind && c.count > 0)
            .map(|c| KindLink {
                text: KindWords::of(&c.kind, &counts).count(c.count),
                href: CatalogQuery {
                    kind: c.kind,
                    chosen: vec![],
                    q: query.q.clone(),
                    cursor: None,
                }
                .href(None),
            })
            .collect(),
        None => vec![],
    };

    let filtered = query.q.is_some() || !query.chosen.is_empty();
    let caption = format!(
        "{}, {}",
        words.plural_title(),
        words.count(page.total_items)
    );
    Ok(CatalogPage {
        layout: ctx.layout(
            format!("{} in the catalog", words.plural_title()),
            "catalog",
        ),
        tabs: tabs(&counts, &query.kind),
        q: query.q.clone().unwrap_or_default(),
        selects,
        filtered,
        summary: match (filtered, page.total_items) {
            (false, n) => words.count(n),
            (true, 1) => format!("{} matches", words.count(1)),
            (true, n) => format!("{} match", words.count(n)),
        },
        elsewhere,
        table: Table::new(
            "catalog-results",
            caption,
            columns_for(&query.kind),
            &entities,
        ),
        prev_href: page.prev_cursor.as_deref().map(|c| query.href(Some(c))),
        next_href: page.next_cursor.as_deref().map(|c| query.href(Some(c))),
        clear_href: format!("/catalog?kind={}", super::encode(&query.kind)),
        kind: query.kind,
    })
}

/// How many entities of a kind the catalog holds.
struct KindCount {
    /// Lowercased.
    kind: String,
    /// As the entities write it.
    written: String,
    count: u64,
}

/// Entity counts per kind; kinds that differ only in case are one.
fn kind_counts(kinds: &[(String, u64)]) -> Vec<KindCount> {
    let mut out: Vec<KindCount> = Vec::new();
    for (written, n) in kinds {
        let kind = written.to_lowercase();
        match out.iter_mut().find(|o| o.kind == kind) {
            Some(o) => o.count += n,
            None => out.push(KindCount {
                kind,
                written: written.clone(),
                count: *n,
            }),
        }
    }
    out
}

/// The kinds a URL may name: the built-in ones and those in the catalog.
fn known_kinds(counts: &[KindCount]) -> Vec<String> {
    let mut out: Vec<String> = BUILTIN_KINDS.iter().map(|k| k.to_lowercase()).collect();
    for c in counts {
        if !out.contains(&c.kind) {
            out.push(c.kind.clone());
        }
    }
    sort_kinds(&mut out);
    out
}

fn sort_kinds(kinds: &mut [String]) {
    let rank = |k: &str| TAB_ORDER.iter().position(|t| *t == k).unwrap_or(usize::MAX);
    kinds.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
}

/// A tab per kind in the catalog, the default kind and the current one.
fn tabs(counts: &[KindCount], current: &str) -> Vec<Tab> {
    let mut kinds: Vec<String> = counts
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| c.kind.clone())
        .collect();
    for k in [DEFAULT_KIND, current] {
        if !kinds.iter().any(|x| x == k) {
            kinds.push(k.to_string());
        }
    }
    sort_kinds(&mut kinds);
    kinds
        .into_iter()
        .map(|k| Tab {
            label: KindWords::of(&k, counts).plural_title(),
            count: counts.iter().find(|c| c.kind == k).map_or(0, |c| c.count),
            current: k == current,
            kind: k,
        })
        .collect()
}

/// How a kind reads in a sentence.
struct KindWords {
    one: String,
    many: String,
}

impl KindWords {
    fn of(kind: &str, counts: &[KindCount]) -> KindWords {
        let (one, many) = match kind {
            "api" => ("API".to_string(), "APIs".to_string()),
            "airesource" => ("AI resource".to_string(), "AI resources".to_string()),
            k if TAB_ORDER.contains(&k) => (k.to_string(), format!("{k}s")),
            k => {
                // A kind of the catalog's own, as its entities write it.
                let written = counts
                    .iter()
                    .find(|c| c.kind == k)
                    .map_or_else(|| k.to_string(), |c| c.written.clone());
                (written.clone(), format!("{written}s"))
            }
        };
        KindWords { one, many }
    }

    /// "1 component", "42 components".
    fn count(&self, n: u64) -> String {
        if n == 1 {
            format!("1 {}", self.one)
        } else {
            format!("{n} {}", self.many)
        }
    }

    /// "Components", "APIs".
    fn plural_title(&self) -> String {
        let mut chars = self.many.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

/// "1 API", "3 components", for a kind as its entities write it.
pub(super) fn count_of_kind(written: &str, n: u64) -> String {
    let counts = kind_counts(&[(written.to_string(), n)]);
    KindWords::of(&written.to_lowercase(), &counts).count(n)
}

/// The values of one facet in the service's answer.
pub(super) fn facet_values(facets: &Value, key: &str) -> Vec<(String, u64)> {
    facets["facets"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["value"].as_str()?.to_string(), f["count"].as_u64()?)))
        .collect()
}

fn select(def: &'static FilterDef, facet: Vec<(String, u64)>, chosen: Option<&Chosen>) -> Select {
    let owner = def.param == "owner";
    let label_of = |v: &str| {
        if owner {
            owner_label(v)
        } else {
            v.to_string()
        }
    };
    let current = chosen.map(|c| c.shown.to_lowercase());
    let mut options: Vec<SelectOption> = facet
        .into_iter()
        .map(|(value, n)| SelectOption {
            label: label_of(&value),
            selected: current.as_deref() == Some(value.to_lowercase().as_str()),
            value,
            count: Some(n),
        })
        .collect();
    options.sort_by_key(|o| o.label.to_lowercase());
    if let Some(c) = chosen {
        if !options.iter().any(|o| o.selected) {
            // A value the kind does not have (or several owners): still shown, so
            // that the form keeps it.
            options.insert(
                0,
                SelectOption {
                    label: c
                        .shown
                        .split(',')
                        .map(label_of)
                        .collect::<Vec<_>>()
                        .join(", "),
                    value: c.shown.clone(),
                    count: None,
                    selected: true,
                },
            );
        }
    }
    Select {
        name: def.param,
        id: format!("filter-{}", def.param),
        label: def.label,
        disabled: options.is_empty(),
        options,
    }
}

/// `group:default/team-a` → `team-a`; `user:default/jane` → `user:jane`.
fn owner_label(r: &str) -> String {
    EntityRef::parse(r, Some("group"), DEFAULT_NAMESPACE)
        .map(|r| humanize(&r, "group"))
        .unwrap_or_else(|_| r.to_string())
}

/// Backstage's `humanizeEntityRef`: the kind and namespace only where they are not the defaults.
fn humanize(r: &EntityRef, default_kind: &str) -> String {
    let mut out = String::new();
    if !r.kind.eq_ignore_ascii_case(default_kind) {
        out.push_str(&r.kind.to_lowercase());
        out.push(':');
    }
    if !r.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
        out.push_str(&r.namespace.to_lowercase());
        out.push('/');
    }
    out.push_str(&r.name);
    out
}

// ---------------------------------------------------------------- tables

/// A table of entities, as `partials/catalog_table.html` draws it.
pub(super) struct Table {
    pub id: &'static str,
    pub caption: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Td>>,
}

pub(super) struct Column {
    pub header: &'static str,
    /// Hidden on narrow screens.
    pub optional: bool,
}

pub(super) struct Td {
    pub optional: bool,
    pub cell: Cell,
}

/// What a table cell shows. Every variant is text or a checked link: nothing
/// from the catalog reaches the page unescaped.
pub(super) enum Cell {
    /// The row's own entity: the link the rest of the portal follows.
    Entity(Link),
    Text(String),
    Empty,
    /// A title over a description.
    Described {
        title: Option<String>,
        description: Option<String>,
    },
    /// Links to other entities.
    Refs(Vec<Link>),
    Tags(Vec<String>),
    /// `tone` is one of the badge classes: `ok`, `warn`, `bad` or empty.
    Badge {
        text: String,
        tone: &'static str,
    },
    /// Location targets: a link when http(s), else text.
    Targets(Vec<Target>),
    Time {
        iso: String,
        text: String,
    },
    Number(usize),
}

pub(super) struct Link {
    pub href: String,
    pub label: String,
    /// The full entity ref, as a tooltip.
    pub title: String,
}

pub(super) struct Target {
    pub text: String,
    pub href: Option<String>,
}

/// A column: its header, whether it may hide, and what it shows of an entity.
pub(super) struct Col {
    pub header: &'static str,
    pub optional: bool,
    pub cell: fn(&Value) -> Cell,
}

const fn col(header: &'static str, optional: bool, cell: fn(&Value) -> Cell) -> Col {
    Col {
        header,
        optional,
        cell,
    }
}

impl Table {
    pub fn new(id: &'static str, caption: String, cols: &[Col], entities: &[Value]) -> Table {
        Table {
            id,
            caption,
            columns: cols
                .iter()
                .map(|c| Column {
                    header: c.header,
                    optional: c.optional,
                })
                .collect(),
            rows: entities
                .iter()
                .map(|e| {
                    cols.iter()
                        .map(|c| Td {
                            optional: c.optional,
                            cell: (c.cell)(e),
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// Adds a column whose cells are given, one per row.
    pub fn push_column(&mut self, header: &'static str, optional: bool, cells: Vec<Cell>) {
        self.columns.push(Column { header, optional });
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.push(Td { optional, cell });
        }
    }
}

const COMPONENT_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Description", true, described_cell),
    col("Owner", false, owner_cell),
    col("Type", false, type_cell),
    col("Lifecycle", true, lifecycle_cell),
    col("Tags", true, tags_cell),
];
const SOFTWARE_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Description", true, described_cell),
    col("Owner", false, owner_cell),
    col("Type", false, type_cell),
    col("Tags", true, tags_cell),
];
const USER_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Display name", false, display_name_cell),
    col("Email", true, email_cell),
    col("Groups", true, groups_cell),
];
const GROUP_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Display name", true, display_name_cell),
    col("Type", false, type_cell),
    col("Parent", true, parent_cell),
    col("Members", false, members_cell),
];
const TEMPLATE_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Title", true, described_cell),
    col("Type", false, type_cell),
    col("Owner", false, owner_cell),
];
const LOCATION_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Type", true, type_cell),
    col("Targets", false, targets_cell),
];
/// The home page's short tables.
pub(super) const OWNED_COLUMNS: &[Col] = &[
    col("Name", false, name_cell),
    col("Kind", false, kind_cell),
    col("Type", true, type_cell),
    col("Description", true, described_cell),
];
pub(super) const RECENT_COLUMNS: &[Col] =
    &[col("Name", false, name_cell), col("Kind", false, kind_cell)];

fn columns_for(kind: &str) -> &'static [Col] {
    match kind {
        "component" | "api" => COMPONENT_COLUMNS,
        "user" => USER_COLUMNS,
        "group" => GROUP_COLUMNS,
        "template" => TEMPLATE_COLUMNS,
        "location" => LOCATION_COLUMNS,
        _ => SOFTWARE_COLUMNS,
    }
}

fn text_at(e: &Value, pointer: &str) -> Option<String> {
    e.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn text_cell(e: &Value, pointer: &str) -> Cell {
    text_at(e, pointer).map_or(Cell::Empty, Cell::Text)
}

/// The targets of an entity's relations of one type.
fn relation_targets<'a>(e: &'a Value, relation: &'a str) -> impl Iterator<Item = &'a str> {
    e["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |r| r["type"].as_str() == Some(relation))
        .filter_map(|r| r["targetRef"].as_str())
}

fn refs_cell(e: &Value, relation: &str, default_kind: &str) -> Cell {
    let links: Vec<Link> = relation_targets(e, relation)
        .filter_map(|t| ref_link(t, default_kind))
        .collect();
    if links.is_empty() {
        Cell::Empty
    } else {
        Cell::Refs(links)
    }
}

/// A link to the entity a ref names; the label leaves out the default kind and namespace.
fn ref_link(target: &str, default_kind: &str) -> Option<Link> {
    let r = EntityRef::parse(target, Some(default_kind), DEFAULT_NAMESPACE).ok()?;
    Some(Link {
        href: entity_href(&r),
        label: humanize(&r, default_kind),
        title: r.to_string(),
    })
}

fn name_cell(e: &Value) -> Cell {
    match EntityRef::of_entity(e) {
        Ok(r) => Cell::Entity(Link {
            href: entity_href(&r),
            label: if r.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
                r.name.clone()
            } else {
                format!("{}/{}", r.namespace, r.name)
            },
            title: r.to_string(),
        }),
        Err(_) => text_cell(e, "/metadata/name"),
    }
}

fn kind_cell(e: &Value) -> Cell {
    text_cell(e, "/kind")
}

fn described_cell(e: &Value) -> Cell {
    let title = text_at(e, "/metadata/title");
    let description = text_at(e, "/metadata/description");
    if title.is_none() && description.is_none() {
        Cell::Empty
    } else {
        Cell::Described { title, description }
    }
}

fn owner_cell(e: &Value) -> Cell {
    match refs_cell(e, "ownedBy", "group") {
        Cell::Empty => text_cell(e, "/spec/owner"),
        refs => refs,
    }
}

fn type_cell(e: &Value) -> Cell {
    text_cell(e, "/spec/type")
}

fn lifecycle_cell(e: &Value) -> Cell {
    match text_at(e, "/spec/lifecycle") {
        Some(text) => Cell::Badge {
            tone: match text.to_lowercase().as_str() {
                "production" => "ok",
                "experimental" => "warn",
                "deprecated" => "bad",
                _ => "",
            },
            text,
        },
        None => Cell::Empty,
    }
}

fn tags_cell(e: &Value) -> Cell {
    let tags: Vec<String> = e
        .pointer("/metadata/tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if tags.is_empty() {
        Cell::Empty
    } else {
        Cell::Tags(tags)
    }
}

fn display_name_cell(e: &Value) -> Cell {
    text_cell(e, "/spec/profile/displayName")
}

fn email_cell(e: &Value) -> Cell {
    text_cell(e, "/spec/profile/email")
}

fn groups_cell(e: &Value) -> Cell {
    refs_cell(e, "memberOf", "group")
}

fn parent_cell(e: &Value) -> Cell {
    refs_cell(e, "childOf", "group")
}

fn members_cell(e: &Value) -> Cell {
    Cell::Number(relation_targets(e, "hasMember").count())
}

fn targets_cell(e: &Value) -> Cell {
    let spec = &e["spec"];
    let targets: Vec<Target> = spec["target"]
        .as_str()
        .into_iter()
        .chain(
            spec["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        .map(|t| Target {
            text: t.to_string(),
            href: safe_href(t),
        })
        .collect();
    if targets.is_empty() {
        Cell::Empty
    } else {
        Cell::Targets(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<String> {
        known_kinds(&kind_counts(&[
            ("Component".into(), 3),
            ("Widget".into(), 1),
        ]))
    }

    #[test]
    fn parses_and_round_trips_a_view() {
        let q = CatalogQuery::parse(
            "kind=API&type=openapi&owner=team-a,user:default/jane&q=+Pay+&tag=&unknown=1",
            &kinds(),
        )
        .expect("valid");
        assert_eq!(q.kind, "api");
        assert_eq!(q.q.as_deref(), Some("Pay"));
        assert_eq!(
            q.chosen("owner").map(|c| c.shown.as_str()),
            Some("group:default/team-a,user:default/jane")
        );
        assert!(q.chosen("tag").is_none(), "empty values set nothing");
        assert_eq!(
            q.href(None),
            "/catalog?kind=api&q=Pay&type=openapi&owner=group%3Adefault%2Fteam-a%2Cuser%3Adefault%2Fjane"
        );
        let again = CatalogQuery::parse(&q.href(None)["/catalog?".len()..], &kinds())
            .expect("its own link parses");
        assert_eq!(again.filter(), q.filter());
        let q = CatalogQuery::parse("owner=,", &kinds()).expect("valid");
        assert!(
            q.chosen("owner").is_none(),
            "no owner in the list sets nothing"
        );
    }

    #[test]
    fn bad_parameters_are_input_errors() {
        for raw in [
            "kind=nope",
            "kind=component&kind=api",
            "owner=team%20a",
            "owner=group:",
            "namespace=Not_A_Namespace",
            "cursor=%%%",
            "cursor=bm90IGpzb24=",
        ] {
            assert!(
                matches!(CatalogQuery::parse(raw, &kinds()), Err(PageError::Input(_))),
                "{raw}"
            );
        }
        let long = format!("q={}", "x".repeat(MAX_VALUE_LENGTH + 1));
        assert!(matches!(
            CatalogQuery::parse(&long, &kinds()),
            Err(PageError::Input(_))
        ));
        assert!(CatalogQuery::parse("kind=widget", &kinds()).is_ok());
        // A person in many groups: a long owner list is fine, each ref checked.
        let many: Vec<String> = (0..20).map(|i| format!("group:default/team-{i}")).collect();
        let q = CatalogQuery::parse(&format!("owner={}", many.join(",")), &kinds())
            .expect("a long list of owners");
        assert_eq!(q.chosen("owner").map(|c| c.values.len()), Some(20));
        let too_many: Vec<String> = (0..=MAX_OWNERS).map(|i| format!("t-{i}")).collect();
        assert!(matches!(
            CatalogQuery::parse(&format!("owner={}", too_many.join(",")), &kinds()),
            Err(PageError::Input(_))
        ));
    }

    #[test]
    fn links_and_labels() {
        let r = EntityRef::parse("Group:Ops/Team-A", None, "default").expect("ref");
        assert_eq!(humanize(&r, "group"), "ops/Team-A");
        assert_eq!(owner_label("user:default/jane"), "user:jane");
        let link = ref_link("user:default/jane", "group").expect("a link");
        assert_eq!(
            (link.href.as_str(), link.label.as_str(), link.title.as_str()),
            (
                "/catalog/default/user/jane",
                "user:jane",
                "user:default/jane"
            )
        );
        assert_eq!(KindWords::of("api", &[]).count(1), "1 API");
        assert_eq!(KindWords::of("component", &[]).plural_title(), "Components");
    }
}
