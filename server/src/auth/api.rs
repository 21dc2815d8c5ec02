//! Backstage's auth routes under `/api/auth`: the OIDC provider's start,
//! callback (`handler/frame`), refresh and logout; the guest provider; and the
//! JWKS that verifies identity tokens. Handlers are thin: `AuthService` decides.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::CspNonce;
use super::{AuthError, AuthService, Session};
use crate::error::ApiError;

type Auth = web::Data<AuthService>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/auth")
            .route("/oidc/start", web::get().to(oidc_start))
            .route("/oidc/handler/frame", web::get().to(oidc_callback))
            .route("/oidc/refresh", web::get().to(refresh))
            .route("/oidc/logout", web::post().to(logout))
            .route("/guest/refresh", web::get().to(guest_refresh))
            .route("/guest/logout", web::post().to(logout))
            .route("/.well-known/jwks.json", web::get().to(jwks))
            .route(
                "/.well-known/openid-configuration",
                web::get().to(openid_configuration),
            )
            .route("/v1/userinfo", web::get().to(userinfo)),
    );
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartQuery {
    env: Option<String>,
    flow: Option<String>,
    redirect_url: Option<String>,
    // Backstage's front end sends these; scopes come from configuration.
    #[allow(dead_code)]
    scope: Option<String>,
    #[allow(dead_code)]
    origin: Option<String>,
}

async fn oidc_start(auth: Auth, q: web::Query<StartQuery>) -> Result<HttpResponse, ApiError> {
    let popup = match q.flow.as_deref() {
        None | Some("popup") => true,
        Some("redirect") => false,
        Some(other) => {
            return Err(ApiError::input(format!(
                "flow \"{other}\" is not supported; use popup or redirect"
            )))
        }
    };
    let return_to = match (&q.redirect_url, popup) {
        (Some(url), _) => url.clone(),
        (None, true) => "/".to_string(),
        (None, false) => return Err(ApiError::input("flow=redirect needs a redirectUrl")),
    };
    let (url, browser) = auth.begin_oidc(q.env.as_deref(), &return_to, popup).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(flow_cookie(&auth, browser, time::Duration::minutes(10)))
        .finish())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn oidc_callback(
    auth: Auth,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
    nonce: CspNonce,
) -> Result<HttpResponse, ApiError> {
    let result = async {
        if let Some(error) = &q.error {
            return Err(AuthError::Rejected(format!(
                "The provider refused the sign-in: {error}{}",
                q.error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )));
        }
        let (Some(code), Some(state)) = (&q.code, &q.state) else {
            return Err(AuthError::Input("The callback needs code and state".into()));
        };
        let browser = req.cookie(auth.cookies.flow).map(|c| c.value().to_string());
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        // A browser that already had a session gets a new one: no fixation.
        if let Some(old) = req.cookie(auth.cookies.session) {
            if let Ok(Some(s)) = auth.session(old.value()).await {
                auth.end_session(&s.id).await?;
            }
        }
        auth.complete_oidc(code, state, browser.as_deref(), user_agent)
            .await
    }
    .await;
    let mut res = match result {
        Ok(done) => {
            let mut res = if done.popup {
                let body = identity_response(&auth, &done.session)?;
                popup_page(
                    &auth,
                    json!({"type": "authorization_response", "response": body}),
                    &nonce,
                )
            } else {
                HttpResponse::Found()
                    .insert_header((header::LOCATION, done.return_to.clone()))
                    .finish()
            };
            res.add_cookie(&session_cookie(&auth, done.cookie))
                .map_err(ApiError::internal)?;
            // The flow is spent. On failure the cookie stays: a forged callback
            // must not break the sign-in the browser really has in progress.
            res.add_cookie(&flow_cookie(&auth, String::new(), time::Duration::ZERO))
                .map_err(ApiError::internal)?;
            res
        }
        Err(e) => {
            let err = ApiError::from(e);
            tracing::info!(error = %err, "sign-in refused");
            let mut res = HttpResponse::build(err.kind.status())
                .content_type("text/html; charset=utf-8")
                .body(popup_html(
                    &auth,
                    json!({"type": "authorization_response", "error": {"name": err.kind.name(), "message": err.message}}),
                    &nonce,
                    &err.message,
                ));
            res.extensions_mut().insert(crate::error::RenderedPage);
            res
        }
    };
    let h = res.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

#[derive(Deserialize)]
struct RefreshQuery {
    #[allow(dead_code)]
    env: Option<String>,
}

/// The session's identity and a fresh token, in Backstage's shape.
async fn refresh(
    auth: Auth,
    req: HttpRequest,
    _q: web::Query<RefreshQuery>,
) -> Result<HttpResponse, ApiError> {
    require_xhr(&req)?;
    let session = current_session(&auth, &req)
        .await?
        .filter(|s| s.provider.starts_with("oidc:"))
        .ok_or_else(|| ApiError::unauthenticated("Refresh failed; no session"))?;
    let session = auth.refresh(session).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(identity_response(&auth, &session)?))
}

