//! The S3User reconciler: resolve the granted S3Buckets, ensure the user and exactly its grants,
//! keep one working key in a Secret the user owns, rotate when that Secret goes or is edited,
//! and delete the user (never one that is not ours) when the S3User goes.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use s3op_api::{
    ConditionReason, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Permission, S3Bucket, S3User, S3UserStatus,
    naming::default_user_name, secret_keys, validate_user_name,
};
use s3op_backends::{
    BackendError, Change, Credentials, Grant, Owner, SecretString, UserInfo, UserSpec, ledger::Subject,
};
use sha2::{Digest, Sha256};

use crate::{
    bucket::bucket_name_of,
    context::{Context, Error, Result, wait_synced},
    metrics::API_WRITE_SECRET,
    reconcile::{self, Halt, Reconciled},
    status::{Readiness, WithStatus, is_ready_at, ready_condition},
    stores::{ActiveStore, StoreKey},
};

/// Kind name, for metrics and logs.
pub const KIND: &str = "S3User";

/// Annotation on the credentials Secret: a hash of the key pair the operator wrote, so an
/// edited Secret is noticed (and replaced by a fresh key pair) without storing the secret twice.
pub const CREDENTIALS_HASH_ANNOTATION: &str = "s3-resource-operator.io/credentials-sha256";

impl WithStatus for S3User {
    type Status = S3UserStatus;
    const KIND: &'static str = KIND;
    fn status_ref(&self) -> Option<&S3UserStatus> {
        self.status.as_ref()
    }
    fn api_of(&self, client: kube::Client) -> kube::Api<Self> {
        kube::Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn conditions(status: &S3UserStatus) -> &[Condition] {
        &status.conditions
    }
}

impl Reconciled for S3User {
    async fn apply(&self, ctx: &Context) -> Result<Action> {
        apply(self, ctx).await
    }
    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        cleanup(self, ctx).await
    }
    async fn report(&self, ctx: &Context, readiness: &Readiness) -> Result<()> {
        report(self, ctx, None, None, None, readiness).await
    }
    fn store(&self) -> StoreKey {
        store_of(self)
    }
}

/// The store an S3User lives on.
pub fn store_of(obj: &S3User) -> StoreKey {
    StoreKey::of(obj.spec.store_ref.as_ref(), &obj.namespace().unwrap_or_default())
}

/// The claim an S3User makes on the store.
pub fn owner_of(obj: &S3User) -> Owner {
    Owner::s3user(obj.namespace().unwrap_or_default(), obj.name_any(), obj.uid().unwrap_or_default())
}

/// The user name on the store: `spec.userName` or the default, checked.
pub fn user_name_of(obj: &S3User) -> Result<String, String> {
    match &obj.spec.user_name {
        Some(name) => validate_user_name(name).map(|()| name.clone()).map_err(|e| format!("userName {name:?}: {e}")),
        None => default_user_name(&obj.namespace().unwrap_or_default(), &obj.name_any()).map_err(|e| {
            format!("no userName given and the default <namespace>-<name> is not valid ({e}): set spec.userName")
        }),
    }
}

/// The Secret receiving the credentials.
pub fn secret_name_of(obj: &S3User) -> String {
    obj.spec.secret_name.clone().unwrap_or_else(|| format!("{}-s3-credentials", obj.name_any()))
}

fn credentials_hash(access_key_id: &str, secret: &str) -> String {
    hex::encode(Sha256::digest(format!("{access_key_id}\n{secret}").as_bytes()))
}

/// True when the Secret's controller is this S3User.
fn owned_by(secret: &Secret, obj: &S3User) -> bool {
    let uid = obj.uid();
    secret.owner_references().iter().any(|r| Some(&r.uid) == uid.as_ref() && r.controller == Some(true))
}

/// The key pair in a Secret the operator wrote, if it is intact (its hash annotation matches).
fn credentials_in(secret: &Secret) -> Option<Credentials> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let access_key_id = text(secret_keys::ACCESS_KEY_ID)?;
    let secret_key = text(secret_keys::SECRET_ACCESS_KEY)?;
    let recorded = secret.annotations().get(CREDENTIALS_HASH_ANNOTATION)?;
    (*recorded == credentials_hash(&access_key_id, &secret_key))
        .then(|| Credentials { access_key_id, secret_access_key: SecretString::new(secret_key) })
}

