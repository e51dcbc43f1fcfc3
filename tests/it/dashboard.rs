//! The dashboard: how it is served (plain HTTP), `GET /api/stats/recent`, and the whole page in
//! headless Chromium against a router with mock upstreams.
//!
//! The browser tests write a screenshot of each view to `$SWITCHYARD_SCREENSHOTS` (the README's
//! pictures: `SWITCHYARD_SCREENSHOTS=docs/screenshots`) or else under the target directory.

use std::path::PathBuf;
use std::time::Duration;

use mock_upstream::Behavior;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::browser::{Browser, browser_required};
use crate::support::*;

/// One browser at a time: two Chromiums on a small machine make every wait flaky.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(20);

#[actix_rt::test]
async fn the_page_is_served_from_the_binary_under_a_strict_policy() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    let no_redirects = awc::Client::builder().disable_redirects().finish();
    for path in ["/", "/ui"] {
        let r = no_redirects
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path} redirects");
        assert_eq!(r.headers().get("location").unwrap(), "/ui/");
    }
    // No token is needed for the files: they hold no data.
    let page = app.send("GET", "/ui/", &[], None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp} has {part}");
    }
    assert!(!csp.contains("unsafe"), "no unsafe-inline or unsafe-eval: {csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.text()
            .contains("<script type=\"module\" src=\"/ui/main.js\"></script>")
    );

    let js = app.send("GET", "/ui/main.js", &[], None).await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(js.header("content-security-policy").is_some());
    let css = app.send("GET", "/ui/style.css", &[], None).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    for missing in [
        "/ui/nope.js",
        "/ui/..%2Fmod.rs",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/a/b",
    ] {
        let r = app.send("GET", missing, &[], None).await;
        assert_eq!(r.status, 404, "{missing}");
        assert_eq!(r.json()["error"]["code"], "not_found", "{missing}");
    }
    // Other methods are not served.
    assert_eq!(app.send("POST", "/ui/", &[], None).await.status, 404);
    app.stop().await;
}

