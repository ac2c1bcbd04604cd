//! The `S3Store` and `ClusterS3Store` custom resources: an object store the operator serves, its
//! admin credentials, and the policy that goes with it. One operator serves many stores.
//!
//! Both kinds share one spec, written once in [`store_spec!`]: the namespaced kind is usable
//! only from its own namespace and reads only Secrets there; the cluster kind names the Secret's
//! namespace and which namespaces may use it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The marker bucket a store uses when its spec names none.
pub const DEFAULT_MARKER_BUCKET: &str = "s3-resource-operator-markers";

/// Default key, in an admin-credentials Secret, of the access key id.
pub const DEFAULT_ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Default key, in an admin-credentials Secret, of the secret access key.
pub const DEFAULT_SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Default key, in an admin-credentials Secret, of Garage's admin API token.
pub const DEFAULT_ADMIN_TOKEN_KEY: &str = "GARAGE_ADMIN_TOKEN";

// kube's derive makes one kind per spec struct, so the shared spec is a macro: the two kinds
// cannot drift apart, and each keeps its own CEL rules and printer columns.
macro_rules! store_spec {
    ($(#[$attr:meta])* $spec:ident) => {
        #[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
        $(#[$attr])*
        #[serde(rename_all = "camelCase")]
        #[x_kube(validation = Rule::new("!has(self.auth.podIdentity) || has(self.provider.aws)")
            .message("auth.podIdentity is only for the aws provider; other stores need auth.secretRef"))]
        #[x_kube(validation = Rule::new("!has(self.provider.garage) || has(self.auth.secretRef)")
            .message("a garage store needs auth.secretRef (its S3 key and admin token)"))]
        pub struct $spec {
            /// The kind of object store and where it answers: exactly one of aws, versitygw, minio, garage.
            pub provider: Provider,

            /// The operator's credentials on this store.
            pub auth: StoreAuth,

            /// TLS settings for the store's https endpoints.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tls: Option<StoreTls>,

            /// Bucket where the operator records which buckets and users it created on this store
            /// (its ownership ledger), on stores whose users carry no tags (VersityGW, MinIO,
            /// Garage). Created on first use. Default "s3-resource-operator-markers".
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::bucket_name")]
            pub marker_bucket: Option<String>,

            /// Namespaces trusted to adopt buckets and users that exist on the store but were not
            /// created by this operator. Empty: never adopt.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 256))]
            pub adopt_namespaces: Vec<NamespaceName>,

            /// Which namespaces may use this store (ClusterS3Store only; an S3Store serves its
            /// own namespace). A namespace is allowed when it is listed in names or matches the
            /// selector. Absent: no namespace, so a new cluster store is opt-in per namespace.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub namespaces: Option<NamespaceSelection>,
        }
    };
}

store_spec! {
    /// An object store usable from this namespace only, with admin credentials from a Secret of
    /// this namespace.
    #[kube(
        group = "s3-resource-operator.io",
        version = "v1alpha1",
        kind = "S3Store",
        plural = "s3stores",
        singular = "s3store",
        shortname = "s3s",
        category = "s3",
        namespaced,
        status = "S3StoreStatus",
        doc = "S3Store declares an object store (AWS S3, VersityGW, MinIO or Garage) that S3Buckets and S3Users of its own namespace can use through storeRef.",
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider"}"#,
        printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )]
    #[x_kube(validation = Rule::new("!has(self.auth.secretRef) || !has(self.auth.secretRef.__namespace__)")
        .message("an S3Store reads Secrets of its own namespace only: leave auth.secretRef.namespace out"))]
    #[x_kube(validation = Rule::new("!has(self.namespaces)")
        .message("namespaces is for a ClusterS3Store; an S3Store serves its own namespace"))]
    #[x_kube(validation = Rule::new("!has(self.auth.podIdentity)")
        .message("an S3Store cannot use the operator's own identity (podIdentity): give it a secretRef, or ask an administrator for a ClusterS3Store"))]
    #[x_kube(validation = Rule::new(
        "!has(self.tls) || !has(self.tls.caBundle) || !has(self.tls.caBundle.__namespace__)"
    ).message("an S3Store reads its CA bundle from its own namespace: leave tls.caBundle.namespace out"))]
    S3StoreSpec
}

