//! Secrets (provider keys, tokens) that must never reach a log line or a response in full.

use std::fmt;

/// A secret string. `Debug` and `Display` print the masked form; the raw value is only
/// reachable through [`Secret::expose`], which is called where the key goes on the wire.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the Authorization header and the database only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sk-…abcd`: the first three and last four characters of keys long enough to keep
    /// most of it hidden, `…` for short ones, empty for none.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        match chars.len() {
            0 => String::new(),
            n if n >= 12 => {
                let head: String = chars[..3].iter().collect();
                let tail: String = chars[n - 4..].iter().collect();
                format!("{head}…{tail}")
            }
            _ => "…".to_string(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// How a stored or written key shows in `Debug`: sealed values are safe to name as such,
/// anything else is masked like a [`Secret`].
fn key_debug(value: &str) -> String {
    if crate::sealing::is_sealed(value) {
        "<sealed>".to_string()
    } else {
        format!("{:?}", Secret::new(value))
    }
}

// The types below hold a provider key in a plain `String` (they mirror the config file and
// the table); their `Debug` is written by hand so the key never shows. Fields added later
// are left out (`..`), never printed by accident.

impl fmt::Debug for crate::provider::spec::ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_deref().map(key_debug))
            .field("api_key_env", &self.api_key_env)
            .field("models", &self.models)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("timeout_ms", &self.timeout_ms)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// The fields of a `providers` row that are safe to show, the key redacted.
fn row_debug(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    name: &str,
    base_url: &str,
    api_key: &str,
    api_key_env: &Option<String>,
) -> fmt::Result {
    f.debug_struct(type_name)
        .field("name", &name)
        .field("base_url", &base_url)
        .field("api_key", &key_debug(api_key))
        .field("api_key_env", api_key_env)
        .finish_non_exhaustive()
}

impl fmt::Debug for crate::store::ProviderRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        row_debug(f, "ProviderRow", &r.name, &r.base_url, &r.api_key, &r.api_key_env)
    }
}

impl fmt::Debug for crate::store::NewProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        row_debug(f, "NewProvider", &r.name, &r.base_url, &r.api_key, &r.api_key_env)
    }
}

impl fmt::Debug for crate::store::Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            crate::store::Backend::Postgres(url) => {
                write!(f, "Postgres({:?})", crate::store::pool::redact_url(url))
            }
            crate::store::Backend::Sqlite(path) => write!(f, "Sqlite({path:?})"),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths, so a token check
/// does not reveal how many leading bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// A random token of `bytes` random bytes, hex encoded (for the generated admin token).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source failing is not something the process can work around.
    if getrandom::fill(&mut buf).is_err() {
        panic!("the operating system's random number source is unavailable");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked() {
        assert_eq!(Secret::new("sk-1234567890abcd").masked(), "sk-…abcd");
        assert_eq!(Secret::new("short").masked(), "…");
        assert_eq!(Secret::new("").masked(), "");
        assert!(!format!("{:?}", Secret::new("sk-1234567890abcd")).contains("567890"));
    }

    #[test]
    fn no_key_in_any_debug_output() {
        const KEY: &str = "sk-provider-0123456789-secret";
        let spec: crate::provider::spec::ProviderSpec = serde_json::from_value(serde_json::json!({
            "name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key": KEY, "models": ["m"]
        }))
        .unwrap();
        let config = spec.validate(1, 1000, &|_| None).unwrap();
        let row = crate::provider::to_new_row(&config, &crate::sealing::ProviderKeys::default()).unwrap();
        let stored = crate::store::ProviderRow {
            id: 1,
            name: row.name.clone(),
            base_url: row.base_url.clone(),
            api_key: row.api_key.clone(),
            api_key_env: None,
            models: row.models.clone(),
            weight: 1,
            priority: 0,
            timeout_ms: 1000,
            enabled: true,
            created_at: row.updated_at,
            updated_at: row.updated_at,
            probe_model: None,
            http2: false,
            kind: "openai".into(),
            endpoints: None,
            max_concurrency: None,
            rpm: None,
            tpm: None,
        };
        let backend = crate::store::Backend::from_url("postgres://u:0123456789@h/db").unwrap();
        let shown = format!(
            "{spec:?} {config:?} {row:?} {stored:?} {:?} {backend:?}",
            config.wire
        );
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("sk-…"), "masked, not dropped: {shown}");
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_eq!(random_token(16).len(), 32);
    }
}
