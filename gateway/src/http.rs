//! The HTTP side: `GET /metrics` (Prometheus text), `/healthz` (the process is up) and
//! `/readyz` (the Kafka listener accepts clients and flushes are not stalled).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::partition::flush_queue::UnflushedAge;

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// What `/readyz` answers.
pub struct Readiness {
    accepting: AtomicBool,
    unflushed: Arc<UnflushedAge>,
    /// Beyond this age of the oldest unflushed byte, flushes count as stalled (a hung or
    /// unreachable store or coordinator): produce requests would only wait.
    flush_stall_timeout: Duration,
}

impl Readiness {
    pub fn new(unflushed: Arc<UnflushedAge>, flush_stall_timeout: Duration) -> Self {
        Self {
            accepting: AtomicBool::new(false),
            unflushed,
            flush_stall_timeout,
        }
    }

    /// Whether the Kafka listener accepts clients (from start-up until shutdown begins).
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Release);
    }

    /// Ok when ready; else why not.
    pub fn check(&self) -> Result<(), String> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err("not accepting clients (starting or shutting down)".to_string());
        }
        let waited = self.unflushed.age();
        if waited > self.flush_stall_timeout {
            return Err(format!(
                "flushes are stalled: the oldest unflushed byte has waited {:.1} s \
                 (flush.stall.timeout.ms {})",
                waited.as_secs_f64(),
                self.flush_stall_timeout.as_millis()
            ));
        }
        Ok(())
    }
}

pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState { metrics, readiness });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|&stop| stop).await;
        })
        .await
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stalled_flushes_make_the_broker_not_ready_until_they_resume() {
        let unflushed = Arc::new(UnflushedAge::default());
        let readiness = Readiness::new(unflushed.clone(), Duration::from_secs(60));
        assert!(readiness.check().is_err(), "not ready before it accepts");
        readiness.set_accepting(true);
        assert_eq!(readiness.check(), Ok(()));

        unflushed.appended();
        let flush = unflushed.sealed();
        tokio::time::advance(Duration::from_secs(61)).await;
        let why = readiness.check().unwrap_err();
        assert!(why.contains("stalled") && why.contains("61.0 s"), "{why}");

        unflushed.flushed(flush);
        assert_eq!(readiness.check(), Ok(()));
    }
}
