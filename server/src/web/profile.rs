//! The profile page: who the signed-in person is to the portal (identity,
//! ownership refs, role) and their sessions, with "sign out everywhere".

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{Layout, PageContext, PageError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/profile", web::get().to(profile)).route(
        "/profile/sign-out-everywhere",
        web::post().to(sign_out_everywhere),
    );
}

pub struct SessionRow {
    pub started: String,
    pub last_seen: String,
    pub provider: String,
    pub user_agent: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "pages/profile.html")]
struct ProfilePage {
    layout: Layout,
    user_ref: String,
    email: String,
    admin: bool,
    ownership: Vec<(String, String)>,
    sessions: Vec<SessionRow>,
}

async fn profile(ctx: PageContext) -> HttpResponse {
    let result = async {
        let user = ctx
            .principal
            .user()
            .ok_or_else(|| PageError::SignIn(ctx.path_and_query.clone()))?;
        let sessions = ctx
            .auth
            .sessions_of(&user.identity.user_ref)
            .await?
            .into_iter()
            .map(|s| SessionRow {
                current: s.id == user.session_id,
                started: time(s.created_at),
                last_seen: time(s.last_seen_at),
                provider: s.provider,
                user_agent: s.user_agent.unwrap_or_else(|| "unknown".into()),
            })
            .collect();
        Ok(ProfilePage {
            layout: ctx.layout("Profile", "profile"),
            user_ref: user.identity.user_ref.clone(),
            email: user.identity.profile.email.clone().unwrap_or_default(),
            admin: user.identity.admin,
            ownership: user
                .identity
                .ownership
                .iter()
                .map(|r| {
                    let href = crate::catalog::model::EntityRef::parse(r, None, "default")
                        .map(|e| super::entity::entity_href(&e))
                        .unwrap_or_else(|_| "/catalog".into());
                    (r.clone(), href)
                })
                .collect(),
            sessions,
        })
    }
    .await;
    ctx.respond(result)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out_everywhere(
    ctx: PageContext,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let result = async {
        ctx.check_form(&req, &form.csrf)?;
        let user = ctx
            .principal
            .user()
            .ok_or_else(|| PageError::SignIn("/profile".into()))?;
        ctx.auth.end_sessions_of(&user.identity.user_ref).await?;
        Ok::<_, PageError>(())
    }
    .await;
    match result {
        Ok(()) => {
            let expired = crate::auth::api::session_cookie_removal(&ctx.auth);
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/login"))
                .cookie(expired)
                .finish()
        }
        Err(e) => ctx.error_page(&e),
    }
}

fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}
