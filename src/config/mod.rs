//! Configuration: a typed tree with documented defaults, read from an optional TOML file and
//! then from the environment (the environment wins).
//!
//! Environment variables:
//! - `SWITCHYARD_CONFIG`: the TOML file (same as `--config FILE`).
//! - `SWITCHYARD_LISTEN`: listen address, default `127.0.0.1:7070`.
//! - `DATABASE_URL`: `sqlite://PATH` (default `sqlite://data/switchyard.db`) or `postgres://…`.
//! - `SWITCHYARD_ADMIN_TOKEN`: bearer token for `/api/*`; generated and printed once when unset.
//! - `SWITCHYARD_API_KEYS`: comma-separated client keys for `/v1/*`; `/v1/*` is open when unset.
//! - `SWITCHYARD_WORKERS`: HTTP worker threads, default one per core.
//! - `SWITCHYARD_ADMIN_LISTEN`: a separate address for `/api/*` (see `admin_listen`).
//! - `SWITCHYARD_SECRET_KEY` / `SWITCHYARD_SECRET_KEY_FILE`: the key that seals provider keys
//!   at rest (64 hex characters); the key itself is never read from the config file.
//! - `RUST_LOG`: log filter, default `info`.

mod edge;
mod file;

use serde::{Deserialize, Serialize};

pub use crate::provider::spec::{FieldError, ProviderSpec};
pub use crate::supervisor::strategy::Strategy;

/// The whole configuration. `Debug` redacts the tokens and keys it holds (see `edge.rs`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Database URL (see the module doc).
    pub database_url: String,
    /// Admin bearer token; `None` generates one at start.
    pub admin_token: Option<String>,
    /// Client keys accepted on `/v1/*`; empty leaves `/v1/*` open.
    pub api_keys: Vec<String>,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest accepted request body, in bytes (10 MiB).
    pub max_body_bytes: usize,
    /// Database connections per process.
    pub db_pool_size: u32,
    /// How long shutdown waits for in-flight requests before dropping them, in seconds (30).
    /// Usage and health are written after that either way.
    pub shutdown_grace_seconds: u64,
    pub routing: RoutingConfig,
    pub health_check: HealthCheckSettings,
    pub stats: StatsConfig,
    pub fleet: FleetConfig,
    /// Providers upserted by name at start.
    pub providers: Vec<ProviderSpec>,
    /// A separate address for the admin API (`/api/*`, the dashboard, `/metrics`); when set,
    /// the public listener no longer serves them.
    pub admin_listen: Option<String>,
    /// Browser origins (`https://app.example.com`) allowed to call the router; a request with
    /// any other `Origin` (other than the router's own) is refused. Empty by default.
    pub cors_allowed_origins: Vec<String>,
    /// Host names accepted in `Host`; empty accepts loopback names only on a loopback listener
    /// and any host elsewhere.
    pub allowed_hosts: Vec<String>,
    /// A client must send its whole request body within this many ms (30000), else 408.
    pub client_body_timeout_ms: u64,
    /// Most concurrent client connections, all listeners together (25000): room for the
    /// thousands of open streams a busy router holds, and a bound on descriptors and memory.
    pub max_connections: usize,
    /// Longest a `/v1` stream may last, in ms; none by default.
    pub max_stream_duration_ms: Option<u64>,
    /// `api_key_env` names given through the admin API must start with this (`SWITCHYARD_KEY_`).
    pub api_key_env_prefix: String,
    /// The sealing key, from `SWITCHYARD_SECRET_KEY` only (never from the file).
    #[serde(skip)]
    pub secret_key: Option<String>,
    /// A file holding the sealing key (64 hex characters).
    pub secret_key_file: Option<String>,
    /// A PEM file of CA certificates trusted for upstream TLS, besides the public roots.
    pub upstream_ca_bundle: Option<String>,
}

