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

/// A `spaced-<ms>ms` model spaces a chat stream's chunks on a mock whose streams otherwise
/// leave at once, and only that model's.
#[actix_rt::test]
async fn a_spaced_model_spaces_its_stream() {
    let mock = start("spaced", Behavior::streaming(3, 0)).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let timed = |model: &'static str| {
        let url = url.clone();
        async move {
            let mut body = chat_body(true, false);
            body["model"] = json!(model);
            let t0 = Instant::now();
            let mut resp = bounded(client().post(&url).send_json(&body))
                .await
                .expect("response");
            assert_eq!(resp.status().as_u16(), 200);
            let (chunks, end) = read_timed(&mut resp, t0).await;
            end.expect("complete body");
            let body: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.to_vec()).collect();
            assert_eq!(events(&body).len(), 5, "3 tokens + finish + [DONE]");
            chunks
        }
    };
    let spaced = timed("spaced-150ms").await;
    // Tokens 1 and 2 are due at 150 and 300 ms, the end right after the last.
    let last = spaced.last().expect("a chunk").0;
    assert!(
        last > Duration::from_millis(280),
        "spaced stream ended at {last:?}"
    );
    assert!(spaced.len() >= 3, "spaced chunks arrive apart: {}", spaced.len());
    let at_once = timed("gpt-4o-mini").await;
    let last = at_once.last().expect("a chunk").0;
    assert!(
        last < Duration::from_millis(150),
        "plain stream ended at {last:?}"
    );
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

/// Sends a raw HTTP/1.1 JSON POST (`headers` are extra lines, each ending in `\r\n`) and
/// returns the connection, with a 5 s read timeout.
fn raw_post(addr: std::net::SocketAddr, path: &str, headers: &str, body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    s
}

/// Sends a raw chat request and reads until the server closes the connection.
fn raw_exchange(addr: std::net::SocketAddr, body: &str) -> Vec<u8> {
    use std::io::Read;
    let mut s = raw_post(addr, "/v1/chat/completions", "connection: close\r\n", body);
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

// ---- Anthropic Messages, embeddings, legacy completions, Responses, tool calls ----

use mock_upstream::Endpoint;

/// A minimal valid Anthropic Messages request.
fn messages_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

/// Posts `body` to `<base>/<path>` with Anthropic's headers; returns status, headers, body.
async fn post_anthropic(
    mock: &MockUpstream,
    body: &Value,
    key: Option<&str>,
    version: bool,
) -> (u16, awc::http::header::HeaderMap, Bytes) {
    let mut req = client().post(format!("{}/messages", mock.base_url()));
    if let Some(key) = key {
        req = req.insert_header(("x-api-key", key));
    }
    if version {
        req = req.insert_header(("anthropic-version", "2023-06-01"));
    }
    let mut resp = bounded(req.send_json(body)).await.expect("response");
    let body = bounded(resp.body().limit(64 << 20)).await.expect("body");
    (resp.status().as_u16(), resp.headers().clone(), body)
}

/// Posts `body` to `<base><path>` (OpenAI style); returns status, headers, body.
async fn post(mock: &MockUpstream, path: &str, body: &Value) -> (u16, awc::http::header::HeaderMap, Bytes) {
    let mut resp = bounded(
        client()
            .post(format!("{}{path}", mock.base_url()))
            .send_json(body),
    )
    .await
    .expect("response");
    let body = bounded(resp.body().limit(64 << 20)).await.expect("body");
    (resp.status().as_u16(), resp.headers().clone(), body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("json body")
}

fn mock_name(h: &awc::http::header::HeaderMap) -> Option<&str> {
    h.get("x-mock-name").and_then(|v| v.to_str().ok())
}

/// Parses an SSE body of `event:` + `data:` frames; checks the event name equals the data's
/// `type`, as Anthropic's and the Responses API's streams do.
fn named_events(body: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(body)
        .expect("utf8 body")
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event line").to_owned();
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").expect("data line")).expect("json data");
            assert_eq!(data["type"], name.as_str(), "{e}");
            (name, data)
        })
        .collect()
}

