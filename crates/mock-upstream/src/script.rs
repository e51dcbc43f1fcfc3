//! A streamed answer as a script of pre-rendered events, played with the behaviour's timing.
//!
//! Used by every streamed route except the chat text stream (which keeps its precomputed fast
//! path in `sse.rs`). The timing rules are the same: `head` leaves at once, content chunks are
//! spaced by `chunk_delay_ms`, the `tail` leaves together with nothing timed after the last
//! chunk; `cut_after_chunks` aborts the connection and `stream_error_after_chunks` sends the
//! format's error event instead of the rest.

use std::{fmt::Write as _, io, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, stream};

use crate::behavior::Behavior;

/// Most content chunks a scripted stream renders (they are built up front, so
/// `stream_chunks` is clamped to this).
pub(crate) const MAX_SCRIPT_CHUNKS: usize = 100_000;

/// Content chunks of a scripted stream for `b`.
pub(crate) fn chunk_count(b: &Behavior) -> usize {
    b.stream_chunks.min(MAX_SCRIPT_CHUNKS)
}

/// The events of one streamed answer, already framed.
pub(crate) struct Script {
    /// Sent first, before any content chunk (e.g. `message_start`, `response.created`).
    pub head: Bytes,
    /// One item per content chunk.
    pub chunks: Vec<Bytes>,
    /// Sent together after the last chunk (finish, usage, `[DONE]`, `message_stop`…).
    pub tail: Bytes,
    /// Sent instead of the remaining chunks and tail when `stream_error_after_chunks` triggers.
    pub error: Bytes,
}

struct State {
    head: Option<Bytes>,
    chunks: std::vec::IntoIter<Bytes>,
    tail: Option<Bytes>,
    error: Bytes,
    delay: Duration,
    cut: Option<usize>,
    error_after: Option<usize>,
    /// Content chunks sent so far.
    sent: usize,
    total: usize,
}

/// The SSE body playing `script` with `b`'s timing, cut and error settings.
pub(crate) fn body(script: Script, b: &Behavior) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
    let state = State {
        head: Some(script.head),
        total: script.chunks.len(),
        chunks: script.chunks.into_iter(),
        tail: Some(script.tail),
        error: script.error,
        delay: Duration::from_millis(b.chunk_delay_ms),
        cut: b.cut_after_chunks,
        error_after: b.stream_error_after_chunks,
        sent: 0,
    };
    stream::unfold(state, step)
}

async fn step(mut st: State) -> Option<(Result<Bytes, io::Error>, State)> {
    if let Some(head) = st.head.take() {
        return Some((Ok(head), st));
    }
    st.tail.as_ref()?;
    if let Some(cut) = st.cut
        && st.sent >= cut.min(st.total)
    {
        st.tail = None;
        // As in `sse.rs`: let actix flush what is buffered, then drop the connection.
        if st.delay.is_zero() {
            actix_rt::task::yield_now().await;
        } else {
            actix_rt::time::sleep(st.delay).await;
        }
        let err = io::Error::new(io::ErrorKind::ConnectionAborted, "mock: stream cut");
        return Some((Err(err), st));
    }
    if let Some(at) = st.error_after
        && st.sent >= at.min(st.total)
    {
        st.tail = None;
        pause(st.delay, st.sent > 0).await;
        return Some((Ok(st.error.clone()), st));
    }
    if let Some(chunk) = st.chunks.next() {
        pause(st.delay, st.sent > 0).await;
        st.sent += 1;
        return Some((Ok(chunk), st));
    }
    st.tail.take().map(|t| (Ok(t), st))
}

/// The spacing before a content chunk. With no delay there is none: the chunks are ready
/// together and actix writes them together, as the chat stream's are (`sse.rs`), so a
/// scripted stream "sent at once" arrives as one, like the chat stream it is compared with.
async fn pause(delay: Duration, due: bool) {
    if due && !delay.is_zero() {
        actix_rt::time::sleep(delay).await;
    }
}

/// `event: <name>\ndata: <json>\n\n`, appended to `out`.
pub(crate) fn push_event(out: &mut String, name: &str, data: &serde_json::Value) {
    // Writing to a String cannot fail.
    let _ = write!(out, "event: {name}\ndata: {data}\n\n");
}

/// One `event:` frame as bytes.
pub(crate) fn event(name: &str, data: &serde_json::Value) -> Bytes {
    let mut out = String::new();
    push_event(&mut out, name, data);
    Bytes::from(out)
}

/// `data: <json>\n\n`, appended to `out`.
pub(crate) fn push_data(out: &mut String, data: &serde_json::Value) {
    let _ = write!(out, "data: {data}\n\n");
}

/// One `data:` frame as bytes.
pub(crate) fn data(data: &serde_json::Value) -> Bytes {
    let mut out = String::new();
    push_data(&mut out, data);
    Bytes::from(out)
}

/// OpenAI's `usage` object.
pub(crate) fn openai_usage(prompt: u64, completion: u64) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
    })
}

/// Ends an OpenAI-style stream tail: when `usage_chunk` is given (a chunk with
/// `"choices":[]`), it gets `usage` and is pushed; then `data: [DONE]`.
pub(crate) fn end_openai_stream(
    tail: &mut String,
    usage_chunk: Option<serde_json::Value>,
    prompt: u64,
    completion: u64,
) {
    if let Some(mut chunk) = usage_chunk {
        chunk["usage"] = openai_usage(prompt, completion);
        push_data(tail, &chunk);
    }
    tail.push_str("data: [DONE]\n\n");
}

/// The OpenAI-style mid-stream error chunk, followed by nothing (as OpenAI does).
pub(crate) fn openai_stream_error() -> Bytes {
    data(&serde_json::json!({"error": {
        "message": "mock: stream failed", "type": "server_error", "code": "stream_error"
    }}))
}

/// Splits `text` into `n` pieces of about equal length on char boundaries (`n` is at least 1;
/// pieces may be empty when `text` is shorter than `n`).
pub(crate) fn split(text: &str, n: usize) -> Vec<String> {
    let n = n.max(1);
    let chars: Vec<char> = text.chars().collect();
    let per = chars.len().div_ceil(n).max(1);
    let mut out: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
    out.resize(n.max(out.len()), String::new());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_char() {
        let parts = split(r#"{"city":"Zürich"}"#, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), r#"{"city":"Zürich"}"#);
        assert_eq!(split("ab", 4).len(), 4);
        assert_eq!(split("ab", 0), vec!["ab".to_owned()]);
    }
}
