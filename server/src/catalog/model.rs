//! Backstage's entity model: refs, validation and the relations each kind implies.
//!
//! Validation follows `@backstage/catalog-model`: the envelope and metadata
//! rules of `FieldFormatEntityPolicy` and `NoForeignRootFieldsEntityPolicy`, and
//! the required spec fields of each kind's JSON Schema. It reports every problem
//! it finds, each with the path of the offending field.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

pub const DEFAULT_NAMESPACE: &str = "default";

/// `[kind:][namespace/]name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntityRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("entity reference \"{0}\" is not of the form [<kind>:][<namespace>/]<name>")]
    Malformed(String),
    #[error("entity reference \"{0}\" has no kind, and none is implied here")]
    MissingKind(String),
    #[error("entity has no {0}")]
    MissingField(&'static str),
}

impl EntityRef {
    /// Parses a ref as Backstage's `parseEntityRef` does.
    pub fn parse(
        s: &str,
        default_kind: Option<&str>,
        default_namespace: &str,
    ) -> Result<EntityRef, RefError> {
        let malformed = || RefError::Malformed(s.to_string());
        let slash = s.find('/');
        let mut colon = s.find(':');
        if let (Some(sl), Some(c)) = (slash, colon) {
            if sl < c {
                colon = None;
            }
        }
        let kind = colon.map(|c| &s[..c]);
        let namespace = slash.map(|sl| &s[colon.map_or(0, |c| c + 1)..sl]);
        let name_start = colon.map_or(0, |c| c + 1).max(slash.map_or(0, |sl| sl + 1));
        let name = &s[name_start..];
        if kind == Some("") || namespace == Some("") || name.is_empty() {
            return Err(malformed());
        }
        let kind = match kind.or(default_kind) {
            Some(k) => k.to_string(),
            None => return Err(RefError::MissingKind(s.to_string())),
        };
        Ok(EntityRef {
            kind,
            namespace: namespace.unwrap_or(default_namespace).to_string(),
            name: name.to_string(),
        })
    }

    /// The ref of an entity document.
    pub fn of_entity(entity: &Value) -> Result<EntityRef, RefError> {
        let kind = entity
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or(RefError::MissingField("kind"))?;
        let meta = entity.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or(RefError::MissingField("metadata.name"))?;
        let namespace = match meta.and_then(|m| m.get("namespace")) {
            None | Some(Value::Null) => DEFAULT_NAMESPACE,
            Some(Value::String(ns)) if !ns.is_empty() => ns.as_str(),
            Some(_) => return Err(RefError::MissingField("valid metadata.namespace")),
        };
        Ok(EntityRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// The comparison key: refs compare case-insensitively.
    pub fn key(&self) -> String {
        format!(
            "{}:{}/{}",
            self.kind.to_lowercase(),
            self.namespace.to_lowercase(),
            self.name.to_lowercase()
        )
    }
}

impl fmt::Display for EntityRef {
    /// Backstage's `stringifyEntityRef`: kind and namespace lowercased, name as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.kind.to_lowercase(),
            self.namespace.to_lowercase(),
            self.name
        )
    }
}

/// Which kinds validate beyond the built-in ones (those allowed by `catalog.rules`).
#[derive(Clone, Debug, Default)]
pub struct KindPolicy {
    extra: HashSet<String>,
}

impl KindPolicy {
    pub fn builtin() -> Self {
        KindPolicy::default()
    }

    pub fn with_extra_kinds(kinds: impl IntoIterator<Item = String>) -> Self {
        KindPolicy {
            extra: kinds.into_iter().map(|k| k.to_lowercase()).collect(),
        }
    }

    fn allows_custom(&self, kind: &str) -> bool {
        self.extra.contains(&kind.to_lowercase())
    }
}