#[actix_rt::test]
async fn messages_plain_shape_and_recorded_headers() {
    let mock = start(
        "claude",
        Behavior {
            cache_read_tokens: Some(3),
            ..Behavior::default()
        },
    )
    .await;
    let (status, headers, body) = post_anthropic(&mock, &messages_body(false), Some("sk-ant"), true).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(mock_name(&headers), Some("claude"));
    let v = json_of(&body);
    assert!(v["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from claude"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3})
    );

    assert_eq!(mock.hits(Endpoint::Messages), 1);
    assert_eq!(mock.chat_hits(), 0);
    let reqs = mock.requests_to(Endpoint::Messages);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/messages");
    assert_eq!(reqs[0].header("x-api-key"), Some("sk-ant"));
    assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(reqs[0].body["max_tokens"], 64);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn messages_refuses_what_anthropic_refuses() {
    let mock = start("strict", Behavior::anthropic_key("sk-right")).await;
    let error_type = |body: &Bytes| {
        let v = json_of(body);
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["type"].as_str().expect("type").to_owned()
    };

    let (s, h, b) = post_anthropic(&mock, &messages_body(false), Some("sk-wrong"), true).await;
    assert_eq!((s, error_type(&b).as_str()), (401, "authentication_error"));
    assert_eq!(mock_name(&h), Some("strict"));
    let (s, _, b) = post_anthropic(&mock, &messages_body(false), None, true).await;
    assert_eq!((s, error_type(&b).as_str()), (401, "authentication_error"));

    let (s, _, b) = post_anthropic(&mock, &messages_body(false), Some("sk-right"), false).await;
    assert_eq!((s, error_type(&b).as_str()), (400, "invalid_request_error"));
    assert!(
        json_of(&b)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("anthropic-version"))
    );

    let mut no_max = messages_body(false);
    no_max.as_object_mut().expect("object").remove("max_tokens");
    let (s, _, b) = post_anthropic(&mock, &no_max, Some("sk-right"), true).await;
    assert_eq!((s, error_type(&b).as_str()), (400, "invalid_request_error"));
    assert!(
        json_of(&b)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_tokens"))
    );
    let mut absurd = messages_body(false);
    absurd["max_tokens"] = json!(-1);
    let (s, _, _) = post_anthropic(&mock, &absurd, Some("sk-right"), true).await;
    assert_eq!(s, 400);

    let (s, _, b) = post_anthropic(&mock, &messages_body(false), Some("sk-right"), true).await;
    assert_eq!(s, 200, "{b:?}");
    // Every refused request was still counted and recorded.
    assert_eq!(mock.hits(Endpoint::Messages), 6);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn messages_errors_have_anthropic_shape_per_status() {
    let mock = start("errs", Behavior::ok()).await;
    for (code, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        mock.set_behavior(Behavior {
            retry_after_secs: Some(2),
            ..Behavior::status(code)
        });
        let (s, h, b) = post_anthropic(&mock, &messages_body(false), Some("k"), true).await;
        assert_eq!(s, code);
        assert_eq!(mock_name(&h), Some("errs"));
        assert_eq!(
            json_of(&b),
            json!({"type": "error", "error": {"type": kind, "message": format!("mock failure {code}")}})
        );
        assert_eq!(h.get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    }
    // The overloaded shortcut, and the model-name scripting, answer in Anthropic's shape too.
    mock.set_behavior(Behavior::overloaded());
    let (s, _, b) = post_anthropic(&mock, &messages_body(true), Some("k"), true).await;
    assert_eq!(
        (s, json_of(&b)["error"]["type"].clone()),
        (529, json!("overloaded_error"))
    );
    mock.set_behavior(Behavior::ok());
    let mut body = messages_body(false);
    body["model"] = json!("fail-529");
    let (s, _, b) = post_anthropic(&mock, &body, Some("k"), true).await;
    assert_eq!(
        (s, json_of(&b)["error"]["type"].clone()),
        (529, json!("overloaded_error"))
    );
    let (s, _, b) = post_anthropic(&mock, &json!("not an object"), Some("k"), true).await;
    assert_eq!((s, json_of(&b)["type"].clone()), (400, json!("error")));
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn messages_stream_follows_anthropic_event_order() {
    let mock = start("streamer", Behavior::streaming(3, 0)).await;
    let (s, h, body) = post_anthropic(&mock, &messages_body(true), Some("k"), true).await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert_eq!(mock_name(&h), Some("streamer"));
    let evs = named_events(&body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start_msg = &evs[0].1["message"];
    assert!(start_msg["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(start_msg["model"], "claude-sonnet-4");
    assert_eq!(start_msg["content"], json!([]));
    assert_eq!(start_msg["usage"]["input_tokens"], 10);
    assert_eq!(evs[1].1["content_block"], json!({"type": "text", "text": ""}));
    let text: String = evs[3..6]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(evs[6].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        evs[7].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 3}})
    );
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn messages_stream_error_event_mid_stream() {
    let mock = start(
        "flaky",
        Behavior {
            stream_chunks: 4,
            stream_error_after_chunks: Some(1),
            ..Behavior::default()
        },
    )
    .await;
    let (s, _, body) = post_anthropic(&mock, &messages_body(true), Some("k"), true).await;
    assert_eq!(s, 200);
    let evs = named_events(&body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        evs[4].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    bounded(mock.stop()).await;
}

fn anthropic_tools(mut body: Value) -> Value {
    body["tools"] = json!([
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
        {"name": "search", "input_schema": {"type": "object"}}
    ]);
    body
}

#[actix_rt::test]
async fn messages_tool_use_plain_and_streamed() {
    let mock = start("tooly", Behavior::tool_calls()).await;
    let (s, _, b) = post_anthropic(&mock, &anthropic_tools(messages_body(false)), Some("k"), true).await;
    assert_eq!(s, 200);
    let v = json_of(&b);
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().expect("id").starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"from": "tooly"}));

    // Without tools the same behaviour answers text.
    let (_, _, b) = post_anthropic(&mock, &messages_body(false), Some("k"), true).await;
    assert_eq!(json_of(&b)["stop_reason"], "end_turn");

    let (s, _, body) = post_anthropic(&mock, &anthropic_tools(messages_body(true)), Some("k"), true).await;
    assert_eq!(s, 200);
    let evs = named_events(&body);
    let start_block = &evs[1].1["content_block"];
    assert_eq!(start_block["type"], "tool_use");
    assert_eq!(start_block["name"], "get_weather");
    assert_eq!(start_block["input"], json!({}));
    let partial: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().expect("partial").to_owned()
        })
        .collect();
    assert_eq!(json_of(partial.as_bytes()), json!({"from": "tooly"}));
    let delta = evs
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs.last().map(|(n, _)| n.as_str()), Some("message_stop"));

    // A forcing tool_choice calls a tool on a plain behaviour; "none" never does.
    mock.set_behavior(Behavior {
        tool_arguments: Some(json!({"q": "rust"})),
        ..Behavior::default()
    });
    let mut forced = anthropic_tools(messages_body(false));
    forced["tool_choice"] = json!({"type": "tool", "name": "search"});
    let (_, _, b) = post_anthropic(&mock, &forced, Some("k"), true).await;
    let v = json_of(&b);
    assert_eq!(v["content"][0]["name"], "search");
    assert_eq!(v["content"][0]["input"], json!({"q": "rust"}));
    forced["tool_choice"] = json!({"type": "none"});
    let (_, _, b) = post_anthropic(&mock, &forced, Some("k"), true).await;
    assert_eq!(json_of(&b)["content"][0]["type"], "text");
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn models_in_anthropic_shape_when_asked() {
    let mock = start("both", Behavior::ok()).await;
    let get = || async {
        let mut resp = bounded(
            client()
                .get(format!("{}/models", mock.base_url()))
                .insert_header(("anthropic-version", "2023-06-01"))
                .send(),
        )
        .await
        .expect("response");
        let v: Value = bounded(resp.json()).await.expect("json");
        (resp.status().as_u16(), v)
    };
    let (s, v) = get().await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["id"], "gpt-4o-mini");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "gpt-4o-mini");

    mock.set_behavior(Behavior::overloaded());
    let (s, v) = get().await;
    assert_eq!(s, 529);
    assert_eq!(v["error"]["type"], "overloaded_error");
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn chat_tool_calls_plain_and_streamed() {
    let mock = start("caller", Behavior::tool_calls()).await;
    let mut body = chat_body(false, false);
    body["tools"] =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let (s, h, b) = post(&mock, "/chat/completions", &body).await;
    assert_eq!(s, 200);
    assert_eq!(mock_name(&h), Some("caller"));
    let v = json_of(&b);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    let call = &msg["tool_calls"][0];
    assert!(call["id"].as_str().expect("id").starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        json_of(call["function"]["arguments"].as_str().expect("args").as_bytes()),
        json!({"from": "caller"})
    );

    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (s, _, b) = post(&mock, "/chat/completions", &body).await;
    assert_eq!(s, 200);
    let evs = events(&b);
    assert_eq!(evs.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("json"))
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(first["tool_calls"][0]["index"], 0);
    let args: String = chunks[1..4]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .expect("args")
                .to_owned()
        })
        .collect();
    assert_eq!(json_of(args.as_bytes()), json!({"from": "caller"}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);

    // "required" forces a call on a plain behaviour; without tools the answer is text.
    mock.set_behavior(Behavior::ok());
    body["stream"] = json!(false);
    body["tool_choice"] = json!("required");
    let (_, _, b) = post(&mock, "/chat/completions", &body).await;
    assert_eq!(json_of(&b)["choices"][0]["finish_reason"], "tool_calls");
    let (_, _, b) = post(&mock, "/chat/completions", &chat_body(false, false)).await;
    assert_eq!(
        json_of(&b)["choices"][0]["message"]["content"],
        "Hello from caller"
    );
    bounded(mock.stop()).await;
}