/// The grants naming S3Buckets on another store than the user's: a user and its buckets must
/// share one store, and no wait fixes that.
fn store_mismatches(obj: &S3User, buckets: &Store<S3Bucket>) -> Vec<String> {
    let namespace = obj.namespace().unwrap_or_default();
    let mine = store_of(obj);
    obj.spec
        .access
        .iter()
        .filter_map(|a| buckets.get(&ObjectRef::<S3Bucket>::new(&a.bucket).within(&namespace)))
        .filter(|b| crate::bucket::store_of(b) != mine)
        .map(|b| format!("{} (on {})", b.name_any(), crate::bucket::store_of(&b)))
        .collect()
}

/// Buckets an S3User cannot be granted yet, and whether that is only a matter of time.
#[derive(Debug, PartialEq, Eq)]
struct Waiting {
    /// One entry per bucket, naming it and why it is not usable.
    buckets: Vec<String>,
    /// Every one of them exists and has not been reconciled yet for its current spec (new, or
    /// just edited): the expected wait of a fresh rollout, shown in status without a Warning event.
    only_new: bool,
}

/// The grants the S3User asks for, resolved through the S3Buckets of its namespace, each with
/// the S3Bucket it comes from; or what it is waiting for. The bucket name comes from the
/// S3Bucket's spec, never its status (which a tenant allowed to write status could forge), and
/// a bucket counts only when Ready for its current generation. The ledger has the last word
/// before a grant is written (see `verify_grants`).
fn resolve_grants(obj: &S3User, buckets: &Store<S3Bucket>) -> Result<Vec<(String, Grant)>, Waiting> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut grants = Vec::new();
    let mut waiting = Waiting { buckets: Vec::new(), only_new: true };
    for access in &obj.spec.access {
        let found = buckets.get(&ObjectRef::<S3Bucket>::new(&access.bucket).within(&namespace));
        let ready_name = found.as_ref().and_then(|b| {
            let status = b.status.as_ref()?;
            if b.meta().deletion_timestamp.is_some() || !is_ready_at(&status.conditions, b.metadata.generation) {
                return None;
            }
            bucket_name_of(b).ok()
        });
        match (found, ready_name) {
            (_, Some(bucket)) => grants.push((
                access.bucket.clone(),
                Grant {
                    bucket,
                    permission: match access.permission {
                        Permission::ReadWrite => s3op_backends::Permission::ReadWrite,
                        Permission::ReadOnly => s3op_backends::Permission::ReadOnly,
                    },
                },
            )),
            (Some(b), None) => {
                let new = b.meta().deletion_timestamp.is_none()
                    && b.status.as_ref().is_none_or(|s| {
                        ready_condition(&s.conditions).is_none_or(|c| c.observed_generation != b.metadata.generation)
                    });
                waiting.only_new &= new;
                waiting.buckets.push(format!("{} (not Ready)", access.bucket));
            }
            (None, None) => {
                waiting.only_new = false;
                waiting.buckets.push(format!("{} (no such S3Bucket in {namespace})", access.bucket));
            }
        }
    }
    if !waiting.buckets.is_empty() {
        return Err(waiting);
    }
    grants.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(grants)
}

/// Refuses a grant on a bucket the ledger does not give to the named S3Bucket of the user's
/// namespace: whatever any status says, a user is only ever granted its own namespace's buckets.
async fn verify_grants(store: &ActiveStore, namespace: &str, grants: &[(String, Grant)]) -> Result<(), BackendError> {
    for (s3bucket, grant) in grants {
        let mut holder = store.backend.holder(Subject::Bucket, &grant.bucket).await?;
        if holder.is_none() {
            // Buckets made before the ledger recorded buckets carry their claim only as tags.
            holder = store.backend.describe_bucket(&grant.bucket).await?.and_then(|b| b.owner);
        }
        let wanted = Owner::s3bucket(namespace, s3bucket.as_str(), "");
        if !holder.as_ref().is_some_and(|h| h.same_claim(&wanted)) {
            return Err(BackendError::NotOwned {
                what: format!("bucket {}", grant.bucket),
                detail: format!(
                    "not held by {wanted} in the ownership ledger ({}), so it is granted to nobody through it",
                    holder.map_or_else(|| "no claim".to_string(), |h| format!("claimed by {h}"))
                ),
            });
        }
    }
    Ok(())
}

