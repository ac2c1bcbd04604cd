//! The real control plane accepts our CRDs and enforces their rules; RBAC, kubectl and the
//! garbage collector behave as the later suites rely on.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use s3op_api::{
    BucketAccess, DeletionPolicy, Permission, S3Bucket, S3BucketSpec, S3User, S3UserSpec, naming::BUCKET_NAME_RULES,
};
use s3op_tests::{fixture::cp, wait::wait_gone};

fn bucket(name: &str, spec: S3BucketSpec) -> S3Bucket {
    S3Bucket::new(name, spec)
}

/// The API server's refusal message, or a panic if it accepted the object.
fn refusal<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{}", s.message);
            s.message
        }
        other => panic!("expected a 422 refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bucket_name_rules_are_enforced_at_admission() {
    let cp = cp();
    let ns = cp.namespace("cel-bucket-names").await.unwrap();
    let api: Api<S3Bucket> = Api::namespaced(cp.client().await.unwrap(), &ns);
    let pp = PostParams::default();
    let table = [
        ("ab", BUCKET_NAME_RULES[0].message),
        ("Upper-case", BUCKET_NAME_RULES[1].message),
        ("under_score", BUCKET_NAME_RULES[1].message),
        ("-edge", BUCKET_NAME_RULES[2].message),
        ("edge.", BUCKET_NAME_RULES[2].message),
        ("two..dots", BUCKET_NAME_RULES[3].message),
        ("192.168.5.4", BUCKET_NAME_RULES[4].message),
        ("xn--punycode", BUCKET_NAME_RULES[5].message),
        ("sthree-thing", BUCKET_NAME_RULES[5].message),
        ("name-s3alias", BUCKET_NAME_RULES[6].message),
        ("name--ol-s3", BUCKET_NAME_RULES[6].message),
    ];
    for (i, (name, want)) in table.iter().enumerate() {
        let obj =
            bucket(&format!("bad-{i}"), S3BucketSpec { bucket_name: Some(name.to_string()), ..Default::default() });
        let msg = refusal(api.create(&pp, &obj).await);
        assert!(msg.contains(want), "{name:?}: {msg}");
    }
    let too_long = "a".repeat(64);
    let msg = refusal(
        api.create(&pp, &bucket("bad-long", S3BucketSpec { bucket_name: Some(too_long), ..Default::default() })).await,
    );
    assert!(msg.contains("63"), "{msg}");

    for (i, name) in ["abc", "my.bucket-1", "1.2.3", &"a".repeat(63)].iter().enumerate() {
        let obj =
            bucket(&format!("good-{i}"), S3BucketSpec { bucket_name: Some(name.to_string()), ..Default::default() });
        api.create(&pp, &obj).await.unwrap_or_else(|e| panic!("{name:?} refused: {e}"));
    }
}

