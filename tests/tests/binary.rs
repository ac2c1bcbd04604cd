//! The operator binary as a cluster runs it: configured by environment only, JSON logs, health
//! and metrics over HTTP, reconciling for real, and a clean exit 0 on SIGTERM.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use s3op_api::{DEFAULT_COMPAT_ANNOTATION, S3Bucket, S3BucketSpec};
use s3op_tests::{
    control_plane::ControlPlane,
    process::free_port,
    stores::{Store, StoreKind, unique_name},
};

/// The binary `cargo test --workspace` builds for the controller's own CLI tests.
fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| s3op_tests::workspace_root().join("target"));
    let path = target.join("debug/s3-resource-operator");
    assert!(
        path.exists(),
        "{} missing: run `cargo build -p s3op-controller` (or the whole workspace's tests)",
        path.display()
    );
    path
}

async fn get(url: &str) -> Option<(u16, String, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Some((status, ctype, r.text().await.ok()?))
}

/// The operator binary, started and ready.
struct Running {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

impl Running {
    /// Resident memory of the process in MiB, from /proc.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary for `store`, configured by environment only, watching `namespace` (or
/// every namespace), with `extra` environment, and waits until `/readyz` answers 200.
async fn spawn(cp: &ControlPlane, store: &Store, namespace: Option<&str>, extra: &[(&str, &str)]) -> Running {
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("KUBECONFIG", cp.kubeconfig())
        .env("BACKEND_NAME", "VersityGW")
        .env("S3_ENDPOINT_URL", store.endpoint())
        .env("ROOT_ACCESS_KEY", store.admin_access_key())
        .env("ROOT_SECRET_KEY", store.admin_secret_key())
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("MARKER_BUCKET", unique_name("s3op-markers"))
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    if let Some(ns) = namespace {
        command.env("WATCH_NAMESPACE", ns);
    }
    command.envs(extra.iter().copied());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _, _)) = get(&format!("{base}/readyz")).await {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the operator exited: {}",
            std::fs::read_to_string(log.path()).unwrap()
        );
        assert!(Instant::now() < deadline, "not ready: {}", std::fs::read_to_string(log.path()).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Running { child, base, log }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_health_reconciles_and_exits_zero_on_sigterm() {
    let cp = ControlPlane::shared().unwrap();
    let store = Store::start(StoreKind::Versitygw).await.unwrap();
    let ns = cp.namespace("binary").await.unwrap();
    let mut running = spawn(cp, &store, Some(&ns), &[]).await;
    let base = running.base.clone();
    let log = running.log.path().to_path_buf();
    let (status, ctype, body) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!((status, ctype.as_str(), body.as_str()), (200, "application/json", r#"{"status":"healthy"}"#));
    let (status, _, _) = get(&format!("{base}/nope")).await.unwrap();
    assert_eq!(status, 404);

    let buckets: Api<S3Bucket> = Api::namespaced(cp.client().await.unwrap(), &ns);
    let name = unique_name("bin");
    buckets
        .create(
            &PostParams::default(),
            &S3Bucket::new("b", S3BucketSpec { bucket_name: Some(name.clone()), ..Default::default() }),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.s3_client().head_bucket().bucket(&name).send().await.is_err() {
        assert!(Instant::now() < deadline, "bucket not created: {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Compatibility mode is on by default: an annotated Secret gets its bucket, and the older
    // operator's metrics move under their old names.
    let compat_bucket = unique_name("bin-compat");
    let secrets: Api<Secret> = Api::namespaced(cp.client().await.unwrap(), &ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("legacy".into()),
            annotations: Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("bucket-name".to_string(), compat_bucket.clone()),
            ("access-key".to_string(), "legacyapp1".to_string()),
            ("secret-key".to_string(), "legacy-secret-value-1".to_string()),
            ("endpoint-url".to_string(), store.endpoint().to_string()),
        ])),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (_, _, metrics) = get(&format!("{base}/metrics")).await.unwrap();
        if metrics.lines().any(|l| l == "s3_operator_secrets_processed_total 1") {
            break metrics;
        }
        assert!(Instant::now() < deadline, "Secret not processed: {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(store.s3_client().head_bucket().bucket(&compat_bucket).send().await.is_ok());
    for line in [
        "s3_operator_users_created_total 1",
        "s3_operator_buckets_created_total 1",
        "s3_operator_bucket_owners_changed_total 1",
        "s3_operator_users_updated_total 0",
        "s3_operator_users_deleted_total 0",
        "s3_operator_errors_total 0",
        "s3_operator_handle_secret_duration_seconds_count 1",
        "s3_operator_sync_duration_seconds_count 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in:\n{metrics}");
    }
    let (_, ctype, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(metrics.contains("s3op_reconciles_total{"), "{metrics}");

    let t = Instant::now();
    Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = running.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no exit within 20s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("operator binary exited {status} {:?} after SIGTERM", t.elapsed());
    assert!(status.success(), "exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(store.admin_secret_key()), "the admin secret appears in the log");
    assert!(!text.contains("legacy-secret-value-1"), "a compatibility Secret's key appears in the log");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    assert!(text.contains("SIGTERM received"), "{text}");
}

/// Compatibility mode keeps only annotated Secrets: with 2,000 unrelated Secrets of 16 KiB in
/// the cluster (32 MiB if they were cached), the operator's memory stays flat, whether they
/// arrive while it runs or are listed when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_with_many_unannotated_secrets() {
    const SECRETS: usize = 2000;
    let cp = ControlPlane::shared().unwrap();
    let store = Store::start(StoreKind::Versitygw).await.unwrap();
    let ns = cp.namespace("many-secrets").await.unwrap();
    // Every namespace is watched, as in a cluster-wide installation; CRD mode is off so the
    // other tests' objects in this control plane are not touched.
    let only_compat = [("CRD_MODE", "false")];
    let running = spawn(cp, &store, None, &only_compat).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = running.rss_mib();

    let client = cp.client().await.unwrap();
    let payload = "x".repeat(16 * 1024);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let payload = payload.clone();
        tasks.spawn(async move {
            for i in (worker..SECRETS).step_by(16) {
                let secret = Secret {
                    metadata: ObjectMeta { name: Some(format!("unrelated-{i}")), ..ObjectMeta::default() },
                    string_data: Some(BTreeMap::from([("blob".to_string(), payload.clone())])),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // The watch delivers them within moments; give it time to settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let with_secrets = running.rss_mib();

    // A second process lists all of them at start-up.
    let restarted = spawn(cp, &store, None, &only_compat).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_start = restarted.rss_mib();
    eprintln!(
        "RSS: idle {idle:.1} MiB; with {SECRETS} unannotated Secrets (16 KiB each) {with_secrets:.1} MiB; \
         a process started with them listed {at_start:.1} MiB"
    );
    assert!(with_secrets - idle < 8.0, "RSS grew from {idle:.1} to {with_secrets:.1} MiB with unannotated Secrets");
    assert!(at_start - idle < 8.0, "RSS at start with the Secrets listed is {at_start:.1} MiB, idle was {idle:.1}");
}
