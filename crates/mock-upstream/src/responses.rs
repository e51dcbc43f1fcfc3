//! `POST /v1/responses`: OpenAI's Responses API, plain and streamed.
//!
//! `previous_response_id` is echoed into the answer so a test can see which upstream received
//! the follow-up of a conversation.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::{
    behavior::{Behavior, Endpoint, Format},
    script::{self, Script},
    server::{Begun, Shared, unix_now},
};

/// `POST /v1/responses` and `POST /responses`.
pub(crate) async fn responses(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    let begun = match state
        .begin(Endpoint::Responses, Format::OpenAi, &req, &body)
        .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if begun.stream {
        let script = stream(&begun);
        return state.answer_stream(&begun, script).await;
    }
    let b = &begun.c.behavior;
    let text = format!("Hello from {}", state.name);
    let answer = response(
        &begun,
        "completed",
        json!([message(begun.id, "completed", &text)]),
        usage(b, b.completion_tokens),
    );
    state.answer_json(&begun, Bytes::from(answer.to_string())).await
}

fn response(begun: &Begun, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": format!("resp_mock_{}", begun.id),
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "model": begun.model,
        "output": output,
        "previous_response_id": begun.json.get("previous_response_id").cloned().unwrap_or(Value::Null),
        "error": null,
        "incomplete_details": null,
        "usage": usage,
    })
}

fn message(id: u64, status: &str, text: &str) -> Value {
    json!({
        "type": "message",
        "id": format!("msg_mock_{id}"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn usage(b: &Behavior, output: u64) -> Value {
    let p = b.prompt_tokens;
    json!({
        "input_tokens": p,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": p.saturating_add(output),
    })
}

/// Named events in OpenAI's order: `response.created`, `response.in_progress`,
/// `response.output_item.added`, `response.content_part.added`, one
/// `response.output_text.delta` per chunk (`tok<i> `), then `response.output_text.done`,
/// `response.content_part.done`, `response.output_item.done` and `response.completed` (the
/// whole response with usage). A scripted mid-stream failure is `response.failed`.
fn stream(begun: &Begun) -> Script {
    let b = &begun.c.behavior;
    let n = script::chunk_count(b);
    let item_id = format!("msg_mock_{}", begun.id);
    let mut seq = 0u64;
    let mut next = || {
        seq += 1;
        seq - 1
    };
    let pending = response(begun, "in_progress", json!([]), Value::Null);
    let mut head = String::new();
    for kind in ["response.created", "response.in_progress"] {
        script::push_event(
            &mut head,
            kind,
            &json!({"type": kind, "sequence_number": next(), "response": pending}),
        );
    }
    let mut empty = message(begun.id, "in_progress", "");
    empty["content"] = json!([]);
    script::push_event(
        &mut head,
        "response.output_item.added",
        &json!({"type": "response.output_item.added", "sequence_number": next(),
                "output_index": 0, "item": empty}),
    );
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    script::push_event(
        &mut head,
        "response.content_part.added",
        &json!({"type": "response.content_part.added", "sequence_number": next(),
                "item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
    );

    let deltas: Vec<String> = (0..n).map(|i| format!("tok{i} ")).collect();
    let chunks = deltas
        .iter()
        .map(|d| {
            script::event(
                "response.output_text.delta",
                &json!({"type": "response.output_text.delta", "sequence_number": next(),
                        "item_id": item_id, "output_index": 0, "content_index": 0, "delta": d}),
            )
        })
        .collect();

    let text = deltas.concat();
    let mut tail = String::new();
    script::push_event(
        &mut tail,
        "response.output_text.done",
        &json!({"type": "response.output_text.done", "sequence_number": next(),
                "item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
    );
    script::push_event(
        &mut tail,
        "response.content_part.done",
        &json!({"type": "response.content_part.done", "sequence_number": next(),
                "item_id": item_id, "output_index": 0, "content_index": 0, "part": part(&text)}),
    );
    let done = message(begun.id, "completed", &text);
    script::push_event(
        &mut tail,
        "response.output_item.done",
        &json!({"type": "response.output_item.done", "sequence_number": next(),
                "output_index": 0, "item": done}),
    );
    let completed = response(begun, "completed", json!([done]), usage(b, n as u64));
    script::push_event(
        &mut tail,
        "response.completed",
        &json!({"type": "response.completed", "sequence_number": next(), "response": completed}),
    );
    let mut failed = response(begun, "failed", json!([]), Value::Null);
    failed["error"] = json!({"code": "server_error", "message": "mock: stream failed"});
    let error = script::event(
        "response.failed",
        &json!({"type": "response.failed", "sequence_number": next(), "response": failed}),
    );
    Script {
        head: Bytes::from(head),
        chunks,
        tail: Bytes::from(tail),
        error,
    }
}
