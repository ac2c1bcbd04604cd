//! `cargo xtask peers`: builds, caches and records the real servers the test
//! harness runs (Kubernetes control plane, etcd, helm, S3 backends, moto) and
//! the judges of our status (kstatus, and a Lua for Argo CD's health script).
//!
//! Every peer is built from a package registry (Go module proxy, crates.io,
//! PyPI, Debian's packages) into `<cache>/<name>-<version>/`. A build goes
//! into a temporary folder beside it and is renamed into place only after it
//! succeeded and its binaries answered a smoke check, so a half-done install is never taken for
//! a good one. A present install whose recipe stamp matches and whose binaries
//! still run is reused. `<cache>/manifest.json` maps each binary name to its
//! absolute path; the test harness reads it (same cache-dir rule as
//! [`cache_dir`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Kubernetes release the control-plane binaries are built at.
pub const KUBERNETES_VERSION: &str = "v1.36.3";
/// etcd server release (latest 3.6 patch on the Go module proxy).
pub const ETCD_VERSION: &str = "v3.6.16";
/// Helm release.
pub const HELM_VERSION: &str = "v3.22.0";
/// VersityGW release.
pub const VERSITYGW_VERSION: &str = "v1.7.0";
/// MinIO has no semver tags, so a commit is pinned. The Go module proxy
/// refuses the RELEASE.2025-10-15T17-29-55Z commit (9e49d5e7a648, "This module
/// version is not available"), so this is the only and newest commit it lists
/// (2026-02-12, after the upstream went source-only).
pub const MINIO_VERSION: &str = "v0.0.0-20260212201848-7aac2a2c5b7c";
/// Garage release on crates.io.
pub const GARAGE_VERSION: &str = "2.5.0";
/// moto release on PyPI (installed as `moto[server]`).
pub const MOTO_VERSION: &str = "5.2.5";
/// sigs.k8s.io/cli-utils release whose kstatus the `kstatus` peer links (the
/// only one the Go module proxy lists); `xtask/peers/kstatus/go.mod` must
/// require the same.
pub const KSTATUS_VERSION: &str = "v0.37.2";
/// github.com/prometheus/prometheus release whose rule and PromQL parsers the
/// `promcheck` peer links; `xtask/peers/promcheck/go.mod` must require the same.
pub const PROMETHEUS_VERSION: &str = "v0.316.0";
/// Debian's lua5.1 (bookworm). Argo CD runs health scripts in gopher-lua, a
/// Lua 5.1, so the script is tested on the reference 5.1.
pub const LUA_DEB_VERSION: &str = "5.1.5-9";

/// Helm's `.Capabilities.KubeVersion` default, as helm v3.22.0's own Makefile
/// derives it (client-go v0.37 => 1.37); official release binaries report the
/// same. Pass `--kube-version` to `helm template` to target another cluster.
const HELM_K8S_MAJOR: &str = "1";
const HELM_K8S_MINOR: &str = "37";

/// At most this many builds run at once (the machines have 2 cores; a Go or
/// cargo build already uses both, but overlapping the serial phases
/// (downloads, linking) of two builds shortens a cold run).
const DEFAULT_JOBS: usize = 2;

const STAMP_FILE: &str = ".peer-stamp";
const MANIFEST_FILE: &str = "manifest.json";

/// The cache folder; the harness owns the rule so installer and tests always agree.
pub use s3op_tests::peers::cache_dir;

/// `<cache>/manifest.json`.
pub fn manifest_path() -> PathBuf {
    cache_dir().join(MANIFEST_FILE)
}

/// Entry point of `cargo xtask peers [--list] [--only NAME[,NAME]] [--jobs N]`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    if opts.help {
        println!("{USAGE}");
        return Ok(());
    }
    let cache = cache_dir();
    let peers = all_peers()?;
    let selected: Vec<&Peer> = match &opts.only {
        None => peers.iter().collect(),
        Some(names) => select(&peers, names)?,
    };
    if opts.list {
        return list(&selected, &cache);
    }
    install(&peers, &selected, &cache, opts.jobs())
}

const USAGE: &str = "\
usage: cargo xtask peers [--list] [--only NAME[,NAME...]] [--jobs N]

Builds the test peers into the cache folder and writes <cache>/manifest.json.
  --list        print each peer, its pinned version and whether it is installed
  --only NAMES  install only these peers (kubernetes, etcd, helm, versitygw,
                minio, garage, moto, kstatus, promcheck, lua; a binary name such as
                kubectl also works)
  --jobs N      run at most N builds at once (default 2)
Cache folder: $S3OP_PEERS_DIR, else $XDG_CACHE_HOME/s3-resource-operator/peers,
else $HOME/.cache/s3-resource-operator/peers.";