/// One problem with an entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("name regex")
});
static NAMESPACE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:-[a-z0-9]+)*$").expect("namespace regex"));
static DNS_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*$").expect("dns regex")
});
static KIND_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z][a-z0-9A-Z]*$").expect("kind regex"));
static API_VERSION_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*/[a-z0-9]+$")
        .expect("apiVersion regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9:+#]+(?:-[a-z0-9:+#]+)*$").expect("tag regex"));

pub fn is_valid_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && NAME_RE.is_match(s)
}

pub fn is_valid_namespace(s: &str) -> bool {
    (1..=63).contains(&s.len()) && NAMESPACE_RE.is_match(s)
}

fn is_valid_kind(s: &str) -> bool {
    (1..=63).contains(&s.len()) && KIND_RE.is_match(s)
}

fn is_valid_api_version(s: &str) -> bool {
    s.len() <= 253 && API_VERSION_RE.is_match(s)
}

fn is_valid_tag(s: &str) -> bool {
    (1..=63).contains(&s.len()) && TAG_RE.is_match(s)
}

/// `[prefix/]name`, the prefix a DNS subdomain, as for labels and annotations.
fn is_valid_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            (1..=253).contains(&prefix.len())
                && DNS_SUBDOMAIN_RE.is_match(prefix)
                && is_valid_name(name)
        }
        None => is_valid_name(s),
    }
}

#[derive(Clone, Copy)]
enum Ty {
    /// A non-empty string.
    Str,
    /// An array of non-empty strings.
    StrList,
    /// A string or an array of non-empty strings.
    StrOrList,
    Object,
    /// An array of objects.
    ObjList,
    /// An object or an array (Template parameters).
    ObjOrList,
}

struct Field {
    name: &'static str,
    required: bool,
    ty: Ty,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        required: true,
        ty,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        required: false,
        ty,
    }
}

struct KindSchema {
    kind: &'static str,
    api_versions: &'static [&'static str],
    fields: &'static [Field],
}

const V1: &[&str] = &["backstage.io/v1alpha1", "backstage.io/v1beta1"];

static KINDS: &[KindSchema] = &[
    KindSchema {
        kind: "Component",
        api_versions: V1,
        fields: &[
            req("type", Ty::Str),
            req("lifecycle", Ty::Str),
            req("owner", Ty::Str),
            opt("system", Ty::Str),
            opt("subcomponentOf", Ty::Str),
            opt("providesApis", Ty::StrList),
            opt("consumesApis", Ty::StrList),
            opt("dependsOn", Ty::StrList),
            opt("dependencyOf", Ty::StrList),
        ],
    },
    KindSchema {
        kind: "API",
        api_versions: V1,
        fields: &[
            req("type", Ty::Str),
            req("lifecycle", Ty::Str),
            req("owner", Ty::Str),
            opt("system", Ty::Str),
        ],
    },
    KindSchema {
        kind: "Resource",
        api_versions: V1,
        fields: &[
            req("type", Ty::Str),
            req("owner", Ty::Str),
            opt("system", Ty::Str),
            opt("dependsOn", Ty::StrList),
            opt("dependencyOf", Ty::StrList),
        ],
    },
    KindSchema {
        kind: "System",
        api_versions: V1,
        fields: &[
            req("owner", Ty::Str),
            opt("domain", Ty::Str),
            opt("type", Ty::Str),
        ],
    },
    KindSchema {
        kind: "Domain",
        api_versions: V1,
        fields: &[
            req("owner", Ty::Str),
            opt("subdomainOf", Ty::Str),
            opt("type", Ty::Str),
        ],
    },
    KindSchema {
        kind: "Group",
        api_versions: V1,
        fields: &[
            req("type", Ty::Str),
            req("children", Ty::StrList),
            opt("profile", Ty::Object),
            opt("parent", Ty::Str),
            opt("members", Ty::StrList),
        ],
    },
    KindSchema {
        kind: "User",
        api_versions: V1,
        fields: &[req("memberOf", Ty::StrList), opt("profile", Ty::Object)],
    },
    KindSchema {
        kind: "Location",
        api_versions: V1,
        fields: &[
            opt("type", Ty::Str),
            opt("target", Ty::Str),
            opt("targets", Ty::StrList),
        ],
    },
    KindSchema {
        kind: "Template",
        api_versions: &["scaffolder.backstage.io/v1beta3"],
        fields: &[
            req("type", Ty::Str),
            req("steps", Ty::ObjList),
            opt("owner", Ty::Str),
            opt("parameters", Ty::ObjOrList),
            opt("output", Ty::Object),
            opt("presentation", Ty::Object),
            opt("EXPERIMENTAL_recovery", Ty::Object),
            opt("EXPERIMENTAL_formDecorators", Ty::ObjList),
        ],
    },
    KindSchema {
        kind: "AiResource",
        api_versions: &["backstage.io/v1alpha1"],
        fields: &[
            req("type", Ty::Str),
            req("lifecycle", Ty::Str),
            req("owner", Ty::Str),
            opt("system", Ty::Str),
            opt("dependsOn", Ty::StrList),
            opt("version", Ty::Str),
        ],
    },
];

