//! Provider health: unhealthy after N counted failures, skipped while unhealthy, recovered by
//! the retry timer's real probe, persisted and loaded at start.

use std::time::Duration;

use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, eventually, mock, pair, provider, validation};

async fn unhealthy_and_recovered(db: TestDb) {
    let (mut c, flaky, _good) = pair(&db, ("flaky", Behavior::status(500)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 3;
    c.health_check.retry_after_seconds = 1;
    let app = TestApp::start(c).await;
    for _ in 0..12 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert_eq!(
        flaky.chat_hits(),
        3,
        "after 3 counted failures the provider is skipped"
    );
    let s = app.state_of("flaky").await;
    assert!(!s.health.is_healthy);
    assert_eq!(s.health.error_count, 3);
    assert_eq!(s.health.last_status_code, Some(500));
    assert!(s.health.last_error.as_deref().unwrap_or("").contains("500"));
    assert!(s.health.next_retry_at.is_some());
    // Persisted (coalesced write).
    let url = db.url().to_string();
    assert!(
        eventually(Duration::from_secs(5), || {
            let url = url.clone();
            async move { validation(&url, "flaky").is_some_and(|v| !v.is_healthy && v.error_count == 3) }
        })
        .await,
        "the unhealthy state reaches the database"
    );
    // The upstream heals; the retry timer (1 s) probes it with a real call and recovers it.
    flaky.set_behavior(Behavior::ok());
    let before = flaky.chat_hits();
    assert!(
        eventually(Duration::from_secs(6), || async {
            app.state_of("flaky").await.health.is_healthy
        })
        .await,
        "the retry timer recovers the provider"
    );
    assert!(
        flaky.chat_hits() > before,
        "recovery came from a real API call to the upstream"
    );
    let probe = flaky.chat_bodies().last().cloned().unwrap();
    assert_eq!(probe["max_tokens"], 1, "the probe is a 1-token completion");
    for _ in 0..4 {
        app.chat("m").await;
    }
    assert!(
        flaky.chat_hits() >= before + 3,
        "a recovered provider gets traffic again"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let url = url.clone();
            async move { validation(&url, "flaky").is_some_and(|v| v.is_healthy && v.error_count == 0) }
        })
        .await
    );
    app.stop().await;
}
both_backends!(
    unhealthy_after_n_failures_and_recovered_by_the_retry_timer,
    unhealthy_and_recovered
);

#[actix_rt::test]
async fn a_failed_probe_keeps_it_unhealthy_and_retries_again() {
    let db = TestDb::sqlite();
    let (mut c, down, _good) = pair(&db, ("down", Behavior::status(503)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 1;
    c.health_check.retry_after_seconds = 1;
    let app = TestApp::start(c).await;
    app.chat("m").await;
    assert!(!app.state_of("down").await.health.is_healthy);
    let hits = down.chat_hits();
    assert!(
        eventually(Duration::from_secs(5), || async { down.chat_hits() >= hits + 2 }).await,
        "probes repeat every retry_after"
    );
    assert!(!app.state_of("down").await.health.is_healthy);
    app.stop().await;
}

#[actix_rt::test]
async fn with_no_healthy_provider_the_soonest_retry_is_tried() {
    let db = TestDb::sqlite();
    let only = mock("only", Behavior::status(500)).await;
    let mut c = config(&db, vec![provider("only", &only.base_url(), &["m"])]);
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c).await;
    assert_eq!(app.chat("m").await.status, 502);
    assert!(!app.state_of("only").await.health.is_healthy);
    only.set_behavior(Behavior::ok());
    let r = app.chat("m").await;
    assert_eq!(
        r.status, 200,
        "the unhealthy provider is still tried when nothing else is left"
    );
    assert!(
        app.state_of("only").await.health.is_healthy,
        "a real success recovers it"
    );
    app.stop().await;
}

async fn persisted_across_restarts(db: TestDb) {
    let (mut c, down, _good) = pair(&db, ("down", Behavior::status(500)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c.clone()).await;
    app.chat("m").await;
    app.stop().await;
    let app = TestApp::start(c).await;
    let s = app.state_of("down").await;
    assert!(
        !s.health.is_healthy,
        "the standing is loaded from the database at start"
    );
    if matches!(db, TestDb::Sqlite { .. }) {
        // One instance on SQLite resumes its own counters; in a fleet each instance counts
        // for itself and starts from zero (docs/DESIGN.md §6).
        assert_eq!(s.health.error_count, 1);
    } else {
        assert_eq!(s.health.error_count, 0);
    }
    let hits = down.chat_hits();
    for _ in 0..3 {
        assert_eq!(app.chat("m").await.header("x-switchyard-provider"), Some("good"));
    }
    assert_eq!(down.chat_hits(), hits);
    app.stop().await;
}
both_backends!(health_survives_a_restart, persisted_across_restarts);

#[actix_rt::test]
async fn without_auto_recovery_a_probe_does_not_recover() {
    let db = TestDb::sqlite();
    let (mut c, down, _good) = pair(&db, ("down", Behavior::status(500)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 1;
    c.health_check.retry_after_seconds = 1;
    c.health_check.auto_recovery = false;
    let app = TestApp::start(c).await;
    app.chat("m").await;
    assert!(!app.state_of("down").await.health.is_healthy);
    down.set_behavior(Behavior::ok());
    let hits = down.chat_hits();
    assert!(
        eventually(Duration::from_secs(5), || async { down.chat_hits() > hits }).await,
        "the retry timer still probes"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = app.state_of("down").await;
    assert!(
        !s.health.is_healthy,
        "a successful probe alone does not recover it"
    );
    assert!(s.health.last_validated_at.is_some());
    app.stop().await;
}