/// `[routing]`: attempts, timeouts and cool-downs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Further attempts after the first one fails (3: at most 4 upstream calls).
    pub max_retries: u32,
    /// Default per-attempt timeout for a provider without `timeout_ms`, in ms (30000). For a
    /// plain request it covers the whole answer; for a stream, the wait for the first byte
    /// and then each gap between chunks.
    pub request_timeout_ms: u64,
    /// TCP connect timeout, in ms (5000).
    pub connect_timeout_ms: u64,
    /// One deadline for all attempts of a request, in ms; default `request_timeout_ms` × 2.
    pub request_deadline_ms: Option<u64>,
    /// Cool-down after a 429 without `Retry-After`, in ms (1000).
    pub default_cooldown_ms: u64,
    /// Longest cool-down an upstream's `Retry-After` may ask for, in ms (600000: ten
    /// minutes); longer values are cut to this.
    pub max_cooldown_ms: u64,
    /// Largest upstream answer read for a plain (non-stream) request, in bytes (32 MiB).
    pub max_response_bytes: usize,
    /// Most simultaneous connections from one worker to one provider (8192); past it a
    /// request waits for a free connection. Each provider has its own pool and limit.
    pub max_connections_per_provider: usize,
    /// How a model's requests are spread over its best tier (`weighted_round_robin`).
    pub strategy: Strategy,
    /// Per-model overrides, keyed by the public model name.
    pub models: std::collections::BTreeMap<String, ModelRouting>,
    /// Longest a request waits for a provider at its limits, in ms (5000).
    pub queue_timeout_ms: u64,
    /// Most requests waiting at once; one more is refused at once (256).
    pub max_queue: usize,
}

/// `[routing.models."name"]`: routing settings of one model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRouting {
    /// Overrides `routing.strategy` for this model.
    pub strategy: Option<Strategy>,
}

/// `[health_check]`: initial values of the stored health-check configuration, and how probes
/// are made.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSettings {
    /// Run the periodic background check.
    pub enabled: bool,
    /// Seconds between background checks (300).
    pub interval_seconds: u64,
    /// Counted failures in a row that make a provider unhealthy (5).
    pub max_error_count: u32,
    /// Seconds before an unhealthy provider is probed again (3600).
    pub retry_after_seconds: u64,
    /// Let a successful probe make an unhealthy provider healthy again.
    pub auto_recovery: bool,
    /// What a probe sends: `chat` (a 1-token chat completion on the provider's first model)
    /// or `models` (`GET {base_url}/models`).
    pub probe: ProbeKind,
    /// Timeout of one probe, in ms (10000).
    pub probe_timeout_ms: u64,
    /// Each failed retry of an unhealthy provider multiplies the wait before the next by this
    /// (2; 1 keeps `retry_after_seconds` fixed).
    pub retry_backoff_factor: f64,
    /// The longest wait between retries, in seconds (86400).
    pub max_retry_after_seconds: u64,
    /// Failure share (0 to 1] over the last `failure_rate_window` counted outcomes that makes
    /// a provider unhealthy, besides `max_error_count` in a row; unset: off.
    pub failure_rate_threshold: Option<f64>,
    /// Counted outcomes the failure rate is taken over (20).
    pub failure_rate_window: u32,
}

/// The real API call a probe makes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Chat,
    Models,
}

/// `[stats]`: usage batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Flush the usage aggregate every this many ms (1000).
    pub flush_ms: u64,
    /// Flush early when this many distinct (provider, model, day) rows are pending (1000).
    pub max_batch_rows: usize,
}

/// `[fleet]`: how instances sharing one PostgreSQL stay in step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// How often the change marker is polled, in ms (2000).
    pub sync_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7070".into(),
            database_url: "sqlite://data/switchyard.db".into(),
            admin_token: None,
            api_keys: Vec::new(),
            workers: 0,
            max_body_bytes: 10 * 1024 * 1024,
            db_pool_size: 4,
            shutdown_grace_seconds: 30,
            routing: RoutingConfig::default(),
            health_check: HealthCheckSettings::default(),
            stats: StatsConfig::default(),
            fleet: FleetConfig::default(),
            providers: Vec::new(),
            admin_listen: None,
            cors_allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            client_body_timeout_ms: 30_000,
            max_connections: 25_000,
            max_stream_duration_ms: None,
            api_key_env_prefix: "SWITCHYARD_KEY_".into(),
            secret_key: None,
            secret_key_file: None,
            upstream_ca_bundle: None,
        }
    }
}

