//! The Helm chart, proven with the pinned helm and the real API server: every value of the older
//! chart still renders with the same meaning, mistakes fail rendering with a message naming the
//! value, the manifests pass the API server's own validation, the RBAC is exactly what the
//! operator uses (and enough for it: the operator runs under the chart's ServiceAccount), and
//! `deploy/operator.yaml` is current.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use k8s_openapi::{
    ByteString,
    api::{core::v1::Secret, events::v1::Event},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use s3op_api::{S3Bucket, S3User};
use s3op_tests::{
    chart::{self, Rendered},
    control_plane::{ControlPlane, client_from_kubeconfig},
    fixture::{cp, start},
    operator::{Operator, store_args},
    stores::{StoreKind, unique_name},
    wait::{TIMEOUT, wait_until},
};
use serde_json::{Value, json};
use tempfile::TempDir;

const ENDPOINT: &str = "http://versitygw.storage:7070";
const ACCESS_KEY: &str = "CHARTTESTACCESSKEY42";
const SECRET_KEY: &str = "chart-test-secret-key-do-not-leak-0123456789";

/// `--set-string` for each `key=value` (strings stay strings: no YAML type guessing).
fn set(pairs: &[&str]) -> Vec<String> {
    pairs.iter().flat_map(|p| ["--set-string".to_string(), (*p).to_string()]).collect()
}

/// A values file holding `yaml`, and the `-f` arguments naming it (keep the folder alive).
fn values_file(yaml: &str) -> (TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("values.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, vec!["-f".to_string(), path.display().to_string()])
}

/// Values (a): the chart creates the Secret, old README names.
fn inline_s3() -> Vec<String> {
    set(&[
        &format!("operator.secret.data.S3_ENDPOINT_URL={ENDPOINT}"),
        &format!("operator.secret.data.S3_ACCESS_KEY={ACCESS_KEY}"),
        &format!("operator.secret.data.S3_SECRET_KEY={SECRET_KEY}"),
    ])
}

/// Values (b): the chart creates the Secret, old code's names.
fn inline_root() -> Vec<String> {
    set(&[
        &format!("operator.secret.data.S3_ENDPOINT_URL={ENDPOINT}"),
        &format!("operator.secret.data.ROOT_ACCESS_KEY={ACCESS_KEY}"),
        &format!("operator.secret.data.ROOT_SECRET_KEY={SECRET_KEY}"),
    ])
}

/// Values (c): an existing Secret.
fn existing() -> Vec<String> {
    let mut args = vec!["--set".to_string(), "operator.secret.create=false".to_string()];
    args.extend(set(&["operator.secret.name=my-s3-admin"]));
    args
}

/// Every optional feature on (`watch` is the watched namespace). The ServiceMonitor only when
/// `service_monitor`.
fn all_features(watch: &str, service_monitor: bool) -> String {
    format!(
        r#"
replicaCount: 2
imagePullSecrets: [{{name: regcred}}]
serviceAccount:
  annotations: {{eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/s3op"}}
podAnnotations: {{team: storage}}
resources: {{requests: {{cpu: 10m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
nodeSelector: {{kubernetes.io/os: linux}}
tolerations: [{{key: dedicated, operator: Exists, effect: NoSchedule}}]
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {{matchLabels: {{app.kubernetes.io/name: s3-resource-operator}}}}
operator:
  backend_name: Garage
  annotation_key: legacy.example.com/s3
  logLevel: WARNING
  logFormat: json
  args: ["--reconcile-concurrency", "4"]
  secret:
    data:
      S3_ENDPOINT_URL: http://garage.storage:3900
      ROOT_ACCESS_KEY: GK0123456789abcdef01234567
      ROOT_SECRET_KEY: {SECRET_KEY}
  region: garage
  garage:
    adminEndpoint: http://garage.storage:3903
    adminToken: {{secretName: garage-admin, secretKey: token}}
  crdMode: true
  compatMode: true
  enforceEndpointCheck: false
  compatAllowedRoles: [user, userplus]
  adoptNamespaces: [legacy, infra]
  watchNamespace: {watch}
  markerBucket: s3op-markers-test
  resyncInterval: 1m
  reconcileConcurrency: 4
leaderElection: {{enabled: true, leaseDuration: 20s, leaseName: s3op-lease}}
metrics:
  service: {{enabled: true, port: 9100, annotations: {{prometheus.io/scrape: "true"}}}}
serviceMonitor:
  enabled: {service_monitor}
  additionalLabels: {{release: prometheus}}
  annotations: {{note: scraped}}
  interval: 15s
  scrapeTimeout: 5s
  metricRelabelings: [{{action: drop, sourceLabels: [__name__], regex: "go_.*"}}]
  relabelings: [{{action: replace, targetLabel: team, replacement: storage}}]
podDisruptionBudget: {{enabled: true, minAvailable: 1}}
extraEnv: [{{name: RUST_BACKTRACE, value: "1"}}]
"#
    )
}

/// ClusterS3Stores as values: every provider, both forms of auth, and every optional key.
const CLUSTER_STORES: &str = r#"
clusterStores:
  - name: chart-minio
    provider: {minio: {endpoint: "http://minio.storage:9000", region: us-east-1}}
    auth: {secretRef: {name: minio-admin, namespace: storage, accessKeyIdKey: user, secretAccessKeyKey: password}}
    markerBucket: chart-markers
    adoptNamespaces: [legacy]
    namespaces:
      names: [team-a]
      selector: {matchLabels: {s3.example.com/store: minio}}
  - name: chart-versitygw
    provider: {versitygw: {endpoint: "http://versitygw.storage:7070"}}
    auth: {secretRef: {name: versitygw-admin, namespace: storage}}
    namespaces: {selector: {matchExpressions: [{key: team, operator: Exists}]}}
  - name: chart-garage
    provider: {garage: {endpoint: "http://garage.storage:3900", adminEndpoint: "http://garage.storage:3903", region: garage}}
    auth: {secretRef: {name: garage-admin, namespace: storage, adminTokenKey: token}}
  - name: chart-aws.eu
    provider: {aws: {region: eu-west-1}}
    auth: {podIdentity: {}}
    namespaces: {names: [team-b]}
"#;

/// Renders; panics with helm's message when it fails.
fn render(release: &str, namespace: &str, extra: &[String]) -> (String, Vec<Value>) {
    let out = chart::template(release, namespace, extra).unwrap();
    assert!(out.ok, "helm template {extra:?} failed:\n{}", out.stderr);
    let docs = chart::documents(&out.stdout).unwrap();
    (out.stdout, docs)
}

/// Renders expecting a failure; returns helm's message.
fn render_err(extra: &[String]) -> String {
    let out: Rendered = chart::template("s3op", "ops", extra).unwrap();
    assert!(!out.ok, "helm template {extra:?} should have failed, but rendered:\n{}", out.stdout);
    out.stderr
}

fn all_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = all_of(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

/// The container's plain `name=value` variables.
fn env_value<'a>(docs: &'a [Value], name: &str) -> Option<&'a str> {
    container(docs)["env"].as_array().unwrap().iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str())
}

fn env_entry<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    container(docs)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the container's env"))
}

/// A Secret's `data` value, decoded.
fn decode(b64: &Value) -> String {
    let bytes: ByteString = serde_json::from_value(b64.clone()).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

/// The rules a watched-namespace Role of the chart must hold, exactly.
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["s3-resource-operator.io"], "resources": ["s3buckets", "s3users", "s3stores"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["s3-resource-operator.io"], "resources": ["s3buckets/status", "s3users/status", "s3stores/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch"]},
        // A store's CA bundle may be a ConfigMap key: read by name, never listed.
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The rules the cluster-wide ClusterRole must hold, exactly: the namespaced ones, ClusterS3Stores,
/// and the namespaces' labels their selectors match.
fn cluster_rules() -> Value {
    let mut rules = operator_rules();
    let extra = json!([
        {"apiGroups": ["s3-resource-operator.io"], "resources": ["clusters3stores"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["s3-resource-operator.io"], "resources": ["clusters3stores/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]);
    rules.as_array_mut().unwrap().extend(extra.as_array().unwrap().iter().cloned());
    rules
}

fn assert_no_wildcard(role: &Value) {
    let text = role["rules"].to_string();
    assert!(!text.contains('*'), "{} {} grants a wildcard: {text}", role["kind"], role["metadata"]["name"]);
}

/// `kubectl apply --dry-run=server` of `manifests`: the API server validates every object
/// (strict field validation: an unknown field fails) without storing it.
fn server_dry_run(manifests: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifests.yaml");
    std::fs::write(&path, manifests).unwrap();
    let out = cp().kubectl(&["apply", "--dry-run=server", "-f", &path.display().to_string()]).unwrap();
    assert!(
        out.status.success(),
        "the API server refused the rendered chart:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl(args).unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lint_passes_plain_and_strict() {
    for strict in [false, true] {
        for values in [vec![], inline_s3(), existing()] {
            let mut args = vec!["lint".to_string(), chart::CHART_DIR.to_string()];
            if strict {
                args.push("--strict".into());
            }
            args.extend(values.iter().cloned());
            let out = chart::helm(&args).unwrap();
            assert!(out.ok, "helm {args:?}:\n{}\n{}", out.stdout, out.stderr);
            assert!(out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"), "{}", out.stdout);
        }
    }
}

#[test]
fn inline_credentials_under_either_name_go_into_a_secret_only() {
    for (values, access, secret) in
        [(inline_s3(), "S3_ACCESS_KEY", "S3_SECRET_KEY"), (inline_root(), "ROOT_ACCESS_KEY", "ROOT_SECRET_KEY")]
    {
        let (_, docs) = render("s3op", "ops", &values);
        let created = one(&docs, "Secret");
        assert_eq!(created["metadata"]["name"], "s3op-s3-resource-operator");
        assert_eq!(created["metadata"]["namespace"], "ops");
        let data = created["data"].as_object().unwrap();
        assert_eq!(data.len(), 3, "{data:?}");
        assert_eq!(decode(&data["S3_ENDPOINT_URL"]), ENDPOINT);
        assert_eq!(decode(&data[access]), ACCESS_KEY);
        assert_eq!(decode(&data[secret]), SECRET_KEY);

        let deployment = one(&docs, "Deployment");
        assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "s3op-s3-resource-operator"}}]));
        let text = deployment.to_string();
        for literal in [ACCESS_KEY, SECRET_KEY, ENDPOINT] {
            assert!(!text.contains(literal), "the Deployment holds {literal:?} literally");
        }
        let checksum = &deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"];
        assert_eq!(checksum.as_str().unwrap().len(), 64, "checksum/secret: {checksum}");
    }
    // A changed credential changes the checksum, so the pods restart with it.
    let checksum = |extra: &[String]| {
        let (_, docs) = render("s3op", "ops", extra);
        one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"].clone()
    };
    let mut rotated = inline_s3();
    rotated.extend(set(&["operator.secret.data.S3_SECRET_KEY=rotated"]));
    assert_ne!(checksum(&inline_s3()), checksum(&rotated));
}

#[test]
fn an_existing_secret_is_referenced_and_not_created() {
    let (_, docs) = render("s3op", "ops", &existing());
    assert!(all_of(&docs, "Secret").is_empty());
    assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "my-s3-admin"}}]));
    let annotations = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations.get("checksum/secret").is_none(), "{annotations}");

    // On AWS the Secret may be absent: the AWS credential chain (IRSA) is used without it.
    let mut aws = existing();
    aws.extend(set(&["operator.backend_name=aws"]));
    let (_, docs) = render("s3op", "ops", &aws);
    assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "my-s3-admin", "optional": true}}]));
}

