//! The template form's model: a template's `spec.parameters` pages turned into
//! form fields (what each JSON Schema property and its `ui:*` keys ask for),
//! and a submitted form turned back into the typed `values` and `secrets` of a
//! task request, with every problem attached to the field it belongs to.
//!
//! The schema checks themselves are the scaffolder's (`params::check_values`,
//! `params::check_secrets`); this room only converts, places errors, and adds
//! the checks Backstage's form fields make in the browser (entity names,
//! entity refs). It touches no storage and knows no HTTP.

use serde_json::{json, Map, Value};

use crate::catalog::model::{is_valid_name, EntityRef};
use crate::scaffolder::params::{self, FieldError};
use crate::scaffolder::template::Template;

/// Form fields of template values are named `p.<property>[.<property>…]`.
const PREFIX: &str = "p.";
/// Properties nested deeper than this are edited as JSON.
const MAX_DEPTH: usize = 4;
/// What a secret looks like in `values` and on the review: Backstage's form
/// puts one `*` per character there, so that `required` and length checks hold.
const MASK: char = '*';

/// How a property is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Textarea,
    Number,
    Integer,
    Checkbox,
    Select,
    Radio,
    Checkboxes,
    /// An array of strings or numbers: one per line.
    Lines,
    /// `ui:field: Secret`: goes into the task's `secrets`.
    Secret,
    /// `ui:widget: password`: hidden while typed, but a value like any other.
    Password,
    /// OwnerPicker and EntityPicker: an entity ref, suggested from the catalog.
    Picker,
    EntityName,
    RepoUrl,
    /// Anything else (objects without properties, arrays of objects): JSON text.
    Json,
    Hidden,
    /// A nested object's heading; its properties follow as fields of their own.
    Group,
}

impl Kind {
    /// The name the templates and the script use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Textarea => "textarea",
            Kind::Number => "number",
            Kind::Integer => "integer",
            Kind::Checkbox => "checkbox",
            Kind::Select => "select",
            Kind::Radio => "radio",
            Kind::Checkboxes => "checkboxes",
            Kind::Lines => "lines",
            Kind::Secret => "secret",
            Kind::Password => "password",
            Kind::Picker => "picker",
            Kind::EntityName => "entity-name",
            Kind::RepoUrl => "repo-url",
            Kind::Json => "json",
            Kind::Hidden => "hidden",
            Kind::Group => "group",
        }
    }
}

/// One property of one page.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// The property's path in `values`.
    pub path: Vec<String>,
    /// The form field's name.
    pub name: String,
    pub schema: Value,
    pub kind: Kind,
    pub required: bool,
}

impl FieldSpec {
    pub fn label(&self) -> String {
        self.schema
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.path.last().cloned().unwrap_or_default())
    }

    pub fn str_key(&self, key: &str) -> Option<String> {
        self.schema
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    }

    pub fn ui_options(&self) -> &Value {
        static EMPTY: Value = Value::Null;
        self.schema.get("ui:options").unwrap_or(&EMPTY)
    }

    /// The RepoUrlPicker's sub-fields.
    pub fn sub(&self, part: &str) -> String {
        format!("{}#{part}", self.name)
    }

    /// The `enum` values, with their labels (`enumNames`, else the value).
    pub fn choices(&self) -> Vec<(Value, String)> {
        let source = match self.kind {
            Kind::Checkboxes => self.schema.get("items").unwrap_or(&Value::Null),
            _ => &self.schema,
        };
        let names = source.get("enumNames").and_then(Value::as_array);
        source
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let label = names
                            .and_then(|n| n.get(i))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| plain(v));
                        (v.clone(), label)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A value as a form shows it: strings bare, everything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One page of the form.
#[derive(Debug, Clone)]
pub struct PageSpec {
    pub title: String,
    pub description: Option<String>,
    pub fields: Vec<FieldSpec>,
}

