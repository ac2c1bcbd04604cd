//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
//! (for ownerReference garbage collection and namespace deletion), with certificates made here,
//! an admin kubeconfig written to a file, an unprivileged identity for RBAC tests, and the
//! project's CRDs installed and Established.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};

use crate::{
    peers,
    process::{Process, free_port, wait_for},
    wait::{Look, poll},
};

/// Time allowed for kube-apiserver to answer /readyz: first starts on a busy 2-core machine are slow.
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane. Dropping it stops every process and removes its files.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: controller-manager, apiserver, then etcd, then the files.
    controller_manager: Process,
    apiserver: Process,
    etcd: Process,
    url: String,
    admin_kubeconfig: PathBuf,
    unprivileged_kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

struct Pki {
    ca_pem: String,
    serving: (String, String),
    admin: (String, String),
    nobody: (String, String),
    service_account_key: String,
    service_account_pub: String,
}

fn client_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, groups: &[&str]) -> Result<(String, String)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf_extensions(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a real cluster's issued certificates carry and strict TLS clients (Python 3.13's
/// default `VERIFY_X509_STRICT`, OpenSSL's strict mode) require: Authority and Subject Key
/// Identifiers, `CA:FALSE`, and a key usage.
fn leaf_extensions(params: &mut CertificateParams) {
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
}

/// A fresh CA named `cn`: what signs with it, and its certificate (PEM). rcgen gives a CA its
/// Subject Key Identifier.
pub(crate) fn new_ca(cn: &str) -> Result<(Issuer<'static, KeyPair>, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    Ok((Issuer::new(ca_params, ca_key), ca_cert.pem()))
}

/// A serving certificate for 127.0.0.1 and localhost named `cn`, signed by `issuer`: (cert, key) PEM.
pub(crate) fn serving_cert(issuer: &Issuer<'static, KeyPair>, cn: &str) -> Result<(String, String)> {
    let mut serving = CertificateParams::new(vec!["localhost".to_string()])?;
    serving.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    serving.distinguished_name.push(DnType::CommonName, cn);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_extensions(&mut serving);
    let key = KeyPair::generate()?;
    let cert = serving.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn make_pki() -> Result<Pki> {
    let (issuer, ca_pem) = new_ca("s3op-test-ca")?;

    let sa_key = KeyPair::generate()?;
    Ok(Pki {
        ca_pem,
        serving: serving_cert(&issuer, "kube-apiserver")?,
        admin: client_cert(&issuer, "s3op-test-admin", &["system:masters"])?,
        // No groups beyond system:authenticated: RBAC grants it nothing.
        nobody: client_cert(&issuer, "s3op-test-nobody", &[])?,
        service_account_key: sa_key.serialize_pem(),
        service_account_pub: sa_key.public_key_pem(),
    })
}

fn b64(s: &str) -> String {
    // kubeconfig wants base64 PEM; a tiny encoder keeps the harness free of another dependency.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn kubeconfig_yaml(url: &str, ca: &str, user: &str, (cert, key): &(String, String)) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: s3op-test
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {user}
  context:
    cluster: s3op-test
    user: {user}
    namespace: default
current-context: {user}
",
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key),
    )
}

