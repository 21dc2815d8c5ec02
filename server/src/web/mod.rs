//! The portal's pages: server-rendered with askama, one module per page, each
//! with its template struct. Handlers are thin: they read the principal, ask
//! the catalog or auth service, and render. Every page shares [`Layout`].
//!
//! Pages for people answer errors with a page, not Backstage's JSON: a 403
//! page for the forbidden, a sign-in redirect for the signed-out.

mod admin;
mod admin_dry_run;
mod admin_tasks;
mod admin_templates;
mod assets;
mod catalog;
mod create;
mod entity;
mod graph;
mod home;
mod login;
mod profile;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::auth::guard::CspNonce;
use crate::auth::{AuthService, Principal};
use crate::error::{ApiError, RenderedPage};

pub fn routes(cfg: &mut web::ServiceConfig) {
    assets::routes(cfg);
    login::routes(cfg);
    profile::routes(cfg);
    admin::routes(cfg);
    admin_templates::routes(cfg);
    admin_dry_run::routes(cfg);
    admin_tasks::routes(cfg);
    home::routes(cfg);
    catalog::routes(cfg);
    entity::routes(cfg);
    create::routes(cfg);
}

/// What every page's layout needs.
pub struct Layout {
    pub app_title: String,
    pub title: String,
    /// The navigation entry to highlight: `home`, `catalog`, `admin` or `profile`.
    pub section: &'static str,
    pub user: Option<UserView>,
    /// The session's synchronizer token, for the forms on the page.
    pub csrf: String,
    pub nonce: String,
    /// Whether signing in is possible at all (a provider is configured).
    pub can_sign_in: bool,
    /// What the previous action did, shown once.
    pub flash: Option<String>,
}

pub struct UserView {
    pub display_name: String,
    pub user_ref: String,
    pub admin: bool,
}

/// The request's context for rendering: principal, nonce and settings.
pub struct PageContext {
    pub principal: Principal,
    pub nonce: String,
    pub auth: web::Data<AuthService>,
    pub app_title: web::Data<AppTitle>,
    pub path_and_query: String,
    /// The message the previous action left for this page (see [`see_other_with_flash`]).
    pub flash: Option<String>,
}

/// `app.title`, shared with the pages.
pub struct AppTitle(pub String);

impl actix_web::FromRequest for PageContext {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let principal = match Principal::from_request(req, payload).into_inner() {
            Ok(p) => p,
            Err(e) => return std::future::ready(Err(e)),
        };
        let nonce = CspNonce::from_request(req, payload)
            .into_inner()
            .map(|n| n.0)
            .unwrap_or_default();
        let (Some(auth), Some(app_title)) = (
            req.app_data::<web::Data<AuthService>>().cloned(),
            req.app_data::<web::Data<AppTitle>>().cloned(),
        ) else {
            return std::future::ready(Err(ApiError::internal(anyhow::anyhow!(
                "pages need the auth service and app title"
            ))
            .into()));
        };
        let flash = req
            .cookie(flash_cookie_name(&auth))
            .and_then(|c| {
                url::form_urlencoded::parse(format!("m={}", c.value()).as_bytes())
                    .next()
                    .map(|(_, v)| v.chars().take(MAX_FLASH).collect::<String>())
            })
            .filter(|m| !m.trim().is_empty());
        std::future::ready(Ok(PageContext {
            flash,
            principal,
            nonce,
            auth,
            app_title,
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
        }))
    }
}