/// Writes status for `readiness`, naming the user and its key once known.
async fn report(
    obj: &S3User,
    ctx: &Context,
    store: Option<&ActiveStore>,
    user: Option<&str>,
    access_key_id: Option<&str>,
    readiness: &Readiness,
) -> Result<()> {
    let generation = obj.metadata.generation;
    let secret_name = secret_name_of(obj);
    let shown = ctx.stores.shown(&store_of(obj));
    let backend = store.map(|s| s.backend.kind().as_str().to_string());
    reconcile::report(obj, ctx, readiness, |previous, conditions| S3UserStatus {
        observed_generation: generation,
        user_name: user.map(str::to_string).or(previous.user_name),
        access_key_id: access_key_id.map(str::to_string).or(previous.access_key_id),
        secret_name: Some(secret_name.clone()),
        store: Some(shown.clone()),
        backend: backend.clone().or(previous.backend),
        conditions,
    })
    .await
}

/// The Secret as the operator writes it.
fn desired_secret(obj: &S3User, store: &ActiveStore, creds: &Credentials, grants: &[Grant]) -> Secret {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put(secret_keys::ACCESS_KEY_ID, &creds.access_key_id);
    put(secret_keys::SECRET_ACCESS_KEY, creds.secret_access_key.expose());
    if let Some(endpoint) = &store.config.s3_endpoint_url {
        put(secret_keys::ENDPOINT_URL, endpoint);
    }
    put(secret_keys::REGION, &store.config.region);
    if let [only] = grants {
        put(secret_keys::BUCKET_NAME, &only.bucket);
    }
    let names: Vec<&str> = grants.iter().map(|g| g.bucket.as_str()).collect();
    put(secret_keys::BUCKET_NAMES, &names.join(","));
    let owner = OwnerReference {
        api_version: S3User::api_version(&()).to_string(),
        kind: S3User::kind(&()).to_string(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name_of(obj)),
            namespace: obj.namespace(),
            labels: Some(BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())])),
            annotations: Some(BTreeMap::from([(
                CREDENTIALS_HASH_ANNOTATION.to_string(),
                credentials_hash(&creds.access_key_id, creds.secret_access_key.expose()),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    }
}

/// True when `current` already holds everything `desired` says (other fields may exist).
fn secret_matches(current: &Secret, desired: &Secret) -> bool {
    let contains = |have: Option<&BTreeMap<String, String>>, want: Option<&BTreeMap<String, String>>| {
        want.is_none_or(|w| w.iter().all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v)))
    };
    current.data == desired.data
        && contains(current.metadata.labels.as_ref(), desired.metadata.labels.as_ref())
        && contains(current.metadata.annotations.as_ref(), desired.metadata.annotations.as_ref())
}

async fn write_secret(ctx: &Context, secret: &Secret) -> Result<()> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), secret.metadata.namespace.as_deref().unwrap_or_default());
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut body = serde_json::to_value(secret).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let written = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    ctx.own_secret_writes.record(
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        &name,
        written.metadata.resource_version,
    );
    ctx.metrics.api_write(KIND, API_WRITE_SECRET);
    Ok(())
}

