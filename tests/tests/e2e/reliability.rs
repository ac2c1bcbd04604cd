//! Reliability under faults, on the real control plane and real stores: a store outage in the
//! middle of a rollout, a kube-apiserver restart in the middle of a rollout, and an operator
//! killed with SIGKILL at ten random moments of a rollout. Each ends with every object Ready
//! and, where keys could have been duplicated or orphaned, with an audit of everything on the
//! store against what the S3Users say (`s3op_tests::inventory`).
//!
//! No timing is asserted beyond generous convergence timeouts: speed is `cargo xtask bench`'s.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use kube::{Api, Client, api::PostParams};
use s3op_api::{S3Bucket, S3User};
use s3op_tests::{
    binary::{OperatorProcess, operator_binary, store_env},
    control_plane::ControlPlane,
    fixture::{self, client, cp, start},
    inventory::{Audit, audit_namespace, describe_not_ready, events_with_reason},
    operator::Operator,
    rollout::{Progress, Rollout},
    stores::StoreKind,
    wait::{Look, poll},
};

/// Requests in flight while a rollout is applied.
const APPLY_CONCURRENCY: usize = 16;

/// Generous bound on convergence after a fault: slow here means stuck, not slow.
const CONVERGE: Duration = Duration::from_secs(300);

/// Pairs of the MinIO rollouts. Each new MinIO user costs about five Argon2id derivations
/// (64 MiB each) for the admin API's payload encryption, some two seconds of CPU for the debug
/// build on two cores: 30 pairs keep the rollout going through the faults, and the test short.
const MINIO_PAIRS: usize = 30;

fn ready(p: &Progress) -> usize {
    p.buckets_ready + p.users_ready
}

/// Applies the rollout in the background (the test goes on to break things meanwhile).
fn apply_in_background(rollout: &Rollout, client: &Client) -> tokio::task::JoinHandle<anyhow::Result<Duration>> {
    let (rollout, client) = (rollout.clone(), client.clone());
    tokio::spawn(async move { rollout.apply(&client, APPLY_CONCURRENCY).await })
}

/// Waits until at least one object of the rollout is Ready: the rollout is under way.
async fn wait_first_ready(rollout: &Rollout, client: &Client) -> Progress {
    poll("an object of the rollout Ready", CONVERGE, Duration::from_millis(100), || async {
        let p = rollout.progress(client).await?;
        Ok(if ready(&p) > 0 { Look::Done(p) } else { Look::NotYet(format!("{:?}", p.reasons)) })
    })
    .await
    .unwrap()
}

/// Nothing was deleted behind the operator's back in these tests, so an event saying a user
/// or bucket went missing and was created again is a false report.
async fn assert_nothing_recreated(test: &str, client: &Client, namespace: &str) {
    let recreated = events_with_reason(client, namespace, "Recreated").await.unwrap();
    assert!(recreated.is_empty(), "{test}: nothing went missing, yet: {recreated:#?}");
}

fn report_audit(test: &str, audit: &Audit) {
    let keys: usize = audit.inventory.users.values().map(Vec::len).sum();
    eprintln!(
        "{test}: audit ok: {} S3Buckets, {} S3Users; store holds {} users with {keys} keys, {} buckets, {} policies, \
         {} markers; {} S3 calls with the Secrets' keys succeeded",
        audit.buckets,
        audit.users,
        audit.inventory.users.len(),
        audit.inventory.buckets.len(),
        audit.inventory.policies.len(),
        audit.inventory.markers.len(),
        audit.key_checks
    );
}

