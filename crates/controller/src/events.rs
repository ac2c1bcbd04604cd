//! Kubernetes events (events.k8s.io/v1) about the operator's objects.
//!
//! Why not kube's `Recorder`: to fold a repeated event into a series it keeps every event of
//! the last six minutes as a whole object, and drops old ones only when it publishes again, so
//! a large rollout left tens of MB behind (docs/benchmarks.md). Here a repeat is recognised by
//! a 16-byte digest, remembers only the event's name and count, and is forgotten on a timer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use sha2::{Digest, Sha256};

/// The longest note the API server accepts on an events.k8s.io/v1 Event: a longer one is
/// refused whole (HTTP 422), and the event with it.
pub const EVENT_NOTE_LIMIT: usize = 1024;

/// Marks a note cut to [`EVENT_NOTE_LIMIT`].
const CUT_MARK: &str = " …(cut)";

/// How long a published event may be continued as a series, as kube's recorder and
/// client-go's do.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often events older than [`SERIES_WINDOW`] are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The action every event of the operator reports.
const ACTION: &str = "Reconcile";

/// `note` as the API server will store it: at most [`EVENT_NOTE_LIMIT`] bytes, cut at a
/// character boundary and marked, so a message that echoes a long value still arrives.
pub fn fit_note(note: String) -> String {
    if note.len() <= EVENT_NOTE_LIMIT {
        return note;
    }
    let mut end = EVENT_NOTE_LIMIT - CUT_MARK.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARK}", &note[..end])
}

/// An event published recently: what continuing it as a series needs.
#[derive(Debug)]
struct Recent {
    name: String,
    count: i32,
    at: Instant,
}

/// Same object, type, reason and note: a repeat.
type Key = [u8; 16];

/// Publishes events, folding a repeat within [`SERIES_WINDOW`] into the first event's series.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<HashMap<Key, Recent>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher reporting as `controller` from `instance` (the pod's name, or the
    /// controller's when unknown), with a task that forgets old events while it lives.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Arc<Self> {
        let publisher = Arc::new(Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Mutex::new(HashMap::new()),
        });
        tokio::spawn(prune_while_alive(Arc::downgrade(&publisher)));
        publisher
    }

    /// Publishes an event about `regarding`, or adds one to the series of the same event
    /// published less than six minutes ago.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let type_ = if warning { "Warning" } else { "Normal" };
        let note = fit_note(note);
        let key = key(regarding, type_, reason, &note);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let repeat = self
            .recent()
            .get(&key)
            .filter(|r| r.at.elapsed() < SERIES_WINDOW)
            .map(|r| (r.name.clone(), r.count.saturating_add(1)));
        let now = Timestamp::now();
        if let Some((name, count)) = repeat {
            let series = EventSeries { count, last_observed_time: MicroTime(now) };
            let patch = serde_json::json!({ "series": series });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.remember(key, Recent { name, count, at: Instant::now() });
                    return Ok(());
                }
                // Expired on the server (its event TTL) or deleted: start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(ACTION.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, Recent { name, count: 1, at: Instant::now() });
        Ok(())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Recent>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: Key, recent: Recent) {
        self.recent().insert(key, recent);
    }

    /// Forgets events too old to continue; gives the map's memory back after a burst.
    fn prune(&self) {
        let mut recent = self.recent();
        recent.retain(|_, r| r.at.elapsed() < SERIES_WINDOW);
        if recent.capacity() > 4 * recent.len().max(16) {
            recent.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.recent().len()
    }
}

async fn prune_while_alive(publisher: Weak<Publisher>) {
    loop {
        tokio::time::sleep(PRUNE_EVERY).await;
        match publisher.upgrade() {
            Some(p) => p.prune(),
            None => return,
        }
    }
}

fn key(regarding: &ObjectReference, type_: &str, reason: &str, note: &str) -> Key {
    let mut h = Sha256::new();
    for part in [
        regarding.kind.as_deref(),
        regarding.namespace.as_deref(),
        regarding.name.as_deref(),
        regarding.uid.as_deref(),
        Some(type_),
        Some(reason),
        Some(note),
    ] {
        let part = part.unwrap_or_default().as_bytes();
        // Length-prefixed, so no two different field lists hash the same bytes.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_to_what_the_api_server_stores() {
        assert_eq!(fit_note("short".into()), "short");
        let exact = "x".repeat(EVENT_NOTE_LIMIT);
        assert_eq!(fit_note(exact.clone()), exact);
        let long = fit_note(format!("endpoint {}", "e".repeat(900_000)));
        assert!(long.len() <= EVENT_NOTE_LIMIT && long.starts_with("endpoint eee") && long.ends_with(CUT_MARK));
        // Multi-byte characters across the cut: never split one.
        for pad in 0..4 {
            let note = format!("{}{}", "a".repeat(pad), "😀".repeat(400));
            let cut = fit_note(note);
            assert!(cut.len() <= EVENT_NOTE_LIMIT, "{pad}: {}", cut.len());
            assert!(cut.trim_end_matches(CUT_MARK).chars().skip(pad).all(|c| c == '😀'), "{pad}");
        }
    }

    #[test]
    fn repeats_share_a_key_and_anything_else_does_not() {
        let obj = |name: &str| ObjectReference {
            kind: Some("S3Bucket".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let base = key(&obj("a"), "Normal", "Created", "bucket a created");
        assert_eq!(base, key(&obj("a"), "Normal", "Created", "bucket a created"));
        assert_ne!(base, key(&obj("b"), "Normal", "Created", "bucket a created"));
        assert_ne!(base, key(&obj("a"), "Warning", "Created", "bucket a created"));
        assert_ne!(base, key(&obj("a"), "Normal", "Deleted", "bucket a created"));
        assert_ne!(base, key(&obj("a"), "Normal", "Created", "bucket a deleted"));
        // Field boundaries count: "ab" + "c" is not "a" + "bc".
        assert_ne!(key(&obj("a"), "Normal", "Xb", "c"), key(&obj("a"), "Normal", "X", "bc"));
    }

    #[tokio::test]
    async fn old_events_are_forgotten() {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let p = Publisher::new(client, "c", None);
        let old = Instant::now().checked_sub(SERIES_WINDOW + Duration::from_secs(1)).unwrap();
        for i in 0..1000u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            let at = if i < 990 { old } else { Instant::now() };
            p.remember(k, Recent { name: format!("e{i}"), count: 1, at });
        }
        p.prune();
        assert_eq!(p.remembered(), 10, "only the last six minutes stay");
        assert!(p.recent().capacity() < 1000, "the burst's memory is given back");
    }
}