async fn apply(obj: &S3User, ctx: &Context) -> Result<Action> {
    let store = match ctx.stores.usable(&store_of(obj), &obj.namespace().unwrap_or_default()) {
        Ok(store) => store,
        Err(unusable) => {
            return Halt::from(unusable)
                .settle(ctx, |r| async move { report(obj, ctx, None, None, None, &r).await })
                .await;
        }
    };
    let store = store.as_ref();
    let user = match user_name_of(obj) {
        Ok(u) => u,
        Err(message) => {
            return Halt::Wait(Readiness::not_ready(ConditionReason::InvalidSpec, message))
                .settle(ctx, |r| async move { report(obj, ctx, Some(store), None, None, &r).await })
                .await;
        }
    };
    match converge(obj, ctx, store, &user).await {
        Ok((creds, grants)) => {
            let message = format!(
                "user {user} has {grants} grant(s) on {}; credentials in Secret {}",
                store.name,
                secret_name_of(obj)
            );
            let ready = Readiness::available(message);
            report(obj, ctx, Some(store), Some(&user), Some(&creds.access_key_id), &ready).await?;
            Ok(ctx.resync())
        }
        Err(halt) => {
            halt.settle(ctx, |r| async move { report(obj, ctx, Some(store), Some(&user), None, &r).await }).await
        }
    }
}

/// The steps of a converging S3User, in order: its buckets, its Secret, the user, its grants,
/// its key. Returns the key the Secret holds and the number of grants.
async fn converge(obj: &S3User, ctx: &Context, store: &ActiveStore, user: &str) -> Result<(Credentials, usize), Halt> {
    let resolved = wait_for_buckets(obj, ctx).await?;
    let grants: Vec<Grant> = resolved.iter().map(|(_, g)| g.clone()).collect();
    let existing = own_secret(obj, ctx).await?;
    let (info, created) = ensure_present(obj, ctx, store, user).await?;
    ensure_grants(obj, store, user, &info, &resolved, &grants).await?;
    let creds = ensure_key(obj, ctx, store, user, &info, created, existing.as_ref(), &grants).await?;
    Ok((creds, grants.len()))
}

/// The grants, once every granted S3Bucket is Ready; otherwise the wait to show.
async fn wait_for_buckets(obj: &S3User, ctx: &Context) -> Result<Vec<(String, Grant)>, Halt> {
    // Until the S3Bucket store holds its first full list, every granted bucket would look
    // missing and a converged user would warn BucketNotReady for nothing after a restart. Only
    // a dropped store, at shutdown, ends the wait early.
    let _ = wait_synced(&ctx.buckets).await;
    let elsewhere = store_mismatches(obj, &ctx.buckets);
    if !elsewhere.is_empty() {
        let message = format!(
            "S3Bucket {} not on this S3User's store ({}): a user is granted buckets of its own store only",
            elsewhere.join(", "),
            store_of(obj)
        );
        return Err(Halt::Wait(Readiness::not_ready(ConditionReason::StoreMismatch, message)));
    }
    resolve_grants(obj, &ctx.buckets).map_err(|waiting| {
        let message = format!("waiting for S3Bucket {}", waiting.buckets.join(", "));
        // A wait for new buckets reads `Creating`, not `BucketNotReady`: a bucket that then
        // fails moves the reason on, and that move is what raises the Warning event. The
        // S3Bucket watch wakes this object when one of them changes.
        Halt::Wait(if waiting.only_new {
            Readiness::pending(ConditionReason::Creating, message)
        } else {
            Readiness::not_ready(ConditionReason::BucketNotReady, message)
        })
    })
}

/// The credentials Secret as it is now, if any; one this S3User does not own stops it.
async fn own_secret(obj: &S3User, ctx: &Context) -> Result<Option<Secret>, Halt> {
    let secret_name = secret_name_of(obj);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    match secrets.get_opt(&secret_name).await? {
        Some(s) if !owned_by(&s, obj) => {
            let message =
                format!("Secret {secret_name} exists and was not created for this S3User; it is left untouched");
            Err(Halt::Wait(Readiness::not_ready(ConditionReason::Conflict, message)))
        }
        existing => Ok(existing),
    }
}

