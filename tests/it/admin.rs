//! The admin API over real sockets: auth, providers at run time, validation, health views,
//! the background check, forced checks, the health-check config, load, usage, events,
//! metrics and the OpenAPI document.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mock_upstream::Behavior;
use serde_json::json;

use crate::both_backends;
use crate::support::{ADMIN_TOKEN, TestApp, TestDb, config, eventually, mock, pair, provider};

fn spec(name: &str, base_url: &str) -> serde_json::Value {
    json!({ "name": name, "base_url": base_url, "api_key": format!("sk-{name}-secret-key-0000"), "models": ["m"] })
}

async fn ids(app: &TestApp) -> Vec<(i64, String)> {
    let r = app.admin("GET", "/api/providers", None).await;
    assert_eq!(r.status, 200);
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_i64().unwrap(), p["name"].as_str().unwrap().to_string()))
        .collect()
}

#[actix_rt::test]
async fn every_admin_route_needs_the_token_and_probes_are_open() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    // Failed admin logins are slowed down per peer address: each request comes from its own
    // loopback address (127.0.x.y), so this walk over every route is not.
    let mut peer = 0u16;
    for (method, path) in switchyard::http::ROUTES {
        let path = path.replace("{id}", "1");
        if path.starts_with("/api/") {
            for auth in [None, Some("Bearer wrong-token"), Some("Basic abc")] {
                peer += 1;
                let from = std::net::Ipv4Addr::new(127, 0, (peer / 250) as u8, (peer % 250 + 2) as u8);
                let client = awc::Client::builder()
                    .connector(awc::Connector::new().local_address(from.into()))
                    .timeout(std::time::Duration::from_secs(10))
                    .finish();
                let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
                let mut req = client.request(method.clone(), format!("{}{path}", app.url));
                if let Some(a) = auth {
                    req = req.insert_header(("authorization", a));
                }
                let mut r = req.send().await.unwrap();
                assert_eq!(r.status(), 401, "{method} {path} without a valid token");
                let body: serde_json::Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
                assert_eq!(body["error"]["type"], "authentication_error");
            }
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            app.send("GET", path, &[], None).await.status,
            200,
            "{path} is open"
        );
    }
    app.stop().await;
}

