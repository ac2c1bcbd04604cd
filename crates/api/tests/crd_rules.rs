//! The generated CRDs carry what the API server needs (status subresource, printer columns,
//! CEL rules), and the CEL rules agree with the Rust validators. CEL is evaluated client-side
//! with kube's `cel` feature; the end-to-end suite proves the same rules on a real API server.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use kube::{
    CustomResourceExt,
    core::cel::{ErrorKind, ValidationErrors, validate_cel, validate_cel_update},
};
use s3op_api::{
    BucketAccess, ClusterS3Store, ClusterS3StoreSpec, DeletionPolicy, Permission, S3Bucket, S3BucketSpec, S3Store,
    S3StoreSpec, S3User, S3UserSpec, StoreKind, StoreRef, Versioning,
    naming::{self, BUCKET_NAME_RULES, RESERVED_BUCKET_PREFIXES, RESERVED_BUCKET_SUFFIXES, USER_NAME_RULES},
    store::{AwsProvider, CredentialsSecretRef, PodIdentity, Provider, S3Provider, StoreAuth},
    validate_bucket_name, validate_user_name,
};
use serde_json::Value;

fn bucket(spec: S3BucketSpec) -> S3Bucket {
    let mut b = S3Bucket::new("b", spec);
    b.metadata.namespace = Some("ns".into());
    b
}

fn user(spec: S3UserSpec) -> S3User {
    let mut u = S3User::new("u", spec);
    u.metadata.namespace = Some("ns".into());
    u
}

/// Err(messages) when CEL rejects; panics when a rule could not be evaluated at all, so an
/// unsupported CEL feature never passes as a rejection.
fn messages(r: Result<(), ValidationErrors>) -> Result<(), Vec<String>> {
    match r {
        Ok(()) => Ok(()),
        Err(errs) => {
            for e in errs.iter() {
                assert_eq!(e.kind, ErrorKind::ValidationFailure, "rule could not be evaluated: {e:?}");
            }
            Err(errs.iter().map(|e| e.message.clone()).collect())
        }
    }
}

fn cel_accepts_bucket_name(name: &str) -> Result<(), Vec<String>> {
    messages(validate_cel(&bucket(S3BucketSpec { bucket_name: Some(name.into()), ..Default::default() })))
}

fn cel_accepts_user_name(name: &str) -> Result<(), Vec<String>> {
    messages(validate_cel(&user(S3UserSpec { user_name: Some(name.into()), ..Default::default() })))
}

#[test]
fn bucket_name_table_rust_and_cel_agree() {
    use naming::BucketNameError as E;
    let long63 = "a".repeat(63);
    let long64 = "a".repeat(64);
    let table: Vec<(&str, Option<E>)> = vec![
        ("abc", None),
        ("my-app-backups", None),
        ("my.app.backups", None),
        ("0ab", None),
        ("ab9", None),
        ("1.2.3", None),
        ("1.2.3.4a", None),
        ("192-168-5-4", None),
        ("xn-ok", None),
        ("sthree", None),
        ("a-s3alia", None),
        (long63.as_str(), None),
        ("ab", Some(E::Length(2))),
        ("", Some(E::Length(0))),
        (long64.as_str(), Some(E::Length(64))),
        ("My-bucket", Some(E::InvalidCharacter('M'))),
        ("my_bucket", Some(E::InvalidCharacter('_'))),
        ("my bucket", Some(E::InvalidCharacter(' '))),
        ("bücket", Some(E::InvalidCharacter('ü'))),
        ("-abc", Some(E::BadEdge)),
        ("abc-", Some(E::BadEdge)),
        (".abc", Some(E::BadEdge)),
        ("abc.", Some(E::BadEdge)),
        ("a..b", Some(E::AdjacentDots)),
        ("192.168.5.4", Some(E::IpAddress)),
        ("1.2.3.4", Some(E::IpAddress)),
        ("xn--abc", Some(E::ReservedPrefix("xn--"))),
        ("sthree-abc", Some(E::ReservedPrefix("sthree-"))),
        ("amzn-s3-demo-bucket", Some(E::ReservedPrefix("amzn-s3-demo-"))),
        ("abc-s3alias", Some(E::ReservedSuffix("-s3alias"))),
        ("abc--ol-s3", Some(E::ReservedSuffix("--ol-s3"))),
        ("abc.mrap", Some(E::ReservedSuffix(".mrap"))),
        ("abc--x-s3", Some(E::ReservedSuffix("--x-s3"))),
        ("abc--table-s3", Some(E::ReservedSuffix("--table-s3"))),
    ];
    for (name, want) in table {
        assert_eq!(validate_bucket_name(name).err(), want, "rust validator on {name:?}");
        let cel = cel_accepts_bucket_name(name);
        assert_eq!(cel.is_ok(), want.is_none(), "CEL on {name:?}: {cel:?}");
    }
}

