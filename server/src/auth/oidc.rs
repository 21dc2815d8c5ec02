//! One OpenID Connect provider environment (`auth.providers.oidc.<env>`),
//! with AWS Cognito's quirks handled: the authorization code flow with PKCE,
//! ID token verification, userinfo, the refresh grant and the logout URL.
//!
//! Discovery happens on first use and is retried until it succeeds, so a
//! provider that is down at start does not stop the portal. An ID token signed
//! with a key the cached JWKS lacks triggers one refetch, at most every
//! [`JWKS_REFETCH_AT_MOST_EVERY`]. Only asymmetric algorithms are accepted:
//! never `none`, and never HS*, which would let the client secret sign tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdToken, IdTokenClaims, IdTokenVerifier, JsonWebKeySet, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, SignatureVerificationError, SubjectIdentifier,
    UserInfoClaims,
};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::AuthError;
use crate::config::OidcConfig;

/// An unknown `kid` refetches the provider's keys at most this often.
pub const JWKS_REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY: chrono::Duration = chrono::Duration::seconds(60);

/// Claims beyond the standard ones: Cognito's groups and username, and the
/// `groups` claim other providers use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cognito_groups: Option<Vec<String>>,
    #[serde(
        rename = "cognito:username",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cognito_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
}
impl AdditionalClaims for ExtraClaims {}

/// The discovery fields that openidconnect does not model: RP-initiated logout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type ProviderIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

struct Discovered {
    metadata: Metadata,
    jwks_fetched: Instant,
}

/// What starting a sign-in produces; the caller keeps the secrets.
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A verified sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    pub refresh_token: Option<String>,
    pub id_token: String,
    /// When the provider's access token ends: the time to use the refresh grant.
    pub refresh_at: Option<i64>,
}

/// The result of the refresh grant.
pub struct Refreshed {
    /// A new refresh token, when the provider rotates them (Cognito does not).
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub refresh_at: Option<i64>,
}

pub struct OidcProvider {
    pub config: OidcConfig,
    http: reqwest::Client,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
    /// When keys were last refetched for an unknown `kid`.
    last_refetch: Mutex<Option<Instant>>,
}

impl OidcProvider {
    pub fn new(config: OidcConfig) -> anyhow::Result<OidcProvider> {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider response steer requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(OidcProvider {
            config,
            http,
            discovered: tokio::sync::RwLock::new(None),
            last_refetch: Mutex::new(None),
        })
    }

