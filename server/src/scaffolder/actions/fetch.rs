//! `fetch:template`, `fetch:plain` and `fetch:plain:file`: copy (and render)
//! files from next to the template, or from an allow-listed URL, into the
//! workspace.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::{json, Value};

use super::{Action, ActionContext, ActionError};
use crate::scaffolder::expr::{Context, Syntax};
use crate::scaffolder::workspace::{mode_of, Confined};

/// Most entries one fetch may copy: a template is a skeleton, not a disk.
const MAX_ENTRIES: usize = 20_000;
/// Most bytes one fetch may copy.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where a `url` input points.
enum SourceRef {
    Local(std::path::PathBuf),
    Remote(url::Url),
}

fn source_ref(ctx: &ActionContext<'_>, raw: &str) -> Result<SourceRef, ActionError> {
    if let Ok(url) = url::Url::parse(raw) {
        return match url.scheme() {
            "http" | "https" => Ok(SourceRef::Remote(url)),
            other => Err(ActionError::Input(format!(
                "url {raw:?}: the scheme {other:?} is not supported; use a path relative to the template or an http(s) URL"
            ))),
        };
    }
    let base = ctx.template.base_url.as_deref().ok_or_else(|| {
        ActionError::Input(format!(
            "url {raw:?} is relative, but the template has no location to resolve it against"
        ))
    })?;
    if let Some(path) = base.strip_prefix("file://") {
        let dir = std::path::Path::new(path).parent().ok_or_else(|| {
            ActionError::Input(format!("the template location {base} has no directory"))
        })?;
        let root = Confined::open(dir)?;
        return Ok(SourceRef::Local(root.resolve(raw)?));
    }
    let base = url::Url::parse(base)
        .map_err(|e| ActionError::Input(format!("the template location {base}: {e}")))?;
    let joined = base
        .join(raw)
        .map_err(|e| ActionError::Input(format!("url {raw:?}: {e}")))?;
    Ok(SourceRef::Remote(joined))
}

/// A directory to copy from, confined to itself.
fn source_dir(ctx: &ActionContext<'_>, raw: &str) -> Result<Confined, ActionError> {
    match source_ref(ctx, raw)? {
        SourceRef::Local(path) => {
            if !path.is_dir() {
                return Err(ActionError::Input(format!(
                    "url {raw:?} is not a directory next to the template"
                )));
            }
            Ok(Confined::open(&path)?)
        }
        SourceRef::Remote(url) => {
            ctx.services
                .reader
                .check_url(url.as_str())
                .map_err(|e| ActionError::Input(e.to_string()))?;
            Err(ActionError::NotConfigured(format!(
                "Reading a directory tree from {} (no source-control integration for this host)",
                url.host_str().unwrap_or("this host")
            )))
        }
    }
}

async fn read_file(
    ctx: &ActionContext<'_>,
    raw: &str,
) -> Result<(Vec<u8>, Option<u32>), ActionError> {
    match source_ref(ctx, raw)? {
        SourceRef::Local(path) => {
            let meta = std::fs::metadata(&path)
                .map_err(|e| ActionError::Input(format!("url {raw:?}: {e}")))?;
            if !meta.is_file() {
                return Err(ActionError::Input(format!("url {raw:?} is not a file")));
            }
            let bytes = ctx
                .services
                .reader
                .read_file(&path)
                .await
                .map_err(|e| ActionError::Failed(e.to_string()))?;
            Ok((bytes, mode_of(&meta)))
        }
        SourceRef::Remote(url) => {
            let bytes = ctx
                .services
                .reader
                .read_url(url.as_str())
                .await
                .map_err(|e| ActionError::Failed(e.to_string()))?;
            Ok((bytes, None))
        }
    }
}

/// `isbinaryfile`'s gist: NUL bytes or invalid UTF-8 near the start.
fn is_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    head.contains(&0) || std::str::from_utf8(bytes).is_err()
}

fn target_dir(ctx: &ActionContext<'_>) -> Result<Confined, ActionError> {
    let target = ctx.str_input("targetPath").unwrap_or("./");
    Ok(ctx.workspace.subdir(target)?)
}

/// Copies one entry (file or link) from `from` to `to`, keeping modes.
fn copy_entry(
    from: &Confined,
    location: &str,
    to: &Confined,
    out_path: &str,
) -> Result<u64, ActionError> {
    let src = from.resolve(location)?;
    let meta = std::fs::symlink_metadata(&src)
        .map_err(|e| ActionError::Failed(format!("{location}: {e}")))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&src)
            .map_err(|e| ActionError::Failed(format!("{location}: {e}")))?;
        to.symlink(out_path, &target.to_string_lossy())?;
        return Ok(0);
    }
    let bytes = std::fs::read(&src).map_err(|e| ActionError::Failed(format!("{location}: {e}")))?;
    to.write(out_path, &bytes, mode_of(&meta))?;
    Ok(bytes.len() as u64)
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, ActionError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| ActionError::Input(format!("pattern {p:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map_err(|e| ActionError::Input(format!("patterns: {e}")))
}

fn string_list(v: Option<&Value>, key: &str) -> Result<Option<Vec<String>>, ActionError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    ActionError::Input(format!(
                        "Fetch action input {key} must be an Array of strings"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ActionError::Input(format!(
            "Fetch action input {key} must be an Array"
        ))),
    }
}

