//! A scriptable upstream speaking OpenAI's and Anthropic's APIs, for Switchyard's integration
//! tests, README demo and benchmark.
//!
//! [`MockUpstream::start`] binds `127.0.0.1:0` and serves (each route also without `/v1`):
//!
//! * `POST /v1/chat/completions`: a chat completion whose content is `"Hello from <name>"`, or
//!   an SSE stream (`tok0 `, `tok1 `, …) when the body has `"stream": true`;
//! * `POST /v1/messages`: Anthropic's Messages API, plain and streamed (`message_start` …
//!   `message_stop`), errors as `{"type":"error","error":{"type","message"}}`; it requires
//!   `anthropic-version`, `model`, `messages` and `max_tokens` as Anthropic does, and
//!   `x-api-key` when [`Behavior::anthropic_api_key`] is set;
//! * `POST /v1/messages/count_tokens`: `{"input_tokens": <prompt_tokens>}`, with the same
//!   checks except `max_tokens`, and a `stream` member refused (ignored with
//!   [`Behavior::ignore_stream`]);
//! * `POST /v1/embeddings`: deterministic unit vectors, as floats or base64;
//! * `POST /v1/completions`: legacy text completions, plain and streamed;
//! * `POST /v1/responses`: the Responses API, plain and streamed (named events), echoing
//!   `previous_response_id`;
//! * `GET /v1/models` (also `/models`): the configured model list, in Anthropic's list shape
//!   when the request carries `anthropic-version`.
//!
//! A request listing tools gets a tool call (chat `tool_calls`, Anthropic `tool_use`) when
//! [`Behavior::call_tools`] is set or its `tool_choice` forces one.
//!
//! What it answers is a [`Behavior`] (status, latency, random failures, stalls, stream timing,
//! cuts and mid-stream error events) that can be swapped mid-test with
//! [`MockHandle::set_behavior`]; it applies to every route, or only to some with
//! [`Behavior::on`]. Every response carries `x-mock-name: <name>` so a caller can tell which
//! upstream answered; scripted failures answer in the route's own error shape.
//!
//! For demos, a plain healthy mock (status 200) also reacts to the requested model on every
//! POST route: `fail-<code>` answers `<code>`, `slow-<ms>ms` adds latency, and
//! `mock-bad-request` always answers a `400 invalid_request_error`; on the chat route
//! `spaced-<ms>ms` streams its chunks `<ms>` apart.
//!
//! The chat hot path is built for benchmarks: response fragments are precomputed per
//! behaviour, the behaviour is read with one uncontended read lock, and recording can be
//! turned off. The other routes build their answers per request.

mod anthropic;
mod behavior;
mod completions;
mod embeddings;
mod responses;
mod script;
mod server;
mod sse;
mod tools;

use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use tokio::task::JoinHandle;

pub use crate::behavior::{Behavior, Endpoint, STALL_LIMIT_MS};
use crate::server::Shared;

/// One request received by the mock (kept only while recording is on).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method (`"POST"`, `"GET"`).
    pub method: String,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// Every request header (lower-case names), in received order.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Null` for GET, a JSON string holding the raw text if it was not JSON.
    pub body: serde_json::Value,
    /// When the request reached the handler.
    pub at: Instant,
    /// The protocol it came over: `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Everything [`MockUpstream::start_with`] can be told.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Shown in answers (`"Hello from <name>"`) and in the `x-mock-name` header.
    pub name: String,
    /// Interface to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind; 0 (default) picks a free one.
    pub port: u16,
    /// actix worker threads (default 1).
    pub workers: usize,
    /// Whether requests are recorded (default true; turn off for benchmarks).
    pub record: bool,
    /// Initial behaviour.
    pub behavior: Behavior,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 offered) with this certificate chain and key (PEM
    /// files); `base_url` then says `https://`.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            name: "mock".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 0,
            workers: 1,
            record: true,
            behavior: Behavior::default(),
            tls: None,
        }
    }
}

impl MockOptions {
    /// Defaults with the given name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// A cheap, cloneable, `Send + Sync` view of a running mock: change its behaviour and read what
/// it received from anywhere (other tasks, threads, closures).
#[derive(Clone, Debug)]
pub struct MockHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
}

impl MockHandle {
    /// The mock's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the value to configure as an upstream base URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v1", self.scheme, self.addr)
    }

    /// Replaces the behaviour; takes effect on the next request.
    pub fn set_behavior(&self, b: Behavior) {
        self.shared.set_behavior(b);
    }

    /// The current behaviour.
    pub fn behavior(&self) -> Behavior {
        self.shared.current().behavior.clone()
    }

    /// Chat-completion requests received (counted on arrival, before any latency or failure).
    pub fn chat_hits(&self) -> u64 {
        self.shared.hits(Endpoint::Chat)
    }

    /// `GET /v1/models` requests received.
    pub fn models_hits(&self) -> u64 {
        self.shared.hits(Endpoint::Models)
    }

    /// Requests received on endpoint `e` (counted on arrival, before any latency or failure).
    pub fn hits(&self, e: Endpoint) -> u64 {
        self.shared.hits(e)
    }

    /// Recorded requests to endpoint `e`, in arrival order.
    pub fn requests_to(&self, e: Endpoint) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.path.ends_with(e.path())
                    && (e != Endpoint::Completions || !r.path.ends_with("/chat/completions"))
            })
            .collect()
    }

    /// Recorded requests in arrival order (the most recent 100 000 at most).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Recorded chat-completion bodies in arrival order (a shortcut over [`Self::requests`]).
    pub fn chat_bodies(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .map(|r| r.body)
            .collect()
    }

    /// Turns request recording on or off.
    pub fn set_recording(&self, on: bool) {
        self.shared.record.store(on, Relaxed);
    }

    /// Zeroes every hit counter and clears the request log.
    pub fn reset_counters(&self) {
        self.shared.reset();
    }
}

