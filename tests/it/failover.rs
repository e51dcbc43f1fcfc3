//! Failover (DESIGN §3): which failures move a request to another provider, that no provider
//! is tried twice, the shared deadline, cool-downs and the final error.

use std::time::{Duration, Instant};

use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, dead_url, eventually, mock, pair, provider};

/// One failing provider, one healthy: the failure class must fail over to the healthy one.
async fn fails_over_on(db: TestDb, failing: Behavior) {
    let (mut c, bad, _good) = pair(&db, ("bad", failing), ("good", Behavior::ok())).await;
    c.routing.request_timeout_ms = 500;
    let app = TestApp::start(c).await;
    // Round-robin starts with "bad" (lowest id), so the first request meets the failure.
    let r = app.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(bad.chat_hits(), 1);
    app.stop().await;
}

async fn server_errors(db: TestDb) {
    fails_over_on(db, Behavior::status(503)).await
}
both_backends!(fails_over_on_5xx, server_errors);

#[actix_rt::test]
async fn fails_over_on_a_bad_provider_key() {
    fails_over_on(TestDb::sqlite(), Behavior::status(401)).await;
    fails_over_on(TestDb::sqlite(), Behavior::status(403)).await;
}

#[actix_rt::test]
async fn fails_over_on_a_timeout() {
    let started = Instant::now();
    fails_over_on(TestDb::sqlite(), Behavior::stall()).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A provider that sends its head and then nothing: the attempt's one timer ends it, names
/// the phase it hung in, and the request fails over, for a plain answer (its body) and for a
/// stream (its first chunk).
#[actix_rt::test]
async fn a_body_that_never_comes_times_out_in_its_phase_and_fails_over() {
    for (stream, phase) in [
        (false, "upstream timed out while sending its answer"),
        (true, "upstream timed out before its first stream chunk"),
    ] {
        let db = TestDb::sqlite();
        let (mut c, hung, _good) =
            pair(&db, ("hung", Behavior::stall_body()), ("good", Behavior::ok())).await;
        c.routing.request_timeout_ms = 400;
        let app = TestApp::start(c).await;
        let started = Instant::now();
        let r = app.chat_with("m", stream, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("good"));
        assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(350)..Duration::from_secs(5)).contains(&took),
            "the hung attempt took its timeout: {took:?}"
        );
        assert_eq!(hung.chat_hits(), 1);
        let s = app.state_of("hung").await;
        assert_eq!(s.health.error_count, 1, "stream {stream}");
        assert_eq!(s.health.last_error.as_deref(), Some(phase), "stream {stream}");
        app.stop().await;
    }
}

/// An error status whose body never ends is still judged by its status when the attempt's
/// time runs out: a 400 goes back to the client (no failover, nobody's failure), not a
/// timeout. The error body's wait and the attempt's timer end at the same instant; the
/// body's must win.
#[actix_rt::test]
async fn an_error_status_whose_body_hangs_is_still_the_clients_error() {
    let db = TestDb::sqlite();
    let hung = Behavior {
        status: 400,
        ..Behavior::stall_body()
    };
    let (mut c, first, second) = pair(&db, ("first", hung), ("second", Behavior::ok())).await;
    c.routing.request_timeout_ms = 300;
    let app = TestApp::start(c).await;
    for _ in 0..3 {
        let r = app.chat("m").await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("first"));
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
        // The next request goes round to the healthy one.
        let r = app.chat("m").await;
        assert_eq!(r.header("x-switchyard-provider"), Some("second"));
    }
    assert_eq!((first.chat_hits(), second.chat_hits()), (3, 3));
    let s = app.state_of("first").await;
    assert!(s.health.is_healthy);
    assert_eq!(s.health.error_count, 0);
    app.stop().await;
}

#[actix_rt::test]
async fn fails_over_on_connection_refused() {
    let db = TestDb::sqlite();
    let good = mock("good", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("dead", &dead_url(), &["m"]),
            provider("good", &good.base_url(), &["m"]),
        ],
    ))
    .await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    app.stop().await;
}

async fn rate_limits(db: TestDb) {
    let (c, limited, good) = pair(
        &db,
        ("limited", Behavior::rate_limited(30)),
        ("good", Behavior::ok()),
    )
    .await;
    let app = TestApp::start(c).await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    // The cool-down (Retry-After: 30) keeps it out of rotation: no more hits.
    for _ in 0..6 {
        let r = app.chat("m").await;
        assert_eq!(r.header("x-switchyard-provider"), Some("good"));
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    }
    assert_eq!(limited.chat_hits(), 1, "a cooling provider is not called");
    // When every provider is cooling, the client is told when to come back.
    good.set_behavior(Behavior::rate_limited(7));
    let r = app.chat("m").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=7).contains(&retry), "retry-after {retry}");
    let r = app.chat("m").await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"]["code"], "no_provider_available");
    app.stop().await;
}
both_backends!(rate_limits_honour_retry_after_as_a_cool_down, rate_limits);

