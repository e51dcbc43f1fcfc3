//! Translation between the two chat formats the router speaks: OpenAI chat completions and
//! Anthropic Messages. Pure functions and small state machines, no I/O.
//!
//! A request in a format the chosen provider speaks is forwarded as it is; otherwise it goes
//! through one of two directions, each named after the client's format:
//!
//! * [`chat_via_anthropic`]: an OpenAI chat client served by an Anthropic-kind provider
//!   (request OpenAI → Anthropic; answer, stream and errors Anthropic → OpenAI);
//! * [`messages_via_openai`]: an Anthropic Messages client served by an OpenAI-kind provider
//!   (request Anthropic → OpenAI; answer, stream and errors OpenAI → Anthropic).
//!
//! What one side has and the other cannot express faithfully (`n > 1`, `logprobs`, `top_k`,
//! extended thinking, server tools…) is refused with a [`TranslateError`] naming the member,
//! which the client receives as a 400, never dropped silently. The full table is in the
//! README ("Translation").
//!
//! Streams are translated event by event as they arrive ([`sse::SseSplitter`] cuts events,
//! each translator keeps a few counters), so memory per stream stays bounded and nothing waits
//! for the end of a stream.

pub mod chat_via_anthropic;
pub mod errors;
pub mod messages_via_openai;
mod raw;
pub mod sse;

use serde_json::{Map, Value};

/// `max_tokens` sent to an Anthropic provider when an OpenAI client gave neither
/// `max_tokens` nor `max_completion_tokens` (Anthropic requires it; OpenAI's default is "as
/// much as the model allows", which no single number matches).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Why a request cannot be translated; answered as a 400 whose `param` is `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    /// The top-level member concerned (`n`, `messages`, `tools`…).
    pub field: &'static str,
    pub message: String,
    /// True when the request is valid in its own format but the provider's format cannot
    /// express it; false when the request itself is malformed.
    pub untranslatable: bool,
}

impl TranslateError {
    /// The member is valid but has no faithful equivalent on the provider's side.
    pub fn untranslatable(field: &'static str, message: impl Into<String>) -> Self {
        TranslateError {
            field,
            message: message.into(),
            untranslatable: true,
        }
    }

    /// The member is malformed.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        TranslateError {
            field,
            message: message.into(),
            untranslatable: false,
        }
    }

    /// The error's stable `code`.
    pub fn code(&self) -> &'static str {
        if self.untranslatable {
            "unsupported_by_provider_format"
        } else {
            "invalid_field"
        }
    }
}

/// An upstream answer that could not be read in its own format (a provider fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the provider's answer could not be translated: {0}")]
pub struct AnswerError(pub String);

/// Token counts of one answer, in the terms both formats need. OpenAI's `prompt_tokens`
/// includes cached tokens; Anthropic's `input_tokens` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens neither read from nor written to the cache.
    pub input: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
    pub output: u64,
}

impl Tokens {
    /// From an Anthropic `usage` object (missing fields are zero).
    pub fn from_anthropic(u: &Value) -> Tokens {
        Tokens {
            input: count(u, "input_tokens"),
            cache_read: count(u, "cache_read_input_tokens"),
            cache_creation: count(u, "cache_creation_input_tokens"),
            output: count(u, "output_tokens"),
        }
    }

    /// From an OpenAI `usage` object.
    pub fn from_openai(u: &Value) -> Tokens {
        let prompt = count(u, "prompt_tokens");
        let cached = u
            .get("prompt_tokens_details")
            .map_or(0, |d| count(d, "cached_tokens"))
            .min(prompt);
        Tokens {
            input: prompt - cached,
            cache_read: cached,
            cache_creation: 0,
            output: count(u, "completion_tokens"),
        }
    }

    /// Takes in the `usage` of an Anthropic `message_delta`: its counts are cumulative, and
    /// those present replace the ones known (`output_tokens` is always there).
    pub fn merge_delta(&mut self, u: &Value) {
        let t = Tokens::from_anthropic(u);
        let has = |k: &str| u.get(k).is_some_and(|v| !v.is_null());
        self.output = t.output;
        if has("input_tokens") {
            self.input = t.input;
        }
        if has("cache_read_input_tokens") {
            self.cache_read = t.cache_read;
        }
        if has("cache_creation_input_tokens") {
            self.cache_creation = t.cache_creation;
        }
    }