/// Backstage's check for names that rendered to nothing.
fn skipped(path: &str) -> bool {
    path.is_empty() || path.starts_with('/') || path.contains("//")
}

pub struct Template;

#[async_trait::async_trait]
impl Action for Template {
    fn id(&self) -> &'static str {
        "fetch:template"
    }
    fn description(&self) -> &'static str {
        "Downloads a skeleton, templates variables into file and directory names and content, and places the result in the workspace, or optionally in a subdirectory specified by the `targetPath` input option."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["url"], "properties": {
            "url": {"title": "Fetch URL", "description": "Relative path or absolute URL pointing to the directory tree to fetch", "type": "string"},
            "targetPath": {"title": "Target Path", "description": "Target path within the working directory to download the contents to. Defaults to the working directory root.", "type": "string"},
            "values": {"title": "Template Values", "description": "Values to pass on to the templating engine", "type": "object"},
            "copyWithoutRender": {"title": "[Deprecated] Copy Without Render", "type": "array", "items": {"type": "string"}},
            "copyWithoutTemplating": {"title": "Copy Without Templating", "type": "array", "items": {"type": "string"}},
            "cookiecutterCompat": {"title": "Cookiecutter compatibility mode", "type": "boolean"},
            "templateFileExtension": {"title": "Template File Extension", "type": ["string", "boolean"]},
            "replace": {"title": "Replace files", "type": "boolean"},
            "trimBlocks": {"type": "boolean"},
            "lstripBlocks": {"type": "boolean"},
            "token": {"type": "string"}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let url = ctx
            .str_input("url")
            .ok_or_else(|| ActionError::Input("url is required".into()))?
            .to_string();
        let without_render = string_list(ctx.input.get("copyWithoutRender"), "copyWithoutRender")?;
        let without_templating = string_list(
            ctx.input.get("copyWithoutTemplating"),
            "copyWithoutTemplating",
        )?;
        if without_render.is_some() && without_templating.is_some() {
            return Err(ActionError::Input(
                "Fetch action input copyWithoutRender and copyWithoutTemplating can not be used at the same time".into(),
            ));
        }
        let render_filename = without_render.is_none();
        if !render_filename {
            ctx.log("[Deprecated] copyWithoutRender is deprecated Please use copyWithoutTemplating instead.");
        }
        let copy_only = without_render.or(without_templating);
        let cookiecutter = ctx.bool_input("cookiecutterCompat");
        let extension = match ctx.input.get("templateFileExtension") {
            Some(Value::Bool(true)) => Some(".njk".to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(if s.starts_with('.') {
                s.clone()
            } else {
                format!(".{s}")
            }),
            _ => None,
        };
        if extension.is_some() && (copy_only.is_some() || cookiecutter) {
            return Err(ActionError::Input(
                "Fetch action input extension incompatible with copyWithoutRender/copyWithoutTemplating and cookiecutterCompat".into(),
            ));
        }
        for option in ["trimBlocks", "lstripBlocks"] {
            if ctx.bool_input(option) {
                return Err(ActionError::Input(format!(
                    "Fetch action input {option} is not supported by this server's template engine"
                )));
            }
        }
        let copy_only = glob_set(&copy_only.unwrap_or_default())?;
        let values = ctx
            .input
            .get("values")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let (context, syntax) = if cookiecutter {
            (
                Context::new(json!({ "cookiecutter": values })),
                Syntax::NUNJUCKS,
            )
        } else {
            (
                Context::new(json!({ "values": values })),
                Syntax::SCAFFOLDER,
            )
        };
        let source = source_dir(ctx, &url)?;
        let output = target_dir(ctx)?;
        let entries = source.entries()?;
        if entries.len() > MAX_ENTRIES {
            return Err(ActionError::Input(format!(
                "the template has {} files and directories; at most {MAX_ENTRIES} are allowed",
                entries.len()
            )));
        }
        ctx.log(format!(
            "Processing {} template files/directories with input values",
            entries.len()
        ));
        let engine = ctx.services.engine.clone();
        let render = |text: &str| -> Result<String, ActionError> {
            engine
                .render_str(text, syntax, &context)
                .map(|r| r.text)
                .map_err(|e| ActionError::Input(e.to_string()))
        };
        let mut copied: u64 = 0;
        for location in entries {
            ctx.check_cancelled()?;
            let is_dir = location.ends_with('/');
            let bare = location.trim_end_matches('/');
            let (render_contents, out_path) = match &extension {
                Some(ext) => {
                    let templated = bare.ends_with(ext.as_str()) && !is_dir;
                    let name = if templated {
                        &bare[..bare.len() - ext.len()]
                    } else {
                        bare
                    };
                    (templated, render(name)?)
                }
                None => {
                    let contents = !copy_only.is_match(bare);
                    let name = if render_filename || contents {
                        render(bare)?
                    } else {
                        bare.to_string()
                    };
                    (contents, name)
                }
            };
            if skipped(&out_path) {
                continue;
            }
            let dest = output.resolve(&out_path)?;
            if std::fs::symlink_metadata(&dest).is_ok() && !ctx.bool_input("replace") {
                continue;
            }
            if !render_contents && extension.is_none() {
                ctx.log(format!(
                    "Copying file/directory {location} without processing."
                ));
            }
            if is_dir {
                ctx.log(format!(
                    "Writing directory {location} to template output path."
                ));
                std::fs::create_dir_all(&dest)
                    .map_err(|e| ActionError::Failed(format!("{out_path}: {e}")))?;
                continue;
            }
            let src = source.resolve(bare)?;
            let meta = std::fs::symlink_metadata(&src)
                .map_err(|e| ActionError::Failed(format!("{location}: {e}")))?;
            copied += meta.len();
            if copied > MAX_BYTES {
                return Err(ActionError::Input(format!(
                    "the template is larger than {MAX_BYTES} bytes"
                )));
            }
            let bytes = if meta.file_type().is_symlink() {
                None
            } else {
                Some(
                    std::fs::read(&src)
                        .map_err(|e| ActionError::Failed(format!("{location}: {e}")))?,
                )
            };
            match bytes {
                Some(b) if !is_binary(&b) => {
                    ctx.log(format!("Writing file {location} to template output path."));
                    let text = String::from_utf8_lossy(&b);
                    let content = if render_contents {
                        render(&text)?
                    } else {
                        text.into_owned()
                    };
                    output.write(&out_path, content.as_bytes(), mode_of(&meta))?;
                }
                binary_or_link => {
                    ctx.log(format!(
                        "Copying file binary or symbolic link at {location}, to template output path."
                    ));
                    match binary_or_link {
                        Some(b) => output.write(&out_path, &b, mode_of(&meta))?,
                        None => {
                            copy_entry(&source, bare, &output, &out_path)?;
                        }
                    }
                }
            }
        }
        ctx.log("Template result written to the workspace".to_string());
        Ok(())
    }
}

