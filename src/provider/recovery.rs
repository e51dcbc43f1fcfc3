//! Recovery that backs off, and the failure-rate trip: the pure rules `health` applies.
//!
//! - *Backoff*: an unhealthy provider is probed `retry_after` after it turned unhealthy; each
//!   counted failure while it is unhealthy (a failed retry probe, or a failed fallback
//!   attempt) multiplies the wait by `retry_backoff_factor`, up to `max_retry_after`. A
//!   provider down for a day is then probed a few times a day instead of every
//!   `retry_after`, and one that comes back is found at the next, shorter-spaced probe.
//! - *Failure rate*: besides `max_error_count` failures in a row, a provider turns unhealthy
//!   when the failures among its last `failure_rate_window` counted outcomes reach
//!   `failure_rate_threshold` (only once the window is full, so three early failures do not
//!   make a rate). This catches a provider that fails often but never enough times in a row.
//!
//! Both are per instance and not stored: after a restart the backoff starts at
//! `retry_after` again and the window starts empty.

use std::collections::VecDeque;

use chrono::Duration;
use serde::Serialize;

/// Largest accepted `failure_rate_window`.
pub const MAX_WINDOW: u32 = 10_000;
/// Largest accepted `retry_backoff_factor`.
pub const MAX_FACTOR: f64 = 100.0;

/// The recovery settings (`[health_check]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recovery {
    /// Each failed retry multiplies the wait by this (1 keeps it fixed).
    pub retry_backoff_factor: f64,
    /// The longest wait between retries.
    #[serde(serialize_with = "as_seconds")]
    pub max_retry_after: Duration,
    /// Failure share (0–1] over the window that turns a provider unhealthy; `None`: off.
    pub failure_rate_threshold: Option<f64>,
    /// How many recent counted outcomes the rate is taken over.
    pub failure_rate_window: u32,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_seconds())
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            retry_backoff_factor: 2.0,
            max_retry_after: Duration::days(1),
            failure_rate_threshold: None,
            failure_rate_window: 20,
        }
    }
}

impl Recovery {
    /// The wait before the next retry after `failed_retries` failed ones: `base ×
    /// factor^failed_retries`, at most `max_retry_after` (and never below `base`, should the
    /// cap be set lower than it).
    pub fn retry_delay(&self, base: Duration, failed_retries: u32) -> Duration {
        let base_ms = base.num_milliseconds().max(0) as f64;
        let factor = if self.retry_backoff_factor.is_finite() {
            self.retry_backoff_factor.clamp(1.0, MAX_FACTOR)
        } else {
            1.0
        };
        let grown = base_ms * factor.powi(i32::try_from(failed_retries).unwrap_or(i32::MAX));
        let cap_ms = self.max_retry_after.num_milliseconds().max(0) as f64;
        let ms = if grown.is_finite() {
            grown.min(cap_ms)
        } else {
            cap_ms
        }
        .max(base_ms);
        // Below 2^63 ms by the min/max above (both bounds came from a `Duration`).
        Duration::try_milliseconds(ms as i64).unwrap_or(Duration::MAX)
    }

    /// Whether `recent` trips the failure-rate threshold.
    pub fn rate_exceeded(&self, recent: &RecentOutcomes) -> bool {
        match self.failure_rate_threshold {
            Some(t) if !recent.is_empty() && recent.len() >= self.failure_rate_window as usize => {
                recent.failure_rate() >= t
            }
            _ => false,
        }
    }
}

/// The last counted outcomes of a provider (successes and counted failures), oldest first,
/// bounded by the window it was last given (`failure_rate_window`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentOutcomes {
    outcomes: VecDeque<bool>, // true: failure
    failures: usize,
    window: u32,
}

impl Default for RecentOutcomes {
    fn default() -> Self {
        RecentOutcomes {
            outcomes: VecDeque::new(),
            failures: 0,
            window: Recovery::default().failure_rate_window,
        }
    }
}

impl RecentOutcomes {
    /// Keeps the last `window` outcomes from now on.
    pub fn set_window(&mut self, window: u32) {
        self.window = window.clamp(1, MAX_WINDOW);
        self.record(false, 0);
    }

