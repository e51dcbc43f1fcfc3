//! `POST /v1/chat/completions`: the failover loop.
//!
//! For each attempt the handler picks a provider (never one already tried) from the
//! `Supervisor`'s routing table, calls it with this worker's awc client, and reports the
//! outcome to the provider's actor and the `StatsActor` as fire-and-forget messages. A counted failure moves on to the
//! next provider, up to `max_retries` further attempts, all within one deadline. A stream is
//! committed to its provider once the first byte has arrived; after that a failure ends the
//! stream with an SSE error event.

use std::time::{Duration, Instant};

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;

use super::{AppState, auth, read_body};
use crate::config::RoutingConfig;
use crate::error::ApiError;
use crate::events::{Event, EventKind, Severity};
use crate::provider::health::Failure;
use crate::provider::load::InflightGuard;
use crate::provider::{DrainSuccesses, Outcome, OutcomeKind};
use crate::stats::{DrainUsage, StatsActor, UsageQueue, UsageRecord, UsageResult};
use crate::supervisor::{PickResult, Route};
use crate::upstream::body::{self, BodyError, ChatHead};
use crate::upstream::classify::{self, Class};
use crate::upstream::send_chat;
use crate::upstream::sse::{ObservedStream, SseObserver, StreamEnd, StreamReport};
use crate::upstream::usage::{self, TokenUsage};

/// Most of an error answer read from an upstream (for the message and pass-through).
const MAX_ERROR_BODY: usize = 256 * 1024;

/// Why an attempt failed, for health, the next attempt and the final error.
#[derive(Debug, Clone)]
struct AttemptFailure {
    provider: String,
    timed_out: bool,
    status: Option<u16>,
    /// The detail, for health, events and logs. Upstream text in it is already scrubbed of
    /// key-like tokens and capped (`classify::error_summary`).
    message: String,
    cooldown_ms: Option<u64>,
}

impl AttemptFailure {
    /// What the client may read: the detail, except for 401/403, whose upstream text quotes
    /// the key the provider was sent; that stays with the operator.
    fn client_text(&self) -> std::borrow::Cow<'_, str> {
        match self.status {
            Some(status @ (401 | 403)) => {
                format!("upstream answered {status}: the provider refused the router's credentials").into()
            }
            _ => self.message.as_str().into(),
        }
    }
}

/// How one attempt ended.
enum Attempt {
    /// A complete 2xx answer.
    Answered {
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
        usage: Option<TokenUsage>,
    },
    /// The upstream refused the client's request (400/404/422…): returned as is.
    ClientError {
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    /// A plain answer over `max_response_bytes`: the router's own limit, not the provider's
    /// fault, and another provider would send the same answer.
    TooLarge,
    /// A stream whose first bytes arrived: committed to this provider.
    Streaming {
        status: u16,
        content_type: Option<HeaderValue>,
        first: Bytes,
        rest: awc::ClientResponse,
    },
    Failed(AttemptFailure),
}

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    auth::check_client(&req, &state)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let head = body::parse(&body).map_err(body_error)?;
    let mut exclude = excluded_ids(&req)?;
    let routing = &state.config.routing;
    let deadline = started + Duration::from_millis(routing.deadline_ms());
    let max_attempts = routing.max_retries.saturating_add(1);

