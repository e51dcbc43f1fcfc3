//! Scripted tool calls: whether a request gets one, which tool, what arguments; and the chat
//! completion answers (plain and streamed) that carry one.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::{
    behavior::Behavior,
    script::{self, Script},
    server::unix_now,
};

/// The call the mock makes.
pub(crate) struct ToolCall {
    pub name: String,
    /// The arguments as a JSON object.
    pub input: Value,
}

impl ToolCall {
    /// The arguments as JSON text (OpenAI's `arguments`, Anthropic's streamed `partial_json`).
    pub fn arguments(&self) -> String {
        self.input.to_string()
    }
}

/// Decides the call for a request with tool names `names` (in request order) and `tool_choice`.
///
/// OpenAI choices: `"none"`, `"auto"`, `"required"`, `{"type":"function","function":{"name"}}`;
/// Anthropic choices: `{"type":"none"|"auto"|"any"|"tool","name"}`.
pub(crate) fn choose(b: &Behavior, names: &[String], choice: Option<&Value>, mock: &str) -> Option<ToolCall> {
    let first = names.first()?;
    let kind = match choice {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str).unwrap_or("auto"),
        _ => "auto",
    };
    let named = choice.and_then(|c| {
        c.pointer("/function/name")
            .or_else(|| c.get("name"))
            .and_then(Value::as_str)
    });
    let forced = matches!(kind, "required" | "any" | "tool" | "function");
    if kind == "none" || !(forced || b.call_tools) {
        return None;
    }
    let name = named.unwrap_or(first).to_owned();
    let input = b.tool_arguments.clone().unwrap_or_else(|| json!({"from": mock}));
    Some(ToolCall { name, input })
}

/// Tool names of an Anthropic request (`tools[].name`; the chat handler reads its own).
pub(crate) fn anthropic_tool_names(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A complete chat completion whose message is one tool call, `finish_reason` `tool_calls`.
pub(crate) fn chat_answer(call: &ToolCall, id: u64, model: &str, b: &Behavior) -> Bytes {
    let v = json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_mock_{id}"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments()},
                }],
            },
            "finish_reason": "tool_calls",
        }],
        "usage": script::openai_usage(b.prompt_tokens, b.completion_tokens),
    });
    Bytes::from(v.to_string())
}

/// The streamed tool call: a chunk naming the call, then the arguments split over
/// `stream_chunks` chunks, then the `tool_calls` finish (and usage when asked) and `[DONE]`.
pub(crate) fn chat_stream(
    call: &ToolCall,
    id: u64,
    model: &str,
    b: &Behavior,
    include_usage: bool,
) -> Script {
    let created = unix_now();
    let chunk = |choices: Value| {
        json!({
            "id": format!("chatcmpl-mock-{id}"),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        })
    };
    let head = script::data(&chunk(json!([{
        "index": 0,
        "delta": {"role": "assistant", "content": null, "tool_calls": [{
            "index": 0,
            "id": format!("call_mock_{id}"),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]},
        "finish_reason": null,
    }])));
    let n = script::chunk_count(b);
    let chunks = script::split(&call.arguments(), n)
        .into_iter()
        .map(|piece| {
            script::data(&chunk(json!([{
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                "finish_reason": null,
            }])))
        })
        .collect();
    let mut tail = String::new();
    script::push_data(
        &mut tail,
        &chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
    );
    let usage_chunk = include_usage.then(|| chunk(json!([])));
    script::end_openai_stream(&mut tail, usage_chunk, b.prompt_tokens, n as u64);
    Script {
        head,
        chunks,
        tail: Bytes::from(tail),
        error: script::openai_stream_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".to_owned(), "search".to_owned()]
    }

    #[test]
    fn choice_rules() {
        let off = Behavior::default();
        let on = Behavior::tool_calls();
        assert!(choose(&off, &names(), None, "m").is_none());
        assert!(choose(&on, &[], None, "m").is_none());
        let call = choose(&on, &names(), None, "m").expect("call");
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.input, json!({"from": "m"}));
        assert!(choose(&on, &names(), Some(&json!("none")), "m").is_none());
        assert!(choose(&on, &names(), Some(&json!({"type": "none"})), "m").is_none());
        assert!(choose(&off, &names(), Some(&json!("required")), "m").is_some());
        assert!(choose(&off, &names(), Some(&json!({"type": "any"})), "m").is_some());
        let named = json!({"type": "function", "function": {"name": "search"}});
        assert_eq!(
            choose(&off, &names(), Some(&named), "m").expect("call").name,
            "search"
        );
        let named = json!({"type": "tool", "name": "search"});
        assert_eq!(
            choose(&off, &names(), Some(&named), "m").expect("call").name,
            "search"
        );
    }
}
