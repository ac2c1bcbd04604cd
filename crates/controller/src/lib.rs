//! s3-resource-operator's controller: configuration, the S3Bucket and S3User reconcilers that
//! wire the API types to an object-store backend, the compatibility mode for annotated
//! Secrets, metrics, health endpoints and telemetry.

pub mod breaker;
pub mod bucket;
pub mod compat;
pub mod config;
pub mod context;
pub mod events;
pub mod http;
pub mod leader;
pub mod metered;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod s3store;
pub mod shares;
pub mod status;
pub mod store;
pub mod stores;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod triggers;
pub mod user;
