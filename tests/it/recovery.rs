//! Recovery that backs off: failed retry probes space out by `retry_backoff_factor` up to
//! `max_retry_after_seconds`; `failure_rate_threshold` over `failure_rate_window` turns a
//! provider unhealthy that never fails enough times in a row; both show in the health view.

use std::time::{Duration, Instant};

use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, eventually, mock, pair, provider};

async fn retries_back_off(db: TestDb) {
    let down = mock("down", Behavior::status(503)).await;
    let mut c = config(&db, vec![provider("down", &down.base_url(), &["m"])]);
    c.health_check.max_error_count = 1;
    c.health_check.retry_after_seconds = 1;
    c.health_check.retry_backoff_factor = 2.0;
    c.health_check.max_retry_after_seconds = 2;
    let app = TestApp::start(c).await;
    assert_eq!(app.chat("m").await.status, 502);
    assert!(!app.state_of("down").await.health.is_healthy);
    // The failed request, then probes after 1 s, 2 s (grown), 2 s (capped).
    assert!(
        eventually(Duration::from_secs(9), || async { down.chat_hits() >= 4 }).await,
        "the retry timer keeps probing"
    );
    let at: Vec<Instant> = down.requests().iter().map(|r| r.at).collect();
    let gaps: Vec<f64> = at
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    assert!(
        (0.9..1.6).contains(&gaps[0]),
        "first retry after retry_after: {gaps:?}"
    );
    assert!((1.9..2.6).contains(&gaps[1]), "then twice as long: {gaps:?}");
    assert!((1.9..2.6).contains(&gaps[2]), "then capped: {gaps:?}");
    let health = app.admin("GET", "/api/providers/health", None).await.json();
    let row = &health["data"][0];
    assert!(row["failed_retries"].as_u64().unwrap() >= 3, "{row}");
    assert_eq!(health["recovery"]["retry_backoff_factor"], 2.0, "{health}");
    assert_eq!(health["recovery"]["max_retry_after"], 2, "{health}");
    assert_eq!(health["recovery"]["failure_rate_window"], 20, "{health}");
    // Healed: the next probe recovers it and the backoff starts over.
    down.set_behavior(Behavior::ok());
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.state_of("down").await.health.is_healthy
        })
        .await,
        "recovered by the next probe"
    );
    assert_eq!(app.state_of("down").await.health.failed_retries, 0);
    app.stop().await;
}
both_backends!(failed_retries_wait_longer_each_time, retries_back_off);

async fn failure_rate_trips(db: TestDb) {
    let (mut c, flaky, good) = pair(&db, ("flaky", Behavior::ok()), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 100;
    c.health_check.failure_rate_threshold = Some(0.4);
    c.health_check.failure_rate_window = 5;
    // Only the flaky one may serve until it trips.
    c.providers[1].priority = 1;
    let app = TestApp::start(c).await;
    // success, failure, success, success, failure: never two failures in a row, 2 of 5.
    for fails in [false, true, false, false, true] {
        flaky.set_behavior(if fails {
            Behavior::status(500)
        } else {
            Behavior::ok()
        });
        assert_eq!(app.chat("m").await.status, 200);
        // Successes reach the actor in batches: let each land before the next outcome.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let s = app.state_of("flaky").await;
    assert!(
        !s.health.is_healthy,
        "2 failures in the last 5 reach 0.4: {:?}",
        s.health
    );
    assert_eq!(s.health.error_count, 1, "never more than one in a row");
    let health = app.admin("GET", "/api/providers/health", None).await.json();
    let row = health["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider_name"] == "flaky")
        .unwrap()
        .clone();
    assert_eq!(row["recent_outcomes"]["failures"], 2, "{row}");
    assert_eq!(row["recent_outcomes"]["failure_rate"], 0.4, "{row}");
    assert_eq!(health["recovery"]["failure_rate_threshold"], 0.4);
    // The failed requests failed over to the fallback tier.
    assert_eq!(good.chat_hits(), 2);
    let hits = flaky.chat_hits();
    app.chat("m").await;
    assert_eq!(flaky.chat_hits(), hits, "an unhealthy provider is skipped");
    app.stop().await;
}
both_backends!(a_failure_rate_over_the_window_turns_unhealthy, failure_rate_trips);
