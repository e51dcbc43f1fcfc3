//! An Anthropic Messages event stream → OpenAI chat completion chunks, event by event.
//!
//! | Anthropic event | OpenAI chunk |
//! |---|---|
//! | `message_start` | `delta: {role: "assistant", content: ""}` |
//! | `content_block_start` (`tool_use`) | `delta.tool_calls[n]` with `id`, `name`, empty `arguments` |
//! | `content_block_delta` `text_delta` | `delta.content` |
//! | `content_block_delta` `input_json_delta` | `delta.tool_calls[n].function.arguments` |
//! | `message_delta` | (stop reason and usage remembered) |
//! | `message_stop` | `finish_reason` chunk, the usage chunk when asked, `[DONE]` |
//!
//! `ping` and thinking deltas produce nothing; an `error` event is the observer's to report
//! (it ends the stream with an error event in the client's format).

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::translate::raw::{members, object, text_of, value_of};
use crate::translate::sse::{Event, TranslateEvent, Translating};
use crate::translate::{Tokens, finish_reason_from_anthropic, write_sse_event};

/// `delta: {role: "assistant", content: ""}`, the first chunk.
#[derive(Serialize)]
struct RoleDelta {
    role: &'static str,
    content: &'static str,
}

/// `delta: {content: …}`: the text as the upstream sent it.
#[derive(Serialize)]
struct ContentDelta<'a, T: ?Sized> {
    content: &'a T,
}

/// `delta: {}`, with the finish reason.
#[derive(Serialize)]
struct EmptyDelta {}

/// The translator's state: a few counters, whatever the stream's length.
#[derive(Debug)]
pub struct ToChatChunks {
    id: String,
    model: String,
    created: i64,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    include_usage: bool,
    /// The OpenAI index of the tool call whose block is open.
    open_tool: Option<usize>,
    tool_calls: usize,
    tokens: Tokens,
    stop_reason: Option<String>,
    finished: bool,
    /// Every chunk's bytes up to its delta (`data: {"id":…,"choices":[{"index":0,"delta":`),
    /// the same for the whole stream once the message has started: written once, not
    /// serialised (and its strings escaped) again for each event. Empty until first needed.
    head: Vec<u8>,
}

impl ToChatChunks {
    /// A translator for a client that asked (or not) for the usage chunk, stamping `created`.
    pub fn new(created: i64, include_usage: bool) -> Translating<Self> {
        Translating::new(ToChatChunks {
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            open_tool: None,
            tool_calls: 0,
            tokens: Tokens::default(),
            stop_reason: None,
            finished: false,
            head: Vec::new(),
        })
    }

    /// Appends one `chat.completion.chunk` event: the id, object, created and model, in
    /// OpenAI's member order, and one choice with `delta`.
    fn chunk(&mut self, delta: impl Serialize, finish: Option<&str>, out: &mut Vec<u8>) {
        if self.head.is_empty() {
            let h = &mut self.head;
            h.extend_from_slice(b"data: {\"id\":");
            // Strings, an integer and `Serialize` structs of them: these cannot fail.
            let _ = serde_json::to_writer(&mut *h, &self.id);
            h.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            let _ = serde_json::to_writer(&mut *h, &self.created);
            h.extend_from_slice(b",\"model\":");
            let _ = serde_json::to_writer(&mut *h, &self.model);
            h.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        }
        out.extend_from_slice(&self.head);
        let _ = serde_json::to_writer(&mut *out, &delta);
        // Anthropic gives no log probabilities.
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        let _ = serde_json::to_writer(&mut *out, &finish);
        out.extend_from_slice(b"}]}\n\n");
    }

