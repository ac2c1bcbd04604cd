//! `cargo xtask demo`: the operator's main job on an embedded default. Starts a local control
//! plane and a MinIO store on loopback (MinIO enforces every setting the examples use, ReadOnly
//! grants included), runs the operator against them, applies deploy/examples, waits for them to
//! be Ready, shows the result and runs until Ctrl-C.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use s3op_tests::{
    control_plane::ControlPlane,
    process::Process,
    stores::{Store, StoreKind},
};

use crate::workspace_root;

/// Entry point of `cargo xtask demo [--exit-after SECONDS]` (the option is for scripted checks).
pub fn run(args: &[String]) -> Result<()> {
    let exit_after = match args {
        [] => None,
        [flag, secs] if flag == "--exit-after" => {
            Some(Duration::from_secs(secs.parse().context("--exit-after SECONDS")?))
        }
        _ => bail!("usage: cargo xtask demo [--exit-after SECONDS]"),
    };
    crate::peers::run(&["--only".to_string(), "kubernetes,etcd,minio".to_string()])?;
    println!("building the operator…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--package", "s3op-controller", "--bin", "s3-resource-operator"])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "building the operator failed");
    let binary = workspace_root().join("target/debug/s3-resource-operator");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(demo(&binary, exit_after))
}

async fn demo(binary: &Path, exit_after: Option<Duration>) -> Result<()> {
    let started = Instant::now();
    println!("starting kube-apiserver, etcd and kube-controller-manager on 127.0.0.1…");
    let cp = ControlPlane::start().await?;
    println!("starting MinIO on 127.0.0.1…");
    let store = Store::start(StoreKind::Minio).await?;
    println!("peers ready in {:.1}s", started.elapsed().as_secs_f64());

    let log = cp.dir().join("operator.log");
    let mut operator = Process::new("s3-resource-operator", binary, &[], &log)
        .env("KUBECONFIG", &cp.kubeconfig().display().to_string())
        .env("BACKEND_NAME", "minio")
        .env("S3_ENDPOINT_URL", store.endpoint())
        .env("S3_ACCESS_KEY", store.admin_access_key())
        .env("S3_SECRET_KEY", store.admin_secret_key())
        .env("S3_REGION", store.region())
        .env("METRICS_ADDR", "127.0.0.1:0");
    operator.start()?;

    let kubectl = |args: &[&str]| -> Result<String> {
        let out = cp.kubectl(args)?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("kubectl {} failed:\n{text}", args.join(" "));
        }
        Ok(text)
    };
    let examples = workspace_root().join("deploy/examples");
    print!("{}", kubectl(&["apply", "-f", &examples.display().to_string()])?);
    let waited =
        kubectl(&["wait", "--for=condition=Ready", "s3buckets,s3users", "--all", "-n", "default", "--timeout=90s"]);
    print!("{}", kubectl(&["get", "s3buckets,s3users", "-A", "-o", "wide"])?);
    if let Err(e) = waited {
        bail!("the examples did not become Ready: {e:#}\noperator log ({}):\n{}", log.display(), operator.log_tail(30));
    }
    println!("examples Ready in {:.1}s from the start", started.elapsed().as_secs_f64());
    // The annotated Secret (compatibility mode) has no status: its events tell what was done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = kubectl(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.name=legacy-app-s3",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
        ])?;
        if events.contains("Provisioned") {
            break events;
        }
        if Instant::now() > deadline {
            bail!(
                "the annotated Secret legacy-app-s3 was not provisioned:\n{events}\noperator log:\n{}",
                operator.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    print!("compatibility Secret default/legacy-app-s3:\n{events}");
    print!(
        "{}",
        kubectl(&["get", "secret", "app-s3-credentials", "-n", "default", "-o", "jsonpath={.data}"]).map(|d| {
            format!(
                "Secret app-s3-credentials holds: {}\n",
                d.split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|k| k.starts_with("AWS_") || k.starts_with("BUCKET"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?
    );
    println!(
        "\nready. Try:\n  export KUBECONFIG={}\n  {} get s3buckets,s3users -A\n  operator log: {}\n\
         S3 endpoint {} (admin key {}). Press Ctrl-C to stop and clean up.",
        cp.kubeconfig().display(),
        s3op_tests::peers::binary("kubectl")?.display(),
        log.display(),
        store.endpoint(),
        store.admin_access_key(),
    );
    match exit_after {
        Some(d) => tokio::time::sleep(d).await,
        None => tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?,
    }
    println!("stopping…");
    operator.stop();
    drop(store);
    drop(cp);
    println!("stopped; temporary files removed");
    Ok(())
}
