//! The one place where domain errors become HTTP responses.
//!
//! Every error leaves the server in Backstage's shape:
//! `{error:{name,message},request:{method,url},response:{statusCode}}`.
//! Handlers return [`ApiError`]; its `error_response` records the name and
//! message, and [`render_errors`] adds the request part, which only the
//! middleware can see. A 5xx logs its cause chain and shows the caller none of it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Backstage's error names, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Input,
    Authentication,
    NotAllowed,
    NotFound,
    Conflict,
    PayloadTooLarge,
    Internal,
    Unavailable,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Input => "InputError",
            ErrorKind::Authentication => "AuthenticationError",
            ErrorKind::NotAllowed => "NotAllowedError",
            ErrorKind::NotFound => "NotFoundError",
            ErrorKind::Conflict => "ConflictError",
            ErrorKind::PayloadTooLarge => "PayloadTooLargeError",
            ErrorKind::Internal => "Error",
            ErrorKind::Unavailable => "ServiceUnavailableError",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Input => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::NotAllowed => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// Extra top-level fields, e.g. the `errors` list of `/validate-entity`.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            extra: None,
            source: None,
        }
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn not_allowed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotAllowed, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Authentication, message)
    }
    /// A server fault: the cause is logged, the client sees a generic message.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            kind: ErrorKind::Internal,
            message: "Internal server error".into(),
            extra: None,
            source: Some(source.into()),
        }
    }
    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

/// Carried in the response extensions so that the middleware can complete the body.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    pub name: &'static str,
    pub message: String,
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        if let Some(source) = &self.source {
            tracing::error!(error = format!("{source:#}"), "request failed");
        }
        let mut res = HttpResponse::build(self.kind.status())
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .body(
                json!({"error": {"name": self.kind.name(), "message": self.message}}).to_string(),
            );
        res.extensions_mut().insert(ErrorInfo {
            name: self.kind.name(),
            message: self.message.clone(),
            extra: self.extra.clone(),
        });
        res
    }
}

/// Renders the complete Backstage error body, including the request part.
pub fn error_body(info: &ErrorInfo, method: &str, url: &str, status: u16) -> String {
    let mut body = serde_json::Map::new();
    if let Some(extra) = &info.extra {
        body.extend(extra.clone());
    }
    body.insert(
        "error".into(),
        json!({"name": info.name, "message": info.message}),
    );
    body.insert("request".into(), json!({"method": method, "url": url}));
    body.insert("response".into(), json!({"statusCode": status}));
    serde_json::Value::Object(body).to_string()
}

/// Middleware body: fills in the request part of error bodies, and turns
/// actix's own plain-text errors (routing, payload limits) into the same shape.
pub async fn render_errors(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = req.method().to_string();
    let url = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // Holding a clone of the request across `next` would break actix's routing,
    // so errors raised by inner middleware are rendered into an error value.
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            let response = complete(err.error_response(), &method, &url);
            return Err(
                actix_web::error::InternalError::from_response(err.to_string(), response).into(),
            );
        }
    };
    let (http_req, response) = res.into_parts();
    Ok(ServiceResponse::new(
        http_req,
        complete(response, &method, &url),
    ))
}

/// Marks an error response that is a finished page for people (the sign-in
/// callback, the 403 page): it keeps its body instead of Backstage's JSON.
#[derive(Debug, Clone, Copy)]
pub struct RenderedPage;

fn complete(response: HttpResponse<BoxBody>, method: &str, url: &str) -> HttpResponse<BoxBody> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<RenderedPage>().is_some()
    {
        return response;
    }
    let info = response
        .extensions()
        .get::<ErrorInfo>()
        .cloned()
        .unwrap_or_else(|| generic_info(status));
    let mut builder = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    builder.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    ));
    builder.body(error_body(&info, method, url, status.as_u16()))
}

fn generic_info(status: StatusCode) -> ErrorInfo {
    let (name, message) = match status {
        StatusCode::NOT_FOUND => ("NotFoundError", "Not found".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("NotAllowedError", "Method not allowed".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PayloadTooLargeError",
            "Request body is too large".to_string(),
        ),
        StatusCode::UNAUTHORIZED => ("AuthenticationError", "Unauthorized".to_string()),
        StatusCode::FORBIDDEN => ("NotAllowedError", "Forbidden".to_string()),
        s if s.is_client_error() => (
            "InputError",
            s.canonical_reason().unwrap_or("Bad request").to_string(),
        ),
        _ => ("Error", "Internal server error".to_string()),
    };
    ErrorInfo {
        name,
        message,
        extra: None,
    }
}
