//! Hostile input (issue #8): what a careless or malicious author can put into an S3Bucket, an
//! S3User or an annotated Secret. Every case must end in a clear answer (the API server's
//! rejection, a Ready=False condition with a reason, or a Warning event) that names the
//! problem without echoing a secret; the operator keeps running; and invalid input never
//! reaches the store, counted from the operator's own request metrics. Values that are valid
//! but full of XML and URL metacharacters must reach the store verbatim and change nothing
//! else, read back through the store's admin API.
//!
//! Then a leak scan: the operator binary at debug level through CRD mode (create, rotate,
//! repair, delete) and compatibility mode (create, change, refuse), after which every secret it
//! handled is searched for in its log, the namespace's events, the custom resources' statuses
//! and /metrics.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ObjectMeta, PostParams},
};
use s3op_api::{DEFAULT_COMPAT_ANNOTATION, S3Bucket, S3User, secret_keys};
use s3op_backends::compat::{AccountState, CompatStore};
use s3op_tests::{
    binary::{OperatorProcess, metric_sum, metric_sum_where, operator_binary, store_env},
    compat::{account_with_ids, random_access_key, random_hex, random_secret},
    fixture::{client, cp, start},
    inspect::{Snapshot, object_keys, snapshot},
    operator::{Operator, store_args},
    stores::{Store, StoreKind, unique_name},
    wait::{TIMEOUT, all_events, wait_event, wait_for_value, wait_ready_condition, wait_until},
};
use serde_json::{Value, json};

/// Every backend call the operator makes is one sample of this histogram.
const BACKEND_CALLS: &str = "s3op_backend_request_duration_seconds_count";

/// The longest note the API server stores on an events.k8s.io/v1 Event.
const EVENT_NOTE_LIMIT: usize = 1024;

/// Backend calls made so far, leaving out the readiness probe's health calls (the harness
/// polls /readyz; a probe is not a reaction to input).
fn backend_calls(metrics: &str) -> f64 {
    metric_sum(metrics, BACKEND_CALLS) - metric_sum_where(metrics, BACKEND_CALLS, "operation=\"health\"")
}

async fn calls(op: &Operator) -> f64 {
    backend_calls(&op.metrics().await.unwrap())
}

/// An operator for `store` watching `namespace`, in CRD mode and compatibility mode, resyncing
/// rarely so every backend call in a measured window is a reaction to the input.
async fn operator(store: &Store, namespace: &str) -> Operator {
    let mut args = store_args(store);
    args.extend(
        [
            "--watch-namespace",
            namespace,
            "--resync-interval",
            "10m",
            "--compat-mode",
            "true",
            "--marker-bucket",
            &unique_name("s3op-markers"),
        ]
        .map(str::to_string),
    );
    Operator::start_with(client().await, args).await.unwrap()
}

fn marker_bucket(op: &Operator) -> String {
    let args = op.args();
    args.iter().skip_while(|a| *a != "--marker-bucket").nth(1).unwrap().clone()
}

/// One line of the report: the case and what it got.
struct Row {
    case: String,
    got: String,
}

fn print_table(title: &str, rows: &[Row]) {
    let mut out = format!("\n{title}\n| case | got |\n|---|---|\n");
    for r in rows {
        let got = r.got.replace('|', "\\|").replace('\n', "\\n");
        let _ = writeln!(out, "| {} | {} |", r.case, got);
    }
    eprintln!("{out}");
}

/// Shortens a message for the report, at a character boundary.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(160).collect();
    if cut.len() < s.len() { format!("{cut}…") } else { cut }
}

// ---------------------------------------------------------------------------------------------
// Objects built by hand, so wrong types reach the API server as a client could send them.

fn bucket_resource() -> ApiResource {
    ApiResource::erase::<S3Bucket>(&())
}

fn user_resource() -> ApiResource {
    ApiResource::erase::<S3User>(&())
}

fn secret_resource() -> ApiResource {
    ApiResource::erase::<Secret>(&())
}

