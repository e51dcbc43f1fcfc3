//! What the mock answers, and the per-behaviour bytes precomputed from it.
//!
//! A [`Behavior`] is compiled once (when the mock starts or when it is replaced) into a
//! [`Compiled`] value holding every response fragment that does not depend on the request,
//! so the hot path only stitches a few slices together.

use std::fmt::Write as _;

use actix_web::http::{StatusCode, header::HeaderValue};
use bytes::Bytes;
use serde_json::json;

/// Upper bound for [`Behavior::stall`]: a stalled request is answered `504` after this long, so
/// a forgotten stall can never keep a connection (or a test) alive forever.
pub const STALL_LIMIT_MS: u64 = 300_000;

/// How the mock answers `/v1/chat/completions` (and, for the status/latency/stall/failure
/// fields, `/v1/models`).
///
/// Can be replaced at any time with [`MockHandle::set_behavior`](crate::MockHandle::set_behavior);
/// the new value takes effect on the next request (requests already in flight keep the old one).
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// Status of every answer (default 200). A 2xx answers normally with this status; anything
    /// else answers an OpenAI error body
    /// `{"error":{"message":"mock failure <status>","type":"mock_error","code":"<status>"}}`.
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
    /// versions and several self-hosted servers do.
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
    /// Content chunks sent when the request has `"stream": true` (default 3).
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
            stream_chunks: 3,
            chunk_delay_ms: 0,
            cut_after_chunks: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            models: vec!["gpt-4o-mini".to_owned()],
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
    /// `Some` when `behavior.status` is not 2xx: the status and error body to answer.
    pub status_error: Option<(StatusCode, Bytes)>,
    /// Status for 2xx answers.
    pub ok_status: StatusCode,
    /// Status and error body for `fail_rate` failures.
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
}

impl Compiled {
    /// `content_json` is the already JSON-escaped `"Hello from <name>"` string literal.
    pub fn new(behavior: Behavior, content_json: &str) -> Self {
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
