//! A provider's *standing* in a fleet: whether it is healthy and, when not, when it is retried;
//! with the generation, time, cause and instance of the change that set it. The health
//! counters (`error_count`, `last_error`, …) are something else: each instance keeps its own,
//! and they never decide another instance's standing.
//!
//! Rules (docs/DESIGN.md §6):
//! - Standing is written only when it changes: a provider turns unhealthy, recovers (by a
//!   probe, or by a real success of an attempt that started after the mark), is rescheduled
//!   by a failed probe, or is reset by an operator.
//! - Each write names the generation it was based on and stores the next one; a write based
//!   on an older generation than the stored one is refused, and the writer takes the stored
//!   one instead. Resets are never refused: they go on top of whatever is stored.
//! - An instance applies any standing newer than the one it holds, with the same events and
//!   retry timer as if it had made the change itself.

use chrono::{DateTime, SubsecRound, Utc};

use crate::store::StandingRow;

/// Why the standing last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Never changed since the provider was added.
    Initial,
    /// Counted failures reached `max_error_count`.
    Unhealthy,
    /// A probe or a real success after the mark.
    Recovered,
    /// A failed probe of an unhealthy provider moved its next retry.
    Rescheduled,
    /// An operator reset it.
    Reset,
    /// Carried over from the health row of a version without standings.
    Migrated,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Initial => "initial",
            Cause::Unhealthy => "unhealthy",
            Cause::Recovered => "recovered",
            Cause::Rescheduled => "rescheduled",
            Cause::Reset => "reset",
            Cause::Migrated => "migrated",
        }
    }

    /// Reads a stored cause; anything unknown (a newer version's) is `Migrated`, which only
    /// names it and changes no rule.
    pub fn parse(s: &str) -> Cause {
        match s {
            "initial" => Cause::Initial,
            "unhealthy" => Cause::Unhealthy,
            "recovered" => Cause::Recovered,
            "rescheduled" => Cause::Rescheduled,
            "reset" => Cause::Reset,
            _ => Cause::Migrated,
        }
    }
}

/// A provider's standing (see the module documentation).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Standing {
    pub is_healthy: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Grows by one with every stored change; 0 before the first.
    pub generation: i64,
    pub cause: Cause,
    pub changed_at: DateTime<Utc>,
    /// The instance that made the change (`fleet::instance_id`).
    pub changed_by: String,
}

impl Standing {
    /// A provider nobody has judged yet: healthy, generation 0.
    pub fn initial() -> Self {
        Standing {
            is_healthy: true,
            next_retry_at: None,
            generation: 0,
            cause: Cause::Initial,
            changed_at: Utc::now(),
            changed_by: String::new(),
        }
    }

    /// True when this standing should replace one of generation `held`.
    pub fn is_newer_than(&self, held: i64) -> bool {
        self.generation > held
    }

    /// From its stored row. A negative generation (a corrupt row) counts as 0.
    pub fn from_row(row: &StandingRow) -> Self {
        Standing {
            is_healthy: row.is_healthy,
            next_retry_at: if row.is_healthy {
                None
            } else {
                row.next_retry_at.map(|t| t.and_utc())
            },
            generation: row.generation.max(0),
            cause: Cause::parse(&row.cause),
            changed_at: row.changed_at.and_utc(),
            changed_by: row.changed_by.clone(),
        }
    }

    /// The row to store for provider `provider_id`. The store sets the generation.
    pub fn to_row(&self, provider_id: i64) -> StandingRow {
        StandingRow {
            provider_id,
            is_healthy: self.is_healthy,
            next_retry_at: self.next_retry_at.map(|t| t.naive_utc().trunc_subsecs(6)),
            generation: self.generation,
            cause: self.cause.as_str().to_string(),
            changed_at: self.changed_at.naive_utc().trunc_subsecs(6),
            changed_by: self.changed_by.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_round_trip_and_unknown_ones_are_harmless() {
        for c in [
            Cause::Initial,
            Cause::Unhealthy,
            Cause::Recovered,
            Cause::Rescheduled,
            Cause::Reset,
            Cause::Migrated,
        ] {
            assert_eq!(Cause::parse(c.as_str()), c);
        }
        assert_eq!(Cause::parse("from-the-future"), Cause::Migrated);
    }

    #[test]
    fn a_row_round_trips_and_corrupt_values_are_clamped() {
        let s = Standing {
            is_healthy: false,
            next_retry_at: Some(Utc::now()),
            generation: 7,
            cause: Cause::Unhealthy,
            changed_at: Utc::now(),
            changed_by: "a".into(),
        };
        let back = Standing::from_row(&s.to_row(3));
        assert_eq!(back.generation, 7);
        assert!(!back.is_healthy && back.next_retry_at.is_some());
        assert!(back.is_newer_than(6) && !back.is_newer_than(7));
        let mut row = s.to_row(3);
        row.generation = -5;
        row.is_healthy = true;
        let healthy = Standing::from_row(&row);
        assert_eq!(healthy.generation, 0);
        assert_eq!(healthy.next_retry_at, None, "a healthy standing has no retry");
    }
}