#[test]
fn missing_credentials_fail_naming_the_key() {
    let endpoint = format!("operator.secret.data.S3_ENDPOINT_URL={ENDPOINT}");
    let table = [
        (vec!["operator.secret.data.S3_ACCESS_KEY=a", "operator.secret.data.S3_SECRET_KEY=s"], "S3_ENDPOINT_URL"),
        (vec![endpoint.as_str(), "operator.secret.data.S3_SECRET_KEY=s"], "S3_ACCESS_KEY (or ROOT_ACCESS_KEY)"),
        (vec![endpoint.as_str(), "operator.secret.data.ROOT_ACCESS_KEY=a"], "S3_SECRET_KEY (or ROOT_SECRET_KEY)"),
        (vec![], "S3_ENDPOINT_URL"),
    ];
    for (pairs, key) in table {
        let err = render_err(&set(&pairs));
        assert!(err.contains(&format!("operator.secret.data.{key} is required")), "{pairs:?}: {err}");
        assert!(err.contains("operator.secret.create is true"), "{err}");
    }

    // AWS needs none of them (the AWS credential chain), but a half pair is a mistake.
    let (_, docs) = render("s3op", "ops", &set(&["operator.backend_name=AWS"]));
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("aws"));
    assert!(one(&docs, "Secret").get("data").is_none());
    let err = render_err(&set(&["operator.backend_name=aws", "operator.secret.data.S3_ACCESS_KEY=a"]));
    assert!(err.contains("give both S3_ACCESS_KEY (or ROOT_ACCESS_KEY) and S3_SECRET_KEY"), "{err}");

    // Garage also needs its admin API: the endpoint, and the token from a Secret.
    let mut garage = inline_s3();
    garage.extend(set(&["operator.backend_name=garage"]));
    let err = render_err(&garage);
    assert!(err.contains("operator.garage.adminEndpoint is required"), "{err}");
    garage.extend(set(&["operator.garage.adminEndpoint=http://garage:3903"]));
    let err = render_err(&garage);
    assert!(err.contains("operator.secret.data.GARAGE_ADMIN_TOKEN is required"), "{err}");
    let mut with_token = garage.clone();
    with_token.extend(set(&["operator.secret.data.GARAGE_ADMIN_TOKEN=tok"]));
    let (_, docs) = render("s3op", "ops", &with_token);
    assert_eq!(
        env_entry(&docs, "GARAGE_ADMIN_TOKEN")["valueFrom"],
        json!({"secretKeyRef": {"name": "s3op-s3-resource-operator", "key": "GARAGE_ADMIN_TOKEN"}})
    );
    garage
        .extend(set(&["operator.garage.adminToken.secretName=garage-admin", "operator.garage.adminToken.secretKey=t"]));
    let (_, docs) = render("s3op", "ops", &garage);
    assert_eq!(
        env_entry(&docs, "GARAGE_ADMIN_TOKEN")["valueFrom"],
        json!({"secretKeyRef": {"name": "garage-admin", "key": "t"}})
    );
    assert_eq!(env_value(&docs, "GARAGE_ADMIN_ENDPOINT"), Some("http://garage:3903"));
}

#[test]
fn create_false_without_a_name_fails_clearly() {
    for extra in [vec!["--set".to_string(), "operator.secret.create=false".to_string()], {
        let mut v = vec!["--set".to_string(), "operator.secret.create=false".to_string()];
        v.extend(set(&["operator.secret.name="]));
        v
    }] {
        let err = render_err(&extra);
        assert!(
            err.contains("operator.secret.name must name an existing Secret when operator.secret.create is false"),
            "{err}"
        );
    }
}

#[test]
fn typos_and_wrong_types_fail_through_the_schema() {
    let mut base = existing();
    let table: [(&[&str], &str); 9] = [
        (&["operator.backendName=minio"], "additional properties 'backendName' not allowed"),
        (&["operator.secret.crate=true"], "additional properties 'crate' not allowed"),
        (&["replicas=2"], "additional properties 'replicas' not allowed"),
        (&["serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (&["replicaCount=two"], "'/replicaCount': got string, want integer"),
        (&["metrics.service.port=http"], "'/metrics/service/port': got string, want integer"),
        (&["operator.secret.create=yes"], "'/operator/secret/create': got string, want boolean"),
        (&["operator.backend_name=ceph"], "'/operator/backend_name': 'ceph' does not match pattern"),
        (&["operator.logLevel=verbose"], "'/operator/logLevel': value must be one of"),
    ];
    for (pairs, want) in table {
        // --set-string keeps "true"/"2" strings, so the type errors are really type errors.
        let mut args = base.clone();
        args.extend(set(pairs));
        let err = render_err(&args);
        assert!(err.contains("values don't meet the specifications of the schema"), "{pairs:?}: {err}");
        assert!(err.contains(want), "{pairs:?}: expected {want:?} in: {err}");
    }
    base.extend(set(&["operator.logFormat=yaml"]));
    assert!(render_err(&base).contains("'/operator/logFormat': value must be one of 'text', 'json'"));
}

#[test]
fn every_old_value_keeps_its_meaning() {
    // The older chart's values file as users copied it (service and ingress were in it, unused).
    let (_dir, file) = values_file(
        r#"
replicaCount: 1
image: {repository: registry.example.com/s3op, pullPolicy: Always, tag: "9.9.9"}
imagePullSecrets: [{name: regcred}]
nameOverride: s3op
fullnameOverride: ""
serviceAccount: {create: false, annotations: {}, name: existing-sa}
podAnnotations: {reloader.stakater.com/auto: "true"}
podSecurityContext: {runAsNonRoot: true, runAsUser: 4242, fsGroup: 4242, seccompProfile: {type: RuntimeDefault}}
securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 4242}
service: {type: ClusterIP, port: 80}
ingress: {enabled: false, className: "", annotations: {}, hosts: [{host: chart-example.local, paths: [{path: /, pathType: ImplementationSpecific}]}], tls: []}
resources: {limits: {cpu: 100m, memory: 128Mi}, requests: {cpu: 100m, memory: 128Mi}}
nodeSelector: {disk: ssd}
tolerations: [{key: k, operator: Exists}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]}}}
operator:
  logLevel: CRITICAL
  annotation_key: example.com/s3-enabled
  backend_name: MinIO
  args: ["--reconcile-concurrency", "2"]
  secret:
    create: true
    name: my-admin
    data: {S3_ENDPOINT_URL: "http://minio:9000", ROOT_ACCESS_KEY: admin, ROOT_SECRET_KEY: password123}