impl PageContext {
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        let user = self.principal.user().map(|u| UserView {
            display_name: u
                .identity
                .profile
                .display_name
                .clone()
                .unwrap_or_else(|| short_ref(&u.identity.user_ref)),
            user_ref: u.identity.user_ref.clone(),
            admin: u.identity.admin,
        });
        Layout {
            app_title: self.app_title.0.clone(),
            title: title.into(),
            section,
            user,
            csrf: self
                .principal
                .user()
                .and_then(|u| u.csrf.clone())
                .unwrap_or_default(),
            nonce: self.nonce.clone(),
            can_sign_in: self.auth.config.guest.is_some() || self.auth.oidc_envs().next().is_some(),
            flash: self.flash.clone(),
        }
    }

    /// Pages need a signed-in user when the server requires identities.
    pub fn require_viewer(&self) -> Result<(), PageError> {
        match &self.principal {
            Principal::Anonymous { open: false } => {
                Err(PageError::SignIn(self.path_and_query.clone()))
            }
            _ => Ok(()),
        }
    }

    pub fn require_admin(&self) -> Result<(), PageError> {
        self.require_viewer()?;
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(PageError::Forbidden("This page is for admins.".into()))
        }
    }

    /// Checks a form POST: the session's synchronizer token, and our own origin.
    pub fn check_form(&self, req: &HttpRequest, token: &str) -> Result<(), PageError> {
        let expected = self.principal.user().and_then(|u| u.csrf.as_deref());
        let ok = expected.is_some_and(|e| crate::auth::crypto::same(e, token))
            && crate::auth::guard::same_origin(&self.auth, req);
        if ok {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "This form has expired or did not come from this site. Go back, reload and try again.".into(),
            ))
        }
    }

    pub fn error_page(&self, err: &PageError) -> HttpResponse {
        match err {
            PageError::SignIn(return_to) => HttpResponse::SeeOther()
                .insert_header((
                    header::LOCATION,
                    format!("/login?returnTo={}", encode(return_to)),
                ))
                .finish(),
            PageError::Forbidden(message) => self.message_page(403, "Not allowed", message),
            PageError::NotFound(message) => self.message_page(404, "Not found", message),
            PageError::Input(message) => self.message_page(400, "Cannot do that", message),
            PageError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "page failed");
                self.message_page(
                    500,
                    "Something went wrong",
                    "The error was logged. Try again later.",
                )
            }
        }
    }

    fn message_page(&self, status: u16, heading: &str, message: &str) -> HttpResponse {
        let page = ErrorPage {
            layout: self.layout(heading, ""),
            status,
            heading: heading.to_string(),
            message: message.to_string(),
        };
        let mut res = render_status(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
            &page,
        );
        res.extensions_mut().insert(RenderedPage);
        res
    }

    /// Renders a page result: the page, or the page for its error.
    pub fn respond<T: Template>(&self, result: Result<T, PageError>) -> HttpResponse {
        let mut res = match result {
            Ok(page) => render(&page),
            Err(e) => self.error_page(&e),
        };
        if self.flash.is_some() {
            // Shown once: the cookie goes with this page.
            let mut gone = flash_cookie(&self.auth, String::new());
            gone.make_removal();
            let _ = res.add_cookie(&gone);
        }
        res
    }
}

/// The longest flash message shown.
const MAX_FLASH: usize = 400;

fn flash_cookie_name(auth: &AuthService) -> &'static str {
    if auth.cookies.secure {
        "__Host-stagedoor-flash"
    } else {
        "stagedoor-flash"
    }
}

fn flash_cookie(auth: &AuthService, value: String) -> actix_web::cookie::Cookie<'static> {
    actix_web::cookie::Cookie::build(flash_cookie_name(auth), value)
        .path("/")
        .http_only(true)
        .secure(auth.cookies.secure)
        .same_site(actix_web::cookie::SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(60))
        .finish()
}

/// A 303 that carries a message to the next page in a short-lived cookie,
/// never in the URL, so that no crafted link can make the portal say something.
pub fn see_other_with_flash(auth: &AuthService, to: &str, message: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .cookie(flash_cookie(auth, encode(message)))
        .finish()
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    SignIn(String),
    Forbidden(String),
    NotFound(String),
    Input(String),
    Internal(anyhow::Error),
}

impl From<crate::catalog::CatalogError> for PageError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        use crate::catalog::CatalogError as C;
        match e {
            C::Input(m) | C::Validation(m, _) => PageError::Input(m),
            C::NotFound(m) => PageError::NotFound(m),
            C::Conflict(m) => PageError::Input(m),
            C::NotAllowed(m) => PageError::Forbidden(m),
            C::Unavailable(m) => PageError::Internal(anyhow::anyhow!(m)),
            C::Database(e) => PageError::Internal(e.into()),
            C::Internal(e) => PageError::Internal(e),
        }
    }
}

impl From<crate::auth::AuthError> for PageError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError as A;
        match e {
            A::Input(m) => PageError::Input(m),
            A::Rejected(m) | A::NotAllowed(m) => PageError::Forbidden(m),
            A::NotFound(m) => PageError::NotFound(m),
            A::Unavailable(m) => PageError::Internal(anyhow::anyhow!(m)),
            A::Db(e) => PageError::Internal(e.into()),
            A::Internal(e) => PageError::Internal(e),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: String,
    message: String,
}

pub fn render<T: Template>(page: &T) -> HttpResponse {
    render_status(actix_web::http::StatusCode::OK, page)
}

fn render_status<T: Template>(status: actix_web::http::StatusCode, page: &T) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be rendered.")
        }
    }
}

/// `user:default/jane` → `jane`; other namespaces are kept.
pub fn short_ref(r: &str) -> String {
    let rest = r.split_once(':').map_or(r, |(_, rest)| rest);
    rest.strip_prefix("default/").unwrap_or(rest).to_string()
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A link target that is safe to put in an `href`: http(s) only.
pub fn safe_href(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
}
