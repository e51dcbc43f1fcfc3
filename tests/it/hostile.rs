//! Hostile and odd upstream answers (docs/DESIGN.md §3): absurd or missing `Retry-After`,
//! a JSON answer to a stream, an answer over the router's limit, a provider that quotes its
//! key, absurd usage, probes that a reasoning model refuses, and bodies with a wrong member.

use std::time::Duration;

use bytes::Bytes;
use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, eventually, pair, usage_rows};

fn rate_limited_with(raw: Option<&str>) -> Behavior {
    Behavior {
        status: 429,
        retry_after_raw: raw.map(str::to_owned),
        ..Behavior::default()
    }
}

/// The first request meets the 429 and fails over; later ones skip the cooling provider.
async fn cools_down_for_a_while(db: TestDb, limited: Behavior, expect_hits: u64) {
    let (mut c, bad, good) = pair(&db, ("bad", limited), ("good", Behavior::ok())).await;
    c.routing.default_cooldown_ms = 60_000;
    let app = TestApp::start(c).await;
    for _ in 0..4 {
        let r = app.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    }
    assert_eq!(bad.chat_hits(), expect_hits, "a cooling provider is not picked");
    assert_eq!(good.chat_hits(), 4);
    let bad_state = app.state_of("bad").await;
    assert!(
        bad_state.health.is_healthy,
        "one 429 is not max_error_count failures"
    );
    assert!(bad_state.health.cooldown_until.is_some());
    app.stop().await;
}

async fn no_retry_after(db: TestDb) {
    cools_down_for_a_while(db, rate_limited_with(None), 1).await
}
both_backends!(
    a_429_without_retry_after_uses_the_default_cooldown,
    no_retry_after
);

#[actix_rt::test]
async fn a_retry_after_http_date_is_honoured() {
    let at = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
    cools_down_for_a_while(TestDb::sqlite(), rate_limited_with(Some(&at)), 1).await
}

async fn absurd_retry_after(db: TestDb) {
    let (mut c, bad, _good) = pair(
        &db,
        ("bad", rate_limited_with(Some("9000000000000"))),
        ("good", Behavior::ok()),
    )
    .await;
    c.routing.max_cooldown_ms = 5_000;
    let app = TestApp::start(c).await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The provider's actor is alive: listed, with a cool-down capped by max_cooldown_ms.
    let state = app.state_of("bad").await;
    let until = state.health.cooldown_until.expect("cooling");
    assert!(
        until <= chrono::Utc::now() + chrono::Duration::seconds(6),
        "{until}"
    );
    let list = app.admin("GET", "/api/providers", None).await;
    assert_eq!(list.status, 200);
    assert!(list.text().contains("\"bad\""), "{}", list.text());
    let id = state.config.id;
    let reset = app
        .admin("POST", &format!("/api/providers/{id}/reset"), None)
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(bad.chat_hits(), 1);
    app.stop().await;
}
both_backends!(an_absurd_retry_after_is_capped, absurd_retry_after);

#[actix_rt::test]
async fn a_json_answer_to_a_stream_fails_over_before_committing() {
    let db = TestDb::sqlite();
    let ignores = Behavior {
        ignore_stream: true,
        ..Behavior::default()
    };
    let (c, bad, _good) = pair(&db, ("bad", ignores), ("good", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    );
    assert!(r.text().contains("data: [DONE]"), "{}", r.text());
    assert!(!r.text().contains("chat.completion\""), "no JSON body glued in");
    assert_eq!(bad.chat_hits(), 1);
    let state = app.state_of("bad").await;
    assert_eq!(state.health.error_count, 1, "counted against the provider");
    app.stop().await;
}

async fn over_the_limit(db: TestDb) {
    let (mut c, a, b) = pair(&db, ("a", Behavior::ok()), ("b", Behavior::ok())).await;
    c.routing.max_response_bytes = 64;
    let app = TestApp::start(c).await;
    for _ in 0..3 {
        let r = app.chat("m").await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "upstream_response_too_large");
    }
    assert_eq!(a.chat_hits() + b.chat_hits(), 3, "never failed over");
    for name in ["a", "b"] {
        let s = app.state_of(name).await;
        assert!(s.health.is_healthy);
        assert_eq!(
            s.health.error_count, 0,
            "the router's own limit counts against nobody"
        );
    }
    app.flush().await;
    let rows = usage_rows(db.url());
    let total: i64 = rows.iter().map(|r| r.total_requests).sum();
    let failed: i64 = rows.iter().map(|r| r.failed_requests).sum();
    assert_eq!((total, failed), (3, 0), "recorded, as neutral");
    app.stop().await;
}
both_backends!(an_answer_over_the_limit_is_not_a_provider_failure, over_the_limit);

