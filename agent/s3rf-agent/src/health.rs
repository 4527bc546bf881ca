//! The HTTP endpoint for operators: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (connected to NATS, streams set up).
//! Off unless `[metrics] listen` is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What `/readyz` looks at.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// Set once streams and consumers exist.
    pub set_up: Arc<AtomicBool>,
}

impl Readiness {
    fn ready(&self) -> bool {
        self.set_up.load(Ordering::Relaxed)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Option<PrometheusHandle>,
    readiness: Readiness,
}

async fn metrics(State(s): State<AppState>) -> (StatusCode, String) {
    match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n".to_owned(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.readiness.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NATS not connected or streams not set up\n",
        )
    }
}

/// Serves until `stop`. A listen error is logged, not fatal: copying goes on.
pub async fn serve(
    listen: SocketAddr,
    metrics_handle: Option<PrometheusHandle>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics: metrics_handle,
            readiness,
        });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%listen, error = %e, "cannot listen for /metrics; check [metrics] listen");
            return;
        }
    };
    info!(listen = %listener.local_addr().unwrap_or(listen), "serving /metrics, /healthz and /readyz");
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}
