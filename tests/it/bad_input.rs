//! Bad input on the client API: each gets a clear error in OpenAI's shape with the right
//! status, and no provider key ever appears in an answer.

use bytes::Bytes;
use mock_upstream::Behavior;

use crate::support::{TestApp, TestDb, config, mock, provider};

fn assert_openai_error(r: &crate::support::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(v["error"]["type"].is_string());
    assert!(!r.text().contains("secret-key"), "no provider key in errors");
}

#[actix_rt::test]
async fn bad_bodies_are_refused_clearly() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("up", &up.base_url(), &["m"])]);
    c.max_body_bytes = 4096;
    let app = TestApp::start(c).await;
    let post = |b: &'static str| {
        app.send(
            "POST",
            "/v1/chat/completions",
            &[],
            Some(Bytes::from_static(b.as_bytes())),
        )
    };
    assert_openai_error(&post("{not json").await, 400, "invalid_json");
    assert_openai_error(&post("").await, 400, "invalid_json");
    assert_openai_error(&post("[1,2]").await, 400, "invalid_request");
    assert_openai_error(&post(r#"{"messages":[]}"#).await, 400, "missing_model");
    assert_openai_error(&post(r#"{"model":42}"#).await, 400, "invalid_field");
    assert_openai_error(
        &post(r#"{"model":"m","stream":"yes"}"#).await,
        400,
        "invalid_field",
    );
    assert_openai_error(&post(r#"{"model":"nope"}"#).await, 404, "model_not_found");
    let big = format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(5000));
    let r = app
        .send("POST", "/v1/chat/completions", &[], Some(Bytes::from(big)))
        .await;
    assert_openai_error(&r, 413, "payload_too_large");
    assert_eq!(up.chat_hits(), 0, "nothing bad reached the upstream");
    assert_openai_error(&app.send("GET", "/v1/nope", &[], None).await, 404, "not_found");
    assert_eq!(app.chat("m").await.status, 200, "the router is fine afterwards");
    app.stop().await;
}

#[actix_rt::test]
async fn client_keys_are_required_when_configured() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("up", &up.base_url(), &["m"])]);
    c.api_keys = vec!["client-key-1".into(), "client-key-2".into()];
    let app = TestApp::start(c).await;
    assert_openai_error(&app.chat("m").await, 401, "invalid_api_key");
    assert_openai_error(
        &app.chat_with("m", false, &[("authorization", "Bearer wrong")])
            .await,
        401,
        "invalid_api_key",
    );
    assert_openai_error(
        &app.send("GET", "/v1/models", &[], None).await,
        401,
        "invalid_api_key",
    );
    assert_eq!(
        app.chat_with("m", false, &[("authorization", "Bearer client-key-2")])
            .await
            .status,
        200
    );
    assert_eq!(up.chat_hits(), 1);
    app.stop().await;
}

#[actix_rt::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    let second = switchyard::start(
        config(&db, vec![]),
        switchyard::StartOptions {
            handle_signals: false,
        },
    )
    .await;
    let err = second.err().expect("the second instance is refused").to_string();
    assert!(err.contains("SQLite serves one instance only"), "{err}");
    app.stop().await;
}
