//! The operator's small HTTP server: `/metrics` for Prometheus, `/healthz` and `/readyz` for
//! the kubelet's probes. Plain HTTP/1 only: it is scraped inside the cluster.

use std::{
    collections::BTreeSet,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use s3op_backends::Backend;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Content type of the OpenMetrics text exposition format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a backend health result is reused: probes come every few seconds from every
/// kubelet, and the store should not see a request for each.
pub const DEFAULT_HEALTH_TTL: Duration = Duration::from_secs(10);

/// Longest a readiness probe waits on the store. Backends have their own request timeouts;
/// this one guards against a backend whose health call retries internally.
const HEALTH_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Kinds {
    // `None` until the controllers are started: a server that comes up before them must
    // not report ready with an empty list.
    expected: Option<Vec<&'static str>>,
    synced: BTreeSet<&'static str>,
}

/// Whether the operator can do its work: every controller's caches are synced and the
/// object store answered recently.
#[derive(Debug)]
pub struct Readiness {
    backend: Arc<dyn Backend>,
    health_ttl: Duration,
    kinds: Mutex<Kinds>,
    // An async mutex held across the health call, so concurrent probes wait for one call
    // instead of each making their own.
    last_health: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// Readiness against `backend`, reusing a health result for [`DEFAULT_HEALTH_TTL`].
    pub fn new(backend: Arc<dyn Backend>) -> Arc<Readiness> {
        Self::with_health_ttl(backend, DEFAULT_HEALTH_TTL)
    }

    /// Readiness against `backend`, reusing a health result for `health_ttl`.
    pub fn with_health_ttl(backend: Arc<dyn Backend>, health_ttl: Duration) -> Arc<Readiness> {
        Arc::new(Readiness {
            backend,
            health_ttl,
            kinds: Mutex::new(Kinds::default()),
            last_health: tokio::sync::Mutex::new(None),
        })
    }

    /// Sets which controllers (by kind) must have synced caches before the operator is ready.
    pub fn expect(&self, kinds: &[&'static str]) {
        self.lock_kinds().expected = Some(kinds.to_vec());
    }

    /// Marks the controller of `kind` as having synced its caches.
    pub fn set_synced(&self, kind: &'static str) {
        self.lock_kinds().synced.insert(kind);
    }

    /// `Ok` when every expected controller is synced and the store's health call succeeded
    /// within the cache period; otherwise why not.
    pub async fn check(&self) -> Result<(), String> {
        self.caches_synced()?;
        self.backend_healthy().await
    }

    fn lock_kinds(&self) -> std::sync::MutexGuard<'_, Kinds> {
        // The guarded data is a set of flags that no panic can leave half-written.
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn caches_synced(&self) -> Result<(), String> {
        let kinds = self.lock_kinds();
        let Some(expected) = &kinds.expected else {
            return Err("controllers not started".into());
        };
        let missing: Vec<&str> = expected.iter().copied().filter(|k| !kinds.synced.contains(k)).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("caches not synced: {}", missing.join(", "))) }
    }

    async fn backend_healthy(&self) -> Result<(), String> {
        let mut last = self.last_health.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < self.health_ttl
        {
            return result.clone();
        }
        let kind = self.backend.kind();
        let result = match tokio::time::timeout(HEALTH_CALL_TIMEOUT, self.backend.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{kind} backend unhealthy: {err}")),
            Err(_) => Err(format!("{kind} backend health check timed out after {HEALTH_CALL_TIMEOUT:?}")),
        };
        *last = Some((Instant::now(), result.clone()));
        result
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
    match state.readiness.check().await {
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
    use s3op_backends::memory::MemoryBackend;
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
        let memory = Arc::new(MemoryBackend::new());
        let metrics = Metrics::new();
        metrics.status_write("S3Bucket");
        let readiness = Readiness::with_health_ttl(memory.clone(), Duration::from_millis(50));
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

        memory.set_down(true);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (status, _, body) = get(base, "/readyz").await;
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(v["reason"].as_str().expect("reason").contains("memory backend unhealthy"), "{body}");

        memory.set_down(false);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(get(base, "/readyz").await.0, 200);

        assert_eq!(get(base, "/nope").await, (404, "text/plain; charset=utf-8".into(), "Not Found".into()));

        server.stop.send(()).expect("server still running");
        server.task.await.expect("join").expect("clean shutdown");
    }

    #[tokio::test]
    async fn health_result_is_reused_within_the_ttl() {
        let memory = Arc::new(MemoryBackend::new());
        let readiness = Readiness::new(memory.clone());
        readiness.expect(&[]);
        assert_eq!(readiness.check().await, Ok(()));
        let reads = memory.reads();
        memory.set_down(true);
        assert_eq!(readiness.check().await, Ok(()), "the cached success is reused");
        assert_eq!(memory.reads(), reads, "a probe within the cache period does not call the store");
    }

    #[tokio::test]
    async fn not_ready_before_controllers_start() {
        let readiness = Readiness::new(Arc::new(MemoryBackend::new()));
        assert_eq!(readiness.check().await, Err("controllers not started".to_string()));
        readiness.expect(&[]);
        assert_eq!(readiness.check().await, Ok(()));
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (_held, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let err = bind(addr).await.expect_err("port in use");
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
