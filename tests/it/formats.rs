//! The routes beside chat and the two chat formats: `/v1/messages`,
//! `/v1/messages/count_tokens`, `/v1/embeddings`, `/v1/responses`, `/v1/completions`, native
//! and translated, plain and streamed, with tool calls, usage, failover between kinds, error
//! shapes, exclusions and tiers, over real sockets to mock upstreams.

use std::time::Duration;

use bytes::Bytes;
use mock_upstream::{Behavior, Endpoint, MockUpstream};
use serde_json::{Value, json};
use switchyard::config::ProviderSpec;
use switchyard::provider::kind::ProviderKind;

use crate::both_backends;
use crate::support::{Reply, TestApp, TestDb, config, eventually, mock, provider, usage_rows};

fn anthropic(name: &str, base_url: &str, models: &[&str]) -> ProviderSpec {
    let mut p = provider(name, base_url, models);
    p.kind = ProviderKind::Anthropic;
    p
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    app.send("POST", path, headers, Some(Bytes::from(body.to_string())))
        .await
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "hello"}]})
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

/// The `data:` payloads of an SSE body, with their event names.
fn events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

fn json_events(text: &str) -> Vec<(Option<String>, Value)> {
    events(text)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(n, d)| (n, serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d}"))))
        .collect()
}

fn last_request(m: &MockUpstream, e: Endpoint) -> mock_upstream::RecordedRequest {
    m.requests_to(e).pop().expect("the upstream got a request")
}

#[actix_rt::test]
async fn messages_natively_to_an_anthropic_provider_plain_and_streamed() {
    let db = TestDb::sqlite();
    let up = mock("claude", Behavior::anthropic_key("sk-claude-secret-key-0000")).await;
    let mut c = config(&db, vec![anthropic("claude", &up.base_url(), &["claude-x"])]);
    c.api_keys = vec!["client-key-1".into()];
    let app = TestApp::start(c).await;

    let r = post(
        &app,
        "/v1/messages",
        &[
            ("x-api-key", "client-key-1"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024"),
        ],
        messages_body("claude-x", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("claude"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello from claude");
    let sent = last_request(&up, Endpoint::Messages);
    assert_eq!(sent.header("x-api-key"), Some("sk-claude-secret-key-0000"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("anthropic-beta"), Some("tools-2024"));
    assert!(
        sent.authorization.is_none(),
        "no bearer key to an Anthropic provider"
    );

    // Without anthropic-version from the client, the default is sent; a Bearer key works too.
    let r = post(
        &app,
        "/v1/messages",
        &[("authorization", "Bearer client-key-1")],
        messages_body("claude-x", true),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!(
        last_request(&up, Endpoint::Messages).header("anthropic-version"),
        Some("2023-06-01")
    );
    let names: Vec<String> = json_events(&r.text())
        .into_iter()
        .filter_map(|(n, _)| n)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.iter().any(|n| n == "message_delta"));
    app.stop().await;
}

#[actix_rt::test]
async fn messages_translated_to_an_openai_provider_with_tool_calls_both_ways() {
    let db = TestDb::sqlite();
    let up = mock("gpt", Behavior::tool_calls()).await;
    let app = TestApp::start(config(&db, vec![provider("gpt", &up.base_url(), &["gpt-x"])])).await;
    let body = json!({
        "model": "gpt-x", "max_tokens": 100, "system": "Be brief.",
        "tools": [{"name": "look", "description": "Looks", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "find it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": "a"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "nothing"}]}
        ]
    });
    let r = post(&app, "/v1/messages", &[], body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    let call = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(call["name"], "look");
    assert!(call["input"].is_object());
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // What the OpenAI provider got: system first, the call and its result as chat messages.
    let sent = last_request(&up, Endpoint::Chat).body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"q\":\"a\"}"
    );
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "nothing"})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "look");
    assert_eq!(sent["max_tokens"], 100);

    // Streamed: Anthropic's event order, the call's arguments as input_json_delta.
    let mut streamed = body;
    streamed["stream"] = true.into();
    let r = post(&app, "/v1/messages", &[], streamed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = json_events(&r.text());
    let names: Vec<&str> = evs.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], &["message_delta", "message_stop"]);
    let start = evs
        .iter()
        .find(|(n, _)| n.as_deref() == Some("content_block_start"))
        .unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    let args: String = evs
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&args).unwrap().is_object(),
        "{args}"
    );
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "usage asked for and passed on"
    );
    assert_eq!(
        last_request(&up, Endpoint::Chat).body["stream_options"]["include_usage"],
        true
    );
    app.stop().await;
}

