//! Sign-in and sign-out for people: the sign-in page with each configured
//! provider, the guest button, and the sign-out form.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{Layout, PageContext, PageError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login/guest", web::post().to(guest))
        .route("/logout", web::post().to(logout));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginQuery {
    return_to: Option<String>,
    error: Option<String>,
}

pub struct ProviderLink {
    pub label: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    layout: Layout,
    providers: Vec<ProviderLink>,
    guest: bool,
    return_to: String,
    error: Option<String>,
}

async fn login_page(ctx: PageContext, q: web::Query<LoginQuery>) -> HttpResponse {
    let page = {
        let return_to = ctx
            .auth
            .check_return_to(q.return_to.as_deref().unwrap_or("/"))
            .unwrap_or_else(|_| "/".into());
        let providers = ctx
            .auth
            .oidc_envs()
            .map(|env| ProviderLink {
                label: if ctx.auth.oidc_envs().count() > 1 {
                    format!("Sign in ({env})")
                } else {
                    "Sign in with your company account".into()
                },
                href: format!(
                    "/api/auth/oidc/start?env={}&flow=redirect&redirectUrl={}",
                    super::encode(env),
                    super::encode(&absolute(&ctx, &return_to))
                ),
            })
            .collect();
        LoginPage {
            layout: ctx.layout("Sign in", ""),
            providers,
            guest: ctx.auth.config.guest.is_some(),
            return_to,
            error: q.error.clone(),
        }
    };
    ctx.respond(Ok(page))
}

fn absolute(ctx: &PageContext, target: &str) -> String {
    if target.starts_with('/') {
        format!("{}{target}", ctx.auth.app_base_url)
    } else {
        target.to_string()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuestForm {
    return_to: Option<String>,
}

/// The guest button: no session exists yet, so the Origin check guards it.
async fn guest(ctx: PageContext, req: HttpRequest, form: web::Form<GuestForm>) -> HttpResponse {
    if !crate::auth::guard::same_origin(&ctx.auth, &req) {
        return ctx.error_page(&PageError::Forbidden(
            "This form did not come from this site.".into(),
        ));
    }
    let return_to = ctx
        .auth
        .check_return_to(form.return_to.as_deref().unwrap_or("/"))
        .unwrap_or_else(|_| "/".into());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    if let Some(old) = req.cookie(ctx.auth.cookies.session) {
        if let Ok(Some(s)) = ctx.auth.session(old.value()).await {
            let _ = ctx.auth.end_session(&s.id).await;
        }
    }
    match ctx.auth.sign_in_guest(user_agent).await {
        Ok((cookie, _)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, return_to))
            .cookie(crate::auth::api::session_cookie(&ctx.auth, cookie))
            .finish(),
        Err(e) => ctx.error_page(&e.into()),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// Ends the session, then sends the browser to the provider's logout.
async fn logout(ctx: PageContext, req: HttpRequest, form: web::Form<LogoutForm>) -> HttpResponse {
    if let Err(e) = ctx.check_form(&req, &form.csrf) {
        return ctx.error_page(&e);
    }
    let target = match req.cookie(ctx.auth.cookies.session) {
        Some(c) => match ctx.auth.session(c.value()).await {
            Ok(Some(session)) => {
                let url = ctx.auth.logout_url(&session).await;
                if let Err(e) = ctx.auth.end_session(&session.id).await {
                    return ctx.error_page(&e.into());
                }
                url
            }
            _ => "/".into(),
        },
        None => "/".into(),
    };
    let expired = crate::auth::api::session_cookie_removal(&ctx.auth);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, target))
        .cookie(expired)
        .finish()
}