/// The guest provider: a session for the configured guest user.
async fn guest_refresh(auth: Auth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_xhr(&req)?;
    if auth.config.guest.is_none() {
        return Err(ApiError::not_found("The guest provider is not enabled"));
    }
    if let Some(session) = current_session(&auth, &req)
        .await?
        .filter(|s| s.provider == "guest")
    {
        let session = auth.refresh(session).await?;
        return Ok(HttpResponse::Ok().json(identity_response(&auth, &session)?));
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let (cookie, session) = auth.sign_in_guest(user_agent).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&auth, cookie))
        .json(identity_response(&auth, &session)?))
}

/// Ends the session; answers where to send the browser to sign out of the provider too.
async fn logout(auth: Auth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_xhr(&req)?;
    if !super::guard::same_origin(&auth, &req) {
        return Err(ApiError::not_allowed("Cross-site request refused"));
    }
    let redirect = match current_session(&auth, &req).await? {
        Some(session) => {
            let url = auth.logout_url(&session).await;
            auth.end_session(&session.id).await?;
            url
        }
        None => format!("{}/", auth.app_base_url),
    };
    Ok(HttpResponse::Ok()
        .cookie(session_cookie_removal(&auth))
        .json(json!({ "redirectUrl": redirect })))
}

async fn jwks(auth: Auth) -> Result<HttpResponse, ApiError> {
    let keys = auth.tokens.jwks().await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(keys))
}

async fn openid_configuration(auth: Auth) -> HttpResponse {
    let issuer = auth.tokens.issuer();
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/v1/token"),
        "userinfo_endpoint": format!("{issuer}/v1/userinfo"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid"],
        "token_endpoint_auth_methods_supported": [],
        "claims_supported": ["sub", "ent"],
        "grant_types_supported": [],
    }))
}

/// Backstage's `/v1/userinfo`: the claims of the caller's token.
async fn userinfo(principal: super::Principal) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user()
        .ok_or_else(|| ApiError::unauthenticated("Missing credentials"))?;
    Ok(HttpResponse::Ok().json(json!({
        "claims": {"sub": user.identity.user_ref, "ent": user.identity.ownership}
    })))
}

async fn current_session(
    auth: &AuthService,
    req: &HttpRequest,
) -> Result<Option<Session>, ApiError> {
    match req.cookie(auth.cookies.session) {
        Some(c) => Ok(auth.session(c.value()).await?),
        None => Ok(None),
    }
}

/// Backstage refuses refresh and logout without it, so that no cross-site form reaches them.
fn require_xhr(req: &HttpRequest) -> Result<(), ApiError> {
    match req
        .headers()
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
    {
        Some("XMLHttpRequest") => Ok(()),
        _ => Err(ApiError::unauthenticated("Invalid X-Requested-With header")),
    }
}

/// `{profile, providerInfo, backstageIdentity}` as Backstage's refresh returns it.
/// Provider tokens stay on the server: `providerInfo` carries none.
pub fn identity_response(auth: &AuthService, session: &Session) -> Result<Value, ApiError> {
    let (token, expires) = auth.identity_token(session)?;
    Ok(json!({
        "profile": session.identity.profile,
        "providerInfo": {},
        "backstageIdentity": {
            "token": token,
            "expiresInSeconds": expires,
            "identity": {
                "type": "user",
                "userEntityRef": session.identity.user_ref,
                "ownershipEntityRefs": session.identity.ownership,
            }
        }
    }))
}

fn popup_page(auth: &AuthService, message: Value, nonce: &CspNonce) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(popup_html(
            auth,
            message,
            nonce,
            "Signed in. You can close this window.",
        ))
}

/// The popup flow's page: it posts the result to the app's origin only, then closes.
fn popup_html(auth: &AuthService, message: Value, nonce: &CspNonce, text: &str) -> String {
    // JSON inside a script: `<` escaped so that no value can close the element.
    let data = message.to_string().replace('<', "\\u003c");
    let origin = serde_json::to_string(&auth.app_origin)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    let text = askama::filters::escape(text, askama::filters::Html)
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing in</title></head>\
         <body><p>{text}</p><p><a href=\"/\">Continue</a></p><script nonce=\"{n}\">\
         if (window.opener) {{ window.opener.postMessage({data}, {origin}); window.close(); }}\
         </script></body></html>",
        n = nonce.0
    )
}

/// The cookie that tells the browser to forget its session cookie.
pub fn session_cookie_removal(auth: &AuthService) -> Cookie<'static> {
    let mut gone = session_cookie(auth, String::new());
    gone.make_removal();
    gone
}

pub fn session_cookie(auth: &AuthService, value: String) -> Cookie<'static> {
    Cookie::build(auth.cookies.session, value)
        .path("/")
        .http_only(true)
        .secure(auth.cookies.secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(
            auth.config.session_absolute.as_secs() as i64,
        ))
        .finish()
}

fn flow_cookie(auth: &AuthService, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build(auth.cookies.flow, value)
        .path("/")
        .http_only(true)
        .secure(auth.cookies.secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}
