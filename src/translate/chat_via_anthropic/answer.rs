//! An Anthropic Messages answer → an OpenAI chat completion.

use serde_json::{Value, json};

use crate::translate::{AnswerError, Tokens, finish_reason_from_anthropic};

/// Translates an Anthropic message into a chat completion. `created` is the Unix time to
/// stamp (Anthropic answers carry none). Text blocks are joined into `content`, `tool_use`
/// blocks become `tool_calls`; thinking blocks (which a translated request never asks for)
/// are left out.
pub fn answer(body: &[u8], created: i64) -> Result<(Value, Tokens), AnswerError> {
    let msg: Value =
        serde_json::from_slice(body).map_err(|e| AnswerError(format!("the answer is not JSON: {e}")))?;
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| AnswerError("the answer has no content array".into()))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": b.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": b.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let tokens = msg.get("usage").map(Tokens::from_anthropic).unwrap_or_default();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason_from_anthropic(msg.get("stop_reason").and_then(Value::as_str));
    let out = json!({
        "id": msg.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": msg.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": tokens.to_openai(),
    });
    Ok((out, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tool_calls_finish_and_usage_are_translated() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me look. "},
                {"type": "text", "text": "Now."},
                {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"x": [1, 2]}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0}
        });
        let (out, tokens) = answer(body.to_string().as_bytes(), 1700).unwrap();
        assert_eq!(
            out,
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 1700, "model": "claude-x",
                "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Let me look. Now.", "refusal": null,
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "look", "arguments": "{\"x\":[1,2]}"}}]
                }}],
                "usage": {"prompt_tokens": 15, "completion_tokens": 20, "total_tokens": 35,
                    "prompt_tokens_details": {"cached_tokens": 5}}
            })
        );
        assert_eq!(tokens.output, 20);
    }

    #[test]
    fn only_tool_calls_leave_content_null_and_bad_answers_are_errors() {
        let body = json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"});
        let (out, _) = answer(body.to_string().as_bytes(), 0).unwrap();
        assert!(out["choices"][0]["message"]["content"].is_null());
        assert_eq!(out["usage"]["total_tokens"], 0);
        assert!(answer(b"not json", 0).is_err());
        assert!(answer(b"{\"content\": 5}", 0).is_err());
    }
}