/// A tiny deterministic generator (xorshift) so the agreement check covers names nobody typed.
fn pseudo_random_names(alphabet: &[u8], count: usize, max_len: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % (max_len as u64 + 1)) as usize;
            (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char).collect()
        })
        .collect()
}

#[test]
fn bucket_name_rust_and_cel_agree_on_generated_names() {
    // Biased towards the interesting characters: dots, hyphens, digits, and a few invalid ones.
    let names = pseudo_random_names(b"ab019..--x_Ans3", 1500, 12, 0x5eed_cafe);
    let names = names.iter().map(String::as_str).chain(["xn--a", "ab.mrap", "1.1.1.1", "a.-b", "a-.b"]);
    for name in names {
        let rust = validate_bucket_name(name).is_ok();
        let cel = cel_accepts_bucket_name(name).is_ok();
        assert_eq!(rust, cel, "disagreement on {name:?}");
    }
}

#[test]
fn user_name_rust_and_cel_agree() {
    let fixed = ["abc", "App_User-1.x", "ab", "_abc", "-abc", "a b c", "user@x", "ünï"];
    let generated = pseudo_random_names(b"aZ09._-@ ", 800, 8, 0xfeed_beef);
    let long = "a".repeat(65);
    let ok64 = "a".repeat(64);
    for name in fixed.iter().copied().chain(generated.iter().map(String::as_str)).chain([long.as_str(), ok64.as_str()])
    {
        let rust = validate_user_name(name).is_ok();
        let cel = cel_accepts_user_name(name).is_ok();
        assert_eq!(rust, cel, "disagreement on {name:?}");
    }
    assert!(validate_user_name("App_User-1.x").is_ok());
    assert!(validate_user_name("ab").is_err());
    assert!(validate_user_name("user@x").is_err());
}

#[test]
fn default_names_are_valid_and_shortened_stably() {
    assert_eq!(naming::default_bucket_name("team-a", "backups").unwrap(), "team-a-backups");
    let long = "x".repeat(200);
    let a = naming::default_bucket_name("team-a", &long).unwrap();
    assert_eq!(a.len(), 63);
    assert_eq!(a, naming::default_bucket_name("team-a", &long).unwrap(), "stable");
    assert_ne!(a, naming::default_bucket_name("team-b", &long).unwrap(), "distinct");
    assert!(validate_bucket_name(&a).is_ok());
    // Object names may contain dots; a cut right after one must not leave ".-".
    let dotted = format!("{}.{}", "a".repeat(53), "b".repeat(30));
    let d = naming::default_bucket_name("ns", &dotted).unwrap();
    assert!(!d.contains(".-"), "{d}");
    assert!(naming::default_bucket_name("xn--ns", "b").is_err(), "reserved prefix cannot be defaulted");
    let u = naming::default_user_name("team-a", &long).unwrap();
    assert_eq!(u.len(), 64);
    assert!(validate_user_name(&u).is_ok());
}

#[test]
fn reserved_affixes_match_the_cel_rules() {
    let all_rules: String = BUCKET_NAME_RULES.iter().map(|r| r.rule).collect();
    for p in RESERVED_BUCKET_PREFIXES {
        assert!(all_rules.contains(&format!("startsWith('{p}')")), "prefix {p} missing from CEL");
    }
    for s in RESERVED_BUCKET_SUFFIXES {
        assert!(all_rules.contains(&format!("endsWith('{s}')")), "suffix {s} missing from CEL");
    }
}

fn version_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let v = &crd.spec.versions[0];
    serde_json::to_value(v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap()
}

