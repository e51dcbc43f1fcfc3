//! `/api/routing/explain`: how the next request for a model would be routed (see
//! `supervisor::explain`). Read-only: explaining moves no round-robin, takes no slot and
//! counts nothing.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::Admin;
use crate::error::ApiError;
use crate::http::AppState;

/// Longest model name accepted (as for provider model lists).
const MAX_MODEL_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    pub model: Option<String>,
}

/// `GET /api/routing/explain?model=X`
pub async fn explain(
    _: Admin,
    query: web::Query<ExplainQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let model = query.model.as_deref().map(str::trim).unwrap_or("");
    if model.is_empty() || model.len() > MAX_MODEL_LEN {
        return Err(ApiError::InvalidParam {
            param: "model",
            message: format!("give the model to explain: ?model=NAME (1 to {MAX_MODEL_LEN} characters)"),
            code: "invalid_request",
        });
    }
    let max_attempts = state.config.routing.max_retries.saturating_add(1);
    match state.routes.explain(model, max_attempts) {
        Some(e) => Ok(HttpResponse::Ok().json(e)),
        None => Err(ApiError::UnknownModel(model.to_string())),
    }
}
