//! Waiting for what the operator does asynchronously, and reading what it said about it
//! (events and Ready conditions). Shared by the end-to-end suites so each poll loop, deadline
//! and event filter is written once.

use std::{
    fmt::Debug,
    future::Future,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use k8s_openapi::{api::events::v1::Event, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Api, Client, Resource,
    api::{ListParams, ObjectList},
};
use s3op_api::{S3Bucket, S3User};
use serde::de::DeserializeOwned;

/// How long the suites wait for the operator to act before calling it a failure.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(200);

/// Polls `check` until it is true; fails naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Polls `check` until it yields a value; fails naming `what` after `timeout`.
pub async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One event as a person reads it in `kubectl events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSeen {
    /// Normal or Warning.
    pub type_: String,
    /// The CamelCase reason.
    pub reason: String,
    /// The message.
    pub note: String,
    /// Kind of the object it is about.
    pub kind: String,
    /// Name of the object it is about.
    pub name: String,
}

/// Every event in `namespace` (events.k8s.io/v1, which is what the operator publishes).
pub async fn all_events(client: &Client, namespace: &str) -> Result<ObjectList<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?)
}

/// The events about the object `name` in `namespace`, of any kind.
pub async fn events(client: &Client, namespace: &str, name: &str) -> Result<Vec<EventSeen>> {
    Ok(all_events(client, namespace)
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            let regarding = e.regarding.unwrap_or_default();
            EventSeen {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                note: e.note.unwrap_or_default(),
                kind: regarding.kind.unwrap_or_default(),
                name: regarding.name.unwrap_or_default(),
            }
        })
        .collect())
}

/// Waits for an event with `reason` about the object `name`; returns it.
pub async fn wait_event(client: &Client, namespace: &str, name: &str, reason: &str) -> Result<EventSeen> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = events(client, namespace, name).await?;
        if let Some(e) = seen.iter().find(|e| e.reason == reason) {
            return Ok(e.clone());
        }
        if Instant::now() > deadline {
            bail!("no {reason} event about {namespace}/{name} within {TIMEOUT:?}; saw {seen:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A custom resource of this operator, with the conditions of its status.
pub trait HasConditions {
    /// The status conditions (none before the first status write).
    fn conditions(&self) -> &[Condition];

    /// The Ready condition, if written.
    fn ready(&self) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == "Ready")
    }
}

impl HasConditions for S3Bucket {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }
}

impl HasConditions for S3User {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }
}

/// Waits until the object's Ready condition has `status` ("True"/"False") and `reason`;
/// returns the object as it was then.
pub async fn wait_ready_condition<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + HasConditions,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let obj = api.get(name).await?;
        if obj.ready().is_some_and(|c| c.status == status && c.reason == reason) {
            return Ok(obj);
        }
        if Instant::now() > deadline {
            bail!("{name} not Ready={status}/{reason} within {TIMEOUT:?}: {:?}", obj.ready());
        }
        tokio::time::sleep(POLL).await;
    }
}
