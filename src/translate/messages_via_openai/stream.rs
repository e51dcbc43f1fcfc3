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
//!
//! A chunk is read through the few members the translator needs, kept as raw JSON text
//! (see `translate::raw`): texts, tool ids, names and argument pieces go out as the
//! upstream wrote them. Each event is written from typed structs, its members in the order
//! Anthropic's own streams give them, `type` first (a `json!` object would have sorted them
//! alphabetically, which is what this translator sent before; clients read either).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::translate::raw::{First, members, object, string_of, text_of, value_of};
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

    /// `message_start`, once, with the first chunk's id and model (when they are strings).
    fn start(&mut self, id: Option<&RawValue>, model: Option<&RawValue>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = StartMessage {
            id: Text::or(string_of(id), "msg_switchyard"),
            kind: "message",
            role: "assistant",
            model: Text::or(string_of(model), ""),
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: StartUsage {
                input_tokens: 0,
                output_tokens: 0,
            },
        };
        let piece = message.id.len() + message.model.len();
        let start = MessageStart {
            kind: "message_start",
            message,
        };
        emit(out, "message_start", piece, &start);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            let stop = BlockStop {
                kind: "content_block_stop",
                index,
            };
            emit(out, "content_block_stop", 0, &stop);
        }
    }

    /// Opens a block; `piece` is the length of the strings `content_block` carries.
    fn open(&mut self, block: Open, content_block: impl Serialize, piece: usize, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        let start = BlockStart {
            kind: "content_block_start",
            index,
            content_block,
        };
        emit(out, "content_block_start", piece, &start);
        self.open = Some((index, block));
        index
    }

    /// A piece of text (a JSON string, as the upstream wrote it).
    fn text(&mut self, text: &RawValue, out: &mut Vec<u8>) {
        let index = match &self.open {
            Some((i, Open::Text)) => *i,
            _ => {
                let block = TextBlock {
                    kind: "text",
                    text: "",
                };
                self.open(Open::Text, block, 0, out)
            }
        };
        let delta = TextDelta {
            kind: "text_delta",
            text,
        };
        self.delta(index, delta, text.get().len(), out);
    }

    /// A `content_block_delta`; `piece` is the length of the text or arguments it carries.
    fn delta(&mut self, index: usize, delta: impl Serialize, piece: usize, out: &mut Vec<u8>) {
        let event = BlockDelta {
            kind: "content_block_delta",
            index,
            delta,
        };
        emit(out, "content_block_delta", piece, &event);
    }

    /// One element of `delta.tool_calls` (anything: what is not an object has no members).
    fn tool_call(&mut self, raw: &RawValue, out: &mut Vec<u8>) {
        let call: ToolCall = members(Some(raw));
        let openai_index = call
            .index
            .and_then(|i| serde_json::from_str::<u64>(i.get()).ok())
            .unwrap_or(0);
        let id = text_of(call.id).filter(|i| !i.is_empty());
        let f: Function = members(call.function);
        let same = matches!(&self.open, Some((_, Open::Tool { openai_index: o, id: open_id }))
            if *o == openai_index && (id.is_none() || open_id.as_deref() == id.as_deref()));
        let index = match &self.open {
            Some((i, _)) if same => *i,
            _ => {
                let generated;
                let block_id = match (&id, call.id) {
                    // `text_of` read it: a string, passed on as written.
                    (Some(_), Some(raw)) => Text::Raw(raw),
                    _ => {
                        generated = format!("toolu_{}", self.next_index);
                        Text::Own(&generated)
                    }
                };
                let name = Text::or(string_of(f.name), "");
                let piece = block_id.len() + name.len();
                let block = ToolUseBlock {
                    kind: "tool_use",
                    id: block_id,
                    name,
                    input: Empty {},
                };
                let open = Open::Tool {
                    openai_index,
                    id: id.map(Cow::into_owned),
                };
                self.open(open, block, piece, out)
            }
        };
        if let Some(partial_json) = non_empty(string_of(f.arguments)) {
            let delta = InputJsonDelta {
                kind: "input_json_delta",
                partial_json,
            };
            self.delta(index, delta, partial_json.get().len(), out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(None, None, out);
        self.close(out);
        let t = self.tokens;
        let end = MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: self.stop_reason.unwrap_or("end_turn"),
                stop_sequence: None,
            },
            usage: DeltaUsage {
                output_tokens: t.output,
                input_tokens: t.input,
                cache_read_input_tokens: t.cache_read,
                cache_creation_input_tokens: t.cache_creation,
            },
        };
        emit(out, "message_delta", 0, &end);
        let stop = MessageStop { kind: "message_stop" };
        emit(out, "message_stop", 0, &stop);
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
        let Some(chunk) = object::<Chunk>(&e.data) else {
            return;
        };
        if chunk.error.is_some() {
            return;
        }
        self.start(chunk.id, chunk.model, out);
        if let Some(u) = value_of(chunk.usage).filter(|u| u.is_object()) {
            self.tokens = Tokens::from_openai(&u);
        }
        let Some(choice) = chunk.choices.0 else {
            return;
        };
        let choice: Choice = members(Some(choice));
        let delta: Delta = members(choice.delta);
        if let Some(t) = non_empty(string_of(delta.content)) {
            self.text(t, out);
        }
        if let Some(r) = non_empty(string_of(delta.refusal)) {
            self.text(r, out);
        }
        // Rare (a tool call's pieces), so collected.
        let calls = delta
            .tool_calls
            .and_then(|c| serde_json::from_str::<Vec<&RawValue>>(c.get()).ok());
        for call in calls.into_iter().flatten() {
            self.tool_call(call, out);
        }
        if let Some(f) = text_of(choice.finish_reason) {
            self.stop_reason = Some(stop_reason_from_openai(Some(&f)));
        }
    }
}

