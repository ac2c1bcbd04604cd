//! The `S3User` custom resource: a user (access key) with scoped access to S3Buckets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Most grants one S3User may hold; keeps policies well under every store's size limits.
pub const MAX_ACCESS_ENTRIES: usize = 32;

/// A user on the operator's object store, with credentials written to a Secret and access to
/// S3Buckets of the same namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "s3-resource-operator.io",
    version = "v1alpha1",
    kind = "S3User",
    plural = "s3users",
    singular = "s3user",
    shortname = "s3u",
    category = "s3",
    namespaced,
    status = "S3UserStatus",
    doc = "S3User declares a user (access key) on the operator's object store, its access to S3Buckets in the same namespace, and the Secret that receives its credentials.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.userName"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".status.store"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","priority":1,"jsonPath":".status.backend"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "has(self.userName) == has(oldSelf.userName) && (!has(self.userName) || self.userName == oldSelf.userName)"
).message("userName is immutable: it can only be chosen when the S3User is created"))]
#[x_kube(validation = Rule::new(crate::store::STORE_REF_IMMUTABLE).message(crate::store::STORE_REF_IMMUTABLE_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct S3UserSpec {
    /// The store this object lives on: an S3Store of this namespace or a ClusterS3Store that
    /// allows this namespace. Absent: the operator's default store (configured by its
    /// environment), if it has one. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<crate::store::StoreRef>,

    /// Name of the user on the object store. Defaults to "<namespace>-<name>" (shortened with a
    /// hash when longer than 64 characters). 3-64 letters, digits, dots, underscores and hyphens.
    /// Immutable: set it at creation or never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::user_name")]
    pub user_name: Option<String>,

    /// Buckets this user may use, each an S3Bucket in the same namespace, listed at most once.
    /// The user gets exactly these grants: a bucket removed from the list loses its access.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["bucket".into()]))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.bucket == a.bucket))").message("each bucket may appear in access at most once"))]
    pub access: Vec<BucketAccess>,

    /// Name of the Secret that receives the credentials (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION and the bucket names), ready for
    /// envFrom. Defaults to "<name>-s3-credentials". A Secret not created for this S3User is
    /// never overwritten. Deleting the Secret rotates the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_name")]
    pub secret_name: Option<String>,
}

/// One grant: a bucket and what the user may do in it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketAccess {
    /// Name of an S3Bucket object in the same namespace (its metadata.name, not the bucket name
    /// on the store).
    #[schemars(schema_with = "crate::schema::object_name")]
    pub bucket: String,
    /// ReadWrite (list, read, write and delete objects) or ReadOnly (list and read objects).
    pub permission: Permission,
}

/// What a grant allows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Permission {
    /// List, read, write and delete objects, including multipart uploads.
    ReadWrite,
    /// List and read objects.
    #[default]
    ReadOnly,
}

/// What the operator observed and did for an S3User.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3UserStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the user on the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The access key id currently written to the Secret (never the secret key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Name of the Secret holding the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The store holding it: "S3Store/<name>", "ClusterS3Store/<name>", or the name the operator
    /// gives its default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Kind of object store holding the user (aws, versitygw, minio or garage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Current state, keyed by type. Ready tells whether the user, its grants and its Secret are in place.
    /// Reconciling (True) while work or a retryable wait is under way; Stalled (True) when only
    /// a change by a person can help. Both carry the reason, and neither is there when Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
