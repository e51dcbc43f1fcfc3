//! A fleet: three real router processes (the built binary) on one PostgreSQL database, in
//! front of mock upstreams started by the test.

use std::time::Duration;

use bytes::Bytes;
use diesel::{Connection, RunQueryDsl};
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
        let status = i.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM is a clean exit ({status}):\n{}",
            i.log.lock().unwrap()
        );
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

/// A provider's health as one instance reports it.
async fn health_on(client: &awc::Client, base: &str, id: i64) -> serde_json::Value {
    admin(client, base, "GET", &format!("/api/providers/health/{id}"), None)
        .await
        .1
}

/// Whether every instance reports the provider healthy (or every one unhealthy).
async fn all_say(client: &awc::Client, instances: &[&Instance], id: i64, healthy: bool) -> bool {
    for i in instances {
        if health_on(client, &i.url, id).await["is_healthy"] != healthy {
            return false;
        }
    }
    true
}

fn standing_of(db: &TestDb, name: &str) -> switchyard::store::StandingRow {
    crate::support::stored(db.url(), name)
        .and_then(|p| p.standing)
        .expect("the provider has a stored standing")
}

#[actix_rt::test]
async fn a_mark_holds_fleet_wide_until_its_timer_and_a_reset_holds_too() {
    let db = TestDb::postgres();
    let alpha = mock("alpha", Behavior::ok()).await;
    let good = mock("good", Behavior::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    // The mock answers 500 to model `fail-500`: only A's clients ask alpha for it, so alpha fails
    // for A's traffic alone while B's and C's succeed. Probes are GET /models, counted apart.
    let file = config_file(
        &dir,
        &[("good", good.base_url(), "m")],
        &format!(
            "[health_check]\nmax_error_count = 2\nretry_after_seconds = 4\nprobe = \"models\"\n\
             [[providers]]\nname = \"alpha\"\nbase_url = \"{}\"\napi_key = \"sk-alpha-key-000000\"\n\
             models = [\"m\", \"fail-500\"]\n",
            alpha.base_url()
        ),
    );
    let (a, b, c) = (
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
        Instance::start(db.url(), &file),
    );
    let all = [&a, &b, &c];
    let client = client();
    let id = provider_id(&client, &a.url, "alpha").await;

    // B and C send alpha traffic it serves well, all along.
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let traffic = {
        let (client, stop, urls) = (client.clone(), stop.clone(), [b.url.clone(), c.url.clone()]);
        actix_rt::spawn(async move {
            while !stop.get() {
                for u in &urls {
                    let _ = chat(&client, u, "m").await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alpha.chat_hits() > 0, "alpha serves B's and C's traffic");

    // C's event stream, to see C announce what it learned from the fleet.
    let mut events = client
        .get(format!("{}/api/events", c.url))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .unwrap();
    // A's traffic fails twice: A marks alpha unhealthy; B and C learn it and keep it.
    for _ in 0..2 {
        assert_ne!(chat(&client, &a.url, "fail-500").await.map(|r| r.0), Some(200));
    }
    let marked = tokio::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || all_say(&client, &all, id, false)).await,
        "every instance honours A's mark"
    );
    let mark = standing_of(&db, "alpha");
    assert!(!mark.is_healthy && mark.cause == "unhealthy");
    let mut text = String::new();
    let announced = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut events).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: provider_unhealthy") && text.contains(r#""source":"fleet""#) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(announced, "C announces the mark it learned: {text}");
    drop(events);
    // Attempts already under way when the mark arrived finish; then alpha gets nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = alpha.chat_hits();
    while marked.elapsed() < Duration::from_millis(3_300) {
        assert!(
            all_say(&client, &all, id, false).await,
            "B's and C's routine successes never flip the mark back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        alpha.chat_hits(),
        hits,
        "no instance retries alpha before its timer"
    );
    assert_eq!(
        standing_of(&db, "alpha"),
        mark,
        "nothing overwrote the stored mark"
    );

    // The timer's probe recovers it, and the recovery spreads.
    assert!(
        eventually(Duration::from_secs(10), || all_say(&client, &all, id, true)).await,
        "the probe after the timer recovers alpha everywhere"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = standing_of(&db, "alpha");
            s.is_healthy && s.generation > mark.generation && s.cause == "recovered"
        })
        .await,
        "the recovery is stored: {:?}",
        standing_of(&db, "alpha")
    );

    // Marked again; A's traffic fails once more (alpha is its only provider for that model, so
    // it is tried as the fallback) and an operator resets alpha on B right after.
    // (A keeps failing until the mark is everywhere: a mark A based on a standing it had not
    // yet caught up with is refused, and A adopts the newer one, so its next failures mark again.)
    let remarked = eventually(Duration::from_secs(15), || async {
        let _ = chat(&client, &a.url, "fail-500").await;
        all_say(&client, &all, id, false).await
    })
    .await;
    assert!(remarked, "A's failures mark alpha again everywhere");
    let _ = chat(&client, &a.url, "fail-500").await;
    let (status, _) = admin(
        &client,
        &b.url,
        "POST",
        &format!("/api/providers/{id}/reset"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(10), || all_say(&client, &all, id, true)).await,
        "the reset reaches every instance"
    );
    let reset = standing_of(&db, "alpha");
    assert_eq!(reset.cause, "reset");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        all_say(&client, &all, id, true).await,
        "the reset holds: A's earlier failure does not undo it"
    );
    assert_eq!(standing_of(&db, "alpha"), reset);
    let events = admin(&client, &c.url, "GET", "/api/providers/health", None)
        .await
        .1;
    assert!(events["data"].as_array().is_some_and(|d| !d.is_empty()));
    stop.set(true);
    let _ = traffic.await;
}

