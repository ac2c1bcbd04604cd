//! A bulk read of the store shared by the reconciles of one burst.
//!
//! Some stores answer "does this user exist" or "who owns this bucket" only with a list of
//! everything (VersityGW's `/list-users`, `/list-buckets`). Read per object, a resync of N
//! objects costs N lists of N entries. A [`Snapshot`] makes it a handful: one list serves
//! every caller for a short time, concurrent callers wait for the one list in flight, and the
//! operator's own writes patch the snapshot so a rollout keeps it too.
//!
//! What can be stale, and why that is safe: only changes made behind the operator's back, and
//! for at most the snapshot's lifetime (seconds), after which the next read sees them. A
//! write that started before a list finished makes that list uncached (see the generation), so
//! the operator never reads back a snapshot older than its own write.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::Result;

struct Slot<T> {
    at: Instant,
    generation: u64,
    value: Arc<T>,
}

/// One bulk read, kept for `ttl` and shared.
pub struct Snapshot<T> {
    ttl: Duration,
    generation: AtomicU64,
    slot: Mutex<Option<Slot<T>>>,
    // Held while a list is in flight: callers arriving meanwhile wait and share its result.
    fetching: tokio::sync::Mutex<()>,
}

impl<T> std::fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl<T: Clone> Snapshot<T> {
    /// A snapshot that is read again once it is `ttl` old.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, generation: AtomicU64::new(0), slot: Mutex::new(None), fetching: tokio::sync::Mutex::new(()) }
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let slot = self.slot.lock().ok()?;
        slot.as_ref()
            .filter(|s| s.at.elapsed() < self.ttl && s.generation == self.generation.load(Ordering::Acquire))
            .map(|s| s.value.clone())
    }

    /// The current snapshot, listing with `fetch` when there is none fresh. Errors are not
    /// kept: the next caller lists again.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let _in_flight = self.fetching.lock().await;
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        self.fetch_and_keep(fetch).await
    }

    /// A snapshot newer than `seen`: for confirming an absence, which may be news the
    /// snapshot predates (a bucket another reconcile just made). Callers that saw the same old
    /// snapshot share one list.
    pub async fn refresh_after<F, Fut>(&self, seen: &Arc<T>, fetch: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let newer = |v: Option<Arc<T>>| v.filter(|v| !Arc::ptr_eq(v, seen));
        if let Some(v) = newer(self.fresh()) {
            return Ok(v);
        }
        let _in_flight = self.fetching.lock().await;
        if let Some(v) = newer(self.fresh()) {
            return Ok(v);
        }
        self.fetch_and_keep(fetch).await
    }

    async fn fetch_and_keep<F, Fut>(&self, fetch: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let generation = self.generation.load(Ordering::Acquire);
        let at = Instant::now();
        let value = Arc::new(fetch().await?);
        if let Ok(mut slot) = self.slot.lock()
            && self.generation.load(Ordering::Acquire) == generation
        {
            *slot = Some(Slot { at, generation, value: value.clone() });
        }
        Ok(value)
    }

    /// Records a write the operator just made: `patch` applies it to the snapshot held now, so
    /// it stays valid. Without a fresh snapshot there is nothing to patch, and a list still in
    /// flight will not be kept (it may predate the write).
    pub fn patch(&self, patch: impl FnOnce(&mut T)) {
        let Ok(mut slot) = self.slot.lock() else { return };
        let before = self.generation.fetch_add(1, Ordering::AcqRel);
        match slot.as_mut() {
            Some(s) if s.generation == before && s.at.elapsed() < self.ttl => {
                patch(Arc::make_mut(&mut s.value));
                s.generation = before + 1;
            }
            _ => *slot = None,
        }
    }

    /// Forgets the snapshot (a write whose effect on it is not known).
    pub fn invalidate(&self) {
        if let Ok(mut slot) = self.slot.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{collections::BTreeSet, sync::atomic::AtomicUsize};

    use super::*;

    fn counting(calls: &AtomicUsize, value: Vec<&'static str>) -> impl Future<Output = Result<BTreeSet<String>>> {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(value.into_iter().map(String::from).collect()) }
    }

    #[tokio::test]
    async fn one_list_serves_every_caller_until_it_expires() {
        let snap = Snapshot::new(Duration::from_millis(200));
        let calls = AtomicUsize::new(0);
        for _ in 0..5 {
            let v = snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
            assert!(v.contains("a"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_the_list_in_flight() {
        let snap = Arc::new(Snapshot::<u32>::new(Duration::from_secs(5)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (snap, calls) = (snap.clone(), calls.clone());
            tasks.spawn(async move {
                snap.get(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7)
                })
                .await
                .unwrap()
            });
        }
        while let Some(v) = tasks.join_next().await {
            assert_eq!(*v.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn own_writes_patch_it_and_invalidate_forgets_it() {
        let snap = Snapshot::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
        snap.patch(|s: &mut BTreeSet<String>| {
            s.insert("b".into());
        });
        let v = snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
        assert!(v.contains("b"), "the patch is seen without listing again");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        snap.invalidate();
        let v = snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
        assert!(!v.contains("b"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_absence_is_confirmed_by_a_newer_list() {
        let snap = Snapshot::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let seen = snap.get(|| counting(&calls, vec!["a"])).await.unwrap();
        assert!(!seen.contains("b"));
        let newer = snap.refresh_after(&seen, || counting(&calls, vec!["a", "b"])).await.unwrap();
        assert!(newer.contains("b"));
        // A caller that saw the same old snapshot gets the newer one without another list.
        let again = snap.refresh_after(&seen, || counting(&calls, vec!["a", "b"])).await.unwrap();
        assert!(Arc::ptr_eq(&newer, &again));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_list_that_raced_a_write_is_not_kept() {
        let snap = Arc::new(Snapshot::<BTreeSet<String>>::new(Duration::from_secs(5)));
        let calls = Arc::new(AtomicUsize::new(0));
        let (s, c) = (snap.clone(), calls.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow = tokio::spawn(async move {
            s.get(|| async move {
                c.fetch_add(1, Ordering::SeqCst);
                let _ = rx.await;
                Ok(BTreeSet::from(["old".to_string()]))
            })
            .await
            .unwrap()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The write lands while the list is in flight: the list may not contain it.
        snap.patch(|s| {
            s.insert("new".into());
        });
        tx.send(()).unwrap();
        assert!(slow.await.unwrap().contains("old"));
        let calls2 = AtomicUsize::new(0);
        snap.get(|| counting(&calls2, vec!["old", "new"])).await.unwrap();
        assert_eq!(calls2.load(Ordering::SeqCst), 1, "the raced list was not cached");
    }
}
