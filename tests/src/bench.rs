//! `cargo xtask bench`: figures, not pass/fail. For each store and rollout size N, a fresh
//! operator process (the release binary, configured by environment as a cluster runs it) rolls
//! out N S3Bucket + S3User pairs on a fresh store; the same backend calls are also made
//! directly, with no Kubernetes, on another fresh store of the same kind (the floor); then the
//! converged operator is watched for two resync intervals. Compatibility mode, start-up with
//! existing objects and (`--compat-burst`) a tenant's wait behind a burst of compatibility
//! Secrets are measured too. Writes `bench.md` and `bench.json`.
//!
//! Both the operator and the floor reach their store through a [`proxy::CountingProxy`], so
//! the store requests behind each `Backend` call are counted as well.

pub mod metrics;
pub mod proxy;
pub mod report;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use s3op_api::{
    ClusterS3Store, ClusterS3StoreSpec, DEFAULT_COMPAT_ANNOTATION, S3Bucket, S3User, StoreKind as StoreKind_, StoreRef,
    naming::default_user_name,
    store::{
        AwsProvider, DEFAULT_ACCESS_KEY_ID_KEY, DEFAULT_ADMIN_TOKEN_KEY, DEFAULT_SECRET_ACCESS_KEY_KEY, GarageProvider,
        NamespaceName, NamespaceSelection, Provider, S3Provider,
    },
};
use s3op_backends::{Backend, BucketSpec, Grant, Owner, Permission, UserSpec, compat::provision};
use s3op_controller::config::Cli;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::{
    binary::{OperatorProcess, operator_binary, store_env},
    compat::{account, random_access_key, random_secret},
    control_plane::ControlPlane,
    rollout::Rollout,
    stores::{Store, StoreKind, unique_name},
};
use metrics::{RssPeak, RssSampler, Scrape, Window};
use proxy::{CountingProxy, Counts};

/// Rollout size that adds the 10,000-pair memory figure (`--large`).
pub const LARGE_N: usize = 10_000;

/// Requests in flight while creating objects in the API server: enough that creating is never
/// what the operator waits for.
const APPLY_CONCURRENCY: usize = 32;

/// Extra wait after two resync intervals: the jitter (±10%) and a reconcile in flight.
const STEADY_SLACK: Duration = Duration::from_secs(5);

/// Time after convergence for the reconciles that the last status and Secret writes trigger.
const SETTLE: Duration = Duration::from_secs(5);

/// Options of the bench driver (`cargo xtask bench [OPTIONS]` passes them through).
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "bench",
    about = "Figures for s3-resource-operator: rollout time against a floor, steady state, memory, start-up, compatibility mode"
)]
pub struct Options {
    /// A fast check: N=100 on VersityGW only (compatibility mode with 100 Secrets).
    #[arg(long)]
    pub quick: bool,
    /// Also roll out 10,000 pairs, for the memory figure.
    #[arg(long)]
    pub large: bool,
    /// Stores to measure, comma-separated: versitygw, minio, garage, aws. Default: all four.
    #[arg(long, value_delimiter = ',')]
    pub stores: Vec<String>,
    /// Rollout sizes, comma-separated. Default: 100,1000.
    #[arg(long, value_delimiter = ',')]
    pub n: Vec<usize>,
    /// Annotated Secrets for the compatibility-mode figure on VersityGW (0 skips it).
    /// Default: 1000 (100 with --quick).
    #[arg(long)]
    pub compat: Option<usize>,
    /// RESYNC_INTERVAL (seconds) of the operator whose steady state is measured; the window
    /// lasts two of them.
    #[arg(long, default_value_t = 20)]
    pub resync_secs: u64,
    /// RESYNC_INTERVAL (seconds) while rolling out: the operator's default, so resyncs of
    /// early objects do not compete with the rollout (at N=1,000 a 20 s resync does).
    #[arg(long, default_value_t = 300)]
    pub rollout_resync_secs: u64,
    /// The operator's RECONCILE_CONCURRENCY (per controller); the floor uses as many per kind.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Where bench.md, bench.json and the operator logs go. Default: <target dir>/bench.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the floor of the rollouts (no ratio): for a memory figure at a size whose floor
    /// was measured before (VersityGW's alone takes 13 min at 10,000 pairs).
    #[arg(long)]
    pub no_floor: bool,
    /// Where the rollouts' store comes from: `cluster` (a ClusterS3Store the pairs name, the
    /// operator configured with no default store) or `env` (the operator's environment, as
    /// before stores were objects).
    #[arg(long, default_value = "cluster")]
    pub store_source: String,
    /// Pairs per store of the many-stores figure: one operator, every measured store at once,
    /// each a ClusterS3Store. Default 250 (0 with --quick); 0 skips it.
    #[arg(long)]
    pub multi: Option<usize>,
    /// Annotated Secrets of the compatibility-burst figure, for each selected store with
    /// compatibility mode (versitygw, minio, garage; not aws): one operator in both modes,
    /// these Secrets created in one namespace, then a tenant's S3Bucket + S3User (ReadWrite) in
    /// another; how long the tenant waits for Ready while the Secrets converge. 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub compat_burst: usize,
}

/// What a run measures, resolved from [`Options`].
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Stores, in order.
    #[serde(serialize_with = "store_names")]
    pub stores: Vec<StoreKind>,
    /// Rollout sizes, ascending.
    pub sizes: Vec<usize>,
    /// Compatibility Secrets (0: not measured).
    pub compat: usize,
    /// Resync interval of the operator that rolls out (and of compatibility mode).
    pub rollout_resync: Duration,
    /// Resync interval of the operator whose steady state is measured.
    pub resync: Duration,
    /// Reconcile concurrency of each controller, and of each step of the floor.
    pub concurrency: usize,
    /// Whether the rollouts' floors are measured.
    pub floor: bool,
    /// Whether the rollouts' store is a ClusterS3Store (else the operator's environment).
    pub cluster_store: bool,
    /// Pairs per store of the many-stores figure (0: not measured).
    pub multi: usize,
    /// Compatibility Secrets of the burst figure (0: not measured).
    pub compat_burst: usize,
    /// Stores the burst figure runs on: those of `stores` with compatibility mode.
    #[serde(serialize_with = "store_names")]
    pub compat_burst_stores: Vec<StoreKind>,
}

impl Options {
    /// Parses the driver's arguments (without the program name); `None` once `--help` or
    /// `--version` was printed.
    pub fn from_args(args: &[String]) -> Result<Option<Options>> {
        match Options::try_parse_from(std::iter::once("bench".to_string()).chain(args.iter().cloned())) {
            Ok(o) => Ok(Some(o)),
            Err(e) if !e.use_stderr() => {
                print!("{e}");
                Ok(None)
            }
            Err(e) => bail!("{e}"),
        }
    }

