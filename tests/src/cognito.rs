//! Cognito user pools synced into the catalog: the real AWS SDK on both sides
//! (the test setting up pools, the server reading them) against moto.

use std::time::Duration;

use aws_sdk_cognitoidentityprovider as cognito_idp;
use cognito_idp::types::{AttributeType, UsernameAttributeType};
use serde_json::{json, Value};
use stagedoor::catalog::CatalogError;
use stagedoor::integrations::cognito::{ANNOTATION_SUB, ANNOTATION_USERNAME, ANNOTATION_USER_POOL};
use stagedoor_tests::moto::{Moto, REGION};
use stagedoor_tests::{cookie_client, spawn, HttpFixture, Route, Spawn, TestApp};

const MANAGED_BY: &str = "backstage.io/managed-by-location";
const ORIGIN: &str = "backstage.io/managed-by-origin-location";

/// A user pool in moto, driven through the SDK as an administrator would.
struct Pool {
    client: cognito_idp::Client,
    id: String,
}

impl Pool {
    async fn create(moto: &Moto, email_usernames: bool) -> Pool {
        let client = moto.cognito();
        let mut req = client.create_user_pool().pool_name("people");
        if email_usernames {
            req = req.username_attributes(UsernameAttributeType::Email);
        }
        let id = req
            .send()
            .await
            .expect("create pool")
            .user_pool
            .and_then(|p| p.id)
            .expect("pool id");
        Pool { client, id }
    }

    /// Creates a user and returns its username as the pool reports it.
    async fn add_user(&self, username: &str, attributes: &[(&str, &str)]) -> String {
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.id)
            .username(username);
        for (name, value) in attributes {
            req = req.user_attributes(
                AttributeType::builder()
                    .name(*name)
                    .value(*value)
                    .build()
                    .expect("attribute"),
            );
        }
        let user = req.send().await.expect("create user").user.expect("user");
        user.username.expect("username")
    }

    async fn sub(&self, username: &str) -> String {
        let user = self
            .client
            .admin_get_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .expect("get user");
        user.user_attributes()
            .iter()
            .find(|a| a.name() == "sub")
            .and_then(|a| a.value())
            .expect("sub")
            .to_string()
    }

    async fn add_group(&self, name: &str, description: &str) {
        self.client
            .create_group()
            .user_pool_id(&self.id)
            .group_name(name)
            .description(description)
            .send()
            .await
            .expect("create group");
    }

    async fn delete_group(&self, name: &str) {
        self.client
            .delete_group()
            .user_pool_id(&self.id)
            .group_name(name)
            .send()
            .await
            .expect("delete group");
    }

    async fn join(&self, username: &str, group: &str) {
        self.client
            .admin_add_user_to_group()
            .user_pool_id(&self.id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .expect("add to group");
    }

    async fn leave(&self, username: &str, group: &str) {
        self.client
            .admin_remove_user_from_group()
            .user_pool_id(&self.id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .expect("remove from group");
    }

    async fn disable(&self, username: &str) {
        self.client
            .admin_disable_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .expect("disable user");
    }

    async fn delete_user(&self, username: &str) {
        self.client
            .admin_delete_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .expect("delete user");
    }
}

/// `catalog.providers.cognito.main` for a pool behind `endpoint`.
fn provider_config(pool_id: &str, endpoint: &str, timeout: &str) -> String {
    format!(
        "catalog:\n  providers:\n    cognito:\n      main:\n        region: {REGION}\n        userPoolId: {pool_id}\n        endpoint: '{endpoint}'\n        schedule:\n          frequency: {{hours: 1}}\n          timeout: {timeout}\n"
    )
}

/// A server without `catalog.rules`: they govern locations, not entity providers.
async fn spawn_for(pool_id: &str, endpoint: &str, timeout: &str) -> TestApp {
    spawn(Spawn {
        config: provider_config(pool_id, endpoint, timeout),
        no_rules: true,
        ..Default::default()
    })
    .await
}

/// An entity by kind and name in the default namespace, or None on 404.
async fn entity(app: &TestApp, kind: &str, name: &str) -> Option<Value> {
    let (status, body) = app
        .get_json(&format!(
            "/api/catalog/entities/by-name/{kind}/default/{name}"
        ))
        .await;
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("GET {kind}:{name}: {other} {body}"),
    }
}

async fn must(app: &TestApp, kind: &str, name: &str) -> Value {
    entity(app, kind, name)
        .await
        .unwrap_or_else(|| panic!("{kind}:default/{name} is not served"))
}