metrics:
  service: {enabled: true, port: 9090, annotations: {prometheus.io/scrape: "true"}}
serviceMonitor:
  enabled: true
  additionalLabels: {prometheus: kube-prometheus}
  annotations: {a: b1}
  interval: 1m
  scrapeTimeout: 20s
  metricRelabelings: [{action: keep, sourceLabels: [__name__], regex: "s3_operator_.*"}]
  relabelings: [{action: labeldrop, regex: pod}]
"#,
    );
    let (_, docs) = render("old", "ops", &file);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "old-s3op");
    assert_eq!(deployment["metadata"]["labels"]["app.kubernetes.io/name"], "s3op");
    let c = container(&docs);
    assert_eq!(c["image"], "registry.example.com/s3op:9.9.9");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["args"], json!(["--reconcile-concurrency", "2"]));
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(c["securityContext"]["runAsUser"], 4242);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["reloader.stakater.com/auto"], "true");
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["spec"]["serviceAccountName"], "existing-sa");
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 4242);
    assert_eq!(pod["spec"]["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(pod["spec"]["tolerations"], json!([{"key": "k", "operator": "Exists"}]));
    assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
    assert_eq!(env_value(&docs, "LOG_LEVEL"), Some("ERROR"), "CRITICAL has no level of its own: ERROR");
    assert_eq!(env_value(&docs, "ANNOTATION_KEY"), Some("example.com/s3-enabled"));
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("minio"));
    assert!(all_of(&docs, "ServiceAccount").is_empty(), "serviceAccount.create=false");
    assert_eq!(one(&docs, "ClusterRoleBinding")["subjects"][0]["name"], "existing-sa");

    let secret = one(&docs, "Secret");
    assert_eq!(secret["metadata"]["name"], "my-admin");
    assert_eq!(decode(&secret["data"]["ROOT_SECRET_KEY"]), "password123");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "my-admin");

    let service = one(&docs, "Service");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http-metrics", "port": 9090, "targetPort": "http-metrics", "protocol": "TCP"}])
    );
    assert_eq!(service["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["prometheus"], "kube-prometheus");
    assert_eq!(monitor["metadata"]["annotations"]["a"], "b1");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "http-metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!((&endpoint["interval"], &endpoint["scrapeTimeout"]), (&json!("1m"), &json!("20s")));
    assert_eq!(endpoint["metricRelabelings"][0]["regex"], "s3_operator_.*");
    assert_eq!(endpoint["relabelings"][0]["action"], "labeldrop");
    // The ServiceMonitor selects the metrics Service and nothing else.
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "{k}");
    }

    // Defaults of the older chart: image tag from appVersion, Secret named after the release.
    let (_, docs) = render("s3op", "ops", &inline_s3());
    let chart_yaml =
        std::fs::read_to_string(s3op_tests::workspace_root().join(chart::CHART_DIR).join("Chart.yaml")).unwrap();
    let app_version = chart_yaml.lines().find_map(|l| l.strip_prefix("appVersion: ")).unwrap().trim_matches('"');
    assert_eq!(container(&docs)["image"], format!("ghcr.io/runningman84/s3-resource-operator:{app_version}"));
    assert_eq!(env_value(&docs, "LOG_LEVEL"), Some("INFO"));
    assert_eq!(env_value(&docs, "ANNOTATION_KEY"), Some("s3-resource-operator.io/enabled"));
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("versitygw"));
    assert_eq!(one(&docs, "Service")["spec"]["ports"][0]["port"], 8000);
    assert!(all_of(&docs, "ServiceMonitor").is_empty());
    assert_eq!(one(&docs, "ServiceAccount")["metadata"]["name"], "s3op-s3-resource-operator");

    let mut off = existing();
    off.extend(["--set".to_string(), "metrics.service.enabled=false".to_string()]);
    let (_, docs) = render("s3op", "ops", &off);
    assert!(all_of(&docs, "Service").is_empty());
    off.extend(["--set".to_string(), "serviceMonitor.enabled=true".to_string()]);
    assert!(render_err(&off).contains("serviceMonitor.enabled needs metrics.service.enabled=true"));
}

#[test]
fn new_values_reach_the_operator_environment() {
    let (_dir, file) = values_file(&all_features("apps", true));
    let (_, docs) = render("s3op", "ops", &file);
    let expect = [
        ("BACKEND_NAME", "garage"),
        ("ANNOTATION_KEY", "legacy.example.com/s3"),
        ("LOG_LEVEL", "WARNING"),
        ("LOG_FORMAT", "json"),
        ("S3_REGION", "garage"),
        ("GARAGE_ADMIN_ENDPOINT", "http://garage.storage:3903"),
        ("CRD_MODE", "true"),
        ("COMPAT_MODE", "true"),
        ("ENFORCE_ENDPOINT_CHECK", "false"),
        ("COMPAT_ALLOWED_ROLES", "user,userplus"),
        ("ADOPT_NAMESPACES", "legacy,infra"),
        ("WATCH_NAMESPACE", "apps"),
        ("MARKER_BUCKET", "s3op-markers-test"),
        ("RESYNC_INTERVAL", "1m"),
        ("RECONCILE_CONCURRENCY", "4"),
        ("LEADER_ELECTION", "true"),
        ("LEADER_ELECTION_NAMESPACE", "ops"),
        ("LEADER_ELECTION_LEASE_NAME", "s3op-lease"),
        ("LEADER_ELECTION_LEASE_DURATION", "20s"),
        ("RUST_BACKTRACE", "1"),
    ];
    for (name, value) in expect {
        assert_eq!(env_value(&docs, name), Some(value), "{name}");
    }
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);

    // Defaults: the binary's own, leader election on, no region/adoption/watch namespace.
    let (_, docs) = render("s3op", "ops", &existing());
    for (name, value) in [
        ("CRD_MODE", "true"),
        ("COMPAT_MODE", "true"),
        ("ENFORCE_ENDPOINT_CHECK", "true"),
        ("COMPAT_ALLOWED_ROLES", "user"),
        ("MARKER_BUCKET", "s3-resource-operator-markers"),
        ("RESYNC_INTERVAL", "5m"),
        ("RECONCILE_CONCURRENCY", "8"),
        ("LOG_FORMAT", "json"),
        ("LEADER_ELECTION", "true"),
        ("LEADER_ELECTION_LEASE_NAME", "s3op-s3-resource-operator"),
        ("LEADER_ELECTION_LEASE_DURATION", "15s"),
    ] {
        assert_eq!(env_value(&docs, name), Some(value), "{name}");
    }
    for absent in ["S3_REGION", "ADOPT_NAMESPACES", "WATCH_NAMESPACE", "GARAGE_ADMIN_TOKEN"] {
        assert!(env_value(&docs, absent).is_none(), "{absent} set by default");
    }
    assert!(all_of(&docs, "PodDisruptionBudget").is_empty());
    assert!(one(&docs, "Deployment")["spec"].get("strategy").is_none());

    // Without leader election: no Lease rights, never two pods at once, and one replica only.
    let mut no_le = existing();
    no_le.extend(["--set".to_string(), "leaderElection.enabled=false".to_string()]);
    let (_, docs) = render("s3op", "ops", &no_le);
    assert_eq!(env_value(&docs, "LEADER_ELECTION"), Some("false"));
    assert!(env_value(&docs, "LEADER_ELECTION_LEASE_NAME").is_none());
    assert!(all_of(&docs, "Role").is_empty());
    assert_eq!(one(&docs, "Deployment")["spec"]["strategy"], json!({"type": "Recreate"}));
    no_le.extend(["--set".to_string(), "replicaCount=3".to_string()]);
    assert!(render_err(&no_le).contains("replicaCount above 1 needs leaderElection.enabled=true"));

    // The PodDisruptionBudget: maxUnavailable unless minAvailable is given; 0 is a real value.
    let mut pdb = existing();
    pdb.extend(["--set".to_string(), "podDisruptionBudget.enabled=true".to_string()]);
    let (_, docs) = render("s3op", "ops", &pdb);
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    assert!(one(&docs, "PodDisruptionBudget")["spec"].get("minAvailable").is_none());
    pdb.extend(["--set".to_string(), "podDisruptionBudget.maxUnavailable=0".to_string()]);
    let (_, docs) = render("s3op", "ops", &pdb);
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"], 0);
    pdb.extend(set(&["podDisruptionBudget.minAvailable=50%"]));
    let (_, docs) = render("s3op", "ops", &pdb);
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"],
        json!({"minAvailable": "50%", "selector": {"matchLabels": {"app.kubernetes.io/name": "s3-resource-operator", "app.kubernetes.io/instance": "s3op"}}})
    );
}

