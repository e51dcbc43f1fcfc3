//! An OpenAI chat client served by an Anthropic-kind provider: the request OpenAI chat →
//! Anthropic Messages here; the answer ([`answer`]) and the stream ([`stream`]) back.
//!
//! | OpenAI chat | Anthropic Messages |
//! |---|---|
//! | `system` / `developer` messages (anywhere) | `system` text blocks, in order |
//! | `user` text / `image_url` parts (data URL / http URL) | text / `image` blocks (base64 / url source) |
//! | `assistant` content + `tool_calls` | text + `tool_use` blocks (`arguments` parsed) |
//! | `tool` messages | `tool_result` blocks in one user turn |
//! | `max_completion_tokens`, else `max_tokens`, else 4096 | `max_tokens` |
//! | `stop` | `stop_sequences` |
//! | `temperature` (0–1), `top_p`, `stream` | same |
//! | `tools` (`function`), `tool_choice`, `parallel_tool_calls: false` | `tools`, `tool_choice`, `disable_parallel_tool_use` |
//! | `user` | `metadata.user_id` |
//!
//! Refused (400 naming the member): `n` > 1, `logprobs`, `top_logprobs`, non-zero penalties,
//! `logit_bias`, `seed`, `response_format` other than text, `temperature` > 1, strict tools,
//! audio and file parts, message `name`s, legacy `function_call`/`functions`, and any member
//! this table does not name.

pub mod answer;
pub mod stream;

use serde_json::{Map, Value, json};

use super::{DEFAULT_MAX_TOKENS, TranslateError, object, split_data_url, string, text_of};

/// Members that carry nothing when null or at their default, so they pass as absent.
fn is_default(key: &str, v: &Value) -> bool {
    match key {
        "n" => v.is_null() || v.as_u64() == Some(1),
        "logprobs" | "store" => v.is_null() || v == &Value::Bool(false),
        "presence_penalty" | "frequency_penalty" => v.is_null() || v.as_f64() == Some(0.0),
        "logit_bias" | "metadata" => v.is_null() || v.as_object().is_some_and(Map::is_empty),
        "response_format" => v.is_null() || v.get("type").and_then(Value::as_str) == Some("text"),
        "service_tier" => v.is_null() || v.as_str() == Some("auto"),
        _ => v.is_null(),
    }
}