/// The targets of an entity's relations of one type, sorted.
fn related(entity: &Value, kind: &str) -> Vec<String> {
    let mut targets: Vec<String> = entity["relations"]
        .as_array()
        .expect("relations")
        .iter()
        .filter(|r| r["type"] == kind)
        .map(|r| r["targetRef"].as_str().expect("targetRef").to_string())
        .collect();
    targets.sort();
    targets
}

/// The names of every entity of a kind that the catalog serves.
async fn names_of(app: &TestApp, kind: &str) -> Vec<String> {
    let (status, body) = app
        .get_json(&format!("/api/catalog/entities?filter=kind={kind}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = body
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| e["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

/// The provider's row in `GET /locations`.
async fn provider_location(app: &TestApp) -> Value {
    let (status, list) = app.get_json("/api/catalog/locations").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("locations")
        .iter()
        .map(|l| l["data"].clone())
        .find(|l| l["type"] == "cognito" && l["target"] == "main")
        .unwrap_or_else(|| panic!("no cognito location in {list}"))
}

#[tokio::test]
async fn cognito_pool_syncs_into_the_catalog_and_follows_it() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let pool = Pool::create(&moto, false).await;
    pool.add_user(
        "alice",
        &[("email", "alice@example.com"), ("name", "Alice Liddell")],
    )
    .await;
    pool.add_user(
        "Bob.Smith",
        &[
            ("email", "bob@example.com"),
            ("given_name", "Bob"),
            ("family_name", "Smith"),
        ],
    )
    .await;
    // Pools that sign in with email have opaque UUID usernames.
    let carol = "7d0f7f43-3c9a-4b43-9f0e-2a1e8e1c0b5d";
    pool.add_user(carol, &[("email", "carol@example.com")])
        .await;
    pool.add_user("dave", &[("email", "dave@example.com")])
        .await;
    pool.add_user("erin", &[]).await;
    pool.add_group("Platform Team", "Runs the platform").await;
    pool.add_group("admins", "Administrators").await;
    for u in ["alice", "Bob.Smith", "dave"] {
        pool.join(u, "Platform Team").await;
    }
    for u in ["alice", carol] {
        pool.join(u, "admins").await;
    }

    let app = spawn_for(&pool.id, &moto.endpoint, "{minutes: 1}").await;
    // A new provider's location is due at once: the scheduled path syncs it.
    app.process_due().await;

    assert_eq!(
        names_of(&app, "user").await,
        ["alice", "bob.smith", "carol", "dave", "erin"]
    );
    assert_eq!(names_of(&app, "group").await, ["admins", "platform-team"]);

    let alice = must(&app, "user", "alice").await;
    let annotations = &alice["metadata"]["annotations"];
    assert_eq!(annotations[ANNOTATION_USER_POOL], pool.id.as_str());
    assert_eq!(
        annotations[ANNOTATION_SUB],
        pool.sub("alice").await.as_str()
    );
    assert_eq!(annotations[ANNOTATION_USERNAME], "alice");
    assert_eq!(annotations[MANAGED_BY], "cognito:main");
    assert_eq!(annotations[ORIGIN], "cognito:main");
    assert_eq!(
        alice["spec"]["profile"],
        json!({"displayName": "Alice Liddell", "email": "alice@example.com"})
    );
    assert_eq!(
        alice["spec"]["memberOf"],
        json!(["admins", "platform-team"])
    );
    assert_eq!(
        related(&alice, "memberOf"),
        ["group:default/admins", "group:default/platform-team"]
    );
    assert!(alice["metadata"]["uid"].is_string());

    let bob = must(&app, "user", "bob.smith").await;
    assert_eq!(bob["spec"]["profile"]["displayName"], "Bob Smith");
    let carol_entity = must(&app, "user", "carol").await;
    assert_eq!(
        carol_entity["metadata"]["annotations"][ANNOTATION_USERNAME],
        carol
    );
    assert_eq!(
        carol_entity["spec"]["profile"]["displayName"],
        "carol@example.com"
    );

    let team = must(&app, "group", "platform-team").await;
    assert_eq!(team["spec"]["type"], "team");
    assert_eq!(team["spec"]["children"], json!([]));
    assert_eq!(team["spec"]["profile"]["displayName"], "Platform Team");
    assert_eq!(team["metadata"]["description"], "Runs the platform");
    assert_eq!(
        team["spec"]["members"],
        json!(["alice", "bob.smith", "dave"])
    );
    assert_eq!(
        related(&team, "hasMember"),
        [
            "user:default/alice",
            "user:default/bob.smith",
            "user:default/dave"
        ]
    );

    // The schedule's frequency, not catalog.processingInterval, sets the next run.
    let location = provider_location(&app).await;
    assert!(location.get("errors").is_none(), "{location}");
    let id = location["id"].as_str().expect("location id");
    let row = stagedoor::catalog::store::location_by_id(&app.server().catalog.db.conn, id)
        .await
        .expect("location row")
        .expect("location exists");
    let gap = row.next_refresh_at - row.last_refreshed_at.expect("refreshed");
    assert!(
        (3_600_000..3_610_000).contains(&gap),
        "next run in {gap} ms"
    );
    assert_eq!(
        app.server().catalog.refresh_due().await.expect("refresh"),
        0
    );

    // The pool changes: a user disabled, one deleted, one new, a membership
    // removed and a group renamed (Cognito renames by delete and create).
    pool.disable("dave").await;
    pool.delete_user("erin").await;
    pool.add_user("frank", &[("email", "frank@example.com")])
        .await;
    pool.join("frank", "admins").await;
    pool.leave("alice", "admins").await;
    pool.delete_group("Platform Team").await;
    pool.add_group("Platform Engineering", "Runs the platform")
        .await;
    for u in ["alice", "Bob.Smith"] {
        pool.join(u, "Platform Engineering").await;
    }

    let summary = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect("sync");
    assert_eq!((summary.users, summary.groups), (4, 2), "{summary:?}");
    assert_eq!(summary.entities, 6);
    assert_eq!(summary.provider, "cognito:main");
    assert_eq!(summary.location_id, id);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);

    assert_eq!(
        names_of(&app, "user").await,
        ["alice", "bob.smith", "carol", "frank"]
    );
    assert_eq!(
        names_of(&app, "group").await,
        ["admins", "platform-engineering"]
    );
    let alice_after = must(&app, "user", "alice").await;
    assert_eq!(
        alice_after["metadata"]["uid"], alice["metadata"]["uid"],
        "an entity that stays keeps its uid"
    );
    assert_eq!(
        related(&alice_after, "memberOf"),
        ["group:default/platform-engineering"]
    );
    let admins = must(&app, "group", "admins").await;
    assert_eq!(admins["spec"]["members"], json!(["carol", "frank"]));
    assert_eq!(
        related(&admins, "hasMember"),
        ["user:default/carol", "user:default/frank"]
    );
    let engineering = must(&app, "group", "platform-engineering").await;
    assert_eq!(
        related(&engineering, "hasMember"),
        ["user:default/alice", "user:default/bob.smith"]
    );

    app.stop().await;
}

#[tokio::test]
async fn cognito_sync_failure_keeps_the_last_good_entities() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let pool = Pool::create(&moto, true).await;
    // An email pool: the username is the sub, the name comes from the email.
    let username = pool
        .add_user("grace@example.com", &[("email", "grace@example.com")])
        .await;
    pool.add_group("ops", "Operations").await;
    pool.join(&username, "ops").await;
    let app = spawn_for(&pool.id, &moto.endpoint, "{seconds: 30}").await;
    let summary = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect("sync");
    assert_eq!((summary.users, summary.groups), (1, 1));
    let grace = must(&app, "user", "grace").await;
    assert_eq!(
        grace["metadata"]["annotations"][ANNOTATION_SUB],
        pool.sub(&username).await.as_str()
    );

    // The directory goes away.
    drop(moto);
    let err = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect_err("the pool is unreachable");
    assert!(
        matches!(&err, CatalogError::Unavailable(m) if m.contains("ListUsers")),
        "{err:?}"
    );
    assert_eq!(must(&app, "user", "grace").await, grace);
    assert!(entity(&app, "group", "ops").await.is_some());
    let location = provider_location(&app).await;
    let errors = location["errors"]
        .as_array()
        .expect("errors on the location");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("ListUsers"))),
        "{location}"
    );
    // The scheduled path records the same failure and keeps the entities too.
    app.refresh_all().await;
    assert_eq!(must(&app, "user", "grace").await, grace);
    assert!(provider_location(&app).await["errors"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn cognito_service_errors_name_their_cause() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let app = spawn_for("us-east-1_NoSuchPool", &moto.endpoint, "{minutes: 1}").await;
    let err = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect_err("the pool does not exist");
    let CatalogError::Unavailable(message) = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("ListUsers on user pool us-east-1_NoSuchPool failed")
            && message.contains("ResourceNotFoundException"),
        "{message}"
    );
    let location = provider_location(&app).await;
    assert_eq!(location["errors"], json!([message]));
    app.stop().await;
}

