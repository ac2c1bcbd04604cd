//! Custom resource types of s3-resource-operator: `S3Bucket`, `S3User`, `S3Store` and
//! `ClusterS3Store`
//! (group `s3-resource-operator.io`, version `v1alpha1`), their condition
//! vocabulary and the constants the controller and tests share.
//!
//! This crate knows nothing of object stores: it only describes what a user asks for
//! and what the operator reports back.

pub mod bucket;
pub mod conditions;
pub mod constants;
pub mod naming;
pub mod quantity;
mod schema;
pub mod store;
pub mod user;

pub use bucket::{DeletionPolicy, Quota, S3Bucket, S3BucketSpec, S3BucketStatus, Versioning};
pub use conditions::{ConditionReason, ConditionType};
pub use constants::*;
pub use naming::{BucketNameError, UserNameError, validate_bucket_name, validate_user_name};
pub use store::{
    ClusterS3Store, ClusterS3StoreSpec, S3Store, S3StoreSpec, S3StoreStatus, StoreCapabilities, StoreKind, StoreRef,
};
pub use user::{BucketAccess, Permission, S3User, S3UserSpec, S3UserStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSON};

/// Every CustomResourceDefinition this crate defines, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    let mut crds = vec![S3Bucket::crd(), S3User::crd(), S3Store::crd(), ClusterS3Store::crd()];
    crds.iter_mut().for_each(default_unobserved_status);
    crds
}

/// Gives `status` the default `{observedGeneration: 0}`, so an object the operator has not
/// seen yet reads as "generation 1, observed 0": kstatus (Flux, kpt) calls it in progress. An
/// object without any status would be `Current` to kstatus, and `flux`'s wait would pass
/// before the operator even looked at it.
fn default_unobserved_status(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(JSON(serde_json::json!({"observedGeneration": 0})));
        }
    }
}
