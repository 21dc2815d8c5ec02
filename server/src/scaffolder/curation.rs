//! An admin's view of the templates: registering the locations they come
//! from, and every Template with its origin, its problems and who may use it.
//!
//! URL locations take the catalog's own road (its host allow-list and
//! address checks); `file` locations are accepted only below
//! `scaffolder.templateFiles.allowedRoots`, so that a form cannot make the
//! server read any file it can reach. A Template that fails its checks is
//! refused at ingestion and never becomes an entity: its problems are on its
//! location, which this view shows beside the templates.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::{template, Curation, ScaffolderError, ScaffolderService};
use crate::auth::Principal;
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::ingest::{LocationSpec, ANNOTATION_ORIGIN_LOCATION};
use crate::catalog::model::EntityRef;
use crate::catalog::service::{ListParams, LocationView};
use crate::catalog::CatalogError;

/// One Template entity as the admin page lists it.
#[derive(Debug, Clone)]
pub struct TemplateSummary {
    pub entity_ref: EntityRef,
    pub title: String,
    pub owner: Option<String>,
    /// The root location that provides it, `type:target`.
    pub origin: Option<String>,
    /// What the checks find wrong with it now, and the errors of its last
    /// processing (it keeps its last good content while its file is broken).
    pub problems: Vec<String>,
    pub curation: Curation,
    /// Its form's starting values, JSON.
    pub default_values: Value,
}

/// A location that provides templates, or whose errors name one.
#[derive(Debug, Clone)]
pub struct TemplateLocation {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub from_config: bool,
    pub last_refreshed_at: Option<i64>,
    /// The latest processing's messages, refused templates' problems included.
    pub errors: Vec<String>,
    pub templates: usize,
}

pub struct TemplateOverview {
    pub templates: Vec<TemplateSummary>,
    pub locations: Vec<TemplateLocation>,
}

fn catalog_error(e: CatalogError) -> ScaffolderError {
    match e {
        CatalogError::Input(m) | CatalogError::Validation(m, _) => ScaffolderError::Input(m),
        CatalogError::NotFound(m) => ScaffolderError::NotFound(m),
        CatalogError::Conflict(m) => ScaffolderError::Conflict(m),
        CatalogError::NotAllowed(m) => ScaffolderError::NotAllowed(m),
        CatalogError::Unavailable(m) => ScaffolderError::Internal(anyhow::anyhow!(m)),
        CatalogError::Database(e) => ScaffolderError::Database(e),
        CatalogError::Internal(e) => ScaffolderError::Internal(e),
    }
}

fn admin_only(who: &Principal) -> Result<(), ScaffolderError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ScaffolderError::NotAllowed(
            "Only admins manage templates".into(),
        ))
    }
}