#[actix_rt::test]
async fn chat_translated_to_an_anthropic_provider_with_tool_calls_both_ways() {
    let db = TestDb::sqlite();
    let up = mock(
        "claude",
        Behavior {
            cache_read_tokens: Some(4),
            ..Behavior::tool_calls()
        },
    )
    .await;
    let app = TestApp::start(config(
        &db,
        vec![anthropic("claude", &up.base_url(), &["claude-x"])],
    ))
    .await;
    let body = json!({
        "model": "claude-x",
        "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
        ]
    });
    let r = post(&app, "/v1/chat/completions", &[], body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "look");
    assert!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).is_ok());
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    let sent = last_request(&up, Endpoint::Messages);
    assert_eq!(sent.header("x-api-key"), Some("sk-claude-secret-key-0000"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.body["system"][0]["text"], "Be brief.");
    assert_eq!(sent.body["max_tokens"], switchyard::translate::DEFAULT_MAX_TOKENS);
    assert_eq!(sent.body["messages"][0]["content"][1]["source"]["type"], "base64");
    assert_eq!(sent.body["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent.body["messages"][2]["content"][0]["type"], "tool_result");

    // Streamed with the usage chunk asked for.
    let mut streamed = body;
    streamed["stream"] = true.into();
    streamed["stream_options"] = json!({"include_usage": true});
    let r = post(&app, "/v1/chat/completions", &[], streamed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks = json_events(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|(_, c)| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "look");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&args).unwrap().is_object(),
        "{args}"
    );
    assert!(
        chunks
            .iter()
            .any(|(_, c)| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    let usage = &chunks.last().unwrap().1;
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Without include_usage, no usage chunk.
    let r = post(&app, "/v1/chat/completions", &[], chat_body("claude-x", true)).await;
    assert!(
        json_events(&r.text())
            .iter()
            .all(|(_, c)| c.get("usage").is_none())
    );
    app.stop().await;
}

#[actix_rt::test]
async fn embeddings_completions_and_responses_are_forwarded_natively() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let claude = mock("claude", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["m"]),
            // Serves the same model but speaks none of these endpoints: never picked for them.
            anthropic("claude", &claude.base_url(), &["m"]),
        ],
    ))
    .await;
    for _ in 0..3 {
        let r = post(
            &app,
            "/v1/embeddings",
            &[],
            json!({"model": "m", "input": ["a", "b"]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("a"));
        assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    }
    let r = post(
        &app,
        "/v1/completions",
        &[],
        json!({"model": "m", "prompt": "Say"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "text_completion");
    let r = post(
        &app,
        "/v1/completions",
        &[],
        json!({"model": "m", "prompt": "Say", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert!(
        json_events(&text)
            .iter()
            .all(|(_, c)| c.get("usage").is_none_or(Value::is_null)),
        "the usage chunk the router asked for is taken out: {text}"
    );
    assert_eq!(
        last_request(&a, Endpoint::Completions).body["stream_options"]["include_usage"],
        true
    );

    let r = post(&app, "/v1/responses", &[], json!({"model": "m", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "response");
    let r = post(
        &app,
        "/v1/responses",
        &[],
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = json_events(&r.text())
        .into_iter()
        .filter_map(|(n, _)| n)
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("response.completed"));
    assert_eq!(claude.requests().len(), 0);
    // The body goes as sent: unknown members survive.
    let r = post(
        &app,
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x", "encoding_format": "base64", "custom": 1}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(last_request(&a, Endpoint::Embeddings).body["custom"], 1);
    app.stop().await;
}

#[actix_rt::test]
async fn a_responses_conversation_stays_with_the_provider_that_holds_it() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let b = mock("b", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["m"]),
            provider("b", &b.base_url(), &["m"]),
        ],
    ))
    .await;
    let first = post(&app, "/v1/responses", &[], json!({"model": "m", "input": "hi"})).await;
    let owner = first.header("x-switchyard-provider").unwrap().to_string();
    let id = first.json()["id"].as_str().unwrap().to_string();
    for _ in 0..4 {
        let r = post(
            &app,
            "/v1/responses",
            &[],
            json!({"model": "m", "input": "more", "previous_response_id": id}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-switchyard-provider"),
            Some(owner.as_str()),
            "always the provider that holds {id}"
        );
        assert_eq!(r.json()["previous_response_id"], id.as_str());
    }
    // A streamed answer's id is remembered too.
    let r = post(
        &app,
        "/v1/responses",
        &[],
        json!({"model": "m", "input": "s", "stream": true}),
    )
    .await;
    let owner = r.header("x-switchyard-provider").unwrap().to_string();
    let created = json_events(&r.text())
        .into_iter()
        .find(|(n, _)| n.as_deref() == Some("response.created"))
        .unwrap();
    let id = created.1["response"]["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let r = post(
            &app,
            "/v1/responses",
            &[],
            json!({"model": "m", "input": "x", "previous_response_id": id}),
        )
        .await;
        assert_eq!(r.header("x-switchyard-provider"), Some(owner.as_str()));
    }
    app.stop().await;
}

#[actix_rt::test]
async fn the_same_model_fails_over_between_kinds_both_ways() {
    let db = TestDb::sqlite();
    let claude = mock("claude", Behavior::overloaded()).await;
    let gpt = mock("gpt", Behavior::ok()).await;
    let mut gpt_spec = provider("gpt", &gpt.base_url(), &["m"]);
    gpt_spec.priority = 1;
    let app = TestApp::start(config(
        &db,
        vec![anthropic("claude", &claude.base_url(), &["m"]), gpt_spec],
    ))
    .await;
    // Anthropic's 529 is the provider's failure: on to the OpenAI provider, translated.
    for (path, body, stream) in [
        ("/v1/messages", messages_body("m", false), false),
        ("/v1/messages", messages_body("m", true), true),
        ("/v1/chat/completions", chat_body("m", false), false),
        ("/v1/chat/completions", chat_body("m", true), true),
    ] {
        let r = post(&app, path, &[], body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("gpt"), "{path}");
        if path == "/v1/messages" && !stream {
            assert_eq!(r.header("x-switchyard-attempts"), Some("2"), "tried claude first");
        }
        if stream {
            assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        }
        if path == "/v1/messages" && !stream {
            assert_eq!(r.json()["content"][0]["text"], "Hello from gpt");
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            !app.state_of("claude").await.health.is_healthy
        })
        .await
    );

    // And back: the OpenAI provider (now the first tier) breaks, the Anthropic one serves.
    let r = app
        .admin("PUT", "/api/providers/1", Some(json!({"priority": 2})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.admin("POST", "/api/providers/1/reset", None).await;
    claude.set_behavior(Behavior::ok());
    gpt.set_behavior(Behavior::status(500));
    for (path, body) in [
        ("/v1/chat/completions", chat_body("m", false)),
        ("/v1/messages", messages_body("m", true)),
    ] {
        let r = post(&app, path, &[], body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("claude"), "{path}");
        assert_eq!(
            r.header("x-switchyard-attempts"),
            Some("2"),
            "{path}: tried gpt first"
        );
    }
    app.stop().await;
}

/// Anthropic's token count goes natively to Anthropic-kind providers only (OpenAI's API has
/// nothing to translate it to), with their key, fails over among them, and records requests
/// without tokens; a `stream` member is the upstream's to refuse, not the provider's failure.
#[actix_rt::test]
async fn count_tokens_goes_to_anthropic_providers_only() {
    let db = TestDb::sqlite();
    let claude = mock("claude", Behavior::anthropic_key("sk-claude-secret-key-0000")).await;
    let backup = mock("backup", Behavior::ok()).await;
    let gpt = mock("gpt", Behavior::ok()).await;
    let mut backup_spec = anthropic("backup", &backup.base_url(), &["c"]);
    backup_spec.priority = 1;
    let app = TestApp::start(config(
        &db,
        vec![
            anthropic("claude", &claude.base_url(), &["c"]),
            backup_spec,
            // In the first tier too: chat and messages would reach it translated, a count cannot.
            provider("gpt", &gpt.base_url(), &["c", "g"]),
        ],
    ))
    .await;
    let path = "/v1/messages/count_tokens";
    let version = [("anthropic-version", "2023-06-01")];
    let body = json!({"model": "c", "messages": [{"role": "user", "content": "hello"}]});
    for _ in 0..4 {
        let r = post(&app, path, &version, body.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("claude"));
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
        assert_eq!(r.json(), json!({"input_tokens": 10}));
    }
    let sent = last_request(&claude, Endpoint::CountTokens);
    assert_eq!(sent.header("x-api-key"), Some("sk-claude-secret-key-0000"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(claude.hits(Endpoint::Messages), 0);

    // `stream` is not a count's member: Anthropic's 400 reaches the client as it came, and the
    // provider stays healthy (the plain answer is not taken for a broken stream).
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = post(&app, path, &version, streamed.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(r.header("x-switchyard-provider"), Some("claude"));
    assert!(app.state_of("claude").await.health.is_healthy);
    // An upstream that ignores the member answers a plain count: the client gets it.
    claude.set_behavior(Behavior {
        ignore_stream: true,
        ..Behavior::ok()
    });
    let r = post(&app, path, &version, streamed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"input_tokens": 10}));
    assert!(app.state_of("claude").await.health.is_healthy);

    // A model no Anthropic-kind provider serves: a 404 in Anthropic's shape, no upstream asked.
    let r = post(&app, path, &version, json!({"model": "g", "messages": []})).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert_eq!(gpt.hits(Endpoint::CountTokens), 0);
    assert_eq!(gpt.hits(Endpoint::Messages), 0);

    // The first tier's provider fails: on to the next Anthropic-kind one, never to gpt.
    claude.set_behavior(Behavior::status(500).on(&[Endpoint::CountTokens]));
    let r = post(&app, path, &version, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("backup"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(gpt.hits(Endpoint::CountTokens), 0);

    // Counting spends nothing: requests recorded, no tokens.
    let ok = eventually(Duration::from_secs(5), || async {
        app.flush().await;
        let rows = usage_rows(db.url());
        let of = |id: i64| {
            rows.iter()
                .find(|r| r.provider_id == id && r.model == "c")
                .cloned()
        };
        of(1).is_some_and(|r| r.success_requests >= 4 && r.failed_requests == 1)
            && of(2).is_some_and(|r| r.success_requests == 1)
    })
    .await;
    let rows = usage_rows(db.url());
    assert!(ok, "{rows:?}");
    for row in &rows {
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens, row.total_tokens),
            (0, 0, 0),
            "{row:?}"
        );
    }
    app.stop().await;
}

#[actix_rt::test]
async fn errors_come_in_each_routes_shape() {
    let db = TestDb::sqlite();
    let claude = mock("claude", Behavior::ok()).await;
    let gpt = mock("gpt", Behavior::ok()).await;
    let mut gpt_spec = provider("gpt", &gpt.base_url(), &["gpt-bad"]);
    gpt_spec.models = vec![switchyard::provider::spec::ModelEntry::Mapped {
        name: "gpt-bad".into(),
        upstream: "mock-bad-request".into(),
    }];
    let mut c = config(
        &db,
        vec![
            anthropic("claude", &claude.base_url(), &["claude-x", "mock-bad-request"]),
            gpt_spec,
        ],
    );
    c.api_keys = vec!["client-key-1".into()];
    let app = TestApp::start(c).await;
    let key = [("x-api-key", "client-key-1")];
    let anthropic_error = |r: &Reply, status: u16, kind: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string());
    };
    anthropic_error(
        &post(&app, "/v1/messages", &[], messages_body("claude-x", false)).await,
        401,
        "authentication_error",
    );
    anthropic_error(
        &post(&app, "/v1/messages", &key, messages_body("nope", false)).await,
        404,
        "not_found_error",
    );
    anthropic_error(
        &post(&app, "/v1/messages", &key, json!({"messages": []})).await,
        400,
        "invalid_request_error",
    );
    let r = app
        .send("POST", "/v1/messages", &key, Some(Bytes::from_static(b"{")))
        .await;
    anthropic_error(&r, 400, "invalid_request_error");
    // The upstream's own refusal (mock: max_tokens missing) is passed on in its shape.
    let r = post(
        &app,
        "/v1/messages",
        &key,
        json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    anthropic_error(&r, 400, "invalid_request_error");

    // OpenAI routes stay OpenAI-shaped, x-api-key accepted.
    for path in [
        "/v1/embeddings",
        "/v1/responses",
        "/v1/completions",
        "/v1/chat/completions",
    ] {
        let r = post(
            &app,
            path,
            &key,
            json!({"model": "nope", "input": "x", "messages": []}),
        )
        .await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"]["code"], "model_not_found", "{path}");
        let r = post(&app, path, &[], json!({"model": "claude-x"})).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    // The claude model exists but not on embeddings: unknown there.
    let r = post(
        &app,
        "/v1/embeddings",
        &key,
        json!({"model": "claude-x", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, 404);

    // What cannot be translated is refused by name, and nothing reaches the upstream.
    claude.reset_counters();
    let mut body = chat_body("claude-x", false);
    body["n"] = 2.into();
    let r = post(&app, "/v1/chat/completions", &key, body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "n");
    body = chat_body("claude-x", false);
    body["logprobs"] = true.into();
    let r = post(&app, "/v1/chat/completions", &key, body).await;
    assert_eq!(r.json()["error"]["param"], "logprobs");
    assert_eq!(claude.requests().len(), 0);
    // An Anthropic refusal reaches an OpenAI client in OpenAI's shape, and the reverse.
    let r = post(
        &app,
        "/v1/chat/completions",
        &key,
        chat_body("mock-bad-request", false),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{}", r.text());
    assert!(r.json().get("type").is_none());
    let r = post(&app, "/v1/messages", &key, messages_body("gpt-bad", false)).await;
    anthropic_error(&r, 400, "invalid_request_error");

    // Anthropic's models list when anthropic-version is sent.
    let r = app
        .send(
            "GET",
            "/v1/models",
            &[("x-api-key", "client-key-1"), ("anthropic-version", "2023-06-01")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["id"], "claude-x");
    assert_eq!(v["has_more"], false);
    let r = app
        .send("GET", "/v1/models", &[("anthropic-version", "2023-06-01")], None)
        .await;
    anthropic_error(&r, 401, "authentication_error");
    let r = app.send("GET", "/v1/models", &key, None).await;
    assert_eq!(r.json()["object"], "list");
    app.stop().await;
}

#[actix_rt::test]
async fn a_stream_that_fails_midway_ends_with_an_error_event_in_the_clients_format() {
    let db = TestDb::sqlite();
    let claude = mock(
        "claude",
        Behavior {
            stream_error_after_chunks: Some(1),
            ..Behavior::ok()
        },
    )
    .await;
    let app = TestApp::start(config(&db, vec![anthropic("claude", &claude.base_url(), &["m"])])).await;
    // Native: the client has Anthropic's own error event; no message_stop.
    let r = post(&app, "/v1/messages", &[], messages_body("m", true)).await;
    let evs = json_events(&r.text());
    let (name, data) = evs.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(data["type"], "error");
    assert!(!r.text().contains("message_stop"));
    // Translated: an OpenAI-style error event, never [DONE].
    let r = post(&app, "/v1/chat/completions", &[], chat_body("m", true)).await;
    let text = r.text();
    assert!(!text.contains("[DONE]"), "{text}");
    let (name, data) = json_events(&text).pop().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert!(
        data["error"]["message"].as_str().unwrap().contains("Overloaded"),
        "{data}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.state_of("claude").await.health.error_count >= 2
        })
        .await,
        "both failed streams count against the provider"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn exclusion_and_tiers_apply_on_the_new_routes() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let b = mock("b", Behavior::ok()).await;
    let claude = mock("claude", Behavior::ok()).await;
    let mut b_spec = provider("b", &b.base_url(), &["m"]);
    b_spec.priority = 1;
    let mut claude_spec = anthropic("claude", &claude.base_url(), &["m"]);
    claude_spec.priority = 2;
    let app = TestApp::start(config(
        &db,
        vec![provider("a", &a.base_url(), &["m"]), b_spec, claude_spec],
    ))
    .await;
    for (path, body) in [
        ("/v1/embeddings", json!({"model": "m", "input": "x"})),
        ("/v1/completions", json!({"model": "m", "prompt": "x"})),
        ("/v1/responses", json!({"model": "m", "input": "x"})),
        ("/v1/messages", messages_body("m", false)),
    ] {
        let r = post(&app, path, &[], body.clone()).await;
        assert_eq!(
            r.header("x-switchyard-provider"),
            Some("a"),
            "{path}: the best tier first"
        );
        let r = post(
            &app,
            path,
            &[("x-switchyard-exclude-providers", "1")],
            body.clone(),
        )
        .await;
        assert_eq!(r.header("x-switchyard-provider"), Some("b"), "{path}: a excluded");
        let r = post(
            &app,
            path,
            &[("x-switchyard-exclude-providers", "1,2")],
            body.clone(),
        )
        .await;
        if path == "/v1/messages" {
            assert_eq!(r.header("x-switchyard-provider"), Some("claude"), "{path}");
        } else {
            assert_eq!(r.status, 503, "{path}: {}", r.text());
        }
    }
    app.stop().await;
}

async fn usage_for_every_route(db: TestDb) {
    let gpt = mock("gpt", Behavior::ok()).await;
    let claude = mock("claude", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("gpt", &gpt.base_url(), &["g"]),
            anthropic("claude", &claude.base_url(), &["c"]),
        ],
    ))
    .await;
    let calls = [
        ("/v1/embeddings", json!({"model": "g", "input": "x"})),
        ("/v1/completions", json!({"model": "g", "prompt": "x"})),
        (
            "/v1/completions",
            json!({"model": "g", "prompt": "x", "stream": true}),
        ),
        ("/v1/responses", json!({"model": "g", "input": "x"})),
        (
            "/v1/responses",
            json!({"model": "g", "input": "x", "stream": true}),
        ),
        ("/v1/messages", messages_body("g", false)),
        ("/v1/messages", messages_body("g", true)),
        ("/v1/messages", messages_body("c", false)),
        ("/v1/messages", messages_body("c", true)),
        ("/v1/chat/completions", chat_body("c", false)),
        ("/v1/chat/completions", chat_body("c", true)),
    ];
    let mut expected = std::collections::HashMap::new();
    for (path, body) in &calls {
        let r = post(&app, path, &[], body.clone()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let _ = r.body;
        *expected
            .entry(body["model"].as_str().unwrap().to_string())
            .or_insert(0i64) += 1;
    }
    app.flush().await;
    let ok = eventually(Duration::from_secs(5), || async {
        app.flush().await;
        let rows = usage_rows(db.url());
        expected.iter().all(|(model, n)| {
            rows.iter()
                .find(|r| &r.model == model)
                .is_some_and(|r| r.success_requests == *n)
        })
    })
    .await;
    let rows = usage_rows(db.url());
    assert!(ok, "{rows:?}");
    for row in &rows {
        // Every call above reported tokens: 10 prompt tokens each, from each format's fields.
        assert_eq!(row.prompt_tokens, 10 * row.success_requests, "{row:?}");
        assert!(row.completion_tokens > 0, "{row:?}");
    }
    app.stop().await;
}
both_backends!(
    usage_is_recorded_for_every_route_and_format,
    usage_for_every_route
);

#[actix_rt::test]
async fn hostile_bodies_on_translated_routes_are_refused_and_reach_no_upstream() {
    let db = TestDb::sqlite();
    let gpt = mock("gpt", Behavior::ok()).await;
    let claude = mock("claude", Behavior::ok()).await;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("gpt", &gpt.base_url(), &["g"]),
            anthropic("claude", &claude.base_url(), &["c"]),
        ],
    ))
    .await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, String)> = vec![
        ("/v1/messages", json!({"model": "g", "max_tokens": 1e30, "messages": []}).to_string()),
        ("/v1/messages", json!({"model": "g", "max_tokens": -1, "messages": []}).to_string()),
        ("/v1/messages", json!({"model": "g", "max_tokens": 5, "messages": [{"role": "tool", "content": 5}]}).to_string()),
        ("/v1/messages", format!(r#"{{"model": "g", "max_tokens": 5, "messages": [], "system": {deep}}}"#)),
        ("/v1/chat/completions", json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}).to_string()),
        ("/v1/chat/completions", json!({"model": "c", "max_completion_tokens": 18446744073709551615u64, "messages": [], "temperature": "hot"}).to_string()),
        ("/v1/chat/completions", json!({"model": "c", "messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]}).to_string()),
        ("/v1/chat/completions", format!(r#"{{"model": "c", "messages": [], "tools": {deep}}}"#)),
    ];
    for (path, body) in cases {
        let r = app.send("POST", path, &[], Some(Bytes::from(body.clone()))).await;
        assert_eq!(
            r.status,
            400,
            "{path} {}: {}",
            &body[..body.len().min(120)],
            r.text()
        );
        if path == "/v1/messages" {
            assert_eq!(r.json()["type"], "error");
        } else {
            assert!(r.json()["error"]["message"].is_string());
        }
    }
    assert_eq!(
        gpt.requests().len() + claude.requests().len(),
        0,
        "nothing reached an upstream"
    );
    // The router is still serving.
    assert_eq!(
        post(&app, "/v1/messages", &[], messages_body("g", false))
            .await
            .status,
        200
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_provider_refusing_stream_options_still_streams_translated_messages_and_completions() {
    let db = TestDb::sqlite();
    let gpt = mock(
        "gpt",
        Behavior {
            refuse_stream_options: true,
            ..Behavior::ok()
        },
    )
    .await;
    let app = TestApp::start(config(&db, vec![provider("gpt", &gpt.base_url(), &["g"])])).await;
    let r = post(&app, "/v1/messages", &[], messages_body("g", true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = json_events(&r.text())
        .into_iter()
        .filter_map(|(n, _)| n)
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(app.state_of("gpt").await.refuses_stream_options, "remembered");
    // Known now: the next streams go without it at once.
    gpt.reset_counters();
    let r = post(
        &app,
        "/v1/completions",
        &[],
        json!({"model": "g", "prompt": "x", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().trim_end().ends_with("data: [DONE]"));
    assert_eq!(
        gpt.hits(Endpoint::Completions),
        1,
        "one request, without stream_options"
    );
    assert!(
        last_request(&gpt, Endpoint::Completions)
            .body
            .get("stream_options")
            .is_none()
    );
    app.stop().await;
}