async fn providers_at_run_time(db: TestDb) {
    let a = mock("a", Behavior::ok()).await;
    let b = mock("b", Behavior::ok()).await;
    let c = config(&db, vec![provider("a", &a.base_url(), &["m"])]);
    let app = TestApp::start(c.clone()).await;
    assert_eq!(app.chat("m").await.header("x-switchyard-provider"), Some("a"));

    // Added at run time: receives traffic on the next requests.
    let r = app
        .admin("POST", "/api/providers", Some(spec("b", &b.base_url())))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b_id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["api_key"], "sk-…0000", "keys are masked");
    assert!(!r.text().contains("secret-key"));
    let served: Vec<_> = futures_util::future::join_all((0..4).map(|_| app.chat("m"))).await;
    assert!(
        served
            .iter()
            .any(|r| r.header("x-switchyard-provider") == Some("b"))
    );
    assert!(b.chat_hits() >= 1);

    // Hot update: a new URL and key are used at once.
    let c2 = mock("c2", Behavior::ok()).await;
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{b_id}"),
            Some(json!({"base_url": c2.base_url(), "api_key": "sk-rotated-key-9999", "weight": 3})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["weight"], 3);
    let b_before = b.chat_hits();
    for _ in 0..8 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    assert_eq!(
        b.chat_hits(),
        b_before,
        "the old URL gets nothing after the update"
    );
    assert_eq!(c2.chat_hits(), 6, "weight 3 of 4");
    assert_eq!(
        c2.requests()[0].authorization.as_deref(),
        Some("Bearer sk-rotated-key-9999")
    );

    // Removed: no new requests; a request in flight through it finishes.
    c2.set_behavior(Behavior::slow(600));
    let a_hits = a.chat_hits();
    let client = app.client.clone();
    let url = format!("{}/v1/chat/completions", app.url);
    let body = json!({"model": "m", "messages": []}).to_string();
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        in_flight.push(actix_rt::spawn(async move {
            let mut r = client
                .post(url)
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("x-switchyard-provider")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
                r.body().await.unwrap(),
            )
        }));
    }
    assert!(eventually(Duration::from_secs(3), || async { c2.chat_hits() >= 7 }).await);
    let r = app.admin("DELETE", &format!("/api/providers/{b_id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for h in in_flight {
        let (status, _, body) = h.await.unwrap();
        assert_eq!(
            status,
            200,
            "in-flight requests finish: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let c2_hits = c2.chat_hits();
    for _ in 0..5 {
        assert_eq!(app.chat("m").await.header("x-switchyard-provider"), Some("a"));
    }
    assert_eq!(c2.chat_hits(), c2_hits, "a removed provider gets no new requests");
    assert!(a.chat_hits() >= a_hits + 5);
    assert_eq!(
        app.admin("GET", &format!("/api/providers/{b_id}"), None)
            .await
            .status,
        404
    );

    // A provider added at run time survives a restart and routes the same way.
    let r = app
        .admin("POST", "/api/providers", Some(spec("d", &b.base_url())))
        .await;
    assert_eq!(r.status, 201);
    app.stop().await;
    let app = TestApp::start(c).await;
    let names: Vec<String> = ids(&app).await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, vec!["a", "d"]);
    let b_before = b.chat_hits();
    for _ in 0..4 {
        app.chat("m").await;
    }
    assert_eq!(b.chat_hits(), b_before + 2);
    app.stop().await;
}
both_backends!(
    providers_are_added_changed_and_removed_at_run_time,
    providers_at_run_time
);

async fn invalid_input(db: TestDb) {
    let a = mock("a", Behavior::ok()).await;
    let app = TestApp::start(config(&db, vec![provider("a", &a.base_url(), &["m"])])).await;
    let id = ids(&app).await[0].0;
    let before = app.admin("GET", "/api/providers", None).await.json();
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (
            json!({"name": "x", "base_url": "not a url", "models": ["m"]}),
            422,
            "base_url",
        ),
        (
            json!({"name": "x", "base_url": "ftp://h/v1", "models": ["m"]}),
            422,
            "base_url",
        ),
        (
            json!({"name": "x", "base_url": "http://h/v1", "models": []}),
            422,
            "models",
        ),
        (json!({"name": "x", "base_url": "http://h/v1"}), 422, "models"),
        (
            json!({"name": "x", "base_url": "http://h/v1", "models": ["m"], "weight": -1}),
            422,
            "weight",
        ),
        (
            json!({"name": "x", "base_url": "http://h/v1", "models": ["m"], "timeout_ms": -5}),
            422,
            "timeout_ms",
        ),
        (
            json!({"name": "x", "base_url": "http://h/v1", "models": ["m"], "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"name": "x", "base_url": "http://h/v1", "models": ["m"], "weight": "heavy"}),
            422,
            "weight",
        ),
        (
            json!({"name": "", "base_url": "http://h/v1", "models": ["m"]}),
            422,
            "name",
        ),
        (
            json!({"name": "a", "base_url": "http://h/v1", "models": ["m"]}),
            409,
            "",
        ),
    ];
    for (body, status, field) in cases {
        let r = app.admin("POST", "/api/providers", Some(body.clone())).await;
        assert_eq!(r.status, status, "{body} -> {}", r.text());
        if !field.is_empty() {
            assert_eq!(r.json()["error"]["param"], field, "{body}");
            assert!(r.json()["error"]["message"].as_str().unwrap().contains(field));
        }
    }
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("authorization", auth.as_str())];
    for raw in ["{nope", ""] {
        let r = app
            .send(
                "POST",
                "/api/providers",
                &headers,
                Some(Bytes::from_static(raw.as_bytes())),
            )
            .await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (400, json!("invalid_json")),
            "{raw:?}"
        );
    }
    let r = app
        .admin("PUT", &format!("/api/providers/{id}"), Some(json!({"weight": 0})))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (422, json!("weight"))
    );
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{id}"),
            Some(json!({"base_url": "nope"})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        app.admin("PUT", "/api/providers/9999", Some(json!({"weight": 2})))
            .await
            .status,
        404
    );
    assert_eq!(app.admin("GET", "/api/providers/abc", None).await.status, 400);
    assert_eq!(app.admin("DELETE", "/api/providers/9999", None).await.status, 404);
    assert_eq!(
        app.admin("GET", "/api/stats/usage?from=yesterday", None)
            .await
            .status,
        400
    );
    assert_eq!(
        app.admin(
            "POST",
            "/api/providers?validate_only=maybe",
            Some(spec("y", &a.base_url()))
        )
        .await
        .status,
        400
    );
    let r = app
        .admin(
            "PUT",
            "/api/health-check/config",
            Some(json!({"interval_seconds": 0})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (422, json!("interval_seconds"))
    );
    let r = app
        .admin("PUT", "/api/health-check/config", Some(json!({"max_errors": 3})))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (422, json!("max_errors"))
    );
    // Nothing changed.
    assert_eq!(app.admin("GET", "/api/providers", None).await.json(), before);
    assert_eq!(
        app.admin("GET", "/api/health-check/config", None).await.json()["interval_seconds"],
        3600
    );
    assert_eq!(app.chat("m").await.status, 200);
    app.stop().await;
}
both_backends!(invalid_admin_input_is_refused_and_changes_nothing, invalid_input);

