//! Each store's fair share of a kind's reconcile slots.
//!
//! A controller runs at most `RECONCILE_CONCURRENCY` reconciles of its kind at once, for every
//! store together. Without shares, a store whose calls are slow (a loaded server, a far region)
//! fills every slot with its own objects, and the objects of every other store wait behind
//! them: measured with four stores × 250 pairs, every store finished when the slowest did.
//!
//! So a reconcile first takes a share of its store: with `n` stores that have objects running
//! or waiting, each may run `ceil(concurrency / n)` at once. An object over its store's share
//! gives its slot back at once and waits here, in its store's line; it is woken (sent to its
//! controller) when one of its store's reconciles ends, or when a store going idle raises the
//! shares. A store alone keeps every slot. Reconciles whose store is not usable take a share
//! too: they end at once without calling anything.
//!
//! The controllers run one slot more than `concurrency`: a store using every share still
//! leaves that slot to the queue, so another store's object reaches the gate (and makes its
//! store active) instead of waiting until the busy store's queue is through. The busy store's
//! own objects that reach it just join their line.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

use crate::stores::StoreKey;

/// An object waiting for a share: (namespace, name).
pub type Waiting = (String, String);

/// One store's reconciles of one kind: how many run, and who waits, in order.
#[derive(Debug, Default)]
struct Line {
    running: usize,
    waiting: VecDeque<Waiting>,
    queued: HashSet<Waiting>,
}

impl Line {
    fn active(&self) -> bool {
        self.running > 0 || !self.waiting.is_empty()
    }
}