#[test]
fn rbac_is_exactly_what_the_operator_uses() {
    let (_, docs) = render("s3op", "ops", &existing());
    let cluster_role = one(&docs, "ClusterRole");
    assert_eq!(cluster_role["rules"], cluster_rules());
    assert_no_wildcard(cluster_role);
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "s3op-s3-resource-operator"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "s3op-s3-resource-operator", "namespace": "ops"}])
    );

    // Leader election: a Role in the release namespace for the operator's Lease only.
    let lease_role = one(&docs, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert_eq!(
        lease_role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["s3op-s3-resource-operator"], "verbs": ["get", "patch", "update"]},
        ])
    );
    assert_no_wildcard(lease_role);
    assert_eq!(one(&docs, "RoleBinding")["roleRef"]["name"], lease_role["metadata"]["name"]);

    // A watched namespace: the same rules as a Role there, nothing cluster-wide.
    let (_dir, file) = values_file(&all_features("apps", true));
    let (_, docs) = render("s3op", "ops", &file);
    assert!(all_of(&docs, "ClusterRole").is_empty() && all_of(&docs, "ClusterRoleBinding").is_empty());
    let roles = all_of(&docs, "Role");
    assert_eq!(roles.len(), 2);
    for role in &roles {
        assert_no_wildcard(role);
    }
    let watched = roles.iter().find(|r| r["metadata"]["namespace"] == "apps").unwrap();
    assert_eq!(watched["rules"], operator_rules());
    let lease = roles.iter().find(|r| r["metadata"]["namespace"] == "ops").unwrap();
    assert_eq!(lease["rules"][1]["resourceNames"], json!(["s3op-lease"]));
    let watched_binding =
        all_of(&docs, "RoleBinding").into_iter().find(|b| b["metadata"]["namespace"] == "apps").unwrap();
    assert_eq!(watched_binding["subjects"][0]["namespace"], "ops");
}

#[test]
fn the_deployment_is_locked_down_and_probed() {
    for values in [inline_s3(), existing()] {
        let (_, docs) = render("s3op", "ops", &values);
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"],
            json!({"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}})
        );
        let c = container(&docs);
        assert_eq!(
            c["securityContext"],
            json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            })
        );
        assert_eq!(c["ports"], json!([{"name": "http-metrics", "containerPort": 8000, "protocol": "TCP"}]));
        assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http-metrics"}));
        assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http-metrics"}));
        for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
            assert_eq!(env_entry(&docs, name)["valueFrom"], json!({"fieldRef": {"fieldPath": field}}));
        }
        // Credentials reach the container only from a Secret: no variable carries a key.
        let credentials =
            ["S3_ACCESS_KEY", "ROOT_ACCESS_KEY", "S3_SECRET_KEY", "ROOT_SECRET_KEY", "GARAGE_ADMIN_TOKEN"];
        for e in c["env"].as_array().unwrap() {
            if credentials.contains(&e["name"].as_str().unwrap()) {
                assert!(e.get("value").is_none() && e["valueFrom"]["secretKeyRef"].is_object(), "{e}");
            }
        }
        let text = one(&docs, "Deployment").to_string();
        assert!(!text.contains(ACCESS_KEY) && !text.contains(SECRET_KEY), "a credential in the Deployment");
    }
}

#[test]
fn cluster_stores_render_one_cluster_s3_store_per_item() {
    let (_dir, mut values) = values_file(CLUSTER_STORES);
    values.extend(existing());
    let (_, docs) = render("s3op", "ops", &values);
    let stores = all_of(&docs, "ClusterS3Store");
    let names: Vec<&str> = stores.iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chart-minio", "chart-versitygw", "chart-garage", "chart-aws.eu"]);
    for store in &stores {
        assert_eq!(store["apiVersion"], "s3-resource-operator.io/v1alpha1");
        assert!(store["metadata"].get("namespace").is_none(), "a ClusterS3Store is cluster-scoped: {store}");
        assert_eq!(store["metadata"]["labels"]["app.kubernetes.io/instance"], "s3op");
        assert_eq!(store["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
    }
    // The spec is the item as given, less its name.
    assert_eq!(
        stores[0]["spec"],
        json!({
            "provider": {"minio": {"endpoint": "http://minio.storage:9000", "region": "us-east-1"}},
            "auth": {"secretRef": {"name": "minio-admin", "namespace": "storage", "accessKeyIdKey": "user", "secretAccessKeyKey": "password"}},
            "markerBucket": "chart-markers",
            "adoptNamespaces": ["legacy"],
            "namespaces": {"names": ["team-a"], "selector": {"matchLabels": {"s3.example.com/store": "minio"}}},
        })
    );
    assert_eq!(
        stores[2]["spec"],
        json!({
            "provider": {"garage": {"endpoint": "http://garage.storage:3900", "adminEndpoint": "http://garage.storage:3903", "region": "garage"}},
            "auth": {"secretRef": {"name": "garage-admin", "namespace": "storage", "adminTokenKey": "token"}},
        })
    );
    assert_eq!(
        stores[3]["spec"],
        json!({"provider": {"aws": {"region": "eu-west-1"}}, "auth": {"podIdentity": {}}, "namespaces": {"names": ["team-b"]}})
    );
    // The stores change nothing else: the default store is configured as without them.
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("versitygw"));
    assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "my-s3-admin"}}]));

    // None by default.
    let (_, docs) = render("s3op", "ops", &existing());
    assert!(all_of(&docs, "ClusterS3Store").is_empty());

    // helm lint --strict takes them too.
    let mut args = vec!["lint".to_string(), chart::CHART_DIR.to_string(), "--strict".to_string()];
    args.extend(values.iter().cloned());
    let out = chart::helm(&args).unwrap();
    assert!(out.ok, "helm {args:?}:\n{}\n{}", out.stdout, out.stderr);
}

#[test]
fn a_bad_cluster_store_fails_naming_the_value() {
    let store = "provider: {minio: {endpoint: \"http://minio:9000\"}}, auth: {secretRef: {name: a, namespace: b}}";
    let table = [
        (
            "clusterStores: [{name: a, auth: {secretRef: {name: a, namespace: b}}}]".to_string(),
            "at '/clusterStores/0': missing property 'provider'",
        ),
        (
            format!("clusterStores: [{{name: a, {store}}}, {{name: b, provider: {{aws: {{region: x}}}}}}]"),
            "at '/clusterStores/1': missing property 'auth'",
        ),
        (format!("clusterStores: [{{{store}}}]"), "at '/clusterStores/0': missing property 'name'"),
        (
            format!("clusterStores: [{{name: a, {store}, namespace: [x]}}]"),
            "at '/clusterStores/0': additional properties 'namespace' not allowed",
        ),
        (
            format!("clusterStores: [{{name: a, {store}, namespaces: {{labels: {{a: b}}}}}}]"),
            "at '/clusterStores/0/namespaces': additional properties 'labels' not allowed",
        ),
        (
            "clusterStores: [{name: a, provider: {s3: {}}, auth: {podIdentity: {}}}]".to_string(),
            "at '/clusterStores/0/provider': additional properties 's3' not allowed",
        ),
        (
            "clusterStores: [{name: a, provider: {aws: {region: x}, minio: {}}, auth: {podIdentity: {}}}]".to_string(),
            "at '/clusterStores/0/provider': maxProperties",
        ),
        (
            "clusterStores: [{name: a, provider: {aws: {region: x}}, auth: {podIdentity: {}, secretRef: {}}}]"
                .to_string(),
            "at '/clusterStores/0/auth': maxProperties",
        ),
        (
            "clusterStores: [{name: a, provider: {aws: {region: x}}, auth: []}]".to_string(),
            "at '/clusterStores/0/auth': got array, want object",
        ),
        (
            format!("clusterStores: [{{name: Bad_Name, {store}}}]"),
            "at '/clusterStores/0/name': 'Bad_Name' does not match pattern",
        ),
        (format!("clusterStores: {{a: {{name: a, {store}}}}}"), "at '/clusterStores': got object, want array"),
    ];
    for (yaml, want) in table {
        let (_dir, mut values) = values_file(&yaml);
        values.extend(existing());
        let err = render_err(&values);
        assert!(err.contains("values don't meet the specifications of the schema"), "{yaml}: {err}");
        assert!(err.contains(want), "{yaml}: expected {want:?} in: {err}");
    }
}

