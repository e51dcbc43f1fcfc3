//! Shared state and the HTTP handlers.

use std::{
    borrow::Cow,
    collections::VecDeque,
    fmt::Write as _,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{
            AtomicBool, AtomicU64,
            Ordering::{Acquire, Relaxed, Release},
        },
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder,
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    web,
};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

use crate::{
    RecordedRequest, anthropic,
    behavior::{
        Behavior, Compiled, Endpoint, Format, STALL_LIMIT_MS, anthropic_error, failure_body, failure_body_as,
        status_code,
    },
    completions, embeddings, responses,
    script::{self, Script},
    sse, tools,
};

/// Cap of the request log: beyond it the oldest entries are dropped, so a long benchmark run
/// with recording on cannot eat all memory.
pub(crate) const MAX_RECORDED: usize = 100_000;

/// Largest request body accepted (actix's default of 256 KiB is too small for long chats).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Upper bound for the `slow-<ms>ms` model latency.
const MAX_MODEL_LATENCY_MS: u64 = 60_000;
/// Upper bound for the `spaced-<ms>ms` chunk spacing.
const MAX_CHUNK_SPACING_MS: u64 = 10_000;

const X_MOCK_NAME: HeaderName = HeaderName::from_static("x-mock-name");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// State shared by every worker of one mock and by its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    name_header: HeaderValue,
    /// `"Hello from <name>"` as a JSON string literal, kept to recompile behaviours.
    content_json: String,
    /// Read once per request (a cheap uncontended read lock and an `Arc` clone).
    behavior: RwLock<Arc<Compiled>>,
    /// Requests received per [`Endpoint`] (indexed by [`Endpoint::index`]).
    hits: [AtomicU64; Endpoint::ALL.len()],
    /// Completion ids; never reset so ids stay unique for the mock's lifetime.
    next_id: AtomicU64,
    /// splitmix64 state for `fail_rate` rolls: lock-free and good enough for a coin flip.
    rng: AtomicU64,
    pub record: AtomicBool,
    log: Mutex<VecDeque<RecordedRequest>>,
}

