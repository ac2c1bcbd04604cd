//! The S3Store and ClusterS3Store reconciler: read the store's spec and admin Secret, build its
//! backend (again only when either changed), check that it answers with those credentials,
//! and hand it to the registry (`stores.rs`) with a status saying what was found. A store in
//! use is not let go until its last S3Bucket, S3User or compatibility Secret is; deleting a
//! store never deletes anything on it.

use std::{collections::BTreeSet, fmt::Debug, sync::Arc, time::Duration};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, reflector::Store},
};
use s3op_api::{
    ClusterS3Store, ConditionReason, FINALIZER, S3Store, S3StoreStatus, S3User, StoreCapabilities,
    store::{
        CaBundleRef, CredentialsSecretRef, DEFAULT_ACCESS_KEY_ID_KEY, DEFAULT_ADMIN_TOKEN_KEY, DEFAULT_CA_BUNDLE_KEY,
        DEFAULT_MARKER_BUCKET, DEFAULT_SECRET_ACCESS_KEY_KEY, NamespaceName, NamespaceSelection, Provider, StoreAuth,
        StoreTls,
    },
};
use s3op_backends::{Backend, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    breaker::Turn,
    compat::SecretMeta,
    config::{AdminCredentials, BackendKind, GarageAdmin, StoreConfig},
    context::{Context, Error, Result},
    metered::MeteredBackend,
    reconcile,
    status::{Readiness, WithStatus, conditions_for},
    stores::{ActiveStore, Slot, StoreKey},
};

/// How soon a store that is not ready is checked again: a store coming back up (or a fixed
/// Secret, if its watch event was missed) is noticed within this.
const NOT_READY_RETRY: Duration = Duration::from_secs(20);
/// How soon a store whose deletion waits for its objects counts them again.
const IN_USE_RETRY: Duration = Duration::from_secs(5);

/// The spec both store kinds share, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SpecView<'a> {
    /// Kind and address.
    pub provider: &'a Provider,
    /// Credentials.
    pub auth: &'a StoreAuth,
    /// Ledger bucket.
    pub marker_bucket: Option<&'a String>,
    /// Namespaces trusted to adopt.
    pub adopt_namespaces: &'a [NamespaceName],
    /// Namespaces allowed (cluster stores).
    pub namespaces: Option<&'a NamespaceSelection>,
    /// TLS settings.
    pub tls: Option<&'a StoreTls>,
}

/// A store kind: what the reconciler needs to tell the two apart.
pub trait StoreObject: WithStatus<Status = S3StoreStatus> + Serialize + Send + Sync + 'static {
    /// Whether the kind may use the operator's own identity (`auth.podIdentity`): only a
    /// store an administrator made. A tenant's S3Store must bring its own credentials, or it
    /// could act (and allow itself adoption) with the operator's account.
    const MAY_USE_POD_IDENTITY: bool;
    /// The registry key of this store.
    fn key(&self) -> StoreKey;
    /// Its spec.
    fn view(&self) -> SpecView<'_>;
    /// The namespace its Secret is read from, or why the spec does not say one it may use.
    fn secret_namespace(&self, secret: &CredentialsSecretRef) -> Result<String, String> {
        self.namespace_for(secret.namespace.as_deref(), "auth.secretRef")
    }
    /// The namespace a reference naming `named` (or none) reads from, or why it may not.
    fn namespace_for(&self, named: Option<&str>, field: &str) -> Result<String, String>;

    /// The Secrets (namespace, name) the store reads: its admin credentials and its CA
    /// bundle's; a change to one is a change to the store.
    fn secrets_read(&self) -> Vec<(String, String)> {
        let view = self.view();
        let admin = view.auth.secret_ref.as_ref().and_then(|r| Some((self.secret_namespace(r).ok()?, r.name.clone())));
        let ca = view.tls.and_then(|t| t.ca_bundle.as_ref()).and_then(|r| {
            Some((self.namespace_for(r.namespace.as_deref(), "tls.caBundle").ok()?, r.secret_name.clone()?))
        });
        admin.into_iter().chain(ca).collect()
    }

    /// Whether the store reads the Secret `namespace/name`.
    fn reads_secret(&self, namespace: &str, name: &str) -> bool {
        self.secrets_read().iter().any(|(ns, n)| ns == namespace && n == name)
    }
}

macro_rules! view_of {
    ($spec:expr) => {
        SpecView {
            provider: &$spec.provider,
            auth: &$spec.auth,
            marker_bucket: $spec.marker_bucket.as_ref(),
            adopt_namespaces: &$spec.adopt_namespaces,
            namespaces: $spec.namespaces.as_ref(),
            tls: $spec.tls.as_ref(),
        }
    };
}

