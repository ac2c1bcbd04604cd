//! Operator configuration: every setting is a flag with an environment variable beside it.
//! Environment names follow the older s3-resource-operator (see the compatibility contract),
//! including both names it used for the admin credentials (`S3_ACCESS_KEY` / `ROOT_ACCESS_KEY`).

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, ValueEnum};
use s3op_api::DEFAULT_COMPAT_ANNOTATION;
use s3op_backends::SecretString;
use thiserror::Error;

const ABOUT: &str = "Kubernetes operator for S3 buckets and users on AWS, VersityGW, MinIO and Garage.";

const LONG_ABOUT: &str = "\
Kubernetes operator for S3 buckets and users on AWS (S3 + IAM), VersityGW, MinIO and Garage.

It reconciles S3Bucket and S3User custom resources (group s3-resource-operator.io) and, in
compatibility mode, Secrets annotated the way the older s3-resource-operator expected.

Every flag can also be set through the environment variable shown beside it. Minimal examples:

  VersityGW:  BACKEND_NAME=versitygw S3_ENDPOINT_URL=http://versitygw:7070 \\
              S3_ACCESS_KEY=admin S3_SECRET_KEY=... s3-resource-operator
  Garage:     BACKEND_NAME=garage S3_ENDPOINT_URL=http://garage:3900 S3_REGION=garage \\
              GARAGE_ADMIN_ENDPOINT=http://garage:3903 GARAGE_ADMIN_TOKEN=... s3-resource-operator
  AWS:        BACKEND_NAME=aws S3_REGION=eu-west-1 s3-resource-operator   (credentials from the
              standard AWS chain: environment, web identity / IRSA, instance metadata)

The Kubernetes connection comes from KUBECONFIG or the in-cluster service account.";

/// Kind of object store the operator manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum BackendKind {
    /// AWS S3 with IAM users.
    Aws,
    /// Versity S3 Gateway.
    Versitygw,
    /// MinIO.
    Minio,
    /// Garage.
    Garage,
}

impl BackendKind {
    /// The backend crate's kind; its name is the one written to status.backend.
    // A separate enum only because the CLI must not offer the in-memory test backend.
    pub const fn backend(self) -> s3op_backends::BackendKind {
        match self {
            BackendKind::Aws => s3op_backends::BackendKind::Aws,
            BackendKind::Versitygw => s3op_backends::BackendKind::Versitygw,
            BackendKind::Minio => s3op_backends::BackendKind::Minio,
            BackendKind::Garage => s3op_backends::BackendKind::Garage,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend().as_str())
    }
}

/// Log verbosity, accepting the older operator's names (`WARNING`) as well as Rust's (`warn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including each backend request.
    #[value(alias = "TRACE")]
    Trace,
    /// Reconcile details.
    #[value(alias = "DEBUG")]
    Debug,
    /// Changes made and problems found.
    #[value(alias = "INFO")]
    Info,
    /// Problems only.
    #[value(alias = "WARNING", alias = "warning", alias = "WARN")]
    Warn,
    /// Failures only.
    #[value(alias = "ERROR")]
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub const fn directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Command-line flags and their environment variables, as parsed; see [`Cli::into_config`].
#[derive(Debug, Parser)]
#[command(name = "s3-resource-operator", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// The object store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Which objects are served.
    #[command(flatten)]
    pub modes: ModeArgs,
    /// Scheduling of reconciles.
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
    /// Leader election.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// Metrics and logs.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// The default object store (for objects without a storeRef, and compatibility Secrets naming
/// no store): which kind, where, and the operator's credentials on it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Default object store")]
pub struct StoreArgs {
    /// Kind of the default store, for objects naming no store: versitygw, minio, garage or aws
    /// (case-insensitive). Default versitygw when S3_ENDPOINT_URL is set; with neither, the
    /// operator has no default store and serves S3Store and ClusterS3Store objects only.
    #[arg(long, env = "BACKEND_NAME", value_enum, ignore_case = true)]
    pub backend: Option<BackendKind>,

    /// The name the default store is reported under (status.store of the objects on it).
    #[arg(long, env = "DEFAULT_STORE_NAME", default_value = "default")]
    pub default_store_name: String,

    /// S3 endpoint of the object store, e.g. http://versitygw.storage:7070. Required except for aws.
    #[arg(long, env = "S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,

