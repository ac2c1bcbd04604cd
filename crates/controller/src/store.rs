//! Builds the backend of one object store from its settings (the environment's default store
//! or an S3Store / ClusterS3Store). No call is made here: a store that is down shows in
//! conditions and is retried; the process does not crash-loop.

use std::sync::Arc;

use s3op_backends::{
    Backend, BackendError,
    aws::{Aws, AwsConfig},
    garage::{Garage, GarageConfig},
    minio::{Minio, MinioConfig},
    versitygw::{VersityGw, VersityGwConfig},
};

use crate::config::{BackendKind, StoreConfig};

/// The backend for `store`.
pub async fn connect(store: &StoreConfig) -> Result<Arc<dyn Backend>, BackendError> {
    let missing = |what: &str| BackendError::InvalidInput(format!("{} backend needs {what}", store.backend));
    let endpoint = || store.s3_endpoint_url.clone().ok_or_else(|| missing("an S3 endpoint"));
    let admin = || store.admin.clone().ok_or_else(|| missing("admin credentials"));
    Ok(match store.backend {
        BackendKind::Versitygw => {
            let admin = admin()?;
            Arc::new(VersityGw::new(VersityGwConfig {
                endpoint: endpoint()?,
                region: store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                marker_bucket: store.marker_bucket.clone(),
                ca_bundle: store.ca_bundle.clone(),
            })?)
        }
        BackendKind::Minio => {
            let admin = admin()?;
            Arc::new(Minio::new(MinioConfig {
                endpoint: endpoint()?,
                region: store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                marker_bucket: store.marker_bucket.clone(),
                ca_bundle: store.ca_bundle.clone(),
            })?)
        }
        BackendKind::Garage => {
            let admin = admin()?;
            let garage = store.garage.clone().ok_or_else(|| missing("an admin endpoint and token"))?;
            Arc::new(Garage::new(GarageConfig {
                endpoint: endpoint()?,
                region: store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                admin_endpoint: garage.endpoint,
                admin_token: garage.token,
                marker_bucket: store.marker_bucket.clone(),
                ca_bundle: store.ca_bundle.clone(),
            })?)
        }
        BackendKind::Aws => Arc::new(
            Aws::new(AwsConfig {
                region: Some(store.region.clone()),
                endpoint: store.s3_endpoint_url.clone(),
                credentials: store.admin.clone().map(|a| (a.access_key, a.secret_key)),
                ca_bundle: store.ca_bundle.clone(),
            })
            .await?,
        ),
    })
}