/// The form's pages, as the template declares them.
pub fn pages(template: &Template) -> Vec<PageSpec> {
    template
        .pages
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let mut fields = Vec::new();
            collect(page, &[], &mut fields);
            PageSpec {
                title: page
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Step {}", i + 1)),
                description: page
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                fields,
            }
        })
        .collect()
}

/// The properties of an object schema, in the form's order: `ui:order` when
/// given (with `*` for the rest); else required ones first, in the order
/// `required` lists them, then the others by name. The catalog keeps entities
/// with their keys sorted, so the order the template's author wrote is gone.
fn ordered_properties(schema: &Value) -> Vec<(String, Value)> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return vec![];
    };
    let listed = |key: &str| -> Vec<String> {
        schema
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let order = listed("ui:order");
    let mut names: Vec<String> = Vec::new();
    let mut rest: Vec<String> = props
        .keys()
        .filter(|k| !order.contains(k))
        .cloned()
        .collect();
    if order.is_empty() {
        let required = listed("required");
        names.extend(required.iter().filter(|r| props.contains_key(*r)).cloned());
        rest.retain(|k| !required.contains(k));
        names.extend(rest);
    } else {
        for o in &order {
            if o == "*" {
                names.append(&mut rest);
            } else if props.contains_key(o) {
                names.push(o.clone());
            }
        }
        names.append(&mut rest);
    }
    names
        .into_iter()
        .filter_map(|n| props.get(&n).map(|p| (n, p.clone())))
        .collect()
}

fn collect(schema: &Value, at: &[String], out: &mut Vec<FieldSpec>) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in ordered_properties(schema) {
        let mut path = at.to_vec();
        path.push(name.clone());
        let kind = kind_of(&prop, path.len());
        out.push(FieldSpec {
            name: format!("{PREFIX}{}", path.join(".")),
            required: required.contains(&name.as_str()),
            schema: prop.clone(),
            kind,
            path: path.clone(),
        });
        if kind == Kind::Group {
            collect(&prop, &path, out);
        }
    }
}

