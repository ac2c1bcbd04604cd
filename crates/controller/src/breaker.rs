//! A breaker per store: once a store gives no answer at all (no connection, a timeout), its
//! objects stop asking it and fail at once, and only one call at a time probes it until it
//! answers again.
//!
//! Without it, every reconcile on a store that went silent waits out the client's timeouts
//! (up to 15 s a call, several calls a reconcile) while it holds one of the reconcile slots that
//! every store's objects share, so one silent store would slow all the others. A store that
//! refuses connections fails fast anyway; the breaker matters most for one that black-holes.
//! An answer of any kind, even an error, closes it: only silence opens it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use s3op_backends::BackendError;

/// The first pause before a silent store is probed again; it doubles after each failed probe.
const FIRST_PAUSE: Duration = Duration::from_secs(2);
/// The longest pause between probes.
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// How long a probe may stay unanswered before another may go: a probe whose reconcile was
/// dropped (at shutdown, say) never reports, and must not close the store for good. Longer
/// than any one backend operation's calls with their timeouts.
const PROBE_DEADLINE: Duration = Duration::from_secs(120);

/// Where a store's breaker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The store answers: every call goes through.
    Closed,
    /// The store gave no answer: calls are withheld until `probe_at`, then one goes through.
    Open {
        /// When the next call may probe the store (while probing: when the probe went).
        probe_at: Instant,
        /// Failed probes so far (the first silence counts as one), which set the pause.
        failures: u32,
        /// Whether a probe is under way (others are withheld meanwhile).
        probing: bool,
    },
}

/// Whether a call may go to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the store.
    Call,
    /// Call the store: it is this breaker's probe.
    Probe,
    /// Do not call: the store gave no answer lately.
    Withhold,
}

/// What a call's outcome did to the breaker, for whoever must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing changed that anyone waits for.
    None,
    /// The store went silent: its calls are withheld from now on.
    Opened,
    /// The store answers again: its objects may go on.
    Closed,
}

/// The pause after `failures` silences in a row: 2 s, doubling, at most 30 s.
pub fn pause(failures: u32) -> Duration {
    FIRST_PAUSE.saturating_mul(1u32 << failures.saturating_sub(1).min(8)).min(LONGEST_PAUSE)
}

/// Decides whether a call may go to the store now, marking a probe as under way.
pub fn admit(state: &mut State, now: Instant) -> Admission {
    match state {
        State::Closed => Admission::Call,
        State::Open { probe_at, probing: true, .. } if now >= *probe_at + PROBE_DEADLINE => {
            *probe_at = now;
            Admission::Probe
        }
        State::Open { probing: true, .. } => Admission::Withhold,
        State::Open { probe_at, probing, .. } if now >= *probe_at => {
            *probe_at = now;
            *probing = true;
            Admission::Probe
        }
        State::Open { .. } => Admission::Withhold,
    }
}

/// Records the outcome of a call admitted as `admitted`: `silent` when the store gave no
/// answer at all. A call that was under way when the breaker opened counts only by answering
/// (its silence is the one that opened it, or one like it), so only probes lengthen the pause.
pub fn record(state: &mut State, admitted: Admission, silent: bool, now: Instant) -> Turn {
    match (&mut *state, silent) {
        (State::Closed, false) => Turn::None,
        (State::Closed, true) => {
            *state = State::Open { probe_at: now + pause(1), failures: 1, probing: false };
            Turn::Opened
        }
        (State::Open { .. }, false) => {
            *state = State::Closed;
            Turn::Closed
        }
        (State::Open { probe_at, failures, probing }, true) => {
            if admitted == Admission::Probe {
                *failures = failures.saturating_add(1);
                *probe_at = now + pause(*failures);
                *probing = false;
            }
            Turn::None
        }
    }
}

/// A store's breaker, shared by every call to its backend.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { state: Mutex::new(State::Closed) }
    }
}

impl Breaker {
    /// Whether a call may go to the store now.
    pub fn admit(&self) -> Admission {
        admit(&mut self.lock(), Instant::now())
    }

