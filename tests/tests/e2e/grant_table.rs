//! The grant table: what a ReadWrite and a ReadOnly grant really allow on each store, measured
//! with the granted users' own keys against a real store, printed as a Markdown table (visible
//! with `--nocapture`) and held to the contract:
//! - ReadWrite lists, reads, writes, deletes and uploads in parts on its bucket;
//! - ReadOnly lists and reads, and writes nothing (no put, delete or multipart step);
//! - neither reaches a bucket it was not granted;
//! - neither administers its bucket: bucket policy, ACL, tags, versioning and deleting the
//!   bucket are refused or not implemented by the store, never allowed.
//!
//! A call counts as allowed only when it succeeded and, for one that changes something, the
//! administrator sees the change; a success without effect is reported as such. An answer
//! `NotImplemented` (or HTTP 501) is "n/a". ListBuckets and GetBucketLocation are recorded,
//! not held to anything.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, fmt, fmt::Write as _, time::Instant};

use aws_sdk_s3::{
    Client,
    config::http::HttpResponse,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{
        BucketCannedAcl, BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Tag, Tagging,
        VersioningConfiguration,
    },
};
use s3op_backends::{Backend, BucketSpec, Credentials, Grant, Owner, Permission, UserSpec};
use s3op_tests::{
    fixture::{self, shared_store},
    stores::{Store, StoreKind, public_read_policy, unique_name},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The call succeeded and did what it asks for.
    Allowed,
    /// The store refused the call.
    Denied,
    /// The store answered success but nothing changed (or there was nothing to change).
    NoEffect,
    /// The store does not implement the call.
    NotImplemented,
}

/// What one call with a user's key gave.
#[derive(Clone, Debug)]
struct Outcome {
    verdict: Verdict,
    /// Shown in the table after the verdict: the status and error code, or what was seen.
    note: String,
    /// The whole answer, for a report.
    answer: String,
}

impl Outcome {
    fn allowed(note: impl Into<String>) -> Outcome {
        let note = note.into();
        Outcome { verdict: Verdict::Allowed, answer: format!("success {note}"), note }
    }

    fn no_effect(note: impl Into<String>) -> Outcome {
        let note = note.into();
        Outcome { verdict: Verdict::NoEffect, answer: format!("success, but {note}"), note }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.verdict {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::NoEffect => "no effect",
            Verdict::NotImplemented => "n/a",
        };
        if self.note.is_empty() { f.write_str(word) } else { write!(f, "{word} ({})", self.note) }
    }
}

/// A refused call: denied, or n/a when the store does not implement it. A call that got no
/// answer at all (the store is down, a timeout) fails the test.
fn refusal<E>(e: &SdkError<E, HttpResponse>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let answer = DisplayErrorContext(e).to_string();
    let Some(status) = e.raw_response().map(|r| r.status().as_u16()) else {
        panic!("the store gave no answer: {answer}");
    };
    let code = e.code().unwrap_or_default();
    let note = if code.is_empty() { status.to_string() } else { format!("{status} {code}") };
    let verdict = if code == "NotImplemented" || status == 501 { Verdict::NotImplemented } else { Verdict::Denied };
    Outcome { verdict, note, answer }
}

/// A plain call: allowed when it succeeded.
fn judged<T, E>(r: Result<T, SdkError<E, HttpResponse>>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match r {
        Ok(_) => Outcome::allowed(""),
        Err(e) => refusal(&e),
    }
}

/// One line of a user's measurements.
#[derive(Debug)]
struct Row {
    op: &'static str,
    request: String,
    outcome: Outcome,
}

fn row(op: &'static str, request: impl Into<String>, outcome: Outcome) -> Row {
    Row { op, request: request.into(), outcome }
}

