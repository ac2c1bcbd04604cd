//! The object stores the operator serves, one backend each: the default store from the
//! environment and every S3Store and ClusterS3Store, built by the store reconciler
//! (`s3store.rs`). Objects resolve their store here before any backend call; a store that is
//! missing, not allowed or not ready degrades only the objects on it.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex, RwLock},
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Resource, ResourceExt,
    core::{PartialObjectMeta, Selector, SelectorExt},
    runtime::reflector::{ObjectRef, Store},
};
use s3op_api::{ClusterS3Store, ConditionReason, S3Store, StoreKind, StoreRef, store::NamespaceSelection};
use s3op_backends::Backend;

use crate::{config::StoreConfig, status::Readiness};

/// Which store an object names: the default store, an S3Store of its namespace, or a
/// ClusterS3Store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKey {
    /// The store the operator's environment configures.
    Default,
    /// A namespaced S3Store.
    Namespaced {
        /// Its namespace (always the referring object's).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A ClusterS3Store.
    Cluster(String),
}

impl StoreKey {
    /// The store `store_ref` names for an object of `namespace`: an S3Store is always looked up
    /// in the object's own namespace, so no reference reaches another namespace's store.
    pub fn of(store_ref: Option<&StoreRef>, namespace: &str) -> StoreKey {
        match store_ref {
            None => StoreKey::Default,
            Some(StoreRef { kind: StoreKind::S3Store, name }) => {
                StoreKey::Namespaced { namespace: namespace.to_string(), name: name.clone() }
            }
            Some(StoreRef { kind: StoreKind::ClusterS3Store, name }) => StoreKey::Cluster(name.clone()),
        }
    }

    /// The store's label in metrics, unique in the cluster: `S3Store/<namespace>/<name>`,
    /// `ClusterS3Store/<name>`, or the default store's configured name.
    pub fn label(&self, default_name: &str) -> String {
        match self {
            StoreKey::Namespaced { namespace, name } => format!("S3Store/{namespace}/{name}"),
            other => other.shown(default_name),
        }
    }

    /// How objects name this store in their status: `S3Store/<name>`, `ClusterS3Store/<name>`,
    /// or the default store's configured name.
    pub fn shown(&self, default_name: &str) -> String {
        match self {
            StoreKey::Default => default_name.to_string(),
            StoreKey::Namespaced { name, .. } => format!("S3Store/{name}"),
            StoreKey::Cluster(name) => format!("ClusterS3Store/{name}"),
        }
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreKey::Default => f.write_str("the default store"),
            StoreKey::Namespaced { namespace, name } => write!(f, "S3Store {namespace}/{name}"),
            StoreKey::Cluster(name) => write!(f, "ClusterS3Store {name}"),
        }
    }
}

/// One store the operator can work on: its settings, its (metered) backend, and the name
/// objects report.
#[derive(Debug)]
pub struct ActiveStore {
    /// The name objects on it report in status and metrics carry.
    pub name: String,
    /// Its settings (endpoint, region, policy).
    pub config: StoreConfig,
    /// Its backend.
    pub backend: Arc<dyn Backend>,
}

impl ActiveStore {
    /// The default store: the one the environment configures, named `name`, over `backend`.
    pub fn default_store(name: &str, config: StoreConfig, backend: Arc<dyn Backend>) -> Arc<ActiveStore> {
        Arc::new(ActiveStore { name: name.to_string(), config, backend })
    }

    /// Whether buckets and users in `namespace` may adopt ones made outside the operator.
    pub fn may_adopt(&self, namespace: &str) -> bool {
        self.config.adopt_namespaces.iter().any(|n| n == namespace)
    }

    /// The S3 endpoint objects on this store are reached at.
    pub fn endpoint(&self) -> String {
        self.config
            .s3_endpoint_url
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.config.region))
    }
}

/// What the store reconciler last found for a store.
#[derive(Debug, Clone)]
pub enum Slot {
    /// Built and answering its health check.
    Ready(Arc<ActiveStore>),
    /// Not usable now, and why; `built` is its backend when one could be made (cleanup still
    /// tries it: a deletion is retried until the store answers).
    NotReady {
        /// The reason for the objects' condition.
        message: String,
        /// The backend, when the settings were complete.
        built: Option<Arc<ActiveStore>>,
    },
}

/// Why an object cannot use its store now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The store does not exist (or no storeRef and no default store).
    NotFound(String),
    /// A ClusterS3Store that does not allow the object's namespace.
    NotAllowed(String),
    /// The store exists but cannot be used now.
    NotReady(String),
    /// The store exists and its first connection is still being made: retry in a moment,
    /// without reporting (every object would flap at start-up otherwise).
    Pending,
}