pub struct Plain;

#[async_trait::async_trait]
impl Action for Plain {
    fn id(&self) -> &'static str {
        "fetch:plain"
    }
    fn description(&self) -> &'static str {
        "Downloads content and places it in the workspace, or optionally in a subdirectory specified by the `targetPath` input option."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["url"], "properties": {
            "url": {"title": "Fetch URL", "type": "string"},
            "targetPath": {"title": "Target Path", "type": "string"},
            "token": {"type": "string"}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let url = ctx.str_input("url").unwrap_or_default().to_string();
        ctx.log(format!("Fetching plain content from {url}"));
        let source = source_dir(ctx, &url)?;
        let output = target_dir(ctx)?;
        let entries = source.entries()?;
        if entries.len() > MAX_ENTRIES {
            return Err(ActionError::Input(format!(
                "the source has {} files and directories; at most {MAX_ENTRIES} are allowed",
                entries.len()
            )));
        }
        let mut copied = 0;
        for location in entries {
            ctx.check_cancelled()?;
            if let Some(dir) = location.strip_suffix('/') {
                std::fs::create_dir_all(output.resolve(dir)?)
                    .map_err(|e| ActionError::Failed(format!("{dir}: {e}")))?;
                continue;
            }
            copied += copy_entry(&source, &location, &output, &location)?;
            if copied > MAX_BYTES {
                return Err(ActionError::Input(format!(
                    "the source is larger than {MAX_BYTES} bytes"
                )));
            }
        }
        Ok(())
    }
}

pub struct PlainFile;

#[async_trait::async_trait]
impl Action for PlainFile {
    fn id(&self) -> &'static str {
        "fetch:plain:file"
    }
    fn description(&self) -> &'static str {
        "Downloads single file and places it in the workspace."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["url", "targetPath"], "properties": {
            "url": {"title": "Fetch URL", "type": "string"},
            "targetPath": {"title": "Target Path", "type": "string"},
            "token": {"type": "string"}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let url = ctx.str_input("url").unwrap_or_default().to_string();
        let target = ctx.str_input("targetPath").unwrap_or_default().to_string();
        ctx.log(format!("Fetching plain content from {url}"));
        let (bytes, mode) = read_file(ctx, &url).await?;
        ctx.workspace.write(&target, &bytes, mode)?;
        Ok(())
    }
}
