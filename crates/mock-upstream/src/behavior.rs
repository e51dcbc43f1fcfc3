//! What the mock answers, and the per-behaviour bytes precomputed from it.
//!
//! A [`Behavior`] is compiled once (when the mock starts or when it is replaced) into a
//! [`Compiled`] value holding every response fragment that does not depend on the request,
//! so the hot path only stitches a few slices together.

use std::{fmt::Write as _, sync::Arc};

use actix_web::http::{StatusCode, header::HeaderValue};
use bytes::Bytes;
use serde_json::json;

/// Upper bound for [`Behavior::stall`]: a stalled request is answered `504` after this long, so
/// a forgotten stall can never keep a connection (or a test) alive forever.
pub const STALL_LIMIT_MS: u64 = 300_000;

/// How the mock answers. The status, latency, stall, failure and stream fields apply to every
/// route (narrow them with [`Behavior::on`]); a non-2xx status answers each route's own error
/// shape (OpenAI's `{"error":{…}}`, Anthropic's `{"type":"error","error":{…}}` on
/// `/v1/messages` and on `/v1/models` asked with `anthropic-version`).
///
/// Can be replaced at any time with [`MockHandle::set_behavior`](crate::MockHandle::set_behavior);
/// the new value takes effect on the next request (requests already in flight keep the old one).
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// Status of every answer (default 200). A 2xx answers normally with this status; anything
    /// else answers an OpenAI error body
    /// `{"error":{"message":"mock failure <status>","type":"mock_error","code":"<status>"}}`,
    /// or on Anthropic routes `{"type":"error","error":{"type":<t>,"message":"mock failure
    /// <status>"}}` with `<t>` Anthropic's type for the status (400 `invalid_request_error`,
    /// 401 `authentication_error`, 403 `permission_error`, 404 `not_found_error`, 429
    /// `rate_limit_error`, 529 `overloaded_error`, other 5xx `api_error`).
    /// Use codes in `200..=599`; others are answered as 500.
    pub status: u16,
    /// If set, non-2xx answers carry `Retry-After: <secs>` (meant for 429 and 503).
    pub retry_after_secs: Option<u64>,
    /// If set, non-2xx answers carry `Retry-After` with exactly this text (an HTTP-date, an
    /// absurd number…); it takes precedence over [`retry_after_secs`](Self::retry_after_secs).
    pub retry_after_raw: Option<String>,
    /// Answer a `"stream": true` request with a plain JSON completion, as an upstream that
    /// ignores the flag does.
    pub ignore_stream: bool,
    /// Refuse any request carrying `stream_options` with a `400` naming it, as older Azure API
    /// versions and several self-hosted servers do (chat, completions, embeddings, responses).
    pub refuse_stream_options: bool,
    /// If set, non-2xx answers carry `Location: <url>` (meant for 3xx).
    pub location: Option<String>,
    /// Delay before the response head, in milliseconds (default 0).
    pub latency_ms: u64,
    /// Probability in `0.0..=1.0` of answering [`fail_status`](Self::fail_status) instead of the
    /// normal answer (default 0.0).
    pub fail_rate: f64,
    /// Status used by [`fail_rate`](Self::fail_rate) failures (default 500).
    pub fail_status: u16,
    /// Never answer: hold the request open (bounded by [`STALL_LIMIT_MS`], then `504`).
    pub stall: bool,
    /// Chat only: send the response head at once (`status`; `text/event-stream` for a stream
    /// request, else JSON), then hold the body open without a byte (bounded by
    /// [`STALL_LIMIT_MS`], then the connection closes): a provider that hangs mid-answer.
    pub stall_body: bool,
    /// Content chunks sent when the request has `"stream": true` (default 3). Streams other
    /// than the chat text stream render at most 100 000.
    pub stream_chunks: usize,
    /// Delay between two stream chunks, in milliseconds (default 0).
    pub chunk_delay_ms: u64,
    /// Streams only: after this many content chunks, abort the connection (the chunked body is
    /// cut, no finish chunk, no `[DONE]`). Values `>= stream_chunks` cut right before the finish
    /// chunk. When `chunk_delay_ms > 0` the cut happens when the next chunk would have been due.
    pub cut_after_chunks: Option<usize>,
    /// `usage.prompt_tokens` (default 10).
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` of non-stream answers (default 5). Streams report
    /// `stream_chunks` instead, one token per chunk.
    pub completion_tokens: u64,
    /// Model ids returned by `GET /v1/models` (default `["gpt-4o-mini"]`).
    pub models: Vec<String>,
    /// When a request lists tools, answer with a call to the first one (chat `tool_calls`,
    /// Anthropic `tool_use`) instead of text. A request whose `tool_choice` forces a tool
    /// (`"required"`, a named function, Anthropic `any` / `tool`) gets a call even when this is
    /// false; `tool_choice` `"none"` never does.
    pub call_tools: bool,
    /// Arguments of scripted tool calls (default `{"from":"<name>"}`).
    pub tool_arguments: Option<serde_json::Value>,
    /// Streams only: after this many content chunks, end the stream with the format's error
    /// event (Anthropic `event: error` `overloaded_error`, Responses `response.failed`, an
    /// OpenAI `data: {"error":…}` chunk) instead of finishing it; the body itself ends cleanly.
    pub stream_error_after_chunks: Option<usize>,
    /// If set, `POST /v1/messages` answers `401 authentication_error` unless `x-api-key` is
    /// exactly this.
    pub anthropic_api_key: Option<String>,
    /// Anthropic `usage.cache_read_input_tokens` (left out when `None`, the default).
    pub cache_read_tokens: Option<u64>,
    /// Length of embedding vectors when the request gives no `dimensions` (default 8).
    pub embedding_dims: usize,
    /// If not empty, the failure fields (`status`, `fail_rate`, `stall`, `latency_ms`,
    /// `cut_after_chunks`, `stream_error_after_chunks`) apply only to these endpoints; the
    /// others answer as a healthy mock. Empty (the default) means every endpoint.
    pub only_on: Vec<Endpoint>,
}

/// The routes of the mock, for [`Behavior::only_on`] and per-endpoint hit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/completions` (legacy text completions).
    Completions,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages/count_tokens` (Anthropic).
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in counter order.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Chat,
        Endpoint::Models,
        Endpoint::Messages,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Responses,
        Endpoint::CountTokens,
    ];

    /// The path under the base URL, e.g. `/messages`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Models => "/models",
            Endpoint::Messages => "/messages",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: 200,
            retry_after_secs: None,
            retry_after_raw: None,
            ignore_stream: false,
            refuse_stream_options: false,
            location: None,
            latency_ms: 0,
            fail_rate: 0.0,
            fail_status: 500,
            stall: false,
            stall_body: false,
            stream_chunks: 3,
            chunk_delay_ms: 0,
            cut_after_chunks: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            models: vec!["gpt-4o-mini".to_owned()],
            call_tools: false,
            tool_arguments: None,
            stream_error_after_chunks: None,
            anthropic_api_key: None,
            cache_read_tokens: None,
            embedding_dims: 8,
            only_on: Vec::new(),
        }
    }
}

impl Behavior {
    /// A healthy upstream: `200`, no latency (same as `Default`).
    pub fn ok() -> Self {
        Self::default()
    }

    /// Every request answers `code` (an OpenAI error body unless `code` is 2xx).
    pub fn status(code: u16) -> Self {
        Self {
            status: code,
            ..Self::default()
        }
    }

    /// Every request answers `429` with `Retry-After: <retry_after_secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            status: 429,
            retry_after_secs: Some(retry_after_secs),
            ..Self::default()
        }
    }

    /// Every request answers `code` (meant for 3xx) with `Location: <url>`.
    pub fn redirect(code: u16, url: impl Into<String>) -> Self {
        Self {
            status: code,
            location: Some(url.into()),
            ..Self::default()
        }
    }

    /// Requests are held open and never answered (see [`Behavior::stall`]).
    pub fn stall() -> Self {
        Self {
            stall: true,
            ..Self::default()
        }
    }

    /// Chat requests get their head, then a body that never comes (see
    /// [`Behavior::stall_body`]).
    pub fn stall_body() -> Self {
        Self {
            stall_body: true,
            ..Self::default()
        }
    }

    /// Healthy, but waits `latency_ms` before the response head.
    pub fn slow(latency_ms: u64) -> Self {
        Self {
            latency_ms,
            ..Self::default()
        }
    }

    /// Healthy; streamed answers have `chunks` content chunks spaced by `chunk_delay_ms`.
    pub fn streaming(chunks: usize, chunk_delay_ms: u64) -> Self {
        Self {
            stream_chunks: chunks,
            chunk_delay_ms,
            ..Self::default()
        }
    }

    /// Every request answers Anthropic's `529 overloaded_error` (an OpenAI-shaped 529 on the
    /// OpenAI routes).
    pub fn overloaded() -> Self {
        Self::status(529)
    }

    /// Healthy; requests that list tools are answered with a call to the first tool.
    pub fn tool_calls() -> Self {
        Self {
            call_tools: true,
            ..Self::default()
        }
    }

    /// Healthy; `POST /v1/messages` requires `x-api-key: <key>` (401 otherwise).
    pub fn anthropic_key(key: impl Into<String>) -> Self {
        Self {
            anthropic_api_key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Restricts the failure fields of `self` to `endpoints` (see [`Behavior::only_on`]):
    /// `Behavior::status(500).on(&[Endpoint::Embeddings])` fails embeddings only.
    pub fn on(mut self, endpoints: &[Endpoint]) -> Self {
        self.only_on = endpoints.to_vec();
        self
    }

    /// `self` without its failure fields: what endpoints outside [`Behavior::only_on`] see.
    fn healthy(&self) -> Self {
        Self {
            status: 200,
            fail_rate: 0.0,
            stall: false,
            latency_ms: 0,
            cut_after_chunks: None,
            stream_error_after_chunks: None,
            only_on: Vec::new(),
            ..self.clone()
        }
    }
}

/// The body of a scripted failure in the wire format of the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    OpenAi,
    Anthropic,
}