impl Unusable {
    /// The condition an object on this store shows, or `None` for a short silent wait.
    pub fn readiness(&self) -> Option<Readiness> {
        match self {
            Unusable::NotFound(m) => Some(Readiness::not_ready(ConditionReason::StoreNotFound, m.clone())),
            Unusable::NotAllowed(m) => Some(Readiness::not_ready(ConditionReason::StoreNotAllowed, m.clone())),
            Unusable::NotReady(m) => Some(Readiness::not_ready(ConditionReason::StoreNotReady, m.clone())),
            Unusable::Pending => None,
        }
    }
}

/// Whether `namespace` (with `labels`) may use a ClusterS3Store allowing `selection`. An absent
/// selection allows nobody: a cluster store is opt-in per namespace.
pub fn namespace_allowed(
    selection: Option<&NamespaceSelection>,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selection) = selection else { return false };
    if selection.names.iter().any(|n| n.0 == namespace) {
        return true;
    }
    let Some(selector) = &selection.selector else { return false };
    // An empty selector would match everything; only a listed namespace or a real match counts.
    if selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    {
        return false;
    }
    match Selector::try_from(selector.clone()) {
        Ok(selector) => labels.is_some_and(|l| selector.matches(l)),
        // A selector the API server let through but we cannot read allows nobody.
        Err(_) => false,
    }
}

/// What changed about the stores objects use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// The store was built, rebuilt, turned ready or not, or deleted: its objects look again.
    Store(StoreKey),
    /// A namespace's labels changed: its objects on ClusterS3Stores (whose selectors match
    /// labels) look again.
    Namespace(String),
}

impl StoreChange {
    /// Whether an object of `namespace` on `store` is concerned.
    pub fn concerns(&self, namespace: &str, store: &StoreKey) -> bool {
        match self {
            StoreChange::Store(key) => key == store,
            StoreChange::Namespace(ns) => ns == namespace && matches!(store, StoreKey::Cluster(_)),
        }
    }
}

/// Every store the operator serves, and who is told when one changes.
#[derive(Default)]
pub struct Stores {
    default: Option<Arc<ActiveStore>>,
    default_name: String,
    slots: RwLock<HashMap<StoreKey, Slot>>,
    watched: RwLock<Watched>,
    subscribers: Mutex<Vec<UnboundedSender<StoreChange>>>,
}

/// The caches the registry reads store objects and namespaces from (absent in unit tests and
/// where the operator does not watch that kind).
#[derive(Default, Clone)]
pub struct Watched {
    /// S3Stores.
    pub namespaced: Option<Store<S3Store>>,
    /// ClusterS3Stores.
    pub cluster: Option<Store<ClusterS3Store>>,
    /// Namespaces (metadata), for ClusterS3Stores' selectors.
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("namespaced", &self.namespaced.is_some())
            .field("cluster", &self.cluster.is_some())
            .field("namespaces", &self.namespaces.is_some())
            .finish()
    }
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Stores").field("default", &self.default_name).field("stores", &slots.len()).finish()
    }
}

impl Stores {
    /// The registry with `default` (if the environment configures one) reported as `default_name`.
    pub fn new(default: Option<Arc<ActiveStore>>, default_name: impl Into<String>) -> Self {
        Self { default, default_name: default_name.into(), ..Self::default() }
    }

    /// Reads S3Store, ClusterS3Store and Namespace objects from these caches from now on.
    pub fn watch(
        &self,
        namespaced: Option<Store<S3Store>>,
        cluster: Option<Store<ClusterS3Store>>,
        namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    ) {
        *self.watched.write().unwrap_or_else(|p| p.into_inner()) = Watched { namespaced, cluster, namespaces };
    }