#[actix_rt::test]
async fn changes_land_and_start_up_survives_what_the_fleet_stored() {
    let db = TestDb::postgres();
    let good = mock("good", Behavior::ok()).await;
    let keyed = mock("keyed", Behavior::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(&dir, &[("good", good.base_url(), "m")], "");
    // The admin API reads only variables with the `api_key_env_prefix` (SWITCHYARD_KEY_).
    let key = ("SWITCHYARD_KEY_FLEET_TEST_KEYED", "sk-keyed-secret-000000");
    let a = Instance::start_with_env(db.url(), &file, &[key]);
    let b = Instance::start(db.url(), &file);
    let mut c = Instance::start(db.url(), &file);
    let client = client();
    let id = provider_id(&client, &a.url, "good").await;

    // Two operators change different fields on two instances at the same moment: both land.
    let path = format!("/api/providers/{id}");
    let (ra, rb) = tokio::join!(
        admin(&client, &a.url, "PUT", &path, Some(json!({"weight": 7}))),
        admin(&client, &b.url, "PUT", &path, Some(json!({"priority": 3}))),
    );
    assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
    let row = crate::support::stored(db.url(), "good").unwrap().row;
    assert_eq!((row.weight, row.priority), (7, 3), "neither change was lost");
    assert!(
        eventually(Duration::from_secs(5), || async {
            let v = admin(&client, &c.url, "GET", &path, None).await.1;
            v["weight"] == 7 && v["priority"] == 3
        })
        .await
    );

    // A fourth instance starts while a change commits. The test holds the change's transaction
    // open (with the marker table locked) until the new instance is waiting on the marker, so
    // the interleaving is the one that lost the change: rows read before it, marker after.
    let mut conn = diesel::PgConnection::establish(db.url()).unwrap();
    diesel::sql_query("BEGIN").execute(&mut conn).unwrap();
    diesel::sql_query("LOCK TABLE config_version IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(format!("UPDATE providers SET weight = 9 WHERE id = {id}"))
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("UPDATE config_version SET version = version + 1 WHERE id = 1")
        .execute(&mut conn)
        .unwrap();
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = config_file(&bare_dir, &[], "");
    let fourth_url = format!("{}?application_name=fourth", db.url());
    let fourth = std::thread::spawn({
        let (url, bare) = (fourth_url.clone(), bare.clone());
        move || Instance::start(&url, &bare)
    });
    let mut watch = diesel::PgConnection::establish(db.url()).unwrap();
    let mut waiting = || {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'fourth' \
             AND wait_event_type = 'Lock'",
        )
        .get_result::<N>(&mut watch)
        .map(|r| r.n > 0)
        .unwrap_or(false)
    };
    let mut waited = false;
    for _ in 0..500 {
        if waiting() {
            waited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(waited, "the fourth instance reached the marker");
    diesel::sql_query("COMMIT").execute(&mut conn).unwrap();
    let d = fourth.join().unwrap();
    drop(bare_dir);
    assert!(
        eventually(Duration::from_secs(10), || async {
            admin(&client, &d.url, "GET", &path, None).await.1["weight"] == 9
        })
        .await,
        "the change committed during start-up is applied: {:?}",
        admin(&client, &d.url, "GET", &path, None).await
    );

    // A provider whose key comes from a variable only A has.
    let (status, v) = admin(
        &client,
        &a.url,
        "POST",
        "/api/providers",
        Some(json!({
            "name": "keyed", "base_url": keyed.base_url(), "api_key_env": key.0, "models": ["k"]
        })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(chat(&client, &a.url, "k").await, Some((200, "keyed".into())));
    // C restarts without that variable: it starts, says so, and serves the rest.
    c.signal("-TERM");
    assert_eq!(c.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
    let c = Instance::start(db.url(), &file);
    let (_, list) = admin(&client, &c.url, "GET", "/api/providers", None).await;
    let entry = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keyed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["loaded"], false, "{list}");
    assert!(
        entry["load_error"].as_str().unwrap_or("").contains(key.0),
        "{entry}"
    );
    // The detail is for the admin token (the open answer is the status alone).
    let mut r = client
        .get(format!("{}/readyz", c.url))
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ready: serde_json::Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    assert_eq!(ready["providers_not_loaded"][0]["name"], "keyed", "{ready}");
    assert_eq!(chat(&client, &c.url, "m").await.map(|r| r.0), Some(200));
    assert!(c.log.lock().unwrap().contains("cannot be loaded here"));
    assert!(!c.log.lock().unwrap().contains(key.1));
}

/// The `host:port` of a PostgreSQL URL.
fn server_of(url: &str) -> &str {
    let at = url.rfind('@').unwrap();
    let slash = url[at..].find('/').unwrap() + at;
    &url[at + 1..slash]
}

/// The database URL through a proxy listening on `proxy`.
fn through(url: &str, proxy: std::net::SocketAddr) -> String {
    url.replacen(server_of(url), &proxy.to_string(), 1)
}

/// A single instance that leads the sweep and has served `requests` chats.
async fn leader_serving(
    client: &awc::Client,
    url: &str,
    file: &std::path::Path,
    requests: usize,
) -> Instance {
    let i = Instance::start(url, file);
    assert!(
        eventually(Duration::from_secs(5), || async {
            i.metric(client, "switchyard_health_sweep_leader").await == Some(1.0)
        })
        .await
    );
    for _ in 0..requests {
        assert_eq!(chat(client, &i.url, "m").await.map(|r| r.0), Some(200));
    }
    i
}

#[actix_rt::test]
async fn shutdown_writes_usage_before_leadership_and_is_bounded_without_a_database() {
    let db = TestDb::postgres();
    let up = mock("up", Behavior::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    // Usage is only written at shutdown (the periodic flush is an hour away).
    let file = config_file(&dir, &[("up", up.base_url(), "m")], "");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("flush_ms = 200", "flush_ms = 3600000");
    std::fs::write(&file, format!("shutdown_grace_seconds = 12\n{text}")).unwrap();
    let client = client();

    // Reachable database: when the leadership lock is free again, the usage is already there.
    let mut a = leader_serving(&client, db.url(), &file, 20).await;
    let watcher = std::thread::spawn({
        let url = db.url().to_string();
        move || {
            #[derive(diesel::QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                locked: bool,
            }
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                let got = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(switchyard::fleet::LEADER_LOCK_KEY)
                    .get_result::<Locked>(&mut conn)
                    .unwrap();
                if got.locked {
                    return Some(
                        crate::support::usage_rows(&url)
                            .iter()
                            .map(|r| r.total_requests)
                            .sum::<i64>(),
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            None
        }
    });
    a.signal("-TERM");
    assert_eq!(a.wait_exit(Duration::from_secs(15)).await.code(), Some(0));
    assert_eq!(
        watcher.join().unwrap(),
        Some(20),
        "usage was written before leadership was given up"
    );

    // Database stops answering: shutdown still ends within the grace period.
    let proxy = crate::support::proxy::ChaosProxy::start(server_of(db.url()));
    let mut b = leader_serving(&client, &through(db.url(), proxy.addr), &file, 5).await;
    proxy.stall_now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = tokio::time::Instant::now();
    b.signal("-TERM");
    let status = b.wait_exit(Duration::from_secs(20)).await;
    // Without a database: the final writes' budget (5 s) and the leadership's (2 s), no more.
    eprintln!("shutdown without a database took {:?}", asked.elapsed());
    assert!(
        asked.elapsed() < Duration::from_secs(12),
        "exited {:?} after SIGTERM, past the 12 s grace period:\n{}",
        asked.elapsed(),
        b.log.lock().unwrap()
    );
    assert_eq!(status.code(), Some(0));
    assert!(
        b.log.lock().unwrap().contains("unwritten usage"),
        "the loss is said"
    );
}
