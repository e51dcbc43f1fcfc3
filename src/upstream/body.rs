//! The chat request body: read what routing needs (`model`, `stream`, `stream_options`) and
//! make the few edits the router must make, without re-serialising the rest.
//!
//! Edits are byte splices at the spans of top-level members, found by a small scanner. The
//! body is validated by serde first, so the scanner only ever walks well-formed JSON. If a key
//! is written with escapes (`"mod\u0065l"`) the scanner does not recognise it and the edit
//! falls back to a full parse and re-serialisation, which is correct, only slower.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// What routing needs from a chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatHead {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: Option<bool>,
}

/// Whether an upstream's refusal is about the `stream_options` member the router adds.
pub fn refuses_stream_options(status: u16, error_body: &[u8]) -> bool {
    matches!(status, 400 | 422) && error_body.windows(14).any(|w| w == b"stream_options")
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("`model` is required")]
    MissingModel,
    #[error("`{field}` is invalid: {message}")]
    InvalidField { field: &'static str, message: String },
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Only its shape is checked (an array), so a wrong one is refused naming it; the
    /// elements are skipped, not built.
    #[serde(default)]
    #[allow(dead_code)]
    messages: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Validates the body and reads its routing fields.
pub fn parse(body: &[u8]) -> Result<ChatHead, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some() && first != Some(&b'{') {
        // Valid JSON that is not an object gets its own message; invalid JSON the parser's.
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            return Err(BodyError::NotAnObject);
        }
    }
    // Most bodies are valid: parse them plainly. Tracking the path costs about as much as
    // the parse and is only needed to name the member in an error, so a body that fails is
    // parsed again with it.
    let head: Head = match serde_json::from_slice(body) {
        Ok(head) => head,
        Err(_) => explain(body)?,
    };
    let model = head.model.ok_or(BodyError::MissingModel)?;
    if model.trim().is_empty() {
        return Err(BodyError::MissingModel);
    }
    Ok(ChatHead {
        model: model.into_owned(),
        stream: head.stream.unwrap_or(false),
        include_usage: head.stream_options.and_then(|o| o.include_usage),
    })
}

/// Parses a body that failed, naming the member whose value is wrong.
fn explain(body: &[u8]) -> Result<Head<'_>, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // The path names the member whose value is wrong (`stream_options.include_usage`):
        // its first segment is the `param` of the error.
        let top = e.path().iter().next().map(|seg| seg.to_string());
        let inner = e.into_inner();
        let msg = inner.to_string();
        if !inner.is_data() {
            return BodyError::InvalidJson(msg);
        }
        let field = match top.as_deref() {
            Some("stream") => "stream",
            Some("stream_options") => "stream_options",
            Some("messages") => "messages",
            _ => "model",
        };
        BodyError::InvalidField { field, message: msg }
    })
}

/// The body to send upstream: `model` replaced when the provider maps it, and for streams
/// `stream_options.include_usage = true` so token counts come back. Returns the original
/// bytes (a cheap clone) when nothing changes. `ask_usage` is false for a provider known to
/// refuse `stream_options`.
pub fn for_upstream(body: &Bytes, head: &ChatHead, upstream_model: Option<&str>, ask_usage: bool) -> Bytes {
    let need_usage = ask_usage && head.stream && head.include_usage != Some(true);
    if upstream_model.is_none() && !need_usage {
        return body.clone();
    }
    splice(body, upstream_model, need_usage).unwrap_or_else(|| reserialize(body, upstream_model, need_usage))
}

/// The slow path: parse everything and write it back.
fn reserialize(body: &[u8], model: Option<&str>, need_usage: bool) -> Bytes {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Bytes::copy_from_slice(body);
    };
    if let Some(m) = model {
        map.insert("model".into(), m.into());
    }
    if need_usage {
        let opts = map
            .entry("stream_options")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(o) = opts.as_object_mut() {
            o.insert("include_usage".into(), true.into());
        } else {
            *opts = serde_json::json!({"include_usage": true});
        }
    }
    Bytes::from(serde_json::Value::Object(map).to_string())
}