/// Anthropic's error `type` for an HTTP status, as its API documents them.
pub(crate) fn anthropic_error_type(code: u16) -> &'static str {
    match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type":…,"message":…}}`.
pub(crate) fn anthropic_error(kind: &str, message: &str) -> Bytes {
    Bytes::from(json!({"type": "error", "error": {"type": kind, "message": message}}).to_string())
}

/// The scripted-failure body for `code` in `format`.
pub(crate) fn failure_body_as(format: Format, code: u16) -> Bytes {
    match format {
        Format::OpenAi => failure_body(code),
        Format::Anthropic => anthropic_error(anthropic_error_type(code), &format!("mock failure {code}")),
    }
}

/// Converts a configured status code, mapping anything unusable to 500 so a typo in a test
/// yields a visible failure instead of a panic inside the server.
pub(crate) fn status_code(code: u16) -> StatusCode {
    match StatusCode::from_u16(code) {
        Ok(s) if (200..=599).contains(&code) => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The OpenAI-style error body for a scripted failure.
pub(crate) fn failure_body(code: u16) -> Bytes {
    Bytes::from(format!(
        r#"{{"error":{{"message":"mock failure {code}","type":"mock_error","code":"{code}"}}}}"#
    ))
}

/// A [`Behavior`] plus the response fragments derived from it.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub behavior: Behavior,
    /// `Some` when `behavior.status` is not 2xx: the status and (OpenAI) error body to answer.
    pub status_error: Option<(StatusCode, Bytes)>,
    /// Status for 2xx answers.
    pub ok_status: StatusCode,
    /// Status and (OpenAI) error body for `fail_rate` failures.
    pub fail_error: (StatusCode, Bytes),
    pub retry_after: Option<HeaderValue>,
    /// `Location` of non-2xx answers; a value that is not a valid header is left out.
    pub location: Option<HeaderValue>,
    /// Everything of a non-stream answer after the echoed model:
    /// `,"choices":[...],"usage":{...}}`.
    pub chat_suffix: Bytes,
    /// The whole `GET /v1/models` body.
    pub models_body: Bytes,
    /// Closes a stream chunk prefix (which ends in `"choices":[`) into the usage chunk.
    pub usage_suffix: Bytes,
    /// Whether `fail_rate` can ever trigger, so the PRNG is skipped entirely otherwise.
    pub may_fail: bool,
    /// What endpoints outside `behavior.only_on` answer with (`None` when it is empty).
    pub healthy: Option<Arc<Compiled>>,
}

impl Compiled {
    /// `content_json` is the already JSON-escaped `"Hello from <name>"` string literal.
    pub fn new(behavior: Behavior, content_json: &str) -> Self {
        let healthy =
            (!behavior.only_on.is_empty()).then(|| Arc::new(Compiled::new(behavior.healthy(), content_json)));
        let code = behavior.status;
        let status_error = (!(200..300).contains(&code)).then(|| (status_code(code), failure_body(code)));
        let ok_status = if status_error.is_none() {
            status_code(code)
        } else {
            StatusCode::OK
        };

        let p = behavior.prompt_tokens;
        let c = behavior.completion_tokens;
        let mut suffix = String::with_capacity(200 + content_json.len());
        // Writing to a String cannot fail.
        let _ = write!(
            suffix,
            r#","choices":[{{"index":0,"message":{{"role":"assistant","content":{content_json}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{}}}}}"#,
            p.saturating_add(c)
        );

        let n = behavior.stream_chunks as u64;
        let usage_suffix = format!(
            concat!(
                r#"],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}}}"#,
                "\n\n"
            ),
            p,
            n,
            p.saturating_add(n)
        );

        let models: Vec<_> = behavior
            .models
            .iter()
            .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "mock"}))
            .collect();
        let models_body = json!({"object": "list", "data": models}).to_string();

        Self {
            status_error,
            ok_status,
            fail_error: (
                status_code(behavior.fail_status),
                failure_body(behavior.fail_status),
            ),
            retry_after: match &behavior.retry_after_raw {
                Some(raw) => HeaderValue::from_str(raw).ok(),
                None => behavior.retry_after_secs.map(HeaderValue::from),
            },
            location: behavior
                .location
                .as_deref()
                .and_then(|l| HeaderValue::from_str(l).ok()),
            chat_suffix: Bytes::from(suffix),
            models_body: Bytes::from(models_body),
            usage_suffix: Bytes::from(usage_suffix),
            may_fail: behavior.fail_rate > 0.0,
            healthy,
            behavior,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_valid_json() {
        let c = Compiled::new(Behavior::default(), r#""Hello from t""#);
        let body = format!(
            r#"{{"id":"x","model":"m"{}"#,
            std::str::from_utf8(&c.chat_suffix).expect("utf8")
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid json");
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from t");
        let m: serde_json::Value = serde_json::from_slice(&c.models_body).expect("valid json");
        assert_eq!(m["data"][0]["id"], "gpt-4o-mini");
        assert!(c.status_error.is_none());
    }

    #[test]
    fn only_on_compiles_a_healthy_variant() {
        let c = Compiled::new(Behavior::overloaded().on(&[Endpoint::Messages]), r#""x""#);
        let h = c.healthy.as_ref().expect("healthy variant");
        assert!(h.status_error.is_none());
        assert!(h.healthy.is_none());
        assert_eq!(anthropic_error_type(529), "overloaded_error");
        let v: serde_json::Value =
            serde_json::from_slice(&failure_body_as(Format::Anthropic, 529)).expect("json");
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["type"], "error");
    }

    #[test]
    fn error_status_is_compiled() {
        let c = Compiled::new(Behavior::rate_limited(7), r#""x""#);
        let (s, body) = c.status_error.as_ref().expect("error");
        assert_eq!(s.as_u16(), 429);
        let v: serde_json::Value = serde_json::from_slice(body).expect("valid json");
        assert_eq!(v["error"]["code"], "429");
        assert_eq!(c.retry_after.as_ref().map(|h| h.to_str().ok()), Some(Some("7")));
        assert_eq!(status_code(42).as_u16(), 500);
    }
}
