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
    stores::{Store, StoreKind, public_read_policy, s3_config, unique_name},
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

/// The bucket's policy document as the administrator reads it; `None` without one.
async fn bucket_policy(store: &Store, bucket: &str) -> Option<String> {
    store.s3_client().get_bucket_policy().bucket(bucket).send().await.ok().and_then(|p| p.policy)
}

/// The Secret of a Ready S3User.
async fn secret_of(secrets: &Api<Secret>, user: &S3User) -> Secret {
    let name = user.status.as_ref().and_then(|s| s.secret_name.clone()).unwrap();
    secrets.get(&name).await.unwrap()
}

/// VersityGW grants by bucket policy: two ReadWrite users and one ReadOnly user on one bucket
/// each work with their own Secret, none may change the policy or delete the bucket, a
/// converged resync writes nothing, and revoking one grant removes its statement and only that
/// user's access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_many_users_share_a_bucket_with_least_privilege() {
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("vgw-shared").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "2s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    buckets.create(&pp, &bucket("shared", DeletionPolicy::Delete)).await.unwrap();
    let apps =
        [("writer-a", Permission::ReadWrite), ("writer-b", Permission::ReadWrite), ("reader", Permission::ReadOnly)];
    for (name, permission) in apps {
        users.create(&pp, &user(name, &[("shared", permission)])).await.unwrap();
    }
    let shared = wait_ready(&buckets, "shared").await.status.unwrap().bucket_name.unwrap();
    let mut clients = Vec::new();
    for (name, _) in apps {
        let u = wait_ready(&users, name).await;
        clients.push((name, app_client(&secret_of(&secrets, &u).await)));
    }
    let seed = ByteStream::from_static(b"hello");
    store.s3_client().put_object().bucket(&shared).key("seed").body(seed).send().await.unwrap();
    for (name, s3) in &clients {
        assert!(get(s3, &shared, "seed").await, "{name} reads");
        assert!(s3.list_objects_v2().bucket(&shared).send().await.is_ok(), "{name} lists");
        let writes = put(s3, &shared, &format!("{name}.txt")).await;
        assert_eq!(writes, *name != "reader", "{name}: writes only with ReadWrite");
        let public = public_read_policy(&shared);
        assert!(s3.put_bucket_policy().bucket(&shared).policy(public).send().await.is_err(), "{name} set a policy");
        assert!(s3.delete_bucket_policy().bucket(&shared).send().await.is_err(), "{name} removed the policy");
        assert!(s3.delete_bucket().bucket(&shared).send().await.is_err(), "{name} deleted the bucket");
    }
    let owner = |snap: s3op_tests::inspect::Snapshot| snap.buckets.get(&shared).cloned();
    let snap = s3op_tests::inspect::snapshot(&store).await.unwrap();
    assert_eq!(owner(snap).as_deref(), Some(store.admin_access_key()), "the bucket stays the admin's");
    let policy = bucket_policy(&store, &shared).await.unwrap();
    for (name, _) in apps {
        let user_name = users.get(name).await.unwrap().status.unwrap().user_name.unwrap();
        assert!(policy.contains(&user_name), "the policy names {name}: {policy}");
    }

    // Converged: resyncs (every 2 s) write nothing to the store and no status.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = op.metric_sum("s3op_backend_writes_total").await.unwrap();
    let status_writes = op.metric_sum("s3op_status_writes_total").await.unwrap();
    let reconciles = op.metric_sum("s3op_reconciles_total").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(op.metric_sum("s3op_reconciles_total").await.unwrap() >= reconciles + 4.0, "resyncs ran");
    assert_eq!(op.metric_sum("s3op_backend_writes_total").await.unwrap(), writes, "a converged resync wrote");
    assert_eq!(op.metric_sum("s3op_status_writes_total").await.unwrap(), status_writes, "status written");

    // Revoking writer-a's grant takes its statement and its access, and nobody else's.
    let writer_a = users.get("writer-a").await.unwrap().status.unwrap().user_name.unwrap();
    let revoke = serde_json::json!({"spec": {"access": []}});
    users.patch("writer-a", &PatchParams::default(), &Patch::Merge(&revoke)).await.unwrap();
    wait_until("writer-a loses its access", TIMEOUT, || async {
        !put(&clients[0].1, &shared, "late.txt").await && !get(&clients[0].1, &shared, "seed").await
    })
    .await
    .unwrap();
    let policy = bucket_policy(&store, &shared).await.unwrap();
    assert!(!policy.contains(&writer_a), "writer-a's statement stayed: {policy}");
    assert!(put(&clients[1].1, &shared, "still.txt").await, "writer-b lost access with writer-a");
    assert!(get(&clients[2].1, &shared, "seed").await, "reader lost access with writer-a");
    empty(&store, &shared).await;
    op.stop().await.unwrap();
}

