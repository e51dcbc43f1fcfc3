//! A provider's configuration: `ProviderSpec` as written by an operator (TOML file or admin
//! API), validated into a `ProviderConfig` that the router uses.

use serde::{Deserialize, Serialize};

pub use super::kind::{Endpoint, ProviderKind, Service};
use super::limits::{Limits, MAX_CONCURRENCY, MAX_RPM, MAX_TPM};
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
    /// The API the provider speaks: `openai` (the default) or `anthropic`.
    #[serde(default)]
    pub kind: ProviderKind,
    /// The endpoints the provider serves, when fewer than every endpoint of its kind (an
    /// OpenAI-compatible server without `/responses`, an embeddings-only one).
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
    /// Most requests in flight at once on this instance; `None` is unlimited.
    #[serde(default)]
    pub max_concurrency: Option<i64>,
    /// Most requests started per minute on this instance; `None` is unlimited.
    #[serde(default)]
    pub rpm: Option<i64>,
    /// Most tokens per minute on this instance; `None` is unlimited.
    #[serde(default)]
    pub tpm: Option<i64>,
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
    pub kind: ProviderKind,
    /// As the operator wrote it; `None` means every endpoint of the kind.
    pub endpoints: Option<Vec<Endpoint>>,
    /// Per-instance limits (see `limits`).
    pub limits: Limits,
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
    /// `{base_url}/messages`, `/embeddings`, `/responses`, `/completions`,
    /// `/messages/count_tokens`: the other endpoints' targets, in `Endpoint::ALL` order after
    /// chat (see [`Wire::url`]).
    other_urls: [awc::http::Uri; 5],
    /// `Bearer {api_key}` for an OpenAI-kind provider, marked sensitive so it is never
    /// printed; `None` without a key or for another kind.
    pub authorization: Option<awc::http::header::HeaderValue>,
    /// The credential header of the provider's kind (`authorization: Bearer …` or
    /// `x-api-key: …`), sensitive; `None` without a key.
    pub credential: Option<(awc::http::header::HeaderName, awc::http::header::HeaderValue)>,
    /// The provider's name as the `x-switchyard-provider` response header.
    pub name_header: awc::http::header::HeaderValue,
    /// The `Host` header for its URLs (`host[:port]`, the port left out when it is the
    /// scheme's usual one, as awc writes it). Sent ready-made: awc otherwise formats it into
    /// a fresh buffer on every request.
    pub host: Option<awc::http::header::HeaderValue>,
    pub kind: ProviderKind,
}

impl Wire {
    fn new(name: &str, base_url: &str, key: &Secret, kind: ProviderKind) -> Result<Wire, FieldError> {
        let uri = |path: &str| {
            format!("{base_url}{path}")
                .parse::<awc::http::Uri>()
                .map_err(|_| FieldError::new("base_url", "is not a valid URL"))
        };
        let credential = if key.is_empty() {
            None
        } else {
            let (header, text) = match kind {
                ProviderKind::OpenAi => (
                    awc::http::header::AUTHORIZATION,
                    format!("Bearer {}", key.expose()),
                ),
                ProviderKind::Anthropic => (
                    awc::http::header::HeaderName::from_static("x-api-key"),
                    key.expose().to_string(),
                ),
            };
            let mut v = awc::http::header::HeaderValue::from_str(&text)
                .map_err(|_| FieldError::new("api_key", "must be printable ASCII"))?;
            v.set_sensitive(true);
            Some((header, v))
        };
        let chat_url = uri(Endpoint::Chat.path())?;
        Ok(Wire {
            host: host_header(&chat_url),
            chat_url,
            models_url: uri("/models")?,
            other_urls: [
                uri(Endpoint::Messages.path())?,
                uri(Endpoint::Embeddings.path())?,
                uri(Endpoint::Responses.path())?,
                uri(Endpoint::Completions.path())?,
                uri(Endpoint::CountTokens.path())?,
            ],
            authorization: match (&credential, kind) {
                (Some((_, v)), ProviderKind::OpenAi) => Some(v.clone()),
                _ => None,
            },
            credential,
            name_header: awc::http::header::HeaderValue::from_str(name)
                .map_err(|_| FieldError::new("name", "must be printable ASCII"))?,
            kind,
        })
    }