#[test]
fn without_a_default_store_no_backend_and_no_credentials_secret() {
    // backend_name "" with the rest at their defaults (which with a backend fail for want of
    // credentials), with create=false and no name, and with credentials and Garage values left
    // in: none of them is used.
    let (_dir, leftovers) = values_file(&format!(
        r#"
operator:
  backend_name: ""
  secret:
    data: {{S3_ENDPOINT_URL: "{ENDPOINT}", S3_ACCESS_KEY: {ACCESS_KEY}, S3_SECRET_KEY: {SECRET_KEY}}}
  garage:
    adminEndpoint: http://garage.storage:3903
"#
    ));
    let mut create_false = vec!["--set".to_string(), "operator.secret.create=false".to_string()];
    create_false.extend(set(&["operator.backend_name="]));
    for values in [set(&["operator.backend_name="]), create_false, leftovers] {
        let (text, docs) = render("s3op", "ops", &values);
        assert!(all_of(&docs, "Secret").is_empty(), "{values:?}: a credentials Secret was rendered");
        let c = container(&docs);
        assert!(c.get("envFrom").is_none(), "{values:?}: envFrom {}", c["envFrom"]);
        for absent in ["BACKEND_NAME", "GARAGE_ADMIN_ENDPOINT", "GARAGE_ADMIN_TOKEN", "DEFAULT_STORE_NAME"] {
            assert!(c["env"].as_array().unwrap().iter().all(|e| e["name"] != absent), "{values:?}: {absent} set");
        }
        assert!(
            one(&docs, "Deployment")["spec"]["template"]["metadata"].get("annotations").is_none(),
            "{values:?}: no Secret, so no checksum/secret"
        );
        assert!(!text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY), "{values:?}: a credential was rendered");
        // The rest of the operator's configuration is as with a default store.
        assert_eq!(env_value(&docs, "COMPAT_MODE"), Some("true"));
        assert_eq!(env_value(&docs, "CRD_MODE"), Some("true"));
        assert_eq!(one(&docs, "ClusterRole")["rules"], cluster_rules());
    }
    // The name of the default store in objects' status, when there is one.
    let mut named = existing();
    named.extend(set(&["operator.defaultStoreName=legacy"]));
    let (_, docs) = render("s3op", "ops", &named);
    assert_eq!(env_value(&docs, "DEFAULT_STORE_NAME"), Some("legacy"));
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("versitygw"));
}

#[test]
fn the_default_backend_still_configures_the_default_store() {
    // Default values alone still fail for want of the store's credentials, as before.
    let err = render_err(&[]);
    assert!(err.contains("operator.secret.data.S3_ENDPOINT_URL is required"), "{err}");

    let (_, docs) = render("s3op", "ops", &existing());
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("versitygw"));
    assert_eq!(container(&docs)["env"][0]["name"], "BACKEND_NAME", "BACKEND_NAME first, as before");
    assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "my-s3-admin"}}]));
    assert!(env_value(&docs, "DEFAULT_STORE_NAME").is_none(), "DEFAULT_STORE_NAME set by default");

    let (_, docs) = render("s3op", "ops", &inline_s3());
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("versitygw"));
    assert_eq!(container(&docs)["envFrom"], json!([{"secretRef": {"name": "s3op-s3-resource-operator"}}]));
    assert_eq!(one(&docs, "Secret")["metadata"]["name"], "s3op-s3-resource-operator");
    let annotations = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["checksum/secret"].as_str().unwrap().len(), 64, "{annotations}");
}

#[test]
fn deploy_operator_yaml_is_current() {
    let want = chart::operator_manifest().unwrap();
    let have = std::fs::read_to_string(chart::operator_manifest_path()).unwrap_or_default();
    assert!(have == want, "{} is stale: run `cargo xtask render` and commit the result", chart::OPERATOR_MANIFEST);
    assert!(have.starts_with("# Generated by `cargo xtask render`"));
    let docs = chart::documents(&have).unwrap();
    assert!(all_of(&docs, "Secret").is_empty(), "the plain manifest must not carry credentials");
    assert_eq!(container(&docs)["envFrom"][0]["secretRef"]["name"], chart::CREDENTIALS_SECRET);
    for d in &docs {
        if d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding" {
            assert_eq!(d["metadata"]["namespace"], chart::NAMESPACE, "{} {}", d["kind"], d["metadata"]["name"]);
        }
    }
}

/// A ServiceMonitor CRD with the fields of prometheus-operator's that the chart uses (and
/// structural, so the API server's strict field validation refuses a misspelt one).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              properties:
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      metricRelabelings: &relabel
                        type: array
                        items:
                          type: object
                          properties:
                            action: {type: string}
                            modulus: {type: integer}
                            regex: {type: string}
                            replacement: {type: string}
                            separator: {type: string}
                            sourceLabels: {type: array, items: {type: string}}
                            targetLabel: {type: string}
                      relabelings: *relabel
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_the_rendered_manifests() {
    let cp = cp();
    // A ServiceMonitor CRD, so the ServiceMonitor is validated too (server-side apply: harmless
    // when another run installed it already).
    let dir = tempfile::tempdir().unwrap();
    let crd = dir.path().join("servicemonitor-crd.yaml");
    std::fs::write(&crd, SERVICE_MONITOR_CRD).unwrap();
    kubectl_ok(cp, &["apply", "--server-side", "--force-conflicts", "-f", &crd.display().to_string()]);
    kubectl_ok(
        cp,
        &["wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com"],
    );

    let cases: Vec<(&str, Vec<String>)> =
        vec![("inline", inline_s3()), ("root", inline_root()), ("existing", existing())];
    for (name, values) in cases {
        let ns = cp.namespace(&format!("chart-{name}")).await.unwrap();
        let (text, docs) = render("s3op", &ns, &values);
        assert!(docs.iter().any(|d| d["kind"] == "Deployment"));
        server_dry_run(&text);
    }
    let ns = cp.namespace("chart-all").await.unwrap();
    let watched = cp.namespace("chart-all-watched").await.unwrap();
    let (_dir, file) = values_file(&all_features(&watched, true));
    let (text, docs) = render("s3op", &ns, &file);
    for kind in ["ServiceMonitor", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "Secret", "ServiceAccount"]
    {
        assert!(docs.iter().any(|d| d["kind"] == kind), "{kind} missing from the all-features rendering");
    }
    server_dry_run(&text);
    // The plain manifest too (its namespace must exist).
    if cp.kubectl(&["get", "namespace", chart::NAMESPACE]).unwrap().status.success() {
        // already there from an earlier run of this binary's control plane
    } else {
        kubectl_ok(cp, &["create", "namespace", chart::NAMESPACE]);
    }
    server_dry_run(&std::fs::read_to_string(chart::operator_manifest_path()).unwrap());
}

/// The ClusterS3Stores the chart renders are ones the API server takes (CRD schema and CEL rules
/// included), next to an operator with no default store; what only the CRD can judge is left
/// to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_the_rendered_cluster_stores() {
    let cp = cp();
    let ns = cp.namespace("chart-stores").await.unwrap();
    let (_dir, mut values) = values_file(CLUSTER_STORES);
    values.extend(set(&["operator.backend_name="]));
    let (text, docs) = render("s3op", &ns, &values);
    assert_eq!(all_of(&docs, "ClusterS3Store").len(), 4);
    assert!(all_of(&docs, "Secret").is_empty());
    server_dry_run(&text);

    // The schema checks the keys; the CRD the content: a ClusterS3Store must name its Secret's
    // namespace.
    let (_dir, values) = values_file(
        r#"
operator: {backend_name: ""}
clusterStores: [{name: chart-no-secret-namespace, provider: {minio: {endpoint: "http://minio:9000"}}, auth: {secretRef: {name: admin}}}]
"#,
    );
    let (text, _) = render("s3op", &ns, &values);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifests.yaml");
    std::fs::write(&path, text).unwrap();
    let out = cp.kubectl(&["apply", "--dry-run=server", "-f", &path.display().to_string()]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the API server took a ClusterS3Store without the Secret's namespace");
    assert!(stderr.contains("a ClusterS3Store must name the namespace of its Secret"), "{stderr}");
}

