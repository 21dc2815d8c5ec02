//! Sign-in against a real OIDC provider (npm `oidc-provider`, behaving as
//! Cognito does), through the whole browser flow with an HTTP client and a
//! cookie jar; sessions, identity tokens, roles, and everything that must be refused.

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use stagedoor_tests::peers::{free_port, OidcPeer};
use stagedoor_tests::{cookie_client, spawn, status_and_json, Spawn, TestApp};

const CLIENT_ID: &str = "stagedoor-portal";
const CLIENT_SECRET: &str = "portal-client-secret-value";

const ORG: &str = r#"
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: eng}
spec: {type: department, children: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a}
spec: {type: team, parent: eng, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: alice}
spec: {profile: {email: alice@example.com, displayName: Alice A}, memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: bob}
spec: {profile: {email: bob@example.com}, memberOf: []}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: checkout}
spec: {type: service, lifecycle: production, owner: team-a}
"#;

/// A portal wired to a fresh OIDC provider.
pub(crate) struct Portal {
    pub app: TestApp,
    pub idp: OidcPeer,
    _catalog: tempfile::TempDir,
}

async fn portal(resolvers: &str, idp_extra: Value) -> Option<Portal> {
    portal_with(resolvers, idp_extra, "").await
}

/// `backend_extra` is YAML added to the portal's `backend` section.
pub(crate) async fn portal_with(
    resolvers: &str,
    idp_extra: Value,
    backend_extra: &str,
) -> Option<Portal> {
    portal_configured(resolvers, idp_extra, backend_extra, &[], "").await
}

/// As `portal_with`, with more catalog files to read and `tail`, YAML of
/// further top-level sections (such as `scaffolder`).
pub(crate) async fn portal_configured(
    resolvers: &str,
    idp_extra: Value,
    backend_extra: &str,
    locations: &[std::path::PathBuf],
    tail: &str,
) -> Option<Portal> {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = OidcPeer::start(
        CLIENT_ID,
        CLIENT_SECRET,
        &format!("{base}/api/auth/oidc/handler/frame"),
        &format!("{base}/"),
        idp_extra,
    )
    .await?;
    let catalog = tempfile::tempdir().expect("temp dir");
    let org = catalog.path().join("org.yaml");
    std::fs::write(&org, ORG).expect("write catalog");
    let config = format!(
        r#"
app: {{baseUrl: "{base}"}}
backend:
  baseUrl: "{base}"
  listen: {{host: 127.0.0.1, port: {port}}}
{backend_extra}auth:
  environment: development
  session: {{secret: "a-session-secret-of-at-least-32-characters"}}
  providers:
    oidc:
      development:
        metadataUrl: "{issuer}/.well-known/openid-configuration"
        clientId: {CLIENT_ID}
        clientSecret: {CLIENT_SECRET}
        signIn:
          resolvers: {resolvers}
stagedoor:
  admins: {{groups: [admins]}}
catalog:
  locations:
    - {{type: file, target: "{org}"}}
{more}{tail}"#,
        issuer = idp.issuer,
        org = org.display(),
        more = locations
            .iter()
            .map(|l| format!("    - {{type: file, target: \"{}\"}}\n", l.display()))
            .collect::<String>(),
    );
    let app = spawn(Spawn {
        config,
        ..Default::default()
    })
    .await;
    app.process_due().await;
    Some(Portal {
        app,
        idp,
        _catalog: catalog,
    })
}

pub(crate) const BY_EMAIL: &str = "[{resolver: emailMatchingUserEntityProfileEmail}]";

