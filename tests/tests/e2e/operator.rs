//! CRD mode end to end: the operator, run against the real control plane and each real store,
//! turns S3Bucket and S3User objects into buckets, users, grants and a credentials Secret an
//! app can use, repairs drift, rotates keys, honours deletion policies, refuses takeovers and
//! rides out a store outage.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource,
    api::{Patch, PatchParams, PostParams},
};
use s3op_api::{BucketAccess, DeletionPolicy, Permission, S3Bucket, S3BucketSpec, S3User, S3UserSpec, secret_keys};
use s3op_tests::{
    fixture::{self, client, cp, start},
    operator::Operator,
    stores::{Store, StoreKind, s3_config, unique_name},
    wait::{HasConditions, Look, TIMEOUT, poll, wait_ready_condition, wait_until},
};
use serde::de::DeserializeOwned;

mod crd_mode;

/// Waits until the object's Ready condition has `status` and `reason`; returns the object.
async fn wait_condition<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_ready_condition(api, name, status, reason).await.unwrap()
}

async fn wait_ready<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_condition(api, name, "True", "Available").await
}

fn bucket(name: &str, policy: DeletionPolicy) -> S3Bucket {
    S3Bucket::new(
        name,
        S3BucketSpec { bucket_name: Some(unique_name(name)), deletion_policy: policy, ..Default::default() },
    )
}

fn user(name: &str, access: &[(&str, Permission)]) -> S3User {
    S3User::new(
        name,
        S3UserSpec {
            access: access.iter().map(|(b, p)| BucketAccess { bucket: b.to_string(), permission: *p }).collect(),
            ..Default::default()
        },
    )
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).map(|v| String::from_utf8(v.0.clone()).unwrap())
}

/// An S3 client configured only from the Secret, as an app using `envFrom` would be.
fn app_client(secret: &Secret) -> aws_sdk_s3::Client {
    let access_key = text(secret, secret_keys::ACCESS_KEY_ID).expect("AWS_ACCESS_KEY_ID");
    let secret_key = text(secret, secret_keys::SECRET_ACCESS_KEY).expect("AWS_SECRET_ACCESS_KEY");
    let endpoint = text(secret, secret_keys::ENDPOINT_URL).expect("AWS_ENDPOINT_URL");
    let region = text(secret, secret_keys::REGION).expect("AWS_REGION");
    aws_sdk_s3::Client::from_conf(s3_config(&endpoint, &region, &access_key, &secret_key).build())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from_static(b"hello")).send().await.is_ok()
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == b"hello"),
        Err(_) => false,
    }
}

async fn bucket_exists(store: &Store, bucket: &str) -> bool {
    store.s3_client().head_bucket().bucket(bucket).send().await.is_ok()
}

async fn empty(store: &Store, bucket: &str) {
    let s3 = store.s3_client();
    if let Ok(v) = s3.list_object_versions().bucket(bucket).send().await {
        // Versions and delete markers alike: a versioned bucket is empty only without either.
        let versions = v.versions().iter().map(|o| (o.key(), o.version_id()));
        let markers = v.delete_markers().iter().map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            let delete = s3.delete_object().bucket(bucket).key(key.unwrap());
            let _ = delete.set_version_id(version.map(str::to_string)).send().await;
        }
    }
    if let Ok(l) = s3.list_objects_v2().bucket(bucket).send().await {
        for o in l.contents() {
            let _ = s3.delete_object().bucket(bucket).key(o.key().unwrap()).send().await;
        }
    }
}

/// A killed operator (no graceful shutdown) in the middle of a rollout: its successor converges
/// everything, and the store holds one user per S3User with exactly the Secret's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_rollout_converges_without_orphan_keys() {
    use s3op_backends::Backend;

    const N: usize = 12;
    let store = start(StoreKind::Minio).await;
    let ns = cp().namespace("rollout").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "3s", &[]).await.unwrap();
    let args = op.args();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    for i in 0..N {
        buckets.create(&pp, &bucket(&format!("b{i}"), DeletionPolicy::Delete)).await.unwrap();
        users.create(&pp, &user(&format!("u{i}"), &[(&format!("b{i}"), Permission::ReadWrite)])).await.unwrap();
    }
    // Kill it as soon as the first user is Ready: the others are then mid-way.
    let ready_before = poll("a user Ready", TIMEOUT, Duration::from_millis(50), || async {
        let list = users.list(&Default::default()).await?;
        let ready = list.items.iter().filter(|u| u.ready().is_some_and(|c| c.status == "True")).count();
        Ok(if ready > 0 { Look::Done(ready) } else { Look::NotYet(format!("none of {} Ready", list.items.len())) })
    })
    .await
    .unwrap();
    drop(op); // killed: in-flight reconciles stop wherever they are
    eprintln!("rollout: {ready_before} of {N} users Ready when the operator was killed");
    let t = Instant::now();
    let op = Operator::start_with(client.clone(), args.clone()).await.unwrap();
    for i in 0..N {
        wait_ready(&users, &format!("u{i}")).await;
    }
    eprintln!("rollout: all {N} users Ready {:?} after the restart", t.elapsed());

    let marker_bucket = args.iter().skip_while(|a| *a != "--marker-bucket").nth(1).unwrap().clone();
    let minio = fixture::minio(&store, &marker_bucket);
    for i in 0..N {
        let u = users.get(&format!("u{i}")).await.unwrap();
        let status = u.status.unwrap();
        let secret = secrets.get(status.secret_name.as_deref().unwrap()).await.unwrap();
        let key = text(&secret, secret_keys::ACCESS_KEY_ID).unwrap();
        let info = minio.describe_user(status.user_name.as_deref().unwrap()).await.unwrap().unwrap();
        assert_eq!(info.access_key_ids, vec![key.clone()], "u{i}: exactly the Secret's key on the store");
        assert_eq!(status.access_key_id.as_deref(), Some(key.as_str()));
        let b = buckets.get(&u.spec.access[0].bucket).await.unwrap();
        let bucket_name = b.status.unwrap().bucket_name.unwrap();
        assert!(put(&app_client(&secret), &bucket_name, "x").await, "u{i}: the key works");
    }
    op.stop().await.unwrap();
}

