//! Stores as objects end to end: S3Store and ClusterS3Store objects, each with its own backend
//! in one operator process, against the real control plane and the real stores. Every store's
//! objects work on that store alone; a store that is refused, wrong, down or deleted degrades
//! only its own objects, and deleting a store deletes nothing on it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use s3op_api::{
    BucketAccess, ClusterS3Store, ClusterS3StoreSpec, DEFAULT_COMPAT_ANNOTATION, DeletionPolicy, Permission, S3Bucket,
    S3BucketSpec, S3Store, S3StoreSpec, S3User, S3UserSpec, STORE_ANNOTATION, StoreKind as RefKind, StoreRef,
    secret_keys,
    store::{NamespaceName, NamespaceSelection},
};
use s3op_tests::{
    compat::{random_access_key, random_secret},
    control_plane::ControlPlane,
    fixture::{admin_secret, auth_by_secret, client, cp, provider_of, shared_store, start},
    operator::Operator,
    stores::{Store, StoreKind, s3_config, unique_name},
    wait::{HasConditions, Look, TIMEOUT, poll, wait_event, wait_gone, wait_ready_condition},
};
use serde::de::DeserializeOwned;

async fn wait_condition<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_ready_condition(api, name, status, reason).await.unwrap()
}

async fn wait_ready<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_condition(api, name, "True", "Available").await
}

fn on(kind: RefKind, name: &str) -> Option<StoreRef> {
    Some(StoreRef { kind, name: name.to_string() })
}

fn bucket(name: &str, store: Option<StoreRef>, policy: DeletionPolicy) -> S3Bucket {
    S3Bucket::new(
        name,
        S3BucketSpec {
            store_ref: store,
            bucket_name: Some(unique_name(name)),
            deletion_policy: policy,
            ..Default::default()
        },
    )
}

fn user(name: &str, store: Option<StoreRef>, buckets: &[&str]) -> S3User {
    S3User::new(
        name,
        S3UserSpec {
            store_ref: store,
            access: buckets
                .iter()
                .map(|b| BucketAccess { bucket: b.to_string(), permission: Permission::ReadWrite })
                .collect(),
            ..Default::default()
        },
    )
}

/// An S3Store of `store` in `namespace` reading the admin Secret `<name>-admin` there, which it
/// writes with the store's admin key; its ledger in a marker bucket of its own.
async fn s3store(client: &Client, namespace: &str, name: &str, store: &Store) -> S3Store {
    s3store_at(client, namespace, name, store, provider_of(store)).await
}

/// [`s3store`] reaching the store through `provider` (another endpoint for the same store).
async fn s3store_at(
    client: &Client,
    namespace: &str,
    name: &str,
    store: &Store,
    provider: s3op_api::store::Provider,
) -> S3Store {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret_name = format!("{name}-admin");
    let secret = admin_secret(store, &secret_name, store.admin_access_key(), store.admin_secret_key());
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let spec = S3StoreSpec {
        provider,
        auth: auth_by_secret(&secret_name, None),
        marker_bucket: Some(unique_name("markers")),
        ..Default::default()
    };
    Api::<S3Store>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &S3Store::new(name, spec))
        .await
        .unwrap()
}

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// True when the Secret's credentials put and get an object in `bucket` at `endpoint`.
async fn works_at(secret: &Secret, endpoint: &str, bucket: &str) -> bool {
    let s3 = aws_sdk_s3::Client::from_conf(
        s3_config(
            endpoint,
            &text(secret, secret_keys::REGION),
            &text(secret, secret_keys::ACCESS_KEY_ID),
            &text(secret, secret_keys::SECRET_ACCESS_KEY),
        )
        .build(),
    );
    let key = unique_name("probe");
    if s3.put_object().bucket(bucket).key(&key).body(ByteStream::from_static(b"hello")).send().await.is_err() {
        return false;
    }
    match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(out) => out.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == b"hello"),
        Err(_) => false,
    }
}

/// True when the bucket exists on `store` (asked with its admin key).
async fn bucket_exists(store: &Store, bucket: &str) -> bool {
    store.s3_client().head_bucket().bucket(bucket).send().await.is_ok()
}

/// An operator with no default store, watching `namespace` (or, with `None`, the whole cluster
/// of `client`), resyncing every 3 s.
async fn operator(client: Client, namespace: Option<&str>, compat: bool) -> Operator {
    operator_resyncing(client, namespace, compat, "3s").await
}

