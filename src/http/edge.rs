//! The edge: what every request meets before its route, so that a web page the operator
//! happens to visit cannot drive the router, and slow or endless clients stay bounded.
//!
//! In order, for every route (new routes included, with nothing to register):
//! 1. **Listener split** (with `admin_listen`): the public address serves `/v1/*`,
//!    `/healthz` and `/readyz` only; the admin address serves everything but `/v1/*`
//!    (the admin API, the dashboard, `/metrics`). Anything else is 404.
//! 2. **Host**: on a loopback listener a `Host` that is not a loopback name (`localhost`,
//!    `*.localhost`, `127.0.0.0/8`, `[::1]`) nor in `allowed_hosts` is refused with 403: that
//!    is what a DNS-rebinding page sends. With `allowed_hosts` set, every listener checks it.
//! 3. **Origin**: a request with an `Origin` header is refused with 403 unless the origin is
//!    listed in `cors_allowed_origins` or is the router's own (its host and port equal the
//!    `Host`: the dashboard's own page). Listed origins get CORS answers, preflight included.
//! 4. **Content type**: `/v1/*` with `text/plain`, a form or multipart is 415: those are the
//!    types a page may send cross-site without a preflight, and no API client uses them.
//! 5. **Slow bodies**: the body must arrive within `client_body_timeout_ms` (408).
//! 6. **Long streams**: a `/v1` event stream is ended, with an SSE `error` event, after
//!    `max_stream_duration_ms` (when set).
//!
//! Every answer also gets `x-content-type-options: nosniff` and, when it sets no policy of
//! its own, `content-security-policy: frame-ancestors 'none'` (no page may frame the router).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Sleep;

use crate::config::Config;
use crate::error::ApiError;

/// The edge's settings, resolved once at start.
#[derive(Debug, Clone)]
pub struct EdgePolicy {
    /// Lower-case `scheme://host[:port]`.
    origins: Vec<String>,
    /// Lower-case host names, without ports.
    allowed_hosts: Vec<String>,
    /// The admin listener's address, when the admin API has its own.
    admin_addr: Option<SocketAddr>,
    body_timeout: Duration,
    max_stream: Option<Duration>,
}

impl EdgePolicy {
    pub fn new(config: &Config, admin_addr: Option<SocketAddr>) -> Self {
        EdgePolicy {
            origins: config
                .cors_allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            admin_addr,
            body_timeout: Duration::from_millis(config.client_body_timeout_ms),
            max_stream: config.max_stream_duration_ms.map(Duration::from_millis),
        }
    }
}

/// What the edge decided about a request, before its route runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; `cors` is the listed origin to answer CORS headers for.
    Pass { cors: Option<String> },
    /// A preflight for a listed origin: answer it here.
    Preflight { origin: String },
    /// Refuse with this error.
    Refuse(Refusal),
}

/// Why the edge refused a request.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Refusal {
    NotHere,
    Host,
    Origin,
    MediaType,
}

impl Refusal {
    fn error(self, path: &str) -> ApiError {
        match self {
            Refusal::NotHere => ApiError::NotFound(format!("no route for {path}")),
            Refusal::Host => ApiError::Forbidden {
                message: "the Host header names a host this router does not serve (allowed_hosts)".into(),
                code: "host_not_allowed",
            },
            Refusal::Origin => ApiError::Forbidden {
                message: "requests from this browser origin are not allowed (cors_allowed_origins)".into(),
                code: "origin_not_allowed",
            },
            Refusal::MediaType => ApiError::UnsupportedMediaType(
                "send the request body as JSON (content-type: application/json)".into(),
            ),
        }
    }
}

/// The facts of a request the edge decides on (pure, so it is tested without a server).
pub struct Facts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The address of the listener the request came in on.
    pub local: SocketAddr,
}

