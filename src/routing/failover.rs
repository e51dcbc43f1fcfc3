//! The failover rules (README "Failover rules", docs/DESIGN.md §3), as pure logic with no
//! clock of its own: every instant is passed in, so each rule is a unit test.
//!
//! | how an attempt ended ([`AttemptError`]) | counts against the provider | tries another |
//! |---|---|---|
//! | 2xx | – (a success) | – |
//! | 400, 413, 415, 422; 404 with an OpenAI error body | no: the client's own fault, returned as is | no |
//! | `Status` 404 without such a body, 401/403, 408, 5xx, any other status | yes | yes |
//! | `Status` 429 | yes, and cools down for `Retry-After` (else `default_cooldown_ms`, at most `max_cooldown_ms`) | yes |
//! | `Connect`, `Timeout` | yes | yes |
//! | `Timeout` when the request's deadline, not the provider's own timeout, cut it short | no | no: no time is left |
//! | `TooLarge` (a 2xx answer over `max_response_bytes`) | no: the router's own limit | no: another would send the same |
//! | `NotAStream` (a 2xx answer to a stream request that is not `text/event-stream`) | yes | yes |
//! | `StreamBroke`, `StreamEmpty`, `BodyRead` before anything reached the client | yes | yes |
//! | any failure after a stream was committed | yes | no: the client has the first bytes |
//!
//! And around every attempt: a request never goes to a provider it already tried (nor to one
//! its `x-switchyard-exclude-providers` names), makes at most `max_retries` further attempts,
//! and all of them share one deadline ([`Failover`]). The final answer when none served is a
//! [`RouteError`], which each API renders in its own error shape.

use std::fmt;
use std::time::{Duration, Instant};

/// What an upstream status means, before anything else about the answer is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    /// The upstream refused the client's own request: returned to the client as is.
    ClientError,
    /// 401/403: the provider refused the router's key.
    AuthRefused,
    /// 429: the provider wants a rest.
    RateLimited,
    /// 408, 5xx, a bare 404 (a wrong base URL), anything else.
    ProviderError,
}

/// Classifies an upstream status; `body` is the (start of the) answer, read only for 404.
pub fn classify_status(status: u16, body: &[u8]) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        400 | 413 | 415 | 422 => StatusClass::ClientError,
        404 if has_openai_error(body) => StatusClass::ClientError,
        401 | 403 => StatusClass::AuthRefused,
        429 => StatusClass::RateLimited,
        _ => StatusClass::ProviderError,
    }
}

/// True when the body is an OpenAI-style error (`{"error": {...}}`): the upstream understood
/// the request well enough to refuse it in its own format.
pub fn has_openai_error(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: serde_json::Value,
    }
    serde_json::from_slice::<Envelope>(body).is_ok_and(|e| e.error.is_object())
}

/// Where in an attempt time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the connection.
    Connect,
    /// Waiting for the response head.
    Head,
    /// Reading a plain answer's body.
    Body,
    /// Waiting for a stream's first bytes.
    FirstChunk,
    /// Between two chunks of a committed stream.
    Idle,
}

/// How one upstream attempt failed. Carried as is to health (the provider actor), events,
/// metrics and the client's final answer; turned into text only at those edges.
///
/// Any upstream text inside (`detail`) is already scrubbed of key-like tokens and capped
/// (`upstream::classify::error_summary`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    /// No connection: refused, reset, DNS, TLS.
    Connect(String),
    /// The connection failed while the request was sent or the answer's head was read.
    Transport(String),
    /// The provider did not answer in time.
    Timeout(Phase),
    /// An error status that is the provider's (never `ClientError`, which is an answer).
    Status {
        status: u16,
        class: StatusClass,
        /// `": message"` from the upstream's body, scrubbed; may be empty.
        detail: String,
        /// For a 429: the cool-down, already capped at `max_cooldown_ms`.
        cooldown_ms: Option<u64>,
    },
    /// A 2xx answer over `max_response_bytes`: the router's own limit.
    TooLarge { limit: usize },
    /// A 2xx answer to a stream request that is not `text/event-stream`.
    NotAStream { content_type: String },
    /// The stream broke (a transport error, or one event over the per-event bound).
    StreamBroke(String),
    /// The stream ended before its first byte, or (committed) before its end marker.
    StreamEnded { committed: bool },
    /// Reading a plain answer failed midway.
    BodyRead(String),
    /// The request's deadline passed before another attempt could start.
    Deadline,
}