fn location(headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_string()
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

impl Portal {
    /// Starts a sign-in in `browser` and logs in at the provider as `login`;
    /// returns the provider's redirect back to the portal (not yet followed).
    async fn login_at_provider(&self, browser: &reqwest::Client, login: &str) -> String {
        let start = format!(
            "{}?env=development&flow=redirect&redirectUrl={}",
            self.app.url("/api/auth/oidc/start"),
            url_encode(&self.app.url("/catalog?kind=component"))
        );
        self.login_from(browser, &start, login).await
    }

    /// As `login_at_provider`, from any start URL.
    async fn login_from(&self, browser: &reqwest::Client, start: &str, login: &str) -> String {
        let res = browser.get(start).send().await.expect("start");
        assert_eq!(res.status(), 302, "start redirects to the provider");
        let authorize = location(res.headers());
        assert!(authorize.starts_with(&self.idp.issuer), "{authorize}");
        for part in [
            "code_challenge_method=S256",
            "code_challenge=",
            "nonce=",
            "state=",
        ] {
            assert!(
                authorize.contains(part),
                "authorize URL lacks {part}: {authorize}"
            );
        }
        let res = browser.get(&authorize).send().await.expect("authorize");
        assert_eq!(res.status(), 303);
        let interaction = format!("{}{}", self.idp.issuer, location(res.headers()));
        let res = browser
            .post(&interaction)
            .form(&[("prompt", "login"), ("login", login)])
            .send()
            .await
            .expect("login form");
        assert_eq!(res.status(), 303);
        let res = browser
            .get(location(res.headers()))
            .send()
            .await
            .expect("resume");
        assert_eq!(res.status(), 303);
        let callback = location(res.headers());
        assert!(
            callback.starts_with(&self.app.url("/api/auth/oidc/handler/frame?")),
            "{callback}"
        );
        callback
    }

    /// A full sign-in; returns the browser holding the session.
    async fn sign_in(&self, login: &str) -> reqwest::Client {
        let b = cookie_client();
        let callback = self.login_at_provider(&b, login).await;
        let res = b.get(&callback).send().await.expect("callback");
        let status = res.status();
        let body = if status == 302 {
            String::new()
        } else {
            res.text().await.unwrap_or_default()
        };
        assert_eq!(status, 302, "sign-in of {login} failed: {body}");
        b
    }

    async fn identity(&self, b: &reqwest::Client) -> (u16, Value) {
        let res = b
            .get(self.app.url("/api/auth/oidc/refresh?env=development"))
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .expect("refresh");
        status_and_json(res).await
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn with_state(callback: &str, state: &str) -> String {
    let mut url = url::Url::parse(callback).expect("callback URL");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                state.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

#[tokio::test]
async fn oidc_sign_in_gives_a_session_tokens_and_logout() {
    let Some(p) = portal(BY_EMAIL, json!({})).await else {
        return;
    };
    let b = cookie_client();
    let callback = p.login_at_provider(&b, "alice").await;
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 302);
    assert_eq!(
        location(res.headers()),
        p.app.url("/catalog?kind=component")
    );
    assert_eq!(
        res.headers()
            .get("referrer-policy")
            .and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    let cookies = set_cookies(res.headers());
    let session = cookies
        .iter()
        .find(|c| c.starts_with("stagedoor-session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            session.contains(attr),
            "session cookie lacks {attr}: {session}"
        );
    }

    // Backstage's refresh: X-Requested-With is required.
    let res = b
        .get(p.app.url("/api/auth/oidc/refresh?env=development"))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), 401);
    let (status, id) = p.identity(&b).await;
    assert_eq!(status, 200, "{id}");
    let ident = &id["backstageIdentity"]["identity"];
    assert_eq!(ident["type"], "user");
    assert_eq!(ident["userEntityRef"], "user:default/alice");
    let ownership: Vec<&str> = ident["ownershipEntityRefs"]
        .as_array()
        .expect("refs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        ownership,
        [
            "user:default/alice",
            "group:default/team-a",
            "group:default/eng"
        ]
    );
    assert_eq!(id["profile"]["email"], "alice@example.com");
    assert_eq!(id["backstageIdentity"]["expiresInSeconds"], 3600);
    assert_eq!(
        id["providerInfo"],
        json!({}),
        "provider tokens stay on the server"
    );
    let token = id["backstageIdentity"]["token"]
        .as_str()
        .expect("token")
        .to_string();

    // The token is an ES256 JWT whose key the JWKS publishes.
    let header: Value =
        serde_json::from_slice(&base64_url(token.split('.').next().expect("header")))
            .expect("JWT header");
    assert_eq!(header["alg"], "ES256");
    let (_, jwks) = p.app.get_json("/api/auth/.well-known/jwks.json").await;
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == header["kid"] && k["crv"] == "P-256"),
        "{jwks}"
    );
    let claims: Value =
        serde_json::from_slice(&base64_url(token.split('.').nth(1).expect("claims")))
            .expect("claims");
    assert_eq!(claims["aud"], "backstage");
    assert_eq!(claims["sub"], "user:default/alice");

    // The API requires an identity now that sign-in is configured.
    let (status, _) = p.app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 401);
    let bearer = |path: &str| p.app.client.get(p.app.url(path)).bearer_auth(&token).send();
    assert_eq!(
        bearer("/api/catalog/entities").await.expect("get").status(),
        200
    );
    let (status, info) = status_and_json(bearer("/api/auth/v1/userinfo").await.expect("get")).await;
    assert_eq!(status, 200);
    assert_eq!(info["claims"]["sub"], "user:default/alice");
    let res = b
        .get(p.app.url("/api/catalog/entities"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200, "the session cookie authenticates reads");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let res = p
        .app
        .client
        .get(p.app.url("/api/catalog/entities"))
        .bearer_auth(forged)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);

    // Logout ends the session and points the browser at the provider's logout.
    let res = b
        .post(p.app.url("/api/auth/oidc/logout"))
        .header("Origin", p.app.base.clone())
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 401, "logout needs X-Requested-With");
    let res = b
        .post(p.app.url("/api/auth/oidc/logout"))
        .header("Origin", p.app.base.clone())
        .header("X-Requested-With", "XMLHttpRequest")
        .send()
        .await
        .expect("logout");
    let (status, out) = status_and_json(res).await;
    assert_eq!(status, 200);
    let redirect = out["redirectUrl"].as_str().expect("redirectUrl");
    assert!(
        redirect.starts_with(&format!("{}/logout?", p.idp.issuer)),
        "{redirect}"
    );
    assert!(redirect.contains(&format!(
        "post_logout_redirect_uri={}",
        url_encode(&p.app.url("/"))
    )));
    let (status, _) = p.identity(&b).await;
    assert_eq!(status, 401, "the session has ended");
    assert_eq!(
        bearer("/api/catalog/entities").await.expect("get").status(),
        401,
        "tokens of an ended session are refused"
    );
    p.app.stop().await;
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

