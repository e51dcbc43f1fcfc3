//! Reading what an upstream said: `Retry-After`, error bodies (scrubbed of keys for anyone's
//! eyes), and awc's send errors as typed attempt errors. What each of those *means* for the
//! provider and the request is decided in one place, `routing::failover`.

use awc::error::SendRequestError;
use awc::http::header::HeaderMap;

use crate::routing::{AttemptError, Phase};

/// `Retry-After` in ms, from delta-seconds (whole or fractional) or an HTTP-date (RFC 9110
/// §10.2.3), measured from `now`. Saturating: an absurd value gives a huge number, never an
/// overflow; callers cap it with [`cooldown_ms`]. A date in the past is 0.
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    if let Some(ms) = v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0) {
        // `as` saturates for floats out of range.
        return Some((ms * 1000.0) as u64);
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.signed_duration_since(now).num_milliseconds();
    Some(u64::try_from(ms).unwrap_or(0))
}

/// The cool-down of a 429: what `Retry-After` asked for, else `default_ms`, never more
/// than `max_ms`.
pub fn cooldown_ms(retry_after: Option<u64>, default_ms: u64, max_ms: u64) -> u64 {
    retry_after.unwrap_or(default_ms).min(max_ms)
}

/// Upstream text for a client's eyes: key-like tokens (`sk-…`, long opaque strings) replaced
/// by `[redacted]`, at most 200 characters. Providers quote the key they were sent in their
/// 401 bodies ("Incorrect API key provided: sk-…").
pub fn scrub(text: &str) -> String {
    let words = text
        .split(' ')
        .map(|w| if looks_like_secret(w) { "[redacted]" } else { w });
    let mut out = String::with_capacity(text.len().min(256));
    for (i, word) in words.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > 800 {
            // Far past 200 characters whatever the encoding: the rest would be cut anyway.
            break;
        }
    }
    out.chars().take(200).collect()
}

fn looks_like_secret(word: &str) -> bool {
    let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let lower = core.to_ascii_lowercase();
    let prefixed = ["sk-", "sk_", "key-", "pk-", "rk-", "xai-", "gsk_", "aiza"]
        .iter()
        .any(|p| lower.starts_with(p) && core.len() > p.len() + 3);
    let opaque = core.len() >= 24
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'))
        && core.chars().any(|c| c.is_ascii_digit());
    prefixed || opaque
}

/// `": message"` from an OpenAI-style error body, or a short excerpt of any other body, for
/// error messages and health records. Bounded, single line.
pub fn error_summary(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Inner { message: Some(m) },
        }) => m,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(400).collect();
    let text = scrub(&text);
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

/// A failed send as a typed attempt error whose text names the cause but never the request
/// (no key inside).
pub fn send_error(e: &SendRequestError) -> AttemptError {
    match e {
        SendRequestError::Timeout => AttemptError::Timeout(Phase::Head),
        SendRequestError::Connect(awc::error::ConnectError::Timeout) => AttemptError::Timeout(Phase::Connect),
        SendRequestError::Connect(c) => AttemptError::Connect(c.to_string()),
        other => AttemptError::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(
            awc::http::header::RETRY_AFTER,
            awc::http::header::HeaderValue::from_static("3"),
        );
        let now = chrono::Utc::now();
        assert_eq!(retry_after(&h, now), Some(3000));
        h.insert(
            awc::http::header::RETRY_AFTER,
            awc::http::header::HeaderValue::from_static("0.5"),
        );
        assert_eq!(retry_after(&h, now), Some(500));
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_reads_dates_and_survives_absurd_values() {
        let set = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                awc::http::header::RETRY_AFTER,
                awc::http::header::HeaderValue::from_static(v),
            );
            h
        };
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .to_utc();
        assert_eq!(
            retry_after(&set("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(30_000)
        );
        assert_eq!(retry_after(&set("Wed, 21 Oct 2015 07:00:00 GMT"), now), Some(0));
        assert_eq!(
            retry_after(&set("9000000000000"), now),
            Some(9_000_000_000_000_000)
        );
        assert_eq!(retry_after(&set("99999999999999999999999"), now), Some(u64::MAX));
        assert_eq!(retry_after(&set("soon"), now), None);
        assert_eq!(cooldown_ms(Some(u64::MAX), 1000, 600_000), 600_000);
        assert_eq!(cooldown_ms(None, 1000, 600_000), 1000);
    }

    #[test]
    fn key_like_tokens_are_scrubbed() {
        let s = scrub("Incorrect API key provided: sk-proj-abc123XYZ. You can find your key");
        assert!(!s.contains("abc123"), "{s}");
        assert!(s.contains("[redacted]"));
        let s = scrub("token AbCdEf0123456789AbCdEf0123456789 rejected");
        assert!(!s.contains("AbCdEf0123"), "{s}");
        assert_eq!(scrub("model not found"), "model not found");
        assert!(scrub(&"word ".repeat(500)).chars().count() <= 200);
    }

    #[test]
    fn summaries_are_short_and_prefer_the_message() {
        assert_eq!(
            error_summary(br#"{"error":{"message":"overloaded"}}"#),
            ": overloaded"
        );
        assert_eq!(error_summary(b""), "");
        assert!(error_summary(&[b'x'; 1000]).len() < 210);
    }
}
