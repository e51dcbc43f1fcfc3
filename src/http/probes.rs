//! `/healthz` (the process answers) and `/readyz` (it can reach its database). Both are open,
//! for load balancers and orchestrators.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use super::AppState;
use crate::store;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ping = store::run(&state.store, |db| db.ping());
    match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "database": "ok" })),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "not_ready", "database": e.to_string() })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "not_ready", "database": "timed out" })),
    }
}