/// The operator, run under the chart's ServiceAccount with only the chart's RBAC, does its whole
/// job: custom resources, credentials Secret, compatibility Secret, events, its leader Lease,
/// cleanup; and what it has no business doing is refused with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_works_with_only_the_charts_rights() {
    // Cluster-wide, as the chart installs it: on a control plane of its own, or it would
    // reconcile every other suite's objects.
    let cp = &ControlPlane::start().await.unwrap();
    let ns = cp.namespace("chart-rbac").await.unwrap();
    let fullname = format!("op-{ns}");
    let mut values = existing();
    values.extend(set(&[&format!("fullnameOverride={fullname}")]));
    let (text, docs) = render("s3op", &ns, &values);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.yaml");
    // Everything but the Deployment: no kubelet here; the operator runs in this process instead.
    let without_deployment: Vec<&str> = text.split("\n---").filter(|d| !d.contains("\nkind: Deployment")).collect();
    std::fs::write(&path, without_deployment.join("\n---")).unwrap();
    kubectl_ok(cp, &["apply", "-f", &path.display().to_string()]);
    assert_eq!(one(&docs, "ServiceAccount")["metadata"]["name"], fullname.as_str());

    // What the chart grants, and what it does not.
    let sa = format!("system:serviceaccount:{ns}:{fullname}");
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&cp.kubectl(&all).unwrap().stdout).trim().to_string()
    };
    let own_lease = format!("leases.coordination.k8s.io/{fullname}");
    let ns_ = ns.as_str();
    for (args, want) in [
        (&["patch", "secrets", "-A"][..], "yes"),
        (&["watch", "s3buckets.s3-resource-operator.io", "-A"][..], "yes"),
        (&["patch", "s3users.s3-resource-operator.io", "--subresource=status", "-A"][..], "yes"),
        (&["create", "events.events.k8s.io", "-n", "default"][..], "yes"),
        (&["create", "leases.coordination.k8s.io", "-n", ns_][..], "yes"),
        (&["update", own_lease.as_str(), "-n", ns_][..], "yes"),
        (&["get", "leases.coordination.k8s.io/someone-else", "-n", ns_][..], "no"),
        (&["create", "leases.coordination.k8s.io", "-n", "default"][..], "no"),
        (&["delete", "secrets", "-A"][..], "no"),
        (&["create", "secrets", "-A"][..], "yes"),
        (&["update", "secrets", "-A"][..], "no"),
        (&["delete", "s3buckets.s3-resource-operator.io", "-A"][..], "no"),
        (&["create", "s3buckets.s3-resource-operator.io", "-A"][..], "no"),
        // Namespaces' labels: a ClusterS3Store may allow namespaces by selector.
        (&["list", "namespaces"][..], "yes"),
        (&["patch", "namespaces"][..], "no"),
        (&["watch", "clusters3stores.s3-resource-operator.io"][..], "yes"),
        (&["patch", "clusters3stores.s3-resource-operator.io", "--subresource=status"][..], "yes"),
        (&["delete", "clusters3stores.s3-resource-operator.io"][..], "no"),
        (&["create", "s3stores.s3-resource-operator.io", "-A"][..], "no"),
        (&["list", "pods", "-A"][..], "no"),
        (&["create", "events", "-n", "default"][..], "no"),
    ] {
        assert_eq!(can(args), want, "kubectl auth can-i {args:?} as the chart's ServiceAccount");
    }

    // A client with the ServiceAccount's token and nothing else.
    let token = kubectl_ok(cp, &["-n", &ns, "create", "token", &fullname, "--duration=1h"]);
    let mut kubeconfig: Value = yaml_serde::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] = json!({"token": token.trim()});
    let sa_kubeconfig = dir.path().join("sa.kubeconfig");
    std::fs::write(&sa_kubeconfig, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    let sa_client = client_from_kubeconfig(&sa_kubeconfig).await.unwrap();

    let store = start(StoreKind::Minio).await;
    // Cluster-wide, as the chart installs it: list and watch across namespaces need the ClusterRole.
    let mut args = store_args(&store);
    args.extend(["--resync-interval", "3s", "--marker-bucket", &unique_name("chart-markers")].map(str::to_string));
    // With leader election on the chart's Lease (its name defaults to the release's full name).
    args.extend(
        [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-name",
            fullname.as_str(),
            "--pod-name",
            "chart-operator",
        ]
        .map(str::to_string),
    );
    let operator = Operator::start_with(sa_client.clone(), args).await.unwrap();

    // What the identity cannot do, asked for real: each answered 403.
    {
        use k8s_openapi::api::{
            apps::v1::Deployment,
            core::v1::{ConfigMap, Namespace},
        };
        let forbidden = |r: Result<(), kube::Error>, what: &str| match r {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => panic!("{what}: expected 403, got {other:?}"),
        };
        let namespaces: Api<Namespace> = Api::all(sa_client.clone());
        forbidden(namespaces.delete("default", &DeleteParams::default()).await.map(|_| ()), "delete a namespace");
        let deployments: Api<Deployment> = Api::namespaced(sa_client.clone(), &ns);
        forbidden(
            deployments
                .patch("anything", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}})))
                .await
                .map(|_| ()),
            "patch a Deployment",
        );
        let configmaps: Api<ConfigMap> = Api::namespaced(sa_client.clone(), "kube-system");
        // One ConfigMap by name is readable (a store's CA bundle); listing them is not.
        forbidden(configmaps.list(&ListParams::default()).await.map(|_| ()), "list ConfigMaps");
        forbidden(
            configmaps
                .patch("kube-root-ca.crt", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "y"}})))
                .await
                .map(|_| ()),
            "patch a ConfigMap",
        );
        let secrets_sa: Api<Secret> = Api::namespaced(sa_client.clone(), &ns);
        forbidden(secrets_sa.delete("anything", &DeleteParams::default()).await.map(|_| ()), "delete a Secret");
    }

    let admin = cp.client().await.unwrap();
    let pp = PatchParams::apply("chart-test").force();
    let buckets: Api<S3Bucket> = Api::namespaced(admin.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(admin.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let bucket_name = unique_name("chart-bucket");
    let bucket = json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3Bucket",
        "metadata": {"name": "data"}, "spec": {"bucketName": bucket_name, "deletionPolicy": "Delete"},
    });
    buckets.patch("data", &pp, &Patch::Apply(&bucket)).await.unwrap();
    let user = json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3User",
        "metadata": {"name": "app"},
        "spec": {"access": [{"bucket": "data", "permission": "ReadWrite"}], "secretName": "app-creds"},
    });
    users.patch("app", &pp, &Patch::Apply(&user)).await.unwrap();
    let compat_bucket = unique_name("chart-compat");
    let compat = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "legacy", "annotations": {"s3-resource-operator.io/enabled": "true"}},
        "stringData": {"bucket-name": compat_bucket, "access-key": "chartlegacyuser", "secret-key": "chart-legacy-secret-key-0123456789"},
    });
    secrets.patch("legacy", &pp, &Patch::Apply(&compat)).await.unwrap();

    let ready = |status: &Option<Value>| {
        status
            .as_ref()
            .and_then(|s| s["conditions"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    let what = "S3Bucket and S3User Ready, credentials Secret written, compat Secret provisioned";
    wait_until(what, TIMEOUT, || async {
        let b = buckets.get("data").await.unwrap();
        let u = users.get("app").await.unwrap();
        let creds = secrets.get_opt("app-creds").await.unwrap();
        let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
        let provisioned = events.list(&ListParams::default()).await.unwrap().items.iter().any(|e| {
            e.reason.as_deref() == Some("Provisioned")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("legacy")
        });
        ready(&b.status.map(|s| serde_json::to_value(s).unwrap()))
            && ready(&u.status.map(|s| serde_json::to_value(s).unwrap()))
            && creds.is_some_and(|s| s.data.unwrap_or_default().contains_key("AWS_ACCESS_KEY_ID"))
            && provisioned
    })
    .await
    .unwrap();

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(admin.clone(), &ns);
    let lease = leases.get(&fullname).await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("chart-operator"), "the Lease holder");

    // Cleanup runs through the finalizers (patch rights), and the bucket goes from the store.
    users.delete("app", &DeleteParams::default()).await.unwrap();
    buckets.delete("data", &DeleteParams::default()).await.unwrap();
    wait_until("S3User and S3Bucket gone", TIMEOUT, || async {
        users.get_opt("app").await.unwrap().is_none() && buckets.get_opt("data").await.unwrap().is_none()
    })
    .await
    .unwrap();
    let gone = store.s3_client().head_bucket().bucket(&bucket_name).send().await;
    assert!(gone.is_err(), "bucket {bucket_name} still on the store after deletionPolicy Delete");
    operator.stop().await.unwrap();

    let cluster_scoped = format!("clusterrole/{fullname}");
    let binding = format!("clusterrolebinding/{fullname}");
    kubectl_ok(cp, &["delete", &cluster_scoped, &binding]);
}

/// `helm install --dry-run=server` against the control plane: the release renders as a real
/// install would, NOTES included, and tells the user what to do next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_notes_say_what_to_do_next() {
    let cp = cp();
    for (name, values, secret_line) in [
        ("notes-inline", inline_s3(), "made by this chart"),
        ("notes-existing", existing(), "kubectl -n NS create secret generic my-s3-admin"),
    ] {
        let ns = cp.namespace(name).await.unwrap();
        let mut args: Vec<String> = [
            "install",
            "s3op",
            chart::CHART_DIR,
            "--namespace",
            &ns,
            "--dry-run=server",
            "--set",
            "crds.install=false",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        args.push(format!("--kubeconfig={}", cp.kubeconfig().display()));
        args.extend(values);
        let out = chart::helm(&args).unwrap();
        assert!(out.ok, "helm {args:?}:\n{}", out.stderr);
        let notes = &out.stdout[out.stdout.find("NOTES:").expect("no NOTES in helm install output")..];
        for want in [
            format!("kubectl -n {ns} rollout status deployment/s3op-s3-resource-operator"),
            secret_line.replace("NS", &ns),
            "kind: S3User".to_string(),
            "The user's credentials appear in the Secret \"app-s3-credentials\"".to_string(),
            "get events --field-selector reportingComponent=s3-resource-operator".to_string(),
            format!("kubectl -n {ns} port-forward service/s3op-s3-resource-operator-metrics 8000"),
        ] {
            assert!(notes.contains(&want), "NOTES lack {want:?}:\n{notes}");
        }
        assert!(!notes.contains(SECRET_KEY) && !out.stdout.contains(SECRET_KEY), "helm printed a credential");
    }
    // The events command the NOTES give is one the API server takes.
    kubectl_ok(cp, &["get", "events", "-n", "default", "--field-selector", "reportingComponent=s3-resource-operator"]);
}

/// Copies the chart to a temporary folder, where a test may change it as a new version would.
fn chart_copy() -> TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&s3op_tests::workspace_root().join(chart::CHART_DIR), &dir.path().join("s3-resource-operator"));
    dir
}

