//! What translation between OpenAI chat and Anthropic Messages costs the router: CPU time per
//! request (request in, answer back) and per stream chunk, in both directions, next to the
//! native path's only body edit (the `model` splice). Pure functions, no I/O, one thread.
//!
//! ```text
//! cargo run --release --example translation_cost
//! ```

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use switchyard::translate::{chat_via_anthropic, messages_via_openai};
use switchyard::upstream::body;
use switchyard::upstream::sse::ChunkTransform;

/// Runs `f` `n` times and returns the mean time per run in microseconds.
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let n = 20_000;
    // A typical agent turn: a system prompt, a tool, a call and its result, ~1.5 KB.
    let chat = json!({
        "model": "claude-x", "max_tokens": 512, "temperature": 0.2, "stream": false,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. ".repeat(20)},
            {"role": "user", "content": "What is the weather in Paris and in Rome today?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 degrees."},
            {"role": "user", "content": "And Rome?"}
        ]
    });
    let chat_bytes = Bytes::from(chat.to_string());
    let messages = chat_via_anthropic::request(&chat).expect("translates");
    let messages_bytes = Bytes::from(messages.to_string());
    let anthropic_answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "In Rome it is cloudy, 19 degrees. ".repeat(4)}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 420, "output_tokens": 60}
    })
    .to_string();
    let openai_answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "In Rome it is cloudy, 19 degrees. ".repeat(4)}}],
        "usage": {"prompt_tokens": 420, "completion_tokens": 60, "total_tokens": 480}
    })
    .to_string();

    let head = body::parse(&chat_bytes).expect("parses");
    let native = time(n, || {
        black_box(body::for_upstream(
            &chat_bytes,
            &head,
            Some("claude-x-2025"),
            true,
        ));
    });
    let chat_req = time(n, || {
        let v: serde_json::Value = serde_json::from_slice(&chat_bytes).expect("json");
        black_box(chat_via_anthropic::request(&v).expect("ok").to_string());
    });
    let chat_ans = time(n, || {
        black_box(chat_via_anthropic::answer::answer(anthropic_answer.as_bytes(), 1).expect("ok"));
    });
    let msg_req = time(n, || {
        let v: serde_json::Value = serde_json::from_slice(&messages_bytes).expect("json");
        black_box(messages_via_openai::request(&v).expect("ok").to_string());
    });
    let msg_ans = time(n, || {
        black_box(messages_via_openai::answer::answer(openai_answer.as_bytes()).expect("ok"));
    });

    // Streams: one chunk per event, as upstreams send them.
    let anthropic_delta = Bytes::from_static(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello there\"}}\n\n",
    );
    let openai_delta = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"},\"finish_reason\":null}]}\n\n",
    );
    let mut to_chat = chat_via_anthropic::stream::ToChatChunks::new(1, false);
    to_chat.pass(Bytes::from_static(
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":1}}}\n\n",
    ));
    let chunk_to_chat = time(n * 5, || {
        black_box(to_chat.pass(anthropic_delta.clone()));
    });
    let mut to_anthropic = messages_via_openai::stream::ToAnthropicEvents::new();
    to_anthropic.pass(openai_delta.clone());
    let chunk_to_anthropic = time(n * 5, || {
        black_box(to_anthropic.pass(openai_delta.clone()));
    });

    println!("per request (µs, mean of {n}):");
    println!("  native: model splice only                     {native:>7.2}");
    println!("  OpenAI chat -> Anthropic: request             {chat_req:>7.2}");
    println!("  Anthropic -> OpenAI chat: answer              {chat_ans:>7.2}");
    println!("  Anthropic Messages -> OpenAI: request         {msg_req:>7.2}");
    println!("  OpenAI -> Anthropic Messages: answer          {msg_ans:>7.2}");
    println!("per stream chunk (µs):");
    println!("  Anthropic event -> OpenAI chunk               {chunk_to_chat:>7.2}");
    println!("  OpenAI chunk -> Anthropic event               {chunk_to_anthropic:>7.2}");
}
