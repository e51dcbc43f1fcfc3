//! Security at rest and at the edge: private database files, provider keys sealed in both
//! databases (and rotation), browsers kept out (Origin, Host, content type), the admin API on
//! its own listener, admin authentication failures slowed down, slow bodies, connection and
//! stream caps.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mock_upstream::Behavior;
use switchyard::sealing::{SealingKey, is_sealed};
use switchyard::store::{Backend, DbPool};

use crate::both_backends;
use crate::support::{ADMIN_TOKEN, TestApp, TestDb, config, mock, provider};

const KEY_A: &str = "1f2e3d4c5b6a79880123456789abcdef1f2e3d4c5b6a79880123456789abcdef";
const KEY_B: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

/// Why the router refuses to start with `config` (it must refuse).
async fn refusal(config: switchyard::Config) -> String {
    match switchyard::start(
        config,
        switchyard::StartOptions {
            handle_signals: false,
        },
    )
    .await
    {
        Ok(_) => panic!("the router started, but it must refuse"),
        Err(e) => e.to_string(),
    }
}

/// The error message of an answer.
fn message(r: &crate::support::Reply) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `POST /api/providers` with the admin token.
async fn add_provider(app: &TestApp, body: serde_json::Value) -> crate::support::Reply {
    app.admin("POST", "/api/providers", Some(body)).await
}

fn pool(url: &str) -> DbPool {
    DbPool::connect(&Backend::from_url(url).unwrap(), 1).unwrap()
}

/// (name, stored api_key) of every provider, read straight from the table.
fn stored(url: &str) -> Vec<(String, String)> {
    pool(url)
        .stored_keys()
        .unwrap()
        .into_iter()
        .map(|(_, n, k)| (n, k))
        .collect()
}