    /// Resolves defaults and names.
    pub fn plan(&self) -> Result<Plan> {
        let stores = if !self.stores.is_empty() {
            self.stores.iter().map(|s| parse_store(s)).collect::<Result<Vec<_>>>()?
        } else if self.quick {
            vec![StoreKind::Versitygw]
        } else {
            StoreKind::ALL.to_vec()
        };
        let mut sizes = if !self.n.is_empty() {
            self.n.clone()
        } else if self.quick {
            vec![100]
        } else {
            vec![100, 1000]
        };
        if self.large {
            sizes.push(LARGE_N);
        }
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.contains(&0) {
            bail!("--n: a rollout needs at least one pair");
        }
        let compat = if stores.contains(&StoreKind::Versitygw) {
            self.compat.unwrap_or(if self.quick { 100 } else { 1000 })
        } else {
            0
        };
        if self.concurrency == 0 || self.resync_secs == 0 || self.rollout_resync_secs == 0 {
            bail!("--concurrency, --resync-secs and --rollout-resync-secs must be at least 1");
        }
        let compat_burst_stores: Vec<StoreKind> = if self.compat_burst > 0 {
            stores.iter().copied().filter(|k| has_compat_mode(*k)).collect()
        } else {
            vec![]
        };
        if self.compat_burst > 0 && compat_burst_stores.is_empty() {
            bail!("--compat-burst: none of the stores has compatibility mode (versitygw, minio, garage)");
        }
        let cluster_store = match self.store_source.as_str() {
            "cluster" => true,
            "env" => false,
            other => bail!("--store-source: {other:?} is neither cluster nor env"),
        };
        Ok(Plan {
            stores,
            sizes,
            compat,
            rollout_resync: Duration::from_secs(self.rollout_resync_secs),
            resync: Duration::from_secs(self.resync_secs),
            concurrency: self.concurrency,
            floor: !self.no_floor,
            cluster_store,
            multi: self.multi.unwrap_or(if self.quick { 0 } else { 250 }),
            compat_burst: self.compat_burst,
            compat_burst_stores,
        })
    }

    /// Peers `cargo xtask peers --only` must install for this run.
    pub fn peers(&self) -> Result<Vec<&'static str>> {
        let mut peers = vec!["kubernetes", "etcd"];
        for kind in self.plan()?.stores {
            peers.push(match kind {
                StoreKind::Versitygw => "versitygw",
                StoreKind::Minio => "minio",
                StoreKind::Garage => "garage",
                StoreKind::Moto => "moto",
            });
        }
        Ok(peers)
    }

    /// The output folder.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| target_dir().join("bench"))
    }
}

/// The workspace's cargo target directory (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::workspace_root().join("target"))
}

fn store_names<S: serde::Serializer>(kinds: &[StoreKind], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(kinds.iter().map(|k| k.backend_name()))
}

fn parse_store(s: &str) -> Result<StoreKind> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "versitygw" => StoreKind::Versitygw,
        "minio" => StoreKind::Minio,
        "garage" => StoreKind::Garage,
        "aws" | "moto" => StoreKind::Moto,
        other => bail!("--stores: unknown store {other:?} (versitygw, minio, garage, aws)"),
    })
}

/// Whether the operator has compatibility mode on this store: AWS's IAM generates every access
/// key itself, so the keys a compatibility Secret brings can never be given to a user there.
fn has_compat_mode(kind: StoreKind) -> bool {
    kind != StoreKind::Moto
}

/// The operator's name for a store kind (moto stands in for aws).
/// One rollout of N pairs on one store.
#[derive(Debug, Clone, Serialize)]
pub struct CrdRun {
    /// Backend name (aws for moto).
    pub store: String,
    /// Pairs.
    pub n: usize,
    /// Fresh operator, empty namespace: spawn to `/readyz` 200.
    pub startup_empty_s: f64,
    /// RSS before anything was applied.
    pub idle_rss_mib: f64,
    /// First create until every S3Bucket and S3User is Ready.
    pub rollout_s: f64,
    /// Time the creates alone took (they overlap the rollout).
    pub apply_s: f64,
    /// The same backend calls made directly, same concurrency, fresh store (`None`: skipped).
    pub floor_s: Option<f64>,
    /// Store requests the floor made, by operation.
    pub floor_requests: Counts,
    /// RSS when everything was Ready.
    pub converged_rss_mib: f64,
    /// The largest RSS from first create until all Ready.
    pub rollout_rss_peak: RssPeak,
    /// What the operator did from first create until all Ready.
    pub rollout: Window,
    /// CPU seconds the other processes on the machine used during the rollout: where the time
    /// beyond the floor goes on a machine the peers share.
    pub rollout_peer_cpu_s: BTreeMap<String, f64>,
    /// A new operator process (short resync) started with the N converged pairs present.
    pub restart: Restart,
    /// What that process did over two resync intervals after its first pass.
    pub steady: Window,
    /// RSS after the steady-state window.
    pub steady_rss_mib: f64,
}

impl CrdRun {
    /// Rollout time over floor time, if the floor was measured.
    pub fn ratio(&self) -> Option<f64> {
        self.floor_s.map(|f| self.rollout_s / f.max(1e-9))
    }
}

/// A new operator process with converged objects present.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// Spawn to `/readyz` 200.
    pub ready_s: f64,
    /// Spawn until every object was reconciled once.
    pub first_pass_s: f64,
    /// RSS after the first pass.
    pub rss_mib: f64,
    /// What the first pass did (it should write nothing).
    pub first_pass: Window,
}

/// One operator rolling out pairs on several stores at once, each a ClusterS3Store.
#[derive(Debug, Clone, Serialize)]
pub struct MultiRun {
    /// Backend names, one store each.
    pub stores: Vec<String>,
    /// Pairs per store.
    pub per_store: usize,
    /// RSS before anything was applied.
    pub idle_rss_mib: f64,
    /// First create until every pair of every store was Ready.
    pub rollout_s: f64,
    /// First create until every pair of that store was Ready.
    pub ready_s: BTreeMap<String, f64>,
    /// RSS when everything was Ready.
    pub converged_rss_mib: f64,
    /// What the operator did meanwhile.
    pub rollout: Window,
    /// What a new process (short resync) did over two resync intervals after its first pass.
    pub steady: Window,
    /// RSS after the steady-state window.
    pub steady_rss_mib: f64,
}

