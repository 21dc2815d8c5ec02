//! Health, the zero-state API, graceful shutdown and replicas migrating together.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stagedoor::config::DatabaseConfig;
use stagedoor::db::Db;
use stagedoor_tests::{poll_until, spawn_app, HttpFixture, Route, ALL_KINDS_RULE};

#[tokio::test]
async fn health_and_empty_catalog() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/.backstage/health/v1/readiness").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let (status, body) = app.get_json("/api/catalog/entities").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!([]));
    app.stop().await;
}

/// SIGTERM stops accepting connections, lets the request in flight finish, and exits 0.
#[tokio::test]
async fn sigterm_finishes_requests_in_flight() {
    let fx = HttpFixture::start().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let entity = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: in-flight\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n";
    fx.set(
        "/catalog-info.yaml",
        Route::Gated(gate.clone(), Arc::new(entity.as_bytes().to_vec())),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("app-config.yaml");
    std::fs::write(
        &config,
        format!(
            "backend:\n  listen: {{host: 127.0.0.1, port: {port}}}\n  database:\n    client: better-sqlite3\n    connection: ./db.sqlite\n  reading:\n    allow:\n      - host: '{}'\ncatalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n",
            fx.host()
        ),
    )
    .expect("write config");
    let mut child = Command::new(crate::cli::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stagedoor");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = format!("{base}/.backstage/health/v1/readiness");
    poll_until("the server is ready", Duration::from_secs(30), || async {
        match client.get(&ready).send().await {
            Ok(r) if r.status() == 200 => Some(()),
            _ => None,
        }
    })
    .await;

    // A registration that waits on the gated file is in flight...
    let register = {
        let client = client.clone();
        let url = format!("{base}/api/catalog/locations");
        let body = json!({"type": "url", "target": fx.url("/catalog-info.yaml")});
        tokio::spawn(async move { client.post(url).json(&body).send().await })
    };
    poll_until(
        "the registration reaches the file",
        Duration::from_secs(30),
        || async { (fx.hits("/catalog-info.yaml") > 0).then_some(()) },
    )
    .await;

    // ...when SIGTERM arrives.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // New connections are refused once the listener closes.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    poll_until("the listener closes", Duration::from_secs(30), || async {
        fresh.get(&ready).send().await.is_err().then_some(())
    })
    .await;

    // The request in flight still completes, and completely.
    gate.notify_one();
    let response = register
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    let names: Vec<&str> = body["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"in-flight"), "{body}");

    // Idle keep-alive connections would hold the shutdown until its timeout.
    drop(client);
    drop(fresh);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}

/// Replicas starting together on one PostgreSQL database migrate it once, safely.
#[tokio::test]
async fn replicas_migrate_postgres_together() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "replicas_migrate_postgres_together runs on the PostgreSQL pass (TEST_DATABASE_URL)"
        );
        return;
    };
    let name = format!("stagedoor_test_{}", uuid::Uuid::new_v4().simple());
    stagedoor_tests::create_database(&admin, &name).await;
    let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let config = DatabaseConfig::Postgres {
        url: url.to_string().into(),
    };
    let replicas = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move {
            let db = Db::connect(&config, 2).await?;
            db.migrate_up().await?;
            db.check_schema().await?;
            db.migration_status().await
        })
    });
    let mut statuses = Vec::new();
    for r in replicas.collect::<Vec<_>>() {
        statuses.push(r.await.expect("join").expect("every replica migrates"));
    }
    for status in &statuses {
        assert!(!status.is_empty());
        assert!(status.iter().all(|(_, applied)| *applied), "{status:?}");
        assert_eq!(status, &statuses[0]);
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url.as_str())
        .await
        .expect("connect");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM seaql_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(
        rows as usize,
        statuses[0].len(),
        "each migration is recorded once"
    );
    drop(conn);
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}
