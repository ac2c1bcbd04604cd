//! An in-memory backend for the controller's unit tests. It keeps the same contract as the
//! real stores (ownership markers, idempotent ensures, non-empty buckets kept), counts reads
//! and writes, and can be switched "down" to exercise retry paths.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use async_trait::async_trait;

use crate::{
    Backend, BackendError, Result, SecretString,
    compat::{AccountState, CompatAccount, CompatStore},
    ledger::{Subject, judge, refuse_taken},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, UserInfo,
        UserSpec,
    },
};

#[derive(Debug, Clone)]
struct MemBucket {
    owner: Option<Owner>,
    versioning: Option<crate::model::Versioning>,
    object_lock: bool,
    tags: BTreeMap<String, String>,
    quota: Option<crate::model::Quota>,
    objects: u64,
    /// Compatibility mode's owner (an account's access key).
    compat_owner: Option<String>,
}

#[derive(Debug, Clone)]
struct MemUser {
    owner: Option<Owner>,
    keys: BTreeMap<String, SecretString>,
    grants: BTreeSet<Grant>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, MemBucket>,
    users: BTreeMap<String, MemUser>,
    next_key: u64,
    accounts: BTreeMap<String, CompatAccount>,
    /// The ownership ledger's compatibility claims; CRD claims are the buckets' and users'
    /// owner fields (see `holder_in`).
    claims: BTreeMap<(Subject, String), Owner>,
    compat_calls: Vec<String>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    down: AtomicBool,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl MemoryBackend {
    /// An empty, available store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with `Unreachable`, as a stopped store does (true), or work again
    /// (false).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Calls that only read.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Calls that changed something.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Puts `n` objects into a bucket, as an app would.
    pub fn put_objects(&self, bucket: &str, n: u64) -> Result<()> {
        let mut s = self.lock();
        let b = s.buckets.get_mut(bucket).ok_or_else(|| BackendError::not_found(format!("bucket {bucket}")))?;
        b.objects += n;
        Ok(())
    }

    /// Creates a bucket without any ownership marker, as someone outside the operator would.
    pub fn create_foreign_bucket(&self, name: &str) {
        self.lock().buckets.insert(
            name.to_string(),
            MemBucket {
                owner: None,
                versioning: None,
                object_lock: false,
                tags: BTreeMap::new(),
                quota: None,
                objects: 0,
                compat_owner: None,
            },
        );
    }

    /// Creates a user without any ownership marker.
    pub fn create_foreign_user(&self, name: &str) {
        self.lock()
            .users
            .insert(name.to_string(), MemUser { owner: None, keys: BTreeMap::new(), grants: BTreeSet::new() });
    }

    /// Removes a bucket behind the operator's back (drift).
    pub fn remove_bucket_behind_back(&self, name: &str) {
        self.lock().buckets.remove(name);
    }

    /// True when the key exists with this secret: what a client signing with it would see.
    pub fn key_works(&self, access_key_id: &str, secret: &str) -> bool {
        let s = self.lock();
        s.users.values().any(|u| u.keys.get(access_key_id).is_some_and(|s| s.expose() == secret))
            || s.accounts.get(access_key_id).is_some_and(|a| a.secret_key.expose() == secret)
    }

    /// The compatibility-mode calls made so far, in order (`"create_account AK"` …).
    pub fn compat_calls(&self) -> Vec<String> {
        self.lock().compat_calls.clone()
    }

    /// Forgets the recorded compatibility-mode calls.
    pub fn clear_compat_calls(&self) {
        self.lock().compat_calls.clear();
    }

    /// Creates a bucket outside the operator, owned by `owner` (an access key) if given.
    pub fn create_compat_bucket(&self, name: &str, owner: Option<&str>) {
        self.create_foreign_bucket(name);
        if let Some(b) = self.lock().buckets.get_mut(name) {
            b.compat_owner = owner.map(str::to_string);
        }
    }

    /// The compatibility-mode owner of a bucket.
    pub fn compat_bucket_owner(&self, name: &str) -> Option<String> {
        self.lock().buckets.get(name).and_then(|b| b.compat_owner.clone())
    }

    /// Records one compatibility call, then reads like any other call.
    fn compat_read(&self, call: String) -> Result<MutexGuard<'_, State>> {
        let mut s = self.read()?;
        s.compat_calls.push(call);
        Ok(s)
    }

