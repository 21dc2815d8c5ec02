//! The request gate: works out each request's [`Principal`], refuses API
//! calls without one when the server requires it, refuses cross-site writes
//! made with the session cookie, and sets the security headers on every
//! response. Page and API handlers then only ask the principal about roles.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::{AuthError, AuthService, Principal, UserPrincipal};
use crate::error::ApiError;

/// The CSP nonce of this response's scripts, made when a handler first asks
/// for it; the gate then names it in the response's policy.
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

pub async fn gate(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(auth) = req.app_data::<web::Data<AuthService>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let path = req.path();
    let is_static = path.starts_with("/static/");
    let api = path.starts_with("/api/");
    let public_api = path.starts_with("/api/auth/") || path == "/api/catalog/openapi.json";
    let principal = if is_static {
        Principal::Anonymous {
            open: !auth.required(),
        }
    } else {
        match principal_of(&auth, &req).await {
            Ok(p) => p,
            Err(e) => return Ok(req.error_response(ApiError::from(e)).map_into_boxed_body()),
        }
    };
    if api && !public_api {
        if let Principal::Anonymous { open: false } = principal {
            let has_header = req.headers().contains_key(header::AUTHORIZATION);
            let err = ApiError::unauthenticated(if has_header {
                "Invalid credentials"
            } else {
                "Missing credentials"
            });
            return Ok(req.error_response(err).map_into_boxed_body());
        }
        if let Principal::User(u) = &principal {
            if u.csrf.is_some() && !is_safe(req.method()) && !same_site_xhr(&auth, req.request()) {
                let err = ApiError::not_allowed(
                    "Cross-site request refused: a cookie-authenticated API call must come from this site with X-Requested-With",
                );
                return Ok(req.error_response(err).map_into_boxed_body());
            }
        }
    }
    req.extensions_mut().insert(principal);
    let secure = auth.cookies.secure;
    let mut res = next.call(req).await?.map_into_boxed_body();
    // A nonce exists only if a handler asked for one (pages with scripts);
    // every other response gets the fixed policy without a per-request value.
    let nonce = res.request().extensions().get::<CspNonce>().cloned();
    let csp = match nonce {
        Some(CspNonce(n)) => HeaderValue::from_str(&format!(
            "default-src 'self'; script-src 'self' 'nonce-{n}'; style-src 'self'; {CSP_REST}"
        ))
        .ok(),
        None => Some(HeaderValue::from_static(CSP_FIXED)),
    };
    let h = res.headers_mut();
    let defaults = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in defaults {
        insert_default(h, name, value);
    }
    if let Some(csp) = csp {
        insert_default(h, header::CONTENT_SECURITY_POLICY, csp);
    }
    if secure {
        insert_default(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    Ok(res)
}

fn insert_default(h: &mut header::HeaderMap, name: header::HeaderName, value: HeaderValue) {
    if !h.contains_key(&name) {
        h.insert(name, value);
    }
}

/// The policy's directives after `script-src`/`style-src`.
const CSP_REST: &str =
    "img-src 'self' data: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
/// The policy of responses that run no inline script.
const CSP_FIXED: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

async fn principal_of(auth: &AuthService, req: &ServiceRequest) -> Result<Principal, AuthError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| AuthError::Rejected("Invalid credentials".into()))?;
        return auth
            .bearer(token)
            .await
            .map_err(|_| AuthError::Rejected("Invalid credentials".into()));
    }
    if let Some(cookie) = req.cookie(auth.cookies.session) {
        if let Some(session) = auth.session(cookie.value()).await? {
            return Ok(Principal::User(std::sync::Arc::new(UserPrincipal {
                identity: session.identity,
                session_id: session.id,
                csrf: Some(session.csrf),
            })));
        }
    }
    Ok(Principal::Anonymous {
        open: !auth.required(),
    })
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// An API call from our own pages: Origin (or Sec-Fetch-Site) says same
/// origin, and it carries `X-Requested-With`, which a cross-site form cannot set.
pub fn same_site_xhr(auth: &AuthService, req: &HttpRequest) -> bool {
    same_origin(auth, req) && req.headers().contains_key("x-requested-with")
}

/// The request's Origin is the app's, or, with no Origin, the browser says same-origin.
pub fn same_origin(auth: &AuthService, req: &HttpRequest) -> bool {
    match req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        Some(origin) => origin == auth.app_origin,
        None => req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| s == "same-origin" || s == "none"),
    }
}

impl FromRequest for Principal {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(req
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Anonymous { open: false })))
    }
}

impl FromRequest for CspNonce {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let existing = req.extensions().get::<CspNonce>().cloned();
        let nonce = existing.unwrap_or_else(|| {
            let nonce = CspNonce(super::crypto::random_token());
            req.extensions_mut().insert(nonce.clone());
            nonce
        });
        std::future::ready(Ok(nonce))
    }
}