    /// Admin access key of the object store (also read from ROOT_ACCESS_KEY). Required for
    /// versitygw and minio; for garage the S3 key the operator uses for bucket contents and its
    /// ownership markers (required too); for aws optional (the standard chain is used without).
    #[arg(long, env = "S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,

    #[arg(long, env = "ROOT_ACCESS_KEY", hide = true, hide_env_values = true)]
    root_access_key: Option<String>,

    /// Admin secret key of the object store (also read from ROOT_SECRET_KEY). Prefer the
    /// environment or --s3-secret-key-file over the flag, which other users can see in `ps`.
    #[arg(long, env = "S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,

    #[arg(long, env = "ROOT_SECRET_KEY", hide = true, hide_env_values = true)]
    root_secret_key: Option<String>,

    /// File holding the admin secret key (e.g. a mounted Secret); used when no key is given directly.
    #[arg(long, env = "S3_SECRET_KEY_FILE")]
    pub s3_secret_key_file: Option<PathBuf>,

    /// Region to sign S3 requests for; must match the store's (Garage's default is "garage").
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Garage admin API endpoint, e.g. http://garage:3903. Required for garage.
    #[arg(long, env = "GARAGE_ADMIN_ENDPOINT")]
    pub garage_admin_endpoint: Option<String>,

    /// Garage admin API bearer token. Required for garage (or --garage-admin-token-file).
    #[arg(long, env = "GARAGE_ADMIN_TOKEN", hide_env_values = true)]
    pub garage_admin_token: Option<String>,

    /// File holding the Garage admin token.
    #[arg(long, env = "GARAGE_ADMIN_TOKEN_FILE")]
    pub garage_admin_token_file: Option<PathBuf>,

    /// File of CA certificates (PEM) the store's https certificates are checked against, besides
    /// the system's roots: for a store with a private CA.
    #[arg(long, env = "S3_CA_BUNDLE_FILE")]
    pub s3_ca_bundle_file: Option<PathBuf>,

    /// Bucket where the operator records which users and buckets it created, on stores whose
    /// users carry no tags (VersityGW, MinIO, Garage). Created on first use.
    #[arg(long, env = "MARKER_BUCKET", default_value = "s3-resource-operator-markers")]
    pub marker_bucket: String,

    /// Namespaces trusted to adopt buckets and users that exist on the store but were not
    /// created by this operator (comma-separated). Empty: never adopt.
    #[arg(long, env = "ADOPT_NAMESPACES", value_delimiter = ',')]
    pub adopt_namespaces: Vec<String>,
}

/// Which objects the operator serves: custom resources, annotated Secrets, or both.
#[derive(Debug, Args)]
#[command(next_help_heading = "Modes")]
pub struct ModeArgs {
    /// Reconcile S3Bucket and S3User custom resources.
    #[arg(long, env = "CRD_MODE", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub crd_mode: bool,

    /// Also handle Secrets annotated the way the older s3-resource-operator expected.
    #[arg(long, env = "COMPAT_MODE", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub compat_mode: bool,

    /// Annotation that opts a Secret into compatibility mode (values false/0/no opt out).
    #[arg(long, env = "ANNOTATION_KEY", default_value = DEFAULT_COMPAT_ANNOTATION)]
    pub annotation_key: String,

    /// In compatibility mode, skip a Secret whose endpoint differs from --s3-endpoint-url.
    #[arg(long, env = "ENFORCE_ENDPOINT_CHECK", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub enforce_endpoint_check: bool,

    /// Roles a compatibility Secret may ask for (comma-separated; VersityGW roles).
    #[arg(long, env = "COMPAT_ALLOWED_ROLES", value_delimiter = ',', default_value = "user")]
    pub compat_allowed_roles: Vec<String>,
}

/// What is watched, and how often and how widely reconciles run.
#[derive(Debug, Args)]
#[command(next_help_heading = "Reconciling")]
pub struct ReconcileArgs {
    /// How often every object is re-read from the store to repair drift (e.g. 5m, 30s).
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,

    /// Watch only this namespace (for a namespace-scoped installation); empty: every namespace.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Serve ClusterS3Stores (which needs the right to list them and namespaces cluster-wide).
    /// Default: true when every namespace is watched, false with WATCH_NAMESPACE.
    #[arg(long, env = "CLUSTER_STORES", action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub cluster_stores: Option<bool>,

