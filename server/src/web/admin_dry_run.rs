//! Admin: dry-run a template of the catalog with sample values. The form
//! starts from the schema's defaults; the result shows the steps, the log,
//! the output and the files the run would produce as a tree. Secrets go to
//! the run and nowhere else: the result page never shows them again.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::admin_templates::{page_error, preview_href, template_ref};
use super::entity::entity_href;
use super::{Layout, PageContext, PageError};
use crate::catalog::model::EntityRef;
use crate::scaffolder::{ScaffolderError, ScaffolderService};

/// Values and secrets may each be as large as the API allows, and a form
/// encodes a byte in up to three.
const MAX_FORM_BYTES: usize = 8 * crate::scaffolder::params::MAX_VALUES_BYTES;
/// The most of one file's text the page shows.
const MAX_SHOWN_BYTES: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/templates/{namespace}/{name}/dry-run")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route(web::get().to(form))
            .route(web::post().to(run)),
    );
}

type Svc = web::Data<ScaffolderService>;

pub struct StepRow {
    pub id: String,
    pub name: String,
    pub action: String,
    pub status: String,
}

pub struct LogLine {
    pub step: String,
    pub status: String,
    pub message: String,
}

/// One entry of the file tree, in order: `open` and `close` bracket a
/// directory's entries, `file` is a file.
pub struct TreeItem {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    pub size: usize,
    pub executable: bool,
    /// The text, or None for a binary file.
    pub text: Option<String>,
    pub truncated: bool,
}

pub struct DryRunResult {
    pub error: Option<String>,
    pub steps: Vec<StepRow>,
    pub log: Vec<LogLine>,
    pub output: String,
    pub files: Vec<TreeItem>,
    pub file_count: usize,
}

#[derive(Template)]
#[template(path = "pages/admin_dry_run.html")]
struct DryRunPage {
    layout: Layout,
    entity_ref: String,
    title: String,
    href: String,
    preview_href: String,
    action: String,
    values: String,
    /// Why the input was refused, with the problems one by one.
    refused: Option<String>,
    problems: Vec<String>,
    result: Option<DryRunResult>,
}

fn page(
    ctx: &PageContext,
    svc: &ScaffolderService,
    path: &(String, String),
) -> Result<DryRunPage, PageError> {
    let template = svc.template(&template_ref(path)).map_err(page_error)?;
    let r = EntityRef::parse(&template.entity_ref, Some("template"), "default")
        .map_err(|e| PageError::Input(e.to_string()))?;
    let title = template.title();
    Ok(DryRunPage {
        layout: ctx.layout(format!("Dry-run {title}"), "admin"),
        href: entity_href(&r),
        preview_href: preview_href(&r),
        action: format!("{}/dry-run", super::admin_templates::admin_base(&r)),
        values: serde_json::to_string_pretty(&template.default_values()).unwrap_or_default(),
        entity_ref: template.entity_ref,
        title,
        refused: None,
        problems: vec![],
        result: None,
    })
}

async fn form(ctx: PageContext, svc: Svc, path: web::Path<(String, String)>) -> HttpResponse {
    let result = ctx.require_admin().and_then(|_| page(&ctx, &svc, &path));
    ctx.respond(result)
}

