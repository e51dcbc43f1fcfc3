//! A provider's configuration: `ProviderSpec` as written by an operator (TOML file or admin
//! API), validated into a `ProviderConfig` that the router uses.

use serde::{Deserialize, Serialize};

use crate::sealing::{ProviderKeys, SealError};
use crate::secret::Secret;
use crate::store::{NewProvider, ProviderRow};

/// One model a provider serves: the public name clients ask for and, when it differs, the
/// name the upstream expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelEntry {
    Name(String),
    Mapped { name: String, upstream: String },
}

impl ModelEntry {
    pub fn name(&self) -> &str {
        match self {
            ModelEntry::Name(n) | ModelEntry::Mapped { name: n, .. } => n,
        }
    }

    /// The upstream's name, when it differs from the public one.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            ModelEntry::Name(_) => None,
            ModelEntry::Mapped { name, upstream } if name != upstream => Some(upstream),
            ModelEntry::Mapped { .. } => None,
        }
    }
}

/// A provider as an operator writes it. Numbers are wide signed integers so that a negative
/// or out-of-range value reaches `validate`, which names the field, instead of failing in
/// serde with a message that does not. `Debug` redacts the key (`crate::secret`).
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    /// Base URL up to and including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable that holds the key (read at start and on change).
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub models: Vec<ModelEntry>,
    #[serde(default = "default_weight")]
    pub weight: i64,
    #[serde(default)]
    pub priority: i64,
    /// Per-attempt timeout; `None` uses `routing.request_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The model the chat probe asks for; `None` uses the first model's upstream name.
    #[serde(default)]
    pub probe_model: Option<String>,
    /// Offer HTTP/2 to this upstream (TLS ALPN); HTTP/1.1 otherwise. See `upstream::tls`.
    #[serde(default)]
    pub http2: bool,
}

fn default_weight() -> i64 {
    1
}

fn default_true() -> bool {
    true
}

/// A validated provider, ready to route to.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub id: i64,
    pub name: String,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Secret,
    pub api_key_env: Option<String>,
    pub models: Vec<ModelEntry>,
    pub weight: u32,
    pub priority: i32,
    pub timeout_ms: u64,
    pub enabled: bool,
    pub probe_model: Option<String>,
    /// HTTP/2 offered to the upstream (opt-in).
    pub http2: bool,
    /// What goes on the wire, prepared once instead of per request.
    pub wire: Wire,
}

/// A provider's request targets and credentials, parsed and formatted once.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    /// `{base_url}/chat/completions`.
    pub chat_url: awc::http::Uri,
    /// `{base_url}/models`.
    pub models_url: awc::http::Uri,
    /// `Bearer {api_key}`, marked sensitive so it is never printed; `None` without a key.
    pub authorization: Option<awc::http::header::HeaderValue>,
    /// The provider's name as the `x-switchyard-provider` response header.
    pub name_header: awc::http::header::HeaderValue,
}

impl Wire {
    fn new(name: &str, base_url: &str, key: &Secret) -> Result<Wire, FieldError> {
        let uri = |path: &str| {
            format!("{base_url}{path}")
                .parse::<awc::http::Uri>()
                .map_err(|_| FieldError::new("base_url", "is not a valid URL"))
        };
        let authorization = if key.is_empty() {
            None
        } else {
            let mut v = awc::http::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| FieldError::new("api_key", "must be printable ASCII"))?;
            v.set_sensitive(true);
            Some(v)
        };
        Ok(Wire {
            chat_url: uri("/chat/completions")?,
            models_url: uri("/models")?,
            authorization,
            name_header: awc::http::header::HeaderValue::from_str(name)
                .map_err(|_| FieldError::new("name", "must be printable ASCII"))?,
        })
    }
}

/// A configuration value that was refused, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Largest accepted weight; bigger shares make no practical difference.
pub const MAX_WEIGHT: i64 = 10_000;
/// Longest accepted per-attempt timeout (10 minutes).
pub const MAX_TIMEOUT_MS: i64 = 600_000;