impl TranslateEvent for ToAnthropicEvents {
    fn event(&mut self, e: &Event, out: &mut Vec<u8>) {
        self.translate(e, out);
    }
}

/// Appends one event. `out` starts empty for each chunk: room for a whole event (its fixed
/// part and `piece`, the length of the strings it carries) is made at once, instead of the
/// buffer growing from a few bytes by doubling as the event is written.
fn emit(out: &mut Vec<u8>, name: &str, piece: usize, data: &impl Serialize) {
    out.reserve(EVENT_BYTES + piece);
    write_sse_event(out, Some(name), data);
}

/// More than the fixed part of any event (`message_start`, the longest, is about 250 bytes
/// besides its id and model).
const EVENT_BYTES: usize = 320;

/// A string member that is not `""` (a string with any character in it has more than its
/// two quotes, escaped or not).
fn non_empty(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "\"\"")
}

// What a chunk is read through: the members the translator needs, as raw JSON text. A
// member of an unexpected type reads as absent, as a lookup in a `Value` did; data that is
// not one JSON object, or names one of these members twice, drops the chunk (a nested object
// naming one twice reads as empty).

/// A chunk: `{id, model, choices: [{delta, finish_reason}], usage}`, or an error.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    /// Any value, `null` included, marks an error chunk (the observer reports it).
    #[serde(borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    /// Only the first choice is read.
    #[serde(borrow)]
    choices: First<'a>,
}

/// A member that is there, whatever its value (`Option`'s own reading takes `null` for
/// absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ToolCall<'a> {
    #[serde(borrow)]
    index: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    function: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Function<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

// What is written: each event's members in the order Anthropic's streams give them.