/// Translates an OpenAI chat completion request into an Anthropic Messages request. The
/// `model` is kept as the client sent it (the caller splices the provider's name).
pub fn request(body: &Value) -> Result<Value, TranslateError> {
    let req = object(body, "body", "the body")?;
    let mut out = Map::new();
    let mut max_tokens: Option<u64> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    for (key, v) in req {
        match key.as_str() {
            "model" => {
                out.insert("model".into(), v.clone());
            }
            "messages" => {
                let (system, messages) = messages(v)?;
                if !system.is_empty() {
                    out.insert("system".into(), Value::Array(system));
                }
                out.insert("messages".into(), Value::Array(messages));
            }
            "max_tokens" | "max_completion_tokens" if v.is_null() => {}
            "max_tokens" | "max_completion_tokens" => {
                let field = if key == "max_tokens" {
                    "max_tokens"
                } else {
                    "max_completion_tokens"
                };
                let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                    TranslateError::invalid(field, format!("`{field}` must be a positive integer"))
                })?;
                // `max_completion_tokens` is the current name and wins over the old one.
                if key == "max_completion_tokens" || max_tokens.is_none() {
                    max_tokens = Some(n);
                }
            }
            "temperature" if !v.is_null() => {
                let t = v.as_f64().ok_or_else(|| {
                    TranslateError::invalid("temperature", "`temperature` must be a number")
                })?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(TranslateError::untranslatable(
                        "temperature",
                        "`temperature` above 1 has no equivalent on this model's provider (its range is 0 to 1)",
                    ));
                }
                out.insert("temperature".into(), v.clone());
            }
            "top_p" if !v.is_null() => {
                out.insert("top_p".into(), v.clone());
            }
            "stream" if !v.is_null() => {
                out.insert("stream".into(), v.clone());
            }
            // Read by the router (the usage chunk of a stream); nothing to send.
            "stream_options" => {}
            "stop" => match v {
                Value::Null => {}
                Value::String(s) => {
                    out.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(a) if a.iter().all(Value::is_string) => {
                    out.insert("stop_sequences".into(), v.clone());
                }
                _ => {
                    return Err(TranslateError::invalid(
                        "stop",
                        "`stop` must be a string or an array of strings",
                    ));
                }
            },
            "tools" if !v.is_null() => {
                out.insert("tools".into(), tools(v)?);
            }
            "tool_choice" if !v.is_null() => tool_choice = Some(self::tool_choice(v)?),
            "parallel_tool_calls" if !v.is_null() => {
                parallel = v.as_bool().ok_or_else(|| {
                    TranslateError::invalid("parallel_tool_calls", "`parallel_tool_calls` must be a boolean")
                })?;
            }
            "user" if !v.is_null() => {
                string(v, "user", "`user`")?;
                out.insert("metadata".into(), json!({ "user_id": v }));
            }
            other if is_default(other, v) => {}
            other => return Err(refused(other)),
        }
    }
    if !out.contains_key("messages") {
        return Err(TranslateError::invalid("messages", "`messages` is required"));
    }
    out.insert(
        "max_tokens".into(),
        max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if !parallel {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = tool_choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(Value::Object(out))
}

/// The error for a member without a faithful equivalent.
fn refused(member: &str) -> TranslateError {
    let field: &'static str = match member {
        "n" => "n",
        "logprobs" => "logprobs",
        "top_logprobs" => "top_logprobs",
        "presence_penalty" => "presence_penalty",
        "frequency_penalty" => "frequency_penalty",
        "logit_bias" => "logit_bias",
        "seed" => "seed",
        "response_format" => "response_format",
        "functions" => "functions",
        "function_call" => "function_call",
        "audio" => "audio",
        "modalities" => "modalities",
        "prediction" => "prediction",
        "reasoning_effort" => "reasoning_effort",
        "store" => "store",
        "metadata" => "metadata",
        "service_tier" => "service_tier",
        "web_search_options" => "web_search_options",
        _ => "body",
    };
    TranslateError::untranslatable(
        field,
        format!(
            "`{member}` cannot be translated for this model's provider (Anthropic Messages API); leave it out"
        ),
    )
}

/// (system blocks, messages) from OpenAI `messages`.
fn messages(v: &Value) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let m = object(m, "messages", &format!("messages[{i}]"))?;
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid("messages", format!("messages[{i}].role is required")))?;
        if m.get("name").is_some_and(|n| !n.is_null()) {
            return Err(TranslateError::untranslatable(
                "messages",
                format!("messages[{i}].name has no equivalent for this model's provider"),
            ));
        }
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(content, i)?);
                continue;
            }
            "user" => ("user", user_blocks(content, i)?),
            "assistant" => {
                if m.get("function_call").is_some_and(|f| !f.is_null()) {
                    return Err(TranslateError::untranslatable(
                        "messages",
                        format!("messages[{i}].function_call (legacy) cannot be translated; use tool_calls"),
                    ));
                }
                let mut blocks = assistant_text(content, i)?;
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    blocks.extend(tool_uses(calls, i)?);
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid("messages", format!("messages[{i}].tool_call_id is required"))
                })?;
                let text: Vec<Value> = text_blocks(content, i)?;
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
                )
            }
            other => {
                return Err(TranslateError::untranslatable(
                    "messages",
                    format!("messages[{i}] has role {other:?}, which cannot be translated"),
                ));
            }
        };
        if blocks.is_empty() {
            // An assistant turn with neither text nor calls carries nothing.
            continue;
        }
        // Turns of one role in a row become one turn: tool results must share the user turn
        // that follows the calls, and the API expects roles to alternate.
        match out.last_mut() {
            Some(prev) if prev["role"] == role => {
                if let Some(c) = prev["content"].as_array_mut() {
                    c.extend(blocks);
                }
            }
            _ => out.push(json!({"role": role, "content": blocks})),
        }
    }
    Ok((system, out))
}

/// Text-only content (system, developer, tool) as text blocks.
fn text_blocks(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": text_of(p, i)?})),
                other => Err(TranslateError::untranslatable(
                    "messages",
                    format!(
                        "messages[{i}]: a {} part is not allowed here",
                        other.unwrap_or("typeless")
                    ),
                )),
            })
            .collect(),
        _ => Err(TranslateError::invalid(
            "messages",
            format!("messages[{i}].content must be a string or an array"),
        )),
    }
}

