//! An Anthropic Messages client served by an OpenAI-kind provider: the request Anthropic
//! Messages → OpenAI chat here; the answer ([`answer`]) and the stream ([`stream`]) back.
//!
//! | Anthropic Messages | OpenAI chat |
//! |---|---|
//! | `system` (string or text blocks) | a first `system` message |
//! | `user` text / `image` blocks (base64 / url source) | text / `image_url` parts (data URL / URL) |
//! | `user` `tool_result` blocks | `tool` messages, before the rest of that turn |
//! | `assistant` text + `tool_use` blocks | `content` + `tool_calls` (`input` serialised) |
//! | `max_tokens`, `stop_sequences`, `temperature`, `top_p` | `max_tokens`, `stop`, same |
//! | `stream` | `stream` (the router adds `stream_options.include_usage`, as for chat) |
//! | `tools`, `tool_choice` (`auto`/`any`/`tool`/`none`), `disable_parallel_tool_use` | `tools`, `tool_choice`, `parallel_tool_calls: false` |
//! | `metadata.user_id` | `user` |
//!
//! `cache_control` marks are caching hints with no OpenAI equivalent and are not sent. A
//! `tool_result` with `is_error` becomes a tool message whose text starts with `Error: `.
//! Refused (400 naming the member): `top_k`, `thinking` (enabled), server tools (any tool with
//! a `type`), `document` and thinking blocks, images inside tool results, and any member this
//! table does not name.

pub mod answer;
pub mod stream;

use serde_json::{Map, Value, json};

use super::{TranslateError, object, text_of};

/// Translates an Anthropic Messages request into an OpenAI chat request. The `model` is kept
/// as the client sent it (the caller splices the provider's name).
pub fn request(body: &Value) -> Result<Value, TranslateError> {
    let req = object(body, "body", "the body")?;
    let mut out = Map::new();
    let mut system: Option<Value> = None;
    let mut messages_out = Vec::new();
    let mut stream = false;
    let mut parallel = true;
    for (key, v) in req {
        match key.as_str() {
            "model" => {
                out.insert("model".into(), v.clone());
            }
            "messages" => messages_out = messages(v)?,
            "system" => system = system_message(v)?,
            "max_tokens" => {
                let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                    TranslateError::invalid("max_tokens", "`max_tokens` must be a positive integer")
                })?;
                out.insert("max_tokens".into(), n.into());
            }
            "temperature" | "top_p" if v.is_null() => {}
            "temperature" => {
                v.as_f64().ok_or_else(|| {
                    TranslateError::invalid("temperature", "`temperature` must be a number")
                })?;
                out.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                v.as_f64()
                    .ok_or_else(|| TranslateError::invalid("top_p", "`top_p` must be a number"))?;
                out.insert("top_p".into(), v.clone());
            }
            "stop_sequences" => match v {
                Value::Null => {}
                Value::Array(a) if a.iter().all(Value::is_string) => {
                    if !a.is_empty() {
                        out.insert("stop".into(), v.clone());
                    }
                }
                _ => {
                    return Err(TranslateError::invalid(
                        "stop_sequences",
                        "`stop_sequences` must be an array of strings",
                    ));
                }
            },
            "stream" => {
                stream = v.as_bool().unwrap_or(false);
            }
            "tools" if !v.is_null() => {
                out.insert("tools".into(), tools(v)?);
            }
            "tool_choice" if !v.is_null() => {
                let (choice, disable_parallel) = tool_choice(v)?;
                out.insert("tool_choice".into(), choice);
                parallel &= !disable_parallel;
            }
            "metadata" => {
                if let Some(user) = v.get("user_id").filter(|u| !u.is_null()) {
                    out.insert("user".into(), user.clone());
                }
            }
            "thinking" if v.is_null() || v.get("type").and_then(Value::as_str) == Some("disabled") => {}
            "thinking" => {
                return Err(TranslateError::untranslatable(
                    "thinking",
                    "extended thinking cannot be translated for this model's provider (OpenAI chat API); leave it out",
                ));
            }
            "top_k" if v.is_null() => {}
            "top_k" => {
                return Err(TranslateError::untranslatable(
                    "top_k",
                    "`top_k` has no equivalent on this model's provider (OpenAI chat API); leave it out",
                ));
            }
            "service_tier" if v.is_null() || v.as_str() == Some("auto") => {}
            other => {
                let field: &'static str = match other {
                    "service_tier" => "service_tier",
                    "container" => "container",
                    "mcp_servers" => "mcp_servers",
                    "context_management" => "context_management",
                    _ => "body",
                };
                return Err(TranslateError::untranslatable(
                    field,
                    format!(
                        "`{other}` cannot be translated for this model's provider (OpenAI chat API); leave it out"
                    ),
                ));
            }
        }
    }
    if !req.contains_key("messages") {
        return Err(TranslateError::invalid("messages", "`messages` is required"));
    }
    if !parallel {
        out.insert("parallel_tool_calls".into(), false.into());
    }
    if stream {
        // The router adds `stream_options.include_usage` when it sends the stream, as it does
        // for chat (token counts for `message_delta` and the usage record).
        out.insert("stream".into(), true.into());
    }
    let mut all = Vec::with_capacity(messages_out.len() + 1);
    all.extend(system);
    all.extend(messages_out);
    out.insert("messages".into(), Value::Array(all));
    Ok(Value::Object(out))
}