impl ProviderSpec {
    /// Checks every field and resolves the key. `env` looks up `api_key_env`;
    /// `default_timeout_ms` fills a missing `timeout_ms`.
    pub fn validate(
        &self,
        id: i64,
        default_timeout_ms: u64,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProviderConfig, FieldError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        if name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(FieldError::new(
                "name",
                "use up to 100 letters, digits, '-', '_' or '.'",
            ));
        }
        let base_url = validate_base_url(&self.base_url)?;
        if self.models.is_empty() {
            return Err(FieldError::new("models", "list at least one model"));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if m.name().trim().is_empty() || m.upstream().is_some_and(|u| u.trim().is_empty()) {
                return Err(FieldError::new("models", "model names must not be empty"));
            }
            if !seen.insert(m.name()) {
                return Err(FieldError::new("models", format!("{} is listed twice", m.name())));
            }
        }
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return Err(FieldError::new(
                "weight",
                format!("must be between 1 and {MAX_WEIGHT}"),
            ));
        }
        let priority = i32::try_from(self.priority)
            .ok()
            .filter(|p| (-1000..=1000).contains(p))
            .ok_or_else(|| FieldError::new("priority", "must be between -1000 and 1000"))?;
        let timeout_ms = match self.timeout_ms {
            None => default_timeout_ms,
            Some(t) if (1..=MAX_TIMEOUT_MS).contains(&t) => t as u64,
            Some(_) => {
                return Err(FieldError::new(
                    "timeout_ms",
                    format!("must be between 1 and {MAX_TIMEOUT_MS}"),
                ));
            }
        };
        let api_key = match (&self.api_key, &self.api_key_env) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "api_key_env",
                    "give api_key or api_key_env, not both",
                ));
            }
            (Some(k), None) => Secret::new(k.clone()),
            (None, Some(var)) => match env(var) {
                Some(k) => Secret::new(k),
                None => {
                    return Err(FieldError::new(
                        "api_key_env",
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
            (None, None) => Secret::default(),
        };
        let probe_model = match self.probe_model.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m) if m.len() > 256 || m.chars().any(char::is_control) => {
                return Err(FieldError::new(
                    "probe_model",
                    "must be a model name of at most 256 characters",
                ));
            }
            Some(m) => Some(m.to_string()),
        };
        let wire = Wire::new(name, &base_url, &api_key)?;
        Ok(ProviderConfig {
            id,
            name: name.to_string(),
            wire,
            base_url,
            api_key,
            api_key_env: self.api_key_env.clone(),
            models: self.models.clone(),
            weight: self.weight as u32,
            priority,
            timeout_ms,
            enabled: self.enabled,
            probe_model,
            http2: self.http2,
        })
    }
}

/// Accepts `http://` and `https://` URLs with a host and no query or fragment, and returns
/// them without a trailing slash.
fn validate_base_url(raw: &str) -> Result<String, FieldError> {
    let url = raw.trim().trim_end_matches('/');
    let bad = |why: &str| FieldError::new("base_url", format!("{why} (got {raw:?})"));
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') || host.contains(' ') {
        return Err(bad("must name a host"));
    }
    if url.contains('?') || url.contains('#') || url.contains(char::is_whitespace) {
        return Err(bad("must not contain a query, fragment or spaces"));
    }
    if url.parse::<awc::http::Uri>().is_err() {
        return Err(bad("is not a valid URL"));
    }
    Ok(url.to_string())
}

impl ProviderConfig {
    /// The model entry for a public model name, if this provider serves it.
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name() == name)
    }

    /// Back to the form an operator writes; the key is masked unless `reveal` (for storage).
    pub fn to_spec(&self) -> ProviderSpec {
        ProviderSpec {
            name: self.name.clone(),
            base_url: self.base_url.clone(),
            api_key: if self.api_key_env.is_some() {
                None
            } else {
                Some(self.api_key.expose().to_string())
            },
            api_key_env: self.api_key_env.clone(),
            models: self.models.clone(),
            weight: i64::from(self.weight),
            priority: i64::from(self.priority),
            timeout_ms: Some(self.timeout_ms as i64),
            enabled: self.enabled,
            probe_model: self.probe_model.clone(),
            http2: self.http2,
        }
    }
}