/// Two replicas with leader election against one control plane and store: only the Lease
/// holder reconciles (counted from each one's metrics); when it stops it releases the Lease and
/// the stand-in converges a newly applied bucket within the lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_acts_and_the_other_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    const LEASE_SECS: u64 = 6;
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("leader").await.unwrap();
    let client = client().await;
    let lease_secs = format!("{LEASE_SECS}s");
    let election = |id: &'static str| {
        [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-duration",
            lease_secs.as_str(),
            "--pod-name",
            id,
        ]
    };
    let first = Operator::start(client.clone(), &store, &ns, "3s", &election("replica-a")).await.unwrap();
    // Same flags (and so the same marker bucket), another identity.
    let mut args = first.args();
    let at = args.iter().position(|a| a == "--pod-name").unwrap();
    args[at + 1] = "replica-b".into();
    let second = Operator::start_with(client.clone(), args).await.unwrap();

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder =
        || async { leases.get_opt("s3-resource-operator").await.unwrap().and_then(|l| l.spec?.holder_identity) };
    assert_eq!(holder().await.as_deref(), Some("replica-a"));
    assert_eq!(first.metric_sum("s3op_leader").await.unwrap(), 1.0);
    assert_eq!(second.metric_sum("s3op_leader").await.unwrap(), 0.0, "a stand-in is ready but not leading");

    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    for i in 0..3 {
        buckets.create(&PostParams::default(), &bucket(&format!("b{i}"), DeletionPolicy::Delete)).await.unwrap();
    }
    for i in 0..3 {
        wait_ready(&buckets, &format!("b{i}")).await;
    }
    let (a_reconciles, a_writes) = (
        first.metric_sum("s3op_reconciles_total").await.unwrap(),
        first.metric_sum("s3op_backend_writes_total").await.unwrap(),
    );
    let (b_reconciles, b_writes) = (
        second.metric_sum("s3op_reconciles_total").await.unwrap(),
        second.metric_sum("s3op_backend_writes_total").await.unwrap(),
    );
    eprintln!(
        "leader: reconciles {a_reconciles}, writes {a_writes}; stand-in: reconciles {b_reconciles}, writes {b_writes}"
    );
    assert!(a_reconciles >= 3.0 && a_writes >= 3.0);
    assert_eq!((b_reconciles, b_writes), (0.0, 0.0), "the stand-in acted");

    // A graceful stop releases the Lease at once.
    first.stop().await.unwrap();
    assert_ne!(holder().await.as_deref(), Some("replica-a"), "the Lease was not released");
    let t = Instant::now();
    buckets.create(&PostParams::default(), &bucket("after", DeletionPolicy::Delete)).await.unwrap();
    wait_ready(&buckets, "after").await;
    let took = t.elapsed();
    eprintln!("stand-in converged a new bucket {took:?} after the leader stopped (lease {LEASE_SECS}s)");
    assert!(took < Duration::from_secs(LEASE_SECS + 5), "took over after {took:?}");
    assert_eq!(holder().await.as_deref(), Some("replica-b"));
    assert_eq!(second.metric_sum("s3op_leader").await.unwrap(), 1.0);
    second.stop().await.unwrap();
}

/// A bucket deleted behind the operator's back and made again gives its users their access back
/// in the same pass, not at their next resync: on VersityGW a recreated bucket belongs to the
/// admin account until the user's grant is written again. The resync is far longer than the
/// test, and the bucket is woken by a spec change, so only the bucket's wake can reach the user.
#[tokio::test]
async fn versitygw_recreated_bucket_gives_its_users_access_back_at_once() {
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("recreate").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "600s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    buckets.create(&pp, &bucket("data", DeletionPolicy::Retain)).await.unwrap();
    users.create(&pp, &user("app", &[("data", Permission::ReadWrite)])).await.unwrap();
    let data = wait_ready(&buckets, "data").await.status.unwrap().bucket_name.unwrap();
    let app = wait_ready(&users, "app").await.status.unwrap();
    let s3 = app_client(&secrets.get(app.secret_name.as_deref().unwrap()).await.unwrap());
    assert!(put(&s3, &data, "before.txt").await, "the user's key writes to its bucket");

    empty(&store, &data).await;
    store.s3_client().delete_bucket().bucket(&data).send().await.unwrap();
    let touch = serde_json::json!({"spec": {"tags": {"touched": "yes"}}});
    buckets.patch("data", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    wait_until("the deleted bucket is recreated", TIMEOUT, || bucket_exists(&store, &data)).await.unwrap();
    let started = Instant::now();
    wait_until("access to the recreated bucket", TIMEOUT, || put(&s3, &data, "after.txt")).await.unwrap();
    eprintln!("access back {:?} after the bucket was recreated (resync 600 s)", started.elapsed());
    op.stop().await.unwrap();
}