    /// Records what a call admitted as `admitted` got back.
    pub fn record<T>(&self, admitted: Admission, result: &Result<T, BackendError>) -> Turn {
        let silent = matches!(result, Err(BackendError::Unreachable { .. }));
        record(&mut self.lock(), admitted, silent, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is one enum written whole; a panicking holder cannot leave it half-made.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The error a withheld call returns. It names no bucket or user: the silence that opened the
/// breaker may have come from another namespace's call.
pub fn withheld(backend: &'static str) -> BackendError {
    BackendError::Unreachable {
        backend,
        cause: "the store gave no answer to recent calls; the operator asks it again in a moment and goes on when it answers".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_half_a_minute() {
        let pauses: Vec<u64> = (1..=7).map(|n| pause(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(pause(u32::MAX), LONGEST_PAUSE);
    }

    #[test]
    fn silence_opens_and_only_one_probe_goes_at_a_time() {
        let t0 = Instant::now();
        let mut s = State::Closed;
        assert_eq!(admit(&mut s, t0), Admission::Call);
        assert_eq!(record(&mut s, Admission::Call, false, t0), Turn::None, "an answer keeps it closed");
        assert_eq!(record(&mut s, Admission::Call, true, t0), Turn::Opened);
        assert_eq!(admit(&mut s, t0), Admission::Withhold, "no call during the pause");
        // Calls under way when it opened come back silent too: they do not lengthen the pause.
        assert_eq!(record(&mut s, Admission::Call, true, t0), Turn::None);
        assert_eq!(s, State::Open { probe_at: t0 + pause(1), failures: 1, probing: false });
        let t1 = t0 + pause(1);
        assert_eq!(admit(&mut s, t1), Admission::Probe);
        assert_eq!(admit(&mut s, t1), Admission::Withhold, "one probe at a time");
        assert_eq!(record(&mut s, Admission::Probe, true, t1), Turn::None);
        assert_eq!(s, State::Open { probe_at: t1 + pause(2), failures: 2, probing: false }, "a failed probe doubles");
        assert_eq!(admit(&mut s, t1 + pause(1)), Admission::Withhold);
        let t2 = t1 + pause(2);
        assert_eq!(admit(&mut s, t2), Admission::Probe);
        assert_eq!(record(&mut s, Admission::Probe, false, t2), Turn::Closed, "any answer closes it");
        assert_eq!(admit(&mut s, t2), Admission::Call);
    }

    #[test]
    fn a_probe_that_never_reports_does_not_close_the_store_for_good() {
        let t0 = Instant::now();
        let mut s = State::Open { probe_at: t0, failures: 1, probing: false };
        assert_eq!(admit(&mut s, t0), Admission::Probe);
        assert_eq!(admit(&mut s, t0 + PROBE_DEADLINE - Duration::from_secs(1)), Admission::Withhold);
        let late = t0 + PROBE_DEADLINE;
        assert_eq!(admit(&mut s, late), Admission::Probe, "the lost probe is replaced");
        assert_eq!(admit(&mut s, late), Admission::Withhold);
    }

    #[test]
    fn an_answer_from_a_call_under_way_closes_it() {
        let t0 = Instant::now();
        let mut s = State::Closed;
        record(&mut s, Admission::Call, true, t0);
        assert_eq!(record(&mut s, Admission::Call, false, t0), Turn::Closed);
        assert_eq!(s, State::Closed);
    }

    #[test]
    fn only_silence_counts() {
        let b = Breaker::default();
        let answered: Result<(), BackendError> =
            Err(BackendError::Unavailable { backend: "minio", cause: "HTTP 503".into() });
        assert_eq!(b.record(Admission::Call, &answered), Turn::None, "an answered 503 is an answer");
        assert_eq!(b.admit(), Admission::Call);
        let silent: Result<(), BackendError> = Err(withheld("minio"));
        assert_eq!(b.record(Admission::Call, &silent), Turn::Opened);
        assert_eq!(b.admit(), Admission::Withhold);
        assert!(withheld("minio").is_retryable());
    }
}