impl AttemptError {
    /// A stable name of the cause, for events, metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            AttemptError::Connect(_) => "connect",
            AttemptError::Transport(_) => "transport",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Status { class, .. } => match class {
                StatusClass::AuthRefused => "auth_refused",
                StatusClass::RateLimited => "rate_limited",
                _ => "provider_error",
            },
            AttemptError::TooLarge { .. } => "too_large",
            AttemptError::NotAStream { .. } => "not_a_stream",
            AttemptError::StreamBroke(_) => "stream_broke",
            AttemptError::StreamEnded { .. } => "stream_ended",
            AttemptError::BodyRead(_) => "body_read",
            AttemptError::Deadline => "deadline",
        }
    }

    /// The upstream's HTTP status, where there was one worth recording.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the provider must rest (a 429).
    pub fn cooldown_ms(&self) -> Option<u64> {
        match self {
            AttemptError::Status { cooldown_ms, .. } => *cooldown_ms,
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, AttemptError::Timeout(_) | AttemptError::Deadline)
    }

    /// What a client may read. The operator's text (`Display`) except for 401/403, whose
    /// upstream text quotes the key the provider was sent: that stays with the operator.
    pub fn client_text(&self) -> String {
        match self {
            AttemptError::Status {
                status,
                class: StatusClass::AuthRefused,
                ..
            } => format!("upstream answered {status}: the provider refused the router's credentials"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Connect(detail) => write!(f, "cannot connect to the upstream: {detail}"),
            AttemptError::Transport(detail) => write!(f, "upstream request failed: {detail}"),
            AttemptError::Timeout(phase) => f.write_str(match phase {
                Phase::Connect => "connecting to the upstream timed out",
                Phase::Head => "upstream timed out before answering",
                Phase::Body => "upstream timed out while sending its answer",
                Phase::FirstChunk => "upstream timed out before its first stream chunk",
                Phase::Idle => "the upstream stream stalled",
            }),
            AttemptError::Status { status, detail, .. } => write!(f, "upstream answered {status}{detail}"),
            AttemptError::TooLarge { limit } => write!(
                f,
                "the upstream answer is larger than the router's limit of {limit} bytes (routing.max_response_bytes)"
            ),
            AttemptError::NotAStream { content_type } => write!(
                f,
                "the upstream answered a stream request with content type {content_type:?}, not text/event-stream"
            ),
            AttemptError::StreamBroke(detail) => write!(f, "the upstream stream broke: {detail}"),
            AttemptError::StreamEnded { committed: false } => {
                f.write_str("the upstream stream ended without data")
            }
            AttemptError::StreamEnded { committed: true } => {
                f.write_str("the upstream stream ended early, before its end marker")
            }
            AttemptError::BodyRead(detail) => write!(f, "reading the upstream answer failed: {detail}"),
            AttemptError::Deadline => f.write_str("the request deadline passed"),
        }
    }
}

/// What a failed attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// It counts against the provider's health (else it is neutral).
    pub counts: bool,
    /// The request moves on to another provider (else it ends with this error).
    pub fail_over: bool,
}

/// The time one attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub timeout: Duration,
    /// The request's deadline, not the provider's own timeout, set `timeout`: a timeout then
    /// says nothing about the provider.
    pub cut_by_deadline: bool,
}

/// Judges a failed attempt made within `budget` (the table in the module doc).
pub fn judge(error: &AttemptError, budget: Budget) -> Verdict {
    match error {
        AttemptError::Timeout(_) if budget.cut_by_deadline => Verdict {
            counts: false,
            fail_over: false,
        },
        AttemptError::TooLarge { .. } => Verdict {
            counts: false,
            fail_over: false,
        },
        AttemptError::Deadline => Verdict {
            counts: false,
            fail_over: false,
        },
        AttemptError::StreamEnded { committed: true } => Verdict {
            counts: true,
            fail_over: false,
        },
        _ => Verdict {
            counts: true,
            fail_over: true,
        },
    }
}