/// Every store's line, by kind and store.
#[derive(Debug, Default)]
pub struct Lines(HashMap<(&'static str, StoreKey), Line>);

/// How many reconciles each of `active` stores may run at once out of `concurrency`.
pub fn share(concurrency: usize, active: usize) -> usize {
    concurrency.div_ceil(active.max(1)).max(1)
}

impl Lines {
    fn active(&self, kind: &str) -> usize {
        self.0.iter().filter(|((k, _), line)| *k == kind && line.active()).count()
    }

    /// Whether `object` of `kind` on `store` may run now; if not, it joins its store's line.
    pub fn enter(&mut self, concurrency: usize, kind: &'static str, store: &StoreKey, object: Waiting) -> bool {
        // The entering store counts as active, whether or not it was.
        let others = self.0.iter().filter(|((k, s), line)| *k == kind && s != store && line.active()).count();
        let share = share(concurrency, others + 1);
        let line = self.0.entry((kind, store.clone())).or_default();
        if line.running < share {
            line.running += 1;
            if line.queued.remove(&object) {
                line.waiting.retain(|w| *w != object);
            }
            true
        } else {
            if line.queued.insert(object.clone()) {
                line.waiting.push_back(object);
            }
            false
        }
    }

    /// Ends one running reconcile of `kind` on `store`, and picks whom to wake: as many waiting
    /// objects of each store as its share has room for now.
    pub fn leave(&mut self, concurrency: usize, kind: &'static str, store: &StoreKey) -> Vec<Waiting> {
        if let Some(line) = self.0.get_mut(&(kind, store.clone())) {
            line.running = line.running.saturating_sub(1);
        }
        let share = share(concurrency, self.active(kind));
        let mut woken = Vec::new();
        for ((k, _), line) in self.0.iter_mut() {
            if *k != kind {
                continue;
            }
            let room = share.saturating_sub(line.running);
            for _ in 0..room {
                let Some(next) = line.waiting.pop_front() else { break };
                line.queued.remove(&next);
                woken.push(next);
            }
        }
        self.0.retain(|_, line| line.active());
        woken
    }
}

/// The shares of every kind, and where each kind's woken objects are sent.
#[derive(Debug)]
pub struct Shares {
    concurrency: usize,
    lines: Mutex<Lines>,
    wake: Mutex<HashMap<&'static str, UnboundedSender<Waiting>>>,
}

impl Shares {
    /// Shares of `concurrency` slots per kind.
    pub fn new(concurrency: usize) -> Self {
        Self { concurrency, lines: Mutex::default(), wake: Mutex::default() }
    }

    /// The objects of `kind` to reconcile because a share has room for them now.
    pub fn woken(&self, kind: &'static str) -> UnboundedReceiver<Waiting> {
        let (tx, rx) = unbounded();
        self.wake.lock().unwrap_or_else(PoisonError::into_inner).insert(kind, tx);
        rx
    }

    /// A share of `store` for `object` of `kind`, or `None` when the store has used its share:
    /// the object then waits in line and is woken when there is room.
    pub fn enter(self: &Arc<Self>, kind: &'static str, store: &StoreKey, object: Waiting) -> Option<Share> {
        let entered = self.lock().enter(self.concurrency, kind, store, object);
        entered.then(|| Share { shares: self.clone(), kind, store: store.clone() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        // Counters and queues only; a panicking holder cannot leave them unusable.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running reconcile's share of its store; dropping it ends the reconcile's turn.
#[derive(Debug)]
pub struct Share {
    shares: Arc<Shares>,
    kind: &'static str,
    store: StoreKey,
}

impl Drop for Share {
    fn drop(&mut self) {
        let woken = self.shares.lock().leave(self.shares.concurrency, self.kind, &self.store);
        if woken.is_empty() {
            return;
        }
        let wake = self.shares.wake.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = wake.get(self.kind) {
            for object in woken {
                let _ = tx.unbounded_send(object);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> Waiting {
        ("ns".into(), name.into())
    }

    #[test]
    fn shares_split_the_slots_and_never_reach_zero() {
        assert_eq!(share(8, 1), 8);
        assert_eq!(share(8, 2), 4);
        assert_eq!(share(8, 3), 3);
        assert_eq!(share(8, 20), 1);
        assert_eq!(share(8, 0), 8);
        assert_eq!(share(1, 4), 1);
    }

    #[test]
    fn a_store_alone_keeps_every_slot_and_shares_them_when_another_arrives() {
        let (slow, fast) = (StoreKey::Cluster("slow".into()), StoreKey::Cluster("fast".into()));
        let mut lines = Lines::default();
        for i in 0..8 {
            assert!(lines.enter(8, "S3Bucket", &slow, obj(&format!("s{i}"))), "alone: slot {i}");
        }
        // Another store arrives: it gets its share at once although the slow one holds 8.
        assert!(lines.enter(8, "S3Bucket", &fast, obj("f0")));
        // The slow store is over its share of 4 now: its next object waits.
        assert!(!lines.enter(8, "S3Bucket", &slow, obj("s8")));
        assert!(!lines.enter(8, "S3Bucket", &slow, obj("s8")), "waiting twice queues it once");
        // Slow reconciles end; nobody is woken until the slow store is under its share.
        for _ in 0..4 {
            assert_eq!(lines.leave(8, "S3Bucket", &slow), Vec::<Waiting>::new());
        }
        assert_eq!(lines.leave(8, "S3Bucket", &slow), vec![obj("s8")], "under its share: its first in line");
        assert!(lines.enter(8, "S3Bucket", &slow, obj("s8")));
        // Other kinds have slots of their own.
        assert!(lines.enter(8, "S3User", &slow, obj("u0")));
    }

    #[test]
    fn a_store_going_idle_raises_the_others_share() {
        let (a, b) = (StoreKey::Cluster("a".into()), StoreKey::Cluster("b".into()));
        let mut lines = Lines::default();
        assert!(lines.enter(2, "S3Bucket", &a, obj("a0")));
        assert!(lines.enter(2, "S3Bucket", &b, obj("b0")));
        assert!(!lines.enter(2, "S3Bucket", &a, obj("a1")), "share of 1 each");
        assert!(!lines.enter(2, "S3Bucket", &a, obj("a2")));
        // b's last reconcile ends: a alone now, with room for both waiting objects.
        assert_eq!(lines.leave(2, "S3Bucket", &b), vec![obj("a1")], "a still runs one: room for one");
        assert_eq!(lines.leave(2, "S3Bucket", &a), vec![obj("a2")]);
        assert!(lines.0.is_empty() || lines.0.values().all(Line::active), "idle lines are dropped");
    }
}
