//! Builds the object-store backend the configuration names. No call is made here: a store that
//! is down at start-up shows in `/readyz` and in conditions, and is retried; the process does
//! not crash-loop.

use std::sync::Arc;

use s3op_backends::{
    Backend, BackendError,
    aws::{Aws, AwsConfig},
    garage::{Garage, GarageConfig},
    minio::{Minio, MinioConfig},
    versitygw::{VersityGw, VersityGwConfig},
};

use crate::config::{BackendKind, Config};

/// The backend for `config`.
pub async fn connect(config: &Config) -> Result<Arc<dyn Backend>, BackendError> {
    let missing = |what: &str| BackendError::InvalidInput(format!("{} backend needs {what}", config.store.backend));
    let endpoint = || config.store.s3_endpoint_url.clone().ok_or_else(|| missing("S3_ENDPOINT_URL"));
    let admin = || config.store.admin.clone().ok_or_else(|| missing("S3_ACCESS_KEY and S3_SECRET_KEY"));
    Ok(match config.store.backend {
        BackendKind::Versitygw => {
            let admin = admin()?;
            Arc::new(VersityGw::new(VersityGwConfig {
                endpoint: endpoint()?,
                region: config.store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                marker_bucket: config.store.marker_bucket.clone(),
            })?)
        }
        BackendKind::Minio => {
            let admin = admin()?;
            Arc::new(Minio::new(MinioConfig {
                endpoint: endpoint()?,
                region: config.store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                marker_bucket: config.store.marker_bucket.clone(),
            })?)
        }
        BackendKind::Garage => {
            let admin = admin()?;
            let garage =
                config.store.garage.clone().ok_or_else(|| missing("GARAGE_ADMIN_ENDPOINT and GARAGE_ADMIN_TOKEN"))?;
            Arc::new(Garage::new(GarageConfig {
                endpoint: endpoint()?,
                region: config.store.region.clone(),
                access_key: admin.access_key,
                secret_key: admin.secret_key,
                admin_endpoint: garage.endpoint,
                admin_token: garage.token,
                marker_bucket: config.store.marker_bucket.clone(),
            })?)
        }
        BackendKind::Aws => Arc::new(
            Aws::new(AwsConfig {
                region: Some(config.store.region.clone()),
                endpoint: config.store.s3_endpoint_url.clone(),
                credentials: config.store.admin.clone().map(|a| (a.access_key, a.secret_key)),
            })
            .await?,
        ),
    })
}