fn is_v1(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Served on the public listener when the admin API has its own.
fn public_path(path: &str) -> bool {
    is_v1(path) || path == "/healthz" || path == "/readyz"
}

/// `localhost`, `*.localhost`, and loopback addresses (`127.0.0.1`, `[::1]`).
fn loopback_name(host: &str) -> bool {
    // The names nearly every local client sends, before any parse (this runs on every
    // request to a loopback listener; parsing an address costs more than the rest).
    if matches!(host, "127.0.0.1" | "[::1]") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .len()
            .checked_sub(".localhost".len())
            .and_then(|at| host.get(at..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `Host` value, without its port, as written (compare it ignoring case). A
/// slice of the value: this runs on every request, and most are loopback names that need
/// no lower-case copy.
fn host_name(value: &str) -> &str {
    let v = value.trim();
    if v.starts_with('[') {
        // `[::1]:7070`; anything else after the bracket (`[::1].evil.com`) is not a port,
        // and the whole value is the name (which no check admits).
        return match v.find(']') {
            Some(end) if is_port_suffix(&v[end + 1..]) => &v[..=end],
            _ => v,
        };
    }
    match v.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => v,
    }
}

/// Nothing, or `:` and a port's digits.
fn is_port_suffix(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
}

impl EdgePolicy {
    /// The verdict on a request.
    pub fn decide(&self, f: &Facts<'_>) -> Verdict {
        if let Some(admin) = self.admin_addr {
            let elsewhere = if admin == f.local {
                is_v1(f.path)
            } else {
                !public_path(f.path)
            };
            if elsewhere {
                return Verdict::Refuse(Refusal::NotHere);
            }
        }
        let host = f.headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(host) = host {
            let name = host_name(host);
            let check = !self.allowed_hosts.is_empty() || f.local.ip().is_loopback();
            let allowed = || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name));
            if check && !loopback_name(name) && !allowed() {
                return Verdict::Refuse(Refusal::Host);
            }
        }
        let mut cors = None;
        if let Some(origin) = f.headers.get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let same_origin = host.is_some_and(|h| {
                origin
                    .split_once("://")
                    .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h.trim()))
            });
            let listed = self.origins.contains(&origin);
            if !listed && !same_origin {
                return Verdict::Refuse(Refusal::Origin);
            }
            if listed && !same_origin {
                if f.method == Method::OPTIONS
                    && f.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
                {
                    return Verdict::Preflight { origin };
                }
                cors = Some(origin);
            }
        }
        if is_v1(f.path) && simple_content_type(f.headers) {
            return Verdict::Refuse(Refusal::MediaType);
        }
        Verdict::Pass { cors }
    }
}

/// `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`: the types a
/// page may POST cross-site without a preflight.
fn simple_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]
    .iter()
    .any(|t| media.eq_ignore_ascii_case(t))
}

/// Methods a listed origin may use.
const CORS_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS");
/// The router's own headers a listed origin's script may read.
const CORS_EXPOSE: HeaderValue = HeaderValue::from_static(
    "x-switchyard-provider, x-switchyard-attempts, x-switchyard-overhead-ms, retry-after",
);
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_FRAMING: HeaderValue = HeaderValue::from_static("frame-ancestors 'none'");

/// The answer to a listed origin's preflight: the headers it asked for are allowed when they
/// are well-formed header names (SDKs send their own `x-stainless-*`, `anthropic-*`, …).
fn preflight(origin: &str, headers: &HeaderMap) -> HttpResponse {
    let mut resp = HttpResponse::NoContent();
    if let Ok(o) = HeaderValue::from_str(origin) {
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o));
    }
    resp.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600")))
        .insert_header((header::VARY, HeaderValue::from_static("Origin")));
    if let Some(asked) = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 2048)
        .filter(|v| {
            v.split(',')
                .all(|h| HeaderName::from_bytes(h.trim().as_bytes()).is_ok() || h.trim().is_empty())
        })
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked));
    }
    resp.finish()
}