impl Shared {
    pub fn new(name: &str, behavior: Behavior, record: bool) -> std::io::Result<Self> {
        let name_header = HeaderValue::from_str(name).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("mock name {name:?} is not a valid header value"),
            )
        })?;
        let content_json =
            serde_json::to_string(&format!("Hello from {name}")).map_err(std::io::Error::other)?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Ok(Self {
            name: name.to_owned(),
            name_header,
            behavior: RwLock::new(Arc::new(Compiled::new(behavior, &content_json))),
            content_json,
            hits: Default::default(),
            next_id: AtomicU64::new(1),
            rng: AtomicU64::new(seed),
            record: AtomicBool::new(record),
            log: Mutex::new(VecDeque::new()),
        })
    }

    pub fn hits(&self, e: Endpoint) -> u64 {
        self.hits[e.index()].load(Acquire)
    }

    /// Records a request to `e`, then counts it: a test that sees the count sees the record
    /// (the mock answers on its own thread, and a count taken before the record let a test
    /// read one record fewer than the hits it had waited for).
    pub(crate) fn arrive(&self, e: Endpoint, req: &HttpRequest, body: Option<&[u8]>) {
        self.record(req, body);
        self.hits[e.index()].fetch_add(1, Release);
    }

    /// The behaviour `e` answers with: the healthy variant when `only_on` leaves `e` out.
    pub(crate) fn current_for(&self, e: Endpoint) -> Arc<Compiled> {
        let c = self.current();
        match &c.healthy {
            Some(h) if !c.behavior.only_on.contains(&e) => h.clone(),
            _ => c,
        }
    }

    /// A fresh id, unique for the mock's lifetime.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.behavior
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_behavior(&self, b: Behavior) {
        // Compile outside the lock so readers are never blocked on formatting.
        let compiled = Arc::new(Compiled::new(b, &self.content_json));
        *self.behavior.write().unwrap_or_else(PoisonError::into_inner) = compiled;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    pub fn reset(&self) {
        for h in &self.hits {
            h.store(0, Relaxed);
        }
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn record(&self, req: &HttpRequest, body: Option<&[u8]>) {
        if !self.record.load(Relaxed) {
            return;
        }
        let body = match body {
            None => serde_json::Value::Null,
            Some(raw) => serde_json::from_slice(raw).unwrap_or_else(|_| {
                // Keep unparsable bodies visible to tests as text.
                serde_json::Value::String(String::from_utf8_lossy(raw).into_owned())
            }),
        };
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let entry = RecordedRequest {
            method: req.method().as_str().to_owned(),
            path: req.path().to_owned(),
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            headers,
            body,
            at: Instant::now(),
            version: format!("{:?}", req.version()),
        };
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= MAX_RECORDED {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// Rolls the `fail_rate` die.
    fn roll(&self, rate: f64) -> bool {
        if rate >= 1.0 {
            return true;
        }
        // splitmix64: a Weyl sequence on the atomic plus a mixer, so concurrent rolls never
        // need a compare-and-swap loop.
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits mapped to [0, 1).
        ((z >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < rate
    }

    pub(crate) fn builder(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut b = HttpResponse::build(status);
        b.insert_header((X_MOCK_NAME, self.name_header.clone()));
        b
    }

    pub(crate) fn json(&self, status: StatusCode, body: Bytes) -> HttpResponse {
        self.builder(status)
            .insert_header((header::CONTENT_TYPE, JSON))
            .body(body)
    }

    /// An error answer, with `Retry-After` and `Location` when the behaviour asks for them.
    pub(crate) fn error(&self, c: &Compiled, status: StatusCode, body: Bytes) -> HttpResponse {
        let mut b = self.builder(status);
        b.insert_header((header::CONTENT_TYPE, JSON));
        if let Some(ra) = &c.retry_after {
            b.insert_header((header::RETRY_AFTER, ra.clone()));
        }
        if let Some(location) = &c.location {
            b.insert_header((header::LOCATION, location.clone()));
        }
        b.body(body)
    }

    /// The scripted failure for this request, if any (`status`, then `fail_rate`).
    fn scripted_failure(&self, c: &Compiled) -> Option<HttpResponse> {
        if let Some((status, body)) = &c.status_error {
            return Some(self.error(c, *status, body.clone()));
        }
        if c.may_fail && self.roll(c.behavior.fail_rate) {
            let (status, body) = &c.fail_error;
            return Some(self.error(c, *status, body.clone()));
        }
        None
    }

    /// [`Self::scripted_failure`] with the error body in `format`.
    fn scripted_failure_as(&self, c: &Compiled, format: Format) -> Option<HttpResponse> {
        if format == Format::OpenAi {
            return self.scripted_failure(c);
        }
        let code = if let Some((status, _)) = &c.status_error {
            status.as_u16()
        } else if c.may_fail && self.roll(c.behavior.fail_rate) {
            c.fail_error.0.as_u16()
        } else {
            return None;
        };
        Some(self.error(c, status_code(code), failure_body_as(format, code)))
    }

    /// Holds the request until [`STALL_LIMIT_MS`] (or until the server stops).
    async fn stall(&self, c: &Compiled) -> HttpResponse {
        self.stall_as(c, Format::OpenAi).await
    }

    async fn stall_as(&self, c: &Compiled, format: Format) -> HttpResponse {
        actix_rt::time::sleep(Duration::from_millis(STALL_LIMIT_MS)).await;
        self.error(c, StatusCode::GATEWAY_TIMEOUT, failure_body_as(format, 504))
    }

    /// What every route but chat and models does first: count and record the request, apply
    /// the behaviour's stall and scripted failures, parse the JSON body and apply the
    /// model-name scripting. `Err` is the finished answer (latency already waited).
    pub(crate) async fn begin(
        &self,
        e: Endpoint,
        format: Format,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<Begun, HttpResponse> {
        self.arrive(e, req, Some(body));
        let c = self.current_for(e);
        let b = &c.behavior;
        if b.stall {
            return Err(self.stall_as(&c, format).await);
        }
        if let Some(resp) = self.scripted_failure_as(&c, format) {
            sleep_ms(b.latency_ms).await;
            return Err(resp);
        }
        let bad = |msg: &str| match format {
            Format::OpenAi => openai_error(msg, "invalid_request_error", "invalid_request"),
            Format::Anthropic => anthropic_error("invalid_request_error", msg),
        };
        let json: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => {
                sleep_ms(b.latency_ms).await;
                let msg = "mock: the body must be a JSON object";
                return Err(self.json(StatusCode::BAD_REQUEST, bad(msg)));
            }
            Err(err) => {
                sleep_ms(b.latency_ms).await;
                let msg = format!("mock: invalid JSON body: {err}");
                return Err(self.json(StatusCode::BAD_REQUEST, bad(&msg)));
            }
        };
        let model = json
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or("mock")
            .to_owned();
        let mut latency = b.latency_ms;
        if model == "mock-bad-request" {
            sleep_ms(latency).await;
            return Err(self.json(StatusCode::BAD_REQUEST, bad("mock: bad request")));
        }
        if b.refuse_stream_options && matches!(format, Format::OpenAi) && json.get("stream_options").is_some()
        {
            sleep_ms(latency).await;
            let msg = "Unrecognized request argument supplied: stream_options";
            return Err(self.json(StatusCode::BAD_REQUEST, bad(msg)));
        }
        if b.status == 200 {
            if let Some(code) = scripted_fail_code(&model) {
                sleep_ms(latency).await;
                return Err(self.error(&c, status_code(code), failure_body_as(format, code)));
            }
            if let Some(ms) = scripted_latency(&model) {
                latency = latency.saturating_add(ms);
            }
        }
        Ok(Begun {
            stream: json.get("stream") == Some(&serde_json::Value::Bool(true)) && !b.ignore_stream,
            id: self.next_id(),
            c,
            latency,
            model,
            json,
        })
    }

    /// A JSON answer after the request's latency.
    pub(crate) async fn answer_json(&self, begun: &Begun, body: Bytes) -> HttpResponse {
        sleep_ms(begun.latency).await;
        self.json(begun.c.ok_status, body)
    }

    /// An error answer (`status`, `body`) after the request's latency.
    pub(crate) async fn answer_error(&self, begun: &Begun, status: StatusCode, body: Bytes) -> HttpResponse {
        sleep_ms(begun.latency).await;
        self.json(status, body)
    }

    /// An SSE answer playing `script` after the request's latency.
    pub(crate) async fn answer_stream(&self, begun: &Begun, script: Script) -> HttpResponse {
        self.stream_response(&begun.c, begun.latency, script).await
    }

    async fn stream_response(&self, c: &Compiled, latency: u64, script: Script) -> HttpResponse {
        let stream = script::body(script, &c.behavior);
        sleep_ms(latency).await;
        self.builder(c.ok_status)
            .insert_header((header::CONTENT_TYPE, EVENT_STREAM))
            .insert_header((header::CACHE_CONTROL, NO_CACHE))
            .streaming(stream)
    }
}

/// A request that passed [`Shared::begin`].
pub(crate) struct Begun {
    /// The behaviour this request is answered with.
    pub c: Arc<Compiled>,
    /// Delay before the response head (behaviour plus `slow-<ms>ms`).
    pub latency: u64,
    /// The requested model (`"mock"` when absent), echoed in answers.
    pub model: String,
    /// The whole request body.
    pub json: serde_json::Value,
    /// `"stream": true` and the behaviour does not ignore it.
    pub stream: bool,
    /// A fresh id for the answer.
    pub id: u64,
}

/// `fail-<code>` models answer `<code>`.
fn scripted_fail_code(model: &str) -> Option<u16> {
    model
        .strip_prefix("fail-")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|c| (400..=599).contains(c))
}

/// `slow-<ms>ms` models wait `<ms>` more (bounded).
fn scripted_latency(model: &str) -> Option<u64> {
    scripted_ms(model, "slow-").map(|ms| ms.min(MAX_MODEL_LATENCY_MS))
}

/// `spaced-<ms>ms` models stream their chat chunks `<ms>` apart (bounded), whatever the
/// behaviour's `chunk_delay_ms`: one mock serves streams that arrive at once and spaced ones.
fn scripted_spacing(model: &str) -> Option<u64> {
    scripted_ms(model, "spaced-").map(|ms| ms.min(MAX_CHUNK_SPACING_MS))
}

/// The `<ms>` of `<prefix><ms>ms`.
fn scripted_ms(model: &str, prefix: &str) -> Option<u64> {
    model
        .strip_prefix(prefix)
        .and_then(|s| s.strip_suffix("ms"))
        .and_then(|s| s.parse::<u64>().ok())
}

/// The fields of a chat request the mock looks at; everything else is skipped (but the body
/// must still be valid JSON).
#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Only looked at (as names) when present; absent costs nothing on the hot path.
    #[serde(default)]
    tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    tool_choice: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

pub(crate) fn openai_error(message: &str, kind: &str, code: &str) -> Bytes {
    let v = serde_json::json!({"error": {"message": message, "type": kind, "code": code}});
    Bytes::from(v.to_string())
}

pub(crate) async fn sleep_ms(ms: u64) {
    if ms > 0 {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A response whose head leaves at once and whose body sends nothing until
/// [`STALL_LIMIT_MS`] has passed, then breaks off (see [`Behavior::stall_body`]).
fn stalled_body(status: StatusCode, stream: bool) -> HttpResponse {
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let never = futures_util::stream::once(async {
        actix_rt::time::sleep(Duration::from_millis(STALL_LIMIT_MS)).await;
        Err::<Bytes, _>(std::io::Error::other("mock: stalled body given up"))
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, content_type))
        .streaming(never)
}

/// `POST /v1/chat/completions` and `POST /chat/completions`.
async fn chat(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    state.arrive(Endpoint::Chat, &req, Some(&body));
    let c = state.current_for(Endpoint::Chat);
    let b = &c.behavior;
    if b.stall {
        return state.stall(&c).await;
    }
    if b.stall_body {
        let stream = serde_json::from_slice::<ChatRequest<'_>>(&body).is_ok_and(|p| p.stream == Some(true));
        return stalled_body(status_code(b.status), stream);
    }
    if let Some(resp) = state.scripted_failure(&c) {
        sleep_ms(b.latency_ms).await;
        return resp;
    }

    let parsed: ChatRequest<'_> = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            sleep_ms(b.latency_ms).await;
            let msg = format!("mock: invalid JSON body: {e}");
            return state.json(
                StatusCode::BAD_REQUEST,
                openai_error(&msg, "invalid_request_error", "invalid_json"),
            );
        }
    };
    let model = parsed.model.as_deref().unwrap_or("mock");
    if b.refuse_stream_options && parsed.stream_options.is_some() {
        sleep_ms(b.latency_ms).await;
        return state.json(
            StatusCode::BAD_REQUEST,
            openai_error(
                "Unrecognized request argument supplied: stream_options",
                "invalid_request_error",
                "invalid_request",
            ),
        );
    }

    // Model-name scripting for demos, only on an otherwise plain healthy upstream.
    let mut latency = b.latency_ms;
    let mut spacing = b.chunk_delay_ms;
    if model == "mock-bad-request" {
        sleep_ms(latency).await;
        return state.json(
            StatusCode::BAD_REQUEST,
            openai_error("mock: bad request", "invalid_request_error", "bad_request"),
        );
    }
    if b.status == 200 {
        if let Some(code) = scripted_fail_code(model) {
            sleep_ms(latency).await;
            return state.error(&c, status_code(code), failure_body(code));
        }
        if let Some(ms) = scripted_latency(model) {
            latency = latency.saturating_add(ms);
        }
        if let Some(ms) = scripted_spacing(model) {
            spacing = ms;
        }
    }

    let id = state.next_id();
    let created = unix_now();
    let stream = parsed.stream == Some(true) && !c.behavior.ignore_stream;
    let include_usage = parsed
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);

    if let Some(tools) = &parsed.tools {
        let names: Vec<String> = tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(|n| n.as_str()))
            .map(str::to_owned)
            .collect();
        if let Some(call) = tools::choose(b, &names, parsed.tool_choice.as_ref(), &state.name) {
            if stream {
                let script = tools::chat_stream(&call, id, model, b, include_usage);
                return state.stream_response(&c, latency, script).await;
            }
            sleep_ms(latency).await;
            return state.json(c.ok_status, tools::chat_answer(&call, id, model, b));
        }
    }

    if stream {
        let prefix = head(
            r#"data: {"id":"chatcmpl-mock-"#,
            "chat.completion.chunk",
            id,
            created,
            model,
            br#","choices":["#,
        );
        let stream = sse::body(prefix, c.clone(), include_usage, Duration::from_millis(spacing));
        sleep_ms(latency).await;
        return state
            .builder(c.ok_status)
            .insert_header((header::CONTENT_TYPE, EVENT_STREAM))
            .insert_header((header::CACHE_CONTROL, NO_CACHE))
            .streaming(stream);
    }

    let body = head(
        r#"{"id":"chatcmpl-mock-"#,
        "chat.completion",
        id,
        created,
        model,
        &c.chat_suffix,
    );
    sleep_ms(latency).await;
    state.json(c.ok_status, body)
}

/// `<start><id>","object":"<object>","created":<created>,"model":<model><tail>`, built in one
/// allocation.
fn head(start: &str, object: &str, id: u64, created: u64, model: &str, tail: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(96 + start.len() + model.len() + tail.len());
    // Formatting into a growable buffer cannot fail.
    let _ = write!(
        out,
        r#"{start}{id}","object":"{object}","created":{created},"model":"#
    );
    // Escapes the echoed model; writing a str into a buffer cannot fail.
    let _ = serde_json::to_writer((&mut out).writer(), model);
    out.put_slice(tail);
    out.freeze()
}

/// `GET /v1/models` and `GET /models`.
async fn models(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    state.arrive(Endpoint::Models, &req, None);
    let c = state.current_for(Endpoint::Models);
    // Anthropic's SDKs send `anthropic-version` on every call; answer them in their shape.
    let format = if req.headers().contains_key("anthropic-version") {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    if c.behavior.stall {
        return state.stall_as(&c, format).await;
    }
    let resp = state
        .scripted_failure_as(&c, format)
        .unwrap_or_else(|| match format {
            Format::OpenAi => state.json(c.ok_status, c.models_body.clone()),
            Format::Anthropic => state.json(c.ok_status, anthropic::models_body(&c.behavior.models)),
        });
    sleep_ms(c.behavior.latency_ms).await;
    resp
}

/// Registers the mock's routes and state on an actix `App`.
pub(crate) fn configure(state: web::Data<Shared>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/v1/chat/completions", web::post().to(chat))
            .route("/chat/completions", web::post().to(chat))
            .route("/v1/models", web::get().to(models))
            .route("/models", web::get().to(models))
            .route("/v1/messages", web::post().to(anthropic::messages))
            .route("/messages", web::post().to(anthropic::messages))
            .route(
                "/v1/messages/count_tokens",
                web::post().to(anthropic::count_tokens),
            )
            .route("/messages/count_tokens", web::post().to(anthropic::count_tokens))
            .route("/v1/embeddings", web::post().to(embeddings::embeddings))
            .route("/embeddings", web::post().to(embeddings::embeddings))
            .route("/v1/completions", web::post().to(completions::completions))
            .route("/completions", web::post().to(completions::completions))
            .route("/v1/responses", web::post().to(responses::responses))
            .route("/responses", web::post().to(responses::responses));
    }
}

/// Answers unknown routes with an OpenAI-style 404.
pub(crate) async fn not_found(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let msg = format!("mock: no route for {} {}", req.method(), req.path());
    state.json(
        StatusCode::NOT_FOUND,
        openai_error(&msg, "invalid_request_error", "not_found"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rate_roll_matches_probability() {
        let s = Shared::new("t", Behavior::default(), false).expect("shared");
        let hits = (0..20_000).filter(|_| s.roll(0.3)).count();
        assert!((5_000..7_000).contains(&hits), "{hits} hits of 20000 at 0.3");
        assert!((0..100).all(|_| s.roll(1.0)));
        assert!(!(0..100).any(|_| s.roll(0.0)));
    }

    #[test]
    fn log_is_capped() {
        let s = Shared::new("t", Behavior::default(), true).expect("shared");
        let req = actix_web::test::TestRequest::get()
            .uri("/v1/models")
            .to_http_request();
        for _ in 0..MAX_RECORDED + 5 {
            s.record(&req, None);
        }
        assert_eq!(s.requests().len(), MAX_RECORDED);
        s.reset();
        assert!(s.requests().is_empty());
    }

    #[test]
    fn scripted_times_read_only_well_formed_names_and_are_bounded() {
        assert_eq!(scripted_spacing("spaced-5ms"), Some(5));
        assert_eq!(scripted_latency("slow-0ms"), Some(0));
        // Absurdly large: clamped; past u64, negative, empty, unitless or another unit: none.
        assert_eq!(
            scripted_spacing("spaced-18446744073709551615ms"),
            Some(MAX_CHUNK_SPACING_MS)
        );
        assert_eq!(
            scripted_latency("slow-18446744073709551615ms"),
            Some(MAX_MODEL_LATENCY_MS)
        );
        for name in [
            "spaced-18446744073709551616ms",
            "spaced--5ms",
            "spaced-ms",
            "spaced-5",
            "spaced-5s",
            "spaced-",
            "",
            "slow-5ms",
        ] {
            assert_eq!(scripted_spacing(name), None, "{name:?}");
        }
        assert_eq!(scripted_latency("spaced-5ms"), None);
    }

    #[test]
    fn invalid_name_is_rejected() {
        assert!(Shared::new("bad\nname", Behavior::default(), false).is_err());
    }
}