/// User content: text and images.
fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return text_blocks(content, i);
    };
    parts
        .iter()
        .map(|p| match p.get("type").and_then(Value::as_str) {
            Some("text") => Ok(json!({"type": "text", "text": text_of(p, i)?})),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(
                            "messages",
                            format!("messages[{i}]: image_url.url is required"),
                        )
                    })?;
                image(url, i)
            }
            other => Err(TranslateError::untranslatable(
                "messages",
                format!(
                    "messages[{i}]: {} parts cannot be translated for this model's provider",
                    other.unwrap_or("typeless")
                ),
            )),
        })
        .collect()
}

/// An image block from an OpenAI image URL: a data URL becomes a base64 source, an http(s)
/// URL a url source.
fn image(url: &str, i: usize) -> Result<Value, TranslateError> {
    if let Some((media_type, data)) = split_data_url(url) {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid(
        "messages",
        format!("messages[{i}]: an image URL must be a base64 data URL or an http(s) URL"),
    ))
}

/// Assistant content: text (and refusal) parts as text blocks.
fn assistant_text(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return text_blocks(content, i);
    };
    parts
        .iter()
        .filter_map(|p| {
            let text = match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text"),
                Some("refusal") => p.get("refusal"),
                _ => None,
            };
            match text.and_then(Value::as_str) {
                Some("") => None,
                Some(t) => Some(Ok(json!({"type": "text", "text": t}))),
                None => Some(Err(TranslateError::untranslatable(
                    "messages",
                    format!(
                        "messages[{i}]: only text and refusal parts can be translated in an assistant message"
                    ),
                ))),
            }
        })
        .collect()
}

/// `tool_use` blocks from an assistant's `tool_calls`.
fn tool_uses(calls: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let calls = calls.as_array().ok_or_else(|| {
        TranslateError::invalid("messages", format!("messages[{i}].tool_calls must be an array"))
    })?;
    calls
        .iter()
        .map(|c| {
            let bad =
                |what: &str| TranslateError::invalid("messages", format!("messages[{i}].tool_calls: {what}"));
            if c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t != "function")
            {
                return Err(TranslateError::untranslatable(
                    "messages",
                    format!("messages[{i}].tool_calls: only function calls can be translated"),
                ));
            }
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`id` is required"))?;
            let f = c.get("function").ok_or_else(|| bad("`function` is required"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`function.name` is required"))?;
            let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
            let input: Value = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(args).map_err(|_| bad("`function.arguments` must be a JSON object"))?
            };
            if !input.is_object() {
                return Err(bad("`function.arguments` must be a JSON object"));
            }
            Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
        })
        .collect()
}

/// Anthropic tools from OpenAI function tools.
fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "`tools` must be an array"))?;
    let out: Result<Vec<Value>, TranslateError> = list
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(TranslateError::untranslatable(
                    "tools",
                    format!("tools[{i}]: only function tools can be translated"),
                ));
            }
            let f = t.get("function").and_then(Value::as_object).ok_or_else(|| {
                TranslateError::invalid("tools", format!("tools[{i}].function is required"))
            })?;
            if f.get("strict").and_then(Value::as_bool) == Some(true) {
                return Err(TranslateError::untranslatable(
                    "tools",
                    format!(
                        "tools[{i}]: strict schema adherence has no equivalent for this model's provider"
                    ),
                ));
            }
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid("tools", format!("tools[{i}].function.name is required"))
            })?;
            let schema = f
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut tool = json!({"name": name, "input_schema": schema});
            if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
                tool["description"] = d.clone();
            }
            Ok(tool)
        })
        .collect();
    Ok(Value::Array(out?))
}

