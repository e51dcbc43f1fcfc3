//! Requests per minute over the last hour, for the dashboard's overview.
//!
//! Sixty one-minute buckets in a ring, indexed by the minute since the Unix epoch: memory is
//! fixed whatever the traffic, and a bucket is reused (cleared) when its minute comes round
//! again. This is what *this instance* finished; the daily usage rows are the fleet-wide view.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::aggregate::UsageResult;

/// How many minutes are kept.
pub const MINUTES: usize = 60;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Unix minute the counts belong to.
    minute: i64,
    requests: u64,
    failed: u64,
}

/// Finished attempts per minute, last hour.
#[derive(Debug, Clone)]
pub struct RecentRequests {
    buckets: [Bucket; MINUTES],
}

impl Default for RecentRequests {
    fn default() -> Self {
        RecentRequests {
            // Minute -1 is never asked for, so an unused bucket never counts.
            buckets: [Bucket {
                minute: -1,
                ..Default::default()
            }; MINUTES],
        }
    }
}

/// One minute of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// Start of the minute (UTC).
    pub minute: DateTime<Utc>,
    /// Finished upstream attempts (successes, failures, client errors and cancellations).
    pub requests: u64,
    /// Of those, the ones counted against a provider.
    pub failed: u64,
}

fn unix_minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn slot(minute: i64) -> usize {
    // rem_euclid of a positive modulus is in 0..MINUTES, so the cast cannot truncate.
    minute.rem_euclid(MINUTES as i64) as usize
}

impl RecentRequests {
    /// Counts one finished attempt at `at`. An attempt older than the window (a record that
    /// waited in a queue) or from a future minute's clock skew lands only if its bucket is
    /// still its own; otherwise it is dropped, since the daily rows keep it anyway.
    pub fn add(&mut self, at: DateTime<Utc>, result: UsageResult, now: DateTime<Utc>) {
        let minute = unix_minute(at);
        let current = unix_minute(now);
        if minute > current || current - minute >= MINUTES as i64 {
            return;
        }
        let b = &mut self.buckets[slot(minute)];
        if b.minute != minute {
            *b = Bucket {
                minute,
                requests: 0,
                failed: 0,
            };
        }
        b.requests = b.requests.saturating_add(1);
        if result == UsageResult::Failure {
            b.failed = b.failed.saturating_add(1);
        }
    }

    /// The last [`MINUTES`] minutes, oldest first, the current (partial) minute last; minutes
    /// without traffic are zeros.
    pub fn last_hour(&self, now: DateTime<Utc>) -> Vec<MinuteCount> {
        let current = unix_minute(now);
        (0..MINUTES as i64)
            .rev()
            .map(|ago| {
                let minute = current - ago;
                let b = self.buckets[slot(minute)];
                let (requests, failed) = if b.minute == minute {
                    (b.requests, b.failed)
                } else {
                    (0, 0)
                };
                MinuteCount {
                    minute: DateTime::from_timestamp(minute.saturating_mul(60), 0).unwrap_or_default(),
                    requests,
                    failed,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn counts_land_in_their_minute_and_old_minutes_fall_out() {
        let mut r = RecentRequests::default();
        let now = at(3_600);
        r.add(at(3_600), UsageResult::Success, now);
        r.add(at(3_601), UsageResult::Failure, now);
        r.add(at(3_540), UsageResult::Neutral, now); // previous minute
        r.add(at(0), UsageResult::Success, now); // an hour ago: outside the window
        r.add(at(3_700), UsageResult::Success, now); // a future minute: ignored
        let hour = r.last_hour(now);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!((hour[59].requests, hour[59].failed), (2, 1));
        assert_eq!((hour[58].requests, hour[58].failed), (1, 0));
        assert_eq!(hour.iter().map(|m| m.requests).sum::<u64>(), 3);
        assert_eq!(hour[59].minute.timestamp() % 60, 0);
        assert!(
            hour.windows(2)
                .all(|w| w[1].minute - w[0].minute == chrono::Duration::minutes(1))
        );

        // An hour later every bucket is stale and reads as zero; a new count reuses a bucket.
        let later = at(3_600 + 3_600);
        assert!(r.last_hour(later).iter().all(|m| m.requests == 0));
        r.add(later, UsageResult::Success, later);
        assert_eq!(r.last_hour(later)[59].requests, 1);
    }

    #[test]
    fn absurd_times_do_not_panic() {
        let mut r = RecentRequests::default();
        for t in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
        ] {
            r.add(t, UsageResult::Success, t);
            assert_eq!(r.last_hour(t).len(), MINUTES);
        }
    }
}
