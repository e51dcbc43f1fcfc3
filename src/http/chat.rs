//! `POST /v1/chat/completions`: OpenAI's chat completion, plain or streamed. Routed like every
//! client route (`client_routes::serve` over `routing::run` with a `ForwardExchange`): to an
//! OpenAI-kind provider the body goes as sent (with `model` and `stream_options` spliced in
//! place), to an Anthropic-kind one translated; the answer comes back whole, as the
//! upstream's refusal of the client's request, or as a stream committed once its first bytes
//! arrive (later failures end it with an SSE error event).

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::client_routes::serve;
use super::forward::ClientApi;
use crate::error::ApiError;
use crate::upstream::body::BodyError;
use crate::upstream::clients::UpstreamClients;

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, ApiError> {
    serve(ClientApi::Chat, &req, payload, &state, &clients).await
}

/// A body refused by `upstream::body::parse`, as the client's error.
pub fn body_error(e: BodyError) -> ApiError {
    let message = e.to_string();
    match e {
        BodyError::InvalidJson(_) => ApiError::BadRequest {
            message,
            code: "invalid_json",
        },
        BodyError::NotAnObject => ApiError::BadRequest {
            message,
            code: "invalid_request",
        },
        BodyError::MissingModel => ApiError::InvalidParam {
            param: "model",
            message,
            code: "missing_model",
        },
        BodyError::InvalidField { field, .. } => ApiError::InvalidParam {
            param: field,
            message,
            code: "invalid_field",
        },
    }
}
