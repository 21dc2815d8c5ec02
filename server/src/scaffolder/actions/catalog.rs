//! `catalog:register` and `catalog:write`.

use serde_json::{json, Value};

use super::{Action, ActionContext, ActionError};
use crate::catalog::ingest::LocationSpec;
use crate::catalog::model::EntityRef;
use crate::catalog::CatalogError;

pub struct Register;

/// `file:///dir` + `/catalog-info.yaml`, or a URL joined as Backstage's integrations do.
fn catalog_info_url(repo_contents: &str, path: &str) -> Result<String, ActionError> {
    if let Some(dir) = repo_contents.strip_prefix("file://") {
        let joined = format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            path.trim_start_matches("./").trim_start_matches('/')
        );
        return Ok(format!("file://{joined}"));
    }
    let base = url::Url::parse(&format!("{}/", repo_contents.trim_end_matches('/')))
        .map_err(|e| ActionError::Input(format!("repoContentsUrl {repo_contents:?}: {e}")))?;
    base.join(path.trim_start_matches('/'))
        .map(|u| u.to_string())
        .map_err(|e| ActionError::Input(format!("catalogInfoPath {path:?}: {e}")))
}

impl Register {
    async fn register(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let url =
            match (
                ctx.str_input("catalogInfoUrl"),
                ctx.str_input("repoContentsUrl"),
            ) {
                (Some(u), _) => u.to_string(),
                (None, Some(repo)) => catalog_info_url(
                    repo,
                    ctx.str_input("catalogInfoPath")
                        .unwrap_or("/catalog-info.yaml"),
                )?,
                (None, None) => return Err(ActionError::Input(
                    "catalog:register needs catalogInfoUrl, or repoContentsUrl and catalogInfoPath"
                        .into(),
                )),
            };
        ctx.log(format!("Registering {url} in the catalog"));
        let catalog = ctx.services.catalog.clone();
        let result = if let Some(path) = url.strip_prefix("file://") {
            // Only what publish:file wrote can be registered from disk.
            let path = std::path::Path::new(path);
            let canonical = std::fs::canonicalize(path)
                .map_err(|e| ActionError::Input(format!("{url}: {e}")))?;
            let allowed =
                ctx.services.publish_roots.iter().any(|root| {
                    std::fs::canonicalize(root).is_ok_and(|r| canonical.starts_with(r))
                });
            if !allowed {
                return Err(ActionError::Input(format!(
                    "{url} is outside scaffolder.publishFile.allowedRoots and cannot be registered"
                )));
            }
            catalog
                .add_trusted_location(LocationSpec {
                    kind: "file".into(),
                    target: canonical.display().to_string(),
                })
                .await
        } else {
            catalog
                .add_location(
                    LocationSpec {
                        kind: "url".into(),
                        target: url.clone(),
                    },
                    false,
                )
                .await
        };
        let entities = match result {
            Ok((_, entities, _)) => entities,
            Err(e) => return Err(catalog_error(e)),
        };
        let refs: Vec<String> = entities
            .iter()
            .filter_map(|e| EntityRef::of_entity(e).ok())
            .map(|r| r.to_string())
            .collect();
        let entity_ref = refs
            .iter()
            .find(|r| !r.starts_with("location:"))
            .or(refs.first());
        if let Some(r) = entity_ref {
            ctx.output("entityRef", json!(r));
        }
        ctx.output("catalogInfoUrl", json!(url));
        Ok(())
    }
}

fn catalog_error(e: CatalogError) -> ActionError {
    match e {
        CatalogError::Input(m)
        | CatalogError::Conflict(m)
        | CatalogError::NotAllowed(m)
        | CatalogError::NotFound(m) => ActionError::Input(m),
        CatalogError::Validation(m, errors) => {
            ActionError::Input(format!("{m}: {}", errors.join("; ")))
        }
        other => ActionError::Failed(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Action for Register {
    fn id(&self) -> &'static str {
        "catalog:register"
    }
    fn description(&self) -> &'static str {
        "Registers entities from a catalog descriptor file in the workspace into the software catalog."
    }
    fn input_schema(&self) -> Value {
        json!({"oneOf": [
            {"type": "object", "required": ["catalogInfoUrl"], "properties": {
                "catalogInfoUrl": {"title": "Catalog Info URL", "type": "string"},
                "optional": {"title": "Optional", "type": "boolean"}
            }},
            {"type": "object", "required": ["repoContentsUrl"], "properties": {
                "repoContentsUrl": {"title": "Repository Contents URL", "type": "string"},
                "catalogInfoPath": {"title": "Fetch URL", "type": "string"},
                "optional": {"title": "Optional", "type": "boolean"}
            }}
        ]})
    }
    fn output_schema(&self) -> Value {
        json!({"type": "object", "required": ["catalogInfoUrl"], "properties": {
            "entityRef": {"type": "string"},
            "catalogInfoUrl": {"type": "string"}
        }})
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        match self.register(ctx).await {
            Err(e) if ctx.bool_input("optional") => {
                ctx.log(format!("Registration is optional, going on: {e}"));
                Ok(())
            }
            other => other,
        }
    }
}

pub struct Write;

#[async_trait::async_trait]
impl Action for Write {
    fn id(&self) -> &'static str {
        "catalog:write"
    }
    fn description(&self) -> &'static str {
        "Writes the catalog-info.yaml for your template"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "required": ["entity"], "properties": {
            "filePath": {"title": "Catalog file path", "type": "string"},
            "entity": {"title": "Entity info to write catalog-info.yaml", "type": "object"}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        let path = ctx
            .str_input("filePath")
            .unwrap_or("catalog-info.yaml")
            .to_string();
        let entity = ctx.input.get("entity").cloned().unwrap_or(Value::Null);
        let yaml = serde_yaml_ng::to_string(&entity)
            .map_err(|e| ActionError::Input(format!("entity: {e}")))?;
        ctx.log(format!("Writing {path}"));
        ctx.workspace.write(&path, yaml.as_bytes(), None)?;
        Ok(())
    }
}