    /// The authorization URL, with a fresh nonce and PKCE pair.
    pub async fn start(&self, state: String) -> Result<Started, AuthError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scope.split_whitespace() {
            if scope != "openid" {
                req = req.add_scope(Scope::new(scope.to_string()));
            }
        }
        if let Some(prompt) = &self.config.prompt {
            for p in prompt.split_whitespace() {
                req = req.add_prompt(match p {
                    "none" => CoreAuthPrompt::None,
                    "login" => CoreAuthPrompt::Login,
                    "consent" => CoreAuthPrompt::Consent,
                    "select_account" => CoreAuthPrompt::SelectAccount,
                    other => CoreAuthPrompt::Extension(other.to_string()),
                });
            }
        }
        let (url, state, nonce) = req.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code, verifies the ID token against the nonce, and checks userinfo.
    pub async fn finish(
        &self,
        code: String,
        nonce: &str,
        pkce_verifier: String,
    ) -> Result<SignedIn, AuthError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| {
                AuthError::Unavailable(format!("the provider has no token endpoint: {e}"))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let raw = token
            .extra_fields()
            .id_token()
            .ok_or_else(|| AuthError::Rejected("the provider returned no ID token".into()))?
            .to_string();
        let nonce = Nonce::new(nonce.to_string());
        let (claims, d) = self.verify_id_token(d, &raw, Some(&nonce)).await?;
        let client = self.client(&d)?;
        let mut signed_in = SignedIn {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            picture: claims
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.to_string()),
            username: claims
                .additional_claims()
                .cognito_username
                .clone()
                .or_else(|| claims.preferred_username().map(|u| u.to_string())),
            groups: groups_of(claims.additional_claims()),
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            id_token: raw,
            refresh_at: token
                .expires_in()
                .map(|e| Utc::now().timestamp() + e.as_secs() as i64 - 60),
        };
        if client.user_info_url().is_some() {
            self.merge_userinfo(&client, token.access_token().clone(), &mut signed_in)
                .await?;
        }
        Ok(signed_in)
    }

    /// The refresh grant; a failure means the provider ended the user's session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed, AuthError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let token_ref = RefreshToken::new(refresh_token.to_string());
        let token = client
            .exchange_refresh_token(&token_ref)
            .map_err(|e| {
                AuthError::Unavailable(format!("the provider has no token endpoint: {e}"))
            })?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = match token.extra_fields().id_token() {
            Some(t) => {
                let raw = t.to_string();
                self.verify_id_token(d, &raw, None).await?;
                Some(raw)
            }
            None => None,
        };
        Ok(Refreshed {
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            id_token,
            refresh_at: token
                .expires_in()
                .map(|e| Utc::now().timestamp() + e.as_secs() as i64 - 60),
        })
    }

    /// Where to send the browser to end the provider's session too: the
    /// discovered `end_session_endpoint`, or Cognito's `/logout`.
    pub async fn logout_url(&self, id_token: Option<&str>, return_to: &str) -> Option<String> {
        let d = self.discovered().await.ok()?;
        if let Some(end) = &d.metadata.additional_metadata().end_session_endpoint {
            let mut url = url::Url::parse(end).ok()?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("client_id", &self.config.client_id);
                q.append_pair("post_logout_redirect_uri", return_to);
                if let Some(t) = id_token {
                    q.append_pair("id_token_hint", t);
                }
            }
            return Some(url.to_string());
        }
        cognito_logout_url(
            d.metadata.issuer().as_str(),
            d.metadata.authorization_endpoint().as_str(),
            &self.config.client_id,
            return_to,
        )
    }

    async fn merge_userinfo(
        &self,
        client: &Client,
        access_token: AccessToken,
        into: &mut SignedIn,
    ) -> Result<(), AuthError> {
        let expected = SubjectIdentifier::new(into.subject.clone());
        let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> = client
            .user_info(access_token, Some(expected))
            .map_err(|e| AuthError::Unavailable(format!("userinfo: {e}")))?
            .require_issuer_match(false)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::UserInfoError::ClaimsVerification(e) => {
                    AuthError::Rejected(format!("userinfo does not match the ID token: {e}"))
                }
                other => AuthError::Unavailable(format!("userinfo: {other}")),
            })?;
        if into.email.is_none() {
            into.email = info.email().map(|e| e.to_string());
            into.email_verified = info.email_verified().unwrap_or(false);
        } else if info.email().map(|e| e.as_str()) == into.email.as_deref() {
            into.email_verified |= info.email_verified().unwrap_or(false);
        }
        if into.name.is_none() {
            into.name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
        }
        if into.groups.is_empty() {
            into.groups = groups_of(info.additional_claims());
        }
        Ok(())
    }

    /// Verifies an ID token, refetching the keys once if its `kid` is unknown.
    async fn verify_id_token(
        &self,
        mut d: Arc<Discovered>,
        raw: &str,
        nonce: Option<&Nonce>,
    ) -> Result<(IdTokenClaims<ExtraClaims, CoreGenderClaim>, Arc<Discovered>), AuthError> {
        let token: ProviderIdToken = raw
            .parse()
            .map_err(|e| AuthError::Rejected(format!("the ID token is malformed: {e}")))?;
        for attempt in 0..2 {
            let result = {
                let verifier = self.verifier(&d);
                match nonce {
                    Some(n) => token.claims(&verifier, n).cloned(),
                    None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())).cloned(),
                }
            };
            match result {
                Ok(claims) => return Ok((claims, d)),
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if attempt == 0 => match self.refetch_keys(&d).await? {
                    Some(fresh) => d = fresh,
                    None => {
                        return Err(AuthError::Rejected(
                            "the ID token was signed with a key the provider does not publish"
                                .into(),
                        ))
                    }
                },
                Err(e) => {
                    return Err(AuthError::Rejected(format!(
                        "the ID token was refused: {e}"
                    )))
                }
            }
        }
        Err(AuthError::Rejected(
            "the ID token was signed with a key the provider does not publish".into(),
        ))
    }

    fn verifier<'a>(&'a self, d: &'a Discovered) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let allowed: Vec<CoreJwsSigningAlgorithm> = d
            .metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| is_asymmetric(a))
            .cloned()
            .collect();
        IdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            d.metadata.issuer().clone(),
            d.metadata.jwks().clone(),
        )
        .set_allowed_algs(if allowed.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            allowed
        })
        .set_time_fn(|| Utc::now() - LEEWAY)
        .set_issue_time_verifier_fn(|iat| {
            if iat > Utc::now() + LEEWAY {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        })
    }

    fn client(&self, d: &Discovered) -> Result<Client, AuthError> {
        let redirect = RedirectUrl::new(self.config.callback_url.clone())
            .map_err(|e| AuthError::Input(format!("callbackUrl: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            // The client only reads the endpoints; `LogoutMetadata` is ours.
            core_metadata(&d.metadata),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose_secret().to_string(),
            )),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(if self.config.secret_in_body {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        }))
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, AuthError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(self.discover().await?);
        *slot = Some(d.clone());
        Ok(d)
    }

    async fn discover(&self) -> Result<Discovered, AuthError> {
        let unavailable = |e: String| {
            AuthError::Unavailable(format!(
                "cannot read the provider's metadata at {}: {e}",
                self.config.metadata_url
            ))
        };
        let res = self
            .http
            .get(&self.config.metadata_url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("HTTP {}", res.status())));
        }
        let bytes = res.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        let metadata: Metadata =
            serde_json::from_slice(&bytes).map_err(|e| unavailable(e.to_string()))?;
        let jwks = self.fetch_jwks(&metadata).await?;
        Ok(Discovered {
            metadata: metadata.set_jwks(jwks),
            jwks_fetched: Instant::now(),
        })
    }

    async fn fetch_jwks(
        &self,
        metadata: &Metadata,
    ) -> Result<JsonWebKeySet<CoreJsonWebKey>, AuthError> {
        JsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| AuthError::Unavailable(format!("cannot read the provider's keys: {e}")))
    }

    /// New keys for an unknown `kid`, unless keys were fetched too recently.
    async fn refetch_keys(
        &self,
        d: &Arc<Discovered>,
    ) -> Result<Option<Arc<Discovered>>, AuthError> {
        {
            let mut last = self.last_refetch.lock();
            let recent = last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_AT_MOST_EVERY)
                || d.jwks_fetched.elapsed() < Duration::from_millis(100);
            if recent {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let jwks = self.fetch_jwks(&d.metadata).await?;
        let fresh = Arc::new(Discovered {
            metadata: d.metadata.clone().set_jwks(jwks),
            jwks_fetched: Instant::now(),
        });
        *self.discovered.write().await = Some(fresh.clone());
        Ok(Some(fresh))
    }
}