/// Anthropic `tool_choice` from OpenAI's.
fn tool_choice(v: &Value) -> Result<Value, TranslateError> {
    match v {
        Value::String(s) => match s.as_str() {
            "none" => Ok(json!({"type": "none"})),
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            _ => Err(TranslateError::invalid(
                "tool_choice",
                format!("`tool_choice` {s:?} is not known"),
            )),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid("tool_choice", "`tool_choice.function.name` is required")
                })?;
            Ok(json!({"type": "tool", "name": name}))
        }
        _ => Err(TranslateError::untranslatable(
            "tool_choice",
            "only none, auto, required and a named function can be translated",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_full_conversation_is_translated() {
        let body = json!({
            "model": "claude-x",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "look", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
                {"role": "user", "content": "thanks"}
            ],
            "max_tokens": 100,
            "max_completion_tokens": 50,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "look", "description": "Looks", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u-1",
            "n": 1
        });
        let out = request(&body).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is here?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "look", "input": {"x": 1}},
                        {"type": "tool_use", "id": "call_2", "name": "look", "input": {}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "a cat"}]},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
                        {"type": "text", "text": "thanks"}
                    ]}
                ],
                "max_tokens": 50,
                "temperature": 0.5,
                "top_p": 0.9,
                "stop_sequences": ["END"],
                "stream": true,
                "tools": [{"name": "look", "description": "Looks", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                "metadata": {"user_id": "u-1"}
            })
        );
    }

    #[test]
    fn defaults_fill_what_anthropic_requires() {
        let out = request(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        );
        assert!(out.get("system").is_none());
        let out = request(&json!({"model": "m", "messages": [], "max_tokens": 7, "tool_choice": {"type": "function", "function": {"name": "f"}}})).unwrap();
        assert_eq!(out["max_tokens"], 7);
        assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
        let out = request(&json!({"model": "m", "messages": [], "stop": ["a", "b"], "tool_choice": "none", "parallel_tool_calls": false})).unwrap();
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        assert_eq!(out["tool_choice"], json!({"type": "none"}));
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        let field = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = request(&body).unwrap_err();
            (e.field, e.untranslatable)
        };
        assert_eq!(field(json!({"n": 2})), ("n", true));
        assert_eq!(field(json!({"logprobs": true})), ("logprobs", true));
        assert_eq!(field(json!({"top_logprobs": 3})), ("top_logprobs", true));
        assert_eq!(
            field(json!({"presence_penalty": 0.5})),
            ("presence_penalty", true)
        );
        assert_eq!(field(json!({"logit_bias": {"1": 2}})), ("logit_bias", true));
        assert_eq!(field(json!({"seed": 1})), ("seed", true));
        assert_eq!(
            field(json!({"response_format": {"type": "json_object"}})),
            ("response_format", true)
        );
        assert_eq!(field(json!({"temperature": 1.5})), ("temperature", true));
        assert_eq!(field(json!({"something_new": 1})), ("body", true));
        assert_eq!(
            field(json!({"tools": [{"type": "function", "function": {"name": "f", "strict": true}}]})),
            ("tools", true)
        );
        assert_eq!(
            field(
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})
            ),
            ("messages", true)
        );
        assert_eq!(
            field(json!({"messages": [{"role": "user", "name": "bob", "content": "x"}]})),
            ("messages", true)
        );
        assert_eq!(field(json!({"messages": "hi"})), ("messages", false));
        assert_eq!(field(json!({"max_tokens": 0})), ("max_tokens", false));
        assert_eq!(field(json!({"max_tokens": -5})), ("max_tokens", false));
        assert_eq!(
            field(
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1"}}]}]})
            ),
            ("messages", false)
        );
        assert_eq!(
            field(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]})
            ),
            ("messages", false)
        );
        // Defaults are not refusals.
        let ok = json!({"model": "m", "messages": [], "n": 1, "logprobs": false, "presence_penalty": 0,
            "response_format": {"type": "text"}, "seed": null, "store": false});
        assert!(request(&ok).is_ok());
    }

    #[test]
    fn hostile_shapes_never_panic() {
        for body in [
            json!(null),
            json!([]),
            json!({"messages": [null, 1, "x", {"role": 5}]}),
            json!({"messages": [{"role": "tool"}]}),
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": null}]}]}),
            json!({"messages": [], "tools": [{"type": "function"}], "tool_choice": {"type": "function"}}),
            json!({"messages": [], "tool_choice": [1]}),
            json!({"messages": [], "max_tokens": 1e300}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        ] {
            assert!(request(&body).is_err(), "{body}");
        }
    }
}
