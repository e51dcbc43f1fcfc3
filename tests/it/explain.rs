//! `GET /api/routing/explain?model=X`: the candidates in the order the next request would try
//! them, with tier, standing, cool-down, limits, weight and score, and why any is skipped;
//! explaining never moves the round-robin.

use std::time::Duration;

use mock_upstream::Behavior;

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, mock, provider};

fn names(v: &serde_json::Value) -> Vec<String> {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["position"].is_null())
        .map(|c| c["provider_name"].as_str().unwrap().to_string())
        .collect()
}

fn row<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider_name"] == name)
        .unwrap()
}

async fn explains_the_next_request(db: TestDb) {
    let (a, b, c) = (
        mock("a", Behavior::ok()).await,
        mock("b", Behavior::ok()).await,
        mock("c", Behavior::ok()).await,
    );
    let mut pa = provider("a", &a.base_url(), &["m"]);
    pa.weight = 2;
    let mut pc = provider("c", &c.base_url(), &["m"]);
    pc.priority = 1;
    let app = TestApp::start(config(&db, vec![pa, provider("b", &b.base_url(), &["m"]), pc])).await;
    let first = app.admin("GET", "/api/routing/explain?model=m", None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let v = first.json();
    assert_eq!(v["strategy"], "weighted_round_robin");
    assert_eq!(names(&v), vec!["a", "b", "c"], "{v}");
    assert_eq!(row(&v, "a")["tier"], 0);
    assert_eq!(row(&v, "c")["tier"], 1);
    assert_eq!(row(&v, "a")["weight"], 2);
    assert_eq!(row(&v, "a")["standing"], "healthy");
    assert!(row(&v, "a")["score"].is_number());
    assert_eq!(row(&v, "a")["within_attempt_budget"], true);
    // Explaining again changes nothing, and each next request goes where it said.
    for _ in 0..6 {
        let again = app
            .admin("GET", "/api/routing/explain?model=m", None)
            .await
            .json();
        let twice = app
            .admin("GET", "/api/routing/explain?model=m", None)
            .await
            .json();
        assert_eq!(
            names(&again),
            names(&twice),
            "explaining does not advance the round-robin"
        );
        let served = app.chat("m").await;
        assert_eq!(
            served.header("x-switchyard-provider"),
            Some(names(&again)[0].as_str()),
            "the next request goes to the first explained"
        );
    }
    assert_eq!((a.chat_hits(), b.chat_hits(), c.chat_hits()), (4, 2, 0));
    // Bad and unknown models answer in the API's shape.
    let r = app.admin("GET", "/api/routing/explain", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "model");
    let r = app
        .admin(
            "GET",
            &format!("/api/routing/explain?model={}", "x".repeat(300)),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app.admin("GET", "/api/routing/explain?model=nope", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    app.stop().await;
}
both_backends!(
    explain_lists_the_order_of_the_next_request,
    explains_the_next_request
);

async fn explains_skips(db: TestDb) {
    let (limited, cooling, sick, off) = (
        mock("limited", Behavior::slow(800)).await,
        mock("cooling", Behavior::rate_limited(30)).await,
        mock("sick", Behavior::status(500)).await,
        mock("off", Behavior::ok()).await,
    );
    let mut pl = provider("limited", &limited.base_url(), &["m"]);
    pl.max_concurrency = Some(1);
    let mut po = provider("off", &off.base_url(), &["m"]);
    po.enabled = false;
    let mut c = config(
        &db,
        vec![
            pl,
            provider("cooling", &cooling.base_url(), &["m"]),
            provider("sick", &sick.base_url(), &["m"]),
            po,
        ],
    );
    c.health_check.max_error_count = 1;
    c.routing.strategy = switchyard::config::Strategy::LeastBusy;
    let app = TestApp::start(c).await;
    // Rate limited once: cooling for 30 s. Failed once: unhealthy.
    let r = app
        .chat_with("m", false, &[("x-switchyard-exclude-providers", "1,3")])
        .await;
    assert_ne!(r.status, 200);
    let r = app
        .chat_with("m", false, &[("x-switchyard-exclude-providers", "1,2")])
        .await;
    assert_ne!(r.status, 200);
    // One request holds the limited provider's only slot while we look.
    let (held, v) = tokio::join!(app.chat("m"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.admin("GET", "/api/routing/explain?model=m", None)
            .await
            .json()
    });
    assert_eq!(held.status, 200);
    assert_eq!(held.header("x-switchyard-provider"), Some("limited"));
    assert_eq!(v["strategy"], "least_busy");
    assert_eq!(
        names(&v),
        vec!["sick"],
        "only the unhealthy fallback is left to try: {v}"
    );
    assert_eq!(row(&v, "sick")["standing"], "unhealthy");
    assert!(row(&v, "sick")["next_retry_at"].is_string());
    let l = row(&v, "limited");
    assert!(l["skipped"].as_str().unwrap().contains("max_concurrency"), "{l}");
    assert_eq!(l["limits"]["at_limit"], "max_concurrency");
    assert_eq!(l["in_flight"], 1);
    let cool = row(&v, "cooling");
    assert!(
        cool["skipped"].as_str().unwrap().contains("cooling down"),
        "{cool}"
    );
    assert!(cool["cooldown_until"].is_string());
    let o = row(&v, "off");
    assert_eq!(o["standing"], "disabled");
    assert_eq!(o["skipped"], "disabled");
    app.stop().await;
}
both_backends!(explain_says_why_candidates_are_skipped, explains_skips);