#[tokio::test]
async fn oidc_refuses_forged_state_replays_and_other_browsers() {
    let Some(p) = portal(BY_EMAIL, json!({})).await else {
        return;
    };
    let b = cookie_client();
    let callback = p.login_at_provider(&b, "alice").await;
    // A tampered state matches no sign-in.
    let res = b
        .get(with_state(&callback, "forged-state"))
        .send()
        .await
        .expect("forged");
    assert_eq!(res.status(), 400);
    assert!(set_cookies(res.headers())
        .iter()
        .all(|c| !c.starts_with("stagedoor-session=")));
    // The genuine callback works once.
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 302);
    let res = b.get(&callback).send().await.expect("replay");
    assert_eq!(res.status(), 400, "a replayed callback is refused");
    assert!(res
        .text()
        .await
        .unwrap_or_default()
        .contains("already used"));

    // A callback carried to another browser lacks the flow cookie.
    let a = cookie_client();
    let callback = p.login_at_provider(&a, "alice").await;
    let other = cookie_client();
    let res = other.get(&callback).send().await.expect("other browser");
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap_or_default()
        .contains("another browser"));

    // The code cannot be redeemed without the PKCE verifier the portal kept.
    let a = cookie_client();
    let callback = p.login_at_provider(&a, "alice").await;
    let code = url::Url::parse(&callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", p.idp.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &p.app.url("/api/auth/oidc/handler/frame")),
        ])
        .send()
        .await
        .expect("token");
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 400, "{body}");
    p.app.stop().await;
}

#[tokio::test]
async fn oidc_refuses_forged_id_tokens_and_follows_key_rotation() {
    let Some(p) = portal(BY_EMAIL, json!({})).await else {
        return;
    };
    // A rotated provider key is fetched when a token names it.
    p.sign_in("alice").await;
    let before = p.idp.stats().await["jwks_fetches"].as_u64().expect("count");
    p.idp.control("rotate", json!({})).await;
    p.sign_in("alice").await;
    let after = p.idp.stats().await["jwks_fetches"].as_u64().expect("count");
    assert_eq!(after, before + 1, "one refetch for the new kid");

    for mode in [
        "aud",
        "iss",
        "expired",
        "alg-none",
        "hs256",
        "unknown-kid",
        "userinfo-sub",
    ] {
        p.idp.control("tamper", json!({"mode": mode})).await;
        let b = cookie_client();
        let callback = p.login_at_provider(&b, "alice").await;
        let res = b.get(&callback).send().await.expect("callback");
        let status = res.status();
        let cookies = set_cookies(res.headers());
        let body = res.text().await.unwrap_or_default();
        assert_eq!(status, 401, "{mode}: {body}");
        assert!(
            cookies.iter().all(|c| !c.starts_with("stagedoor-session=")),
            "{mode}: no session"
        );
        let (status, _) = p.identity(&b).await;
        assert_eq!(status, 401, "{mode}");
    }
    // Unknown kids within the refetch interval do not hammer the provider.
    let fetches = p.idp.stats().await["jwks_fetches"].as_u64().expect("count");
    assert_eq!(fetches, after, "refetches are rate-limited");
    p.idp.control("tamper", json!({"mode": null})).await;
    p.sign_in("alice").await;
    p.app.stop().await;
}

