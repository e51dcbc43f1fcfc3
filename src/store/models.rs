//! Row structs for the tables in `schema.rs`: what is read (`…Row`) and what is written
//! (`New…`). Timestamps are UTC `NaiveDateTime`s; conversion to `DateTime<Utc>` happens at
//! the edge, in the code that uses them.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::{
    health_check_configs, provider_standing, provider_usage_stats, provider_validations, providers,
};

/// One row of `providers`. `Debug` redacts the key (`crate::secret`).
#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = providers)]
pub struct ProviderRow {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    pub api_key: String,
    pub api_key_env: Option<String>,
    /// JSON array of model entries (a name, or `{name, upstream}`).
    pub models: String,
    pub weight: i32,
    pub priority: i32,
    pub timeout_ms: i64,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub probe_model: Option<String>,
    pub http2: bool,
    /// `openai` or `anthropic` (`ProviderKind`).
    pub kind: String,
    /// JSON array of endpoint names, or NULL for every endpoint of the kind.
    pub endpoints: Option<String>,
    pub max_concurrency: Option<i32>,
    pub rpm: Option<i32>,
    pub tpm: Option<i64>,
}

/// The writable columns of `providers`, for inserts and full updates. `Debug` redacts the key.
#[derive(Insertable, AsChangeset, Clone)]
#[diesel(table_name = providers, treat_none_as_null = true)]
pub struct NewProvider {
    pub name: String,
    pub base_url: String,
    pub api_key: String,
    pub api_key_env: Option<String>,
    pub models: String,
    pub weight: i32,
    pub priority: i32,
    pub timeout_ms: i64,
    pub enabled: bool,
    pub updated_at: NaiveDateTime,
    pub probe_model: Option<String>,
    pub http2: bool,
    /// `openai` or `anthropic` (`ProviderKind`).
    pub kind: String,
    /// JSON array of endpoint names, or NULL for every endpoint of the kind.
    pub endpoints: Option<String>,
    pub max_concurrency: Option<i32>,
    pub rpm: Option<i32>,
    pub tpm: Option<i64>,
}

/// One row of `provider_validations`: a provider's persisted health.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq)]
#[diesel(table_name = provider_validations, treat_none_as_null = true)]
pub struct ValidationRow {
    pub provider_id: i64,
    pub is_healthy: bool,
    pub error_count: i32,
    pub last_error: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_validated_at: Option<NaiveDateTime>,
    pub last_success_at: Option<NaiveDateTime>,
    pub next_retry_at: Option<NaiveDateTime>,
    pub consecutive_successes: i32,
    pub updated_at: NaiveDateTime,
}

/// One row of `provider_usage_stats`. The same shape is an increment: the `StatsActor` adds
/// increments up with [`UsageRow::absorb`] and writes them as additive upserts.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, serde::Serialize)]
#[diesel(table_name = provider_usage_stats)]
pub struct UsageRow {
    pub provider_id: i64,
    pub model: String,
    pub date: NaiveDate,
    pub total_requests: i64,
    pub success_requests: i64,
    pub failed_requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub total_response_time_ms: i64,
    pub avg_response_time_ms: f64,
    pub last_used_at: NaiveDateTime,
}

impl UsageRow {
    /// An empty row for a (provider, model, day).
    pub fn zero(provider_id: i64, model: String, date: NaiveDate, last_used_at: NaiveDateTime) -> Self {
        UsageRow {
            provider_id,
            model,
            date,
            total_requests: 0,
            success_requests: 0,
            failed_requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            total_response_time_ms: 0,
            avg_response_time_ms: 0.0,
            last_used_at,
        }
    }

    /// Adds `other`'s counts to this row (the same key is assumed) and recomputes the average.
    pub fn absorb(&mut self, other: &UsageRow) {
        self.total_requests = self.total_requests.saturating_add(other.total_requests);
        self.success_requests = self.success_requests.saturating_add(other.success_requests);
        self.failed_requests = self.failed_requests.saturating_add(other.failed_requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.total_response_time_ms = self
            .total_response_time_ms
            .saturating_add(other.total_response_time_ms);
        self.avg_response_time_ms = if self.total_requests == 0 {
            0.0
        } else {
            self.total_response_time_ms as f64 / self.total_requests as f64
        };
        self.last_used_at = self.last_used_at.max(other.last_used_at);
    }
}

/// The single `health_check_configs` row.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq)]
#[diesel(table_name = health_check_configs)]
pub struct HealthConfigRow {
    pub id: i32,
    pub enabled: bool,
    pub interval_seconds: i64,
    pub max_error_count: i32,
    pub retry_after_seconds: i64,
    pub auto_recovery: bool,
    pub updated_at: NaiveDateTime,
}

/// One row of `provider_standing`: a provider's standing in the fleet (see
/// `provider::standing`). `generation` only grows; each write names the one it was based on.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq)]
#[diesel(table_name = provider_standing, treat_none_as_null = true)]
pub struct StandingRow {
    pub provider_id: i64,
    pub is_healthy: bool,
    pub next_retry_at: Option<NaiveDateTime>,
    pub generation: i64,
    pub cause: String,
    pub changed_at: NaiveDateTime,
    pub changed_by: String,
}
