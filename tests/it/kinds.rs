//! Provider kinds and endpoints: validated, stored (both backends), shown and masked through
//! the admin API and the configuration file.

use serde_json::json;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, provider};

async fn kinds_through_the_admin_api(db: TestDb) {
    let mut openai = provider("o", "http://127.0.0.1:9/v1", &["m"]);
    openai.endpoints = Some(vec![switchyard::provider::kind::Endpoint::Chat]);
    let app = TestApp::start(config(&db, vec![openai])).await;
    let list = app.admin("GET", "/api/providers", None).await.json();
    assert_eq!(list["data"][0]["kind"], "openai");
    assert_eq!(list["data"][0]["endpoints"], json!(["chat"]));

    let added = app
        .admin(
            "POST",
            "/api/providers",
            Some(
                json!({"name": "claude", "base_url": "https://api.anthropic.example/v1",
                "api_key": "sk-ant-api03-very-secret-0000", "models": ["claude-x"], "kind": "anthropic"}),
            ),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    let v = added.json();
    assert_eq!(v["kind"], "anthropic");
    assert_eq!(v["endpoints"], json!(["messages", "count_tokens"]));
    assert!(!added.text().contains("very-secret"), "the key is masked");
    let id = v["id"].as_i64().unwrap();

    // Refused with the field named, nothing changed.
    for (body, field) in [
        (json!({"kind": "gemini"}), "kind"),
        (json!({"endpoints": ["chat"]}), "endpoints"),
        (json!({"endpoints": []}), "endpoints"),
        (json!({"endpoints": ["nope"]}), "endpoints"),
    ] {
        let r = app
            .admin("PUT", &format!("/api/providers/{id}"), Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        assert!(
            r.json()["error"]["param"].as_str().unwrap().starts_with(field),
            "{body}: {}",
            r.text()
        );
    }
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{id}"),
            Some(json!({"kind": "openai", "endpoints": ["embeddings"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["endpoints"], json!(["embeddings"]));
    app.stop().await;

    // What was stored comes back after a restart.
    let app = TestApp::start(config(&db, vec![])).await;
    let got = app
        .admin("GET", &format!("/api/providers/{id}"), None)
        .await
        .json();
    assert_eq!(got["kind"], "openai");
    assert_eq!(got["endpoints"], json!(["embeddings"]));
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{id}"),
            Some(json!({"kind": "anthropic", "endpoints": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.stop().await;
    let app = TestApp::start(config(&db, vec![])).await;
    let got = app
        .admin("GET", &format!("/api/providers/{id}"), None)
        .await
        .json();
    assert_eq!(got["kind"], "anthropic");
    assert_eq!(got["endpoints"], json!(["messages", "count_tokens"]));
    app.stop().await;
}
both_backends!(kinds_are_stored_shown_and_validated, kinds_through_the_admin_api);

#[test]
fn the_config_file_takes_kind_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
[[providers]]
name = "claude"
base_url = "https://api.anthropic.com/v1"
api_key = "k"
models = ["claude-sonnet-4-5"]
kind = "anthropic"

[[providers]]
name = "embedder"
base_url = "http://127.0.0.1:9/v1"
models = ["text-embedding-3-small"]
endpoints = ["embeddings"]
"#,
    )
    .unwrap();
    let no_env = |_: &str| None;
    let c = switchyard::Config::load(Some(path.to_str().unwrap()), &no_env).unwrap();
    assert_eq!(
        c.providers[0].kind,
        switchyard::provider::kind::ProviderKind::Anthropic
    );
    assert_eq!(
        c.providers[1].endpoints,
        Some(vec![switchyard::provider::kind::Endpoint::Embeddings])
    );
    std::fs::write(
        &path,
        "[[providers]]\nname = \"x\"\nbase_url = \"http://h/v1\"\nmodels = [\"m\"]\nkind = \"anthropic\"\nendpoints = [\"chat\"]\n",
    )
    .unwrap();
    let e = switchyard::Config::load(Some(path.to_str().unwrap()), &no_env).unwrap_err();
    assert!(e.to_string().contains("providers[0].endpoints"), "{e}");
}

#[actix_rt::test]
async fn probes_speak_the_providers_kind() {
    use mock_upstream::{Behavior, Endpoint};
    let db = TestDb::sqlite();
    let up = crate::support::mock("claude", Behavior::anthropic_key("sk-claude-secret-key-0000")).await;
    let mut good = provider("claude", &up.base_url(), &["claude-x"]);
    good.kind = switchyard::provider::kind::ProviderKind::Anthropic;
    let mut wrong_key = good.clone();
    wrong_key.name = "claude-bad".into();
    wrong_key.api_key = Some("sk-wrong-key-0000".into());
    let mut c = config(&db, vec![good, wrong_key]);
    for probe in [
        switchyard::config::ProbeKind::Chat,
        switchyard::config::ProbeKind::Models,
    ] {
        c.health_check.probe = probe;
        let app = TestApp::start(c.clone()).await;
        up.reset_counters();
        let r = app.admin("POST", "/api/health-check/force/1", None).await;
        assert_eq!(r.json()["ok"], true, "{probe:?}: {}", r.text());
        let sent = up.requests().pop().unwrap();
        assert_eq!(sent.header("x-api-key"), Some("sk-claude-secret-key-0000"));
        assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
        if probe == switchyard::config::ProbeKind::Chat {
            assert_eq!(sent.path, "/v1/messages");
            assert_eq!(sent.body["max_tokens"], 1);
            assert_eq!(up.hits(Endpoint::Messages), 1);
        } else {
            assert_eq!(sent.path, "/v1/models");
        }
        if probe == switchyard::config::ProbeKind::Chat {
            let r = app.admin("POST", "/api/health-check/force/2", None).await;
            assert_eq!(
                r.json()["ok"],
                false,
                "a refused key fails the probe: {}",
                r.text()
            );
            assert_eq!(r.json()["status"], 401);
        }
        app.stop().await;
    }
}