#[tokio::test]
async fn spec_rules_and_immutable_fields_are_enforced() {
    let cp = cp();
    let ns = cp.namespace("cel-spec").await.unwrap();
    let client = cp.client().await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    let forced = bucket("forced", S3BucketSpec { force_delete: Some(true), ..Default::default() });
    assert!(refusal(buckets.create(&pp, &forced).await).contains("forceDelete"));
    let forced_ok = bucket(
        "forced-ok",
        S3BucketSpec { force_delete: Some(true), deletion_policy: DeletionPolicy::Delete, ..Default::default() },
    );
    buckets.create(&pp, &forced_ok).await.unwrap();

    let created = buckets
        .create(&pp, &bucket("named", S3BucketSpec { bucket_name: Some("fixed-name".into()), ..Default::default() }))
        .await
        .unwrap();
    // The API server applied the schema default.
    assert_eq!(created.spec.deletion_policy, DeletionPolicy::Retain);
    let change = serde_json::json!({"spec": {"bucketName": "other-name"}});
    let msg = refusal(buckets.patch("named", &PatchParams::default(), &Patch::Merge(&change)).await);
    assert!(msg.contains("bucketName is immutable"), "{msg}");
    let remove = serde_json::json!({"spec": {"bucketName": null}});
    let msg = refusal(buckets.patch("named", &PatchParams::default(), &Patch::Merge(&remove)).await);
    assert!(msg.contains("bucketName is immutable"), "{msg}");
    let lock = serde_json::json!({"spec": {"objectLock": true}});
    let msg = refusal(buckets.patch("named", &PatchParams::default(), &Patch::Merge(&lock)).await);
    assert!(msg.contains("objectLock is immutable"), "{msg}");
    // A mutable field still changes.
    let policy = serde_json::json!({"spec": {"deletionPolicy": "Delete"}});
    buckets.patch("named", &PatchParams::default(), &Patch::Merge(&policy)).await.unwrap();
    let bad_enum = serde_json::json!({"spec": {"deletionPolicy": "Shred"}});
    let msg = refusal(buckets.patch("named", &PatchParams::default(), &Patch::Merge(&bad_enum)).await);
    assert!(msg.contains("Retain") && msg.contains("Delete"), "{msg}");

    let users: Api<S3User> = Api::namespaced(client, &ns);
    let grant = |b: &str| BucketAccess { bucket: b.into(), permission: Permission::ReadWrite };
    let user = S3User::new(
        "app",
        S3UserSpec { user_name: Some("app-user".into()), access: vec![grant("named")], ..Default::default() },
    );
    users.create(&pp, &user).await.unwrap();
    let rename = serde_json::json!({"spec": {"userName": "other-user"}});
    let msg = refusal(users.patch("app", &PatchParams::default(), &Patch::Merge(&rename)).await);
    assert!(msg.contains("userName is immutable"), "{msg}");

    let dup = S3User::new("dup", S3UserSpec { access: vec![grant("a"), grant("a")], ..Default::default() });
    let r = users.create(&pp, &dup).await;
    assert!(matches!(&r, Err(kube::Error::Api(s)) if s.code == 422), "duplicate grants accepted: {r:?}");
    let many = S3User::new(
        "many",
        S3UserSpec { access: (0..33).map(|i| grant(&format!("b{i}"))).collect(), ..Default::default() },
    );
    let msg = refusal(users.create(&pp, &many).await);
    assert!(msg.contains("32"), "{msg}");
    let bad_user = S3User::new("bad", S3UserSpec { user_name: Some("has space".into()), ..Default::default() });
    refusal(users.create(&pp, &bad_user).await);
}

