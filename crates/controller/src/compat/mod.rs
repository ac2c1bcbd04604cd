//! Compatibility mode: Secrets annotated the way the older s3-resource-operator expected
//! (`../shared/docs/compat-contract.md`) get their account, bucket and bucket owner on the
//! store, with the claims the old operator lacked.
//!
//! Only annotated Secrets are kept in memory: Secrets are watched as metadata, everything
//! without the annotation is dropped as it streams by, and the one Secret being handled is
//! read in full when its turn comes. Nothing is ever written to the Secret itself, and
//! deleting it deletes nothing on the store.

pub mod fields;
pub mod metrics;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    context::{Context, Error, Result},
    reconcile,
    stores::{StoreKey, Unusable},
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        reflector,
        reflector::{ObjectRef, Store},
        watcher::{self, watcher},
    },
};
pub use metrics::LegacyMetrics;
use s3op_api::STORE_ANNOTATION;
use s3op_backends::{BackendError, ErrorCategory, Owner, compat::Outcome};

/// The kind label of compatibility mode in metrics and readiness.
pub const KIND: &str = "Secret";

/// A Secret as the controller keeps it: metadata only.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// What the Secret reconciler shares.
#[derive(Debug)]
pub struct Compat {
    /// The operator's shared context (client, backend, configuration, events, backoff).
    pub ctx: Arc<Context>,
    /// The older operator's metrics.
    pub legacy: LegacyMetrics,
    first_pass: FirstPass,
}

impl Compat {
    /// Compatibility mode on `ctx`, recording into `legacy`.
    pub fn new(ctx: Arc<Context>, legacy: LegacyMetrics) -> Self {
        Self { ctx, legacy, first_pass: FirstPass::default() }
    }
}

/// Builds the Secret controller over `api` (all namespaces or the watched one); an API of
/// `PartialObjectMeta` makes metadata-only list and watch requests.
pub fn controller(api: Api<SecretMeta>, compat: &Compat) -> (Controller<SecretMeta>, Store<SecretMeta>) {
    let (reader, writer) = reflector::store();
    let key = compat.ctx.config.compat.annotation_key.clone();
    let events = watcher(api, watcher::Config::default().any_semantic()).default_backoff().filter_map(move |event| {
        let kept = match event {
            Ok(e) => only_annotated(e, &key).map(Ok),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(kept)
    });
    let trigger = reflector(writer, events).applied_objects();
    // One slot more than the stores' shares add up to, as for the custom resources (run.rs).
    let config = controller::Config::default().concurrency(compat.ctx.config.concurrency.saturating_add(1));
    (Controller::for_stream(trigger, reader.clone()).with_config(config), reader)
}

/// Keeps annotated Secrets (slimmed to what the controller needs) and turns a Secret that
/// lost its annotation into a deletion, so the store forgets it.
fn only_annotated(event: watcher::Event<SecretMeta>, key: &str) -> Option<watcher::Event<SecretMeta>> {
    use watcher::Event::*;
    let wanted = |m: &SecretMeta| fields::enabled(m.metadata.annotations.as_ref(), key);
    match event {
        Apply(m) if wanted(&m) => Some(Apply(slim(m, key))),
        Apply(m) => Some(Delete(m)),
        InitApply(m) if wanted(&m) => Some(InitApply(slim(m, key))),
        InitApply(_) => None,
        other => Some(other),
    }
}

/// Drops managed fields, labels and every annotation but the opt-in and the store's: the
/// last-applied annotation can hold the whole Secret, values included, and none of it is needed
/// to decide or to trigger (the store's is kept so a store knows who still uses it).
fn slim(mut m: SecretMeta, key: &str) -> SecretMeta {
    m.metadata.managed_fields = None;
    m.metadata.labels = None;
    m.metadata.annotations = m
        .metadata
        .annotations
        .map(|a| a.into_iter().filter(|(k, _)| k == key || k == STORE_ANNOTATION).collect::<BTreeMap<_, _>>());
    m
}

/// The store a compatibility Secret is for: the ClusterS3Store its store annotation names, or
/// the default store.
pub fn store_of(annotations: Option<&BTreeMap<String, String>>) -> StoreKey {
    match annotations.and_then(|a| a.get(STORE_ANNOTATION)).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(name) => StoreKey::Cluster(name.to_string()),
        None => StoreKey::Default,
    }
}