impl WithStatus for S3Store {
    type Status = S3StoreStatus;
    const KIND: &'static str = "S3Store";
    fn status_ref(&self) -> Option<&S3StoreStatus> {
        self.status.as_ref()
    }
    fn api_of(&self, client: Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn conditions(status: &S3StoreStatus) -> &[Condition] {
        &status.conditions
    }
}

impl StoreObject for S3Store {
    const MAY_USE_POD_IDENTITY: bool = false;
    fn key(&self) -> StoreKey {
        StoreKey::Namespaced { namespace: self.namespace().unwrap_or_default(), name: self.name_any() }
    }
    fn view(&self) -> SpecView<'_> {
        view_of!(self.spec)
    }
    fn namespace_for(&self, named: Option<&str>, field: &str) -> Result<String, String> {
        let own = self.namespace().unwrap_or_default();
        match named {
            // The API server refuses this too; an S3Store must never read another namespace.
            Some(other) if other != own => {
                Err(format!("{field}: an S3Store reads its own namespace only, not {other}"))
            }
            _ => Ok(own),
        }
    }
}

impl WithStatus for ClusterS3Store {
    type Status = S3StoreStatus;
    const KIND: &'static str = "ClusterS3Store";
    fn status_ref(&self) -> Option<&S3StoreStatus> {
        self.status.as_ref()
    }
    fn api_of(&self, client: Client) -> Api<Self> {
        Api::all(client)
    }
    fn conditions(status: &S3StoreStatus) -> &[Condition] {
        &status.conditions
    }
}

impl StoreObject for ClusterS3Store {
    const MAY_USE_POD_IDENTITY: bool = true;
    fn key(&self) -> StoreKey {
        StoreKey::Cluster(self.name_any())
    }
    fn view(&self) -> SpecView<'_> {
        view_of!(self.spec)
    }
    fn namespace_for(&self, named: Option<&str>, field: &str) -> Result<String, String> {
        named.map(str::to_string).ok_or_else(|| format!("{field}.namespace is required for a ClusterS3Store"))
    }
}

/// What the store reconciler shares: the operator's context, where references are counted,
/// and the watches of the Secrets stores read.
#[derive(Debug)]
pub struct StoreContext {
    /// The operator's context.
    pub ctx: Arc<Context>,
    /// S3Users, when CRD mode runs.
    pub users: Option<Store<S3User>>,
    /// Compatibility Secrets, when compatibility mode runs.
    pub secrets: Option<Store<SecretMeta>>,
    /// The S3Stores and, when served, ClusterS3Stores, as their controllers see them.
    pub stores: (Store<S3Store>, Option<Store<ClusterS3Store>>),
    /// One watch per Secret a store reads.
    pub secret_watches: SecretWatches,
    /// Where the stores' breakers tell that a store went silent or answers again.
    pub turns: UnboundedSender<(StoreKey, Turn)>,
    built: std::sync::Mutex<std::collections::HashMap<StoreKey, Built>>,
}

/// A backend built for a store, with the fingerprint of the settings it was built from.
type Built = ([u8; 32], Arc<ActiveStore>);

impl StoreContext {
    /// The store reconciler's context.
    pub fn new(
        ctx: Arc<Context>,
        users: Option<Store<S3User>>,
        secrets: Option<Store<SecretMeta>>,
        stores: (Store<S3Store>, Option<Store<ClusterS3Store>>),
        secret_watches: SecretWatches,
        turns: UnboundedSender<(StoreKey, Turn)>,
    ) -> Self {
        Self { ctx, users, secrets, stores, secret_watches, turns, built: Default::default() }
    }

    /// Keeps exactly the Secret watches the stores need now.
    fn watch_referenced_secrets(&self) {
        let (namespaced, cluster) = &self.stores;
        let mut wanted: BTreeSet<(String, String)> = namespaced.state().iter().flat_map(|s| s.secrets_read()).collect();
        wanted.extend(cluster.iter().flat_map(|c| c.state()).flat_map(|s| s.secrets_read()));
        self.secret_watches.keep(wanted);
    }

    /// The objects on `key`, named for a message.
    pub fn references(&self, key: &StoreKey) -> Vec<String> {
        fn on<K: kube::Resource>(kind: &str, objects: Vec<Arc<K>>, on_key: impl Fn(&K) -> bool) -> Vec<String> {
            objects
                .iter()
                .filter(|o| on_key(o))
                .map(|o| format!("{kind} {}/{}", o.namespace().unwrap_or_default(), o.name_any()))
                .collect()
        }
        let mut refs = on("S3Bucket", self.ctx.buckets.state(), |b| crate::bucket::store_of(b) == *key);
        if let Some(users) = &self.users {
            refs.extend(on("S3User", users.state(), |u| crate::user::store_of(u) == *key));
        }
        if let Some(secrets) = &self.secrets {
            refs.extend(on("Secret", secrets.state(), |s| {
                crate::compat::store_of(s.metadata.annotations.as_ref()) == *key
            }));
        }
        refs.sort();
        refs
    }
}

