//! Calling one provider for any client route and reading its answer: what every route's
//! `Exchange` shares. A route's body goes to the provider natively (the client's bytes, only
//! `model` spliced) or translated (the other chat format, see `crate::translate`), and the
//! answer, error body and stream come back in the client's format.

use std::cell::Cell;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;

use super::router_headers::status_code;
use crate::config::RoutingConfig;
use crate::provider::kind::{Endpoint, Service};
use crate::routing::failover::classify_status;
use crate::routing::{AttemptError, AttemptReport, Attempted, Exchange, Phase, Served, StatusClass};
use crate::supervisor::Route;
use crate::translate::{chat_via_anthropic, errors, messages_via_openai};
use crate::upstream::body::{self, ChatHead};
use crate::upstream::clients::UpstreamClients;
use crate::upstream::sse::{ChunkTransform, ObservedStream, StreamFormat};
use crate::upstream::usage::{self, TokenUsage};
use crate::upstream::{ClientHeaders, classify, send_to};

/// Most of an error answer read from an upstream (for the message and pass-through).
pub const MAX_ERROR_BODY: usize = 256 * 1024;

/// An answer before the router's headers are added.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub body: AnswerBody,
}

pub enum AnswerBody {
    Whole(Bytes),
    Stream(Box<ObservedStream<awc::ClientResponse>>),
}

impl Answer {
    pub fn whole(status: u16, content_type: Option<HeaderValue>, body: Bytes) -> Self {
        Answer {
            status,
            content_type,
            body: AnswerBody::Whole(body),
        }
    }

    fn json(status: u16, body: Vec<u8>) -> Self {
        Answer::whole(
            status,
            Some(HeaderValue::from_static("application/json")),
            Bytes::from(body),
        )
    }
}

/// A stream whose first bytes arrived, waiting to be committed.
pub struct PendingStream {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub first: Bytes,
    pub rest: awc::ClientResponse,
    pub idle: Duration,
    /// The upstream's event format (how it ends, where its usage is).
    pub upstream: StreamFormat,
    /// What the client receives: the events translated to `client`'s format, or the usage
    /// chunk the router asked for taken out; `None` passes the stream as it is.
    pub transform: Option<(StreamFormat, Box<dyn ChunkTransform>)>,
}

impl PendingStream {
    /// Commits the stream: it settles `report` when it ends.
    pub fn commit(self, report: AttemptReport) -> Answer {
        let mut stream =
            ObservedStream::observing(self.upstream, self.first, self.rest, self.idle, Box::new(report));
        if let Some((client, t)) = self.transform {
            stream = stream.translated(client, t);
        }
        Answer {
            status: self.status,
            content_type: self.content_type,
            body: AnswerBody::Stream(Box::new(stream)),
        }
    }
}

impl Served<Answer> {
    /// The HTTP response: the answer with the `x-switchyard-*` headers.
    pub fn respond(self, started: Instant) -> HttpResponse {
        let (answer, headers) = self.split(started);
        let Answer {
            status,
            content_type,
            body,
        } = answer;
        let mut resp = HttpResponse::build(status_code(status));
        headers.apply(&mut resp, content_type);
        match body {
            AnswerBody::Whole(bytes) => resp.body(bytes),
            AnswerBody::Stream(stream) => {
                resp.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")));
                resp.streaming(*stream)
            }
        }
    }
}

/// `text/event-stream`, with or without parameters (`; charset=utf-8`).
pub fn is_event_stream(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Waits for a stream's first bytes: until then failing over is safe. (The attempt's one
/// timer bounds the wait.)
pub async fn first_chunk(resp: &mut awc::ClientResponse) -> Result<Bytes, AttemptError> {
    loop {
        return match resp.next().await {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(first)) => Ok(first),
            Some(Err(e)) => Err(AttemptError::StreamBroke(e.to_string())),
            None => Err(AttemptError::StreamEnded { committed: false }),
        };
    }
}

/// The failure for a 2xx answer to a stream request that is not an event stream.
pub fn not_a_stream(content_type: Option<&HeaderValue>) -> AttemptError {
    let shown = content_type.and_then(|c| c.to_str().ok()).unwrap_or("none");
    AttemptError::NotAStream {
        content_type: classify::scrub(shown),
    }
}