/// The CRDs are templates: installed with the release, upgraded by `helm upgrade` (a schema
/// change of a new version reaches the server), kept with their objects by `helm uninstall`.
/// On its own control plane, whose CRDs were applied beforehand as `kubectl apply -f
/// deploy/crds.yaml` (or chart 0.1) leaves them: they are handed to the release the way the
/// chart README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_upgrade_with_the_release_and_stay_on_uninstall() {
    let cp = ControlPlane::start().await.unwrap();
    let ns = cp.namespace("crd-upgrade").await.unwrap();
    let crds: Vec<String> = s3op_api::crds().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    for crd in &crds {
        kubectl_ok(&cp, &["label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite"]);
        let release = "meta.helm.sh/release-name=s3op".to_string();
        let namespace = format!("meta.helm.sh/release-namespace={ns}");
        kubectl_ok(&cp, &["annotate", "crd", crd, &release, &namespace, "--overwrite"]);
    }
    let helm = |verb: &str, chart_dir: &str| {
        let mut args: Vec<String> =
            [verb, "s3op", chart_dir, "--namespace", &ns, "--set-string", "operator.backend_name="]
                .iter()
                .map(|s| (*s).to_string())
                .collect();
        args.push(format!("--kubeconfig={}", cp.kubeconfig().display()));
        let out = chart::helm(&args).unwrap();
        assert!(out.ok, "helm {args:?}:\n{}", out.stderr);
    };
    helm("install", chart::CHART_DIR);
    let crd_json =
        |name: &str| -> Value { serde_json::from_str(&kubectl_ok(&cp, &["get", "crd", name, "-o", "json"])).unwrap() };
    for crd in &crds {
        let got = crd_json(crd);
        assert_eq!(got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{crd}");
        assert_eq!(got["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm", "{crd}");
    }
    let bucket =
        r#"{"apiVersion":"s3-resource-operator.io/v1alpha1","kind":"S3Bucket","metadata":{"name":"kept"},"spec":{}}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bucket.json");
    std::fs::write(&path, bucket).unwrap();
    kubectl_ok(&cp, &["-n", &ns, "apply", "-f", &path.display().to_string()]);

    // A new version: one more field in S3Bucket's spec, and a new chart version.
    let next = chart_copy();
    let chart_dir = next.path().join("s3-resource-operator");
    let mut crd = s3op_api::crds().into_iter().find(|c| c.spec.names.kind == "S3Bucket").unwrap();
    let schema = crd.spec.versions[0].schema.as_mut().unwrap().open_api_v3_schema.as_mut().unwrap();
    let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
    let added: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps =
        serde_json::from_value(json!({"type": "string", "description": "added by a new version"})).unwrap();
    spec.properties.as_mut().unwrap().insert("addedInANewVersion".into(), added);
    let template = chart_dir.join(chart::CRD_TEMPLATES).join("s3buckets.yaml");
    std::fs::write(&template, chart::crd_template(&crd).unwrap()).unwrap();
    let chart_yaml = chart_dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).unwrap();
    let version = text.lines().find(|l| l.starts_with("version: ")).unwrap().to_string();
    std::fs::write(&chart_yaml, text.replacen(&version, "version: 99.0.0", 1)).unwrap();
    helm("upgrade", &chart_dir.display().to_string());
    let upgraded = crd_json("s3buckets.s3-resource-operator.io");
    let spec_schema = &upgraded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec_schema["properties"]["addedInANewVersion"]["type"], "string", "the upgrade left the CRD stale");

    let mut args: Vec<String> = ["uninstall", "s3op", "--namespace", &ns].iter().map(|s| (*s).to_string()).collect();
    args.push(format!("--kubeconfig={}", cp.kubeconfig().display()));
    let out = chart::helm(&args).unwrap();
    assert!(out.ok, "helm uninstall: {}", out.stderr);
    for crd in &crds {
        assert!(cp.kubectl(&["get", "crd", crd]).unwrap().status.success(), "helm uninstall deleted CRD {crd}");
    }
    kubectl_ok(&cp, &["-n", &ns, "get", "s3bucket", "kept"]);
}

