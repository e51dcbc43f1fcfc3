//! Row structs for the tables in `schema.rs`: what is read (`…Row`) and what is written
//! (`New…`). Timestamps are UTC `NaiveDateTime`s; conversion to `DateTime<Utc>` happens at
//! the edge, in the code that uses them.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::{health_check_configs, provider_usage_stats, provider_validations, providers};

/// One row of `providers`.
#[derive(Queryable, Selectable, Debug, Clone)]
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
}

/// The writable columns of `providers`, for inserts and full updates.
#[derive(Insertable, AsChangeset, Debug, Clone)]
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

/// One row of `provider_usage_stats`.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, serde::Serialize)]
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

/// The additive increment for one (provider, model, day), written by an upsert.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = provider_usage_stats)]
pub struct UsageIncrement {
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
