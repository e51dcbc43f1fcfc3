//! Routing: spread across healthy providers, weights, priority tiers, model mapping, the
//! exclusion header and `/v1/models`.

use std::collections::HashMap;

use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, eventually, mock, provider};

async fn spread_across_healthy_providers(db: TestDb) {
    let (a, b, c) = (
        mock("a", Behavior::ok()).await,
        mock("b", Behavior::ok()).await,
        mock("c", Behavior::ok()).await,
    );
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["gpt-4o-mini"]),
            provider("b", &b.base_url(), &["gpt-4o-mini"]),
            provider("c", &c.base_url(), &["gpt-4o-mini"]),
        ],
    ))
    .await;
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let r = app.chat("gpt-4o-mini").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
        assert!(
            r.header("x-switchyard-overhead-ms")
                .is_some_and(|v| v.parse::<f64>().is_ok())
        );
        let name = r
            .header("x-switchyard-provider")
            .expect("provider header")
            .to_string();
        assert!(
            r.text().contains(&format!("Hello from {name}")),
            "the named provider answered"
        );
        *served.entry(name).or_default() += 1;
    }
    assert_eq!(
        served.get("a"),
        Some(&10),
        "round-robin gives each healthy provider an equal share: {served:?}"
    );
    assert_eq!(served.get("b"), Some(&10));
    assert_eq!(served.get("c"), Some(&10));
    assert_eq!((a.chat_hits(), b.chat_hits(), c.chat_hits()), (10, 10, 10));
    app.stop().await;
}
both_backends!(
    spreads_requests_across_healthy_providers,
    spread_across_healthy_providers
);

#[actix_rt::test]
async fn weights_set_each_providers_share() {
    let db = TestDb::sqlite();
    let (a, b) = (mock("a", Behavior::ok()).await, mock("b", Behavior::ok()).await);
    let mut heavy = provider("a", &a.base_url(), &["m"]);
    heavy.weight = 3;
    let app = TestApp::start(config(&db, vec![heavy, provider("b", &b.base_url(), &["m"])])).await;
    for _ in 0..40 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert_eq!(
        (a.chat_hits(), b.chat_hits()),
        (30, 10),
        "weight 3:1 gives a 3:1 share"
    );
    app.stop().await;
}

async fn priority_tiers(db: TestDb) {
    let (primary, backup) = (
        mock("primary", Behavior::ok()).await,
        mock("backup", Behavior::ok()).await,
    );
    let mut fallback = provider("backup", &backup.base_url(), &["m"]);
    fallback.priority = 1;
    let app = TestApp::start(config(
        &db,
        vec![provider("primary", &primary.base_url(), &["m"]), fallback],
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(
            app.chat("m").await.header("x-switchyard-provider"),
            Some("primary")
        );
    }
    assert_eq!(
        backup.chat_hits(),
        0,
        "a higher tier is not used while the best tier is healthy"
    );
    primary.set_behavior(Behavior::status(500));
    let r = app.chat("m").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), Some("backup"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    app.stop().await;
}
both_backends!(lower_priority_tier_is_a_fallback, priority_tiers);

#[actix_rt::test]
async fn mapped_models_are_rewritten_and_the_rest_of_the_body_is_untouched() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::ok()).await;
    let mut p = provider("up", &up.base_url(), &["x"]);
    p.models =
        serde_json::from_value(serde_json::json!([{"name": "public", "upstream": "private-2024"}])).unwrap();
    let app = TestApp::start(config(&db, vec![p])).await;
    let body = r#"{"messages":[{"role":"user","content":"keep \"this\" exactly"}],"model":"public","temperature":0.25,"extra":{"n":[1,2,3]}}"#;
    let r = app
        .send(
            "POST",
            "/v1/chat/completions",
            &[],
            Some(bytes::Bytes::from_static(body.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.chat_bodies();
    assert_eq!(seen[0]["model"], "private-2024");
    assert_eq!(seen[0]["temperature"], 0.25);
    assert_eq!(seen[0]["extra"], serde_json::json!({"n": [1, 2, 3]}));
    assert_eq!(seen[0]["messages"][0]["content"], "keep \"this\" exactly");
    let auth = up.requests()[0].authorization.clone();
    assert_eq!(
        auth.as_deref(),
        Some("Bearer sk-up-secret-key-0000"),
        "the provider's key goes upstream"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_exclude_header_is_honoured() {
    let db = TestDb::sqlite();
    let (a, b) = (mock("a", Behavior::ok()).await, mock("b", Behavior::ok()).await);
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["m"]),
            provider("b", &b.base_url(), &["m"]),
        ],
    ))
    .await;
    let ids = app.admin_ids().await;
    let a_id = ids["a"].to_string();
    for _ in 0..4 {
        let r = app
            .chat_with("m", false, &[("x-switchyard-exclude-providers", &a_id)])
            .await;
        assert_eq!(r.header("x-switchyard-provider"), Some("b"));
    }
    assert_eq!(a.chat_hits(), 0);
    let both = format!("{},{}", ids["a"], ids["b"]);
    let r = app
        .chat_with("m", false, &[("x-switchyard-exclude-providers", &both)])
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    let r = app
        .chat_with("m", false, &[("x-switchyard-exclude-providers", "x")])
        .await;
    assert_eq!(r.status, 400);
    app.stop().await;
}

