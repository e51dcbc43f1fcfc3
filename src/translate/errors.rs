//! Error bodies from an upstream of the other format, in the client's format: a client
//! speaking OpenAI chat gets `{"error": {"message", "type", "code"}}`, one speaking Anthropic
//! Messages gets `{"type": "error", "error": {"type", "message"}}`, whatever the provider
//! answered.

use serde_json::{Value, json};

use crate::upstream::classify;

/// The message of an error body of either format, scrubbed and capped.
fn message_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let m = v
        .get("error")
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    classify::scrub(&m)
}

/// Anthropic's error `type` for a status.
pub fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// OpenAI's error `type` for a status.
pub fn openai_type(status: u16) -> &'static str {
    match status {
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "upstream_error",
    }
}

/// An upstream error body (any format) as an Anthropic error body.
pub fn to_anthropic(status: u16, body: &[u8]) -> Vec<u8> {
    let e = json!({"type": "error", "error": {"type": anthropic_type(status), "message": message_of(body)}});
    e.to_string().into_bytes()
}

/// An upstream error body (any format) as an OpenAI error body.
pub fn to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let e = json!({"error": {"message": message_of(body), "type": openai_type(status), "code": null}});
    e.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_change_shape_and_keep_their_message() {
        let anthropic =
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
        let v: Value = serde_json::from_slice(&to_openai(400, anthropic)).unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": "max_tokens: too big", "type": "invalid_request_error", "code": null}})
        );
        let openai =
            br#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#;
        let v: Value = serde_json::from_slice(&to_anthropic(404, openai)).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "bad model"}})
        );
        let v: Value = serde_json::from_slice(&to_anthropic(500, b"<html>oops</html>")).unwrap();
        assert_eq!(v["error"]["message"], "<html>oops</html>");
        let v: Value =
            serde_json::from_slice(&to_openai(400, br#"{"error":"key sk-abcdefghijklmnop is bad"}"#))
                .unwrap();
        assert!(!v.to_string().contains("sk-abcdefghijklmnop"));
    }
}