/// The messages of an entity's processing errors (`status.items`).
fn status_errors(entity: &Value) -> Vec<String> {
    entity
        .pointer("/status/items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i["level"].as_str() == Some("error"))
        .filter_map(|i| {
            i.pointer("/error/message")
                .or_else(|| i.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

impl ScaffolderService {
    /// Whether `file` template locations can be registered at all.
    pub fn template_files_allowed(&self) -> bool {
        !self.config.template_roots.is_empty()
    }

    /// Registers a location of templates: an http(s) URL, or an absolute path
    /// (or `file:` URL) below one of the allowed roots. Returns the location
    /// as processed, errors included, and the entities it provides.
    pub async fn register_template_location(
        &self,
        who: &Principal,
        target: &str,
    ) -> Result<(LocationView, Vec<Value>), ScaffolderError> {
        admin_only(who)?;
        let target = target.trim();
        if target.is_empty() {
            return Err(ScaffolderError::Input(
                "Give the URL or the file path of a template's YAML file".into(),
            ));
        }
        let (location, entities) = if let Some(path) = file_path(target) {
            let path = self.allowed_template_file(&path)?;
            let spec = LocationSpec {
                kind: "file".into(),
                target: path.display().to_string(),
            };
            let (l, e, _) = self
                .catalog
                .add_trusted_location(spec)
                .await
                .map_err(catalog_error)?;
            (l, e)
        } else {
            match url::Url::parse(target) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(ScaffolderError::Input(format!(
                        "\"{target}\" is neither an http(s) URL nor an absolute file path"
                    )))
                }
            }
            let spec = LocationSpec {
                kind: "url".into(),
                target: target.to_string(),
            };
            let (l, e, _) = self
                .catalog
                .add_location(spec, false)
                .await
                .map_err(catalog_error)?;
            (l, e)
        };
        // The location as its processing left it, with its errors.
        let location = self
            .catalog
            .get_location(&location.id)
            .await
            .map_err(catalog_error)?;
        Ok((location, entities))
    }

    /// Unregisters a location and removes its entities; returns what it was.
    pub async fn unregister_template_location(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<LocationView, ScaffolderError> {
        admin_only(who)?;
        let location = self.catalog.get_location(id).await.map_err(catalog_error)?;
        self.catalog
            .delete_location(id)
            .await
            .map_err(catalog_error)?;
        Ok(location)
    }

    /// The file a `file` template location may name: inside an allowed root
    /// once links are resolved, a regular YAML file.
    fn allowed_template_file(&self, path: &Path) -> Result<PathBuf, ScaffolderError> {
        let roots = &self.config.template_roots;
        if roots.is_empty() {
            return Err(ScaffolderError::Input(
                "Template files can be registered only below scaffolder.templateFiles.allowedRoots, and none is configured; register a URL instead".into(),
            ));
        }
        let outside = || {
            ScaffolderError::Input(format!(
                "{} is not below scaffolder.templateFiles.allowedRoots",
                path.display()
            ))
        };
        if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(ScaffolderError::Input(format!(
                "{} is not an absolute path without \"..\"",
                path.display()
            )));
        }
        let roots: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        // Nothing is said about a path outside the roots, not even whether it exists.
        let lexically_inside = roots.iter().any(|r| path.starts_with(r))
            || self
                .config
                .template_roots
                .iter()
                .any(|r| path.starts_with(r));
        if !lexically_inside {
            return Err(outside());
        }
        let real = std::fs::canonicalize(path).map_err(|e| {
            ScaffolderError::Input(format!("{} cannot be read: {e}", path.display()))
        })?;
        if !roots.iter().any(|r| real.starts_with(r)) {
            return Err(outside());
        }
        if !real.is_file() {
            return Err(ScaffolderError::Input(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let yaml = real
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if !yaml {
            return Err(ScaffolderError::Input(format!(
                "{} is not a .yaml or .yml file",
                path.display()
            )));
        }
        Ok(real)
    }

    /// Every Template in the catalog with its curation and problems, and the
    /// locations that provide templates or failed to.
    pub async fn template_overview(
        &self,
        who: &Principal,
    ) -> Result<TemplateOverview, ScaffolderError> {
        admin_only(who)?;
        let page = self
            .catalog
            .list(&ListParams {
                filter: EntityFilter {
                    any_of: vec![vec![Condition {
                        key: "kind".into(),
                        values: Some(vec!["template".into()]),
                    }]],
                },
                ..Default::default()
            })
            .map_err(catalog_error)?;
        let entities: Vec<Value> =
            serde_json::from_slice(&page.body).map_err(|e| anyhow::anyhow!("entity list: {e}"))?;
        let curations = self.curations().await?;
        let mut templates: Vec<TemplateSummary> = entities
            .iter()
            .filter_map(|e| {
                let entity_ref = EntityRef::of_entity(e).ok()?;
                let mut problems: Vec<String> = template::problems(e)
                    .into_iter()
                    .map(|(p, m)| format!("{p}: {m}"))
                    .collect();
                for m in status_errors(e) {
                    if !problems.contains(&m) {
                        problems.push(m);
                    }
                }
                let parsed = template::Template::from_entity(e);
                if let Err(m) = &parsed {
                    problems.push(m.clone());
                }
                Some(TemplateSummary {
                    title: e
                        .pointer("/metadata/title")
                        .or_else(|| e.pointer("/metadata/name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    owner: e
                        .pointer("/spec/owner")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    origin: e
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(ANNOTATION_ORIGIN_LOCATION))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    problems,
                    curation: curations
                        .get(&entity_ref.to_string())
                        .cloned()
                        .unwrap_or_default(),
                    default_values: parsed
                        .map(|t| t.default_values())
                        .unwrap_or_else(|_| serde_json::json!({})),
                    entity_ref,
                })
            })
            .collect();
        templates.sort_by_key(|t| t.entity_ref.to_string());

        let mut locations: Vec<TemplateLocation> = self
            .catalog
            .location_states()
            .await
            .map_err(catalog_error)?
            .into_iter()
            .filter_map(|l| {
                let key = format!("{}:{}", l.kind, l.target);
                let count = templates
                    .iter()
                    .filter(|t| t.origin.as_deref().is_some_and(|o| o == key))
                    .count();
                let errors = LocationView::from(&l).errors;
                let names_a_template = errors.iter().any(|e| e.to_lowercase().contains("template"));
                (count > 0 || names_a_template).then(|| TemplateLocation {
                    from_config: l.source == "config",
                    last_refreshed_at: l.last_refreshed_at,
                    templates: count,
                    errors,
                    id: l.id,
                    kind: l.kind,
                    target: l.target,
                })
            })
            .collect();
        locations.sort_by(|a, b| {
            (a.errors.is_empty(), &a.target).cmp(&(b.errors.is_empty(), &b.target))
        });
        Ok(TemplateOverview {
            templates,
            locations,
        })
    }
}

/// The path a target names when it is a file: `/abs/path` or `file:///abs/path`.
fn file_path(target: &str) -> Option<PathBuf> {
    if target.starts_with('/') {
        return Some(PathBuf::from(target));
    }
    let rest = target.strip_prefix("file:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let decoded = url::Url::parse(&format!("file://{path}"))
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .unwrap_or_else(|| PathBuf::from(path));
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::file_path;
    use std::path::PathBuf;

    #[test]
    fn file_targets_are_paths_or_file_urls() {
        assert_eq!(file_path("/srv/t.yaml"), Some(PathBuf::from("/srv/t.yaml")));
        assert_eq!(
            file_path("file:///srv/a%20b/t.yaml"),
            Some(PathBuf::from("/srv/a b/t.yaml"))
        );
        assert_eq!(
            file_path("file:/srv/t.yaml"),
            Some(PathBuf::from("/srv/t.yaml"))
        );
        assert_eq!(file_path("https://example.com/t.yaml"), None);
        assert_eq!(file_path("t.yaml"), None);
    }
}