    pub fn prompt_total(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    /// OpenAI's `usage` object.
    pub fn to_openai(self) -> Value {
        let prompt = self.prompt_total();
        serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": { "cached_tokens": self.cache_read },
        })
    }

    /// Anthropic's `usage` object.
    pub fn to_anthropic(self) -> Value {
        serde_json::json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
        })
    }
}

/// A non-negative token count; anything else (absent, negative, fractional, absurd) is 0 or
/// clamped, so a hostile answer cannot overflow a sum.
fn count(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(crate::upstream::usage::MAX_TOKENS)
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason_from_anthropic(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason_from_openai(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// A data URL (`data:image/png;base64,....`) as (media type, base64 data).
pub fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}

/// The `text` of a text part or block of `messages[i]`.
fn text_of(part: &Value, i: usize) -> Result<&str, TranslateError> {
    part.get("text").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::invalid("messages", format!("messages[{i}]: a text part needs `text`"))
    })
}

/// The object's members, or an error naming `field`.
fn object<'a>(
    v: &'a Value,
    field: &'static str,
    what: &str,
) -> Result<&'a Map<String, Value>, TranslateError> {
    v.as_object()
        .ok_or_else(|| TranslateError::invalid(field, format!("{what} must be an object")))
}

/// A string member, or an error naming `field`.
fn string<'a>(v: &'a Value, field: &'static str, what: &str) -> Result<&'a str, TranslateError> {
    v.as_str()
        .ok_or_else(|| TranslateError::invalid(field, format!("{what} must be a string")))
}

/// Appends one SSE event to `out`: `event: {name}` (when given) and one `data:` line.
pub fn write_sse_event(out: &mut Vec<u8>, name: Option<&str>, data: &impl serde::Serialize) {
    if let Some(n) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // The translators' values are JSON values and structs of strings and numbers, which
    // always serialise.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn usage_converts_both_ways_with_cached_tokens() {
        let t = Tokens::from_anthropic(&json!({
            "input_tokens": 10, "output_tokens": 5,
            "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7
        }));
        assert_eq!(
            t.to_openai(),
            json!({"prompt_tokens": 117, "completion_tokens": 5, "total_tokens": 122,
                   "prompt_tokens_details": {"cached_tokens": 100}})
        );
        let t = Tokens::from_openai(&json!({
            "prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53,
            "prompt_tokens_details": {"cached_tokens": 20}
        }));
        assert_eq!(
            t.to_anthropic(),
            json!({"input_tokens": 30, "output_tokens": 3,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20})
        );
    }

    #[test]
    fn hostile_counts_neither_overflow_nor_go_negative() {
        let t = Tokens::from_openai(&json!({
            "prompt_tokens": 5, "completion_tokens": -3,
            "prompt_tokens_details": {"cached_tokens": 18446744073709551615u64}
        }));
        assert_eq!((t.input, t.cache_read, t.output), (0, 5, 0));
        let t = Tokens::from_anthropic(&json!({
            "input_tokens": 18446744073709551615u64, "cache_read_input_tokens": 18446744073709551615u64,
            "cache_creation_input_tokens": 1e300, "output_tokens": "x"
        }));
        assert!(t.prompt_total() <= 3 * crate::upstream::usage::MAX_TOKENS);
        let _ = t.to_openai();
    }

    #[test]
    fn finish_reasons_map_both_ways() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason_from_anthropic(Some(anthropic)), openai);
            assert_eq!(stop_reason_from_openai(Some(openai)), anthropic);
        }
        assert_eq!(finish_reason_from_anthropic(Some("stop_sequence")), "stop");
        assert_eq!(stop_reason_from_openai(None), "end_turn");
    }

    #[test]
    fn data_urls_are_split() {
        assert_eq!(
            split_data_url("data:image/png;base64,iVBORw0"),
            Some(("image/png", "iVBORw0"))
        );
        assert_eq!(split_data_url("data:image/png,raw"), None);
        assert_eq!(split_data_url("https://x/y.png"), None);
        assert_eq!(split_data_url("data:;base64,x"), None);
    }
}