fn schema_of(kind: &str) -> Option<&'static KindSchema> {
    KINDS.iter().find(|k| k.kind.eq_ignore_ascii_case(kind))
}

/// Extra spec fields required by a kind's `spec.type` (Backstage's per-type schemas).
fn type_fields(kind: &str, spec_type: &str) -> &'static [Field] {
    const MCP: &[Field] = &[req("remotes", Ty::ObjList)];
    const API: &[Field] = &[req("definition", Ty::Str)];
    const MARKETPLACE: &[Field] = &[req("plugins", Ty::StrList)];
    const PLUGIN: &[Field] = &[req("skills", Ty::StrList)];
    const RULE: &[Field] = &[
        req("category", Ty::Str),
        req("rationale", Ty::Str),
        opt("disciplines", Ty::StrList),
    ];
    const SKILL: &[Field] = &[
        opt("disciplines", Ty::StrList),
        opt("categories", Ty::StrList),
        opt("agents", Ty::StrList),
        opt("allowedTools", Ty::StrOrList),
        opt("license", Ty::Str),
        opt("compatibility", Ty::Str),
    ];
    match (kind.to_lowercase().as_str(), spec_type) {
        ("api", "mcp-server") => MCP,
        ("api", _) => API,
        ("airesource", "marketplace") => MARKETPLACE,
        ("airesource", "plugin") => PLUGIN,
        ("airesource", "rule") => RULE,
        ("airesource", "skill") => SKILL,
        _ => &[],
    }
}

