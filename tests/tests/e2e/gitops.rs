//! What GitOps tools conclude from the objects the operator really writes: kstatus (what Flux
//! and kpt use), Flux's documented `healthCheckExprs` and Argo CD's documented Lua script, run
//! over S3Buckets and S3Users read back from the API server, in each state the operator puts
//! them in, on each store. `tests/tests/e2e/health.rs` pins the same tools on hand-made objects.
#![allow(clippy::unwrap_used)]

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, PostParams},
};
use s3op_api::{S3Bucket, S3BucketSpec, S3Store, S3StoreSpec, S3User};
use s3op_tests::{
    fixture::{admin_secret, auth_by_secret, client, cp, provider_of, start},
    health::{Verdict, argo_health, flux_cel, kstatus},
    operator::Operator,
    stores::{StoreKind, unique_name},
    wait::{HasConditions, TIMEOUT, wait_ready_condition, wait_until},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The object exactly as the API server serves it (no typed round trip).
async fn raw<K: Resource<DynamicType = ()>>(client: &kube::Client, ns: &str, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()));
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// kstatus, Flux CEL and Argo CD verdicts of `obj`.
fn verdicts(obj: &Value) -> [Verdict; 3] {
    [kstatus(obj).unwrap(), flux_cel(obj).unwrap(), argo_health(obj).unwrap()]
}

/// Asserts the three statuses and, for a failure, that each tool shows the operator's reason.
fn assert_verdicts(obj: &Value, want: [&str; 3], reason: Option<&str>, what: &str) {
    let got = verdicts(obj);
    let statuses = got.iter().map(|v| v.status.as_str()).collect::<Vec<_>>();
    assert_eq!(statuses, want, "{what}: {got:?}\n{obj:#}");
    if let Some(reason) = reason {
        // kstatus (but for an object being deleted) and Argo carry the condition's message;
        // Argo prefixes the reason.
        let stalled = obj["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Stalled");
        let message = stalled.map_or("", |c| c["message"].as_str().unwrap());
        if got[0].status == "Failed" {
            assert_eq!(got[0].message, message, "{what}: kstatus message");
        }
        assert!(got[2].message.starts_with(reason), "{what}: Argo message {:?}", got[2].message);
    }
}

async fn wait_reason<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_ready_condition(api, name, status, reason).await.unwrap()
}

