//! Snapshots of the operator's `/metrics` and of the store requests the proxy counted, and
//! what happened between two of them, by operation.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{
    Proxied,
    proxy::{Counts, delta},
};
use crate::binary::OperatorProcess;

/// One scrape: every metric series by its full name (`name{labels}`), and the store requests.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Series → value.
    pub series: BTreeMap<String, f64>,
    /// Store requests counted so far, by operation.
    pub requests: Counts,
    /// When it was taken.
    pub at: Instant,
    /// CPU time the operator process had used (user + system), seconds.
    pub cpu_s: f64,
}

impl Scrape {
    /// Scrapes `op` and reads `proxied`'s counts.
    pub(super) async fn take(op: &OperatorProcess, proxied: &Proxied) -> Result<Scrape> {
        let text = op.metrics().await?;
        let cpu_s = op.pid().map_or(Ok(0.0), cpu_seconds)?;
        Ok(Scrape { series: parse(&text), requests: proxied.requests(), at: Instant::now(), cpu_s })
    }

    /// Scrapes `op` and reads the counts of every store in `proxied`, added up.
    pub(super) async fn take_all(op: &OperatorProcess, proxied: &[&Proxied]) -> Result<Scrape> {
        let text = op.metrics().await?;
        let cpu_s = op.pid().map_or(Ok(0.0), cpu_seconds)?;
        let mut requests = Counts::default();
        for p in proxied {
            for (k, v) in p.requests() {
                *requests.entry(k).or_default() += v;
            }
        }
        Ok(Scrape { series: parse(&text), requests, at: Instant::now(), cpu_s })
    }

    /// Sum of every series of the family `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series.iter().filter(|(k, _)| family(k) == name).map(|(_, v)| v).fold(0.0, |a, b| a + b)
    }

    /// Sum of the series of `name` whose labels contain `label` (e.g. `kind="S3User"`).
    pub fn sum_where(&self, name: &str, label: &str) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| family(k) == name && k.contains(label))
            .map(|(_, v)| v)
            .fold(0.0, |a, b| a + b)
    }
}

/// CPU seconds each named process and its descendants have used so far (a peer runs under a
/// watchdog shell, so the server is the pid's child); a process that is gone counts 0.
pub fn cpu_of(processes: &[(String, u32)]) -> BTreeMap<String, f64> {
    let parents = parent_pids();
    processes
        .iter()
        .map(|(name, pid)| {
            let mut tree = vec![*pid];
            let mut i = 0;
            while let Some(&p) = tree.get(i) {
                tree.extend(parents.iter().filter(|(_, parent)| **parent == p).map(|(child, _)| *child));
                i += 1;
            }
            (name.clone(), tree.iter().map(|p| cpu_seconds(*p).unwrap_or(0.0)).sum())
        })
        .collect()
}

/// Every live process's parent, from `/proc/<pid>/stat`.
fn parent_pids() -> BTreeMap<u32, u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // State, then the parent's pid, after the parenthesised command name.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

/// How often [`RssSampler`] reads the process's resident memory.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The largest resident memory of a process over a stretch of time (a rollout, a burst).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RssPeak {
    /// The kernel's high-water mark (`VmHWM`) at the end of the stretch, reset to the resident
    /// memory at its start (`clear_refs`): the true peak, which no sampling misses.
    pub hwm_mib: f64,
    /// Whether the high-water mark was reset at the start; if not, it covers the process's
    /// whole life (for a fresh operator its idle memory, which is lower).
    pub hwm_reset: bool,
    /// The largest `VmRSS` read every 100 ms over the stretch.
    pub sampled_max_mib: f64,
    /// How many times `VmRSS` was read.
    pub samples: usize,
}

/// Reads a process's `VmRSS` every [`RSS_SAMPLE_EVERY`] on a thread of its own (a busy runtime
/// does not delay it), from [`RssSampler::start`] until [`RssSampler::finish`].
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(f64, usize)>>,
}