/// The `system` member as one system message.
fn system_message(v: &Value) -> Result<Option<Value>, TranslateError> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for b in blocks {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(TranslateError::invalid(
                        "system",
                        "`system` blocks must be text blocks",
                    ));
                }
                let t = b
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("system", "a `system` block needs `text`"))?;
                parts.push(t);
            }
            parts.join("\n\n")
        }
        _ => {
            return Err(TranslateError::invalid(
                "system",
                "`system` must be a string or an array of text blocks",
            ));
        }
    };
    Ok((!text.is_empty()).then(|| json!({"role": "system", "content": text})))
}

/// OpenAI messages from Anthropic `messages`.
fn messages(v: &Value) -> Result<Vec<Value>, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let m = object(m, "messages", &format!("messages[{i}]"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("user") => user(content, i, &mut out)?,
            Some("assistant") => out.push(assistant(content, i)?),
            _ => {
                return Err(TranslateError::invalid(
                    "messages",
                    format!("messages[{i}].role must be user or assistant"),
                ));
            }
        }
    }
    Ok(out)
}

fn blocks_of(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(a) => Ok(a.clone()),
        _ => Err(TranslateError::invalid(
            "messages",
            format!("messages[{i}].content must be a string or an array of blocks"),
        )),
    }
}

fn unsupported_block(kind: Option<&str>, i: usize) -> TranslateError {
    TranslateError::untranslatable(
        "messages",
        format!(
            "messages[{i}]: {} blocks cannot be translated for this model's provider",
            kind.unwrap_or("typeless")
        ),
    )
}