fn key_of(m: &SecretMeta) -> String {
    reconcile::key(KIND, &m.namespace().unwrap_or_default(), &m.name_any())
}

/// Handles one Secret: read it in full, check it, run the store's three steps.
pub async fn reconcile(meta: Arc<SecretMeta>, compat: Arc<Compat>) -> Result<Action> {
    let ctx = &compat.ctx;
    let namespace = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let key = key_of(&meta);
    let _share = match ctx.take_share(KIND, &store_of(meta.metadata.annotations.as_ref()), &namespace, &name) {
        Ok(share) => share,
        Err(wait) => return Ok(wait),
    };
    let work = async {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.get_opt(&name).await? {
            Some(s) if fields::enabled(s.metadata.annotations.as_ref(), &ctx.config.compat.annotation_key) => {
                let started = Instant::now();
                let result = handle(&s, &key, &compat).await;
                compat.legacy.handle_secret_duration.observe(started.elapsed().as_secs_f64());
                result
            }
            // Gone or opted out since the event: nothing to do, and nothing to delete.
            _ => Ok(Action::await_change()),
        }
    };
    let result = reconcile::timed(KIND, &namespace, &name, ctx, work).await;
    compat.first_pass.handled(&key);
    result
}

async fn handle(secret: &Secret, key: &str, compat: &Compat) -> Result<Action> {
    let ctx = &compat.ctx;
    let config = &ctx.config;
    let reference = secret.object_ref(&());
    let warn = |reason: &'static str, note: String| async move {
        compat.legacy.errors.inc();
        tracing::warn!(reason, %note, "compatibility Secret refused");
        ctx.event_on(&reference, KIND, true, reason, note).await;
    };

    let request = match fields::parse(secret) {
        Ok(r) => r,
        Err(e) => {
            warn(INVALID_SECRET, e.to_string()).await;
            // Retried with backoff (the same Secret fails the same way until edited, and an
            // edit triggers at once), never in a hot loop.
            return Ok(Action::requeue(ctx.backoff(key)));
        }
    };
    let namespace = secret.namespace().unwrap_or_default();
    ctx.stores_synced().await;
    let store = match ctx.stores.usable(&store_of(secret.metadata.annotations.as_ref()), &namespace) {
        Ok(store) => store,
        Err(Unusable::Pending) => return Ok(Action::requeue(Duration::from_secs(1))),
        Err(unusable) => {
            // Pending is handled above: every other case has a condition to show.
            if let Some(r) = unusable.readiness() {
                warn(r.reason.as_str(), r.message).await;
            }
            return Ok(ctx.resync());
        }
    };
    if config.compat.enforce_endpoint_check
        && let (Some(theirs), Some(ours)) = (&request.endpoint, &store.config.s3_endpoint_url)
        && !fields::same_endpoint(theirs, ours)
    {
        let note = format!(
            "skipped: the Secret is for endpoint {}, its store {} is at {ours} (ENFORCE_ENDPOINT_CHECK=true)",
            fields::shown_endpoint(theirs),
            store.name
        );
        ctx.event_on(&secret.object_ref(&()), KIND, false, "EndpointMismatch", note).await;
        return Ok(Action::await_change());
    }
    let role = &request.account.role;
    if !role_allowed(&config.compat.allowed_roles, role) {
        let allowed = config.compat.allowed_roles.join(",");
        warn(
            "RoleRefused",
            format!("role {role:?} is not allowed (allowed: {allowed}); an operator admin can allow it with COMPAT_ALLOWED_ROLES"),
        )
        .await;
        return Ok(ctx.resync());
    }
    let compat_store = match store.backend.compat() {
        Ok(compat_store) => compat_store,
        Err(e) => {
            let note = format!("{} ({}) cannot serve this Secret: {e}", store.name, store.backend.kind());
            warn(reason_of(&e), note).await;
            return Ok(ctx.resync());
        }
    };
    let claimant = Owner::secret(namespace, secret.name_any(), secret.uid().unwrap_or_default());
    match s3op_backends::compat::provision(
        compat_store,
        &claimant,
        &request.account,
        &request.bucket,
        store.may_adopt(&claimant.namespace),
    )
    .await
    {
        Ok(outcome) => {
            record(compat, &outcome);
            compat.legacy.secrets_processed.inc();
            announce(compat, secret, &request, &outcome).await;
            ctx.succeeded(key);
            Ok(ctx.resync())
        }
        Err(e) if e.is_retryable() => {
            compat.legacy.errors.inc();
            Err(Error::Backend(e))
        }
        Err(e) => {
            warn(reason_of(&e), e.to_string()).await;
            Ok(ctx.resync())
        }
    }
}

