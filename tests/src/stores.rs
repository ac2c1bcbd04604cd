//! The object stores the end-to-end suites run against: VersityGW, MinIO, Garage and moto (in
//! place of AWS S3 + IAM). Each [`Store`] is a real server on loopback with its own temporary
//! folder, free ports and admin credentials, and counts as started only once a signed call
//! with those credentials succeeds.

use std::{
    collections::hash_map::RandomState,
    fmt,
    fmt::Write as _,
    future::Future,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::{
    peers,
    process::{Process, free_port, wait_for},
};

/// The account id moto gives every resource (ARNs contain it).
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// How long a store may take to become ready. Generous because the suites share 2 cores with
/// cargo and the control plane; the stores themselves are ready in well under 2 s here.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Log lines quoted in a readiness error.
const LOG_LINES: usize = 40;

/// Name of the IAM user `Store::start_moto_enforcing` creates as its administrator.
const MOTO_ADMIN_USER: &str = "s3op-admin";

/// Calls the harness spends on bootstrapping moto's administrator (CreateUser,
/// PutUserPolicy, CreateAccessKey) before moto starts enforcing signatures and policies.
const MOTO_BOOTSTRAP_CALLS: u32 = 3;

/// One kind of object store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Versity S3 Gateway with its posix backend and internal IAM.
    Versitygw,
    /// MinIO, single drive.
    Minio,
    /// Garage, single node.
    Garage,
    /// moto's server, standing in for AWS S3 and IAM.
    Moto,
}

impl StoreKind {
    /// Every kind, in a fixed order.
    pub const ALL: [StoreKind; 4] = [StoreKind::Versitygw, StoreKind::Minio, StoreKind::Garage, StoreKind::Moto];

