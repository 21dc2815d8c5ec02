//! The account and admin pages over plain HTTP: sign-in page, guest button,
//! sign-out, profile and sessions, admin locations; their CSRF and Origin
//! checks, and the security headers every page carries.

use reqwest::header::{HeaderMap, LOCATION};
use stagedoor_tests::{cookie_client, spawn, HttpFixture, Spawn, TestApp};

async fn app_with_guest(user: &str, extra: &str) -> TestApp {
    spawn(Spawn {
        config: format!(
            "auth:\n  providers:\n    guest: {{userEntityRef: '{user}'}}\nstagedoor:\n  admins: {{groups: ['user:default/admin']}}\n{extra}"
        ),
        ..Default::default()
    })
    .await
}

/// Signs a browser in as the guest.
async fn guest(app: &TestApp) -> reqwest::Client {
    let b = cookie_client();
    let res = b
        .post(app.url("/login/guest"))
        .header("Origin", app.base.clone())
        .form(&[("returnTo", "/profile")])
        .send()
        .await
        .expect("guest sign-in");
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), "/profile");
    b
}

fn location(h: &HeaderMap) -> String {
    h.get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn page(b: &reqwest::Client, url: String) -> (u16, HeaderMap, String) {
    let res = b.get(url).send().await.expect("page");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.expect("body"))
}

/// The value of the first hidden `csrf` input.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_string()
}