/// A bucket policy that changes nothing (it denies reads under a prefix no object has), put by
/// the administrator so DeleteBucketPolicy has a policy to delete where grants are not one.
fn sentinel_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"granttablesentinel","Effect":"Deny","Principal":{{"AWS":["*"]}},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/no-such-prefix/*"]}}]}}"#
    )
}

fn bucket_spec(name: &str) -> BucketSpec {
    BucketSpec {
        name: name.to_string(),
        owner: Owner::s3bucket("grant-table", name, format!("uid-{name}")),
        versioning: None,
        object_lock: false,
        tags: BTreeMap::new(),
        quota: None,
    }
}

fn user_spec(name: &str) -> UserSpec {
    UserSpec { name: name.to_string(), owner: Owner::s3user("grant-table", name, format!("uid-{name}")) }
}

/// One store's buckets and granted users.
struct Table<'a> {
    store: &'a Store,
    b: &'a dyn Backend,
    admin: Client,
    granted: String,
    other: String,
    empty: String,
    /// (user, key, permission): the ReadWrite user, then the ReadOnly one.
    users: Vec<(String, Credentials, Permission)>,
}

impl Table<'_> {
    fn grants(&self, permission: Permission) -> Vec<Grant> {
        [&self.granted, &self.empty].iter().map(|b| Grant { bucket: b.to_string(), permission }).collect()
    }

    async fn seed(&self) {
        self.admin
            .put_object()
            .bucket(&self.granted)
            .key("seed.txt")
            .body(ByteStream::from_static(b"seed"))
            .send()
            .await
            .unwrap();
    }

    async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.admin.head_object().bucket(bucket).key(key).send().await.is_ok()
    }

    async fn policy(&self) -> Option<String> {
        let got = self.admin.get_bucket_policy().bucket(&self.granted).send().await;
        got.ok().and_then(|p| p.policy).filter(|p| !p.trim().is_empty())
    }

    async fn set_policy(&self, policy: Option<String>) {
        match policy {
            Some(p) => {
                self.admin.put_bucket_policy().bucket(&self.granted).policy(p).send().await.unwrap();
            }
            None => {
                let _ = self.admin.delete_bucket_policy().bucket(&self.granted).send().await;
            }
        }
    }

    /// Makes a bucket a user deleted again, with both users' grants and the seed object.
    async fn restore_bucket(&self, bucket: &str) {
        self.b.ensure_bucket(&bucket_spec(bucket), false).await.unwrap();
        for (user, _, permission) in &self.users {
            self.b.set_grants(user, &self.grants(*permission)).await.unwrap();
        }
        if bucket == self.granted {
            self.seed().await;
        }
    }

    async fn pending_uploads(&self, bucket: &str) -> Vec<(String, String)> {
        let listed = self.admin.list_multipart_uploads().bucket(bucket).send().await.unwrap();
        listed
            .uploads()
            .iter()
            .map(|u| (u.key().unwrap_or_default().to_string(), u.upload_id().unwrap_or_default().to_string()))
            .collect()
    }

    async fn admin_abort(&self, key: &str, upload_id: &str) {
        let _ = self.admin.abort_multipart_upload().bucket(&self.granted).key(key).upload_id(upload_id).send().await;
    }

    /// Every measurement with one user's key, in a fixed order.
    #[allow(clippy::too_many_lines)]
    async fn measure(&self, user: usize) -> Vec<Row> {
        let (_, key, permission) = &self.users[user];
        let who = match permission {
            Permission::ReadWrite => "rw",
            Permission::ReadOnly => "ro",
        };
        let s3 = self.store.s3_client_with(&key.access_key_id, key.secret_access_key.expose());
        let g = self.granted.as_str();
        let mut rows = Vec::new();

        // Objects in the granted bucket.
        let outcome = match s3.list_objects_v2().bucket(g).send().await {
            Ok(o) if o.contents().iter().any(|c| c.key() == Some("seed.txt")) => Outcome::allowed(""),
            Ok(_) => Outcome::allowed("seed.txt not listed"),
            Err(e) => refusal(&e),
        };
        rows.push(row("ListObjectsV2 granted", format!("GET /{g}?list-type=2"), outcome));

        let outcome = match s3.get_object().bucket(g).key("seed.txt").send().await {
            Ok(o) => {
                let body = o.body.collect().await.unwrap().into_bytes();
                if body.as_ref() == b"seed" { Outcome::allowed("") } else { Outcome::allowed("other bytes") }
            }
            Err(e) => refusal(&e),
        };
        rows.push(row("GetObject seed.txt", format!("GET /{g}/seed.txt"), outcome));

        let put_key = format!("put-{who}.txt");
        let outcome = match s3.put_object().bucket(g).key(&put_key).body(ByteStream::from_static(b"p")).send().await {
            Ok(_) if self.exists(g, &put_key).await => Outcome::allowed(""),
            Ok(_) => Outcome::no_effect("the object is not there"),
            Err(e) => refusal(&e),
        };
        rows.push(row("PutObject granted", format!("PUT /{g}/{put_key}"), outcome));

        // ReadWrite deletes what it put; ReadOnly tries the seed.
        let delete_key = match permission {
            Permission::ReadWrite => put_key.clone(),
            Permission::ReadOnly => "seed.txt".to_string(),
        };
        if !self.exists(g, &delete_key).await {
            self.admin
                .put_object()
                .bucket(g)
                .key(&delete_key)
                .body(ByteStream::from_static(b"d"))
                .send()
                .await
                .unwrap();
        }
        let outcome = match s3.delete_object().bucket(g).key(&delete_key).send().await {
            Ok(_) if !self.exists(g, &delete_key).await => Outcome::allowed(""),
            Ok(_) => Outcome::no_effect("the object is still there"),
            Err(e) => refusal(&e),
        };
        rows.push(row("DeleteObject granted", format!("DELETE /{g}/{delete_key}"), outcome));
        if !self.exists(g, "seed.txt").await {
            self.seed().await;
        }

        // Multipart, one step at a time: a step the user may not take is taken by the
        // administrator, so the next step is measured too.
        let mpu_key = format!("mpu-{who}.bin");
        let (outcome, upload_id) = match s3.create_multipart_upload().bucket(g).key(&mpu_key).send().await {
            Ok(o) => (Outcome::allowed(""), o.upload_id().unwrap().to_string()),
            Err(e) => {
                let admin = self.admin.create_multipart_upload().bucket(g).key(&mpu_key).send().await.unwrap();
                (refusal(&e), admin.upload_id().unwrap().to_string())
            }
        };
        rows.push(row("CreateMultipartUpload", format!("POST /{g}/{mpu_key}?uploads"), outcome));

        // The part is checked in the completed object (moto answers ListParts with a
        // ListPartsResponse root the SDK cannot read). A completion the user may not do is
        // done by the administrator.
        const PART: &[u8] = b"a single part may be of any size";
        let upload_part = s3.upload_part().bucket(g).key(&mpu_key).upload_id(&upload_id).part_number(1);
        let (refused, etag) = match upload_part.body(ByteStream::from_static(PART)).send().await {
            Ok(o) => (None, o.e_tag().unwrap().to_string()),
            Err(e) => {
                let admin = self.admin.upload_part().bucket(g).key(&mpu_key).upload_id(&upload_id).part_number(1);
                let admin = admin.body(ByteStream::from_static(PART)).send().await.unwrap();
                (Some(refusal(&e)), admin.e_tag().unwrap().to_string())
            }
        };
        let parts = || {
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(&etag).build())
                .build()
        };
        let complete = s3.complete_multipart_upload().bucket(g).key(&mpu_key).upload_id(&upload_id);
        let completed = match complete.multipart_upload(parts()).send().await {
            Ok(_) if self.exists(g, &mpu_key).await => Outcome::allowed(""),
            Ok(_) => Outcome::no_effect("the object is not there"),
            Err(e) => {
                let admin = self.admin.complete_multipart_upload().bucket(g).key(&mpu_key).upload_id(&upload_id);
                admin.multipart_upload(parts()).send().await.unwrap();
                refusal(&e)
            }
        };
        let uploaded = match refused {
            Some(outcome) => outcome,
            None => {
                let got = self.admin.get_object().bucket(g).key(&mpu_key).send().await.unwrap();
                if got.body.collect().await.unwrap().into_bytes().as_ref() == PART {
                    Outcome::allowed("")
                } else {
                    Outcome::no_effect("the part is not in the completed object")
                }
            }
        };
        rows.push(row("UploadPart", format!("PUT /{g}/{mpu_key}?partNumber=1&uploadId={upload_id}"), uploaded));
        rows.push(row("CompleteMultipartUpload", format!("POST /{g}/{mpu_key}?uploadId={upload_id}"), completed));

        let abort_key = format!("abort-{who}.bin");
        let pending = self.admin.create_multipart_upload().bucket(g).key(&abort_key).send().await.unwrap();
        let pending = pending.upload_id().unwrap().to_string();
        let outcome = match s3.list_multipart_uploads().bucket(g).send().await {
            Ok(o) if o.uploads().iter().any(|u| u.upload_id() == Some(pending.as_str())) => Outcome::allowed(""),
            Ok(_) => Outcome::allowed("the pending upload not listed"),
            Err(e) => refusal(&e),
        };
        rows.push(row("ListMultipartUploads", format!("GET /{g}?uploads"), outcome));

        let outcome = match s3.abort_multipart_upload().bucket(g).key(&abort_key).upload_id(&pending).send().await {
            Ok(_) if !self.pending_uploads(g).await.iter().any(|(_, id)| *id == pending) => Outcome::allowed(""),
            Ok(_) => {
                self.admin_abort(&abort_key, &pending).await;
                Outcome::no_effect("the upload is still pending")
            }
            Err(e) => {
                self.admin_abort(&abort_key, &pending).await;
                refusal(&e)
            }
        };
        rows.push(row(
            "AbortMultipartUpload (the admin's)",
            format!("DELETE /{g}/{abort_key}?uploadId={pending}"),
            outcome,
        ));

        // Bucket-level reads.
        let outcome = judged(s3.get_bucket_location().bucket(g).send().await);
        rows.push(row("GetBucketLocation", format!("GET /{g}?location"), outcome));

        let outcome = match s3.list_buckets().send().await {
            Ok(o) => {
                let names: Vec<&str> = o.buckets().iter().filter_map(|b| b.name()).collect();
                let shown = |b: &str| if names.contains(&b) { "shown" } else { "hidden" };
                Outcome::allowed(format!("{} buckets; granted {}, other {}", names.len(), shown(g), shown(&self.other)))
            }
            Err(e) => refusal(&e),
        };
        rows.push(row("ListBuckets", "GET /", outcome));

        // A bucket not granted.
        let o = self.other.as_str();
        let outcome = judged(s3.list_objects_v2().bucket(o).send().await);
        rows.push(row("ListObjectsV2 other", format!("GET /{o}?list-type=2"), outcome));
        let intruder = format!("intruder-{who}.txt");
        let outcome = match s3.put_object().bucket(o).key(&intruder).body(ByteStream::from_static(b"x")).send().await {
            Ok(_) if self.exists(o, &intruder).await => Outcome::allowed(""),
            Ok(_) => Outcome::no_effect("the object is not there"),
            Err(e) => refusal(&e),
        };
        rows.push(row("PutObject other", format!("PUT /{o}/{intruder}"), outcome));

        // Administering the granted bucket.
        let outcome = match s3.get_bucket_policy().bucket(g).send().await {
            Ok(_) => Outcome::allowed(""),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => Outcome::allowed("404 NoSuchBucketPolicy"),
            Err(e) => refusal(&e),
        };
        rows.push(row("GetBucketPolicy", format!("GET /{g}?policy"), outcome));

        let before = self.policy().await;
        let outcome = match s3.put_bucket_policy().bucket(g).policy(public_read_policy(g)).send().await {
            Ok(_) if self.policy().await != before => {
                self.set_policy(before).await;
                Outcome::allowed("")
            }
            Ok(_) => Outcome::no_effect("the policy is unchanged"),
            Err(e) => refusal(&e),
        };
        rows.push(row("PutBucketPolicy (public read)", format!("PUT /{g}?policy {}", public_read_policy(g)), outcome));

        let before = self.policy().await;
        let outcome = match s3.delete_bucket_policy().bucket(g).send().await {
            Ok(_) if before.is_none() => Outcome::no_effect("there was no policy"),
            Ok(_) if self.policy().await.is_none() => {
                self.set_policy(before).await;
                Outcome::allowed("")
            }
            Ok(_) => Outcome::no_effect("the policy is still there"),
            Err(e) => refusal(&e),
        };
        rows.push(row("DeleteBucketPolicy", format!("DELETE /{g}?policy"), outcome));

        let tags_before = match self.admin.get_bucket_tagging().bucket(g).send().await {
            Ok(t) => t.tag_set().to_vec(),
            Err(_) => Vec::new(),
        };
        let tag = Tag::builder().key("grant-table").value(who).build().unwrap();
        let tagging = Tagging::builder().tag_set(tag).build().unwrap();
        let outcome = match s3.put_bucket_tagging().bucket(g).tagging(tagging).send().await {
            Ok(_) => {
                let after = self.admin.get_bucket_tagging().bucket(g).send().await;
                let changed =
                    after.is_ok_and(|t| t.tag_set().iter().any(|t| t.key() == "grant-table" && t.value() == who));
                if changed {
                    if tags_before.is_empty() {
                        self.admin.delete_bucket_tagging().bucket(g).send().await.unwrap();
                    } else {
                        let restore = Tagging::builder().set_tag_set(Some(tags_before)).build().unwrap();
                        self.admin.put_bucket_tagging().bucket(g).tagging(restore).send().await.unwrap();
                    }
                    Outcome::allowed("")
                } else {
                    Outcome::no_effect("the tags are unchanged")
                }
            }
            Err(e) => refusal(&e),
        };
        rows.push(row("PutBucketTagging", format!("PUT /{g}?tagging grant-table={who}"), outcome));

        let status_before = self.admin.get_bucket_versioning().bucket(g).send().await.ok().and_then(|v| v.status);
        let target = if status_before == Some(BucketVersioningStatus::Suspended) {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        let config = VersioningConfiguration::builder().status(target.clone()).build();
        let outcome = match s3.put_bucket_versioning().bucket(g).versioning_configuration(config).send().await {
            Ok(_) => {
                let after = self.admin.get_bucket_versioning().bucket(g).send().await.ok().and_then(|v| v.status);
                if after.as_ref() == Some(&target) {
                    Outcome::allowed(format!("{status_before:?} -> {target:?}"))
                } else {
                    Outcome::no_effect(format!("versioning stays {after:?}"))
                }
            }
            Err(e) => refusal(&e),
        };
        rows.push(row("PutBucketVersioning", format!("PUT /{g}?versioning Status={target:?}"), outcome));

        let outcome = judged(s3.put_bucket_acl().bucket(g).acl(BucketCannedAcl::Private).send().await);
        rows.push(row("PutBucketAcl (private)", format!("PUT /{g}?acl x-amz-acl: private"), outcome));

        for (op, bucket) in [("DeleteBucket granted (not empty)", g), ("DeleteBucket empty", self.empty.as_str())] {
            let outcome = match s3.delete_bucket().bucket(bucket).send().await {
                Ok(_) if self.admin.head_bucket().bucket(bucket).send().await.is_err() => {
                    self.restore_bucket(bucket).await;
                    Outcome::allowed("")
                }
                Ok(_) => Outcome::no_effect("the bucket is still there"),
                Err(e) => refusal(&e),
            };
            rows.push(row(op, format!("DELETE /{bucket}"), outcome));
        }
        rows
    }
}

/// Builds the buckets and users on `b`, measures both users, prints the table, cleans up, and
/// then holds the table to the contract.
async fn grant_table(store: &Store, b: &dyn Backend, prefix: &str) {
    let started = Instant::now();
    let kind = store.kind();
    let admin = store.s3_client();
    let granted = unique_name(&format!("{prefix}-granted"));
    let other = unique_name(&format!("{prefix}-other"));
    let empty = unique_name(&format!("{prefix}-empty"));
    for bucket in [&granted, &other, &empty] {
        b.ensure_bucket(&bucket_spec(bucket), false).await.unwrap();
    }
    let mut table = Table { store, b, admin, granted, other, empty, users: Vec::new() };
    for (suffix, permission) in [("rw", Permission::ReadWrite), ("ro", Permission::ReadOnly)] {
        let user = unique_name(&format!("{prefix}-{suffix}"));
        b.ensure_user(&user_spec(&user), false).await.unwrap();
        let key = b.create_key(&user, None).await.unwrap();
        b.set_grants(&user, &table.grants(permission)).await.unwrap();
        table.users.push((user, key, permission));
    }
    table.seed().await;
    // On VersityGW the grants are the bucket's policy; elsewhere the administrator puts one
    // that changes nothing, so DeleteBucketPolicy has something to delete (Garage has none).
    if kind != StoreKind::Versitygw
        && let Err(e) =
            table.admin.put_bucket_policy().bucket(&table.granted).policy(sentinel_policy(&table.granted)).send().await
    {
        assert!(
            refusal(&e).verdict == Verdict::NotImplemented,
            "{kind}: the administrator's bucket policy: {}",
            DisplayErrorContext(&e)
        );
    }

    let rw = table.measure(0).await;
    let ro = table.measure(1).await;

    let mut out = format!(
        "\n#### {kind}: what a grant allows (measured with each user's key)\n\n| Operation | ReadWrite | ReadOnly |\n|---|---|---|\n"
    );
    for (a, r) in rw.iter().zip(&ro) {
        assert_eq!(a.op, r.op);
        writeln!(out, "| {} | {} | {} |", a.op, a.outcome, r.outcome).unwrap();
    }
    eprintln!("{out}");

    // Clean up before judging, so a violation leaves nothing behind.
    for bucket in [&table.granted, &table.other, &table.empty] {
        for (key, id) in table.pending_uploads(bucket).await {
            let _ = table.admin.abort_multipart_upload().bucket(bucket.as_str()).key(key).upload_id(id).send().await;
        }
    }
    for (user, _, _) in &table.users {
        b.delete_user(user).await.unwrap();
    }
    for bucket in [&table.granted, &table.other, &table.empty] {
        b.delete_bucket(bucket, true).await.unwrap();
    }

    let mut violations = Vec::new();
    let mut hold = |rows: &[Row], permission: &str, op: &str, ok: &dyn Fn(Verdict) -> bool, wanted: &str| {
        let r = rows.iter().find(|r| r.op == op).unwrap();
        if !ok(r.outcome.verdict) {
            violations.push(format!(
                "{kind}: {permission}: {op}: wanted {wanted}, got {}\n  request: {}\n  answer: {}",
                r.outcome, r.request, r.outcome.answer
            ));
        }
    };
    let allowed = |v: Verdict| v == Verdict::Allowed;
    let denied = |v: Verdict| v == Verdict::Denied;
    let not_allowed = |v: Verdict| v != Verdict::Allowed;
    for op in [
        "ListObjectsV2 granted",
        "GetObject seed.txt",
        "PutObject granted",
        "DeleteObject granted",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    ] {
        hold(&rw, "ReadWrite", op, &allowed, "allowed");
    }
    for op in ["ListObjectsV2 granted", "GetObject seed.txt"] {
        hold(&ro, "ReadOnly", op, &allowed, "allowed");
    }
    for op in [
        "PutObject granted",
        "DeleteObject granted",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload (the admin's)",
    ] {
        hold(&ro, "ReadOnly", op, &not_allowed, "denied");
    }
    for (rows, permission) in [(&rw, "ReadWrite"), (&ro, "ReadOnly")] {
        for op in ["ListObjectsV2 other", "PutObject other"] {
            hold(rows, permission, op, &denied, "denied");
        }
        for op in [
            "PutBucketPolicy (public read)",
            "DeleteBucketPolicy",
            "PutBucketAcl (private)",
            "PutBucketTagging",
            "PutBucketVersioning",
            "DeleteBucket granted (not empty)",
            "DeleteBucket empty",
        ] {
            hold(rows, permission, op, &not_allowed, "denied or n/a");
        }
    }
    eprintln!("{kind}: grant table measured in {:?}", started.elapsed());
    assert!(violations.is_empty(), "{} grant(s) beyond the contract:\n{}", violations.len(), violations.join("\n"));
}

#[tokio::test]
async fn versitygw_grant_table() {
    let store = shared_store(StoreKind::Versitygw).await;
    let b = fixture::versitygw(&store, &unique_name("s3op-markers"));
    grant_table(&store, &b, "gt-vgw").await;
}

#[tokio::test]
async fn minio_grant_table() {
    let store = shared_store(StoreKind::Minio).await;
    let b = fixture::minio(&store, &unique_name("s3op-markers"));
    grant_table(&store, &b, "gt-minio").await;
}

#[tokio::test]
async fn garage_grant_table() {
    let store = shared_store(StoreKind::Garage).await;
    let b = fixture::garage(&store, &unique_name("s3op-markers"));
    grant_table(&store, &b, "gt-garage").await;
}

#[tokio::test]
async fn aws_grant_table() {
    // shared_store is enforcing: moto checks signatures and evaluates the users' IAM policies.
    let store = shared_store(StoreKind::Moto).await;
    let b = fixture::aws(&store).await;
    grant_table(&store, &b, "gt-aws").await;
}
