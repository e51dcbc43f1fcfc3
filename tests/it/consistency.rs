//! What a fleet relies on from one instance and its database, on both backends: partial
//! updates merged onto the stored row, standing writes that never go back, stored providers
//! that do not load, writers that wait their turn, and usage views that count each batch once.

use std::cell::Cell;
use std::rc::Rc;

use futures_util::future::join_all;
use mock_upstream::Behavior;
use serde_json::json;
use switchyard::store::{
    DbPool, NewProvider, StandingRow, StandingWrite, UsageRow, ValidationRow, now_naive,
};

use crate::both_backends;
use crate::support::{TestApp, TestDb, config, mock, provider, stored};

fn pool(db: &TestDb, size: u32) -> DbPool {
    crate::support::pool(db.url(), size)
}

/// Starts and stops a router once, so the schema exists and `providers` are stored.
async fn prepared(db: &TestDb, providers: Vec<switchyard::config::ProviderSpec>) -> switchyard::Config {
    let c = config(db, providers);
    TestApp::start(c.clone()).await.stop().await;
    c
}

async fn concurrent_partial_updates(db: TestDb) {
    let up = mock("p", Behavior::ok()).await;
    let app = TestApp::start(config(&db, vec![provider("p", &up.base_url(), &["m"])])).await;
    let id = app.state_of("p").await.config.id;
    let path = format!("/api/providers/{id}");
    let changes = [
        json!({"weight": 7}),
        json!({"priority": 3}),
        json!({"timeout_ms": 4321}),
        json!({"probe_model": "cheap"}),
        json!({"models": ["m", "n"]}),
        json!({"api_key": "sk-rotated-secret-key-9876"}),
    ];
    let replies = join_all(changes.iter().map(|c| app.admin("PUT", &path, Some(c.clone())))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let v = app.admin("GET", &path, None).await.json();
    assert_eq!(v["weight"], 7, "{v}");
    assert_eq!(v["priority"], 3, "{v}");
    assert_eq!(v["timeout_ms"], 4321, "{v}");
    assert_eq!(v["probe_model"], "cheap", "{v}");
    assert_eq!(v["models"], json!(["m", "n"]), "{v}");
    assert!(v["api_key"].as_str().unwrap().ends_with("9876"), "{v}");
    let row = stored(db.url(), "p").unwrap().row;
    assert_eq!((row.weight, row.priority, row.timeout_ms), (7, 3, 4321));
    assert_eq!(app.chat("n").await.status, 200, "the merged models are routed");
    // Bad input changes nothing and answers in the API's shape.
    let r = app.admin("PUT", &path, Some(json!({"weight": -1}))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{}", r.text());
    assert_eq!(stored(db.url(), "p").unwrap().row.weight, 7);
    assert_eq!(
        app.admin("PUT", "/api/providers/999999", Some(json!({"weight": 2})))
            .await
            .status,
        404
    );
    app.stop().await;
}
both_backends!(concurrent_partial_updates_all_land, concurrent_partial_updates);

fn raw_provider(name: &str, models: &str, key_env: Option<&str>) -> NewProvider {
    NewProvider {
        name: name.into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: if key_env.is_some() {
            String::new()
        } else {
            "sk-raw-secret-0000".into()
        },
        api_key_env: key_env.map(String::from),
        models: models.into(),
        weight: 1,
        priority: 0,
        timeout_ms: 1_000,
        enabled: true,
        updated_at: now_naive(),
        probe_model: None,
        http2: false,
        kind: "openai".into(),
        endpoints: None,
        max_concurrency: None,
        rpm: None,
        tpm: None,
    }
}

async fn stored_rows_that_do_not_load(db: TestDb) {
    let good = mock("good", Behavior::ok()).await;
    let k = mock("k", Behavior::ok()).await;
    let c = prepared(&db, vec![provider("good", &good.base_url(), &["m"])]).await;
    // Rows this instance cannot load: a key variable it lacks; models an older version stored.
    let absent = "SWITCHYARD_TEST_VARIABLE_NOBODY_SETS";
    let p = pool(&db, 1);
    let keyless = p
        .insert_provider(&raw_provider("keyless", r#"["k"]"#, Some(absent)))
        .unwrap()
        .id;
    let garbled = p
        .insert_provider(&raw_provider("garbled", "not a list", None))
        .unwrap()
        .id;
    drop(p);
    // And one from the config file whose key variable is missing here: seeded, not loaded.
    let mut c = c;
    c.providers.push(
        serde_json::from_value(json!({
            "name": "filed", "base_url": "http://127.0.0.1:9/v1", "api_key_env": absent, "models": ["f"]
        }))
        .unwrap(),
    );

    let app = TestApp::start(c).await;
    assert_eq!(app.chat("m").await.status, 200, "the other providers serve");
    let list = app.admin("GET", "/api/providers", None).await.json();
    let by_name = |n: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(list["data"].as_array().unwrap().len(), 4, "{list}");
    assert!(
        by_name("filed")["load_error"].as_str().unwrap().contains(absent),
        "{list}"
    );
    assert_eq!(by_name("good")["loaded"], true);
    assert_eq!(by_name("keyless")["loaded"], false);
    assert!(
        by_name("keyless")["load_error"]
            .as_str()
            .unwrap()
            .contains(absent),
        "{list}"
    );
    assert!(
        by_name("garbled")["load_error"]
            .as_str()
            .unwrap()
            .contains("models"),
        "{list}"
    );
    // The detail is for the admin token (the open answer is the status alone).
    let ready = app.admin("GET", "/readyz", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["providers_not_loaded"].as_array().unwrap().len(), 3);
    let one = app.admin("GET", &format!("/api/providers/{keyless}"), None).await;
    assert_eq!((one.status, one.json()["loaded"].clone()), (200, json!(false)));

    // A partial update can fix it: a literal key instead of the variable.
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{keyless}"),
            Some(json!({"api_key": "sk-literal-key-0001", "base_url": k.base_url()})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        app.chat("k").await.header("x-switchyard-provider"),
        Some("keyless")
    );
    // One this version cannot read at all is refused with the reason, and can be deleted.
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{garbled}"),
            Some(json!({"weight": 2})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        app.admin("DELETE", &format!("/api/providers/{garbled}"), None)
            .await
            .status,
        200
    );
    let ready = app.admin("GET", "/readyz", None).await.json();
    assert_eq!(ready["providers_not_loaded"][0]["name"], "filed", "{ready}");
    assert_eq!(
        ready["providers_not_loaded"].as_array().unwrap().len(),
        1,
        "{ready}"
    );
    app.stop().await;
}
both_backends!(
    a_stored_provider_that_does_not_load_is_skipped,
    stored_rows_that_do_not_load
);

fn standing(id: i64, healthy: bool, cause: &str) -> StandingRow {
    StandingRow {
        provider_id: id,
        is_healthy: healthy,
        next_retry_at: (!healthy).then(now_naive),
        generation: 0,
        cause: cause.into(),
        changed_at: now_naive(),
        changed_by: "test".into(),
    }
}

async fn standing_writes(db: TestDb) {
    let up = mock("p", Behavior::ok()).await;
    prepared(&db, vec![provider("p", &up.base_url(), &["m"])]).await;
    let id = stored(db.url(), "p").unwrap().row.id;
    let p = pool(&db, 8);
    // Eight instances mark it at once, all based on what they knew: one write wins, the
    // others are told the stored one.
    let results: Vec<StandingWrite> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| p.write_standing(&standing(id, false, "unhealthy"), 0).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let written: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, StandingWrite::Written(_)))
        .collect();
    assert_eq!(written.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| match r {
        StandingWrite::Written(s) | StandingWrite::Newer(s) => s.generation == 1 && !s.is_healthy,
        StandingWrite::Gone => false,
    }));
    // An operator's reset goes on top; a change based on the older generation never undoes it.
    let reset = p.reset_standing(id, "operator").unwrap().unwrap();
    assert_eq!(
        (reset.generation, reset.is_healthy, reset.cause.as_str()),
        (2, true, "reset")
    );
    match p.write_standing(&standing(id, false, "rescheduled"), 1).unwrap() {
        StandingWrite::Newer(s) => assert_eq!(s, reset),
        other => panic!("an older change was written: {other:?}"),
    }
    assert_eq!(stored(db.url(), "p").unwrap().standing.unwrap(), reset);
    match p.write_standing(&standing(id, false, "unhealthy"), 2).unwrap() {
        StandingWrite::Written(s) => assert_eq!(s.generation, 3),
        other => panic!("{other:?}"),
    }
    // Absurd generations neither overflow nor block.
    assert!(matches!(
        p.write_standing(&standing(id, true, "recovered"), i64::MAX).unwrap(),
        StandingWrite::Written(s) if s.generation == i64::MAX
    ));
    assert!(p.delete_provider(id).unwrap());
    assert_eq!(
        p.write_standing(&standing(id, true, "recovered"), 0).unwrap(),
        StandingWrite::Gone
    );
    assert_eq!(p.reset_standing(id, "operator").unwrap(), None);
}
both_backends!(standing_writes_never_go_back, standing_writes);

async fn concurrent_writers(db: TestDb) {
    let up = mock("p", Behavior::ok()).await;
    prepared(&db, vec![provider("p", &up.base_url(), &["m"])]).await;
    let id = stored(db.url(), "p").unwrap().row.id;
    let p = pool(&db, 8);
    let today = chrono::Utc::now().date_naive();
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let p = &p;
                s.spawn(move || {
                    let mut errors = Vec::new();
                    for i in 0..40 {
                        let result = match (t + i) % 4 {
                            0 => p.save_validation(&ValidationRow {
                                provider_id: id,
                                is_healthy: true,
                                error_count: i as i32,
                                last_error: None,
                                last_status_code: None,
                                last_validated_at: None,
                                last_success_at: None,
                                next_retry_at: None,
                                consecutive_successes: 0,
                                updated_at: now_naive(),
                            }),
                            1 => p.write_standing(&standing(id, true, "recovered"), i).map(|_| ()),
                            2 => p
                                .add_usage(&[UsageRow {
                                    total_requests: 1,
                                    ..UsageRow::zero(id, "m".into(), today, now_naive())
                                }])
                                .map(|_| ()),
                            _ => p
                                .merge_provider(id, |row| {
                                    Ok::<_, ()>(NewProvider {
                                        weight: row.weight % 100 + 1,
                                        ..raw_provider(&row.name, &row.models, None)
                                    })
                                })
                                .map(|_| ()),
                        };
                        if let Err(e) = result {
                            errors.push(e.to_string());
                        }
                    }
                    errors
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(errors.is_empty(), "writers failed instead of waiting: {errors:?}");
    let total: i64 = p
        .usage(&Default::default())
        .unwrap()
        .iter()
        .map(|r| r.total_requests)
        .sum();
    assert_eq!(total, 80, "every usage increment landed once");
    assert_eq!(
        stored(db.url(), "p").unwrap().row.weight,
        81,
        "every merge saw the previous one"
    );
}
both_backends!(writers_wait_their_turn_instead_of_failing, concurrent_writers);

async fn exact_usage_views(db: TestDb) {
    let up = mock("p", Behavior::slow(2)).await;
    let mut c = config(&db, vec![provider("p", &up.base_url(), &["m"])]);
    // Batches are written all the time, so reads keep meeting writes.
    c.stats.flush_ms = 1;
    let app = TestApp::start(c).await;
    let started = Rc::new(Cell::new(0i64));
    let finished = Rc::new(Cell::new(0i64));
    let clients = (0..4).map(|_| {
        let (started, finished, url) = (started.clone(), finished.clone(), app.url.clone());
        actix_rt::spawn(async move {
            let client = awc::Client::default();
            for _ in 0..150 {
                started.set(started.get() + 1);
                let mut r = client
                    .post(format!("{url}/v1/chat/completions"))
                    .insert_header(("content-type", "application/json"))
                    .send_body(r#"{"model":"m","messages":[]}"#)
                    .await
                    .unwrap();
                let _ = r.body().await;
                finished.set(finished.get() + 1);
            }
        })
    });
    let clients: Vec<_> = clients.collect();
    let mut last = 0;
    let mut reads = 0;
    while finished.get() < 600 {
        let low = finished.get();
        let v = app.admin("GET", "/api/stats/usage", None).await.json();
        let high = started.get();
        let total = crate::support::total_requests(&v);
        assert!(
            low <= total && total <= high,
            "read {reads}: {total} counted, but {low} had finished and {high} had started"
        );
        assert!(
            total >= last,
            "read {reads}: {total} after {last}: a batch was counted twice or missed"
        );
        last = total;
        reads += 1;
    }
    for c in clients {
        c.await.unwrap();
    }
    let v = app.admin("GET", "/api/stats/usage", None).await.json();
    assert_eq!(v["summary"][0]["total_requests"], 600, "{v}");
    assert!(reads >= 3, "the reads met the writes: {reads}");
    app.stop().await;
}
both_backends!(usage_views_count_each_batch_once, exact_usage_views);

async fn successes_under_way_at_the_mark(db: TestDb) {
    let slow = mock("slow", Behavior::slow(400)).await;
    let good = mock("good", Behavior::ok()).await;
    let mut slow_spec = provider("slow", &slow.base_url(), &["m", "fail-500"]);
    slow_spec.probe_model = Some("m".into());
    let mut c = config(&db, vec![slow_spec, provider("good", &good.base_url(), &["m"])]);
    c.health_check.max_error_count = 2;
    let app = TestApp::start(c).await;
    let good_id = app.state_of("good").await.config.id.to_string();
    let only_slow = [("x-switchyard-exclude-providers", good_id.as_str())];
    // Two failures (the mock answers 500 to `fail-500`, after its 400 ms) mark it; three
    // requests that started before the mark succeed just after it.
    let failing = join_all((0..2).map(|_| app.chat("fail-500")));
    let succeeding = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        join_all((0..3).map(|_| app.chat_with("m", false, &only_slow))).await
    };
    let (failed, succeeded) = tokio::join!(failing, succeeding);
    assert!(failed.iter().all(|r| r.status != 200));
    assert!(succeeded.iter().all(|r| r.status == 200));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let s = app.state_of("slow").await;
    assert!(
        !s.health.is_healthy,
        "successes of attempts under way at the mark do not undo it: {:?}",
        s.health
    );
    assert_eq!(s.health.consecutive_successes, 3, "they are counted all the same");
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(3), || async {
            stored(db.url(), "slow")
                .and_then(|p| p.standing)
                .is_some_and(|st| !st.is_healthy && st.cause == "unhealthy")
        })
        .await
    );
    // A request sent to it after the mark (nothing else is left for it) is a real success.
    assert_eq!(app.chat_with("m", false, &only_slow).await.status, 200);
    assert!(
        app.state_of("slow").await.health.is_healthy,
        "a success after the mark recovers it"
    );
    app.stop().await;
}
both_backends!(
    successes_under_way_at_the_mark_do_not_undo_it,
    successes_under_way_at_the_mark
);