struct Problems(Vec<ValidationError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates an entity as written in a catalog file, reporting every problem.
pub fn validate_entity(entity: &Value, policy: &KindPolicy) -> Result<(), Vec<ValidationError>> {
    let mut p = Problems(Vec::new());
    let Some(root) = entity.as_object() else {
        p.add("<root>", "an entity must be a YAML/JSON object");
        return Err(p.0);
    };
    for key in root.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "relations" | "status"
        ) {
            p.add(key, "unknown root field; an entity has only apiVersion, kind, metadata, spec, relations and status");
        }
    }
    let api_version = match root.get("apiVersion") {
        Some(Value::String(v)) if is_valid_api_version(v) => Some(v.as_str()),
        Some(Value::String(v)) => {
            p.add(
                "apiVersion",
                format!("\"{v}\" is not of the form <group>/<version>"),
            );
            None
        }
        Some(_) => {
            p.add("apiVersion", "must be a string");
            None
        }
        None => {
            p.add("apiVersion", "is required");
            None
        }
    };
    let kind = match root.get("kind") {
        Some(Value::String(k)) if is_valid_kind(k) => Some(k.as_str()),
        Some(Value::String(k)) => {
            p.add(
                "kind",
                format!("\"{k}\" is not a valid kind (letters and digits, starting with a letter)"),
            );
            None
        }
        Some(_) => {
            p.add("kind", "must be a string");
            None
        }
        None => {
            p.add("kind", "is required");
            None
        }
    };
    match root.get("metadata") {
        Some(Value::Object(meta)) => validate_metadata(meta, &mut p),
        Some(_) => p.add("metadata", "must be an object"),
        None => p.add("metadata", "is required"),
    }
    let spec = match root.get("spec") {
        None => None,
        Some(Value::Object(s)) => Some(s),
        Some(_) => {
            p.add("spec", "must be an object");
            None
        }
    };
    if let Some(kind) = kind {
        match schema_of(kind) {
            Some(schema) => {
                if let Some(v) = api_version {
                    if !schema.api_versions.contains(&v) {
                        p.add(
                            "apiVersion",
                            format!(
                                "{} entities use apiVersion {}, not {v}",
                                schema.kind,
                                schema.api_versions.join(" or ")
                            ),
                        );
                    }
                }
                match spec {
                    Some(spec) => {
                        check_fields(spec, schema.fields, &mut p);
                        if let Some(t) = spec.get("type").and_then(Value::as_str) {
                            check_fields(spec, type_fields(kind, t), &mut p);
                        } else if kind.eq_ignore_ascii_case("api") {
                            check_fields(spec, type_fields(kind, ""), &mut p);
                        }
                        if kind.eq_ignore_ascii_case("location") {
                            if let Some(pres) = spec.get("presence") {
                                if !matches!(pres.as_str(), Some("required" | "optional")) {
                                    p.add("spec.presence", "must be \"required\" or \"optional\"");
                                }
                            }
                        }
                        if kind.eq_ignore_ascii_case("template") {
                            // Backstage's schema for the kind, and the scaffolder's own checks.
                            for (path, message) in crate::scaffolder::template::problems(entity) {
                                p.add(path, message);
                            }
                        }
                        if kind.eq_ignore_ascii_case("api") && spec.get("type").and_then(Value::as_str) == Some("mcp-server") {
                            check_remotes(spec, &mut p);
                        }
                    }
                    None if !kind.eq_ignore_ascii_case("location") || schema.fields.iter().any(|f| f.required) => {
                        p.add("spec", format!("is required for kind {}", schema.kind));
                    }
                    None => {}
                }
            }
            None if policy.allows_custom(kind) => {}
            None => p.add(
                "kind",
                format!("unknown kind {kind}; allow it with catalog.rules to accept entities of this kind"),
            ),
        }
    }
    if p.0.is_empty() {
        Ok(())
    } else {
        Err(p.0)
    }
}

