//! Sign-in, sessions, identity tokens and roles.
//!
//! People sign in through an OIDC provider (AWS Cognito first) or, in
//! development, the guest provider. Either way they get a server-side session
//! (revocable, shared by every replica through the database) and can mint
//! Backstage identity tokens from it. Machines use `backend.auth.externalAccess`
//! static tokens. Every request ends up with one [`Principal`], which handlers
//! ask about roles; `guard.rs` decides who may reach which routes.

pub mod api;
pub mod crypto;
pub mod guard;
pub mod identity;
pub mod oidc;
pub mod store;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::crypto::{random_token, SecretKeys};
use self::identity::{Identity, Profile};
use self::oidc::OidcProvider;
use self::token::TokenIssuer;
use crate::catalog::service::CatalogService;
use crate::config::{AuthConfig, Config};
use crate::db::Db;

/// A sign-in must come back from the provider within this time.
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY: i64 = 60;
/// A token's session is looked up again after this long.
const LIVE_SESSION_CACHE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Input(String),
    /// Credentials or a provider response that must not be trusted.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
    /// The provider cannot be reached or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AuthError> for crate::error::ApiError {
    fn from(e: AuthError) -> Self {
        use crate::error::{ApiError, ErrorKind};
        match e {
            AuthError::Input(m) => ApiError::input(m),
            AuthError::Rejected(m) => ApiError::unauthenticated(m),
            AuthError::NotAllowed(m) => ApiError::not_allowed(m),
            AuthError::NotFound(m) => ApiError::not_found(m),
            AuthError::Unavailable(m) => {
                tracing::warn!(error = %m, "sign-in provider unavailable");
                ApiError::new(
                    ErrorKind::Unavailable,
                    "The sign-in provider is unavailable",
                )
            }
            AuthError::Db(e) => ApiError::internal(e),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials. `open` is true when the server requires none.
    Anonymous {
        open: bool,
    },
    /// A machine, by `externalAccess` static token.
    Service {
        subject: String,
    },
    User(Arc<UserPrincipal>),
}

#[derive(Debug, Clone)]
pub struct UserPrincipal {
    pub identity: Identity,
    pub session_id: String,
    /// The session's synchronizer token; present when the session cookie authenticated.
    pub csrf: Option<String>,
}

impl Principal {
    /// Admins, machines and, on an open server, anyone.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Anonymous { open } => *open,
            Principal::Service { .. } => true,
            Principal::User(u) => u.identity.admin,
        }
    }

    /// Whether the caller owns an entity with this `spec.owner` ref, or may act as if it did.
    pub fn owns(&self, owner_ref: Option<&str>) -> bool {
        match self {
            Principal::User(u) if !u.identity.admin => owner_ref.is_some_and(|o| {
                u.identity
                    .ownership
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(o))
            }),
            other => other.is_admin(),
        }
    }

    pub fn user(&self) -> Option<&UserPrincipal> {
        match self {
            Principal::User(u) => Some(u),
            _ => None,
        }
    }
}

/// A live session, as read from the database.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub provider: String,
    pub identity: Identity,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    provider_tokens: Option<String>,
    provider_refresh_at: Option<i64>,
}

#[derive(Serialize, Deserialize, Default)]
struct ProviderTokens {
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FlowSecrets {
    nonce: String,
    pkce_verifier: String,
}

/// The names and attributes of our cookies: `__Host-` and `Secure` under https.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: &'static str,
    pub flow: &'static str,
    pub secure: bool,
}

/// The result of a completed sign-in.
pub struct SignedInSession {
    pub cookie: String,
    pub session: Session,
    pub return_to: String,
    pub popup: bool,
}

pub struct AuthService {
    pub config: AuthConfig,
    db: Db,
    catalog: Arc<CatalogService>,
    pub tokens: TokenIssuer,
    oidc: BTreeMap<String, OidcProvider>,
    keys: SecretKeys,
    pub cookies: CookieNames,
    /// `scheme://host[:port]` of `app.baseUrl`: the one origin allowed to post to us.
    pub app_origin: String,
    pub app_base_url: String,
    static_tokens: Vec<([u8; 32], String)>,
    required: bool,
    live_sessions: Mutex<HashMap<String, Instant>>,
}

