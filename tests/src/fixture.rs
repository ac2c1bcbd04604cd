//! What every end-to-end suite starts from: the shared control plane and a client for it, a
//! store of one kind, and each store's backend built straight from the store's admin
//! credentials. Written once so the suites differ only in what they test.
//!
//! Test support: a peer that does not start is a failed test, so these panic with its report.

use std::sync::Arc;

use kube::Client;
use s3op_backends::{
    SecretString,
    aws::{Aws, AwsConfig},
    garage::{Garage, GarageConfig},
    minio::{Minio, MinioConfig},
    versitygw::{VersityGw, VersityGwConfig},
};
use tokio::sync::OnceCell;

use crate::{
    control_plane::ControlPlane,
    stores::{Store, StoreKind},
};

/// The control plane shared by every test of the process (see [`ControlPlane::shared`]).
///
/// # Panics
/// When it does not start.
pub fn cp() -> &'static ControlPlane {
    ControlPlane::shared().expect("control plane starts")
}

/// A new admin client of the shared control plane, bound to the calling test's runtime.
///
/// # Panics
/// When the control plane does not start or its kubeconfig cannot be read.
pub async fn client() -> Client {
    cp().client().await.expect("admin client of the shared control plane")
}

/// A fresh store of `kind`; moto in its default mode, which accepts any key and evaluates no
/// policy.
///
/// # Panics
/// When the store does not start, with its log.
pub async fn start(kind: StoreKind) -> Store {
    Store::start(kind).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// A fresh store of `kind` where grants are really evaluated: moto enforcing signatures and IAM
/// policies (see [`Store::start_moto_enforcing`]), as AWS does; the other kinds always do.
///
/// # Panics
/// When the store does not start, with its log.
pub async fn start_enforcing(kind: StoreKind) -> Store {
    match kind {
        StoreKind::Moto => Store::start_moto_enforcing().await,
        other => Store::start(other).await,
    }
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// One enforcing store of `kind` for every test of the process that asks for it, started on
/// first use; a static is never dropped, so the process watchdog stops it and the janitor
/// removes its folder when the process exits (see [`crate::process`]). For tests that each
/// bring their own objects and never stop the store: sharing saves a start per test, which is
/// most of a short test.
///
/// # Panics
/// When the store does not start, with its log.
pub async fn shared_store(kind: StoreKind) -> Arc<Store> {
    static SHARED: [OnceCell<Arc<Store>>; 4] =
        [OnceCell::const_new(), OnceCell::const_new(), OnceCell::const_new(), OnceCell::const_new()];
    let slot = StoreKind::ALL.iter().position(|k| *k == kind).expect("every kind is in StoreKind::ALL");
    SHARED[slot].get_or_init(|| async { Arc::new(start_enforcing(kind).await) }).await.clone()
}

/// A VersityGW backend with the store's root account, keeping its markers in `marker_bucket`.
///
/// # Panics
/// When the configuration is refused.
pub fn versitygw(store: &Store, marker_bucket: &str) -> VersityGw {
    VersityGw::new(VersityGwConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        marker_bucket: marker_bucket.to_string(),
        ca_bundle: store.ca_pem().map(str::to_string),
    })
    .expect("VersityGW backend")
}

/// A MinIO backend with the store's root user, keeping its markers in `marker_bucket`.
///
/// # Panics
/// When the configuration is refused.
pub fn minio(store: &Store, marker_bucket: &str) -> Minio {
    Minio::new(MinioConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        marker_bucket: marker_bucket.to_string(),
        ca_bundle: store.ca_pem().map(str::to_string),
    })
    .expect("MinIO backend")
}

/// A Garage backend with the store's admin key and admin API token, keeping its markers in
/// `marker_bucket`.
///
/// # Panics
/// When the store is not a Garage or the configuration is refused.
pub fn garage(store: &Store, marker_bucket: &str) -> Garage {
    Garage::new(GarageConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        admin_endpoint: store.garage_admin_endpoint().expect("a Garage store").to_string(),
        admin_token: SecretString::new(store.garage_admin_token().expect("a Garage store")),
        marker_bucket: marker_bucket.to_string(),
        ca_bundle: None,
    })
    .expect("Garage backend")
}

/// An AWS backend pointed at moto with the store's administrator key (AWS keeps its ownership
/// markers in tags, so there is no marker bucket).
///
/// # Panics
/// When the configuration is refused.
pub async fn aws(store: &Store) -> Aws {
    Aws::new(AwsConfig {
        region: Some(store.region().to_string()),
        endpoint: Some(store.endpoint().to_string()),
        credentials: Some((store.admin_access_key().to_string(), SecretString::new(store.admin_secret_key()))),
        ca_bundle: None,
    })
    .await
    .expect("AWS backend")
}

/// The `provider` of a store object that reaches `store`.
pub fn provider_of(store: &Store) -> s3op_api::store::Provider {
    use s3op_api::store::{AwsProvider, GarageProvider, Provider, S3Provider};
    let s3 = || S3Provider { endpoint: store.endpoint().to_string(), region: Some(store.region().to_string()) };
    match store.kind() {
        StoreKind::Versitygw => Provider { versitygw: Some(s3()), ..Default::default() },
        StoreKind::Minio => Provider { minio: Some(s3()), ..Default::default() },
        StoreKind::Garage => Provider {
            garage: Some(GarageProvider {
                endpoint: store.endpoint().to_string(),
                admin_endpoint: store.garage_admin_endpoint().expect("a Garage store").to_string(),
                region: Some(store.region().to_string()),
            }),
            ..Default::default()
        },
        StoreKind::Moto => Provider {
            aws: Some(AwsProvider { region: store.region().to_string(), endpoint: Some(store.endpoint().to_string()) }),
            ..Default::default()
        },
    }
}

/// The `auth` of a store object reading the Secret `name` (in `namespace`, for a cluster store)
/// under its default keys.
pub fn auth_by_secret(name: &str, namespace: Option<&str>) -> s3op_api::store::StoreAuth {
    s3op_api::store::StoreAuth {
        secret_ref: Some(s3op_api::store::CredentialsSecretRef {
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
            ..Default::default()
        }),
        pod_identity: None,
    }
}

/// The admin Secret `name` a store object of `store` reads, under the default keys, holding
/// `access_key` and `secret_key` (and Garage's admin token).
pub fn admin_secret(
    store: &Store,
    name: &str,
    access_key: &str,
    secret_key: &str,
) -> k8s_openapi::api::core::v1::Secret {
    use s3op_api::store::{DEFAULT_ACCESS_KEY_ID_KEY, DEFAULT_ADMIN_TOKEN_KEY, DEFAULT_SECRET_ACCESS_KEY_KEY};
    let mut data = std::collections::BTreeMap::from([
        (DEFAULT_ACCESS_KEY_ID_KEY.to_string(), access_key.to_string()),
        (DEFAULT_SECRET_ACCESS_KEY_KEY.to_string(), secret_key.to_string()),
    ]);
    if let Some(token) = store.garage_admin_token() {
        data.insert(DEFAULT_ADMIN_TOKEN_KEY.to_string(), token.to_string());
    }
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.to_string()), ..Default::default() },
        string_data: Some(data),
        ..Default::default()
    }
}