/// The settings a store's spec and Secret describe, or why they do not describe a usable store.
/// `secret` is the referenced Secret's data (absent when it does not exist).
pub fn settings(
    view: SpecView<'_>,
    secret: Option<&std::collections::BTreeMap<String, k8s_openapi::ByteString>>,
    secret_name: &str,
    ca_bundle: Option<String>,
) -> Result<StoreConfig, String> {
    let p = view.provider;
    let (backend, endpoint, region, admin_endpoint) = match (&p.aws, &p.versitygw, &p.minio, &p.garage) {
        (Some(aws), None, None, None) => (BackendKind::Aws, aws.endpoint.clone(), aws.region.clone(), None),
        (None, Some(s3), None, None) => {
            (BackendKind::Versitygw, Some(s3.endpoint.clone()), s3.region.clone().unwrap_or("us-east-1".into()), None)
        }
        (None, None, Some(s3), None) => {
            (BackendKind::Minio, Some(s3.endpoint.clone()), s3.region.clone().unwrap_or("us-east-1".into()), None)
        }
        (None, None, None, Some(g)) => (
            BackendKind::Garage,
            Some(g.endpoint.clone()),
            g.region.clone().unwrap_or("garage".into()),
            Some(g.admin_endpoint.clone()),
        ),
        _ => return Err("provider needs exactly one of aws, versitygw, minio or garage".into()),
    };
    for e in endpoint.iter().chain(admin_endpoint.iter()) {
        // The API server checks this too; an object stored before the rule (or under an
        // older CRD) must still never aim the operator's requests elsewhere.
        s3op_api::store::validate_endpoint(e)?;
    }
    let text = |key: &str| -> Result<String, String> {
        let data = secret.ok_or_else(|| format!("Secret {secret_name} does not exist"))?;
        let value = data.get(key).ok_or_else(|| format!("Secret {secret_name} has no key {key}"))?;
        let value = String::from_utf8(value.0.clone())
            .map_err(|_| format!("Secret {secret_name} key {key} is not UTF-8 text"))?;
        let value = value.trim().to_string();
        if value.is_empty() { Err(format!("Secret {secret_name} key {key} is empty")) } else { Ok(value) }
    };
    let (admin, garage) = match (&view.auth.secret_ref, &view.auth.pod_identity) {
        (Some(r), None) => {
            let access_key = text(r.access_key_id_key.as_deref().unwrap_or(DEFAULT_ACCESS_KEY_ID_KEY))?;
            let secret_key = text(r.secret_access_key_key.as_deref().unwrap_or(DEFAULT_SECRET_ACCESS_KEY_KEY))?;
            let admin = AdminCredentials { access_key, secret_key: SecretString::new(secret_key) };
            let garage = match admin_endpoint {
                Some(endpoint) => Some(GarageAdmin {
                    endpoint,
                    token: SecretString::new(text(r.admin_token_key.as_deref().unwrap_or(DEFAULT_ADMIN_TOKEN_KEY))?),
                }),
                None => None,
            };
            (Some(admin), garage)
        }
        (None, Some(_)) if backend == BackendKind::Aws => (None, None),
        (None, Some(_)) => return Err("auth.podIdentity is only for the aws provider".into()),
        _ => return Err("auth needs exactly one of secretRef or podIdentity".into()),
    };
    let marker_bucket = view.marker_bucket.cloned().unwrap_or_else(|| DEFAULT_MARKER_BUCKET.to_string());
    s3op_api::validate_bucket_name(&marker_bucket).map_err(|e| format!("markerBucket {marker_bucket:?}: {e}"))?;
    Ok(StoreConfig {
        backend,
        s3_endpoint_url: endpoint,
        admin,
        region,
        garage,
        marker_bucket,
        adopt_namespaces: view.adopt_namespaces.iter().map(|n| n.0.clone()).collect(),
        ca_bundle,
    })
}