    /// The caches store lookups read, to wait for their first full list: before it, a store
    /// that exists would read as missing (and a namespace as not allowed).
    pub fn caches(&self) -> Watched {
        self.watched.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How an object names `key` in its status.
    pub fn shown(&self, key: &StoreKey) -> String {
        key.shown(&self.default_name)
    }

    /// The metrics label of `key`.
    pub fn label(&self, key: &StoreKey) -> String {
        key.label(&self.default_name)
    }

    /// A stream of changes to stores (built, rebuilt, turned ready or not, deleted) and to
    /// namespaces' labels, so the objects concerned are reconciled at once.
    pub fn subscribe(&self) -> UnboundedReceiver<StoreChange> {
        let (tx, rx) = unbounded();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Records what the store reconciler found for `key`, telling subscribers when it changed
    /// whether the store is usable or which backend serves it.
    pub fn set(&self, key: StoreKey, slot: Slot) {
        let changed = {
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            let changed = match (slots.get(&key), &slot) {
                (Some(Slot::Ready(a)), Slot::Ready(b)) => !Arc::ptr_eq(a, b),
                (Some(Slot::NotReady { message: a, .. }), Slot::NotReady { message: b, .. }) => a != b,
                _ => true,
            };
            slots.insert(key.clone(), slot);
            changed
        };
        if changed {
            self.notify(key);
        }
    }

    /// Forgets a deleted store.
    pub fn remove(&self, key: &StoreKey) {
        let removed = self.slots.write().unwrap_or_else(|p| p.into_inner()).remove(key).is_some();
        if removed {
            self.notify(key.clone());
        }
    }

    /// What the reconciler last found for `key`.
    pub fn slot(&self, key: &StoreKey) -> Option<Slot> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Tells subscribers that the labels of `namespace` changed.
    pub fn namespace_changed(&self, namespace: String) {
        self.tell(StoreChange::Namespace(namespace));
    }

    /// Tells subscribers that the store `key` changed in a way its slot does not show (its
    /// spec's namespace selection).
    pub fn notify(&self, key: StoreKey) {
        self.tell(StoreChange::Store(key));
    }

    fn tell(&self, change: StoreChange) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| s.unbounded_send(change.clone()).is_ok());
    }

    /// The store an object of `namespace` may create and change things on, or why it cannot.
    pub fn usable(&self, key: &StoreKey, namespace: &str) -> Result<Arc<ActiveStore>, Unusable> {
        let watched = self.watched.read().unwrap_or_else(|p| p.into_inner());
        match key {
            StoreKey::Default => self.default.clone().ok_or_else(|| {
                Unusable::NotFound(
                    "no storeRef, and this operator has no default store: set spec.storeRef to an S3Store of this namespace or a ClusterS3Store that allows it".into(),
                )
            }),
            StoreKey::Namespaced { namespace: ns, name } => {
                let found = watched.namespaced.as_ref().and_then(|s| s.get(&ObjectRef::new(name).within(ns)));
                let Some(store) = found else {
                    return Err(Unusable::NotFound(format!("no S3Store {name} in namespace {ns}")));
                };
                if store.meta().deletion_timestamp.is_some() {
                    return Err(Unusable::NotReady(format!("{key} is being deleted")));
                }
                self.ready(key)
            }
            StoreKey::Cluster(name) => {
                let Some(store) = watched.cluster.as_ref().and_then(|s| s.get(&ObjectRef::new(name))) else {
                    let why = if watched.cluster.is_none() {
                        "this operator does not serve ClusterS3Stores (it watches one namespace; CLUSTER_STORES=true serves them)"
                    } else {
                        "it does not exist"
                    };
                    return Err(Unusable::NotFound(format!("no ClusterS3Store {name}: {why}")));
                };
                let labels = watched
                    .namespaces
                    .as_ref()
                    .and_then(|s| s.get(&ObjectRef::new(namespace)))
                    .map(|n| n.labels().clone());
                if !namespace_allowed(store.spec.namespaces.as_ref(), namespace, labels.as_ref()) {
                    return Err(Unusable::NotAllowed(format!(
                        "{key} does not allow namespace {namespace}: an administrator can add it to the store's spec.namespaces"
                    )));
                }
                if store.meta().deletion_timestamp.is_some() {
                    return Err(Unusable::NotReady(format!("{key} is being deleted")));
                }
                self.ready(key)
            }
        }
    }

    fn ready(&self, key: &StoreKey) -> Result<Arc<ActiveStore>, Unusable> {
        match self.slot(key) {
            Some(Slot::Ready(store)) => Ok(store),
            Some(Slot::NotReady { message, .. }) => Err(Unusable::NotReady(format!("{key} is not ready: {message}"))),
            None => Err(Unusable::Pending),
        }
    }