/// The event reason of a Secret that cannot be provisioned as it is.
const INVALID_SECRET: &str = "InvalidSecret";

/// The Warning's reason for a store error: the error's own reason, as an S3Bucket or S3User
/// shows it in its condition, except that invalid input is the Secret's own content (the
/// Secret is what a custom resource's spec is), so it reads as a Secret that fails to parse.
fn reason_of(e: &BackendError) -> &'static str {
    match e.category() {
        ErrorCategory::InvalidInput => INVALID_SECRET,
        other => other.as_str(),
    }
}

/// True when `role` is on the allow-list. Compared exactly: the store takes roles as written,
/// so `Admin` or `USER` must not slip through as something the list did not name.
fn role_allowed(allowed: &[String], role: &str) -> bool {
    allowed.iter().any(|r| r == role)
}

fn record(compat: &Compat, outcome: &Outcome) {
    let legacy = &compat.legacy;
    if outcome.user_created {
        legacy.users_created.inc();
    }
    if !outcome.user_updated.is_empty() {
        legacy.users_updated.inc();
    }
    if outcome.bucket_created {
        legacy.buckets_created.inc();
    }
    if outcome.owner_changed.is_some() {
        legacy.bucket_owners_changed.inc();
    }
}

/// One Normal event per Secret change that wrote something; none when all was in place.
async fn announce(compat: &Compat, secret: &Secret, request: &fields::Request, outcome: &Outcome) {
    if outcome.unchanged() {
        return;
    }
    let access = &request.account.access_key;
    let bucket = &request.bucket;
    let mut done = Vec::new();
    if outcome.user_created {
        done.push(format!("user {access} created"));
    }
    if !outcome.user_updated.is_empty() {
        done.push(format!("user {access} updated ({})", outcome.user_updated.join(", ")));
    }
    if outcome.bucket_created {
        done.push(format!("bucket {bucket} created"));
    }
    if outcome.owner_changed.is_some() {
        done.push(format!("bucket {bucket} now belongs to {access}"));
    }
    tracing::info!(namespace = %secret.namespace().unwrap_or_default(), secret = %secret.name_any(), what = %done.join("; "), "compatibility Secret provisioned");
    let reference = secret.object_ref(&());
    compat.ctx.event_on(&reference, KIND, false, "Provisioned", done.join("; ")).await;
    if let Some(Some(previous)) = &outcome.owner_changed {
        let note = format!(
            "bucket {bucket} moved from access key {previous} to {access}; the user {previous} is left in place on the store (remove it there once nothing uses it)"
        );
        compat.ctx.event_on(&reference, KIND, false, "AccessKeyChanged", note).await;
    }
}

/// Retries a failing Secret with per-Secret exponential backoff.
pub fn error_policy(meta: Arc<SecretMeta>, err: &Error, compat: Arc<Compat>) -> Action {
    reconcile::retry_later(&compat.ctx, KIND, &meta.namespace().unwrap_or_default(), &meta.name_any(), err)
}

/// Measures `s3_operator_sync_duration_seconds`: from start-up until every annotated Secret
/// of the first list was handled once (the old operator's "sync").
#[derive(Debug, Default)]
struct FirstPass {
    // `None` once the first pass is over, so handled keys stop being recorded.
    handled: Mutex<Option<HashSet<String>>>,
}

impl FirstPass {
    fn handled(&self, key: &str) {
        if let Some(set) = self.handled.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            set.insert(key.to_string());
        }
    }
}