fn object(ar: &ApiResource, name: &str, body: Value) -> DynamicObject {
    let mut v = json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name}});
    if let Value::Object(extra) = body {
        for (k, field) in extra {
            match (k.as_str(), field) {
                ("metadata", Value::Object(meta)) => {
                    v["metadata"].as_object_mut().unwrap().extend(meta);
                }
                (_, field) => v[k.as_str()] = field,
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

/// An input the API server must refuse, with the words its answer must contain.
struct Admission {
    case: &'static str,
    resource: ApiResource,
    name: String,
    body: Value,
    says: &'static str,
}

fn bucket_spec(case: &'static str, spec: Value, says: &'static str) -> Admission {
    Admission { case, resource: bucket_resource(), name: unique_name("b"), body: json!({ "spec": spec }), says }
}

fn user_spec(case: &'static str, spec: Value, says: &'static str) -> Admission {
    Admission { case, resource: user_resource(), name: unique_name("u"), body: json!({ "spec": spec }), says }
}

fn admission_cases() -> Vec<Admission> {
    let access = |n: usize| -> Vec<Value> {
        (0..n).map(|i| json!({"bucket": format!("b{i}"), "permission": "ReadWrite"})).collect()
    };
    let many_tags: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let annotated = json!({ DEFAULT_COMPAT_ANNOTATION: "true" });
    vec![
        // Names.
        bucket_spec("bucketName with uppercase and _", json!({"bucketName": "Bad_Name"}), "only lowercase letters"),
        bucket_spec("bucketName of 2 characters", json!({"bucketName": "ab"}), "between 3 and 63"),
        bucket_spec("bucketName of 64 characters", json!({"bucketName": "a".repeat(64)}), "63"),
        bucket_spec("bucketName shaped as an IP", json!({"bucketName": "192.168.10.1"}), "IP address"),
        bucket_spec("bucketName with reserved prefix xn--", json!({"bucketName": "xn--data"}), "reserved prefixes"),
        bucket_spec("bucketName with reserved suffix", json!({"bucketName": "data-s3alias"}), "reserved suffixes"),
        bucket_spec("bucketName with ..", json!({"bucketName": "a..b"}), "two adjacent dots"),
        bucket_spec("bucketName with umlauts", json!({"bucketName": "bücket-ünï"}), "only lowercase letters"),
        bucket_spec("bucketName with emoji", json!({"bucketName": "data-😀"}), "only lowercase letters"),
        bucket_spec("bucketName with <>&\"'", json!({"bucketName": "a<b>&\"'c"}), "only lowercase letters"),
        bucket_spec("bucketName with ]]>", json!({"bucketName": "abc]]>"}), "only lowercase letters"),
        bucket_spec("bucketName with a newline", json!({"bucketName": "abc\ndef"}), "only lowercase letters"),
        bucket_spec("bucketName with an RTL override", json!({"bucketName": "abc\u{202E}fed"}), "only lowercase"),
        user_spec("userName starting with -", json!({"userName": "-admin"}), "user name may contain only"),
        user_spec("userName of 2 characters", json!({"userName": "ab"}), "between 3 and 64"),
        user_spec("userName with / and ..", json!({"userName": "a/../admin"}), "user name may contain only"),
        user_spec("userName with XML", json!({"userName": "u</Access><Role>admin"}), "user name may contain only"),
        user_spec("userName with emoji", json!({"userName": "user😀"}), "user name may contain only"),
        user_spec("userName with an RTL mark", json!({"userName": "user\u{200F}x"}), "user name may contain only"),
        user_spec("userName with a newline", json!({"userName": "user\nadmin"}), "user name may contain only"),
        // Oversized lists and maps.
        user_spec("access list of 33 (bound 32)", json!({"access": access(33)}), "must have at most 32 items"),
        user_spec("access list of 1000", json!({"access": access(1000)}), "must have at most 32 items"),
        bucket_spec("51 tags (bound 50)", json!({"tags": many_tags}), "must have at most 50"),
        bucket_spec("tag value of 257 characters", json!({"tags": {"k": "v".repeat(257)}}), "256"),
        bucket_spec("reserved tag key aws:", json!({"tags": {"aws:cost": "x"}}), "reserved prefixes"),
        // References.
        user_spec(
            "grant naming another namespace's bucket as ns/name",
            json!({"access": [{"bucket": "other-team/data", "permission": "ReadWrite"}]}),
            "must be a valid Kubernetes object name",
        ),
        user_spec(
            "grant with ../",
            json!({"access": [{"bucket": "../data", "permission": "ReadWrite"}]}),
            "must be a valid Kubernetes object name",
        ),
        user_spec(
            "the same bucket granted twice",
            json!({"access": [{"bucket": "d", "permission": "ReadWrite"}, {"bucket": "d", "permission": "ReadOnly"}]}),
            "at most once",
        ),
        user_spec("secretName with /", json!({"secretName": "kube-system/admin"}), "valid Kubernetes object name"),
        // Rules across fields.
        bucket_spec(
            "forceDelete without deletionPolicy Delete",
            json!({"forceDelete": true}),
            "forceDelete: true is only allowed together with deletionPolicy: Delete",
        ),
        bucket_spec("empty quota", json!({"quota": {}}), "quota needs maxSize, maxObjects or both"),
        bucket_spec("quota.maxObjects 0", json!({"quota": {"maxObjects": 0}}), "greater than or equal to 1"),
        // Wrong types, as an unstructured client sends them.
        bucket_spec("bucketName as a JSON list", json!({"bucketName": ["a", "b"]}), "must be of type string"),
        bucket_spec("deletionPolicy Shred", json!({"deletionPolicy": "Shred"}), "Unsupported value"),
        bucket_spec("forceDelete as a string", json!({"forceDelete": "yes"}), "must be of type boolean"),
        bucket_spec("tags as a list", json!({"tags": ["a"]}), "must be of type object"),
        bucket_spec("quota.maxObjects as a string", json!({"quota": {"maxObjects": "ten"}}), "must be of type integer"),
        bucket_spec("versioning On", json!({"versioning": "On"}), "Unsupported value"),
        user_spec("access as a string", json!({"access": "data"}), "must be of type array"),
        user_spec(
            "grant bucket as a list",
            json!({"access": [{"bucket": ["a"], "permission": "ReadWrite"}]}),
            "must be of type string",
        ),
        user_spec("permission Admin", json!({"access": [{"bucket": "d", "permission": "Admin"}]}), "Unsupported value"),
        user_spec("userName as a number", json!({"userName": 12345}), "must be of type string"),
        Admission {
            case: "spec as a list",
            resource: user_resource(),
            name: unique_name("u"),
            body: json!({"spec": []}),
            says: "must be of type object",
        },
        Admission {
            case: "object name with /",
            resource: bucket_resource(),
            name: "team-a/data".into(),
            body: json!({"spec": {}}),
            says: "RFC 1123 subdomain",
        },
        // Secrets that never reach the operator: the API server types them.
        Admission {
            case: "compat Secret stringData value as a JSON list",
            resource: secret_resource(),
            name: unique_name("s"),
            body: json!({"metadata": {"annotations": annotated}, "stringData": {"access-key": ["a", "b"]}}),
            says: "cannot unmarshal array",
        },
        Admission {
            case: "compat Secret data that is not base64",
            resource: secret_resource(),
            name: unique_name("s"),
            body: json!({"metadata": {"annotations": annotated}, "data": {"secret-key": "%%% not base64 %%%"}}),
            says: "illegal base64",
        },
        Admission {
            case: "compat Secret over 1 MiB",
            resource: secret_resource(),
            name: unique_name("s"),
            body: json!({"metadata": {"annotations": annotated}, "stringData": {"secret-key": "x".repeat(1_100_000)}}),
            says: "1048576",
        },
    ]
}

/// Sends each case as an unstructured object and checks the API server's answer.
async fn admission(client: &Client, ns: &str, rows: &mut Vec<Row>) {
    // Every case runs before the verdict, so one report names every miss.
    let mut misses = Vec::new();
    for case in admission_cases() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &case.resource);
        let obj = object(&case.resource, &case.name, case.body.clone());
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(status)) => {
                let (code, message) = (status.code, status.message);
                if !((400..500).contains(&code) && message.contains(case.says)) {
                    misses.push(format!("{}: HTTP {code} without {:?}: {message}", case.case, case.says));
                }
                rows.push(Row { case: case.case.into(), got: format!("API server HTTP {code}: {}", short(&message)) });
            }
            Err(e) => misses.push(format!("{}: not an API answer: {e}", case.case)),
            Ok(_) => misses.push(format!("{}: admitted, but the API server must refuse it", case.case)),
        }
    }
    assert!(misses.is_empty(), "admission:\n{}", misses.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Inputs that pass admission and that the operator must refuse without calling the store.

/// A custom resource the operator must answer with Ready=False, `reason`, and these words in
/// both the condition and the Warning event.
struct Refusal {
    case: &'static str,
    resource: ApiResource,
    name: String,
    spec: Value,
    reason: &'static str,
    says: Vec<String>,
}

fn refusals(ns: &str) -> Vec<Refusal> {
    let bucket = |case, name: &str, spec: Value, says: &[&str]| Refusal {
        case,
        resource: bucket_resource(),
        name: name.into(),
        spec,
        reason: "InvalidSpec",
        says: says.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        // `<namespace>-<name>` breaks a rule no single field breaks.
        bucket(
            "default name ending in -s3alias",
            "logs-s3alias",
            json!({}),
            &["reserved suffix", "set spec.bucketName"],
        ),
        bucket("default name ending in --ol-s3", "logs--ol-s3", json!({}), &["reserved suffix", "set spec.bucketName"]),
        bucket("default name ending in .mrap", "logs.mrap", json!({}), &["reserved suffix", "set spec.bucketName"]),
        bucket(
            "quota.maxSize that is no quantity",
            "bad-quota",
            json!({"bucketName": unique_name("quota"), "quota": {"maxSize": "lots"}}),
            &["quota.maxSize"],
        ),
        bucket(
            "quota.maxSize negative",
            "negative-quota",
            json!({"bucketName": unique_name("quota"), "quota": {"maxSize": "-5Gi"}}),
            &["quota.maxSize"],
        ),
        Refusal {
            case: "S3User granting a bucket of another namespace",
            resource: user_resource(),
            name: "wants-foreign".into(),
            spec: json!({"access": [{"bucket": "shared-data", "permission": "ReadWrite"}]}),
            reason: "BucketNotReady",
            says: vec!["shared-data".into(), format!("no such S3Bucket in {ns}")],
        },
        Refusal {
            case: "S3User granting an invalid S3Bucket",
            resource: user_resource(),
            name: "wants-invalid".into(),
            spec: json!({"access": [{"bucket": "logs-s3alias", "permission": "ReadWrite"}]}),
            reason: "BucketNotReady",
            says: vec!["logs-s3alias (not Ready)".into()],
        },
    ]
}

async fn apply_refusals(client: &Client, ns: &str, cases: &[Refusal]) {
    for case in cases {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &case.resource);
        let obj = object(&case.resource, &case.name, json!({"spec": case.spec}));
        api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("{}: not admitted: {e}", case.case));
    }
}

