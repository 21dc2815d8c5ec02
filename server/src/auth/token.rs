//! Backstage identity tokens: ES256 JWTs with `sub` (the user entity ref),
//! `ent` (ownership refs) and `aud: backstage`, as Backstage's auth backend
//! issues them.
//!
//! Each replica signs with its own key, kept in memory only, and publishes the
//! public half in `auth_signing_keys`, so that any replica verifies any token
//! and `/api/auth/.well-known/jwks.json` lists every key still in use. Keys
//! rotate daily and are dropped once no token signed by them can be valid.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::EncodePrivateKey;
use parking_lot::RwLock;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::store;
use crate::db::Db;

/// How long a signing key signs before the next one takes over.
const ROTATE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` reloads the key table at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub ent: Vec<String>,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// The session the token was issued for: signing out ends its tokens too.
    pub sid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error(transparent)]
    Db(#[from] DbErr),
}

struct SigningKey {
    kid: String,
    key: EncodingKey,
    created: i64,
}

struct KnownKeys {
    keys: HashMap<String, DecodingKey>,
    loaded: Option<Instant>,
}

pub struct TokenIssuer {
    db: Db,
    issuer: String,
    lifetime: Duration,
    current: RwLock<SigningKey>,
    known: RwLock<KnownKeys>,
    /// Serializes reloads so that a burst of unknown kids costs one query.
    reload: tokio::sync::Mutex<()>,
}

impl TokenIssuer {
    pub async fn new(db: Db, issuer: String, lifetime: Duration) -> anyhow::Result<TokenIssuer> {
        let key = new_key(&db).await?;
        let issuer = TokenIssuer {
            db,
            issuer,
            lifetime,
            current: RwLock::new(key),
            known: RwLock::new(KnownKeys {
                keys: HashMap::new(),
                loaded: None,
            }),
            reload: tokio::sync::Mutex::new(()),
        };
        issuer.reload_keys().await?;
        Ok(issuer)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs a token for a user; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        user_ref: &str,
        ownership: &[String],
        sid: &str,
    ) -> anyhow::Result<(String, u64)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user_ref.to_string(),
            ent: ownership.to_vec(),
            aud: "backstage".into(),
            iat: now,
            exp: now + self.lifetime.as_secs() as i64,
            sid: sid.to_string(),
        };
        let current = self.current.read();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(current.kid.clone());
        header.typ = Some("vnd.backstage.user".into());
        let token = jsonwebtoken::encode(&header, &claims, &current.key)
            .map_err(|e| anyhow::anyhow!("cannot sign a token: {e}"))?;
        Ok((token, self.lifetime.as_secs()))
    }

    /// Checks signature, issuer, audience and expiry.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["backstage"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = 30;
        for attempt in 0..2 {
            let found = {
                let known = self.known.read();
                known.keys.get(&kid).map(|key| {
                    jsonwebtoken::decode::<Claims>(token, key, &validation).map(|d| d.claims)
                })
            };
            match found {
                Some(Ok(claims)) => return Ok(claims),
                Some(Err(e)) => {
                    return Err(match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid,
                    })
                }
                None if attempt == 0 => self.reload_if_stale().await?,
                None => {}
            }
        }
        Err(TokenError::UnknownKey)
    }

    /// The public keys of every replica, as a JWK set.
    pub async fn jwks(&self) -> Result<Value, DbErr> {
        let keys: Vec<Value> = store::signing_keys(&self.db.conn)
            .await?
            .iter()
            .filter_map(|k| serde_json::from_str(&k.public_key).ok())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Starts a new key when the current one is old, and forgets keys no token can still use.
    pub async fn rotate_if_due(&self) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp();
        let due = now - self.current.read().created >= ROTATE_AFTER.as_secs() as i64;
        if due {
            let key = new_key(&self.db).await?;
            *self.current.write() = key;
        }
        let oldest =
            now - (ROTATE_AFTER + self.lifetime + Duration::from_secs(300)).as_secs() as i64;
        store::delete_signing_keys_before(&self.db.conn, oldest).await?;
        self.reload_keys().await?;
        Ok(())
    }

    async fn reload_if_stale(&self) -> Result<(), DbErr> {
        let _guard = self.reload.lock().await;
        let fresh = self
            .known
            .read()
            .loaded
            .is_some_and(|t| t.elapsed() < RELOAD_AT_MOST_EVERY);
        if fresh {
            return Ok(());
        }
        self.reload_keys().await
    }

    async fn reload_keys(&self) -> Result<(), DbErr> {
        let jwks = self.jwks().await?;
        let mut keys = HashMap::new();
        for k in jwks["keys"].as_array().into_iter().flatten() {
            let (Some(kid), Some(x), Some(y)) =
                (k["kid"].as_str(), k["x"].as_str(), k["y"].as_str())
            else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_ec_components(x, y) {
                keys.insert(kid.to_string(), key);
            }
        }
        *self.known.write() = KnownKeys {
            keys,
            loaded: Some(Instant::now()),
        };
        Ok(())
    }
}

/// Generates a P-256 key and publishes its public half.
async fn new_key(db: &Db) -> anyhow::Result<SigningKey> {
    let secret = loop {
        let bytes = super::crypto::random_bytes::<32>();
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    let kid = uuid::Uuid::new_v4().to_string();
    let mut jwk = serde_json::to_value(secret.public_key().to_jwk())?;
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), json!(kid));
        m.insert("alg".into(), json!("ES256"));
        m.insert("use".into(), json!("sig"));
    }
    let created = chrono::Utc::now().timestamp();
    store::insert_signing_key(
        &db.conn,
        store::signing_keys::Model {
            kid: kid.clone(),
            public_key: jwk.to_string(),
            created_at: created,
        },
    )
    .await?;
    Ok(SigningKey {
        kid,
        key: EncodingKey::from_ec_der(der.as_bytes()),
        created,
    })
}
