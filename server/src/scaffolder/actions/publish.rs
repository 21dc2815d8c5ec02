//! `publish:file` writes the workspace to a local directory, which is how the
//! demo's templates finish offline. Publishing to source control comes with
//! its integration; until then those actions fail cleanly as not configured.

use serde_json::{json, Value};

use super::{Action, ActionContext, ActionError};
use crate::scaffolder::workspace::Confined;

pub struct File;

#[async_trait::async_trait]
impl Action for File {
    fn id(&self) -> &'static str {
        "publish:file"
    }
    fn description(&self) -> &'static str {
        "This action writes the workspace to a local directory below scaffolder.publishFile.allowedRoots"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["path"], "properties": {
            "path": {"title": "Path to a directory where the output will be written", "type": "string"}
        }})
    }
    fn output_schema(&self) -> Value {
        json!({"type": "object", "properties": {
            "remoteUrl": {"type": "string"},
            "repoContentsUrl": {"type": "string"}
        }})
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let path = ctx.str_input("path").unwrap_or_default().to_string();
        let requested = std::path::Path::new(&path);
        // Absolute paths must fall below a root; relative ones go below the first.
        let (root, rel) = ctx
            .services
            .publish_roots
            .iter()
            .find_map(|root| {
                if requested.is_absolute() {
                    let root_abs = std::path::absolute(root).ok()?;
                    let rel = requested.strip_prefix(&root_abs).ok()?;
                    Some((root.clone(), rel.to_string_lossy().into_owned()))
                } else {
                    Some((root.clone(), path.clone()))
                }
            })
            .ok_or_else(|| {
                ActionError::Input(format!(
                    "{path} is not below a directory listed in scaffolder.publishFile.allowedRoots"
                ))
            })?;
        if rel.trim_matches('/').is_empty() {
            return Err(ActionError::Input(
                "publish:file needs a directory below the allowed root, not the root itself".into(),
            ));
        }
        let root = Confined::create(&root)?;
        let target = root.resolve(&rel)?;
        if target.exists() {
            return Err(ActionError::Input(format!(
                "The file {path} already exists"
            )));
        }
        let out = root.subdir(&rel)?;
        ctx.log(format!("Writing the workspace to {}", out.root().display()));
        for file in ctx.workspace.files()? {
            ctx.check_cancelled()?;
            if file.symlink {
                out.symlink(&file.path, &String::from_utf8_lossy(&file.content))?;
            } else {
                let mode = if file.executable { 0o755 } else { 0o644 };
                out.write(&file.path, &file.content, Some(mode))?;
            }
        }
        let url = format!("file://{}", out.root().display());
        ctx.output("remoteUrl", json!(url));
        ctx.output("repoContentsUrl", json!(url));
        Ok(())
    }
}

/// Actions that publish to, or act on, source-control hosts.
pub const NOT_CONFIGURED: &[&str] = &[
    "publish:bitbucket",
    "publish:bitbucketCloud",
    "publish:bitbucketServer",
    "publish:gerrit",
    "publish:github",
    "publish:github:pull-request",
    "publish:gitlab",
    "publish:gitlab:merge-request",
    "github:actions:dispatch",
    "github:repo:create",
    "github:repo:push",
    "github:webhook",
];

/// An action whose integration is not set up on this server.
pub struct NotConfigured(pub &'static str);

#[async_trait::async_trait]
impl Action for NotConfigured {
    fn id(&self) -> &'static str {
        self.0
    }
    fn description(&self) -> &'static str {
        "Needs a source-control integration that is not configured on this server."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn output_schema(&self) -> Value {
        json!({"type": "object", "properties": {
            "remoteUrl": {"type": "string"},
            "repoContentsUrl": {"type": "string"}
        }})
    }
    async fn run(&self, _ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        Err(ActionError::NotConfigured(format!(
            "The action {} needs a source-control integration, which",
            self.0
        )))
    }
}
