//! Calling upstream providers with awc.
//!
//! An `awc::Client` is bound to the thread that built it, so each HTTP worker keeps one per
//! provider (`clients`: a pool and a connection limit per provider) and the actors' thread
//! builds one for probes. A chat attempt sets no awc timeout: one timer of the caller's
//! bounds it whole (connection, head, body; see `http::forward`).

pub mod body;
pub mod classify;
pub mod clients;
pub mod json_members;
pub mod sse;
pub mod tls;
pub mod usage;

use std::time::Duration;

use awc::http::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use awc::{Client, ClientResponse, Connector};
use bytes::Bytes;

use crate::provider::kind::{Endpoint, ProviderKind};
use crate::provider::spec::ProviderConfig;

/// Anthropic's version header, as a prepared name: looking a header up by `&str` parses and
/// hashes the name again on every request.
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
/// Anthropic's beta-features header.
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// The Anthropic API version sent when the client named none.
pub const DEFAULT_ANTHROPIC_VERSION: HeaderValue = HeaderValue::from_static("2023-06-01");

/// Headers of the client's request that an Anthropic-kind upstream is given as they came:
/// `anthropic-version` (else [`DEFAULT_ANTHROPIC_VERSION`]) and `anthropic-beta`.
#[derive(Debug, Clone, Default)]
pub struct ClientHeaders {
    pub anthropic_version: Option<HeaderValue>,
    pub anthropic_beta: Option<HeaderValue>,
}

impl ClientHeaders {
    pub fn from_request(headers: &awc::http::header::HeaderMap) -> Self {
        ClientHeaders {
            anthropic_version: headers.get(ANTHROPIC_VERSION).cloned(),
            anthropic_beta: headers.get(ANTHROPIC_BETA).cloned(),
        }
    }
}

/// Sends one request to `endpoint` of a provider, with its kind's credential and headers, and
/// waits for the response head. No timer of awc's: the caller bounds the whole attempt.
pub async fn send_to(
    client: &Client,
    provider: &ProviderConfig,
    endpoint: Endpoint,
    body: Bytes,
    stream: bool,
    client_headers: &ClientHeaders,
) -> Result<ClientResponse, awc::error::SendRequestError> {
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
    let mut req = client.post(provider.wire.url(endpoint).clone());
    // Into the header map in place: the builder's `insert_header` moves the whole request
    // (several hundred bytes) at each call. The map starts empty (the client has no default
    // headers) and every name below is a different one, so `append` is `insert` without
    // the search for a value to replace.
    let headers = req.headers_mut();
    headers.append(CONTENT_TYPE, JSON);
    headers.append(ACCEPT, if stream { EVENT_STREAM } else { JSON });
    if let Some(host) = &provider.wire.host {
        headers.append(HOST, host.clone());
    }
    if let Some((name, value)) = &provider.wire.credential {
        headers.append(name.clone(), value.clone());
    }
    if provider.kind == ProviderKind::Anthropic {
        let version = client_headers
            .anthropic_version
            .clone()
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        headers.append(ANTHROPIC_VERSION, version);
        if let Some(beta) = &client_headers.anthropic_beta {
            headers.append(ANTHROPIC_BETA, beta.clone());
        }
    }
    req.send_body(body).await
}

/// Builds a client with a connect timeout and no default request timeout (each request sets
/// its own from the provider and the request's deadline).
///
/// Redirects are not followed: an API answering a POST with a redirect has a wrong `base_url`,
/// and following it would re-send the body and the key to wherever it points. The 3xx counts
/// as the provider's failure, like any other unusable answer. (awc's redirect layer would also
/// copy every request to be able to re-send it.)
///
/// TLS uses the installed trust store and offers HTTP/1.1 only (see `tls`).
pub fn build_client(connect_timeout: Duration, limit: usize) -> Client {
    client_with(tls::current(), connect_timeout, limit)
}

/// Like [`build_client`], for a provider that opted into HTTP/2: `h2` is offered first.
pub fn build_http2_client(connect_timeout: Duration, limit: usize) -> Client {
    client_with(tls::current_http2(), connect_timeout, limit)
}

fn client_with(tls: std::sync::Arc<rustls::ClientConfig>, connect_timeout: Duration, limit: usize) -> Client {
    let connector = Connector::new()
        .rustls_0_23(tls)
        .timeout(connect_timeout)
        .limit(limit);
    Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .finish()
}