/// The fast path: splice new values at the members' byte spans. `None` when a member that
/// must be edited was not found by the scanner.
fn splice(body: &[u8], model: Option<&str>, need_usage: bool) -> Option<Bytes> {
    let members = super::json_members::members(body)?;
    let find = |key: &str| members.iter().find(|m| &body[m.key.0..m.key.1] == key.as_bytes());
    // (start, end, replacement), applied from the end so earlier spans stay valid.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    if let Some(m) = model {
        let member = find("model")?;
        edits.push((member.value.0, member.value.1, serde_json::to_vec(m).ok()?));
    }
    if need_usage {
        match find("stream_options") {
            Some(member) => {
                let mut opts: serde_json::Value =
                    serde_json::from_slice(&body[member.value.0..member.value.1]).ok()?;
                match opts.as_object_mut() {
                    Some(o) => {
                        o.insert("include_usage".into(), true.into());
                    }
                    None => opts = serde_json::json!({"include_usage": true}),
                }
                edits.push((member.value.0, member.value.1, serde_json::to_vec(&opts).ok()?));
            }
            None => {
                let close = body.iter().rposition(|b| *b == b'}')?;
                let sep = if members.is_empty() { "" } else { "," };
                edits.push((
                    close,
                    close,
                    format!(r#"{sep}"stream_options":{{"include_usage":true}}"#).into_bytes(),
                ));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = BytesMut::from(body);
    for (start, end, replacement) in edits {
        let tail = out.split_off(end);
        out.truncate(start);
        out.extend_from_slice(&replacement);
        out.extend_from_slice(&tail);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn parses_routing_fields() {
        let h = parse(br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            h,
            ChatHead {
                model: "m".into(),
                stream: true,
                include_usage: None
            }
        );
        assert!(parse(b"{").unwrap_err().to_string().contains("not valid JSON"));
        assert_eq!(parse(b"[1]").unwrap_err(), BodyError::NotAnObject);
        let field = |b: &[u8]| match parse(b).unwrap_err() {
            BodyError::InvalidField { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(br#"{"model": true}"#), "model");
        assert_eq!(field(br#"{"model": "m", "stream": "yes"}"#), "stream");
        assert_eq!(field(br#"{"stream": 1, "model": "m"}"#), "stream");
        assert_eq!(
            field(br#"{"model": "m", "stream_options": {"include_usage": 3}}"#),
            "stream_options"
        );
        assert_eq!(field(br#"{"model": "m", "messages": "hi"}"#), "messages");
        assert_eq!(parse(br#"{"messages":[]}"#).unwrap_err(), BodyError::MissingModel);
        assert!(matches!(
            parse(br#"{"model":5}"#).unwrap_err(),
            BodyError::InvalidField { field: "model", .. }
        ));
        assert!(matches!(
            parse(br#"{"model":"m","stream":"yes"}"#).unwrap_err(),
            BodyError::InvalidField { .. }
        ));
    }

    #[test]
    fn unchanged_bodies_are_passed_by_reference() {
        let body = Bytes::from_static(br#"{"model":"m", "x": {"a":[1,2]}}"#);
        let head = parse(&body).unwrap();
        let out = for_upstream(&body, &head, None, true);
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn model_is_rewritten_in_place() {
        let body = Bytes::from_static(
            br#"{ "messages": [{"content": "say \"model\": {}"}], "model" : "public", "n": 1 }"#,
        );
        let head = parse(&body).unwrap();
        let out = for_upstream(&body, &head, Some("upstream-\"x\""), true);
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.starts_with(
            r#"{ "messages": [{"content": "say \"model\": {}"}], "model" : "upstream-\"x\"", "n": 1 }"#
        ));
        assert_eq!(json(&out)["model"], "upstream-\"x\"");
    }

    #[test]
    fn streams_get_include_usage() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true}"#);
        let out = for_upstream(&body, &parse(&body).unwrap(), None, true);
        assert_eq!(json(&out)["stream_options"]["include_usage"], true);
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        );
        let out = for_upstream(&body, &parse(&body).unwrap(), Some("u"), true);
        let v = json(&out);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        assert_eq!(v["model"], "u");
    }

    #[test]
    fn escaped_keys_fall_back_to_a_full_rewrite() {
        let body = Bytes::from_static(br#"{"mod\u0065l":"m"}"#);
        let head = parse(&body).unwrap();
        assert_eq!(head.model, "m");
        let out = for_upstream(&body, &head, Some("u"), true);
        assert_eq!(json(&out)["model"], "u");
    }
}