fn rules_at(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .and_then(|v| v.get("x-kubernetes-validations"))
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|r| r["rule"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn crds_have_status_printer_columns_names_and_list_maps() {
    for (crd, short, scope, columns) in [
        (S3Bucket::crd(), "s3b", "Namespaced", vec!["Ready", "Bucket", "Store", "Backend", "Reason", "Age"]),
        (S3User::crd(), "s3u", "Namespaced", vec!["Ready", "User", "Secret", "Store", "Backend", "Reason", "Age"]),
        (S3Store::crd(), "s3s", "Namespaced", vec!["Ready", "Provider", "Endpoint", "Reason", "Age"]),
        (ClusterS3Store::crd(), "cs3s", "Cluster", vec!["Ready", "Provider", "Endpoint", "Reason", "Age"]),
    ] {
        assert_eq!(crd.spec.group, "s3-resource-operator.io");
        assert_eq!(crd.spec.scope, scope);
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["s3".to_string()][..]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(v.subresources.as_ref().unwrap().status.is_some(), "status subresource");
        let names: Vec<_> = v.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, columns);
        let ready = &v.additional_printer_columns.as_ref().unwrap()[0];
        assert_eq!(ready.json_path, r#".status.conditions[?(@.type=="Ready")].status"#);

        let schema = version_schema(&crd);
        let conditions = schema.pointer("/properties/status/properties/conditions").unwrap();
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
        let status = schema.pointer("/properties/status/properties").unwrap();
        assert!(status.get("observedGeneration").is_some());
        for c in ["type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"] {
            assert!(conditions.pointer(&format!("/items/properties/{c}")).is_some(), "condition field {c}");
        }
    }
}

/// Every property, at any depth, has a description: `kubectl explain` must teach each field.
fn assert_described(schema: &Value, path: &str) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            // metadata is described by Kubernetes itself.
            if p == ".metadata" || p == ".apiVersion" || p == ".kind" {
                continue;
            }
            let d = prop.get("description").and_then(Value::as_str).unwrap_or("");
            assert!(d.len() > 10, "{p} has no useful description");
            assert_described(prop, &p);
        }
    }
    if let Some(items) = schema.get("items") {
        assert_described(items, &format!("{path}[]"));
    }
}

#[test]
fn every_field_is_described() {
    assert_described(&version_schema(&S3Bucket::crd()), "s3bucket");
    assert_described(&version_schema(&S3User::crd()), "s3user");
    assert_described(&version_schema(&S3Store::crd()), "s3store");
    assert_described(&version_schema(&ClusterS3Store::crd()), "clusters3store");
    let schema = version_schema(&S3Bucket::crd());
    let d = schema.pointer("/properties/spec/properties/deletionPolicy/description").unwrap();
    assert!(d.as_str().unwrap().contains("Retain"));
}

#[test]
fn crds_carry_every_cel_rule() {
    let b = version_schema(&S3Bucket::crd());
    let name_rules = rules_at(&b, "/properties/spec/properties/bucketName");
    for r in BUCKET_NAME_RULES {
        assert!(name_rules.contains(&r.rule.to_string()), "bucketName rule {} missing", r.rule);
    }
    let spec_rules = rules_at(&b, "/properties/spec").join("\n");
    for needle in ["forceDelete", "oldSelf.bucketName", "oldSelf.objectLock", "self.versioning"] {
        assert!(spec_rules.contains(needle), "spec rule about {needle} missing");
    }
    let enums = |p: &str| b.pointer(p).unwrap()["enum"].clone();
    assert_eq!(enums("/properties/spec/properties/deletionPolicy"), serde_json::json!(["Retain", "Delete"]));
    assert_eq!(enums("/properties/spec/properties/versioning"), serde_json::json!(["Enabled", "Suspended"]));

    let u = version_schema(&S3User::crd());
    let user_rules = rules_at(&u, "/properties/spec/properties/userName");
    for r in USER_NAME_RULES {
        assert!(user_rules.contains(&r.rule.to_string()));
    }
    assert!(rules_at(&u, "/properties/spec").join("").contains("oldSelf.userName"));
    let access = u.pointer("/properties/spec/properties/access").unwrap();
    assert_eq!(access["maxItems"], 32);
    assert_eq!(access["x-kubernetes-list-type"], "map");
    assert!(!rules_at(&u, "/properties/spec/properties/access").is_empty());
    assert_eq!(
        u.pointer("/properties/spec/properties/access/items/properties/permission").unwrap()["enum"],
        serde_json::json!(["ReadWrite", "ReadOnly"])
    );
}

