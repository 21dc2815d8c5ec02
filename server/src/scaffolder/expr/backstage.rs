//! The scaffolder's own filters: `parseRepoUrl`, `parseEntityRef`, `pick`
//! and `projectSlug`.

use std::rc::Rc;

use super::ast::Expr;
use super::interp::lookup_own;
use super::value::{to_js_string, Value};
use super::ExprError;

/// Names of the scaffolder filters.
pub const FILTERS: [&str; 4] = ["parseRepoUrl", "parseEntityRef", "pick", "projectSlug"];

fn err(e: &Expr, m: impl Into<String>) -> ExprError {
    ExprError::Runtime {
        line: e.line,
        column: e.col,
        message: m.into(),
    }
}

/// Applies one scaffolder filter.
pub fn apply(e: &Expr, name: &str, input: &Value, args: &[Value]) -> Result<Value, ExprError> {
    match name {
        "parseRepoUrl" => parse_repo_url(e, input),
        "projectSlug" => {
            let parsed = parse_repo_url(e, input)?;
            let owner = lookup_own(&parsed, "owner");
            let repo = lookup_own(&parsed, "repo");
            let s = |v: &Value| to_js_string(v).unwrap_or_default();
            Ok(Value::str(format!("{}/{}", s(&owner), s(&repo))))
        }
        "parseEntityRef" => parse_entity_ref(e, input, args.first()),
        _ => pick(e, input, args.first()),
    }
}

/// Why a repository URL could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrlError {
    /// Not a URL once `https://` is put in front; the parser's reason.
    Invalid(String),
    NoHost,
    MissingRepo,
}

/// `host?owner=o&repo=r`, read as Backstage's `parseRepoUrl` reads it: the
/// host (with its port), then whichever of owner, organization, workspace and
/// project are present, then the repo. The form's RepoUrlPicker check and the
/// filter both use it.
pub fn repo_url_parts(text: &str) -> Result<Vec<(&'static str, String)>, RepoUrlError> {
    let url = url::Url::parse(&format!("https://{text}"))
        .map_err(|x| RepoUrlError::Invalid(x.to_string()))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return Err(RepoUrlError::NoHost),
    };
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let repo = param("repo").ok_or(RepoUrlError::MissingRepo)?;
    let mut parts = vec![("host", host)];
    for key in ["owner", "organization", "workspace", "project"] {
        if let Some(v) = param(key) {
            parts.push((key, v));
        }
    }
    parts.push(("repo", repo));
    Ok(parts)
}

/// `host?owner=o&repo=r` → `{host, owner, repo, organization, workspace, project}`
/// (absent parameters are omitted).
fn parse_repo_url(e: &Expr, input: &Value) -> Result<Value, ExprError> {
    let Some(text) = input.text() else {
        return Err(err(e, "parseRepoUrl requires a string"));
    };
    let parts = repo_url_parts(text).map_err(|x| {
        let message = match x {
            RepoUrlError::Invalid(reason) => {
                format!("Invalid repo URL passed to parseRepoUrl, got {text}, {reason}")
            }
            RepoUrlError::NoHost => format!("Invalid repo URL passed to parseRepoUrl, got {text}"),
            RepoUrlError::MissingRepo => {
                format!("Invalid repo URL passed to parseRepoUrl, missing repo in {text}")
            }
        };
        err(e, message)
    })?;
    Ok(Value::object(
        parts
            .into_iter()
            .map(|(k, v)| (Rc::<str>::from(k), Value::str(v))),
    ))
}

/// `[kind:][namespace/]name` with optional `{defaultKind, defaultNamespace}`.
fn parse_entity_ref(e: &Expr, input: &Value, ctx: Option<&Value>) -> Result<Value, ExprError> {
    let default = |key: &str| -> Option<String> {
        ctx.map(|c| lookup_own(c, key))
            .and_then(|v| v.text().map(str::to_string))
    };
    let (kind, namespace, name) = match input {
        Value::Str(_) | Value::Safe(_) => {
            let text = input.text().unwrap_or("");
            let (kind, rest) = match text.split_once(':') {
                Some((k, r)) => (Some(k.to_string()), r),
                None => (None, text),
            };
            let (namespace, name) = match rest.split_once('/') {
                Some((n, r)) => (Some(n.to_string()), r.to_string()),
                None => (None, rest.to_string()),
            };
            (kind, namespace, name)
        }
        Value::Object(_) => {
            let get = |k: &str| lookup_own(input, k).text().map(str::to_string);
            (
                get("kind"),
                get("namespace"),
                get("name").unwrap_or_default(),
            )
        }
        _ => return Err(err(e, "Entity reference must be a string or an object")),
    };
    let kind = kind
        .filter(|k| !k.is_empty())
        .or_else(|| default("defaultKind"));
    let namespace = namespace
        .filter(|n| !n.is_empty())
        .or_else(|| default("defaultNamespace"))
        .unwrap_or_else(|| "default".to_string());
    let Some(kind) = kind else {
        return Err(err(e, format!("Entity reference \"{name}\" had missing or empty kind (e.g. did not start with \"component:\" or similar)")));
    };
    if name.is_empty() {
        return Err(err(e, "Entity reference had missing or empty name"));
    }
    Ok(Value::object([
        (Rc::from("kind"), Value::str(kind)),
        (Rc::from("namespace"), Value::str(namespace)),
        (Rc::from("name"), Value::str(name)),
    ]))
}

/// lodash `get(object, path)` for dotted/bracketed paths.
fn pick(e: &Expr, input: &Value, path: Option<&Value>) -> Result<Value, ExprError> {
    let path = path.cloned().unwrap_or_default();
    let path = to_js_string(&path).map_err(|_| err(e, "pick requires a property path"))?;
    let mut cur = input.clone();
    for seg in path.split(['.', '[', ']']).filter(|s| !s.is_empty()) {
        let seg = seg.trim_matches(['"', '\'']);
        if super::parser::is_reserved(seg) {
            return Err(err(e, format!("Template attribute {seg} is reserved")));
        }
        cur = lookup_own(&cur, seg);
    }
    Ok(cur)
}
