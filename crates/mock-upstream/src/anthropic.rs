//! `POST /v1/messages` in Anthropic's Messages format, `POST /v1/messages/count_tokens`, and
//! `GET /v1/models` in Anthropic's list shape.
//!
//! Checks what Anthropic checks before answering: `anthropic-version` present (400 otherwise),
//! `x-api-key` equal to [`Behavior::anthropic_api_key`] when one is set (401 otherwise), and a
//! body with `model`, `messages` and (except to count tokens) a positive integer `max_tokens`
//! (400 otherwise); a token count refuses `stream` as Anthropic refuses any member it does
//! not know (unless [`Behavior::ignore_stream`] makes it a lenient upstream that ignores
//! it). Errors use Anthropic's shape `{"type":"error","error":{"type","message"}}`.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::{
    behavior::{Behavior, Endpoint, Format, anthropic_error},
    script::{self, Script},
    server::{Begun, Shared},
    tools::{self, ToolCall},
};

/// `POST /v1/messages` and `POST /messages`.
pub(crate) async fn messages(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    let begun = match state
        .begin(Endpoint::Messages, Format::Anthropic, &req, &body)
        .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if let Some((status, kind, msg)) = refusal(&req, &begun, true) {
        return state
            .answer_error(&begun, status, anthropic_error(kind, &msg))
            .await;
    }
    let b = &begun.c.behavior;
    let names = tools::anthropic_tool_names(&begun.json);
    let call = tools::choose(b, &names, begun.json.get("tool_choice"), &state.name);
    if begun.stream {
        let script = stream(&begun, call.as_ref());
        return state.answer_stream(&begun, script).await;
    }
    let content = match &call {
        Some(call) => json!([tool_use_block(call, begun.id)]),
        None => json!([{"type": "text", "text": format!("Hello from {}", state.name)}]),
    };
    let answer = json!({
        "id": message_id(begun.id),
        "type": "message",
        "role": "assistant",
        "model": begun.model,
        "content": content,
        "stop_reason": if call.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": usage(b, b.completion_tokens),
    });
    state.answer_json(&begun, Bytes::from(answer.to_string())).await
}

/// `POST /v1/messages/count_tokens` and `POST /messages/count_tokens`: `{"input_tokens": n}`,
/// `n` being the behaviour's `prompt_tokens`.
pub(crate) async fn count_tokens(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Shared>,
) -> HttpResponse {
    let begun = match state
        .begin(Endpoint::CountTokens, Format::Anthropic, &req, &body)
        .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let lenient = begun.c.behavior.ignore_stream;
    let refused = refusal(&req, &begun, false).or_else(|| {
        let stream = begun.json.get("stream").filter(|_| !lenient);
        stream.map(|_| {
            let msg = "stream: Extra inputs are not permitted".to_owned();
            (StatusCode::BAD_REQUEST, "invalid_request_error", msg)
        })
    });
    if let Some((status, kind, msg)) = refused {
        return state
            .answer_error(&begun, status, anthropic_error(kind, &msg))
            .await;
    }
    let answer = json!({"input_tokens": begun.c.behavior.prompt_tokens});
    state.answer_json(&begun, Bytes::from(answer.to_string())).await
}

/// Why Anthropic would refuse this request, if it would: `(status, error type, message)`.
/// `max_tokens` is required of a message, not of a token count.
fn refusal(
    req: &HttpRequest,
    begun: &Begun,
    needs_max_tokens: bool,
) -> Option<(StatusCode, &'static str, String)> {
    let headers = req.headers();
    if let Some(key) = &begun.c.behavior.anthropic_api_key {
        let sent = headers.get("x-api-key").map(|v| v.as_bytes());
        if sent != Some(key.as_bytes()) {
            let msg = if sent.is_none() {
                "x-api-key header is required"
            } else {
                "invalid x-api-key"
            };
            return Some((StatusCode::UNAUTHORIZED, "authentication_error", msg.to_owned()));
        }
    }
    let bad = |msg: &str| Some((StatusCode::BAD_REQUEST, "invalid_request_error", msg.to_owned()));
    if !headers.contains_key("anthropic-version") {
        return bad("anthropic-version: header is required");
    }
    let body = &begun.json;
    if !body.get("model").is_some_and(Value::is_string) {
        return bad("model: Field required");
    }
    if !body.get("messages").is_some_and(Value::is_array) {
        return bad("messages: Field required");
    }
    match body.get("max_tokens") {
        None if !needs_max_tokens => None,
        None => bad("max_tokens: Field required"),
        Some(v) if v.as_u64().is_none_or(|n| n < 1) => {
            bad("max_tokens: Input should be a valid integer greater than or equal to 1")
        }
        Some(_) => None,
    }
}

fn message_id(id: u64) -> String {
    format!("msg_mock_{id}")
}

fn tool_use_block(call: &ToolCall, id: u64) -> Value {
    json!({"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": call.name, "input": call.input})
}

/// `usage` with `output` output tokens (and the cache field when the behaviour sets it).
fn usage(b: &Behavior, output: u64) -> Value {
    let mut u = json!({"input_tokens": b.prompt_tokens, "output_tokens": output});
    if let Some(cached) = b.cache_read_tokens {
        u["cache_read_input_tokens"] = json!(cached);
    }
    u
}

/// The streamed answer in Anthropic's event order: `message_start`, `content_block_start`,
/// `ping`, one `content_block_delta` per chunk (`text_delta`, or `input_json_delta` for a tool
/// call), then `content_block_stop`, `message_delta` (stop reason, output tokens) and
/// `message_stop` together. Text chunks are `tok<i> `, as in the chat stream. A scripted mid-stream failure is `event: error` `overloaded_error`.
fn stream(begun: &Begun, call: Option<&ToolCall>) -> Script {
    let b = &begun.c.behavior;
    let n = script::chunk_count(b);
    let start = json!({
        "type": "message_start",
        "message": {
            "id": message_id(begun.id),
            "type": "message",
            "role": "assistant",
            "model": begun.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(b, 1),
        },
    });
    let block = match call {
        Some(call) => {
            let mut block = tool_use_block(call, begun.id);
            block["input"] = json!({});
            block
        }
        None => json!({"type": "text", "text": ""}),
    };
    let mut head = String::new();
    script::push_event(&mut head, "message_start", &start);
    script::push_event(
        &mut head,
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    );
    script::push_event(&mut head, "ping", &json!({"type": "ping"}));

    let delta = |d: Value| {
        script::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": d}),
        )
    };
    let chunks = match call {
        Some(call) => script::split(&call.arguments(), n)
            .into_iter()
            .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p})))
            .collect(),
        None => (0..n)
            .map(|i| delta(json!({"type": "text_delta", "text": format!("tok{i} ")})))
            .collect(),
    };
    let mut tail = String::new();
    script::push_event(
        &mut tail,
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    );
    let stop = if call.is_some() { "tool_use" } else { "end_turn" };
    script::push_event(
        &mut tail,
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": n},
        }),
    );
    script::push_event(&mut tail, "message_stop", &json!({"type": "message_stop"}));
    Script {
        head: Bytes::from(head),
        chunks,
        tail: Bytes::from(tail),
        error: script::event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    }
}

/// `GET /v1/models` for a caller that sent `anthropic-version`.
pub(crate) fn models_body(models: &[String]) -> Bytes {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}))
        .collect();
    let v = json!({
        "data": data,
        "has_more": false,
        "first_id": models.first(),
        "last_id": models.last(),
    });
    Bytes::from(v.to_string())
}