/// The last failure, for the final answer.
#[derive(Debug, Clone)]
struct Last {
    provider: String,
    error: AttemptError,
    /// For `Deadline`: the failure before it, if any, which the client is told too.
    before: Option<Box<AttemptError>>,
}

/// One request's attempts: the budget of attempts, the providers already tried (and those the
/// client excluded), the one deadline, and the last failure.
#[derive(Debug)]
pub struct Failover {
    deadline: Instant,
    max_attempts: u32,
    attempts: u32,
    excluded: Vec<i64>,
    last: Option<Last>,
}

impl Failover {
    /// A request that started at `started`, may take `deadline` in all, and may make
    /// `max_retries` further attempts after the first; `excluded` are ids never to use.
    pub fn new(started: Instant, deadline: Duration, max_retries: u32, excluded: Vec<i64>) -> Self {
        Failover {
            deadline: started
                .checked_add(deadline)
                .unwrap_or(started + Duration::from_secs(86_400)),
            max_attempts: max_retries.saturating_add(1),
            attempts: 0,
            excluded,
            last: None,
        }
    }

    /// Ids no attempt may use: the client's exclusions and every provider already tried.
    pub fn excluded(&self) -> &[i64] {
        &self.excluded
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether another attempt is allowed by the count (the deadline is checked by `begin`).
    pub fn may_try_again(&self) -> bool {
        self.attempts < self.max_attempts
    }

    /// Starts an attempt on `provider_id`, whose own timeout is `provider_timeout`, at `now`.
    /// `None` when the deadline has passed (recorded as the last failure).
    pub fn begin(&mut self, provider_id: i64, provider_timeout: Duration, now: Instant) -> Option<Budget> {
        let Some(left) = self.deadline.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            let before = self.last.take();
            self.last = Some(Last {
                provider: before.as_ref().map(|l| l.provider.clone()).unwrap_or_default(),
                error: AttemptError::Deadline,
                before: before.map(|l| Box::new(l.error)),
            });
            return None;
        };
        self.attempts += 1;
        self.excluded.push(provider_id);
        Some(Budget {
            timeout: provider_timeout.min(left),
            cut_by_deadline: left < provider_timeout,
        })
    }

    /// Records a failed attempt of `provider` and says what it means.
    pub fn failed(&mut self, provider: &str, error: AttemptError, budget: Budget) -> Verdict {
        let verdict = judge(&error, budget);
        self.last = Some(Last {
            provider: provider.to_string(),
            error,
            before: None,
        });
        verdict
    }

    /// The final error, once no attempt served: `cooling` is how long until the soonest
    /// provider of the model is free, when every one left is cooling down.
    pub fn give_up(self, model: &str, cooling: Option<Duration>) -> RouteError {
        if let Some(Last {
            error: AttemptError::TooLarge { limit },
            ..
        }) = self.last
        {
            return RouteError::TooLarge { limit };
        }
        // The soonest a provider is free again: the pick's answer, or the cool-down the last
        // attempt just asked for (its actor may not have told the routing table yet).
        let last_cooldown = self
            .last
            .as_ref()
            .and_then(|l| l.error.cooldown_ms())
            .map(Duration::from_millis);
        let soonest = match (cooling, last_cooldown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let retry_after_secs = soonest.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1));
        let attempts = self.attempts;
        let Some(last) = self.last else {
            let (status, message) = match cooling {
                Some(_) => (
                    503,
                    format!("every provider of `{model}` is cooling down after rate limits; retry later"),
                ),
                None => (
                    503,
                    format!("no provider of `{model}` is left to try (all excluded)"),
                ),
            };
            return RouteError::Failed {
                status,
                message,
                retry_after_secs,
            };
        };
        let status = if cooling.is_some() || matches!(last.error.status(), Some(429)) {
            503
        } else if last.error.is_timeout() {
            504
        } else {
            502
        };
        let mut text = last.error.client_text();
        if let Some(before) = &last.before {
            text = format!("{text} (before that: {})", before.client_text());
        }
        let message = format!(
            "all {attempts} upstream attempt(s) for `{model}` failed; last error from provider {}: {text}",
            last.provider
        );
        RouteError::Failed {
            status,
            message,
            retry_after_secs,
        }
    }
}