    /// Lowercase name (the operator's backend names, with `moto` for AWS).
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreKind::Versitygw => "versitygw",
            StoreKind::Minio => "minio",
            StoreKind::Garage => "garage",
            StoreKind::Moto => "moto",
        }
    }

    /// The operator's backend for this store (`--backend`, `BACKEND_NAME`): moto stands in for
    /// AWS.
    pub const fn backend_name(self) -> &'static str {
        match self {
            StoreKind::Moto => "aws",
            other => other.as_str(),
        }
    }

    /// Key of the store's binary in the peers manifest.
    pub const fn binary_name(self) -> &'static str {
        match self {
            StoreKind::Versitygw => "versitygw",
            StoreKind::Minio => "minio",
            StoreKind::Garage => "garage",
            StoreKind::Moto => "moto_server",
        }
    }

    /// The region requests must be signed for (Garage checks it against its `s3_region`).
    pub const fn region(self) -> &'static str {
        match self {
            StoreKind::Garage => "garage",
            _ => "us-east-1",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Garage's admin API (v2): where it listens and its bearer token.
#[derive(Debug, Clone)]
struct GarageAdmin {
    endpoint: String,
    token: String,
}

/// A running object store in its own temporary folder. Dropping it stops the server and then
/// removes the folder; the process watchdog stops the server even if the test binary dies.
#[derive(Debug)]
pub struct Store {
    kind: StoreKind,
    process: Process,
    program: PathBuf,
    endpoint: String,
    access_key: String,
    secret_key: String,
    garage_admin: Option<GarageAdmin>,
    moto_enforcing: bool,
    // An enforcing moto's key for the operator, holding only deploy/aws/operator-policy.json.
    operator_keys: Option<(String, String)>,
    // The CA (PEM) of a store serving https with a certificate of the harness's own CA.
    ca_pem: Option<String>,
    startup_time: Duration,
    // Last field: removed only after the server is stopped (see Drop).
    dir: TempDir,
}

impl Store {
    /// Starts a fresh store of `kind` and waits until it is really ready:
    /// - VersityGW: a signed ListBuckets with the root credentials succeeds;
    /// - MinIO: `/minio/health/ready` answers 200 and a signed ListBuckets succeeds;
    /// - Garage: single-node layout (`--single-node`), an admin key that may create buckets
    ///   (`--default-access-key`), admin API healthy with the token, and a signed ListBuckets;
    /// - moto: a signed IAM ListUsers succeeds (moto accepts any credentials and enforces
    ///   nothing in this mode; see [`Store::start_moto_enforcing`]).
    pub async fn start(kind: StoreKind) -> Result<Store> {
        Self::launch(kind, false).await
    }

    /// Starts moto with signature checks and IAM policy evaluation on. The harness uses the
    /// first three calls (moto's `INITIAL_NO_AUTH_ACTION_COUNT` is set to 3) to create the
    /// IAM user `s3op-admin` with an allow-everything inline policy and an access key, which become
    /// [`Store::admin_access_key`]/[`Store::admin_secret_key`]; every later call must be signed
    /// by a key moto knows and is allowed only what that key's user's policies allow.
    pub async fn start_moto_enforcing() -> Result<Store> {
        Self::launch(StoreKind::Moto, true).await
    }

    /// Starts MinIO serving https only, with a certificate for 127.0.0.1 signed by a CA of its
    /// own that no system trusts ([`Store::ca_pem`]): a store with a private CA.
    pub async fn start_minio_tls() -> Result<Store> {
        Self::launch_once(StoreKind::Minio, false, true).await
    }

    /// Starts one store of every kind, at the same time.
    pub async fn start_all() -> Result<Vec<Store>> {
        let (v, m, g, a) = tokio::join!(
            Self::start(StoreKind::Versitygw),
            Self::start(StoreKind::Minio),
            Self::start(StoreKind::Garage),
            Self::start(StoreKind::Moto)
        );
        Ok(vec![v?, m?, g?, a?])
    }

    async fn launch(kind: StoreKind, moto_enforcing: bool) -> Result<Store> {
        // A port from free_port() is free only until someone binds it: another store starting
        // at the same time, or an outgoing connection's ephemeral port. Such a clash kills the
        // server at once, so a first start tries again on fresh ports.
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Self::launch_once(kind, moto_enforcing, false).await {
                Err(e) if attempt < ATTEMPTS && format!("{e:#}").to_lowercase().contains("already in use") => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn launch_once(kind: StoreKind, moto_enforcing: bool, tls: bool) -> Result<Store> {
        let program = peers::binary(kind.binary_name())?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("s3op-{kind}-"))
            .tempdir()
            .with_context(|| format!("creating a temporary folder for {kind}"))?;
        // VersityGW and Garage want absolute paths; TMPDIR might be relative.
        let root = std::path::absolute(dir.path()).context("resolving the temporary folder")?;
        // Drop removes it normally; this covers a test binary that was killed.
        crate::process::remove_when_gone(&root);
        let port = free_port()?;
        let endpoint = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
        let log = root.join(format!("{kind}.log"));
        let ca_pem = if tls { Some(tls_certificates(&mkdir(&root, "certs")?)?) } else { None };
        let access_key;
        let secret_key;
        let mut garage_admin = None;
        let process = match kind {
            StoreKind::Versitygw => {
                access_key = format!("vgwadmin{}", random_hex(8));
                secret_key = random_hex(40);
                versitygw_process(&program, &root, port, &access_key, &secret_key, &log)?
            }
            StoreKind::Minio => {
                access_key = format!("minioadmin{}", random_hex(8));
                secret_key = random_hex(40);
                minio_process(&program, &root, port, &access_key, &secret_key, &log)?
            }
            StoreKind::Garage => {
                // Garage 2.0 only imports keys in its own GK + 24 hex / 64 hex form; 2.5 takes these too.
                access_key = format!("GK{}", random_hex(24));
                secret_key = random_hex(64);
                let admin =
                    GarageAdmin { endpoint: format!("http://127.0.0.1:{}", free_port()?), token: random_hex(48) };
                let config = root.join("garage.toml");
                let process = garage_process(&program, &root, &config, port, &admin, &access_key, &secret_key, &log)?;
                garage_admin = Some(admin);
                process
            }
            StoreKind::Moto => {
                // Replaced by the bootstrapped administrator's key when enforcing.
                access_key = format!("AKIA{}", random_hex(16).to_uppercase());
                secret_key = random_hex(40);
                moto_process(&program, &root, port, moto_enforcing, &log)
            }
        };
        let mut store = Store {
            kind,
            process,
            program,
            endpoint,
            access_key,
            secret_key,
            garage_admin,
            moto_enforcing,
            operator_keys: None,
            ca_pem,
            startup_time: Duration::ZERO,
            dir,
        };
        store.start_and_wait().await?;
        Ok(store)
    }

    /// The CA certificate (PEM) of a store serving https ([`Store::start_minio_tls`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Which kind of store this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT` (moto serves IAM there too; VersityGW and
    /// MinIO serve their admin APIs there).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The region to sign for: `us-east-1`, or `garage` for Garage.
    pub fn region(&self) -> &'static str {
        self.kind.region()
    }

    /// Access key of the store's administrator (VersityGW root, MinIO root user, Garage's
    /// default key that may create buckets, moto's bootstrapped admin or any key).
    /// The key the operator runs with: on an enforcing moto one holding only the operator's
    /// IAM policy (`deploy/aws/operator-policy.json`, see [`moto_operator_policy`]); elsewhere
    /// the administrator's.
    pub fn operator_access_key(&self) -> &str {
        self.operator_keys.as_ref().map_or(self.admin_access_key(), |k| k.0.as_str())
    }

    /// The secret of [`Store::operator_access_key`].
    pub fn operator_secret_key(&self) -> &str {
        self.operator_keys.as_ref().map_or(self.admin_secret_key(), |k| k.1.as_str())
    }

    pub fn admin_access_key(&self) -> &str {
        &self.access_key
    }

    /// Secret key paired with [`Store::admin_access_key`].
    pub fn admin_secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Garage's admin API endpoint (`http://127.0.0.1:PORT`); None for other stores.
    pub fn garage_admin_endpoint(&self) -> Option<&str> {
        self.garage_admin.as_ref().map(|a| a.endpoint.as_str())
    }

    /// Garage's admin API bearer token; None for other stores.
    pub fn garage_admin_token(&self) -> Option<&str> {
        self.garage_admin.as_ref().map(|a| a.token.as_str())
    }

    /// True for a moto started by [`Store::start_moto_enforcing`].
    pub fn moto_enforcing(&self) -> bool {
        self.moto_enforcing
    }

    /// How long the last start or restart took until the store was ready.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The store's temporary folder (data, configuration, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's log file (stdout and stderr, appended to across restarts).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Stops the server and waits for it to exit (TERM, then KILL after 5 s; Garage gets 1 s,
    /// see below). The data folder and ports are kept for [`Store::restart`]. The wait runs on
    /// a blocking thread, so other tasks on the caller's runtime (an operator under test, the
    /// SDK's connection tasks) go on meanwhile.
    ///
    /// On TERM, Garage waits up to 10 s for clients to close their kept-alive connections,
    /// and every SDK client keeps one; so it is killed if it has not exited after 1 s. Its
    /// metadata (sqlite) and data files survive a killed process.
    pub async fn stop(&mut self) {
        let placeholder = Process::new(self.kind.as_str(), &self.program, &[], self.process.log_path());
        let mut process = std::mem::replace(&mut self.process, placeholder);
        let stopped = tokio::task::spawn_blocking(move || {
            process.stop();
            process
        })
        .await;
        // Only a panic in Process::stop could fail the join, and the Process's Drop would
        // still have stopped the server.
        self.process = stopped.expect("stopping a store does not panic");
    }

    /// Stops the server if it runs, starts it again on the same ports and data folder, and
    /// waits for readiness as [`Store::start`] does. moto keeps its state in memory only, so
    /// a restarted moto is empty, and an enforcing moto gets a new administrator key
    /// (read the accessors again).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.start_and_wait().await
    }

    /// An S3 client with the administrator's credentials (see [`Store::s3_client_with`]).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        self.s3_client_with(&self.access_key, &self.secret_key)
    }

    /// An S3 client for this store with the given credentials: path-style, the store's
    /// region, checksums only when required (the SDK's default CRC32 trailers break several
    /// S3-compatible servers), a 10 s operation timeout and at most 2 attempts so a dead store
    /// fails within seconds.
    pub fn s3_client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        self.s3_client_tuned(access_key, secret_key, 2, Duration::from_secs(10))
    }

    fn s3_client_tuned(
        &self,
        access_key: &str,
        secret_key: &str,
        attempts: u32,
        operation_timeout: Duration,
    ) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::retry::RetryConfig;
        let mut config = s3_config(&self.endpoint, self.region(), access_key, secret_key)
            .timeout_config(sdk_timeouts(operation_timeout))
            .retry_config(RetryConfig::standard().with_max_attempts(attempts));
        if let Ok(Some(http)) = s3op_backends::http::sdk_client(self.ca_pem()) {
            config = config.http_client(http);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// An IAM client with the administrator's credentials, pointed at this store's endpoint
    /// (only moto serves IAM), region us-east-1, same timeouts and retries as the S3 client.
    pub fn iam_client(&self) -> aws_sdk_iam::Client {
        self.iam_client_with(&self.access_key, &self.secret_key)
    }

    /// An IAM client for this store (see [`Store::iam_client`]) with the given credentials.
    pub fn iam_client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_iam::Client {
        self.iam_client_tuned(access_key, secret_key, 2, Duration::from_secs(10))
    }

    fn iam_client_tuned(
        &self,
        access_key: &str,
        secret_key: &str,
        attempts: u32,
        operation_timeout: Duration,
    ) -> aws_sdk_iam::Client {
        use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "s3op-tests"))
            .timeout_config(sdk_timeouts(operation_timeout))
            .retry_config(RetryConfig::standard().with_max_attempts(attempts))
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// One SigV4-signed call (service `s3`, the administrator's key) to the admin API that
    /// VersityGW and MinIO serve on their S3 endpoint, e.g. `("PATCH", "/list-users", vec![])`
    /// or `("GET", "/minio/admin/v3/list-users", vec![])`. Returns the status and the raw reply
    /// (MinIO encrypts some replies: see `s3op_backends::minio::madmin`); only a failure to
    /// reach the store is an error.
    pub async fn signed_admin_call(&self, method: &str, path_and_query: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
        self.signed_call_as(&self.access_key, &self.secret_key, method, path_and_query, body).await
    }

    /// [`Store::signed_admin_call`] signed with another key (an application's, say).
    pub async fn signed_call_as(
        &self,
        access_key: &str,
        secret_key: &str,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path_and_query}", self.endpoint);
        let secret = s3op_backends::SecretString::new(secret_key);
        let headers = s3op_backends::http::sigv4_headers(method, &url, &body, self.region(), access_key, &secret)
            .map_err(|e| anyhow!("signing {method} {path_and_query}: {e}"))?;
        let method: reqwest::Method = method.parse().with_context(|| format!("HTTP method {method}"))?;
        let mut req = http_client(self.ca_pem())?.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.body(body).send().await.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.with_context(|| format!("reading the reply to {method} {url}"))?;
        Ok((status, bytes.to_vec()))
    }

    /// One call to Garage's admin API v2, e.g. `(POST, "/v2/CreateBucket", Some(&json))` or
    /// `(GET, "/v2/GetBucketInfo?globalAlias=b", None)`. Returns the JSON reply (Null when the
    /// reply is empty) and fails on a non-2xx status with the reply's text.
    pub async fn garage_admin_call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let admin = self.garage_admin.as_ref().with_context(|| format!("{} has no Garage admin API", self.kind))?;
        garage_admin_request(admin, method, path_and_query, body).await
    }

    /// Starts the process and waits for readiness, naming the store and quoting its log on failure.
    async fn start_and_wait(&mut self) -> Result<()> {
        let started = Instant::now();
        self.process.start()?;
        let result = self.wait_ready(started + READY_TIMEOUT).await;
        if let Err(e) = result {
            // Not left half-started: a failed start is not retried on the same ports.
            self.process.stop();
            bail!(
                "{} at {} did not become ready within {:?}: {e:#}\nlast {LOG_LINES} lines of {}:\n{}",
                self.kind,
                self.endpoint,
                READY_TIMEOUT,
                self.process.log_path().display(),
                self.process.log_tail(LOG_LINES)
            );
        }
        self.startup_time = started.elapsed();
        Ok(())
    }

    async fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        match self.kind {
            StoreKind::Versitygw => self.wait_s3(deadline).await,
            StoreKind::Minio => {
                let url = format!("{}/minio/health/ready", self.endpoint);
                self.wait_http_ok(url, deadline).await?;
                self.wait_s3(deadline).await?;
                self.wait_minio_iam(deadline).await
            }
            StoreKind::Garage => {
                let admin = self.garage_admin.clone().context("Garage without admin settings")?;
                self.wait_http_ok(format!("{}/health", admin.endpoint), deadline).await?;
                // The token check proves the admin API is usable, not only up.
                self.wait_until("Garage admin API GetClusterHealth", deadline, move || {
                    let admin = admin.clone();
                    async move {
                        let health =
                            garage_admin_request(&admin, reqwest::Method::GET, "/v2/GetClusterHealth", None).await?;
                        Ok(health.get("status").and_then(|s| s.as_str()) == Some("healthy"))
                    }
                })
                .await?;
                self.wait_s3(deadline).await
            }
            StoreKind::Moto => {
                if self.moto_enforcing {
                    // /moto-api/ is not an AWS action, so it does not use up the unauthenticated calls.
                    self.wait_http_ok(format!("{}/moto-api/", self.endpoint), deadline).await?;
                    self.bootstrap_moto_admin().await.context("bootstrapping moto's IAM administrator")?;
                    self.bootstrap_moto_operator().await.context("making the operator's IAM user on moto")?;
                }
                let iam = self.iam_client_tuned(&self.access_key, &self.secret_key, 1, Duration::from_secs(5));
                self.wait_until("signed IAM ListUsers", deadline, move || {
                    let iam = iam.clone();
                    async move {
                        iam.list_users().send().await.map_err(sdk_error)?;
                        Ok(true)
                    }
                })
                .await
            }
        }
    }

    /// Polls `check` until it returns true, failing at `deadline` or as soon as the server exits.
    async fn wait_until<F, Fut>(&mut self, what: &str, deadline: Instant, check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let process = &mut self.process;
        wait_for(what, timeout, || process.check_alive(), check).await
    }

    async fn wait_s3(&mut self, deadline: Instant) -> Result<()> {
        // One attempt per poll: the poll loop is the retry.
        let s3 = self.s3_client_tuned(&self.access_key, &self.secret_key, 1, Duration::from_secs(5));
        self.wait_until("signed S3 ListBuckets", deadline, move || {
            let s3 = s3.clone();
            async move {
                s3.list_buckets().send().await.map_err(sdk_error)?;
                Ok(true)
            }
        })
        .await
    }

    /// MinIO answers S3 and admin calls before its first IAM load: until then even the
    /// built-in policies are missing, so a test's first admin call could see them absent.
    async fn wait_minio_iam(&mut self, deadline: Instant) -> Result<()> {
        let http = http_client(self.ca_pem())?;
        let url = format!("{}/minio/admin/v3/info-canned-policy?name=readonly", self.endpoint);
        let (region, access_key) = (self.region(), self.access_key.clone());
        let secret = s3op_backends::SecretString::new(&self.secret_key);
        self.wait_until("MinIO's built-in policy readonly", deadline, move || {
            let signed = s3op_backends::http::sigv4_headers("GET", &url, &[], region, &access_key, &secret);
            let req = http.get(&url);
            async move {
                let mut req = req;
                for (k, v) in signed.map_err(|e| anyhow!("signing: {e}"))? {
                    req = req.header(k, v);
                }
                let status = req.send().await?.status();
                if status.is_success() {
                    Ok(true)
                } else {
                    bail!("status {status}");
                }
            }
        })
        .await
    }

    async fn wait_http_ok(&mut self, url: String, deadline: Instant) -> Result<()> {
        let http = http_client(self.ca_pem())?;
        let what = format!("GET {url} answering 200");
        self.wait_until(&what, deadline, move || {
            let req = http.get(&url);
            async move {
                let resp = req.send().await?;
                let status = resp.status();
                if status.is_success() {
                    Ok(true)
                } else {
                    bail!("status {status}");
                }
            }
        })
        .await
    }

    /// Creates moto's administrator with the calls moto lets through unauthenticated.
    /// An IAM user holding only the operator's policy, made by the administrator.
    async fn bootstrap_moto_operator(&mut self) -> Result<()> {
        let iam = self.iam_client_tuned(&self.access_key, &self.secret_key, 1, Duration::from_secs(10));
        let name = format!("s3op-operator-{}", random_hex(6));
        iam.create_user().user_name(&name).send().await.map_err(sdk_error)?;
        let policy = moto_operator_policy(None)?;
        let put = iam.put_user_policy().user_name(&name).policy_name("operator").policy_document(policy.to_string());
        put.send().await.map_err(sdk_error)?;
        let key = iam
            .create_access_key()
            .user_name(&name)
            .send()
            .await
            .map_err(sdk_error)?
            .access_key
            .context("CreateAccessKey returned no key")?;
        self.operator_keys = Some((key.access_key_id, key.secret_access_key));
        Ok(())
    }

    async fn bootstrap_moto_admin(&mut self) -> Result<()> {
        // One attempt only: a retried call that had reached moto would use up one more of the
        // unauthenticated calls and leave the last bootstrap step to be refused.
        let iam = self.iam_client_tuned("bootstrap", "bootstrap", 1, Duration::from_secs(10));
        iam.create_user().user_name(MOTO_ADMIN_USER).send().await.map_err(sdk_error)?;
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }]
        });
        iam.put_user_policy()
            .user_name(MOTO_ADMIN_USER)
            .policy_name("s3op-admin-all")
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(sdk_error)?;
        let key = iam
            .create_access_key()
            .user_name(MOTO_ADMIN_USER)
            .send()
            .await
            .map_err(sdk_error)?
            .access_key
            .context("CreateAccessKey returned no key")?;
        self.access_key = key.access_key_id;
        self.secret_key = key.secret_access_key;
        Ok(())
    }
}

