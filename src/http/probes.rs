//! `/healthz` (the process answers), `/readyz` (it can reach its database) and `/metrics`
//! (Prometheus). All three are open, for load balancers, orchestrators and scrapers: they
//! reveal no keys, only provider names and counts.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use super::AppState;
use crate::store;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers. `providers_not_loaded` lists the stored providers this
/// instance skipped (with the reason): they do not make it unready, the others serve.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ping = store::run(&state.store, |db| db.ping());
    let not_loaded = state.not_loaded.list();
    match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({
            "status": "ready", "database": "ok", "providers_not_loaded": not_loaded,
        })),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "not_ready", "database": e.to_string(), "providers_not_loaded": not_loaded,
        })),
        Err(_) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "not_ready", "database": "timed out", "providers_not_loaded": not_loaded,
        })),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let providers = state
        .supervisor
        .send(crate::supervisor::ListProviders)
        .await
        .unwrap_or_default();
    let labels: Vec<crate::metrics::ProviderLabel> = providers
        .iter()
        .map(|p| crate::metrics::ProviderLabel {
            id: p.config.id,
            name: p.config.name.clone(),
            healthy: p.view.is_healthy,
        })
        .collect();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&labels))
}