    let mut attempts = 0u32;
    let mut upstream_time = Duration::ZERO;
    let mut last: Option<AttemptFailure> = None;
    let mut previous: Option<Route> = None;
    while attempts < max_attempts {
        let route = match state.routes.pick(&head.model, &exclude) {
            PickResult::Route(r) => r,
            PickResult::UnknownModel => return Err(ApiError::UnknownModel(head.model.clone())),
            PickResult::Exhausted => break,
            PickResult::CoolingDown(wait) => return Err(all_failed(&head.model, attempts, last, Some(wait))),
        };
        let now = Instant::now();
        if now >= deadline {
            last = Some(deadline_failure(last));
            break;
        }
        let own_timeout = Duration::from_millis(route.provider.timeout_ms);
        let timeout = own_timeout.min(deadline - now);
        // A timeout cut short by the request's deadline says nothing about the provider.
        let cut_by_deadline = timeout < own_timeout;
        if let Some(prev) = previous.take() {
            announce_switch(&state, &prev, &route, last.as_ref());
        }
        attempts += 1;
        exclude.push(route.provider.id);
        let guard = route.load.start();
        let t0 = Instant::now();
        let unreported = Unreported {
            state: &state,
            route: &route,
            model: &head.model,
            started: t0,
        };
        let result = attempt(&client, &route, &body, &head, timeout, routing).await;
        // From here on every branch reports the attempt itself (a stream from its `Drop`).
        std::mem::forget(unreported);
        let took = t0.elapsed();
        upstream_time += took;
        let headers = RouterHeaders {
            provider: route.provider.wire.name_header.clone(),
            attempts,
            started,
            upstream_time,
        };
        match result {
            Attempt::Answered {
                status,
                content_type,
                body,
                usage,
            } => {
                report(
                    &state,
                    &route,
                    &head.model,
                    OutcomeKind::Success { status },
                    took,
                    usage,
                );
                drop(guard);
                let mut resp = HttpResponse::build(status_code(status));
                headers.apply(&mut resp, content_type);
                return Ok(resp.body(body));
            }
            Attempt::ClientError {
                status,
                content_type,
                body,
            } => {
                report(&state, &route, &head.model, OutcomeKind::Neutral, took, None);
                drop(guard);
                let mut resp = HttpResponse::build(status_code(status));
                headers.apply(&mut resp, content_type);
                return Ok(resp.body(body));
            }
            Attempt::TooLarge => {
                report(&state, &route, &head.model, OutcomeKind::Neutral, took, None);
                drop(guard);
                return Err(ApiError::ResponseTooLarge(routing.max_response_bytes));
            }
            Attempt::Streaming {
                status,
                content_type,
                first,
                rest,
            } => {
                let report = Box::new(ChatStreamReport {
                    route: route.clone(),
                    model: head.model.clone(),
                    started: t0,
                    stats: state.stats.clone(),
                    usage: state.usage.clone(),
                    _guard: guard,
                });
                let idle = Duration::from_millis(route.provider.timeout_ms);
                let mut stream = ObservedStream::new(first, rest, idle, report);
                if head.include_usage != Some(true) {
                    // The router asked for usage on the client's behalf: the client gets the
                    // stream it asked for, without the usage chunk.
                    stream = stream.without_usage_chunk();
                }
                let mut resp = HttpResponse::build(status_code(status));
                headers.apply(&mut resp, content_type);
                resp.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")));
                return Ok(resp.streaming(stream));
            }
            Attempt::Failed(f) => {
                let kind = if f.timed_out && cut_by_deadline {
                    OutcomeKind::Neutral
                } else {
                    OutcomeKind::Failure(Failure {
                        status: f.status,
                        message: f.message.clone(),
                        cooldown: f.cooldown_ms.map(cooldown_duration),
                    })
                };
                report(&state, &route, &head.model, kind, took, None);
                log::debug!(
                    "attempt {attempts} on provider {} failed: {}",
                    f.provider,
                    f.message
                );
                last = Some(f);
                previous = Some(route);
            }
        }
    }
    Err(all_failed(&head.model, attempts, last, None))
}

