//! Per-provider limits and the routing queue: the concurrency cap, arrival order, the wait's
//! bounds (429 with `Retry-After`), rpm and tpm budgets, and how they show in the admin views
//! and `/metrics`.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, mock, provider};

async fn concurrency_cap_queues_in_arrival_order(db: TestDb) {
    let slow = mock("capped", Behavior::slow(250)).await;
    let mut p = provider("capped", &slow.base_url(), &["m"]);
    p.max_concurrency = Some(1);
    let app = TestApp::start(config(&db, vec![p])).await;
    let t0 = Instant::now();
    // Four requests, 40 ms apart: the first takes the slot, the others wait their turn.
    let done = join_all((0..4u64).map(|i| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(40 * i)).await;
            let r = app.chat("m").await;
            (i, r.status, t0.elapsed())
        }
    }))
    .await;
    for (i, status, _) in &done {
        assert_eq!(*status, 200, "request {i} waited and was served");
    }
    let mut by_finish = done.clone();
    by_finish.sort_by_key(|d| d.2);
    let order: Vec<u64> = by_finish.iter().map(|d| d.0).collect();
    assert_eq!(order, vec![0, 1, 2, 3], "served in arrival order");
    // One at a time: the upstream saw each request start after the previous one ended.
    let starts: Vec<Instant> = slow.requests().iter().map(|r| r.at).collect();
    assert_eq!(starts.len(), 4);
    for w in starts.windows(2) {
        assert!(
            w[1].duration_since(w[0]) >= Duration::from_millis(240),
            "never two at once: {:?}",
            w[1].duration_since(w[0])
        );
    }
    let load = app.admin("GET", "/api/providers/load", None).await.json();
    assert_eq!(load["queue"]["served"], 3, "{load}");
    assert_eq!(load["queue"]["length"], 0);
    assert!(load["queue"]["wait_ms_max"].as_u64().unwrap() >= 200, "{load}");
    assert_eq!(load["data"][0]["limits"]["max_concurrency"], 1);
    let metrics = app.send("GET", "/metrics", &[], None).await.text();
    assert!(metrics.contains("switchyard_queue_length 0"), "{metrics}");
    assert!(
        metrics.contains("switchyard_queue_requests_total{outcome=\"served\"} 3"),
        "{metrics}"
    );
    app.stop().await;
}
both_backends!(
    concurrency_cap_queues_requests_in_arrival_order,
    concurrency_cap_queues_in_arrival_order
);

async fn queue_bounds_answer_429(db: TestDb) {
    let slow = mock("busy", Behavior::slow(1_500)).await;
    let mut p = provider("busy", &slow.base_url(), &["m"]);
    p.max_concurrency = Some(1);
    let mut c = config(&db, vec![p]);
    c.routing.queue_timeout_ms = 200;
    c.routing.max_queue = 1;
    let app = TestApp::start(c).await;
    let (holder, waiter, refused) = tokio::join!(
        app.chat("m"),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let t = Instant::now();
            (app.chat("m").await, t.elapsed())
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            (app.chat("m").await, t.elapsed())
        }
    );
    assert_eq!(holder.status, 200);
    let (r, waited) = waiter;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "queue_timeout");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1))
    );
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1_200),
        "waited the queue timeout, not the holder: {waited:?}"
    );
    let (r, took) = refused;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "queue_full");
    assert!(r.header("retry-after").is_some());
    assert!(
        took < Duration::from_millis(190),
        "refused at once, not after the wait: {took:?}"
    );
    assert_eq!(slow.chat_hits(), 1, "nothing past the cap reached the upstream");
    let load = app.admin("GET", "/api/providers/load", None).await.json();
    assert_eq!(load["queue"]["timed_out"], 1, "{load}");
    assert_eq!(load["queue"]["refused_full"], 1, "{load}");
    app.stop().await;
}
both_backends!(a_full_queue_or_a_long_wait_answers_429, queue_bounds_answer_429);

async fn rpm_budget_moves_traffic_then_waits(db: TestDb) {
    let (a, b) = (mock("a", Behavior::ok()).await, mock("b", Behavior::ok()).await);
    let mut pa = provider("a", &a.base_url(), &["m"]);
    pa.rpm = Some(2);
    let mut pb = provider("b", &b.base_url(), &["m"]);
    pb.priority = 1;
    pb.rpm = Some(3);
    let mut c = config(&db, vec![pa, pb]);
    c.routing.queue_timeout_ms = 150;
    let app = TestApp::start(c).await;
    for _ in 0..5 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert_eq!(
        (a.chat_hits(), b.chat_hits()),
        (2, 3),
        "a provider at its rpm is skipped like a cooling one"
    );
    let r = app.chat("m").await;
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry),
        "the minute frees a slot within 60 s: {retry}"
    );
    assert_eq!(a.chat_hits() + b.chat_hits(), 5);
    app.stop().await;
}
both_backends!(rpm_budgets_skip_then_queue, rpm_budget_moves_traffic_then_waits);