#[derive(Debug, Default)]
struct Options {
    list: bool,
    help: bool,
    only: Option<Vec<String>>,
    jobs: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => it.next().cloned().ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}")),
                }
            };
            match flag {
                "--list" => opts.list = true,
                "-h" | "--help" => opts.help = true,
                "--only" => {
                    let names = value("--only")?;
                    let names: Vec<String> =
                        names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
                    if names.is_empty() {
                        bail!("--only needs at least one peer name\n{USAGE}");
                    }
                    opts.only.get_or_insert_with(Vec::new).extend(names);
                }
                "--jobs" | "-j" => {
                    let raw = value("--jobs")?;
                    let jobs: usize = raw.parse().with_context(|| format!("--jobs {raw}: not a number"))?;
                    opts.jobs = Some(jobs.max(1));
                }
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        Ok(opts)
    }

    fn jobs(&self) -> usize {
        self.jobs.unwrap_or(DEFAULT_JOBS)
    }
}

/// One binary a peer provides, and how to tell that it runs.
#[derive(Debug)]
struct Binary {
    /// Key in manifest.json.
    name: &'static str,
    /// Path inside the peer's install folder.
    rel_path: &'static str,
    /// Arguments of the smoke check (exit status 0 expected).
    check_args: &'static [&'static str],
    /// Text the smoke check's output must contain ("" for none).
    expect: String,
}

#[derive(Debug)]
enum Recipe {
    /// `go build` of packages of a wrapper module in `xtask/peers/<dir>`.
    GoWrapper {
        dir: &'static str,
        /// (package, binary name). One package is built with `-o bin/<name>`
        /// (`go build` would name `go.etcd.io/etcd/server/v3` "server");
        /// several with `-o bin/`, where the names come from the packages.
        /// "." is the wrapper module's own `main` package.
        packages: &'static [(&'static str, &'static str)],
        ldflags: String,
    },
    /// `go install <target>` with GOBIN in the install folder.
    GoInstall { target: String, ldflags: String },
    /// `cargo install <krate> --locked --version <version>`.
    Cargo { krate: &'static str, version: &'static str },
    /// A virtualenv with `<requirement>`, and a relocatable launcher script.
    PipVenv { requirement: String, launcher: &'static str, module: &'static str },
    /// Debian packages (name, exact version) fetched with `apt-get download`
    /// and unpacked with `dpkg-deb -x` into the install folder, never
    /// installed system-wide; `bin/<launcher>` runs `<program>` (a path in
    /// the unpacked tree) with the unpacked libraries first on the loader path.
    Deb { packages: &'static [(&'static str, &'static str)], launcher: &'static str, program: &'static str },
}

#[derive(Debug)]
struct Peer {
    name: &'static str,
    version: &'static str,
    aliases: &'static [&'static str],
    recipe: Recipe,
    binaries: Vec<Binary>,
}

impl Peer {
    fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    fn final_dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.dir_name())
    }

    fn log_path(&self, cache: &Path) -> PathBuf {
        cache.join("logs").join(format!("{}.log", self.dir_name()))
    }

    fn registry(&self) -> &'static str {
        match self.recipe {
            Recipe::GoWrapper { .. } | Recipe::GoInstall { .. } => "go / Go module proxy",
            Recipe::Cargo { .. } => "cargo install / crates.io",
            Recipe::PipVenv { .. } => "python3 venv + pip / PyPI",
            Recipe::Deb { .. } => "apt-get download + dpkg-deb / Debian's packages",
        }
    }

    /// Everything that decides what gets built; its hash is the stamp that
    /// tells a current install from a stale one.
    fn recipe_text(&self) -> Result<String> {
        let mut text = format!("{} {}\n{:?}\n", self.name, self.version, self.recipe);
        if let Recipe::GoWrapper { dir, .. } = &self.recipe {
            let dir = wrapper_dir(dir);
            for file in ["go.mod", "go.sum"] {
                let path = dir.join(file);
                let body = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                text.push_str(&body);
            }
            // A wrapper with its own main package is rebuilt when its source
            // changes; wrappers without Go files keep the stamp they had.
            for path in go_sources(&dir)? {
                let body = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                write!(text, "{}\n{body}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())?;
            }
        }
        Ok(text)
    }

    fn stamp(&self) -> Result<String> {
        Ok(format!("{:016x}\n", fnv1a(self.recipe_text()?.as_bytes())))
    }
}