/// A store outage of 30 s in the middle of a rollout of 200 pairs: objects say
/// `BackendUnavailable` meanwhile, and once the store is back every object ends Ready with the
/// same operator (never restarted), and the store holds exactly what the objects say.
///
/// VersityGW is the store here: its admin API is plain signed XML, so 200 pairs roll out in
/// seconds and the outage, not the store's own cost, is what the test measures. MinIO
/// encrypts every user and key call with an Argon2id-derived key (64 MiB each), which makes
/// a 200-pair rollout CPU-bound on two cores; MinIO's keys are exercised by the two tests
/// below. VersityGW also restarts in about a second, keeping its accounts and buckets on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_mid_rollout_reports_backend_unavailable_then_converges() {
    const N: usize = 200;
    const OUTAGE: Duration = Duration::from_secs(30);
    let test = "store outage";
    let started = Instant::now();
    let mut store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("outage").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "20s", &[]).await.unwrap();
    let marker_bucket = op.marker_bucket().unwrap().to_string();
    let rollout = Rollout::new(&ns, N);

    let apply = apply_in_background(&rollout, &client);
    let before = wait_first_ready(&rollout, &client).await;
    store.stop().await;
    let at_stop = rollout.progress(&client).await.unwrap();
    eprintln!(
        "{test}: store stopped {:?} into the run with {} of {} objects Ready ({:?})",
        started.elapsed(),
        ready(&at_stop),
        2 * N,
        at_stop.reasons
    );
    assert!(ready(&before) < 2 * N, "the rollout was over before the store stopped: {before:?}");

    // The store stays down; the API server does not, so the rollout is applied in full meanwhile.
    let down = Instant::now();
    let mut most_unavailable = 0;
    let mut last = at_stop;
    while down.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = rollout.progress(&client).await.unwrap();
        most_unavailable = most_unavailable.max(last.reasons.get("BackendUnavailable").copied().unwrap_or(0));
        assert!(op.is_running(), "{test}: the operator stopped during the outage");
    }
    let applied = apply.await.unwrap().unwrap();
    eprintln!(
        "{test}: after {OUTAGE:?} down: {} Ready, reasons {:?}; at most {most_unavailable} objects said \
         BackendUnavailable at once; all {N} pairs applied in {applied:?}",
        ready(&last),
        last.reasons
    );
    assert!(most_unavailable > 0, "{test}: no object reported BackendUnavailable during the outage: {last:?}");

    store.restart().await.unwrap();
    let took = wait_all_ready(&rollout, &client).await;
    eprintln!("{test}: all {} objects Ready {took:?} after the store came back", 2 * N);
    assert!(op.is_running(), "{test}: the operator task ended");
    let audit = audit_namespace(&client, &ns, &store, &marker_bucket).await.unwrap_or_else(|e| panic!("{e:#}"));
    report_audit(test, &audit);
    assert_eq!(audit.users, N);
    assert_nothing_recreated(test, &client, &ns).await;
    assert!(op.is_running(), "{test}: the operator task ended");
    op.stop().await.unwrap();
    eprintln!("{test}: done in {:?}", started.elapsed());
}

/// kube-apiserver restarted (down 5 s) in the middle of a rollout on MinIO: the operator's
/// watches resume by themselves (a pair created after the restart becomes Ready), everything
/// converges, and MinIO holds exactly one user per S3User with exactly its Secret's key, and
/// nothing else. A control plane of its own, so no other test sees the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_mid_rollout_converges_without_duplicates() {
    const N: usize = MINIO_PAIRS;
    let test = "apiserver restart";
    let started = Instant::now();
    let (cp, store) = tokio::join!(ControlPlane::start(), start(StoreKind::Minio));
    let mut cp = cp.unwrap();
    let ns = cp.namespace("apiserver").await.unwrap();
    let client = cp.client().await.unwrap();
    let op = Operator::start(client.clone(), &store, &ns, "20s", &[]).await.unwrap();
    let marker_bucket = op.marker_bucket().unwrap().to_string();
    let rollout = Rollout::new(&ns, N);

    let apply = apply_in_background(&rollout, &client);
    let before = wait_first_ready(&rollout, &client).await;
    let t = Instant::now();
    cp.restart_apiserver(Duration::from_secs(5)).await.unwrap();
    eprintln!(
        "{test}: kube-apiserver restarted with {} of {} objects Ready; down and back in {:?}",
        ready(&before),
        2 * N,
        t.elapsed()
    );
    assert!(ready(&before) < 2 * N, "the rollout was over before the restart: {before:?}");
    // The first pass fails where it met the stopped server; a second pass creates the rest.
    match apply.await.unwrap() {
        Ok(d) => eprintln!("{test}: the first apply pass got through in {d:?}"),
        Err(e) => eprintln!("{test}: the first apply pass failed during the restart ({e:#}); applying again"),
    }
    rollout.apply(&client, APPLY_CONCURRENCY).await.unwrap();

    // Created only now: only a resumed watch can bring it to the operator.
    let mut all = rollout.clone();
    all.n = N + 1;
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    buckets.create(&PostParams::default(), &all.bucket(N)).await.unwrap();
    users.create(&PostParams::default(), &all.user(N)).await.unwrap();

    let took = wait_all_ready(&all, &client).await;
    eprintln!("{test}: all {} objects Ready {took:?} after the second apply pass, the late pair too", 2 * (N + 1));
    assert!(op.is_running(), "{test}: the operator task ended");
    let audit = audit_namespace(&client, &ns, &store, &marker_bucket).await.unwrap_or_else(|e| panic!("{e:#}"));
    report_audit(test, &audit);
    assert_eq!(audit.users, N + 1);
    assert_nothing_recreated(test, &client, &ns).await;
    assert!(op.is_running(), "{test}: the operator task ended");
    op.stop().await.unwrap();
    eprintln!("{test}: done in {:?}", started.elapsed());
}

