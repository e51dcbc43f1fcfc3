//! A fleet: three real router processes (the built binary) on one PostgreSQL database, in
//! front of mock upstreams started by the test.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use mock_upstream::Behavior;
use serde_json::json;

use crate::support::process::Instance;
use crate::support::{ADMIN_TOKEN, TestDb, eventually, mock, usage_rows};

/// A provider's id by name, as one instance lists it.
async fn provider_id(client: &awc::Client, base: &str, name: &str) -> i64 {
    let (_, v) = admin(client, base, "GET", "/api/providers", None).await;
    let found = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned();
    found.unwrap()["id"].as_i64().unwrap()
}

/// Which instances say they run the health sweep.
async fn leader_flags(instances: &[Instance], client: &awc::Client) -> Vec<bool> {
    let mut flags = Vec::new();
    for i in instances {
        flags.push(i.metric(client, "switchyard_health_sweep_leader").await == Some(1.0));
    }
    flags
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(20)).finish()
}

async fn chat(client: &awc::Client, base: &str, model: &str) -> Option<(u16, String)> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut r = client
        .post(format!("{base}/v1/chat/completions"))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .ok()?;
    let provider = r
        .headers()
        .get("x-switchyard-provider")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let _ = r.body().await;
    Some((r.status().as_u16(), provider))
}

async fn admin(
    client: &awc::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let req = client
        .request(method, format!("{base}{path}"))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")));
    let mut r = match body {
        Some(b) => req
            .insert_header(("content-type", "application/json"))
            .send_body(b.to_string())
            .await
            .unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes: Bytes = r.body().await.unwrap();
    (
        r.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

/// Writes the shared config file: providers by (name, base_url, models), fast fleet timings.
fn config_file(
    dir: &tempfile::TempDir,
    providers: &[(&str, String, &str)],
    extra: &str,
) -> std::path::PathBuf {
    let mut text = String::from("[fleet]\nsync_interval_ms = 300\n[stats]\nflush_ms = 200\n");
    text.push_str(extra);
    for (name, url, model) in providers {
        text.push_str(&format!(
            "[[providers]]\nname = \"{name}\"\nbase_url = \"{url}\"\napi_key = \"sk-{name}-key-000000\"\nmodels = [\"{model}\"]\n"
        ));
    }
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[actix_rt::test]
async fn usage_sums_exactly_across_three_instances_with_a_sigterm_mid_load() {
    let db = TestDb::postgres();
    let up = mock("up", Behavior::slow(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(&dir, &[("up", up.base_url(), "m")], "");
    // Started together: migrations are serialised by the advisory lock.
    let (a, b, c) = std::thread::scope(|s| {
        let a = s.spawn(|| Instance::start(db.url(), &file));
        let b = s.spawn(|| Instance::start(db.url(), &file));
        let c = s.spawn(|| Instance::start(db.url(), &file));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    let mut instances = [a, b, c];
    let client = client();
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
    let first = join_all((0..150).map(|i| chat(&client, &urls[i % 3], "m")));
    let stop_c = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        instances[2].signal("-TERM");
    };
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        join_all((0..150).map(|i| chat(&client, &urls[i % 3], "m"))).await
    };
    let (first, (), second) = tokio::join!(first, stop_c, second);
    let served = first
        .iter()
        .chain(second.iter())
        .filter(|r| matches!(r, Some((200, _))))
        .count() as i64;
    assert!(served >= 200, "most requests were served: {served}");
    let status = instances[2].wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM is a clean exit ({status}):\n{}",
        instances[2].log.lock().unwrap()
    );
    for i in &instances[..2] {
        i.signal("-TERM");
    }
    for i in &mut instances[..2] {
        assert_eq!(i.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
    }
    let rows = usage_rows(db.url());
    let total: i64 = rows.iter().map(|r| r.total_requests).sum();
    assert_eq!(
        total, served,
        "every served request counted once, none lost or doubled"
    );
    assert_eq!(total, up.chat_hits() as i64);
    assert_eq!(rows.iter().map(|r| r.success_requests).sum::<i64>(), served);
    assert_eq!(rows.len(), 1, "three instances add to the same row");
}

#[actix_rt::test]
async fn config_and_health_propagate_across_the_fleet() {
    let db = TestDb::postgres();
    let good = mock("good", Behavior::ok()).await;
    let bad = mock("bad", Behavior::status(500)).await;
    let extra_up = mock("extra", Behavior::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        &dir,
        &[("good", good.base_url(), "m"), ("bad", bad.base_url(), "m")],
        "[health_check]\nmax_error_count = 2\n",
    );
    let (a, b, c) = (
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
    );
    let client = client();

    // Added on A: served through B and C within the sync interval.
    let (status, _) = admin(&client, &a.url, "POST", "/api/providers", Some(json!({
        "name": "extra", "base_url": extra_up.base_url(), "api_key": "sk-extra-key-000000", "models": ["x"]
    }))).await;
    assert_eq!(status, 201);
    for other in [&b, &c] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                chat(&client, &other.url, "x").await == Some((200, "extra".into()))
            })
            .await,
            "the provider added on A serves traffic through {}",
            other.url
        );
    }

    // Failing on A: A marks it unhealthy; C honours that after its next sync.
    for _ in 0..4 {
        assert_eq!(chat(&client, &a.url, "m").await.map(|r| r.0), Some(200));
    }
    assert_eq!(bad.chat_hits(), 2, "A stopped using it after 2 failures");
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, v) = admin(&client, &c.url, "GET", "/api/providers/health", None).await;
            v["data"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|h| h["provider_name"] == "bad" && h["is_healthy"] == false)
            })
        })
        .await,
        "C sees the provider as unhealthy"
    );
    for _ in 0..10 {
        assert_eq!(chat(&client, &c.url, "m").await, Some((200, "good".into())));
    }
    assert_eq!(
        bad.chat_hits(),
        2,
        "C does not hammer a provider the fleet knows is down"
    );

    // A reset on B is a recovery seen fleet-wide.
    let bad_id = provider_id(&client, &b.url, "bad").await;
    bad.set_behavior(Behavior::ok());
    assert_eq!(
        admin(
            &client,
            &b.url,
            "POST",
            &format!("/api/providers/{bad_id}/reset"),
            None
        )
        .await
        .0,
        200
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, v) = admin(
                &client,
                &a.url,
                "GET",
                &format!("/api/providers/health/{bad_id}"),
                None,
            )
            .await;
            v["is_healthy"] == true
        })
        .await,
        "A sees the reset: {:?} / {:?}\n{}",
        admin(
            &client,
            &a.url,
            "GET",
            &format!("/api/providers/health/{bad_id}"),
            None
        )
        .await,
        crate::support::validation(db.url(), "bad"),
        a.log.lock().unwrap()
    );

    // The health-check configuration, likewise.
    let (status, _) = admin(
        &client,
        &a.url,
        "PUT",
        "/api/health-check/config",
        Some(json!({"max_error_count": 7})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin(&client, &c.url, "GET", "/api/health-check/config", None)
                .await
                .1["max_error_count"]
                == 7
        })
        .await
    );

    // Removed on C: A stops routing to it.
    let extra_id = provider_id(&client, &c.url, "extra").await;
    assert_eq!(
        admin(
            &client,
            &c.url,
            "DELETE",
            &format!("/api/providers/{extra_id}"),
            None
        )
        .await
        .0,
        200
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            chat(&client, &a.url, "x").await.map(|r| r.0) == Some(404)
        })
        .await
    );
}