    /// How many objects of one kind are reconciled at the same time. While several stores have
    /// objects to reconcile, each store gets an equal share, so a slow store cannot hold them all.
    #[arg(
        long = "reconcile-concurrency",
        visible_alias = "concurrency",
        env = "RECONCILE_CONCURRENCY",
        default_value_t = 8
    )]
    pub concurrency: u16,
}

/// Leader election among replicas.
#[derive(Debug, Args)]
#[command(next_help_heading = "Leader election")]
pub struct LeaderElectionArgs {
    /// Reconcile only while holding a coordination.k8s.io Lease, so several replicas can run
    /// and one stands in when the leader goes.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: POD_NAMESPACE, then the service
    /// account's namespace when running in a cluster).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEADER_ELECTION_LEASE_NAME", default_value = "s3-resource-operator")]
    pub leader_election_lease_name: String,

    /// How long a leader's Lease is valid without renewal: the longest a stand-in waits after
    /// the leader died (a leader that stops cleanly releases it at once).
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// This replica's identity in the Lease (default: POD_NAME, then the host name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pod_namespace: Option<String>,
}

/// Metrics, health endpoints and logs.
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics and logs")]
pub struct TelemetryArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8000")]
    pub metrics_addr: SocketAddr,

    /// Log level: trace, debug, info, warn (or WARNING), error. RUST_LOG, when set, wins.
    #[arg(long, env = "LOG_LEVEL", value_enum, ignore_case = true, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Accepts the spellings of a boolean found in Helm values and old manifests.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// Admin credentials for the object store.
#[derive(Clone, Debug)]
pub struct AdminCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key (redacted in Debug).
    pub secret_key: SecretString,
}

/// Garage's admin API settings.
#[derive(Clone, Debug)]
pub struct GarageAdmin {
    /// Admin API endpoint.
    pub endpoint: String,
    /// Bearer token (redacted in Debug).
    pub token: SecretString,
}

/// Leader-election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease validity without renewal.
    pub lease_duration: Duration,
    /// This replica's holder identity.
    pub identity: String,
}

/// Where a pod finds its own namespace when nothing else says.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Validated configuration: everything a backend needs is present.
#[derive(Clone, Debug)]
pub struct Config {
    /// The default store (from the environment) and the operator's policy on it, if any.
    pub store: Option<StoreConfig>,
    /// The name objects on the default store report.
    pub default_store_name: String,
    /// Reconcile custom resources.
    pub crd_mode: bool,
    /// Reconcile annotated Secrets.
    pub compat_mode: bool,
    /// Compatibility mode's settings.
    pub compat: CompatConfig,
    /// Objects of one kind reconciled at once (at least 1).
    pub concurrency: u16,
    /// The only namespace watched, if any.
    pub watch_namespace: Option<String>,
    /// Whether ClusterS3Stores are served.
    pub cluster_stores: bool,
    /// Drift-repair period.
    pub resync_interval: Duration,
    /// Leader election, when enabled.
    pub leader_election: Option<LeaderElection>,
    /// Metrics and logs.
    pub telemetry: Telemetry,
}

/// One object store: how to reach it, and the operator's policy on it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Kind of object store.
    pub backend: BackendKind,
    /// S3 endpoint; None means AWS's own endpoints.
    pub s3_endpoint_url: Option<String>,
    /// Admin credentials; None for AWS (standard credential chain).
    pub admin: Option<AdminCredentials>,
    /// Signing region.
    pub region: String,
    /// Garage admin API, for garage only.
    pub garage: Option<GarageAdmin>,
    /// Bucket of the ownership ledger (VersityGW, MinIO, Garage).
    pub marker_bucket: String,
    /// Namespaces trusted to adopt buckets and users made outside the operator.
    pub adopt_namespaces: Vec<String>,
    /// CA certificates (PEM) the store's https certificates are checked against, besides the
    /// system's roots.
    pub ca_bundle: Option<String>,
}

/// Compatibility mode's settings.
#[derive(Clone, Debug)]
pub struct CompatConfig {
    /// The annotation that opts a Secret in.
    pub annotation_key: String,
    /// Skip Secrets naming another endpoint.
    pub enforce_endpoint_check: bool,
    /// Roles a Secret may ask for.
    pub allowed_roles: Vec<String>,
}