/// Compatibility mode: annotated Secrets on VersityGW.
#[derive(Debug, Clone, Serialize)]
pub struct CompatRun {
    /// Secrets.
    pub n: usize,
    /// RSS before the Secrets were created.
    pub idle_rss_mib: f64,
    /// First create until every Secret was processed (`s3_operator_secrets_processed_total`).
    pub processed_s: f64,
    /// `provision` called directly, same concurrency, fresh store.
    pub floor_s: f64,
    /// Store requests the floor made, by operation.
    pub floor_requests: Counts,
    /// RSS once all were processed.
    pub rss_mib: f64,
    /// What the operator did meanwhile.
    pub window: Window,
}

/// A tenant's S3Bucket + S3User created while a burst of compatibility Secrets converges, on
/// one operator in both modes (every namespace watched, the store from its environment).
#[derive(Debug, Clone, Serialize)]
pub struct CompatBurstRun {
    /// Backend name.
    pub store: String,
    /// Secrets in the burst.
    pub n: usize,
    /// RSS before anything was created.
    pub idle_rss_mib: f64,
    /// Time creating the Secrets took (the tenant's pair is created right after).
    pub secrets_created_s: f64,
    /// The tenant's S3Bucket: its create until it was Ready.
    pub tenant_bucket_ready_s: f64,
    /// The tenant's S3User: its create until it was Ready.
    pub tenant_user_ready_s: f64,
    /// Secrets processed (`s3_operator_secrets_processed_total`) when the S3User was Ready,
    /// as last polled (every 100 ms).
    pub secrets_processed_at_user_ready: f64,
    /// First Secret create until every Secret was processed.
    pub secrets_processed_s: f64,
    /// Failed Secret flows (`s3_operator_errors_total`; each is retried).
    pub secret_errors: f64,
    /// The largest RSS from first create until the tenant was Ready and every Secret processed.
    pub rss_peak: RssPeak,
    /// What the operator did over that time.
    pub window: Window,
}

impl CompatRun {
    /// Operator time over floor time.
    pub fn ratio(&self) -> f64 {
        self.processed_s / self.floor_s.max(1e-9)
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked.
    pub plan: Plan,
    /// CPUs and memory of this machine.
    pub machine: String,
    /// One entry per store and N, in order.
    pub crd: Vec<CrdRun>,
    /// The compatibility-mode figure.
    pub compat: Option<CompatRun>,
    /// The many-stores figure.
    pub multi: Option<MultiRun>,
    /// The compatibility-burst figure, one entry per store.
    pub compat_burst: Vec<CompatBurstRun>,
    /// Parts that failed, with why; the rest of the run went on.
    pub failures: Vec<String>,
    /// Each part, in order: name, wall time, and the machine's 1-minute load average when it
    /// started (other work on the machine skews the figures).
    pub parts: Vec<(String, f64, f64)>,
    /// Wall time of the whole run.
    pub took_s: f64,
}

/// Runs the bench, writing `bench.md` and `bench.json` into the output folder after every part
/// (a run cut short keeps what it measured); returns the report.
pub async fn run(opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let plan = opts.plan()?;
    let out = opts.out_dir();
    std::fs::create_dir_all(out.join("logs")).with_context(|| format!("creating {}", out.display()))?;
    let binary = operator_binary("release")?;
    println!("bench: {plan:?}\noperator: {}\noutput: {}", binary.display(), out.display());
    let mut report = Report {
        plan: plan.clone(),
        machine: machine(),
        crd: Vec::new(),
        compat: None,
        multi: None,
        compat_burst: Vec::new(),
        failures: Vec::new(),
        parts: Vec::new(),
        took_s: 0.0,
    };
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    let bench = Bench { cp: &cp, client, binary, plan: plan.clone(), logs: out.join("logs") };

    for &kind in &plan.stores {
        for &n in &plan.sizes {
            let part = format!("{} N={n}", kind.backend_name());
            if let Some(r) = run_part(&mut report, part, bench.crd(kind, n)).await {
                report.crd.push(r);
            }
            report.took_s = started.elapsed().as_secs_f64();
            report::write(&report, &out)?;
        }
    }
    if plan.compat > 0 {
        let part = format!("compatibility mode, {} Secrets", plan.compat);
        report.compat = run_part(&mut report, part, bench.compat(plan.compat)).await;
        report.took_s = started.elapsed().as_secs_f64();
        report::write(&report, &out)?;
    }
    for &kind in &plan.compat_burst_stores {
        let part = format!("{} compatibility burst, {} Secrets", kind.backend_name(), plan.compat_burst);
        if let Some(r) = run_part(&mut report, part, bench.compat_burst(kind, plan.compat_burst)).await {
            report.compat_burst.push(r);
        }
        report.took_s = started.elapsed().as_secs_f64();
        report::write(&report, &out)?;
    }
    if plan.multi > 0 {
        let part = format!("{} stores × {} pairs at once", plan.stores.len(), plan.multi);
        report.multi = run_part(&mut report, part, bench.multi(plan.multi)).await;
    }
    report.took_s = started.elapsed().as_secs_f64();
    report::write(&report, &out)?;
    Ok(report)
}

/// Runs one part of the plan, adding its time and the load it ran under to the report, and
/// its failure if it failed (the other parts still run).
async fn run_part<T>(report: &mut Report, part: String, run: impl Future<Output = Result<T>>) -> Option<T> {
    println!("\n== {part}");
    let (t, load) = (Instant::now(), load_average());
    let out = run.await.inspect_err(|e| {
        eprintln!("{part} failed: {e:#}");
        report.failures.push(format!("{part}: {e:#}"));
    });
    report.parts.push((part, t.elapsed().as_secs_f64(), load));
    out.ok()
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
        .unwrap_or_default();
    format!("{cpus} CPUs, {mem} memory")
}

struct Bench<'a> {
    cp: &'a ControlPlane,
    client: Client,
    binary: PathBuf,
    plan: Plan,
    logs: PathBuf,
}

/// A store behind a counting proxy, with the operator's environment pointed at the proxy.
struct Proxied {
    // Held so the store runs as long as its proxies; dropped (stopped) with them.
    store: Store,
    s3: CountingProxy,
    admin: Option<CountingProxy>,
    env: Vec<(String, String)>,
}