/// Upper bounds of the range checks: a day for any timeout, a week for health timers (as
/// the admin API allows). Larger values are surely typos, and they would overflow the time
/// arithmetic downstream.
const DAY_MS: u64 = 86_400_000;
const WEEK_SECS: u64 = crate::health_checker::MAX_SECONDS as u64;

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} is out of range (allowed: {min} to {max})"),
        ))
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_retries: 3,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            request_deadline_ms: None,
            default_cooldown_ms: 1_000,
            max_cooldown_ms: 600_000,
            max_response_bytes: 32 * 1024 * 1024,
            max_connections_per_provider: 8192,
            strategy: Strategy::default(),
            models: std::collections::BTreeMap::new(),
            queue_timeout_ms: 5_000,
            max_queue: 256,
        }
    }
}

impl RoutingConfig {
    /// The strategy of `model`: its own, else the global one.
    pub fn strategy_for(&self, model: &str) -> Strategy {
        self.models
            .get(model)
            .and_then(|m| m.strategy)
            .unwrap_or(self.strategy)
    }

    /// The overall deadline of one client request, in ms.
    pub fn deadline_ms(&self) -> u64 {
        self.request_deadline_ms
            .unwrap_or(self.request_timeout_ms.saturating_mul(2))
    }
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        HealthCheckSettings {
            enabled: true,
            interval_seconds: 300,
            max_error_count: 5,
            retry_after_seconds: 3600,
            auto_recovery: true,
            probe: ProbeKind::Chat,
            probe_timeout_ms: 10_000,
            retry_backoff_factor: 2.0,
            max_retry_after_seconds: 86_400,
            failure_rate_threshold: None,
            failure_rate_window: 20,
        }
    }
}

impl HealthCheckSettings {
    /// The backoff and failure-rate settings, as the health rules use them.
    pub fn recovery(&self) -> crate::provider::recovery::Recovery {
        crate::provider::recovery::Recovery {
            retry_backoff_factor: self.retry_backoff_factor,
            max_retry_after: chrono::Duration::seconds(
                i64::try_from(self.max_retry_after_seconds).unwrap_or(i64::MAX),
            ),
            failure_rate_threshold: self.failure_rate_threshold,
            failure_rate_window: self.failure_rate_window,
        }
    }
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            flush_ms: 1_000,
            max_batch_rows: 1_000,
        }
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            sync_interval_ms: 2_000,
        }
    }
}

/// A configuration that cannot be used, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// Names the key and the line, never the line's text (it may hold a key).
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("providers[{index}].{}", .error)]
    Provider { index: usize, error: FieldError },
}

