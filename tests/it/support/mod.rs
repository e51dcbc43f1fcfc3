//! Test support: real databases, the router started in-process on 127.0.0.1:0, mock
//! upstreams, an HTTP client, and bounded waits.

pub mod browser;
pub mod db;
pub mod process;
pub mod proxy;

use std::time::Duration;

use awc::Client;
use bytes::Bytes;
use mock_upstream::{Behavior, MockUpstream};
use switchyard::config::ProviderSpec;
use switchyard::{Config, Running, StartOptions};

pub use db::TestDb;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Runs one async test body against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[actix_rt::test]
            async fn sqlite() {
                super::$body($crate::support::TestDb::sqlite()).await
            }
            #[actix_rt::test]
            async fn postgres() {
                super::$body($crate::support::TestDb::postgres()).await
            }
        }
    };
}

/// A configuration with fast timings for tests.
pub fn config(db: &TestDb, providers: Vec<ProviderSpec>) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        database_url: db.url().to_string(),
        admin_token: Some(ADMIN_TOKEN.into()),
        workers: 2,
        providers,
        ..Config::default()
    };
    c.routing.request_timeout_ms = 3_000;
    c.routing.connect_timeout_ms = 1_000;
    c.stats.flush_ms = 100;
    c.fleet.sync_interval_ms = 200;
    c.health_check.interval_seconds = 3_600;
    c.health_check.retry_after_seconds = 3_600;
    c.health_check.max_error_count = 3;
    c
}

/// A provider spec pointing at a mock.
pub fn provider(name: &str, base_url: &str, models: &[&str]) -> ProviderSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "base_url": base_url,
        "api_key": format!("sk-{name}-secret-key-0000"),
        "models": models,
    }))
    .expect("provider spec")
}

/// Starts a mock upstream.
pub async fn mock(name: &str, behavior: Behavior) -> MockUpstream {
    MockUpstream::start(name, behavior)
        .await
        .expect("mock upstream starts")
}

/// A base URL where nothing listens (connection refused).
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// A router running in this test.
pub struct TestApp {
    pub running: Option<Running>,
    pub url: String,
    pub client: Client,
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestApp {
    pub async fn start(config: Config) -> TestApp {
        let running = switchyard::start(
            config,
            StartOptions {
                handle_signals: false,
            },
        )
        .await
        .expect("router starts");
        let url = running.url();
        let client = Client::builder().timeout(Duration::from_secs(30)).finish();
        TestApp {
            running: Some(running),
            url,
            client,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Sends a request and reads the whole answer (bounded by the client timeout).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Some(b) => {
                req.insert_header(("content-type", "application/json"))
                    .send_body(b)
                    .await
            }
            None => req.send().await,
        };
        let mut resp = sent.unwrap_or_else(|e| panic!("request to the router failed: {e}"));
        let body = resp.body().limit(64 * 1024 * 1024).await.expect("body");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        }
    }

    /// A chat completion for `model`.
    pub async fn chat(&self, model: &str) -> Reply {
        self.chat_with(model, false, &[]).await
    }

    pub async fn chat_with(&self, model: &str, stream: bool, headers: &[(&str, &str)]) -> Reply {
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "stream": stream,
        });
        self.send(
            "POST",
            "/v1/chat/completions",
            headers,
            Some(Bytes::from(body.to_string())),
        )
        .await
    }

    /// An admin API call with the admin token.
    pub async fn admin(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.send(
            method,
            path,
            &[("authorization", &auth)],
            body.map(|b| Bytes::from(b.to_string())),
        )
        .await
    }

    /// Writes pending usage now.
    pub async fn flush(&self) {
        self.running()
            .actors
            .stats
            .send(switchyard::stats::Flush)
            .await
            .expect("stats actor")
            .expect("flush");
    }

    /// Stops gracefully (in-flight requests finish, usage is flushed).
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(60), r.stop())
                .await
                .expect("router stops in time");
        }
    }
}

/// Waits until `check` is true, polling every 20 ms, for at most `limit`. Returns whether it
/// became true, so callers assert with their own message.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pool of `size` connections to a test database.
pub fn pool(url: &str, size: u32) -> switchyard::store::DbPool {
    switchyard::store::DbPool::connect(&switchyard::store::Backend::from_url(url).expect("url"), size)
        .expect("connect")
}

/// The sum of `total_requests` over the rows of a `GET /api/stats/usage` answer.
pub fn total_requests(usage: &serde_json::Value) -> i64 {
    usage["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["total_requests"].as_i64().expect("total_requests"))
        .sum()
}

/// Usage rows straight from the database.
pub fn usage_rows(url: &str) -> Vec<switchyard::store::UsageRow> {
    let pool = pool(url, 1);
    pool.usage(&Default::default()).expect("usage rows")
}

/// Persisted provider health straight from the database, by provider name.
pub fn validation(url: &str, name: &str) -> Option<switchyard::store::ValidationRow> {
    let pool = pool(url, 1);
    pool.list_providers()
        .expect("providers")
        .into_iter()
        .find(|(p, _)| p.name == name)
        .and_then(|(_, v)| v)
}

/// A provider's stored row and standing straight from the database, by name.
pub fn stored(url: &str, name: &str) -> Option<switchyard::store::StoredProvider> {
    let pool = pool(url, 1);
    pool.fleet_snapshot()
        .expect("snapshot")
        .providers
        .into_iter()
        .find(|p| p.row.name == name)
}

impl TestApp {
    /// Every provider's full state, asked of the provider actors.
    pub async fn provider_states(&self) -> Vec<switchyard::provider::ProviderState> {
        let list = self
            .running()
            .actors
            .supervisor
            .send(switchyard::supervisor::ListProviders)
            .await
            .expect("supervisor");
        let mut out = Vec::new();
        for p in list {
            out.push(
                p.actor
                    .send(switchyard::provider::GetState)
                    .await
                    .expect("provider actor"),
            );
        }
        out
    }

    /// One provider's state by name.
    pub async fn state_of(&self, name: &str) -> switchyard::provider::ProviderState {
        self.provider_states()
            .await
            .into_iter()
            .find(|s| s.config.name == name)
            .expect("provider exists")
    }
}

/// Two mock upstreams serving model `m`, and a test config routing to both, in that order
/// (so round-robin tries the first one first).
pub async fn pair(
    db: &TestDb,
    first: (&str, Behavior),
    second: (&str, Behavior),
) -> (Config, MockUpstream, MockUpstream) {
    let (a, b) = (mock(first.0, first.1).await, mock(second.0, second.1).await);
    let c = config(
        db,
        vec![
            provider(a.name(), &a.base_url(), &["m"]),
            provider(b.name(), &b.base_url(), &["m"]),
        ],
    );
    (c, a, b)
}