#[actix_rt::test]
async fn a_provider_refusing_its_key_is_not_quoted_to_clients() {
    let db = TestDb::sqlite();
    let (c, _a, _b) = pair(&db, ("a", Behavior::status(401)), ("b", Behavior::status(403))).await;
    let app = TestApp::start(c).await;
    let r = app.chat("m").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("refused the router's credentials"), "{message}");
    assert!(!message.contains("mock failure"), "no upstream text: {message}");
    // The operator keeps the detail.
    let s = app.state_of("b").await;
    assert!(
        s.health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("mock failure 403"))
    );
    app.stop().await;
}

async fn absurd_usage(db: TestDb) {
    let huge = Behavior {
        prompt_tokens: u64::MAX,
        completion_tokens: u64::MAX / 2,
        ..Behavior::default()
    };
    let (c, _a, _b) = pair(&db, ("a", huge.clone()), ("b", huge)).await;
    let app = TestApp::start(c).await;
    for _ in 0..4 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    app.flush().await;
    let rows = usage_rows(db.url());
    let total: i64 = rows.iter().map(|r| r.total_requests).sum();
    assert_eq!(total, 4, "the batch was written");
    for r in &rows {
        assert_eq!(
            r.prompt_tokens,
            r.total_requests * 1_000_000_000,
            "clamped per request"
        );
    }
    // Recording goes on after the absurd batch.
    assert_eq!(app.chat("m").await.status, 200);
    app.flush().await;
    let total: i64 = usage_rows(db.url()).iter().map(|r| r.total_requests).sum();
    assert_eq!(total, 5);
    app.stop().await;
}
both_backends!(absurd_usage_is_clamped_and_written, absurd_usage);

