//! The security settings of the configuration: the edge (origins, hosts, the admin listener,
//! slow clients, connection and stream caps), where provider keys may come from, and the
//! sealing key. Checked like every other setting, naming the key; and a `Debug` for `Config`
//! that never prints a token or key.

use std::fmt;

use super::{Config, ConfigError, DAY_MS, in_range};

impl Config {
    /// Checks the security settings; the error names the first bad one.
    pub(super) fn validate_edge(&self) -> Result<(), ConfigError> {
        if let Some(admin) = &self.admin_listen {
            let parsed = admin.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::invalid("admin_listen", format!("{admin:?} is not a socket address"))
            })?;
            if self.listen.parse::<std::net::SocketAddr>().ok() == Some(parsed) && parsed.port() != 0 {
                return Err(ConfigError::invalid(
                    "admin_listen",
                    "must differ from listen (the point is a separate address)",
                ));
            }
        }
        for origin in &self.cors_allowed_origins {
            if !valid_origin(origin) {
                return Err(ConfigError::invalid(
                    "cors_allowed_origins",
                    format!(
                        "{origin:?} is not an origin: write scheme://host[:port] with no path \
                         (\"*\" and \"null\" are not accepted)"
                    ),
                ));
            }
        }
        for host in &self.allowed_hosts {
            let ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
            if !ok {
                return Err(ConfigError::invalid(
                    "allowed_hosts",
                    format!("{host:?} is not a host name"),
                ));
            }
        }
        in_range("client_body_timeout_ms", self.client_body_timeout_ms, 100, DAY_MS)?;
        in_range("max_connections", self.max_connections as u64, 1, 1_000_000)?;
        if let Some(ms) = self.max_stream_duration_ms {
            in_range("max_stream_duration_ms", ms, 1, DAY_MS)?;
        }
        if self.api_key_env_prefix.len() > 100
            || !self
                .api_key_env_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid(
                "api_key_env_prefix",
                "use letters, digits and '_' only (empty: no variable through the admin API)",
            ));
        }
        if let Some(hex) = &self.secret_key {
            crate::sealing::SealingKey::from_hex(hex)
                .map_err(|e| ConfigError::invalid("SWITCHYARD_SECRET_KEY", e.to_string()))?;
        }
        if self.secret_key.is_some() && self.secret_key_file.is_some() {
            return Err(ConfigError::invalid(
                "secret_key_file",
                "set SWITCHYARD_SECRET_KEY or a key file, not both",
            ));
        }
        Ok(())
    }
}

/// `scheme://host[:port]`, lower-case or not, nothing after the authority.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !authority.is_empty()
        && authority.len() <= 260
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
}

/// A redacted stand-in for a secret in `Debug` output.
struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<redacted>" } else { "None" })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &crate::store::pool::redact_url(&self.database_url),
            )
            .field("admin_token", &Redacted(self.admin_token.is_some()))
            .field("api_keys", &format_args!("<{} redacted>", self.api_keys.len()))
            .field("workers", &self.workers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("db_pool_size", &self.db_pool_size)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .field("routing", &self.routing)
            .field("health_check", &self.health_check)
            .field("stats", &self.stats)
            .field("fleet", &self.fleet)
            .field("providers", &self.providers)
            .field("admin_listen", &self.admin_listen)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("client_body_timeout_ms", &self.client_body_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("max_stream_duration_ms", &self.max_stream_duration_ms)
            .field("api_key_env_prefix", &self.api_key_env_prefix)
            .field("secret_key", &Redacted(self.secret_key.is_some()))
            .field("secret_key_file", &self.secret_key_file)
            .field("upstream_ca_bundle", &self.upstream_ca_bundle)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_settings_are_range_checked_by_name() {
        let named = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate(&|_| None).unwrap_err().to_string()
        };
        assert!(named(|c| c.client_body_timeout_ms = u64::MAX).starts_with("client_body_timeout_ms"));
        assert!(named(|c| c.max_connections = 0).starts_with("max_connections"));
        assert!(named(|c| c.max_stream_duration_ms = Some(0)).starts_with("max_stream_duration_ms"));
        assert!(named(|c| c.admin_listen = Some("nope".into())).starts_with("admin_listen"));
        assert!(named(|c| c.admin_listen = Some("127.0.0.1:7070".into())).starts_with("admin_listen"));
        assert!(named(|c| c.cors_allowed_origins = vec!["*".into()]).starts_with("cors_allowed_origins"));
        assert!(
            named(|c| c.cors_allowed_origins = vec!["https://a.example/path".into()])
                .starts_with("cors_allowed_origins")
        );
        assert!(named(|c| c.allowed_hosts = vec!["a b".into()]).starts_with("allowed_hosts"));
        assert!(named(|c| c.api_key_env_prefix = "A-B".into()).starts_with("api_key_env_prefix"));
        let e = named(|c| c.secret_key = Some("sk-not-hex-super-secret".into()));
        assert!(e.starts_with("SWITCHYARD_SECRET_KEY"), "{e}");
        assert!(!e.contains("super-secret"), "{e}");
        let c = Config {
            cors_allowed_origins: vec!["https://app.example.com".into(), "http://localhost:3000".into()],
            allowed_hosts: vec!["router.internal".into()],
            admin_listen: Some("127.0.0.1:7071".into()),
            ..Config::default()
        };
        assert!(c.validate(&|_| None).is_ok());
    }

    #[test]
    fn debug_redacts_every_secret() {
        let mut c = Config {
            admin_token: Some("admin-token-0123456789-secret".into()),
            api_keys: vec!["client-key-secret-1".into()],
            database_url: "postgres://u:dbpass-secret@h/db".into(),
            secret_key: Some("ab".repeat(32)),
            ..Config::default()
        };
        c.providers = vec![
            serde_json::from_value(serde_json::json!({
                "name": "p", "base_url": "http://h/v1", "api_key": "sk-provider-secret-1", "models": ["m"]
            }))
            .unwrap(),
        ];
        let shown = format!("{c:?}");
        for secret in [
            "admin-token",
            "client-key-secret",
            "dbpass-secret",
            "abababab",
            "provider-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("listen"));
    }
}