/// A digest of everything a backend is built from, secrets included, so a rotated key or an
/// edited spec is noticed without keeping a second copy of the secret around.
pub fn fingerprint(c: &StoreConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |v: &str| {
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    };
    field(c.backend.backend().as_str());
    field(c.s3_endpoint_url.as_deref().unwrap_or(""));
    field(&c.region);
    field(&c.marker_bucket);
    match &c.admin {
        Some(a) => {
            field(&a.access_key);
            field(a.secret_key.expose());
        }
        None => field("-"),
    }
    match &c.garage {
        Some(g) => {
            field(&g.endpoint);
            field(g.token.expose());
        }
        None => field("-"),
    }
    field(&c.adopt_namespaces.join(","));
    field(c.ca_bundle.as_deref().unwrap_or("-"));
    h.finalize().into()
}

/// The status's view of a backend's capabilities.
fn capabilities(backend: &dyn Backend) -> StoreCapabilities {
    let c = backend.capabilities();
    StoreCapabilities {
        read_only_grants: c.read_only_grants,
        quota_max_size: c.quota_max_size,
        quota_max_objects: c.quota_max_objects,
        versioning: c.versioning,
        tags: c.tags,
        multiple_keys: c.multiple_keys,
    }
}

/// Reconciles one store object.
pub async fn reconcile<K: StoreObject>(obj: Arc<K>, sctx: Arc<StoreContext>) -> Result<Action> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let ctx = sctx.ctx.clone();
    let work = async {
        if obj.meta().deletion_timestamp.is_some() {
            return release(obj.as_ref(), &sctx).await;
        }
        add_finalizer(obj.as_ref(), &ctx).await?;
        let key = obj.key();
        let (slot, readiness) = connect(obj.as_ref(), &sctx).await?;
        let active = match &slot {
            Slot::Ready(s) => Some(s.clone()),
            Slot::NotReady { built, .. } => built.clone(),
        };
        let ready = matches!(slot, Slot::Ready(_));
        ctx.metrics.set_store_ready(&ctx.stores.label(&key), ready);
        ctx.stores.set(key.clone(), slot);
        // A new spec may allow other namespaces (the slot is the same when the backend is):
        // its objects look again.
        if obj.status_ref().and_then(|s| s.observed_generation) != obj.meta().generation {
            ctx.stores.notify(key);
        }
        sctx.watch_referenced_secrets();
        report(obj.as_ref(), &ctx, active.as_deref(), &readiness).await?;
        ctx.succeeded(&reconcile::key(K::KIND, &namespace, &name));
        Ok(if ready { ctx.resync() } else { Action::requeue(NOT_READY_RETRY) })
    };
    reconcile::timed(K::KIND, &namespace, &name, &ctx, work).await
}

/// Builds (or reuses) the store's backend from its spec and Secret and checks its health.
async fn connect<K: StoreObject>(obj: &K, sctx: &StoreContext) -> Result<(Slot, Readiness)> {
    let ctx = &sctx.ctx;
    let key = obj.key();
    let view = obj.view();
    let not_ready =
        |readiness: Readiness| (Slot::NotReady { message: readiness.message.clone(), built: None }, readiness);
    if view.auth.pod_identity.is_some() && !K::MAY_USE_POD_IDENTITY {
        // The API server refuses this too; the operator's identity is never lent to a tenant.
        let message = "an S3Store cannot use the operator's own identity (podIdentity): give it a secretRef";
        return Ok(not_ready(Readiness::not_ready(ConditionReason::InvalidSpec, message)));
    }
    let secret = match &view.auth.secret_ref {
        None => None,
        Some(r) => {
            let namespace = match obj.secret_namespace(r) {
                Ok(ns) => ns,
                Err(message) => return Ok(not_ready(Readiness::not_ready(ConditionReason::InvalidSpec, message))),
            };
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            Some((format!("{namespace}/{}", r.name), secrets.get_opt(&r.name).await?))
        }
    };
    let (secret_name, data) = match &secret {
        Some((name, s)) => (name.as_str(), s.as_ref().map(|s| s.data.clone().unwrap_or_default())),
        None => ("", None),
    };
    let ca_bundle = match view.tls.and_then(|t| t.ca_bundle.as_ref()) {
        None => None,
        Some(r) => match ca_bundle(obj, r, ctx).await? {
            Ok(pem) => Some(pem),
            Err(readiness) => return Ok(not_ready(readiness)),
        },
    };
    let config = match settings(view, data.as_ref(), secret_name, ca_bundle) {
        Ok(c) => c,
        Err(message) => {
            let secret_missing = secret.as_ref().is_some_and(|(_, s)| s.is_none());
            return Ok(not_ready(unreadable_settings(secret_missing, message)));
        }
    };
    let digest = fingerprint(&config);
    let reused = {
        let built = sctx.built.lock().unwrap_or_else(|p| p.into_inner());
        built.get(&key).filter(|(d, _)| *d == digest).map(|(_, s)| s.clone())
    };
    let active = match reused {
        Some(active) => active,
        None => {
            let shown = ctx.stores.shown(&key);
            let raw = match crate::store::connect(&config).await {
                Ok(raw) => raw,
                Err(e) => return Ok(not_ready(Readiness::of_error(&e))),
            };
            let label = ctx.stores.label(&key);
            let backend: Arc<dyn Backend> = Arc::new(
                MeteredBackend::new(raw, ctx.metrics.clone(), &label).with_breaker(key.clone(), sctx.turns.clone()),
            );
            let active = Arc::new(ActiveStore { name: shown, config, backend });
            sctx.built.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), (digest, active.clone()));
            active
        }
    };
    Ok(match active.backend.health().await {
        Ok(()) => {
            let message = format!("{} answered with these credentials", active.config.backend);
            (Slot::Ready(active), Readiness::available(message))
        }
        Err(e) => {
            let readiness = Readiness::of_error(&e);
            (Slot::NotReady { message: e.to_string(), built: Some(active) }, readiness)
        }
    })
}

