//! `GET /v1/models`: the union of enabled providers' models, in OpenAI's list format.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, auth};
use crate::error::ApiError;
use crate::supervisor::ListModels;

pub async fn list_models(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::check_client(&req, &state)?;
    let models = state.supervisor.send(ListModels).await?;
    let data: Vec<_> = models
        .into_iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" }))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "object": "list", "data": data })))
}