/// Metrics, health endpoints and logs.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// HTTP listen address.
    pub metrics_addr: SocketAddr,
    /// Log level.
    pub log_level: LogLevel,
    /// Log format.
    pub log_format: LogFormat,
}

/// A configuration problem, reported in one line naming the setting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting the chosen backend needs is absent or empty.
    #[error("missing required setting {env} (flag {flag}): {why}")]
    Missing {
        /// Environment variable name.
        env: &'static str,
        /// Flag name.
        flag: &'static str,
        /// What it is for.
        why: &'static str,
    },
    /// A setting is present but unusable.
    #[error("invalid setting {env}: {why}")]
    Invalid {
        /// Environment variable name.
        env: &'static str,
        /// What is wrong.
        why: String,
    },
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn read_secret_file(path: &Option<PathBuf>, env: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    std::fs::read_to_string(path)
        .map(|s| non_empty(Some(s)))
        .map_err(|e| ConfigError::Invalid { env, why: format!("cannot read {}: {e}", path.display()) })
}

fn check_url(url: &str, env: &'static str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| ConfigError::Invalid { env, why: format!("{url:?} must start with http:// or https://") })?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(ConfigError::Invalid { env, why: format!("{url:?} has no host") });
    }
    Ok(())
}

impl Cli {
    /// Checks that the chosen backend has everything it needs and resolves aliases and files.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let Cli { store, modes, reconcile, leader_election: election, telemetry } = self;
        let default_store_name = store.default_store_name.trim().to_string();
        if default_store_name.is_empty() {
            return Err(ConfigError::Invalid { env: "DEFAULT_STORE_NAME", why: "must not be empty".into() });
        }
        if modes.annotation_key.trim().is_empty() {
            return Err(ConfigError::Invalid { env: "ANNOTATION_KEY", why: "must not be empty".into() });
        }
        if reconcile.resync_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid { env: "RESYNC_INTERVAL", why: "must be at least 1s".into() });
        }
        if reconcile.concurrency == 0 {
            return Err(ConfigError::Invalid { env: "RECONCILE_CONCURRENCY", why: "must be at least 1".into() });
        }
        let leader_election = leader_election(election)?;
        let list = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        Ok(Config {
            store: default_store(store)?,
            default_store_name,
            crd_mode: modes.crd_mode,
            compat_mode: modes.compat_mode,
            compat: CompatConfig {
                annotation_key: modes.annotation_key.trim().to_string(),
                enforce_endpoint_check: modes.enforce_endpoint_check,
                allowed_roles: list(modes.compat_allowed_roles),
            },
            concurrency: reconcile.concurrency,
            cluster_stores: reconcile.cluster_stores.unwrap_or(non_empty(reconcile.watch_namespace.clone()).is_none()),
            watch_namespace: non_empty(reconcile.watch_namespace),
            resync_interval: reconcile.resync_interval,
            leader_election,
            telemetry: Telemetry {
                metrics_addr: telemetry.metrics_addr,
                log_level: telemetry.log_level,
                log_format: telemetry.log_format,
            },
        })
    }
}