#[tokio::test]
async fn sign_in_resolvers_bind_accounts_by_issuer_and_subject() {
    let resolvers = "[{resolver: emailLocalPartMatchingUserEntityName, allowedDomains: [other.example]}, {resolver: emailMatchingUserEntityProfileEmail}]";
    let Some(p) = portal(resolvers, json!({})).await else {
        return;
    };
    // Unverified email: refused.
    p.idp
        .control(
            "accounts",
            json!({"login": "alice", "email_verified": "false"}),
        )
        .await;
    let b = cookie_client();
    let callback = p.login_at_provider(&b, "alice").await;
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap_or_default();
    assert!(body.contains("not verified"), "{body}");
    p.idp.control("accounts", json!({"login": "alice"})).await;

    // No user in the catalog: refused.
    let b = cookie_client();
    let callback = p.login_at_provider(&b, "carol").await;
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap_or_default()
        .contains("carol@example.com"));

    // The local-part resolver only accepts its domains; the email resolver then matches.
    let b = p.sign_in("alice").await;
    let (_, id) = p.identity(&b).await;
    assert_eq!(
        id["backstageIdentity"]["identity"]["userEntityRef"],
        "user:default/alice"
    );

    // Another account with alice's email cannot become alice.
    p.idp
        .control(
            "accounts",
            json!({"login": "mallory", "email": "alice@example.com"}),
        )
        .await;
    let b = cookie_client();
    let callback = p.login_at_provider(&b, "mallory").await;
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap_or_default()
        .contains("already linked"));

    // The first account keeps its user even when its email changes.
    p.idp
        .control(
            "accounts",
            json!({"login": "alice", "email": "alice@new.example"}),
        )
        .await;
    let b = p.sign_in("alice").await;
    let (_, id) = p.identity(&b).await;
    assert_eq!(
        id["backstageIdentity"]["identity"]["userEntityRef"],
        "user:default/alice"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn roles_csrf_and_redirect_targets() {
    let Some(p) = portal(BY_EMAIL, json!({})).await else {
        return;
    };
    // Only our own origin is a redirect target.
    for target in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let res = cookie_client()
            .get(format!(
                "{}?env=development&flow=redirect&redirectUrl={}",
                p.app.url("/api/auth/oidc/start"),
                url_encode(target)
            ))
            .send()
            .await
            .expect("start");
        assert_eq!(res.status(), 400, "{target}");
    }
    let res = cookie_client()
        .get(
            p.app
                .url("/api/auth/oidc/start?env=nope&flow=redirect&redirectUrl=/"),
        )
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 404);

    // alice is an admin through her provider group; bob is not.
    p.idp
        .control("accounts", json!({"login": "alice", "groups": ["admins"]}))
        .await;
    let alice = p.sign_in("alice").await;
    let bob = p.sign_in("bob").await;
    let location = json!({"type": "url", "target": "https://example.com/catalog-info.yaml"});
    let post = |b: &reqwest::Client, origin: Option<&str>, xhr: bool| {
        let mut req = b
            .post(p.app.url("/api/catalog/locations?dryRun=false"))
            .json(&location);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        if xhr {
            req = req.header("X-Requested-With", "XMLHttpRequest");
        }
        req.send()
    };
    let own = p.app.base.clone();
    let res = post(&alice, Some("https://evil.example"), true)
        .await
        .expect("post");
    assert_eq!(res.status(), 403, "cross-site write with the cookie");
    let res = post(&alice, Some(&own), false).await.expect("post");
    assert_eq!(res.status(), 403, "cookie write without X-Requested-With");
    let res = post(&bob, Some(&own), true).await.expect("post");
    assert_eq!(res.status(), 403, "bob is not an admin");
    let (status, body) = status_and_json(post(&alice, Some(&own), true).await.expect("post")).await;
    // The admin passes the gate; the URL host is not on the reading allow-list.
    assert!(
        status == 201
            || status == 400
            || status == 403
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.contains("admins")),
        "{status} {body}"
    );
    assert_ne!(status, 401);

    // Owners refresh what they own; others may not.
    let (_, alice_id) = p.identity(&alice).await;
    assert_eq!(
        alice_id["backstageIdentity"]["identity"]["userEntityRef"],
        "user:default/alice"
    );
    let (_, bob_id) = p.identity(&bob).await;
    let bob_token = bob_id["backstageIdentity"]["token"]
        .as_str()
        .expect("token");
    let res = p
        .app
        .client
        .post(p.app.url("/api/catalog/refresh"))
        .bearer_auth(bob_token)
        .json(&json!({"entityRef": "component:default/checkout"}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), 403);
    p.idp.control("accounts", json!({"login": "alice"})).await;
    let alice_plain = p.sign_in("alice").await;
    let (_, id) = p.identity(&alice_plain).await;
    let token = id["backstageIdentity"]["token"].as_str().expect("token");
    let res = p
        .app
        .client
        .post(p.app.url("/api/catalog/refresh"))
        .bearer_auth(token)
        .json(&json!({"entityRef": "component:default/checkout"}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        res.status(),
        200,
        "team-a owns checkout and alice is in team-a"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn the_refresh_grant_keeps_cognitos_refresh_token() {
    // Access tokens that are already due make every refresh use the grant.
    let Some(p) = portal(BY_EMAIL, json!({"access_token_ttl": 30})).await else {
        return;
    };
    let b = p.sign_in("alice").await;
    for _ in 0..2 {
        let before = p.idp.stats().await["token_requests"]
            .as_u64()
            .expect("count");
        let (status, id) = p.identity(&b).await;
        assert_eq!(status, 200, "{id}");
        let after = p.idp.stats().await["token_requests"]
            .as_u64()
            .expect("count");
        assert_eq!(after, before + 1, "one refresh grant per due refresh");
    }
    p.app.stop().await;
}

#[tokio::test]
async fn the_guest_provider_signs_in_in_development() {
    let app = spawn(Spawn {
        config: "auth:\n  providers:\n    guest: {userEntityRef: 'user:default/guest-user'}\nstagedoor:\n  admins: {groups: ['user:default/guest-user']}\n".into(),
        ..Default::default()
    })
    .await;
    let b = cookie_client();
    let res = b
        .get(app.url("/api/auth/guest/refresh"))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), 401, "X-Requested-With is required");
    let res = b
        .get(app.url("/api/auth/guest/refresh"))
        .header("X-Requested-With", "XMLHttpRequest")
        .send()
        .await
        .expect("refresh");
    let (status, id) = status_and_json(res).await;
    assert_eq!(status, 200, "{id}");
    assert_eq!(
        id["backstageIdentity"]["identity"]["userEntityRef"],
        "user:default/guest-user"
    );
    app.stop().await;

    let err = stagedoor::config::Config::from_yaml(
        "auth:\n  environment: production\n  providers:\n    guest: {}\n",
        std::path::Path::new("."),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("auth.providers.guest"), "{err}");
}

#[tokio::test]
async fn the_popup_flow_posts_the_identity_to_the_app_origin() {
    let Some(p) = portal(BY_EMAIL, json!({})).await else {
        return;
    };
    // Backstage's front end opens start in a popup (its default flow).
    let b = cookie_client();
    let start = format!("{}?env=development", p.app.url("/api/auth/oidc/start"));
    let callback = p.login_from(&b, &start, "alice").await;
    let res = b.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    let html = res.text().await.expect("html");
    assert!(
        html.contains("\"type\":\"authorization_response\""),
        "{html}"
    );
    assert!(
        html.contains("\"userEntityRef\":\"user:default/alice\""),
        "{html}"
    );
    assert!(
        html.contains("postMessage(") && html.contains(&format!("\"{}\")", p.app.base)),
        "posted to the app's origin only: {html}"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("nonce");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    let (status, _) = p.identity(&b).await;
    assert_eq!(status, 200, "the popup's session serves refresh");
    p.app.stop().await;
}
