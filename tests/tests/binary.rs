//! The operator binary as a cluster runs it: configured by environment only, JSON logs, health
//! and metrics over HTTP, reconciling for real, and a clean exit 0 on SIGTERM.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kube::{Api, api::PostParams};
use s3op_api::{S3Bucket, S3BucketSpec};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_health_reconciles_and_exits_zero_on_sigterm() {
    let cp = ControlPlane::shared().unwrap();
    let store = Store::start(StoreKind::Versitygw).await.unwrap();
    let ns = cp.namespace("binary").await.unwrap();
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(binary())
        .env_clear()
        .env("KUBECONFIG", cp.kubeconfig())
        .env("BACKEND_NAME", "VersityGW")
        .env("S3_ENDPOINT_URL", store.endpoint())
        .env("ROOT_ACCESS_KEY", store.admin_access_key())
        .env("ROOT_SECRET_KEY", store.admin_secret_key())
        .env("WATCH_NAMESPACE", &ns)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("COMPAT_MODE", "false")
        .env("MARKER_BUCKET", unique_name("s3op-markers"))
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();

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
        assert!(Instant::now() < deadline, "bucket not created: {}", std::fs::read_to_string(log.path()).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, ctype, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(metrics.contains("s3op_reconciles_total{"), "{metrics}");

    let t = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no exit within 20s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("operator binary exited {status} {:?} after SIGTERM", t.elapsed());
    assert!(status.success(), "exit status {status}");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains(store.admin_secret_key()), "the admin secret appears in the log");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    assert!(text.contains("SIGTERM received"), "{text}");
}
