//! Routing strategies over mock upstreams of different latency and load: `least_used` evens
//! out today's totals (also after a restart, from the stored rows), `lowest_latency` moves
//! traffic off a provider that slows and back when it recovers, `least_busy` avoids the one
//! holding the most requests in flight.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use mock_upstream::Behavior;
use switchyard::config::{ModelRouting, Strategy};

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, eventually, mock, provider};

async fn served_by(app: &TestApp, model: &str, n: usize) -> HashMap<String, usize> {
    let mut served = HashMap::new();
    for _ in 0..n {
        let r = app.chat(model).await;
        assert_eq!(r.status, 200, "{}", r.text());
        *served
            .entry(r.header("x-switchyard-provider").unwrap().to_string())
            .or_default() += 1;
    }
    served
}

async fn requests_today(app: &TestApp, model: &str, name: &str) -> u64 {
    let v = app
        .admin("GET", &format!("/api/routing/explain?model={model}"), None)
        .await
        .json();
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider_name"] == name)
        .and_then(|c| c["requests_today"].as_u64())
        .unwrap_or(0)
}

async fn least_used_evens_out_today(db: TestDb) {
    let (a, b) = (mock("a", Behavior::ok()).await, mock("b", Behavior::ok()).await);
    let providers = vec![
        provider("a", &a.base_url(), &["m"]),
        provider("b", &b.base_url(), &["m"]),
    ];
    let mut c = config(&db, providers.clone());
    // Only "m" is least_used; the global strategy stays round-robin.
    c.routing.models.insert(
        "m".into(),
        ModelRouting {
            strategy: Some(Strategy::LeastUsed),
        },
    );
    let app = TestApp::start(c.clone()).await;
    // Six requests today go to "a" alone (the client excludes "b", id 2).
    for _ in 0..6 {
        let r = app
            .chat_with("m", false, &[("x-switchyard-exclude-providers", "2")])
            .await;
        assert_eq!(r.header("x-switchyard-provider"), Some("a"));
    }
    let explained = app
        .admin("GET", "/api/routing/explain?model=m", None)
        .await
        .json();
    assert_eq!(explained["strategy"], "least_used");
    assert_eq!(requests_today(&app, "m", "a").await, 6);
    app.stop().await;

    // A new process knows only the stored rows: it sends the next ones to "b" until even.
    let app = TestApp::start(c).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            requests_today(&app, "m", "a").await == 6
        })
        .await,
        "today's stored rows are read at start"
    );
    let served = served_by(&app, "m", 6).await;
    assert_eq!(
        served.get("b"),
        Some(&6),
        "the least used takes the traffic: {served:?}"
    );
    let served = served_by(&app, "m", 10).await;
    assert_eq!(
        (served.get("a"), served.get("b")),
        (Some(&5), Some(&5)),
        "then both move in step: {served:?}"
    );
    assert_eq!((a.chat_hits(), b.chat_hits()), (11, 11));
    app.stop().await;
}
both_backends!(
    least_used_sends_traffic_to_the_fewest_today,
    least_used_evens_out_today
);