/// Every byte SQLite keeps for the database (file, WAL), or nothing on PostgreSQL.
fn sqlite_bytes(db: &TestDb) -> Vec<u8> {
    let Some(path) = db.url().strip_prefix("sqlite://") else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(b);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[actix_rt::test]
async fn the_sqlite_files_and_directory_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh/switchyard.db");
    let mut c = config(&TestDb::sqlite(), vec![]);
    c.database_url = format!("sqlite://{}", path.display());
    let app = TestApp::start(c).await;
    // A write so the WAL and SHM exist.
    let m = mock("m", Behavior::ok()).await;
    let r = add_provider(
        &app,
        serde_json::json!({"name": "p", "base_url": m.base_url(), "models": ["m"], "api_key": "sk-x"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).ok();
    assert_eq!(mode(dir.path().join("fresh")), Some(0o700), "directory");
    assert_eq!(mode(path.clone()), Some(0o600), "database");
    for suffix in ["-wal", "-shm", ".lock"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        assert_eq!(mode(p), Some(0o600), "{suffix}");
    }
    app.stop().await;
}

both_backends!(keys_are_sealed_at_rest, keys_are_sealed_at_rest_body);
async fn keys_are_sealed_at_rest_body(db: TestDb) {
    let m = mock("sealed", Behavior::ok()).await;
    let file_key = "sk-from-file-0123456789-secret";
    let api_key = "sk-from-api-9876543210-secret";
    let mut spec = provider("sealed", &m.base_url(), &["m"]);
    spec.api_key = Some(file_key.into());
    let mut c = config(&db, vec![spec]);
    c.secret_key = Some(KEY_A.into());
    let app = TestApp::start(c.clone()).await;
    let r = add_provider(
        &app,
        serde_json::json!({"name": "api", "base_url": m.base_url(), "models": ["n"], "api_key": api_key}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The keys still reach the upstream in clear.
    assert_eq!(app.chat("m").await.status, 200);
    assert_eq!(app.chat("n").await.status, 200);
    let sent: Vec<_> = m.requests().into_iter().filter_map(|r| r.authorization).collect();
    assert!(sent.contains(&format!("Bearer {file_key}")), "{sent:?}");
    assert!(sent.contains(&format!("Bearer {api_key}")), "{sent:?}");
    app.stop().await;

    let rows = stored(db.url());
    assert_eq!(rows.len(), 2);
    for (name, value) in &rows {
        assert!(is_sealed(value), "{name}: {value}");
        assert!(!value.contains("secret"), "{name}");
    }
    let bytes = sqlite_bytes(&db);
    assert!(
        !contains(&bytes, file_key) && !contains(&bytes, api_key),
        "a key in the file's bytes"
    );

    // Without the key, or with another, the router refuses to start and says why.
    let mut no_key = c.clone();
    no_key.secret_key = None;
    let e = refusal(no_key).await;
    assert!(e.contains("SWITCHYARD_SECRET_KEY"), "{e}");
    let mut wrong = c.clone();
    wrong.secret_key = Some(KEY_B.into());
    let e = refusal(wrong).await;
    assert!(e.contains("sealed with key"), "{e}");
    assert!(!e.contains(KEY_B) && !e.contains(KEY_A), "{e}");
}

both_backends!(
    plaintext_rows_are_sealed_at_start,
    plaintext_rows_are_sealed_at_start_body
);
async fn plaintext_rows_are_sealed_at_start_body(db: TestDb) {
    let m = mock("plain", Behavior::ok()).await;
    let key = "sk-plain-0123456789-secret";
    let c = config(&db, vec![]);
    let app = TestApp::start(c.clone()).await;
    let r = add_provider(
        &app,
        serde_json::json!({"name": "plain", "base_url": m.base_url(), "models": ["m"], "api_key": key}),
    )
    .await;
    assert_eq!(r.status, 201);
    app.stop().await;
    assert_eq!(stored(db.url())[0].1, key, "no secret key: plaintext, as before");

    let mut sealed = c.clone();
    sealed.secret_key = Some(KEY_A.into());
    let app = TestApp::start(sealed).await;
    let rows = stored(db.url());
    assert!(is_sealed(&rows[0].1), "{}", rows[0].1);
    assert!(
        !contains(&sqlite_bytes(&db), key),
        "the old plaintext is gone from the file"
    );
    assert_eq!(app.chat("m").await.status, 200);
    assert_eq!(
        m.requests().last().and_then(|r| r.authorization.clone()),
        Some(format!("Bearer {key}"))
    );
    app.stop().await;
}

both_backends!(rotation_reseals_every_key, rotation_reseals_every_key_body);
async fn rotation_reseals_every_key_body(db: TestDb) {
    let m = mock("rot", Behavior::ok()).await;
    let key = "sk-rotate-0123456789-secret";
    let mut spec = provider("rot", &m.base_url(), &["m"]);
    spec.api_key = Some(key.into());
    let mut c = config(&db, vec![spec]);
    c.secret_key = Some(KEY_A.into());
    let app = TestApp::start(c.clone()).await;
    app.stop().await;
    let before = stored(db.url());

    let new = SealingKey::from_hex(KEY_B).unwrap();
    let cc = c.clone();
    let done = actix_web::rt::task::spawn_blocking(move || switchyard::rotate::rotate_key(&cc, &new))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.rows, 1);
    let after = stored(db.url());
    assert_ne!(before, after);
    assert!(after[0].1.contains(&done.key_id), "sealed under the new key");

    // The old key no longer opens it; the new one does, and the upstream gets the same key.
    let e = refusal(c.clone()).await;
    assert!(e.contains("sealed with key"), "{e}");
    let mut rotated = c.clone();
    rotated.secret_key = Some(KEY_B.into());
    // The file's key is upserted at start; take it out so the row read is the rotated one.
    rotated.providers.clear();
    let app = TestApp::start(rotated).await;
    assert_eq!(app.chat("m").await.status, 200);
    assert_eq!(
        m.requests().last().and_then(|r| r.authorization.clone()),
        Some(format!("Bearer {key}"))
    );
    app.stop().await;

    // A rotation that cannot open a row changes nothing.
    let wrong_current = c.clone();
    let again = SealingKey::from_hex(KEY_A).unwrap();
    let r =
        actix_web::rt::task::spawn_blocking(move || switchyard::rotate::rotate_key(&wrong_current, &again))
            .await
            .unwrap();
    assert!(r.is_err());
    assert_eq!(stored(db.url()), after);
}

#[actix_rt::test]
async fn the_rotate_key_command_is_documented_and_works() {
    let db = TestDb::sqlite();
    let m = mock("cmd", Behavior::ok()).await;
    let mut c = config(&db, vec![]);
    c.secret_key = Some(KEY_A.into());
    let app = TestApp::start(c).await;
    let r = add_provider(&app, serde_json::json!({"name": "cmd", "base_url": m.base_url(), "models": ["m"], "api_key": "sk-cmd-0123456789"})).await;
    assert_eq!(r.status, 201);
    app.stop().await;
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let help = std::process::Command::new(bin).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("rotate-key"));
    let out = std::process::Command::new(bin)
        .arg("rotate-key")
        .env("DATABASE_URL", db.url())
        .env("SWITCHYARD_SECRET_KEY", KEY_A)
        .env("SWITCHYARD_NEW_SECRET_KEY", KEY_B)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("re-sealed 1 provider key"), "{text}");
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
    let id = SealingKey::from_hex(KEY_B).unwrap().id().to_string();
    assert!(stored(db.url())[0].1.contains(&id));
}

#[actix_rt::test]
async fn browsers_are_kept_out() {
    let db = TestDb::sqlite();
    let m = mock("edge", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("edge", &m.base_url(), &["m"])]);
    c.cors_allowed_origins = vec!["https://app.example.com".into()];
    let app = TestApp::start(c).await;
    let chat = Bytes::from(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);

    // A foreign origin: refused everywhere, in OpenAI's shape, before any upstream call.
    for (method, path) in [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/healthz"),
        ("GET", "/api/providers"),
    ] {
        let r = app
            .send(
                method,
                path,
                &[("origin", "https://evil.example")],
                Some(chat.clone()),
            )
            .await;
        assert_eq!(r.status, 403, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "origin_not_allowed");
    }
    assert_eq!(m.chat_hits(), 0);

    // A DNS-rebinding Host on the loopback listener.
    let r = app
        .send(
            "POST",
            "/v1/chat/completions",
            &[("host", "rebind.attacker.example:7070")],
            Some(chat.clone()),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "host_not_allowed");

    // A text/plain POST (a "simple" cross-site request needs no preflight): 415.
    let r = app
        .client
        .post(format!("{}/v1/chat/completions", app.url))
        .insert_header(("content-type", "text/plain;charset=UTF-8"))
        .send_body(chat.clone())
        .await
        .unwrap()
        .status();
    assert_eq!(r.as_u16(), 415);
    let mut resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.url))
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .send_body(chat.clone())
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(m.chat_hits(), 0);

    // A listed origin: preflight answered, then the call carries CORS headers.
    let r = app
        .send(
            "OPTIONS",
            "/v1/chat/completions",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type, x-stainless-os",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .contains("x-stainless-os")
    );
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    let r = app
        .send(
            "POST",
            "/v1/chat/completions",
            &[("origin", "https://app.example.com")],
            Some(chat.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("x-switchyard-provider")
    );

    // The router's own page (same host and port), as the dashboard sends it.
    let own = app.url.clone();
    let r = app
        .send(
            "GET",
            "/api/providers",
            &[
                ("origin", &own),
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Ordinary clients: JSON with no Origin (OpenAI SDK, curl -H content-type, LiteLLM).
    let r = app.chat("m").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    let r = app
        .send(
            "POST",
            "/v1/chat/completions",
            &[
                ("user-agent", "OpenAI/Python 1.55.0"),
                ("x-stainless-lang", "python"),
            ],
            Some(chat.clone()),
        )
        .await;
    assert_eq!(r.status, 200);
    app.stop().await;
}

#[actix_rt::test]
async fn the_admin_api_cannot_read_arbitrary_environment_variables() {
    let db = TestDb::sqlite();
    let m = mock("env", Behavior::ok()).await;
    let app = TestApp::start(config(&db, vec![])).await;
    for var in ["DATABASE_URL", "PATH", "HOME", "AWS_SECRET_ACCESS_KEY"] {
        let r = add_provider(&app, serde_json::json!({"name": "leak", "base_url": m.base_url(), "models": ["m"], "api_key_env": var})).await;
        assert_eq!(r.status, 422, "{var}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], "api_key_env");
        assert!(message(&r).contains("SWITCHYARD_KEY_"));
    }
    // A name with the prefix passes the rule (and is then looked up: unset here).
    let r = add_provider(&app, serde_json::json!({"name": "ok", "base_url": m.base_url(), "models": ["m"], "api_key_env": "SWITCHYARD_KEY_UNSET_FOR_TEST"})).await;
    assert_eq!(r.status, 422);
    assert!(message(&r).contains("is not set"));
    // Nor through an update.
    let r = add_provider(
        &app,
        serde_json::json!({"name": "p", "base_url": m.base_url(), "models": ["m"], "api_key": "sk-p"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_i64().unwrap();
    let r = app
        .admin(
            "PUT",
            &format!("/api/providers/{id}"),
            Some(serde_json::json!({"api_key_env": "DATABASE_URL"})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(m.chat_hits() + m.models_hits(), 0, "nothing was sent anywhere");
    app.stop().await;
}

#[actix_rt::test]
async fn the_admin_api_lives_on_its_own_listener() {
    let db = TestDb::sqlite();
    let mut c = config(&db, vec![]);
    c.admin_listen = Some("127.0.0.1:0".into());
    let app = TestApp::start(c).await;
    let admin_url = format!("http://{}", app.running().admin_addr.expect("admin address"));
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let get = |url: String| {
        let client = app.client.clone();
        let auth = auth.clone();
        async move {
            client
                .get(url)
                .insert_header(("authorization", auth))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get(format!("{admin_url}/api/providers")).await, 200);
    assert_eq!(get(format!("{admin_url}/metrics")).await, 200);
    assert_eq!(get(format!("{admin_url}/healthz")).await, 200);
    assert_eq!(get(format!("{admin_url}/v1/models")).await, 404);
    assert_eq!(get(format!("{}/api/providers", app.url)).await, 404);
    assert_eq!(get(format!("{}/api/openapi.json", app.url)).await, 404);
    assert_eq!(get(format!("{}/metrics", app.url)).await, 404);
    assert_eq!(get(format!("{}/v1/models", app.url)).await, 200);
    assert_eq!(get(format!("{}/readyz", app.url)).await, 200);
    // The dashboard goes with the admin API.
    assert_eq!(get(format!("{admin_url}/ui/")).await, 200);
    assert_eq!(get(format!("{}/ui/", app.url)).await, 404);
    app.stop().await;
}

#[actix_rt::test]
async fn failed_admin_logins_are_slowed_down_per_peer() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    let mut last = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let r = app
            .send(
                "GET",
                "/api/providers",
                &[("authorization", "Bearer wrong-token-guess")],
                None,
            )
            .await;
        assert_eq!(r.status, 401);
        assert!(!r.text().contains("wrong-token-guess"));
        last = t.elapsed();
    }
    // The 4th failure waits 250 ms, the 5th 500 ms.
    assert!(last >= Duration::from_millis(450), "{last:?}");
    // The right token is never slowed.
    let t = Instant::now();
    assert_eq!(app.admin("GET", "/api/providers", None).await.status, 200);
    assert!(t.elapsed() < Duration::from_millis(400), "{:?}", t.elapsed());
    app.stop().await;
}

#[actix_rt::test]
async fn failed_admin_logins_are_logged_without_the_token() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let instance = crate::support::process::Instance::start(db.url(), &file);
    let client = awc::Client::default();
    let r = client
        .get(format!("{}/api/providers", instance.url))
        .insert_header(("authorization", "Bearer guessed-token-value-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            instance
                .log
                .lock()
                .unwrap()
                .contains("admin authentication failed from 127.0.0.1")
        })
        .await,
        "{}",
        instance.log.lock().unwrap()
    );
    assert!(!instance.log.lock().unwrap().contains("guessed-token-value"));
}

#[actix_rt::test]
async fn readiness_shows_detail_only_with_the_admin_token() {
    let db = TestDb::sqlite();
    let app = TestApp::start(config(&db, vec![])).await;
    let r = app.send("GET", "/readyz", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"status": "ready"}));
    let r = app.admin("GET", "/readyz", None).await;
    assert_eq!(r.json()["database"], "ok");
    let r = app
        .send("GET", "/readyz", &[("authorization", "Bearer nope")], None)
        .await;
    assert_eq!(r.status, 401);
    app.stop().await;
}

/// Opens a raw connection to the router.
fn raw(url: &str) -> std::net::TcpStream {
    let addr = url.trim_start_matches("http://");
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The body every slow-body test sends.
const CHAT_BODY: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// A router whose request bodies must arrive within `timeout_ms`, in front of one provider
/// serving `m` (the database is returned to outlive the router).
async fn slow_body_app(timeout_ms: u64) -> (TestDb, mock_upstream::MockUpstream, TestApp) {
    let db = TestDb::sqlite();
    let m = mock("slow", Behavior::ok()).await;
    let mut c = config(&db, vec![provider("slow", &m.base_url(), &["m"])]);
    c.client_body_timeout_ms = timeout_ms;
    let app = TestApp::start(c).await;
    (db, m, app)
}

/// Opens a raw connection and sends the head of a chat request announcing `CHAT_BODY`.
fn chat_head(url: &str) -> std::net::TcpStream {
    let mut s = raw(url);
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        CHAT_BODY.len()
    )
    .unwrap();
    s
}

/// The start of the answer on `s` (empty if none came).
fn first_read(s: &mut std::net::TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[actix_rt::test]
async fn a_body_sent_one_byte_a_second_gets_408() {
    let (_db, m, app) = slow_body_app(1_500).await;
    let url = app.url.clone();
    let started = Instant::now();
    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut s = chat_head(&url);
        for b in CHAT_BODY.iter() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            // Stop writing once the router has answered.
            s.set_nonblocking(true).unwrap();
            let mut peek = [0u8; 1];
            let answered = matches!(s.peek(&mut peek), Ok(n) if n > 0);
            s.set_nonblocking(false).unwrap();
            if answered {
                break;
            }
        }
        first_read(&mut s)
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(m.chat_hits(), 0);
    app.stop().await;
}

/// Sends a chat request's head, waits `pause`, then sends the body (or, unless `send_body`,
/// nothing), and returns the start of the answer.
fn head_then_body(url: &str, pause: Duration, send_body: bool) -> String {
    let mut s = chat_head(url);
    std::thread::sleep(pause);
    if send_body {
        s.write_all(CHAT_BODY).unwrap();
    }
    first_read(&mut s)
}

#[actix_rt::test]
async fn a_body_that_never_comes_gets_408_and_one_that_comes_late_is_served() {
    let (_db, m, app) = slow_body_app(1_000).await;
    let url = app.url.clone();
    let started = Instant::now();
    let (never, late) = actix_web::rt::task::spawn_blocking(move || {
        let never = head_then_body(&url, Duration::ZERO, false);
        // The body comes after the head, within the limit: the wait is the timer's.
        let late = head_then_body(&url, Duration::from_millis(300), true);
        (never, late)
    })
    .await
    .unwrap();
    assert!(never.starts_with("HTTP/1.1 408"), "{never}");
    assert!(late.starts_with("HTTP/1.1 200"), "{late}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(m.chat_hits(), 1);
    app.stop().await;
}

#[actix_rt::test]
async fn connections_are_capped() {
    let db = TestDb::sqlite();
    let mut c = config(&db, vec![]);
    c.workers = 1;
    c.max_connections = 2;
    let app = TestApp::start(c).await;
    let url = app.url.clone();
    let result = actix_web::rt::task::spawn_blocking(move || {
        let get = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
        let answered = |s: &mut std::net::TcpStream, wait: Duration| {
            s.set_read_timeout(Some(wait)).unwrap();
            let mut buf = [0u8; 1024];
            matches!(s.read(&mut buf), Ok(n) if n > 0)
        };
        let mut held = vec![raw(&url), raw(&url)];
        for s in held.iter_mut() {
            s.write_all(get).unwrap();
            assert!(answered(s, Duration::from_secs(5)));
        }
        let mut third = raw(&url);
        third.write_all(get).unwrap();
        let while_full = answered(&mut third, Duration::from_millis(700));
        drop(held.pop());
        let after = answered(&mut third, Duration::from_secs(5));
        (while_full, after)
    })
    .await
    .unwrap();
    assert_eq!(
        result,
        (false, true),
        "(answered while full, answered after one closed)"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_stream_is_cut_at_its_maximum_duration() {
    let db = TestDb::sqlite();
    let m = mock("long", Behavior::streaming(50, 100)).await;
    let mut c = config(&db, vec![provider("long", &m.base_url(), &["m"])]);
    c.max_stream_duration_ms = Some(600);
    let app = TestApp::start(c).await;
    let t = Instant::now();
    let r = app.chat_with("m", true, &[]).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let text = r.text();
    assert!(text.contains("data: {"), "some chunks came through: {text}");
    assert!(text.ends_with("\n\n"), "{text}");
    assert!(text.contains("stream_duration_exceeded"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    app.stop().await;
}

/// A mock upstream serving HTTPS with a certificate of the test CA (HTTP/2 and HTTP/1.1).
async fn tls_mock(name: &str) -> mock_upstream::MockUpstream {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    mock_upstream::MockUpstream::start_with(mock_upstream::MockOptions {
        tls: Some((
            fixtures.join("upstream-cert.pem"),
            fixtures.join("upstream-key.pem"),
        )),
        ..mock_upstream::MockOptions::new(name)
    })
    .await
    .unwrap()
}

/// Starts the binary (its own process, so its upstream trust store is its own) with `toml`.
fn router_process(db: &TestDb, toml: &str) -> crate::support::process::Instance {
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("router.toml");
    std::fs::write(&file, toml).unwrap();
    crate::support::process::Instance::start(db.url(), &file)
}

#[actix_rt::test]
async fn private_ca_upstreams_and_the_http2_opt_in() {
    let m = tls_mock("tls").await;
    assert!(m.base_url().starts_with("https://127.0.0.1:"));
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-ca.pem");
    let providers = format!(
        "[health_check]\nenabled = false\n[[providers]]\nname = \"h1\"\nbase_url = \"{url}\"\napi_key = \"sk-h1\"\nmodels = [\"one\"]\n\
         [[providers]]\nname = \"h2\"\nbase_url = \"{url}\"\napi_key = \"sk-h2\"\nmodels = [\"two\"]\nhttp2 = true\n",
        url = m.base_url()
    );
    let client = awc::Client::builder().timeout(Duration::from_secs(20)).finish();
    let chat = |url: String, model: &'static str| {
        let client = client.clone();
        async move {
            let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            let mut r = client
                .post(format!("{url}/v1/chat/completions"))
                .insert_header(("content-type", "application/json"))
                .send_body(body.to_string())
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&r.body().await.unwrap()).into_owned();
            (r.status().as_u16(), text)
        }
    };

    // Without the bundle, the private CA is not trusted: nothing reaches the upstream.
    let db = TestDb::sqlite();
    let without = router_process(&db, &providers);
    let (status, text) = chat(without.url.clone(), "one").await;
    assert_eq!(status, 502, "{text}");
    assert!(m.requests().is_empty());
    drop(without);

    // With it: served, over HTTP/1.1 unless the provider opted into HTTP/2.
    let db = TestDb::sqlite();
    let with = router_process(
        &db,
        &format!("upstream_ca_bundle = {:?}\n{providers}", ca.display().to_string()),
    );
    let (status, text) = chat(with.url.clone(), "one").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = chat(with.url.clone(), "two").await;
    assert_eq!(status, 200, "{text}");
    let seen: Vec<(String, String)> = m
        .requests()
        .into_iter()
        .map(|r| (r.authorization.unwrap_or_default(), r.version))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("Bearer sk-h1".to_string(), "HTTP/1.1".to_string()),
            ("Bearer sk-h2".to_string(), "HTTP/2.0".to_string()),
        ]
    );
    // No warning about keys in clear: both go over https.
    assert!(!with.log.lock().unwrap().contains("plain http"));
}

#[actix_rt::test]
async fn a_key_over_plain_http_to_another_host_is_warned_about() {
    let db = TestDb::sqlite();
    // 192.0.2.0/24 is reserved for documentation: never a real host.
    let instance = router_process(
        &db,
        "[[providers]]\nname = \"remote\"\nbase_url = \"http://192.0.2.1:9/v1\"\napi_key = \"sk-remote-secret-1234\"\nmodels = [\"m\"]\n",
    );
    let log = instance.log.lock().unwrap().clone();
    assert!(
        log.contains("provider remote: its key is sent over plain http to 192.0.2.1"),
        "{log}"
    );
    assert!(!log.contains("sk-remote-secret"), "{log}");
}

#[actix_rt::test]
async fn an_existing_database_readable_by_others_is_warned_about() {
    let db = TestDb::sqlite();
    let path = db.url().trim_start_matches("sqlite://").to_string();
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let instance = crate::support::process::Instance::start(db.url(), &file);
    let log = instance.log.lock().unwrap().clone();
    assert!(log.contains("has mode 644: other users may read it"), "{log}");
    // Left as the operator set it.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}
