//! Builds the application once — database, catalog, background loops — and
//! mounts every router. `start` is what `stagedoor serve` and the tests run.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::auth::AuthService;
use crate::catalog::service::CatalogService;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::scaffolder::ScaffolderService;
use crate::telemetry::Metrics;

/// The demo catalog that the zero-config server serves.
const DEMO_FILES: &[(&str, &str)] = &[
    ("all.yaml", include_str!("../demo/catalog/all.yaml")),
    ("org.yaml", include_str!("../demo/catalog/org.yaml")),
    ("systems.yaml", include_str!("../demo/catalog/systems.yaml")),
    (
        "components.yaml",
        include_str!("../demo/catalog/components.yaml"),
    ),
    ("apis.yaml", include_str!("../demo/catalog/apis.yaml")),
    (
        "resources.yaml",
        include_str!("../demo/catalog/resources.yaml"),
    ),
    ("ai.yaml", include_str!("../demo/catalog/ai.yaml")),
    (
        "templates/service/template.yaml",
        include_str!("../demo/catalog/templates/service/template.yaml"),
    ),
    (
        "templates/service/skeleton/catalog-info.yaml",
        include_str!("../demo/catalog/templates/service/skeleton/catalog-info.yaml"),
    ),
    (
        "templates/service/skeleton/README.md",
        include_str!("../demo/catalog/templates/service/skeleton/README.md"),
    ),
    (
        "templates/service/skeleton/src/main.txt",
        include_str!("../demo/catalog/templates/service/skeleton/src/main.txt"),
    ),
    (
        "templates/service/skeleton/run.sh",
        include_str!("../demo/catalog/templates/service/skeleton/run.sh"),
    ),
];

/// A server that is up and listening.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub catalog: Arc<CatalogService>,
    handle: ServerHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking connections, finishes requests in flight, then stops the loops.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.finish().await;
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            handle.stop(true).await;
        });
        self.finish().await;
        Ok(())
    }

    async fn finish(mut self) {
        let _ = (&mut self.server).await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes the shipped demo catalog where the demo location points.
fn extract_demo(config: &Config) -> anyhow::Result<()> {
    let dir = config.data_dir.join("demo-catalog");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for (name, content) in DEMO_FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        #[cfg(unix)]
        if name.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// What runs besides the HTTP server.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Process due locations in the background. Tests turn it off to drive processing themselves.
    pub refresh_loop: bool,
    /// Credentials for AWS clients. None, as in production, takes them from
    /// AWS's standard chain (environment, profile, web identity, instance role).
    pub aws_credentials: Option<aws_sdk_cognitoidentityprovider::config::SharedCredentialsProvider>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            refresh_loop: true,
            aws_credentials: None,
        }
    }
}

/// Builds everything and starts listening.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with(config, StartOptions::default()).await
}

