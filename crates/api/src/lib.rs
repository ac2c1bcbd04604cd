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

/// Every CustomResourceDefinition this crate defines, in a stable order.
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![S3Bucket::crd(), S3User::crd(), S3Store::crd(), ClusterS3Store::crd()]
}