/// The router's configuration from a stored row. The key is opened when sealed, or comes from
/// `api_key_env` when set (only a name `keys` allows).
pub fn from_row(
    row: &ProviderRow,
    keys: &ProviderKeys,
    default_timeout_ms: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderConfig, String> {
    let models: Vec<ModelEntry> =
        serde_json::from_str(&row.models).map_err(|e| format!("stored models are not valid: {e}"))?;
    if let Some(var) = &row.api_key_env
        && !keys.env_allowed(var)
    {
        return Err(format!("api_key_env: {}", keys.env_refusal(var)));
    }
    let api_key = match &row.api_key_env {
        None => Some(
            keys.open(&row.name, &row.api_key)
                .map_err(|e| format!("api_key: {e}"))?
                .expose()
                .to_string(),
        ),
        Some(_) => None,
    };
    let spec = ProviderSpec {
        name: row.name.clone(),
        base_url: row.base_url.clone(),
        api_key,
        api_key_env: row.api_key_env.clone(),
        models,
        weight: i64::from(row.weight),
        priority: i64::from(row.priority),
        timeout_ms: Some(row.timeout_ms),
        enabled: row.enabled,
        probe_model: row.probe_model.clone(),
        http2: row.http2,
    };
    spec.validate(row.id, default_timeout_ms, env)
        .map_err(|e| e.to_string())
}

/// The row to store for a configuration: the key sealed when `keys` has a sealing key. A key
/// read from `api_key_env` is not stored.
pub fn to_new_row(c: &ProviderConfig, keys: &ProviderKeys) -> Result<NewProvider, SealError> {
    Ok(NewProvider {
        name: c.name.clone(),
        base_url: c.base_url.clone(),
        api_key: if c.api_key_env.is_some() {
            String::new()
        } else {
            keys.store(&c.name, c.api_key.expose())?
        },
        api_key_env: c.api_key_env.clone(),
        models: serde_json::to_string(&c.models).unwrap_or_else(|_| "[]".into()),
        weight: c.weight as i32,
        priority: c.priority,
        timeout_ms: c.timeout_ms as i64,
        enabled: c.enabled,
        updated_at: crate::store::now_naive(),
        probe_model: c.probe_model.clone(),
        http2: c.http2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProviderSpec {
        serde_json::from_value(serde_json::json!({
            "name": "p1", "base_url": "http://127.0.0.1:9/v1/", "api_key": "sk-abc",
            "models": ["a", {"name": "b", "upstream": "b-2024"}]
        }))
        .unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_good_spec_validates() {
        let c = spec().validate(1, 30_000, &no_env).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(c.weight, 1);
        assert_eq!(c.timeout_ms, 30_000);
        assert_eq!(c.model("b").unwrap().upstream(), Some("b-2024"));
        assert_eq!(c.model("a").unwrap().upstream(), None);
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |f: fn(&mut ProviderSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate(1, 1000, &no_env).unwrap_err().field
        };
        assert_eq!(field(|s| s.base_url = "ftp://x".into()), "base_url");
        assert_eq!(field(|s| s.base_url = "http://".into()), "base_url");
        assert_eq!(field(|s| s.models.clear()), "models");
        assert_eq!(field(|s| s.weight = -1), "weight");
        assert_eq!(field(|s| s.timeout_ms = Some(-5)), "timeout_ms");
        assert_eq!(field(|s| s.name = " ".into()), "name");
        assert_eq!(
            field(|s| s.api_key_env = Some("NOPE_NOT_SET".into())),
            "api_key_env"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<ProviderSpec, _> = serde_json::from_value(serde_json::json!({
            "name": "p", "base_url": "http://h/v1", "models": ["a"], "wieght": 2
        }));
        assert!(r.unwrap_err().to_string().contains("wieght"));
    }
}