/// Waits until every pair of `rollout` is Ready; fails describing the objects that are not.
async fn wait_all_ready(rollout: &Rollout, client: &Client) -> Duration {
    match rollout.wait_ready(client, CONVERGE, Duration::from_secs(1)).await {
        Ok(took) => took,
        Err(e) => {
            let details = describe_not_ready(client, &rollout.namespace).await.unwrap_or_default();
            panic!("{e:#}\n{details}")
        }
    }
}

/// The operator binary killed with SIGKILL at ten random moments of a rollout on MinIO and
/// started again each time: the final state is exact. One MinIO user per S3User, holding
/// exactly its Secret's key, that key working, and no orphaned user, key, policy, bucket or
/// marker on the store. The moments come from a seed printed first; `S3OP_KILL_SEED=<seed>`
/// replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_leaves_exact_state() {
    const N: usize = MINIO_PAIRS;
    const KILLS: usize = 10;
    let test = "sigkill";
    let seed = std::env::var("S3OP_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: kill moments from seed {seed} (replay with S3OP_KILL_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let store = start(StoreKind::Minio).await;
    let ns = cp().namespace("sigkill").await.unwrap();
    let client = client().await;
    let mut env = store_env(&store);
    env.push(("WATCH_NAMESPACE".into(), ns.clone()));
    env.push(("COMPAT_MODE".into(), "false".into()));
    let logs = tempfile::Builder::new().prefix("s3op-sigkill-").tempdir().unwrap();
    let log = logs.path().join("operator.log");
    let mut op = OperatorProcess::spawn(&operator_binary("debug").unwrap(), cp().kubeconfig(), env, &log).unwrap();
    op.wait_ready(Duration::from_secs(60)).await.unwrap();
    let marker_bucket = op.env_var("MARKER_BUCKET").unwrap().to_string();
    let rollout = Rollout::new(&ns, N);

    let apply = apply_in_background(&rollout, &client);
    for kill in 1..=KILLS {
        let after = Duration::from_millis(rng.u64(250..=6_000));
        tokio::time::sleep(after).await;
        let p = rollout.progress(&client).await.unwrap();
        op.kill().unwrap();
        eprintln!(
            "{test}: kill {kill}/{KILLS} {after:?} after ready, with {} buckets and {} users Ready of {N} pairs",
            p.buckets_ready, p.users_ready
        );
        op.start().unwrap();
        op.wait_ready(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e:#}"));
    }
    apply.await.unwrap().unwrap();
    let took = match rollout.wait_ready(&client, CONVERGE, Duration::from_secs(1)).await {
        Ok(took) => took,
        Err(e) => {
            let details = describe_not_ready(&client, &ns).await.unwrap_or_default();
            panic!("{e:#}\n{details}seed {seed}; operator log ({}):\n{}", log.display(), op.log_tail(60))
        }
    };
    eprintln!("{test}: all {} objects Ready {took:?} after the last restart", 2 * N);
    let audit = match audit_namespace(&client, &ns, &store, &marker_bucket).await {
        Ok(a) => a,
        Err(e) => panic!("{e:#}\nseed {seed}; operator log ({}):\n{}", log.display(), op.log_tail(60)),
    };
    report_audit(test, &audit);
    assert_eq!(audit.users, N);
    assert_nothing_recreated(test, &client, &ns).await;
    let status = op.terminate(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{test}: exit after SIGTERM: {status}");
    eprintln!("{test}: done in {:?}", started.elapsed());
}

/// The state a bucket creation leaves when it is cut between CreateBucket and its tags (the
/// operator killed, the store stopped: the store-outage test above met it): the claim marker
/// written, the bucket made, no tags. The next ensure must take the bucket up again, and only
/// such a bucket: not one claimed by another object, nor one somebody wrote to.
async fn interrupted_creation_is_taken_up_again(kind: StoreKind) {
    use aws_sdk_s3::primitives::ByteStream;
    use s3op_backends::{
        Backend, BackendError, BucketDeletion, BucketSpec, Change, Owner,
        ledger::{Conditional, Ledger, Subject},
    };
    use s3op_tests::stores::unique_name;

    let store = start(kind).await;
    let marker_bucket = unique_name("s3op-markers");
    let backend: Box<dyn Backend> = match kind {
        StoreKind::Versitygw => Box::new(fixture::versitygw(&store, &marker_bucket)),
        StoreKind::Minio => Box::new(fixture::minio(&store, &marker_bucket)),
        other => panic!("{other} keeps no bucket markers in S3"),
    };
    let s3 = store.s3_client();
    let markers = Ledger::new(s3.clone(), kind.as_str(), marker_bucket.clone(), Conditional::Ignored);
    let owner = |name: &str| Owner::s3bucket("reliability", name, format!("uid-{name}"));
    let spec = |bucket: &str, claim: &str| BucketSpec {
        name: bucket.to_string(),
        owner: owner(claim),
        versioning: None,
        object_lock: false,
        tags: Default::default(),
        quota: None,
    };
    // What a cut creation leaves behind: the claim, and the bucket without its tags.
    let cut = |bucket: String, claim: &'static str| {
        let (markers, s3) = (markers.clone(), s3.clone());
        async move {
            markers.claim(Subject::Bucket, &bucket, &owner(claim), || markers.create_bucket()).await.unwrap();
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
        }
    };

    let resumed = unique_name("cut");
    cut(resumed.clone(), "mine").await;
    assert_eq!(backend.ensure_bucket(&spec(&resumed, "mine"), false).await.unwrap(), Change::Updated);
    let info = backend.describe_bucket(&resumed).await.unwrap().unwrap();
    assert_eq!(info.owner, Some(owner("mine")), "{kind}: the cut creation is tagged as ours");
    assert_eq!(backend.ensure_bucket(&spec(&resumed, "mine"), false).await.unwrap(), Change::Unchanged);

    // Another object's claim is never taken over, and neither is a bucket holding data.
    let theirs = unique_name("cut");
    cut(theirs.clone(), "theirs").await;
    let err = backend.ensure_bucket(&spec(&theirs, "mine"), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: another claim: {err}");
    let used = unique_name("cut");
    cut(used.clone(), "mine").await;
    s3.put_object().bucket(&used).key("data").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let err = backend.ensure_bucket(&spec(&used, "mine"), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: a bucket written to: {err}");
    let foreign = unique_name("foreign");
    s3.create_bucket().bucket(&foreign).send().await.unwrap();
    let err = backend.ensure_bucket(&spec(&foreign, "mine"), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: a bucket without a claim: {err}");

    // The claim goes with the bucket.
    assert_eq!(backend.delete_bucket(&resumed, false).await.unwrap(), BucketDeletion::Deleted);
    assert_eq!(markers.holder(Subject::Bucket, &resumed).await.unwrap(), None, "{kind}: claim left behind");
}

#[tokio::test]
async fn versitygw_interrupted_bucket_creation_is_taken_up_again() {
    interrupted_creation_is_taken_up_again(StoreKind::Versitygw).await;
}

#[tokio::test]
async fn minio_interrupted_bucket_creation_is_taken_up_again() {
    interrupted_creation_is_taken_up_again(StoreKind::Minio).await;
}
