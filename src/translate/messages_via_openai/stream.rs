//! OpenAI chat completion chunks → an Anthropic Messages event stream, chunk by chunk.
//!
//! | OpenAI chunk | Anthropic events |
//! |---|---|
//! | the first chunk | `message_start` (usage still zero) |
//! | `delta.content` | `content_block_start` (text) once, then `content_block_delta` `text_delta` |
//! | `delta.tool_calls[n]` with a new call | `content_block_stop` of the open block, `content_block_start` (`tool_use`) |
//! | `delta.tool_calls[n].function.arguments` | `content_block_delta` `input_json_delta` |
//! | `finish_reason` | (remembered as `stop_reason`) |
//! | the usage chunk | (remembered) |
//! | `[DONE]` | `content_block_stop`, `message_delta` with stop reason and usage, `message_stop` |
//!
//! Blocks are opened and closed in order, never interleaved, as Anthropic's clients expect.

use serde_json::{Value, json};

use crate::translate::sse::{Event, TranslateEvent, Translating};
use crate::translate::{Tokens, stop_reason_from_openai, write_sse_event};

/// The block being streamed.
#[derive(Debug, Clone, PartialEq)]
enum Open {
    Text,
    /// A tool call: OpenAI's index of it and its id.
    Tool {
        openai_index: u64,
        id: Option<String>,
    },
}

/// The translator's state: a few counters, whatever the stream's length.
#[derive(Debug, Default)]
pub struct ToAnthropicEvents {
    started: bool,
    /// The Anthropic index of the open block, and what it is.
    open: Option<(usize, Open)>,
    next_index: usize,
    stop_reason: Option<&'static str>,
    tokens: Tokens,
    finished: bool,
}

impl ToAnthropicEvents {
    pub fn new() -> Translating<Self> {
        Translating::new(ToAnthropicEvents::default())
    }

    fn emit(name: &str, data: Value, out: &mut Vec<u8>) {
        write_sse_event(out, Some(name), &data);
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = chunk
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("msg_switchyard");
        let model = chunk.get("model").and_then(Value::as_str).unwrap_or("");
        Self::emit(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
            out,
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            Self::emit(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
    }

    fn open(&mut self, block: Open, content_block: Value, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        Self::emit(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": content_block}),
            out,
        );
        self.open = Some((index, block));
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match &self.open {
            Some((i, Open::Text)) => *i,
            _ => self.open(Open::Text, json!({"type": "text", "text": ""}), out),
        };
        Self::emit(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
            out,
        );
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let openai_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call.get("id").and_then(Value::as_str).filter(|i| !i.is_empty());
        let f = call.get("function").unwrap_or(&Value::Null);
        let same = matches!(&self.open, Some((_, Open::Tool { openai_index: o, id: open_id }))
            if *o == openai_index && (id.is_none() || open_id.as_deref() == id));
        let index = match &self.open {
            Some((i, _)) if same => *i,
            _ => {
                let next = self.next_index;
                let block = json!({
                    "type": "tool_use",
                    "id": id.map_or_else(|| format!("toolu_{next}"), str::to_string),
                    "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
                    "input": {},
                });
                let open = Open::Tool {
                    openai_index,
                    id: id.map(str::to_string),
                };
                self.open(open, block, out)
            }
        };
        if let Some(args) = f
            .get("arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            Self::emit(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                out,
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(&Value::Null, out);
        self.close(out);
        let t = self.tokens;
        Self::emit(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": {"output_tokens": t.output, "input_tokens": t.input,
                    "cache_read_input_tokens": t.cache_read, "cache_creation_input_tokens": t.cache_creation}}),
            out,
        );
        Self::emit("message_stop", json!({"type": "message_stop"}), out);
        self.finished = true;
    }

    /// Translates one event, appending what the client receives to `out`.
    fn translate(&mut self, e: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if e.data.trim() == "[DONE]" {
            return self.finish(out);
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&e.data) else {
            return;
        };
        if chunk.get("error").is_some() {
            return;
        }
        self.start(&chunk, out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.tokens = Tokens::from_openai(u);
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(t, out);
        }
        if let Some(r) = delta
            .get("refusal")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(r, out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(call, out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason_from_openai(Some(f)));
        }
    }
}

impl TranslateEvent for ToAnthropicEvents {
    fn event(&mut self, e: &Event, out: &mut Vec<u8>) {
        self.translate(e, out);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::upstream::sse::ChunkTransform;

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    fn stream() -> String {
        [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "look", "arguments": ""}}]}),
                None,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), None),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "other", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ]
        .concat()
    }

    fn events(out: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_string();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str(), "the event name matches its type");
                (name, data)
            })
            .collect()
    }

    #[test]
    fn chunks_become_events_in_anthropic_order_wherever_the_stream_splits() {
        let all = stream();
        let mut expected = None;
        for split in [1, 5, 100, all.len()] {
            let mut t = ToAnthropicEvents::new();
            let mut out = Vec::new();
            for part in all.as_bytes().chunks(split) {
                out.extend_from_slice(&t.pass(Bytes::copy_from_slice(part)));
            }
            let got = events(&out);
            if let Some(e) = &expected {
                assert_eq!(&got, e, "split {split}");
            }
            expected = Some(got);
        }
        let got = expected.unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(got[0].1["message"]["id"], "chatcmpl-1");
        assert_eq!(got[0].1["message"]["model"], "gpt-x");
        assert_eq!(got[2].1["delta"], json!({"type": "text_delta", "text": "Hel"}));
        assert_eq!(
            got[5].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "look", "input": {}})
        );
        assert_eq!(got[5].1["index"], 1);
        assert_eq!(
            got[6].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"q\":"})
        );
        assert_eq!(got[9].1["content_block"]["id"], "call_2");
        assert_eq!(got[9].1["index"], 2);
        assert_eq!(got[12].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            got[12].1["usage"],
            json!({"output_tokens": 9, "input_tokens": 10, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn an_empty_stream_still_ends_properly_and_nothing_follows_the_end() {
        let mut t = ToAnthropicEvents::new();
        let mut out = t.pass(Bytes::from_static(b"data: [DONE]\n\n")).to_vec();
        out.extend_from_slice(&t.pass(Bytes::from(chunk(json!({"content": "late"}), None))));
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    }

    #[test]
    fn providers_that_repeat_the_call_id_get_one_block_per_call() {
        let mut t = ToAnthropicEvents::new();
        let s = [
            chunk(json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": "}"}}]}), None),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let got = events(&t.pass(Bytes::from(s)));
        let starts = got.iter().filter(|(n, _)| n == "content_block_start").count();
        assert_eq!(starts, 1);
        assert_eq!(got.last().unwrap().0, "message_stop");
    }
}