#[tokio::test]
async fn pages_carry_security_headers_with_script_nonces() {
    let app = app_with_guest("user:default/dev", "").await;
    let (status, h, html) = page(&cookie_client(), app.url("/login")).await;
    assert_eq!(status, 200);
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a script nonce");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "scripts carry the nonce"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS over http"
    );
    let (_, h2, _) = page(&cookie_client(), app.url("/login")).await;
    assert_ne!(
        h2["content-security-policy"], h["content-security-policy"],
        "a nonce per response"
    );
    let api = cookie_client()
        .get(app.url("/api/catalog/entities?limit=1"))
        .send()
        .await
        .expect("api");
    let api_csp = api.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        api_csp.contains("script-src 'self';") && !api_csp.contains("nonce-"),
        "an answer without scripts gets the fixed policy: {api_csp}"
    );
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn guest_sign_in_checks_origin_and_return_targets() {
    let app = app_with_guest("user:default/dev", "").await;
    let res = cookie_client()
        .post(app.url("/login/guest"))
        .header("Origin", "https://evil.example")
        .form(&[("returnTo", "/")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .expect("body")
        .contains("<h1>Not allowed</h1>"));
    let res = cookie_client()
        .post(app.url("/login/guest"))
        .header("Origin", app.base.clone())
        .form(&[("returnTo", "https://evil.example/")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(res.headers()),
        "/",
        "foreign targets fall back to home"
    );
    let (_, _, html) = page(&cookie_client(), app.url("/login?returnTo=//evil.example")).await;
    assert!(html.contains("name=\"returnTo\" value=\"/\""), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn profile_lists_sessions_and_signs_out_everywhere() {
    let app = app_with_guest("user:default/dev", "").await;
    let first = guest(&app).await;
    let second = guest(&app).await;
    let (status, _, html) = page(&first, app.url("/profile")).await;
    assert_eq!(status, 200);
    assert!(html.contains("user:default/dev"));
    assert_eq!(
        html.matches("<td>guest</td>").count(),
        2,
        "both sessions are listed"
    );
    assert!(html.contains("this session"));

    // A form without the session's token, or from another site, is refused.
    let token = csrf(&html);
    for (origin, csrf) in [
        (app.base.clone(), "wrong".to_string()),
        ("https://evil.example".to_string(), token.clone()),
    ] {
        let res = first
            .post(app.url("/profile/sign-out-everywhere"))
            .header("Origin", origin)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 403);
    }
    let res = first
        .post(app.url("/profile/sign-out-everywhere"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 303);
    for b in [&first, &second] {
        let (status, h, _) = page(b, app.url("/profile")).await;
        assert_eq!(status, 303, "every session has ended");
        assert!(location(&h).starts_with("/login?returnTo="));
    }
    app.stop().await;
}

#[tokio::test]
async fn sign_out_needs_the_session_token() {
    let app = app_with_guest("user:default/dev", "").await;
    let b = guest(&app).await;
    let (_, _, html) = page(&b, app.url("/profile")).await;
    let res = b
        .post(app.url("/logout"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    let res = b
        .post(app.url("/logout"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", csrf(&html).as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), format!("{}/", app.base));
    let (status, _, _) = page(&b, app.url("/profile")).await;
    assert_eq!(status, 303);
    app.stop().await;
}

#[tokio::test]
async fn admins_register_and_unregister_locations() {
    let fixture = HttpFixture::start().await;
    fixture.set_body(
        "/svc/catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: svc-a, title: Service <A>}\nspec: {type: service, lifecycle: production, owner: team-a}\n",
    );
    let extra = format!(
        "backend:\n  reading:\n    allow:\n      - host: '{}'\n",
        fixture.host()
    );
    let member = app_with_guest("user:default/dev", &extra).await;
    let b = guest(&member).await;
    let (status, _, html) = page(&b, member.url("/admin/locations")).await;
    assert_eq!(status, 403, "members do not see the admin page");
    assert!(html.contains("This page is for admins."));
    member.stop().await;

    let app = app_with_guest("user:default/admin", &extra).await;
    let b = guest(&app).await;
    let (status, _, html) = page(&b, app.url("/admin/locations")).await;
    assert_eq!(status, 200);
    let token = csrf(&html);
    let target = fixture.url("/svc/catalog-info.yaml");
    let res = b
        .post(app.url("/admin/locations/preview"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", token.as_str()), ("target", target.as_str())])
        .send()
        .await
        .expect("preview");
    assert_eq!(res.status(), 200);
    let preview = res.text().await.expect("body");
    assert!(preview.contains("component:default/svc-a"));
    assert!(
        preview.contains("Service &#60;A&#62;") || preview.contains("Service &lt;A&gt;"),
        "escaped"
    );
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/svc-a")
        .await;
    assert_eq!(status, 404, "a preview writes nothing");

    let res = b
        .post(app.url("/admin/locations"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", "forged"), ("target", target.as_str())])
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 403);
    let res = b
        .post(app.url("/admin/locations"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", token.as_str()), ("target", target.as_str())])
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(res.headers()),
        "/admin/locations",
        "no message in the URL"
    );
    let (_, _, html) = page(&b, app.url("/admin/locations")).await;
    assert!(
        html.contains("id=\"flash\">Registered"),
        "the message shows once"
    );
    let (_, _, html) = page(&b, app.url("/admin/locations")).await;
    assert!(!html.contains("id=\"flash\""), "and only once");
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/svc-a")
        .await;
    assert_eq!(status, 200);

    let (_, _, html) = page(&b, app.url("/admin/locations")).await;
    assert!(html.contains(&target));
    let action = html
        .split("action=\"")
        .filter_map(|s| s.split('"').next())
        .find(|a| a.ends_with("/unregister"))
        .expect("an unregister form")
        .to_string();
    let res = b
        .post(app.url(&action))
        .header("Origin", app.base.clone())
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("unregister");
    assert_eq!(res.status(), 303);
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/component/default/svc-a")
        .await;
    assert_eq!(status, 404, "its entities are gone");

    // Bad input gets a page with a clear message.
    let res = b
        .post(app.url("/admin/locations/preview"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", token.as_str()), ("target", "file:///etc/passwd")])
        .send()
        .await
        .expect("preview");
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .expect("body")
        .contains("Only http and https"));
    app.stop().await;
}

#[tokio::test]
async fn sessions_end_after_their_idle_and_absolute_limits() {
    use sea_orm::ConnectionTrait;
    let app = app_with_guest("user:default/dev", "").await;
    let conn = &app.server().catalog.db.conn;
    for column in ["last_seen_at", "expires_at"] {
        let b = guest(&app).await;
        let (status, _, _) = page(&b, app.url("/profile")).await;
        assert_eq!(status, 200);
        // Move the session's clock back past its limit, as time would.
        conn.execute_unprepared(&format!(
            "UPDATE auth_sessions SET {column} = {column} - 30 * 86400"
        ))
        .await
        .expect("age the session");
        let (status, h, _) = page(&b, app.url("/profile")).await;
        assert_eq!(status, 303, "{column}: the session has ended");
        assert!(location(&h).starts_with("/login"));
        let res = b
            .get(app.url("/api/auth/guest/refresh"))
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .expect("refresh");
        assert_eq!(res.status(), 200, "a new guest session starts");
    }
    app.stop().await;
}

#[tokio::test]
async fn under_https_cookies_are_host_only_and_secure_with_hsts() {
    let app = spawn(Spawn {
        config: "app: {baseUrl: 'https://portal.example'}\nbackend: {baseUrl: 'https://portal.example'}\nauth:\n  providers:\n    guest: {}\n".into(),
        ..Default::default()
    })
    .await;
    let res = cookie_client()
        .post(app.url("/login/guest"))
        .header("Origin", "https://portal.example")
        .form(&[("returnTo", "/")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(cookie.starts_with("__Host-stagedoor-session="), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr}: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "{cookie}");
    assert!(res.headers()["strict-transport-security"]
        .to_str()
        .expect("hsts")
        .starts_with("max-age="));
    app.stop().await;
}