/// Makes the user exist under this object's claim; returns it as the store has it, and whether
/// it was made now.
async fn ensure_present(
    obj: &S3User,
    ctx: &Context,
    store: &ActiveStore,
    user: &str,
) -> Result<(UserInfo, bool), Halt> {
    let spec = UserSpec { name: user.to_string(), owner: owner_of(obj) };
    // A user already on the store with this object's claim needs nothing from ensure_user: a
    // converged resync reads the user once and writes nothing.
    if let Some(info) = store.backend.describe_user(user).await?
        && info.owner.as_ref().is_some_and(|o| o.same_claim(&spec.owner))
    {
        return Ok((info, false));
    }
    let adopt = store.may_adopt(&spec.owner.namespace);
    let created = store.backend.ensure_user(&spec, adopt).await? == Change::Created;
    if created {
        // Status names the user as soon as the S3User waits for its buckets, before the user
        // exists; only a key issued earlier proves the user was there once.
        let recreated =
            obj.status.as_ref().is_some_and(|s| s.user_name.as_deref() == Some(user) && s.access_key_id.is_some());
        let (reason, note) = if recreated {
            ("Recreated", format!("user {user} was missing on {} and has been created again", store.name))
        } else {
            ("Created", format!("user {user} created on {}", store.name))
        };
        ctx.event(obj, false, reason, note).await;
    }
    match store.backend.describe_user(user).await? {
        Some(info) => Ok((info, created)),
        None => Err(BackendError::not_found(format!("user {user} right after ensuring it")).into()),
    }
}

/// Writes the grants (`resolved`, each with its S3Bucket, as `grants`) when the store's differ
/// or still carry grants of an older model,
/// once the ledger confirms each bucket.
async fn ensure_grants(
    obj: &S3User,
    store: &ActiveStore,
    user: &str,
    info: &UserInfo,
    resolved: &[(String, Grant)],
    grants: &[Grant],
) -> Result<(), Halt> {
    let mut have = info.grants.clone();
    have.sort();
    if have != grants || !info.legacy_grants.is_empty() {
        verify_grants(store, &obj.namespace().unwrap_or_default(), resolved).await?;
        store.backend.set_grants(user, grants).await?;
    }
    Ok(())
}

/// What to do with a user's keys so that exactly one works and the Secret holds it.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// The Secret's key stays; `revoke` are the store's other keys.
    Keep {
        /// The key the Secret holds.
        creds: Credentials,
        /// Keys to delete.
        revoke: Vec<String>,
    },
    /// A new key is issued and written to the Secret.
    Issue {
        /// Deleted before: room for the new key (AWS allows two per user), keeping only the
        /// one apps may still use until the Secret changes.
        revoke_first: Vec<String>,
        /// Deleted once the Secret holds the new key: the one apps used until then.
        revoke_after: Vec<String>,
    },
}

/// Plans a user's keys. The Secret's key (`in_secret`, when intact) stays while the store
/// still has it (`on_store`), unless the user was just made again (it lost every key). Else a
/// new key is issued; `previous` (the key status last named) survives until the Secret holds
/// the new one. A store with one key per user (`multiple_keys` false) replaces keys itself.
pub fn plan_keys(
    in_secret: Option<Credentials>,
    on_store: &[String],
    previous: Option<&str>,
    recreated: bool,
    multiple_keys: bool,
) -> KeyPlan {
    let others = |keep: Option<&str>| -> Vec<String> {
        if !multiple_keys {
            return Vec::new();
        }
        on_store.iter().filter(|id| Some(id.as_str()) != keep).cloned().collect()
    };
    match in_secret.filter(|c| !recreated && on_store.contains(&c.access_key_id)) {
        Some(creds) => {
            let revoke = others(Some(&creds.access_key_id));
            KeyPlan::Keep { creds, revoke }
        }
        None => KeyPlan::Issue {
            revoke_first: others(previous),
            revoke_after: if multiple_keys {
                previous.filter(|p| on_store.iter().any(|id| id == p)).map(str::to_string).into_iter().collect()
            } else {
                Vec::new()
            },
        },
    }
}