impl ConfigError {
    fn invalid(name: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_string(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads the file (if any), applies the environment through `env`, and validates.
    /// `env` is a parameter so tests never touch the process environment.
    pub fn load(file: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let path = file.map(str::to_string).or_else(|| env("SWITCHYARD_CONFIG"));
        let mut config = match path {
            Some(p) => file::read(&p)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate(env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("SWITCHYARD_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = env("DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = env("SWITCHYARD_ADMIN_TOKEN") {
            self.admin_token = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_API_KEYS") {
            self.api_keys = v
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = env("SWITCHYARD_WORKERS") {
            self.workers = v
                .parse()
                .map_err(|_| ConfigError::invalid("SWITCHYARD_WORKERS", "must be a whole number"))?;
        }
        if let Some(v) = env("SWITCHYARD_ADMIN_LISTEN") {
            self.admin_listen = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_SECRET_KEY") {
            self.secret_key = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_SECRET_KEY_FILE") {
            self.secret_key_file = Some(v);
        }
        Ok(())
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "listen",
                format!("{:?} is not a socket address", self.listen),
            ));
        }
        crate::store::Backend::from_url(&self.database_url)
            .map_err(|e| ConfigError::invalid("database_url", e.to_string()))?;
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid("admin_token", "use at least 16 characters"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be positive"));
        }
        if self.db_pool_size == 0 {
            return Err(ConfigError::invalid("db_pool_size", "must be positive"));
        }
        in_range("shutdown_grace_seconds", self.shutdown_grace_seconds, 1, 3_600)?;
        let r = &self.routing;
        in_range("routing.request_timeout_ms", r.request_timeout_ms, 1, DAY_MS)?;
        in_range("routing.connect_timeout_ms", r.connect_timeout_ms, 1, DAY_MS)?;
        in_range("routing.request_deadline_ms", r.deadline_ms(), 1, DAY_MS)?;
        in_range("routing.max_retries", u64::from(r.max_retries), 0, 100)?;
        in_range("routing.max_cooldown_ms", r.max_cooldown_ms, 1, DAY_MS)?;
        in_range(
            "routing.default_cooldown_ms",
            r.default_cooldown_ms,
            0,
            r.max_cooldown_ms,
        )?;
        in_range(
            "routing.max_response_bytes",
            r.max_response_bytes as u64,
            1,
            1 << 40,
        )?;
        in_range(
            "routing.max_connections_per_provider",
            r.max_connections_per_provider as u64,
            1,
            1_000_000,
        )?;
        in_range("routing.queue_timeout_ms", r.queue_timeout_ms, 0, DAY_MS)?;
        in_range("routing.max_queue", r.max_queue as u64, 0, 1_000_000)?;
        for name in r.models.keys() {
            if name.trim().is_empty() || name.len() > 256 {
                return Err(ConfigError::invalid(
                    "routing.models",
                    format!("{name:?} is not a model name (1 to 256 characters)"),
                ));
            }
        }
        let h = &self.health_check;
        in_range("health_check.interval_seconds", h.interval_seconds, 1, WEEK_SECS)?;
        in_range(
            "health_check.retry_after_seconds",
            h.retry_after_seconds,
            1,
            WEEK_SECS,
        )?;
        in_range(
            "health_check.max_error_count",
            u64::from(h.max_error_count),
            1,
            10_000,
        )?;
        in_range("health_check.probe_timeout_ms", h.probe_timeout_ms, 1, DAY_MS)?;
        let max_factor = crate::provider::recovery::MAX_FACTOR;
        if !(1.0..=max_factor).contains(&h.retry_backoff_factor) {
            return Err(ConfigError::invalid(
                "health_check.retry_backoff_factor",
                format!(
                    "{} is out of range (allowed: 1 to {max_factor})",
                    h.retry_backoff_factor
                ),
            ));
        }
        in_range(
            "health_check.max_retry_after_seconds",
            h.max_retry_after_seconds,
            1,
            WEEK_SECS,
        )?;
        if let Some(t) = h.failure_rate_threshold
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(ConfigError::invalid(
                "health_check.failure_rate_threshold",
                format!("{t} is out of range (allowed: above 0, up to 1)"),
            ));
        }
        in_range(
            "health_check.failure_rate_window",
            u64::from(h.failure_rate_window),
            1,
            u64::from(crate::provider::recovery::MAX_WINDOW),
        )?;
        in_range("stats.flush_ms", self.stats.flush_ms, 1, 3_600_000)?;
        in_range(
            "stats.max_batch_rows",
            self.stats.max_batch_rows as u64,
            1,
            10_000_000,
        )?;
        in_range(
            "fleet.sync_interval_ms",
            self.fleet.sync_interval_ms,
            1,
            3_600_000,
        )?;
        self.validate_edge()?;
        let mut names = std::collections::HashSet::new();
        for (index, p) in self.providers.iter().enumerate() {
            p.validate(0, r.request_timeout_ms, env)
                .map_err(|error| ConfigError::Provider { index, error })?;
            if !names.insert(p.name.trim()) {
                return Err(ConfigError::Provider {
                    index,
                    error: FieldError::new("name", "is used twice"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_with_nothing_set() {
        let c = Config::load(None, &|_| None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7070");
        assert_eq!(c.database_url, "sqlite://data/switchyard.db");
        assert_eq!(c.routing.deadline_ms(), 60_000);
    }

    #[test]
    fn absurd_values_are_refused_with_their_key() {
        let mut c = Config::default();
        c.routing.request_timeout_ms = u64::MAX;
        let e = c.validate(&|_| None).unwrap_err().to_string();
        assert!(e.contains("routing.request_timeout_ms"), "{e}");
        let mut c = Config::default();
        c.health_check.retry_after_seconds = 9_000_000_000_000;
        let e = c.validate(&|_| None).unwrap_err().to_string();
        assert!(e.contains("health_check.retry_after_seconds"), "{e}");
        let mut c = Config::default();
        c.routing.default_cooldown_ms = c.routing.max_cooldown_ms + 1;
        let e = c.validate(&|_| None).unwrap_err().to_string();
        assert!(e.contains("routing.default_cooldown_ms"), "{e}");
        for absurd in [0, usize::MAX] {
            let mut c = Config::default();
            c.routing.max_connections_per_provider = absurd;
            let e = c.validate(&|_| None).unwrap_err().to_string();
            assert!(e.contains("routing.max_connections_per_provider"), "{e}");
        }
        assert!(Config::default().validate(&|_| None).is_ok());
    }

    #[test]
    fn strategies_are_set_globally_and_per_model() {
        let c: Config = toml::from_str(
            "[routing]\nstrategy = \"least_busy\"\n[routing.models.\"gpt-4o\"]\nstrategy = \"least_used\"\n",
        )
        .unwrap();
        assert!(c.validate(&|_| None).is_ok());
        assert_eq!(c.routing.strategy_for("gpt-4o"), Strategy::LeastUsed);
        assert_eq!(c.routing.strategy_for("other"), Strategy::LeastBusy);
        assert_eq!(
            Config::default().routing.strategy_for("x"),
            Strategy::WeightedRoundRobin
        );
        let e = toml::from_str::<Config>("[routing]\nstrategy = \"fastest\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategy") && e.contains("fastest"), "{e}");
        let e = toml::from_str::<Config>("[routing.models.m]\nstrategi = \"least_used\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategi"), "{e}");
        let c: Config = toml::from_str("[routing.models.\" \"]\nstrategy = \"least_used\"\n").unwrap();
        let e = c.validate(&|_| None).unwrap_err().to_string();
        assert!(e.starts_with("routing.models"), "{e}");
    }

    #[test]
    fn recovery_settings_are_range_checked() {
        for (toml, key) in [
            ("retry_backoff_factor = 0.5", "health_check.retry_backoff_factor"),
            ("retry_backoff_factor = nan", "health_check.retry_backoff_factor"),
            (
                "max_retry_after_seconds = 0",
                "health_check.max_retry_after_seconds",
            ),
            (
                "failure_rate_threshold = 0.0",
                "health_check.failure_rate_threshold",
            ),
            (
                "failure_rate_threshold = 1.5",
                "health_check.failure_rate_threshold",
            ),
            ("failure_rate_window = 0", "health_check.failure_rate_window"),
        ] {
            let c: Config = toml::from_str(&format!("[health_check]\n{toml}\n")).unwrap();
            let e = c.validate(&|_| None).unwrap_err().to_string();
            assert!(e.starts_with(key), "{toml}: {e}");
        }
        let c: Config = toml::from_str(
            "[health_check]\nretry_backoff_factor = 3.0\nfailure_rate_threshold = 0.5\nfailure_rate_window = 50\n",
        )
        .unwrap();
        assert!(c.validate(&|_| None).is_ok());
        assert_eq!(c.health_check.recovery().failure_rate_window, 50);
    }

    #[test]
    fn environment_wins() {
        let env = |k: &str| match k {
            "SWITCHYARD_LISTEN" => Some("0.0.0.0:8080".to_string()),
            "SWITCHYARD_API_KEYS" => Some("a, b,".to_string()),
            _ => None,
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert_eq!(c.api_keys, vec!["a", "b"]);
    }

    #[test]
    fn the_example_file_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/switchyard.example.toml");
        let env = |k: &str| (k == "SECONDARY_KEY").then(|| "sk-from-env".to_string());
        let c = Config::load(Some(path), &env).unwrap();
        assert!(!c.providers.is_empty());
    }

    #[test]
    fn bad_settings_are_named() {
        let c = Config {
            listen: "nope".into(),
            ..Config::default()
        };
        assert!(
            c.validate(&|_| None)
                .unwrap_err()
                .to_string()
                .starts_with("listen")
        );
        let c = Config {
            database_url: "mysql://x".into(),
            ..Config::default()
        };
        assert!(
            c.validate(&|_| None)
                .unwrap_err()
                .to_string()
                .starts_with("database_url")
        );
    }
}