    /// The store a deleted object's cleanup runs on: `None` when the store is gone (or never
    /// existed), so nothing was made there by this object; an error while it exists but cannot
    /// be used, so the cleanup is retried. Namespace permission is not asked again: an object
    /// may always remove what it holds.
    pub fn for_cleanup(&self, key: &StoreKey) -> Result<Option<Arc<ActiveStore>>, Unusable> {
        let exists = {
            let watched = self.watched.read().unwrap_or_else(|p| p.into_inner());
            match key {
                StoreKey::Default => return Ok(self.default.clone()),
                StoreKey::Namespaced { namespace, name } => watched
                    .namespaced
                    .as_ref()
                    .is_some_and(|s| s.get(&ObjectRef::new(name).within(namespace)).is_some()),
                StoreKey::Cluster(name) => {
                    watched.cluster.as_ref().is_some_and(|s| s.get(&ObjectRef::new(name)).is_some())
                }
            }
        };
        if !exists {
            return Ok(None);
        }
        match self.slot(key) {
            Some(Slot::Ready(store)) | Some(Slot::NotReady { built: Some(store), .. }) => Ok(Some(store)),
            Some(Slot::NotReady { message, .. }) => Err(Unusable::NotReady(format!("{key} is not ready: {message}"))),
            None => Err(Unusable::Pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use s3op_api::store::NamespaceName;

    use super::*;

    #[test]
    fn an_s3store_is_always_looked_up_in_the_objects_own_namespace() {
        let r = StoreRef { kind: StoreKind::S3Store, name: "minio".into() };
        assert_eq!(
            StoreKey::of(Some(&r), "team-b"),
            StoreKey::Namespaced { namespace: "team-b".into(), name: "minio".into() }
        );
        assert_eq!(StoreKey::of(None, "team-b"), StoreKey::Default);
        let c = StoreRef { kind: StoreKind::ClusterS3Store, name: "aws".into() };
        assert_eq!(StoreKey::of(Some(&c), "x").shown("default"), "ClusterS3Store/aws");
        assert_eq!(StoreKey::Default.shown("legacy"), "legacy");
        let namespaced = StoreKey::of(Some(&r), "team-b");
        assert_eq!(
            (namespaced.shown("d"), namespaced.label("d")),
            ("S3Store/minio".into(), "S3Store/team-b/minio".into())
        );
    }

    #[test]
    fn a_cluster_store_allows_listed_and_selected_namespaces_only() {
        let labels = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        assert!(!namespace_allowed(None, "a", Some(&labels)), "no selection: nobody");
        let names = NamespaceSelection { names: vec![NamespaceName("a".into())], selector: None };
        assert!(namespace_allowed(Some(&names), "a", None));
        assert!(!namespace_allowed(Some(&names), "b", Some(&labels)));
        let empty = NamespaceSelection { names: vec![], selector: Some(LabelSelector::default()) };
        assert!(!namespace_allowed(Some(&empty), "b", Some(&labels)), "an empty selector selects nobody");
        let by_label = NamespaceSelection {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("team".to_string(), "payments".to_string())])),
                match_expressions: None,
            }),
        };
        assert!(namespace_allowed(Some(&by_label), "b", Some(&labels)));
        assert!(!namespace_allowed(Some(&by_label), "b", Some(&BTreeMap::new())));
        assert!(!namespace_allowed(Some(&by_label), "b", None), "an unknown namespace matches nothing");
        let exists = NamespaceSelection {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "Exists".into(),
                    values: None,
                }]),
            }),
        };
        assert!(namespace_allowed(Some(&exists), "b", Some(&labels)));
    }

    #[test]
    fn a_namespace_change_concerns_its_objects_on_cluster_stores_only() {
        let cluster = StoreKey::Cluster("minio".into());
        let own = StoreKey::Namespaced { namespace: "a".into(), name: "minio".into() };
        let labelled = StoreChange::Namespace("a".into());
        assert!(labelled.concerns("a", &cluster));
        assert!(!labelled.concerns("b", &cluster), "another namespace");
        assert!(
            !labelled.concerns("a", &own) && !labelled.concerns("a", &StoreKey::Default),
            "labels select nothing there"
        );
        assert!(StoreChange::Store(own.clone()).concerns("a", &own));
        assert!(!StoreChange::Store(own).concerns("a", &cluster));
    }

    #[test]
    fn a_missing_or_unready_store_is_explained_and_a_new_one_is_waited_for() {
        let stores = Stores::new(None, "default");
        let err = stores.usable(&StoreKey::Default, "a").unwrap_err();
        assert!(matches!(&err, Unusable::NotFound(m) if m.contains("storeRef")), "{err:?}");
        let key = StoreKey::Cluster("x".into());
        assert!(matches!(stores.usable(&key, "a"), Err(Unusable::NotFound(_))));
        assert_eq!(stores.for_cleanup(&key).unwrap().map(|s| s.name.clone()), None, "gone store: nothing to clean");
        assert_eq!(stores.for_cleanup(&StoreKey::Default).unwrap().map(|s| s.name.clone()), None);
    }
}