/// Watches the first pass over `store` and records its duration once it is complete.
pub async fn observe_first_pass(store: Store<SecretMeta>, compat: Arc<Compat>, started: Instant) {
    *compat.first_pass.handled.lock().unwrap_or_else(|p| p.into_inner()) = Some(HashSet::new());
    if crate::context::wait_synced(&store).await.is_err() {
        return;
    }
    let first: Vec<ObjectRef<SecretMeta>> = store.state().iter().map(|m| ObjectRef::from_obj(m.as_ref())).collect();
    loop {
        {
            let mut handled = compat.first_pass.handled.lock().unwrap_or_else(|p| p.into_inner());
            let done = handled.as_ref().is_some_and(|h| {
                first.iter().all(|r| {
                    let key = reconcile::key(KIND, r.namespace.as_deref().unwrap_or_default(), &r.name);
                    // A Secret deleted meanwhile will never be handled: it does not hold the pass up.
                    h.contains(&key) || store.get(r).is_none()
                })
            });
            if done {
                *handled = None;
                compat.legacy.sync_duration.observe(started.elapsed().as_secs_f64());
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use kube::{api::ObjectMeta, core::PartialObjectMetaExt};
    use watcher::Event;

    use super::*;

    const KEY: &str = "s3-resource-operator.io/enabled";

    fn meta(name: &str, annotations: &[(&str, &str)]) -> SecretMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            labels: Some(BTreeMap::from([("app".to_string(), "x".to_string())])),
            ..ObjectMeta::default()
        }
        .into_response_partial()
    }

    fn name(e: &Option<Event<SecretMeta>>) -> String {
        match e {
            Some(Event::Apply(m)) => format!("apply {}", m.name_any()),
            Some(Event::InitApply(m)) => format!("init-apply {}", m.name_any()),
            Some(Event::Delete(m)) => format!("delete {}", m.name_any()),
            Some(Event::Init) => "init".into(),
            Some(Event::InitDone) => "init-done".into(),
            None => "dropped".into(),
        }
    }

    #[test]
    fn store_refusals_read_as_the_conditions_do_and_bad_content_as_an_invalid_secret() {
        let taken = BackendError::NotOwned { what: "bucket b".into(), detail: "held by team-b".into() };
        assert_eq!(reason_of(&taken), "Conflict");
        assert_eq!(reason_of(&BackendError::InvalidInput("access key too short".into())), INVALID_SECRET);
        assert_eq!(reason_of(&BackendError::Unsupported { backend: "aws", feature: "compat" }), "Unsupported");
    }

    #[test]
    fn roles_are_compared_exactly() {
        let allowed = vec!["user".to_string(), "userplus".to_string()];
        assert!(role_allowed(&allowed, "user") && role_allowed(&allowed, "userplus"));
        for role in ["User", "USER", "Userplus", "admin", "Admin", "user ", "useR"] {
            assert!(!role_allowed(&allowed, role), "{role:?}");
        }
    }

    #[test]
    fn only_annotated_secrets_are_picked() {
        let on = meta("on", &[(KEY, "true"), ("kubectl.kubernetes.io/last-applied-configuration", "{\"data\":…}")]);
        let off = meta("off", &[(KEY, "false")]);
        let plain = meta("plain", &[]);
        assert_eq!(name(&only_annotated(Event::InitApply(on.clone()), KEY)), "init-apply on");
        assert_eq!(name(&only_annotated(Event::InitApply(off.clone()), KEY)), "dropped");
        assert_eq!(name(&only_annotated(Event::InitApply(plain.clone()), KEY)), "dropped");
        assert_eq!(name(&only_annotated(Event::Apply(on.clone()), KEY)), "apply on");
        // A Secret that loses its annotation leaves the store.
        assert_eq!(name(&only_annotated(Event::Apply(off), KEY)), "delete off");
        assert_eq!(name(&only_annotated(Event::Apply(plain), KEY)), "delete plain");
        assert_eq!(name(&only_annotated(Event::Init, KEY)), "init");

        let Some(Event::Apply(kept)) = only_annotated(Event::Apply(on), KEY) else { panic!("kept") };
        assert_eq!(kept.metadata.annotations, Some(BTreeMap::from([(KEY.to_string(), "true".to_string())])));
        assert_eq!(kept.metadata.labels, None, "nothing but the annotation is kept in memory");
    }
}
