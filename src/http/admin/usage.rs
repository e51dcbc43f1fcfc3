//! `GET /api/stats/usage`: daily usage rows, with what the `StatsActor` holds unflushed added
//! in, plus a per-provider summary over the same window.
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
use crate::stats::Pending;
use crate::store::{self, UsageFilter, UsageIncrement, UsageRow};

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
    /// Sum of response times, to compute the average.
    #[serde(skip)]
    pub response_time_ms: i64,
}

impl Figures {
    fn add(&mut self, r: &UsageRow) {
        self.total_requests += r.total_requests;
        self.success_requests += r.success_requests;
        self.failed_requests += r.failed_requests;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.total_tokens += r.total_tokens;
        self.response_time_ms += r.total_response_time_ms;
        self.finish();
    }

    fn finish(&mut self) {
        let n = self.total_requests.max(1) as f64;
        self.success_rate = if self.total_requests == 0 {
            0.0
        } else {
            self.success_requests as f64 / n
        };
        self.average_response_time_ms = if self.total_requests == 0 {
            0.0
        } else {
            self.response_time_ms as f64 / n
        };
    }
}

/// Stored rows matching `filter`, with unflushed usage merged in.
pub async fn rows_with_pending(state: &AppState, filter: UsageFilter) -> Result<Vec<UsageRow>, ApiError> {
    let f = filter.clone();
    let stored = store::run(&state.store, move |db| db.usage(&f)).await?;
    let pending = state.stats.send(Pending).await?;
    let mut by_key: BTreeMap<(NaiveDate, i64, String), UsageRow> = stored
        .into_iter()
        .map(|r| ((r.date, r.provider_id, r.model.clone()), r))
        .collect();
    for p in pending.into_iter().filter(|p| matches(&filter, p)) {
        let row = by_key
            .entry((p.date, p.provider_id, p.model.clone()))
            .or_insert_with(|| UsageRow {
                provider_id: p.provider_id,
                model: p.model.clone(),
                date: p.date,
                total_requests: 0,
                success_requests: 0,
                failed_requests: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
                total_response_time_ms: 0,
                avg_response_time_ms: 0.0,
                last_used_at: p.last_used_at,
            });
        row.total_requests += p.total_requests;
        row.success_requests += p.success_requests;
        row.failed_requests += p.failed_requests;
        row.prompt_tokens += p.prompt_tokens;
        row.completion_tokens += p.completion_tokens;
        row.total_tokens += p.total_tokens;
        row.total_response_time_ms += p.total_response_time_ms;
        row.avg_response_time_ms = row.total_response_time_ms as f64 / row.total_requests.max(1) as f64;
        row.last_used_at = row.last_used_at.max(p.last_used_at);
    }
    Ok(by_key.into_values().collect())
}

fn matches(f: &UsageFilter, p: &UsageIncrement) -> bool {
    f.provider_id.is_none_or(|id| id == p.provider_id)
        && f.model.as_ref().is_none_or(|m| *m == p.model)
        && f.from.is_none_or(|d| p.date >= d)
        && f.to.is_none_or(|d| p.date <= d)
}

/// Per-provider totals of `rows`.
pub fn figures(rows: &[UsageRow]) -> BTreeMap<i64, Figures> {
    let mut out: BTreeMap<i64, Figures> = BTreeMap::new();
    for r in rows {
        out.entry(r.provider_id)
            .or_insert_with(|| Figures {
                provider_id: r.provider_id,
                ..Default::default()
            })
            .add(r);
    }
    out
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
            v["success_rate"] = (r.success_requests as f64 / r.total_requests.max(1) as f64).into();
            v
        })
        .collect();
    let mut summary: Vec<Figures> = figures(&rows).into_values().collect();
    summary.sort_by_key(|f| (f.total_requests, f.provider_id));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data, "summary": summary })))
}