fn validate_metadata(meta: &Map<String, Value>, p: &mut Problems) {
    match meta.get("name") {
        Some(Value::String(n)) if is_valid_name(n) => {}
        Some(Value::String(n)) => p.add(
            "metadata.name",
            format!(
                "\"{}\" is not a valid name: 1-63 characters of [a-zA-Z0-9], with [-_.] between them",
                truncate(n)
            ),
        ),
        Some(_) => p.add("metadata.name", "must be a string"),
        None => p.add("metadata.name", "is required"),
    }
    match meta.get("namespace") {
        None => {}
        Some(Value::String(ns)) if is_valid_namespace(ns) => {}
        Some(Value::String(ns)) => p.add(
            "metadata.namespace",
            format!(
                "\"{}\" is not a valid namespace: a lowercase DNS label of at most 63 characters",
                truncate(ns)
            ),
        ),
        Some(_) => p.add("metadata.namespace", "must be a string"),
    }
    for key in ["title", "description", "uid", "etag"] {
        if let Some(v) = meta.get(key) {
            if !v.is_string() {
                p.add(format!("metadata.{key}"), "must be a string");
            }
        }
    }
    match meta.get("labels") {
        None => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                if !is_valid_key(k) {
                    p.add(
                        format!("metadata.labels.{k}"),
                        "label key must be [prefix/]name",
                    );
                }
                match v {
                    Value::String(s) if s.is_empty() || is_valid_name(s) => {}
                    Value::String(s) => p.add(
                        format!("metadata.labels.{k}"),
                        format!(
                            "label value \"{}\" is not valid: it follows the name rule",
                            truncate(s)
                        ),
                    ),
                    _ => p.add(
                        format!("metadata.labels.{k}"),
                        "label value must be a string",
                    ),
                }
            }
        }
        Some(_) => p.add("metadata.labels", "must be an object"),
    }
    match meta.get("annotations") {
        None => {}
        Some(Value::Object(annotations)) => {
            for (k, v) in annotations {
                if !is_valid_key(k) {
                    p.add(
                        format!("metadata.annotations.{k}"),
                        "annotation key must be [prefix/]name",
                    );
                }
                if !v.is_string() {
                    p.add(
                        format!("metadata.annotations.{k}"),
                        "annotation value must be a string",
                    );
                }
            }
        }
        Some(_) => p.add("metadata.annotations", "must be an object"),
    }
    match meta.get("tags") {
        None => {}
        Some(Value::Array(tags)) => {
            for (i, t) in tags.iter().enumerate() {
                match t {
                    Value::String(s) if is_valid_tag(s) => {}
                    Value::String(s) => p.add(
                        format!("metadata.tags[{i}]"),
                        format!(
                            "\"{}\" is not a valid tag: 1-63 characters of [a-z0-9:+#], words separated by -",
                            truncate(s)
                        ),
                    ),
                    _ => p.add(format!("metadata.tags[{i}]"), "must be a string"),
                }
            }
        }
        Some(_) => p.add("metadata.tags", "must be an array of strings"),
    }
    match meta.get("links") {
        None => {}
        Some(Value::Array(links)) => {
            for (i, l) in links.iter().enumerate() {
                let path = format!("metadata.links[{i}]");
                let Some(obj) = l.as_object() else {
                    p.add(path, "must be an object with a url");
                    continue;
                };
                match obj.get("url") {
                    Some(Value::String(u)) => match url::Url::parse(u) {
                        Ok(parsed)
                            if matches!(parsed.scheme(), "javascript" | "data" | "vbscript") =>
                        {
                            p.add(
                                format!("{path}.url"),
                                format!("the {} scheme is not allowed", parsed.scheme()),
                            )
                        }
                        Ok(_) => {}
                        Err(e) => p.add(
                            format!("{path}.url"),
                            format!("\"{}\" is not a valid URL: {e}", truncate(u)),
                        ),
                    },
                    Some(_) => p.add(format!("{path}.url"), "must be a string"),
                    None => p.add(format!("{path}.url"), "is required"),
                }
                for key in ["title", "icon", "type"] {
                    if obj.get(key).is_some_and(|v| !v.is_string()) {
                        p.add(format!("{path}.{key}"), "must be a string");
                    }
                }
            }
        }
        Some(_) => p.add("metadata.links", "must be an array"),
    }
}

fn check_fields(spec: &Map<String, Value>, fields: &[Field], p: &mut Problems) {
    for f in fields {
        let path = format!("spec.{}", f.name);
        let Some(v) = spec.get(f.name) else {
            if f.required {
                p.add(path, "is required");
            }
            continue;
        };
        let ok = match f.ty {
            Ty::Str => v.as_str().is_some_and(|s| !s.is_empty()),
            Ty::StrList => v
                .as_array()
                .is_some_and(|a| a.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty()))),
            Ty::StrOrList => {
                v.as_str().is_some_and(|s| !s.is_empty())
                    || v.as_array().is_some_and(|a| {
                        a.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty()))
                    })
            }
            Ty::Object => v.is_object(),
            Ty::ObjList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            Ty::ObjOrList => v.is_object() || v.is_array(),
        };
        if !ok {
            let expected = match f.ty {
                Ty::Str => "a non-empty string",
                Ty::StrList => "an array of non-empty strings",
                Ty::StrOrList => "a string or an array of strings",
                Ty::Object => "an object",
                Ty::ObjList => "an array of objects",
                Ty::ObjOrList => "an object or an array",
            };
            p.add(path, format!("must be {expected}"));
        }
    }
}