fn bucket(name: &str, bucket_name: &str, extra: Value) -> S3Bucket {
    let mut spec = json!({"bucketName": bucket_name, "deletionPolicy": "Delete"});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3Bucket",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// An object the operator has not looked at yet is in progress for all three tools: its CRD
/// defaults `status.observedGeneration` to 0, below the object's generation. Without that
/// default kstatus would call it Current, and a `flux` wait would pass at once.
#[tokio::test]
async fn an_object_no_operator_has_seen_is_in_progress() {
    let ns = cp().namespace("unseen").await.unwrap();
    let client = client().await;
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let spec = S3BucketSpec { bucket_name: Some(unique_name("unseen")), ..Default::default() };
    buckets.create(&PostParams::default(), &S3Bucket::new("unseen", spec)).await.unwrap();
    let obj = raw::<S3Bucket>(&client, &ns, "unseen").await;
    assert_eq!(obj["status"]["observedGeneration"], 0, "{obj}");
    assert_verdicts(&obj, ["InProgress", "InProgress", "Progressing"], None, "never seen");
}

/// Ready, each terminal state, a blocked deletion and a store outage, as the operator writes
/// them on `kind`, read by kstatus, Flux CEL and Argo CD.
async fn states_read_right(kind: StoreKind) {
    let mut store = start(kind).await;
    let ns = cp().namespace(&format!("gitops-{kind}")).await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "2s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let name = unique_name("gitops");
    // What this store cannot do: a quota by object count, or (Garage, which has that) versioning.
    let unsupported =
        if kind == StoreKind::Garage { json!({"versioning": "Enabled"}) } else { json!({"quota": {"maxObjects": 10}}) };
    buckets.create(&pp, &bucket("ready", &name, json!({}))).await.unwrap();
    let user: S3User = serde_json::from_value(json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3User", "metadata": {"name": "app"},
        "spec": {"access": [{"bucket": "ready", "permission": "ReadWrite"}]},
    }))
    .unwrap();
    users.create(&pp, &user).await.unwrap();
    wait_reason(&buckets, "ready", "True", "Available").await;
    wait_reason(&users, "app", "True", "Available").await;
    buckets.create(&pp, &bucket("twin", &name, json!({}))).await.unwrap();
    buckets.create(&pp, &bucket("unsupported", &unique_name("unsup"), unsupported)).await.unwrap();
    let elsewhere = json!({"storeRef": {"kind": "S3Store", "name": "missing"}});
    buckets.create(&pp, &bucket("nostore", &unique_name("nostore"), elsewhere)).await.unwrap();
    // Stores too: one with its admin Secret, one whose Secret does not exist.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let admin = admin_secret(&store, "store-admin", store.admin_access_key(), store.admin_secret_key());
    secrets.create(&pp, &admin).await.unwrap();
    let stores: Api<S3Store> = Api::namespaced(client.clone(), &ns);
    for (object, secret) in [("good", "store-admin"), ("nosecret", "missing")] {
        let spec = S3StoreSpec {
            provider: provider_of(&store),
            auth: auth_by_secret(secret, None),
            marker_bucket: Some(unique_name("markers")),
            ..Default::default()
        };
        stores.create(&pp, &S3Store::new(object, spec)).await.unwrap();
    }
    wait_reason(&stores, "good", "True", "Available").await;
    wait_reason(&stores, "nosecret", "False", "NotFound").await;
    let obj = raw::<S3Store>(&client, &ns, "nosecret").await;
    assert_verdicts(&obj, ["Failed", "Failed", "Degraded"], Some("NotFound"), &format!("{kind}: store without Secret"));
    let obj = raw::<S3Store>(&client, &ns, "good").await;
    assert_verdicts(&obj, ["Current", "Current", "Healthy"], None, &format!("{kind}: Ready store"));

    wait_reason(&buckets, "twin", "False", "Conflict").await;
    wait_reason(&buckets, "unsupported", "False", "Unsupported").await;
    wait_reason(&buckets, "nostore", "False", "StoreNotFound").await;

    for (object, is_user) in [("ready", false), ("app", true)] {
        let obj = if is_user {
            raw::<S3User>(&client, &ns, object).await
        } else {
            raw::<S3Bucket>(&client, &ns, object).await
        };
        assert_verdicts(&obj, ["Current", "Current", "Healthy"], None, &format!("{kind}: Ready {object}"));
    }
    for (object, reason) in [("twin", "Conflict"), ("unsupported", "Unsupported"), ("nostore", "StoreNotFound")] {
        let obj = raw::<S3Bucket>(&client, &ns, object).await;
        assert_verdicts(&obj, ["Failed", "Failed", "Degraded"], Some(reason), &format!("{kind}: {object}"));
    }

    // A deletion blocked by data: kstatus says Terminating for any object being deleted.
    let full_name = unique_name("full");
    buckets.create(&pp, &bucket("full", &full_name, json!({}))).await.unwrap();
    wait_reason(&buckets, "full", "True", "Available").await;
    let body = ByteStream::from_static(b"precious");
    store.s3_client().put_object().bucket(&full_name).key("keep").body(body).send().await.unwrap();
    buckets.delete("full", &DeleteParams::default()).await.unwrap();
    wait_reason(&buckets, "full", "False", "DeletionBlocked").await;
    let obj = raw::<S3Bucket>(&client, &ns, "full").await;
    assert_verdicts(&obj, ["Terminating", "Failed", "Degraded"], Some("DeletionBlocked"), &format!("{kind}: blocked"));

    // A store outage is a wait, not a failure; a deletion it holds up shows Deleting.
    buckets.create(&pp, &bucket("doomed", &unique_name("doomed"), json!({}))).await.unwrap();
    wait_reason(&buckets, "doomed", "True", "Available").await;
    store.stop().await;
    buckets.delete("doomed", &DeleteParams::default()).await.unwrap();
    wait_reason(&buckets, "doomed", "False", "Deleting").await;
    let obj = raw::<S3Bucket>(&client, &ns, "doomed").await;
    assert_verdicts(&obj, ["Terminating", "InProgress", "Progressing"], None, &format!("{kind}: deleting"));
    assert!(argo_health(&obj).unwrap().message.starts_with("Deleting: "), "{kind}: {obj}");
    wait_reason(&buckets, "ready", "False", "BackendUnavailable").await;
    let obj = raw::<S3Bucket>(&client, &ns, "ready").await;
    assert_verdicts(&obj, ["InProgress", "InProgress", "Progressing"], None, &format!("{kind}: outage"));
    wait_reason(&stores, "good", "False", "BackendUnavailable").await;
    let obj = raw::<S3Store>(&client, &ns, "good").await;
    assert_verdicts(&obj, ["InProgress", "InProgress", "Progressing"], None, &format!("{kind}: store outage"));
    store.restart().await.unwrap();
    wait_reason(&buckets, "ready", "True", "Available").await;
    wait_until("the held-up deletion finishes", TIMEOUT, || async {
        buckets.get_opt("doomed").await.unwrap().is_none()
    })
    .await
    .unwrap();
    let obj = raw::<S3Bucket>(&client, &ns, "ready").await;
    assert_verdicts(&obj, ["Current", "Current", "Healthy"], None, &format!("{kind}: after the outage"));
    let conditions: Vec<String> =
        obj["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].to_string()).collect();
    assert_eq!(conditions, ["\"Ready\""], "{kind}: only Ready once recovered");

    // Let the blocked deletion go, so nothing is left behind (moto forgot it at its restart).
    let _ = store.s3_client().delete_object().bucket(&full_name).key("keep").send().await;
    wait_until("the blocked bucket goes once empty", TIMEOUT, || async {
        buckets.get_opt("full").await.unwrap().is_none_or(|b| b.name_any() != "full")
    })
    .await
    .unwrap();
    op.stop().await.unwrap();
}

macro_rules! per_store {
    ($($name:ident: $kind:expr),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            states_read_right($kind).await;
        }
    )+};
}

per_store!(
    versitygw_states_read_right: StoreKind::Versitygw,
    minio_states_read_right: StoreKind::Minio,
    garage_states_read_right: StoreKind::Garage,
    aws_states_read_right: StoreKind::Moto,
);