/// The chart's own switches and the options users expect of a chart: CRDs on or off and kept
/// or not, pod labels (never the selector's), priority class, topology spread, extra volumes
/// for a CA bundle, an image digest; and the version it deploys is the operator's.
#[test]
fn chart_options_render_where_they_belong() {
    let (_, docs) = render("s3op", "ops", &existing());
    let crds = all_of(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), s3op_api::crds().len());
    assert!(crds.iter().all(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"));
    let mut off = existing();
    off.extend(["--set".to_string(), "crds.install=false".to_string()]);
    assert!(all_of(&render("s3op", "ops", &off).1, "CustomResourceDefinition").is_empty());
    let mut not_kept = existing();
    not_kept.extend(["--set".to_string(), "crds.keep=false".to_string()]);
    let (_, docs) = render("s3op", "ops", &not_kept);
    assert!(all_of(&docs, "CustomResourceDefinition").iter().all(|c| c["metadata"].get("annotations").is_none()));

    let (_dir, file) = values_file(
        r#"
podLabels: {team: storage}
priorityClassName: platform-critical
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}
extraVolumes: [{name: store-ca, configMap: {name: store-ca}}]
extraVolumeMounts: [{name: store-ca, mountPath: /etc/s3-ca, readOnly: true}]
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
"#,
    );
    let mut values = existing();
    values.extend(file);
    let (_, docs) = render("s3op", "ops", &values);
    let pod = &one(&docs, "Deployment")["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "storage");
    assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/name"], "s3-resource-operator");
    assert_eq!(pod["spec"]["priorityClassName"], "platform-critical");
    assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(pod["spec"]["volumes"][0]["configMap"]["name"], "store-ca");
    assert_eq!(container(&docs)["volumeMounts"][0]["mountPath"], "/etc/s3-ca");
    let image = container(&docs)["image"].as_str().unwrap().to_string();
    assert!(
        image.ends_with(":2.0.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        "{image}"
    );

    let mut bad = existing();
    bad.extend(set(&["podLabels.app\\.kubernetes\\.io/instance=x"]));
    assert!(render_err(&bad).contains("podLabels.app.kubernetes.io/instance: the chart sets this label itself"));
    let mut bad = existing();
    bad.extend(set(&["image.digest=latest"]));
    assert!(render_err(&bad).contains("/image/digest"), "{}", render_err(&bad));

    // The chart deploys the operator's own version, and follows the older chart's 1.x.
    let chart_yaml: Value = yaml_serde::from_str(
        &std::fs::read_to_string(s3op_tests::workspace_root().join(chart::CHART_DIR).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    let cargo = std::fs::read_to_string(s3op_tests::workspace_root().join("crates/controller/Cargo.toml")).unwrap();
    let crate_version = cargo.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
    assert_eq!(chart_yaml["appVersion"], crate_version);
    assert!(chart_yaml["version"].as_str().unwrap().starts_with("2."));
    for key in ["home", "sources", "maintainers"] {
        assert!(!chart_yaml[key].is_null(), "Chart.yaml has no {key}");
    }
}

/// The CRD examples Artifact Hub shows are objects the API server accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_s_crd_examples_are_valid() {
    let cp = cp();
    let ns = cp.namespace("chart-examples").await.unwrap();
    let chart_yaml: Value = yaml_serde::from_str(
        &std::fs::read_to_string(s3op_tests::workspace_root().join(chart::CHART_DIR).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    let examples: Vec<Value> =
        yaml_serde::from_str(chart_yaml["annotations"]["artifacthub.io/crdsExamples"].as_str().unwrap()).unwrap();
    assert_eq!(examples.len(), 2);
    let manifests: Vec<String> = examples
        .into_iter()
        .map(|mut e| {
            e["metadata"]["namespace"] = json!(ns);
            serde_json::to_string(&e).unwrap()
        })
        .collect();
    server_dry_run(&manifests.join("\n---\n"));
}

/// Every series name the operator exports, from its own registry (compatibility mode's legacy
/// metrics included): counters with `_total`, histograms with their `_bucket`, `_count` and
/// `_sum`.
fn exported_series() -> std::collections::BTreeSet<String> {
    use s3op_controller::{compat::metrics::LegacyMetrics, metrics::Metrics};
    let legacy = LegacyMetrics::new();
    let m = Metrics::with_registry(|r| legacy.register(r));
    // A family shows in the text once it has a series: one of each.
    let store: std::sync::Arc<str> = "default".into();
    m.reconcile_finished("S3Bucket", "ok", std::time::Duration::from_millis(1));
    m.reconcile_error("S3Bucket", "BackendUnavailable");
    m.status_write("S3Bucket");
    m.event_published("S3Bucket", "Created");
    m.backend_request(&store, "minio", "ensure_bucket", "ok", std::time::Duration::from_millis(1));
    m.backend_write(&store, "minio", "ensure_bucket");
    m.object_readiness("S3Bucket", "a/b", false);
    m.set_store_ready("default", true);
    m.backend_call_withheld("default");
    let text = m.encode();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_count", "_sum"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The alerts and the dashboard the chart offers: the rules pass Prometheus's own rule parser
/// and the dashboard's queries its PromQL parser, both name only series the operator exports,
/// and the dashboard has what Grafana needs (unique panel ids, a grid of 24 columns, one
/// Prometheus datasource variable).
#[test]
fn the_alerts_and_the_dashboard_are_valid_and_use_only_the_operators_metrics() {
    let mut values = existing();
    values.extend(["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"].map(String::from));
    let (_, docs) = render("s3op", "ops", &values);
    let exported = exported_series();
    let unknown = |answer: &Value| -> Vec<String> {
        let mut out = Vec::new();
        for (expr, names) in answer["metrics"].as_object().unwrap() {
            for name in names.as_array().unwrap() {
                let name = name.as_str().unwrap();
                if !exported.contains(name) {
                    out.push(format!("{name} (in {expr})"));
                }
            }
        }
        out
    };

    let rule = one(&docs, "PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, yaml_serde::to_string(&rule["spec"]).unwrap()).unwrap();
    let answer = chart::promcheck(&["rules".to_string(), file.display().to_string()]).unwrap();
    assert_eq!(answer["errors"], json!([]), "the rules: {answer}");
    let alerts: Vec<&str> =
        rule["spec"]["groups"][0]["rules"].as_array().unwrap().iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "S3ResourceOperatorDown",
            "S3ResourceOperatorReconcileErrors",
            "S3ResourceOperatorObjectsNotReady",
            "S3ResourceOperatorStoreUnavailable"
        ]
    );
    assert_eq!(answer["metrics"].as_object().unwrap().len(), alerts.len());
    assert_eq!(unknown(&answer), Vec::<String>::new(), "rules name series the operator does not export");

    let config_map =
        all_of(&docs, "ConfigMap").into_iter().find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1");
    let dashboard: Value = serde_json::from_str(
        config_map.expect("the dashboard ConfigMap")["data"]["s3-resource-operator.json"].as_str().unwrap(),
    )
    .unwrap();
    for key in ["title", "uid", "schemaVersion", "panels", "templating"] {
        assert!(!dashboard[key].is_null(), "the dashboard has no {key}");
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus")
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel id {} twice", panel["id"]);
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{} leaves the grid", panel["title"]);
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        exprs.extend(targets.iter().map(|t| t["expr"].as_str().unwrap().to_string()));
    }
    let mut args = vec!["exprs".to_string()];
    args.extend(exprs.iter().cloned());
    let answer = chart::promcheck(&args).unwrap();
    assert_eq!(answer["errors"], json!([]), "the dashboard's queries: {answer}");
    assert_eq!(unknown(&answer), Vec::<String>::new(), "the dashboard names series the operator does not export");
    // The families an operator is watched by are on it.
    let shown: std::collections::BTreeSet<&str> = answer["metrics"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap().iter().map(|n| n.as_str().unwrap()))
        .collect();
    let families = ["s3op_leader", "s3op_objects_not_ready", "s3op_store_ready", "s3op_reconciles_total"];
    for family in families {
        assert!(shown.contains(family), "{family} is not on the dashboard");
    }
}

/// The kind workflow (`.github/workflows/kind.yml`, run only where a registry and Docker are
/// reachable) stays in step with the chart and the examples: its `helm install` values render,
/// and the files it applies exist.
#[test]
fn the_cluster_workflow_uses_values_and_files_that_exist() {
    let root = s3op_tests::workspace_root();
    let text = std::fs::read_to_string(root.join(".github/workflows/kind.yml")).unwrap();
    let workflow: Value = yaml_serde::from_str(&text).unwrap();
    let runs: Vec<String> = workflow["jobs"]["chart-on-kind"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(|r| r.replace("\\\n", " ")))
        .collect();
    let install = runs.iter().find(|r| r.contains("helm install")).expect("a helm install step");
    let words: Vec<&str> = install.split_whitespace().collect();
    let sets: Vec<String> =
        words.windows(2).filter(|w| w[0] == "--set").flat_map(|w| ["--set".to_string(), w[1].to_string()]).collect();
    assert!(sets.len() >= 10, "{sets:?}");
    let (_, docs) = render("s3op", "s3-resource-operator", &sets);
    assert_eq!(container(&docs)["image"], "s3-resource-operator:ci");
    assert_eq!(env_value(&docs, "BACKEND_NAME"), Some("minio"));
    for run in &runs {
        for file in run.split_whitespace().filter(|w| w.starts_with("deploy/")) {
            assert!(root.join(file).exists(), "the workflow applies {file}, which does not exist");
        }
    }
}

/// The chart README's table names every value of `values.yaml` (a row may name siblings as
/// `` `parent.a`, `.b` ``); maps whose keys are the user's own (labels, annotations, security
/// contexts, …) count as one value.
#[test]
fn the_chart_readme_names_every_value() {
    let root = s3op_tests::workspace_root().join(chart::CHART_DIR);
    let values: Value = yaml_serde::from_str(&std::fs::read_to_string(root.join("values.yaml")).unwrap()).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    const OPAQUE: [&str; 11] = [
        "podSecurityContext",
        "securityContext",
        "resources",
        "nodeSelector",
        "affinity",
        "labels",
        "additionalLabels",
        "annotations",
        "data",
        "podAnnotations",
        "podLabels",
    ];
    fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
        for (k, x) in v.as_object().unwrap() {
            let path = format!("{prefix}{k}");
            match x.as_object() {
                Some(m) if !m.is_empty() && !OPAQUE.contains(&k.as_str()) => leaves(x, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    let named = |path: &str| {
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        rows.iter().any(|row| {
            row.contains(&format!("`{path}`"))
                || (!parent.is_empty() && row.contains(&format!("`{parent}.")) && row.contains(&format!("`.{leaf}`")))
        })
    };
    let missing: Vec<&String> = paths.iter().filter(|p| !named(p)).collect();
    assert!(missing.is_empty(), "values the chart README's table does not name: {missing:?}");
    assert!(paths.len() > 50, "{paths:?}");
}