/// What moto checks for a call where its action names differ from AWS's (its S3 `ACTION_MAP`):
/// HeadBucket is `s3:HeadBucket` there (AWS: `s3:ListBucket`), and DeleteObjects is
/// `s3:DeleteObject` on the bucket's ARN (AWS: on each object's).
fn moto_aliases(action: &str) -> Vec<String> {
    match action {
        "s3:ListBucket" => vec!["s3:ListBucket".into(), "s3:HeadBucket".into()],
        other => vec![other.to_string()],
    }
}

/// Actions of the operator's policy whose need moto cannot show, and why.
pub const MOTO_CANNOT_TELL: [(&str, &str); 3] = [
    ("s3:GetBucketObjectLockConfiguration", "moto checks s3:ListBucket for GET ?object-lock"),
    ("s3:PutBucketObjectLockConfiguration", "moto checks only s3:CreateBucket for a bucket made with object lock"),
    ("s3:DeleteObjectVersion", "moto checks s3:DeleteObject for every DeleteObjects"),
];

/// The operator's IAM policy (`deploy/aws/operator-policy.json`).
pub fn operator_policy() -> Result<serde_json::Value> {
    let path = crate::workspace_root().join("deploy/aws/operator-policy.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The operator's IAM policy as moto can evaluate it, without the action `without`: moto's
/// names added beside AWS's, object ARNs widened to the bucket's (moto authorises DeleteObjects
/// on the bucket), IAM user ARNs widened to "*" (moto authorises IAM calls against "*"), and
/// conditions dropped (moto has no resource or request tags to test them against).
pub fn moto_operator_policy(without: Option<&str>) -> Result<serde_json::Value> {
    use serde_json::json;
    let policy = operator_policy()?;
    let mut statements = Vec::new();
    for st in policy["Statement"].as_array().context("the policy has no Statement list")? {
        let actions: Vec<String> = st["Action"]
            .as_array()
            .context("a statement without an Action list")?
            .iter()
            .filter_map(|a| a.as_str())
            .filter(|a| Some(*a) != without)
            .flat_map(moto_aliases)
            .collect();
        if actions.is_empty() {
            continue;
        }
        let resource = match st["Resource"].as_str().context("a statement without one Resource")? {
            "arn:aws:s3:::*/*" => json!(["arn:aws:s3:::*/*", "arn:aws:s3:::*"]),
            iam if iam.starts_with("arn:aws:iam::") => json!("*"),
            other => json!(other),
        };
        statements.push(json!({"Effect": "Allow", "Action": actions, "Resource": resource}));
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

impl Drop for Store {
    fn drop(&mut self) {
        // Before the temporary folder goes (fields drop after this), so the server never
        // writes into a removed folder.
        self.process.stop();
    }
}

fn versitygw_process(
    program: &Path,
    root: &Path,
    port: u16,
    access_key: &str,
    secret_key: &str,
    log: &Path,
) -> Result<Process> {
    let iam = mkdir(root, "iam")?;
    let data = mkdir(root, "data")?;
    let versions = mkdir(root, "versions")?;
    // Credentials as flags, not ROOT_ACCESS_KEY/ROOT_SECRET_KEY: the gateway prefers
    // ROOT_ACCESS_KEY_ID and friends, which the test's own environment might carry.
    let mut args: Vec<String> = vec![
        "--port".into(),
        format!("127.0.0.1:{port}"),
        "--access".into(),
        access_key.into(),
        "--secret".into(),
        secret_key.into(),
        "--region".into(),
        StoreKind::Versitygw.region().into(),
        "--iam-dir".into(),
        path_arg(&iam)?,
        // Users created through the admin API must be usable at once, not after the cache TTL.
        "--iam-cache-disable".into(),
        "--health".into(),
        "/health".into(),
        "posix".into(),
        "--versioning-dir".into(),
        path_arg(&versions)?,
    ];
    // The posix backend keeps object metadata in user.* xattrs; where the filesystem has none
    // (tmpfs on older kernels) it needs a sidecar folder.
    if !supports_user_xattrs(&data) {
        let sidecar = mkdir(root, "sidecar")?;
        args.extend(["--sidecar".into(), path_arg(&sidecar)?]);
    }
    args.push(path_arg(&data)?);
    Ok(Process::new("versitygw", program, &args, log).current_dir(root))
}

fn minio_process(
    program: &Path,
    root: &Path,
    port: u16,
    access_key: &str,
    secret_key: &str,
    log: &Path,
) -> Result<Process> {
    let data = mkdir(root, "data")?;
    let certs = mkdir(root, "certs")?;
    let args: Vec<String> = vec![
        "server".into(),
        path_arg(&data)?,
        "--address".into(),
        format!("127.0.0.1:{port}"),
        // Otherwise the (disabled) console still picks a random port on every address.
        "--console-address".into(),
        format!("127.0.0.1:{}", free_port()?),
        // Otherwise MinIO creates ~/.minio/certs.
        "--certs-dir".into(),
        path_arg(&certs)?,
    ];
    Ok(Process::new("minio", program, &args, log)
        .env("MINIO_ROOT_USER", access_key)
        .env("MINIO_ROOT_PASSWORD", secret_key)
        .env("MINIO_BROWSER", "off")
        .env("MINIO_UPDATE", "off")
        .current_dir(root))
}

#[allow(clippy::too_many_arguments)]
fn garage_process(
    program: &Path,
    root: &Path,
    config_path: &Path,
    port: u16,
    admin: &GarageAdmin,
    access_key: &str,
    secret_key: &str,
    log: &Path,
) -> Result<Process> {
    let meta = mkdir(root, "meta")?;
    let data = mkdir(root, "data")?;
    let rpc_port = free_port()?;
    let admin_addr = admin.endpoint.trim_start_matches("http://");
    let config = format!(
        r#"metadata_dir = {meta:?}
data_dir = {data:?}
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"
bootstrap_peers = []

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{port}"

[admin]
api_bind_addr = "{admin_addr}"
admin_token = "{token}"
"#,
        meta = path_arg(&meta)?,
        data = path_arg(&data)?,
        rpc_secret = random_hex(64),
        region = StoreKind::Garage.region(),
        token = admin.token,
    );
    std::fs::write(config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
    // --single-node assigns and applies a one-node layout at first start (and accepts the
    // same layout on a restart); --default-access-key imports our admin key with the right
    // to create buckets, which Garage otherwise has no way to give over S3.
    let args: Vec<String> = vec![
        "-c".into(),
        path_arg(config_path)?,
        "server".into(),
        "--single-node".into(),
        "--default-access-key".into(),
    ];
    Ok(Process::new("garage", program, &args, log)
        .env("GARAGE_DEFAULT_ACCESS_KEY", access_key)
        .env("GARAGE_DEFAULT_SECRET_KEY", secret_key)
        // A RUST_LOG meant for the operator would make Garage log every request.
        .env("RUST_LOG", "garage=info")
        // On TERM Garage waits up to 10 s for kept-alive client connections to close; its
        // sqlite metadata and data survive a kill, so a short grace is safe.
        .grace(Duration::from_secs(1))
        .current_dir(root))
}

fn moto_process(program: &Path, root: &Path, port: u16, enforcing: bool, log: &Path) -> Process {
    let args: Vec<String> = vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
    // Set either way, so an INITIAL_NO_AUTH_ACTION_COUNT in the test's environment has no say.
    let count = if enforcing { MOTO_BOOTSTRAP_CALLS.to_string() } else { "inf".to_string() };
    Process::new("moto", program, &args, log).env("INITIAL_NO_AUTH_ACTION_COUNT", &count).current_dir(root)
}

/// Timeouts of every SDK client the harness makes (S3 and IAM share the smithy type): a dead
/// store fails within seconds instead of hanging a test.
fn sdk_timeouts(operation_timeout: Duration) -> aws_sdk_s3::config::timeout::TimeoutConfig {
    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(operation_timeout.min(Duration::from_secs(8)))
        .operation_timeout(operation_timeout)
        .build()
}

async fn garage_admin_request(
    admin: &GarageAdmin,
    method: reqwest::Method,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let url = format!("{}{path_and_query}", admin.endpoint);
    let mut req = http_client(None)?.request(method.clone(), &url).bearer_auth(&admin.token);
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("reading the reply to {method} {url}"))?;
    if !status.is_success() {
        bail!("{method} {url}: {status}: {text}");
    }
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {url}: reply is not JSON: {text}"))
}

/// An SDK error with its whole chain of causes (the SDK's Display says only "service error").
fn sdk_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
}

fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    builder.build().context("building an HTTP client")
}

/// Writes MinIO's `public.crt` and `private.key` into `certs`: a certificate for 127.0.0.1 and
/// localhost signed by a fresh CA, whose certificate (PEM) is returned.
fn tls_certificates(certs: &Path) -> Result<String> {
    let (issuer, ca_pem) = crate::control_plane::new_ca("s3op-test-store-ca")?;
    let (cert, key) = crate::control_plane::serving_cert(&issuer, "s3op-test-store")?;
    std::fs::write(certs.join("public.crt"), cert).context("writing public.crt")?;
    std::fs::write(certs.join("private.key"), key).context("writing private.key")?;
    Ok(ca_pem)
}

fn mkdir(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn path_arg(path: &Path) -> Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Whether files in `dir` can carry `user.*` extended attributes.
fn supports_user_xattrs(dir: &Path) -> bool {
    let probe = dir.join(".s3op-xattr-probe");
    if std::fs::write(&probe, b"").is_err() {
        return false;
    }
    let ok = rustix::fs::setxattr(&probe, "user.s3op-probe", b"1", rustix::fs::XattrFlags::empty()).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A name that is valid as an S3 bucket name, an IAM user name and a Kubernetes object name:
/// lowercase letters, digits and hyphens, at most 40 characters, starting and ending with a
/// letter or digit. Unique per call (a counter), and across test processes (pid and time).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const MAX: usize = 40;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    // Five base-36 digits of milliseconds repeat only every ~2 weeks.
    let suffix = format!(
        "{}-{}-{}",
        base36(u128::from(std::process::id())),
        base36(u128::from(n)),
        base36(millis % 36u128.pow(5))
    );
    let mut clean = String::new();
    for c in prefix.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        // Runs of hyphens are collapsed: "xn--" and the like are reserved in bucket names.
        if !(c == '-' && (clean.is_empty() || clean.ends_with('-'))) {
            clean.push(c);
        }
    }
    clean.truncate(MAX.saturating_sub(suffix.len() + 1).min(20));
    let clean = clean.trim_end_matches('-');
    if clean.is_empty() { format!("t-{suffix}") } else { format!("{clean}-{suffix}") }
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// What every S3 client of the suites is configured with: the endpoint, region and key pair,
/// path-style addressing and checksums only when required (the SDK's default CRC32 trailers
/// break several S3-compatible servers). Timeouts and retries are the SDK's unless added.
pub fn s3_config(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "s3op-tests"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
}

/// `len` lowercase hex digits, random enough for test credentials (std's per-instance
/// randomly keyed hasher, so no extra dependency).
pub fn random_hex(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        let _ = write!(out, "{:016x}", h.finish());
    }
    out.truncate(len);
    out
}

/// A bucket policy granting everyone reads of `bucket`: what no grant may let a user set, and
/// a policy the operator did not write.
pub fn public_read_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let names: Vec<String> =
            ["e2e-versitygw", "Weird__Prefix!!", "", "a-very-long-prefix-that-goes-on-and-on-forever"]
                .iter()
                .flat_map(|p| [unique_name(p), unique_name(p)])
                .collect();
        for name in &names {
            assert!(name.len() >= 3 && name.len() <= 40, "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
            assert!(!name.starts_with('-') && !name.ends_with('-') && !name.contains("--"), "{name}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn random_hex_has_the_length_and_alphabet() {
        for len in [8, 24, 64, 65] {
            let s = random_hex(len);
            assert_eq!(s.len(), len);
            assert!(s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(random_hex(32), random_hex(32));
    }
}