/// The middleware (`App::wrap(from_fn(edge))`); the policy is `web::Data<EdgePolicy>`.
pub async fn edge<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<EitherBody<B, StreamCap<B>>>>, actix_web::Error> {
    let Some(policy) = req.app_data::<web::Data<EdgePolicy>>().cloned() else {
        // Not configured (an App without it): nothing to enforce.
        return Ok(next.call(req).await?.map_into_left_body().map_into_left_body());
    };
    let verdict = policy.decide(&Facts {
        method: req.method(),
        path: req.path(),
        headers: req.headers(),
        local: req.app_config().local_addr(),
    });
    let cors = match verdict {
        Verdict::Pass { cors } => cors,
        Verdict::Preflight { origin } => {
            let resp = preflight(&origin, req.headers());
            return Ok(req.into_response(resp).map_into_right_body());
        }
        Verdict::Refuse(why) => {
            let resp = why.error(req.path()).error_response();
            let mut res = req.into_response(resp).map_into_right_body();
            secure_headers(res.headers_mut());
            return Ok(res);
        }
    };
    if has_body(req.headers()) {
        let payload = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(BodyDeadline {
                inner: payload,
                limit: policy.body_timeout,
                sleep: None,
                yielded: false,
                expired: false,
            }),
        });
    }
    let v1 = is_v1(req.path());
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    secure_headers(headers);
    if let Some(origin) = cors.and_then(|o| HeaderValue::from_str(&o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    let is_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    match policy.max_stream {
        Some(limit) if v1 && is_stream && res.status() == StatusCode::OK => Ok(res
            .map_body(|_, body| {
                EitherBody::right(StreamCap {
                    inner: Some(body),
                    sleep: Box::pin(tokio::time::sleep(limit)),
                    at_boundary: true,
                    done: false,
                })
            })
            .map_into_left_body()),
        _ => Ok(res.map_into_left_body().map_into_left_body()),
    }
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, NO_FRAMING);
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A request body that must have arrived by a deadline; after it, the reader gets a
/// `TimedOut` error (answered 408).
///
/// The timer is armed only when the body is really waited for, so a body that is already
/// there (most are) costs none. The handler reads the body before the connection has handed
/// over the bytes that came with the head, so the first wait yields once instead: the task is
/// polled again after the hand-over, and only a body still missing then arms the timer. The
/// deadline counts from that arming.
struct BodyDeadline {
    inner: Payload,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The one free wait has been used.
    yielded: bool,
    expired: bool,
}

impl Stream for BodyDeadline {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        if this.sleep.is_none() && !this.yielded {
            // Once only: a body that never comes is bounded by the timer armed next time.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let limit = this.limit;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.expired = true;
                Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the request body did not arrive within {} ms (client_body_timeout_ms)",
                            this.limit.as_millis()
                        ),
                    ),
                ))))
            }
        }
    }
}

use std::future::Future;

/// The SSE event that ends a stream cut at `max_stream_duration_ms`.
const STREAM_CUT: &[u8] = b"event: error\ndata: {\"error\":{\"message\":\"the stream reached the router's \
maximum duration (max_stream_duration_ms)\",\"type\":\"server_error\",\"code\":\"stream_duration_exceeded\"}}\n\n";

/// A `/v1` event stream ended after `max_stream_duration_ms` with an SSE `error` event (on an
/// event boundary), the upstream stream dropped.
pub struct StreamCap<B> {
    inner: Option<B>,
    sleep: Pin<Box<Sleep>>,
    /// Whether what was sent so far ends an event (`\n\n`).
    at_boundary: bool,
    done: bool,
}

