//! `POST /v1/chat/completions` on OpenAI-compatible providers: the body is parsed for what
//! routing needs, then `routing::run` drives the attempts through `ChatExchange`, which sends
//! the body (with `model` and `stream_options` spliced in place) and reads the answer: a
//! whole JSON answer, the upstream's refusal of the client's request, or a stream committed
//! once its first bytes arrive (later failures end it with an SSE error event). A provider
//! that speaks Anthropic Messages gets the request translated (see `forward`).

use std::time::{Duration, Instant};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use super::client_routes::translation_for;
use super::forward::{
    self, Answer, ClientApi, ForwardExchange, PendingStream, first_chunk, is_event_stream, judge_error,
    not_a_stream, read_answer,
};
use super::router_headers::excluded_ids;
use super::{AppState, auth, read_body};
use crate::config::RoutingConfig;
use crate::error::ApiError;
use crate::provider::kind::{Endpoint, Service};
use crate::routing::{self, AttemptReport, Attempted, Exchange, RouteRequest, Serves};
use crate::supervisor::Route;
use crate::upstream::body::{self, BodyError, ChatHead};
use crate::upstream::classify;
use crate::upstream::clients::UpstreamClients;
use crate::upstream::send_chat;
use crate::upstream::sse::{ChunkTransform, StreamFormat, UsageFilter};
use crate::upstream::usage;

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    auth::check_client(&req, &state)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let head = body::parse(&body).map_err(body_error)?;
    let exclude = excluded_ids(&req)?;
    let translated = translation_for(&state, ClientApi::Chat, &head.model, &body)?;
    let serves = Serves {
        endpoint: Endpoint::Chat,
        translated: translated.is_some(),
    };
    let mut exchange = ChatExchange {
        clients: &clients,
        original: &body,
        head: &head,
        routing: &state.config.routing,
        translated: ForwardExchange::for_request(
            ClientApi::Chat,
            &req,
            &head,
            &body,
            translated,
            &state,
            &clients,
        ),
    };
    let request = RouteRequest {
        model: &head.model,
        exclude,
        started,
        serves: Some(serves),
        prefer: None,
    };
    let served = routing::run(&state, request, &mut exchange).await?;
    Ok(served.respond(started))
}

type ChatAnswer = Answer;
type ChatStream = PendingStream;

/// `POST /chat/completions` on OpenAI-compatible providers.
struct ChatExchange<'a> {
    clients: &'a UpstreamClients,
    original: &'a Bytes,
    head: &'a ChatHead,
    routing: &'a RoutingConfig,
    /// For Anthropic-kind providers.
    translated: ForwardExchange<'a>,
}

impl Exchange for ChatExchange<'_> {
    type Answer = ChatAnswer;
    type Stream = ChatStream;

    async fn attempt(&mut self, route: &Route, timeout: Duration) -> Attempted<ChatAnswer, ChatStream> {
        if route.provider.serves(Endpoint::Chat) == Some(Service::Translated) {
            return self.translated.attempt(route, timeout).await;
        }
        let client = self.clients.get(&route.provider);
        attempt(&client, route, self.original, self.head, timeout, self.routing).await
    }

    fn commit(&mut self, s: ChatStream, report: AttemptReport) -> ChatAnswer {
        s.commit(report)
    }
}

/// Calls one provider once.
async fn attempt(
    client: &awc::Client,
    route: &Route,
    original: &Bytes,
    head: &ChatHead,
    timeout: Duration,
    routing: &RoutingConfig,
) -> Attempted<ChatAnswer, ChatStream> {
    let started = Instant::now();
    let provider = &route.provider;
    let whole = Answer::whole;
    let mut ask_usage = !route.load.refuses_stream_options();
    let mut resp = loop {
        let body = body::for_upstream(original, head, route.upstream_model.as_deref(), ask_usage);
        let remaining = timeout.saturating_sub(started.elapsed());
        let resp = match send_chat(client, provider, body, head.stream, remaining).await {
            Ok(r) => r,
            Err(e) => return Attempted::Failed(classify::send_error(&e)),
        };
        let status = resp.status().as_u16();
        // The router added `stream_options` and the provider refused it: send again at once
        // without it, and never add it for this provider again. The client sees a normal
        // stream, whose tokens are not recorded.
        let router_added = ask_usage && head.stream && head.include_usage.is_none();
        if router_added && matches!(status, 400 | 422) {
            let content_type = resp.headers().get(CONTENT_TYPE).cloned();
            let wait = timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            let mut resp = resp.timeout(wait);
            let error = resp
                .body()
                .limit(forward::MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            if body::refuses_stream_options(status, &error) {
                ask_usage = false;
                if route.load.mark_refuses_stream_options() {
                    log::warn!(
                        "provider {} refuses stream_options: its streams go without it and record no tokens",
                        provider.name
                    );
                }
                continue;
            }
            return Attempted::ClientError(whole(status, content_type, error));
        }
        break resp;
    };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let status = resp.status().as_u16();
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    if !resp.status().is_success() {
        return match judge_error(resp, remaining, routing).await {
            Ok((status, content_type, body)) => Attempted::ClientError(whole(status, content_type, body)),
            Err(e) => Attempted::Failed(e),
        };
    }
    if !head.stream {
        return match read_answer(resp, remaining, routing).await {
            Ok(body) => Attempted::Answered {
                usage: usage::from_json(&body),
                answer: whole(status, content_type, body),
            },
            Err(e) => Attempted::Failed(e),
        };
    }
    // An upstream that ignored `stream: true` (plain JSON) must not be committed: the client
    // asked for events and would get a JSON body with an SSE error glued to it.
    if !is_event_stream(content_type.as_ref()) {
        return Attempted::Failed(not_a_stream(content_type.as_ref()));
    }
    // A stream: wait for its first bytes before committing; until then, failing over is safe.
    match first_chunk(&mut resp, timeout.saturating_sub(started.elapsed())).await {
        Ok(first) => Attempted::Streaming(ChatStream {
            status,
            content_type,
            first,
            rest: resp,
            idle: Duration::from_millis(provider.timeout_ms),
            upstream: StreamFormat::OpenAi,
            // The router asked for usage on the client's behalf: the client gets the stream
            // it asked for, without the usage chunk.
            transform: (head.include_usage != Some(true)).then(|| {
                (
                    StreamFormat::OpenAi,
                    Box::new(UsageFilter::default()) as Box<dyn ChunkTransform>,
                )
            }),
        }),
        Err(e) => Attempted::Failed(e),
    }
}

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