fn kind_of(prop: &Value, depth: usize) -> Kind {
    let s = |k: &str| prop.get(k).and_then(Value::as_str).unwrap_or_default();
    let ty = match prop.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]` and the like: the first non-null type.
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or(""),
        _ => "",
    };
    let has_enum = prop.get("enum").and_then(Value::as_array).is_some();
    match s("ui:field") {
        "Secret" => return Kind::Secret,
        "OwnerPicker" | "EntityPicker" | "MyGroupsPicker" | "OwnedEntityPicker"
            if ty != "array" =>
        {
            return Kind::Picker
        }
        "EntityNamePicker" => return Kind::EntityName,
        "RepoUrlPicker" => return Kind::RepoUrl,
        _ => {}
    }
    match s("ui:widget") {
        "hidden" => return Kind::Hidden,
        "password" if ty == "string" || ty.is_empty() => return Kind::Password,
        "textarea" if ty == "string" || ty.is_empty() => return Kind::Textarea,
        "radio" if has_enum => return Kind::Radio,
        _ => {}
    }
    match ty {
        _ if has_enum && ty != "array" && ty != "object" => Kind::Select,
        "boolean" => Kind::Checkbox,
        "number" => Kind::Number,
        "integer" => Kind::Integer,
        "array" => {
            let items = prop.get("items").unwrap_or(&Value::Null);
            let item_type = items.get("type").and_then(Value::as_str).unwrap_or("");
            if items.get("enum").and_then(Value::as_array).is_some() {
                Kind::Checkboxes
            } else if matches!(item_type, "string" | "number" | "integer") {
                Kind::Lines
            } else {
                Kind::Json
            }
        }
        "object" => {
            if prop.get("properties").and_then(Value::as_object).is_some() && depth < MAX_DEPTH {
                Kind::Group
            } else {
                Kind::Json
            }
        }
        _ => Kind::Text,
    }
}

/// A submitted form: its fields in order, repeated names kept.
#[derive(Debug, Default, Clone)]
pub struct Submitted {
    pairs: Vec<(String, String)>,
}

impl Submitted {
    pub fn parse(body: &[u8]) -> Submitted {
        Submitted {
            pairs: url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One problem, placed: `field` is the form field's name, or empty for the form as a whole.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FormError {
    pub field: String,
    pub message: String,
}

/// A task request's values and secrets, read from the form.
#[derive(Debug, Default)]
pub struct Decoded {
    pub values: Map<String, Value>,
    pub secrets: Map<String, Value>,
    /// Values that could not be read at all (such as JSON that does not parse).
    pub errors: Vec<FormError>,
}

/// Reads the fields of the given pages from a submitted form.
pub fn decode<'a>(fields: impl IntoIterator<Item = &'a FieldSpec>, form: &Submitted) -> Decoded {
    let mut out = Decoded::default();
    for f in fields {
        let value = match decode_one(f, form) {
            Ok(Some(Decoded1::Value(v))) => v,
            Ok(Some(Decoded1::Secret(s))) => {
                let masked: String = std::iter::repeat_n(MASK, s.chars().count()).collect();
                let key = f.path.last().cloned().unwrap_or_default();
                out.secrets.insert(key, Value::String(s));
                Value::String(masked)
            }
            Ok(None) => continue,
            Err(message) => {
                out.errors.push(FormError {
                    field: f.name.clone(),
                    message,
                });
                continue;
            }
        };
        insert_at(&mut out.values, &f.path, value);
    }
    out
}

enum Decoded1 {
    Value(Value),
    Secret(String),
}

fn decode_one(f: &FieldSpec, form: &Submitted) -> Result<Option<Decoded1>, String> {
    let raw = form.get(&f.name).unwrap_or_default();
    let val = |v: Value| Ok(Some(Decoded1::Value(v)));
    match f.kind {
        Kind::Group => Ok(None),
        Kind::Text | Kind::Password | Kind::Picker | Kind::EntityName => {
            if raw.is_empty() {
                Ok(None)
            } else {
                val(json!(raw))
            }
        }
        Kind::Textarea => {
            if raw.is_empty() {
                Ok(None)
            } else {
                val(json!(raw.replace("\r\n", "\n")))
            }
        }
        Kind::Number | Kind::Integer => match raw.trim() {
            "" => Ok(None),
            t => val(number(t)),
        },
        Kind::Checkbox => val(json!(raw == "true")),
        Kind::Select | Kind::Radio => {
            if raw.is_empty() {
                Ok(None)
            } else {
                val(choice(f, raw))
            }
        }
        Kind::Checkboxes => val(Value::Array(
            form.all(&f.name)
                .into_iter()
                .map(|v| choice(f, v))
                .collect(),
        )),
        Kind::Lines => {
            let numeric = matches!(
                f.schema["items"]["type"].as_str(),
                Some("number" | "integer")
            );
            val(Value::Array(
                raw.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| if numeric { number(l) } else { json!(l) })
                    .collect(),
            ))
        }
        Kind::Json => {
            if raw.trim().is_empty() {
                Ok(None)
            } else {
                serde_json::from_str(raw)
                    .map(|v| Some(Decoded1::Value(v)))
                    .map_err(|e| format!("This is not valid JSON: {e}"))
            }
        }
        Kind::Hidden => {
            if raw.is_empty() {
                Ok(None)
            } else {
                val(typed(&f.schema, raw))
            }
        }
        Kind::Secret => {
            if raw.is_empty() {
                Ok(None)
            } else {
                Ok(Some(Decoded1::Secret(raw.to_string())))
            }
        }
        Kind::RepoUrl => {
            let part = |p: &str| form.get(&f.sub(p)).unwrap_or_default().trim().to_string();
            let (host, owner, repo) = (part("host"), part("owner"), part("repo"));
            if host.is_empty() && owner.is_empty() && repo.is_empty() {
                return Ok(None);
            }
            val(json!(compose_repo_url(&host, &owner, &repo)))
        }
    }
}

/// `host?owner=o&repo=r`, as Backstage's RepoUrlPicker writes it.
pub fn compose_repo_url(host: &str, owner: &str, repo: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if !owner.is_empty() {
        q.append_pair("owner", owner);
    }
    if !repo.is_empty() {
        q.append_pair("repo", repo);
    }
    format!("{host}?{}", q.finish())
}

/// A number when the text is one (integers stay integers); else the text, for the schema to refuse.
fn number(t: &str) -> Value {
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| json!(t))
}

/// The `enum` value whose text is `raw`; else the text, for the schema to refuse.
fn choice(f: &FieldSpec, raw: &str) -> Value {
    f.choices()
        .into_iter()
        .map(|(v, _)| v)
        .find(|v| plain(v) == raw)
        .unwrap_or_else(|| json!(raw))
}

/// A hidden field's text as the schema's type.
fn typed(schema: &Value, raw: &str) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("number" | "integer") => number(raw),
        Some("boolean") => json!(raw == "true"),
        Some("array" | "object") => serde_json::from_str(raw).unwrap_or_else(|_| json!(raw)),
        _ => json!(raw),
    }
}

fn insert_at(values: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = values;
    for p in parents {
        let entry = at.entry(p.clone()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let Value::Object(m) = entry else {
            return;
        };
        at = m;
    }
    at.insert(last.clone(), value);
}

/// Checks decoded values against the given pages (all of them for the final
/// request), and the secrets when `with_secrets`. Every problem is placed on its field.
pub fn check(
    template: &Template,
    pages: &[usize],
    fields: &[&FieldSpec],
    decoded: &Decoded,
    with_secrets: bool,
) -> Vec<FormError> {
    let mut errors = decoded.errors.clone();
    let mut only = template.clone();
    only.pages = pages
        .iter()
        .filter_map(|i| template.pages.get(*i).cloned())
        .collect();
    let values = Value::Object(decoded.values.clone());
    for e in params::check_values(&only, &values) {
        errors.push(place(&e, fields, false));
    }
    if with_secrets {
        for e in params::check_secrets(template, &decoded.secrets) {
            errors.push(place(&e, fields, true));
        }
    }
    for f in fields {
        if let Some(Value::String(v)) = lookup(&decoded.values, &f.path) {
            if let Some(m) = field_check(f, v) {
                errors.push(FormError {
                    field: f.name.clone(),
                    message: m,
                });
            }
        }
    }
    // One message per field: the first found (a value that could not be read
    // also fails its schema, and that second message says less).
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| e.field.is_empty() || seen.insert(e.field.clone()));
    // No secret is ever repeated back into the page.
    for e in &mut errors {
        for s in decoded.secrets.values().filter_map(Value::as_str) {
            if !s.is_empty() {
                e.message = e.message.replace(s, "****");
            }
        }
    }
    errors
}

fn lookup<'v>(values: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(values.get(first)?, |v, p| v.get(p))
}

/// The checks Backstage's own form fields make in the browser.
fn field_check(f: &FieldSpec, v: &str) -> Option<String> {
    match f.kind {
        Kind::EntityName if !is_valid_name(v) => Some(
            "Use at most 63 letters, digits, dashes, dots and underscores, starting and ending with a letter or digit."
                .into(),
        ),
        Kind::Picker => {
            let options = f.ui_options();
            let kind = options.get("defaultKind").and_then(Value::as_str);
            let namespace = options
                .get("defaultNamespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let default_kind = kind.or(
                (f.schema.get("ui:field").and_then(Value::as_str) == Some("OwnerPicker"))
                    .then_some("group"),
            );
            EntityRef::parse(v, default_kind, namespace)
                .err()
                .map(|e| format!("Choose an entity: {e}."))
        }
        _ => None,
    }
}

/// Puts a scaffolder field error on the field it is about.
fn place(e: &FieldError, fields: &[&FieldSpec], secret: bool) -> FormError {
    let mut path = e.path.clone();
    let mut message = e.message.clone();
    if e.name == "required" {
        if let Some(property) = quoted_prefix(&e.message) {
            path.push(property);
            message = "This is required.".into();
        }
    }
    let field = if secret {
        fields
            .iter()
            .find(|f| f.kind == Kind::Secret && f.path.last() == path.first())
    } else {
        fields
            .iter()
            .filter(|f| path.starts_with(&f.path))
            .max_by_key(|f| f.path.len())
    };
    match field {
        Some(f) => FormError {
            field: f.name.clone(),
            message,
        },
        None => FormError {
            field: String::new(),
            message: if path.is_empty() {
                message
            } else {
                format!(
                    "{}{}: {message}",
                    if secret { "secret " } else { "" },
                    path.join(".")
                )
            },
        },
    }
}

/// `"name" is a required property` → `name`.
fn quoted_prefix(message: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(message).into_iter::<String>();
    de.next().and_then(Result::ok)
}

/// The text a field starts with: what was submitted, else the schema's default.
pub fn initial(f: &FieldSpec, form: Option<&Submitted>) -> Vec<String> {
    if let Some(form) = form {
        return form.all(&f.name).into_iter().map(str::to_string).collect();
    }
    let Some(d) = f.schema.get("default") else {
        return vec![];
    };
    match (f.kind, d) {
        (Kind::Secret, _) => vec![],
        (Kind::Checkboxes, Value::Array(a)) => a.iter().map(plain).collect(),
        (Kind::Lines, Value::Array(a)) => vec![a.iter().map(plain).collect::<Vec<_>>().join("\n")],
        (Kind::Checkbox, Value::Bool(b)) => {
            if *b {
                vec!["true".into()]
            } else {
                vec![]
            }
        }
        (Kind::Json, v) => vec![serde_json::to_string_pretty(v).unwrap_or_default()],
        (_, v) => vec![plain(v)],
    }
}

/// The RepoUrlPicker's parts to start with: submitted, or parsed from the default.
pub fn initial_repo(f: &FieldSpec, form: Option<&Submitted>) -> (String, String, String) {
    if let Some(form) = form {
        let part = |p: &str| form.get(&f.sub(p)).unwrap_or_default().to_string();
        return (part("host"), part("owner"), part("repo"));
    }
    let parsed = f
        .schema
        .get("default")
        .and_then(Value::as_str)
        .and_then(|d| params::parse_repo_url(d).ok())
        .unwrap_or_default();
    let part = |p: &str| parsed.get(p).map(plain).unwrap_or_default();
    (part("host"), part("owner"), part("repo"))
}

/// The catalog filters a picker suggests from, as `filter` query parameters
/// of the catalog API: `ui:options.catalogFilter` (one object or a list), else
/// `allowedKinds`, else for the OwnerPicker groups and users.
pub fn picker_filters(f: &FieldSpec) -> Vec<String> {
    let options = f.ui_options();
    let one = |filter: &Map<String, Value>| -> String {
        let mut parts = Vec::new();
        for (key, v) in filter {
            match v {
                Value::Array(a) => {
                    for item in a {
                        parts.push(format!("{key}={}", plain(item)));
                    }
                }
                Value::Object(o) if o.get("exists").and_then(Value::as_bool) == Some(true) => {
                    parts.push(key.clone())
                }
                Value::Object(_) => {}
                other => parts.push(format!("{key}={}", plain(other))),
            }
        }
        parts.join(",")
    };
    let mut filters: Vec<String> = match options.get("catalogFilter") {
        Some(Value::Object(o)) => vec![one(o)],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).map(one).collect(),
        _ => vec![],
    };
    filters.retain(|f| !f.is_empty());
    if filters.is_empty() {
        if let Some(kinds) = options.get("allowedKinds").and_then(Value::as_array) {
            let kinds: Vec<String> = kinds
                .iter()
                .filter_map(Value::as_str)
                .map(|k| format!("kind={k}"))
                .collect();
            if !kinds.is_empty() {
                filters.push(kinds.join(","));
            }
        } else if f.schema.get("ui:field").and_then(Value::as_str) == Some("OwnerPicker") {
            filters.push("kind=group,kind=user".into());
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(parameters: Value) -> Template {
        Template::from_entity(&json!({
            "apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template",
            "metadata": {"name": "t"},
            "spec": {"type": "service", "parameters": parameters, "steps": [{"action": "debug:log"}],
                     "secrets": {"schema": {"type": "object", "properties": {"token": {"type": "string", "minLength": 4}}}}}
        }))
        .expect("template")
    }

    fn form(pairs: &[(&str, &str)]) -> Submitted {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        Submitted::parse(s.finish().as_bytes())
    }

    fn all_fields(pages: &[PageSpec]) -> Vec<&FieldSpec> {
        pages.iter().flat_map(|p| p.fields.iter()).collect()
    }

    #[test]
    fn kinds_and_order_follow_the_schema() {
        let t = template(json!([{
            "title": "One",
            "required": ["zeta", "alpha"],
            "properties": {
                "alpha": {"type": "string"},
                "beta": {"type": "string", "ui:widget": "textarea"},
                "zeta": {"type": "integer"},
                "flag": {"type": "boolean"},
                "lang": {"type": "string", "enum": ["go", "rust"], "enumNames": ["Go", "Rust"]},
                "features": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                "hosts": {"type": "array", "items": {"type": "string"}},
                "token": {"type": "string", "ui:field": "Secret"},
                "owner": {"type": "string", "ui:field": "OwnerPicker"},
                "repo": {"type": "string", "ui:field": "RepoUrlPicker"},
                "conf": {"type": "object", "properties": {"depth": {"type": "number"}}},
                "blob": {"type": "object"}
            }
        }]));
        let p = pages(&t);
        let names: Vec<&str> = p[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            &names[..2],
            &["p.zeta", "p.alpha"],
            "required first, as listed"
        );
        let kind = |n: &str| {
            p[0].fields
                .iter()
                .find(|f| f.name == n)
                .map(|f| f.kind)
                .expect(n)
        };
        assert_eq!(kind("p.beta"), Kind::Textarea);
        assert_eq!(kind("p.zeta"), Kind::Integer);
        assert_eq!(kind("p.flag"), Kind::Checkbox);
        assert_eq!(kind("p.lang"), Kind::Select);
        assert_eq!(kind("p.features"), Kind::Checkboxes);
        assert_eq!(kind("p.hosts"), Kind::Lines);
        assert_eq!(kind("p.token"), Kind::Secret);
        assert_eq!(kind("p.owner"), Kind::Picker);
        assert_eq!(kind("p.repo"), Kind::RepoUrl);
        assert_eq!(kind("p.conf"), Kind::Group);
        assert_eq!(kind("p.conf.depth"), Kind::Number);
        assert_eq!(kind("p.blob"), Kind::Json);
        let lang = p[0]
            .fields
            .iter()
            .find(|f| f.name == "p.lang")
            .expect("lang");
        assert_eq!(lang.choices()[1], (json!("rust"), "Rust".to_string()));

        let ordered = template(json!({"ui:order": ["b", "*", "a"], "properties": {
            "a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}}}));
        let names: Vec<String> = pages(&ordered)[0]
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(names, ["p.b", "p.c", "p.a"]);
    }

    #[test]
    fn forms_decode_into_typed_values_and_secrets() {
        let t = template(json!({"properties": {
            "name": {"type": "string"},
            "port": {"type": "number"},
            "count": {"type": "integer"},
            "flag": {"type": "boolean"},
            "off": {"type": "boolean"},
            "size": {"type": "integer", "enum": [1, 2]},
            "features": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}},
            "hosts": {"type": "array", "items": {"type": "string"}},
            "token": {"type": "string", "ui:field": "Secret"},
            "repo": {"type": "string", "ui:field": "RepoUrlPicker"},
            "conf": {"type": "object", "properties": {"depth": {"type": "number"}}},
            "empty": {"type": "string"}
        }}));
        let p = pages(&t);
        let d = decode(
            all_fields(&p),
            &form(&[
                ("p.name", "svc"),
                ("p.port", "8080"),
                ("p.count", "3"),
                ("p.flag", "true"),
                ("p.size", "2"),
                ("p.features", "a"),
                ("p.features", "c"),
                ("p.hosts", "one\r\n\r\n two \n"),
                ("p.token", "s3cret"),
                ("p.repo#host", "github.com"),
                ("p.repo#owner", "acme co"),
                ("p.repo#repo", "svc"),
                ("p.conf.depth", "1.5"),
                ("p.empty", ""),
            ]),
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(
            Value::Object(d.values),
            json!({"name": "svc", "port": 8080, "count": 3, "flag": true, "off": false, "size": 2,
                   "features": ["a", "c"], "hosts": ["one", "two"], "token": "******",
                   "repo": "github.com?owner=acme+co&repo=svc", "conf": {"depth": 1.5}})
        );
        assert_eq!(Value::Object(d.secrets), json!({"token": "s3cret"}));
    }

    #[test]
    fn errors_land_on_their_fields_without_secrets() {
        let t = template(json!([
            {"required": ["name"], "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "port": {"type": "number", "minimum": 1024},
                "entity": {"type": "string", "ui:field": "EntityNamePicker"},
                "token": {"type": "string", "ui:field": "Secret"},
                "blob": {"type": "object"}
            }},
            {"required": ["other"], "properties": {"other": {"type": "string"}}}
        ]));
        let p = pages(&t);
        let fields = all_fields(&p);
        let first: Vec<&FieldSpec> = p[0].fields.iter().collect();
        let d = decode(
            first.iter().copied(),
            &form(&[
                ("p.port", "80"),
                ("p.entity", "-bad-"),
                ("p.token", "abc"),
                ("p.blob", "{nope"),
            ]),
        );
        let errors = check(&t, &[0], &first, &d, false);
        let on = |n: &str| {
            errors
                .iter()
                .find(|e| e.field == n)
                .map(|e| e.message.clone())
        };
        assert_eq!(on("p.name").as_deref(), Some("This is required."));
        assert!(on("p.port").expect("port").contains("1024"), "{errors:?}");
        assert!(on("p.entity").expect("entity").contains("63"), "{errors:?}");
        assert!(on("p.blob").expect("blob").contains("JSON"), "{errors:?}");
        assert!(on("p.other").is_none(), "page two is not checked yet");

        let d = decode(
            fields.iter().copied(),
            &form(&[("p.name", "ok"), ("p.token", "abc")]),
        );
        let errors = check(&t, &[0, 1], &fields, &d, true);
        assert_eq!(
            errors
                .iter()
                .find(|e| e.field == "p.other")
                .map(|e| e.message.as_str()),
            Some("This is required.")
        );
        let token = errors
            .iter()
            .find(|e| e.field == "p.token")
            .expect("the secrets schema's error is on the secret's field");
        assert!(!token.message.contains("abc"), "{token:?}");
    }

    #[test]
    fn pickers_filter_the_catalog() {
        let t = template(json!({"properties": {
            "owner": {"type": "string", "ui:field": "OwnerPicker"},
            "team": {"type": "string", "ui:field": "OwnerPicker", "ui:options": {"catalogFilter": {"kind": ["Group"], "spec.type": "team"}}},
            "system": {"type": "string", "ui:field": "EntityPicker", "ui:options": {"allowedKinds": ["System", "Domain"]}},
            "any": {"type": "string", "ui:field": "EntityPicker", "ui:options": {"catalogFilter": [{"kind": "API"}, {"metadata.annotations.x": {"exists": true}}]}}
        }}));
        let p = pages(&t);
        let by = |n: &str| picker_filters(p[0].fields.iter().find(|f| f.name == n).expect(n));
        assert_eq!(by("p.owner"), ["kind=group,kind=user"]);
        assert_eq!(by("p.team"), ["kind=Group,spec.type=team"]);
        assert_eq!(by("p.system"), ["kind=System,kind=Domain"]);
        assert_eq!(by("p.any"), ["kind=API", "metadata.annotations.x"]);
    }
}