/// Decodes standard padded base64 (enough for the test).
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextets: Vec<u32> = s
        .bytes()
        .filter(|b| *b != b'=')
        .map(|b| ALPHABET.iter().position(|a| *a == b).expect("base64 char") as u32)
        .collect();
    let mut out = Vec::new();
    for group in sextets.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | v << (18 - 6 * i));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

#[actix_rt::test]
async fn embeddings_float_base64_and_refusals() {
    let mock = start("emb", Behavior::ok()).await;
    let (s, h, b) = post(
        &mock,
        "/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(mock_name(&h), Some("emb"));
    let v = json_of(&b);
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 10, "total_tokens": 10}));
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().expect("vector").len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    // A single string with `dimensions`, and base64 (what the Python SDK asks for).
    let (_, _, b) = post(
        &mock,
        "/embeddings",
        &json!({"model": "e", "input": "a", "dimensions": 3}),
    )
    .await;
    let float: Vec<f32> = json_of(&b)["data"][0]["embedding"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(float.len(), 3);
    let (_, _, b) = post(
        &mock,
        "/embeddings",
        &json!({"model": "e", "input": "a", "dimensions": 3, "encoding_format": "base64"}),
    )
    .await;
    let b64 = json_of(&b)["data"][0]["embedding"]
        .as_str()
        .expect("base64")
        .to_owned();
    let decoded: Vec<f32> = base64_decode(&b64)
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(decoded, float, "base64 carries the same little-endian f32s");
    // Vectors depend on the input only: the same text gets the same vector again.
    let (_, _, b) = post(&mock, "/embeddings", &json!({"model": "x", "input": ["b"]})).await;
    assert_eq!(json_of(&b)["data"][0]["embedding"], data[1]["embedding"]);

    for bad in [
        json!({"model": "e"}),
        json!({"model": "e", "input": []}),
        json!({"model": "e", "input": "a", "dimensions": 0}),
        json!({"model": "e", "input": "a", "dimensions": u64::MAX}),
        json!({"model": "e", "input": "a", "encoding_format": "hex"}),
    ] {
        let (s, _, b) = post(&mock, "/embeddings", &bad).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(json_of(&b)["error"]["type"], "invalid_request_error");
    }
    assert_eq!(mock.hits(Endpoint::Embeddings), 9);
    assert_eq!(mock.requests_to(Endpoint::Embeddings).len(), 9);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn completions_plain_and_streamed() {
    let mock = start("legacy", Behavior::streaming(2, 0)).await;
    let (s, h, b) = post(
        &mock,
        "/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(mock_name(&h), Some("legacy"));
    let v = json_of(&b);
    assert!(v["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(v["choices"][0]["text"], "Hello from legacy");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 15);

    let (s, _, b) = post(
        &mock,
        "/completions",
        &json!({"model": "i", "prompt": ["a"], "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(s, 200);
    let evs = events(&b);
    assert_eq!(evs.len(), 5, "2 texts + finish + usage + [DONE]: {evs:?}");
    assert_eq!(evs[4], "[DONE]");
    let chunks: Vec<Value> = evs[..4]
        .iter()
        .map(|e| serde_json::from_str(e).expect("json"))
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[0]["choices"][0]["text"], "tok0 ");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["choices"], json!([]));
    assert_eq!(
        chunks[3]["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
    );

    // No usage chunk unless asked; a missing prompt is refused.
    let (_, _, b) = post(
        &mock,
        "/completions",
        &json!({"model": "i", "prompt": "a", "stream": true}),
    )
    .await;
    assert_eq!(events(&b).len(), 4);
    let (s, _, _) = post(&mock, "/completions", &json!({"model": "i"})).await;
    assert_eq!(s, 400);
    // The chat route is counted apart from the legacy one.
    assert_eq!(mock.hits(Endpoint::Completions), 4);
    assert_eq!(mock.requests_to(Endpoint::Completions).len(), 4);
    assert_eq!(mock.chat_hits(), 0);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn responses_plain_and_streamed() {
    let mock = start("resp", Behavior::streaming(2, 0)).await;
    let (s, h, b) = post(
        &mock,
        "/responses",
        &json!({"model": "gpt-4.1", "input": "hi", "previous_response_id": "resp_earlier"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(mock_name(&h), Some("resp"));
    let v = json_of(&b);
    assert!(v["id"].as_str().expect("id").starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4.1");
    assert_eq!(v["previous_response_id"], "resp_earlier");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["role"], "assistant");
    assert_eq!(
        v["output"][0]["content"][0],
        json!({"type": "output_text", "text": "Hello from resp", "annotations": []})
    );
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["output_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 15);

    let (s, h, b) = post(
        &mock,
        "/responses",
        &json!({"model": "gpt-4.1", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let evs = named_events(&b);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seqs: Vec<u64> = evs
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<u64>>());
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    assert_eq!(evs[4].1["delta"], "tok0 ");
    assert_eq!(evs[6].1["text"], "tok0 tok1 ");
    let done = &evs[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["previous_response_id"], Value::Null);
    assert_eq!(done["output"][0]["content"][0]["text"], "tok0 tok1 ");
    assert_eq!(done["usage"]["output_tokens"], 2);
    assert_eq!(done["usage"]["total_tokens"], 12);

    // A scripted mid-stream failure ends with response.failed.
    mock.set_behavior(Behavior {
        stream_error_after_chunks: Some(1),
        ..Behavior::default()
    });
    let (_, _, b) = post(
        &mock,
        "/responses",
        &json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    let evs = named_events(&b);
    let last = evs.last().expect("events");
    assert_eq!(last.0, "response.failed");
    assert_eq!(last.1["response"]["status"], "failed");
    assert_eq!(mock.hits(Endpoint::Responses), 3);
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn failures_apply_to_new_endpoints_and_can_target_one() {
    // Only /messages fails; every other route stays healthy.
    let mock = start("half", Behavior::overloaded().on(&[Endpoint::Messages])).await;
    let (s, h, b) = post_anthropic(&mock, &messages_body(false), Some("k"), true).await;
    assert_eq!((s, mock_name(&h)), (529, Some("half")));
    assert_eq!(json_of(&b)["error"]["type"], "overloaded_error");
    for (path, body) in [
        ("/chat/completions", chat_body(false, false)),
        ("/embeddings", json!({"model": "e", "input": "a"})),
        ("/completions", json!({"model": "c", "prompt": "a"})),
        ("/responses", json!({"model": "r", "input": "a"})),
    ] {
        let (s, h, _) = post(&mock, path, &body).await;
        assert_eq!((s, mock_name(&h)), (200, Some("half")), "{path}");
    }

    // Every failure applies everywhere when not narrowed: status…
    mock.set_behavior(Behavior::status(503));
    for (path, body) in [
        ("/embeddings", json!({"model": "e", "input": "a"})),
        ("/completions", json!({"model": "c", "prompt": "a"})),
        ("/responses", json!({"model": "r", "input": "a"})),
    ] {
        let (s, _, b) = post(&mock, path, &body).await;
        assert_eq!(s, 503, "{path}");
        assert_eq!(json_of(&b)["error"]["code"], "503");
    }
    // …a stall…
    mock.set_behavior(Behavior::stall().on(&[Endpoint::Embeddings]));
    let res = bounded(
        client()
            .post(format!("{}/embeddings", mock.base_url()))
            .timeout(Duration::from_millis(200))
            .send_json(&json!({"model": "e", "input": "a"})),
    )
    .await;
    assert!(
        matches!(res, Err(awc::error::SendRequestError::Timeout)),
        "{res:?}"
    );
    // …and a cut stream.
    mock.set_behavior(Behavior {
        stream_chunks: 4,
        cut_after_chunks: Some(1),
        ..Behavior::default()
    });
    let (s, _, b) = post_anthropic(&mock, &messages_body(true), Some("k"), true).await;
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&b);
    assert!(text.contains("tok0 ") && !text.contains("tok1 "), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    // Latency applies too.
    mock.set_behavior(Behavior::slow(120));
    let t0 = Instant::now();
    let (s, _, _) = post(&mock, "/responses", &json!({"model": "r", "input": "a"})).await;
    assert_eq!(s, 200);
    assert!(t0.elapsed() >= Duration::from_millis(120));
    bounded(mock.stop()).await;
}

#[actix_rt::test]
async fn chat_stream_error_chunk() {
    let mock = start(
        "chat-err",
        Behavior {
            stream_error_after_chunks: Some(2),
            ..Behavior::default()
        },
    )
    .await;
    let (s, _, b) = post(&mock, "/chat/completions", &chat_body(true, true)).await;
    assert_eq!(s, 200);
    let evs = events(&b);
    assert_eq!(evs.len(), 3, "{evs:?}");
    let err: Value = serde_json::from_str(&evs[2]).expect("json");
    assert_eq!(err["error"]["type"], "server_error");
    bounded(mock.stop()).await;
}

/// A scripted stream with no chunk delay (here Anthropic's) is written at once, as the chat
/// stream is: the whole body, terminator included, comes in the first read.
#[actix_rt::test]
async fn a_scripted_stream_without_delay_leaves_in_one_write() {
    let mock = start("at-once", Behavior::ok()).await;
    let addr = mock.addr();
    let body = messages_body(true).to_string();
    let first = bounded(actix_rt::task::spawn_blocking(move || {
        use std::io::Read;
        let anthropic = "x-api-key: k\r\nanthropic-version: 2023-06-01\r\n";
        let mut s = raw_post(addr, "/v1/messages", anthropic, &body);
        let mut buf = vec![0u8; 64 << 10];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }))
    .await
    .expect("raw client thread");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("content_block_delta"), "{first}");
    assert!(
        first.contains("message_stop") && first.ends_with("0\r\n\r\n"),
        "{first}"
    );
    bounded(mock.stop()).await;
}