#[tokio::test]
async fn kubectl_explain_teaches_the_fields() {
    let out = cp().kubectl(&["explain", "s3bucket.spec.deletionPolicy"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Retain") && text.contains("forceDelete"), "{text}");
    let out = cp().kubectl(&["explain", "s3user.spec.access.permission"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ReadOnly"));
    // Short names and the category work with the real kubectl.
    let ns = cp().namespace("kubectl-names").await.unwrap();
    let out = cp().kubectl(&["get", "s3b,s3u", "-n", &ns]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cp().kubectl(&["get", "s3", "-n", &ns]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn unprivileged_identity_is_refused_where_admin_succeeds() {
    let cp = cp();
    let ns = cp.namespace("rbac").await.unwrap();
    let admin: Api<S3Bucket> = Api::namespaced(cp.client().await.unwrap(), &ns);
    admin.list(&Default::default()).await.unwrap();
    let nobody: Api<S3Bucket> = Api::namespaced(cp.unprivileged_client().await.unwrap(), &ns);
    match nobody.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("expected 403, got {other:?}"),
    }
    let secrets: Api<Secret> = Api::namespaced(cp.unprivileged_client().await.unwrap(), &ns);
    assert!(matches!(secrets.get_opt("x").await, Err(kube::Error::Api(s)) if s.code == 403));
}

#[tokio::test]
async fn owner_reference_children_are_garbage_collected() {
    let cp = cp();
    let ns = cp.namespace("gc").await.unwrap();
    let client = cp.client().await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let owner = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta { name: Some("owner".into()), ..Default::default() },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let child = Secret {
        metadata: ObjectMeta {
            name: Some("child".into()),
            owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().unwrap(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &child).await.unwrap();
    maps.delete("owner", &DeleteParams::background()).await.unwrap();
    // The garbage collector's informers may need one discovery round after start-up.
    wait_gone(&secrets, "child").await.unwrap_or_else(|e| panic!("{e}: not collected\n{}", cp.log_tails(20)));
}

/// The operator's event publisher against the real API server: a repeat within six minutes
/// continues the first event as a series, anything else is an event of its own, and a repeat
/// of an event the server no longer has starts a new one.
#[tokio::test]
async fn repeated_events_become_one_series() {
    use k8s_openapi::api::{core::v1::ObjectReference, events::v1::Event};
    use s3op_controller::events::Publisher;

    let cp = cp();
    let ns = cp.namespace("events-series").await.unwrap();
    let client = cp.client().await.unwrap();
    let subject =
        ConfigMap { metadata: ObjectMeta { name: Some("subject".into()), ..Default::default() }, ..Default::default() };
    let subject =
        Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &subject).await.unwrap();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: subject.metadata.name.clone(),
        namespace: Some(ns.clone()),
        uid: subject.metadata.uid.clone(),
        ..Default::default()
    };
    let publisher = Publisher::new(client.clone(), "s3-resource-operator-test", None);
    for _ in 0..3 {
        publisher.publish(&reference, true, "Flapping", "the same note".into()).await.unwrap();
    }
    publisher.publish(&reference, false, "Flapping", "another note".into()).await.unwrap();

    let events: Api<Event> = Api::namespaced(client, &ns);
    let flapping = || async {
        let mut list: Vec<Event> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Flapping"))
            .collect();
        list.sort_by_key(|e| e.note.clone());
        list
    };
    let list = flapping().await;
    assert_eq!(list.len(), 2, "one series and one single event: {list:#?}");
    let (other, series) = (&list[0], &list[1]);
    assert_eq!(series.note.as_deref(), Some("the same note"));
    assert_eq!(series.type_.as_deref(), Some("Warning"));
    assert_eq!(series.series.as_ref().map(|s| s.count), Some(3), "{series:#?}");
    assert_eq!(series.reporting_controller.as_deref(), Some("s3-resource-operator-test"));
    assert_eq!(series.regarding.as_ref().and_then(|r| r.uid.clone()), subject.metadata.uid);
    assert_eq!((other.type_.as_deref(), other.series.as_ref()), (Some("Normal"), None));

    // Gone from the server (its event TTL, or someone deleted it): the repeat is a new event.
    events.delete(series.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    publisher.publish(&reference, true, "Flapping", "the same note".into()).await.unwrap();
    let list = flapping().await;
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_ne!(list[1].metadata.name, series.metadata.name);
    assert_eq!((list[1].note.as_deref(), list[1].series.as_ref()), (Some("the same note"), None));
}

/// The control plane's certificates pass a strict TLS client: Python with
/// `VERIFY_X509_STRICT` (its default from 3.13; the flag makes 3.11 just as strict) verifies
/// the API server against the CA the kubeconfig names. Certificates without Authority Key
/// Identifiers were refused this way ("Missing Authority Key Identifier").
#[test]
fn a_strict_tls_client_accepts_the_control_plane_certificates() {
    let cp = cp();
    let python = s3op_tests::peers::binary("moto_server").unwrap().with_file_name("python");
    let port = cp.url().rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT | getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        print("verified", tls.version())
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &cp.dir().join("ca.crt").display().to_string(), &port])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a strict TLS client refused the API server:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