/// The default store the environment describes: none when it names neither a kind nor an
/// endpoint; otherwise everything that kind needs must be there.
fn default_store(store: StoreArgs) -> Result<Option<StoreConfig>, ConfigError> {
    let endpoint = non_empty(store.s3_endpoint_url);
    // Any store setting means a default store is wanted: it must then be complete, never
    // silently dropped because the kind or the endpoint was forgotten.
    let any_setting = endpoint.is_some()
        || [&store.s3_access_key, &store.root_access_key, &store.s3_secret_key, &store.root_secret_key]
            .into_iter()
            .chain([&store.garage_admin_endpoint, &store.garage_admin_token])
            .any(|v| non_empty(v.clone()).is_some())
        || store.s3_secret_key_file.is_some()
        || store.garage_admin_token_file.is_some();
    let backend = match store.backend {
        Some(kind) => kind,
        None if any_setting => BackendKind::Versitygw,
        None => return Ok(None),
    };
    let access_key = non_empty(store.s3_access_key).or(non_empty(store.root_access_key));
    let secret_key = match non_empty(store.s3_secret_key).or(non_empty(store.root_secret_key)) {
        Some(k) => Some(k),
        None => read_secret_file(&store.s3_secret_key_file, "S3_SECRET_KEY_FILE")?,
    };
    if let Some(url) = &endpoint {
        check_url(url, "S3_ENDPOINT_URL")?;
    }
    let needs_endpoint = backend != BackendKind::Aws;
    if needs_endpoint && endpoint.is_none() {
        return Err(ConfigError::Missing {
            env: "S3_ENDPOINT_URL",
            flag: "--s3-endpoint-url",
            why: "the S3 endpoint of the object store",
        });
    }
    let needs_admin = backend != BackendKind::Aws;
    let admin = match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => {
            Some(AdminCredentials { access_key, secret_key: SecretString::new(secret_key) })
        }
        (None, _) if needs_admin => {
            return Err(ConfigError::Missing {
                env: "S3_ACCESS_KEY",
                flag: "--s3-access-key",
                why: "the object store's admin access key (ROOT_ACCESS_KEY is also read)",
            });
        }
        (_, None) if needs_admin => {
            return Err(ConfigError::Missing {
                env: "S3_SECRET_KEY",
                flag: "--s3-secret-key",
                why: "the object store's admin secret key (ROOT_SECRET_KEY and S3_SECRET_KEY_FILE are also read)",
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                env: "S3_ACCESS_KEY",
                why: "an access key and a secret key must be given together".into(),
            });
        }
        (None, None) => None,
    };
    let garage = if backend == BackendKind::Garage {
        let endpoint = non_empty(store.garage_admin_endpoint).ok_or(ConfigError::Missing {
            env: "GARAGE_ADMIN_ENDPOINT",
            flag: "--garage-admin-endpoint",
            why: "Garage's admin API endpoint, e.g. http://garage:3903",
        })?;
        check_url(&endpoint, "GARAGE_ADMIN_ENDPOINT")?;
        let token = match non_empty(store.garage_admin_token) {
            Some(t) => t,
            None => read_secret_file(&store.garage_admin_token_file, "GARAGE_ADMIN_TOKEN_FILE")?.ok_or(
                ConfigError::Missing {
                    env: "GARAGE_ADMIN_TOKEN",
                    flag: "--garage-admin-token",
                    why: "Garage's admin API token (or GARAGE_ADMIN_TOKEN_FILE)",
                },
            )?,
        };
        Some(GarageAdmin { endpoint, token: SecretString::new(token) })
    } else {
        None
    };
    if let Err(e) = s3op_api::validate_bucket_name(store.marker_bucket.trim()) {
        return Err(ConfigError::Invalid { env: "MARKER_BUCKET", why: e.to_string() });
    }
    let list = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    Ok(Some(StoreConfig {
        backend,
        s3_endpoint_url: endpoint,
        admin,
        region: store.s3_region,
        garage,
        marker_bucket: store.marker_bucket.trim().to_string(),
        adopt_namespaces: list(store.adopt_namespaces),
        ca_bundle: read_secret_file(&store.s3_ca_bundle_file, "S3_CA_BUNDLE_FILE")?,
    }))
}

