//! The bench's Markdown table (one per store) and JSON file.

use std::{collections::BTreeSet, fmt::Write as _, path::Path};

use anyhow::{Context, Result};

use super::{
    CompatBurstRun, CrdRun, Report,
    metrics::{RssPeak, Window, kind_of},
};

/// Targets of issue #8, reported beside the figures (never asserted).
pub const TARGET_RATIO: f64 = 1.5;
/// RSS of an idle operator, MiB (taken as MB: the difference is under 5%).
pub const TARGET_IDLE_MIB: f64 = 25.0;
/// RSS with 1,000 pairs.
pub const TARGET_1000_MIB: f64 = 50.0;
/// RSS with 10,000 pairs.
pub const TARGET_10000_MIB: f64 = 150.0;

/// Writes `bench.md` and `bench.json` into `out`.
pub fn write(report: &Report, out: &Path) -> Result<()> {
    let md = out.join("bench.md");
    std::fs::write(&md, markdown(report)).with_context(|| format!("writing {}", md.display()))?;
    let json = out.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(())
}

fn per(x: f64, n: f64) -> f64 {
    if n > 0.0 { x / n } else { 0.0 }
}

/// A figure the run did not measure (`--no-floor`).
const SKIPPED: &str = "—";

fn fmt2(x: f64) -> String {
    format!("{x:.2}")
}

/// One line about a steady-state window, for the progress output.
pub fn steady_line(w: &Window, n: usize) -> String {
    let r = w.reconciles_total();
    format!(
        "steady state: {:.0} reconciles ({:.2} per object) in {:.0}s; per object per resync: {:.2} backend reads, {:.2} backend writes, {:.2} API writes, {:.2} events, {:.2} store requests",
        r,
        per(r, 2.0 * n as f64),
        w.seconds,
        per(w.backend_reads(), r),
        per(w.backend_writes_total(), r),
        per(w.api_writes_total(), r),
        per(w.events_total(), r),
        per(w.store_requests_total(), r),
    )
}

/// A peak of resident memory: the high-water mark, then the largest sample (MiB).
pub fn rss_peak(p: &RssPeak) -> String {
    let hwm = if p.hwm_reset { format!("{:.1}", p.hwm_mib) } else { format!("{:.1}*", p.hwm_mib) };
    format!("{hwm} / {:.1}", p.sampled_max_mib)
}