/// Calls one provider once.
async fn attempt(
    client: &awc::Client,
    route: &Route,
    original: &Bytes,
    head: &ChatHead,
    timeout: Duration,
    routing: &RoutingConfig,
) -> Attempt {
    let started = Instant::now();
    let provider = &route.provider;
    let fail = |timed_out: bool, status: Option<u16>, message: String, cooldown_ms: Option<u64>| {
        Attempt::Failed(AttemptFailure {
            provider: provider.name.clone(),
            timed_out,
            status,
            message,
            cooldown_ms,
        })
    };
    let mut ask_usage = !route.load.refuses_stream_options();
    let mut resp = loop {
        let body = body::for_upstream(original, head, route.upstream_model.as_deref(), ask_usage);
        let remaining = timeout.saturating_sub(started.elapsed());
        let resp = match send_chat(client, provider, body, head.stream, remaining).await {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    classify::is_timeout(&e),
                    None,
                    classify::send_error_message(&e),
                    None,
                );
            }
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
            let error = resp.body().limit(MAX_ERROR_BODY).await.unwrap_or_default();
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
            return Attempt::ClientError {
                status,
                content_type,
                body: error,
            };
        }
        break resp;
    };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let status = resp.status().as_u16();
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    if !resp.status().is_success() {
        let retry_after = classify::retry_after(resp.headers(), Utc::now());
        let mut resp = resp.timeout(remaining);
        let body = resp.body().limit(MAX_ERROR_BODY).await.unwrap_or_default();
        return match classify::status(status, &body) {
            Class::ClientError => Attempt::ClientError {
                status,
                content_type,
                body,
            },
            class => {
                let cooldown = matches!(class, Class::RateLimited).then(|| {
                    classify::cooldown_ms(retry_after, routing.default_cooldown_ms, routing.max_cooldown_ms)
                });
                let message = format!("upstream answered {status}{}", classify::error_summary(&body));
                fail(false, Some(status), message, cooldown)
            }
        };
    }
    if !head.stream {
        let mut resp = resp.timeout(remaining);
        return match resp.body().limit(routing.max_response_bytes).await {
            Ok(body) => {
                let usage = usage::from_json(&body);
                Attempt::Answered {
                    status,
                    content_type,
                    body,
                    usage,
                }
            }
            Err(awc::error::PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => fail(
                true,
                Some(status),
                "upstream timed out while sending its answer".into(),
                None,
            ),
            Err(awc::error::PayloadError::Overflow) => Attempt::TooLarge,
            Err(e) => fail(
                false,
                Some(status),
                format!("reading the upstream answer failed: {e}"),
                None,
            ),
        };
    }
    // An upstream that ignored `stream: true` (plain JSON) must not be committed: the client
    // asked for events and would get a JSON body with an SSE error glued to it.
    if !is_event_stream(content_type.as_ref()) {
        let shown = content_type
            .as_ref()
            .and_then(|c| c.to_str().ok())
            .unwrap_or("none");
        return fail(
            false,
            Some(status),
            format!(
                "the upstream answered a stream request with content type {shown:?}, not text/event-stream"
            ),
            None,
        );
    }
    // A stream: wait for its first bytes before committing; until then, failing over is safe.
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, resp.next()).await {
            Ok(Some(Ok(chunk))) if chunk.is_empty() => continue,
            Ok(Some(Ok(first))) => {
                return Attempt::Streaming {
                    status,
                    content_type,
                    first,
                    rest: resp,
                };
            }
            Ok(Some(Err(e))) => {
                return fail(
                    false,
                    Some(status),
                    format!("the upstream stream broke before its first byte: {e}"),
                    None,
                );
            }
            Ok(None) => {
                return fail(
                    false,
                    Some(status),
                    "the upstream stream ended without data".into(),
                    None,
                );
            }
            Err(_) => {
                return fail(
                    true,
                    Some(status),
                    "upstream timed out before its first stream chunk".into(),
                    None,
                );
            }
        }
    }
}

/// The `x-switchyard-*` response headers.
struct RouterHeaders {
    provider: HeaderValue,
    attempts: u32,
    started: Instant,
    upstream_time: Duration,
}

const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-switchyard-provider");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");
const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-switchyard-overhead-ms");

impl RouterHeaders {
    fn apply(self, resp: &mut HttpResponseBuilder, content_type: Option<HeaderValue>) {
        let overhead = self.started.elapsed().saturating_sub(self.upstream_time);
        resp.insert_header((PROVIDER_HEADER, self.provider))
            .insert_header((ATTEMPTS_HEADER, HeaderValue::from(self.attempts)))
            .insert_header((OVERHEAD_HEADER, millis_header(overhead)));
        if let Some(ct) = content_type {
            resp.insert_header((CONTENT_TYPE, ct));
        }
    }
}