/// An error status: the client's own fault (`Ok`, with the body, to pass on) or the
/// provider's failure.
pub async fn judge_error(
    resp: awc::ClientResponse,
    deadline: Instant,
    routing: &RoutingConfig,
) -> Result<(u16, Option<HeaderValue>, Bytes), AttemptError> {
    let status = resp.status().as_u16();
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    let retry_after = classify::retry_after(resp.headers(), Utc::now());
    let body = error_body(resp, deadline).await;
    match classify_status(status, &body) {
        StatusClass::ClientError | StatusClass::Success => Ok((status, content_type, body)),
        class => Err(AttemptError::Status {
            status,
            class,
            detail: classify::error_summary(&body),
            cooldown_ms: (class == StatusClass::RateLimited).then(|| {
                classify::cooldown_ms(retry_after, routing.default_cooldown_ms, routing.max_cooldown_ms)
            }),
        }),
    }
}

/// An error answer's body, as much of it as arrives by `deadline` (at most
/// `MAX_ERROR_BODY`): an error status is judged by what its body says, and one whose body
/// never ends is judged without it rather than timed out. The attempt's own timer fires at
/// the same instant; the timer polled first is this one, so the body's wait ends here.
async fn error_body(mut resp: awc::ClientResponse, deadline: Instant) -> Bytes {
    let read = resp.body().limit(MAX_ERROR_BODY);
    match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(Ok(body)) => body,
        _ => Bytes::new(),
    }
}

/// Reads a whole 2xx answer, within `routing.max_response_bytes`. (The attempt's one timer
/// bounds the read.)
pub async fn read_answer(
    mut resp: awc::ClientResponse,
    routing: &RoutingConfig,
) -> Result<Bytes, AttemptError> {
    match resp.body().limit(routing.max_response_bytes).await {
        Ok(body) => Ok(body),
        Err(awc::error::PayloadError::Overflow) => Err(AttemptError::TooLarge {
            limit: routing.max_response_bytes,
        }),
        Err(e) => Err(AttemptError::BodyRead(e.to_string())),
    }
}

/// The client API a request came in on: what it sends and what it must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    Chat,
    Messages,
    Embeddings,
    Responses,
    Completions,
    /// Anthropic's `messages/count_tokens`: a plain answer always, no tokens spent.
    CountTokens,
}

impl ClientApi {
    pub fn endpoint(self) -> Endpoint {
        match self {
            ClientApi::Chat => Endpoint::Chat,
            ClientApi::Messages => Endpoint::Messages,
            ClientApi::Embeddings => Endpoint::Embeddings,
            ClientApi::Responses => Endpoint::Responses,
            ClientApi::Completions => Endpoint::Completions,
            ClientApi::CountTokens => Endpoint::CountTokens,
        }
    }

    /// The format of this API's streams.
    pub fn stream_format(self) -> StreamFormat {
        match self {
            ClientApi::Messages | ClientApi::CountTokens => StreamFormat::Anthropic,
            ClientApi::Responses => StreamFormat::Responses,
            _ => StreamFormat::OpenAi,
        }
    }
}

/// Usage of a plain answer in `api`'s format.
fn usage_of(api: ClientApi, body: &[u8]) -> Option<TokenUsage> {
    match api {
        // The answer's `input_tokens` is what the request *would* cost: nothing was spent.
        ClientApi::CountTokens => None,
        ClientApi::Chat | ClientApi::Embeddings | ClientApi::Completions => usage::from_json(body),
        ClientApi::Messages => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let t = crate::translate::Tokens::from_anthropic(v.get("usage")?);
            Some(
                TokenUsage {
                    prompt_tokens: t.prompt_total(),
                    completion_tokens: t.output,
                    total_tokens: 0,
                }
                .clamped(),
            )
        }
        ClientApi::Responses => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let u = v.get("usage")?;
            let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            Some(
                TokenUsage {
                    prompt_tokens: n("input_tokens"),
                    completion_tokens: n("output_tokens"),
                    total_tokens: n("total_tokens"),
                }
                .clamped(),
            )
        }
    }
}

/// One client request on any route.
pub struct ForwardExchange<'a> {
    pub clients: &'a UpstreamClients,
    pub api: ClientApi,
    pub stream: bool,
    /// `stream_options.include_usage` as an OpenAI client sent it.
    pub include_usage: Option<bool>,
    /// The client's body.
    pub native: &'a Bytes,
    /// The body in the other chat format, when some provider needs it and it translates.
    pub translated: Option<Bytes>,
    pub headers: ClientHeaders,
    pub routing: &'a RoutingConfig,
    /// Where a Responses answer's id is remembered with its provider.
    pub owners: Option<&'a super::responses::ResponseOwners>,
}

