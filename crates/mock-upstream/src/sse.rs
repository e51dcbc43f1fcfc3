//! The `"stream": true` answer: an OpenAI-style server-sent-events body.
//!
//! Every event is yielded as its own body item and the stream awaits a timer between items, so
//! actix flushes each chunk to the socket when it is due (a client really sees them spaced).

use std::{fmt::Write as _, io, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, stream};

use crate::{behavior::Compiled, script};

const FINISH_SUFFIX: &[u8] = br#"{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
const DONE: &[u8] = b"data: [DONE]\n\n";

/// Where the stream is.
struct SseState {
    /// `data: {"id":...,"object":"chat.completion.chunk","created":..,"model":..,"choices":[`,
    /// shared by every chunk of this answer.
    prefix: Bytes,
    compiled: Arc<Compiled>,
    include_usage: bool,
    /// Between content chunks (the behaviour's `chunk_delay_ms`, or a `spaced-<ms>ms` model's).
    delay: Duration,
    /// Index of the next content chunk.
    next: usize,
    done: bool,
}

/// Builds the SSE body for one request, its content chunks `delay` apart. `prefix` must end
/// with `"choices":[`.
pub(crate) fn body(
    prefix: Bytes,
    compiled: Arc<Compiled>,
    include_usage: bool,
    delay: Duration,
) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
    let state = SseState {
        prefix,
        compiled,
        include_usage,
        delay,
        next: 0,
        done: false,
    };
    stream::unfold(state, step)
}

async fn step(mut st: SseState) -> Option<(Result<Bytes, io::Error>, SseState)> {
    if st.done {
        return None;
    }
    let b = &st.compiled.behavior;
    let total = b.stream_chunks;
    let delay = st.delay;

    if let Some(cut) = b.cut_after_chunks
        && st.next >= cut.min(total)
    {
        st.done = true;
        // Returning Pending at least once lets actix flush the chunks already buffered; a body
        // error drops the connection together with anything still unwritten.
        if delay.is_zero() {
            actix_rt::task::yield_now().await;
        } else {
            actix_rt::time::sleep(delay).await;
        }
        let err = io::Error::new(io::ErrorKind::ConnectionAborted, "mock: stream cut");
        return Some((Err(err), st));
    }

    if let Some(at) = b.stream_error_after_chunks
        && st.next >= at.min(total)
    {
        st.done = true;
        if st.next > 0 && !delay.is_zero() {
            actix_rt::time::sleep(delay).await;
        }
        return Some((Ok(script::openai_stream_error()), st));
    }

    if st.next < total {
        if st.next > 0 && !delay.is_zero() {
            actix_rt::time::sleep(delay).await;
        }
        let chunk = content_chunk(&st.prefix, st.next);
        st.next += 1;
        return Some((Ok(chunk), st));
    }

    // Finish chunk, optional usage chunk and [DONE] leave together: nothing is timed after
    // the last token.
    st.done = true;
    let usage = &st.compiled.usage_suffix;
    let mut buf =
        BytesMut::with_capacity(2 * st.prefix.len() + FINISH_SUFFIX.len() + usage.len() + DONE.len() + 8);
    buf.put_slice(&st.prefix);
    buf.put_slice(FINISH_SUFFIX);
    buf.put_slice(b"\n\n");
    if st.include_usage {
        // The usage chunk has `"choices":[]`: the prefix's `[` is closed by the suffix's `]`.
        buf.put_slice(&st.prefix);
        buf.put_slice(usage);
    }
    buf.put_slice(DONE);
    Some((Ok(buf.freeze()), st))
}

/// One content event; the first also carries `"role":"assistant"` like OpenAI's.
fn content_chunk(prefix: &[u8], i: usize) -> Bytes {
    let role = if i == 0 { r#""role":"assistant","# } else { "" };
    let mut buf = BytesMut::with_capacity(prefix.len() + 96);
    buf.put_slice(prefix);
    // Writing into a growable buffer cannot fail.
    let _ = write!(
        buf,
        concat!(
            r#"{{"index":0,"delta":{{{}"content":"tok{} "}},"finish_reason":null}}]}}"#,
            "\n\n"
        ),
        role, i
    );
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_chunk_is_valid_event() {
        let c = content_chunk(br#"data: {"id":"x","choices":["#, 0);
        let s = std::str::from_utf8(&c).expect("utf8");
        let json = s
            .strip_prefix("data: ")
            .and_then(|s| s.strip_suffix("\n\n"))
            .expect("framed");
        let v: serde_json::Value = serde_json::from_str(json).expect("valid json");
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], "tok0 ");
    }
}
