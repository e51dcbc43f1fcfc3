//! Routing one client request: pick a provider, make the attempt, judge its outcome, fail
//! over, and report every attempt exactly once. Every client route goes through [`run`].
//!
//! - [`failover`]: the rules, pure (the README's failover table, the attempt budget, the
//!   tried set, the one deadline, the final error).
//! - [`report`]: the guard that reports an attempt to health and usage exactly once.
//! - [`run`]: the loop that ties them to the routing table and to a route's [`Exchange`]
//!   (how to call one provider for this kind of request and read its answer).
//!
//! Handlers parse, build an `Exchange`, call `run`, and render its answer or its
//! [`RouteError`] in their API's shape.

pub mod failover;
pub mod report;

use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;

use crate::events::{Event, EventKind, Severity};
use crate::http::AppState;
use crate::provider::kind::{Endpoint, Service};
use crate::provider::spec::ProviderConfig;
use crate::supervisor::queue::QueueRefusal;
use crate::supervisor::routes::Refused;
use crate::supervisor::{PickResult, Route};
use crate::upstream::usage::TokenUsage;
pub use failover::{AttemptError, Budget, Failover, Phase, RouteError, StatusClass, Verdict};
pub use report::{AttemptReport, Settled};

/// How one attempt on one provider ended, as the route's exchange saw it.
pub enum Attempted<A, S> {
    /// A complete 2xx answer: a success.
    Answered { answer: A, usage: Option<TokenUsage> },
    /// The upstream refused the client's own request: returned as is, counts against nobody.
    ClientError(A),
    /// A stream whose first bytes arrived: committed to this provider (see [`Exchange::commit`]).
    Streaming(S),
    /// The provider failed; [`failover::judge`] decides what that means.
    Failed(AttemptError),
}

/// What one kind of client request does with one provider.
#[allow(async_fn_in_trait)] // used only on the worker's own thread, never boxed or sent
pub trait Exchange {
    /// What the handler answers with.
    type Answer;
    /// A stream whose first bytes arrived, before it is given its report.
    type Stream;

    /// Calls `route` once, ending by `deadline` (the attempt's budget, already cut to the
    /// request's deadline).
    async fn attempt(&mut self, route: &Route, deadline: Instant) -> Attempted<Self::Answer, Self::Stream>;

    /// Commits a stream to its provider. The stream must settle `report` once when it ends
    /// (dropping it settles it as neutral).
    fn commit(&mut self, stream: Self::Stream, report: AttemptReport) -> Self::Answer;
}

/// One request to route.
pub struct RouteRequest<'a> {
    /// The public model name the client asked for.
    pub model: &'a str,
    /// Provider ids the client excluded (`x-switchyard-exclude-providers`).
    pub exclude: Vec<i64>,
    /// When the request arrived: the deadline counts from here.
    pub started: Instant,
    /// Which providers may serve it (by endpoint and format); `None` admits all.
    pub serves: Option<Serves>,
    /// A provider to try first when it serves the model and is not excluded (the one that
    /// holds a Responses conversation).
    pub prefer: Option<i64>,
}

/// The providers that may serve a request: those offering `endpoint`, natively or (when
/// `translated`) through translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serves {
    pub endpoint: Endpoint,
    pub translated: bool,
}

impl Serves {
    pub fn admits(&self, provider: &ProviderConfig) -> bool {
        match provider.serves(self.endpoint) {
            Some(Service::Native) => true,
            Some(Service::Translated) => self.translated,
            None => false,
        }
    }
}

/// An answer some provider gave, with what the `x-switchyard-*` headers say.
pub struct Served<A> {
    pub answer: A,
    /// The answering provider's name, as a prepared header value.
    pub provider: HeaderValue,
    /// Attempts made, the answering one included.
    pub attempts: u32,
    /// Time spent waiting on upstreams, over all attempts.
    pub upstream_time: Duration,
}

