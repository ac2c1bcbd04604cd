//! s3-resource-operator's controller: configuration, telemetry and (in later issues) the
//! reconcilers that wire the API types to the object-store backends.

pub mod config;
pub mod telemetry;