/// Leader election as the flags ask for it, if at all.
fn leader_election(election: LeaderElectionArgs) -> Result<Option<LeaderElection>, ConfigError> {
    Ok(if election.leader_election {
        let namespace = non_empty(election.leader_election_namespace)
            .or(non_empty(election.pod_namespace))
            .or_else(|| non_empty(std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok()))
            .ok_or(ConfigError::Missing {
                env: "LEADER_ELECTION_NAMESPACE",
                flag: "--leader-election-namespace",
                why: "the namespace of the leader-election Lease (POD_NAMESPACE is also read)",
            })?;
        if election.leader_election_lease_duration < Duration::from_secs(3) {
            return Err(ConfigError::Invalid {
                env: "LEADER_ELECTION_LEASE_DURATION",
                why: "must be at least 3s (the leader renews a third of it before expiry)".into(),
            });
        }
        // Without a pod name, two processes on one host must still differ.
        let identity = non_empty(election.pod_name).unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|| "s3-resource-operator".into());
            format!("{host}-{:08x}", fastrand::u32(..))
        });
        Some(LeaderElection {
            namespace,
            lease_name: election.leader_election_lease_name.trim().to_string(),
            lease_duration: election.leader_election_lease_duration,
            identity,
        })
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Flags only: the environment is process-global, so env handling is tested in tests/cli.rs
    // by running the binary with a controlled environment.
    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["s3-resource-operator"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse").into_config()
    }

    #[test]
    fn versitygw_needs_endpoint_and_admin_keys() {
        let err = parse(&["--backend", "versitygw"]).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: "S3_ENDPOINT_URL", .. }), "{err}");
        let err = parse(&["--s3-endpoint-url", "http://127.0.0.1:7070"]).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: "S3_ACCESS_KEY", .. }), "{err}");
        let err = parse(&["--s3-endpoint-url", "http://127.0.0.1:7070", "--s3-access-key", "admin"]).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: "S3_SECRET_KEY", .. }), "{err}");
        let cfg = parse(&[
            "--s3-endpoint-url",
            "http://127.0.0.1:7070",
            "--s3-access-key",
            "admin",
            "--s3-secret-key",
            "topsecret",
        ])
        .unwrap();
        let store = cfg.store.as_ref().unwrap();
        assert_eq!(store.backend, BackendKind::Versitygw);
        assert_eq!(store.admin.as_ref().unwrap().access_key, "admin");
        assert!(!format!("{cfg:?}").contains("topsecret"), "Debug must redact secrets");
    }

    #[test]
    fn garage_needs_admin_api_and_an_s3_key() {
        let keys = ["--s3-access-key", "GK1", "--s3-secret-key", "s"];
        let mut args = vec!["--backend", "GARAGE", "--s3-endpoint-url", "http://127.0.0.1:3900"];
        let err = parse(&args).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: "S3_ACCESS_KEY", .. }), "{err}");
        args.extend(keys);
        let err = parse(&args).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { env: "GARAGE_ADMIN_ENDPOINT", .. }), "{err}");
        args.extend(["--garage-admin-endpoint", "http://127.0.0.1:3903", "--garage-admin-token", "tok"]);
        let cfg = parse(&args).unwrap();
        let store = cfg.store.unwrap();
        assert_eq!(store.admin.unwrap().access_key, "GK1");
        assert_eq!(store.garage.unwrap().token.expose(), "tok");
    }

    #[test]
    fn aws_needs_nothing_but_accepts_an_endpoint() {
        let store = parse(&["--backend", "aws"]).unwrap().store.unwrap();
        assert!(store.s3_endpoint_url.is_none() && store.admin.is_none());
        let store = parse(&["--backend", "Aws", "--s3-endpoint-url", "http://127.0.0.1:5000"]).unwrap().store.unwrap();
        assert_eq!(store.s3_endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn without_a_kind_or_an_endpoint_there_is_no_default_store() {
        let cfg = parse(&[]).unwrap();
        assert!(cfg.store.is_none());
        assert_eq!(cfg.default_store_name, "default");
        let cfg = parse(&["--default-store-name", "legacy"]).unwrap();
        assert_eq!(cfg.default_store_name, "legacy");
    }

    #[test]
    fn rejects_bad_urls_and_half_credentials() {
        let err = parse(&["--s3-endpoint-url", "versitygw:7070"]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { env: "S3_ENDPOINT_URL", .. }), "{err}");
        let err = parse(&["--backend", "aws", "--s3-access-key", "a"]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }

    #[test]
    fn booleans_and_levels_take_old_spellings() {
        let base = ["--backend", "aws"];
        for (v, want) in [("false", false), ("0", false), ("No", false), ("TRUE", true), ("1", true)] {
            let mut args = base.to_vec();
            args.extend(["--enforce-endpoint-check", v]);
            assert_eq!(parse(&args).unwrap().compat.enforce_endpoint_check, want, "{v}");
        }
        for (v, want) in [("WARNING", LogLevel::Warn), ("DEBUG", LogLevel::Debug), ("info", LogLevel::Info)] {
            let mut args = base.to_vec();
            args.extend(["--log-level", v]);
            assert_eq!(parse(&args).unwrap().telemetry.log_level, want, "{v}");
        }
        let mut args = base.to_vec();
        args.extend(["--compat-allowed-roles", "user, userplus", "--resync-interval", "30s"]);
        let cfg = parse(&args).unwrap();
        assert_eq!(cfg.compat.allowed_roles, ["user", "userplus"]);
        assert_eq!(cfg.resync_interval, Duration::from_secs(30));
    }
}
