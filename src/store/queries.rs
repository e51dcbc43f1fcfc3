//! The query functions, one per operation, each written once for both backends through
//! `with_conn!`. They block: call them from the `Store` actor's threads, never from an async
//! worker.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::models::*;
use super::pool::DbPool;
use super::schema::{
    config_version, health_check_configs, provider_standing, provider_usage_stats, provider_validations,
    providers,
};
use super::tx::Tx;
use super::{StoreError, now_naive};
use crate::with_conn;

/// Bumps the change marker inside the current transaction, so other instances of a fleet see
/// that the configuration changed. Works on either concrete connection.
macro_rules! bump_version {
    ($conn:ident) => {
        diesel::update(config_version::table.find(1))
            .set((
                config_version::version.eq(config_version::version + 1),
                config_version::updated_at.eq(now_naive()),
            ))
            .execute($conn)?
    };
}
pub(super) use bump_version;

/// Filter for usage reads; `None` means no bound.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub provider_id: Option<i64>,
    pub model: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl DbPool {
    /// Every provider with its persisted health, ordered by id.
    pub fn list_providers(&self) -> Result<Vec<(ProviderRow, Option<ValidationRow>)>, StoreError> {
        with_conn!(self, |conn| {
            let rows = providers::table
                .left_join(provider_validations::table)
                .order(providers::id)
                .select((ProviderRow::as_select(), Option::<ValidationRow>::as_select()))
                .load::<(ProviderRow, Option<ValidationRow>)>(conn)?;
            Ok(rows)
        })
    }

    /// Inserts a provider. A duplicate name is `StoreError::Conflict`.
    pub fn insert_provider(&self, new: &NewProvider) -> Result<ProviderRow, StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let row = diesel::insert_into(providers::table)
                    .values(new)
                    .returning(ProviderRow::as_returning())
                    .get_result(conn)?;
                bump_version!(conn);
                Ok(row)
            })
        })
    }

    /// Replaces a provider's configuration. `NotFound` when the id does not exist.
    pub fn update_provider(&self, id: i64, new: &NewProvider) -> Result<ProviderRow, StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let row = diesel::update(providers::table.find(id))
                    .set(new)
                    .returning(ProviderRow::as_returning())
                    .get_result(conn)?;
                bump_version!(conn);
                Ok(row)
            })
        })
    }

    /// Changes a provider by merging onto its *stored* row: the row is read and locked (row
    /// lock on PostgreSQL, the immediate transaction on SQLite), `merge` turns it into the row
    /// to write, and the write commits in the same transaction. Two partial updates, on one
    /// instance or on two, therefore apply one after the other and neither is lost. When
    /// `merge` refuses, nothing is written and its error is returned as `Ok(Err(..))`.
    pub fn merge_provider<E>(
        &self,
        id: i64,
        merge: impl FnOnce(&ProviderRow) -> Result<NewProvider, E>,
    ) -> Result<Result<ProviderRow, E>, StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let stored = conn.provider_for_update(id)?;
                let new = match merge(&stored) {
                    Ok(new) => new,
                    Err(e) => return Ok(Err(e)),
                };
                let row = diesel::update(providers::table.find(id))
                    .set(&new)
                    .returning(ProviderRow::as_returning())
                    .get_result(conn)?;
                bump_version!(conn);
                Ok(Ok(row))
            })
        })
    }

    /// Inserts the provider or, when its name exists, replaces its configuration (start-up
    /// seeding from the config file).
    pub fn upsert_provider_by_name(&self, new: &NewProvider) -> Result<ProviderRow, StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                let row = diesel::insert_into(providers::table)
                    .values(new)
                    .on_conflict(providers::name)
                    .do_update()
                    .set(new)
                    .returning(ProviderRow::as_returning())
                    .get_result(conn)?;
                bump_version!(conn);
                Ok(row)
            })
        })
    }

    /// Deletes a provider (its health row goes with it). Returns false when it did not exist.
    pub fn delete_provider(&self, id: i64) -> Result<bool, StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                diesel::delete(provider_validations::table.filter(provider_validations::provider_id.eq(id)))
                    .execute(conn)?;
                diesel::delete(provider_standing::table.filter(provider_standing::provider_id.eq(id)))
                    .execute(conn)?;
                let n = diesel::delete(providers::table.find(id)).execute(conn)?;
                bump_version!(conn);
                Ok(n > 0)
            })
        })
    }

    /// Writes this instance's health counters for a provider (insert or replace by provider
    /// id). They are diagnostics and, on SQLite, what a restart starts from; a provider's
    /// standing in the fleet is `provider_standing`, written apart (see `store::standing`).
    pub fn save_validation(&self, row: &ValidationRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                // A provider deleted meanwhile has no row to attach health to: skip quietly.
                let exists: i64 = providers::table
                    .filter(providers::id.eq(row.provider_id))
                    .count()
                    .get_result(conn)?;
                if exists == 0 {
                    return Ok(());
                }
                diesel::insert_into(provider_validations::table)
                    .values(row)
                    .on_conflict(provider_validations::provider_id)
                    .do_update()
                    .set(row)
                    .execute(conn)?;
                Ok(())
            })
        })
    }

    /// Adds a batch of usage increments in one transaction.
    ///
    /// Sums saturate at `i64::MAX` in SQL (see [`saturating_sum`]): a stored row that is
    /// already absurd can never make the upsert fail, so one row cannot hold the rest of the
    /// batch back forever. Each row is an additive upsert, so
    /// concurrent writers (threads or instances) never lose a count. Rows go one statement
    /// each: diesel cannot batch an upsert on SQLite, and a batch holds one row per (provider,
    /// model, day) touched since the last flush, so it is small.
    pub fn add_usage(&self, batch: &[UsageRow]) -> Result<(), StoreError> {
        use provider_usage_stats as u;
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                for row in batch {
                    diesel::insert_into(u::table)
                        .values(row)
                        .on_conflict((u::provider_id, u::model, u::date))
                        .do_update()
                        .set((
                            u::total_requests.eq(saturating_sum("total_requests")),
                            u::success_requests.eq(saturating_sum("success_requests")),
                            u::failed_requests.eq(saturating_sum("failed_requests")),
                            u::prompt_tokens.eq(saturating_sum("prompt_tokens")),
                            u::completion_tokens.eq(saturating_sum("completion_tokens")),
                            u::total_tokens.eq(saturating_sum("total_tokens")),
                            u::total_response_time_ms.eq(saturating_sum("total_response_time_ms")),
                            // The right-hand side sees the old row, so this is the new average;
                            // computed in floating point, so no operand can overflow.
                            u::avg_response_time_ms.eq(diesel::dsl::sql::<diesel::sql_types::Double>(
                                "(CAST(provider_usage_stats.total_response_time_ms AS DOUBLE PRECISION) \
                                   + CAST(excluded.total_response_time_ms AS DOUBLE PRECISION)) \
                                 / (CAST(provider_usage_stats.total_requests AS DOUBLE PRECISION) \
                                   + CAST(excluded.total_requests AS DOUBLE PRECISION))",
                            )),
                            u::last_used_at.eq(excluded(u::last_used_at)),
                        ))
                        .execute(conn)?;
                }
                Ok(())
            })
        })
    }

    /// Daily usage rows matching the filter, oldest day first.
    pub fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        use provider_usage_stats as u;
        with_conn!(self, |conn| {
            let mut q = u::table.select(UsageRow::as_select()).into_boxed();
            if let Some(id) = filter.provider_id {
                q = q.filter(u::provider_id.eq(id));
            }
            if let Some(model) = &filter.model {
                q = q.filter(u::model.eq(model.clone()));
            }
            if let Some(from) = filter.from {
                q = q.filter(u::date.ge(from));
            }
            if let Some(to) = filter.to {
                q = q.filter(u::date.le(to));
            }
            Ok(q.order((u::date, u::provider_id, u::model)).load(conn)?)
        })
    }

    /// The stored health-check configuration, if one was ever written.
    pub fn health_config(&self) -> Result<Option<HealthConfigRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(health_check_configs::table
                .find(1)
                .select(HealthConfigRow::as_select())
                .first(conn)
                .optional()?)
        })
    }

    /// Writes the health-check configuration row.
    pub fn save_health_config(&self, row: &HealthConfigRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            conn.write_tx(|conn| {
                diesel::insert_into(health_check_configs::table)
                    .values(row)
                    .on_conflict(health_check_configs::id)
                    .do_update()
                    .set(row)
                    .execute(conn)?;
                bump_version!(conn);
                Ok(())
            })
        })
    }

    /// Inserts the health-check configuration only when none is stored (seeding at start).
    pub fn seed_health_config(&self, row: &HealthConfigRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(health_check_configs::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(conn)?;
            Ok(())
        })
    }

    /// The configuration change marker.
    pub fn config_version(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(config_version::table
                .find(1)
                .select(config_version::version)
                .first(conn)?)
        })
    }

    /// A cheap round trip, for readiness.
    pub fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
    }
}

/// `stored + increment` for a column of `provider_usage_stats` in an upsert, saturating at
/// `i64::MAX`. Portable SQL (a `CASE`): PostgreSQL raises an error on bigint overflow and
/// SQLite silently turns the value into a float. Increments are never negative (the
/// aggregate adds clamped counts), so `MAX - increment` cannot overflow.
fn saturating_sum(column: &str) -> diesel::expression::SqlLiteral<diesel::sql_types::BigInt> {
    diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "CASE WHEN provider_usage_stats.{column} > {max} - excluded.{column} THEN {max} \
         ELSE provider_usage_stats.{column} + excluded.{column} END",
        max = i64::MAX
    ))
}