#[test]
fn force_delete_needs_delete_policy() {
    let force = |policy| {
        messages(validate_cel(&bucket(S3BucketSpec {
            deletion_policy: policy,
            force_delete: Some(true),
            ..Default::default()
        })))
    };
    let err = force(DeletionPolicy::Retain).unwrap_err();
    assert!(err[0].contains("forceDelete"), "{err:?}");
    assert!(force(DeletionPolicy::Delete).is_ok());
    let not_forced = bucket(S3BucketSpec { force_delete: Some(false), ..Default::default() });
    assert!(messages(validate_cel(&not_forced)).is_ok());
}

#[test]
fn object_lock_needs_versioning_enabled() {
    let lock = |v| {
        messages(validate_cel(&bucket(S3BucketSpec { object_lock: Some(true), versioning: v, ..Default::default() })))
    };
    assert!(lock(None).is_ok());
    assert!(lock(Some(Versioning::Enabled)).is_ok());
    assert!(lock(Some(Versioning::Suspended)).is_err());
}

#[test]
fn immutable_fields_reject_changes() {
    let named = |n: Option<&str>| bucket(S3BucketSpec { bucket_name: n.map(String::from), ..Default::default() });
    assert!(messages(validate_cel_update(&named(Some("abc")), &named(Some("abc")))).is_ok());
    for (new, old) in [(Some("abd"), Some("abc")), (None, Some("abc")), (Some("abc"), None)] {
        let err = messages(validate_cel_update(&named(new), &named(old))).unwrap_err();
        assert!(err.iter().any(|m| m.contains("bucketName is immutable")), "{new:?} <- {old:?}: {err:?}");
    }
    assert!(messages(validate_cel_update(&named(None), &named(None))).is_ok());

    let locked = |l: Option<bool>| bucket(S3BucketSpec { object_lock: l, ..Default::default() });
    assert!(messages(validate_cel_update(&locked(Some(true)), &locked(Some(false)))).is_err());
    assert!(
        messages(validate_cel_update(&locked(Some(false)), &locked(None))).is_ok(),
        "false and absent are the same"
    );

    let uname = |n: &str| user(S3UserSpec { user_name: Some(n.into()), ..Default::default() });
    let err = messages(validate_cel_update(&uname("bob-2"), &uname("bob-1"))).unwrap_err();
    assert!(err.iter().any(|m| m.contains("userName is immutable")));
}

#[test]
fn access_list_rejects_duplicates_and_bad_names() {
    let grant = |b: &str, p| BucketAccess { bucket: b.into(), permission: p };
    let ok = user(S3UserSpec {
        access: vec![grant("a", Permission::ReadWrite), grant("b", Permission::ReadOnly)],
        ..Default::default()
    });
    assert!(messages(validate_cel(&ok)).is_ok());
    let dup = user(S3UserSpec {
        access: vec![grant("a", Permission::ReadWrite), grant("a", Permission::ReadOnly)],
        ..Default::default()
    });
    let err = messages(validate_cel(&dup)).unwrap_err();
    assert!(err.iter().any(|m| m.contains("at most once")), "{err:?}");
    let bad = user(S3UserSpec { access: vec![grant("Not_A_Name", Permission::ReadOnly)], ..Default::default() });
    assert!(messages(validate_cel(&bad)).is_err());
    let bad_secret = user(S3UserSpec { secret_name: Some("UPPER".into()), ..Default::default() });
    assert!(messages(validate_cel(&bad_secret)).is_err());
}

#[test]
fn tag_keys_cannot_use_reserved_prefixes() {
    let tagged = |k: &str| {
        let mut spec = S3BucketSpec::default();
        spec.tags.insert(k.into(), s3op_api::bucket::TagValue("v".into()));
        messages(validate_cel(&bucket(spec)))
    };
    assert!(tagged("team").is_ok());
    assert!(tagged("aws:createdBy").is_err());
    assert!(tagged("s3-resource-operator.io/owner").is_err());
}

fn minio() -> Provider {
    Provider { minio: Some(S3Provider { endpoint: "http://minio:9000".into(), region: None }), ..Default::default() }
}