/// `start`, with options.
pub async fn start_with(
    mut config: Config,
    options: StartOptions,
) -> anyhow::Result<RunningServer> {
    // Bound first, so that a base URL on port 0 (the port is picked by the
    // system) names the real port before anything builds URLs from it.
    let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    let bound = listener.local_addr()?;
    config.base_url = with_real_port(&config.base_url, bound.port());
    config.app_base_url = with_real_port(&config.app_base_url, bound.port());
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.demo {
        extract_demo(&config)?;
        tracing::info!(
            "no configuration given: serving the demo catalog on SQLite under {}",
            config.data_dir.display()
        );
    }
    let db = Db::connect(&config.database, config.pool_size).await?;
    db.migrate_up().await?;
    db.check_schema().await?;

    let providers = crate::integrations::entity_providers(&config, options.aws_credentials).await;
    let catalog = Arc::new(CatalogService::new(db.clone(), &config, providers).await?);
    catalog.feed.load_all().await?;
    catalog.sync_config_locations().await?;

    let auth = Arc::new(AuthService::new(db.clone(), catalog.clone(), &config).await?);
    let scaffolder = Arc::new(ScaffolderService::new(
        db.clone(),
        catalog.clone(),
        &config,
    )?);
    if !auth.required() {
        tracing::warn!(
            "no backend.auth.externalAccess configured: the catalog API is open to anyone who can reach it"
        );
    }
    let metrics = Metrics::new()?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(
        catalog.feed.clone().follow(shutdown_rx.clone()),
    )];
    if options.refresh_loop {
        tasks.push(tokio::spawn(
            catalog.clone().run_refresh_loop(shutdown_rx.clone()),
        ));
    }

    let data = web::Data::from(catalog.clone());
    let metrics_data = web::Data::new(metrics);
    tasks.push(tokio::spawn(auth.clone().maintain(shutdown_rx.clone())));
    tasks.push(tokio::spawn(
        scaffolder.clone().run_workers(shutdown_rx.clone()),
    ));
    let scaffolder_data = web::Data::from(scaffolder);
    let auth_data = web::Data::from(auth);
    let db_data = web::Data::new(db);
    let title_data = web::Data::new(crate::web::AppTitle(config.app_title.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(metrics_data.clone())
            .app_data(auth_data.clone())
            .app_data(scaffolder_data.clone())
            .app_data(db_data.clone())
            .app_data(title_data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(2 * 1024 * 1024)
                    .error_handler(|err, _| json_error(err).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|err, _| ApiError::input(format!("Invalid path: {err}")).into()),
            )
            .app_data(
                web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::input(format!("Invalid query: {err}")).into()
                }),
            )
            .wrap(from_fn(crate::auth::guard::gate))
            .wrap(from_fn(crate::error::render_errors))
            .wrap(from_fn(crate::telemetry::record))
            .route("/.backstage/health/v1/readiness", web::get().to(readiness))
            .route("/.backstage/health/v1/liveness", web::get().to(liveness))
            .route("/metrics", web::get().to(metrics_text))
            .configure(crate::catalog::api::routes)
            .configure(crate::auth::api::routes)
            .configure(crate::scaffolder::api::routes)
            .configure(crate::web::routes)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)
    .map_err(|e| anyhow::anyhow!("cannot listen on {bound}: {e}"))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("the server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    tracing::info!(address = %addr, "stagedoor is listening");
    Ok(RunningServer {
        addr,
        catalog,
        handle,
        shutdown,
        server,
        tasks,
    })
}

/// `http://host:0` becomes `http://host:<port>`; other URLs are left alone.
fn with_real_port(base: &str, port: u16) -> String {
    match url::Url::parse(base) {
        Ok(mut u) if u.port() == Some(0) => {
            let _ = u.set_port(Some(port));
            u.as_str().trim_end_matches('/').to_string()
        }
        _ => base.to_string(),
    }
}

fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            crate::error::ErrorKind::PayloadTooLarge,
            format!("Request body is larger than {limit} bytes"),
        ),
        E::ContentType => {
            ApiError::input("Expected a JSON body with Content-Type: application/json")
        }
        E::Deserialize(e) => ApiError::input(format!("Invalid request body: {e}")),
        other => ApiError::input(format!("Invalid request body: {other}")),
    }
}

async fn readiness(db: web::Data<Db>) -> HttpResponse {
    match db.conn.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "error",
                "message": "database unreachable"
            }))
        }
    }
}

async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn metrics_text(
    metrics: web::Data<Metrics>,
    catalog: web::Data<CatalogService>,
) -> HttpResponse {
    let counts = catalog.index.read().kind_counts();
    metrics.entities.reset();
    for (kind, n) in counts {
        metrics
            .entities
            .with_label_values(&[&kind.to_lowercase()])
            .set(n as i64);
    }
    metrics.queue_depth.set(catalog.queue_depth().await as i64);
    let errors = catalog
        .stats
        .processing_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    let counted = metrics.processing_errors.get();
    if errors > counted {
        metrics.processing_errors.inc_by(errors - counted);
    }
    if let Ok(n) = crate::catalog::store::errored_location_count(&catalog.db.conn).await {
        metrics.locations_with_errors.set(n as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}