#[actix_rt::test]
async fn one_instance_sweeps_and_another_takes_over_after_kill_9() {
    let db = TestDb::postgres();
    let up = mock("up", Behavior::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        &dir,
        &[("up", up.base_url(), "m")],
        "[health_check]\ninterval_seconds = 1\nprobe = \"models\"\n",
    );
    let mut instances = vec![
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
    ];
    let client = client();
    assert!(
        eventually(Duration::from_secs(5), || async {
            leader_flags(&instances, &client)
                .await
                .iter()
                .filter(|l| **l)
                .count()
                == 1
        })
        .await
    );
    // Probes are GET /models: over 4 s at a 1 s interval, one sweeper makes about 4, not 12.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = up.models_hits();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let swept = up.models_hits() - before;
    assert!(
        (3..=6).contains(&swept),
        "exactly one instance sweeps each interval: {swept} probes in 4 s"
    );

    let leader = leader_flags(&instances, &client)
        .await
        .iter()
        .position(|l| *l)
        .unwrap();
    let mut dead = instances.remove(leader);
    dead.signal("-KILL");
    dead.wait_exit(Duration::from_secs(10)).await;
    let killed_at = tokio::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            leader_flags(&instances, &client)
                .await
                .iter()
                .filter(|l| **l)
                .count()
                == 1
        })
        .await,
        "another instance takes over"
    );
    assert!(
        killed_at.elapsed() < Duration::from_millis(2_500),
        "within about one interval: {:?}",
        killed_at.elapsed()
    );
    let before = up.models_hits();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let swept = up.models_hits() - before;
    assert!(
        (2..=5).contains(&swept),
        "sweeps go on, from one instance: {swept} probes in 3 s"
    );
}