/// A string as the upstream wrote it (a JSON string), or one of the translator's own.
#[derive(Serialize)]
#[serde(untagged)]
enum Text<'a> {
    Raw(&'a RawValue),
    Own(&'a str),
}

impl<'a> Text<'a> {
    fn or(raw: Option<&'a RawValue>, default: &'a str) -> Text<'a> {
        raw.map_or(Text::Own(default), Text::Raw)
    }

    /// About the length written (an own string's escapes aside).
    fn len(&self) -> usize {
        match self {
            Text::Raw(r) => r.get().len(),
            Text::Own(s) => s.len() + 2,
        }
    }
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: Text<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: Text<'a>,
    content: [(); 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: StartUsage,
}

#[derive(Serialize)]
struct StartUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct BlockStart<B> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: B,
}

#[derive(Serialize)]
struct TextBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'static str,
}

#[derive(Serialize)]
struct ToolUseBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Text<'a>,
    name: Text<'a>,
    input: Empty,
}

/// `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct BlockDelta<D> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: D,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a RawValue,
}

#[derive(Serialize)]
struct InputJsonDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    partial_json: &'a RawValue,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: DeltaUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

/// `output_tokens` first, the member Anthropic's `message_delta` always has.
#[derive(Serialize)]
struct DeltaUsage {
    output_tokens: u64,
    input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
}

#[derive(Serialize)]
struct MessageStop {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

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

    fn pass(data: &str) -> String {
        let mut t = ToAnthropicEvents::new();
        String::from_utf8(t.pass(Bytes::from(data.to_string())).to_vec()).unwrap()
    }

