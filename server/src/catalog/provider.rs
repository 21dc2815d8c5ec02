//! Entity providers: sources of entities that are not files or URLs, such as a
//! user directory.
//!
//! A provider owns one location row (`type` is the provider's kind, `target` its
//! id from the configuration), so it goes through the same pipeline as every
//! location: what it returns is validated, written by `ingest::write_location`
//! as the full set it owns (what it no longer returns is deleted), and the change
//! feed carries it to the index. A read that fails keeps what the last good read
//! wrote and records the error on the location. This module knows no outside
//! service: each provider lives in `integrations` and implements the trait here.

use std::time::Duration;

use serde_json::Value;

use super::ingest::{self, Emitted, LocationSpec, Outcome};
use super::model::KindPolicy;
use crate::config::Schedule;

/// Why a provider could not read its entities.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The service behind the provider failed or refused.
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
    #[error("the read took longer than the schedule's timeout of {0:?}")]
    Timeout(Duration),
}

/// What a provider read: every entity it owns now.
#[derive(Debug, Clone, Default)]
pub struct Provided {
    /// Entities as a descriptor file would hold them; the pipeline adds the rest.
    pub entities: Vec<Value>,
    /// Problems that did not stop the read (an item the provider left out).
    pub warnings: Vec<String>,
}

/// A source of entities that the catalog syncs on a schedule and on demand.
#[async_trait::async_trait]
pub trait EntityProvider: Send + Sync {
    /// The location type, such as `cognito`.
    fn kind(&self) -> &str;
    /// The provider's id in the configuration: the location's target.
    fn id(&self) -> &str;
    fn schedule(&self) -> Schedule;
    /// Reads the full set of entities the provider owns.
    async fn read(&self) -> Result<Provided, ProviderError>;
}

/// The location that stands for a provider.
pub fn location_spec(provider: &dyn EntityProvider) -> LocationSpec {
    LocationSpec {
        kind: provider.kind().to_string(),
        target: provider.id().to_string(),
    }
}

/// An error and its causes on one line, each said once: how a failed read is
/// recorded on its location.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line
}

/// Reads a provider within its schedule's timeout and turns what it returned
/// into an outcome for `ingest::write_location`. On failure the outcome is
/// incomplete, so that the entities of the last good read stay, and the error
/// comes back as well as being on the outcome.
pub async fn read(
    provider: &dyn EntityProvider,
    policy: &KindPolicy,
) -> (Outcome, Result<(), String>) {
    let root = location_spec(provider);
    let label = format!("{} provider {}", root.kind, root.target);
    let mut out = Outcome {
        emitted: vec![ingest::generated_location_entity(&root)],
        location_errors: vec![],
        complete: true,
    };
    let timeout = provider.schedule().timeout;
    let provided = match tokio::time::timeout(timeout, provider.read()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return failed(out, &label, &e),
        Err(_) => return failed(out, &label, &ProviderError::Timeout(timeout)),
    };
    out.location_errors.extend(
        provided
            .warnings
            .into_iter()
            .map(|w| format!("{label}: {w}")),
    );
    let mut seen = std::collections::HashSet::new();
    for raw in provided.entities {
        match ingest::process_provided(raw, &root, policy) {
            Ok(e) => {
                if !seen.insert(e.entity_ref.key()) {
                    out.location_errors.push(format!(
                        "{label}: {} is provided twice; the first is kept",
                        e.entity_ref
                    ));
                    continue;
                }
                out.emitted.push(e);
            }
            Err((entity_ref, errors)) => {
                let message = errors.join("; ");
                match entity_ref {
                    // A known entity keeps its last good content and shows the error.
                    Some(r) if seen.insert(r.key()) => {
                        out.location_errors.push(format!("{label}: {r}: {message}"));
                        out.emitted.push(Emitted {
                            entity_ref: r,
                            entity: None,
                            errors,
                            hash: String::new(),
                            is_root_location: false,
                        });
                    }
                    _ => out.location_errors.push(format!("{label}: {message}")),
                }
            }
        }
    }
    (out, Ok(()))
}

fn failed(mut out: Outcome, label: &str, error: &ProviderError) -> (Outcome, Result<(), String>) {
    let message = format!("{label}: {}", error_line(error));
    out.location_errors.push(message.clone());
    out.complete = false;
    (out, Err(message))
}
