//! `GET /api/stats/usage`: daily usage rows, with what the `StatsActor` holds unflushed added
//! in (exactly: see `stats::ReadUsage`), plus a per-provider summary over the same window.
//!
//! Derived figures: `success_rate = success_requests / total_requests` (client errors and
//! client cancellations count in `total_requests` only), and the least-used provider of the
//! window is the first entry of `summary`, which is sorted by `total_requests` ascending.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Admin;
use crate::error::ApiError;
use crate::http::AppState;
use crate::stats::ReadUsage;
use crate::store::{UsageFilter, UsageRow};

/// Query of `GET /api/stats/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    provider_id: Option<i64>,
    model: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC), inclusive.
    from: Option<String>,
    /// Last day, inclusive.
    to: Option<String>,
}

fn date(field: &str, v: &Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    v.as_deref()
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request(format!("{field}: {s:?} is not a date (YYYY-MM-DD)")))
        })
        .transpose()
}

/// Totals over a window, per provider.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    pub provider_id: i64,
    pub total_requests: i64,
    pub success_requests: i64,
    pub failed_requests: i64,
    pub success_rate: f64,
    pub average_response_time_ms: f64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

impl Figures {
    /// The figures of a row that holds a provider's totals.
    fn of(total: &UsageRow) -> Self {
        Figures {
            provider_id: total.provider_id,
            total_requests: total.total_requests,
            success_requests: total.success_requests,
            failed_requests: total.failed_requests,
            success_rate: success_rate(total),
            average_response_time_ms: total.avg_response_time_ms,
            prompt_tokens: total.prompt_tokens,
            completion_tokens: total.completion_tokens,
            total_tokens: total.total_tokens,
        }
    }
}

/// `success_requests / total_requests`, 0 for no requests.
fn success_rate(r: &UsageRow) -> f64 {
    if r.total_requests == 0 {
        0.0
    } else {
        r.success_requests as f64 / r.total_requests as f64
    }
}

/// Stored rows matching `filter` with unflushed usage added, each batch counted once (the
/// `StatsActor` serialises this read with its writes).
pub async fn rows_with_pending(state: &AppState, filter: UsageFilter) -> Result<Vec<UsageRow>, ApiError> {
    Ok(state.stats.send(ReadUsage(filter)).await??)
}

/// Per-provider totals of `rows`.
pub fn figures(rows: &[UsageRow]) -> BTreeMap<i64, Figures> {
    let mut totals: BTreeMap<i64, UsageRow> = BTreeMap::new();
    for r in rows {
        totals
            .entry(r.provider_id)
            .or_insert_with(|| UsageRow::zero(r.provider_id, String::new(), r.date, r.last_used_at))
            .absorb(r);
    }
    totals
        .into_iter()
        .map(|(id, total)| (id, Figures::of(&total)))
        .collect()
}

/// `GET /api/stats/usage?provider_id=&model=&from=&to=`
pub async fn usage(
    _: Admin,
    query: web::Query<UsageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = UsageFilter {
        provider_id: query.provider_id,
        model: query.model.clone(),
        from: date("from", &query.from)?,
        to: date("to", &query.to)?,
    };
    if let (Some(f), Some(t)) = (filter.from, filter.to)
        && f > t
    {
        return Err(ApiError::bad_request("from is after to"));
    }
    let rows = rows_with_pending(&state, filter).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["success_rate"] = success_rate(r).into();
            v
        })
        .collect();
    let mut summary: Vec<Figures> = figures(&rows).into_values().collect();
    summary.sort_by_key(|f| (f.total_requests, f.provider_id));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data, "summary": summary })))
}