/// Carries out the key plan: the Secret is written before any key its apps may still use is
/// revoked.
#[allow(clippy::too_many_arguments)] // the steps' shared inputs; a struct would only rename them
async fn ensure_key(
    obj: &S3User,
    ctx: &Context,
    store: &ActiveStore,
    user: &str,
    info: &UserInfo,
    created: bool,
    existing: Option<&Secret>,
    grants: &[Grant],
) -> Result<Credentials, Halt> {
    let previous = obj.status.as_ref().and_then(|s| s.access_key_id.as_deref());
    let plan = plan_keys(
        existing.and_then(credentials_in),
        &info.access_key_ids,
        previous,
        created,
        store.backend.capabilities().multiple_keys,
    );
    let (creds, revoke_after, issued) = match plan {
        KeyPlan::Keep { creds, revoke } => (creds, revoke, false),
        KeyPlan::Issue { revoke_first, revoke_after } => {
            for id in &revoke_first {
                store.backend.delete_key(user, id).await?;
            }
            (store.backend.create_key(user, None).await?, revoke_after, true)
        }
    };
    let desired = desired_secret(obj, store, &creds, grants);
    if !existing.is_some_and(|s| secret_matches(s, &desired)) {
        write_secret(ctx, &desired).await?;
    }
    if issued && previous.is_some() {
        let note = format!(
            "new access key {} written to Secret {}; the previous key is revoked",
            creds.access_key_id,
            secret_name_of(obj)
        );
        ctx.event(obj, false, "CredentialsRotated", note).await;
    }
    for id in &revoke_after {
        store.backend.delete_key(user, id).await?;
    }
    Ok(creds)
}

/// The user an S3User's deletion concerns: the name its spec asks for or, when that no longer
/// validates, the one its status recorded (the claim still decides whether it is this object's).
fn user_to_clean(obj: &S3User) -> Option<String> {
    user_name_of(obj).ok().or_else(|| obj.status.as_ref()?.user_name.clone())
}

