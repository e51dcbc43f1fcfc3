//! `/healthz` (the process answers), `/readyz` (it can reach its database) and `/metrics`
//! (Prometheus). All three are open, for load balancers, orchestrators and scrapers: they
//! reveal no keys and no internal detail, only provider names and counts. With
//! `admin_listen`, `/metrics` is served on the admin address only.

use std::time::Duration;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, auth};
use crate::error::ApiError;
use crate::store;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 `ready` or 503 `not_ready`, nothing more: a database error names its
/// host and user. With the admin token, the answer also carries the detail: `database`, and
/// `providers_not_loaded` (the stored providers this instance skipped, with the reason; they
/// do not make it unready, the others serve). A wrong token is a failed admin authentication
/// like any other.
pub async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let detail = req.headers().contains_key(AUTHORIZATION);
    if detail {
        auth::check_admin_slow(&req, &state).await?;
    }
    let ping = store::run(&state.store, |db| db.ping());
    let (ready, database) = match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(())) => (true, "ok".to_string()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "timed out".to_string()),
    };
    let mut body = serde_json::json!({ "status": if ready { "ready" } else { "not_ready" } });
    if detail {
        body["database"] = database.into();
        body["providers_not_loaded"] = serde_json::to_value(state.not_loaded.list()).unwrap_or_default();
    }
    Ok(if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
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
        .body(state.metrics.render(&labels) + &state.routes.queue_view().render_metrics())
}