async fn client_errors(db: TestDb) {
    let up = mock("up", Behavior::ok()).await;
    let other = mock("other", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("up", &up.base_url(), &["mock-bad-request"]),
            provider("other", &other.base_url(), &["mock-bad-request"]),
        ],
    ))
    .await;
    for _ in 0..4 {
        let r = app.chat("mock-bad-request").await;
        assert_eq!(r.status, 400, "the upstream's 400 is returned as is");
        assert_eq!(r.json()["error"]["code"], "bad_request");
        assert_eq!(
            r.header("x-switchyard-attempts"),
            Some("1"),
            "a client error does not fail over"
        );
    }
    assert_eq!(up.chat_hits() + other.chat_hits(), 4);
    // It counts against nobody: both stay healthy with no errors.
    let health = app.provider_states().await;
    assert!(
        health
            .iter()
            .all(|s| s.health.is_healthy && s.health.error_count == 0)
    );
    app.stop().await;
}
both_backends!(
    client_errors_are_returned_as_is_and_count_against_nobody,
    client_errors
);

async fn never_twice(db: TestDb) {
    let mocks = [
        mock("a", Behavior::status(500)).await,
        mock("b", Behavior::status(502)).await,
        mock("c", Behavior::status(500)).await,
    ];
    let mut c = config(
        &db,
        mocks
            .iter()
            .map(|m| provider(m.name(), &m.base_url(), &["m"]))
            .collect(),
    );
    c.routing.max_retries = 10;
    c.health_check.max_error_count = 100;
    let app = TestApp::start(c).await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-switchyard-attempts"), None);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("all 3 upstream attempt(s)"), "{msg}");
    assert!(
        msg.contains("upstream answered 50"),
        "the last upstream error is named: {msg}"
    );
    assert!(!msg.contains("secret-key"), "no provider key in errors");
    for m in &mocks {
        assert_eq!(m.chat_hits(), 1, "provider {} is tried exactly once", m.name());
    }
    app.stop().await;
}
both_backends!(no_provider_is_tried_twice_and_all_failing_is_a_502, never_twice);

#[actix_rt::test]
async fn max_retries_bounds_the_attempts() {
    let db = TestDb::sqlite();
    let mocks = [
        mock("a", Behavior::status(500)).await,
        mock("b", Behavior::status(500)).await,
        mock("c", Behavior::status(500)).await,
        mock("d", Behavior::ok()).await,
    ];
    let mut c = config(
        &db,
        mocks
            .iter()
            .map(|m| provider(m.name(), &m.base_url(), &["m"]))
            .collect(),
    );
    c.routing.max_retries = 1;
    let app = TestApp::start(c).await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 502);
    assert_eq!(
        mocks.iter().map(|m| m.chat_hits()).sum::<u64>(),
        2,
        "one try plus max_retries = 1"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn all_attempts_share_one_deadline() {
    let db = TestDb::sqlite();
    let mocks = [
        mock("a", Behavior::stall()).await,
        mock("b", Behavior::stall()).await,
        mock("c", Behavior::stall()).await,
    ];
    let mut c = config(
        &db,
        mocks
            .iter()
            .map(|m| provider(m.name(), &m.base_url(), &["m"]))
            .collect(),
    );
    c.routing.request_timeout_ms = 600;
    c.routing.request_deadline_ms = Some(1_000);
    let app = TestApp::start(c).await;
    let started = Instant::now();
    let r = app.chat("m").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
    assert!(
        took < Duration::from_millis(1_600),
        "the deadline bounds the client's wait: {took:?}"
    );
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert_eq!(
        mocks.iter().map(|m| m.chat_hits()).sum::<u64>(),
        2,
        "600 ms + the 400 ms left"
    );
    app.stop().await;
}

/// A redirect means a wrong `base_url`: it counts against the provider and is not followed,
/// so neither the body nor the key goes where it points.
#[actix_rt::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let db = TestDb::sqlite();
    let elsewhere = mock("elsewhere", Behavior::ok()).await;
    let target = format!("{}/chat/completions", elsewhere.base_url());
    let moved = mock("moved", Behavior::redirect(307, target)).await;
    let good = mock("good", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("moved", &moved.base_url(), &["m"]),
            provider("good", &good.base_url(), &["m"]),
        ],
    ))
    .await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(elsewhere.chat_hits(), 0, "the redirect was followed");
    let failed = eventually(Duration::from_secs(5), || async {
        app.state_of("moved").await.health.last_status_code == Some(307)
    })
    .await;
    assert!(failed, "the redirect did not count against the provider");
    app.stop().await;
}
