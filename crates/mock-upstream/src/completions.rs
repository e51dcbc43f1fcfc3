//! `POST /v1/completions`: OpenAI's legacy text completions, plain and streamed.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::{
    behavior::{Endpoint, Format},
    script::{self, Script},
    server::{Begun, Shared, openai_error, unix_now},
};

/// `POST /v1/completions` and `POST /completions`.
pub(crate) async fn completions(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Shared>,
) -> HttpResponse {
    let begun = match state
        .begin(Endpoint::Completions, Format::OpenAi, &req, &body)
        .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !begun
        .json
        .get("prompt")
        .is_some_and(|p| p.is_string() || p.is_array())
    {
        let body = openai_error(
            "'prompt' is required: a string or an array",
            "invalid_request_error",
            "invalid_request",
        );
        return state.answer_error(&begun, StatusCode::BAD_REQUEST, body).await;
    }
    if begun.stream {
        let script = stream(&begun);
        return state.answer_stream(&begun, script).await;
    }
    let b = &begun.c.behavior;
    let mut answer = chunk(
        &begun,
        json!([{
            "text": format!("Hello from {}", state.name),
            "index": 0,
            "logprobs": null,
            "finish_reason": "stop",
        }]),
    );
    answer["usage"] = script::openai_usage(b.prompt_tokens, b.completion_tokens);
    state.answer_json(&begun, Bytes::from(answer.to_string())).await
}

/// A `text_completion` object with `choices` (plain answers and stream chunks share it).
fn chunk(begun: &Begun, choices: Value) -> Value {
    json!({
        "id": format!("cmpl-mock-{}", begun.id),
        "object": "text_completion",
        "created": unix_now(),
        "model": begun.model,
        "choices": choices,
    })
}

/// `data:` chunks with `tok<i> ` texts, a finish chunk, the usage chunk when
/// `stream_options.include_usage`, then `[DONE]`.
fn stream(begun: &Begun) -> Script {
    let b = &begun.c.behavior;
    let n = script::chunk_count(b);
    let text = |t: String, finish: Value| json!([{"text": t, "index": 0, "logprobs": null, "finish_reason": finish}]);
    let chunks = (0..n)
        .map(|i| script::data(&chunk(begun, text(format!("tok{i} "), Value::Null))))
        .collect();
    let mut tail = String::new();
    script::push_data(&mut tail, &chunk(begun, text(String::new(), json!("stop"))));
    let include_usage = begun
        .json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let usage_chunk = include_usage.then(|| chunk(begun, json!([])));
    script::end_openai_stream(&mut tail, usage_chunk, b.prompt_tokens, n as u64);
    Script {
        head: Bytes::new(),
        chunks,
        tail: Bytes::from(tail),
        error: script::openai_stream_error(),
    }
}
