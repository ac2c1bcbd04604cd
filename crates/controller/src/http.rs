//! The operator's small HTTP server: `/metrics` for Prometheus, `/healthz` and `/readyz` for
//! the kubelet's probes. Plain HTTP/1 only: it is scraped inside the cluster.

use std::{
    collections::BTreeSet,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Content type of the OpenMetrics text exposition format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Default)]
struct Kinds {
    // `None` until the controllers are started: a server that comes up before them must
    // not report ready with an empty list.
    expected: Option<Vec<&'static str>>,
    synced: BTreeSet<&'static str>,
}

/// Whether the operator can do its work: every controller's caches are synced. The stores'
/// health is not part of it: one store that is down degrades only its own objects (their
/// conditions and the store's say so), and restarting or unlisting the operator would not
/// bring it back.
#[derive(Debug, Default)]
pub struct Readiness {
    kinds: Mutex<Kinds>,
}

impl Readiness {
    /// Readiness that waits for [`Readiness::expect`] and then for each controller's caches.
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    /// Sets which controllers (by kind) must have synced caches before the operator is ready.
    pub fn expect(&self, kinds: &[&'static str]) {
        self.lock_kinds().expected = Some(kinds.to_vec());
    }

    /// Marks the controller of `kind` as having synced its caches.
    pub fn set_synced(&self, kind: &'static str) {
        self.lock_kinds().synced.insert(kind);
    }

    /// `Ok` when every expected controller is synced; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        let kinds = self.lock_kinds();
        let Some(expected) = &kinds.expected else {
            return Err("controllers not started".into());
        };
        let missing: Vec<&str> = expected.iter().copied().filter(|k| !kinds.synced.contains(k)).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("caches not synced: {}", missing.join(", "))) }
    }

    fn lock_kinds(&self) -> std::sync::MutexGuard<'_, Kinds> {
        // The guarded data is a set of flags that no panic can leave half-written.
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The routes of the server, for embedding or testing without a socket.
pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .fallback(not_found)
        .with_state(AppState { metrics, readiness })
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.metrics.encode()).into_response()
}

async fn healthz_handler() -> Response {
    // Liveness only says the process serves requests: restarting the operator because the
    // store is down would not bring the store back.
    json(StatusCode::OK, serde_json::json!({ "status": "healthy" }))
}

async fn readyz_handler(State(state): State<AppState>) -> Response {
    match state.readiness.check() {
        Ok(()) => json(StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Err(reason) => {
            json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "not ready", "reason": reason }))
        }
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

/// Binds the server's socket; with port 0 the returned address has the port the system chose.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("cannot bind the metrics and probe server to {addr}"))?;
    let local = listener.local_addr().with_context(|| format!("cannot read the address bound for {addr}"))?;
    Ok((listener, local))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes,
/// then finishes the requests in flight.
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics and probe server failed")
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (listener, local) = bind(addr).await?;
    tracing::info!(%local, "serving /metrics, /healthz and /readyz");
    serve_on(listener, metrics, readiness, shutdown).await
}

#[cfg(test)]
mod tests {
    use tokio::{sync::oneshot, task::JoinHandle};

    use super::*;

    struct Server {
        base: String,
        stop: oneshot::Sender<()>,
        task: JoinHandle<anyhow::Result<()>>,
    }

    async fn start(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Server {
        let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, metrics, readiness, async move {
            let _ = stopped.await;
        }));
        Server { base: format!("http://{addr}"), stop, task }
    }

    async fn get(base: &str, path: &str) -> (u16, String, String) {
        let resp = reqwest::get(format!("{base}{path}")).await.expect("request");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii content type").to_string())
            .unwrap_or_default();
        (status, ctype, resp.text().await.expect("body"))
    }

    #[tokio::test]
    async fn endpoints() {
        let metrics = Metrics::new();
        metrics.status_write("S3Bucket");
        let readiness = Readiness::new();
        readiness.expect(&["S3Bucket", "S3User"]);
        let server = start(readiness.clone(), metrics).await;
        let base = server.base.as_str();

        let (status, ctype, body) = get(base, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ctype, OPENMETRICS_CONTENT_TYPE);
        assert!(body.contains("s3op_status_writes_total{kind=\"S3Bucket\"} 1"), "{body}");
        assert!(body.ends_with("# EOF\n"));

        assert_eq!(get(base, "/healthz").await, (200, "application/json".into(), r#"{"status":"healthy"}"#.into()));

        let (status, ctype, body) = get(base, "/readyz").await;
        assert_eq!((status, ctype.as_str()), (503, "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "not ready");
        assert_eq!(v["reason"], "caches not synced: S3Bucket, S3User");

        readiness.set_synced("S3Bucket");
        readiness.set_synced("S3User");
        assert_eq!(get(base, "/readyz").await, (200, "application/json".into(), r#"{"status":"ready"}"#.into()));

        assert_eq!(get(base, "/nope").await, (404, "text/plain; charset=utf-8".into(), "Not Found".into()));

        server.stop.send(()).expect("server still running");
        server.task.await.expect("join").expect("clean shutdown");
    }

    #[test]
    fn not_ready_before_controllers_start() {
        let readiness = Readiness::new();
        assert_eq!(readiness.check(), Err("controllers not started".to_string()));
        readiness.expect(&[]);
        assert_eq!(readiness.check(), Ok(()));
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (_held, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let err = bind(addr).await.expect_err("port in use");
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
