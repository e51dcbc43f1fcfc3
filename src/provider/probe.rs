//! The real API call that checks a provider: a 1-token chat completion on its first model, or
//! `GET {base_url}/models`, as configured. Used by the retry timer, the background sweep and
//! forced checks.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::spec::ProviderConfig;
use crate::config::ProbeKind;
use crate::upstream::classify::{self, Class};

/// How probes are made.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    pub kind: ProbeKind,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// What a probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Cool-down asked for by a 429, in ms.
    #[serde(skip)]
    pub cooldown_ms: Option<u64>,
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

/// Calls the provider once and reports the outcome. Never fails: errors are the result.
pub async fn probe(config: &ProviderConfig, settings: ProbeSettings) -> ProbeResult {
    let client = client(settings.connect_timeout);
    let started = Instant::now();
    let sent = match settings.kind {
        ProbeKind::Models => {
            let mut req = client
                .get(format!("{}/models", config.base_url))
                .timeout(settings.timeout);
            if let Some(auth) = &config.wire.authorization {
                req = req.insert_header(("authorization", auth.clone()));
            }
            req.send().await
        }
        ProbeKind::Chat => {
            let model = config
                .models
                .first()
                .map(|m| m.upstream().unwrap_or(m.name()))
                .unwrap_or_default();
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            });
            let mut req = client
                .post(config.wire.chat_url.clone())
                .timeout(settings.timeout)
                .insert_header(("content-type", "application/json"));
            if let Some(auth) = &config.wire.authorization {
                req = req.insert_header(("authorization", auth.clone()));
            }
            req.send_body(body.to_string()).await
        }
    };
    let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = classify::retry_after(resp.headers());
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
                        cooldown_ms: None,
                    },
                    Err(e) => ProbeResult {
                        ok: false,
                        status: Some(status),
                        latency_ms,
                        error: Some(format!("reading the answer failed: {e}")),
                        cooldown_ms: None,
                    },
                };
            }
            let detail = body.map(|b| classify::error_summary(&b)).unwrap_or_default();
            let class = classify::status(status, &[]);
            ProbeResult {
                ok: false,
                status: Some(status),
                latency_ms,
                error: Some(format!("upstream answered {status}{detail}")),
                cooldown_ms: matches!(class, Class::RateLimited).then(|| retry_after.unwrap_or(1000)),
            }
        }
        Err(e) => ProbeResult {
            ok: false,
            status: None,
            latency_ms: elapsed(started),
            error: Some(classify::send_error_message(&e)),
            cooldown_ms: None,
        },
    }
}