    /// Adds `n` outcomes, keeping the last `window`.
    pub fn record(&mut self, failed: bool, n: u64) {
        let window = self.window.clamp(1, MAX_WINDOW) as usize;
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(window);
        for _ in 0..n {
            self.outcomes.push_back(failed);
            self.failures += usize::from(failed);
        }
        while self.outcomes.len() > window {
            if self.outcomes.pop_front() == Some(true) {
                self.failures -= 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    pub fn failures(&self) -> usize {
        self.failures
    }

    /// Failures over outcomes; 0 when empty.
    pub fn failure_rate(&self) -> f64 {
        if self.outcomes.is_empty() {
            0.0
        } else {
            self.failures as f64 / self.outcomes.len() as f64
        }
    }

    pub fn clear(&mut self) {
        self.outcomes.clear();
        self.failures = 0;
    }
}

impl Serialize for RecentOutcomes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RecentOutcomes", 3)?;
        st.serialize_field("outcomes", &self.outcomes.len())?;
        st.serialize_field("failures", &self.failures)?;
        st.serialize_field("failure_rate", &self.failure_rate())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_by_the_factor_to_the_cap() {
        let r = Recovery {
            retry_backoff_factor: 2.0,
            max_retry_after: Duration::seconds(100),
            ..Recovery::default()
        };
        let base = Duration::seconds(10);
        let waits: Vec<i64> = (0..6).map(|n| r.retry_delay(base, n).num_seconds()).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(r.retry_delay(base, u32::MAX), Duration::seconds(100));
    }

    #[test]
    fn a_factor_of_one_or_a_low_cap_keeps_the_base() {
        let fixed = Recovery {
            retry_backoff_factor: 1.0,
            ..Recovery::default()
        };
        assert_eq!(fixed.retry_delay(Duration::seconds(7), 50), Duration::seconds(7));
        let low_cap = Recovery {
            max_retry_after: Duration::seconds(1),
            ..Recovery::default()
        };
        assert_eq!(low_cap.retry_delay(Duration::seconds(7), 3), Duration::seconds(7));
    }

    #[test]
    fn absurd_settings_saturate() {
        let r = Recovery {
            retry_backoff_factor: f64::INFINITY,
            max_retry_after: Duration::MAX,
            ..Recovery::default()
        };
        assert_eq!(r.retry_delay(Duration::MAX, u32::MAX), Duration::MAX);
        let nan = Recovery {
            retry_backoff_factor: f64::NAN,
            ..Recovery::default()
        };
        assert_eq!(nan.retry_delay(Duration::seconds(3), 9), Duration::seconds(3));
        let _ = r.retry_delay(Duration::seconds(-5), 3);
    }

    #[test]
    fn the_rate_trips_only_over_a_full_window() {
        let r = Recovery {
            failure_rate_threshold: Some(0.5),
            failure_rate_window: 10,
            ..Recovery::default()
        };
        let mut recent = RecentOutcomes::default();
        recent.set_window(10);
        recent.record(true, 4);
        assert!(!r.rate_exceeded(&recent), "4 outcomes are no rate yet");
        recent.record(false, 5);
        assert!(!r.rate_exceeded(&recent), "9 outcomes");
        recent.record(true, 1);
        assert_eq!(recent.failure_rate(), 0.5);
        assert!(r.rate_exceeded(&recent), "5 of the last 10");
        recent.record(false, 3);
        assert_eq!(recent.len(), 10);
        assert_eq!(recent.failures(), 2, "the oldest fell out");
        assert!(!r.rate_exceeded(&recent));
        assert!(!Recovery::default().rate_exceeded(&recent), "off by default");
    }

    #[test]
    fn the_window_stays_bounded() {
        let mut recent = RecentOutcomes::default();
        recent.set_window(u32::MAX);
        recent.record(false, u64::MAX);
        assert_eq!(recent.len(), MAX_WINDOW as usize);
        recent.set_window(5);
        recent.record(true, 3);
        assert_eq!((recent.len(), recent.failures()), (5, 3));
        let v = serde_json::to_value(&recent).unwrap();
        assert_eq!(v["failure_rate"], 0.6);
    }
}