impl<'a> ForwardExchange<'a> {
    /// The exchange of one client request on `api`: `body` as the client sent it (`head` read
    /// from it), `translated` the body in the other chat format, if any provider needs it.
    pub fn for_request(
        api: ClientApi,
        req: &actix_web::HttpRequest,
        head: &ChatHead,
        body: &'a Bytes,
        translated: Option<Bytes>,
        state: &'a super::AppState,
        clients: &'a UpstreamClients,
    ) -> Self {
        ForwardExchange {
            clients,
            api,
            // A token count is never streamed: a `stream` member is the upstream's to refuse
            // (its 400 reaches the client), not a reason to expect an event stream and count
            // the plain answer as the provider's failure.
            stream: head.stream && api != ClientApi::CountTokens,
            include_usage: head.include_usage,
            native: body,
            translated,
            headers: ClientHeaders::from_request(req.headers()),
            routing: &state.config.routing,
            owners: (api == ClientApi::Responses).then_some(&*state.responses),
        }
    }

    /// Where and what to send to `route`: (endpoint, body, the upstream's API).
    /// `ask_usage` is false once the provider is known to refuse `stream_options`.
    fn plan(&self, route: &Route, ask_usage: bool) -> (Endpoint, Bytes, ClientApi) {
        let translated = route.entry.config.serves(self.api.endpoint()) == Some(Service::Translated);
        let (api, src) = match (self.api, translated, &self.translated) {
            (ClientApi::Chat, true, Some(t)) => (ClientApi::Messages, t),
            (ClientApi::Messages, true, Some(t)) => (ClientApi::Chat, t),
            (api, _, _) => (api, self.native),
        };
        // Ask an OpenAI stream for usage, as chat does (taken out again, or translated).
        let ask_usage = self.asks_usage(api) && ask_usage;
        let head = ChatHead {
            model: String::new(),
            stream: ask_usage,
            include_usage: self.include_usage,
        };
        let body = body::for_upstream(src, &head, route.upstream_model.as_deref(), ask_usage);
        (api.endpoint(), body, api)
    }

    /// Whether the router adds `stream_options.include_usage` to a stream sent to `upstream`.
    fn asks_usage(&self, upstream: ClientApi) -> bool {
        let openai_stream = matches!(upstream, ClientApi::Completions | ClientApi::Chat);
        openai_stream && self.stream && self.include_usage != Some(true)
    }

    /// What the client's stream needs done to the upstream's.
    fn transform(&self, upstream: ClientApi) -> Option<(StreamFormat, Box<dyn ChunkTransform>)> {
        let client = self.api.stream_format();
        match (self.api, upstream) {
            (ClientApi::Chat, ClientApi::Messages) => Some((
                client,
                Box::new(chat_via_anthropic::stream::ToChatChunks::new(
                    Utc::now().timestamp(),
                    self.include_usage == Some(true),
                )),
            )),
            (ClientApi::Messages, ClientApi::Chat) => Some((
                client,
                Box::new(messages_via_openai::stream::ToAnthropicEvents::new()),
            )),
            // The router asked for usage on the client's behalf: the client gets the stream it
            // asked for, without the usage chunk.
            (ClientApi::Chat, ClientApi::Chat) | (ClientApi::Completions, _)
                if self.include_usage != Some(true) =>
            {
                Some((client, Box::new(crate::upstream::sse::UsageFilter::default())))
            }
            _ => None,
        }
    }

