//! `GET /v1/models`: the union of enabled providers' models, in OpenAI's list format, or in
//! Anthropic's (`{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
//! "first_id", "last_id"}`) when the request carries `anthropic-version`, as Anthropic's
//! clients send it.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::{AppState, auth};
use crate::error::{AnthropicError, ApiError};
use crate::supervisor::ListModels;

pub async fn list_models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let anthropic = req.headers().contains_key(crate::upstream::ANTHROPIC_VERSION);
    match models(&req, &state).await {
        Ok(models) if anthropic => HttpResponse::Ok().json(anthropic_list(models)),
        Ok(models) => HttpResponse::Ok().json(openai_list(models)),
        Err(e) if anthropic => AnthropicError(e).error_response(),
        Err(e) => e.error_response(),
    }
}

async fn models(req: &HttpRequest, state: &AppState) -> Result<Vec<String>, ApiError> {
    auth::check_client(req, state)?;
    Ok(state.supervisor.send(ListModels).await?)
}

fn openai_list(models: Vec<String>) -> serde_json::Value {
    let data: Vec<_> = models
        .into_iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" }))
        .collect();
    serde_json::json!({ "object": "list", "data": data })
}

/// Anthropic's list; the router knows no creation dates, so `created_at` is the epoch.
fn anthropic_list(models: Vec<String>) -> serde_json::Value {
    let first = models.first().cloned();
    let last = models.last().cloned();
    let data: Vec<_> = models
        .into_iter()
        .map(|id| {
            serde_json::json!({ "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z" })
        })
        .collect();
    serde_json::json!({ "data": data, "has_more": false, "first_id": first, "last_id": last })
}