/// An upgrade from the versions that granted by making the user the bucket's owner: the new
/// operator moves the grant to the bucket's policy while the app keeps working, without one
/// failed request. The bucket stays with the user while granted (VersityGW's change of owner
/// drops a bucket's policy, so moving it would cut the app off; under a policy the owner has
/// no rights of its own) and goes back to the admin, access and all, when the grant goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_owner_based_grants_move_to_bucket_policies_without_a_gap() {
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("vgw-upgrade").await.unwrap();
    let client = client().await;
    let first = Operator::start(client.clone(), &store, &ns, "2s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    buckets.create(&pp, &bucket("data", DeletionPolicy::Delete)).await.unwrap();
    users.create(&pp, &user("app", &[("data", Permission::ReadWrite)])).await.unwrap();
    let data = wait_ready(&buckets, "data").await.status.unwrap().bucket_name.unwrap();
    let app = wait_ready(&users, "app").await;
    let user_name = app.status.as_ref().unwrap().user_name.clone().unwrap();
    let s3 = app_client(&secret_of(&secrets, &app).await);
    let args = first.args();
    let markers = first.marker_bucket().unwrap().to_string();
    first.stop().await.unwrap();

    // What an earlier version left: the user owns the bucket, no policy, a record without grants.
    let admin = store.s3_client();
    admin.delete_bucket_policy().bucket(&data).send().await.unwrap();
    let path = format!("/change-bucket-owner?bucket={data}&owner={user_name}");
    let (status, reply) = store.signed_admin_call("PATCH", &path, Vec::new()).await.unwrap();
    assert!((200..300).contains(&status), "change-bucket-owner: {status} {}", String::from_utf8_lossy(&reply));
    let record = format!("users/{user_name}");
    let head = admin.head_object().bucket(&markers).key(&record).send().await.unwrap();
    let mut rewrite = admin.put_object().bucket(&markers).key(&record).body(ByteStream::from_static(b""));
    for (k, v) in head.metadata().unwrap() {
        rewrite = rewrite.metadata(k, v);
    }
    rewrite.send().await.unwrap();
    assert!(put(&s3, &data, "legacy.txt").await, "the owner writes before the upgrade");

    // The app keeps working while the new operator moves it over.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app_loop = {
        let (s3, data, stop) = (s3.clone(), data.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("during-{i}.txt");
                let body = ByteStream::from_static(b"hello");
                let round = match s3.put_object().bucket(&data).key(&key).body(body).send().await {
                    Ok(_) => s3
                        .get_object()
                        .bucket(&data)
                        .key(&key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("GetObject: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
                    Err(e) => Err(format!("PutObject: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
                };
                match round {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(format!("{key}: {e}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    let second = Operator::start_with(client.clone(), args).await.unwrap();
    wait_until("a bucket policy names the user", TIMEOUT, || async {
        bucket_policy(&store, &data).await.is_some_and(|p| p.contains(&user_name))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = app_loop.await.unwrap();
    eprintln!("during the upgrade: {ok} put+get pairs succeeded, {} failed", failed.len());
    assert!(failed.is_empty(), "requests failed during the upgrade: {failed:?}");
    assert!(ok >= 10, "too few requests to tell: {ok}");
    assert!(get(&s3, &data, "legacy.txt").await, "data from before the upgrade");
    assert!(s3.delete_bucket().bucket(&data).send().await.is_err(), "the owner still deletes the bucket");
    let public = public_read_policy(&data);
    assert!(s3.put_bucket_policy().bucket(&data).policy(public).send().await.is_err(), "the owner set a policy");
    assert!(s3.delete_bucket_policy().bucket(&data).send().await.is_err(), "the owner dropped the policy");
    let record_body = admin.get_object().bucket(&markers).key(&record).send().await.unwrap();
    let body = record_body.body.collect().await.unwrap().into_bytes();
    assert!(String::from_utf8_lossy(&body).contains(&data), "the record names the bucket now");
    wait_ready(&users, "app").await;

    // The grant going takes the access and gives the bucket back to the admin.
    let revoke = serde_json::json!({"spec": {"access": []}});
    users.patch("app", &PatchParams::default(), &Patch::Merge(&revoke)).await.unwrap();
    wait_until("the bucket is the admin's again", TIMEOUT, || async {
        let snap = s3op_tests::inspect::snapshot(&store).await.unwrap();
        snap.buckets.get(&data).map(String::as_str) == Some(store.admin_access_key())
    })
    .await
    .unwrap();
    assert!(!put(&s3, &data, "after.txt").await && !get(&s3, &data, "legacy.txt").await, "access stayed");
    assert!(bucket_policy(&store, &data).await.is_none(), "a policy without statements stayed");
    empty(&store, &data).await;
    second.stop().await.unwrap();
}

/// A bucket policy the operator did not write is reported on the S3User (Stalled, Conflict),
/// never merged or dropped; once the administrator removes it, the grant is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_a_bucket_policy_written_by_hand_is_reported_not_merged() {
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("vgw-foreign").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "2s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    buckets.create(&pp, &bucket("data", DeletionPolicy::Delete)).await.unwrap();
    users.create(&pp, &user("app", &[("data", Permission::ReadWrite)])).await.unwrap();
    let data = wait_ready(&buckets, "data").await.status.unwrap().bucket_name.unwrap();
    wait_ready(&users, "app").await;

    let by_hand = public_read_policy(&data);
    store.s3_client().put_bucket_policy().bucket(&data).policy(&by_hand).send().await.unwrap();
    let u = wait_condition(&users, "app", "False", "Conflict").await;
    let conditions = &u.status.as_ref().unwrap().conditions;
    let stalled = conditions.iter().find(|c| c.type_ == "Stalled").expect("a Stalled condition");
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "Conflict"));
    assert!(stalled.message.contains("bucket policy"), "{}", stalled.message);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept: serde_json::Value = serde_json::from_str(&bucket_policy(&store, &data).await.unwrap()).unwrap();
    assert_eq!(kept, serde_json::from_str::<serde_json::Value>(&by_hand).unwrap(), "the policy was changed");

    store.s3_client().delete_bucket_policy().bucket(&data).send().await.unwrap();
    let u = wait_ready(&users, "app").await;
    assert!(u.status.unwrap().conditions.iter().all(|c| c.type_ != "Stalled"), "Stalled stays after recovery");
    op.stop().await.unwrap();
}
