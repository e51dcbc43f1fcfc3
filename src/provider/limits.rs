//! Per-provider limits, enforced by each instance on its own traffic: `max_concurrency`
//! (requests in flight), `rpm` (requests started in the last minute) and `tpm` (tokens
//! reported in the last minute). A provider at a limit is skipped by routing like a cooling
//! one; a request that finds every candidate at a limit waits in the routing queue.
//!
//! Tokens are known only when an answer ends, so `tpm` admits a request while the last
//! minute's tokens are under the budget: one request may overshoot it by its own size, and
//! the next ones wait until the minute has room again. In a fleet each instance enforces the
//! whole budget on its own traffic: divide the upstream's limit by the number of instances.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Largest accepted `max_concurrency`.
pub const MAX_CONCURRENCY: i64 = 100_000;
/// Largest accepted `rpm`.
pub const MAX_RPM: i64 = 100_000_000;
/// Largest accepted `tpm`.
pub const MAX_TPM: i64 = 1_000_000_000_000;

/// A provider's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_concurrency: Option<u32>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// Which limit holds a provider back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    MaxConcurrency,
    Rpm,
    Tpm,
}

/// A provider at a limit, and when it has room again: `None` when that depends on a request
/// in flight ending (concurrency), else when the minute window frees enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub reason: LimitReason,
    pub free_in: Option<Duration>,
}

/// Counts per second over the last 60 seconds (a ring of one-second buckets).
#[derive(Debug)]
struct MinuteWindow {
    buckets: [(u64, u64); 60], // (second index, count)
}

impl Default for MinuteWindow {
    fn default() -> Self {
        MinuteWindow {
            buckets: [(u64::MAX, 0); 60],
        }
    }
}

impl MinuteWindow {
    fn add(&mut self, second: u64, n: u64) {
        let b = &mut self.buckets[(second % 60) as usize];
        if b.0 != second {
            *b = (second, 0);
        }
        b.1 = b.1.saturating_add(n);
    }

    fn live(&self, second: u64) -> impl Iterator<Item = &(u64, u64)> {
        self.buckets
            .iter()
            .filter(move |b| b.0 != u64::MAX && b.0 <= second && b.0 + 60 > second)
    }

    fn sum(&self, second: u64) -> u64 {
        self.live(second).fold(0u64, |s, b| s.saturating_add(b.1))
    }

    /// Seconds until the sum drops below `budget` (as old buckets leave the window).
    fn seconds_until_below(&self, second: u64, budget: u64) -> u64 {
        let mut live: Vec<(u64, u64)> = self.live(second).copied().collect();
        live.sort_unstable();
        let mut sum = self.sum(second);
        for (s, n) in live {
            sum = sum.saturating_sub(n);
            if sum < budget {
                return (s + 60).saturating_sub(second);
            }
        }
        60
    }
}

#[derive(Debug)]
struct State {
    limits: Limits,
    requests: MinuteWindow,
    tokens: MinuteWindow,
}

/// A hook run after a slot is freed.
type ReleaseHook = Box<dyn Fn() + Send + Sync>;