    /// The upstream URL of an endpoint.
    pub fn url(&self, endpoint: Endpoint) -> &awc::http::Uri {
        match endpoint {
            Endpoint::Chat => &self.chat_url,
            Endpoint::Messages => &self.other_urls[0],
            Endpoint::Embeddings => &self.other_urls[1],
            Endpoint::Responses => &self.other_urls[2],
            Endpoint::Completions => &self.other_urls[3],
            Endpoint::CountTokens => &self.other_urls[4],
        }
    }
}

/// The `Host` header awc would write for `uri`.
fn host_header(uri: &awc::http::Uri) -> Option<awc::http::header::HeaderValue> {
    let host = uri.host()?;
    let text = match uri.port_u16() {
        None | Some(80) | Some(443) => host.to_string(),
        Some(port) => format!("{host}:{port}"),
    };
    awc::http::header::HeaderValue::from_str(&text).ok()
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
        let endpoints = match &self.endpoints {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(FieldError::new(
                    "endpoints",
                    "list at least one endpoint, or leave it out",
                ));
            }
            Some(list) => {
                let native = self.kind.native_endpoints();
                if let Some(e) = list.iter().find(|e| !native.contains(e)) {
                    return Err(FieldError::new(
                        "endpoints",
                        format!(
                            "a provider of kind {} has no {} endpoint",
                            self.kind.as_str(),
                            e.as_str()
                        ),
                    ));
                }
                let mut list = list.clone();
                list.sort();
                list.dedup();
                Some(list)
            }
        };
        let wire = Wire::new(name, &base_url, &api_key, self.kind)?;
        let limit = |field: &str, v: Option<i64>, max: i64| match v {
            None => Ok(None),
            Some(v) if (1..=max).contains(&v) => Ok(Some(v)),
            Some(_) => Err(FieldError::new(
                field,
                format!("must be between 1 and {max}, or null for no limit"),
            )),
        };
        let limits = Limits {
            max_concurrency: limit("max_concurrency", self.max_concurrency, MAX_CONCURRENCY)?
                .and_then(|v| u32::try_from(v).ok()),
            rpm: limit("rpm", self.rpm, MAX_RPM)?.and_then(|v| u32::try_from(v).ok()),
            tpm: limit("tpm", self.tpm, MAX_TPM)?.and_then(|v| u64::try_from(v).ok()),
        };
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
            kind: self.kind,
            endpoints,
            limits,
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

    /// The endpoints the upstream offers: the operator's list, else every one of its kind.
    pub fn offered_endpoints(&self) -> &[Endpoint] {
        self.endpoints
            .as_deref()
            .unwrap_or_else(|| self.kind.native_endpoints())
    }

    /// How this provider serves a client endpoint, if at all (natively or translated).
    pub fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        ProviderKind::serves(self.offered_endpoints(), endpoint)
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
            kind: self.kind,
            endpoints: self.endpoints.clone(),
            max_concurrency: self.limits.max_concurrency.map(i64::from),
            rpm: self.limits.rpm.map(i64::from),
            tpm: self.limits.tpm.and_then(|v| i64::try_from(v).ok()),
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
        kind: serde_json::from_value(row.kind.clone().into())
            .map_err(|_| format!("stored kind {:?} is not known", row.kind))?,
        endpoints: row
            .endpoints
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| format!("stored endpoints are not valid: {e}"))?,
        max_concurrency: row.max_concurrency.map(i64::from),
        rpm: row.rpm.map(i64::from),
        tpm: row.tpm,
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
        kind: c.kind.as_str().to_string(),
        endpoints: c
            .endpoints
            .as_ref()
            .map(|e| serde_json::to_string(e).unwrap_or_else(|_| "[]".into())),
        max_concurrency: c.limits.max_concurrency.and_then(|v| i32::try_from(v).ok()),
        rpm: c.limits.rpm.and_then(|v| i32::try_from(v).ok()),
        tpm: c.limits.tpm.and_then(|v| i64::try_from(v).ok()),
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
    fn the_host_header_is_the_one_awc_would_write() {
        let h = |url: &str| host_header(&url.parse().unwrap()).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("http://127.0.0.1:9/v1").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(
            h("https://api.example.com/v1").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            h("http://api.example.com:80/v1").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(h("http://[::1]:8080/v1").as_deref(), Some("[::1]:8080"));
        assert_eq!(h("/v1/chat"), None);
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
    fn kinds_prepare_their_own_credentials_and_endpoints() {
        let c = spec().validate(1, 1000, &no_env).unwrap();
        assert_eq!(c.kind, ProviderKind::OpenAi);
        let (name, value) = c.wire.credential.clone().unwrap();
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        assert_eq!(c.wire.authorization, Some(value));
        assert_eq!(c.serves(Endpoint::Messages), Some(Service::Translated));
        assert_eq!(
            c.wire.url(Endpoint::Embeddings),
            "http://127.0.0.1:9/v1/embeddings"
        );

        let mut s = spec();
        s.kind = ProviderKind::Anthropic;
        let c = s.validate(1, 1000, &no_env).unwrap();
        let (name, value) = c.wire.credential.clone().unwrap();
        assert_eq!(name, "x-api-key");
        assert_eq!(value.to_str().unwrap(), "sk-abc");
        assert!(value.is_sensitive() && c.wire.authorization.is_none());
        assert_eq!(c.wire.url(Endpoint::Messages), "http://127.0.0.1:9/v1/messages");
        assert_eq!(
            c.wire.url(Endpoint::CountTokens),
            "http://127.0.0.1:9/v1/messages/count_tokens"
        );
        assert_eq!(c.serves(Endpoint::CountTokens), Some(Service::Native));
        assert_eq!(c.serves(Endpoint::Chat), Some(Service::Translated));
        assert_eq!(c.serves(Endpoint::Embeddings), None);
        assert!(!format!("{c:?}").contains("sk-abc"), "the key is never printed");
    }

    #[test]
    fn endpoints_narrow_and_must_belong_to_the_kind() {
        let mut s = spec();
        s.endpoints = Some(vec![Endpoint::Embeddings, Endpoint::Chat, Endpoint::Chat]);
        let c = s.validate(1, 1000, &no_env).unwrap();
        assert_eq!(c.endpoints, Some(vec![Endpoint::Chat, Endpoint::Embeddings]));
        assert_eq!(c.serves(Endpoint::Responses), None);
        assert_eq!(c.to_spec().endpoints, c.endpoints);
        s.endpoints = Some(vec![Endpoint::Messages]);
        assert_eq!(s.validate(1, 1000, &no_env).unwrap_err().field, "endpoints");
        s.endpoints = Some(vec![]);
        assert_eq!(s.validate(1, 1000, &no_env).unwrap_err().field, "endpoints");
        s.kind = ProviderKind::Anthropic;
        s.endpoints = Some(vec![Endpoint::Chat]);
        assert_eq!(s.validate(1, 1000, &no_env).unwrap_err().field, "endpoints");
        // An Anthropic-compatible API without token counting is declared so.
        s.endpoints = Some(vec![Endpoint::Messages]);
        let c = s.validate(1, 1000, &no_env).unwrap();
        assert_eq!(c.serves(Endpoint::CountTokens), None);
        assert_eq!(c.serves(Endpoint::Chat), Some(Service::Translated));
        let bad: Result<ProviderSpec, _> = serde_json::from_value(serde_json::json!({
            "name": "p", "base_url": "http://h/v1", "models": ["a"], "kind": "gemini"
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn limits_are_range_checked_and_optional() {
        let c = spec().validate(1, 1000, &no_env).unwrap();
        assert!(c.limits.is_unlimited());
        let mut s = spec();
        s.max_concurrency = Some(4);
        s.rpm = Some(600);
        s.tpm = Some(90_000);
        let c = s.validate(1, 1000, &no_env).unwrap();
        assert_eq!(
            c.limits,
            Limits {
                max_concurrency: Some(4),
                rpm: Some(600),
                tpm: Some(90_000)
            }
        );
        assert_eq!(c.to_spec().validate(1, 1000, &no_env).unwrap().limits, c.limits);
        let field = |f: fn(&mut ProviderSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate(1, 1000, &no_env).unwrap_err().field
        };
        assert_eq!(field(|s| s.max_concurrency = Some(0)), "max_concurrency");
        assert_eq!(field(|s| s.rpm = Some(-1)), "rpm");
        assert_eq!(field(|s| s.tpm = Some(i64::MAX)), "tpm");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<ProviderSpec, _> = serde_json::from_value(serde_json::json!({
            "name": "p", "base_url": "http://h/v1", "models": ["a"], "wieght": 2
        }));
        assert!(r.unwrap_err().to_string().contains("wieght"));
    }
}