fn all_peers() -> Result<Vec<Peer>> {
    let k8s_minor = KUBERNETES_VERSION
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("bad Kubernetes version {KUBERNETES_VERSION}"))?;
    let build_date = "2026-07-22T18:07:38Z"; // v1.36.3's release time on the proxy
    let mut k8s_ldflags = String::from("-s -w");
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        write!(
            k8s_ldflags,
            " -X {pkg}.gitVersion={KUBERNETES_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={k8s_minor} \
             -X {pkg}.gitTreeState=clean -X {pkg}.buildDate={build_date}"
        )?;
    }
    let k8s_expect = format!("Kubernetes {KUBERNETES_VERSION}");

    Ok(vec![
        Peer {
            name: "kubernetes",
            version: KUBERNETES_VERSION,
            aliases: &["kube-apiserver", "kube-controller-manager", "kubectl", "k8s"],
            recipe: Recipe::GoWrapper {
                dir: "kubernetes",
                packages: &[
                    ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
                    ("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
                    ("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
                ],
                ldflags: k8s_ldflags,
            },
            binaries: vec![
                Binary {
                    name: "kube-apiserver",
                    rel_path: "bin/kube-apiserver",
                    check_args: &["--version"],
                    expect: k8s_expect.clone(),
                },
                Binary {
                    name: "kube-controller-manager",
                    rel_path: "bin/kube-controller-manager",
                    check_args: &["--version"],
                    expect: k8s_expect.clone(),
                },
                Binary {
                    name: "kubectl",
                    rel_path: "bin/kubectl",
                    check_args: &["version", "--client"],
                    expect: format!("Client Version: {KUBERNETES_VERSION}"),
                },
            ],
        },
        Peer {
            name: "garage",
            version: GARAGE_VERSION,
            aliases: &[],
            recipe: Recipe::Cargo { krate: "garage", version: GARAGE_VERSION },
            binaries: vec![Binary {
                name: "garage",
                rel_path: "bin/garage",
                check_args: &["--version"],
                expect: GARAGE_VERSION.to_owned(),
            }],
        },
        Peer {
            name: "minio",
            version: MINIO_VERSION,
            aliases: &[],
            recipe: Recipe::GoInstall {
                target: format!("github.com/minio/minio@{MINIO_VERSION}"),
                ldflags: "-s -w".to_owned(),
            },
            binaries: vec![Binary {
                name: "minio",
                rel_path: "bin/minio",
                check_args: &["--version"],
                expect: "minio version".to_owned(),
            }],
        },
        Peer {
            name: "etcd",
            version: ETCD_VERSION,
            aliases: &[],
            recipe: Recipe::GoWrapper {
                dir: "etcd",
                packages: &[("go.etcd.io/etcd/server/v3", "etcd")],
                ldflags: "-s -w".to_owned(),
            },
            binaries: vec![Binary {
                name: "etcd",
                rel_path: "bin/etcd",
                check_args: &["--version"],
                expect: format!("etcd Version: {}", ETCD_VERSION.trim_start_matches('v')),
            }],
        },
        Peer {
            name: "versitygw",
            version: VERSITYGW_VERSION,
            aliases: &[],
            recipe: Recipe::GoInstall {
                target: format!("github.com/versity/versitygw/cmd/versitygw@{VERSITYGW_VERSION}"),
                ldflags: format!("-s -w -X main.Version={VERSITYGW_VERSION}"),
            },
            binaries: vec![Binary {
                name: "versitygw",
                rel_path: "bin/versitygw",
                check_args: &["--version"],
                expect: format!("Version  : {VERSITYGW_VERSION}"),
            }],
        },
        Peer {
            name: "helm",
            version: HELM_VERSION,
            aliases: &[],
            recipe: Recipe::GoInstall {
                target: format!("helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"),
                ldflags: format!(
                    "-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION} \
                     -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
                     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={HELM_K8S_MAJOR} \
                     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_K8S_MINOR} \
                     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={HELM_K8S_MAJOR} \
                     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_K8S_MINOR}"
                ),
            },
            binaries: vec![Binary {
                name: "helm",
                rel_path: "bin/helm",
                check_args: &["version", "--short"],
                expect: HELM_VERSION.to_owned(),
            }],
        },
        Peer {
            name: "kstatus",
            version: KSTATUS_VERSION,
            aliases: &[],
            recipe: Recipe::GoWrapper { dir: "kstatus", packages: &[(".", "kstatus")], ldflags: "-s -w".to_owned() },
            binaries: vec![Binary {
                name: "kstatus",
                rel_path: "bin/kstatus",
                check_args: &["--version"],
                expect: format!("sigs.k8s.io/cli-utils {KSTATUS_VERSION}"),
            }],
        },
        Peer {
            name: "promcheck",
            version: PROMETHEUS_VERSION,
            aliases: &["promtool"],
            recipe: Recipe::GoWrapper {
                dir: "promcheck",
                packages: &[(".", "promcheck")],
                ldflags: "-s -w".to_owned(),
            },
            binaries: vec![Binary {
                name: "promcheck",
                rel_path: "bin/promcheck",
                check_args: &["--version"],
                expect: format!("github.com/prometheus/prometheus {PROMETHEUS_VERSION}"),
            }],
        },
        Peer {
            name: "lua",
            version: LUA_DEB_VERSION,
            aliases: &["lua5.1"],
            recipe: Recipe::Deb {
                // Debian links the interpreter with liblua statically, so
                // liblua5.1-0 is not needed; its other dependencies (libc6,
                // libreadline8) are part of the base system wherever apt is.
                packages: &[("lua5.1", LUA_DEB_VERSION)],
                launcher: "lua",
                program: "usr/bin/lua5.1",
            },
            binaries: vec![Binary {
                name: "lua",
                rel_path: "bin/lua",
                check_args: &["-v"],
                expect: "Lua 5.1".to_owned(),
            }],
        },
        Peer {
            name: "moto",
            version: MOTO_VERSION,
            aliases: &["moto_server", "moto-server"],
            recipe: Recipe::PipVenv {
                requirement: format!("moto[server]=={MOTO_VERSION}"),
                launcher: "moto_server",
                module: "moto.server",
            },
            binaries: vec![Binary {
                name: "moto_server",
                rel_path: "venv/bin/moto_server",
                check_args: &["--help"],
                expect: "--host".to_owned(),
            }],
        },
    ])
}

