//! Many S3Bucket + S3User pairs at once, as a platform team rolls them out: pair `i` is the
//! S3Bucket `b<i>` (store bucket `<prefix>-<i>`) and the S3User `u<i>` with read-write access
//! to it. Applied with bounded concurrency and watched until every one is Ready. Shared by
//! `cargo xtask bench` and the reliability suite.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use s3op_api::{BucketAccess, DeletionPolicy, Permission, S3Bucket, S3BucketSpec, S3User, S3UserSpec, StoreRef};

use crate::{stores::unique_name, wait::Look};

/// One rollout of `n` pairs in one namespace.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The namespace holding the pairs.
    pub namespace: String,
    /// How many pairs.
    pub n: usize,
    /// The store every pair names (`None`: the operator's default store).
    pub store_ref: Option<StoreRef>,
    prefix: String,
}

/// How far a rollout has come, from one list of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// S3Buckets whose Ready condition is True.
    pub buckets_ready: usize,
    /// S3Users whose Ready condition is True.
    pub users_ready: usize,
    /// Objects by the reason of their Ready condition ("none" without one), both kinds.
    pub reasons: BTreeMap<String, usize>,
}

fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

impl Rollout {
    /// `n` pairs in `namespace`, with store bucket names unique to this rollout.
    pub fn new(namespace: &str, n: usize) -> Self {
        Self { namespace: namespace.to_string(), n, store_ref: None, prefix: unique_name("r") }
    }

    /// The same rollout with every pair on the store `store_ref` names.
    pub fn on(self, store_ref: StoreRef) -> Self {
        Self { store_ref: Some(store_ref), ..self }
    }

    /// The S3Bucket of pair `i`.
    pub fn bucket(&self, i: usize) -> S3Bucket {
        S3Bucket::new(
            &format!("b{i}"),
            S3BucketSpec {
                store_ref: self.store_ref.clone(),
                bucket_name: Some(self.bucket_name(i)),
                deletion_policy: DeletionPolicy::Delete,
                ..Default::default()
            },
        )
    }

    /// The S3User of pair `i`: read-write on its bucket.
    pub fn user(&self, i: usize) -> S3User {
        S3User::new(
            &format!("u{i}"),
            S3UserSpec {
                store_ref: self.store_ref.clone(),
                access: vec![BucketAccess { bucket: format!("b{i}"), permission: Permission::ReadWrite }],
                ..Default::default()
            },
        )
    }

    /// The store's name of pair `i`'s bucket.
    pub fn bucket_name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Creates every pair (bucket, then user) with at most `concurrency` requests in flight;
    /// objects that already exist are left as they are. Returns the time it took.
    pub async fn apply(&self, client: &Client, concurrency: usize) -> Result<Duration> {
        let started = Instant::now();
        let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &self.namespace);
        let users: Api<S3User> = Api::namespaced(client.clone(), &self.namespace);
        stream::iter(0..self.n)
            .map(|i| {
                let (buckets, users) = (buckets.clone(), users.clone());
                async move {
                    create(&buckets, &self.bucket(i)).await?;
                    create(&users, &self.user(i)).await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }

    /// Counts Ready objects and the reasons of the others, with one paged list per kind.
    pub async fn progress(&self, client: &Client) -> Result<Progress> {
        let mut p = Progress::default();
        let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &self.namespace);
        let users: Api<S3User> = Api::namespaced(client.clone(), &self.namespace);
        let mut tally = |c: Option<&Condition>| -> bool {
            let reason = c.map_or("none", |c| c.reason.as_str());
            *p.reasons.entry(reason.to_string()).or_default() += 1;
            c.is_some_and(|c| c.status == "True")
        };
        let mut bucket_ready = 0;
        for b in list_all(&buckets).await? {
            if tally(b.status.as_ref().and_then(|s| ready(&s.conditions))) {
                bucket_ready += 1;
            }
        }
        let mut user_ready = 0;
        for u in list_all(&users).await? {
            if tally(u.status.as_ref().and_then(|s| ready(&s.conditions))) {
                user_ready += 1;
            }
        }
        p.buckets_ready = bucket_ready;
        p.users_ready = user_ready;
        Ok(p)
    }

    /// Waits until all `n` buckets and users are Ready, polling every `poll`; returns the time
    /// waited. Fails after `timeout` with the progress so far.
    pub async fn wait_ready(&self, client: &Client, timeout: Duration, poll: Duration) -> Result<Duration> {
        let started = Instant::now();
        let what = format!("{} buckets and {} users Ready", self.n, self.n);
        crate::wait::poll(&what, timeout, poll, || async {
            let p = self.progress(client).await?;
            Ok(if p.buckets_ready >= self.n && p.users_ready >= self.n {
                Look::Done(())
            } else {
                Look::NotYet(format!(
                    "{} buckets and {} users Ready; reasons: {:?}",
                    p.buckets_ready, p.users_ready, p.reasons
                ))
            })
        })
        .await?;
        Ok(started.elapsed())
    }
}

async fn create<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Every object of `api`, listed in pages of 500 so a 10,000-object list is not one reply.
pub async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut all = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        all.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => return Ok(all),
        }
    }
}
