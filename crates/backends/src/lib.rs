//! Object-store backends: the `Backend` trait and its AWS, VersityGW, MinIO and Garage
//! implementations. Knows nothing of Kubernetes.
//!
//! The trait and implementations arrive with the backend issue; for now this crate holds the
//! types every layer needs to keep credentials out of logs.

pub mod secret;

pub use secret::SecretString;
