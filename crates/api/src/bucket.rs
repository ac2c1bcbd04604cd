//! The `S3Bucket` custom resource: one bucket on the configured object store.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A bucket on the operator's object store, created and kept in the shape this spec describes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "s3-resource-operator.io",
    version = "v1alpha1",
    kind = "S3Bucket",
    plural = "s3buckets",
    singular = "s3bucket",
    shortname = "s3b",
    category = "s3",
    namespaced,
    status = "S3BucketStatus",
    doc = "S3Bucket declares a bucket on the operator's object store (AWS S3, VersityGW, MinIO or Garage).",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".status.bucketName"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".status.store"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","priority":1,"jsonPath":".status.backend"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "!has(self.forceDelete) || !self.forceDelete || (has(self.deletionPolicy) && self.deletionPolicy == 'Delete')"
).message("forceDelete: true is only allowed together with deletionPolicy: Delete"))]
#[x_kube(validation = Rule::new(
    "!(has(self.objectLock) && self.objectLock) || !has(self.versioning) || self.versioning == 'Enabled'"
).message("objectLock requires versioning to stay Enabled"))]
#[x_kube(validation = Rule::new(
    "has(self.bucketName) == has(oldSelf.bucketName) && (!has(self.bucketName) || self.bucketName == oldSelf.bucketName)"
).message("bucketName is immutable: it can only be chosen when the S3Bucket is created"))]
#[x_kube(validation = Rule::new(
    "(has(self.objectLock) && self.objectLock) == (has(oldSelf.objectLock) && oldSelf.objectLock)"
).message("objectLock is immutable: it can only be chosen when the S3Bucket is created"))]
#[x_kube(validation = Rule::new(crate::store::STORE_REF_IMMUTABLE).message(crate::store::STORE_REF_IMMUTABLE_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct S3BucketSpec {
    /// The store this object lives on: an S3Store of this namespace or a ClusterS3Store that
    /// allows this namespace. Absent: the operator's default store (configured by its
    /// environment), if it has one. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<crate::store::StoreRef>,

    /// Name of the bucket on the object store. Defaults to "<namespace>-<name>" (shortened with a
    /// hash when longer than 63 characters). Must follow the S3 bucket naming rules: 3-63
    /// characters of lowercase letters, digits, dots and hyphens, starting and ending with a
    /// letter or digit. Immutable: set it at creation or never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::bucket_name")]
    pub bucket_name: Option<String>,

    /// What happens to the bucket when this S3Bucket is deleted. Retain (the default) keeps the
    /// bucket and its data on the store. Delete removes the bucket if it is empty; a bucket that
    /// still holds objects is kept and reported (DeletionBlocked) unless forceDelete is also true.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// With deletionPolicy Delete: remove every object and object version first, then the
    /// bucket. Data is lost for good. Only allowed together with deletionPolicy: Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_delete: Option<bool>,

    /// Object versioning; see [`Versioning`] (whose doc becomes this field's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<Versioning>,

    /// Create the bucket with S3 Object Lock enabled (which also enables versioning).
    /// Only takes effect at creation and cannot be changed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<bool>,

    /// Tags to put on the bucket, where the store supports bucket tagging (not Garage).
    /// At most 50; keys up to 128 characters, values up to 256. Keys starting with "aws:" or
    /// "s3-resource-operator.io/" are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    #[x_kube(validation = Rule::new(
        "self.all(k, size(k) >= 1 && size(k) <= 128 && !k.startsWith('aws:') && !k.startsWith('s3-resource-operator.io/'))"
    ).message("tag keys must be 1-128 characters and must not start with the reserved prefixes aws: or s3-resource-operator.io/"))]
    pub tags: BTreeMap<String, TagValue>,

    /// Limits on the bucket's size and object count, where the store supports quotas
    /// (MinIO: maxSize only; Garage: both). Elsewhere the bucket reports Unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// A bucket tag value (at most 256 characters).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(transparent)]
pub struct TagValue(#[schemars(length(max = 256))] pub String);

/// What to do with the bucket when its S3Bucket is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the bucket and all its data on the store.
    #[default]
    Retain,
    /// Delete the bucket (only if empty, unless forceDelete is set).
    Delete,
}

// kube's schema transform for Option<enum> hoists the enum's description over the field's,
// so this doc is written for `kubectl explain s3bucket.spec.versioning`.
/// Object versioning: Enabled or Suspended. Absent leaves the store's default (unversioned for a
/// new bucket). A versioned bucket can be suspended but never returns to unversioned.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Versioning {
    /// Every write keeps the previous object version.
    Enabled,
    /// New writes overwrite; existing versions are kept.
    Suspended,
}

/// Bucket quota.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxSize) || has(self.maxObjects)").message("quota needs maxSize, maxObjects or both"))]
pub struct Quota {
    /// Largest total size of the bucket's objects, as a Kubernetes quantity (e.g. 10Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Quantity>,
    /// Largest number of objects in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_objects: Option<i64>,
}

/// What the operator observed and did for an S3Bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3BucketStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the bucket on the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// The store holding it: "S3Store/<name>", "ClusterS3Store/<name>", or the name the operator
    /// gives its default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Kind of object store holding the bucket (aws, versitygw, minio or garage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// S3 endpoint where the bucket is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Current state, keyed by type. Ready tells whether the bucket exists and matches the spec.
    /// Reconciling (True) while work or a retryable wait is under way; Stalled (True) when only
    /// a change by a person can help. Both carry the reason, and neither is there when Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