fn secret_ref(namespace: Option<&str>) -> StoreAuth {
    StoreAuth {
        secret_ref: Some(CredentialsSecretRef {
            name: "admin".into(),
            namespace: namespace.map(String::from),
            ..Default::default()
        }),
        pod_identity: None,
    }
}

fn s3store(spec: S3StoreSpec) -> S3Store {
    let mut s = S3Store::new("s", spec);
    s.metadata.namespace = Some("ns".into());
    s
}

#[test]
fn a_store_has_exactly_one_provider_and_one_kind_of_auth() {
    let ok = S3StoreSpec { provider: minio(), auth: secret_ref(None), ..Default::default() };
    assert!(messages(validate_cel(&s3store(ok.clone()))).is_ok());
    let none = S3StoreSpec { provider: Provider::default(), ..ok.clone() };
    assert!(messages(validate_cel(&s3store(none))).unwrap_err().iter().any(|m| m.contains("exactly one of aws")));
    let mut two = minio();
    two.aws = Some(AwsProvider { region: "eu-west-1".into(), endpoint: None });
    assert!(messages(validate_cel(&s3store(S3StoreSpec { provider: two, ..ok.clone() }))).is_err());
    let both = StoreAuth { pod_identity: Some(PodIdentity {}), ..secret_ref(None) };
    assert!(messages(validate_cel(&s3store(S3StoreSpec { auth: both, ..ok.clone() }))).is_err());
    let pod = StoreAuth { secret_ref: None, pod_identity: Some(PodIdentity {}) };
    let err = messages(validate_cel(&s3store(S3StoreSpec { auth: pod.clone(), ..ok.clone() }))).unwrap_err();
    assert!(err.iter().any(|m| m.contains("only for the aws provider")), "{err:?}");
    // The operator's own AWS identity: an administrator's ClusterS3Store may use it, a tenant's
    // S3Store may not.
    let aws = Provider { aws: Some(AwsProvider { region: "eu-west-1".into(), endpoint: None }), ..Default::default() };
    let tenant = S3StoreSpec { provider: aws.clone(), auth: pod.clone(), ..Default::default() };
    let err = messages(validate_cel(&s3store(tenant))).unwrap_err();
    assert!(err.iter().any(|m| m.contains("operator's own identity")), "{err:?}");
    let admin = ClusterS3Store::new("aws", ClusterS3StoreSpec { provider: aws, auth: pod, ..Default::default() });
    assert!(messages(validate_cel(&admin)).is_ok());
    let bad_endpoint =
        Provider { minio: Some(S3Provider { endpoint: "minio:9000".into(), region: None }), ..Default::default() };
    assert!(messages(validate_cel(&s3store(S3StoreSpec { provider: bad_endpoint, ..ok }))).is_err());
}

#[test]
fn a_namespaced_store_reads_only_its_own_namespace_and_a_cluster_store_names_one() {
    let elsewhere = S3StoreSpec { provider: minio(), auth: secret_ref(Some("kube-system")), ..Default::default() };
    let err = messages(validate_cel(&s3store(elsewhere))).unwrap_err();
    assert!(err.iter().any(|m| m.contains("own namespace")), "{err:?}");
    let selecting = S3StoreSpec {
        provider: minio(),
        auth: secret_ref(None),
        namespaces: Some(Default::default()),
        ..Default::default()
    };
    assert!(messages(validate_cel(&s3store(selecting))).is_err(), "namespaces is for cluster stores");
    let cluster = |auth| ClusterS3Store::new("c", ClusterS3StoreSpec { provider: minio(), auth, ..Default::default() });
    assert!(messages(validate_cel(&cluster(secret_ref(None)))).is_err(), "the Secret's namespace is required");
    assert!(messages(validate_cel(&cluster(secret_ref(Some("storage"))))).is_ok());
}