impl AuthService {
    pub async fn new(
        db: Db,
        catalog: Arc<CatalogService>,
        config: &Config,
    ) -> anyhow::Result<AuthService> {
        let app = url::Url::parse(&config.app_base_url)?;
        let backend = url::Url::parse(&config.base_url)?;
        let secure = backend.scheme() == "https";
        let tokens = TokenIssuer::new(
            db.clone(),
            format!("{}/api/auth", config.base_url.trim_end_matches('/')),
            config.auth.token_lifetime,
        )
        .await?;
        let mut oidc = BTreeMap::new();
        for (env, c) in &config.auth.oidc {
            oidc.insert(env.clone(), OidcProvider::new(c.clone())?);
        }
        Ok(AuthService {
            keys: SecretKeys::new(config.auth.session_secret.as_ref())?,
            config: config.auth.clone(),
            db,
            catalog,
            tokens,
            oidc,
            cookies: if secure {
                CookieNames {
                    session: "__Host-stagedoor-session",
                    flow: "__Host-stagedoor-flow",
                    secure,
                }
            } else {
                CookieNames {
                    session: "stagedoor-session",
                    flow: "stagedoor-flow",
                    secure,
                }
            },
            app_origin: app.origin().ascii_serialization(),
            app_base_url: config.app_base_url.trim_end_matches('/').to_string(),
            static_tokens: config
                .external_access
                .iter()
                .map(|a| {
                    (
                        Sha256::digest(a.options.token.expose_secret().as_bytes()).into(),
                        a.options.subject.clone(),
                    )
                })
                .collect(),
            required: config.auth_required(),
            live_sessions: Mutex::new(HashMap::new()),
        })
    }

    /// True when API callers must present an identity.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The OIDC environments configured, in order.
    pub fn oidc_envs(&self) -> impl Iterator<Item = &str> {
        self.oidc.keys().map(String::as_str)
    }

    pub fn provider(&self, env: Option<&str>) -> Result<&OidcProvider, AuthError> {
        let env = match env {
            Some(e) => e,
            None if self.oidc.len() == 1 => {
                self.oidc.keys().next().map(String::as_str).unwrap_or("")
            }
            None => return Err(AuthError::Input("Missing env query parameter".into())),
        };
        self.oidc.get(env).ok_or_else(|| {
            AuthError::NotFound(format!(
                "No OIDC provider is configured for environment \"{env}\""
            ))
        })
    }

    /// A return-to target: a path on our own site, or a URL on the app's origin.
    pub fn check_return_to(&self, target: &str) -> Result<String, AuthError> {
        let refuse = || {
            AuthError::Input(format!(
                "Redirect target \"{target}\" is not on this site ({})",
                self.app_origin
            ))
        };
        if target.starts_with('/') && !target.starts_with("//") && !target.starts_with("/\\") {
            if target.contains(['\r', '\n']) {
                return Err(refuse());
            }
            return Ok(target.to_string());
        }
        let url = url::Url::parse(target).map_err(|_| refuse())?;
        if url.origin().ascii_serialization() != self.app_origin {
            return Err(refuse());
        }
        Ok(url.to_string())
    }

    /// Begins an OIDC sign-in: returns the provider URL and the cookie that
    /// binds the flow to this browser.
    pub async fn begin_oidc(
        &self,
        env: Option<&str>,
        return_to: &str,
        popup: bool,
    ) -> Result<(String, String), AuthError> {
        let provider = self.provider(env)?;
        let return_to = self.check_return_to(return_to)?;
        let state = random_token();
        let started = provider.start(state.clone()).await?;
        let browser = random_token();
        let secrets = serde_json::to_vec(&FlowSecrets {
            nonce: started.nonce,
            pkce_verifier: started.pkce_verifier,
        })
        .map_err(anyhow::Error::from)?;
        store::insert_flow(
            &self.db.conn,
            store::flows::Model {
                state_hash: crypto::digest(&state),
                browser_hash: crypto::digest(&browser),
                provider: format!("oidc:{}", provider.config.env),
                secrets: self.keys.seal(&secrets)?,
                return_to,
                popup,
                created_at: now(),
            },
        )
        .await?;
        Ok((started.url, browser))
    }