/// Why a request got no answer from any provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No enabled provider serves the model (404).
    UnknownModel(String),
    /// An answer was over the router's `max_response_bytes` (502, not failed over).
    TooLarge { limit: usize },
    /// Every attempt failed, or none could be made: 502, 503 (cooling, none left, or the
    /// last was rate limited) or 504 (the last timed out, or the deadline passed).
    Failed {
        status: u16,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// Every provider stayed at its limits: the routing queue was full (`queue_full`) or the
    /// wait ran out (`queue_timeout`). 429 with `Retry-After`.
    Queued {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::UnknownModel(_) => 404,
            RouteError::TooLarge { .. } => 502,
            RouteError::Failed { status, .. } => *status,
            RouteError::Queued { .. } => 429,
        }
    }

    /// The stable error code (OpenAI's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::UnknownModel(_) => "model_not_found",
            RouteError::TooLarge { .. } => "upstream_response_too_large",
            RouteError::Failed { status: 504, .. } => "upstream_timeout",
            RouteError::Failed { status: 503, .. } => "no_provider_available",
            RouteError::Failed { .. } => "upstream_error",
            RouteError::Queued { code, .. } => code,
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RouteError::Failed { retry_after_secs, .. } => *retry_after_secs,
            RouteError::Queued { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::UnknownModel(model) => {
                write!(f, "the model `{model}` is not served by any enabled provider")
            }
            RouteError::TooLarge { limit } => write!(
                f,
                "the upstream answer is larger than the router's limit of {limit} bytes (routing.max_response_bytes)"
            ),
            RouteError::Failed { message, .. } | RouteError::Queued { message, .. } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of the failover table, and the loop's rules, on a clock the tests
    //! move by hand (`Instant`s passed in).
    use super::*;

    const OWN: Duration = Duration::from_secs(30);

    fn full_budget() -> Budget {
        Budget {
            timeout: OWN,
            cut_by_deadline: false,
        }
    }

    fn status(code: u16) -> AttemptError {
        let class = classify_status(code, b"");
        AttemptError::Status {
            status: code,
            class,
            detail: String::new(),
            cooldown_ms: None,
        }
    }

    fn counts_and_fails_over(e: &AttemptError) -> bool {
        judge(e, full_budget())
            == Verdict {
                counts: true,
                fail_over: true,
            }
    }

    #[test]
    fn row_2xx_is_a_success() {
        assert_eq!(classify_status(200, b""), StatusClass::Success);
        assert_eq!(classify_status(204, b""), StatusClass::Success);
    }

    #[test]
    fn row_client_errors_are_returned_as_is() {
        for code in [400, 413, 415, 422] {
            assert_eq!(classify_status(code, b""), StatusClass::ClientError, "{code}");
        }
        let openai = br#"{"error":{"message":"no such model","code":"model_not_found"}}"#;
        assert_eq!(classify_status(404, openai), StatusClass::ClientError);
    }

    #[test]
    fn row_a_bare_404_counts_and_fails_over() {
        assert_eq!(
            classify_status(404, b"<html>not found</html>"),
            StatusClass::ProviderError
        );
        assert!(counts_and_fails_over(&status(404)));
    }

    #[test]
    fn row_401_403_count_and_fail_over_without_quoting_the_upstream() {
        for code in [401, 403] {
            assert_eq!(classify_status(code, b""), StatusClass::AuthRefused);
            let e = AttemptError::Status {
                status: code,
                class: StatusClass::AuthRefused,
                detail: ": Incorrect API key provided: sk-[redacted]".into(),
                cooldown_ms: None,
            };
            assert!(counts_and_fails_over(&e));
            assert_eq!(e.cause(), "auth_refused");
            assert!(!e.client_text().contains("Incorrect"), "{}", e.client_text());
            assert!(
                e.to_string().contains("Incorrect"),
                "the operator keeps the detail"
            );
        }
    }

    #[test]
    fn row_429_counts_fails_over_and_carries_its_cool_down() {
        assert_eq!(classify_status(429, b""), StatusClass::RateLimited);
        let e = AttemptError::Status {
            status: 429,
            class: StatusClass::RateLimited,
            detail: String::new(),
            cooldown_ms: Some(1500),
        };
        assert!(counts_and_fails_over(&e));
        assert_eq!(e.cooldown_ms(), Some(1500));
        assert_eq!(e.cause(), "rate_limited");
    }

    #[test]
    fn row_408_5xx_and_any_other_status_count_and_fail_over() {
        for code in [408, 500, 502, 503, 504, 529, 302, 418] {
            assert_eq!(classify_status(code, b""), StatusClass::ProviderError, "{code}");
            assert!(counts_and_fails_over(&status(code)), "{code}");
        }
    }

    #[test]
    fn row_connection_errors_and_timeouts_count_and_fail_over() {
        assert!(counts_and_fails_over(&AttemptError::Connect("refused".into())));
        assert!(counts_and_fails_over(&AttemptError::Transport("reset".into())));
        for phase in [Phase::Connect, Phase::Head, Phase::Body, Phase::FirstChunk] {
            assert!(counts_and_fails_over(&AttemptError::Timeout(phase)), "{phase:?}");
        }
    }

    #[test]
    fn row_a_timeout_cut_by_the_deadline_is_neutral_and_ends_the_request() {
        let cut = Budget {
            timeout: Duration::from_millis(5),
            cut_by_deadline: true,
        };
        let v = judge(&AttemptError::Timeout(Phase::Head), cut);
        assert_eq!(
            v,
            Verdict {
                counts: false,
                fail_over: false
            }
        );
        // Any other failure within a cut budget is still the provider's.
        assert!(judge(&status(500), cut).counts);
    }

    #[test]
    fn row_an_answer_over_the_limit_is_neutral_and_not_failed_over() {
        let e = AttemptError::TooLarge { limit: 10 };
        assert_eq!(
            judge(&e, full_budget()),
            Verdict {
                counts: false,
                fail_over: false
            }
        );
        let mut f = Failover::new(Instant::now(), OWN, 3, vec![]);
        let b = f.begin(1, OWN, Instant::now()).unwrap();
        f.failed("a", e, b);
        let err = f.give_up("m", None);
        assert_eq!(err, RouteError::TooLarge { limit: 10 });
        assert_eq!((err.status(), err.code()), (502, "upstream_response_too_large"));
    }

    #[test]
    fn row_a_json_answer_to_a_stream_counts_and_fails_over() {
        let e = AttemptError::NotAStream {
            content_type: "application/json".into(),
        };
        assert!(counts_and_fails_over(&e));
    }

    #[test]
    fn row_a_stream_that_fails_before_its_first_byte_fails_over() {
        assert!(counts_and_fails_over(&AttemptError::StreamBroke("reset".into())));
        assert!(counts_and_fails_over(&AttemptError::StreamEnded {
            committed: false
        }));
        assert!(counts_and_fails_over(&AttemptError::BodyRead("reset".into())));
    }

    #[test]
    fn row_a_committed_stream_that_ends_early_counts_but_cannot_fail_over() {
        let v = judge(&AttemptError::StreamEnded { committed: true }, full_budget());
        assert_eq!(
            v,
            Verdict {
                counts: true,
                fail_over: false
            }
        );
    }

    #[test]
    fn never_the_same_provider_twice_and_the_client_exclusions_hold() {
        let t0 = Instant::now();
        let mut f = Failover::new(t0, OWN * 2, 3, vec![7]);
        assert_eq!(f.excluded(), &[7]);
        let b = f.begin(1, OWN, t0).unwrap();
        f.failed("one", status(500), b);
        f.begin(2, OWN, t0).unwrap();
        assert_eq!(f.excluded(), &[7, 1, 2]);
        assert_eq!(f.attempts(), 2);
    }

    #[test]
    fn at_most_max_retries_further_attempts() {
        let t0 = Instant::now();
        let mut f = Failover::new(t0, OWN * 10, 2, vec![]);
        for id in 0..3 {
            assert!(f.may_try_again());
            let b = f.begin(id, OWN, t0).unwrap();
            f.failed("p", status(503), b);
        }
        assert!(!f.may_try_again());
        let err = f.give_up("m", None);
        assert_eq!(err.status(), 502);
        assert!(err.to_string().contains("all 3 upstream attempt(s)"), "{err}");
        // Zero retries: one attempt.
        let f = Failover::new(t0, OWN, 0, vec![]);
        assert!(f.may_try_again());
    }

    #[test]
    fn one_deadline_bounds_every_attempt() {
        let t0 = Instant::now();
        let mut f = Failover::new(t0, Duration::from_secs(40), 3, vec![]);
        // The first attempt gets the provider's own timeout.
        let b = f.begin(1, OWN, t0).unwrap();
        assert_eq!(b, full_budget());
        f.failed("one", AttemptError::Timeout(Phase::Head), b);
        // 30 s later only 10 s are left: the second attempt is cut to them.
        let b = f.begin(2, OWN, t0 + OWN).unwrap();
        assert_eq!(
            b,
            Budget {
                timeout: Duration::from_secs(10),
                cut_by_deadline: true
            }
        );
        f.failed("two", AttemptError::Timeout(Phase::Head), b);
        // At the deadline nothing more starts; the client hears 504 and both causes.
        assert_eq!(f.begin(3, OWN, t0 + Duration::from_secs(40)), None);
        assert_eq!(f.attempts(), 2);
        let err = f.give_up("m", None);
        assert_eq!((err.status(), err.code()), (504, "upstream_timeout"));
        let text = err.to_string();
        assert!(
            text.contains("deadline passed") && text.contains("before that"),
            "{text}"
        );
    }

    #[test]
    fn an_absurd_deadline_does_not_overflow() {
        let t0 = Instant::now();
        let mut f = Failover::new(t0, Duration::MAX, 1, vec![]);
        assert!(f.begin(1, OWN, t0).is_some());
    }

    #[test]
    fn final_status_follows_the_last_failure() {
        let t0 = Instant::now();
        let last = |e: AttemptError, cooling: Option<Duration>| {
            let mut f = Failover::new(t0, OWN, 0, vec![]);
            let b = f.begin(1, OWN, t0).unwrap();
            f.failed("p", e, b);
            f.give_up("m", cooling)
        };
        assert_eq!(last(status(500), None).status(), 502);
        assert_eq!(last(AttemptError::Connect("refused".into()), None).status(), 502);
        assert_eq!(last(AttemptError::Timeout(Phase::Head), None).status(), 504);
        let limited = AttemptError::Status {
            status: 429,
            class: StatusClass::RateLimited,
            detail: String::new(),
            cooldown_ms: Some(2_500),
        };
        let err = last(limited, None);
        assert_eq!((err.status(), err.retry_after_secs()), (503, Some(3)));
        // Every provider cooling: 503 with the soonest free one, at least a second.
        let err = last(status(500), Some(Duration::from_millis(10)));
        assert_eq!((err.status(), err.retry_after_secs()), (503, Some(1)));
    }

    #[test]
    fn nothing_to_try_is_503() {
        let f = Failover::new(Instant::now(), OWN, 3, vec![1, 2]);
        let err = f.give_up("m", None);
        assert_eq!((err.status(), err.code()), (503, "no_provider_available"));
        assert!(err.to_string().contains("all excluded"));
        let f = Failover::new(Instant::now(), OWN, 3, vec![]);
        let err = f.give_up("m", Some(Duration::from_secs(4)));
        assert_eq!(err.retry_after_secs(), Some(4));
        assert!(err.to_string().contains("cooling down"));
    }

    #[test]
    fn unknown_model_is_404() {
        let e = RouteError::UnknownModel("x".into());
        assert_eq!((e.status(), e.code()), (404, "model_not_found"));
    }
}