#[tokio::test]
async fn cognito_sync_stops_at_the_schedule_timeout() {
    // A "Cognito" that accepts the request and never answers.
    let fx = HttpFixture::start().await;
    fx.set("/", Route::Hang);
    let app = spawn_for("us-east-1_hanging", &fx.url(""), "{seconds: 1}").await;
    let started = std::time::Instant::now();
    let err = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect_err("the read times out");
    assert!(
        matches!(&err, CatalogError::Unavailable(m) if m.contains("timeout")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(provider_location(&app).await["errors"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn cognito_sync_reads_every_page() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let pool = Pool::create(&moto, false).await;
    pool.add_group("everyone", "All of them").await;
    // More than two pages of users (60 a page) and of one group's members.
    for i in 0..130 {
        let username = format!("user{i:03}");
        pool.add_user(&username, &[]).await;
        if i % 2 == 0 {
            pool.join(&username, "everyone").await;
        }
    }
    let app = spawn_for(&pool.id, &moto.endpoint, "{minutes: 1}").await;
    let summary = app
        .server()
        .catalog
        .sync_provider("cognito", "main")
        .await
        .expect("sync");
    assert_eq!((summary.users, summary.groups), (130, 1));
    let everyone = must(&app, "group", "everyone").await;
    assert_eq!(
        everyone["spec"]["members"].as_array().map(Vec::len),
        Some(65)
    );
    assert_eq!(related(&everyone, "hasMember").len(), 65);
    app.stop().await;
}

#[tokio::test]
async fn cognito_provider_removed_from_config_leaves_with_its_entities() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let pool = Pool::create(&moto, false).await;
    pool.add_user("heidi", &[]).await;
    let mut app = spawn_for(&pool.id, &moto.endpoint, "{minutes: 1}").await;
    app.process_due().await;
    assert!(entity(&app, "user", "heidi").await.is_some());
    // Unknown provider ids are a NotFound for the caller.
    let err = app
        .server()
        .catalog
        .sync_provider("cognito", "other")
        .await
        .expect_err("not configured");
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");

    app.restart_with("").await;
    assert!(entity(&app, "user", "heidi").await.is_none());
    let (_, list) = app.get_json("/api/catalog/locations").await;
    assert_eq!(list, json!([]));
    let (_, all) = app.get_json("/api/catalog/entities").await;
    assert_eq!(all, json!([]));
    app.stop().await;
}

/// Admins sync a pool on demand from the locations page.
#[tokio::test]
async fn cognito_sync_runs_on_demand_from_the_admin_page() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let pool = Pool::create(&moto, false).await;
    pool.add_user("alice", &[("email", "alice@example.com")])
        .await;
    let config = format!(
        "{}auth:\n  providers:\n    guest: {{userEntityRef: 'user:default/ops'}}\nstagedoor:\n  admins: {{groups: ['user:default/ops']}}\n",
        provider_config(&pool.id, &moto.endpoint, "{minutes: 1}")
    );
    let app = spawn(Spawn {
        config,
        no_rules: true,
        ..Default::default()
    })
    .await;
    let browser = cookie_client();
    let res = browser
        .post(app.url("/login/guest"))
        .header("Origin", app.base.clone())
        .form(&[("returnTo", "/admin/locations")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303);
    let html = browser
        .get(app.url("/admin/locations"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("action=\"/admin/providers/cognito/main/sync\""),
        "{html}"
    );
    let at = html.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = html[at..].split('"').next().expect("value").to_string();

    assert!(
        entity(&app, "user", "alice").await.is_none(),
        "not synced yet"
    );
    let res = browser
        .post(app.url("/admin/providers/cognito/main/sync"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sync");
    assert_eq!(res.status(), 303);
    let notice = res.headers()["set-cookie"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        notice.contains("1%20users") || notice.contains("1+users"),
        "{notice}"
    );
    must(&app, "user", "alice").await;

    let res = browser
        .post(app.url("/admin/providers/cognito/nope/sync"))
        .header("Origin", app.base.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sync");
    assert_eq!(res.status(), 404);
    app.stop().await;
}