fn select<'a>(peers: &'a [Peer], names: &[String]) -> Result<Vec<&'a Peer>> {
    let mut out: Vec<&Peer> = Vec::new();
    for name in names {
        let peer = peers.iter().find(|p| p.name == name || p.aliases.contains(&name.as_str())).ok_or_else(|| {
            let known: Vec<&str> = peers.iter().map(|p| p.name).collect();
            anyhow!("unknown peer `{name}` (known: {})", known.join(", "))
        })?;
        if !out.iter().any(|p| p.name == peer.name) {
            out.push(peer);
        }
    }
    // Keep the catalogue's order: the longest builds start first.
    out.sort_by_key(|p| peers.iter().position(|q| q.name == p.name));
    Ok(out)
}

/// Where the wrapper Go modules live (in the checkout, next to this file's crate).
fn wrapper_dir(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join(dir)
}

/// The `.go` files of a wrapper module's own folder, sorted so the stamp is stable.
fn go_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "go") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Installed,
    Missing,
    Stale,
    Broken(String),
}

/// Whether `peer` is installed, current and working (runs the smoke checks).
fn state(peer: &Peer, cache: &Path) -> Result<State> {
    let dir = peer.final_dir(cache);
    if !dir.is_dir() {
        return Ok(State::Missing);
    }
    let stamp = fs::read_to_string(dir.join(STAMP_FILE)).unwrap_or_default();
    if stamp != peer.stamp()? {
        return Ok(State::Stale);
    }
    match smoke_check(peer, &dir) {
        Ok(()) => Ok(State::Installed),
        Err(e) => Ok(State::Broken(format!("{e:#}"))),
    }
}

/// Whether `peer`'s install folder exists with a current stamp (no process run).
fn present(peer: &Peer, cache: &Path) -> Result<bool> {
    let dir = peer.final_dir(cache);
    let stamp = fs::read_to_string(dir.join(STAMP_FILE)).unwrap_or_default();
    Ok(stamp == peer.stamp()? && peer.binaries.iter().all(|b| dir.join(b.rel_path).is_file()))
}

