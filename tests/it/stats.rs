//! Usage statistics: exact sums after concurrent bursts, the flush at shutdown, and no loss
//! through a database outage.

use std::time::Duration;

use futures_util::future::join_all;
use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::proxy::ChaosProxy;
use crate::support::{TestApp, TestDb, config, eventually, mock, provider, usage_rows};

async fn burst(db: TestDb) {
    let a = mock("a", Behavior::ok()).await;
    let b = mock(
        "b",
        Behavior {
            stream_chunks: 3,
            ..Behavior::ok()
        },
    )
    .await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["m"]),
            provider("b", &b.base_url(), &["m"]),
        ],
    ))
    .await;
    let plain = (0..120).map(|_| app.chat("m"));
    let streamed = (0..40).map(|_| app.chat_with("m", true, &[]));
    let (plain, streamed) = futures_util::future::join(join_all(plain), join_all(streamed)).await;
    assert!(plain.iter().chain(streamed.iter()).all(|r| r.status == 200));
    assert!(streamed.iter().all(|r| r.text().contains("[DONE]")));
    app.flush().await;
    let rows = usage_rows(db.url());
    let sum = |f: fn(&switchyard::store::UsageRow) -> i64| rows.iter().map(f).sum::<i64>();
    assert_eq!(sum(|r| r.total_requests), 160);
    assert_eq!(sum(|r| r.success_requests), 160);
    assert_eq!(sum(|r| r.failed_requests), 0);
    // Plain answers: 10 prompt + 5 completion; streams: 10 prompt + 3 completion (one per chunk).
    assert_eq!(sum(|r| r.prompt_tokens), 160 * 10);
    assert_eq!(sum(|r| r.completion_tokens), 120 * 5 + 40 * 3);
    assert_eq!(sum(|r| r.total_tokens), 120 * 15 + 40 * 13);
    assert_eq!(rows.len(), 2, "one row per provider, model and day");
    assert!(
        rows.iter()
            .all(|r| r.date == chrono::Utc::now().date_naive() && r.model == "m")
    );
    assert_eq!(a.chat_hits() + b.chat_hits(), 160);
    app.stop().await;
}
both_backends!(usage_sums_exactly_after_a_concurrent_burst, burst);

async fn shutdown_flush(db: TestDb) {
    let a = mock("a", Behavior::slow(300)).await;
    let mut c = config(&db, vec![provider("a", &a.base_url(), &["m"])]);
    c.stats.flush_ms = 3_600_000;
    let app = TestApp::start(c).await;
    for _ in 0..5 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert!(
        usage_rows(db.url()).is_empty(),
        "nothing is written before the (hour-long) flush interval"
    );
    // A request still in flight when shutdown starts must finish and be counted.
    let url = format!("{}/v1/chat/completions", app.url);
    let client = app.client.clone();
    let in_flight = actix_rt::spawn(async move {
        let body = serde_json::json!({"model": "m", "messages": []}).to_string();
        client
            .post(url)
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(eventually(Duration::from_secs(2), || async { a.chat_hits() == 6 }).await);
    app.stop().await;
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight request finished"
    );
    let rows = usage_rows(db.url());
    assert_eq!(
        rows.iter().map(|r| r.total_requests).sum::<i64>(),
        6,
        "shutdown flushed every request"
    );
}
both_backends!(shutdown_finishes_requests_and_flushes_usage, shutdown_flush);

#[actix_rt::test]
async fn usage_survives_a_postgres_outage() {
    let db = TestDb::postgres();
    let proxy = ChaosProxy::start("127.0.0.1:5432");
    let url = db.url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let a = mock("a", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("a", &a.base_url(), &["m"])]);
    c.database_url = url;
    c.stats.flush_ms = 50;
    let app = TestApp::start(c).await;
    for _ in 0..10 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    app.flush().await;
    proxy.break_now();
    for _ in 0..25 {
        assert_eq!(
            app.chat("m").await.status,
            200,
            "routing goes on while the database is down"
        );
    }
    let metrics = app.running().metrics.clone();
    assert!(
        eventually(Duration::from_secs(15), || {
            let m = metrics.clone();
            async move {
                m.render(&[]).contains("switchyard_stats_flush_failures_total 1")
                    || m.render(&[]).contains("switchyard_stats_flush_failures_total 2")
            }
        })
        .await,
        "a flush failed during the outage"
    );
    proxy.restore();
    let rows_url = db.url().to_string();
    assert!(
        eventually(Duration::from_secs(40), || {
            let u = rows_url.clone();
            async move { usage_rows(&u).iter().map(|r| r.total_requests).sum::<i64>() == 35 }
        })
        .await,
        "every request is written once the database is back: {:?}",
        usage_rows(db.url())
    );
    app.stop().await;
    assert_eq!(
        usage_rows(db.url()).iter().map(|r| r.total_requests).sum::<i64>(),
        35,
        "nothing doubled"
    );
}

#[actix_rt::test]
async fn usage_survives_a_locked_sqlite_file() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("a", &a.base_url(), &["m"])]);
    c.stats.flush_ms = 50;
    let app = TestApp::start(c).await;
    // Another connection holds the write lock past the router's busy timeout.
    let lock = crate::support::db::SqliteWriteLock::hold(db.url());
    for _ in 0..20 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    let metrics = app.running().metrics.clone();
    assert!(
        eventually(Duration::from_secs(20), || {
            let m = metrics.clone();
            async move { !m.render(&[]).contains("switchyard_stats_flush_failures_total 0") }
        })
        .await,
        "the write failed while the file was locked"
    );
    lock.release();
    app.flush().await;
    assert_eq!(
        usage_rows(db.url()).iter().map(|r| r.total_requests).sum::<i64>(),
        20,
        "nothing was dropped"
    );
    app.stop().await;
}