fn table(out: &mut String, header: &[String], rows: &[(String, Vec<String>)]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len() - 1));
    for (name, cells) in rows {
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The whole report as Markdown.
pub fn markdown(report: &Report) -> String {
    let plan = &report.plan;
    let mut out = String::from("# s3-resource-operator bench\n\n");
    let _ = writeln!(
        out,
        "{}; operator release binary, RECONCILE_CONCURRENCY={}, LOG_LEVEL=warn, RESYNC_INTERVAL={}s while rolling out and {}s for steady state; the rollouts' store from {}; took {:.1} min.\n",
        report.machine,
        plan.concurrency,
        plan.rollout_resync.as_secs(),
        plan.resync.as_secs(),
        if plan.cluster_store { "a ClusterS3Store (no default store)" } else { "the operator's environment" },
        report.took_s / 60.0
    );
    out.push_str(
        "*Floor*: the backend calls a converging reconcile makes, made directly through `s3op_backends` \
(no Kubernetes) with the same concurrency, on a fresh store of the same kind. *Store requests* are HTTP \
requests counted by a proxy in front of the store (a backend call can be several). *Per object per resync*: \
divided by the reconciles in the window (each is one object's resync). Steady state and the start-up \
figure come from a new operator process started on the converged pairs with the short resync interval.\n\n",
    );

    let stores: Vec<String> = {
        let mut seen = Vec::new();
        for r in &report.crd {
            if !seen.contains(&r.store) {
                seen.push(r.store.clone());
            }
        }
        seen
    };
    for store in &stores {
        let runs: Vec<&CrdRun> = report.crd.iter().filter(|r| &r.store == store).collect();
        let _ = writeln!(out, "## {store}\n");
        store_table(&mut out, &runs);
        steady_ops_table(&mut out, store, &runs);
        rollout_requests_table(&mut out, store, &runs);
    }

    if let Some(c) = &report.compat {
        let _ = writeln!(out, "## Compatibility mode (versitygw, CRD_MODE=false)\n");
        let w = &c.window;
        let n = c.n as f64;
        let floor_requests = c.floor_requests.values().sum::<u64>() as f64;
        let rows = vec![
            ("annotated Secrets".to_string(), vec![c.n.to_string()]),
            ("first create → all processed (s)".into(), vec![fmt2(c.processed_s)]),
            ("Secrets/s".into(), vec![format!("{:.1}", n / c.processed_s)]),
            ("floor: `compat::provision` directly (s)".into(), vec![fmt2(c.floor_s)]),
            ("operator / floor (target ≤ 1.5)".into(), vec![format!("{:.2}", c.ratio())]),
            ("RSS idle / all processed (MiB)".into(), vec![format!("{:.1} / {:.1}", c.idle_rss_mib, c.rss_mib)]),
            (
                "store requests per Secret, operator / floor".into(),
                vec![format!("{:.1} / {:.1}", per(w.store_requests_total(), n), per(floor_requests, n))],
            ),
            (
                "backend calls per Secret (reads + writes)".into(),
                vec![format!("{:.1}", per(w.backend_calls_total(), n))],
            ),
            ("events per Secret".into(), vec![format!("{:.2}", per(w.events_total(), n))]),
            ("operator CPU (s)".into(), vec![fmt2(w.operator_cpu_s)]),
            ("reconcile errors".into(), vec![format!("{:.0}", w.reconcile_errors_total())]),
        ];
        table(&mut out, &["".to_string(), "value".to_string()], &rows);
        let mut ops: Vec<(String, Vec<String>)> = w
            .store_requests
            .iter()
            .map(|(k, v)| {
                let f = c.floor_requests.get(k).copied().unwrap_or(0);
                (format!("`{k}`"), vec![format!("{:.2} / {:.2}", per(*v as f64, n), per(f as f64, n))])
            })
            .collect();
        for (k, f) in &c.floor_requests {
            if !w.store_requests.contains_key(k) {
                ops.push((format!("`{k}`"), vec![format!("0.00 / {:.2}", per(*f as f64, n))]));
            }
        }
        table(&mut out, &["store request, per Secret".to_string(), "operator / floor".to_string()], &ops);
    }

    if !report.compat_burst.is_empty() {
        compat_burst_section(&mut out, &report.compat_burst);
    }

    if let Some(m) = &report.multi {
        multi_section(&mut out, m);
    }

    targets(&mut out, report);

    if !report.failures.is_empty() {
        out.push_str("## Failures\n\n");
        for f in &report.failures {
            let _ = writeln!(out, "- {}", f.lines().next().unwrap_or(""));
        }
        out.push('\n');
    }
    out.push_str("## Time per part\n\n");
    let rows: Vec<(String, Vec<String>)> =
        report.parts.iter().map(|(p, s, l)| (p.clone(), vec![format!("{s:.0}"), format!("{l:.1}")])).collect();
    table(&mut out, &["part".to_string(), "seconds".to_string(), "load average at start".to_string()], &rows);
    out
}

fn store_table(out: &mut String, runs: &[&CrdRun]) {
    let mut header = vec![String::new()];
    header.extend(runs.iter().map(|r| format!("N={}", r.n)));
    let row = |name: &str, f: &dyn Fn(&CrdRun) -> String| (name.to_string(), runs.iter().map(|r| f(r)).collect());
    let steady = |f: fn(&Window) -> f64| move |r: &CrdRun| fmt2(per(f(&r.steady), r.steady.reconciles_total()));
    let restart = |f: fn(&super::Restart) -> String| move |r: &CrdRun| f(&r.restart);
    let rows = vec![
        row("operator start-up, empty namespace: spawn → /readyz (s)", &|r| fmt2(r.startup_empty_s)),
        row("RSS idle (MiB)", &|r| format!("{:.1}", r.idle_rss_mib)),
        row("rollout: first create → all Ready (s)", &|r| fmt2(r.rollout_s)),
        row("rollout: pairs/s", &|r| format!("{:.1}", r.n as f64 / r.rollout_s)),
        row("floor: same backend calls, no Kubernetes (s)", &|r| r.floor_s.map_or_else(|| SKIPPED.into(), fmt2)),
        row("**operator / floor** (target ≤ 1.5 at N=1000)", &|r| {
            r.ratio().map_or_else(|| SKIPPED.into(), |x| format!("**{x:.2}**"))
        }),
        row("RSS all Ready (MiB)", &|r| format!("{:.1}", r.converged_rss_mib)),
        row("rollout: RSS peak (MiB), high-water mark / max sampled every 100 ms", &|r| rss_peak(&r.rollout_rss_peak)),
        row("rollout: reconciles per pair (S3Bucket + S3User)", &|r| {
            let n = r.n as f64;
            format!("{:.1} + {:.1}", r.rollout.reconciles_of("S3Bucket") / n, r.rollout.reconciles_of("S3User") / n)
        }),
        row("rollout: backend calls per pair (writes)", &|r| {
            let n = r.n as f64;
            format!("{:.1} ({:.1})", r.rollout.backend_calls_total() / n, r.rollout.backend_writes_total() / n)
        }),
        row("rollout: store requests per pair, operator / floor", &|r| {
            let n = r.n as f64;
            let floor = match r.floor_s {
                Some(_) => format!("{:.1}", r.floor_requests.values().sum::<u64>() as f64 / n),
                None => SKIPPED.into(),
            };
            format!("{:.1} / {floor}", r.rollout.store_requests_total() / n)
        }),
        row("rollout: API writes per pair", &|r| fmt2(r.rollout.api_writes_total() / r.n as f64)),
        row("rollout: events per pair", &|r| fmt2(r.rollout.events_total() / r.n as f64)),
        row("rollout: operator CPU (s)", &|r| fmt2(r.rollout.operator_cpu_s)),
        row("rollout: CPU of the other processes (s)", &|r| {
            r.rollout_peer_cpu_s.iter().map(|(p, s)| format!("{p} {s:.1}")).collect::<Vec<_>>().join(", ")
        }),
        row("rollout: failed reconciles", &|r| format!("{:.0}", r.rollout.reconcile_errors_total())),
        row("new process with the N pairs present: spawn → /readyz (s)", &restart(|x| fmt2(x.ready_s))),
        row("new process: spawn → every object reconciled once (s)", &restart(|x| fmt2(x.first_pass_s))),
        row("new process: RSS after the first pass (MiB)", &restart(|x| format!("{:.1}", x.rss_mib))),
        row(
            "new process: first pass backend writes / API writes / events",
            &restart(|x| {
                let w = &x.first_pass;
                format!("{:.0} / {:.0} / {:.0}", w.backend_writes_total(), w.api_writes_total(), w.events_total())
            }),
        ),
        row("steady: resyncs per object in the window", &|r| fmt2(per(r.steady.reconciles_total(), 2.0 * r.n as f64))),
        row("steady: backend reads / object / resync (target ≤ 1)", &steady(Window::backend_reads)),
        row("steady: backend writes / object / resync (target 0)", &steady(Window::backend_writes_total)),
        row("steady: API writes / object / resync (target 0)", &steady(Window::api_writes_total)),
        row("steady: events / object / resync (target 0)", &steady(Window::events_total)),
        row("steady: store requests / object / resync", &steady(Window::store_requests_total)),
        row("steady: operator CPU / object / resync (ms)", &|r| {
            fmt2(per(1000.0 * r.steady.operator_cpu_s, r.steady.reconciles_total()))
        }),
        row("RSS after steady state (MiB)", &|r| format!("{:.1}", r.steady_rss_mib)),
    ];
    table(out, &header, &rows);
}

/// Steady state by backend operation (per reconcile of the kind it serves) and by store request
/// (per reconcile of either kind).
fn steady_ops_table(out: &mut String, store: &str, runs: &[&CrdRun]) {
    let _ = writeln!(out, "### {store}: steady state per operation\n");
    let mut header = vec!["per object per resync".to_string()];
    header.extend(runs.iter().map(|r| format!("N={}", r.n)));
    let ops: BTreeSet<&String> = runs.iter().flat_map(|r| r.steady.backend_calls.keys()).collect();
    let mut rows = Vec::new();
    for op in ops {
        let kind = kind_of(op);
        rows.push((
            format!("backend `{op}` ({kind})"),
            runs.iter()
                .map(|r| {
                    let w = &r.steady;
                    let calls = w.backend_calls.get(op).copied().unwrap_or(0.0);
                    let writes = w.backend_writes.get(op).copied().unwrap_or(0.0);
                    let k = w.reconciles_of(kind);
                    if writes > 0.0 {
                        format!("{} ({} writes)", fmt2(per(calls, k)), fmt2(per(writes, k)))
                    } else {
                        fmt2(per(calls, k))
                    }
                })
                .collect(),
        ));
    }
    let failures: BTreeSet<&String> = runs.iter().flat_map(|r| r.steady.backend_failures.keys()).collect();
    for f in failures {
        rows.push((
            format!("backend failures `{f}` (count)"),
            runs.iter().map(|r| format!("{:.0}", r.steady.backend_failures.get(f).copied().unwrap_or(0.0))).collect(),
        ));
    }
    for (what, get) in [
        ("API write", (|w: &Window| w.api_writes.clone()) as fn(&Window) -> _),
        ("event", |w: &Window| w.events.clone()),
    ] {
        let keys: BTreeSet<String> = runs.iter().flat_map(|r| get(&r.steady).into_keys()).collect();
        for k in keys {
            rows.push((
                format!("{what} `{k}` (count)"),
                runs.iter().map(|r| format!("{:.0}", get(&r.steady).get(&k).copied().unwrap_or(0.0))).collect(),
            ));
        }
    }
    let reqs: BTreeSet<&String> = runs.iter().flat_map(|r| r.steady.store_requests.keys()).collect();
    for q in reqs {
        rows.push((
            format!("store `{q}`"),
            runs.iter()
                .map(|r| {
                    let w = &r.steady;
                    fmt2(per(w.store_requests.get(q).copied().unwrap_or(0) as f64, w.reconciles_total()))
                })
                .collect(),
        ));
    }
    rows.push((
        "reconciles in the window (S3Bucket / S3User)".to_string(),
        runs.iter()
            .map(|r| format!("{:.0} / {:.0}", r.steady.reconciles_of("S3Bucket"), r.steady.reconciles_of("S3User")))
            .collect(),
    ));
    table(out, &header, &rows);
}

/// Store requests per pair during the rollout, operator against floor, by request.
fn rollout_requests_table(out: &mut String, store: &str, runs: &[&CrdRun]) {
    let _ = writeln!(out, "### {store}: store requests per pair during the rollout, operator / floor\n");
    let mut header = vec!["request".to_string()];
    header.extend(runs.iter().map(|r| format!("N={}", r.n)));
    let keys: BTreeSet<&String> =
        runs.iter().flat_map(|r| r.rollout.store_requests.keys().chain(r.floor_requests.keys())).collect();
    let rows: Vec<(String, Vec<String>)> = keys
        .into_iter()
        .map(|k| {
            (
                format!("`{k}`"),
                runs.iter()
                    .map(|r| {
                        let n = r.n as f64;
                        let op = r.rollout.store_requests.get(k).copied().unwrap_or(0) as f64;
                        let fl = match r.floor_s {
                            Some(_) => fmt2(r.floor_requests.get(k).copied().unwrap_or(0) as f64 / n),
                            None => SKIPPED.into(),
                        };
                        format!("{} / {fl}", fmt2(op / n))
                    })
                    .collect(),
            )
        })
        .collect();
    table(out, &header, &rows);
}

fn targets(out: &mut String, report: &Report) {
    let mut lines = Vec::new();
    let mark = |ok: bool| if ok { "met" } else { "**missed**" };
    for r in &report.crd {
        let s = &r.store;
        if r.n == 1000 {
            lines.push(match r.ratio() {
                Some(ratio) => format!(
                    "- {s}: operator / floor at N=1000 = {ratio:.2} (≤ {TARGET_RATIO}): {}",
                    mark(ratio <= TARGET_RATIO)
                ),
                None => format!("- {s}: operator / floor at N=1000: not measured (--no-floor)"),
            });
            lines.push(format!(
                "- {s}: RSS with 1,000 pairs = {:.1} MiB (≤ {TARGET_1000_MIB}): {}",
                r.converged_rss_mib,
                mark(r.converged_rss_mib <= TARGET_1000_MIB)
            ));
        }
        if r.n == super::LARGE_N {
            lines.push(format!(
                "- {s}: RSS with 10,000 pairs = {:.1} MiB (≤ {TARGET_10000_MIB}): {}",
                r.converged_rss_mib,
                mark(r.converged_rss_mib <= TARGET_10000_MIB)
            ));
        }
        let w = &r.steady;
        let k = w.reconciles_total();
        let (writes, events, reads) = (
            per(w.backend_writes_total() + w.api_writes_total(), k),
            per(w.events_total(), k),
            per(w.backend_reads(), k),
        );
        lines.push(format!(
            "- {s} N={}: steady writes (backend + API) {:.2}, events {:.2} per object per resync (0): {}; backend reads {:.2} (≤ 1): {}",
            r.n,
            writes,
            events,
            mark(writes == 0.0 && events == 0.0),
            reads,
            mark(reads <= 1.0)
        ));
    }
    if let Some(idle) = report.crd.iter().map(|r| r.idle_rss_mib).reduce(f64::max) {
        lines.push(format!(
            "- RSS idle (largest seen) = {idle:.1} MiB (≤ {TARGET_IDLE_MIB}): {}",
            mark(idle <= TARGET_IDLE_MIB)
        ));
    }
    if let Some(c) = &report.compat
        && c.n == 1000
    {
        lines.push(format!(
            "- compatibility mode, 1,000 Secrets: operator / floor = {:.2} (≤ {TARGET_RATIO}): {}",
            c.ratio(),
            mark(c.ratio() <= TARGET_RATIO)
        ));
    }
    if !lines.is_empty() {
        out.push_str("## Targets (reported, not asserted)\n\n");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// The many-stores figure: one operator, every store at once.
fn multi_section(out: &mut String, m: &super::MultiRun) {
    let n = (m.per_store * m.stores.len()) as f64;
    let _ = writeln!(
        out,
        "## {} stores at once ({} pairs each, one operator, each store a ClusterS3Store)\n",
        m.stores.len(),
        m.per_store
    );
    let w = &m.rollout;
    let mut rows = vec![
        ("stores".to_string(), vec![m.stores.join(", ")]),
        ("first create → every pair Ready (s)".into(), vec![fmt2(m.rollout_s)]),
        ("pairs/s".into(), vec![format!("{:.1}", n / m.rollout_s)]),
    ];
    for (store, s) in &m.ready_s {
        rows.push((format!("first create → {store}'s pairs Ready (s)"), vec![fmt2(*s)]));
    }
    rows.extend([
        (
            "RSS idle / converged / steady (MiB)".to_string(),
            vec![format!("{:.1} / {:.1} / {:.1}", m.idle_rss_mib, m.converged_rss_mib, m.steady_rss_mib)],
        ),
        ("store requests per pair".into(), vec![format!("{:.1}", per(w.store_requests_total(), n))]),
        ("reconcile errors during the rollout".into(), vec![format!("{:.0}", w.reconcile_errors_total())]),
        ("operator CPU during the rollout (s)".into(), vec![fmt2(w.operator_cpu_s)]),
    ]);
    table(out, &["".to_string(), "value".to_string()], &rows);
    let _ = writeln!(out, "{}\n", steady_line(&m.steady, m.per_store * m.stores.len()));
}

/// The compatibility-burst figure: a tenant's pair created behind a burst of Secrets.
fn compat_burst_section(out: &mut String, runs: &[CompatBurstRun]) {
    out.push_str("## Compatibility burst: a tenant's S3User while compatibility Secrets converge\n\n");
    out.push_str(
        "One operator in both modes (CRD_MODE and COMPAT_MODE true, every namespace watched, the store from \
its environment). The N annotated Secrets are created in one namespace, as fast as in the compatibility-mode \
figure; once all exist, an S3Bucket and an S3User granted ReadWrite on it are created in another. The tenant's \
times run from its own create, *all Secrets done* from the first Secret's create \
(`s3_operator_secrets_processed_total`). *RSS peak*: the kernel's high-water mark over the burst / the largest \
RSS sampled every 100 ms (* : the mark could not be reset and covers the process's life).\n\n",
    );
    let header = [
        "store",
        "N Secrets",
        "Secrets created in (s)",
        "tenant S3User Ready after (s)",
        "tenant S3Bucket Ready after (s)",
        "Secrets done when the S3User was Ready",
        "all Secrets done (s)",
        "operator RSS idle (MiB)",
        "operator RSS peak (MiB)",
        "operator CPU (s)",
        "Secret errors / failed reconciles",
    ]
    .map(String::from);
    let rows: Vec<(String, Vec<String>)> = runs
        .iter()
        .map(|r| {
            (
                r.store.clone(),
                vec![
                    r.n.to_string(),
                    fmt2(r.secrets_created_s),
                    fmt2(r.tenant_user_ready_s),
                    fmt2(r.tenant_bucket_ready_s),
                    format!("{:.0}", r.secrets_processed_at_user_ready),
                    fmt2(r.secrets_processed_s),
                    format!("{:.1}", r.idle_rss_mib),
                    rss_peak(&r.rss_peak),
                    fmt2(r.window.operator_cpu_s),
                    format!("{:.0} / {:.0}", r.secret_errors, r.window.reconcile_errors_total()),
                ],
            )
        })
        .collect();
    table(out, &header, &rows);
}
