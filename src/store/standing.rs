//! Queries of `provider_standing` (see `provider::standing` for the rules) and the fleet
//! snapshot that start-up and `FleetSync` load.
//!
//! Every standing write bumps the change marker in its transaction, so the other instances of
//! a fleet reload and learn it within one sync interval.

use diesel::prelude::*;

use super::models::*;
use super::pool::DbPool;
use super::queries::bump_version;
use super::schema::{
    config_version, health_check_configs, provider_standing, provider_validations, providers,
};
use super::tx::Tx;
use super::{StoreError, now_naive};
use crate::with_conn;

/// What a conditional standing write did.
#[derive(Debug, Clone, PartialEq)]
pub enum StandingWrite {
    /// Stored, as this generation.
    Written(StandingRow),
    /// Refused: the stored standing is newer than the one the change was based on. Here it is.
    Newer(StandingRow),
    /// The provider no longer exists.
    Gone,
}

/// Everything an instance loads to route as the fleet does, read in one snapshot with the
/// change marker read first: a change committed after this read moves the marker past
/// `version`, so the next sync picks it up.
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    pub version: i64,
    pub providers: Vec<StoredProvider>,
    pub health_config: Option<HealthConfigRow>,
}

/// One stored provider with its standing and this router's last saved counters.
#[derive(Debug, Clone)]
pub struct StoredProvider {
    pub row: ProviderRow,
    pub counters: Option<ValidationRow>,
    pub standing: Option<StandingRow>,
}

impl DbPool {
    /// The marker, every provider with its health, and the health-check configuration.
    pub fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        with_conn!(self, |conn| {
            conn.read_tx(|conn| {
                let version = config_version::table
                    .find(1)
                    .select(config_version::version)
                    .first(conn)?;
                let rows = providers::table
                    .left_join(provider_validations::table)
                    .left_join(provider_standing::table)
                    .order(providers::id)
                    .select((
                        ProviderRow::as_select(),
                        Option::<ValidationRow>::as_select(),
                        Option::<StandingRow>::as_select(),
                    ))
                    .load::<(ProviderRow, Option<ValidationRow>, Option<StandingRow>)>(conn)?;
                let health_config = health_check_configs::table
                    .find(1)
                    .select(HealthConfigRow::as_select())
                    .first(conn)
                    .optional()?;
                Ok(FleetSnapshot {
                    version,
                    providers: rows
                        .into_iter()
                        .map(|(row, counters, standing)| StoredProvider {
                            row,
                            counters,
                            standing,
                        })
                        .collect(),
                    health_config,
                })
            })
        })
    }

    /// Writes a standing change made on top of generation `based_on`, as generation
    /// `based_on + 1`, unless the stored one is already newer (`WHERE generation <= based_on`):
    /// then nothing is written and the newer one is returned. Concurrent writers based on the
    /// same generation are serialised by the row: one wins, the others learn its result.
    pub fn write_standing(&self, next: &StandingRow, based_on: i64) -> Result<StandingWrite, StoreError> {
        use provider_standing as s;
        let mut next = next.clone();
        next.generation = based_on.saturating_add(1);
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let updated = diesel::update(
                    s::table
                        .filter(s::provider_id.eq(next.provider_id))
                        .filter(s::generation.le(based_on)),
                )
                .set(&next)
                .execute(conn)?;
                if updated == 1 {
                    bump_version!(conn);
                    return Ok(StandingWrite::Written(next));
                }
                let stored = |conn: &mut _| {
                    s::table
                        .find(next.provider_id)
                        .select(StandingRow::as_select())
                        .first(conn)
                        .optional()
                };
                if let Some(stored) = stored(conn)? {
                    return Ok(StandingWrite::Newer(stored));
                }
                // No standing yet (a provider added since the migration): the first one.
                let exists: i64 = providers::table
                    .filter(providers::id.eq(next.provider_id))
                    .count()
                    .get_result(conn)?;
                if exists == 0 {
                    return Ok(StandingWrite::Gone);
                }
                // Another writer may insert the first one at the same time: one insert wins.
                let inserted = diesel::insert_into(s::table)
                    .values(&next)
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                if inserted == 0 {
                    return Ok(stored(conn)?.map_or(StandingWrite::Gone, StandingWrite::Newer));
                }
                bump_version!(conn);
                Ok(StandingWrite::Written(next))
            })
        })
    }

    /// An operator's reset: healthy, no retry pending, as the newest generation whatever the
    /// stored one is (a reset is never refused). `None` when the provider does not exist.
    pub fn reset_standing(&self, provider_id: i64, by: &str) -> Result<Option<StandingRow>, StoreError> {
        use provider_standing as s;
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let (changed_at, cause) = (now_naive(), "reset".to_string());
                // One statement: the row lock makes concurrent resets take turns, each one
                // generation above the last.
                let updated = diesel::update(s::table.find(provider_id))
                    .set((
                        s::is_healthy.eq(true),
                        s::next_retry_at.eq(None::<chrono::NaiveDateTime>),
                        s::generation.eq(s::generation + 1),
                        s::cause.eq(&cause),
                        s::changed_at.eq(changed_at),
                        s::changed_by.eq(by),
                    ))
                    .returning(StandingRow::as_returning())
                    .get_result(conn)
                    .optional()?;
                let row = match updated {
                    Some(row) => row,
                    None => {
                        let exists: i64 = providers::table
                            .filter(providers::id.eq(provider_id))
                            .count()
                            .get_result(conn)?;
                        if exists == 0 {
                            return Ok(None);
                        }
                        let row = StandingRow {
                            provider_id,
                            is_healthy: true,
                            next_retry_at: None,
                            generation: 1,
                            cause,
                            changed_at,
                            changed_by: by.to_string(),
                        };
                        // A concurrent first reset: both end as one reset.
                        diesel::insert_into(s::table)
                            .values(&row)
                            .on_conflict_do_nothing()
                            .execute(conn)?;
                        row
                    }
                };
                bump_version!(conn);
                Ok(Some(row))
            })
        })
    }
}