async fn tpm_budget_counts_reported_tokens(db: TestDb) {
    // Each answer reports 15 tokens: a budget of 20 admits two, then the minute is full.
    let (a, b) = (mock("a", Behavior::ok()).await, mock("b", Behavior::ok()).await);
    let mut pa = provider("a", &a.base_url(), &["m"]);
    pa.tpm = Some(20);
    let mut pb = provider("b", &b.base_url(), &["m"]);
    pb.priority = 1;
    let app = TestApp::start(config(&db, vec![pa, pb])).await;
    for _ in 0..5 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert_eq!((a.chat_hits(), b.chat_hits()), (2, 3));
    let load = app.admin("GET", "/api/providers/load", None).await.json();
    let row = load["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider_name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(row["limits"]["tokens_last_minute"], 30, "{row}");
    assert_eq!(row["limits"]["at_limit"], "tpm", "{row}");
    app.stop().await;
}
both_backends!(
    tpm_budgets_count_reported_tokens,
    tpm_budget_counts_reported_tokens
);

async fn limits_through_the_admin_api(db: TestDb) {
    let a = mock("a", Behavior::ok()).await;
    let app = TestApp::start(config(&db, vec![provider("a", &a.base_url(), &["m"])])).await;
    let list = app.admin("GET", "/api/providers", None).await.json();
    let id = list["data"][0]["id"].as_i64().unwrap();
    let path = format!("/api/providers/{id}");
    assert!(list["data"][0]["max_concurrency"].is_null());
    let r = app
        .admin(
            "PUT",
            &path,
            Some(serde_json::json!({"max_concurrency": 3, "rpm": 60, "tpm": 1000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = app.admin("GET", &path, None).await.json();
    assert_eq!(
        (v["max_concurrency"].clone(), v["rpm"].clone(), v["tpm"].clone()),
        (3.into(), 60.into(), 1000.into())
    );
    for (field, value) in [("max_concurrency", -1i64), ("rpm", 0), ("tpm", i64::MAX)] {
        let r = app
            .admin("PUT", &path, Some(serde_json::json!({ field: value })))
            .await;
        assert_eq!(r.status, 422, "{field}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], field);
    }
    let r = app
        .admin("PUT", &path, Some(serde_json::json!({"rpm": null})))
        .await;
    assert_eq!(r.status, 200);
    app.stop().await;
    // Stored: a restart keeps them.
    let app = TestApp::start(config(&db, vec![])).await;
    let v = app.admin("GET", &path, None).await.json();
    assert_eq!(v["max_concurrency"], 3, "{v}");
    assert!(v["rpm"].is_null(), "{v}");
    assert_eq!(v["tpm"], 1000);
    app.stop().await;
}
both_backends!(
    limits_are_set_and_stored_through_the_admin_api,
    limits_through_the_admin_api
);

#[actix_rt::test]
async fn a_failed_attempt_frees_its_slot_before_waiting() {
    let db = TestDb::sqlite();
    let (broken, busy) = (
        mock("broken", Behavior::status(500)).await,
        mock("busy", Behavior::slow(800)).await,
    );
    let mut pb = provider("broken", &broken.base_url(), &["m"]);
    pb.max_concurrency = Some(1);
    let mut pq = provider("busy", &busy.base_url(), &["m"]);
    pq.max_concurrency = Some(1);
    pq.priority = 1;
    let mut c = config(&db, vec![pb, pq]);
    c.health_check.max_error_count = 100;
    let app = TestApp::start(c).await;
    let (held, failed_over, load) = tokio::join!(
        // Holds "busy" (the client excludes "broken", id 1).
        app.chat_with("m", false, &[("x-switchyard-exclude-providers", "1")]),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Fails on "broken", then waits for "busy".
            app.chat("m").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            app.admin("GET", "/api/providers/load", None).await.json()
        }
    );
    assert_eq!(held.status, 200);
    assert_eq!(failed_over.status, 200, "{}", failed_over.text());
    assert_eq!(failed_over.header("x-switchyard-provider"), Some("busy"));
    assert_eq!(load["queue"]["length"], 1, "{load}");
    let broken_row = load["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider_name"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(
        broken_row["limits"]["inflight"], 0,
        "the failed attempt's slot is free while its request waits: {broken_row}"
    );
    app.stop().await;
}
