//! The mock over real sockets, driven by `awc`. Every await is bounded so a regression fails
//! fast instead of hanging the suite.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use mock_upstream::{Behavior, MockOptions, MockUpstream};
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    actix_rt::time::timeout(STEP, f)
        .await
        .expect("test step timed out")
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(5)).finish()
}

async fn start(name: &str, b: Behavior) -> MockUpstream {
    bounded(MockUpstream::start(name, b)).await.expect("mock starts")
}

fn chat_body(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Parses an SSE body into its `data:` payloads.
fn events(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .expect("utf8 body")
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data event").to_owned())
        .collect()
}

/// Reads a streamed body chunk by chunk, stamping each with the time since `t0`.
/// Ends at the end of the body or at the first error (returned as `Err`).
async fn read_timed<S>(resp: &mut S, t0: Instant) -> (Vec<(Duration, Bytes)>, Result<(), String>)
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut out = Vec::new();
    loop {
        match bounded(resp.next()).await {
            None => return (out, Ok(())),
            Some(Ok(b)) => out.push((t0.elapsed(), b)),
            Some(Err(e)) => return (out, Err(e.to_string())),
        }
    }
}

#[actix_rt::test]
async fn non_stream_answer_shape_and_recording() {
    let mock = start("alpha", Behavior::ok()).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let mut resp = bounded(
        client()
            .post(&url)
            .insert_header(("authorization", "Bearer sk-test"))
            .send_json(&json!({"model": "gpt-x", "messages": []})),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("x-mock-name").and_then(|v| v.to_str().ok()),
        Some("alpha")
    );
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = bounded(resp.json()).await.expect("json body");
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().expect("created") > 1_600_000_000);
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from alpha");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    );

    // The un-prefixed path works too.
    let resp = bounded(
        client()
            .post(format!("http://{}/chat/completions", mock.addr()))
            .send_json(&json!({"model": "m"})),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 200);

    let mut resp = bounded(client().get(format!("{}/models", mock.base_url())).send())
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = bounded(resp.json()).await.expect("json body");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "gpt-4o-mini");
    assert_eq!(v["data"][0]["owned_by"], "mock");

    assert_eq!(mock.chat_hits(), 2);
    assert_eq!(mock.models_hits(), 1);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(reqs[0].body["model"], "gpt-x");
    assert_eq!(reqs[1].path, "/chat/completions");
    assert_eq!(reqs[2].body, Value::Null);
    assert!(reqs[0].at <= reqs[2].at);

    mock.reset_counters();
    assert_eq!(mock.chat_hits(), 0);
    assert!(mock.requests().is_empty());
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn stream_chunks_are_spaced_in_time() {
    let mock = start("beta", Behavior::streaming(3, 200)).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let t0 = Instant::now();
    let mut resp = bounded(client().post(&url).send_json(&chat_body(true, false)))
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let (chunks, end) = read_timed(&mut resp, t0).await;
    end.expect("complete body");

    let first = chunks.first().expect("a chunk").0;
    assert!(first < Duration::from_millis(150), "first chunk at {first:?}");
    // The last content chunk is due at 400 ms.
    let last_token = chunks
        .iter()
        .find(|(_, b)| std::str::from_utf8(b).is_ok_and(|s| s.contains("tok2 ")))
        .expect("third token")
        .0;
    assert!(
        last_token > Duration::from_millis(350),
        "last chunk at {last_token:?}"
    );

    let body: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let evs = events(&body);
    assert_eq!(evs.len(), 5, "3 tokens + finish + [DONE]: {evs:?}");
    assert_eq!(evs.last().map(String::as_str), Some("[DONE]"));
    let parsed: Vec<Value> = evs[..4]
        .iter()
        .map(|e| serde_json::from_str(e).expect("json event"))
        .collect();
    assert_eq!(parsed[0]["object"], "chat.completion.chunk");
    assert_eq!(parsed[0]["model"], "gpt-4o-mini");
    assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(parsed[0]["choices"][0]["delta"]["content"], "tok0 ");
    assert_eq!(parsed[2]["choices"][0]["delta"]["content"], "tok2 ");
    assert!(parsed[1]["choices"][0]["delta"].get("role").is_none());
    assert_eq!(parsed[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(parsed[3]["choices"][0]["delta"], json!({}));
    assert!(parsed.iter().all(|p| p.get("usage").is_none()));
    assert!(parsed.iter().all(|p| p["id"] == parsed[0]["id"]));
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn stream_usage_only_when_asked() {
    let mock = start("gamma", Behavior::streaming(4, 0)).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let mut resp = bounded(client().post(&url).send_json(&chat_body(true, true)))
        .await
        .expect("response");
    let body = bounded(resp.body()).await.expect("body");
    let evs = events(&body);
    assert_eq!(evs.len(), 7, "4 tokens + finish + usage + [DONE]: {evs:?}");
    let usage: Value = serde_json::from_str(&evs[5]).expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14})
    );
    assert_eq!(evs[6], "[DONE]");
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn rate_limited_has_retry_after_and_error_body() {
    let mock = start("rl", Behavior::rate_limited(5)).await;
    let mut resp = bounded(
        client()
            .post(format!("{}/chat/completions", mock.base_url()))
            .send_json(&chat_body(false, false)),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let v: Value = bounded(resp.json()).await.expect("json body");
    assert_eq!(
        v,
        json!({"error": {"message": "mock failure 429", "type": "mock_error", "code": "429"}})
    );
    assert_eq!(mock.chat_hits(), 1);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn redirect_has_location() {
    let mock = start(
        "moved",
        Behavior::redirect(307, "http://127.0.0.1:9/v1/chat/completions"),
    )
    .await;
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(5))
        .finish();
    let resp = bounded(
        client
            .post(format!("{}/chat/completions", mock.base_url()))
            .send_json(&chat_body(false, false)),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 307);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("http://127.0.0.1:9/v1/chat/completions")
    );
    bounded(mock.stop()).await;
}

/// Sends a raw HTTP/1.1 request and reads until the server closes the connection.
fn raw_exchange(addr: std::net::SocketAddr, body: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    // A reset instead of a FIN is fine too: what matters is what arrived before.
    let _ = s.read_to_end(&mut out);
    out
}

#[actix_rt::test]
async fn cut_after_chunks_cuts_the_body() {
    let mock = start(
        "cut",
        Behavior {
            stream_chunks: 5,
            cut_after_chunks: Some(2),
            ..Behavior::default()
        },
    )
    .await;

    // On the wire: two events, then the connection closes without the chunked terminator.
    let addr = mock.addr();
    let body = chat_body(true, true).to_string();
    let raw = bounded(actix_rt::task::spawn_blocking(move || raw_exchange(addr, &body)))
        .await
        .expect("raw client thread");
    let raw = String::from_utf8(raw).expect("utf8");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("tok1 ") && !raw.contains("tok2 "), "{raw}");
    assert!(!raw.contains("[DONE]"), "{raw}");
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "chunked body must not be terminated: {raw}"
    );

    // Through awc (the router's client) the body ends after the two events. Note that awc 3
    // reports a connection closed mid-chunked-body as a clean end of stream, not an error:
    // a client must notice the missing finish chunk / [DONE] itself.
    let mut resp = bounded(
        client()
            .post(format!("{}/chat/completions", mock.base_url()))
            .send_json(&chat_body(true, true)),
    )
    .await
    .expect("response head");
    assert_eq!(resp.status().as_u16(), 200);
    let (chunks, _end) = read_timed(&mut resp, Instant::now()).await;
    let body: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let evs = events(&body);
    assert_eq!(evs.len(), 2, "exactly the first two tokens: {evs:?}");
    assert!(!evs.iter().any(|e| e == "[DONE]"));
    assert_eq!(mock.chat_hits(), 2);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn set_behavior_takes_effect_on_next_request() {
    let mock = start("swap", Behavior::ok()).await;
    let handle = mock.handle();
    let url = format!("{}/chat/completions", mock.base_url());
    let status = |url: String| async move {
        bounded(client().post(url).send_json(&chat_body(false, false)))
            .await
            .expect("response")
            .status()
            .as_u16()
    };
    assert_eq!(status(url.clone()).await, 200);
    // From another thread, through the Send handle.
    std::thread::spawn(move || handle.set_behavior(Behavior::status(503)))
        .join()
        .expect("thread");
    assert_eq!(status(url.clone()).await, 503);
    assert_eq!(mock.behavior().status, 503);
    mock.set_behavior(Behavior {
        fail_rate: 1.0,
        fail_status: 502,
        ..Behavior::default()
    });
    assert_eq!(status(url.clone()).await, 502);
    mock.set_behavior(Behavior::ok());
    assert_eq!(status(url).await, 200);
    assert_eq!(mock.chat_hits(), 4);

    // /v1/models follows the behaviour too, so it can be a failing health-probe target.
    mock.set_behavior(Behavior::status(500));
    let resp = bounded(client().get(format!("{}/models", mock.base_url())).send())
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 500);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn stall_holds_the_request_open() {
    let mock = start("stall", Behavior::stall()).await;
    let t0 = Instant::now();
    let res = bounded(
        client()
            .post(format!("{}/chat/completions", mock.base_url()))
            .timeout(Duration::from_millis(300))
            .send_json(&chat_body(false, false)),
    )
    .await;
    assert!(
        matches!(res, Err(awc::error::SendRequestError::Timeout)),
        "{res:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(mock.chat_hits(), 1);
    // Stopping does not wait for the stalled request.
    let t1 = Instant::now();
    bounded(mock.stop()).await;
    assert!(t1.elapsed() < Duration::from_secs(5));
}

#[actix_rt::test]
async fn latency_and_model_scripting() {
    let mock = start("demo", Behavior::slow(150)).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let post = |body: Value| {
        let url = url.clone();
        async move {
            let t0 = Instant::now();
            let mut resp = bounded(client().post(url).send_json(&body))
                .await
                .expect("response");
            let v: Value = bounded(resp.json()).await.expect("json body");
            (resp.status().as_u16(), v, t0.elapsed())
        }
    };
    let (s, _, took) = post(json!({"model": "m"})).await;
    assert_eq!(s, 200);
    assert!(took >= Duration::from_millis(150), "{took:?}");

    mock.set_behavior(Behavior::ok());
    let (s, v, _) = post(json!({"model": "fail-502"})).await;
    assert_eq!(s, 502);
    assert_eq!(v["error"]["code"], "502");
    let (s, v, _) = post(json!({"model": "mock-bad-request"})).await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        json!({"error": {"message": "mock: bad request", "type": "invalid_request_error", "code": "bad_request"}})
    );
    let (s, _, took) = post(json!({"model": "slow-120ms"})).await;
    assert_eq!(s, 200);
    assert!(took >= Duration::from_millis(120), "{took:?}");

    let mut resp = bounded(
        client()
            .post(&url)
            .insert_header(("content-type", "application/json"))
            .send_body("{not json"),
    )
    .await
    .expect("response");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = bounded(resp.json()).await.expect("json body");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Unparsable bodies are still recorded, as text.
    assert_eq!(
        mock.requests().last().map(|r| r.body.clone()),
        Some(Value::String("{not json".into()))
    );
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn options_recording_off_and_stop() {
    let mock = bounded(MockUpstream::start_with(MockOptions {
        workers: 2,
        record: false,
        behavior: Behavior {
            models: vec!["a".into(), "b".into()],
            ..Behavior::default()
        },
        ..MockOptions::new("opts")
    }))
    .await
    .expect("mock starts");
    let addr = mock.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(mock.base_url(), format!("http://{addr}/v1"));
    let mut resp = bounded(client().get(format!("{}/models", mock.base_url())).send())
        .await
        .expect("response");
    let v: Value = bounded(resp.json()).await.expect("json body");
    assert_eq!(v["data"][1]["id"], "b");
    assert_eq!(mock.models_hits(), 1);
    assert!(mock.requests().is_empty());

    bounded(mock.stop()).await;
    let after = bounded(client().get(format!("http://{addr}/v1/models")).send()).await;
    assert!(after.is_err(), "server must be gone after stop");
}
