//! A provider's health as a pure state machine: counters and transitions, no actix and no
//! clock of its own (`now` is always passed in), so every rule is unit tested.
//!
//! Rules:
//! - A *counted* failure (connection error, timeout, 5xx, 429, 401/403) adds one to
//!   `error_count` and clears `consecutive_successes`. When `error_count` reaches
//!   `max_error_count` the provider turns unhealthy and `next_retry_at = now + retry_after`.
//! - A success clears `error_count` (failures are counted in a row) and, on an unhealthy
//!   provider, recovers it.
//! - A 429 also sets a cool-down (`cooldown_until`) during which the provider is not picked,
//!   healthy or not.

use chrono::{DateTime, Duration, Utc};

use super::recovery::{RecentOutcomes, Recovery};
use crate::routing::AttemptError;
use crate::store::{ValidationRow, now_naive};

/// `now + d`, saturating at chrono's last representable instant: the durations come from
/// headers, stored rows and settings, and an absurd one must not panic the actor.
pub fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now.checked_add_signed(d.max(Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The thresholds that turn failures into an unhealthy state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub max_error_count: u32,
    pub retry_after: Duration,
    /// Whether a successful probe may make an unhealthy provider healthy again.
    pub auto_recovery: bool,
    /// Backoff of failed retries and the failure-rate trip (see `recovery`).
    pub recovery: Recovery,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_error_count: 5,
            retry_after: Duration::hours(1),
            auto_recovery: true,
            recovery: Recovery::default(),
        }
    }
}

/// What a change did to the provider's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Counters moved; healthy or not as before.
    Unchanged,
    BecameUnhealthy,
    Recovered,
}

/// The health state of one provider (docs/DESIGN.md §1).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Health {
    pub is_healthy: bool,
    pub error_count: u32,
    pub consecutive_successes: u32,
    pub last_error: Option<String>,
    pub last_status_code: Option<u16>,
    pub last_validated_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// End of a rate-limit cool-down; not persisted.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Counted failures since it last turned unhealthy: the backoff step. Not persisted.
    pub failed_retries: u32,
    /// The last counted outcomes, for the failure-rate trip. Not persisted.
    pub recent_outcomes: RecentOutcomes,
}

/// A counted failure to record: how the attempt or probe failed (its status, its detail and,
/// for a 429, the cool-down all come from the typed error).
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: AttemptError,
}

impl Failure {
    /// How long the provider must rest (a 429).
    fn cooldown(&self) -> Option<Duration> {
        self.error.cooldown_ms().map(|ms| {
            Duration::try_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Duration::MAX)
        })
    }
}

impl Health {
    /// A new provider starts healthy.
    pub fn healthy() -> Self {
        Health {
            is_healthy: true,
            ..Default::default()
        }
    }

    /// Records a successful call or probe.
    pub fn record_success(&mut self, now: DateTime<Utc>, status: Option<u16>) -> Transition {
        self.recent_outcomes.record(false, 1);
        self.error_count = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        self.last_success_at = Some(now);
        self.last_validated_at = Some(now);
        self.last_status_code = status.or(self.last_status_code);
        self.cooldown_until = None;
        if self.is_healthy {
            Transition::Unchanged
        } else {
            self.is_healthy = true;
            self.next_retry_at = None;
            self.failed_retries = 0;
            // The failures that tripped the rate are history now.
            self.recent_outcomes.clear();
            Transition::Recovered
        }
    }

    /// Records `n` successes at once (taken from the workers' shared counter).
    pub fn record_successes(&mut self, now: DateTime<Utc>, n: u64) -> Transition {
        if n == 0 {
            return Transition::Unchanged;
        }
        let t = self.record_success(now, Some(200));
        self.recent_outcomes.record(false, n - 1);
        let more = u32::try_from(n - 1).unwrap_or(u32::MAX);
        self.consecutive_successes = self.consecutive_successes.saturating_add(more);
        t
    }