/// [`operator`] resyncing every `resync`: a long one shows that what converges was woken.
async fn operator_resyncing(client: Client, namespace: Option<&str>, compat: bool, resync: &str) -> Operator {
    let mut args = vec!["--resync-interval".to_string(), resync.into(), "--compat-mode".into(), compat.to_string()];
    if let Some(ns) = namespace {
        args.extend(["--watch-namespace".to_string(), ns.to_string()]);
    }
    Operator::start_with(client, args).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_operator_serves_every_kind_of_store_at_once() {
    let client = client().await;
    let ns = cp().namespace("stores-all").await.unwrap();
    let (v, m, g, a) = tokio::join!(
        shared_store(StoreKind::Versitygw),
        shared_store(StoreKind::Minio),
        shared_store(StoreKind::Garage),
        shared_store(StoreKind::Moto),
    );
    let all: Vec<Arc<Store>> = vec![v, m, g, a];
    let op = operator(client.clone(), Some(&ns), false).await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    for store in &all {
        let name = store.kind().backend_name();
        s3store(&client, &ns, name, store).await;
        let on_it = on(RefKind::S3Store, name);
        buckets
            .create(&PostParams::default(), &bucket(&format!("data-{name}"), on_it.clone(), DeletionPolicy::Retain))
            .await
            .unwrap();
        users
            .create(&PostParams::default(), &user(&format!("app-{name}"), on_it, &[&format!("data-{name}")]))
            .await
            .unwrap();
    }
    for store in &all {
        let name = store.kind().backend_name();
        let s = wait_ready(&stores, name).await;
        let status = s.status.unwrap();
        assert_eq!(status.provider.as_deref(), Some(name));
        assert_eq!(status.observed_generation, s.metadata.generation);
        let caps = status.capabilities.unwrap();
        assert!(caps.read_only_grants, "{name}: {caps:?}");
    }
    for store in &all {
        let name = store.kind().backend_name();
        let b = wait_ready(&buckets, &format!("data-{name}")).await;
        let u = wait_ready(&users, &format!("app-{name}")).await;
        let shown = format!("S3Store/{name}");
        assert_eq!(b.status.as_ref().unwrap().store.as_deref(), Some(shown.as_str()));
        assert_eq!(u.status.as_ref().unwrap().store.as_deref(), Some(shown.as_str()));
        assert_eq!(b.status.as_ref().unwrap().backend.as_deref(), Some(name));
        let secret = secrets.get(&u.status.unwrap().secret_name.unwrap()).await.unwrap();
        let data = b.spec.bucket_name.unwrap();
        assert!(works_at(&secret, store.endpoint(), &data).await, "{name}: the Secret works on its own store");
        for other in all.iter().filter(|o| o.kind() != store.kind()) {
            assert!(
                !works_at(&secret, other.endpoint(), &data).await,
                "{name}'s Secret must not work on {}",
                other.kind()
            );
        }
    }

    // Metrics carry the store: its readiness, and every backend call's.
    let metrics = op.metrics().await.unwrap();
    for store in &all {
        let label = format!("S3Store/{ns}/{}", store.kind().backend_name());
        assert!(metrics.contains(&format!("s3op_store_ready{{store=\"{label}\"}} 1")), "{label}:\n{metrics}");
        assert!(metrics.contains(&format!("s3op_backend_writes_total{{store=\"{label}\"")), "{label}");
    }

    // `kubectl get` names each object's store.
    let out = cp().kubectl(&["get", "s3b,s3u", "-n", &ns]).unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("STORE") && table.contains("S3Store/minio") && table.contains("S3Store/garage"), "{table}");

    // A user and its buckets share one store.
    users
        .create(&PostParams::default(), &user("mixed", on(RefKind::S3Store, "minio"), &["data-garage"]))
        .await
        .unwrap();
    let mixed = wait_condition(&users, "mixed", "False", "StoreMismatch").await;
    let message = &mixed.ready().unwrap().message;
    assert!(message.contains("data-garage"), "{message}");
    // The bucket's own user is untouched, and the refused one got no user anywhere.
    let garage = all.iter().find(|s| s.kind() == StoreKind::Garage).unwrap();
    let owner = secrets.get("app-garage-s3-credentials").await.unwrap();
    let data = buckets.get("data-garage").await.unwrap().spec.bucket_name.unwrap();
    assert!(works_at(&owner, garage.endpoint(), &data).await, "the bucket's own user still works");
    assert_eq!(secrets.get_opt("mixed-s3-credentials").await.unwrap().map(|s| s.name_any()), None);
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_store_serves_the_namespaces_it_allows_and_a_namespaced_store_only_its_own() {
    // Cluster-wide: an operator of its own, on a control plane of its own.
    let (cp, store) = tokio::join!(ControlPlane::start(), shared_store(StoreKind::Minio));
    let cp = cp.unwrap();
    let client = cp.client().await.unwrap();
    let storage = cp.namespace("storage").await.unwrap();
    let (a, b, c) = (
        cp.namespace("team-a").await.unwrap(),
        cp.namespace("team-b").await.unwrap(),
        cp.namespace("team-c").await.unwrap(),
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = serde_json::json!({"metadata": {"labels": {"s3-store": "minio"}}});
    namespaces.patch(&c, &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &storage);
    let admin = admin_secret(&store, "minio-admin", store.admin_access_key(), store.admin_secret_key());
    secrets.create(&PostParams::default(), &admin).await.unwrap();
    let cluster_stores: Api<ClusterS3Store> = Api::all(client.clone());
    let spec = ClusterS3StoreSpec {
        provider: provider_of(&store),
        auth: auth_by_secret("minio-admin", Some(&storage)),
        marker_bucket: Some(unique_name("markers")),
        namespaces: Some(NamespaceSelection { names: vec![NamespaceName(a.clone())], selector: None }),
        ..Default::default()
    };
    cluster_stores.create(&PostParams::default(), &ClusterS3Store::new("minio", spec)).await.unwrap();
    // No resync within the test: everything below converges because something woke it.
    let op = operator_resyncing(client.clone(), None, true, "10m").await;
    wait_ready(&cluster_stores, "minio").await;

    let in_ns = |ns: &str| Api::<S3Bucket>::namespaced(client.clone(), ns);
    let shared = on(RefKind::ClusterS3Store, "minio");
    for ns in [&a, &b, &c] {
        in_ns(ns)
            .create(&PostParams::default(), &bucket("data", shared.clone(), DeletionPolicy::Retain))
            .await
            .unwrap();
    }
    wait_ready(&in_ns(&a), "data").await;
    for ns in [&b, &c] {
        let refused = wait_condition(&in_ns(ns), "data", "False", "StoreNotAllowed").await;
        assert!(refused.ready().unwrap().message.contains(ns.as_str()), "{:?}", refused.ready());
        let name = refused.spec.bucket_name.unwrap();
        assert!(!bucket_exists(&store, &name).await, "nothing is created for a refused namespace");
    }
    // A compatibility Secret naming the store is refused the same way in b.
    let (access, secret) = (random_access_key(), random_secret());
    let compat_bucket = unique_name("compat");
    let compat = Secret {
        metadata: ObjectMeta {
            name: Some("legacy".into()),
            annotations: Some(BTreeMap::from([
                (DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string()),
                (STORE_ANNOTATION.to_string(), "minio".to_string()),
            ])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            ("bucket-name".to_string(), compat_bucket.clone()),
            ("access-key".to_string(), access.clone()),
            ("secret-key".to_string(), secret.clone()),
            ("endpoint-url".to_string(), store.endpoint().to_string()),
            ("role".to_string(), "user".to_string()),
        ])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), &b).create(&PostParams::default(), &compat).await.unwrap();
    let note = wait_event(&client, &b, "legacy", "StoreNotAllowed").await.unwrap().note;
    assert!(note.contains("minio"), "{note}");
    assert!(!bucket_exists(&store, &compat_bucket).await);

    // Allowing b by name and c by label lets both converge without touching them.
    let allow = serde_json::json!({"spec": {"namespaces": {
        "names": [a, b],
        "selector": {"matchLabels": {"s3-store": "minio"}},
    }}});
    cluster_stores.patch("minio", &PatchParams::default(), &Patch::Merge(&allow)).await.unwrap();
    for ns in [&b, &c] {
        let ready = wait_ready(&in_ns(ns), "data").await;
        assert!(bucket_exists(&store, &ready.spec.bucket_name.unwrap()).await);
    }
    // A namespace that gets the label later converges as soon as it has it.
    let d = cp.namespace("team-d").await.unwrap();
    in_ns(&d).create(&PostParams::default(), &bucket("data", shared.clone(), DeletionPolicy::Retain)).await.unwrap();
    wait_condition(&in_ns(&d), "data", "False", "StoreNotAllowed").await;
    namespaces.patch(&d, &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();
    wait_ready(&in_ns(&d), "data").await;
    let provisioned = wait_event(&client, &b, "legacy", "Provisioned").await.unwrap().note;
    assert!(provisioned.contains(&compat_bucket), "{provisioned}");
    let app = aws_sdk_s3::Client::from_conf(s3_config(store.endpoint(), store.region(), &access, &secret).build());
    app.put_object().bucket(&compat_bucket).key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();

    // A namespaced store: usable from its own namespace only, reading only its own Secrets.
    s3store(&client, &a, "own", &store).await;
    in_ns(&a)
        .create(&PostParams::default(), &bucket("mine", on(RefKind::S3Store, "own"), DeletionPolicy::Retain))
        .await
        .unwrap();
    in_ns(&b)
        .create(&PostParams::default(), &bucket("theirs", on(RefKind::S3Store, "own"), DeletionPolicy::Retain))
        .await
        .unwrap();
    wait_ready(&in_ns(&a), "mine").await;
    let theirs = wait_condition(&in_ns(&b), "theirs", "False", "StoreNotFound").await;
    assert!(!bucket_exists(&store, &theirs.spec.bucket_name.unwrap()).await);
    let mut reaching = S3Store::new(
        "reaching",
        S3StoreSpec {
            provider: provider_of(&store),
            auth: auth_by_secret("minio-admin", Some(&storage)),
            ..Default::default()
        },
    );
    reaching.metadata.namespace = Some(a.clone());
    let err =
        Api::<S3Store>::namespaced(client.clone(), &a).create(&PostParams::default(), &reaching).await.unwrap_err();
    assert!(err.to_string().contains("own namespace"), "{err}");
    // Nor can it borrow the operator's own identity.
    let mut borrowing = S3Store::new(
        "borrowing",
        S3StoreSpec {
            provider: s3op_api::store::Provider {
                aws: Some(s3op_api::store::AwsProvider { region: "us-east-1".into(), endpoint: None }),
                ..Default::default()
            },
            auth: s3op_api::store::StoreAuth { secret_ref: None, pod_identity: Some(Default::default()) },
            ..Default::default()
        },
    );
    borrowing.metadata.namespace = Some(a.clone());
    let err =
        Api::<S3Store>::namespaced(client.clone(), &a).create(&PostParams::default(), &borrowing).await.unwrap_err();
    assert!(err.to_string().contains("operator's own identity"), "{err}");
    // Nor aim the operator's requests at a URL of its choosing: a query would cut off the
    // paths the operator appends (here, towards a cloud metadata service's credentials).
    let mut aiming = S3Store::new(
        "aiming",
        S3StoreSpec {
            provider: s3op_api::store::Provider {
                minio: Some(s3op_api::store::S3Provider {
                    endpoint: "http://169.254.169.254/latest/meta-data/iam/security-credentials/node?".into(),
                    region: None,
                }),
                ..Default::default()
            },
            auth: auth_by_secret("minio-admin", None),
            ..Default::default()
        },
    );
    aiming.metadata.namespace = Some(a.clone());
    let err = Api::<S3Store>::namespaced(client.clone(), &a).create(&PostParams::default(), &aiming).await.unwrap_err();
    assert!(err.to_string().contains(s3op_api::store::ENDPOINT_MESSAGE), "{err}");
    op.stop().await.unwrap();
}

/// `n` Retain S3Buckets `<prefix>-<i>` on the S3Store `store`, created one after the other; their
/// names.
async fn buckets_on(buckets: &Api<S3Bucket>, store: &str, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for name in &names {
        buckets
            .create(&PostParams::default(), &bucket(name, on(RefKind::S3Store, store), DeletionPolicy::Retain))
            .await
            .unwrap();
    }
    names
}

/// On each S3Store named in `stores`, a Retain S3Bucket `<store>-data` and an S3User
/// `<store>-app` granted it, both Ready.
async fn ready_pairs(buckets: &Api<S3Bucket>, users: &Api<S3User>, stores: &[&str]) {
    for store in stores {
        let (b, u) = (format!("{store}-data"), format!("{store}-app"));
        buckets
            .create(&PostParams::default(), &bucket(&b, on(RefKind::S3Store, store), DeletionPolicy::Retain))
            .await
            .unwrap();
        users.create(&PostParams::default(), &user(&u, on(RefKind::S3Store, store), &[&b])).await.unwrap();
    }
    let apps: Vec<String> = stores.iter().map(|s| format!("{s}-app")).collect();
    wait_all(users, &apps.iter().map(String::as_str).collect::<Vec<_>>(), "True").await;
}

/// Waits until the Ready condition of every named object has `status`.
async fn wait_all<K>(api: &Api<K>, names: &[&str], status: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    for name in names {
        poll(&format!("{name} Ready={status}"), TIMEOUT, Duration::from_millis(200), || async {
            let o = api.get(name).await?;
            Ok(if o.ready().is_some_and(|c| c.status == status) {
                Look::Done(())
            } else {
                Look::NotYet(o.status_text())
            })
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_admin_key_is_picked_up_and_a_wrong_or_stopped_store_degrades_only_its_objects() {
    let client = client().await;
    let ns = cp().namespace("stores-rotate").await.unwrap();
    let (versitygw, minio) = tokio::join!(start(StoreKind::Versitygw), start(StoreKind::Minio));
    let mut minio = minio;
    let op = operator(client.clone(), Some(&ns), false).await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    s3store(&client, &ns, "gw", &versitygw).await;
    s3store(&client, &ns, "minio", &minio).await;
    ready_pairs(&buckets, &users, &["gw", "minio"]).await;

    // A second admin account, made on the store first, then written to the store's Secret.
    let (new_access, new_secret) = (unique_name("admin2").replace('-', ""), random_secret());
    let body =
        format!("<Account><Access>{new_access}</Access><Secret>{new_secret}</Secret><Role>admin</Role></Account>");
    let (status, reply) = versitygw.signed_admin_call("PATCH", "/create-user", body.into_bytes()).await.unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let rotate = |access: &str, secret: &str| {
        serde_json::json!({"stringData": {
            s3op_api::store::DEFAULT_ACCESS_KEY_ID_KEY: access,
            s3op_api::store::DEFAULT_SECRET_ACCESS_KEY_KEY: secret,
        }})
    };
    secrets.patch("gw-admin", &PatchParams::default(), &Patch::Merge(&rotate(&new_access, &new_secret))).await.unwrap();
    buckets
        .create(&PostParams::default(), &bucket("gw-more", on(RefKind::S3Store, "gw"), DeletionPolicy::Retain))
        .await
        .unwrap();
    wait_ready(&buckets, "gw-more").await;
    wait_ready(&stores, "gw").await;

    // A wrong key: the store and only its objects turn Ready=False; the other store's go on.
    secrets
        .patch("gw-admin", &PatchParams::default(), &Patch::Merge(&rotate(&new_access, "not-the-secret-key")))
        .await
        .unwrap();
    let refused = wait_condition(&stores, "gw", "False", "Forbidden").await;
    assert!(!refused.ready().unwrap().message.contains("not-the-secret-key"), "{:?}", refused.ready());
    wait_all(&buckets, &["gw-data", "gw-more"], "False").await;
    wait_condition(&users, "gw-app", "False", "StoreNotReady").await;
    buckets
        .create(&PostParams::default(), &bucket("minio-more", on(RefKind::S3Store, "minio"), DeletionPolicy::Retain))
        .await
        .unwrap();
    wait_ready(&buckets, "minio-more").await;
    wait_all(&users, &["minio-app"], "True").await;
    // Fixed: everything on it recovers, with no restart.
    secrets.patch("gw-admin", &PatchParams::default(), &Patch::Merge(&rotate(&new_access, &new_secret))).await.unwrap();
    wait_all(&buckets, &["gw-data", "gw-more"], "True").await;
    wait_all(&users, &["gw-app"], "True").await;
    assert!(op.is_running());

    // A store that stops: only its objects degrade, and a new pair on the other store converges.
    minio.stop().await;
    wait_all(&users, &["minio-app"], "False").await;
    buckets
        .create(&PostParams::default(), &bucket("gw-during", on(RefKind::S3Store, "gw"), DeletionPolicy::Retain))
        .await
        .unwrap();
    users.create(&PostParams::default(), &user("gw-during", on(RefKind::S3Store, "gw"), &["gw-during"])).await.unwrap();
    wait_ready(&users, "gw-during").await;
    wait_all(&users, &["gw-app"], "True").await;
    minio.restart().await.unwrap();
    wait_all(&users, &["minio-app"], "True").await;
    wait_all(&buckets, &["minio-data", "minio-more"], "True").await;
    op.stop().await.unwrap();
}

/// Two stores in a namespace of their own: S3Store `minio`, reached through a proxy the test can
/// stall or slow down, and S3Store `gw` (VersityGW, direct); an operator with a 10-minute resync
/// and two reconcile slots per kind, so only what it wakes is reconciled, and a store holding
/// the slots would hold up everything else.
struct ProxiedPair {
    ns: String,
    versitygw: Store,
    minio: Store,
    proxy: s3op_tests::bench::proxy::CountingProxy,
    op: Operator,
}

impl ProxiedPair {
    async fn start(prefix: &str) -> ProxiedPair {
        let client = client().await;
        let ns = cp().namespace(prefix).await.unwrap();
        let (versitygw, minio) = tokio::join!(start(StoreKind::Versitygw), start(StoreKind::Minio));
        let proxy = s3op_tests::bench::proxy::CountingProxy::start(minio.endpoint(), vec![]).await.unwrap();
        let args = ["--resync-interval", "600s", "--compat-mode", "false", "--watch-namespace", &ns];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--reconcile-concurrency".to_string(), "2".to_string()]);
        let op = Operator::start_with(client.clone(), args).await.unwrap();
        let mut provider = provider_of(&minio);
        provider.minio.as_mut().unwrap().endpoint = proxy.url().to_string();
        s3store_at(&client, &ns, "minio", &minio, provider).await;
        s3store(&client, &ns, "gw", &versitygw).await;
        ProxiedPair { ns, versitygw, minio, proxy, op }
    }
}

/// A store that stops answering (it accepts connections and never replies, as a black-holed
/// address or a hung server does) is not asked by each of its objects, each waiting out the
/// client's timeouts in a reconcile slot every store shares: after the first silence its calls
/// are withheld, its own check turns it Ready=False at once, and one probe at a time asks it
/// again. The other store's new pair converges meanwhile, on two reconcile slots, and the
/// silent store's objects and data are all there once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_stops_answering_is_probed_instead_of_asked_by_every_object() {
    const WAITING: usize = 20;
    let ProxiedPair { ns, versitygw, minio, proxy, op } = ProxiedPair::start("stores-silent").await;
    let client = client().await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    ready_pairs(&buckets, &users, &["minio", "gw"]).await;
    let minio_secret = secrets.get("minio-app-s3-credentials").await.unwrap();
    let minio_data = buckets.get("minio-data").await.unwrap().spec.bucket_name.unwrap();
    assert!(works_at(&minio_secret, proxy.url(), &minio_data).await);

    // Silence, then many objects that need the store.
    proxy.stall(true);
    let before = proxy.snapshot();
    let waiting = buckets_on(&buckets, "minio", "minio-wait", WAITING).await;
    // The store's own check was woken (its resync is 10 minutes away) and says why.
    let silent = wait_condition(&stores, "minio", "False", "BackendUnavailable").await;
    assert!(!silent.ready().unwrap().message.contains(minio.admin_secret_key()), "{:?}", silent.ready());
    buckets
        .create(&PostParams::default(), &bucket("gw-during", on(RefKind::S3Store, "gw"), DeletionPolicy::Retain))
        .await
        .unwrap();
    users.create(&PostParams::default(), &user("gw-during", on(RefKind::S3Store, "gw"), &["gw-during"])).await.unwrap();
    wait_ready(&users, "gw-during").await;
    let names: Vec<&str> = waiting.iter().map(String::as_str).collect();
    wait_all(&buckets, &names, "False").await;
    wait_condition(&users, "minio-app", "False", "StoreNotReady").await;
    let asked: u64 = s3op_tests::bench::proxy::delta(&before, &proxy.snapshot()).values().sum();
    let metrics = op.metrics().await.unwrap();
    let withheld = s3op_tests::binary::metric_sum(&metrics, "s3op_backend_calls_withheld_total");
    eprintln!("silent store: {asked} requests reached it for {WAITING} new buckets; {withheld} calls withheld");
    assert!(
        (asked as usize) < WAITING,
        "each waiting bucket asked the silent store: {asked} requests for {WAITING} buckets"
    );
    assert!(withheld >= 1.0, "no call was withheld:\n{metrics}");
    // The other store's objects never noticed.
    let gw_secret = secrets.get("gw-app-s3-credentials").await.unwrap();
    let gw_data = buckets.get("gw-data").await.unwrap().spec.bucket_name.unwrap();
    assert!(works_at(&gw_secret, versitygw.endpoint(), &gw_data).await);

    // It answers again: everything on it converges, with no restart, and its data is there.
    proxy.stall(false);
    wait_ready(&stores, "minio").await;
    wait_all(&buckets, &names, "True").await;
    wait_all(&users, &["minio-app"], "True").await;
    let minio_secret = secrets.get("minio-app-s3-credentials").await.unwrap();
    assert!(works_at(&minio_secret, proxy.url(), &minio_data).await, "the victim's key and bucket still work");
    for name in &waiting {
        let b = buckets.get(name).await.unwrap();
        assert!(bucket_exists(&minio, &b.spec.bucket_name.unwrap()).await, "{name}");
    }
    op.stop().await.unwrap();
}

/// A store whose every request is slow does not hold up another store's objects: with two
/// reconcile slots and twelve buckets queued on the slow store first, a pair on the other store
/// converges while most of them still wait (each store gets its share of the slots), and the
/// slow store's buckets all converge too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_does_not_hold_up_the_others() {
    const QUEUED: usize = 12;
    // The stores must outlive the test: a Store stops its server when dropped.
    let ProxiedPair { ns, proxy, op, versitygw: _versitygw, minio: _minio } = ProxiedPair::start("stores-slow").await;
    let client = client().await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    wait_ready(&stores, "minio").await;
    wait_ready(&stores, "gw").await;

    proxy.slow_down(Duration::from_millis(700));
    let queued = buckets_on(&buckets, "minio", "minio-slow", QUEUED).await;
    buckets
        .create(&PostParams::default(), &bucket("gw-data", on(RefKind::S3Store, "gw"), DeletionPolicy::Retain))
        .await
        .unwrap();
    users.create(&PostParams::default(), &user("gw-app", on(RefKind::S3Store, "gw"), &["gw-data"])).await.unwrap();
    wait_ready(&users, "gw-app").await;
    let mut ready = 0;
    for name in &queued {
        if buckets.get(name).await.unwrap().ready().is_some_and(|c| c.status == "True") {
            ready += 1;
        }
    }
    let deferred = s3op_tests::binary::metric_sum(&op.metrics().await.unwrap(), "s3op_reconciles_deferred_total");
    eprintln!("slow store: {ready} of {QUEUED} buckets Ready when the other store's pair was; {deferred} deferrals");
    assert!(ready < QUEUED / 4, "the other store's pair waited for {ready} of the slow store's {QUEUED} buckets");
    assert!(deferred >= 1.0, "no reconcile was deferred");

    proxy.slow_down(Duration::ZERO);
    let names: Vec<&str> = queued.iter().map(String::as_str).collect();
    wait_all(&buckets, &names, "True").await;
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_store_keeps_todays_objects_ready_with_zero_writes() {
    let client = client().await;
    let ns = cp().namespace("stores-upgrade").await.unwrap();
    let store = shared_store(StoreKind::Minio).await;
    let op = Operator::start(client.clone(), &store, &ns, "2s", &[]).await.unwrap();
    let args = op.args();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    buckets.create(&PostParams::default(), &bucket("data", None, DeletionPolicy::Retain)).await.unwrap();
    users.create(&PostParams::default(), &user("app", None, &["data"])).await.unwrap();
    // And a pair on an S3Store beside it: after a restart its store must not read as missing
    // while the S3Store cache fills.
    s3store(&client, &ns, "beside", &store).await;
    let beside = on(RefKind::S3Store, "beside");
    buckets.create(&PostParams::default(), &bucket("more", beside.clone(), DeletionPolicy::Retain)).await.unwrap();
    users.create(&PostParams::default(), &user("more", beside, &["more"])).await.unwrap();
    wait_ready(&users, "app").await;
    wait_ready(&users, "more").await;
    let before = wait_ready(&buckets, "data").await;
    let more_before = wait_ready(&buckets, "more").await;
    assert_eq!(before.status.as_ref().unwrap().store.as_deref(), Some("default"));
    op.stop().await.unwrap();

    // Statuses as the version before stores wrote them: no store field.
    let no_store = serde_json::json!({"status": {"store": null}});
    buckets.patch_status("data", &PatchParams::default(), &Patch::Merge(&no_store)).await.unwrap();
    users.patch_status("app", &PatchParams::default(), &Patch::Merge(&no_store)).await.unwrap();

    // The same environment again: every object stays Ready, and the store sees no write.
    let op = Operator::start_with(client.clone(), args).await.unwrap();
    for _ in 0..3 {
        let b = buckets.get("data").await.unwrap();
        let u = users.get("app").await.unwrap();
        assert!(b.ready().is_some_and(|c| c.status == "True"), "{:?}", b.status);
        assert!(u.ready().is_some_and(|c| c.status == "True"), "{:?}", u.status);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let after = buckets.get("data").await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().store.as_deref(), Some("default"), "the default store is named");
    assert_eq!(
        after.ready().unwrap().last_transition_time,
        before.ready().unwrap().last_transition_time,
        "Ready never flipped"
    );
    assert_eq!(op.metric_sum("s3op_backend_writes_total").await.unwrap(), 0.0, "no backend write");
    let more_after = buckets.get("more").await.unwrap();
    assert_eq!(
        more_after.ready().unwrap().last_transition_time,
        more_before.ready().unwrap().last_transition_time,
        "the S3Store's objects never flipped either: {:?}",
        more_after.status
    );
    assert_eq!(op.metric_sum("s3op_events_total").await.unwrap(), 0.0, "no event at all");
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_store_in_use_waits_for_its_objects_and_keeps_every_bucket() {
    let client = client().await;
    let ns = cp().namespace("stores-delete").await.unwrap();
    let store = shared_store(StoreKind::Minio).await;
    let op = operator(client.clone(), Some(&ns), false).await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    s3store(&client, &ns, "minio", &store).await;
    let on_it = on(RefKind::S3Store, "minio");
    buckets.create(&PostParams::default(), &bucket("data", on_it.clone(), DeletionPolicy::Retain)).await.unwrap();
    users.create(&PostParams::default(), &user("app", on_it, &["data"])).await.unwrap();
    wait_ready(&users, "app").await;
    let name = wait_ready(&buckets, "data").await.spec.bucket_name.unwrap();

    stores.delete("minio", &DeleteParams::default()).await.unwrap();
    let blocked = wait_condition(&stores, "minio", "False", "StoreInUse").await;
    let message = &blocked.ready().unwrap().message;
    assert!(message.contains("2 object(s)") && message.contains("S3Bucket") && message.contains("S3User"), "{message}");
    assert!(bucket_exists(&store, &name).await);
    let event = wait_event(&client, &ns, "minio", "StoreInUse").await.unwrap();
    assert!(event.note.contains("2 object(s)"), "{}", event.note);

    users.delete("app", &DeleteParams::default()).await.unwrap();
    buckets.delete("data", &DeleteParams::default()).await.unwrap();
    wait_gone(&stores, "minio").await.unwrap();
    assert!(bucket_exists(&store, &name).await, "a Retain bucket stays on the store, with the store gone");
    assert_eq!(stores.get_opt("minio").await.unwrap().map(|s| s.name_any()), None);
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_with_a_private_ca_is_reached_through_its_ca_bundle() {
    let client = client().await;
    let ns = cp().namespace("stores-tls").await.unwrap();
    let store = Store::start_minio_tls().await.unwrap();
    assert!(store.endpoint().starts_with("https://"));
    let op = operator(client.clone(), Some(&ns), false).await;
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // Without the bundle the store's certificate is not trusted: the store says so.
    s3store(&client, &ns, "private", &store).await;
    let untrusted = wait_condition(&stores, "private", "False", "BackendUnavailable").await;
    let message = &untrusted.ready().unwrap().message;
    assert!(message.contains("certificate"), "the reason is named: {message}");
    let on_it = on(RefKind::S3Store, "private");
    buckets.create(&PostParams::default(), &bucket("data", on_it.clone(), DeletionPolicy::Retain)).await.unwrap();
    wait_condition(&buckets, "data", "False", "StoreNotReady").await;

    // The bundle from a ConfigMap: the store turns Ready and its objects converge.
    let ca = k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta { name: Some("store-ca".into()), ..Default::default() },
        data: Some(BTreeMap::from([("ca.crt".to_string(), store.ca_pem().unwrap().to_string())])),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
    let tls = serde_json::json!({"spec": {"tls": {"caBundle": {"configMapName": "store-ca"}}}});
    stores.patch("private", &PatchParams::default(), &Patch::Merge(&tls)).await.unwrap();
    wait_ready(&stores, "private").await;
    users.create(&PostParams::default(), &user("app", on_it, &["data"])).await.unwrap();
    let name = wait_ready(&buckets, "data").await.spec.bucket_name.unwrap();
    let u = wait_ready(&users, "app").await;
    let secret = secrets.get(&u.status.unwrap().secret_name.unwrap()).await.unwrap();
    assert_eq!(text(&secret, secret_keys::ENDPOINT_URL), store.endpoint());
    let app = store
        .s3_client_with(&text(&secret, secret_keys::ACCESS_KEY_ID), &text(&secret, secret_keys::SECRET_ACCESS_KEY));
    app.put_object().bucket(&name).key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    op.stop().await.unwrap();
}
