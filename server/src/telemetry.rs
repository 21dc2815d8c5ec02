//! Logs and metrics.
//!
//! Logs are pretty on a terminal and JSON otherwise (`STAGEDOOR_LOG_FORMAT`
//! overrides); `RUST_LOG` filters. Metrics are Prometheus text at `/metrics`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Starts logging once per process; later calls do nothing.
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("STAGEDOOR_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok(_) => false,
        Err(_) => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub entities: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub processing_errors: IntCounter,
    pub locations_with_errors: IntGauge,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let entities = IntGaugeVec::new(
            Opts::new("catalog_entities", "Entities in the catalog by kind"),
            &["kind"],
        )?;
        let queue_depth = IntGauge::new(
            "catalog_processing_queue_depth",
            "Locations due for processing",
        )?;
        let processing_errors = IntCounter::new(
            "catalog_processing_errors_total",
            "Errors found while processing locations",
        )?;
        let locations_with_errors = IntGauge::new(
            "catalog_locations_with_errors",
            "Locations whose last processing reported errors",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(entities.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(processing_errors.clone()))?;
        registry.register(Box::new(locations_with_errors.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            entities,
            queue_depth,
            processing_errors,
            locations_with_errors,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Middleware body: counts each request by its route pattern, not its path.
pub async fn record(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let metrics = req.app_data::<actix_web::web::Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let status = res.status().as_u16().to_string();
        m.requests
            .with_label_values(&[&method, &route, &status])
            .inc();
        m.latency
            .with_label_values(&[&method, &route])
            .observe(start.elapsed().as_secs_f64());
    }
    Ok(res)
}