#[actix_rt::test]
async fn models_lists_the_union_of_enabled_providers() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let mut off = provider("off", &a.base_url(), &["hidden"]);
    off.enabled = false;
    let app = TestApp::start(config(
        &db,
        vec![
            provider("a", &a.base_url(), &["m1", "m2"]),
            provider("b", &a.base_url(), &["m2", "m3"]),
            off,
        ],
    ))
    .await;
    let r = app.send("GET", "/v1/models", &[], None).await;
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["m1", "m2", "m3"]);
    assert_eq!(r.json()["object"], "list");
    assert_eq!(
        app.chat("hidden").await.status,
        404,
        "a disabled provider's model is not served"
    );
    app.stop().await;
}

impl TestApp {
    /// Provider ids by name, read from the database through a fresh connection.
    pub async fn admin_ids(&self) -> HashMap<String, i64> {
        let url = self.running().actors.store.clone();
        switchyard::store::run(&url, |db| db.list_providers())
            .await
            .expect("providers")
            .into_iter()
            .map(|(p, _)| (p.name, p.id))
            .collect()
    }
}

/// Each provider has its own connection pool and limit on every worker: a provider that holds
/// all of its connections open (slow streams, a stall) never makes another provider's
/// requests wait for a connection.
#[actix_rt::test]
async fn a_stalled_provider_does_not_starve_another() {
    let db = TestDb::sqlite();
    let stalled = mock("stalled", Behavior::stall()).await;
    let fast = mock("fast", Behavior::ok()).await;
    let mut c = config(
        &db,
        vec![
            provider("stalled", &stalled.base_url(), &["slow-model"]),
            provider("fast", &fast.base_url(), &["fast-model"]),
        ],
    );
    c.workers = 1;
    c.routing.max_connections_per_provider = 2;
    c.routing.request_timeout_ms = 20_000;
    let app = TestApp::start(c).await;
    // Two requests hold both of the stalled provider's connections.
    let url = format!("{}/v1/chat/completions", app.url);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            actix_rt::spawn(async move {
                let _ = awc::Client::default()
                    .post(url)
                    .timeout(std::time::Duration::from_secs(30))
                    .insert_header(("content-type", "application/json"))
                    .send_body(r#"{"model":"slow-model","messages":[]}"#)
                    .await;
            })
        })
        .collect();
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            stalled.chat_hits() == 2
        })
        .await
    );
    let started = std::time::Instant::now();
    let r = app.chat("fast-model").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "served in {:?}",
        started.elapsed()
    );
    for h in held {
        h.abort();
    }
    app.stop().await;
}
