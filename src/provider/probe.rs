//! The real API call that checks a provider: a 1-token chat completion on its first model (a
//! 1-token `/messages` call for an Anthropic-kind provider), or `GET {base_url}/models`, as
//! configured. Used by the retry timer, the background sweep and
//! forced checks.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::kind::{Endpoint, ProviderKind};
use super::spec::ProviderConfig;
use crate::config::ProbeKind;
use crate::routing::failover::{AttemptError, Phase, StatusClass, classify_status, has_openai_error};
use crate::upstream::classify;
use crate::upstream::{ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_VERSION};

/// How probes are made.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    pub kind: ProbeKind,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Cool-down of a 429 without `Retry-After`, and the cap of one with it, in ms.
    pub default_cooldown_ms: u64,
    pub max_cooldown_ms: u64,
}

impl ProbeSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        ProbeSettings {
            kind: c.health_check.probe,
            timeout: Duration::from_millis(c.health_check.probe_timeout_ms),
            connect_timeout: Duration::from_millis(c.routing.connect_timeout_ms),
            default_cooldown_ms: c.routing.default_cooldown_ms,
            max_cooldown_ms: c.routing.max_cooldown_ms,
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Why it failed (when not `ok`), as health records it.
    #[serde(skip)]
    pub failure: Option<AttemptError>,
}

impl ProbeResult {
    fn failed(error: AttemptError, latency_ms: u64) -> Self {
        ProbeResult {
            ok: false,
            status: error.status(),
            latency_ms,
            error: Some(error.to_string()),
            failure: Some(error),
        }
    }
}

thread_local! {
    /// awc clients are bound to the thread that made them; probes run on the actors' arbiter,
    /// so that thread keeps one client (and one connection pool) for all of them.
    static CLIENT: std::cell::RefCell<Option<(Duration, awc::Client)>> = const { std::cell::RefCell::new(None) };
}

fn client(connect_timeout: Duration) -> awc::Client {
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((t, client)) if *t == connect_timeout => client.clone(),
            _ => {
                let client = crate::upstream::build_client(connect_timeout, 16);
                *c = Some((connect_timeout, client.clone()));
                client
            }
        }
    })
}

/// Whether a refusal still proves the provider reachable and our key accepted: a 4xx with an
/// OpenAI error body (an unsupported parameter such as `max_tokens` on a reasoning model, an
/// unknown model) is an answer from a working API. 401/403 (the key), 408, 429 and any 4xx
/// without such a body (a proxy's HTML page) are not.
fn reachable(status: u16, body: &[u8]) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429) && has_openai_error(body)
}

/// Calls the provider once and reports the outcome. Never fails: errors are the result.
pub async fn probe(config: &ProviderConfig, settings: ProbeSettings) -> ProbeResult {
    let client = if config.http2 {
        // Rare (one probe per interval): a client of its own rather than a kept one.
        crate::upstream::build_http2_client(settings.connect_timeout, 1)
    } else {
        client(settings.connect_timeout)
    };
    let started = Instant::now();
    let anthropic = config.kind == ProviderKind::Anthropic;
    let sent = match settings.kind {
        ProbeKind::Models => {
            let mut req = client
                .get(config.wire.models_url.clone())
                .timeout(settings.timeout);
            if let Some((name, value)) = &config.wire.credential {
                req = req.insert_header((name.clone(), value.clone()));
            }
            if anthropic {
                req = req.insert_header((ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_VERSION));
            }
            req.send().await
        }
        ProbeKind::Chat => {
            let model = config.probe_model.as_deref().unwrap_or_else(|| {
                config
                    .models
                    .first()
                    .map(|m| m.upstream().unwrap_or(m.name()))
                    .unwrap_or_default()
            });
            // The same 1-token question in the provider's own format.
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            });
            let endpoint = if anthropic {
                Endpoint::Messages
            } else {
                Endpoint::Chat
            };
            let mut req = client
                .post(config.wire.url(endpoint).clone())
                .timeout(settings.timeout)
                .insert_header(("content-type", "application/json"));
            if let Some((name, value)) = &config.wire.credential {
                req = req.insert_header((name.clone(), value.clone()));
            }
            if anthropic {
                req = req.insert_header((ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_VERSION));
            }
            req.send_body(body.to_string()).await
        }
    };
    let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = classify::retry_after(resp.headers(), chrono::Utc::now());
            let remaining = settings
                .timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            let mut resp = resp.timeout(remaining);
            let body = resp.body().limit(64 * 1024).await;
            let latency_ms = elapsed(started);
            if resp.status().is_success() {
                return match body {
                    Ok(_) => ProbeResult {
                        ok: true,
                        status: Some(status),
                        latency_ms,
                        error: None,
                        failure: None,
                    },
                    Err(awc::error::PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                        ProbeResult::failed(AttemptError::Timeout(Phase::Body), latency_ms)
                    }
                    Err(e) => ProbeResult::failed(AttemptError::BodyRead(e.to_string()), latency_ms),
                };
            }
            let body = body.unwrap_or_default();
            let detail = classify::error_summary(&body);
            if reachable(status, &body) {
                // A refusal from a working API: healthy, with the detail kept in `last_error`.
                return ProbeResult {
                    ok: true,
                    status: Some(status),
                    latency_ms,
                    error: Some(format!("upstream answered {status}{detail}")),
                    failure: None,
                };
            }
            let class = match classify_status(status, &body) {
                // A client-style refusal without an OpenAI error body proves nothing.
                StatusClass::ClientError | StatusClass::Success => StatusClass::ProviderError,
                class => class,
            };
            let cooldown_ms = (class == StatusClass::RateLimited).then(|| {
                classify::cooldown_ms(
                    retry_after,
                    settings.default_cooldown_ms,
                    settings.max_cooldown_ms,
                )
            });
            ProbeResult::failed(
                AttemptError::Status {
                    status,
                    class,
                    detail,
                    cooldown_ms,
                },
                latency_ms,
            )
        }
        Err(e) => ProbeResult::failed(classify::send_error(&e), elapsed(started)),
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn a_refusal_in_openai_shape_is_reachable() {
        let err =
            br#"{"error":{"message":"Unsupported parameter: 'max_tokens'","code":"unsupported_parameter"}}"#;
        assert!(reachable(400, err));
        assert!(reachable(404, err));
        assert!(!reachable(401, err));
        assert!(!reachable(403, err));
        assert!(!reachable(429, err));
        assert!(!reachable(400, b"<html>bad gateway</html>"));
        assert!(!reachable(500, err));
    }
}