store_spec! {
    /// An object store usable from the namespaces its spec allows, with admin credentials from a
    /// Secret in a named namespace.
    #[kube(
        group = "s3-resource-operator.io",
        version = "v1alpha1",
        kind = "ClusterS3Store",
        plural = "clusters3stores",
        singular = "clusters3store",
        shortname = "cs3s",
        category = "s3",
        status = "S3StoreStatus",
        doc = "ClusterS3Store declares an object store (AWS S3, VersityGW, MinIO or Garage) that S3Buckets, S3Users and compatibility Secrets of the namespaces it allows can use.",
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider"}"#,
        printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )]
    #[x_kube(validation = Rule::new("!has(self.auth.secretRef) || has(self.auth.secretRef.__namespace__)")
        .message("a ClusterS3Store must name the namespace of its Secret: set auth.secretRef.namespace"))]
    #[x_kube(validation = Rule::new(
        "!has(self.tls) || !has(self.tls.caBundle) || has(self.tls.caBundle.__namespace__)"
    ).message("a ClusterS3Store must name the namespace of its CA bundle: set tls.caBundle.namespace"))]
    ClusterS3StoreSpec
}

/// A Kubernetes namespace name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(transparent)]
pub struct NamespaceName(#[schemars(schema_with = "crate::schema::object_name")] pub String);

/// The object store's kind and address: exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.aws), has(self.versitygw), has(self.minio), has(self.garage)].filter(x, x).size() == 1"
).message("provider needs exactly one of aws, versitygw, minio or garage"))]
pub struct Provider {
    /// AWS S3 with IAM users (or an S3 + IAM compatible endpoint such as moto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    /// Versity S3 Gateway, with its admin API on the same endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versitygw: Option<S3Provider>,
    /// MinIO, with its admin API on the same endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<S3Provider>,
    /// Garage (its S3 API and its admin API v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garage: Option<GarageProvider>,
}

/// The CEL rule of a store endpoint (see [`validate_endpoint`]).
pub const ENDPOINT_RULE: &str = "self.matches('^https?://[^/?#@[:space:]][^?#@[:space:]]*$')";
/// What the API server answers when an endpoint breaks [`ENDPOINT_RULE`].
pub const ENDPOINT_MESSAGE: &str =
    "an endpoint is an http:// or https:// URL naming a host, with no query, fragment, user info or spaces";

/// Checks a store endpoint as the API server's [`ENDPOINT_RULE`] does: `http://` or `https://`,
/// a host, and an optional path. The operator appends its own paths to an endpoint, so a query
/// or fragment would let a tenant's S3Store cut them off and aim the operator's requests at any
/// URL it likes (a cloud metadata service's credentials, say); user info would send credentials
/// that are not in the store's Secret.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://"));
    let refused = |why: &str| Err(format!("endpoint {endpoint:?}: {ENDPOINT_MESSAGE} ({why})"));
    match rest {
        None => refused("no http:// or https://"),
        Some(r) if r.is_empty() || r.starts_with('/') => refused("no host"),
        Some(r) => match r.chars().find(|c| matches!(c, '?' | '#' | '@') || c.is_whitespace()) {
            Some(c) => refused(&format!("{c:?}")),
            None => Ok(()),
        },
    }
}

/// Where AWS (or a compatible S3 + IAM service) answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// Region of the buckets, e.g. eu-west-1.
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// S3 endpoint, for an S3 + IAM compatible service; absent: AWS's own endpoints. IAM
    /// requests go to the same endpoint when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::endpoint")]
    pub endpoint: Option<String>,
}

/// Where an S3-compatible store (VersityGW, MinIO) answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Provider {
    /// S3 endpoint, e.g. http://minio.storage:9000.
    #[schemars(schema_with = "crate::schema::endpoint")]
    pub endpoint: String,
    /// Region to sign requests for. Default us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
}

/// Where Garage answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GarageProvider {
    /// S3 endpoint, e.g. http://garage.storage:3900.
    #[schemars(schema_with = "crate::schema::endpoint")]
    pub endpoint: String,
    /// Admin API endpoint, e.g. http://garage.storage:3903.
    #[schemars(schema_with = "crate::schema::endpoint")]
    pub admin_endpoint: String,
    /// Region to sign requests for: Garage's s3_region. Default garage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
}

/// The operator's credentials on a store: exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.podIdentity)")
    .message("auth needs exactly one of secretRef or podIdentity"))]
pub struct StoreAuth {
    /// A Secret holding the admin credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<CredentialsSecretRef>,
    /// AWS only, ClusterS3Store only: the operator pod's own identity (IRSA / web identity,
    /// environment, instance role), as the AWS SDKs find it. A namespaced S3Store may not lend
    /// itself the operator's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentity>,
}

/// TLS settings of a store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreTls {
    /// CA certificates (PEM) the store's certificates are checked against, besides the system's
    /// roots: for a store with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleRef>,
}