    /// The member order is pinned: `type` first, then as Anthropic's streams give them.
    #[test]
    fn events_are_written_in_anthropic_member_order() {
        let out = pass(&stream());
        let expected = concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"chatcmpl-1","type":"message","role":"assistant","model":"gpt-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
            "\n\nevent: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n\nevent: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            "\n\n",
        );
        assert!(out.starts_with(expected), "{out}");
        let expected = concat!(
            "event: content_block_stop\n",
            r#"data: {"type":"content_block_stop","index":0}"#,
            "\n\nevent: content_block_start\n",
            r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_1","name":"look","input":{}}}"#,
            "\n\nevent: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\":"}}"#,
            "\n\n",
        );
        assert!(out.contains(expected), "{out}");
        let expected = concat!(
            "event: message_delta\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9,"input_tokens":10,"cache_read_input_tokens":2,"cache_creation_input_tokens":0}}"#,
            "\n\nevent: message_stop\n",
            r#"data: {"type":"message_stop"}"#,
            "\n\n",
        );
        assert!(out.ends_with(expected), "{out}");
    }

    /// Texts, argument pieces, tool ids and names go out byte for byte as the upstream wrote
    /// them, escapes included.
    #[test]
    fn escaped_strings_pass_on_as_written() {
        let s = concat!(
            r#"data: {"id":"c\u002d1","model":"g\"x","choices":[{"delta":{"content":"a\"b\u00e9"}}]}"#,
            "\n\n",
            r#"data: {"choices":[{"delta":{"refusal":"no\/\n"}}]}"#,
            "\n\n",
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call\u005f1","function":{"name":"lo\u006fk","arguments":"{\"q\":\"\u00e9\\\""}}]}}]}"#,
            "\n\n",
            "data: [DONE]\n\n",
        );
        let out = pass(s);
        for written in [
            r#""message":{"id":"c\u002d1","type":"message","role":"assistant","model":"g\"x","#,
            r#""delta":{"type":"text_delta","text":"a\"b\u00e9"}"#,
            r#""delta":{"type":"text_delta","text":"no\/\n"}"#,
            r#""content_block":{"type":"tool_use","id":"call\u005f1","name":"lo\u006fk","input":{}}"#,
            r#""delta":{"type":"input_json_delta","partial_json":"{\"q\":\"\u00e9\\\""}"#,
        ] {
            assert!(out.contains(written), "{written} in {out}");
        }
        let got = events(out.as_bytes());
        assert_eq!(got[0].1["message"]["id"], "c-1");
        assert_eq!(got[2].1["delta"]["text"], "a\"b\u{e9}");
        assert_eq!(got[5].1["content_block"]["name"], "look");
    }

    /// A member of an unexpected type reads as absent, as `Value::get(..).and_then(..)`
    /// read it.
    #[test]
    fn odd_members_read_as_absent() {
        let names =
            |s: &str| -> Vec<String> { events(pass(s).as_bytes()).into_iter().map(|(n, _)| n).collect() };
        let only_start_and_end = ["message_start", "message_delta", "message_stop"];
        for odd in [
            // `choices` not an array, or empty, or its first element not an object.
            r#"{"id":"c","choices":{"0":{"delta":{"content":"x"}}}}"#,
            r#"{"id":"c","choices":"x"}"#,
            r#"{"id":"c","choices":5}"#,
            r#"{"id":"c","choices":null}"#,
            r#"{"id":"c","choices":[]}"#,
            r#"{"id":"c","choices":[null,{"delta":{"content":"x"}}]}"#,
            r#"{"id":"c","choices":[["x"]]}"#,
            // `delta` not an object, or an array (read by name, never by position).
            r#"{"id":"c","choices":[{"delta":"x"}]}"#,
            r#"{"id":"c","choices":[{"delta":["x","x","x"]}]}"#,
            // `content` and `refusal` not strings, or empty.
            r#"{"id":"c","choices":[{"delta":{"content":5,"refusal":["x"]}}]}"#,
            r#"{"id":"c","choices":[{"delta":{"content":"","refusal":null}}]}"#,
            // A lone surrogate is no string: the content is absent.
            r#"{"id":"c","choices":[{"delta":{"content":"\ud800"}}]}"#,
            // `tool_calls` an object or a string.
            r#"{"id":"c","choices":[{"delta":{"tool_calls":{"0":{"id":"x"}}}}]}"#,
            r#"{"id":"c","choices":[{"delta":{"tool_calls":"x"}}]}"#,
        ] {
            assert_eq!(
                names(&format!("data: {odd}\n\ndata: [DONE]\n\n")),
                only_start_and_end,
                "{odd}"
            );
        }

        // `id` and `model` not strings: the defaults.
        let got = events(pass("data: {\"id\":5,\"model\":[\"m\"]}\n\ndata: [DONE]\n\n").as_bytes());
        assert_eq!(got[0].1["message"]["id"], "msg_switchyard");
        assert_eq!(got[0].1["message"]["model"], "");
        // `usage` a string, `finish_reason` a number: nothing counted, the default reason.
        let got = events(
            pass(concat!(
                "data: {\"choices\":[{\"delta\":{},\"finish_reason\":7}]}\n\n",
                "data: {\"choices\":[],\"usage\":\"12\"}\n\n",
                "data: [DONE]\n\n"
            ))
            .as_bytes(),
        );
        assert_eq!(got[1].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(got[1].1["usage"]["output_tokens"], 0);
        assert_eq!(got[1].1["usage"]["input_tokens"], 0);

        // A call that is not an object has no index, id nor function: a block of its own,
        // index 0, a generated id, no name. One whose `index` is a string reads as index 0,
        // whose `function` is a string has no name nor arguments, whose `arguments` is a
        // number has none.
        let s = concat!(
            r#"data: {"choices":[{"delta":{"tool_calls":[7]}}]}"#,
            "\n\n",
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":"1","id":"a","function":"f"}]}}]}"#,
            "\n\n",
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            "\n\n",
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":5}}]}}]}"#,
            "\n\n",
            "data: [DONE]\n\n",
        );
        let got = events(pass(s).as_bytes());
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            got[1].1["content_block"],
            json!({"type": "tool_use", "id": "toolu_0", "name": "", "input": {}})
        );
        assert_eq!(
            got[3].1["content_block"],
            json!({"type": "tool_use", "id": "a", "name": "", "input": {}})
        );
        assert_eq!(got[4].1["delta"]["partial_json"], "{}");
    }

    /// An index reads as `Value::as_u64` read it.
    #[test]
    fn tool_call_indexes_read_as_value_did() {
        for raw in [
            "0",
            "3",
            "1.0",
            "-1",
            "-0",
            "1e0",
            "18446744073709551615",
            "18446744073709551616",
            "\"1\"",
            "null",
            "[1]",
        ] {
            let r: &RawValue = serde_json::from_str(raw).unwrap();
            let v: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(serde_json::from_str::<u64>(r.get()).ok(), v.as_u64(), "{raw}");
        }
    }

    /// Data that is not one JSON object, an error chunk (even `"error": null`) and a chunk
    /// naming one of the members read twice are dropped; the message starts with the next.
    #[test]
    fn chunks_that_are_not_objects_or_errors_are_dropped() {
        let s = concat!(
            "data: 5\n\n",
            "data: [\"x\",\"y\"]\n\n",
            "data: \"x\"\n\n",
            "data: not json\n\n",
            "data: {\"id\":\"e\",\"error\":{\"message\":\"x\"}}\n\n",
            "data: {\"id\":\"e\",\"error\":null}\n\n",
            "data: {\"id\":\"d\",\"id\":\"d\"}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"y\"}}]}\n\n",
            "data: [DONE]\n\n",
        );
        let got = events(pass(s).as_bytes());
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        // The last chunk's delta names `content` twice: it reads as empty.
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
        assert_eq!(got[0].1["message"]["id"], "c");
    }

    /// Absurd input (deep nesting anywhere, huge strings and numbers) never panics.
    #[test]
    fn absurd_chunks_do_not_panic() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let deep_object = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        let huge = "é\\n".repeat(200_000);
        let mut s = String::new();
        for d in [deep(30_000), deep_object(30_000)] {
            for chunk in [
                d.clone(),
                format!("{{\"id\":{d},\"model\":{d},\"usage\":{d},\"choices\":{d}}}"),
                format!("{{\"choices\":[{d},{d}]}}"),
                format!("{{\"choices\":[{{\"delta\":{d},\"finish_reason\":{d}}}]}}"),
                format!(
                    "{{\"choices\":[{{\"delta\":{{\"content\":{d},\"refusal\":{d},\"tool_calls\":{d}}}}}]}}"
                ),
                format!(
                    "{{\"choices\":[{{\"delta\":{{\"tool_calls\":[{d},{{\"index\":{d},\"id\":{d},\"function\":{d}}}]}}}}]}}"
                ),
                format!(
                    "{{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"function\":{{\"name\":{d},\"arguments\":{d}}}}}]}}}}]}}"
                ),
                format!("{{\"unknown\":{d},\"choices\":[{{\"delta\":{{\"content\":\"ok\"}}}}]}}"),
            ] {
                s.push_str(&format!("data: {chunk}\n\n"));
            }
        }
        s.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":1e999999,\"delta\":{{\"content\":\"{huge}\",\"tool_calls\":[{{\"index\":1e999999}},{{\"index\":-99999999999999999999999999}}]}}}}]}}\n\n"
        ));
        s.push_str("data: [DONE]\n\n");
        for split in [4096, s.len()] {
            let mut t = ToAnthropicEvents::new();
            let mut out = Vec::new();
            for part in s.as_bytes().chunks(split) {
                out.extend_from_slice(&t.pass(Bytes::copy_from_slice(part)));
            }
            let got = events(&out);
            assert_eq!(got.last().unwrap().0, "message_stop");
            let texts: Vec<&Value> = got.iter().filter_map(|(_, e)| e["delta"].get("text")).collect();
            assert_eq!(texts.len(), 3);
            assert_eq!(texts[0], "ok");
            assert_eq!(texts[2].as_str().unwrap().len(), huge.len() / 4 * 3);
        }
    }
}