    /// A refusal or error body from an upstream of `upstream`'s format, in the client's.
    fn error_body(
        &self,
        upstream: ClientApi,
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Answer {
        match (self.api, upstream) {
            (ClientApi::Chat, ClientApi::Messages) => Answer::json(status, errors::to_openai(status, &body)),
            (ClientApi::Messages, ClientApi::Chat) => {
                Answer::json(status, errors::to_anthropic(status, &body))
            }
            _ => Answer::whole(status, content_type, body),
        }
    }

    /// A plain answer from `upstream`'s format in the client's, and its usage.
    fn answer(
        &self,
        upstream: ClientApi,
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Result<(Answer, Option<TokenUsage>), AttemptError> {
        let usage = usage_of(upstream, &body);
        let converted = match (self.api, upstream) {
            (ClientApi::Chat, ClientApi::Messages) => {
                chat_via_anthropic::answer::answer(&body, Utc::now().timestamp()).map(|(v, _)| v)
            }
            (ClientApi::Messages, ClientApi::Chat) => {
                messages_via_openai::answer::answer(&body).map(|(v, _)| v)
            }
            _ => return Ok((Answer::whole(status, content_type, body), usage)),
        };
        let v = converted.map_err(|e| AttemptError::BodyRead(e.to_string()))?;
        Ok((Answer::json(status, v.to_string().into_bytes()), usage))
    }

    /// One attempt's work, bounded by the timer in `attempt`; `phase` follows it.
    async fn call(
        &mut self,
        route: &Route,
        deadline: Instant,
        phase: &Cell<Phase>,
    ) -> Attempted<Answer, PendingStream> {
        let client = self.clients.get(&route.entry.config);
        let mut ask_usage = !route.entry.load.refuses_stream_options();
        let (mut resp, upstream) = loop {
            let (endpoint, body, upstream) = self.plan(route, ask_usage);
            let sent = send_to(
                &client,
                &route.entry.config,
                endpoint,
                body,
                self.stream,
                &self.headers,
            )
            .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Attempted::Failed(classify::send_error(&e)),
            };
            // The provider refused the `stream_options` the router added: again without it,
            // remembered for the provider (as chat does; its streams then record no tokens).
            let status = resp.status().as_u16();
            if ask_usage && self.asks_usage(upstream) && matches!(status, 400 | 422) {
                let content_type = resp.headers().get(CONTENT_TYPE).cloned();
                let error = error_body(resp, deadline).await;
                if body::refuses_stream_options(status, &error) {
                    ask_usage = false;
                    if route.entry.load.mark_refuses_stream_options() {
                        log::warn!(
                            "provider {} refuses stream_options: its streams go without it and record no tokens",
                            route.entry.config.name
                        );
                    }
                    continue;
                }
                return Attempted::ClientError(self.error_body(upstream, status, content_type, error));
            }
            break (resp, upstream);
        };
        let status = resp.status().as_u16();
        let content_type = resp.headers().get(CONTENT_TYPE).cloned();
        if !resp.status().is_success() {
            return match judge_error(resp, deadline, self.routing).await {
                Ok((status, content_type, body)) => {
                    Attempted::ClientError(self.error_body(upstream, status, content_type, body))
                }
                Err(e) => Attempted::Failed(e),
            };
        }
        if !self.stream {
            phase.set(Phase::Body);
            let body = match read_answer(resp, self.routing).await {
                Ok(b) => b,
                Err(e) => return Attempted::Failed(e),
            };
            if let (ClientApi::Responses, Some(owners)) = (self.api, self.owners) {
                owners.remember_answer(&body, route.entry.config.id);
            }
            return match self.answer(upstream, status, content_type, body) {
                Ok((answer, usage)) => Attempted::Answered { answer, usage },
                Err(e) => Attempted::Failed(e),
            };
        }
        if !is_event_stream(content_type.as_ref()) {
            return Attempted::Failed(not_a_stream(content_type.as_ref()));
        }
        phase.set(Phase::FirstChunk);
        let first = match first_chunk(&mut resp).await {
            Ok(f) => f,
            Err(e) => return Attempted::Failed(e),
        };
        if let (ClientApi::Responses, Some(owners)) = (self.api, self.owners) {
            owners.remember_stream_start(&first, route.entry.config.id);
        }
        let transform = self.transform(upstream);
        let content_type = if transform.is_some() {
            Some(HeaderValue::from_static("text/event-stream"))
        } else {
            content_type
        };
        Attempted::Streaming(PendingStream {
            status,
            content_type,
            first,
            rest: resp,
            idle: Duration::from_millis(route.entry.config.timeout_ms),
            upstream: upstream.stream_format(),
            transform,
        })
    }
}

impl Exchange for ForwardExchange<'_> {
    type Answer = Answer;
    type Stream = PendingStream;

    async fn attempt(&mut self, route: &Route, deadline: Instant) -> Attempted<Answer, PendingStream> {
        // One timer bounds the whole attempt (connection, head, body or first chunk): awc's
        // request and response timeouts would box a timer per request, arm it, re-arm it
        // for the body and drop it. The phase the attempt was in names a timeout.
        let phase = Cell::new(Phase::Head);
        match tokio::time::timeout_at(deadline.into(), self.call(route, deadline, &phase)).await {
            Ok(attempted) => attempted,
            Err(_) => Attempted::Failed(AttemptError::Timeout(phase.get())),
        }
    }

    fn commit(&mut self, stream: PendingStream, report: AttemptReport) -> Answer {
        stream.commit(report)
    }
}
