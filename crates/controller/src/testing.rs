//! The unit-test tier of reconciles: a Kubernetes API server in memory and a [`Context`] over
//! the in-memory store, so a whole reconcile runs in a unit test. The fake keeps objects as
//! JSON by path and answers exactly the requests the reconcilers make: GET, PATCH (JSON patch
//! for the finalizer, apply and merge patches) and POST; everything else is a 405, so a new
//! kind of request shows up as a failing test rather than a silent success. The end-to-end
//! suites prove the same against the real API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::{Client, Resource, ResourceExt, runtime::reflector};
use s3op_api::{S3Bucket, S3User};
use s3op_backends::{Backend, memory::MemoryBackend};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    config::Cli,
    context::{Context, finalizer_write},
    events::Publisher,
    metrics::{API_WRITE_FINALIZER_ADD, Metrics},
    reconcile::{Reconciled, reconcile},
    stores::{ActiveStore, Stores},
    triggers::OwnWrites,
};

/// Objects by their API path (`/api/v1/namespaces/ns/secrets/name`), and every write made.
#[derive(Clone, Debug, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    writes: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<u64>>,
}

/// The API path of a namespaced object of kind `K`.
pub fn path_of<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    let group = K::group(&());
    let prefix = if group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{group}/{}", K::version(&())) };
    format!("{prefix}/namespaces/{namespace}/{}/{name}", K::plural(&()))
}

impl FakeApi {
    /// Stores `obj` as the server would hold it (with a resourceVersion and, if missing, a uid).
    pub fn put<K: Resource<DynamicType = ()> + Serialize>(&self, obj: &K) {
        let mut value = serde_json::to_value(obj).unwrap();
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        if value["metadata"]["uid"].is_null() {
            value["metadata"]["uid"] = format!("uid-{}", obj.name_any()).into();
        }
        if value["metadata"]["generation"].is_null() {
            value["metadata"]["generation"] = 1.into();
        }
        let path = path_of::<K>(&obj.namespace().unwrap_or_default(), &obj.name_any());
        self.store(path, value);
    }

    /// The object of kind `K` at `namespace/name`, if the server holds it.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, namespace: &str, name: &str) -> Option<K> {
        let objects = self.objects.lock().unwrap();
        objects.get(&path_of::<K>(namespace, name)).map(|v| serde_json::from_value(v.clone()).unwrap())
    }

    /// Removes the object of kind `K` at `namespace/name`, as a user's `kubectl delete` of an
    /// object without finalizers would.
    pub fn remove<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        self.objects.lock().unwrap().remove(&path_of::<K>(namespace, name));
    }

    /// Changes the stored object of kind `K` at `namespace/name` with `edit`, as a user's
    /// `kubectl edit` would.
    pub fn edit<K>(&self, namespace: &str, name: &str, edit: impl FnOnce(&mut K))
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut obj: K = self.get(namespace, name).unwrap();
        edit(&mut obj);
        self.put(&obj);
    }

    /// Every write so far, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.writes.lock().unwrap().clone()
    }

    /// Forgets the writes so far.
    pub fn clear_writes(&self) {
        self.writes.lock().unwrap().clear();
    }

    fn store(&self, path: String, mut value: Value) {
        let mut version = self.versions.lock().unwrap();
        *version += 1;
        value["metadata"]["resourceVersion"] = version.to_string().into();
        self.objects.lock().unwrap().insert(path, value);
    }

    /// A client whose requests this fake answers.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let content_type =
                    parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let (status, value) = api.answer(&parts.method, parts.uri.path(), content_type, &body);
                let bytes = Bytes::from(serde_json::to_vec(&value).unwrap());
                Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(Full::new(bytes)).unwrap())
            }
        });
        Client::new(service, "default")
    }

    fn answer(&self, method: &Method, path: &str, content_type: &str, body: &[u8]) -> (StatusCode, Value) {
        let (object_path, status_subresource) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        if *method != Method::GET {
            self.writes.lock().unwrap().push(format!("{method} {path}"));
        }
        let current = self.objects.lock().unwrap().get(&object_path).cloned();
        match *method {
            Method::GET => match current {
                Some(v) => (StatusCode::OK, v),
                None => not_found(path),
            },
            Method::POST => {
                let mut value: Value = serde_json::from_slice(body).unwrap();
                let name = match value["metadata"]["name"].as_str() {
                    Some(n) => n.to_string(),
                    None => format!(
                        "{}{}",
                        value["metadata"]["generateName"].as_str().unwrap_or("obj-"),
                        self.writes().len()
                    ),
                };
                value["metadata"]["name"] = name.clone().into();
                let created = format!("{path}/{name}");
                self.store(created.clone(), value);
                (StatusCode::CREATED, self.objects.lock().unwrap()[&created].clone())
            }
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let mut value = match (current, content_type) {
                    (Some(v), _) => v,
                    // Server-side apply creates what is missing; other patches need an object.
                    (None, "application/apply-patch+yaml") if !status_subresource => json!({}),
                    (None, _) => return not_found(path),
                };
                if content_type == "application/json-patch+json" {
                    let ops: json_patch::Patch = serde_json::from_value(patch).unwrap();
                    // As the API server does, a `test` for null passes on a path that is absent.
                    let ops = json_patch::Patch(
                        ops.0
                            .into_iter()
                            .filter(|op| match op {
                                json_patch::PatchOperation::Test(t) => {
                                    !(t.value.is_null() && value.pointer(t.path.as_str()).is_none())
                                }
                                _ => true,
                            })
                            .collect(),
                    );
                    if json_patch::patch(&mut value, &ops).is_err() {
                        // What the API server answers when a `test` operation fails.
                        return (StatusCode::UNPROCESSABLE_ENTITY, failure(422, "Invalid", "test operation failed"));
                    }
                } else if status_subresource {
                    // A status write changes only the status.
                    json_patch::merge(&mut value["status"], &patch["status"]);
                } else {
                    json_patch::merge(&mut value, &patch);
                }
                self.store(object_path.clone(), value);
                (StatusCode::OK, self.objects.lock().unwrap()[&object_path].clone())
            }
            _ => (StatusCode::METHOD_NOT_ALLOWED, failure(405, "MethodNotAllowed", "not in the fake")),
        }
    }
}

fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message})
}

fn not_found(path: &str) -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, failure(404, "NotFound", &format!("{path} not found")))
}

/// A test context: the operator's [`Context`] over `backend` and a [`FakeApi`], with the
/// S3Bucket cache the user reconciler reads (filled through the returned writer).
pub struct TestContext {
    /// What the reconcilers get.
    pub ctx: Arc<Context>,
    /// The API server they talk to.
    pub api: FakeApi,
    /// The in-memory store they manage.
    pub backend: Arc<MemoryBackend>,
    buckets: reflector::store::Writer<S3Bucket>,
}

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestContext").field("api", &self.api).finish_non_exhaustive()
    }
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// A context over an empty store and an empty API server, configured as a VersityGW
    /// operator would be.
    pub fn new() -> Self {
        let api = FakeApi::default();
        let client = api.client();
        let backend = Arc::new(MemoryBackend::new());
        let cli = <Cli as clap::Parser>::try_parse_from([
            "s3-resource-operator",
            "--backend",
            "versitygw",
            "--s3-endpoint-url",
            "http://127.0.0.1:7070",
            "--s3-access-key",
            "admin",
            "--s3-secret-key",
            "admin-secret",
        ])
        .unwrap();
        let config = Arc::new(cli.into_config().unwrap());
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        let events = Publisher::new(client.clone(), "s3-resource-operator", None);
        let default = config.store.clone().map(|store_config| {
            ActiveStore::default_store(&config.default_store_name, store_config, backend.clone() as Arc<dyn Backend>)
        });
        let stores = Arc::new(Stores::new(default, config.default_store_name.clone()));
        let (ctx, _recreated) =
            Context::new(client, stores, config, events, Metrics::new(), store, Arc::new(OwnWrites::default()));
        Self { ctx: Arc::new(ctx), api, backend, buckets: writer }
    }

    /// Stores `bucket` on the API server and in the reconcilers' S3Bucket cache.
    pub fn put_bucket(&mut self, bucket: &S3Bucket) {
        self.api.put(bucket);
        let stored = self.api.get::<S3Bucket>(&bucket.namespace().unwrap_or_default(), &bucket.name_any()).unwrap();
        self.buckets.apply_watcher_event(&kube::runtime::watcher::Event::Apply(stored));
    }

    /// Reconciles the S3Bucket `namespace/name` as the server holds it now, as often as its
    /// finalizer needs (the first pass only adds it), and returns it as the server holds it.
    pub async fn reconcile_bucket(&mut self, namespace: &str, name: &str) -> S3Bucket {
        self.reconcile::<S3Bucket>(namespace, name).await;
        let bucket = self.api.get::<S3Bucket>(namespace, name).unwrap();
        self.buckets.apply_watcher_event(&kube::runtime::watcher::Event::Apply(bucket.clone()));
        bucket
    }

    /// Reconciles the S3User `namespace/name` as [`TestContext::reconcile_bucket`] does.
    pub async fn reconcile_user(&mut self, namespace: &str, name: &str) -> S3User {
        self.reconcile::<S3User>(namespace, name).await;
        self.api.get::<S3User>(namespace, name).unwrap()
    }

    /// Reconciles the object `namespace/name` of kind `K` as the server holds it now, once
    /// more if that pass only added the finalizer (as the watch would trigger it).
    pub async fn try_reconcile<K: Reconciled>(&self, namespace: &str, name: &str) -> crate::context::Result<()> {
        loop {
            let obj: K = self.api.get(namespace, name).expect("the object is on the fake server");
            let adds_finalizer = finalizer_write(&obj) == Some(API_WRITE_FINALIZER_ADD);
            reconcile(Arc::new(obj), self.ctx.clone()).await?;
            if !adds_finalizer {
                return Ok(());
            }
        }
    }

    async fn reconcile<K: Reconciled>(&self, namespace: &str, name: &str) {
        self.try_reconcile::<K>(namespace, name).await.expect("reconcile succeeds");
    }
}