/// Routes `req` through `exchange`: picks providers until one answers, the attempts run out,
/// or the deadline passes.
pub async fn run<E: Exchange>(
    state: &AppState,
    mut req: RouteRequest<'_>,
    exchange: &mut E,
) -> Result<Served<E::Answer>, RouteError> {
    let routing = &state.config.routing;
    let deadline = Duration::from_millis(routing.deadline_ms());
    let mut failover = Failover::new(req.started, deadline, routing.max_retries, req.exclude);
    let mut upstream_time = Duration::ZERO;
    let mut previous: Option<(Route, AttemptError)> = None;
    while failover.may_try_again() {
        let serves = req.serves;
        let admits = |c: &ProviderConfig| serves.is_none_or(|s| s.admits(c));
        let preferred = match req.prefer.take() {
            Some(id) => match state
                .routes
                .pick_where(req.model, failover.excluded(), |c| c.id == id && admits(c))
            {
                PickResult::Route(r) => Some(r),
                _ => None,
            },
            None => None,
        };
        let picked = match preferred {
            Some(r) => PickResult::Route(r),
            None => state.routes.pick_where(req.model, failover.excluded(), admits),
        };
        let route = match picked {
            PickResult::Route(r) => r,
            PickResult::UnknownModel => return Err(RouteError::UnknownModel(req.model.to_string())),
            PickResult::Exhausted => break,
            PickResult::CoolingDown(wait) => return Err(failover.give_up(req.model, Some(wait))),
            PickResult::AtLimit(hint) => {
                // Every candidate is at its limits: wait in the queue for the first free slot,
                // within the request's deadline.
                let left = (req.started + deadline).saturating_duration_since(Instant::now());
                let accept = move |c: &ProviderConfig| serves.is_none_or(|s| s.admits(c));
                match state
                    .routes
                    .wait(req.model, failover.excluded(), accept, left, hint)
                    .await
                {
                    Ok(PickResult::Route(r)) => r,
                    Ok(PickResult::UnknownModel) => {
                        return Err(RouteError::UnknownModel(req.model.to_string()));
                    }
                    Ok(PickResult::CoolingDown(wait)) => return Err(failover.give_up(req.model, Some(wait))),
                    Ok(PickResult::Exhausted | PickResult::AtLimit(_)) => break,
                    Err(refused) => return Err(queue_refused(req.model, refused)),
                }
            }
        };
        let own_timeout = Duration::from_millis(route.entry.config.timeout_ms);
        // One clock read for the attempt's start: its budget, its report and its latency.
        let t0 = Instant::now();
        let Some(budget) = failover.begin(route.entry.config.id, own_timeout, t0) else {
            break;
        };
        if let Some((from, why)) = previous.take() {
            announce_switch(state, &from, &route, &why);
        }
        let mut report = AttemptReport::start(state, &route, req.model, t0);
        // Within the request's deadline (`begin` cut the budget to it), so this cannot overflow.
        let result = exchange.attempt(&route, t0 + budget.timeout).await;
        let took = t0.elapsed();
        upstream_time += took;
        if matches!(result, Attempted::Answered { .. } | Attempted::Streaming(_)) {
            // A whole answer, or a stream's first byte: what the latency strategies rank by.
            route.entry.load.observe_latency(took);
        }
        let attempts = failover.attempts();
        let served = |answer| Served {
            answer,
            provider: route.entry.config.wire.name_header.clone(),
            attempts,
            upstream_time,
        };
        match result {
            Attempted::Answered { answer, usage } => {
                report.settle(Settled::Success(usage));
                return Ok(served(answer));
            }
            Attempted::ClientError(answer) => {
                report.settle(Settled::Neutral);
                return Ok(served(answer));
            }
            Attempted::Streaming(stream) => {
                let answer = exchange.commit(stream, report);
                return Ok(served(answer));
            }
            Attempted::Failed(error) => {
                log::debug!(
                    "attempt {} on provider {} failed: {error}",
                    failover.attempts(),
                    route.entry.config.name
                );
                let verdict = failover.failed(&route.entry.config.name, error.clone(), budget);
                report.settle(if verdict.counts {
                    Settled::Failure(error.clone())
                } else {
                    Settled::Neutral
                });
                if !verdict.fail_over {
                    break;
                }
                // Its slot is free now: the next pick, or a wait in the queue, must not hold it.
                previous = Some((
                    Route {
                        permit: None,
                        ..route
                    },
                    error,
                ));
            }
        }
    }
    Err(failover.give_up(req.model, None))
}

/// The 429 for a request the routing queue did not route.
fn queue_refused(model: &str, refused: Refused) -> RouteError {
    let d = refused.retry_after;
    let retry_after_secs = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
    let (code, message) = match refused.reason {
        QueueRefusal::Full => (
            "queue_full",
            format!(
                "every provider of `{model}` is at its limits and the routing queue is full; retry later"
            ),
        ),
        QueueRefusal::TimedOut => (
            "queue_timeout",
            format!("every provider of `{model}` stayed at its limits for the whole wait; retry later"),
        ),
    };
    RouteError::Queued {
        code,
        message,
        retry_after_secs,
    }
}

/// A request moved from one provider to the next: an event and a metric.
fn announce_switch(state: &AppState, from: &Route, to: &Route, why: &AttemptError) {
    state.metrics.count_failover();
    state.events.publish(
        Event::new(
            EventKind::ProviderSwitch,
            Severity::Medium,
            format!(
                "request moved from {} to {}",
                from.entry.config.name, to.entry.config.name
            ),
        )
        .provider(to.entry.config.id, &to.entry.config.name)
        .details(serde_json::json!({
            "from_provider_id": from.entry.config.id,
            "from_provider_name": from.entry.config.name,
            "reason": why.to_string(),
            "cause": why.cause(),
        })),
    );
}