#[actix_rt::test]
async fn validate_only_and_health_check_on_add() {
    let db = TestDb::sqlite();
    let up = mock("up", Behavior::ok()).await;
    let down = mock("down", Behavior::status(503)).await;
    let app = TestApp::start(config(&db, vec![])).await;
    let r = app
        .admin(
            "POST",
            "/api/providers?validate_only=true",
            Some(spec("v", &up.base_url())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["valid"], true);
    assert_eq!(r.json()["provider"]["name"], "v");
    assert!(ids(&app).await.is_empty(), "validate_only creates nothing");
    let r = app
        .admin(
            "POST",
            "/api/providers?health_check=true",
            Some(spec("down", &down.base_url())),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "health_check_failed");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("503"));
    assert!(ids(&app).await.is_empty(), "a failed check creates nothing");
    assert_eq!(down.chat_hits(), 1, "the check was a real call");
    let r = app
        .admin(
            "POST",
            "/api/providers?health_check=true",
            Some(spec("up", &up.base_url())),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(app.chat("m").await.header("x-switchyard-provider"), Some("up"));
    app.stop().await;
}

async fn health_and_checks(db: TestDb) {
    let (mut c, good, broken) = pair(&db, ("good", Behavior::ok()), ("broken", Behavior::status(500))).await;
    c.health_check.max_error_count = 2;
    c.stats.flush_ms = 3_600_000; // the figures below come from the unflushed aggregate
    let app = TestApp::start(c).await;
    for _ in 0..6 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    let ids = ids(&app).await;
    let broken_id = ids.iter().find(|(_, n)| n == "broken").unwrap().0;
    let good_id = ids.iter().find(|(_, n)| n == "good").unwrap().0;
    let r = app.admin("GET", "/api/providers/health", None).await;
    let data = r.json()["data"].clone();
    let b = data
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["provider_id"] == broken_id)
        .unwrap()
        .clone();
    assert_eq!(b["is_healthy"], false);
    assert_eq!(b["error_count"], 2);
    assert_eq!(b["last_status_code"], 500);
    assert!(b["next_retry_at"].is_string());
    assert_eq!(b["last_24h"]["total_requests"], 2);
    assert_eq!(b["last_24h"]["failed_requests"], 2);
    let g = app
        .admin("GET", &format!("/api/providers/health/{good_id}"), None)
        .await
        .json();
    assert_eq!(g["last_24h"]["total_requests"], 6);
    assert_eq!(g["last_24h"]["success_rate"], 1.0);
    assert_eq!(g["last_24h"]["total_tokens"], 90);

    // A forced check answers the probe's outcome.
    let r = app
        .admin("POST", &format!("/api/health-check/force/{broken_id}"), None)
        .await
        .json();
    assert_eq!((r["ok"].clone(), r["status"].clone()), (json!(false), json!(500)));
    assert!(r["error"].as_str().unwrap().contains("500"));
    assert!(r["latency_ms"].is_u64());
    let r = app
        .admin("POST", &format!("/api/health-check/force/{good_id}"), None)
        .await
        .json();
    assert_eq!((r["ok"].clone(), r["status"].clone()), (json!(true), json!(200)));

    // The background check, switched to a 1 s interval, probes within about a second and
    // recovers the broken provider once its upstream heals.
    broken.set_behavior(Behavior::ok());
    let hits = good.chat_hits();
    let r = app
        .admin(
            "PUT",
            "/api/health-check/config",
            Some(json!({"interval_seconds": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["interval_minutes"].as_f64().unwrap(), 1.0 / 60.0);
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(4), || async { good.chat_hits() > hits }).await,
        "the sweep probes"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "within about one interval: {:?}",
        started.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(4), || async {
            app.state_of("broken").await.health.is_healthy
        })
        .await,
        "the background check recovers the provider"
    );
    // Reset clears the counters.
    broken.set_behavior(Behavior::status(500));
    app.admin("PUT", "/api/health-check/config", Some(json!({"enabled": false})))
        .await;
    app.chat("m").await;
    app.chat("m").await;
    let r = app
        .admin("POST", &format!("/api/providers/{broken_id}/reset"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["health"]["is_healthy"], true);
    assert_eq!(r.json()["health"]["error_count"], 0);
    app.stop().await;
}
both_backends!(health_views_forced_and_background_checks, health_and_checks);

#[actix_rt::test]
async fn health_check_config_reads_writes_and_applies_at_once() {
    let db = TestDb::sqlite();
    let (c, _bad, _good) = pair(&db, ("bad", Behavior::status(500)), ("good", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    let r = app.admin("GET", "/api/health-check/config", None).await.json();
    assert_eq!(
        r,
        json!({"enabled": true, "interval_seconds": 3600, "interval_minutes": 60.0, "max_error_count": 3,
        "retry_after_seconds": 3600, "retry_after_hours": 1.0, "auto_recovery": true})
    );
    let r = app
        .admin(
            "PUT",
            "/api/health-check/config",
            Some(json!({"interval_minutes": 10, "retry_after_hours": 2, "max_error_count": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.json()["interval_seconds"].clone(),
            r.json()["retry_after_seconds"].clone()
        ),
        (json!(600), json!(7200))
    );
    // The new threshold applies to the next failure: one failure now makes it unhealthy.
    app.chat("m").await;
    assert!(!app.state_of("bad").await.health.is_healthy);
    // Stored: a restart reads it back.
    app.stop().await;
    let app = TestApp::start(config(&db, vec![])).await;
    assert_eq!(
        app.admin("GET", "/api/health-check/config", None).await.json()["interval_seconds"],
        600
    );
    app.stop().await;
}

#[actix_rt::test]
async fn load_view_is_sorted_busiest_first() {
    let db = TestDb::sqlite();
    let slow = mock("slow", Behavior::slow(800)).await;
    let idle = mock("idle", Behavior::ok()).await;
    let mut busy = provider("slow", &slow.base_url(), &["busy"]);
    busy.models = serde_json::from_value(json!(["busy"])).unwrap();
    let app = TestApp::start(config(
        &db,
        vec![busy, provider("idle", &idle.base_url(), &["m"])],
    ))
    .await;
    let pending: Vec<_> = (0..6).map(|_| app.chat("busy")).collect();
    let check = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.admin("GET", "/api/providers/load", None).await
    };
    let (_, r) = futures_util::future::join(futures_util::future::join_all(pending), check).await;
    let data = r.json()["data"].clone();
    assert_eq!(data[0]["provider_name"], "slow", "{data}");
    assert_eq!(data[0]["in_flight"], 6);
    assert!(data[0]["load"].as_f64().unwrap() > data[1]["load"].as_f64().unwrap());
    assert_eq!(data[1]["health"], "healthy");
    assert!(data[0]["requests_per_minute"].is_u64() && data[0]["average_response_time_ms"].is_number());
    app.stop().await;
}

async fn usage_view(db: TestDb) {
    let (c, _a, _b) = pair(&db, ("a", Behavior::ok()), ("b", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    for _ in 0..6 {
        app.chat("m").await;
    }
    app.flush().await;
    app.chat("m").await; // one more, still unflushed
    let today = chrono::Utc::now().date_naive().to_string();
    let r = app
        .admin("GET", &format!("/api/stats/usage?from={today}&to={today}"), None)
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        crate::support::total_requests(&v),
        7,
        "stored and unflushed usage"
    );
    assert_eq!(v["summary"][0]["total_requests"], 3, "least used first");
    assert_eq!(v["data"][0]["success_rate"], 1.0);
    let a_id = ids(&app).await[0].0;
    let r = app
        .admin("GET", &format!("/api/stats/usage?provider_id={a_id}"), None)
        .await
        .json();
    assert!(
        r["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["provider_id"] == a_id)
    );
    let r = app
        .admin("GET", "/api/stats/usage?from=2000-01-01&to=2000-01-02", None)
        .await
        .json();
    assert_eq!(r["data"], json!([]));
    app.stop().await;
}
both_backends!(usage_rows_and_summary, usage_view);

#[actix_rt::test]
async fn events_arrive_in_order() {
    let db = TestDb::sqlite();
    let bad = mock("bad", Behavior::status(500)).await;
    let good = mock("good", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("bad", &bad.base_url(), &["m"])]);
    c.health_check.max_error_count = 1;
    let app = TestApp::start(c).await;
    let mut events = app
        .client
        .get(format!("{}/api/events", app.url))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert!(
        events
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let r = app
        .admin("POST", "/api/providers", Some(spec("good", &good.base_url())))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(app.chat("m").await.header("x-switchyard-attempts"), Some("2"));
    let mut text = String::new();
    let wanted = [
        "provider_added",
        "provider_switch",
        "provider_request_failed",
        "provider_unhealthy",
    ];
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = events.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if wanted.iter().all(|w| text.contains(&format!("event: {w}"))) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ok, "all events arrived: {text}");
    let pos = |w: &str| text.find(&format!("event: {w}")).unwrap();
    assert!(pos("provider_added") < pos("provider_switch"));
    assert!(pos("provider_request_failed") < pos("provider_unhealthy"));
    for block in text.split("\n\n").filter(|b| b.starts_with("event: provider")) {
        let data: serde_json::Value =
            serde_json::from_str(block.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
        assert!(
            data["timestamp"].is_string() && data["severity"].is_string() && data["provider_id"].is_i64(),
            "{data}"
        );
    }
    assert!(
        text.contains("\"severity\":\"high\""),
        "unhealthy is high severity"
    );
    // The typed cause of the failure travels with the events.
    for kind in ["provider_switch", "provider_request_failed"] {
        let block = text
            .split("\n\n")
            .find(|b| b.starts_with(&format!("event: {kind}")))
            .unwrap();
        assert!(block.contains("\"cause\":\"provider_error\""), "{block}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn metrics_pass_promtool() {
    let db = TestDb::sqlite();
    let (c, _bad, _good) = pair(&db, ("bad", Behavior::status(500)), ("good", Behavior::ok())).await;
    let app = TestApp::start(c).await;
    for _ in 0..4 {
        app.chat("m").await;
    }
    let ids = ids(&app).await;
    app.admin("POST", &format!("/api/health-check/force/{}", ids[0].0), None)
        .await;
    app.flush().await;
    let r = app.send("GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for name in [
        "switchyard_requests_total{provider=\"good\"",
        "switchyard_upstream_latency_seconds_bucket",
        "switchyard_failovers_total 2",
        "switchyard_attempt_failures_total{cause=\"provider_error\"}",
        "switchyard_health_checks_total{result=\"failure\"} 1",
        "switchyard_provider_healthy{provider=\"good\",provider_id=\"2\"} 1",
        "switchyard_recovery_seconds_count",
        "switchyard_stats_flush_lag_seconds",
    ] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
    assert!(text.contains("outcome=\"failure\"") && text.contains("outcome=\"success\""));
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs the Debian package prometheus)");
    use std::io::Write;
    let mut promtool = promtool;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_openapi_document_describes_every_route() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    let r = app.admin("GET", "/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routes: Vec<(String, String)> = switchyard::http::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes, "the document and the route table agree");
    // And every route in the table is really served (not the fallback 404).
    for (method, path) in &routes {
        if path == "/api/events" {
            continue; // a stream that never ends; covered by its own test
        }
        let r = app.admin(method, &path.replace("{id}", "999"), None).await;
        let fallback = r.status == 404 && r.text().contains("no route for");
        assert!(!fallback, "{method} {path} is registered");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn a_slow_event_subscriber_never_slows_routing() {
    let db = TestDb::sqlite();
    let (mut c, _bad, _good) = pair(&db, ("bad", Behavior::status(500)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 1_000_000; // keep failing over: two events per request
    let app = TestApp::start(c).await;
    // One subscriber that reads nothing for now, one that goes away at once.
    let mut slow = app
        .client
        .get(format!("{}/api/events", app.url))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .unwrap();
    let gone = app
        .client
        .get(format!("{}/api/events", app.url))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .unwrap();
    drop(gone);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let replies = futures_util::future::join_all((0..80).map(|_| app.chat("m"))).await;
        assert!(replies.iter().all(|r| r.status == 200));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "800 failovers took {:?}",
        started.elapsed()
    );
    // The slow subscriber still gets events, in order, when it reads.
    let mut text = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = slow.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: provider_switch") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got, "the slow subscriber reads events afterwards");
    app.stop().await;
}