async fn check_refusals(client: &Client, ns: &str, cases: &[Refusal], rows: &mut Vec<Row>) {
    for case in cases {
        let (status, message) = if case.resource.kind == "S3Bucket" {
            let api: Api<S3Bucket> = Api::namespaced(client.clone(), ns);
            let obj = wait_ready_condition(&api, &case.name, "False", case.reason).await.unwrap();
            let c = obj.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
            (c.status, c.message)
        } else {
            let api: Api<S3User> = Api::namespaced(client.clone(), ns);
            let obj = wait_ready_condition(&api, &case.name, "False", case.reason).await.unwrap();
            let c = obj.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
            (c.status, c.message)
        };
        for word in &case.says {
            assert!(message.contains(word.as_str()), "{}: the condition does not say {word:?}: {message}", case.case);
        }
        let event = wait_event(client, ns, &case.name, case.reason).await.unwrap();
        assert_eq!(event.type_, "Warning", "{}: {event:?}", case.case);
        for word in &case.says {
            assert!(event.note.contains(word.as_str()), "{}: the event does not say {word:?}: {event:?}", case.case);
        }
        rows.push(Row {
            case: case.case.into(),
            got: format!("Ready={status} {}: {} (+ Warning event)", case.reason, short(&message)),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Annotated Secrets.

fn annotated(name: &str, fields: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(fields.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Secret::default()
    }
}

/// A Secret the operator must answer with an event of `reason` (a Warning unless `normal`)
/// whose note says `says` and never contains any of `never` (the secret key, and the hostile
/// value itself where it is the secret).
struct SecretCase {
    case: &'static str,
    secret: Secret,
    reason: &'static str,
    normal: bool,
    says: Vec<String>,
    never: Vec<String>,
}

fn secret_case(
    case: &'static str,
    fields: &[(&str, &[u8])],
    reason: &'static str,
    says: &[&str],
    never: &[&str],
) -> SecretCase {
    SecretCase {
        case,
        secret: annotated(&unique_name("s"), fields),
        reason,
        normal: false,
        says: says.iter().map(|s| s.to_string()).collect(),
        never: never.iter().map(|s| s.to_string()).collect(),
    }
}

/// Secrets refused before any store call, on every store.
fn secret_cases() -> Vec<SecretCase> {
    let sk = random_secret();
    let ak = random_access_key();
    let bucket = unique_name("hostile");
    let base = |extra: &[(&'static str, Vec<u8>)]| -> Vec<(&'static str, Vec<u8>)> {
        let mut f: Vec<(&'static str, Vec<u8>)> = vec![
            ("bucket-name", bucket.clone().into_bytes()),
            ("access-key", ak.clone().into_bytes()),
            ("secret-key", sk.clone().into_bytes()),
        ];
        for (k, v) in extra {
            f.retain(|(key, _)| key != k);
            f.push((*k, v.clone()));
        }
        f
    };
    let case = |name, extra: &[(&'static str, Vec<u8>)], reason, says: &[&str], never: &[&str]| {
        let fields = base(extra);
        let borrowed: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let mut never: Vec<&str> = never.to_vec();
        never.push(&sk);
        secret_case(name, &borrowed, reason, says, &never)
    };
    let invalid = "InvalidSecret";
    let huge = "s".repeat(1_000_000);
    let huge_ak = "A".repeat(300);
    vec![
        case(
            "secret-key not UTF-8",
            &[("secret-key", vec![0xff, 0xfe, 0xfd, 0x00, 0x80])],
            invalid,
            &["field secret-key is not UTF-8"],
            &[],
        ),
        case(
            "access-key not UTF-8",
            &[("access-key", vec![0xc3, 0x28])],
            invalid,
            &["field access-key is not UTF-8"],
            &[],
        ),
        case(
            "BUCKET_NAME alias not UTF-8",
            &[("bucket-name", Vec::new()), ("BUCKET_NAME", vec![0xe2, 0x82])],
            invalid,
            &["field BUCKET_NAME is not UTF-8"],
            &[],
        ),
        case(
            "access-key with emoji",
            &[("access-key", "AK😀x".into())],
            invalid,
            &["field access-key is invalid", "printable ASCII"],
            &["😀"],
        ),
        case(
            "access-key with RTL override",
            &[("access-key", "AK\u{202E}gnp.exe".into())],
            invalid,
            &["field access-key is invalid"],
            &["\u{202E}"],
        ),
        case(
            "access-key with newline and XML",
            &[("access-key", "AK\n<Role>admin</Role>".into())],
            invalid,
            &["field access-key is invalid"],
            &["<Role>"],
        ),
        case(
            "access-key walking out of its claim marker (../users/<name>)",
            &[("access-key", format!("../users/{}", random_hex(8)).into_bytes())],
            invalid,
            &["field access-key is invalid", "'/' is not allowed"],
            &["../users"],
        ),
        case(
            "secret-key with newline and XML",
            &[("secret-key", "s3cr3t\n</Secret><Role>admin</Role>".into())],
            invalid,
            &["field secret-key is invalid"],
            &["s3cr3t", "<Role>"],
        ),
        case(
            "secret-key with NUL",
            &[("secret-key", "s3cr3t\0tail".into())],
            invalid,
            &["field secret-key is invalid"],
            &["s3cr3t"],
        ),
        case(
            "secret-key with emoji and zero-width joiner",
            &[("secret-key", "s3cr3t👩\u{200D}💻".into())],
            invalid,
            &["field secret-key is invalid"],
            &["s3cr3t"],
        ),
        case(
            "bucket-name with ]]>",
            &[("bucket-name", "abc]]>".into())],
            invalid,
            &["field bucket-name is invalid"],
            &[],
        ),
        case(
            "bucket-name with emoji",
            &[("bucket-name", "data-😀".into())],
            invalid,
            &["field bucket-name is invalid"],
            &[],
        ),
        case(
            "bucket-name with RTL mark",
            &[("bucket-name", "data\u{200F}x".into())],
            invalid,
            &["field bucket-name is invalid"],
            &[],
        ),
        case(
            "user-id not numeric",
            &[("user-id", "12abc".into())],
            invalid,
            &["field user-id must be a whole number"],
            &[],
        ),
        case("user-id negative", &[("user-id", "-1".into())], invalid, &["field user-id must be a whole number"], &[]),
        case(
            "GROUP_ID beyond u32",
            &[("GROUP_ID", "4294967296".into())],
            invalid,
            &["field group-id must be a whole number"],
            &[],
        ),
        case(
            "group-id as 1e3",
            &[("group-id", "1e3".into())],
            invalid,
            &["field group-id must be a whole number"],
            &[],
        ),
        case(
            "user-id as a JSON list",
            &[("user-id", "[1000, 0]".into())],
            invalid,
            &["field user-id must be a whole number"],
            &[],
        ),
        case("role with XML", &[("role", "<admin/>".into())], invalid, &["field role is invalid"], &[]),
        case("role with RTL mark", &[("role", "user\u{200F}".into())], invalid, &["field role is invalid"], &[]),
        case("role admin", &[("role", "admin".into())], "RoleRefused", &["\"admin\" is not allowed"], &[]),
        case(
            "every field empty",
            &[("bucket-name", Vec::new()), ("access-key", Vec::new()), ("secret-key", Vec::new())],
            invalid,
            &["missing required field bucket-name"],
            &[],
        ),
        case(
            "huge secret-key (1,000,000 bytes)",
            &[("secret-key", huge.clone().into_bytes())],
            invalid,
            &["field secret-key is invalid", "longer than 256"],
            &[&huge[..64]],
        ),
        case(
            "access-key of 300 characters",
            &[("access-key", huge_ak.clone().into_bytes())],
            invalid,
            &["field access-key is invalid", "longer than 256"],
            &[&huge_ak[..64]],
        ),
    ]
}

/// Endpoints are compared, never sent anywhere: a hostile one is skipped with a Normal event.
fn endpoint_cases() -> Vec<SecretCase> {
    let mut out = Vec::new();
    let sk = random_secret();
    let hidden = random_secret();
    for (case, endpoint, says) in [
        ("endpoint-url with newline and RTL override", "http://evil.example\n\u{202E}:7070".to_string(), "(not a URL"),
        ("endpoint-url with XML and emoji", "http://a<b>&\"'😀]]>.example".to_string(), "(not a URL"),
        ("endpoint-url with XML in its path", "http://elsewhere.example/<x>]]>&'".to_string(), "elsewhere.example"),
        ("endpoint-url of 900,000 bytes", format!("http://{}.example", "e".repeat(900_000)), "eeeeeeee"),
        (
            "endpoint-url carrying credentials",
            format!("http://AKLEAK:{hidden}@elsewhere.example:7070/"),
            "elsewhere.example:7070",
        ),
    ] {
        let fields: Vec<(&str, &[u8])> = vec![
            ("bucket-name", &b"skipped-bucket"[..]),
            ("access-key", &b"AKSKIPPED"[..]),
            ("secret-key", sk.as_bytes()),
            ("endpoint-url", endpoint.as_bytes()),
        ];
        let mut c = secret_case(
            case,
            &fields,
            "EndpointMismatch",
            &["skipped", says, "ENFORCE_ENDPOINT_CHECK"],
            &[&sk, &hidden, "\n", "\u{202E}", "<x>"],
        );
        c.normal = true;
        out.push(c);
    }
    out
}

async fn apply_secret_cases(client: &Client, ns: &str, cases: &[SecretCase]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for c in cases {
        api.create(&PostParams::default(), &c.secret).await.unwrap_or_else(|e| panic!("{}: {e}", c.case));
    }
}

async fn check_secret_cases(client: &Client, ns: &str, cases: &[SecretCase], rows: &mut Vec<Row>) {
    for c in cases {
        let name = c.secret.name_any();
        let event = wait_event(client, ns, &name, c.reason).await.unwrap();
        let want = if c.normal { "Normal" } else { "Warning" };
        assert_eq!(event.type_, want, "{}: {event:?}", c.case);
        for word in &c.says {
            assert!(event.note.contains(word.as_str()), "{}: the event does not say {word:?}: {}", c.case, event.note);
        }
        for value in &c.never {
            assert!(
                !event.note.contains(value.as_str()),
                "{}: the event shows a value it must not: {}",
                c.case,
                event.note
            );
        }
        assert!(event.note.len() <= EVENT_NOTE_LIMIT, "{}: note of {} bytes", c.case, event.note.len());
        rows.push(Row {
            case: c.case.into(),
            got: format!("{} {}: {}", event.type_, event.reason, short(&event.note)),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Valid Secrets full of metacharacters: stored verbatim, nothing else touched.

/// An injection attempt: keys chosen to break out of XML bodies or query strings.
struct Injection {
    case: &'static str,
    access_key: String,
    secret_key: String,
    /// The store refuses this key on its own terms (say MinIO's alphabet); the refusal must be
    /// a clear Warning and nothing may be created.
    refused_by: Option<StoreKind>,
}

fn injections() -> Vec<Injection> {
    let hex = || random_hex(8);
    vec![
        Injection {
            case: "secret-key closing the XML element and adding a Role",
            access_key: random_access_key(),
            secret_key: format!("]]></Secret><Role>admin</Role><Secret><![CDATA[&amp;'\"{}", hex()),
            refused_by: None,
        },
        Injection {
            case: "access-key with <>&\"' and ]]>",
            access_key: format!("ak<&>'\"]]>{}", hex()),
            secret_key: random_secret(),
            refused_by: None,
        },
        Injection {
            case: "access-key with XML tags and entities (&lt;/Access&gt;)",
            access_key: format!("x<Role>admin<Role>&lt;&#47;Access&gt;{}", hex()),
            secret_key: random_secret(),
            refused_by: None,
        },
        Injection {
            case: "access-key adding query parameters",
            access_key: format!("{}&access=root&role=admin?#%2F", hex()),
            secret_key: random_secret(),
            // MinIO's own rule: no '=' in access keys.
            refused_by: Some(StoreKind::Minio),
        },
        Injection {
            case: "access-key adding query flags without '='",
            access_key: format!("{}&accessKey&status?disabled#%26", hex()),
            secret_key: random_secret(),
            refused_by: None,
        },
    ]
}

/// `snapshot` without the operator's marker bucket (made by its first claim).
async fn store_state(store: &Store, markers: &str) -> Snapshot {
    let mut s = snapshot(store).await.unwrap();
    s.buckets.remove(markers);
    s
}

/// Applies each injection as an annotated Secret, then proves from the store's admin API that
/// the account holds exactly the Secret's keys and role, the bucket belongs to it, and nothing
/// else was created or changed: no account, bucket, owner, policy or marker beyond these.
async fn injection_cases(client: &Client, ns: &str, store: &Store, op: &Operator, rows: &mut Vec<Row>) {
    let kind = store.kind();
    let backend = op.backend().await.unwrap();
    let view: &dyn CompatStore = backend.compat().unwrap();
    let markers = marker_bucket(op);
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let ids = if kind == StoreKind::Versitygw { 1001 } else { 0 };
    let ids_text = ids.to_string();
    for inj in injections() {
        let before = store_state(store, &markers).await;
        let markers_before = object_keys(store, &markers).await.unwrap();
        let bucket = unique_name("inject");
        let name = unique_name("inject");
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("bucket-name", bucket.as_bytes()),
            ("access-key", inj.access_key.as_bytes()),
            ("secret-key", inj.secret_key.as_bytes()),
        ];
        if ids != 0 {
            fields.extend([("user-id", ids_text.as_bytes()), ("group-id", ids_text.as_bytes())]);
        }
        api.create(&PostParams::default(), &annotated(&name, &fields)).await.unwrap();
        let seen = wait_until("an answer", TIMEOUT, || async {
            let e = s3op_tests::wait::events(client, ns, &name).await.unwrap();
            e.iter().any(|e| e.reason == "Provisioned" || e.type_ == "Warning")
        })
        .await;
        seen.unwrap_or_else(|e| panic!("{}: {e}", inj.case));
        let events = s3op_tests::wait::events(client, ns, &name).await.unwrap();
        for e in &events {
            assert!(!e.note.contains(&inj.secret_key), "{}: an event shows the secret: {e:?}", inj.case);
        }
        let after = store_state(store, &markers).await;
        let diff = before.diff(&after);
        let mut markers_after = object_keys(store, &markers).await.unwrap();
        markers_after.retain(|k| !markers_before.contains(k));
        markers_after.sort();

        if let Some(warning) = events.iter().find(|e| e.type_ == "Warning") {
            // Refused by the store: clear, and nothing made.
            assert_eq!(inj.refused_by, Some(kind), "{}: unexpected refusal: {warning:?}", inj.case);
            assert_eq!(diff, Default::default(), "{}: a refused Secret changed the store", inj.case);
            assert!(markers_after.is_empty(), "{}: a refused Secret left claims: {markers_after:?}", inj.case);
            assert_eq!(
                view.account(&account_with_ids(&inj.access_key, &inj.secret_key, ids)).await.unwrap(),
                AccountState::Missing
            );
            rows.push(Row {
                case: format!("{kind}: {}", inj.case),
                got: format!("Warning {}: {}; store unchanged, no claim", warning.reason, short(&warning.note)),
            });
            continue;
        }
        assert!(inj.refused_by != Some(kind), "{}: the store was expected to refuse it: {events:?}", inj.case);
        // Exactly the Secret's account and bucket are new; nothing else changed or went.
        assert_eq!(diff.accounts_added, vec![inj.access_key.clone()], "{}: accounts added: {diff:?}", inj.case);
        assert_eq!(diff.buckets_added, vec![bucket.clone()], "{}: buckets added: {diff:?}", inj.case);
        assert!(
            diff.accounts_changed.is_empty()
                && diff.accounts_removed.is_empty()
                && diff.buckets_changed.is_empty()
                && diff.buckets_removed.is_empty()
                && diff.policies_changed.is_empty()
                && diff.policies_removed.is_empty(),
            "{}: something else changed: {diff:?}",
            inj.case
        );
        let account = &after.accounts[&inj.access_key];
        match kind {
            StoreKind::Versitygw => {
                assert_eq!(
                    (account.role.as_str(), account.user_id, account.group_id),
                    ("user", ids, ids),
                    "{}",
                    inj.case
                );
                assert!(account.secret_is(&inj.secret_key), "{}: the stored secret differs", inj.case);
                assert_eq!(after.buckets[&bucket], inj.access_key, "{}: the bucket's owner", inj.case);
                assert!(diff.policies_added.is_empty());
            }
            _ => {
                assert_eq!(account.role, "enabled", "{}", inj.case);
                let policy = format!("s3op_compat_{bucket}");
                assert_eq!(diff.policies_added, vec![policy.clone()], "{}: {diff:?}", inj.case);
                assert_eq!(account.policies, policy, "{}: the user's policies", inj.case);
            }
        }
        assert_eq!(
            view.account(&account_with_ids(&inj.access_key, &inj.secret_key, ids)).await.unwrap(),
            AccountState::Matches,
            "{}: the account does not hold exactly the Secret's keys",
            inj.case
        );
        assert_eq!(op.bucket_owner_now(&bucket).await.unwrap().as_deref(), Some(inj.access_key.as_str()));
        let want_markers = vec![format!("buckets/{bucket}"), format!("users/{}", inj.access_key)];
        let mut want_markers = want_markers;
        want_markers.sort();
        assert_eq!(markers_after, want_markers, "{}: markers", inj.case);

        // A changed secret goes through the update call, with the key in its query string.
        let changed = format!("{}&<x>]]>", random_secret());
        let mut fields2 = fields.clone();
        fields2.retain(|(k, _)| *k != "secret-key");
        fields2.push(("secret-key", changed.as_bytes()));
        let mut s = annotated(&name, &fields2);
        s.metadata.resource_version = api.get(&name).await.unwrap().metadata.resource_version;
        let before_update = store_state(store, &markers).await;
        api.replace(&name, &PostParams::default(), &s).await.unwrap();
        wait_until("the changed secret is stored", TIMEOUT, || async {
            view.account(&account_with_ids(&inj.access_key, &changed, ids)).await.unwrap() == AccountState::Matches
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", inj.case));
        let diff = before_update.diff(&store_state(store, &markers).await);
        assert_eq!(
            diff,
            s3op_tests::inspect::SnapshotDiff {
                accounts_changed: if kind == StoreKind::Versitygw { vec![inj.access_key.clone()] } else { Vec::new() },
                ..Default::default()
            },
            "{}: the update changed something else",
            inj.case
        );
        rows.push(Row {
            case: format!("{kind}: {}", inj.case),
            got: format!(
                "Provisioned; read back: exactly 1 new account ({}) + 1 bucket owned by it + its 2 claim markers, nothing else; a secret change updated only that account",
                if kind == StoreKind::Versitygw {
                    "role user, ids 1001, secret byte-exact"
                } else {
                    "enabled, only its s3op_compat policy, secret proven by a signed probe"
                }
            ),
        });
    }
}

// ---------------------------------------------------------------------------------------------

/// The whole table on one store: admission, refusals by the operator, refused Secrets (none
/// of which may call the store), then injections, which must.
async fn hostile_table(kind: StoreKind) {
    let store = start(kind).await;
    let client = client().await;
    let ns = cp().namespace(&format!("hostile-{kind}")).await.unwrap();
    let other_ns = cp().namespace(&format!("hostile-other-{kind}")).await.unwrap();
    let op = operator(&store, &ns).await;
    let mut rows = Vec::new();
    // The bucket the foreign-grant case names lives in a namespace nobody may grant from.
    let foreign = S3Bucket::new("shared-data", Default::default());
    Api::<S3Bucket>::namespaced(client.clone(), &other_ns).create(&PostParams::default(), &foreign).await.unwrap();

    let baseline = calls(&op).await;
    if kind == StoreKind::Versitygw {
        admission(&client, &ns, &mut rows).await;
    }
    let crd = if kind == StoreKind::Versitygw { refusals(&ns) } else { Vec::new() };
    apply_refusals(&client, &ns, &crd).await;
    let mut secrets = secret_cases();
    secrets.extend(endpoint_cases());
    if kind == StoreKind::Minio {
        // MinIO's own key rules, refused before any call.
        let bucket = unique_name("minio-rules");
        for (case, ak, sk, says) in [
            ("MinIO: access-key with =", "AK=admin", random_secret(), "'=' or ','"),
            ("MinIO: access-key with ,", "AK,admin", random_secret(), "'=' or ','"),
            ("MinIO: access-key of 2 characters", "AK", random_secret(), "at least 3 characters"),
            ("MinIO: secret-key of 7 characters", "AKSHORT", "s3cr3t7".to_string(), "shorter than the 8 characters"),
        ] {
            let fields: Vec<(&str, &[u8])> =
                vec![("bucket-name", bucket.as_bytes()), ("access-key", ak.as_bytes()), ("secret-key", sk.as_bytes())];
            secrets.push(secret_case(case, &fields, "InvalidSecret", &[says], &[&sk]));
        }
    }
    apply_secret_cases(&client, &ns, &secrets).await;
    check_refusals(&client, &ns, &crd, &mut rows).await;
    check_secret_cases(&client, &ns, &secrets, &mut rows).await;

    // Give retries and backoffs a moment to call the store if they were going to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = calls(&op).await;
    let text = op.metrics().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(BACKEND_CALLS)).collect();
    assert_eq!(after, baseline, "{kind}: invalid input reached the store:\n{}", lines.join("\n"));
    assert!(op.is_running(), "{kind}: the operator stopped");
    eprintln!(
        "{kind}: {} invalid inputs, backend calls before {baseline} after {after} (health probes excluded)",
        rows.len()
    );

    injection_cases(&client, &ns, &store, &op, &mut rows).await;
    assert!(calls(&op).await > after, "{kind}: valid input is counted, so the zero above means something");
    assert!(op.is_running(), "{kind}: the operator stopped");
    print_table(&format!("hostile input on {kind}"), &rows);
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_hostile_input() {
    hostile_table(StoreKind::Versitygw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_hostile_input() {
    hostile_table(StoreKind::Minio).await;
}

// ---------------------------------------------------------------------------------------------
// Leak scan.

/// A secret and where it came from, for the report.
struct Needle {
    origin: String,
    value: String,
}

/// The forms a value can take where it leaks: itself, base64 (a serialized Secret), and its
/// first 16 characters (a truncated print).
fn forms(value: &str) -> Vec<String> {
    let b64 = serde_json::to_string(&ByteString(value.as_bytes().to_vec())).unwrap().trim_matches('"').to_string();
    let mut out = vec![value.to_string(), b64];
    if value.len() > 16 {
        out.push(value.chars().take(16).collect());
    }
    out
}

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

async fn statuses(client: &Client, ns: &str) -> String {
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), ns);
    let mut out = String::new();
    for b in buckets.list(&Default::default()).await.unwrap() {
        out.push_str(&serde_json::to_string(&b.status).unwrap());
    }
    for u in users.list(&Default::default()).await.unwrap() {
        out.push_str(&serde_json::to_string(&u.status).unwrap());
    }
    out
}

async fn leak_scan(kind: StoreKind) {
    let store = start(kind).await;
    let client = client().await;
    let ns = cp().namespace(&format!("leak-{kind}")).await.unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", unique_name(&format!("s3op-leak-{kind}"))));
    let mut env = store_env(&store);
    env.extend(
        [
            ("WATCH_NAMESPACE", ns.as_str()),
            ("RESYNC_INTERVAL", "2s"),
            ("LOG_LEVEL", "debug"),
            // Every crate at debug: kube's client and runtime, the AWS SDK, hyper, reqwest.
            ("RUST_LOG", "debug"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut op = OperatorProcess::spawn(&operator_binary("debug").unwrap(), cp().kubeconfig(), env, &log).unwrap();
    op.wait_ready(Duration::from_secs(60)).await.unwrap();
    let mut needles =
        vec![Needle { origin: "the store's admin secret key".into(), value: store.admin_secret_key().into() }];
    if let Some(token) = store.garage_admin_token() {
        needles.push(Needle { origin: "Garage admin token".into(), value: token.into() });
    }
    let mut status_text = String::new();

    // CRD mode: a bucket and a user, a rotation, a repaired edit, then deletion.
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let bucket: S3Bucket = serde_json::from_value(json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3Bucket",
        "metadata": {"name": "data"},
        "spec": {"bucketName": unique_name("leak"), "deletionPolicy": "Delete"}
    }))
    .unwrap();
    buckets.create(&pp, &bucket).await.unwrap();
    let user: S3User = serde_json::from_value(json!({
        "apiVersion": "s3-resource-operator.io/v1alpha1", "kind": "S3User",
        "metadata": {"name": "app"},
        "spec": {"access": [{"bucket": "data", "permission": "ReadWrite"}]}
    }))
    .unwrap();
    users.create(&pp, &user).await.unwrap();
    let app = wait_ready_condition(&users, "app", "True", "Available").await.unwrap();
    let secret_name = app.status.as_ref().unwrap().secret_name.clone().unwrap();
    let first = secrets.get(&secret_name).await.unwrap();
    needles.push(Needle { origin: "credentials Secret".into(), value: text(&first, secret_keys::SECRET_ACCESS_KEY) });
    status_text.push_str(&statuses(&client, &ns).await);

    secrets.delete(&secret_name, &DeleteParams::default()).await.unwrap();
    let rotated = wait_for_value("the rotated Secret", TIMEOUT, || async {
        secrets.get_opt(&secret_name).await.unwrap().filter(|s| s.uid() != first.uid())
    })
    .await
    .unwrap();
    needles.push(Needle {
        origin: "rotated credentials Secret".into(),
        value: text(&rotated, secret_keys::SECRET_ACCESS_KEY),
    });
    wait_until("status names the rotated key", TIMEOUT, || async {
        users.get("app").await.unwrap().status.and_then(|s| s.access_key_id)
            == Some(text(&rotated, secret_keys::ACCESS_KEY_ID))
    })
    .await
    .unwrap();
    status_text.push_str(&statuses(&client, &ns).await);

    let tampered = format!("tampered{}", random_hex(32));
    needles.push(Needle { origin: "a value written over the Secret".into(), value: tampered.clone() });
    let mut edited = rotated.clone();
    edited.metadata.managed_fields = None;
    edited
        .data
        .as_mut()
        .unwrap()
        .insert(secret_keys::SECRET_ACCESS_KEY.into(), ByteString(tampered.clone().into_bytes()));
    secrets.replace(&secret_name, &pp, &edited).await.unwrap();
    let repaired = wait_for_value("the edited Secret is repaired", TIMEOUT, || async {
        let s = secrets.get(&secret_name).await.unwrap();
        let v = text(&s, secret_keys::SECRET_ACCESS_KEY);
        (v != tampered && v != text(&rotated, secret_keys::SECRET_ACCESS_KEY)).then_some(v)
    })
    .await
    .unwrap();
    needles.push(Needle { origin: "repaired credentials Secret".into(), value: repaired });
    status_text.push_str(&statuses(&client, &ns).await);

    // Compatibility mode: a Secret provisioned, its secret changed; two refused Secrets.
    let compat_bucket = unique_name("leak-compat");
    let ak = random_access_key();
    let (sk1, sk2, sk3, sk4) = (random_secret(), random_secret(), random_secret(), random_secret());
    for (origin, v) in [
        ("compat secret", &sk1),
        ("changed compat secret", &sk2),
        ("refused compat secret (role)", &sk3),
        ("invalid compat secret (user-id)", &sk4),
    ] {
        needles.push(Needle { origin: origin.into(), value: v.clone() });
    }
    let fields = |sk: &str| -> Vec<(String, Vec<u8>)> {
        vec![
            ("bucket-name".into(), compat_bucket.clone().into_bytes()),
            ("access-key".into(), ak.clone().into_bytes()),
            ("secret-key".into(), sk.as_bytes().to_vec()),
        ]
    };
    let make = |name: &str, f: &[(String, Vec<u8>)]| {
        let borrowed: Vec<(&str, &[u8])> = f.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        annotated(name, &borrowed)
    };
    secrets.create(&pp, &make("legacy", &fields(&sk1))).await.unwrap();
    wait_event(&client, &ns, "legacy", "Provisioned").await.unwrap();
    let mut changed = make("legacy", &fields(&sk2));
    changed.metadata.resource_version = secrets.get("legacy").await.unwrap().metadata.resource_version;
    secrets.replace("legacy", &pp, &changed).await.unwrap();
    wait_until("the changed compat secret is applied", TIMEOUT, || async {
        metric_sum(&op.metrics().await.unwrap(), "s3_operator_users_updated_total") >= 1.0
    })
    .await
    .unwrap();
    let mut role = fields(&sk3);
    role[1].1 = random_access_key().into_bytes();
    role.push(("role".into(), b"admin".to_vec()));
    secrets.create(&pp, &make("wants-admin", &role)).await.unwrap();
    let mut bad_id = fields(&sk4);
    bad_id[1].1 = random_access_key().into_bytes();
    bad_id.push(("user-id".into(), b"root".to_vec()));
    secrets.create(&pp, &make("bad-id", &bad_id)).await.unwrap();
    wait_event(&client, &ns, "wants-admin", "RoleRefused").await.unwrap();
    wait_event(&client, &ns, "bad-id", "InvalidSecret").await.unwrap();

    // Deletion, then a few resyncs over what is left.
    users.delete("app", &DeleteParams::default()).await.unwrap();
    wait_until("the S3User is gone", TIMEOUT, || async { users.get_opt("app").await.unwrap().is_none() })
        .await
        .unwrap();
    status_text.push_str(&statuses(&client, &ns).await);
    buckets.delete("data", &DeleteParams::default()).await.unwrap();
    wait_until("the S3Bucket is gone", TIMEOUT, || async { buckets.get_opt("data").await.unwrap().is_none() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Scan.
    let metrics = op.metrics().await.unwrap();
    let events = serde_json::to_string(&all_events(&client, &ns).await.unwrap()).unwrap();
    let status = op.terminate(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{kind}: the operator exited with {status}");
    let log_text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let debug_lines = log_text.lines().filter(|l| l.contains("DEBUG")).count();
    assert!(debug_lines > 0, "{kind}: the log has no debug lines: is debug logging on?");
    let places = [
        (format!("operator log {} ({debug_lines} debug lines)", log.display()), log_text),
        ("events in the namespace (JSON)".to_string(), events),
        ("S3Bucket/S3User statuses at 4 points (JSON)".to_string(), status_text),
        ("/metrics".to_string(), metrics),
    ];
    let mut report = format!(
        "\nleak scan on {kind}: {} secrets, each as itself, base64 and its first 16 characters\n",
        needles.len()
    );
    let mut leaks = Vec::new();
    for (place, hay) in &places {
        let mut hits = 0;
        for n in &needles {
            for form in forms(&n.value) {
                if hay.contains(&form) {
                    hits += 1;
                    leaks.push(format!("{} found in {place}", n.origin));
                }
            }
        }
        let _ = writeln!(report, "  {place}: {} bytes scanned, {hits} hits", hay.len());
    }
    for n in &needles {
        let _ = writeln!(report, "  secret: {} ({} characters)", n.origin, n.value.len());
    }
    // The scan can find things: the access key id (public) is where it belongs.
    let control = text(&rotated, secret_keys::ACCESS_KEY_ID);
    let found: Vec<&str> = places.iter().filter(|(_, hay)| hay.contains(&control)).map(|(p, _)| p.as_str()).collect();
    let _ = writeln!(report, "  control: the rotated access key id (public) found in {found:?}");
    assert!(found.len() >= 2, "{kind}: the control value was not found where it belongs: {found:?}");
    eprintln!("{report}");
    assert!(leaks.is_empty(), "{kind}: secrets leaked: {leaks:?}");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_leak_scan() {
    leak_scan(StoreKind::Versitygw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_leak_scan() {
    leak_scan(StoreKind::Minio).await;
}