/// Where a CA bundle is read: one key of a Secret or of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) != has(self.configMapName)")
    .message("caBundle needs exactly one of secretName or configMapName"))]
pub struct CaBundleRef {
    /// A Secret holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_name")]
    pub secret_name: Option<String>,
    /// A ConfigMap holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_name")]
    pub config_map_name: Option<String>,
    /// Namespace of that Secret or ConfigMap: required for a ClusterS3Store, not allowed for an
    /// S3Store (which reads its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_name")]
    pub namespace: Option<String>,
    /// Key holding the PEM bundle. Default ca.crt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::secret_key")]
    pub key: Option<String>,
}

/// Default key of a CA bundle in its Secret or ConfigMap.
pub const DEFAULT_CA_BUNDLE_KEY: &str = "ca.crt";

/// Marker for the pod's own AWS identity; it has no settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct PodIdentity {}

/// A Secret holding a store's admin credentials, and which of its keys hold what.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(schema_with = "crate::schema::object_name")]
    pub name: String,
    /// Namespace of the Secret: required for a ClusterS3Store, not allowed for an S3Store
    /// (which reads its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_name")]
    pub namespace: Option<String>,
    /// Key holding the access key id. Default AWS_ACCESS_KEY_ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::secret_key")]
    pub access_key_id_key: Option<String>,
    /// Key holding the secret access key. Default AWS_SECRET_ACCESS_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::secret_key")]
    pub secret_access_key_key: Option<String>,
    /// Garage only: key holding the admin API token. Default GARAGE_ADMIN_TOKEN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::secret_key")]
    pub admin_token_key: Option<String>,
}

/// Which namespaces may use a ClusterS3Store: those listed, and those whose labels match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelection {
    /// Namespaces allowed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NamespaceName>,
    /// Namespaces allowed by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

// LabelSelector's schema comes from k8s-openapi; the list's length is bounded for CEL's cost
// estimate like every other list.
impl schemars::JsonSchema for NamespaceSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NamespaceSelection".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names = generator.subschema_for::<Vec<NamespaceName>>();
        let selector = generator.subschema_for::<LabelSelector>();
        let mut names = names.to_value();
        names["maxItems"] = 256.into();
        names["description"] = "Namespaces allowed by name.".into();
        let mut selector = selector.to_value();
        selector["description"] = "Namespaces allowed by their labels.".into();
        schemars::json_schema!({
            "type": "object",
            "description": "Which namespaces may use a ClusterS3Store: those listed, and those whose labels match.",
            "properties": {"names": names, "selector": selector},
        })
    }
}

/// What the operator observed of a store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3StoreStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kind of object store (aws, versitygw, minio or garage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// S3 endpoint of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What this store supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<StoreCapabilities>,
    /// Current state, keyed by type. Ready tells whether the store answered a health check
    /// with these credentials.
    /// Reconciling (True) while work or a retryable wait is under way; Stalled (True) when only
    /// a change by a person can help. Both carry the reason, and neither is there when Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// What a store supports; a spec asking for more reads Unsupported on the object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCapabilities {
    /// ReadOnly grants are enforced.
    pub read_only_grants: bool,
    /// Bucket quotas on total size.
    pub quota_max_size: bool,
    /// Bucket quotas on object count.
    pub quota_max_objects: bool,
    /// Bucket versioning.
    pub versioning: bool,
    /// Bucket tags.
    pub tags: bool,
    /// A user may hold two keys at once, so a rotated key overlaps the old one.
    pub multiple_keys: bool,
}

/// Which kind of store a `storeRef` names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, schemars::JsonSchema)]
pub enum StoreKind {
    /// A namespaced store, in the referring object's namespace.
    S3Store,
    /// A cluster-scoped store.
    ClusterS3Store,
}

impl StoreKind {
    /// The kind's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreKind::S3Store => "S3Store",
            StoreKind::ClusterS3Store => "ClusterS3Store",
        }
    }
}

/// The store an S3Bucket or S3User lives on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// S3Store (in the same namespace) or ClusterS3Store.
    pub kind: StoreKind,
    /// Name of the store.
    #[schemars(schema_with = "crate::schema::object_name")]
    pub name: String,
}

/// The rule, shared by S3Bucket and S3User, that keeps an object on the store it was made on.
pub const STORE_REF_IMMUTABLE: &str =
    "has(self.storeRef) == has(oldSelf.storeRef) && (!has(self.storeRef) || self.storeRef == oldSelf.storeRef)";
/// The message of [`STORE_REF_IMMUTABLE`].
pub const STORE_REF_IMMUTABLE_MESSAGE: &str =
    "storeRef is immutable: an object stays on the store it was created on (delete and create it again to move)";