async fn recent_activity(db: TestDb) {
    let (mut c, bad, _good) = pair(&db, ("bad", Behavior::status(500)), ("good", Behavior::ok())).await;
    c.health_check.max_error_count = 1_000;
    c.stats.flush_ms = 60_000; // keep usage pending until the test flushes
    let app = TestApp::start(c).await;
    for _ in 0..4 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    let bad_hits = bad.chat_hits();
    assert!(bad_hits >= 1, "the failing upstream was tried");
    let attempts = 4 + bad_hits;

    let recent = async || {
        let r = app.admin("GET", "/api/stats/recent", None).await;
        assert_eq!(r.status, 200);
        r.json()
    };
    let ok = eventually(Duration::from_secs(5), async || {
        let v = recent().await;
        let minutes = v["per_minute"].as_array().unwrap();
        minutes
            .iter()
            .map(|m| m["requests"].as_u64().unwrap())
            .sum::<u64>()
            == attempts
    })
    .await;
    assert!(ok, "every attempt is counted: {}", recent().await);
    let v = recent().await;
    let minutes = v["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let failed: u64 = minutes.iter().map(|m| m["failed"].as_u64().unwrap()).sum();
    assert_eq!(failed, bad_hits, "failed attempts are the failing upstream's");
    // Oldest first, one minute apart, the last one is the current minute.
    let first = chrono::DateTime::parse_from_rfc3339(minutes[0]["minute"].as_str().unwrap()).unwrap();
    let last = chrono::DateTime::parse_from_rfc3339(minutes[59]["minute"].as_str().unwrap()).unwrap();
    assert_eq!(last - first, chrono::Duration::minutes(59));
    assert!((chrono::Utc::now().fixed_offset() - last) < chrono::Duration::minutes(1));
    // Usage is waiting: the lag grows from the oldest record.
    assert!(v["pending_rows"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["last_flush_at"].is_null(), "{v}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(recent().await["flush_lag_ms"].as_u64().unwrap() >= 50);

    app.flush().await;
    let v = recent().await;
    assert_eq!(v["pending_rows"], 0, "{v}");
    assert_eq!(v["flush_lag_ms"], 0, "{v}");
    assert_eq!(v["flush_failures"], 0, "{v}");
    assert!(v["last_flush_at"].is_string(), "{v}");
    app.stop().await;
}
both_backends!(
    recent_activity_counts_attempts_per_minute_and_the_flush_lag,
    recent_activity
);

#[actix_rt::test]
async fn the_flush_lag_counts_a_write_the_database_holds_up() {
    let db = TestDb::sqlite();
    let a = mock("a", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("a", &a.base_url(), &["m"])]);
    c.stats.flush_ms = 50;
    let app = TestApp::start(c).await;
    // Another connection holds the write lock: the router's write waits on it (busy timeout).
    let lock = crate::support::db::SqliteWriteLock::hold(db.url());
    for _ in 0..3 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    // The write state, without the 60 minutes.
    let recent = async || {
        let mut v = app.admin("GET", "/api/stats/recent", None).await.json();
        v.as_object_mut().unwrap().remove("per_minute");
        v
    };
    // Within the busy timeout the batch is being written, not pending: it still counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = recent().await;
    assert!(v["flush_lag_ms"].as_u64().unwrap() >= 1000, "{v}");
    assert!(v["pending_rows"].as_u64().unwrap() >= 1, "{v}");
    let failed = eventually(Duration::from_secs(20), async || {
        recent().await["flush_failures"].as_u64().unwrap() >= 1
    })
    .await;
    assert!(failed, "the held-up write failed: {}", recent().await);
    lock.release();
    app.flush().await;
    let v = recent().await;
    assert_eq!(
        (v["flush_lag_ms"].as_u64(), v["flush_failures"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    assert!(v["last_flush_at"].is_string(), "{v}");
    app.stop().await;
}

/// Starts Chromium, or says why it cannot (and skips, unless a browser is required).
async fn open_browser() -> Option<Browser> {
    match Browser::start(1280, 900).await {
        Ok(b) => Some(b),
        Err(why) if browser_required() => panic!("the browser test cannot run: {why}"),
        Err(why) => {
            eprintln!("SKIPPED the browser test: {why}; scripts/test.sh installs Chromium");
            None
        }
    }
}

fn screenshot_dir(backend: &str) -> PathBuf {
    match std::env::var_os("SWITCHYARD_SCREENSHOTS") {
        Some(dir) if backend == "sqlite" => {
            // Relative to the repository, whatever directory cargo runs the test in.
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)
            }
        }
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("screenshots-{backend}")),
    }
}

/// Usage rows for the two days before today, written straight to the database, so the usage
/// chart has several days to draw.
fn seed_past_usage(url: &str, provider_ids: &[i64]) {
    let pool = pool(url, 1);
    let today = chrono::Utc::now().date_naive();
    let mut rows = Vec::new();
    for (k, id) in provider_ids.iter().enumerate() {
        for back in 1..=2i64 {
            let date = today - chrono::Duration::days(back);
            let mut r =
                switchyard::store::UsageRow::zero(*id, "m".into(), date, date.and_hms_opt(12, 0, 0).unwrap());
            let n = 40 * (k as i64 + 1) + 10 * back;
            r.total_requests = n;
            r.success_requests = n - back;
            r.failed_requests = back;
            r.prompt_tokens = n * 20;
            r.completion_tokens = n * 12;
            r.total_tokens = n * 32;
            r.total_response_time_ms = n * (150 + 40 * k as i64);
            r.avg_response_time_ms = (150 + 40 * k as i64) as f64;
            rows.push(r);
        }
    }
    pool.add_usage(&rows).unwrap();
}

/// The names and health badges of the providers table, e.g. `alpha:healthy,beta:healthy`.
const BADGES: &str = "return [...document.querySelectorAll('#providers-body tr[data-provider]')]
    .map(r => r.dataset.provider + ':' + r.querySelector('[data-health]').dataset.health).join(',')";

async fn wait_badges(browser: &Browser, expected: &str) {
    browser
        .wait_for(
            &format!("the badges {expected}"),
            WAIT,
            &format!("{BADGES} === arguments[0]"),
            json!([expected]),
        )
        .await;
}

async fn wait_text(browser: &Browser, css: &str, contains: &str) {
    browser
        .wait_for(
            &format!("{css} to say {contains:?}"),
            WAIT,
            "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0 && e.textContent.includes(arguments[1])",
            json!([css, contains]),
        )
        .await;
}

async fn open_view(browser: &Browser, name: &str) {
    browser.click(&format!("#nav a[data-view=\"{name}\"]")).await;
    browser
        .wait_for(
            &format!("the {name} view"),
            WAIT,
            "return !document.querySelector('#view-' + arguments[0]).hidden",
            json!([name]),
        )
        .await;
}

/// A screenshot for the README, without the passing notices in the corner.
async fn shot(browser: &Browser, dir: &std::path::Path, name: &str) {
    browser
        .exec("document.querySelector('#toasts').replaceChildren()", json!([]))
        .await;
    browser.save_screenshot(dir, name).await;
}

/// Presses one of a provider's action buttons in the Providers table.
async fn press(browser: &Browser, provider: &str, action: &str) {
    browser
        .click(&format!(
            "tr[data-provider={provider}] button[data-action={action}]"
        ))
        .await;
}

async fn providers_api(app: &TestApp) -> Vec<Value> {
    app.admin("GET", "/api/providers", None).await.json()["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn dashboard(db: TestDb, backend: &str) {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = open_browser().await else {
        return;
    };
    let shots = screenshot_dir(backend);
    let alpha = mock("alpha", Behavior::ok()).await;
    let beta = mock("beta", Behavior::ok()).await;
    let gamma = mock("gamma", Behavior::ok()).await;
    let mut c = config(
        &db,
        vec![
            provider("alpha", &alpha.base_url(), &["m"]),
            provider("beta", &beta.base_url(), &["m", "m-large"]),
        ],
    );
    c.health_check.max_error_count = 2;
    let app = TestApp::start(c).await;
    for _ in 0..6 {
        assert_eq!(app.chat("m").await.status, 200);
    }
    app.flush().await;
    let ids: Vec<i64> = providers_api(&app)
        .await
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    seed_past_usage(db.url(), &ids);

    // `/` leads to the sign-in form.
    browser.goto(&format!("{}/", app.url)).await;
    assert!(browser.current_url().await.ends_with("/ui/"));
    wait_text(&browser, "#signin h1", "Sign in").await;

    // A wrong token is refused and said so; the right one signs in.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#signin-form button[type=submit]").await;
    wait_text(&browser, "#token-error", "wrong").await;
    assert!(
        browser
            .exec("return document.querySelector('#nav').hidden", json!([]))
            .await
            == true
    );
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.keys("\u{E007}").await; // Enter submits
    wait_text(&browser, "#ov-requests", "6").await;

    // Overview: today's figures, providers by standing, 60 minute bars, the write lag.
    wait_text(&browser, "#ov-healthy", "2").await;
    wait_text(&browser, "#ov-success", "100 %").await;
    let bars = browser
        .exec(
            "return document.querySelectorAll('#ov-rpm rect.bar:not(.failed)').length",
            json!([]),
        )
        .await;
    assert_eq!(bars, 60, "one bar per minute of the last hour");
    wait_text(&browser, "#ov-last-flush", ":").await;
    shot(&browser, &shots, "overview").await;

    // Providers: every provider with its health.
    open_view(&browser, "providers").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy").await;
    let kind = browser.text("tr[data-provider=beta] td.kind").await;
    assert_eq!(kind.lines().next(), Some("openai"), "the default kind");
    // The filter narrows the table by name, model or kind.
    browser.type_into("#providers-filter", "LARGE").await;
    wait_badges(&browser, "beta:healthy").await;
    browser
        .exec(
            "const f = document.querySelector('#providers-filter'); f.value = ''; f.dispatchEvent(new Event('input'))",
            json!([]),
        )
        .await;
    wait_badges(&browser, "alpha:healthy,beta:healthy").await;

    // Add one: bad input is shown next to its field and adds nothing…
    browser.click("#provider-add").await;
    browser.type_into("#pf-name", "gamma").await;
    browser.type_into("#pf-base-url", &gamma.base_url()).await;
    browser.type_into("#pf-api-key", "sk-gamma-secret-0000").await;
    browser.type_into("#pf-models", "m, gamma-only").await;
    browser.type_into("#pf-weight", "-3").await;
    browser.click("#pf-probe-first").await;
    browser.click("#pf-submit").await;
    wait_text(
        &browser,
        "#provider-form [data-error-for=weight]",
        "between 1 and",
    )
    .await;
    let invalid = browser
        .exec(
            "return document.querySelector('#pf-weight').getAttribute('aria-invalid')",
            json!([]),
        )
        .await;
    assert_eq!(invalid, "true");
    shot(&browser, &shots, "provider-form").await;
    assert_eq!(providers_api(&app).await.len(), 2, "nothing was added");
    // …and once corrected it is probed first and added.
    browser.type_into("#pf-weight", "2").await;
    browser.click("#pf-submit").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy,gamma:healthy").await;
    let added = providers_api(&app).await;
    let g = added.iter().find(|p| p["name"] == "gamma").expect("gamma added");
    assert_eq!(g["weight"], 2);
    assert_eq!(g["models"], json!(["m", "gamma-only"]));
    assert!(
        gamma.chat_hits() + gamma.models_hits() >= 1,
        "probed before it was added"
    );
    assert!(
        !browser
            .exec(
                "return document.querySelector('#provider-dialog').open",
                json!([])
            )
            .await
            .as_bool()
            .unwrap()
    );

    // Break an upstream: the event arrives live on the Events view…
    open_view(&browser, "events").await;
    wait_text(&browser, "#events-state", "live").await;
    alpha.set_behavior(Behavior::status(500));
    let broke = eventually(WAIT, async || {
        app.chat("m").await;
        !app.state_of("alpha").await.health.is_healthy
    })
    .await;
    assert!(broke, "alpha turns unhealthy");
    browser
        .wait_for(
            "the provider_unhealthy event",
            WAIT,
            "return document.querySelector('#events-list li[data-type=provider_unhealthy][data-provider=alpha]')",
            json!([]),
        )
        .await;
    // Times are the browser's, with UTC on hover.
    let hover = browser
        .exec(
            "return document.querySelector('#events-list li time').getAttribute('title')",
            json!([]),
        )
        .await;
    assert!(hover.as_str().unwrap().ends_with(" UTC"), "{hover}");
    // Newest first, and filters apply.
    let first = browser
        .exec(
            "return document.querySelector('#events-list li').dataset.type",
            json!([]),
        )
        .await;
    assert!(first.as_str().unwrap().starts_with("provider_"), "{first}");
    shot(&browser, &shots, "events").await;
    browser
        .exec(
            "const s = document.querySelector('#events-severity'); s.value = 'critical'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
    let shown = browser
        .exec(
            "return document.querySelectorAll('#events-list li:not(.sev-critical):not(.lagged)').length",
            json!([]),
        )
        .await;
    assert_eq!(shown, 0, "the severity filter hides lesser events");
    browser
        .exec(
            "const s = document.querySelector('#events-severity'); s.value = 'low'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;

    // A page that falls behind the stream is told how many events it missed (a burst far
    // larger than a subscriber's queue, published faster than any reader takes it).
    for i in 0..20_000 {
        app.running().events.publish(switchyard::events::Event::new(
            switchyard::events::EventKind::ProviderSwitch,
            switchyard::events::Severity::Low,
            format!("burst {i}"),
        ));
    }
    wait_text(&browser, "#events-missed", "missed").await;

    // …and the badge turns on the Providers view.
    open_view(&browser, "providers").await;
    wait_badges(&browser, "alpha:unhealthy,beta:healthy,gamma:healthy").await;
    wait_text(&browser, "tr[data-provider=alpha] td.error-text", "500").await;
    shot(&browser, &shots, "providers").await;

    // Reset it.
    alpha.set_behavior(Behavior::ok());
    press(&browser, "alpha", "reset").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy,gamma:healthy").await;

    // A rate-limited provider is shown cooling down until it is reset.
    beta.set_behavior(Behavior {
        retry_after_secs: Some(120),
        ..Behavior::status(429)
    });
    let cooling = eventually(WAIT, async || {
        app.chat("m").await;
        app.state_of("beta").await.health.cooldown_until.is_some()
    })
    .await;
    assert!(cooling, "beta cools down");
    wait_badges(&browser, "alpha:healthy,beta:cooling,gamma:healthy").await;
    wait_text(
        &browser,
        "tr[data-provider=beta] td[data-label=Health]",
        "resting in",
    )
    .await;
    beta.set_behavior(Behavior::ok());
    press(&browser, "beta", "reset").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy,gamma:healthy").await;

    // Force a check and see its result.
    press(&browser, "beta", "check").await;
    wait_text(&browser, "#toasts", "Check of beta: passed").await;

    // Edit a field; disable and enable; delete with confirmation.
    press(&browser, "beta", "edit").await;
    browser.type_into("#pf-priority", "1").await;
    browser.click("#pf-submit").await;
    let beta_priority = eventually(WAIT, async || {
        providers_api(&app)
            .await
            .iter()
            .any(|p| p["name"] == "beta" && p["priority"] == 1)
    })
    .await;
    assert!(beta_priority, "the edit is applied");
    press(&browser, "gamma", "toggle").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy,gamma:disabled").await;
    press(&browser, "gamma", "delete").await;
    browser.click("#confirm-no").await;
    assert_eq!(providers_api(&app).await.len(), 3, "cancel deletes nothing");
    press(&browser, "gamma", "delete").await;
    wait_text(&browser, "#confirm-text", "Delete provider gamma?").await;
    browser.click("#confirm-yes").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy").await;
    assert_eq!(providers_api(&app).await.len(), 2);

    // Health check: bad input is shown at its field and changes nothing; a good one applies.
    open_view(&browser, "health").await;
    browser
        .wait_for(
            "the stored interval",
            WAIT,
            "return document.querySelector('#hc-interval').value === '3600'",
            json!([]),
        )
        .await;
    browser.type_into("#hc-interval", "0").await;
    browser.click("#health-form button[type=submit]").await;
    wait_text(
        &browser,
        "#health-form [data-error-for=interval_seconds]",
        "between 1 and",
    )
    .await;
    let stored = app.admin("GET", "/api/health-check/config", None).await.json();
    assert_eq!(
        stored["interval_seconds"], 3600,
        "a refused change changes nothing"
    );
    browser.type_into("#hc-interval", "120").await;
    browser.click("#health-form button[type=submit]").await;
    wait_text(&browser, "#health-status", "Saved").await;
    let stored = app.admin("GET", "/api/health-check/config", None).await.json();
    assert_eq!(stored["interval_seconds"], 120);
    shot(&browser, &shots, "health").await;

    // Usage over three days: one point per day for each provider with usage in the range.
    open_view(&browser, "usage").await;
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(2)).to_string();
    browser
        .exec(
            "document.querySelector('#usage-from').value = arguments[0];
             document.querySelector('#usage-to').value = arguments[1];
             document.querySelector('#usage-form button[type=submit]').click()",
            json!([from, today.to_string()]),
        )
        .await;
    let usage = app
        .admin("GET", &format!("/api/stats/usage?from={from}&to={today}"), None)
        .await
        .json();
    let rows = usage["data"].as_array().unwrap();
    let mut series: Vec<i64> = rows.iter().map(|r| r["provider_id"].as_i64().unwrap()).collect();
    series.sort();
    series.dedup();
    assert!(series.len() >= 2, "{usage}");
    let points = series.len() * 3;
    browser
        .wait_for(
            &format!("{points} points in the requests chart"),
            WAIT,
            "return document.querySelectorAll('#chart-requests circle.point').length === arguments[0]",
            json!([points]),
        )
        .await;
    let lines = browser
        .exec(
            "return document.querySelectorAll('#chart-requests polyline').length",
            json!([]),
        )
        .await;
    assert_eq!(lines, series.len());
    let table_rows = browser
        .exec(
            "return document.querySelectorAll('#usage-body tr').length",
            json!([]),
        )
        .await;
    assert_eq!(table_rows, rows.len(), "one table row per usage row");
    wait_text(&browser, "#usage-least", "Least used").await;
    shot(&browser, &shots, "usage").await;
    // Per model: one line per model.
    let mut models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    models.sort();
    models.dedup();
    browser
        .exec(
            "const s = document.querySelector('#usage-by'); s.value = 'model'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "one line per model",
            WAIT,
            "return document.querySelectorAll('#chart-requests circle.point').length === arguments[0]",
            json!([models.len() * 3]),
        )
        .await;

    // Explain: shows the candidates, or says plainly that this router cannot explain yet.
    open_view(&browser, "explain").await;
    browser.type_into("#explain-model", "m").await;
    browser.click("#explain-form button[type=submit]").await;
    browser
        .wait_for(
            "an explanation or a plain refusal",
            WAIT,
            "return document.querySelector('#explain-status').textContent",
            json!([]),
        )
        .await;
    let explained = app.admin("GET", "/api/routing/explain?model=m", None).await;
    if explained.status == 200 {
        let candidates = explained.json()["candidates"].as_array().map_or(0, Vec::len);
        let shown = browser
            .exec(
                "return document.querySelectorAll('#explain-table tbody tr').length",
                json!([]),
            )
            .await;
        assert_eq!(shown, candidates, "one row per candidate");
    } else {
        assert_eq!(explained.status, 404);
        wait_text(&browser, "#explain-status", "cannot explain").await;
    }
    shot(&browser, &shots, "explain").await;

    // Keyboard: Tab reaches the navigation and the providers' actions.
    open_view(&browser, "providers").await;
    wait_badges(&browser, "alpha:healthy,beta:healthy").await;
    browser
        .exec("document.activeElement.blur(); window.scrollTo(0, 0)", json!([]))
        .await;
    let mut reached = Vec::new();
    for _ in 0..40 {
        browser.keys("\u{E004}").await;
        let label = browser
            .exec(
                "const e = document.activeElement; return e.getAttribute('aria-label') || e.textContent.trim()",
                json!([]),
            )
            .await;
        reached.push(label.as_str().unwrap_or_default().to_string());
    }
    for wanted in [
        "Usage",
        "Add provider",
        "Reset the health of alpha",
        "Delete beta",
    ] {
        assert!(
            reached.iter().any(|r| r.starts_with(wanted)),
            "Tab reaches {wanted}: {reached:?}"
        );
    }

    // Narrow and wide screens: nothing wider than the window.
    for (width, height) in [(390, 844), (1280, 900)] {
        browser.set_size(width, height).await;
        for view in ["overview", "providers", "usage", "events", "health", "explain"] {
            open_view(&browser, view).await;
            let overflow = browser
                .exec(
                    "return document.documentElement.scrollWidth - window.innerWidth",
                    json!([]),
                )
                .await;
            assert!(
                overflow.as_i64().unwrap() <= 0,
                "{view} at {width} px overflows by {overflow}"
            );
            if width == 390 && (view == "overview" || view == "providers") {
                if view == "providers" {
                    wait_badges(&browser, "alpha:healthy,beta:healthy").await;
                }
                browser.save_screenshot(&shots, &format!("{view}-390")).await;
            }
        }
    }

    // Text from the router is shown as text: a model name that is markup stays a name.
    let hostile = "<img src=x onerror=\"window.pwned=1\">";
    let r = app
        .admin(
            "POST",
            "/api/providers",
            Some(json!({"name": "odd", "base_url": gamma.base_url(), "models": [hostile]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    open_view(&browser, "providers").await;
    browser
        .wait_for(
            "the odd provider's models",
            WAIT,
            "const td = document.querySelector('tr[data-provider=odd] td.models'); return !!td && td.textContent === arguments[0]",
            json!([hostile]),
        )
        .await;
    let injected = browser
        .exec(
            "return [document.querySelectorAll('main img, #events-list img').length, window.pwned === undefined]",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([0, true]), "no markup from data reaches the page");

    // Sign-out forgets the token and what was shown; nothing was stored in the browser.
    browser.click("#signout").await;
    wait_text(&browser, "#signin h1", "Sign in").await;
    let stored = browser
        .exec(
            "return [localStorage.length, sessionStorage.length, document.cookie, document.querySelectorAll('#providers-body tr').length]",
            json!([]),
        )
        .await;
    assert_eq!(stored, json!([0, 0, "", 0]));
    shot(&browser, &shots, "signin").await;

    // No error in the console but the refusals the test asked for (the wrong token's 401,
    // the bad weight's and interval's 422, and a 404 from a router without the explain view).
    let console = browser.console().await;
    let unexpected: Vec<&Value> = console
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            let msg = e["message"].as_str().unwrap_or_default();
            let expected_refusal = e["source"] == "network"
                && ["status of 401", "status of 422", "status of 404"]
                    .iter()
                    .any(|s| msg.contains(s));
            !expected_refusal
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:#?}");
    browser.quit().await;
    app.stop().await;
}

async fn dashboard_sqlite(db: TestDb) {
    dashboard(db, "sqlite").await
}

async fn dashboard_postgres(db: TestDb) {
    dashboard(db, "postgres").await
}

mod the_dashboard_in_a_browser {
    #[actix_rt::test]
    async fn sqlite() {
        super::dashboard_sqlite(crate::support::TestDb::sqlite()).await
    }
    #[actix_rt::test]
    async fn postgres() {
        super::dashboard_postgres(crate::support::TestDb::postgres()).await
    }
}