/// A running mock upstream. Dropping it stops the server (without waiting); prefer
/// [`MockUpstream::stop`] to wait for it.
///
/// Its methods mirror [`MockHandle`]'s; use [`MockUpstream::handle`] to share it.
#[derive(Debug)]
pub struct MockUpstream {
    handle: MockHandle,
    server: ServerHandle,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` with one worker and recording on, and starts serving.
    ///
    /// Must be called inside a Tokio runtime (`#[actix_rt::test]`, `#[actix_web::main]`, an
    /// actix `System`, or a Tokio runtime); the server task is spawned on it. Returns once the
    /// socket is bound: connections made right away wait in the listen backlog until the
    /// worker is up.
    pub async fn start(name: &str, behavior: Behavior) -> io::Result<MockUpstream> {
        Self::start_with(MockOptions {
            behavior,
            ..MockOptions::new(name)
        })
        .await
    }

    /// Starts a mock with full control over address, workers and recording.
    pub async fn start_with(opts: MockOptions) -> io::Result<MockUpstream> {
        let shared = Arc::new(Shared::new(&opts.name, opts.behavior, opts.record)?);
        let data = web::Data::from(shared.clone());
        let http = HttpServer::new(move || {
            App::new()
                .configure(server::configure(data.clone()))
                .default_service(web::to(server::not_found))
        })
        .workers(opts.workers.max(1))
        // Spaced stream events must leave when written, not after the peer's delayed ACK.
        .tcp_nodelay(true)
        // Tests own the process's signals; stopping is explicit (stop() or Drop).
        .disable_signals()
        .shutdown_timeout(0);
        let (http, scheme) = match &opts.tls {
            None => (http.bind((opts.host.as_str(), opts.port))?, "http"),
            Some((cert, key)) => (
                http.bind_rustls_0_23((opts.host.as_str(), opts.port), tls_config(cert, key)?)?,
                "https",
            ),
        };
        let addr = http
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no bound address"))?;
        let srv = http.run();
        let server = srv.handle();
        let task = tokio::spawn(srv);
        Ok(MockUpstream {
            handle: MockHandle { shared, addr, scheme },
            server,
            task: Some(task),
        })
    }

    /// A cloneable, `Send` handle on this mock's state.
    pub fn handle(&self) -> MockHandle {
        self.handle.clone()
    }

    /// The mock's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// `http://<addr>/v1`.
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// Replaces the behaviour; takes effect on the next request.
    pub fn set_behavior(&self, b: Behavior) {
        self.handle.set_behavior(b);
    }

    /// The current behaviour.
    pub fn behavior(&self) -> Behavior {
        self.handle.behavior()
    }

    /// Chat-completion requests received (counted on arrival, before any latency or failure).
    pub fn chat_hits(&self) -> u64 {
        self.handle.chat_hits()
    }

    /// `GET /v1/models` requests received.
    pub fn models_hits(&self) -> u64 {
        self.handle.models_hits()
    }

    /// Recorded requests in arrival order (the most recent 100 000 at most).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.handle.requests()
    }

    /// Recorded chat-completion bodies in arrival order.
    pub fn chat_bodies(&self) -> Vec<serde_json::Value> {
        self.handle.chat_bodies()
    }

    /// Requests received on endpoint `e`.
    pub fn hits(&self, e: Endpoint) -> u64 {
        self.handle.hits(e)
    }

    /// Recorded requests to endpoint `e`, in arrival order.
    pub fn requests_to(&self, e: Endpoint) -> Vec<RecordedRequest> {
        self.handle.requests_to(e)
    }

    /// Turns request recording on or off.
    pub fn set_recording(&self, on: bool) {
        self.handle.set_recording(on);
    }

    /// Zeroes every hit counter and clears the request log.
    pub fn reset_counters(&self) {
        self.handle.reset_counters();
    }

    /// Stops the server (in-flight requests are dropped) and returns once it has stopped.
    pub async fn stop(mut self) {
        self.server.stop(false).await;
        if let Some(task) = self.task.take() {
            // The server's own result is irrelevant here: it is stopping either way.
            let _ = task.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // The stop command is sent synchronously; the returned future only waits for it.
        drop(self.server.stop(false));
    }
}

/// The server TLS configuration from PEM files (the first certificate chain and key).
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> io::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))
}