/// A duration as milliseconds with three decimals ("0.046"), formatted without a heap string.
fn millis_header(d: Duration) -> HeaderValue {
    use std::io::Write;
    let micros = d.as_micros();
    let mut buf = [0u8; 48];
    let mut out = &mut buf[..];
    let len = match write!(out, "{}.{:03}", micros / 1000, micros % 1000) {
        Ok(()) => 48 - out.len(),
        Err(_) => 0,
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0"))
}

/// An attempt whose outcome is not known yet. If the request's future is dropped while it
/// waits on the upstream (shutdown past its grace period, a cancelled request), `Drop`
/// reports the attempt as neutral, so every upstream attempt is one usage record.
struct Unreported<'a> {
    state: &'a AppState,
    route: &'a Route,
    model: &'a str,
    started: Instant,
}

impl Drop for Unreported<'_> {
    fn drop(&mut self) {
        report(
            self.state,
            self.route,
            self.model,
            OutcomeKind::Neutral,
            self.started.elapsed(),
            None,
        );
    }
}

/// Sends the attempt's outcome to its provider actor and its usage to the stats actor.
fn report(
    state: &AppState,
    route: &Route,
    model: &str,
    kind: OutcomeKind,
    took: Duration,
    tokens: Option<TokenUsage>,
) {
    let latency_ms = took.as_millis() as u64;
    let record = usage_record(route.provider.id, model, &kind, tokens, latency_ms);
    report_outcome(route, kind, latency_ms);
    report_usage(&state.usage, &state.stats, record);
}

/// Health: a success goes into the provider's shared counter (ringing its actor only when the
/// counter was empty); anything else is a message, handled at once.
fn report_outcome(route: &Route, kind: OutcomeKind, latency_ms: u64) {
    match kind {
        OutcomeKind::Success { .. } => {
            if route.load.add_success(latency_ms) {
                route.actor.do_send(DrainSuccesses);
            }
        }
        other => route.actor.do_send(Outcome {
            kind: other,
            latency_ms,
        }),
    }
}

/// Usage: into the shared queue, ringing the stats actor only when the queue was empty.
fn report_usage(queue: &UsageQueue, stats: &actix::Addr<StatsActor>, record: UsageRecord) {
    if queue.push(record) {
        stats.do_send(DrainUsage);
    }
}

fn usage_record(
    provider_id: i64,
    model: &str,
    kind: &OutcomeKind,
    tokens: Option<TokenUsage>,
    latency_ms: u64,
) -> UsageRecord {
    let result = match kind {
        OutcomeKind::Success { .. } => UsageResult::Success,
        OutcomeKind::Failure(_) => UsageResult::Failure,
        OutcomeKind::Neutral => UsageResult::Neutral,
    };
    let t = tokens.unwrap_or_default();
    UsageRecord {
        provider_id,
        model: model.to_string(),
        at: Utc::now(),
        result,
        prompt_tokens: t.prompt_tokens,
        completion_tokens: t.completion_tokens,
        total_tokens: t.total_tokens,
        latency_ms,
    }
}

/// Reports a stream's outcome when it ends (see `ObservedStream`).
struct ChatStreamReport {
    route: Route,
    model: String,
    started: Instant,
    stats: actix::Addr<StatsActor>,
    usage: std::sync::Arc<UsageQueue>,
    /// Keeps the request in flight until the stream ends.
    _guard: InflightGuard,
}

impl StreamReport for ChatStreamReport {
    fn finish(self: Box<Self>, end: StreamEnd, observer: &SseObserver) {
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let kind = match end {
            StreamEnd::Completed => OutcomeKind::Success { status: 200 },
            StreamEnd::ClientGone => OutcomeKind::Neutral,
            StreamEnd::Failed(message) => OutcomeKind::Failure(Failure {
                status: None,
                message,
                cooldown: None,
            }),
        };
        let record = usage_record(
            self.route.provider.id,
            &self.model,
            &kind,
            observer.usage,
            latency_ms,
        );
        report_outcome(&self.route, kind, latency_ms);
        report_usage(&self.usage, &self.stats, record);
    }
}