async fn lowest_latency_follows_speed(db: TestDb) {
    let (fast, steady) = (
        mock("fast", Behavior::slow(5)).await,
        // Far apart, so that a loaded test machine's jitter cannot swap them.
        mock("steady", Behavior::slow(150)).await,
    );
    let mut c = config(
        &db,
        vec![
            provider("fast", &fast.base_url(), &["m"]),
            provider("steady", &steady.base_url(), &["m"]),
        ],
    );
    c.routing.strategy = Strategy::LowestLatency;
    let app = TestApp::start(c).await;
    // Both are measured first (an unmeasured provider is tried first), then the fast one
    // takes nearly all.
    let served = served_by(&app, "m", 60).await;
    let to_fast = served.get("fast").copied().unwrap_or(0);
    assert!(to_fast >= 45, "the faster takes most: {served:?}");
    // It slows down: traffic moves off it.
    fast.set_behavior(Behavior::slow(400));
    served_by(&app, "m", 3).await;
    let served = served_by(&app, "m", 40).await;
    let to_slowed = served.get("fast").copied().unwrap_or(0);
    assert!(
        to_slowed <= 8,
        "traffic moved off the slowed provider: {served:?}"
    );
    // It recovers: exploration measures it again and traffic comes back.
    fast.set_behavior(Behavior::slow(5));
    let mut streak = 0;
    let mut sent = 0;
    while streak < 10 && sent < 600 {
        let r = app.chat("m").await;
        sent += 1;
        if r.header("x-switchyard-provider") == Some("fast") {
            streak += 1;
        } else {
            streak = 0;
        }
    }
    assert_eq!(
        streak, 10,
        "traffic came back to the recovered provider ({sent} requests)"
    );
    app.stop().await;
}
both_backends!(
    lowest_latency_moves_off_a_slow_provider_and_back,
    lowest_latency_follows_speed
);

async fn least_busy_avoids_the_loaded(db: TestDb) {
    let (loaded, idle) = (
        mock("loaded", Behavior::slow(1_500)).await,
        mock("idle", Behavior::ok()).await,
    );
    let mut c = config(
        &db,
        vec![
            provider("loaded", &loaded.base_url(), &["m"]),
            provider("idle", &idle.base_url(), &["m"]),
        ],
    );
    c.routing.strategy = Strategy::LeastBusy;
    let app = TestApp::start(c).await;
    // Three long requests held on "loaded" (the client excludes "idle", id 2) ...
    let held =
        join_all((0..3).map(|_| app.chat_with("m", false, &[("x-switchyard-exclude-providers", "2")])));
    // ... while fresh requests arrive: none joins them.
    let fresh = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        served_by(&app, "m", 12).await
    };
    let (held, fresh) = tokio::join!(held, fresh);
    assert!(held.iter().all(|r| r.status == 200));
    assert_eq!(fresh.get("idle"), Some(&12), "the busiest is avoided: {fresh:?}");
    assert_eq!(loaded.chat_hits(), 3);
    app.stop().await;
}
both_backends!(
    least_busy_avoids_the_provider_with_most_in_flight,
    least_busy_avoids_the_loaded
);

#[actix_rt::test]
async fn least_busy_spreads_concurrent_load() {
    let db = TestDb::sqlite();
    let mocks = [
        mock("p1", Behavior::slow(150)).await,
        mock("p2", Behavior::slow(150)).await,
        mock("p3", Behavior::slow(150)).await,
    ];
    let mut c = config(
        &db,
        mocks
            .iter()
            .map(|m| provider(m.name(), &m.base_url(), &["m"]))
            .collect(),
    );
    c.routing.strategy = Strategy::LeastBusy;
    let app = TestApp::start(c).await;
    let replies = join_all((0..30).map(|_| app.chat("m"))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    let hits: Vec<u64> = mocks.iter().map(|m| m.chat_hits()).collect();
    assert!(
        hits.iter().all(|h| (5..=15).contains(h)),
        "spread over all three: {hits:?}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_streams_latency_is_its_first_byte() {
    let db = TestDb::sqlite();
    // Five chunks 200 ms apart: the whole stream takes about a second, its first byte not.
    let slow_stream = mock("s", Behavior::streaming(5, 200)).await;
    let mut c = config(&db, vec![provider("s", &slow_stream.base_url(), &["m"])]);
    c.routing.strategy = Strategy::LowestLatency;
    let app = TestApp::start(c).await;
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));
    let v = app
        .admin("GET", "/api/routing/explain?model=m", None)
        .await
        .json();
    let latency = v["candidates"][0]["latency_ms"].as_f64().unwrap();
    assert!(
        latency < 500.0,
        "time to first byte, not the whole stream: {latency} ms"
    );
    app.stop().await;
}