/// The PEM bundle `r` names, or what the store shows when it cannot be read: each case waits
/// for the user (a missing bundle for its creation), so it stalls.
async fn ca_bundle<K: StoreObject>(obj: &K, r: &CaBundleRef, ctx: &Context) -> Result<Result<String, Readiness>> {
    let namespace = match obj.namespace_for(r.namespace.as_deref(), "tls.caBundle") {
        Ok(ns) => ns,
        Err(message) => return Ok(Err(Readiness::not_ready(ConditionReason::InvalidSpec, message))),
    };
    let key = r.key.as_deref().unwrap_or(DEFAULT_CA_BUNDLE_KEY);
    let (what, value) = match (&r.secret_name, &r.config_map_name) {
        (Some(name), None) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let found = secrets.get_opt(name).await?;
            let value = found
                .as_ref()
                .map(|s| s.data.as_ref().and_then(|d| d.get(key)).and_then(|v| String::from_utf8(v.0.clone()).ok()));
            (format!("Secret {namespace}/{name}"), value)
        }
        (None, Some(name)) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            let found = maps.get_opt(name).await?;
            (format!("ConfigMap {namespace}/{name}"), found.map(|m| m.data.and_then(|d| d.get(key).cloned())))
        }
        _ => {
            let message = "tls.caBundle needs exactly one of secretName or configMapName".to_string();
            return Ok(Err(Readiness::not_ready(ConditionReason::InvalidSpec, message)));
        }
    };
    Ok(match value {
        None => Err(unreadable_settings(true, format!("{what} (the CA bundle) does not exist"))),
        Some(None) => Err(unreadable_settings(false, format!("{what} has no text key {key} (the CA bundle)"))),
        Some(Some(pem)) => Ok(pem),
    })
}

/// What a store whose spec and Secrets do not make usable settings shows: `NotFound` when a
/// Secret (or CA bundle) it reads does not exist, else `InvalidSpec`. Both stall: the store is
/// checked again, but only the user creating or fixing what it reads can make it usable.
pub fn unreadable_settings(missing: bool, message: String) -> Readiness {
    let reason = if missing { ConditionReason::NotFound } else { ConditionReason::InvalidSpec };
    Readiness::not_ready(reason, message).stalling()
}

/// Writes the store's status.
async fn report<K: StoreObject>(
    obj: &K,
    ctx: &Context,
    active: Option<&ActiveStore>,
    readiness: &Readiness,
) -> Result<()> {
    let generation = obj.meta().generation;
    let previous = obj.status_ref().map(K::conditions).unwrap_or_default();
    if readiness.warns_after(previous) {
        ctx.event(obj, true, readiness.reason.as_str(), readiness.message.clone()).await;
    }
    let provider = active.map(|a| a.config.backend.to_string());
    let endpoint = active.map(ActiveStore::endpoint);
    let caps = active.map(|a| capabilities(a.backend.as_ref()));
    ctx.write_status(obj, |current| {
        let current = current.cloned().unwrap_or_default();
        S3StoreStatus {
            observed_generation: generation,
            provider: provider.clone().or(current.provider),
            endpoint: endpoint.clone().or(current.endpoint),
            capabilities: caps.clone().or(current.capabilities),
            conditions: conditions_for(&current.conditions, readiness, generation),
        }
    })
    .await
}