    /// Translates one event, appending what the client receives to `out`.
    fn translate(&mut self, e: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let Some(data) = object::<Members>(&e.data) else {
            return;
        };
        let kind = text_of(data.kind);
        match kind.as_deref().or(e.name.as_deref()) {
            Some("message_start") => {
                let m: Members = members(data.message);
                self.id = text_of(m.id).unwrap_or_default().into_owned();
                self.model = text_of(m.model).unwrap_or_default().into_owned();
                // The chunks from here on carry this id and model.
                self.head.clear();
                if let Some(u) = value_of(m.usage) {
                    self.tokens = Tokens::from_anthropic(&u);
                }
                let role = RoleDelta {
                    role: "assistant",
                    content: "",
                };
                self.chunk(role, None, out);
            }
            Some("content_block_start") => {
                let block: Members = members(data.content_block);
                match text_of(block.kind).as_deref() {
                    Some("tool_use") => {
                        let index = self.tool_calls;
                        self.tool_calls += 1;
                        self.open_tool = Some(index);
                        let call = ToolStart {
                            index,
                            id: block.id,
                            kind: "function",
                            function: FunctionStart {
                                name: block.name,
                                arguments: "",
                            },
                        };
                        self.chunk(ToolCallsDelta { tool_calls: [call] }, None, out);
                    }
                    Some("text") => {
                        if let Some(t) = text_of(block.text).filter(|t| !t.is_empty()) {
                            self.chunk(ContentDelta { content: &*t }, None, out);
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let delta: Members = members(data.delta);
                match text_of(delta.kind).as_deref() {
                    Some("text_delta") => {
                        self.chunk(ContentDelta { content: &delta.text }, None, out);
                    }
                    Some("input_json_delta") => {
                        if let Some(index) = self.open_tool {
                            let call = ToolArguments {
                                index,
                                function: FunctionArguments {
                                    arguments: delta.partial_json,
                                },
                            };
                            self.chunk(ToolCallsDelta { tool_calls: [call] }, None, out);
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => self.open_tool = None,
            Some("message_delta") => {
                if let Some(r) = text_of(members::<Members>(data.delta).stop_reason) {
                    self.stop_reason = Some(r.into_owned());
                }
                if let Some(u) = value_of(data.usage) {
                    self.tokens.merge_delta(&u);
                }
            }
            Some("message_stop") => {
                let finish = finish_reason_from_anthropic(self.stop_reason.as_deref());
                self.chunk(EmptyDelta {}, Some(finish), out);
                if self.include_usage {
                    let c = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": self.tokens.to_openai(),
                    });
                    write_sse_event(out, None, &c);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.finished = true;
            }
            _ => {}
        }
    }
}

/// The members of an Anthropic event (or of its `message`, `content_block` or `delta`) that
/// the translator reads, each as its raw JSON text: an event is walked once and builds no
/// map. What is passed on (a text, a tool's id and name, its argument pieces) goes out as
/// the upstream wrote it. A member of an unexpected type reads as absent (see
/// `translate::raw`), as a lookup in a `Value` would; only data that is not one JSON object,
/// or that names a member twice, drops the event.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Members<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    #[serde(borrow)]
    partial_json: Option<&'a RawValue>,
    #[serde(borrow)]
    stop_reason: Option<&'a RawValue>,
}

/// `delta: {tool_calls: [call]}`.
#[derive(Serialize)]
struct ToolCallsDelta<C> {
    tool_calls: [C; 1],
}

/// A tool call's first chunk: its id and name, empty arguments.
#[derive(Serialize)]
struct ToolStart<'a> {
    index: usize,
    id: Option<&'a RawValue>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionStart<'a>,
}

#[derive(Serialize)]
struct FunctionStart<'a> {
    name: Option<&'a RawValue>,
    arguments: &'static str,
}

/// A piece of a tool call's arguments.
#[derive(Serialize)]
struct ToolArguments<'a> {
    index: usize,
    function: FunctionArguments<'a>,
}

#[derive(Serialize)]
struct FunctionArguments<'a> {
    arguments: Option<&'a RawValue>,
}

impl TranslateEvent for ToChatChunks {
    fn event(&mut self, e: &Event, out: &mut Vec<u8>) {
        self.translate(e, out);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::Value;

    use super::*;
    use crate::upstream::sse::ChunkTransform;

    pub(crate) const STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"cache_read_input_tokens\":4}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"look\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn chunks(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| {
                if d == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn events_become_chunks_wherever_the_stream_splits() {
        let mut expected = None;
        for split in [1, 7, 64, STREAM.len()] {
            let mut t = ToChatChunks::new(1700, true);
            let mut out = Vec::new();
            for part in STREAM.as_bytes().chunks(split) {
                out.extend_from_slice(&t.pass(Bytes::copy_from_slice(part)));
            }
            let got = chunks(&out);
            if let Some(e) = &expected {
                assert_eq!(&got, e, "split {split}");
            }
            expected = Some(got);
        }
        let got = expected.unwrap();
        let mut t = ToChatChunks::new(1700, true);
        let first = t.pass(Bytes::from_static(STREAM.as_bytes()));
        assert!(
            first.starts_with(
                br#"data: {"id":"msg_1","object":"chat.completion.chunk","created":1700,"model":"claude-x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"msg_1","#
            ),
            "{}",
            String::from_utf8_lossy(&first)
        );
        let deltas: Vec<&Value> = got.iter().filter_map(|c| c["choices"][0].get("delta")).collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], &json!({"content": "Hi"}));
        assert_eq!(
            deltas[2],
            &json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": ""}}]})
        );
        assert_eq!(deltas[3]["tool_calls"][0]["function"]["arguments"], "{\"x\":");
        assert_eq!(deltas[4]["tool_calls"][0]["function"]["arguments"], "1}");
        let finish = &got[got.len() - 3];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(finish["id"], "msg_1");
        assert_eq!(finish["model"], "claude-x");
        let usage = &got[got.len() - 2];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 4}})
        );
        assert_eq!(got.last().unwrap(), &json!("[DONE]"));
    }

    #[test]
    fn no_usage_chunk_unless_asked_and_nothing_after_the_end() {
        let mut t = ToChatChunks::new(0, false);
        let mut out = t.pass(Bytes::from_static(STREAM.as_bytes())).to_vec();
        out.extend_from_slice(&t.pass(Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n",
        )));
        let got = chunks(&out);
        assert!(got.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(got.last().unwrap(), &json!("[DONE]"));
        assert!(!String::from_utf8_lossy(&out).contains("late"));
    }

    #[test]
    fn garbage_events_are_skipped() {
        let mut t = ToChatChunks::new(0, false);
        let out = t.pass(Bytes::from_static(
            b"data: not json\n\ndata: {\"type\":\"content_block_delta\",\"delta\":null}\n\ndata: {\"type\":\"content_block_start\",\"content_block\":5}\n\n",
        ));
        assert!(out.is_empty());
    }

    /// Members of unexpected types read as absent, escapes are kept, and a text passes on
    /// exactly as the upstream wrote it.
    #[test]
    fn odd_members_read_as_absent_and_texts_pass_as_written() {
        let mut t = ToChatChunks::new(0, false);
        let stream = concat!(
            // `type` not a string: the event name decides; `message` not an object.
            "event: message_start\ndata: {\"type\":7,\"message\":[1]}\n\n",
            // An escaped type name, and a text with escapes and a non-ASCII character.
            r#"data: {"type":"content_block_\u0064elta","delta":{"type":"text_delta","text":"a\"b\n\u00e9 é"}}"#,
            "\n\n",
            // A text that is not a string passes on as it is (as it did through a `Value`).
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":5}}\n\n",
            // No tool is open: an argument piece is dropped.
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":[]},\"usage\":\"x\"}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let out = t.pass(Bytes::from_static(stream.as_bytes()));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(r#""delta":{"content":"a\"b\n\u00e9 é"}"#), "{text}");
        let got = chunks(&out);
        assert_eq!(got[0]["id"], "");
        assert_eq!(got[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(got[1]["choices"][0]["delta"]["content"], "a\"b\n\u{e9} \u{e9}");
        assert_eq!(got[2]["choices"][0]["delta"]["content"], 5);
        assert_eq!(got[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(got.len(), 5, "{text}");
        assert_eq!(got[4], json!("[DONE]"));
    }

    /// An array is no object: its elements are never read as members by position.
    #[test]
    fn arrays_are_not_read_as_members() {
        let mut t = ToChatChunks::new(0, false);
        let stream = concat!(
            "data: [\"content_block_delta\",null,null,{\"type\":\"text_delta\",\"text\":\"x\"}]\n\n",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":[\"message\",null,null,null,null,\"msg_x\",\"m\"]}\n\n",
        );
        let got = chunks(&t.pass(Bytes::from_static(stream.as_bytes())));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["id"], "");
        assert_eq!(got[0]["model"], "");
    }
}
