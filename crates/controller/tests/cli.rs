//! The binary as a user meets it: environment names from the older operator, one clear line
//! for a missing setting, a `--help` that explains itself, and no secret echoed back.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::{Command, Output};

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3-resource-operator"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn without_store_settings_the_operator_serves_store_objects_only() {
    let out = run(&[], &[]);
    let err = stderr(&out);
    assert!(err.contains("no default store"), "{err}");
    // No Kubernetes here: the next step fails, clearly.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connecting to Kubernetes"), "{err}");
}

#[test]
fn missing_endpoint_is_one_line_naming_the_setting() {
    let out = run(&[("S3_ACCESS_KEY", "admin")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("S3_ENDPOINT_URL") && err.contains("--s3-endpoint-url"), "{err}");
}

#[test]
fn root_key_names_of_the_old_operator_are_honoured() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let base = [("S3_ENDPOINT_URL", "http://127.0.0.1:7070"), ("ROOT_ACCESS_KEY", "admin")];
    let out = run(&base, &[]);
    let err = stderr(&out);
    assert!(err.contains("S3_SECRET_KEY"), "access key from ROOT_ACCESS_KEY accepted, secret missing: {err}");

    let mut env = base.to_vec();
    env.push(("ROOT_SECRET_KEY", secret));
    env.push(("LOG_LEVEL", "DEBUG"));
    let out = run(&env, &[]);
    let err = stderr(&out);
    assert!(err.contains("configuration loaded"), "{err}");
    assert!(!err.contains(secret), "secret leaked: {err}");
    // No Kubernetes here (the environment is empty): one clear error and a failing exit.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connecting to Kubernetes"), "{err}");
}

#[test]
fn backend_name_is_case_insensitive_and_checked() {
    let out = run(&[("BACKEND_NAME", "MinIO"), ("S3_ENDPOINT_URL", "http://127.0.0.1:9000")], &[]);
    assert!(stderr(&out).contains("S3_ACCESS_KEY"), "{}", stderr(&out));
    let out = run(&[("BACKEND_NAME", "ceph")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("ceph") && err.contains("versitygw"), "{err}");
}

#[test]
fn help_lists_every_setting_with_its_environment_name() {
    let out = run(&[], &["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "BACKEND_NAME",
        "S3_ENDPOINT_URL",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_REGION",
        "GARAGE_ADMIN_ENDPOINT",
        "GARAGE_ADMIN_TOKEN",
        "ANNOTATION_KEY",
        "ENFORCE_ENDPOINT_CHECK",
        "LOG_LEVEL",
        "RESYNC_INTERVAL",
        "METRICS_ADDR",
    ] {
        assert!(help.contains(&format!("[env: {env}")), "--help lacks {env}");
    }
    assert!(help.contains("VersityGW") && help.contains("KUBECONFIG"));
}

#[test]
fn secret_given_in_environment_is_not_shown_by_help() {
    let out = run(&[("S3_SECRET_KEY", "visible-if-broken")], &["--help"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("visible-if-broken"));
}