fn smoke_check(peer: &Peer, dir: &Path) -> Result<()> {
    for bin in &peer.binaries {
        let path = dir.join(bin.rel_path);
        if !path.is_file() {
            bail!("{} is missing", path.display());
        }
        let out = Command::new(&path)
            .args(bin.check_args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let cmd = format!("{} {}", path.display(), bin.check_args.join(" "));
        if !out.status.success() {
            bail!("`{cmd}` exited with {}: {}", out.status, last_lines(&text, 10));
        }
        if !text.contains(bin.expect.as_str()) {
            bail!("`{cmd}` did not print `{}`; it printed: {}", bin.expect, last_lines(&text, 10));
        }
    }
    Ok(())
}

fn list(peers: &[&Peer], cache: &Path) -> Result<()> {
    println!("cache: {}", cache.display());
    println!("manifest: {}", manifest_path().display());
    for peer in peers {
        let state = state(peer, cache)?;
        for bin in &peer.binaries {
            let status = match &state {
                State::Installed => format!("installed  {}", peer.final_dir(cache).join(bin.rel_path).display()),
                State::Missing => "not installed".to_owned(),
                State::Stale => "stale (recipe changed; will rebuild)".to_owned(),
                State::Broken(why) => format!("broken (will rebuild): {why}"),
            };
            println!("{:<24} {:<12} {:<36} {status}", bin.name, peer.name, peer.version);
        }
    }
    Ok(())
}

fn install(peers: &[Peer], selected: &[&Peer], cache: &Path, jobs: usize) -> Result<()> {
    let started = Instant::now();
    fs::create_dir_all(cache.join("logs")).with_context(|| format!("creating cache folder {}", cache.display()))?;
    clean_leftovers(cache);
    println!("[peers] cache {}", cache.display());

    let mut todo: VecDeque<&Peer> = VecDeque::new();
    for peer in selected {
        let t = Instant::now();
        match state(peer, cache)? {
            State::Installed => {
                println!("[peers] {:<10} {:<36} ok, reused ({})", peer.name, peer.version, fmt_duration(t.elapsed()));
                continue;
            }
            State::Missing => {}
            State::Stale => println!("[peers] {:<10} {:<36} recipe changed, rebuilding", peer.name, peer.version),
            State::Broken(why) => {
                println!("[peers] {:<10} {:<36} present but broken, rebuilding: {why}", peer.name, peer.version)
            }
        }
        todo.push_back(peer);
    }

    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    if !todo.is_empty() {
        let tools = Tools::find(&todo)?;
        let jobs = jobs.min(todo.len());
        let queue = Mutex::new(todo);
        let results: Mutex<Vec<(String, Result<()>)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                        let Some(peer) = next else { break };
                        let t = Instant::now();
                        let res = build(peer, cache, &tools);
                        match &res {
                            Ok(()) => println!(
                                "[peers] {:<10} {:<36} built in {}",
                                peer.name,
                                peer.version,
                                fmt_duration(t.elapsed())
                            ),
                            Err(_) => println!(
                                "[peers] {:<10} {:<36} FAILED after {}",
                                peer.name,
                                peer.version,
                                fmt_duration(t.elapsed())
                            ),
                        }
                        if let Ok(mut r) = results.lock() {
                            r.push((peer.name.to_owned(), res));
                        }
                    }
                });
            }
        });
        let results = results.into_inner().map_err(|_| anyhow!("a build thread panicked"))?;
        failures.extend(results.into_iter().filter_map(|(name, res)| res.err().map(|e| (name, e))));
    }

    let manifest = write_manifest(peers, cache)?;
    println!(
        "[peers] wrote {} ({} binaries) in {} total",
        manifest.display(),
        count_manifest_entries(peers, cache)?,
        fmt_duration(started.elapsed())
    );
    if failures.is_empty() {
        return Ok(());
    }
    let mut msg = String::new();
    for (name, err) in &failures {
        writeln!(msg, "\n=== peer `{name}` failed ===\n{err:#}")?;
    }
    let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    bail!("{} peer(s) failed: {}{msg}", failures.len(), names.join(", "))
}

/// Removes temporary folders left by runs whose process is gone.
fn clean_leftovers(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let pid = name
            .rsplit_once(".tmp-")
            .or_else(|| name.rsplit_once(".old-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            let path = entry.path();
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }
}

/// Paths of the external tools the builds need, found once.
#[derive(Debug, Default)]
struct Tools {
    go: Option<PathBuf>,
    cargo: Option<PathBuf>,
    python: Option<PathBuf>,
    apt_get: Option<PathBuf>,
    dpkg_deb: Option<PathBuf>,
}

impl Tools {
    fn find(todo: &VecDeque<&Peer>) -> Result<Self> {
        let mut tools = Self::default();
        for peer in todo {
            match peer.recipe {
                Recipe::GoWrapper { .. } | Recipe::GoInstall { .. } if tools.go.is_none() => {
                    tools.go = Some(find_tool(
                        "go",
                        &[
                            std::env::var_os("S3OP_GO").map(PathBuf::from),
                            Some(PathBuf::from("go")),
                            Some(PathBuf::from("/usr/local/go/bin/go")),
                            std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go").join("bin").join("go")),
                        ],
                        &["version"],
                    )?);
                }
                Recipe::Cargo { .. } if tools.cargo.is_none() => {
                    tools.cargo = Some(find_tool(
                        "cargo",
                        &[std::env::var_os("CARGO").map(PathBuf::from), Some(PathBuf::from("cargo"))],
                        &["--version"],
                    )?);
                }
                Recipe::PipVenv { .. } if tools.python.is_none() => {
                    tools.python = Some(find_tool(
                        "python3",
                        &[Some(PathBuf::from("python3"))],
                        &["-c", "import venv, ensurepip"],
                    )?);
                }
                Recipe::Deb { .. } if tools.apt_get.is_none() => {
                    tools.apt_get = Some(find_tool("apt-get", &[Some(PathBuf::from("apt-get"))], &["--version"])?);
                    tools.dpkg_deb = Some(find_tool("dpkg-deb", &[Some(PathBuf::from("dpkg-deb"))], &["--version"])?);
                }
                _ => {}
            }
        }
        Ok(tools)
    }
}

fn find_tool(what: &str, candidates: &[Option<PathBuf>], probe: &[&str]) -> Result<PathBuf> {
    let mut tried = Vec::new();
    for cand in candidates.iter().flatten() {
        tried.push(cand.display().to_string());
        let ok = Command::new(cand)
            .args(probe)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(cand.clone());
        }
    }
    bail!("`{what}` not found or not working (tried: {}; probe: `{what} {}`)", tried.join(", "), probe.join(" "))
}

