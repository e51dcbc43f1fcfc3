//! The client routes beside chat: `POST /v1/messages` (Anthropic Messages),
//! `/v1/messages/count_tokens`, `/v1/embeddings`, `/v1/responses` and `/v1/completions`, and
//! [`serve`], which chat shares. Each parses what routing needs, translates the body once
//! when a provider of the other chat format may serve it, and routes through `routing::run`
//! with a [`ForwardExchange`]; errors come in the route's own shape.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use super::chat::body_error;
use super::forward::{ClientApi, ForwardExchange};
use super::router_headers::excluded_ids;
use super::{AppState, auth, read_body};
use crate::error::{AnthropicError, ApiError};
use crate::routing::{self, RouteRequest, Serves};
use crate::translate::{TranslateError, chat_via_anthropic, messages_via_openai};
use crate::upstream::body;
use crate::upstream::clients::UpstreamClients;

/// `POST /v1/messages`: Anthropic's format, errors in Anthropic's shape.
pub async fn messages(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, AnthropicError> {
    Ok(serve(ClientApi::Messages, &req, payload, &state, &clients).await?)
}

/// `POST /v1/messages/count_tokens`: Anthropic's token count, from Anthropic-kind providers
/// only (OpenAI's API has no counterpart to translate to); errors in Anthropic's shape.
pub async fn count_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, AnthropicError> {
    Ok(serve(ClientApi::CountTokens, &req, payload, &state, &clients).await?)
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, ApiError> {
    serve(ClientApi::Embeddings, &req, payload, &state, &clients).await
}

/// `POST /v1/responses`.
pub async fn responses(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, ApiError> {
    serve(ClientApi::Responses, &req, payload, &state, &clients).await
}

/// `POST /v1/completions`.
pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, ApiError> {
    serve(ClientApi::Completions, &req, payload, &state, &clients).await
}

/// The body in the other chat format, for a provider that speaks it.
pub fn translate_request(api: ClientApi, body: &[u8]) -> Result<Bytes, TranslateError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| TranslateError::invalid("body", e.to_string()))?;
    let out = match api {
        ClientApi::Chat => chat_via_anthropic::request(&v)?,
        ClientApi::Messages => messages_via_openai::request(&v)?,
        _ => {
            return Err(TranslateError::untranslatable(
                "body",
                "this endpoint is not translated",
            ));
        }
    };
    Ok(Bytes::from(out.to_string()))
}

/// Translates once when some provider of the model needs it. `Ok(None)` when none does or
/// the body does not translate but a native provider remains; the refusal when only
/// translating providers serve the model.
pub fn translation_for(
    state: &AppState,
    api: ClientApi,
    model: &str,
    body: &[u8],
) -> Result<Option<Bytes>, TranslateError> {
    let (native, translating) = state.routes.services(model, api.endpoint());
    if !translating {
        return Ok(None);
    }
    match translate_request(api, body) {
        Ok(b) => Ok(Some(b)),
        Err(_) if native => Ok(None),
        Err(e) => Err(e),
    }
}

/// Serves one request on `api` (chat too): parse, translate if needed, route, answer.
pub async fn serve(
    api: ClientApi,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    clients: &UpstreamClients,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    auth::check_client(req, state)?;
    let body = read_body(req, payload, state.config.max_body_bytes).await?;
    let head = body::parse(&body).map_err(body_error)?;
    let exclude = excluded_ids(req)?;
    let translated = translation_for(state, api, &head.model, &body)?;
    let prefer = match api {
        ClientApi::Responses => {
            super::responses::previous_response_id(&body).and_then(|id| state.responses.owner(&id))
        }
        _ => None,
    };
    let serves = Serves {
        endpoint: api.endpoint(),
        translated: translated.is_some(),
    };
    let mut exchange = ForwardExchange::for_request(api, req, &head, &body, translated, state, clients);
    let request = RouteRequest {
        model: &head.model,
        exclude,
        started,
        serves: Some(serves),
        prefer,
    };
    let served = routing::run(state, request, &mut exchange).await?;
    Ok(served.respond(started))
}
