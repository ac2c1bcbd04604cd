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
use s3op_api::{ClusterS3Store, S3Bucket, S3Store, S3User};
use serde::de::DeserializeOwned;

/// How long the suites wait for the operator to act before calling it a failure.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(200);

/// What one look at an awaited state found.
#[derive(Debug)]
pub enum Look<T> {
    /// The state awaited, with what the caller wants of it.
    Done(T),
    /// Not yet: what was seen instead, for the report if the wait times out (may be empty).
    NotYet(String),
}

/// The poll loop every wait is made of: looks every `every` until `look` says done, and fails
/// after `timeout` naming `what` and the last state seen. An error from `look` ends the wait at
/// once, with that error (a dead peer or a refused request is not worth waiting out).
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut look: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // Boxed: what is awaited (AWS SDK calls under layers of harness) nests deep enough for the
        // bench driver's future to overflow rustc's layout query depth; a box ends the nesting.
        let seen = match Box::pin(look()).await? {
            Look::Done(v) => return Ok(v),
            Look::NotYet(seen) => seen,
        };
        if Instant::now() > deadline {
            if seen.is_empty() {
                bail!("{what}: not within {timeout:?}");
            }
            bail!("{what}: not within {timeout:?}; last seen: {seen}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `look` every [`POLL`] until it is done; fails naming `what` and the last state seen
/// after `timeout`.
pub async fn wait_for_state<T, F, Fut>(what: &str, timeout: Duration, mut look: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Look<T>>,
{
    poll(what, timeout, POLL, || {
        let seen = look();
        async move { Ok(seen.await) }
    })
    .await
}

/// Polls `check` until it is true; fails naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_state(what, timeout, || {
        let done = check();
        async move { if done.await { Look::Done(()) } else { Look::NotYet(String::new()) } }
    })
    .await
}

/// Polls `check` until it yields a value; fails naming `what` after `timeout`.
pub async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_state(what, timeout, || {
        let value = check();
        async move { value.await.map_or_else(|| Look::NotYet(String::new()), Look::Done) }
    })
    .await
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
    let what = format!("a {reason} event about {namespace}/{name}");
    poll(&what, TIMEOUT, POLL, || async {
        let seen = events(client, namespace, name).await?;
        Ok(match seen.iter().find(|e| e.reason == reason) {
            Some(e) => Look::Done(e.clone()),
            None => Look::NotYet(format!("{seen:?}")),
        })
    })
    .await
}

/// A custom resource of this operator, with the conditions of its status.
pub trait HasConditions {
    /// The status conditions (none before the first status write).
    fn conditions(&self) -> &[Condition];

    /// The whole status as a person reads it in a failure report.
    fn status_text(&self) -> String;

    /// The Ready condition, if written.
    fn ready(&self) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == "Ready")
    }
}

impl HasConditions for S3Bucket {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }

    fn status_text(&self) -> String {
        format!("{:?}", self.status)
    }
}

impl HasConditions for S3User {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }

    fn status_text(&self) -> String {
        format!("{:?}", self.status)
    }
}

impl HasConditions for S3Store {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }

    fn status_text(&self) -> String {
        format!("{:?}", self.status)
    }
}

impl HasConditions for ClusterS3Store {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
    }

    fn status_text(&self) -> String {
        format!("{:?}", self.status)
    }
}

/// Waits until the object's Ready condition has `status` ("True"/"False") and `reason`;
/// returns the object as it was then.
pub async fn wait_ready_condition<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + HasConditions,
{
    let what = format!("{name} Ready={status}/{reason}");
    poll(&what, TIMEOUT, POLL, || async {
        let obj = api.get(name).await?;
        Ok(if obj.ready().is_some_and(|c| c.status == status && c.reason == reason) {
            Look::Done(obj)
        } else {
            Look::NotYet(obj.status_text())
        })
    })
    .await
}

/// Waits until the object `name` is gone from the API server (its finalizers have run).
pub async fn wait_gone<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let what = format!("{} {name} gone", K::kind(&()));
    poll(&what, TIMEOUT, POLL, || async {
        Ok(match api.get_opt(name).await? {
            None => Look::Done(()),
            Some(obj) => Look::NotYet(format!("still there with finalizers {:?}", obj.meta().finalizers)),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use anyhow::anyhow;

    use super::{Look, poll, wait_until};

    #[tokio::test]
    async fn a_timed_out_wait_names_what_it_awaited_and_the_last_state_seen() {
        let mut looks = 0;
        let err = poll("the answer", Duration::from_millis(30), Duration::from_millis(5), || {
            looks += 1;
            let seen = format!("look {looks}");
            async move { Ok::<_, anyhow::Error>(Look::<()>::NotYet(seen)) }
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("the answer: not within 30ms; last seen: look "), "{err}");
        assert!(err.ends_with(&format!("look {looks}")), "{err} after {looks} looks");

        let err = wait_until("a flag", Duration::from_millis(10), || async { false }).await.unwrap_err();
        assert_eq!(err.to_string(), "a flag: not within 10ms");
    }

    #[tokio::test]
    async fn a_failed_look_ends_the_wait_at_once() {
        let mut looks = 0;
        let err = poll("the answer", Duration::from_secs(60), Duration::from_millis(5), || {
            looks += 1;
            async { Err::<Look<()>, _>(anyhow!("refused")) }
        })
        .await
        .unwrap_err();
        assert_eq!((err.to_string(), looks), ("refused".to_string(), 1));
    }

    #[tokio::test]
    async fn a_done_look_returns_its_value() {
        let mut looks = 0;
        let v = poll("the answer", Duration::from_secs(60), Duration::from_millis(1), || {
            looks += 1;
            let done = looks == 3;
            async move { Ok::<_, anyhow::Error>(if done { Look::Done(42) } else { Look::NotYet(String::new()) }) }
        })
        .await
        .unwrap();
        assert_eq!((v, looks), (42, 3));
    }
}