/// One provider's limiter, shared by the routing table and the requests holding its permits.
/// A provider without limits costs one atomic add and subtract per request: its windows are
/// counted only while a budget is set.
pub struct Limiter {
    origin: Instant,
    /// No limit is set: nothing to check, no window to count.
    unlimited: AtomicBool,
    /// Requests holding a permit.
    inflight: AtomicU32,
    state: Mutex<State>,
    on_release: OnceLock<ReleaseHook>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("inflight", &self.inflight)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What the limiter shows: the admin views and the explain view.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LimitState {
    #[serde(flatten)]
    pub limits: Limits,
    /// Requests holding a slot (this instance).
    pub inflight: u32,
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
    /// The limit holding it back now, if any.
    pub at_limit: Option<LimitReason>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Limiter {
            origin: Instant::now(),
            unlimited: AtomicBool::new(limits.is_unlimited()),
            inflight: AtomicU32::new(0),
            state: Mutex::new(State {
                limits,
                requests: MinuteWindow::default(),
                tokens: MinuteWindow::default(),
            }),
            on_release: OnceLock::new(),
        })
    }

    /// Runs `f` whenever a permit is dropped (routing serves its queue). Set once.
    pub fn on_release(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_release.set(Box::new(f));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters: a panic elsewhere cannot leave them unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// New limits (provider updated); counts carry over.
    pub fn set_limits(&self, limits: Limits) {
        let mut s = self.lock();
        s.limits = limits;
        self.unlimited.store(limits.is_unlimited(), Ordering::Release);
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    fn blocked(&self, s: &State, now: Instant) -> Option<Blocked> {
        let second = self.second(now);
        // Within the current second: the wait is to the next bucket boundary at least.
        let to_next = Duration::from_secs(1).saturating_sub(Duration::from_nanos(u64::from(
            now.saturating_duration_since(self.origin).subsec_nanos(),
        )));
        let after = |secs: u64| to_next + Duration::from_secs(secs.saturating_sub(1));
        let inflight = self.inflight.load(Ordering::Acquire);
        if s.limits.max_concurrency.is_some_and(|max| inflight >= max) {
            return Some(Blocked {
                reason: LimitReason::MaxConcurrency,
                free_in: None,
            });
        }
        if let Some(rpm) = s.limits.rpm
            && s.requests.sum(second) >= u64::from(rpm)
        {
            return Some(Blocked {
                reason: LimitReason::Rpm,
                free_in: Some(after(s.requests.seconds_until_below(second, u64::from(rpm)))),
            });
        }
        if let Some(tpm) = s.limits.tpm
            && s.tokens.sum(second) >= tpm
        {
            return Some(Blocked {
                reason: LimitReason::Tpm,
                free_in: Some(after(s.tokens.seconds_until_below(second, tpm))),
            });
        }
        None
    }

    /// Whether a request could start now, and if not, why.
    pub fn check(&self, now: Instant) -> Result<(), Blocked> {
        if self.unlimited.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = self.lock();
        match self.blocked(&s, now) {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }

    /// Takes a slot for one request (and counts it in the minute's requests), unless at a
    /// limit. The slot is held until the permit is dropped.
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Result<Permit, Blocked> {
        if !self.unlimited.load(Ordering::Acquire) {
            // Under the lock: two requests never both take the last slot.
            let mut s = self.lock();
            if let Some(b) = self.blocked(&s, now) {
                return Err(b);
            }
            if s.limits.rpm.is_some() {
                s.requests.add(self.second(now), 1);
            }
            self.inflight.fetch_add(1, Ordering::AcqRel);
        } else {
            self.inflight.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Permit {
            limiter: self.clone(),
        })
    }

    /// Counts the tokens an answer reported against `tpm` (while one is set).
    pub fn add_tokens(&self, tokens: u64, now: Instant) {
        if tokens > 0 && !self.unlimited.load(Ordering::Acquire) {
            let mut s = self.lock();
            if s.limits.tpm.is_some() {
                s.tokens.add(self.second(now), tokens);
            }
        }
    }

    pub fn state(&self, now: Instant) -> LimitState {
        let s = self.lock();
        let second = self.second(now);
        LimitState {
            limits: s.limits,
            inflight: self.inflight.load(Ordering::Acquire),
            requests_last_minute: s.requests.sum(second),
            tokens_last_minute: s.tokens.sum(second),
            at_limit: self.blocked(&s, now).map(|b| b.reason),
        }
    }

    fn release(&self) {
        let _ = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        if let Some(hook) = self.on_release.get() {
            hook();
        }
    }
}

/// A request's slot on a provider; dropping it frees the slot and then runs the limiter's
/// release hook (routing hands the slot to the first waiting request).
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn limiter(max_concurrency: Option<u32>, rpm: Option<u32>, tpm: Option<u64>) -> Arc<Limiter> {
        Limiter::new(Limits {
            max_concurrency,
            rpm,
            tpm,
        })
    }

    #[test]
    fn unlimited_never_blocks() {
        let l = limiter(None, None, None);
        let now = Instant::now();
        let permits: Vec<Permit> = (0..1000).map(|_| l.try_acquire(now).unwrap()).collect();
        l.add_tokens(u64::MAX, now);
        l.add_tokens(u64::MAX, now);
        assert!(l.check(now).is_ok());
        assert_eq!(l.state(now).inflight, 1000);
        drop(permits);
        assert_eq!(l.state(now).inflight, 0);
    }

    #[test]
    fn the_concurrency_cap_holds_until_a_permit_drops() {
        let l = limiter(Some(2), None, None);
        let now = l.origin;
        let a = l.try_acquire(now).unwrap();
        let _b = l.try_acquire(now).unwrap();
        let err = l.try_acquire(now).unwrap_err();
        assert_eq!(err.reason, LimitReason::MaxConcurrency);
        assert_eq!(err.free_in, None);
        assert_eq!(l.state(now).at_limit, Some(LimitReason::MaxConcurrency));
        let released = Arc::new(AtomicUsize::new(0));
        let r = released.clone();
        l.on_release(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        drop(a);
        assert_eq!(released.load(Ordering::SeqCst), 1, "the release hook runs");
        assert!(l.try_acquire(now).is_ok());
    }

    #[test]
    fn rpm_counts_starts_over_a_sliding_minute() {
        let l = limiter(None, Some(3), None);
        let t0 = l.origin;
        drop(l.try_acquire(t0).unwrap());
        drop(l.try_acquire(t0 + Duration::from_secs(10)).unwrap());
        drop(l.try_acquire(t0 + Duration::from_secs(20)).unwrap());
        let at = t0 + Duration::from_millis(30_500);
        let err = l.try_acquire(at).unwrap_err();
        assert_eq!(err.reason, LimitReason::Rpm);
        // The first request leaves the window at second 60.
        assert_eq!(err.free_in, Some(Duration::from_millis(29_500)));
        assert!(l.try_acquire(t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(l.state(t0 + Duration::from_secs(60)).requests_last_minute, 3);
    }

    #[test]
    fn tpm_admits_under_budget_and_waits_for_the_window() {
        let l = limiter(None, None, Some(1000));
        let t0 = l.origin;
        l.add_tokens(600, t0);
        assert!(l.check(t0).is_ok());
        l.add_tokens(600, t0 + Duration::from_secs(5));
        let err = l.check(t0 + Duration::from_secs(6)).unwrap_err();
        assert_eq!(err.reason, LimitReason::Tpm);
        assert_eq!(err.free_in, Some(Duration::from_secs(54)));
        assert!(l.check(t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(l.state(t0 + Duration::from_secs(61)).tokens_last_minute, 600);
    }

    #[test]
    fn limits_change_in_place() {
        let l = limiter(Some(1), None, None);
        let now = l.origin;
        let _p = l.try_acquire(now).unwrap();
        assert!(l.check(now).is_err());
        l.set_limits(Limits::default());
        assert!(l.check(now).is_ok());
        assert_eq!(l.limits(), Limits::default());
    }

    #[test]
    fn absurd_values_do_not_overflow() {
        let l = limiter(Some(u32::MAX), Some(u32::MAX), Some(u64::MAX));
        let far = l.origin + Duration::from_secs(u64::from(u32::MAX));
        for _ in 0..3 {
            l.add_tokens(u64::MAX, far);
        }
        assert!(l.check(far).is_err());
        let _ = l.state(far);
        let l = limiter(Some(0), Some(0), Some(0));
        assert!(l.try_acquire(l.origin).is_err());
    }
}