fn announce_switch(state: &AppState, from: &Route, to: &Route, why: Option<&AttemptFailure>) {
    state.metrics.count_failover();
    state.events.publish(
        Event::new(
            EventKind::ProviderSwitch,
            Severity::Medium,
            format!(
                "request moved from {} to {}",
                from.provider.name, to.provider.name
            ),
        )
        .provider(to.provider.id, &to.provider.name)
        .details(serde_json::json!({
            "from_provider_id": from.provider.id,
            "from_provider_name": from.provider.name,
            "reason": why.map(|f| f.message.as_str()),
        })),
    );
}

/// The error when no attempt succeeded: 504 after a timeout, 503 when providers are cooling
/// down or none is left, 502 otherwise; the last upstream error is in the message.
fn all_failed(
    model: &str,
    attempts: u32,
    last: Option<AttemptFailure>,
    cooling: Option<Duration>,
) -> ApiError {
    // The soonest a provider is free again: the pick's answer, or the cool-down the last
    // attempt just asked for (its actor may not have told the supervisor yet).
    let last_cooldown = last
        .as_ref()
        .and_then(|l| l.cooldown_ms)
        .map(Duration::from_millis);
    let cooling = match (cooling, last_cooldown) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, _) => a,
    };
    let retry_after_secs = cooling
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .map(|s| s.max(1));
    let Some(last) = last else {
        let message = match cooling {
            Some(_) => format!("every provider of `{model}` is cooling down after rate limits; retry later"),
            None => format!("no provider of `{model}` is left to try (all excluded)"),
        };
        return ApiError::Upstream {
            status: 503,
            message,
            retry_after_secs,
        };
    };
    let status = if cooling.is_some() || last.status == Some(429) {
        503
    } else if last.timed_out {
        504
    } else {
        502
    };
    let message = format!(
        "all {attempts} upstream attempt(s) for `{model}` failed; last error from provider {}: {}",
        last.provider,
        last.client_text()
    );
    ApiError::Upstream {
        status,
        message,
        retry_after_secs: retry_after_secs.or(last.cooldown_ms.map(|ms| ms.div_ceil(1000).max(1))),
    }
}

fn deadline_failure(last: Option<AttemptFailure>) -> AttemptFailure {
    let previous = last
        .as_ref()
        .map(|l| format!(" (before that: {})", l.client_text()))
        .unwrap_or_default();
    AttemptFailure {
        provider: last.as_ref().map(|l| l.provider.clone()).unwrap_or_default(),
        timed_out: true,
        status: None,
        message: format!("the request deadline passed{previous}"),
        cooldown_ms: None,
    }
}

/// `text/event-stream`, with or without parameters (`; charset=utf-8`).
fn is_event_stream(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// A cool-down in ms as a chrono duration (already capped by `routing.max_cooldown_ms`).
fn cooldown_duration(ms: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn status_code(status: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY)
}

fn body_error(e: BodyError) -> ApiError {
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

/// `x-switchyard-exclude-providers: 3,7`.
fn excluded_ids(req: &HttpRequest) -> Result<Vec<i64>, ApiError> {
    const EXCLUDE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-exclude-providers");
    let Some(v) = req.headers().get(EXCLUDE_HEADER) else {
        return Ok(Vec::new());
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("x-switchyard-exclude-providers must be ASCII"))?;
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "x-switchyard-exclude-providers: {s:?} is not a provider id"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_milliseconds_with_three_decimals() {
        assert_eq!(millis_header(Duration::from_micros(46)), "0.046");
        assert_eq!(millis_header(Duration::from_micros(12_345_678)), "12345.678");
        assert_eq!(millis_header(Duration::ZERO), "0.000");
    }
}