/// A user turn: its tool results as `tool` messages first (they answer the previous
/// assistant turn's calls), then the rest as one user message.
fn user(content: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    for b in blocks_of(content, i)? {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": text_of(&b, i)?})),
            Some("image") => parts.push(image(&b, i)?),
            Some("tool_result") => out.push(tool_result(&b, i)?),
            other => return Err(unsupported_block(other, i)),
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    // A single text part is sent as a plain string, the form every compatible server reads.
    let content = match parts.as_slice() {
        [only] if only["type"] == "text" => only["text"].clone(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// An `image_url` part from an image block.
fn image(b: &Value, i: usize) -> Result<Value, TranslateError> {
    let bad = || {
        TranslateError::invalid(
            "messages",
            format!("messages[{i}]: an image block needs a base64 or url source"),
        )
    };
    let source = b.get("source").ok_or_else(bad)?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media_type = source.get("media_type").and_then(Value::as_str).ok_or_else(bad)?;
            let data = source.get("data").and_then(Value::as_str).ok_or_else(bad)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string(),
        _ => return Err(bad()),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool` message from a `tool_result` block.
fn tool_result(b: &Value, i: usize) -> Result<Value, TranslateError> {
    let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::invalid(
            "messages",
            format!("messages[{i}]: tool_result needs `tool_use_id`"),
        )
    })?;
    let mut text = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for c in blocks {
                match c.get("type").and_then(Value::as_str) {
                    Some("text") => parts.push(text_of(c, i)?),
                    other => {
                        return Err(TranslateError::untranslatable(
                            "messages",
                            format!(
                                "messages[{i}]: {} blocks inside a tool result cannot be translated",
                                other.unwrap_or("typeless")
                            ),
                        ));
                    }
                }
            }
            parts.join("\n")
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "messages",
                format!("messages[{i}]: tool_result content must be a string or blocks"),
            ));
        }
    };
    if b.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// An assistant message from an assistant turn.
fn assistant(content: &Value, i: usize) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks_of(content, i)? {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(text_of(&b, i)?),
            Some("tool_use") => {
                let bad = |what: &str| {
                    TranslateError::invalid("messages", format!("messages[{i}]: tool_use needs {what}"))
                };
                let id = b.get("id").and_then(Value::as_str).ok_or_else(|| bad("`id`"))?;
                let name = b
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`name`"))?;
                let input = b
                    .get("input")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| bad("an object `input`"))?;
                calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            other => return Err(unsupported_block(other, i)),
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

/// OpenAI function tools from Anthropic tools.
fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "`tools` must be an array"))?;
    let out: Result<Vec<Value>, TranslateError> = list
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
                return Err(TranslateError::untranslatable(
                    "tools",
                    format!(
                        "tools[{i}]: the server tool {kind} cannot be translated for this model's provider"
                    ),
                ));
            }
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tools", format!("tools[{i}].name is required")))?;
            let mut function = json!({"name": name});
            if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
                function["description"] = d.clone();
            }
            if let Some(s) = t.get("input_schema").filter(|s| !s.is_null()) {
                function["parameters"] = s.clone();
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect();
    Ok(Value::Array(out?))
}

/// (OpenAI `tool_choice`, whether parallel calls are disabled).
fn tool_choice(v: &Value) -> Result<(Value, bool), TranslateError> {
    let disable = v.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true);
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice", "`tool_choice.name` is required"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice",
                "`tool_choice.type` must be auto, any, tool or none",
            ));
        }
    };
    Ok((choice, disable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_conversation_is_translated() {
        let body = json!({
            "model": "gpt-x",
            "max_tokens": 256,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Look at these"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": "x"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "found"}]},
                    {"type": "text", "text": "and?"}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "look", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true}]}
            ],
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "top_p": 0.8,
            "stream": true,
            "tools": [{"name": "look", "description": "Looks", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "u-1"}
        });
        assert_eq!(
            request(&body).unwrap(),
            json!({
                "model": "gpt-x",
                "max_tokens": 256,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Look at these"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BBBB"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}}
                    ]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":\"x\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "found"},
                    {"role": "user", "content": "and?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "toolu_2", "type": "function", "function": {"name": "look", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"}
                ],
                "stop": ["END"],
                "temperature": 0.2,
                "top_p": 0.8,
                "stream": true,
                "tools": [{"type": "function", "function": {"name": "look", "description": "Looks", "parameters": {"type": "object"}}}],
                "tool_choice": "required",
                "parallel_tool_calls": false,
                "user": "u-1"
            })
        );
    }

    #[test]
    fn simple_requests_stay_simple() {
        let out = request(&json!({"model": "m", "max_tokens": 5, "system": "S",
            "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "tool", "name": "f"}}))
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 5,
                "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
                "tool_choice": {"type": "function", "function": {"name": "f"}}})
        );
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        let field = |extra: Value| {
            let mut body =
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = request(&body).unwrap_err();
            (e.field, e.untranslatable)
        };
        assert_eq!(field(json!({"top_k": 5})), ("top_k", true));
        assert_eq!(
            field(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})),
            ("thinking", true)
        );
        assert_eq!(
            field(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})),
            ("tools", true)
        );
        assert_eq!(field(json!({"mcp_servers": []})), ("mcp_servers", true));
        assert_eq!(field(json!({"whatever": 1})), ("body", true));
        assert_eq!(
            field(json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]})),
            ("messages", true)
        );
        assert_eq!(
            field(
                json!({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]})
            ),
            ("messages", true)
        );
        assert_eq!(
            field(
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "image", "source": {}}]}]}]})
            ),
            ("messages", true)
        );
        assert_eq!(field(json!({"max_tokens": 0})), ("max_tokens", false));
        assert_eq!(
            field(json!({"messages": [{"role": "system", "content": "x"}]})),
            ("messages", false)
        );
        assert_eq!(field(json!({"stop_sequences": "x"})), ("stop_sequences", false));
        assert!(
            request(
                &json!({"model": "m", "max_tokens": 1, "thinking": {"type": "disabled"}, "messages": []})
            )
            .is_ok()
        );
    }

    #[test]
    fn hostile_shapes_never_panic() {
        for body in [
            json!(null),
            json!({"model": "m"}),
            json!({"messages": [null]}),
            json!({"messages": [{"role": "user", "content": 5}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image"}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": "s"}]}]}),
            json!({"messages": [], "tool_choice": {"type": "tool"}}),
            json!({"messages": [], "system": [{"type": "image"}]}),
            json!({"messages": [], "tools": [{"input_schema": {}}]}),
        ] {
            assert!(request(&body).is_err(), "{body}");
        }
    }
}