/// Waits until kube-apiserver answers `/readyz` with "ok", failing fast with its log if it exits.
async fn wait_apiserver_ready(apiserver: &mut Process, client: &Client) -> Result<()> {
    wait_for(
        "kube-apiserver /readyz",
        APISERVER_READY_TIMEOUT,
        || apiserver.check_alive(),
        || {
            let client = client.clone();
            async move {
                let req = http_get("/readyz")?;
                Ok(client.request_text(req).await.is_ok_and(|t| t.trim() == "ok"))
            }
        },
    )
    .await
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager in a fresh temporary directory
    /// and installs the project's CRDs. Fails with the peer's log tail when one does not come up.
    pub async fn start() -> Result<ControlPlane> {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("s3op-cp-").tempdir()?;
        let d = dir.path();
        let pki = make_pki()?;
        let write = |name: &str, content: &str| -> Result<PathBuf> {
            let p = d.join(name);
            std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        let ca = write("ca.crt", &pki.ca_pem)?;
        let serving_cert = write("apiserver.crt", &pki.serving.0)?;
        let serving_key = write("apiserver.key", &pki.serving.1)?;
        let sa_key = write("sa.key", &pki.service_account_key)?;
        // kube-apiserver verifies tokens with a public key file; PKCS#8 private keys are not read there.
        let sa_pub = write("sa.pub", &pki.service_account_pub)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Process::new(
            "etcd",
            peers::binary("etcd")?,
            &[
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            d.join("etcd.log"),
        );
        etcd.start()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let health = format!("{etcd_url}/health");
        wait_for(
            "etcd",
            Duration::from_secs(30),
            || etcd.check_alive(),
            || {
                let (http, health) = (http.clone(), health.clone());
                async move {
                    let body: serde_json::Value = http.get(&health).send().await?.json().await?;
                    Ok(body["health"] == "true")
                }
            },
        )
        .await?;

        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let mut apiserver = Process::new(
            "kube-apiserver",
            peers::binary("kube-apiserver")?,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", d.join("certs").display()),
                format!("--tls-cert-file={}", serving_cert.display()),
                format!("--tls-private-key-file={}", serving_key.display()),
                format!("--client-ca-file={}", ca.display()),
                "--authorization-mode=RBAC".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--disable-admission-plugins=ServiceAccount".into(),
                format!("--service-account-issuer={url}/"),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--endpoint-reconciler-type=none".into(),
                "--v=1".into(),
            ],
            d.join("kube-apiserver.log"),
        );
        apiserver.start()?;

        let admin_kubeconfig = write("admin.kubeconfig", &kubeconfig_yaml(&url, &pki.ca_pem, "admin", &pki.admin))?;
        let unprivileged_kubeconfig =
            write("unprivileged.kubeconfig", &kubeconfig_yaml(&url, &pki.ca_pem, "nobody", &pki.nobody))?;
        let client = client_from_kubeconfig(&admin_kubeconfig).await?;
        wait_apiserver_ready(&mut apiserver, &client).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        wait_for(
            "the default namespace",
            Duration::from_secs(60),
            || apiserver.check_alive(),
            || {
                let ns = namespaces.clone();
                async move { Ok(ns.get_opt("default").await?.is_some()) }
            },
        )
        .await?;

        // CRDs go in before the controller-manager starts: its discovery only refreshes every 30 s.
        install_crds(&client).await?;

        let mut controller_manager = Process::new(
            "kube-controller-manager",
            peers::binary("kube-controller-manager")?,
            &[
                format!("--kubeconfig={}", admin_kubeconfig.display()),
                "--controllers=garbage-collector-controller,namespace-controller".into(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
            d.join("kube-controller-manager.log"),
        );
        controller_manager.start()?;
        // Give it a moment to fail on a bad flag, so the error surfaces here and not as a GC timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
        controller_manager.check_alive()?;

        eprintln!("control plane ready at {url} in {:.1}s (files in {})", started.elapsed().as_secs_f64(), d.display());
        Ok(ControlPlane { controller_manager, apiserver, etcd, url, admin_kubeconfig, unprivileged_kubeconfig, dir })
    }

    /// The control plane shared by every test of this test binary, started on first use.
    /// Its processes stop when the test binary exits (see [`crate::process`]), and its files are
    /// removed then by a janitor process.
    pub fn shared() -> Result<&'static ControlPlane> {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                // A runtime of its own: the caller's (a #[tokio::test]'s) ends with that test,
                // and the shared control plane must not depend on it.
                std::thread::spawn(|| {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let cp = rt.block_on(ControlPlane::start()).map_err(|e| format!("{e:#}"))?;
                    crate::process::remove_when_gone(cp.dir.path());
                    Ok(cp)
                })
                .join()
                .unwrap_or_else(|_| Err("control plane start-up panicked".into()))
            })
            .as_ref()
            .map_err(|e| anyhow!("starting the control plane: {e}"))
    }

    /// Stops kube-apiserver (TERM), keeps it down for `down`, starts it again on the same port
    /// with the same etcd, and waits for `/readyz`: what clients see in a control-plane upgrade.
    pub async fn restart_apiserver(&mut self, down: Duration) -> Result<()> {
        self.apiserver.stop();
        tokio::time::sleep(down).await;
        self.apiserver.start()?;
        let client = client_from_kubeconfig(&self.admin_kubeconfig).await?;
        wait_apiserver_ready(&mut self.apiserver, &client).await
    }

    /// HTTPS URL of kube-apiserver.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Path of the admin (system:masters) kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Path of a kubeconfig for an authenticated user that RBAC grants nothing.
    pub fn unprivileged_kubeconfig(&self) -> &Path {
        &self.unprivileged_kubeconfig
    }

    /// Process ids of kube-apiserver and etcd, to account for their CPU.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [("kube-apiserver", &self.apiserver), ("etcd", &self.etcd)]
            .into_iter()
            .filter_map(|(name, p)| Some((name, p.pid()?)))
            .collect()
    }

    /// Directory holding the control plane's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new admin client (create one per test: a client is bound to the runtime that made it).
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// A new client for the unprivileged identity.
    pub async fn unprivileged_client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.unprivileged_kubeconfig).await
    }

    /// Creates a fresh namespace named after `prefix` (unique in this control plane).
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut base: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(40)
            .collect();
        base = base.trim_matches('-').to_string();
        let name = format!("{base}-{}-{n}", std::process::id());
        let api: Api<Namespace> = Api::all(self.client().await?);
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        api.create(&PostParams::default(), &ns).await.with_context(|| format!("creating namespace {name}"))?;
        Ok(name)
    }

    /// Runs the real kubectl against this control plane (admin identity) and returns its output.
    pub fn kubectl(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(peers::binary("kubectl")?)
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .args(args)
            .output()
            .context("running kubectl")
    }

    /// The last lines of each control-plane log, for a failing test's report.
    pub fn log_tails(&self, lines: usize) -> String {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .iter()
            .map(|p| format!("--- {} ({})\n{}", p.name(), p.log_path().display(), p.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>> {
    http::Request::get(path).body(Vec::new()).map_err(|e| anyhow!("building request: {e}"))
}

/// Applies the project's CRDs (server-side apply, so re-running is harmless) and waits until
/// each is Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(s3op_api::FIELD_MANAGER).force();
    for crd in s3op_api::crds() {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(&name, &params, &Patch::Apply(&crd)).await.with_context(|| format!("applying CRD {name}"))?;
    }
    // One minute for all of it, as one budget.
    let deadline = Instant::now() + Duration::from_secs(60);
    let every = Duration::from_millis(100);
    for crd in s3op_api::crds() {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        let left = deadline.saturating_duration_since(Instant::now());
        poll(&format!("CRD {name} Established"), left, every, || async {
            let current = api.get(&name).await?;
            let conditions = current.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                Look::Done(())
            } else {
                Look::NotYet(format!("{conditions:?}"))
            })
        })
        .await?;
    }
    // Established does not mean published: the OpenAPI v3 document (what `kubectl explain` reads)
    // is rebuilt asynchronously, so a test that explains a field right after installation could
    // race it. Wait until the group's schema is served.
    let group_path = format!("apis/{}/{}", s3op_api::API_GROUP, s3op_api::API_VERSION);
    let left = deadline.saturating_duration_since(Instant::now());
    poll(&format!("OpenAPI v3 for {group_path} published"), left, every, || async {
        let index = client.request_text(http_get("/openapi/v3")?).await.unwrap_or_default();
        if index.contains(&group_path) {
            let schema = client.request_text(http_get(&format!("/openapi/v3/{group_path}"))?).await;
            if schema.is_ok_and(|s| s.contains("S3Bucket") && s.contains("S3User")) {
                return Ok(Look::Done(()));
            }
        }
        Ok(Look::NotYet(String::new()))
    })
    .await?;
    Ok(())
}