fn check_remotes(spec: &Map<String, Value>, p: &mut Problems) {
    let Some(Value::Array(remotes)) = spec.get("remotes") else {
        return;
    };
    if remotes.is_empty() {
        p.add("spec.remotes", "must list at least one remote");
    }
    for (i, r) in remotes.iter().enumerate() {
        for key in ["type", "url"] {
            if r.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                p.add(
                    format!("spec.remotes[{i}].{key}"),
                    "is required and must be a non-empty string",
                );
            }
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    }
}

/// A directed relation between two entities.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Relation {
    pub source: EntityRef,
    pub r#type: String,
    pub target: EntityRef,
}

/// Spec fields that imply relations: field, default kind of its refs, forward and reverse type.
struct RelationField {
    kinds: &'static [&'static str],
    field: &'static str,
    default_kind: Option<&'static str>,
    forward: &'static str,
    reverse: &'static str,
}

static RELATION_FIELDS: &[RelationField] = &[
    RelationField {
        kinds: &[
            "component",
            "api",
            "resource",
            "system",
            "domain",
            "template",
            "airesource",
        ],
        field: "owner",
        default_kind: Some("Group"),
        forward: "ownedBy",
        reverse: "ownerOf",
    },
    RelationField {
        kinds: &["component"],
        field: "subcomponentOf",
        default_kind: Some("Component"),
        forward: "partOf",
        reverse: "hasPart",
    },
    RelationField {
        kinds: &["component", "api", "resource", "airesource"],
        field: "system",
        default_kind: Some("System"),
        forward: "partOf",
        reverse: "hasPart",
    },
    RelationField {
        kinds: &["system"],
        field: "domain",
        default_kind: Some("Domain"),
        forward: "partOf",
        reverse: "hasPart",
    },
    RelationField {
        kinds: &["domain"],
        field: "subdomainOf",
        default_kind: Some("Domain"),
        forward: "partOf",
        reverse: "hasPart",
    },
    RelationField {
        kinds: &["component"],
        field: "providesApis",
        default_kind: Some("API"),
        forward: "providesApi",
        reverse: "apiProvidedBy",
    },
    RelationField {
        kinds: &["component"],
        field: "consumesApis",
        default_kind: Some("API"),
        forward: "consumesApi",
        reverse: "apiConsumedBy",
    },
    RelationField {
        kinds: &["component", "resource", "airesource"],
        field: "dependsOn",
        default_kind: None,
        forward: "dependsOn",
        reverse: "dependencyOf",
    },
    RelationField {
        kinds: &["component", "resource"],
        field: "dependencyOf",
        default_kind: None,
        forward: "dependencyOf",
        reverse: "dependsOn",
    },
    RelationField {
        kinds: &["user"],
        field: "memberOf",
        default_kind: Some("Group"),
        forward: "memberOf",
        reverse: "hasMember",
    },
    RelationField {
        kinds: &["group"],
        field: "members",
        default_kind: Some("User"),
        forward: "hasMember",
        reverse: "memberOf",
    },
    RelationField {
        kinds: &["group"],
        field: "parent",
        default_kind: Some("Group"),
        forward: "childOf",
        reverse: "parentOf",
    },
    RelationField {
        kinds: &["group"],
        field: "children",
        default_kind: Some("Group"),
        forward: "parentOf",
        reverse: "childOf",
    },
];