fn tool<'a>(t: &'a Option<PathBuf>, what: &str) -> Result<&'a PathBuf> {
    t.as_ref().ok_or_else(|| anyhow!("internal: {what} was not looked up"))
}

/// One command of a build, kept whole so a failure can show it exactly.
#[derive(Debug)]
struct Step {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    cwd: PathBuf,
}

impl Step {
    fn new(program: &Path, cwd: &Path) -> Self {
        Self { program: program.to_path_buf(), args: Vec::new(), env: Vec::new(), cwd: cwd.to_path_buf() }
    }

    fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    fn env(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }

    fn display(&self) -> String {
        let mut s = format!("(cd {} && ", shell_quote(&self.cwd.to_string_lossy()));
        for (k, v) in &self.env {
            write!(s, "{k}={} ", shell_quote(v)).ok();
        }
        s.push_str(&shell_quote(&self.program.to_string_lossy()));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s.push(')');
        s
    }

    /// Runs the step with output appended to `log`; prints a heartbeat while
    /// it runs long.
    fn run(&self, peer: &Peer, log: &Path) -> Result<()> {
        let shown = self.display();
        println!("[peers] {:<10} $ {shown}", peer.name);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        writeln!(file, "\n$ {shown}")?;
        let start_len = file.seek(SeekFrom::End(0))?;
        let err_file = file.try_clone()?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .with_context(|| {
                format!(
                    "peer `{}`: could not start {} ({})\ncommand: {shown}",
                    peer.name,
                    self.program.display(),
                    peer.registry()
                )
            })?;
        let started = Instant::now();
        let mut next_beat = Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() >= next_beat {
                println!(
                    "[peers] {:<10} still running ({} so far; log {})",
                    peer.name,
                    fmt_duration(started.elapsed()),
                    log.display()
                );
                next_beat += Duration::from_secs(120);
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if status.success() {
            return Ok(());
        }
        let tail = read_tail(log, start_len, 40);
        bail!(
            "peer `{}` {}: {} failed ({status}) after {}\ncommand: {shown}\nlog: {}\n--- last lines of output ---\n{tail}",
            peer.name,
            peer.version,
            peer.registry(),
            fmt_duration(started.elapsed()),
            log.display()
        )
    }
}

fn go_step(go: &Path, cwd: &Path) -> Step {
    Step::new(go, cwd)
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-buildvcs=false")
}

/// Builds `peer` into a temporary folder, checks it, and renames it into place.
fn build(peer: &Peer, cache: &Path, tools: &Tools) -> Result<()> {
    let final_dir = peer.final_dir(cache);
    let pid = std::process::id();
    let tmp = cache.join(format!(".{}.tmp-{pid}", peer.dir_name()));
    let log = peer.log_path(cache);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(tmp.join("bin")).with_context(|| format!("creating {}", tmp.display()))?;
    fs::write(&log, "").with_context(|| format!("creating log {}", log.display()))?;
    println!("[peers] {:<10} {:<36} building ({}; log {})", peer.name, peer.version, peer.registry(), log.display());
    let result = build_into(peer, &tmp, tools, &log).and_then(|()| {
        smoke_check(peer, &tmp).with_context(|| {
            format!(
                "peer `{}` {}: built, but the smoke check failed (see log {})",
                peer.name,
                peer.version,
                log.display()
            )
        })?;
        fs::write(tmp.join(STAMP_FILE), peer.stamp()?)?;
        if final_dir.exists() {
            let old = cache.join(format!(".{}.old-{pid}", peer.dir_name()));
            fs::rename(&final_dir, &old).with_context(|| format!("moving aside {}", final_dir.display()))?;
            fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        fs::rename(&tmp, &final_dir)
            .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
        smoke_check(peer, &final_dir)
            .with_context(|| format!("peer `{}`: smoke check failed after moving into place", peer.name))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn build_into(peer: &Peer, tmp: &Path, tools: &Tools, log: &Path) -> Result<()> {
    let bin = tmp.join("bin");
    match &peer.recipe {
        Recipe::GoWrapper { dir, packages, ldflags } => {
            let go = tool(&tools.go, "go")?;
            let step = go_step(go, &wrapper_dir(dir))
                .arg("build")
                .arg("-trimpath")
                .arg("-mod=readonly")
                .arg("-ldflags")
                .arg(ldflags.as_str())
                .arg("-o");
            let step = if let [(pkg, name)] = packages {
                step.arg(bin.join(name).display().to_string()).arg(*pkg)
            } else {
                let step = step.arg(format!("{}/", bin.display()));
                packages.iter().fold(step, |step, (pkg, _)| step.arg(*pkg))
            };
            step.run(peer, log)
        }
        Recipe::GoInstall { target, ldflags } => {
            let go = tool(&tools.go, "go")?;
            go_step(go, tmp)
                .env("GOBIN", bin.display().to_string())
                .arg("install")
                .arg("-trimpath")
                .arg("-ldflags")
                .arg(ldflags.as_str())
                .arg(target.as_str())
                .run(peer, log)
        }
        Recipe::Cargo { krate, version } => {
            let cargo = tool(&tools.cargo, "cargo")?;
            Step::new(cargo, tmp)
                .arg("install")
                .arg(*krate)
                .arg("--locked")
                .arg("--version")
                .arg(*version)
                .arg("--root")
                .arg(tmp.display().to_string())
                .run(peer, log)
        }
        Recipe::PipVenv { requirement, launcher, module } => {
            let python = tool(&tools.python, "python3")?;
            let venv = tmp.join("venv");
            Step::new(python, tmp).arg("-m").arg("venv").arg(venv.display().to_string()).run(peer, log)?;
            Step::new(&venv.join("bin").join("python"), tmp)
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                .arg("-m")
                .arg("pip")
                .arg("install")
                .arg("--no-input")
                .arg(requirement.as_str())
                .run(peer, log)?;
            // pip's launcher has the venv's absolute build-time path in its
            // shebang, which the rename into place would break; this one finds
            // the venv's python next to itself.
            let path = venv.join("bin").join(launcher);
            let script = format!(
                "#!/bin/sh\n# Relocatable launcher written by `cargo xtask peers`.\n\
                 exec \"$(dirname \"$0\")/python\" -m {module} \"$@\"\n"
            );
            fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))
        }
        Recipe::Deb { packages, launcher, program } => {
            let apt_get = tool(&tools.apt_get, "apt-get")?;
            let dpkg_deb = tool(&tools.dpkg_deb, "dpkg-deb")?;
            let debs = tmp.join("debs");
            fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
            let download = || {
                packages
                    .iter()
                    .fold(Step::new(apt_get, &debs).arg("download"), |step, (name, version)| {
                        step.arg(format!("{name}={version}"))
                    })
                    .run(peer, log)
            };
            if let Err(first) = download() {
                // A fresh machine has empty package lists; refresh them once.
                // A version the lists still lack afterwards has left the
                // archive, and the pin must move.
                if !is_missing_package(&format!("{first:#}")) {
                    return Err(first);
                }
                Step::new(apt_get, &debs).arg("update").run(peer, log)?;
                download().with_context(|| {
                    format!("after `apt-get update`; pin a version that `apt-cache policy` lists for {packages:?}")
                })?;
            }
            let mut files: Vec<PathBuf> = fs::read_dir(&debs)
                .with_context(|| format!("listing {}", debs.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect();
            files.sort();
            if files.len() != packages.len() {
                bail!(
                    "apt-get download left {} .deb files in {}, expected {}",
                    files.len(),
                    debs.display(),
                    packages.len()
                );
            }
            for deb in &files {
                Step::new(dpkg_deb, tmp)
                    .arg("-x")
                    .arg(deb.display().to_string())
                    .arg(tmp.display().to_string())
                    .run(peer, log)?;
            }
            fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
            let lib_dirs = library_dirs(tmp)?;
            let path = bin.join(launcher);
            fs::write(&path, deb_launcher(program, &lib_dirs))
                .with_context(|| format!("writing {}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))
        }
    }
}

/// Whether a failed `apt-get download` means the package lists lack the
/// package or version (cured by `apt-get update`) rather than, say, no network.
fn is_missing_package(error: &str) -> bool {
    ["Unable to locate package", "has no installation candidate", "Can't find a source to download", "was not found"]
        .iter()
        .any(|needle| error.contains(needle))
}

/// Folders (relative to `root`) of the unpacked tree that hold shared libraries.
fn library_dirs(root: &Path) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    for top in ["lib", "usr/lib"] {
        let top_dir = root.join(top);
        if !top_dir.is_dir() {
            continue;
        }
        // Debian puts libraries in <top>/<multiarch triplet>/, sometimes in <top>/.
        let mut candidates = vec![top_dir.clone()];
        for entry in fs::read_dir(&top_dir).with_context(|| format!("listing {}", top_dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                candidates.push(path);
            }
        }
        for dir in candidates {
            let has_library = fs::read_dir(&dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains(".so"));
            if has_library && let Ok(rel) = dir.strip_prefix(root) {
                dirs.push(rel.display().to_string());
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// A launcher that finds the unpacked tree from its own path, so the install
/// folder stays valid after the rename into place.
fn deb_launcher(program: &str, lib_dirs: &[String]) -> String {
    let mut script = String::from(
        "#!/bin/sh\n# Relocatable launcher written by `cargo xtask peers`: runs the unpacked\n\
         # Debian program with the unpacked libraries, if any, ahead of the system's.\n\
         root=\"$(cd \"$(dirname \"$0\")/..\" && pwd)\"\n",
    );
    if !lib_dirs.is_empty() {
        // An empty entry (a stray colon) would make the loader search the
        // working directory, so the caller's value is joined only if set.
        let path: Vec<String> = lib_dirs.iter().map(|dir| format!("$root/{dir}")).collect();
        writeln!(
            script,
            "LD_LIBRARY_PATH=\"{}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\"\nexport LD_LIBRARY_PATH",
            path.join(":")
        )
        .ok();
    }
    writeln!(script, "exec \"$root/{program}\" \"$@\"").ok();
    script
}

fn manifest_entries(peers: &[Peer], cache: &Path) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for peer in peers {
        if !present(peer, cache)? {
            continue;
        }
        for bin in &peer.binaries {
            let path = peer.final_dir(cache).join(bin.rel_path);
            map.insert(bin.name.to_owned(), path.display().to_string());
        }
    }
    Ok(map)
}

fn count_manifest_entries(peers: &[Peer], cache: &Path) -> Result<usize> {
    Ok(manifest_entries(peers, cache)?.len())
}

/// Writes `<cache>/manifest.json` (atomically) with every installed peer's
/// binaries, whether or not this run built them.
fn write_manifest(peers: &[Peer], cache: &Path) -> Result<PathBuf> {
    let map = manifest_entries(peers, cache)?;
    let path = cache.join(MANIFEST_FILE);
    let tmp = cache.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
    let mut body = serde_json::to_string_pretty(&map)?;
    body.push('\n');
    fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(path)
}

fn read_tail(log: &Path, from: u64, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(log) {
        let _ = f.seek(SeekFrom::Start(from));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    last_lines(&text, lines)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%[]".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// FNV-1a, 64 bits: a hash that is stable across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let args: Vec<String> = ["--only", "kubectl,etcd", "--jobs=1"].iter().map(|s| (*s).to_owned()).collect();
        let opts = Options::parse(&args).unwrap();
        assert_eq!(opts.only, Some(vec!["kubectl".to_owned(), "etcd".to_owned()]));
        assert_eq!(opts.jobs(), 1);
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
    }

    #[test]
    fn selects_by_alias_once_in_build_order() {
        let peers = all_peers().unwrap();
        let names: Vec<String> = ["moto_server", "kubectl", "kube-apiserver"].iter().map(|s| (*s).to_owned()).collect();
        let sel = select(&peers, &names).unwrap();
        let sel: Vec<&str> = sel.iter().map(|p| p.name).collect();
        assert_eq!(sel, ["kubernetes", "moto"]);
        assert!(select(&peers, &["nope".to_owned()]).is_err());
    }

    #[test]
    fn every_binary_has_a_unique_manifest_key() {
        let peers = all_peers().unwrap();
        let mut keys: Vec<&str> = peers.iter().flat_map(|p| p.binaries.iter().map(|b| b.name)).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(n, keys.len());
        assert_eq!(n, 12);
    }

    #[test]
    fn promcheck_wrapper_requires_the_pinned_prometheus() {
        let go_mod = fs::read_to_string(wrapper_dir("promcheck").join("go.mod")).unwrap();
        assert!(go_mod.contains(&format!("github.com/prometheus/prometheus {PROMETHEUS_VERSION}\n")), "{go_mod}");
    }

    #[test]
    fn kstatus_wrapper_requires_the_pinned_cli_utils() {
        let go_mod = fs::read_to_string(wrapper_dir("kstatus").join("go.mod")).unwrap();
        assert!(go_mod.contains(&format!("sigs.k8s.io/cli-utils {KSTATUS_VERSION}\n")), "{go_mod}");
    }

    #[test]
    fn deb_launcher_finds_its_tree_from_its_own_path() {
        let script = deb_launcher("usr/bin/lua5.1", &["usr/lib/x86_64-linux-gnu".to_owned()]);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains("LD_LIBRARY_PATH=\"$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"")
        );
        assert!(script.contains("exec \"$root/usr/bin/lua5.1\" \"$@\""));
        let bare = deb_launcher("usr/bin/lua5.1", &[]);
        assert!(!bare.contains("LD_LIBRARY_PATH"), "{bare}");
    }

    #[test]
    fn only_a_missing_package_calls_for_apt_get_update() {
        assert!(is_missing_package("E: Unable to locate package lua5.1"));
        assert!(is_missing_package("E: Version '5.1.5-9' for 'lua5.1' was not found"));
        assert!(!is_missing_package("E: Failed to fetch http://deb.debian.org/... Temporary failure resolving"));
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("go"), "go");
        assert_eq!(shell_quote("-s -w"), "'-s -w'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