#[actix_rt::test]
async fn a_probe_refused_in_openai_shape_counts_as_reachable() {
    // A reasoning model refuses the probe's `max_tokens` with a 400 in OpenAI's shape.
    let db = TestDb::sqlite();
    let (c, _a, _b) = pair(&db, ("reasoning", Behavior::status(400)), ("b", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    let id = app.state_of("reasoning").await.config.id;
    let r = app
        .admin("POST", &format!("/api/health-check/force/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = app.state_of("reasoning").await;
    assert!(s.health.is_healthy);
    assert_eq!(s.health.error_count, 0);
    assert!(
        s.health.last_error.as_deref().is_some_and(|e| e.contains("400")),
        "detail kept"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_probe_with_a_refused_key_fails() {
    let db = TestDb::sqlite();
    let (mut c, _a, _b) = pair(&db, ("a", Behavior::status(401)), ("b", Behavior::ok())).await;
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c).await;
    let id = app.state_of("a").await.config.id;
    app.admin("POST", &format!("/api/health-check/force/{id}"), None)
        .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            !app.state_of("a").await.health.is_healthy
        })
        .await
    );
    app.stop().await;
}

#[actix_rt::test]
async fn body_errors_name_their_member() {
    let db = TestDb::sqlite();
    let (c, a, b) = pair(&db, ("a", Behavior::ok()), ("b", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    let post = |body: &'static str| {
        app.send(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            Some(Bytes::from_static(body.as_bytes())),
        )
    };
    for (body, param) in [
        (r#"{"model": true}"#, "model"),
        (r#"{"messages": []}"#, "model"),
        (r#"{"model": "m", "stream": "yes"}"#, "stream"),
        (
            r#"{"model": "m", "stream_options": {"include_usage": 1}}"#,
            "stream_options",
        ),
        (r#"{"model": "m", "messages": "hello"}"#, "messages"),
    ] {
        let r = post(body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}: {}", r.text());
    }
    assert_eq!(a.chat_hits() + b.chat_hits(), 0);
    app.stop().await;
}

async fn refuses_stream_options(db: TestDb) {
    let strict = Behavior {
        refuse_stream_options: true,
        ..Behavior::default()
    };
    let up = crate::support::mock("strict", strict).await;
    let c = crate::support::config(
        &db,
        vec![crate::support::provider("strict", &up.base_url(), &["m"])],
    );
    let app = TestApp::start(c).await;
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert!(r.text().contains("data: [DONE]"), "{}", r.text());
    assert_eq!(up.chat_hits(), 2, "refused once, then sent without the field");
    // Remembered: the next stream goes without it at once.
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.chat_hits(), 3);
    let s = app.state_of("strict").await;
    assert!(s.refuses_stream_options);
    assert_eq!(s.health.error_count, 0, "not the provider's fault");
    let id = s.config.id;
    let view = app.admin("GET", &format!("/api/providers/{id}"), None).await;
    assert_eq!(view.json()["stream_usage_supported"], false, "{}", view.text());
    // A client that asks for stream_options itself gets the provider's own answer.
    let r = stream_asking_for_usage(&app).await;
    assert_eq!(r.status, 400, "{}", r.text());
    app.flush().await;
    let rows = usage_rows(db.url());
    assert_eq!(rows.iter().map(|r| r.success_requests).sum::<i64>(), 2);
    app.stop().await;
}
both_backends!(
    a_provider_refusing_stream_options_still_streams,
    refuses_stream_options
);

#[actix_rt::test]
async fn the_usage_chunk_reaches_only_clients_that_asked_for_it() {
    let db = TestDb::sqlite();
    let up = crate::support::mock("up", Behavior::streaming(3, 0)).await;
    let c = crate::support::config(&db, vec![crate::support::provider("up", &up.base_url(), &["m"])]);
    let app = TestApp::start(c).await;
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "no usage chunk the client did not ask for: {text}"
    );
    let r = stream_asking_for_usage(&app).await;
    assert!(r.text().contains("\"usage\":{"), "{}", r.text());
    // Both were recorded with their tokens.
    app.flush().await;
    let rows = usage_rows(db.url());
    assert_eq!(rows[0].success_requests, 2);
    assert_eq!(rows[0].completion_tokens, 6);
    app.stop().await;
}

/// A stream request whose client asks for `stream_options.include_usage` itself.
async fn stream_asking_for_usage(app: &TestApp) -> crate::support::Reply {
    app.send(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        Some(Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
        )),
    )
    .await
}

async fn dropped_attempt(db: TestDb) {
    let up = crate::support::mock("stalled", Behavior::stall()).await;
    let mut c = crate::support::config(
        &db,
        vec![crate::support::provider("stalled", &up.base_url(), &["m"])],
    );
    c.shutdown_grace_seconds = 1;
    c.routing.request_timeout_ms = 60_000;
    let app = TestApp::start(c).await;
    let url = format!("{}/v1/chat/completions", app.url);
    let client = actix_rt::spawn(async move {
        let _ = awc::Client::default()
            .post(url)
            .timeout(Duration::from_secs(30))
            .insert_header(("content-type", "application/json"))
            .send_body(r#"{"model":"m","messages":[]}"#)
            .await;
    });
    assert!(eventually(Duration::from_secs(5), || async { up.chat_hits() == 1 }).await);
    // Shutdown waits its grace second, then drops the request waiting on the upstream.
    app.stop().await;
    let rows = usage_rows(db.url());
    let sums = rows
        .iter()
        .fold((0, 0), |(t, f), r| (t + r.total_requests, f + r.failed_requests));
    assert_eq!(sums, (1, 0), "the dropped attempt is one neutral record");
    client.abort();
}
both_backends!(an_attempt_dropped_at_shutdown_is_recorded_once, dropped_attempt);

#[actix_rt::test]
async fn a_provider_may_name_its_probe_model() {
    let db = TestDb::sqlite();
    let up = crate::support::mock("p", Behavior::ok()).await;
    let mut spec = crate::support::provider("p", &up.base_url(), &["m"]);
    spec.probe_model = Some("cheap-model".into());
    let app = TestApp::start(crate::support::config(&db, vec![spec])).await;
    let id = app.state_of("p").await.config.id;
    let r = app
        .admin("POST", &format!("/api/health-check/force/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let probe = up.chat_bodies().pop().expect("the probe reached the upstream");
    assert_eq!(probe["model"], "cheap-model");
    assert_eq!(probe["max_tokens"], 1);
    // Shown, changed and cleared through the admin API like any field.
    let path = format!("/api/providers/{id}");
    assert_eq!(
        app.admin("GET", &path, None).await.json()["probe_model"],
        "cheap-model"
    );
    let put = app
        .admin("PUT", &path, Some(serde_json::json!({"probe_model": "other"})))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(app.admin("GET", &path, None).await.json()["probe_model"], "other");
    let bad = app
        .admin(
            "PUT",
            &path,
            Some(serde_json::json!({"probe_model": "x".repeat(300)})),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(bad.json()["error"]["param"], "probe_model");
    app.stop().await;
}

async fn absurd_stored_row(db: TestDb) {
    let (c, _a, _b) = pair(&db, ("a", Behavior::ok()), ("b", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    let a = app.state_of("a").await.config.id;
    // A stored row already at the edge of i64 (an older version, a hand edit).
    let pool =
        switchyard::store::DbPool::connect(&switchyard::store::Backend::from_url(db.url()).unwrap(), 1)
            .unwrap();
    let now = chrono::Utc::now();
    let mut edge = switchyard::store::UsageRow::zero(a, "m".into(), now.date_naive(), now.naive_utc());
    edge.total_tokens = i64::MAX - 5;
    edge.total_response_time_ms = i64::MAX - 5;
    edge.total_requests = 1;
    pool.add_usage(&[edge]).unwrap();
    for _ in 0..4 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    app.flush().await;
    let rows = usage_rows(db.url());
    let row = |id: i64| rows.iter().find(|r| r.provider_id == id).unwrap().clone();
    let b = app.state_of("b").await.config.id;
    assert_eq!(row(a).total_tokens, i64::MAX, "saturated, not failed");
    assert_eq!(row(a).total_requests, 3);
    assert_eq!(row(b).total_requests, 2, "the rest of the batch was written");
    assert_eq!(row(b).total_tokens, 30);
    app.stop().await;
}
both_backends!(a_stored_row_at_the_edge_saturates, absurd_stored_row);

/// A client that gives up while its request waits on the upstream: the attempt is one
/// neutral record (the request's future is dropped with it), and the provider stays healthy.
async fn client_gone(db: TestDb) {
    let up = crate::support::mock("stalled", Behavior::stall()).await;
    let mut c = crate::support::config(
        &db,
        vec![crate::support::provider("stalled", &up.base_url(), &["m"])],
    );
    c.routing.request_timeout_ms = 60_000;
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c).await;
    let gone = awc::Client::default()
        .post(format!("{}/v1/chat/completions", app.url))
        .timeout(Duration::from_millis(300))
        .insert_header(("content-type", "application/json"))
        .send_body(r#"{"model":"m","messages":[]}"#)
        .await;
    assert!(gone.is_err(), "the client gave up");
    assert_eq!(up.chat_hits(), 1);
    let recorded = eventually(Duration::from_secs(5), || async {
        app.flush().await;
        let rows = usage_rows(db.url());
        rows.iter().map(|r| r.total_requests).sum::<i64>() == 1
    })
    .await;
    assert!(
        recorded,
        "the abandoned attempt is recorded while the upstream still stalls"
    );
    let rows = usage_rows(db.url());
    assert_eq!(rows.iter().map(|r| r.failed_requests).sum::<i64>(), 0);
    assert!(app.state_of("stalled").await.health.is_healthy);
    app.stop().await;
}
both_backends!(
    a_client_that_leaves_mid_request_is_one_neutral_record,
    client_gone
);