    /// Completes an OIDC sign-in from the provider's callback. The flow,
    /// found by `state`, names the provider environment.
    pub async fn complete_oidc(
        &self,
        code: &str,
        state: &str,
        browser: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<SignedInSession, AuthError> {
        // The flow is taken before anything else: a replayed callback finds nothing.
        let flow = store::take_flow(&self.db.conn, &crypto::digest(state))
            .await?
            .ok_or_else(|| {
                AuthError::Input(
                    "This sign-in is unknown, was already used or has expired; start again".into(),
                )
            })?;
        let browser_ok =
            browser.is_some_and(|b| crypto::same(&crypto::digest(b), &flow.browser_hash));
        if !browser_ok {
            return Err(AuthError::Input(
                "This sign-in was started in another browser; start again".into(),
            ));
        }
        if now() - flow.created_at > FLOW_LIFETIME.as_secs() as i64 {
            return Err(AuthError::Input(
                "This sign-in has expired; start again".into(),
            ));
        }
        let provider = self.provider(flow.provider.strip_prefix("oidc:"))?;
        let secrets: FlowSecrets = self
            .keys
            .open(&flow.secrets)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                AuthError::Input("This sign-in cannot be completed; start again".into())
            })?;
        let who = provider
            .finish(code.to_string(), &secrets.nonce, secrets.pkce_verifier)
            .await?;
        let user_ref = self.bind_user(provider, &who).await?;
        let identity = Identity::build(
            &self.catalog,
            &self.config.admin_groups,
            user_ref,
            &[],
            who.groups.clone(),
            Profile {
                email: who.email.clone(),
                display_name: who.name.clone().or_else(|| who.username.clone()),
                picture: who.picture.clone().filter(|p| p.starts_with("https://")),
            },
        );
        let tokens = ProviderTokens {
            refresh_token: who.refresh_token.clone(),
            id_token: Some(who.id_token.clone()),
        };
        let (cookie, session) = self
            .create_session(
                &flow.provider,
                Some((&who.issuer, &who.subject)),
                identity,
                Some(tokens),
                who.refresh_at.filter(|_| who.refresh_token.is_some()),
                user_agent,
            )
            .await?;
        tracing::info!(user = %session.identity.user_ref, provider = %flow.provider, "signed in");
        Ok(SignedInSession {
            cookie,
            session,
            return_to: flow.return_to,
            popup: flow.popup,
        })
    }

    /// The user a provider account signs in as. An account keeps the user it
    /// was first bound to; a user is bound to one account per issuer, so an
    /// email address alone never hands over someone else's identity.
    async fn bind_user(
        &self,
        provider: &OidcProvider,
        who: &oidc::SignedIn,
    ) -> Result<String, AuthError> {
        let now = now();
        if let Some(bound) = store::user_binding(&self.db.conn, &who.issuer, &who.subject).await? {
            if identity::user_exists(&self.catalog, &bound.user_ref)
                || provider.config.resolvers.iter().any(allows_without_user)
            {
                store::bind_user(
                    &self.db.conn,
                    &who.issuer,
                    &who.subject,
                    &bound.user_ref,
                    now,
                )
                .await?;
                return Ok(bound.user_ref);
            }
        }
        let by_subject =
            identity::user_by_cognito_subject(&self.catalog, &who.issuer, &who.subject)?
                .map(|r| (r, true));
        let resolved = match by_subject {
            Some(found) => Some(found),
            None => identity::resolve(&self.catalog, &provider.config.resolvers, who)?,
        };
        let Some((user_ref, _in_catalog)) = resolved else {
            return Err(AuthError::NotAllowed(match &who.email {
                Some(email) if who.email_verified => {
                    format!("No user in the catalog matches {email}; ask an admin to add you")
                }
                Some(email) => format!("The provider has not verified the email address {email}"),
                None => "The provider did not share an email address".into(),
            }));
        };
        if store::other_binding(&self.db.conn, &who.issuer, &who.subject, &user_ref)
            .await?
            .is_some()
        {
            return Err(AuthError::NotAllowed(format!(
                "{user_ref} is already linked to another account of this provider"
            )));
        }
        store::bind_user(&self.db.conn, &who.issuer, &who.subject, &user_ref, now).await?;
        Ok(user_ref)
    }

    /// Signs in with the guest provider.
    pub async fn sign_in_guest(
        &self,
        user_agent: Option<&str>,
    ) -> Result<(String, Session), AuthError> {
        let guest = self
            .config
            .guest
            .as_ref()
            .ok_or_else(|| AuthError::NotFound("The guest provider is not enabled".into()))?;
        let identity = Identity::build(
            &self.catalog,
            &self.config.admin_groups,
            guest.user_entity_ref.clone(),
            &guest.ownership_entity_refs,
            vec![],
            Profile::default(),
        );
        self.create_session("guest", None, identity, None, None, user_agent)
            .await
    }

    async fn create_session(
        &self,
        provider: &str,
        account: Option<(&str, &str)>,
        identity: Identity,
        tokens: Option<ProviderTokens>,
        provider_refresh_at: Option<i64>,
        user_agent: Option<&str>,
    ) -> Result<(String, Session), AuthError> {
        let cookie = random_token();
        let now = now();
        let sealed = match &tokens {
            Some(t) => Some(
                self.keys
                    .seal(&serde_json::to_vec(t).map_err(anyhow::Error::from)?)?,
            ),
            None => None,
        };
        let model = store::sessions::Model {
            id: self.keys.session_id(&cookie),
            user_ref: identity.user_ref.clone(),
            provider: provider.to_string(),
            issuer: account.map(|a| a.0.to_string()),
            subject: account.map(|a| a.1.to_string()),
            identity: serde_json::to_string(&identity).map_err(anyhow::Error::from)?,
            csrf: random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.config.session_absolute.as_secs() as i64,
            provider_tokens: sealed,
            provider_refresh_at,
            user_agent: user_agent.map(|u| u.chars().take(256).collect()),
        };
        store::insert_session(&self.db.conn, model.clone()).await?;
        Ok((cookie, session_of(model, identity)))
    }

    /// The live session behind a cookie value, touched.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, AuthError> {
        self.session_by_id(&self.keys.session_id(cookie), true)
            .await
    }

    async fn session_by_id(&self, id: &str, touch: bool) -> Result<Option<Session>, AuthError> {
        let Some(model) = store::session(&self.db.conn, id).await? else {
            return Ok(None);
        };
        let now = now();
        let idle_limit = self.config.session_idle.as_secs() as i64;
        if model.expires_at <= now || now - model.last_seen_at > idle_limit {
            store::delete_session(&self.db.conn, id).await?;
            return Ok(None);
        }
        if touch && now - model.last_seen_at >= TOUCH_EVERY {
            store::touch_session(&self.db.conn, id, now).await?;
        }
        let identity: Identity = match serde_json::from_str(&model.identity) {
            Ok(i) => i,
            Err(_) => {
                store::delete_session(&self.db.conn, id).await?;
                return Ok(None);
            }
        };
        Ok(Some(session_of(model, identity)))
    }

    /// Renews a session's view of the user: the provider's refresh grant when
    /// its tokens are due (a refusal ends the session), and the ownership refs
    /// and role from the catalog as it is now.
    pub async fn refresh(&self, session: Session) -> Result<Session, AuthError> {
        let mut sealed = None;
        let mut refresh_at = session.provider_refresh_at;
        if let (Some(due), Some(env)) = (
            session.provider_refresh_at,
            session.provider.strip_prefix("oidc:"),
        ) {
            if due <= now() {
                let provider = self.provider(Some(env))?;
                let mut tokens: ProviderTokens = session
                    .provider_tokens
                    .as_deref()
                    .and_then(|s| self.keys.open(s))
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if let Some(rt) = tokens.refresh_token.clone() {
                    match provider.refresh(&rt).await {
                        Ok(r) => {
                            // Cognito keeps the refresh token it issued at sign-in.
                            if let Some(new_rt) = r.refresh_token {
                                tokens.refresh_token = Some(new_rt);
                            }
                            if let Some(id) = r.id_token {
                                tokens.id_token = Some(id);
                            }
                            refresh_at = r.refresh_at;
                            sealed = Some(self.keys.seal(
                                &serde_json::to_vec(&tokens).map_err(anyhow::Error::from)?,
                            )?);
                        }
                        Err(AuthError::Rejected(reason)) => {
                            self.end_session(&session.id).await?;
                            return Err(AuthError::Rejected(format!(
                                "The provider ended this session: {reason}"
                            )));
                        }
                        Err(other) => return Err(other),
                    }
                }
            }
        }
        let extra = match (&self.config.guest, session.provider.as_str()) {
            (Some(g), "guest") => g.ownership_entity_refs.clone(),
            _ => vec![],
        };
        let identity = Identity::build(
            &self.catalog,
            &self.config.admin_groups,
            session.identity.user_ref.clone(),
            &extra,
            session.identity.provider_groups.clone(),
            session.identity.profile.clone(),
        );
        if identity != session.identity || sealed.is_some() {
            store::update_session_identity(
                &self.db.conn,
                &session.id,
                &serde_json::to_string(&identity).map_err(anyhow::Error::from)?,
                sealed.clone(),
                refresh_at,
            )
            .await?;
        }
        Ok(Session {
            identity,
            provider_tokens: sealed.or(session.provider_tokens),
            provider_refresh_at: refresh_at,
            ..session
        })
    }

    /// A Backstage identity token for the session, with its lifetime in seconds.
    pub fn identity_token(&self, session: &Session) -> Result<(String, u64), AuthError> {
        Ok(self.tokens.issue(
            &session.identity.user_ref,
            &session.identity.ownership,
            &session.id,
        )?)
    }

    pub async fn end_session(&self, id: &str) -> Result<(), AuthError> {
        store::delete_session(&self.db.conn, id).await?;
        self.live_sessions.lock().remove(id);
        Ok(())
    }

    /// Signs a user out everywhere.
    pub async fn end_sessions_of(&self, user_ref: &str) -> Result<u64, AuthError> {
        let n = store::delete_sessions_of(&self.db.conn, user_ref).await?;
        self.live_sessions.lock().clear();
        Ok(n)
    }

    pub async fn sessions_of(&self, user_ref: &str) -> Result<Vec<Session>, AuthError> {
        Ok(store::sessions_of(&self.db.conn, user_ref, now())
            .await?
            .into_iter()
            .filter_map(|m| {
                let identity = serde_json::from_str(&m.identity).ok()?;
                Some(session_of(m, identity))
            })
            .collect())
    }

    /// Where the browser goes after the local session ended: the provider's
    /// logout, returning to the app, or the app itself.
    pub async fn logout_url(&self, session: &Session) -> String {
        let back = format!("{}/", self.app_base_url);
        let Some(env) = session.provider.strip_prefix("oidc:") else {
            return back;
        };
        let Ok(provider) = self.provider(Some(env)) else {
            return back;
        };
        let id_token: Option<String> = session
            .provider_tokens
            .as_deref()
            .and_then(|s| self.keys.open(s))
            .and_then(|b| serde_json::from_slice::<ProviderTokens>(&b).ok())
            .and_then(|t| t.id_token);
        provider
            .logout_url(id_token.as_deref(), &back)
            .await
            .unwrap_or(back)
    }

    /// The principal behind an `Authorization: Bearer` value.
    pub async fn bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (d, subject) in &self.static_tokens {
            if bool::from(subtle::ConstantTimeEq::ct_eq(&d[..], &digest[..])) {
                found = Some(subject.clone());
            }
        }
        if let Some(subject) = found {
            return Ok(Principal::Service { subject });
        }
        let claims = self
            .tokens
            .verify(token)
            .await
            .map_err(|e| AuthError::Rejected(format!("Invalid token: {e}")))?;
        if !self.session_is_live(&claims.sid).await? {
            return Err(AuthError::Rejected(
                "Invalid token: its session has ended".into(),
            ));
        }
        let admin = identity::is_admin(&self.config.admin_groups, &[], &claims.ent);
        Ok(Principal::User(Arc::new(UserPrincipal {
            identity: Identity {
                user_ref: claims.sub,
                ownership: claims.ent,
                provider_groups: vec![],
                admin,
                profile: Profile::default(),
            },
            session_id: claims.sid,
            csrf: None,
        })))
    }

    async fn session_is_live(&self, id: &str) -> Result<bool, AuthError> {
        if let Some(seen) = self.live_sessions.lock().get(id) {
            if seen.elapsed() < LIVE_SESSION_CACHE {
                return Ok(true);
            }
        }
        let live = self.session_by_id(id, false).await?.is_some();
        let mut cache = self.live_sessions.lock();
        if live {
            if cache.len() > 10_000 {
                cache.retain(|_, t| t.elapsed() < LIVE_SESSION_CACHE);
            }
            cache.insert(id.to_string(), Instant::now());
        } else {
            cache.remove(id);
        }
        Ok(live)
    }

    /// Prunes ended sessions and stale flows, and rotates signing keys, until shutdown.
    pub async fn maintain(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now();
            let idle_before = now - self.config.session_idle.as_secs() as i64;
            let flows_before = now - FLOW_LIFETIME.as_secs() as i64;
            if let Err(e) = store::prune(&self.db.conn, now, idle_before, flows_before).await {
                tracing::warn!(error = %e, "pruning sessions failed");
            }
            if let Err(e) = self.tokens.rotate_if_due().await {
                tracing::warn!(error = %e, "rotating the signing key failed");
            }
        }
    }
}

fn allows_without_user(r: &crate::config::SignInResolver) -> bool {
    use crate::config::SignInResolver as R;
    match r {
        R::EmailMatchingUserEntityProfileEmail { allow_without_user }
        | R::EmailLocalPartMatchingUserEntityName {
            allow_without_user, ..
        } => *allow_without_user,
    }
}

fn session_of(m: store::sessions::Model, identity: Identity) -> Session {
    Session {
        id: m.id,
        provider: m.provider,
        identity,
        csrf: m.csrf,
        created_at: m.created_at,
        last_seen_at: m.last_seen_at,
        expires_at: m.expires_at,
        user_agent: m.user_agent,
        provider_tokens: m.provider_tokens,
        provider_refresh_at: m.provider_refresh_at,
    }
}

/// Seconds since the epoch: the time format of the auth tables.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
