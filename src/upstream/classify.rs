//! How an upstream answer or error is judged (docs/DESIGN.md §3): does it count against the
//! provider, should the request move to another provider, or is it the client's own fault?
//!
//! | upstream said | class | counts | fails over |
//! |---|---|---|---|
//! | 2xx | `Success` | – | – |
//! | 400, 413, 415, 422 | `ClientError` (returned as is) | no | no |
//! | 404 with an OpenAI error body (`model_not_found`…) | `ClientError` | no | no |
//! | 404 without one (wrong base URL) | `ProviderError` | yes | yes |
//! | 401, 403 | `AuthFailed` (bad provider key) | yes | yes |
//! | 429 | `RateLimited` (`Retry-After` = cool-down) | yes | yes |
//! | 408, 5xx, any other status | `ProviderError` | yes | yes |
//! | connect error, timeout, broken body | (see `FailureKind`) | yes | yes |

use awc::error::SendRequestError;
use awc::http::header::HeaderMap;

/// The judgement of an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    ClientError,
    AuthFailed,
    RateLimited,
    ProviderError,
}

/// Classifies a status; `body` is the (start of the) answer, used only for 404.
pub fn status(code: u16, body: &[u8]) -> Class {
    match code {
        200..=299 => Class::Success,
        400 | 413 | 415 | 422 => Class::ClientError,
        404 if has_openai_error(body) => Class::ClientError,
        401 | 403 => Class::AuthFailed,
        429 => Class::RateLimited,
        _ => Class::ProviderError,
    }
}

fn has_openai_error(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: serde_json::Value,
    }
    serde_json::from_slice::<Envelope>(body).is_ok_and(|e| e.error.is_object())
}

/// `Retry-After` in ms, from delta-seconds (an HTTP date is ignored: providers send seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
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
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

/// True when awc gave up waiting (connect or response head).
pub fn is_timeout(e: &SendRequestError) -> bool {
    matches!(e, SendRequestError::Timeout)
        || matches!(e, SendRequestError::Connect(awc::error::ConnectError::Timeout))
}

/// A message for a failed send that names the cause but never the request (no key inside).
pub fn send_error_message(e: &SendRequestError) -> String {
    match e {
        SendRequestError::Timeout => "upstream timed out before answering".into(),
        SendRequestError::Connect(awc::error::ConnectError::Timeout) => {
            "connecting to the upstream timed out".into()
        }
        SendRequestError::Connect(c) => format!("cannot connect to the upstream: {c}"),
        other => format!("upstream request failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_designed() {
        assert_eq!(status(200, b""), Class::Success);
        assert_eq!(status(400, b""), Class::ClientError);
        assert_eq!(status(422, b""), Class::ClientError);
        assert_eq!(
            status(
                404,
                br#"{"error":{"message":"no such model","code":"model_not_found"}}"#
            ),
            Class::ClientError
        );
        assert_eq!(status(404, b"<html>not found</html>"), Class::ProviderError);
        assert_eq!(status(401, b""), Class::AuthFailed);
        assert_eq!(status(403, b""), Class::AuthFailed);
        assert_eq!(status(429, b""), Class::RateLimited);
        assert_eq!(status(500, b""), Class::ProviderError);
        assert_eq!(status(503, b""), Class::ProviderError);
        assert_eq!(status(408, b""), Class::ProviderError);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(
            awc::http::header::RETRY_AFTER,
            awc::http::header::HeaderValue::from_static("3"),
        );
        assert_eq!(retry_after(&h), Some(3000));
        h.insert(
            awc::http::header::RETRY_AFTER,
            awc::http::header::HeaderValue::from_static("0.5"),
        );
        assert_eq!(retry_after(&h), Some(500));
        assert_eq!(retry_after(&HeaderMap::new()), None);
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