impl RssSampler {
    /// Resets the process's high-water mark to its resident memory now, and starts sampling.
    pub fn start(pid: u32) -> RssSampler {
        // `5` resets VmHWM (proc(5), clear_refs); our own child, so we may write it.
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut max, mut samples) = (0.0_f64, 0);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                        max = max.max(kib / 1024.0);
                        samples += 1;
                    }
                    std::thread::park_timeout(RSS_SAMPLE_EVERY);
                }
                (max, samples)
            })
        };
        RssSampler { pid, hwm_reset, stop, thread: Some(thread) }
    }

    /// Stops sampling; the peak since [`RssSampler::start`].
    pub fn finish(mut self) -> RssPeak {
        let hwm_kib = proc_status_kib(self.pid, "VmHWM");
        let last_kib = proc_status_kib(self.pid, "VmRSS");
        let (sampled, samples) = self.stop_thread();
        // A last reading, so a stretch shorter than one interval still has one.
        let sampled_max_mib = last_kib.map_or(sampled, |k| sampled.max(k / 1024.0));
        RssPeak {
            hwm_mib: hwm_kib.map_or(sampled_max_mib, |k| k / 1024.0),
            hwm_reset: self.hwm_reset && hwm_kib.is_some(),
            sampled_max_mib,
            samples: samples + usize::from(last_kib.is_some()),
        }
    }

    fn stop_thread(&mut self) -> (f64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => {
                t.thread().unpark();
                t.join().unwrap_or((0.0, 0))
            }
            None => (0.0, 0),
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Series and values of an OpenMetrics text.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn family(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// The value of label `key` in a series name.
pub fn label<'a>(series: &'a str, key: &str) -> Option<&'a str> {
    let labels = series.split_once('{')?.1.trim_end_matches('}');
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// What the operator did between two scrapes, from its metrics, and what the store was asked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Length of the window.
    pub seconds: f64,
    /// CPU time the operator used in the window (user + system), seconds.
    pub operator_cpu_s: f64,
    /// Reconciles, by kind.
    pub reconciles: BTreeMap<String, f64>,
    /// Failed reconciles, by `kind reason`.
    pub reconcile_errors: BTreeMap<String, f64>,
    /// Backend calls, by operation (every outcome).
    pub backend_calls: BTreeMap<String, f64>,
    /// Backend calls that failed, by `operation outcome`.
    pub backend_failures: BTreeMap<String, f64>,
    /// Backend calls that changed the store, by operation.
    pub backend_writes: BTreeMap<String, f64>,
    /// Kubernetes API writes, by `kind write`.
    pub api_writes: BTreeMap<String, f64>,
    /// Events, by `kind reason`.
    pub events: BTreeMap<String, f64>,
    /// Store requests (counted by the proxy), by operation.
    pub store_requests: Counts,
}

fn add(map: &mut BTreeMap<String, f64>, key: String, d: f64) {
    *map.entry(key).or_default() += d;
}

impl Window {
    /// The difference between two scrapes of one process.
    pub fn between(before: &Scrape, after: &Scrape) -> Window {
        let mut w = Window {
            seconds: after.at.saturating_duration_since(before.at).as_secs_f64(),
            operator_cpu_s: after.cpu_s - before.cpu_s,
            store_requests: delta(&before.requests, &after.requests),
            ..Window::default()
        };
        for (series, value) in &after.series {
            let d = value - before.series.get(series).copied().unwrap_or(0.0);
            if d <= 0.0 {
                continue;
            }
            let l = |key: &str| label(series, key).unwrap_or("").to_string();
            match family(series) {
                "s3op_reconciles_total" => add(&mut w.reconciles, l("kind"), d),
                "s3op_reconcile_errors_total" => {
                    add(&mut w.reconcile_errors, format!("{} {}", l("kind"), l("reason")), d)
                }
                "s3op_backend_request_duration_seconds_count" => {
                    add(&mut w.backend_calls, l("operation"), d);
                    if l("outcome") != "ok" {
                        add(&mut w.backend_failures, format!("{} {}", l("operation"), l("outcome")), d);
                    }
                }
                "s3op_backend_writes_total" => add(&mut w.backend_writes, l("operation"), d),
                "s3op_api_writes_total" => add(&mut w.api_writes, format!("{} {}", l("kind"), l("write")), d),
                "s3op_events_total" => add(&mut w.events, format!("{} {}", l("kind"), l("reason")), d),
                _ => {}
            }
        }
        w
    }

    /// Reconciles of every kind.
    pub fn reconciles_total(&self) -> f64 {
        total(self.reconciles.values())
    }

    /// Reconciles of `kind`.
    pub fn reconciles_of(&self, kind: &str) -> f64 {
        self.reconciles.get(kind).copied().unwrap_or(0.0)
    }

    /// Backend calls, reads and writes.
    pub fn backend_calls_total(&self) -> f64 {
        total(self.backend_calls.values())
    }

    /// Failed reconciles.
    pub fn reconcile_errors_total(&self) -> f64 {
        total(self.reconcile_errors.values())
    }

    /// Backend calls that changed nothing.
    pub fn backend_reads(&self) -> f64 {
        self.backend_calls_total() - self.backend_writes_total()
    }

    /// Backend calls that changed the store.
    pub fn backend_writes_total(&self) -> f64 {
        total(self.backend_writes.values())
    }

    /// Kubernetes API writes.
    pub fn api_writes_total(&self) -> f64 {
        total(self.api_writes.values())
    }

    /// Events published.
    pub fn events_total(&self) -> f64 {
        total(self.events.values())
    }

    /// Store requests.
    pub fn store_requests_total(&self) -> f64 {
        self.store_requests.values().sum::<u64>() as f64
    }
}

