//! An OpenAI chat completion → an Anthropic Messages answer.

use serde_json::{Value, json};

use crate::translate::{AnswerError, Tokens, stop_reason_from_openai};

/// Translates a chat completion (its first choice: translated requests never ask for more)
/// into an Anthropic message. A refusal becomes a text block with `stop_reason: refusal`.
pub fn answer(body: &[u8]) -> Result<(Value, Tokens), AnswerError> {
    let c: Value =
        serde_json::from_slice(body).map_err(|e| AnswerError(format!("the answer is not JSON: {e}")))?;
    let choice = c
        .get("choices")
        .and_then(|ch| ch.get(0))
        .ok_or_else(|| AnswerError("the answer has no choices".into()))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    if let Some(t) = text.or(refusal) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        let input: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| AnswerError("a tool call's arguments are not a JSON object".into()))?
        };
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": f.get("name").cloned().unwrap_or(Value::Null),
            "input": input,
        }));
    }
    let stop_reason = if refusal.is_some() && text.is_none() {
        "refusal"
    } else {
        stop_reason_from_openai(choice.get("finish_reason").and_then(Value::as_str))
    };
    let tokens = c.get("usage").map(Tokens::from_openai).unwrap_or_default();
    let out = json!({
        "id": c.get("id").cloned().unwrap_or(Value::Null),
        "type": "message",
        "role": "assistant",
        "model": c.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": tokens.to_anthropic(),
    });
    Ok((out, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_tool_calls_finish_and_usage_are_translated() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]
            }}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34, "prompt_tokens_details": {"cached_tokens": 10}}
        });
        let (out, tokens) = answer(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": 1}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}
            })
        );
        assert_eq!(tokens.prompt_total(), 30);
    }

    #[test]
    fn refusals_lengths_and_broken_answers() {
        let body =
            json!({"choices": [{"finish_reason": "stop", "message": {"content": null, "refusal": "No."}}]});
        let (out, _) = answer(body.to_string().as_bytes()).unwrap();
        assert_eq!(out["stop_reason"], "refusal");
        assert_eq!(out["content"], json!([{"type": "text", "text": "No."}]));
        let body = json!({"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
        assert_eq!(
            answer(body.to_string().as_bytes()).unwrap().0["stop_reason"],
            "max_tokens"
        );
        assert!(answer(b"{\"choices\": []}").is_err());
        assert!(answer(b"[]").is_err());
        let bad_args = json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}}]});
        assert!(answer(bad_args.to_string().as_bytes()).is_err());
    }
}
