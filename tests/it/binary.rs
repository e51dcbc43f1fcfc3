//! The binary as an operator runs it: start-up with nothing set, and no secret in its output.

use std::process::Command;
use std::time::Duration;

use mock_upstream::Behavior;

use crate::support::process::Instance;
use crate::support::{eventually, mock};

#[actix_rt::test]
async fn starts_with_nothing_set_and_never_logs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = mock("bad", Behavior::status(401)).await;
    let good = mock("good", Behavior::ok()).await;
    let key_bad = "sk-bad-very-secret-0123456789";
    let key_good = "sk-good-very-secret-9876543210";
    std::fs::write(
        dir.path().join("providers.toml"),
        format!(
            "[[providers]]\nname = \"bad\"\nbase_url = \"{}\"\napi_key = \"{key_bad}\"\nmodels = [\"m\"]\n\
             [[providers]]\nname = \"good\"\nbase_url = \"{}\"\napi_key_env = \"GOOD_KEY\"\nmodels = [\"m\"]\n",
            bad.base_url(),
            good.base_url()
        ),
    )
    .unwrap();
    // Only the port is set (a fixed 7070 could be taken); everything else is the default,
    // with the most verbose logging.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.current_dir(dir.path())
        .args(["--config", "providers.toml"])
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env_remove("SWITCHYARD_API_KEYS")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("GOOD_KEY", key_good)
        .env("RUST_LOG", "trace");
    let mut instance = Instance::spawn(cmd);
    assert!(
        dir.path().join("data/switchyard.db").exists(),
        "the SQLite file is created"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            instance.stdout.lock().unwrap().contains("admin token")
        })
        .await,
        "the generated admin token is printed"
    );
    let token = {
        let out = instance.stdout.lock().unwrap();
        assert_eq!(out.matches("admin token").count(), 1, "printed once");
        out.trim().rsplit(' ').next().unwrap().to_string()
    };
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    for _ in 0..4 {
        let r = client
            .post(format!("{}/v1/chat/completions", instance.url))
            .insert_header(("content-type", "application/json"))
            .send_body(body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        good.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {key_good}").as_str()),
        "the key from the environment is used"
    );
    let mut r = client
        .get(format!("{}/api/providers", instance.url))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the printed token works");
    let listing = String::from_utf8_lossy(&r.body().await.unwrap()).into_owned();
    assert!(!listing.contains(key_bad) && !listing.contains(key_good));
    let mut r = client
        .get(format!("{}/metrics", instance.url))
        .send()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&r.body().await.unwrap()).contains("secret"));
    instance.signal("-TERM");
    assert_eq!(instance.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
    let log = instance.log.lock().unwrap().clone();
    assert!(
        log.contains("SWITCHYARD_API_KEYS is not set"),
        "start-up warns that /v1 is open"
    );
    assert!(
        !log.contains(key_bad) && !log.contains(key_good),
        "no provider key in the logs:\n{log}"
    );
    assert!(!log.contains(&token), "the admin token is printed, never logged");
}

/// Each proxied stream holds two descriptors: the binary raises its soft open-files limit to
/// the hard one, whatever it was started with.
#[actix_rt::test]
async fn raises_its_open_files_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path())
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\"",
            env!("CARGO_BIN_EXE_switchyard"),
        ])
        .env_remove("DATABASE_URL")
        .env("SWITCHYARD_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0");
    let mut instance = Instance::spawn(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", instance.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
    instance.signal("-TERM");
    assert_eq!(instance.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
}

/// A port that is taken ends start-up with that error alone, exit code 1: nothing else has
/// started yet to fail on the way out. For the public and for the admin listener.
#[actix_rt::test]
async fn a_taken_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (listen, admin) in [(taken.as_str(), None), ("127.0.0.1:0", Some(taken.as_str()))] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env("SWITCHYARD_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
            .env("SWITCHYARD_LISTEN", listen)
            .kill_on_drop(true);
        if let Some(a) = admin {
            cmd.env("SWITCHYARD_ADMIN_LISTEN", a);
        }
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("it exits at once")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("cannot start: cannot listen on {taken}")),
            "{err}"
        );
        assert!(!err.contains("panic"), "{err}");
    }
}