impl Proxied {
    async fn start(kind: StoreKind) -> Result<Proxied> {
        let store = match kind {
            // Signatures and IAM policies checked on every call, as AWS does.
            StoreKind::Moto => Store::start_moto_enforcing().await?,
            other => Store::start(other).await?,
        };
        let mut env = store_env(&store);
        let markers: Vec<String> = env.iter().filter(|(k, _)| k == "MARKER_BUCKET").map(|(_, v)| v.clone()).collect();
        let s3 = CountingProxy::start(store.endpoint(), markers.clone()).await?;
        let admin = match store.garage_admin_endpoint() {
            Some(endpoint) => Some(CountingProxy::start(endpoint, markers).await?),
            None => None,
        };
        for (k, v) in &mut env {
            match k.as_str() {
                "S3_ENDPOINT_URL" => *v = s3.url().to_string(),
                "GARAGE_ADMIN_ENDPOINT" => {
                    if let Some(a) = &admin {
                        *v = a.url().to_string();
                    }
                }
                _ => {}
            }
        }
        Ok(Proxied { store, s3, admin, env })
    }

    /// Store requests so far, S3 and admin API together.
    fn requests(&self) -> Counts {
        let mut all = self.s3.snapshot();
        if let Some(admin) = &self.admin {
            for (k, v) in admin.snapshot() {
                *all.entry(k).or_default() += v;
            }
        }
        all
    }

    /// A backend configured as the operator's (same flags, through the proxy), unmetered.
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let flag = |env: &str| -> Option<(String, String)> {
            let value = self.env.iter().find(|(k, _)| k == env)?.1.clone();
            let flag = match env {
                "BACKEND_NAME" => "--backend",
                "S3_ENDPOINT_URL" => "--s3-endpoint-url",
                "S3_REGION" => "--s3-region",
                "S3_ACCESS_KEY" => "--s3-access-key",
                "S3_SECRET_KEY" => "--s3-secret-key",
                "MARKER_BUCKET" => "--marker-bucket",
                "GARAGE_ADMIN_ENDPOINT" => "--garage-admin-endpoint",
                "GARAGE_ADMIN_TOKEN" => "--garage-admin-token",
                _ => return None,
            };
            Some((flag.to_string(), value))
        };
        let mut argv = vec!["s3-resource-operator".to_string()];
        for env in [
            "BACKEND_NAME",
            "S3_ENDPOINT_URL",
            "S3_REGION",
            "S3_ACCESS_KEY",
            "S3_SECRET_KEY",
            "MARKER_BUCKET",
            "GARAGE_ADMIN_ENDPOINT",
            "GARAGE_ADMIN_TOKEN",
        ] {
            if let Some((f, v)) = flag(env) {
                argv.extend([f, v]);
            }
        }
        let config = Cli::try_parse_from(&argv)
            .map_err(|e| anyhow!("backend flags: {e}"))?
            .into_config()
            .map_err(|e| anyhow!("backend configuration: {e}"))?;
        let store = config.store.ok_or_else(|| anyhow!("the flags configure no default store"))?;
        s3op_controller::store::connect(&store).await.map_err(|e| anyhow!("{e}"))
    }
}