    /// Counts `n` successes of attempts that were under way when the provider was marked
    /// unhealthy: the counters move, the standing does not (see `provider::standing`).
    pub fn note_successes(&mut self, now: DateTime<Utc>, n: u64) {
        if n == 0 {
            return;
        }
        if self.is_healthy {
            self.record_successes(now, n);
            return;
        }
        self.last_success_at = Some(now);
        self.consecutive_successes = self
            .consecutive_successes
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Records a counted failure.
    pub fn record_failure(&mut self, now: DateTime<Utc>, failure: &Failure, policy: &Policy) -> Transition {
        self.error_count = self.error_count.saturating_add(1);
        self.recent_outcomes
            .set_window(policy.recovery.failure_rate_window);
        self.recent_outcomes.record(true, 1);
        self.consecutive_successes = 0;
        self.last_error = Some(failure.error.to_string());
        self.last_status_code = failure.error.status();
        self.last_validated_at = Some(now);
        if let Some(c) = failure.cooldown() {
            self.cooldown_until = Some(later(now, c));
        }
        let tripped = self.error_count >= policy.max_error_count
            || policy.recovery.rate_exceeded(&self.recent_outcomes);
        if self.is_healthy && tripped {
            self.is_healthy = false;
            self.failed_retries = 0;
            self.next_retry_at = Some(later(now, policy.retry_after));
            Transition::BecameUnhealthy
        } else {
            if !self.is_healthy {
                // A failed retry or fallback attempt pushes the next retry out again, each
                // time further (up to the cap).
                self.failed_retries = self.failed_retries.saturating_add(1);
                let wait = policy
                    .recovery
                    .retry_delay(policy.retry_after, self.failed_retries);
                self.next_retry_at = Some(later(now, wait));
            }
            Transition::Unchanged
        }
    }

    /// Clears every counter: healthy, as new (the admin reset).
    pub fn reset(&mut self) {
        *self = Health::healthy();
    }

    /// True while a rate-limit cool-down runs.
    pub fn cooling(&self, now: DateTime<Utc>) -> bool {
        self.cooldown_until.is_some_and(|c| c > now)
    }

    /// Builds the state from its stored row.
    pub fn from_row(row: &ValidationRow) -> Self {
        Health {
            is_healthy: row.is_healthy,
            error_count: row.error_count.max(0) as u32,
            consecutive_successes: row.consecutive_successes.max(0) as u32,
            last_error: row.last_error.clone(),
            last_status_code: row.last_status_code.and_then(|s| u16::try_from(s).ok()),
            last_validated_at: row.last_validated_at.map(|t| t.and_utc()),
            last_success_at: row.last_success_at.map(|t| t.and_utc()),
            next_retry_at: row.next_retry_at.map(|t| t.and_utc()),
            cooldown_until: None,
            ..Health::default()
        }
    }

    /// The row to store for provider `provider_id`.
    pub fn to_row(&self, provider_id: i64) -> ValidationRow {
        use chrono::SubsecRound;
        let naive = |t: Option<DateTime<Utc>>| t.map(|t| t.naive_utc().trunc_subsecs(6));
        ValidationRow {
            provider_id,
            is_healthy: self.is_healthy,
            error_count: self.error_count.min(i32::MAX as u32) as i32,
            last_error: self.last_error.clone(),
            last_status_code: self.last_status_code.map(i32::from),
            last_validated_at: naive(self.last_validated_at),
            last_success_at: naive(self.last_success_at),
            next_retry_at: naive(self.next_retry_at),
            consecutive_successes: self.consecutive_successes.min(i32::MAX as u32) as i32,
            updated_at: now_naive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::StatusClass;

    fn fail(status: u16) -> Failure {
        Failure {
            error: AttemptError::Status {
                status,
                class: StatusClass::ProviderError,
                detail: String::new(),
                cooldown_ms: None,
            },
        }
    }

    fn rate_limited(cooldown_ms: u64) -> Failure {
        Failure {
            error: AttemptError::Status {
                status: 429,
                class: StatusClass::RateLimited,
                detail: ": slow down".into(),
                cooldown_ms: Some(cooldown_ms),
            },
        }
    }

    #[test]
    fn unhealthy_after_max_failures_in_a_row() {
        let policy = Policy {
            max_error_count: 3,
            retry_after: Duration::seconds(10),
            auto_recovery: true,
            ..Policy::default()
        };
        let now = Utc::now();
        let mut h = Health::healthy();
        assert_eq!(h.record_failure(now, &fail(500), &policy), Transition::Unchanged);
        assert_eq!(h.record_failure(now, &fail(500), &policy), Transition::Unchanged);
        assert_eq!(
            h.record_failure(now, &fail(502), &policy),
            Transition::BecameUnhealthy
        );
        assert!(!h.is_healthy);
        assert_eq!(h.next_retry_at, Some(now + Duration::seconds(10)));
        assert_eq!(h.last_status_code, Some(502));
        assert_eq!(h.record_success(now, Some(200)), Transition::Recovered);
        assert!(h.is_healthy && h.error_count == 0 && h.next_retry_at.is_none());
    }

    #[test]
    fn a_success_clears_the_run_of_failures() {
        let policy = Policy {
            max_error_count: 2,
            retry_after: Duration::seconds(10),
            auto_recovery: true,
            ..Policy::default()
        };
        let now = Utc::now();
        let mut h = Health::healthy();
        h.record_failure(now, &fail(500), &policy);
        h.record_success(now, Some(200));
        assert_eq!(h.consecutive_successes, 1);
        assert_eq!(h.record_failure(now, &fail(500), &policy), Transition::Unchanged);
        assert!(h.is_healthy);
        assert_eq!(h.consecutive_successes, 0);
    }

    #[test]
    fn successes_from_before_the_mark_do_not_recover() {
        let now = Utc::now();
        let mut h = Health::healthy();
        let policy = Policy {
            max_error_count: 1,
            ..Policy::default()
        };
        h.record_failure(now, &fail(500), &policy);
        h.note_successes(now, 3);
        assert!(!h.is_healthy && h.next_retry_at.is_some());
        assert_eq!(h.consecutive_successes, 3);
        assert_eq!(h.last_success_at, Some(now));
    }

    #[test]
    fn rate_limits_cool_down() {
        let now = Utc::now();
        let mut h = Health::healthy();
        h.record_failure(now, &rate_limited(2_000), &Policy::default());
        assert!(h.cooling(now));
        assert!(!h.cooling(now + Duration::seconds(3)));
    }

    #[test]
    fn absurd_durations_saturate_instead_of_panicking() {
        let now = Utc::now();
        let mut h = Health::healthy();
        let policy = Policy {
            max_error_count: 1,
            retry_after: Duration::MAX,
            auto_recovery: true,
            ..Policy::default()
        };
        assert_eq!(
            h.record_failure(now, &rate_limited(u64::MAX), &policy),
            Transition::BecameUnhealthy
        );
        assert_eq!(h.cooldown_until, Some(DateTime::<Utc>::MAX_UTC));
        assert_eq!(h.next_retry_at, Some(DateTime::<Utc>::MAX_UTC));
        // A negative duration (a corrupt row) means "now", never the past.
        assert_eq!(later(now, Duration::seconds(-5)), now);
        // The stored row of a saturated instant round-trips.
        let _ = Health::from_row(&h.to_row(1));
    }

    #[test]
    fn round_trips_through_its_row() {
        let now = Utc::now();
        let mut h = Health::healthy();
        h.record_failure(
            now,
            &fail(503),
            &Policy {
                max_error_count: 1,
                retry_after: Duration::seconds(5),
                auto_recovery: true,
                ..Policy::default()
            },
        );
        let back = Health::from_row(&h.to_row(7));
        assert_eq!(back.is_healthy, h.is_healthy);
        assert_eq!(back.error_count, 1);
        assert_eq!(back.last_status_code, Some(503));
        assert!(back.next_retry_at.is_some());
    }

    #[test]
    fn failed_retries_wait_longer_each_time_up_to_the_cap() {
        let policy = Policy {
            max_error_count: 1,
            retry_after: Duration::seconds(10),
            auto_recovery: true,
            recovery: Recovery {
                retry_backoff_factor: 3.0,
                max_retry_after: Duration::seconds(100),
                ..Recovery::default()
            },
        };
        let now = Utc::now();
        let mut h = Health::healthy();
        h.record_failure(now, &fail(500), &policy);
        let mut waits = vec![(h.next_retry_at.unwrap() - now).num_seconds()];
        for _ in 0..4 {
            h.record_failure(now, &fail(500), &policy);
            waits.push((h.next_retry_at.unwrap() - now).num_seconds());
        }
        assert_eq!(waits, vec![10, 30, 90, 100, 100]);
        assert_eq!(h.failed_retries, 4);
        h.record_success(now, Some(200));
        assert_eq!(h.failed_retries, 0, "a recovery starts the backoff over");
        h.record_failure(now, &fail(500), &policy);
        assert_eq!((h.next_retry_at.unwrap() - now).num_seconds(), 10);
    }

    #[test]
    fn a_failure_rate_over_the_window_turns_unhealthy() {
        let policy = Policy {
            max_error_count: 100,
            recovery: Recovery {
                failure_rate_threshold: Some(0.3),
                failure_rate_window: 10,
                ..Recovery::default()
            },
            ..Policy::default()
        };
        let now = Utc::now();
        let mut h = Health::healthy();
        // Never two failures in a row, but 3 in 10.
        let mut transitions = Vec::new();
        for i in 0..10 {
            if i % 3 == 0 && i > 0 {
                transitions.push(h.record_failure(now, &fail(500), &policy));
            } else {
                h.record_successes(now, 1);
            }
        }
        assert_eq!(
            transitions.last(),
            Some(&Transition::BecameUnhealthy),
            "{transitions:?}"
        );
        assert!(!h.is_healthy);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["recent_outcomes"]["failures"], 3);
        // Without a threshold the same run stays healthy.
        let mut h = Health::healthy();
        for i in 0..10 {
            if i % 3 == 0 && i > 0 {
                h.record_failure(now, &fail(500), &Policy::default());
            } else {
                h.record_successes(now, 1);
            }
        }
        assert!(h.is_healthy);
    }
}