    /// The ledger's holder of a name: a recorded claim, else the bucket's or user's owner.
    fn holder_in(s: &State, subject: Subject, name: &str) -> Option<Owner> {
        s.claims.get(&(subject, name.to_string())).cloned().or_else(|| match subject {
            Subject::Bucket => s.buckets.get(name).and_then(|b| b.owner.clone()),
            Subject::User => s.users.get(name).and_then(|u| u.owner.clone()),
        })
    }

    /// Creates an account outside the operator, as an administrator would (`role` as given).
    pub fn create_foreign_account(&self, access_key: &str, secret: &str, role: &str) {
        let account = CompatAccount {
            access_key: access_key.to_string(),
            secret_key: SecretString::from(secret),
            role: role.to_string(),
            user_id: 0,
            group_id: 0,
        };
        self.lock().accounts.insert(access_key.to_string(), account);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a test panicked while holding it; the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn available(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unreachable { backend: "memory", cause: "switched off by the test".into() });
        }
        Ok(())
    }

    fn read(&self) -> Result<MutexGuard<'_, State>> {
        self.available()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.lock())
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    fn compat(&self) -> Result<&dyn CompatStore> {
        Ok(self)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioning: true,
            tags: true,
            object_lock: true,
            quota_max_size: true,
            quota_max_objects: true,
            read_only_grants: true,
            multiple_keys: true,
            import_credentials: true,
        }
    }

    async fn health(&self) -> Result<()> {
        self.read().map(|_| ())
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        let s = self.read()?;
        Ok(s.buckets.get(name).map(|b| BucketInfo {
            name: name.to_string(),
            owner: b.owner.clone(),
            versioning: b.versioning,
            tags: b.tags.clone(),
            quota: b.quota,
        }))
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let mut s = self.read()?;
        let what = format!("bucket {}", spec.name);
        let held = Self::holder_in(&s, Subject::Bucket, &spec.name);
        let Some(b) = s.buckets.get_mut(&spec.name) else {
            refuse_taken(Subject::Bucket, &spec.name, &judge(held.as_ref(), &spec.owner))?;
            s.buckets.insert(
                spec.name.clone(),
                MemBucket {
                    owner: Some(spec.owner.clone()),
                    versioning: spec.versioning,
                    object_lock: spec.object_lock,
                    tags: spec.tags.clone(),
                    quota: spec.quota,
                    objects: 0,
                    compat_owner: None,
                },
            );
            drop(s);
            self.wrote();
            return Ok(Change::Created);
        };
        let mut changed = Owner::check_claim(&what, &held, &spec.owner, adopt)?;
        if changed {
            b.owner = Some(spec.owner.clone());
        }
        if spec.versioning.is_some() && b.versioning != spec.versioning {
            b.versioning = spec.versioning;
            changed = true;
        }
        if b.tags != spec.tags {
            b.tags = spec.tags.clone();
            changed = true;
        }
        if spec.quota.is_some() && b.quota != spec.quota {
            b.quota = spec.quota;
            changed = true;
        }
        let lock_mismatch = spec.object_lock && !b.object_lock;
        drop(s);
        if changed {
            self.wrote();
        }
        if lock_mismatch {
            return Err(BackendError::Conflict {
                what,
                detail: "object lock can only be enabled when the bucket is created".into(),
            });
        }
        Ok(if changed { Change::Updated } else { Change::Unchanged })
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        let mut s = self.read()?;
        let Some(b) = s.buckets.get(name) else { return Ok(BucketDeletion::AlreadyGone) };
        if b.objects > 0 && !force {
            return Ok(BucketDeletion::NotEmpty { objects: b.objects });
        }
        s.buckets.remove(name);
        for u in s.users.values_mut() {
            u.grants.retain(|g| g.bucket != name);
        }
        drop(s);
        self.wrote();
        Ok(BucketDeletion::Deleted)
    }

    async fn release_claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        let mut s = self.read()?;
        if s.claims.get(&(subject, name.to_string())).is_some_and(|h| h.same_claim(owner)) {
            s.claims.remove(&(subject, name.to_string()));
            drop(s);
            self.wrote();
        }
        Ok(())
    }

    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        let s = self.read()?;
        Ok(Self::holder_in(&s, subject, name))
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let s = self.read()?;
        Ok(s.users.get(name).map(|u| UserInfo {
            name: name.to_string(),
            owner: u.owner.clone(),
            access_key_ids: u.keys.keys().cloned().collect(),
            grants: u.grants.iter().cloned().collect(),
            legacy_grants: Vec::new(),
        }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let mut s = self.read()?;
        let held = Self::holder_in(&s, Subject::User, &spec.name);
        let change = match s.users.get_mut(&spec.name) {
            None => {
                refuse_taken(Subject::User, &spec.name, &judge(held.as_ref(), &spec.owner))?;
                s.users.insert(
                    spec.name.clone(),
                    MemUser { owner: Some(spec.owner.clone()), keys: BTreeMap::new(), grants: BTreeSet::new() },
                );
                Change::Created
            }
            Some(u) => {
                if Owner::check_claim(&format!("user {}", spec.name), &held, &spec.owner, adopt)? {
                    u.owner = Some(spec.owner.clone());
                    Change::Updated
                } else {
                    Change::Unchanged
                }
            }
        };
        drop(s);
        if change.wrote() {
            self.wrote();
        }
        Ok(change)
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        let mut s = self.read()?;
        s.next_key += 1;
        let n = s.next_key;
        let creds = match import {
            Some(c) => c.clone(),
            None => Credentials {
                access_key_id: format!("MEMKEY{n:014}"),
                secret_access_key: SecretString::new(format!("memsecret-{n:030}")),
            },
        };
        if s.users.values().any(|u| u.keys.contains_key(&creds.access_key_id)) {
            return Err(BackendError::Conflict {
                what: format!("access key {}", creds.access_key_id),
                detail: "already in use".into(),
            });
        }
        let u = s.users.get_mut(user).ok_or_else(|| BackendError::not_found(format!("user {user}")))?;
        u.keys.insert(creds.access_key_id.clone(), creds.secret_access_key.clone());
        drop(s);
        self.wrote();
        Ok(creds)
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        let mut s = self.read()?;
        let removed = s.users.get_mut(user).and_then(|u| u.keys.remove(access_key_id)).is_some();
        drop(s);
        if removed {
            self.wrote();
        }
        Ok(())
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        let mut s = self.read()?;
        if let Some(missing) = grants.iter().find(|g| !s.buckets.contains_key(&g.bucket)) {
            return Err(BackendError::not_found(format!("bucket {}", missing.bucket)));
        }
        let u = s.users.get_mut(user).ok_or_else(|| BackendError::not_found(format!("user {user}")))?;
        let wanted: BTreeSet<Grant> = grants.iter().cloned().collect();
        if u.grants == wanted {
            return Ok(Change::Unchanged);
        }
        u.grants = wanted;
        drop(s);
        self.wrote();
        Ok(Change::Updated)
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        let removed = self.read()?.users.remove(name).is_some();
        if removed {
            self.wrote();
        }
        Ok(())
    }
}