#[test]
fn store_ref_is_immutable() {
    let on = |name: Option<&str>| {
        bucket(S3BucketSpec {
            store_ref: name.map(|n| StoreRef { kind: StoreKind::ClusterS3Store, name: n.into() }),
            ..Default::default()
        })
    };
    assert!(messages(validate_cel_update(&on(Some("a")), &on(Some("a")))).is_ok());
    for (new, old) in [(Some("b"), Some("a")), (None, Some("a")), (Some("a"), None)] {
        let err = messages(validate_cel_update(&on(new), &on(old))).unwrap_err();
        assert!(err.iter().any(|m| m.contains("storeRef is immutable")), "{new:?} <- {old:?}: {err:?}");
    }
    let u = |name: &str| {
        user(S3UserSpec {
            store_ref: Some(StoreRef { kind: StoreKind::S3Store, name: name.into() }),
            ..Default::default()
        })
    };
    assert!(messages(validate_cel_update(&u("b"), &u("a"))).is_err());
}

#[test]
fn a_ca_bundle_comes_from_one_object_of_the_stores_own_namespace() {
    use s3op_api::store::{CaBundleRef, StoreTls};
    let with_ca = |ca: CaBundleRef| S3StoreSpec {
        provider: minio(),
        auth: secret_ref(None),
        tls: Some(StoreTls { ca_bundle: Some(ca) }),
        ..Default::default()
    };
    let from_map = CaBundleRef { config_map_name: Some("ca".into()), ..Default::default() };
    assert!(messages(validate_cel(&s3store(with_ca(from_map.clone())))).is_ok());
    let both = CaBundleRef { secret_name: Some("ca".into()), ..from_map.clone() };
    assert!(messages(validate_cel(&s3store(with_ca(both)))).unwrap_err().iter().any(|m| m.contains("exactly one")));
    let elsewhere = CaBundleRef { namespace: Some("other".into()), ..from_map.clone() };
    assert!(messages(validate_cel(&s3store(with_ca(elsewhere.clone())))).is_err());
    let cluster = |ca: CaBundleRef| {
        ClusterS3Store::new(
            "c",
            ClusterS3StoreSpec {
                provider: minio(),
                auth: secret_ref(Some("storage")),
                tls: Some(StoreTls { ca_bundle: Some(ca) }),
                ..Default::default()
            },
        )
    };
    assert!(messages(validate_cel(&cluster(from_map))).is_err(), "a cluster store names the namespace");
    assert!(messages(validate_cel(&cluster(elsewhere))).is_ok());
}

/// A store endpoint is a host with an optional path: a query, fragment or user info would let a
/// tenant's S3Store cut off the paths the operator appends and aim its requests anywhere. The
/// Rust check (the controller's) and the CEL rule (the API server's) agree on every row, and an
/// endpoint is checked the same on every provider field.
#[test]
fn endpoint_table_rust_and_cel_agree() {
    let table = [
        ("http://minio:9000", true),
        ("https://s3.eu-west-1.amazonaws.com", true),
        ("http://minio.storage.svc:9000/", true),
        ("https://gw.example.com/s3", true),
        ("http://[fd00::1]:3900", true),
        ("http://10.0.0.7:9000", true),
        ("minio:9000", false),
        ("ftp://minio", false),
        ("http://", false),
        ("http:///path", false),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/role?", false),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/role#", false),
        ("http://user:pass@minio:9000", false),
        ("http://minio:9000/a b", false),
        ("http://minio:9000\n", false),
    ];
    for (endpoint, ok) in table {
        let rust = s3op_api::store::validate_endpoint(endpoint);
        assert_eq!(rust.is_ok(), ok, "Rust on {endpoint:?}: {rust:?}");
        let garage = Provider {
            garage: Some(s3op_api::store::GarageProvider {
                endpoint: "http://garage:3900".into(),
                admin_endpoint: endpoint.into(),
                region: None,
            }),
            ..Default::default()
        };
        let aws = Provider {
            aws: Some(AwsProvider { region: "eu-west-1".into(), endpoint: Some(endpoint.into()) }),
            ..Default::default()
        };
        let s3 = Provider { minio: Some(S3Provider { endpoint: endpoint.into(), region: None }), ..Default::default() };
        for provider in [s3, garage, aws] {
            let spec = S3StoreSpec { provider, auth: secret_ref(None), ..Default::default() };
            let cel = messages(validate_cel(&s3store(spec)));
            assert_eq!(cel.is_ok(), ok, "CEL on {endpoint:?}: {cel:?}");
            if let Err(m) = cel {
                assert!(m.iter().any(|m| m == s3op_api::store::ENDPOINT_MESSAGE), "{m:?}");
            }
        }
    }
}