impl<B: MessageBody + Unpin> MessageBody for StreamCap<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.done = true;
            // Dropping the inner body ends the upstream call (reported like a client leaving).
            this.inner = None;
            let mut cut = Vec::with_capacity(STREAM_CUT.len() + 2);
            if !this.at_boundary {
                cut.extend_from_slice(b"\n\n");
            }
            cut.extend_from_slice(STREAM_CUT);
            return Poll::Ready(Some(Ok(Bytes::from(cut))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if !chunk.is_empty() {
                    this.at_boundary = chunk.ends_with(b"\n\n");
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(f: impl FnOnce(&mut Config)) -> EdgePolicy {
        let mut c = Config::default();
        f(&mut c);
        let admin = c.admin_listen.as_ref().map(|a| a.parse().unwrap());
        EdgePolicy::new(&c, admin)
    }

    fn decide(p: &EdgePolicy, method: Method, path: &str, local: &str, headers: &[(&str, &str)]) -> Verdict {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        p.decide(&Facts {
            method: &method,
            path,
            headers: &map,
            local: local.parse().unwrap(),
        })
    }

    const LO: &str = "127.0.0.1:7070";
    const PASS: Verdict = Verdict::Pass { cors: None };

    #[test]
    fn rebinding_hosts_are_refused_on_loopback() {
        let p = policy(|_| {});
        for ok in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LOCALHOST",
            "[::1]:7070",
            "app.localhost",
            "127.8.9.1",
        ] {
            assert_eq!(
                decide(&p, Method::GET, "/v1/models", LO, &[("host", ok)]),
                PASS,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:7070",
            "attacker.com",
            "10.0.0.1:7070",
            "localhost.evil.com",
            "127.0.0.1.evil.com",
            "[::1].evil.com",
            "",
        ] {
            assert_eq!(
                decide(&p, Method::GET, "/v1/models", LO, &[("host", bad)]),
                Verdict::Refuse(Refusal::Host),
                "{bad}"
            );
        }
        // Not loopback: any host, unless allowed_hosts is set.
        assert_eq!(
            decide(
                &p,
                Method::GET,
                "/v1/models",
                "10.0.0.5:7070",
                &[("host", "gw.corp")]
            ),
            PASS
        );
        let p = policy(|c| c.allowed_hosts = vec!["gw.corp".into()]);
        assert_eq!(
            decide(
                &p,
                Method::GET,
                "/v1/models",
                "10.0.0.5:7070",
                &[("host", "GW.corp:7070")]
            ),
            PASS
        );
        assert_eq!(
            decide(
                &p,
                Method::GET,
                "/v1/models",
                "10.0.0.5:7070",
                &[("host", "other.corp")]
            ),
            Verdict::Refuse(Refusal::Host)
        );
    }

    #[test]
    fn origins_must_be_listed_or_the_routers_own() {
        let p = policy(|c| c.cors_allowed_origins = vec!["https://app.example.com".into()]);
        let h = ("host", "127.0.0.1:7070");
        assert_eq!(
            decide(
                &p,
                Method::POST,
                "/v1/chat/completions",
                LO,
                &[h, ("origin", "https://evil.example")]
            ),
            Verdict::Refuse(Refusal::Origin)
        );
        assert_eq!(
            decide(&p, Method::GET, "/healthz", LO, &[h, ("origin", "null")]),
            Verdict::Refuse(Refusal::Origin)
        );
        assert_eq!(
            decide(
                &p,
                Method::POST,
                "/v1/chat/completions",
                LO,
                &[h, ("origin", "https://app.example.com")]
            ),
            Verdict::Pass {
                cors: Some("https://app.example.com".into())
            }
        );
        assert_eq!(
            decide(
                &p,
                Method::OPTIONS,
                "/v1/chat/completions",
                LO,
                &[
                    h,
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "POST")
                ]
            ),
            Verdict::Preflight {
                origin: "https://app.example.com".into()
            }
        );
        // The dashboard's own page: same host and port.
        assert_eq!(
            decide(
                &p,
                Method::PUT,
                "/api/providers/1",
                LO,
                &[h, ("origin", "http://127.0.0.1:7070")]
            ),
            PASS
        );
    }

    #[test]
    fn simple_content_types_are_refused_on_v1_only() {
        let p = policy(|_| {});
        for ct in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
        ] {
            assert_eq!(
                decide(
                    &p,
                    Method::POST,
                    "/v1/chat/completions",
                    LO,
                    &[("content-type", ct)]
                ),
                Verdict::Refuse(Refusal::MediaType),
                "{ct}"
            );
            assert_eq!(
                decide(&p, Method::POST, "/v1/messages", LO, &[("content-type", ct)]),
                Verdict::Refuse(Refusal::MediaType)
            );
        }
        for ct in ["application/json", "application/json; charset=utf-8"] {
            assert_eq!(
                decide(
                    &p,
                    Method::POST,
                    "/v1/chat/completions",
                    LO,
                    &[("content-type", ct)]
                ),
                PASS
            );
        }
        assert_eq!(decide(&p, Method::POST, "/v1/chat/completions", LO, &[]), PASS);
    }

    #[test]
    fn the_admin_listener_and_the_public_one_serve_apart() {
        let p = policy(|c| c.admin_listen = Some("127.0.0.1:7071".into()));
        let admin = "127.0.0.1:7071";
        for path in ["/api/providers", "/ui/", "/metrics", "/api/openapi.json"] {
            assert_eq!(
                decide(&p, Method::GET, path, LO, &[]),
                Verdict::Refuse(Refusal::NotHere),
                "{path}"
            );
            assert_eq!(decide(&p, Method::GET, path, admin, &[]), PASS, "{path}");
        }
        for path in ["/v1/models", "/v1/chat/completions"] {
            assert_eq!(decide(&p, Method::GET, path, LO, &[]), PASS);
            assert_eq!(
                decide(&p, Method::GET, path, admin, &[]),
                Verdict::Refuse(Refusal::NotHere)
            );
        }
        for path in ["/healthz", "/readyz"] {
            assert_eq!(decide(&p, Method::GET, path, LO, &[]), PASS);
            assert_eq!(decide(&p, Method::GET, path, admin, &[]), PASS);
        }
    }
}
