//! The software catalog: entity model, validation, relations, storage, ingestion and API.
//!
//! Data flows one way. Readers fetch location contents; `ingest` turns them into
//! processed entities and writes them, with their relations, in one transaction
//! through `store`; every write appends to a change feed, which `feed` applies to
//! the in-memory `index` of every replica. Reads are answered from the index alone.

pub mod api;
pub mod feed;
pub mod filter;
pub mod index;
pub mod ingest;
pub mod model;
pub mod packed;
pub mod provider;
pub mod reader;
pub mod search;
pub mod service;
pub mod store;

/// The kinds this catalog knows and validates.
pub const BUILTIN_KINDS: &[&str] = &[
    "Component",
    "API",
    "Resource",
    "System",
    "Domain",
    "Group",
    "User",
    "Location",
    "Template",
    "AiResource",
];

/// Errors of the catalog domain; `error.rs` maps them to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Validation(String, Vec<String>),
    /// A source the catalog reads from (an entity provider's service) failed.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<CatalogError> for crate::error::ApiError {
    fn from(e: CatalogError) -> Self {
        use crate::error::ApiError;
        match e {
            CatalogError::Input(m) => ApiError::input(m),
            CatalogError::NotFound(m) => ApiError::not_found(m),
            CatalogError::Conflict(m) => ApiError::conflict(m),
            CatalogError::NotAllowed(m) => ApiError::not_allowed(m),
            CatalogError::Validation(m, errors) => ApiError::input(m).with_extra(
                "errors",
                serde_json::Value::Array(
                    errors
                        .into_iter()
                        .map(
                            |message| serde_json::json!({"name": "InputError", "message": message}),
                        )
                        .collect(),
                ),
            ),
            CatalogError::Unavailable(m) => ApiError::new(crate::error::ErrorKind::Unavailable, m),
            CatalogError::Database(e) => ApiError::internal(e),
            CatalogError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// Milliseconds since the epoch: the one time format of the catalog tables.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
