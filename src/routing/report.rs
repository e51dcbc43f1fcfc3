//! Reporting an attempt exactly once: to its provider's health and to usage.
//!
//! An [`AttemptReport`] is made when an attempt starts and is settled once: as a success,
//! as neutral (the client's own error, a client that left, the router's own limit) or as a
//! counted failure. If nobody settles it (the request's future was dropped while it waited on
//! the upstream: a client gone, shutdown past its grace period), `Drop` settles it as neutral,
//! so "every upstream attempt is one usage record" holds whatever happens to the request.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::failover::AttemptError;
use crate::http::AppState;
use crate::provider::health::Failure;
use crate::provider::load::InflightGuard;
use crate::provider::{DrainSuccesses, Outcome, OutcomeKind};
use crate::stats::{UsageQueue, UsageRecord, UsageResult};
use crate::supervisor::Route;
use crate::upstream::sse::{SseObserver, StreamEnd, StreamReport};
use crate::upstream::usage::TokenUsage;

/// How an attempt is settled.
#[derive(Debug)]
pub enum Settled {
    Success(Option<TokenUsage>),
    /// Counts against nobody.
    Neutral,
    /// Counts against the provider.
    Failure(AttemptError),
}

/// One attempt not yet reported. Holds the provider in flight until it is settled.
pub struct AttemptReport {
    inner: Option<Inner>,
}

struct Inner {
    route: Route,
    model: String,
    started: Instant,
    usage: Arc<UsageQueue>,
    _inflight: InflightGuard,
}

impl AttemptReport {
    /// An attempt of `model` on `route`, starting at `started` (now).
    pub(super) fn start(state: &AppState, route: &Route, model: &str, started: Instant) -> Self {
        AttemptReport {
            inner: Some(Inner {
                _inflight: route.entry.load.start(),
                route: route.clone(),
                model: model.to_string(),
                started,
                usage: state.usage.clone(),
            }),
        }
    }

    /// Reports the attempt; later calls (and `Drop`) do nothing.
    pub fn settle(&mut self, how: Settled) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let now = Instant::now();
        let took = now.saturating_duration_since(inner.started);
        let latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let (kind, result, tokens) = match how {
            Settled::Success(tokens) => (OutcomeKind::Success { status: 200 }, UsageResult::Success, tokens),
            Settled::Neutral => (OutcomeKind::Neutral, UsageResult::Neutral, None),
            Settled::Failure(error) => (
                OutcomeKind::Failure(Failure { error }),
                UsageResult::Failure,
                None,
            ),
        };
        // Health: a success goes into the provider's shared counter (ringing its actor only
        // when the counter was empty); anything else is a message, handled at once because
        // it may change routing.
        match kind {
            OutcomeKind::Success { .. } => {
                if inner.route.entry.load.add_success(latency_ms) {
                    inner.route.entry.actor.do_send(DrainSuccesses);
                }
            }
            other => inner.route.entry.actor.do_send(Outcome {
                kind: other,
                latency_ms,
            }),
        }
        // Usage: into the shared queue, which rings the stats actor only when it was empty.
        let t = tokens.unwrap_or_default();
        // Tokens count against the provider's `tpm` budget.
        inner.route.entry.limiter.add_tokens(t.total_tokens, now);
        let record = UsageRecord {
            provider_id: inner.route.entry.config.id,
            model: inner.model,
            at: Utc::now(),
            result,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            total_tokens: t.total_tokens,
            latency_ms,
        };
        inner.usage.push(record);
    }
}

impl Drop for AttemptReport {
    fn drop(&mut self) {
        self.settle(Settled::Neutral);
    }
}

/// A committed stream settles its attempt when it ends (see `ObservedStream`).
impl StreamReport for AttemptReport {
    fn finish(mut self: Box<Self>, end: StreamEnd, observer: &SseObserver) {
        self.settle(match end {
            StreamEnd::Completed => Settled::Success(observer.usage),
            StreamEnd::ClientGone => Settled::Neutral,
            StreamEnd::Failed(error) => Settled::Failure(error),
        });
    }
}
