//! Object-store backends: the [`Backend`] trait and its implementations. Knows nothing of
//! Kubernetes: callers pass plain names, owners and grants.

pub mod aws;
pub mod backend;
pub mod claimed_buckets;
pub mod claimed_users;
pub mod compat;
pub mod error;
pub mod garage;
pub mod http;
pub mod ledger;
pub mod memory;
pub mod minio;
pub mod model;
pub mod policy;
pub mod recorded_grants;
pub mod s3ops;
pub mod secret;
pub mod snapshot;
pub mod versitygw;

pub use backend::Backend;
pub use compat::{CompatAccount, CompatStore};
pub use error::{BackendError, ErrorCategory, Result};
pub use model::*;
pub use secret::SecretString;
