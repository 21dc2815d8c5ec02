//! Health, metrics and the zero-state API.

use stagedoor_tests::spawn_app;

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