impl Bench<'_> {
    fn operator_env(&self, proxied: &Proxied, namespace: &str, crd: bool, resync: Duration) -> Vec<(String, String)> {
        let mut env = if crd && self.plan.cluster_store {
            // No default store: the pairs name a ClusterS3Store (see `cluster_store`).
            vec![("CLUSTER_STORES".to_string(), "true".to_string())]
        } else {
            proxied.env.clone()
        };
        env.extend(
            [
                ("WATCH_NAMESPACE", namespace.to_string()),
                ("CRD_MODE", crd.to_string()),
                ("COMPAT_MODE", (!crd).to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env.extend(self.tuning_env(resync));
        env
    }

    /// Log level, resync interval and concurrency: what every operator of the bench is given.
    fn tuning_env(&self, resync: Duration) -> Vec<(String, String)> {
        [
            // S3OP_BENCH_LOG_LEVEL=debug explains a slow run, at some cost to its figures.
            ("LOG_LEVEL", std::env::var("S3OP_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".to_string())),
            ("RESYNC_INTERVAL", format!("{}s", resync.as_secs())),
            ("RECONCILE_CONCURRENCY", self.plan.concurrency.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    async fn spawn(&self, env: Vec<(String, String)>, log: &str) -> Result<(OperatorProcess, f64)> {
        let log = self.logs.join(log);
        let mut op = OperatorProcess::spawn(&self.binary, self.cp.kubeconfig(), env, &log)?;
        let ready = op.wait_ready(Duration::from_secs(60)).await?.as_secs_f64();
        Ok((op, ready))
    }

    async fn crd(&self, kind: StoreKind, n: usize) -> Result<CrdRun> {
        let name = kind.backend_name();
        let concurrency = self.plan.concurrency;

        // The floor first, on a store of its own.
        let (floor_s, floor_requests) = if self.plan.floor {
            let proxied = Proxied::start(kind).await?;
            let backend = proxied.backend().await?;
            let floor = floor_crd(backend, n, concurrency).await.context("floor")?.as_secs_f64();
            println!("floor: {n} pairs in {floor:.2}s ({:.1} pairs/s)", n as f64 / floor);
            (Some(floor), proxied.requests())
        } else {
            println!("floor: skipped (--no-floor)");
            (None, Counts::default())
        };

        let proxied = Proxied::start(kind).await?;
        let namespace = self.cp.namespace(&format!("bench-{name}-{n}")).await?;
        let mut rollout = Rollout::new(&namespace, n);
        if self.plan.cluster_store {
            let store = format!("bench-{name}-{n}");
            cluster_store(&self.client, &proxied, &store, &namespace, std::slice::from_ref(&namespace)).await?;
            rollout = rollout.on(StoreRef { kind: StoreKind_::ClusterS3Store, name: store });
        }
        let env = self.operator_env(&proxied, &namespace, true, self.plan.rollout_resync);
        let (mut op, startup_empty_s) = self.spawn(env, &format!("operator-{name}-{n}.log")).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_mib = op.rss_mib()?;

        let mut peers: Vec<(String, u32)> = self.cp.pids().into_iter().map(|(p, pid)| (p.to_string(), pid)).collect();
        peers.extend(proxied.store.pid().map(|pid| (name.to_string(), pid)));
        let peer_cpu_before = metrics::cpu_of(&peers);
        // Its own process only: every peer and the operator are its descendants.
        let driver_cpu_before = metrics::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let before = Scrape::take(&op, &proxied).await?;
        let sampler = RssSampler::start(op.pid().context("the operator is not running")?);
        let started = Instant::now();
        let timeout = Duration::from_secs(300) + Duration::from_millis(300) * u32::try_from(n).unwrap_or(u32::MAX);
        let (applied, ready) = tokio::join!(
            rollout.apply(&self.client, APPLY_CONCURRENCY),
            wait_all_ready(&self.client, &rollout, timeout)
        );
        let rollout_rss_peak = sampler.finish();
        let apply_s = applied.context("creating the pairs")?.as_secs_f64();
        if let Err(e) = ready {
            let dump = self.logs.join(format!("failed-{name}-{n}.metrics"));
            let _ = std::fs::write(&dump, op.metrics().await.unwrap_or_default());
            bail!("{e:#}\nthe operator's metrics: {}\noperator log:\n{}", dump.display(), op.log_tail(20));
        }
        let rollout_s = started.elapsed().as_secs_f64();
        let converged_rss_mib = op.rss_mib()?;
        let converged = Scrape::take(&op, &proxied).await?;
        let rollout_window = Window::between(&before, &converged);
        let mut rollout_peer_cpu_s: BTreeMap<String, f64> = metrics::cpu_of(&peers)
            .into_iter()
            .map(|(p, s)| {
                let spent = s - peer_cpu_before.get(&p).copied().unwrap_or(0.0);
                (p, spent)
            })
            .collect();
        rollout_peer_cpu_s.insert(
            "bench driver".to_string(),
            metrics::cpu_seconds(std::process::id()).unwrap_or(0.0) - driver_cpu_before,
        );
        let ratio = floor_s.map_or_else(|| "no floor".to_string(), |f| format!("{:.2}x the floor", rollout_s / f));
        println!(
            "operator: {n} pairs Ready in {rollout_s:.2}s ({:.1} pairs/s, {ratio}); RSS {idle_rss_mib:.1} MiB idle, {converged_rss_mib:.1} MiB converged, peak {}",
            n as f64 / rollout_s,
            report::rss_peak(&rollout_rss_peak),
        );
        op.terminate(Duration::from_secs(30)).await?;

        // Steady state in a new process with the short resync interval, once its first pass
        // (which is the start-up figure with N pairs present) is over.
        let env = self.operator_env(&proxied, &namespace, true, self.plan.resync);
        let (op, restart) = self.restart(&proxied, env, name, n).await?;
        println!(
            "new process with {n} pairs: /readyz in {:.2}s, every object reconciled in {:.2}s, RSS {:.1} MiB",
            restart.ready_s, restart.first_pass_s, restart.rss_mib
        );
        tokio::time::sleep(SETTLE).await;
        let steady_before = Scrape::take(&op, &proxied).await?;
        let wait = self.plan.resync.mul_f64(2.2) + STEADY_SLACK;
        println!("steady state: watching for {:.0}s (two resync intervals and slack)", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
        let steady_after = Scrape::take(&op, &proxied).await?;
        let steady = Window::between(&steady_before, &steady_after);
        let steady_rss_mib = op.rss_mib()?;
        println!("{}", report::steady_line(&steady, n));

        Ok(CrdRun {
            store: name.to_string(),
            n,
            startup_empty_s,
            idle_rss_mib,
            rollout_s,
            apply_s,
            floor_s,
            floor_requests,
            converged_rss_mib,
            rollout_rss_peak,
            rollout: rollout_window,
            rollout_peer_cpu_s,
            restart,
            steady,
            steady_rss_mib,
        })
    }

    /// Starts a new operator on the converged pairs and waits for its first pass over them.
    async fn restart(
        &self,
        proxied: &Proxied,
        env: Vec<(String, String)>,
        name: &str,
        n: usize,
    ) -> Result<(OperatorProcess, Restart)> {
        let log = self.logs.join(format!("operator-{name}-{n}-steady.log"));
        let before = proxied.requests();
        let mut op = OperatorProcess::spawn(&self.binary, self.cp.kubeconfig(), env, &log)?;
        let ready_s = op.wait_ready(Duration::from_secs(120)).await?.as_secs_f64();
        let spawned = Instant::now() - Duration::from_secs_f64(ready_s);
        let deadline = Instant::now() + Duration::from_secs(600);
        let n_f = n as f64;
        let after = loop {
            let s = Scrape::take(&op, proxied).await?;
            let done = s.sum_where("s3op_reconciles_total", "kind=\"S3Bucket\"") >= n_f
                && s.sum_where("s3op_reconciles_total", "kind=\"S3User\"") >= n_f;
            if done {
                break s;
            }
            if Instant::now() > deadline {
                bail!("the new operator process did not reconcile all {n} pairs within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let first_pass_s = spawned.elapsed().as_secs_f64();
        let empty = Scrape { series: BTreeMap::new(), requests: before, at: spawned, cpu_s: 0.0 };
        let restart =
            Restart { ready_s, first_pass_s, rss_mib: op.rss_mib()?, first_pass: Window::between(&empty, &after) };
        Ok((op, restart))
    }

    /// Every measured store at once, `per_store` pairs each, from one operator: its own control
    /// plane (the operator watches every namespace, one per store), each store a ClusterS3Store.
    async fn multi(&self, per_store: usize) -> Result<MultiRun> {
        let cp = ControlPlane::start().await?;
        let client = cp.client().await?;
        let mut proxied = Vec::new();
        let mut rollouts = Vec::new();
        for &kind in &self.plan.stores {
            let name = kind.backend_name();
            let p = Proxied::start(kind).await?;
            let namespace = cp.namespace(&format!("multi-{name}")).await?;
            let store = format!("multi-{name}");
            cluster_store(&client, &p, &store, &namespace, std::slice::from_ref(&namespace)).await?;
            rollouts.push((
                name.to_string(),
                Rollout::new(&namespace, per_store).on(StoreRef { kind: StoreKind_::ClusterS3Store, name: store }),
            ));
            proxied.push(p);
        }
        let proxied_refs: Vec<&Proxied> = proxied.iter().collect();
        let env = |resync: Duration| {
            let mut env = vec![("COMPAT_MODE".to_string(), "false".to_string())];
            env.extend(self.tuning_env(resync));
            env
        };
        let log = self.logs.join("operator-multi.log");
        let mut op = OperatorProcess::spawn(&self.binary, cp.kubeconfig(), env(self.plan.rollout_resync), &log)?;
        op.wait_ready(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_mib = op.rss_mib()?;
        let before = Scrape::take_all(&op, &proxied_refs).await?;
        let started = Instant::now();
        let n = per_store * rollouts.len();
        let timeout = Duration::from_secs(300) + Duration::from_millis(300) * u32::try_from(n).unwrap_or(u32::MAX);
        let runs = rollouts.iter().map(|(name, rollout)| {
            let client = client.clone();
            async move {
                let (applied, ready) = tokio::join!(
                    rollout.apply(&client, APPLY_CONCURRENCY / 4),
                    wait_all_ready(&client, rollout, timeout)
                );
                applied.with_context(|| format!("creating the pairs on {name}"))?;
                ready.with_context(|| format!("rolling out on {name}"))?;
                Ok::<(String, f64), anyhow::Error>((name.clone(), started.elapsed().as_secs_f64()))
            }
        });
        let ready_s: BTreeMap<String, f64> = match futures::future::try_join_all(runs).await {
            Ok(r) => r.into_iter().collect(),
            Err(e) => bail!("{e:#}\noperator log:\n{}", op.log_tail(20)),
        };
        let rollout_s = started.elapsed().as_secs_f64();
        let converged_rss_mib = op.rss_mib()?;
        let converged = Scrape::take_all(&op, &proxied_refs).await?;
        println!(
            "operator: {n} pairs on {} stores Ready in {rollout_s:.2}s ({:.1} pairs/s); per store {ready_s:?}; RSS {idle_rss_mib:.1} MiB idle, {converged_rss_mib:.1} MiB converged",
            rollouts.len(),
            n as f64 / rollout_s
        );
        op.terminate(Duration::from_secs(30)).await?;

        let log = self.logs.join("operator-multi-steady.log");
        let mut op = OperatorProcess::spawn(&self.binary, cp.kubeconfig(), env(self.plan.resync), &log)?;
        op.wait_ready(Duration::from_secs(120)).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = Scrape::take_all(&op, &proxied_refs).await?;
            if s.sum_where("s3op_reconciles_total", "kind=\"S3User\"") >= n as f64 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the new operator process did not reconcile all {n} users within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(SETTLE).await;
        let steady_before = Scrape::take_all(&op, &proxied_refs).await?;
        tokio::time::sleep(self.plan.resync.mul_f64(2.2) + STEADY_SLACK).await;
        let steady_after = Scrape::take_all(&op, &proxied_refs).await?;
        let steady = Window::between(&steady_before, &steady_after);
        println!("{}", report::steady_line(&steady, n));
        Ok(MultiRun {
            stores: rollouts.iter().map(|(name, _)| name.clone()).collect(),
            per_store,
            idle_rss_mib,
            rollout_s,
            ready_s,
            converged_rss_mib,
            rollout: Window::between(&before, &converged),
            steady,
            steady_rss_mib: op.rss_mib()?,
        })
    }

    async fn compat(&self, n: usize) -> Result<CompatRun> {
        let concurrency = self.plan.concurrency;
        let (floor_s, floor_requests) = {
            let proxied = Proxied::start(StoreKind::Versitygw).await?;
            let backend = proxied.backend().await?;
            let floor = floor_compat(backend.as_ref(), n, concurrency).await.context("compat floor")?;
            (floor.as_secs_f64(), proxied.requests())
        };
        println!("floor: {n} compatibility Secrets provisioned in {floor_s:.2}s");

        let proxied = Proxied::start(StoreKind::Versitygw).await?;
        let namespace = self.cp.namespace("bench-compat").await?;
        let env = self.operator_env(&proxied, &namespace, false, self.plan.rollout_resync);
        let (op, _) = self.spawn(env, "operator-compat.log").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_mib = op.rss_mib()?;
        let before = Scrape::take(&op, &proxied).await?;
        let started = Instant::now();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let create = create_compat_secrets(&secrets, n);
        let processed = wait_secrets_processed(&op, &proxied, n, |_| {});
        let (created, processed) = tokio::join!(create, processed);
        created.context("creating the Secrets")?;
        let after = processed?;
        let processed_s = started.elapsed().as_secs_f64();
        let rss_mib = op.rss_mib()?;
        println!(
            "operator: {n} Secrets processed in {processed_s:.2}s ({:.2}x the floor), RSS {rss_mib:.1} MiB",
            processed_s / floor_s
        );
        Ok(CompatRun {
            n,
            idle_rss_mib,
            processed_s,
            floor_s,
            floor_requests,
            rss_mib,
            window: Window::between(&before, &after),
        })
    }

    /// `n` compatibility Secrets created at once in one namespace, then, as soon as they all
    /// exist, a tenant's S3Bucket + S3User (ReadWrite) in another: how long the tenant waits
    /// for Ready while the Secrets converge. One operator in both modes, the store from its
    /// environment, every namespace watched: so a control plane of its own (the shared one
    /// holds the other parts' objects).
    async fn compat_burst(&self, kind: StoreKind, n: usize) -> Result<CompatBurstRun> {
        let name = kind.backend_name();
        let cp = ControlPlane::start().await?;
        let client = cp.client().await?;
        let proxied = Proxied::start(kind).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &cp.namespace(&format!("burst-{name}")).await?);
        let tenant = Rollout::new(&cp.namespace(&format!("tenant-{name}")).await?, 1);
        let mut env = proxied.env.clone();
        env.extend([("CRD_MODE", "true"), ("COMPAT_MODE", "true")].map(|(k, v)| (k.to_string(), v.to_string())));
        env.extend(self.tuning_env(self.plan.rollout_resync));
        let log = self.logs.join(format!("operator-burst-{name}.log"));
        let mut op = OperatorProcess::spawn(&self.binary, cp.kubeconfig(), env, &log)?;
        op.wait_ready(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_mib = op.rss_mib()?;

        let before = Scrape::take(&op, &proxied).await?;
        let sampler = RssSampler::start(op.pid().context("the operator is not running")?);
        let started = Instant::now();
        let timeout = Duration::from_secs(600) + Duration::from_millis(300) * u32::try_from(n).unwrap_or(u32::MAX);
        let tenant_run = async {
            create_compat_secrets(&secrets, n).await.context("creating the Secrets")?;
            let secrets_created_s = started.elapsed().as_secs_f64();
            let create = async {
                let bucket_at = Instant::now();
                Api::<S3Bucket>::namespaced(client.clone(), &tenant.namespace)
                    .create(&PostParams::default(), &tenant.bucket(0))
                    .await?;
                let user_at = Instant::now();
                Api::<S3User>::namespaced(client.clone(), &tenant.namespace)
                    .create(&PostParams::default(), &tenant.user(0))
                    .await?;
                Ok::<_, anyhow::Error>((bucket_at, user_at))
            };
            let (created, ready) = tokio::join!(create, wait_all_ready(&client, &tenant, timeout));
            let (bucket_at, user_at) = created.context("creating the tenant's S3Bucket and S3User")?;
            let ready = ready.map_err(|e| anyhow!("the tenant's pair: {e:#}\noperator log:\n{}", op.log_tail(20)))?;
            let since = |at: Option<&Instant>, from: Instant| at.map(|at| at.saturating_duration_since(from));
            let bucket_ready = since(ready.buckets.get("b0"), bucket_at).context("no Ready time for the S3Bucket")?;
            let user_ready_at = *ready.users.get("u0").context("no Ready time for the S3User")?;
            Ok::<_, anyhow::Error>((
                secrets_created_s,
                bucket_ready,
                user_ready_at,
                user_ready_at.saturating_duration_since(user_at),
            ))
        };
        let mut polled: Vec<(Instant, f64)> = Vec::new();
        let processed = wait_secrets_processed(&op, &proxied, n, |s| {
            polled.push((s.at, s.sum("s3_operator_secrets_processed_total")));
        });
        let (tenant_run, processed) = tokio::join!(tenant_run, processed);
        let rss_peak = sampler.finish();
        let (secrets_created_s, bucket_ready, user_ready_at, user_ready) = tenant_run?;
        let processed = processed?;
        let secrets_processed_s = processed.at.saturating_duration_since(started).as_secs_f64();
        let after = Scrape::take(&op, &proxied).await?;
        let secrets_processed_at_user_ready =
            polled.iter().rev().find(|(at, _)| *at <= user_ready_at).map_or(0.0, |(_, v)| *v);
        let secret_errors = after.sum("s3_operator_errors_total") - before.sum("s3_operator_errors_total");
        let window = Window::between(&before, &after);
        println!(
            "tenant: S3User Ready {:.2}s after its create ({secrets_processed_at_user_ready:.0} of {n} Secrets processed by then), S3Bucket {:.2}s; {n} Secrets created in {secrets_created_s:.2}s, all processed in {secrets_processed_s:.2}s; RSS {idle_rss_mib:.1} MiB idle, peak {}; operator CPU {:.2}s",
            user_ready.as_secs_f64(),
            bucket_ready.as_secs_f64(),
            report::rss_peak(&rss_peak),
            window.operator_cpu_s,
        );
        op.terminate(Duration::from_secs(30)).await?;
        Ok(CompatBurstRun {
            store: name.to_string(),
            n,
            idle_rss_mib,
            secrets_created_s,
            tenant_bucket_ready_s: bucket_ready.as_secs_f64(),
            tenant_user_ready_s: user_ready.as_secs_f64(),
            secrets_processed_at_user_ready,
            secrets_processed_s,
            secret_errors,
            rss_peak,
            window,
        })
    }
}

/// Creates the ClusterS3Store `name` for `proxied` (as its environment describes the store,
/// through the proxy), its admin Secret in `secret_namespace`, allowing `namespaces`.
async fn cluster_store(
    client: &Client,
    proxied: &Proxied,
    name: &str,
    secret_namespace: &str,
    namespaces: &[String],
) -> Result<()> {
    let env = |k: &str| proxied.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let need = |k: &str| env(k).ok_or_else(|| anyhow!("the store's environment has no {k}"));
    let s3 =
        || -> Result<S3Provider> { Ok(S3Provider { endpoint: need("S3_ENDPOINT_URL")?, region: env("S3_REGION") }) };
    let provider = match need("BACKEND_NAME")?.as_str() {
        "versitygw" => Provider { versitygw: Some(s3()?), ..Default::default() },
        "minio" => Provider { minio: Some(s3()?), ..Default::default() },
        "garage" => Provider {
            garage: Some(GarageProvider {
                endpoint: need("S3_ENDPOINT_URL")?,
                admin_endpoint: need("GARAGE_ADMIN_ENDPOINT")?,
                region: env("S3_REGION"),
            }),
            ..Default::default()
        },
        "aws" => Provider {
            aws: Some(AwsProvider {
                region: env("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                endpoint: env("S3_ENDPOINT_URL"),
            }),
            ..Default::default()
        },
        other => bail!("no provider for backend {other}"),
    };
    let secret_name = format!("{name}-admin");
    let mut data = BTreeMap::from([
        (DEFAULT_ACCESS_KEY_ID_KEY.to_string(), need("S3_ACCESS_KEY")?),
        (DEFAULT_SECRET_ACCESS_KEY_KEY.to_string(), need("S3_SECRET_KEY")?),
    ]);
    if let Some(token) = env("GARAGE_ADMIN_TOKEN") {
        data.insert(DEFAULT_ADMIN_TOKEN_KEY.to_string(), token);
    }
    let secret = Secret {
        metadata: ObjectMeta { name: Some(secret_name.clone()), ..Default::default() },
        string_data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), secret_namespace).create(&PostParams::default(), &secret).await?;
    let spec = ClusterS3StoreSpec {
        provider,
        auth: s3op_api::store::StoreAuth {
            secret_ref: Some(s3op_api::store::CredentialsSecretRef {
                name: secret_name,
                namespace: Some(secret_namespace.to_string()),
                ..Default::default()
            }),
            pod_identity: None,
        },
        marker_bucket: env("MARKER_BUCKET"),
        namespaces: Some(NamespaceSelection {
            names: namespaces.iter().map(|n| NamespaceName(n.clone())).collect(),
            selector: None,
        }),
        ..Default::default()
    };
    Api::<ClusterS3Store>::all(client.clone()).create(&PostParams::default(), &ClusterS3Store::new(name, spec)).await?;
    Ok(())
}

/// Creates `n` compatibility Secrets (each a fresh bucket and account) in `secrets`' namespace,
/// [`APPLY_CONCURRENCY`] at a time.
async fn create_compat_secrets(secrets: &Api<Secret>, n: usize) -> Result<()> {
    let prefix = unique_name("c");
    stream::iter(0..n)
        .map(|i| {
            let secrets = secrets.clone();
            let secret = compat_secret(i, &prefix);
            async move { secrets.create(&PostParams::default(), &secret).await.map(|_| ()) }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Polls `op`'s metrics every 100 ms until `n` Secrets were processed
/// (`s3_operator_secrets_processed_total`), handing each scrape to `polled`; returns the last.
async fn wait_secrets_processed(
    op: &OperatorProcess,
    proxied: &Proxied,
    n: usize,
    mut polled: impl FnMut(&Scrape),
) -> Result<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(600) + Duration::from_millis(300) * (n as u32);
    loop {
        let s = Scrape::take(op, proxied).await?;
        polled(&s);
        if s.sum("s3_operator_secrets_processed_total") >= n as f64 {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {n} Secrets processed, {} errors\noperator log:\n{}",
                s.sum("s3_operator_secrets_processed_total"),
                s.sum("s3_operator_errors_total"),
                op.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Secret `i` of the compatibility figure: a fresh bucket and account.
fn compat_secret(i: usize, prefix: &str) -> Secret {
    let data = BTreeMap::from([
        ("bucket-name".to_string(), format!("{prefix}-{i}")),
        ("access-key".to_string(), random_access_key()),
        ("secret-key".to_string(), random_secret()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("s{i}")),
            annotations: Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        string_data: Some(data),
        ..Secret::default()
    }
}

/// When each object of a rollout was first seen Ready, by name.
#[derive(Debug, Default)]
struct ReadyAt {
    buckets: HashMap<String, Instant>,
    users: HashMap<String, Instant>,
}

/// Waits, through watches, until all of the rollout's S3Buckets and S3Users are Ready; returns
/// when each was first seen Ready.
async fn wait_all_ready(client: &Client, rollout: &Rollout, timeout: Duration) -> Result<ReadyAt> {
    fn ready(conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>) -> bool {
        conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &rollout.namespace);
    let users: Api<S3User> = Api::namespaced(client.clone(), &rollout.namespace);
    let b = watcher(buckets, watcher::Config::default())
        .applied_objects()
        .map_ok(|o| (true, o.name_any(), ready(o.status.as_ref().map(|s| &s.conditions))))
        .boxed();
    let u = watcher(users, watcher::Config::default())
        .applied_objects()
        .map_ok(|o| (false, o.name_any(), ready(o.status.as_ref().map(|s| &s.conditions))))
        .boxed();
    let mut events = stream::select(b, u);
    let (mut ready_buckets, mut ready_users) = (HashSet::new(), HashSet::new());
    let mut first = ReadyAt::default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => {
                let p = rollout.progress(client).await?;
                bail!(
                    "{} of {} buckets and {} users Ready after {timeout:?}; reasons: {:?}",
                    p.buckets_ready,
                    rollout.n,
                    p.users_ready,
                    p.reasons
                );
            }
            Ok(None) => bail!("the watch ended"),
            // The watcher retries by itself; a failed request is no reason to stop.
            Ok(Some(Err(_))) => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(Some(Ok((is_bucket, name, is_ready)))) => {
                let (set, seen) = if is_bucket {
                    (&mut ready_buckets, &mut first.buckets)
                } else {
                    (&mut ready_users, &mut first.users)
                };
                if is_ready {
                    seen.entry(name.clone()).or_insert_with(Instant::now);
                    set.insert(name);
                } else {
                    set.remove(&name);
                }
                if ready_buckets.len() >= rollout.n && ready_users.len() >= rollout.n {
                    return Ok(first);
                }
            }
        }
    }
}

/// The floor of a rollout: for each pair, the backend calls a converging reconcile makes (see
/// `bucket::apply` and `user::apply` in the controller), in the same order, with `concurrency`
/// buckets and `concurrency` users in flight, as the operator's two controllers have. A user
/// starts once its bucket exists, as the operator's waits for its bucket to be Ready.
pub async fn floor_crd(backend: Arc<dyn Backend>, n: usize, concurrency: usize) -> Result<Duration> {
    let namespace = unique_name("floor");
    let prefix = unique_name("f");
    let bucket_slots = Arc::new(Semaphore::new(concurrency));
    let user_slots = Arc::new(Semaphore::new(concurrency));
    // The operator checks the store once at start-up; so does the floor, before timing.
    backend.health().await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (backend, bucket_slots, user_slots) = (backend.clone(), bucket_slots.clone(), user_slots.clone());
        let (namespace, bucket) = (namespace.clone(), format!("{prefix}-{i}"));
        tasks.spawn(async move {
            let owner = |name: String| Owner::s3bucket(namespace.clone(), name, crate::compat::random_hex(32));
            {
                let _slot = bucket_slots.acquire().await?;
                let spec = BucketSpec {
                    name: bucket.clone(),
                    owner: owner(format!("b{i}")),
                    versioning: None,
                    object_lock: false,
                    tags: BTreeMap::new(),
                    quota: None,
                };
                backend.ensure_bucket(&spec, false).await?;
            }
            let _slot = user_slots.acquire().await?;
            let user = default_user_name(&namespace, &format!("u{i}")).map_err(|e| anyhow!("{e}"))?;
            // As the reconciler: read the user, ensure it (it is new), read it again, then
            // write the grants it lacks.
            backend.describe_user(&user).await?;
            backend.ensure_user(&UserSpec { name: user.clone(), owner: owner(format!("u{i}")) }, false).await?;
            let info =
                backend.describe_user(&user).await?.with_context(|| format!("user {user} right after ensuring it"))?;
            backend.set_grants(&user, &[Grant { bucket, permission: Permission::ReadWrite }]).await?;
            let multiple_keys = backend.capabilities().multiple_keys;
            if multiple_keys {
                for id in &info.access_key_ids {
                    backend.delete_key(&user, id).await?;
                }
            }
            let creds = backend.create_key(&user, None).await?;
            if multiple_keys {
                for id in info.access_key_ids.iter().filter(|id| **id != creds.access_key_id) {
                    backend.delete_key(&user, id).await?;
                }
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a floor task panicked")??;
    }
    Ok(started.elapsed())
}

/// The floor of compatibility mode: `provision` (what the Secret reconciler calls after
/// reading the Secret) for `n` fresh accounts and buckets, `concurrency` at a time.
pub async fn floor_compat(backend: &dyn Backend, n: usize, concurrency: usize) -> Result<Duration> {
    let store = backend.compat()?;
    let namespace = unique_name("floor");
    let prefix = unique_name("fc");
    backend.health().await?;
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let claimant = Owner::secret(namespace.clone(), format!("s{i}"), crate::compat::random_hex(32));
            let bucket = format!("{prefix}-{i}");
            async move {
                provision(store, &claimant, &account(&random_access_key(), &random_secret()), &bucket, false).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

/// Writes the report files and prints the Markdown; the entry point of the `bench` binary.
pub async fn main(opts: Options) -> Result<()> {
    let out = opts.out_dir();
    let report = tokio::select! {
        r = run(&opts) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; what was measured so far is in {}", out.display()),
    };
    println!("\n{}", report::markdown(&report));
    println!("written: {} and {}", out.join("bench.md").display(), out.join("bench.json").display());
    if !report.failures.is_empty() {
        bail!("{} part(s) failed: {}", report.failures.len(), report.failures.join("; "));
    }
    Ok(())
}