/// Sum of `values`, 0 (not -0, which `Iterator::sum` gives for floats) when empty.
pub fn total<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    values.into_iter().fold(0.0, |a, b| a + b)
}

/// The kind of object a backend operation serves (for normalising per reconcile).
pub fn kind_of(operation: &str) -> &'static str {
    if operation.starts_with("compat_") {
        "Secret"
    } else if operation.contains("bucket") {
        "S3Bucket"
    } else {
        "S3User"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(text: &str, requests: &[(&str, u64)]) -> Scrape {
        Scrape {
            series: parse(text),
            requests: requests.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            at: Instant::now(),
            cpu_s: 0.0,
        }
    }

    #[test]
    fn a_window_splits_reads_writes_and_kinds() {
        let before = scrape(
            "# TYPE x counter\n\
s3op_reconciles_total{kind=\"S3Bucket\",outcome=\"ok\"} 10\n\
s3op_backend_request_duration_seconds_count{backend=\"minio\",operation=\"ensure_bucket\",outcome=\"ok\"} 10\n\
s3op_backend_writes_total{backend=\"minio\",operation=\"ensure_bucket\"} 10\n",
            &[("GET /{bucket}?tagging", 4)],
        );
        let after = scrape(
            "s3op_reconciles_total{kind=\"S3Bucket\",outcome=\"ok\"} 30\n\
s3op_reconciles_total{kind=\"S3User\",outcome=\"ok\"} 20\n\
s3op_backend_request_duration_seconds_count{backend=\"minio\",operation=\"ensure_bucket\",outcome=\"ok\"} 30\n\
s3op_backend_request_duration_seconds_count{backend=\"minio\",operation=\"describe_user\",outcome=\"BackendUnavailable\"} 1\n\
s3op_backend_writes_total{backend=\"minio\",operation=\"ensure_bucket\"} 10\n\
s3op_api_writes_total{kind=\"S3User\",write=\"secret\"} 2\n\
s3op_events_total{kind=\"S3User\",reason=\"Created\"} 1\n\
# EOF\n",
            &[("GET /{bucket}?tagging", 24), ("admin list-users", 1)],
        );
        let w = Window::between(&before, &after);
        assert_eq!(w.reconciles_total(), 40.0);
        assert_eq!(w.reconciles_of("S3Bucket"), 20.0);
        assert_eq!(w.backend_reads(), 21.0);
        assert_eq!(format!("{:.2}", w.backend_writes_total()), "0.00", "no -0.00 in a table");
        assert_eq!(w.backend_failures.get("describe_user BackendUnavailable"), Some(&1.0));
        assert_eq!(w.api_writes.get("S3User secret"), Some(&2.0));
        assert_eq!(w.events_total(), 1.0);
        assert_eq!(w.store_requests_total(), 21.0);
        assert_eq!(kind_of("ensure_bucket"), "S3Bucket");
        assert_eq!(kind_of("set_grants"), "S3User");
        let me = cpu_seconds(std::process::id()).unwrap();
        assert!(me >= 0.0, "{me}");
        assert_eq!(before.sum_where("s3op_reconciles_total", "kind=\"S3Bucket\""), 10.0);
    }

    #[test]
    fn the_rss_sampler_reads_a_process_and_its_high_water_mark() {
        // A sleeping child: every sample reads its memory, and the reset high-water mark
        // (never below the resident memory) is at least the largest sample.
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let sampler = RssSampler::start(child.id());
        std::thread::sleep(RSS_SAMPLE_EVERY * 3);
        let peak = sampler.finish();
        let _ = child.kill();
        let _ = child.wait();
        assert!(peak.samples >= 2, "{peak:?}");
        assert!(peak.sampled_max_mib > 0.0 && peak.hwm_mib > 0.0, "{peak:?}");
        assert!(peak.hwm_reset, "{peak:?}");
        assert!(peak.hwm_mib + 0.01 >= peak.sampled_max_mib, "{peak:?}");
        assert!(proc_status_kib(std::process::id(), "VmRSS").is_some());
        assert_eq!(proc_status_kib(std::process::id(), "NoSuchField"), None);
    }

    #[test]
    fn cpu_of_counts_what_runs_under_a_wrapper() {
        // The wrapper itself only waits; the busy loop is its child, as a peer under the watchdog.
        let busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5";
        let mut wrapper =
            std::process::Command::new("bash").args(["-c", &format!("bash -c '{busy}' & wait")]).spawn().unwrap();
        let named = vec![("peer".to_string(), wrapper.id())];
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = 0.0;
        while Instant::now() < deadline && seen < 0.05 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            seen = cpu_of(&named)["peer"];
        }
        let _ = std::process::Command::new("pkill").args(["-P", &wrapper.id().to_string()]).status();
        let _ = wrapper.kill();
        let _ = wrapper.wait();
        assert!(seen >= 0.05, "the child's CPU is counted: {seen}");
    }
}