/// A deleted store: let it go once nothing uses it; until then say what still does.
async fn release<K: StoreObject>(obj: &K, sctx: &StoreContext) -> Result<Action> {
    let ctx = &sctx.ctx;
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let key = obj.key();
    let refs = sctx.references(&key);
    if !refs.is_empty() {
        let shown: Vec<&str> = refs.iter().take(10).map(String::as_str).collect();
        let more =
            if refs.len() > shown.len() { format!(" and {} more", refs.len() - shown.len()) } else { String::new() };
        let message = format!(
            "deletion waits: {} object(s) still use this store ({}{more}); delete them or let them go first. Nothing on the store is deleted with it",
            refs.len(),
            shown.join(", ")
        );
        report(obj, ctx, None, &Readiness::not_ready(ConditionReason::StoreInUse, message)).await?;
        return Ok(Action::requeue(IN_USE_RETRY));
    }
    ctx.stores.remove(&key);
    ctx.metrics.forget_store(&ctx.stores.label(&key));
    sctx.built.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    remove_finalizer(obj, ctx).await?;
    sctx.watch_referenced_secrets();
    Ok(Action::await_change())
}

/// Metadata-only watches of exactly the Secrets stores read, one per Secret (a field selector
/// on its name), each telling subscribers (namespace, name) when it changes. A cluster-wide
/// watch of every Secret would list them all at start, which costs memory with thousands of
/// Secrets; stores are few.
pub struct SecretWatches {
    client: Client,
    subscribers: Vec<futures::channel::mpsc::UnboundedSender<(String, String)>>,
    running: std::sync::Mutex<std::collections::BTreeMap<(String, String), tokio::task::AbortHandle>>,
}

impl Debug for SecretWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("SecretWatches").field("watched", &running.keys().collect::<Vec<_>>()).finish()
    }
}

impl SecretWatches {
    /// No watches yet, over `client`.
    pub fn new(client: Client) -> Self {
        Self { client, subscribers: Vec::new(), running: Default::default() }
    }

    /// Changes from now on; subscribe before the first [`SecretWatches::keep`].
    pub fn subscribe(&mut self) -> futures::channel::mpsc::UnboundedReceiver<(String, String)> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.subscribers.push(tx);
        rx
    }

    /// Runs exactly one watch for each of `wanted`, stopping the others.
    pub fn keep(&self, wanted: BTreeSet<(String, String)>) {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for (namespace, name) in wanted {
            if running.contains_key(&(namespace.clone(), name.clone())) {
                continue;
            }
            let api: Api<kube::core::PartialObjectMeta<Secret>> = Api::namespaced(self.client.clone(), &namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let subscribers = self.subscribers.clone();
            let key = (namespace.clone(), name.clone());
            let told = key.clone();
            let task = tokio::spawn(watcher(api, config).default_backoff().touched_objects().for_each(move |seen| {
                if seen.is_ok() {
                    for s in &subscribers {
                        // A closed receiver is a controller that stopped: nothing to tell it.
                        let _ = s.unbounded_send(told.clone());
                    }
                }
                futures::future::ready(())
            }));
            running.insert(key, task.abort_handle());
        }
    }
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        for task in self.running.lock().unwrap_or_else(|p| p.into_inner()).values() {
            task.abort();
        }
    }
}

async fn add_finalizer<K: StoreObject>(obj: &K, ctx: &Context) -> Result<()> {
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    // The same JSON patch kube's finalizer helper makes: it fails if another writer changed
    // the list meanwhile, so no one's finalizer is lost.
    let patch = if obj.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    patch_finalizers(obj, ctx, patch).await
}

async fn remove_finalizer<K: StoreObject>(obj: &K, ctx: &Context) -> Result<()> {
    let Some(i) = obj.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{i}");
    let patch = serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    patch_finalizers(obj, ctx, patch).await
}

async fn patch_finalizers<K: StoreObject>(obj: &K, ctx: &Context, patch: serde_json::Value) -> Result<()> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    obj.api_of(ctx.client.clone()).patch::<K>(&obj.name_any(), &PatchParams::default(), &Patch::Json(patch)).await?;
    Ok(())
}

