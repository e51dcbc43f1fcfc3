//! Streaming (SSE) passthrough: chunks reach the client as they arrive, usage is recorded,
//! failover happens only before the first byte, and a break after it ends the stream with an
//! error event.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, mock, provider, usage_rows};

/// Reads a streamed answer, noting when each chunk arrived.
async fn stream_chunks(
    app: &TestApp,
    model: &str,
) -> (u16, Vec<(Duration, bytes::Bytes)>, awc::http::header::HeaderMap) {
    let body =
        serde_json::json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let started = Instant::now();
    let mut resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.url))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("stream request");
    let mut chunks = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), resp.next())
        .await
        .expect("chunk in time")
    {
        match chunk {
            Ok(c) => chunks.push((started.elapsed(), c)),
            Err(_) => break,
        }
    }
    (resp.status().as_u16(), chunks, resp.headers().clone())
}

fn text(chunks: &[(Duration, bytes::Bytes)]) -> String {
    chunks
        .iter()
        .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
        .collect()
}

async fn passthrough(db: TestDb) {
    let up = mock("up", Behavior::streaming(4, 300)).await;
    let app = TestApp::start(config(&db, vec![provider("up", &up.base_url(), &["m"])])).await;
    let (status, chunks, headers) = stream_chunks(&app, "m").await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-switchyard-provider").unwrap(), "up");
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let all = text(&chunks);
    assert!(all.contains("data: [DONE]"), "{all}");
    assert!(all.contains("tok0") && all.contains("tok3"));
    // The upstream spaces its 4 chunks 300 ms apart: the client must see them spread out,
    // not all at the end.
    let first = chunks
        .iter()
        .find(|(_, c)| String::from_utf8_lossy(c).contains("tok0"))
        .unwrap()
        .0;
    let last = chunks
        .iter()
        .find(|(_, c)| String::from_utf8_lossy(c).contains("tok3"))
        .unwrap()
        .0;
    assert!(first < Duration::from_millis(250), "first chunk at {first:?}");
    assert!(last >= Duration::from_millis(850), "last chunk at {last:?}");
    assert!(
        last - first >= Duration::from_millis(800),
        "chunks are forwarded as they arrive"
    );
    // The router asked for usage, and recorded it.
    assert_eq!(up.chat_bodies()[0]["stream_options"]["include_usage"], true);
    app.flush().await;
    let rows = usage_rows(db.url());
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].total_requests, rows[0].success_requests), (1, 1));
    assert_eq!(
        (
            rows[0].prompt_tokens,
            rows[0].completion_tokens,
            rows[0].total_tokens
        ),
        (10, 4, 14)
    );
    app.stop().await;
}
both_backends!(streams_pass_through_chunk_by_chunk, passthrough);

#[actix_rt::test]
async fn a_stream_fails_over_before_its_first_byte() {
    let db = TestDb::sqlite();
    let bad = mock("bad", Behavior::status(500)).await;
    let cut_early = mock(
        "cut",
        Behavior {
            cut_after_chunks: Some(0),
            ..Behavior::streaming(3, 0)
        },
    )
    .await;
    let good = mock("good", Behavior::streaming(2, 0)).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("bad", &bad.base_url(), &["m"]),
            provider("cut", &cut_early.base_url(), &["m"]),
            provider("good", &good.base_url(), &["m"]),
        ],
    ))
    .await;
    let (status, chunks, headers) = stream_chunks(&app, "m").await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-switchyard-provider").unwrap(), "good");
    assert_eq!(headers.get("x-switchyard-attempts").unwrap(), "3");
    assert!(text(&chunks).contains("[DONE]"));
    app.stop().await;
}

async fn mid_stream_break(db: TestDb) {
    let up = mock(
        "up",
        Behavior {
            cut_after_chunks: Some(2),
            ..Behavior::streaming(5, 50)
        },
    )
    .await;
    let other = mock("other", Behavior::streaming(2, 0)).await;
    let mut c = config(
        &db,
        vec![
            provider("up", &up.base_url(), &["m"]),
            provider("other", &other.base_url(), &["m"]),
        ],
    );
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c).await;
    let (status, chunks, headers) = stream_chunks(&app, "m").await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-switchyard-provider").unwrap(), "up");
    let all = text(&chunks);
    assert!(all.contains("tok1"), "{all}");
    assert!(
        !all.contains("[DONE]"),
        "a broken stream never ends cleanly: {all}"
    );
    assert!(
        all.contains("event: error\ndata: {\"error\""),
        "it ends with an SSE error event: {all}"
    );
    assert_eq!(other.chat_hits(), 0, "no failover after the first byte");
    app.flush().await;
    let rows = usage_rows(db.url());
    let row = rows
        .iter()
        .find(|r| r.failed_requests == 1)
        .expect("the broken stream is a failure in usage");
    assert_eq!(row.total_requests, 1);
    // It counts against the provider's health too (max_error_count = 1).
    let states = app.provider_states().await;
    let up_state = states.iter().find(|s| s.config.name == "up").unwrap();
    assert!(!up_state.health.is_healthy);
    assert_eq!(up_state.health.error_count, 1);
    app.stop().await;
}
both_backends!(
    a_break_after_the_first_byte_ends_with_an_error_event,
    mid_stream_break
);

/// A finished stream gives its upstream connection back: the next requests reuse it instead
/// of paying for a new connection each (the body's last chunk is read after `[DONE]`).
#[actix_rt::test]
async fn streams_reuse_their_upstream_connection() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::ok()).await;
    let proxy = crate::support::proxy::ChaosProxy::start(&up.addr().to_string());
    let mut c = config(
        &db,
        vec![provider("up", &format!("http://{}/v1", proxy.addr), &["m"])],
    );
    c.workers = 1;
    let app = TestApp::start(c).await;
    for _ in 0..6 {
        let (status, chunks, _) = stream_chunks(&app, "m").await;
        assert_eq!(status, 200);
        let all: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
        assert!(String::from_utf8_lossy(&all).contains("[DONE]"));
    }
    assert_eq!(up.chat_hits(), 6);
    assert_eq!(proxy.connections(), 1, "one upstream connection for six streams");
    app.stop().await;
}

/// Stream events written one by one leave at once, on both sides of the router: with Nagle's
/// algorithm on (the OS default, which actix keeps), an event written while the previous one is
/// unacknowledged waits for the peer's delayed ACK, and a whole stream took about 40 ms once a
/// keep-alive connection was past the kernel's quick-ACK start.
#[actix_rt::test]
async fn events_written_one_by_one_are_not_held_back() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::streaming(10, 0)).await;
    let spec: switchyard::config::ProviderSpec = serde_json::from_value(serde_json::json!({
        "name": "up", "kind": "anthropic", "base_url": up.base_url(), "models": ["c"],
    }))
    .unwrap();
    let app = TestApp::start(config(&db, vec![spec])).await;
    let body = r#"{"model":"c","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut took = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let mut resp = app
            .client
            .post(format!("{}/v1/messages", app.url))
            .insert_header(("content-type", "application/json"))
            .insert_header(("anthropic-version", "2023-06-01"))
            .send_body(body)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let all = resp.body().await.unwrap();
        assert!(String::from_utf8_lossy(&all).contains("message_stop"));
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(25),
        "median stream {median:?}: {took:?}"
    );
    app.stop().await;
}
