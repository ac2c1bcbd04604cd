//! The operator binary as a cluster runs it: configured by environment only, JSON logs, health
//! and metrics over HTTP, reconciling for real, and a clean exit 0 on SIGTERM.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use s3op_api::{DEFAULT_COMPAT_ANNOTATION, S3Bucket, S3BucketSpec};
use s3op_tests::{
    binary::{OperatorProcess, operator_binary},
    control_plane::ControlPlane,
    fixture::{cp, start},
    stores::{Store, StoreKind, unique_name},
    wait::{wait_for_value, wait_until},
};

async fn get(url: &str) -> Option<(u16, String, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Some((status, ctype, r.text().await.ok()?))
}

/// The operator binary, started and ready, with the log file it writes to.
struct Running {
    process: OperatorProcess,
    base: String,
    _log: tempfile::NamedTempFile,
}

/// Starts the binary for `store`, configured by environment only with the older operator's
/// names, watching `namespace` (or every namespace), with `extra` environment, and waits until
/// `/readyz` answers 200.
async fn spawn(cp: &ControlPlane, store: &Store, namespace: Option<&str>, extra: &[(&str, &str)]) -> Running {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut env: Vec<(String, String)> = [
        ("BACKEND_NAME", "VersityGW".to_string()),
        ("S3_ENDPOINT_URL", store.endpoint().to_string()),
        ("ROOT_ACCESS_KEY", store.admin_access_key().to_string()),
        ("ROOT_SECRET_KEY", store.admin_secret_key().to_string()),
        ("LOG_FORMAT", "json".to_string()),
        ("MARKER_BUCKET", unique_name("s3op-markers")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(ns) = namespace {
        env.push(("WATCH_NAMESPACE".to_string(), ns.to_string()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let binary = operator_binary("debug").unwrap();
    let mut process = OperatorProcess::spawn(&binary, cp.kubeconfig(), env, log.path()).unwrap();
    process.wait_ready(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e:#}"));
    Running { base: process.base_url().to_string(), process, _log: log }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_health_reconciles_and_exits_zero_on_sigterm() {
    let cp = cp();
    let store = start(StoreKind::Versitygw).await;
    let ns = cp.namespace("binary").await.unwrap();
    let mut running = spawn(cp, &store, Some(&ns), &[]).await;
    let base = running.base.clone();
    let log = running.process.log_path().to_path_buf();
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
    let created = || async { store.s3_client().head_bucket().bucket(&name).send().await.is_ok() };
    wait_until("the bucket created on the store", Duration::from_secs(60), created)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap()));
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
    let metrics = wait_for_value("the Secret processed", Duration::from_secs(60), || async {
        let (_, _, metrics) = get(&format!("{base}/metrics")).await.unwrap();
        metrics.lines().any(|l| l == "s3_operator_secrets_processed_total 1").then_some(metrics)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap()));
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
    let status = running.process.terminate(Duration::from_secs(20)).await.unwrap();
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
    // Every namespace is watched, as in a cluster-wide installation: on a control plane of its
    // own, so the other suites' annotated Secrets are neither provisioned by this operator nor
    // counted in its memory, and its 2,000 Secrets do not load their API server.
    let (cp, store) = tokio::join!(ControlPlane::start(), start(StoreKind::Versitygw));
    let cp = &cp.unwrap();
    let ns = cp.namespace("many-secrets").await.unwrap();
    // CRD mode is off: the memory measured is compatibility mode's.
    let only_compat = [("CRD_MODE", "false")];
    let running = spawn(cp, &store, None, &only_compat).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = running.process.rss_mib().unwrap();

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
    let with_secrets = running.process.rss_mib().unwrap();

    // A second process lists all of them at start-up.
    let restarted = spawn(cp, &store, None, &only_compat).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_start = restarted.process.rss_mib().unwrap();
    eprintln!(
        "RSS: idle {idle:.1} MiB; with {SECRETS} unannotated Secrets (16 KiB each) {with_secrets:.1} MiB; \
         a process started with them listed {at_start:.1} MiB"
    );
    assert!(with_secrets - idle < 8.0, "RSS grew from {idle:.1} to {with_secrets:.1} MiB with unannotated Secrets");
    assert!(at_start - idle < 8.0, "RSS at start with the Secrets listed is {at_start:.1} MiB, idle was {idle:.1}");
}