/// Cognito publishes no `end_session_endpoint`; its hosted UI (also under a
/// custom domain) serves `/logout` beside `/oauth2/authorize`, taking
/// `client_id` and `logout_uri`. `None` for other providers.
fn cognito_logout_url(
    issuer: &str,
    authorization_endpoint: &str,
    client_id: &str,
    return_to: &str,
) -> Option<String> {
    let issuer = url::Url::parse(issuer).ok()?;
    let cognito = issuer
        .host_str()
        .is_some_and(|h| h.starts_with("cognito-idp.") && h.ends_with(".amazonaws.com"));
    if !cognito {
        return None;
    }
    let mut url = url::Url::parse(authorization_endpoint).ok()?;
    url.set_path("/logout");
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("logout_uri", return_to);
    Some(url.to_string())
}

fn core_metadata(m: &Metadata) -> openidconnect::core::CoreProviderMetadata {
    openidconnect::core::CoreProviderMetadata::new(
        m.issuer().clone(),
        m.authorization_endpoint().clone(),
        m.jwks_uri().clone(),
        m.response_types_supported().clone(),
        m.subject_types_supported().clone(),
        m.id_token_signing_alg_values_supported().clone(),
        openidconnect::EmptyAdditionalProviderMetadata {},
    )
    .set_token_endpoint(m.token_endpoint().cloned())
    .set_userinfo_endpoint(m.userinfo_endpoint().cloned())
    .set_jwks(m.jwks().clone())
}

fn groups_of(extra: &ExtraClaims) -> Vec<String> {
    extra
        .cognito_groups
        .clone()
        .or_else(|| extra.groups.clone())
        .unwrap_or_default()
}

fn is_asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    use CoreJwsSigningAlgorithm as A;
    matches!(
        alg,
        A::RsaSsaPkcs1V15Sha256
            | A::RsaSsaPkcs1V15Sha384
            | A::RsaSsaPkcs1V15Sha512
            | A::EcdsaP256Sha256
            | A::EcdsaP384Sha384
            | A::RsaSsaPssSha256
            | A::RsaSsaPssSha384
            | A::RsaSsaPssSha512
            | A::EdDsa
    )
}

fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(r) => AuthError::Rejected(format!(
            "the provider refused: {}{}",
            r.error().as_ref(),
            r.error_description()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )),
        RequestTokenError::Parse(e, _) => {
            AuthError::Rejected(format!("the provider's token response is malformed: {e}"))
        }
        other => AuthError::Unavailable(format!("the provider's token endpoint: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cognito_logout_goes_to_the_hosted_ui() {
        assert_eq!(
            cognito_logout_url(
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC",
                "https://auth.acme.example/oauth2/authorize",
                "app-client",
                "https://portal.acme.example/",
            )
            .as_deref(),
            Some("https://auth.acme.example/logout?client_id=app-client&logout_uri=https%3A%2F%2Fportal.acme.example%2F")
        );
        assert_eq!(
            cognito_logout_url(
                "https://login.example.com",
                "https://login.example.com/authorize",
                "c",
                "https://p/"
            ),
            None
        );
    }
}