async fn run(
    ctx: PageContext,
    svc: Svc,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    if let Err(e) = ctx
        .require_admin()
        .and_then(|_| ctx.check_form(&req, field("csrf")))
    {
        return ctx.error_page(&e);
    }
    let mut view = match page(&ctx, &svc, &path) {
        Ok(p) => p,
        Err(e) => return ctx.error_page(&e),
    };
    view.values = field("values").to_string();
    let input = parse_input(field("values"), field("secrets"));
    let outcome = match input {
        Ok((values, secrets)) => {
            svc.dry_run_template(&ctx.principal, &view.entity_ref, values, secrets)
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(result) => {
            view.result = Some(result_view(&result));
            ctx.respond(Ok(view))
        }
        Err(ScaffolderError::Invalid { message, errors }) => {
            view.refused = Some(message);
            view.problems = errors
                .iter()
                .map(|e| format!("{}: {}", e.property, e.message))
                .collect();
            refused(view)
        }
        Err(ScaffolderError::Input(message)) => {
            view.refused = Some(message);
            refused(view)
        }
        Err(e) => ctx.error_page(&page_error(e)),
    }
}

/// The form again, with what was wrong, as a 400.
fn refused(view: DryRunPage) -> HttpResponse {
    let mut res = super::render(&view);
    *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    res.extensions_mut().insert(crate::error::RenderedPage);
    res
}

/// The values (a JSON object) and the secrets (a JSON object, or nothing).
fn parse_input(
    values: &str,
    secrets: &str,
) -> Result<(Value, Map<String, Value>), ScaffolderError> {
    let values = if values.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_str::<Value>(values) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(ScaffolderError::Input(
                    "The values must be a JSON object, such as {\"name\": \"demo\"}".into(),
                ))
            }
            Err(e) => {
                return Err(ScaffolderError::Input(format!(
                    "The values are not valid JSON: {e}"
                )))
            }
        }
    };
    // The parser's message quotes no input, so a secret cannot leak through it.
    let secrets = if secrets.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(secrets) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ScaffolderError::Input(
                    "The secrets must be a JSON object of strings, such as {\"token\": \"…\"}"
                        .into(),
                ))
            }
            Err(e) => {
                return Err(ScaffolderError::Input(format!(
                    "The secrets are not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )))
            }
        }
    };
    Ok((values, secrets))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The dry-run's JSON (as `POST /v2/dry-run` answers) as the page shows it.
fn result_view(result: &Value) -> DryRunResult {
    let log: Vec<LogLine> = result["log"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| LogLine {
            step: text(&l["body"], "stepId").to_string(),
            status: text(&l["body"], "status").to_string(),
            message: text(&l["body"], "message").to_string(),
        })
        .collect();
    // A step's last status, except that a failure or a skip (an action
    // without dry-run support, which then "finishes") is what it shows.
    let mut status: HashMap<&str, &str> = HashMap::new();
    for l in log
        .iter()
        .filter(|l| !l.step.is_empty() && !l.status.is_empty())
    {
        let shown = status.entry(&l.step).or_default();
        if !matches!(*shown, "failed" | "skipped") {
            *shown = &l.status;
        }
    }
    let steps = result["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| StepRow {
            id: text(s, "id").to_string(),
            name: text(s, "name").to_string(),
            action: text(s, "action").to_string(),
            status: status
                .get(text(s, "id"))
                .copied()
                .unwrap_or("not run")
                .to_string(),
        })
        .collect();
    let files: Vec<(String, Vec<u8>, bool)> = result["directoryContents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text(f, "base64Content"))
                .unwrap_or_default();
            (
                text(f, "path").to_string(),
                bytes,
                f["executable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    DryRunResult {
        error: result
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string),
        steps,
        log,
        output: serde_json::to_string_pretty(&result["output"]).unwrap_or_default(),
        file_count: files.len(),
        files: tree(files),
    }
}

/// `isbinaryfile`'s gist, as `fetch:template` decides: NUL bytes or invalid UTF-8.
fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0) || std::str::from_utf8(bytes).is_err()
}

/// Files by path as a flat walk of their tree: directories open before
/// their entries and close after them, in path order.
fn tree(mut files: Vec<(String, Vec<u8>, bool)>) -> Vec<TreeItem> {
    files.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
    let mut out = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let item = |kind, name: &str, path: String| TreeItem {
        kind,
        name: name.to_string(),
        path,
        size: 0,
        executable: false,
        text: None,
        truncated: false,
    };
    for (path, bytes, executable) in files {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        let common = open
            .iter()
            .zip(dirs.iter())
            .take_while(|(a, b)| a == b)
            .count();
        while open.len() > common {
            open.pop();
            out.push(item("close", "", String::new()));
        }
        for d in &dirs[common..] {
            open.push(d.to_string());
            out.push(item("open", d, open.join("/")));
        }
        let size = bytes.len();
        let (text, truncated) = if is_binary(&bytes) {
            (None, false)
        } else {
            let shown = &bytes[..size.min(MAX_SHOWN_BYTES)];
            // Cut on a character boundary.
            let shown = match std::str::from_utf8(shown) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or_default(),
            };
            (Some(shown.to_string()), size > MAX_SHOWN_BYTES)
        };
        out.push(TreeItem {
            kind: "file",
            name: name.to_string(),
            path: parts.join("/"),
            size,
            executable,
            text,
            truncated,
        });
    }
    for _ in open {
        out.push(item("close", "", String::new()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_nests_directories_and_marks_binary_files() {
        let files = vec![
            ("src/main.rs".to_string(), b"fn main() {}".to_vec(), false),
            ("README.md".to_string(), b"# hi".to_vec(), false),
            ("src/bin/logo.png".to_string(), vec![0x89, 0, 1, 2], false),
            ("run.sh".to_string(), b"#!/bin/sh".to_vec(), true),
            ("src/lib.rs".to_string(), b"".to_vec(), false),
        ];
        let walk: Vec<String> = tree(files)
            .iter()
            .map(|i| match i.kind {
                "file" if i.text.is_none() => format!("{}(binary {})", i.name, i.size),
                "file" => i.name.clone(),
                "open" => format!("{}/", i.path),
                _ => "end".into(),
            })
            .collect();
        assert_eq!(
            walk,
            vec![
                "README.md",
                "run.sh",
                "src/",
                "src/bin/",
                "logo.png(binary 4)",
                "end",
                "lib.rs",
                "main.rs",
                "end"
            ]
        );
    }

    #[test]
    fn bad_values_and_secrets_are_refused_without_quoting_secrets() {
        assert!(parse_input("[1]", "").is_err());
        assert!(parse_input("{", "").is_err());
        let Err(ScaffolderError::Input(m)) = parse_input("{}", "{\"token\": s3cr3t-value}") else {
            panic!("refused");
        };
        assert!(!m.contains("s3cr3t"), "{m}");
        let (v, s) = parse_input(" ", "").expect("empty is fine");
        assert_eq!(v, serde_json::json!({}));
        assert!(s.is_empty());
    }
}
