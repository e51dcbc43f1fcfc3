//! Server-sent events passing through: the upstream's chunks go to the client untouched, as
//! they arrive, while an observer picks out the `usage` chunk and the final `[DONE]`.
//!
//! `ObservedStream` wraps the upstream body. It enforces an idle timeout (a gap between
//! chunks longer than the attempt timeout ends the stream), turns an upstream failure into an
//! OpenAI-style SSE error event (never a clean `[DONE]`), and reports the outcome from `Drop`,
//! which runs on a normal end, on failure, and when the client goes away.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::usage::{self, TokenUsage};

/// Longest event the observer accepts: a longer one fails the stream (no real completion
/// chunk comes near it), so memory per stream stays bounded.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Reads SSE events out of a byte stream, keeping only what it needs.
#[derive(Debug, Default)]
pub struct SseObserver {
    tail: Vec<u8>,
    /// An event grew past `MAX_EVENT_BYTES`; nothing more is read.
    pub oversized: bool,
    pub usage: Option<TokenUsage>,
    pub done: bool,
    pub bytes: u64,
}

impl SseObserver {
    /// Feeds one chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        if self.oversized || self.done {
            return;
        }
        if self.tail.is_empty() {
            // The usual case: events end inside the chunk; only a trailing partial event is
            // copied, so most chunks are read in place.
            let consumed = self.read_events(chunk, 0);
            self.keep_tail(&chunk[consumed..]);
            return;
        }
        let mut buf = std::mem::take(&mut self.tail);
        // A separator may straddle the previous chunk and this one.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk);
        let consumed = self.read_events(&buf, from);
        buf.drain(..consumed);
        self.tail = buf;
        self.keep_tail(&[]);
    }

    /// Handles every complete event in `buf` (searching for ends from `from`); returns how
    /// many bytes they took.
    fn read_events(&mut self, buf: &[u8], mut from: usize) -> usize {
        let mut start = 0;
        while let Some(end) = find_event_end(&buf[from..]) {
            let end = from + end;
            self.on_event(&buf[start..end]);
            start = end;
            from = end;
        }
        start
    }

    /// Appends an incomplete event to the tail; past the bound the observer gives up.
    fn keep_tail(&mut self, rest: &[u8]) {
        if self.tail.len() + rest.len() > MAX_EVENT_BYTES {
            self.tail = Vec::new();
            self.oversized = true;
            return;
        }
        self.tail.extend_from_slice(rest);
    }

    fn on_event(&mut self, event: &[u8]) {
        for line in event.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                self.done = true;
            } else if contains(data, b"\"usage\"")
                && let Some(u) = usage::from_json(data)
            {
                self.usage = Some(u);
            }
        }
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`) in `b`.
fn find_event_end(b: &[u8]) -> Option<usize> {
    let lf = find(b, b"\n\n").map(|p| p + 2);
    let crlf = find(b, b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// How a stream ended, reported once from `Drop`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The upstream finished its body with `[DONE]`.
    Completed,
    /// The upstream broke or stalled after the first byte; the message says how.
    Failed(String),
    /// The client went away before the end.
    ClientGone,
}

/// Called once when an observed stream ends.
pub trait StreamReport: 'static {
    fn finish(self: Box<Self>, end: StreamEnd, observer: &SseObserver);
}

/// The SSE error event sent when an upstream fails mid-stream.
pub fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": { "message": message, "type": "upstream_error", "code": "stream_interrupted" }
    });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

/// The upstream body, passed through and observed.
pub struct ObservedStream<S> {
    first: Option<Bytes>,
    inner: S,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    observer: SseObserver,
    report: Option<Box<dyn StreamReport>>,
    failed: Option<String>,
    finished: bool,
}

impl<S, E> ObservedStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// `first` is the chunk already read (the failover boundary); `inner` yields the rest.
    pub fn new(first: Bytes, inner: S, idle_timeout: Duration, report: Box<dyn StreamReport>) -> Self {
        let mut observer = SseObserver::default();
        observer.feed(&first);
        ObservedStream {
            first: Some(first),
            inner,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            observer,
            report: Some(report),
            failed: None,
            finished: false,
        }
    }

    fn fail(&mut self, message: String) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let event = error_event(&message);
        self.failed = Some(message);
        self.finished = true;
        Poll::Ready(Some(Ok(event)))
    }
}

impl<S, E> Stream for ObservedStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        if this.observer.done {
            // `[DONE]` was passed on: the stream is complete, whether or not the upstream
            // closes its side.
            this.finished = true;
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.observer.feed(&chunk);
                if this.observer.oversized {
                    return this.fail(format!(
                        "the upstream sent an event larger than {MAX_EVENT_BYTES} bytes"
                    ));
                }
                let deadline = Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(format!("the upstream stream broke: {e}")),
            // An OpenAI stream ends with `[DONE]`; a body that stops before it was cut (awc
            // reports a connection closed mid-body as a normal end).
            Poll::Ready(None) if !this.observer.done => {
                this.fail("the upstream stream ended early, before its end marker".to_string())
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let ms = this.idle_timeout.as_millis();
                    this.fail(format!("the upstream sent nothing for {ms} ms"))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S> Drop for ObservedStream<S> {
    fn drop(&mut self) {
        let end = match (&self.failed, self.finished || self.observer.done) {
            (Some(m), _) => StreamEnd::Failed(m.clone()),
            // A client that leaves after `[DONE]` reached it got the whole stream.
            (None, true) => StreamEnd::Completed,
            (None, false) => StreamEnd::ClientGone,
        };
        if let Some(report) = self.report.take() {
            report.finish(end, &self.observer);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    const USAGE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n";

    #[test]
    fn finds_usage_and_done_across_chunk_boundaries() {
        let mut all = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n".to_vec();
        all.extend_from_slice(USAGE);
        all.extend_from_slice(b"data: [DONE]\n\n");
        for split in 1..all.len() {
            let mut o = SseObserver::default();
            for part in all.chunks(split) {
                o.feed(part);
            }
            assert!(o.done, "split {split}");
            assert_eq!(
                o.usage,
                Some(TokenUsage {
                    prompt_tokens: 3,
                    completion_tokens: 4,
                    total_tokens: 7
                })
            );
            assert_eq!(o.bytes, all.len() as u64);
        }
    }

    #[test]
    fn crlf_events_are_understood() {
        let mut o = SseObserver::default();
        o.feed(b"data: [DONE]\r\n\r\n");
        assert!(o.done);
    }

    type Seen = std::rc::Rc<std::cell::RefCell<Option<(StreamEnd, Option<TokenUsage>)>>>;

    struct Capture(Seen);

    impl StreamReport for Capture {
        fn finish(self: Box<Self>, end: StreamEnd, o: &SseObserver) {
            *self.0.borrow_mut() = Some((end, o.usage));
        }
    }

    #[actix_rt::test]
    async fn a_broken_upstream_ends_with_an_error_event() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let rest = futures_util::stream::iter(vec![Ok(Bytes::from_static(USAGE)), Err("reset")]);
        let s = ObservedStream::new(
            Bytes::from_static(b"data: {}\n\n"),
            rest,
            Duration::from_secs(5),
            Box::new(Capture(seen.clone())),
        );
        let out: Vec<_> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(out.len(), 3);
        assert!(
            std::str::from_utf8(&out[2])
                .unwrap()
                .starts_with("event: error\ndata: {\"error\"")
        );
        let (end, usage) = seen.borrow_mut().take().unwrap();
        assert!(matches!(end, StreamEnd::Failed(_)));
        assert_eq!(usage.map(|u| u.total_tokens), Some(7));
    }

    #[actix_rt::test]
    async fn an_idle_upstream_times_out() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let rest = futures_util::stream::pending::<Result<Bytes, &str>>();
        let s = ObservedStream::new(
            Bytes::from_static(b"data: {}\n\n"),
            rest,
            Duration::from_millis(50),
            Box::new(Capture(seen.clone())),
        );
        let out: Vec<_> = tokio::time::timeout(Duration::from_secs(5), s.collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(matches!(seen.borrow().as_ref().unwrap().0, StreamEnd::Failed(_)));
    }

    #[actix_rt::test]
    async fn done_completes_even_if_the_upstream_keeps_the_connection_open() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let rest = futures_util::stream::iter(vec![Ok::<_, &str>(Bytes::from_static(b"data: [DONE]\n\n"))])
            .chain(futures_util::stream::pending());
        let s = ObservedStream::new(
            Bytes::from_static(USAGE),
            rest,
            Duration::from_secs(30),
            Box::new(Capture(seen.clone())),
        );
        let out: Vec<_> = tokio::time::timeout(Duration::from_secs(2), s.collect::<Vec<_>>())
            .await
            .expect("ends at [DONE], not at the idle timeout");
        assert_eq!(out.len(), 2);
        assert_eq!(seen.borrow().as_ref().unwrap().0, StreamEnd::Completed);
    }

    #[actix_rt::test]
    async fn a_client_leaving_after_done_is_a_completed_stream() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let s = ObservedStream::new(
            Bytes::from_static(b"data: [DONE]\n\n"),
            futures_util::stream::pending::<Result<Bytes, &str>>(),
            Duration::from_secs(30),
            Box::new(Capture(seen.clone())),
        );
        drop(s);
        assert_eq!(seen.borrow().as_ref().unwrap().0, StreamEnd::Completed);
    }

    #[actix_rt::test]
    async fn an_event_over_the_bound_fails_the_stream() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let big = Bytes::from(vec![b'x'; 64 * 1024]);
        let rest = futures_util::stream::iter((0..40).map(move |_| Ok::<_, &str>(big.clone())));
        let s = ObservedStream::new(
            Bytes::from_static(b"data: "),
            rest,
            Duration::from_secs(5),
            Box::new(Capture(seen.clone())),
        );
        let out: Vec<_> = s.map(|r| r.unwrap()).collect().await;
        assert!(out.len() < 20, "stopped near 1 MiB, not after all 2.5 MiB");
        assert!(out.last().unwrap().starts_with(b"event: error"));
        assert!(matches!(seen.borrow().as_ref().unwrap().0, StreamEnd::Failed(_)));
        // The observer itself never holds more than the bound.
        let mut o = SseObserver::default();
        for _ in 0..40 {
            o.feed(&[b'y'; 64 * 1024]);
        }
        assert!(o.oversized && o.tail.capacity() <= MAX_EVENT_BYTES);
    }
}
