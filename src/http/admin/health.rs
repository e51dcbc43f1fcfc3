//! Health views, the load view, forced checks and the health-check configuration.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;

use super::providers::{all_states, find, state_of, view};
use super::usage::{Figures, figures, rows_with_pending};
use super::{Admin, json_body};
use crate::error::ApiError;
use crate::health_checker::{GetHealthConfig, HealthConfigUpdate, SetHealthConfig};
use crate::http::AppState;
use crate::provider::load::load_score;
use crate::provider::{Probe, ProbeReason, ProviderState};
use crate::store::UsageFilter;

/// Usage figures over the last 24 hours, per provider. Usage is kept per UTC day, so the
/// window is the daily rows that overlap it: yesterday's and today's.
async fn last_day(
    state: &AppState,
    provider_id: Option<i64>,
) -> Result<std::collections::BTreeMap<i64, Figures>, ApiError> {
    let from = (Utc::now() - chrono::Duration::hours(24)).date_naive();
    let rows = rows_with_pending(
        state,
        UsageFilter {
            provider_id,
            from: Some(from),
            ..Default::default()
        },
    )
    .await?;
    Ok(figures(&rows))
}

fn health_view(s: &ProviderState, f: Option<&Figures>) -> serde_json::Value {
    let mut v = serde_json::to_value(&s.health).unwrap_or_default();
    v["provider_id"] = s.config.id.into();
    v["provider_name"] = s.config.name.clone().into();
    v["enabled"] = s.config.enabled.into();
    // The fleet's word on it: generation, cause, when and by which instance it changed.
    v["standing"] = serde_json::to_value(&s.standing).unwrap_or_default();
    let f = f.cloned().unwrap_or(Figures {
        provider_id: s.config.id,
        ..Default::default()
    });
    v["last_24h"] = serde_json::to_value(f).unwrap_or_default();
    v
}

/// `GET /api/providers/health`
pub async fn all(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let states = all_states(&state).await?;
    let figures = last_day(&state, None).await?;
    let data: Vec<_> = states
        .iter()
        .map(|s| health_view(s, figures.get(&s.config.id)))
        .collect();
    // The backoff and failure-rate settings every provider's figures above are judged by.
    let recovery = state.config.health_check.recovery();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data, "recovery": recovery })))
}

/// `GET /api/providers/health/{id}`
pub async fn one(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let s = state_of(&find(&state, id).await?).await?;
    let figures = last_day(&state, Some(id)).await?;
    Ok(HttpResponse::Ok().json(health_view(&s, figures.get(&id))))
}

/// `GET /api/providers/load`: busiest first. See `provider::load::load_score` for the formula.
pub async fn load(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut rows: Vec<(f64, serde_json::Value)> = all_states(&state)
        .await?
        .iter()
        .map(|s| {
            let load = load_score(s.inflight, s.requests_per_minute, s.average_response_time_ms);
            let health = if !s.config.enabled {
                "disabled"
            } else if s.health.is_healthy {
                "healthy"
            } else {
                "unhealthy"
            };
            let v = serde_json::json!({
                "provider_id": s.config.id,
                "provider_name": s.config.name,
                "load": load,
                "health": health,
                "in_flight": s.inflight,
                "requests_per_minute": s.requests_per_minute,
                "average_response_time_ms": s.average_response_time_ms,
                // This instance's limits and how close the provider is to them.
                "limits": state.routes.limit_state(s.config.id),
            });
            (load, v)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let data: Vec<_> = rows.into_iter().map(|(_, v)| v).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data, "queue": state.routes.queue_view() })))
}

/// `POST /api/health-check/force/{id}`: probes now, on this instance, and answers the outcome.
pub async fn force(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = find(&state, path.into_inner()).await?;
    let limit = Duration::from_millis(state.config.health_check.probe_timeout_ms) + Duration::from_secs(5);
    let result = tokio::time::timeout(limit, entry.actor.send(Probe(ProbeReason::Forced)))
        .await
        .map_err(|_| ApiError::Unavailable("the probe did not finish in time".into()))??;
    let s = state_of(&entry).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "provider_id": s.config.id,
        "provider_name": s.config.name,
        "ok": result.ok,
        "status": result.status,
        "latency_ms": result.latency_ms,
        "error": result.error,
        "provider": view(&s),
    })))
}

/// `GET /api/health-check/config`
pub async fn get_config(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let c = state.health_checker.send(GetHealthConfig).await?;
    Ok(HttpResponse::Ok().json(c.to_json()))
}

/// `PUT /api/health-check/config`: any subset of the fields; applied at once, no restart.
pub async fn put_config(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let update: HealthConfigUpdate = json_body(&req, payload).await?;
    let current = state.health_checker.send(GetHealthConfig).await?;
    let next = update.apply(current)?;
    let stored = state.health_checker.send(SetHealthConfig(next)).await??;
    log::info!("health-check configuration changed: {stored:?}");
    Ok(HttpResponse::Ok().json(stored.to_json()))
}