/// Retries a failed store reconcile with backoff.
pub fn error_policy<K: StoreObject>(obj: Arc<K>, err: &Error, sctx: Arc<StoreContext>) -> Action {
    reconcile::retry_later(&sctx.ctx, K::KIND, &obj.namespace().unwrap_or_default(), &obj.name_any(), err)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use s3op_api::store::{AwsProvider, GarageProvider, PodIdentity, S3Provider};

    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    fn spec(provider: Provider, auth: StoreAuth) -> s3op_api::S3StoreSpec {
        s3op_api::S3StoreSpec { provider, auth, ..Default::default() }
    }

    fn by_secret() -> StoreAuth {
        StoreAuth {
            secret_ref: Some(CredentialsSecretRef { name: "admin".into(), ..Default::default() }),
            pod_identity: None,
        }
    }

    #[test]
    fn a_minio_store_reads_its_keys_from_the_secret() {
        let s = spec(
            Provider {
                minio: Some(S3Provider { endpoint: "http://m:9000".into(), region: None }),
                ..Default::default()
            },
            by_secret(),
        );
        let data = secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "root"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "pw\n")]);
        let c = settings(view_of!(s), Some(&data), "ns/admin", None).unwrap();
        assert_eq!(c.backend, BackendKind::Minio);
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.marker_bucket, DEFAULT_MARKER_BUCKET);
        assert_eq!(c.admin.as_ref().unwrap().secret_key.expose(), "pw", "trailing newlines of a file-made Secret go");
        let err = settings(view_of!(s), None, "ns/admin", None).unwrap_err();
        assert!(err.contains("ns/admin does not exist"), "{err}");
        let err =
            settings(view_of!(s), Some(&secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "root")])), "ns/admin", None).unwrap_err();
        assert!(
            err.contains(DEFAULT_SECRET_ACCESS_KEY_KEY) && !err.contains("root"),
            "names the key, never a value: {err}"
        );
    }

    #[test]
    fn an_endpoint_that_could_aim_the_operator_elsewhere_is_refused() {
        let data = secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "k"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "s")]);
        let at = |endpoint: &str| {
            spec(
                Provider { minio: Some(S3Provider { endpoint: endpoint.into(), region: None }), ..Default::default() },
                by_secret(),
            )
        };
        let metadata = at("http://169.254.169.254/latest/meta-data/iam/security-credentials/node?");
        let err = settings(view_of!(metadata), Some(&data), "ns/admin", None).unwrap_err();
        assert!(err.contains("no query"), "{err}");
        let fine = at("http://minio.storage:9000");
        assert!(settings(view_of!(fine), Some(&data), "ns/admin", None).is_ok());
    }

    #[test]
    fn garage_needs_its_token_and_only_aws_may_use_the_pods_identity() {
        let g = spec(
            Provider {
                garage: Some(GarageProvider {
                    endpoint: "http://g:3900".into(),
                    admin_endpoint: "http://g:3903".into(),
                    region: None,
                }),
                ..Default::default()
            },
            by_secret(),
        );
        let keys = secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "GK1"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "s")]);
        assert!(settings(view_of!(g), Some(&keys), "x", None).unwrap_err().contains(DEFAULT_ADMIN_TOKEN_KEY));
        let mut with_token = keys.clone();
        with_token.insert(DEFAULT_ADMIN_TOKEN_KEY.into(), ByteString(b"tok".to_vec()));
        let c = settings(view_of!(g), Some(&with_token), "x", None).unwrap();
        assert_eq!((c.region.as_str(), c.garage.unwrap().token.expose()), ("garage", "tok"));

        let pod = StoreAuth { secret_ref: None, pod_identity: Some(PodIdentity {}) };
        let aws = spec(
            Provider { aws: Some(AwsProvider { region: "eu-west-1".into(), endpoint: None }), ..Default::default() },
            pod.clone(),
        );
        let c = settings(view_of!(aws), None, "", None).unwrap();
        assert!(c.admin.is_none() && c.s3_endpoint_url.is_none());
        let mut minio_by_pod = g.clone();
        minio_by_pod.auth = pod;
        assert!(settings(view_of!(minio_by_pod), None, "", None).unwrap_err().contains("podIdentity"));
    }

    #[test]
    fn a_rotated_key_changes_the_fingerprint() {
        let s = spec(
            Provider {
                minio: Some(S3Provider { endpoint: "http://m:9000".into(), region: None }),
                ..Default::default()
            },
            by_secret(),
        );
        let a = settings(
            view_of!(s),
            Some(&secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "k"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "one")])),
            "x",
            None,
        )
        .unwrap();
        let b = settings(
            view_of!(s),
            Some(&secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "k"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "two")])),
            "x",
            None,
        )
        .unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
    }

    #[test]
    fn a_store_is_woken_by_the_secrets_it_reads_only() {
        use s3op_api::store::{CaBundleRef, StoreTls};
        let mut store = S3Store::new("s", Default::default());
        store.metadata.namespace = Some("team-a".into());
        store.spec.auth = by_secret();
        assert!(store.reads_secret("team-a", "admin"));
        assert!(!store.reads_secret("team-b", "admin"), "the same name elsewhere is not its Secret");
        assert!(!store.reads_secret("team-a", "ca"));
        store.spec.tls =
            Some(StoreTls { ca_bundle: Some(CaBundleRef { secret_name: Some("ca".into()), ..Default::default() }) });
        assert!(store.reads_secret("team-a", "ca"));
        let mut cluster = ClusterS3Store::new("c", Default::default());
        cluster.spec.auth = StoreAuth {
            secret_ref: Some(CredentialsSecretRef {
                name: "admin".into(),
                namespace: Some("storage".into()),
                ..Default::default()
            }),
            pod_identity: None,
        };
        assert!(cluster.reads_secret("storage", "admin") && !cluster.reads_secret("team-a", "admin"));
    }

    /// A store reconciler's context over `t`, with no store in its caches.
    fn store_context(t: &crate::testing::TestContext) -> StoreContext {
        let (namespaced, _) = kube::runtime::reflector::store();
        let secret_watches = SecretWatches::new(t.ctx.client.clone());
        StoreContext::new(
            t.ctx.clone(),
            None,
            None,
            (namespaced, None),
            secret_watches,
            futures::channel::mpsc::unbounded().0,
        )
    }

    #[tokio::test]
    async fn a_tenants_store_never_gets_the_operators_identity() {
        let t = crate::testing::TestContext::new();
        let sctx = store_context(&t);
        let mut store = S3Store::new("borrowed", Default::default());
        store.metadata.namespace = Some("team-a".into());
        store.spec.provider =
            Provider { aws: Some(AwsProvider { region: "eu-west-1".into(), endpoint: None }), ..Default::default() };
        store.spec.auth = StoreAuth { secret_ref: None, pod_identity: Some(PodIdentity {}) };
        let (slot, readiness) = connect(&store, &sctx).await.unwrap();
        assert!(matches!(slot, Slot::NotReady { built: None, .. }), "no backend is built: {slot:?}");
        assert_eq!(readiness.reason, ConditionReason::InvalidSpec);
        assert!(readiness.message.contains("operator's own identity"), "{}", readiness.message);
    }

    #[tokio::test]
    async fn a_missing_admin_secret_stalls_and_a_store_that_does_not_answer_reconciles() {
        let t = crate::testing::TestContext::new();
        let sctx = store_context(&t);
        let mut store = S3Store::new("minio", Default::default());
        store.metadata.namespace = Some("team-a".into());
        store.spec.provider = Provider {
            minio: Some(S3Provider { endpoint: "http://127.0.0.1:1".into(), region: None }),
            ..Default::default()
        };
        store.spec.auth = by_secret();
        let (_, readiness) = connect(&store, &sctx).await.unwrap();
        assert_eq!((readiness.reason, readiness.stalled), (ConditionReason::NotFound, true), "{readiness:?}");
        assert!(readiness.message.contains("team-a/admin does not exist"), "{}", readiness.message);

        let admin = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("admin".into()),
                namespace: Some("team-a".into()),
                ..Default::default()
            },
            data: Some(secret(&[(DEFAULT_ACCESS_KEY_ID_KEY, "root"), (DEFAULT_SECRET_ACCESS_KEY_KEY, "pw")])),
            ..Default::default()
        };
        t.api.put(&admin);
        let (slot, readiness) = connect(&store, &sctx).await.unwrap();
        assert!(matches!(slot, Slot::NotReady { built: Some(_), .. }), "{slot:?}");
        assert_eq!(
            (readiness.reason, readiness.stalled),
            (ConditionReason::BackendUnavailable, false),
            "{readiness:?}"
        );
    }

    #[test]
    fn unreadable_settings_stall() {
        let missing = unreadable_settings(true, "Secret ns/admin does not exist".into());
        assert_eq!((missing.reason, missing.stalled, missing.ready), (ConditionReason::NotFound, true, false));
        let invalid = unreadable_settings(false, "Secret ns/admin has no key x".into());
        assert_eq!((invalid.reason, invalid.stalled), (ConditionReason::InvalidSpec, true));
    }

    #[test]
    fn an_s3store_never_reads_another_namespace() {
        let mut store = S3Store::new("s", Default::default());
        store.metadata.namespace = Some("team-a".into());
        let elsewhere =
            CredentialsSecretRef { name: "x".into(), namespace: Some("kube-system".into()), ..Default::default() };
        assert!(store.secret_namespace(&elsewhere).is_err());
        let own = CredentialsSecretRef { name: "x".into(), ..Default::default() };
        assert_eq!(store.secret_namespace(&own).unwrap(), "team-a");
        let cluster = ClusterS3Store::new("c", Default::default());
        assert!(cluster.secret_namespace(&own).is_err(), "a cluster store names its Secret's namespace");
    }
}
