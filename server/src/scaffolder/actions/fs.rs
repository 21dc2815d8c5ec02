//! `fs:rename` and `fs:delete`: move and remove files inside the workspace.

use globset::{GlobBuilder, GlobSetBuilder};
use serde_json::{json, Value};

use super::{Action, ActionContext, ActionError};
use crate::scaffolder::workspace::normalize;

pub struct Rename;

#[async_trait::async_trait]
impl Action for Rename {
    fn id(&self) -> &'static str {
        "fs:rename"
    }
    fn description(&self) -> &'static str {
        "Renames files and directories within the workspace"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["files"], "properties": {
            "files": {"title": "Files", "description": "A list of file and directory names that will be renamed", "type": "array", "items": {
                "type": "object", "required": ["from", "to"], "properties": {
                    "from": {"type": "string", "title": "The source location of the file to be renamed"},
                    "to": {"type": "string", "title": "The destination of the new file"},
                    "overwrite": {"type": "boolean", "title": "Overwrite existing file or directory, default is false"}
                }
            }}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let files = ctx
            .input
            .get("files")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| ActionError::Input("files must be an Array".into()))?;
        for file in files {
            let (Some(from), Some(to)) = (
                file.get("from").and_then(Value::as_str),
                file.get("to").and_then(Value::as_str),
            ) else {
                return Err(ActionError::Input(
                    "each file must have a from and to property".into(),
                ));
            };
            let overwrite = file
                .get("overwrite")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let src = ctx.workspace.resolve(from)?;
            let dest = ctx.workspace.resolve(to)?;
            if std::fs::symlink_metadata(&src).is_err() {
                return Err(ActionError::Input(format!("{from} does not exist")));
            }
            if std::fs::symlink_metadata(&dest).is_ok() {
                if !overwrite {
                    return Err(ActionError::Input(format!(
                        "{to} already exists; set overwrite to replace it"
                    )));
                }
                let meta = std::fs::symlink_metadata(&dest)
                    .map_err(|e| ActionError::Failed(format!("{to}: {e}")))?;
                let removed = if meta.is_dir() {
                    std::fs::remove_dir_all(&dest)
                } else {
                    std::fs::remove_file(&dest)
                };
                removed.map_err(|e| ActionError::Failed(format!("{to}: {e}")))?;
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ActionError::Failed(format!("{to}: {e}")))?;
            }
            std::fs::rename(&src, &dest)
                .map_err(|e| ActionError::Failed(format!("{from} -> {to}: {e}")))?;
            ctx.log(format!("Renamed {from} to {to}"));
        }
        Ok(())
    }
}

pub struct Delete;

#[async_trait::async_trait]
impl Action for Delete {
    fn id(&self) -> &'static str {
        "fs:delete"
    }
    fn description(&self) -> &'static str {
        "Deletes files and directories from the workspace"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["files"], "properties": {
            "files": {"title": "Files", "description": "A list of files and directories that will be deleted; glob patterns are supported", "type": "array", "items": {"type": "string"}}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let patterns: Vec<String> = ctx
            .input
            .get("files")
            .and_then(Value::as_array)
            .ok_or_else(|| ActionError::Input("files must be an Array".into()))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut set = GlobSetBuilder::new();
        for p in &patterns {
            // Patterns name paths inside the workspace, never outside it.
            let normal = normalize(p)?;
            let glob = GlobBuilder::new(&normal.to_string_lossy())
                .literal_separator(true)
                .build()
                .map_err(|e| ActionError::Input(format!("pattern {p:?}: {e}")))?;
            set.add(glob);
        }
        let set = set
            .build()
            .map_err(|e| ActionError::Input(format!("patterns: {e}")))?;
        // Links are listed, never followed: deleting one removes the link only.
        let mut removed_dirs: Vec<String> = Vec::new();
        for entry in ctx.workspace.entries()? {
            let bare = entry.trim_end_matches('/').to_string();
            if !set.is_match(&bare)
                || removed_dirs
                    .iter()
                    .any(|d| bare.starts_with(&format!("{d}/")))
            {
                continue;
            }
            let path = ctx.workspace.root().join(&bare);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| ActionError::Failed(format!("{bare}: {e}")))?;
            let result = if meta.is_dir() {
                removed_dirs.push(bare.clone());
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result.map_err(|e| ActionError::Failed(format!("{bare}: {e}")))?;
            ctx.log(format!("File {bare} deleted successfully"));
        }
        Ok(())
    }
}