async fn cleanup(obj: &S3User, ctx: &Context) -> Result<Action> {
    let Some(user) = user_to_clean(obj) else {
        return Ok(Action::await_change());
    };
    let Some(store) = ctx.stores.for_cleanup(&store_of(obj))? else {
        // The store is gone (its own finalizer waits for its objects, so it never held this one).
        return Ok(Action::await_change());
    };
    let backend = &store.backend;
    let owner = owner_of(obj);
    match backend.describe_user(&user).await? {
        // Gone already (or never made): the name is free again.
        None => backend.release_claim(Subject::User, &user, &owner).await?,
        Some(info) if info.owner.as_ref().is_some_and(|o| o.same_claim(&owner)) => {
            backend.delete_user(&user).await?;
            ctx.event(obj, false, "Deleted", format!("user {user} and its keys deleted from {}", store.name)).await;
        }
        Some(_) => {
            let note = format!("user {user} is not this object's to delete; it was left in place");
            ctx.event(obj, true, "NotDeleted", note).await;
        }
    }
    // The Secret goes with its owner (garbage collection of the ownerReference).
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_secret_is_not_intact() {
        let creds = Credentials { access_key_id: "AK".into(), secret_access_key: SecretString::new("s3cr3t") };
        let hash = credentials_hash("AK", "s3cr3t");
        let mut secret = Secret {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(CREDENTIALS_HASH_ANNOTATION.to_string(), hash)])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (secret_keys::ACCESS_KEY_ID.to_string(), ByteString(b"AK".to_vec())),
                (secret_keys::SECRET_ACCESS_KEY.to_string(), ByteString(b"s3cr3t".to_vec())),
            ])),
            ..Secret::default()
        };
        assert_eq!(credentials_in(&secret), Some(creds));
        if let Some(d) = secret.data.as_mut() {
            d.insert(secret_keys::SECRET_ACCESS_KEY.to_string(), ByteString(b"edited".to_vec()));
        }
        assert_eq!(credentials_in(&secret), None);
        assert!(!credentials_hash("AK", "s3cr3t").contains("s3cr3t"));
    }

    fn creds(id: &str) -> Credentials {
        Credentials { access_key_id: id.into(), secret_access_key: SecretString::new("s") }
    }

    fn keys(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_intact_key_stays_and_is_the_only_one() {
        let plan = plan_keys(Some(creds("A")), &keys(&["A", "B"]), Some("A"), false, true);
        assert_eq!(plan, KeyPlan::Keep { creds: creds("A"), revoke: keys(&["B"]) }, "a stray key goes");
        let converged = plan_keys(Some(creds("A")), &keys(&["A"]), Some("A"), false, true);
        assert_eq!(converged, KeyPlan::Keep { creds: creds("A"), revoke: vec![] }, "a resync revokes nothing");
        let single = plan_keys(Some(creds("A")), &keys(&["A"]), None, false, false);
        assert_eq!(single, KeyPlan::Keep { creds: creds("A"), revoke: vec![] });
    }

    #[test]
    fn a_lost_or_edited_secret_rotates_and_the_old_key_lives_until_the_secret_changes() {
        // The Secret was deleted or edited: its apps keep the previous key until the new one is in.
        let plan = plan_keys(None, &keys(&["A", "X"]), Some("A"), false, true);
        assert_eq!(plan, KeyPlan::Issue { revoke_first: keys(&["X"]), revoke_after: keys(&["A"]) });
        // The Secret names a key the store no longer has.
        let plan = plan_keys(Some(creds("Z")), &keys(&["A"]), Some("A"), false, true);
        assert_eq!(plan, KeyPlan::Issue { revoke_first: vec![], revoke_after: keys(&["A"]) });
    }

    #[test]
    fn a_recreated_user_gets_a_new_key_even_if_the_secret_looks_intact() {
        let plan = plan_keys(Some(creds("A")), &keys(&["A"]), Some("A"), true, true);
        assert!(matches!(plan, KeyPlan::Issue { .. }), "{plan:?}");
    }

    #[test]
    fn a_first_key_revokes_only_what_nobody_uses() {
        let plan = plan_keys(None, &[], None, true, true);
        assert_eq!(plan, KeyPlan::Issue { revoke_first: vec![], revoke_after: vec![] });
        let leftovers = plan_keys(None, &keys(&["L1", "L2"]), None, false, true);
        assert_eq!(leftovers, KeyPlan::Issue { revoke_first: keys(&["L1", "L2"]), revoke_after: vec![] });
        let single = plan_keys(None, &keys(&["A"]), Some("A"), false, false);
        assert_eq!(
            single,
            KeyPlan::Issue { revoke_first: vec![], revoke_after: vec![] },
            "the store replaces keys itself"
        );
    }

    mod reconciles {
        //! Whole S3User reconciles over the in-memory store and API server.
        use s3op_api::{BucketAccess, S3BucketSpec, S3UserSpec};
        use s3op_backends::Backend;

        use super::*;
        use crate::testing::TestContext;

        const NS: &str = "team-a";

        async fn converged() -> (TestContext, S3User) {
            let mut t = TestContext::new();
            let mut bucket = S3Bucket::new("data", S3BucketSpec::default());
            bucket.metadata.namespace = Some(NS.into());
            t.put_bucket(&bucket);
            let bucket = t.reconcile_bucket(NS, "data").await;
            assert!(crate::status::is_ready(&bucket.status.unwrap().conditions));
            let mut user = S3User::new(
                "app",
                S3UserSpec {
                    access: vec![BucketAccess { bucket: "data".into(), permission: Permission::ReadWrite }],
                    ..Default::default()
                },
            );
            user.metadata.namespace = Some(NS.into());
            t.api.put(&user);
            let user = t.reconcile_user(NS, "app").await;
            (t, user)
        }

        fn secret_key(t: &TestContext) -> (String, String) {
            let secret = t.api.get::<Secret>(NS, "app-s3-credentials").expect("the Secret is written");
            let creds = credentials_in(&secret).expect("the Secret is intact");
            (creds.access_key_id, creds.secret_access_key.expose().to_string())
        }

        #[tokio::test]
        async fn a_user_converges_and_a_resync_writes_nothing() {
            let (t, user) = converged().await;
            let status = user.status.unwrap();
            let ready = crate::status::ready_condition(&status.conditions).unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Available"), "{}", ready.message);
            let (id, secret) = secret_key(&t);
            assert_eq!(status.access_key_id.as_deref(), Some(id.as_str()));
            assert!(t.backend.key_works(&id, &secret), "the Secret's key works on the store");
            let info = t.backend.describe_user("team-a-app").await.unwrap().unwrap();
            assert_eq!(info.access_key_ids, vec![id.clone()]);
            assert_eq!(info.grants.len(), 1);

            t.api.clear_writes();
            let store_writes = t.backend.writes();
            t.try_reconcile::<S3User>(NS, "app").await.unwrap();
            assert_eq!(t.api.writes(), Vec::<String>::new(), "a converged resync writes nothing to the API");
            assert_eq!(t.backend.writes(), store_writes, "nor to the store");
            assert_eq!(secret_key(&t).0, id);
        }

        #[tokio::test]
        async fn a_deleted_secret_gets_a_new_key_and_the_old_one_is_revoked() {
            let (t, _) = converged().await;
            let (old, old_secret) = secret_key(&t);
            t.api.remove::<Secret>(NS, "app-s3-credentials");
            t.api.clear_writes();
            t.try_reconcile::<S3User>(NS, "app").await.unwrap();
            let (new, new_secret) = secret_key(&t);
            assert_ne!(new, old);
            assert!(t.backend.key_works(&new, &new_secret));
            assert!(!t.backend.key_works(&old, &old_secret), "the previous key is revoked");
            let secret_writes = t.api.writes().iter().filter(|w| w.contains("/secrets/")).count();
            assert_eq!(secret_writes, 1, "the new key is written once: {:?}", t.api.writes());
            assert!(t.api.writes().iter().any(|w| w.starts_with("POST") && w.contains("/events")), "an event says so");
        }

        #[tokio::test]
        async fn an_outage_is_shown_and_retried_and_the_key_survives_it() {
            let (t, _) = converged().await;
            let (id, secret) = secret_key(&t);
            t.api.edit::<S3User>(NS, "app", |u| u.metadata.generation = Some(2));
            t.backend.set_down(true);
            let err = t.try_reconcile::<S3User>(NS, "app").await.unwrap_err();
            assert_eq!(err.reason(), "BackendUnavailable");
            let user = t.api.get::<S3User>(NS, "app").unwrap();
            let ready = crate::status::ready_condition(&user.status.unwrap().conditions).cloned().unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "BackendUnavailable"));
            t.backend.set_down(false);
            t.try_reconcile::<S3User>(NS, "app").await.unwrap();
            assert_eq!(secret_key(&t).0, id, "an outage costs no key");
            assert!(t.backend.key_works(&id, &secret));
        }

        #[tokio::test]
        async fn a_deletion_waiting_for_the_store_shows_deleting() {
            let (t, _) = converged().await;
            t.api.edit::<S3User>(NS, "app", |u| {
                u.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
            });
            t.backend.set_down(true);
            t.try_reconcile::<S3User>(NS, "app").await.unwrap_err();
            let status = t.api.get::<S3User>(NS, "app").unwrap().status.unwrap();
            let shown: Vec<_> =
                status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
            assert_eq!(shown, [("Ready", "False", "Deleting"), ("Reconciling", "True", "Deleting")]);
            assert!(status.access_key_id.is_some(), "status still names the key");
            t.backend.set_down(false);
            t.try_reconcile::<S3User>(NS, "app").await.unwrap();
            assert!(t.backend.describe_user("team-a-app").await.unwrap().is_none());
        }

        #[tokio::test]
        async fn a_deleted_user_goes_from_the_store_but_a_foreign_one_stays() {
            let (t, _) = converged().await;
            t.backend.create_foreign_user("someone-else");
            t.api.edit::<S3User>(NS, "app", |u| {
                u.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
                // A spec that no longer validates must not stop the deletion.
                u.spec.user_name = Some("Not A Valid Name".into());
            });
            t.try_reconcile::<S3User>(NS, "app").await.unwrap();
            assert!(t.backend.describe_user("team-a-app").await.unwrap().is_none(), "the user recorded in status goes");
            assert!(t.backend.describe_user("someone-else").await.unwrap().is_some());
        }
    }
}