/// The relations an entity implies, in both directions, as Backstage's
/// `BuiltinKindsEntityProcessor` emits them. Refs without a namespace take the
/// entity's own namespace.
pub fn generate_relations(entity: &Value) -> Result<Vec<Relation>, ValidationError> {
    let me = EntityRef::of_entity(entity).map_err(|e| ValidationError {
        path: "metadata".into(),
        message: e.to_string(),
    })?;
    let kind = me.kind.to_lowercase();
    let Some(spec) = entity.get("spec").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for rf in RELATION_FIELDS
        .iter()
        .filter(|rf| rf.kinds.contains(&kind.as_str()))
    {
        let refs: Vec<&str> = match spec.get(rf.field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => continue,
        };
        for r in refs {
            let target = EntityRef::parse(r, rf.default_kind, &me.namespace).map_err(|e| {
                ValidationError {
                    path: format!("spec.{}", rf.field),
                    message: e.to_string(),
                }
            })?;
            out.push(Relation {
                source: me.clone(),
                r#type: rf.forward.to_string(),
                target: target.clone(),
            });
            out.push(Relation {
                source: target,
                r#type: rf.reverse.to_string(),
                target: me.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn component() -> Value {
        json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "svc", "namespace": "payments"},
            "spec": {"type": "service", "lifecycle": "production", "owner": "team-a",
                     "system": "other/billing", "dependsOn": ["resource:db"],
                     "providesApis": ["api:default/pay"]}
        })
    }

    #[test]
    fn parse_follows_backstage() {
        let r = EntityRef::parse("component:ns/name", None, "default").expect("ok");
        assert_eq!(
            r,
            EntityRef {
                kind: "component".into(),
                namespace: "ns".into(),
                name: "name".into()
            }
        );
        let r = EntityRef::parse("name", Some("Group"), "x").expect("ok");
        assert_eq!((r.kind.as_str(), r.namespace.as_str()), ("Group", "x"));
        // A slash before the colon means there is no kind.
        let r = EntityRef::parse("ns/a:b", Some("K"), "d").expect("ok");
        assert_eq!(
            (r.kind.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("K", "ns", "a:b")
        );
        assert!(matches!(
            EntityRef::parse("name", None, "d"),
            Err(RefError::MissingKind(_))
        ));
        for bad in ["", ":x", "k:", "k:/n", "/n", "k:ns/"] {
            assert!(EntityRef::parse(bad, Some("K"), "d").is_err(), "{bad}");
        }
    }

    #[test]
    fn display_lowercases_kind_and_namespace_only() {
        let r = EntityRef {
            kind: "Component".into(),
            namespace: "Default".into(),
            name: "MySvc".into(),
        };
        assert_eq!(r.to_string(), "component:default/MySvc");
        assert_eq!(r.key(), "component:default/mysvc");
    }

    #[test]
    fn relations_default_to_source_namespace() {
        let rels = generate_relations(&component()).expect("ok");
        let fwd: Vec<String> = rels
            .iter()
            .filter(|r| r.source.name == "svc")
            .map(|r| format!("{} {}", r.r#type, r.target))
            .collect();
        assert_eq!(
            fwd,
            vec![
                "ownedBy group:payments/team-a",
                "partOf system:other/billing",
                "providesApi api:default/pay",
                "dependsOn resource:payments/db",
            ]
        );
        assert_eq!(rels.len(), 8);
        assert!(rels
            .iter()
            .any(|r| r.r#type == "ownerOf" && r.source.name == "team-a" && r.target.name == "svc"));
    }

    #[test]
    fn depends_on_needs_a_kind() {
        let mut e = component();
        e["spec"]["dependsOn"] = json!(["db"]);
        let err = generate_relations(&e).expect_err("fails");
        assert_eq!(err.path, "spec.dependsOn");
    }

    #[test]
    fn validation_reports_every_problem() {
        let e = json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "extra": 1,
            "metadata": {"name": "-bad-", "namespace": "UPPER", "tags": ["Java"],
                         "links": [{"url": "javascript:alert(1)"}], "labels": {"a/b/c": "x"}},
            "spec": {"type": "service"}
        });
        let errs = validate_entity(&e, &KindPolicy::builtin()).expect_err("fails");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "extra",
            "metadata.name",
            "metadata.namespace",
            "metadata.tags[0]",
            "metadata.links[0].url",
            "metadata.labels.a/b/c",
            "spec.lifecycle",
            "spec.owner",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn unknown_kinds_need_rules() {
        let e =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let errs = validate_entity(&e, &KindPolicy::builtin()).expect_err("fails");
        assert!(errs[0].message.contains("catalog.rules"));
        assert!(validate_entity(&e, &KindPolicy::with_extra_kinds(["widget".to_string()])).is_ok());
    }

    #[test]
    fn per_type_fields() {
        let mcp = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "API", "metadata": {"name": "m"},
            "spec": {"type": "mcp-server", "lifecycle": "x", "owner": "o", "remotes": []}});
        let errs = validate_entity(&mcp, &KindPolicy::builtin()).expect_err("fails");
        assert_eq!(errs[0].path, "spec.remotes");
        let api = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "API", "metadata": {"name": "m"},
            "spec": {"type": "openapi", "lifecycle": "x", "owner": "o"}});
        let errs = validate_entity(&api, &KindPolicy::builtin()).expect_err("fails");
        assert_eq!(errs[0].path, "spec.definition");
        let rule = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "AiResource", "metadata": {"name": "r"},
            "spec": {"type": "rule", "lifecycle": "x", "owner": "o", "category": "c"}});
        let errs = validate_entity(&rule, &KindPolicy::builtin()).expect_err("fails");
        assert_eq!(errs[0].path, "spec.rationale");
    }

    /// Every example file of Backstage's catalog-model validates.
    #[test]
    fn compat_examples_validate() {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/compat/catalog-examples"
        ));
        if !dir.exists() {
            eprintln!(
                "SKIPPED compat_examples_validate: {} is absent",
                dir.display()
            );
            assert!(
                std::env::var("STAGEDOOR_REQUIRE_PEERS").is_err(),
                "compat corpus required"
            );
            return;
        }
        let mut checked = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("ok") {
                let path = entry.expect("ok").path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "schema") {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("ok");
                for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                    let v = Value::deserialize(doc).expect("ok");
                    if v.get("kind").is_none() {
                        continue; // an OpenAPI document referenced by $text
                    }
                    let policy = KindPolicy::builtin();
                    if let Err(errs) = validate_entity(&v, &policy) {
                        // `$text` placeholders are resolved before validation during ingestion.
                        let only_placeholder = errs.iter().all(|e| e.path == "spec.definition");
                        assert!(only_placeholder, "{}: {errs:?}", path.display());
                    }
                    generate_relations(&v).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "only {checked} entities checked");
    }

    use serde::Deserialize;

    proptest! {
        #[test]
        fn refs_round_trip(kind in "[A-Za-z][A-Za-z0-9]{0,10}", ns in "[a-z0-9]{1,10}", name in "[A-Za-z0-9][A-Za-z0-9_.-]{0,20}") {
            let r = EntityRef { kind: kind.clone(), namespace: ns.clone(), name: name.clone() };
            let parsed = EntityRef::parse(&r.to_string(), None, "default").expect("ok");
            prop_assert_eq!(parsed.key(), r.key());
            prop_assert_eq!(parsed.name, name);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = EntityRef::parse(&s, Some("Component"), "default");
        }

        #[test]
        fn keys_compare_case_insensitively(name in "[a-z][a-z0-9]{0,20}") {
            let a = EntityRef::parse(&format!("Component:Default/{}", name.to_uppercase()), None, "x").expect("ok");
            let b = EntityRef::parse(&format!("component:default/{name}"), None, "x").expect("ok");
            prop_assert_eq!(a.key(), b.key());
        }
    }
}