#[async_trait]
impl CompatStore for MemoryBackend {
    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        let s = self.compat_read(format!("account {}", wanted.access_key))?;
        Ok(match s.accounts.get(&wanted.access_key) {
            None => AccountState::Missing,
            Some(have) => wanted.compare_existing(have.secret_key.expose(), &have.role, have.user_id, have.group_id),
        })
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        let mut s = self.compat_read(format!("create_account {}", account.access_key))?;
        if s.accounts.contains_key(&account.access_key) {
            return Err(BackendError::Conflict {
                what: format!("user {}", account.access_key),
                detail: "exists".into(),
            });
        }
        s.accounts.insert(account.access_key.clone(), account.clone());
        self.wrote();
        Ok(())
    }

    async fn update_account(&self, account: &CompatAccount, _differs: &[&'static str]) -> Result<()> {
        let mut s = self.compat_read(format!("update_account {}", account.access_key))?;
        let have = s.accounts.get_mut(&account.access_key).ok_or_else(|| BackendError::not_found("user"))?;
        *have = account.clone();
        self.wrote();
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let s = self.compat_read(format!("bucket_exists {bucket}"))?;
        Ok(s.buckets.contains_key(bucket))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        drop(self.compat_read(format!("create_bucket {bucket}"))?);
        self.create_foreign_bucket(bucket);
        self.wrote();
        Ok(())
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        let s = self.compat_read(format!("bucket_owner {bucket}"))?;
        let b = s.buckets.get(bucket).ok_or_else(|| BackendError::not_found(format!("bucket {bucket}")))?;
        Ok(b.compat_owner.clone())
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, previous: Option<&str>) -> Result<()> {
        let mut s = self.compat_read(format!("change_bucket_owner {bucket} {owner} {}", previous.unwrap_or("-")))?;
        if !s.accounts.contains_key(owner) {
            return Err(BackendError::not_found(format!("user {owner}")));
        }
        let b = s.buckets.get_mut(bucket).ok_or_else(|| BackendError::not_found(format!("bucket {bucket}")))?;
        b.compat_owner = Some(owner.to_string());
        self.wrote();
        Ok(())
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        let s = self.compat_read(format!("privileged {access_key}"))?;
        Ok(s.accounts.get(access_key).filter(|a| a.role != "user").map(|a| format!("role {}", a.role)))
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        let mut s = self.compat_read(format!("claim {} {name}", subject.noun()))?;
        let verdict = judge(Self::holder_in(&s, subject, name).as_ref(), owner);
        refuse_taken(subject, name, &verdict)?;
        if verdict == crate::ledger::Verdict::Ours {
            return Ok(false);
        }
        s.claims.insert((subject, name.to_string()), owner.clone());
        drop(s);
        self.wrote();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Permission, Versioning};

    fn owner(ns: &str, name: &str) -> Owner {
        Owner::s3bucket(ns, name, format!("uid-{ns}-{name}"))
    }

    fn bucket(name: &str, o: Owner) -> BucketSpec {
        BucketSpec {
            name: name.into(),
            owner: o,
            versioning: None,
            object_lock: false,
            tags: BTreeMap::new(),
            quota: None,
        }
    }

    #[tokio::test]
    async fn ensures_are_idempotent_and_count_writes() {
        let m = MemoryBackend::new();
        let spec = BucketSpec { versioning: Some(Versioning::Enabled), ..bucket("b1", owner("ns", "b")) };
        assert_eq!(m.ensure_bucket(&spec, false).await.unwrap(), Change::Created);
        let writes = m.writes();
        assert_eq!(m.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged);
        assert_eq!(m.writes(), writes, "no write when nothing differs");
        let user = UserSpec { name: "u1".into(), owner: owner("ns", "u") };
        assert_eq!(m.ensure_user(&user, false).await.unwrap(), Change::Created);
        assert_eq!(m.ensure_user(&user, false).await.unwrap(), Change::Unchanged);
        let g = [Grant { bucket: "b1".into(), permission: Permission::ReadWrite }];
        assert_eq!(m.set_grants("u1", &g).await.unwrap(), Change::Updated);
        assert_eq!(m.set_grants("u1", &g).await.unwrap(), Change::Unchanged);
        assert_eq!(m.set_grants("u1", &[]).await.unwrap(), Change::Updated);
        assert!(m.describe_user("u1").await.unwrap().unwrap().grants.is_empty());
    }

    #[tokio::test]
    async fn foreign_and_other_claims_are_refused_unless_adopted() {
        let m = MemoryBackend::new();
        m.create_foreign_bucket("theirs");
        let err = m.ensure_bucket(&bucket("theirs", owner("ns", "b")), false).await.unwrap_err();
        assert!(matches!(err, BackendError::NotOwned { .. }), "{err}");
        assert_eq!(m.ensure_bucket(&bucket("theirs", owner("ns", "b")), true).await.unwrap(), Change::Updated);
        let err = m.ensure_bucket(&bucket("theirs", owner("other", "b")), true).await.unwrap_err();
        assert!(matches!(err, BackendError::NotOwned { .. }), "adopt never overrides another claim: {err}");
    }

    #[tokio::test]
    async fn non_empty_buckets_are_kept_unless_forced() {
        let m = MemoryBackend::new();
        m.ensure_bucket(&bucket("b", owner("ns", "b")), false).await.unwrap();
        m.put_objects("b", 3).unwrap();
        assert_eq!(m.delete_bucket("b", false).await.unwrap(), BucketDeletion::NotEmpty { objects: 3 });
        assert_eq!(m.delete_bucket("b", true).await.unwrap(), BucketDeletion::Deleted);
        assert_eq!(m.delete_bucket("b", true).await.unwrap(), BucketDeletion::AlreadyGone);
    }

    #[tokio::test]
    async fn keys_rotate_and_outages_are_retryable() {
        let m = MemoryBackend::new();
        m.ensure_user(&UserSpec { name: "u".into(), owner: owner("ns", "u") }, false).await.unwrap();
        let k1 = m.create_key("u", None).await.unwrap();
        let k2 = m.create_key("u", None).await.unwrap();
        assert!(m.key_works(&k1.access_key_id, k1.secret_access_key.expose()));
        m.delete_key("u", &k1.access_key_id).await.unwrap();
        assert!(!m.key_works(&k1.access_key_id, k1.secret_access_key.expose()));
        assert!(m.key_works(&k2.access_key_id, k2.secret_access_key.expose()));
        assert!(!format!("{k2:?}").contains(k2.secret_access_key.expose()));
        m.set_down(true);
        let err = m.health().await.unwrap_err();
        assert!(err.is_retryable());
        m.set_down(false);
        m.health().await.unwrap();
    }
}
