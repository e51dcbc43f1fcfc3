//! Server-sent events passing through: the upstream's chunks go to the client untouched, as
//! they arrive, while an observer picks out the `usage` chunk and the final `[DONE]`.
//!
//! `ObservedStream` wraps the upstream body. It enforces an idle timeout (a gap between
//! chunks longer than the attempt timeout ends the stream), turns an upstream failure into an
//! OpenAI-style SSE error event (never a clean `[DONE]`), and reports the outcome from `Drop`,
//! which runs on a normal end, on failure, and when the client goes away.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use memchr::memmem::Finder;
use tokio::time::{Instant, Sleep};

use super::usage::{self, TokenUsage};
use crate::routing::{AttemptError, Phase};

/// Longest event the observer accepts: a longer one fails the stream (no real completion
/// chunk comes near it), so memory per stream stays bounded.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The event format of an upstream stream: how it ends, where its usage is, how it reports
/// an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamFormat {
    /// OpenAI chat and legacy completions: `data: [DONE]` ends it; `usage` in a chunk.
    #[default]
    OpenAi,
    /// Anthropic Messages: `message_stop` ends it; usage in `message_start` and (cumulative)
    /// `message_delta`; `event: error` reports a failure.
    Anthropic,
    /// OpenAI Responses: `response.completed`, `response.incomplete` or `response.failed`
    /// ends it, with `response.usage`; an `error` event reports a failure.
    Responses,
}

/// Reads SSE events out of a byte stream, keeping only what it needs.
#[derive(Debug, Default)]
pub struct SseObserver {
    tail: Vec<u8>,
    pub format: StreamFormat,
    /// An event grew past `MAX_EVENT_BYTES`; nothing more is read.
    pub oversized: bool,
    pub usage: Option<TokenUsage>,
    pub done: bool,
    pub bytes: u64,
    /// The message of an error event the upstream sent mid-stream (Anthropic, Responses).
    pub upstream_error: Option<String>,
    /// Anthropic's counts so far (its usage arrives in two events).
    anthropic: crate::translate::Tokens,
    /// The last chunk fed holds no `"usage"` (known only for an OpenAI stream whose events
    /// end inside the chunk: what `UsageFilter` would search it for).
    pub chunk_without_usage: bool,
    /// Where the complete events of the last chunk fed end, when the observer found it (a
    /// chunk with neither usage nor `[DONE]`, nothing held before it): the filter holds back
    /// the rest, as the observer does, without a search of its own.
    pub chunk_events_end: Option<usize>,
}

impl SseObserver {
    pub fn new(format: StreamFormat) -> Self {
        SseObserver {
            format,
            ..SseObserver::default()
        }
    }

    /// Feeds one chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        self.chunk_without_usage = false;
        self.chunk_events_end = None;
        if self.oversized || self.done {
            return;
        }
        if self.tail.is_empty() {
            // The usual case: events end inside the chunk; only a trailing partial event is
            // copied, so most chunks are read in place.
            let consumed = if self.format == StreamFormat::OpenAi {
                let n = needles();
                let usage_at = n.usage.find(chunk);
                self.chunk_without_usage = usage_at.is_none();
                let done_at = n.done.find(chunk);
                if usage_at.is_none() && done_at.is_none() {
                    // No event of this chunk can hold what the observer reads: only the
                    // trailing partial event is kept, found from the end.
                    let consumed = last_event_end(chunk).unwrap_or(0);
                    self.chunk_events_end = Some(consumed);
                    consumed
                } else {
                    self.read_openai_events(chunk, 0, usage_at, done_at)
                }
            } else {
                self.read_events(chunk, 0)
            };
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
        if self.format == StreamFormat::OpenAi {
            let n = needles();
            return self.read_openai_events(buf, from, n.usage.find(buf), n.done.find(buf));
        }
        let mut start = 0;
        while let Some(end) = find_event_end(&buf[from..]) {
            let end = from + end;
            self.on_typed_event(&buf[start..end]);
            start = end;
            from = end;
        }
        start
    }

    /// Like [`Self::read_events`] for an OpenAI stream, given where `"usage"` and `[DONE]`
    /// first occur in `buf`. Most events hold neither: only an event an occurrence falls in
    /// is read, and each needle is searched for again only past such an event (a search per
    /// occurrence, not two per event). Neither needle holds a line end, so an occurrence
    /// lies within one event.
    fn read_openai_events(
        &mut self,
        buf: &[u8],
        mut from: usize,
        mut usage_at: Option<usize>,
        mut done_at: Option<usize>,
    ) -> usize {
        let n = needles();
        let mut start = 0;
        while let Some(end) = find_event_end(&buf[from..]) {
            let end = from + end;
            let usage_here = usage_at.is_some_and(|at| at < end);
            let done_here = done_at.is_some_and(|at| at < end);
            if usage_here || done_here {
                self.on_openai_event(&buf[start..end], usage_here);
            }
            if usage_here {
                usage_at = n.usage.find(&buf[end..]).map(|at| end + at);
            }
            if done_here {
                done_at = n.done.find(&buf[end..]).map(|at| end + at);
            }
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

    /// An OpenAI event that holds `[DONE]` or (`usage_here`) `"usage"` somewhere.
    fn on_openai_event(&mut self, event: &[u8], usage_here: bool) {
        for line in lines(event) {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                self.done = true;
            } else if usage_here
                && contains(data, &needles().usage)
                && let Some(u) = usage::from_json(data)
            {
                self.usage = Some(u);
            }
        }
    }
}

impl SseObserver {
    /// Anthropic and Responses events: each `data:` is a JSON object whose `type` names it.
    fn on_typed_event(&mut self, event: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Typed<'a> {
            #[serde(borrow, rename = "type")]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default)]
            message: Option<serde_json::Value>,
            #[serde(default)]
            usage: Option<serde_json::Value>,
            #[serde(default)]
            response: Option<serde_json::Value>,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        for line in lines(event) {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            // Deltas are most of a stream and carry nothing the observer needs.
            let n = needles();
            let delta = contains(data, &n.delta_underscore) || contains(data, &n.delta_dot);
            if delta && !contains(data, &n.usage) {
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Typed>(data.trim_ascii()) else {
                continue;
            };
            let error_message = |e: &Option<serde_json::Value>| {
                let message = e
                    .as_ref()
                    .and_then(|e| e.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("unknown error");
                super::classify::scrub(message)
            };
            match (self.format, e.kind.as_ref()) {
                (StreamFormat::Anthropic, "message_start") => {
                    if let Some(u) = e.message.as_ref().and_then(|m| m.get("usage")) {
                        self.anthropic = crate::translate::Tokens::from_anthropic(u);
                        self.set_anthropic_usage();
                    }
                }
                (StreamFormat::Anthropic, "message_delta") => {
                    if let Some(u) = &e.usage {
                        self.anthropic.merge_delta(u);
                        self.set_anthropic_usage();
                    }
                }
                (StreamFormat::Anthropic, "message_stop") => self.done = true,
                (StreamFormat::Anthropic, "error") | (StreamFormat::Responses, "error") => {
                    self.upstream_error = Some(error_message(&e.error).to_string());
                }
                (
                    StreamFormat::Responses,
                    "response.completed" | "response.incomplete" | "response.failed",
                ) => {
                    self.done = true;
                    if let Some(u) = e.response.as_ref().and_then(|r| r.get("usage")) {
                        let input = u.get("input_tokens").and_then(|v| v.as_u64()).unwrap_or(0);
                        let output = u.get("output_tokens").and_then(|v| v.as_u64()).unwrap_or(0);
                        self.usage = Some(
                            TokenUsage {
                                prompt_tokens: input,
                                completion_tokens: output,
                                total_tokens: 0,
                            }
                            .clamped(),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn set_anthropic_usage(&mut self) {
        let t = self.anthropic;
        self.usage = Some(
            TokenUsage {
                prompt_tokens: t.prompt_total(),
                completion_tokens: t.output,
                total_tokens: 0,
            }
            .clamped(),
        );
    }
}

/// Index just past the first blank line in `b`: a line end (`\n`) followed by an empty line
/// (`\n` or `\r\n`). One pass over the bytes with `memchr`, so reading a chunk of many
/// events stays linear in its length.
pub(crate) fn find_event_end(b: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', b).find_map(|i| match &b[i + 1..] {
        [b'\n', ..] => Some(i + 2),
        [b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Index just past the last blank line in `b` (the end of its last complete event), found
/// from the end. It may take one more empty line than [`find_event_end`] would
/// (`"a\n\n\n"`): an empty line between events, which changes no event.
fn last_event_end(b: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'\n', b).find_map(|i| match &b[..i] {
        [.., b'\n'] | [.., b'\n', b'\r'] => Some(i + 1),
        _ => None,
    })
}

/// The byte strings the stream readers look for in every event, each with its searcher
/// built once: `memmem` compares many bytes at a time, and building a searcher costs about as
/// much as running it on an event. (A byte-by-byte window search here was 40% of the router's
/// own CPU on a stream.)
struct Needles {
    usage: Finder<'static>,
    usage_object: Finder<'static>,
    done: Finder<'static>,
    choices: Finder<'static>,
    empty_choices: Finder<'static>,
    delta_underscore: Finder<'static>,
    delta_dot: Finder<'static>,
}

fn needles() -> &'static Needles {
    static NEEDLES: OnceLock<Needles> = OnceLock::new();
    NEEDLES.get_or_init(|| Needles {
        usage: Finder::new(b"\"usage\""),
        usage_object: Finder::new(b"\"usage\":{"),
        done: Finder::new(b"[DONE]"),
        choices: Finder::new(b"\"choices\""),
        empty_choices: Finder::new(b"\"choices\":[]"),
        delta_underscore: Finder::new(b"_delta\""),
        delta_dot: Finder::new(b".delta\""),
    })
}

fn contains(hay: &[u8], needle: &Finder<'_>) -> bool {
    needle.find(hay).is_some()
}

/// The lines of an event, without their `\n` or `\r\n`.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// How a stream ended, reported once from `Drop`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The upstream finished its body with `[DONE]`.
    Completed,
    /// The upstream broke, stalled or stopped early after the first byte.
    Failed(AttemptError),
    /// The client went away before the end.
    ClientGone,
}

/// Called once when an observed stream ends.
pub trait StreamReport: 'static {
    fn finish(self: Box<Self>, end: StreamEnd, observer: &SseObserver);
}

/// The SSE error event sent when an upstream fails mid-stream, in the client's format.
pub fn error_event_for(format: StreamFormat, message: &str) -> Bytes {
    match format {
        StreamFormat::OpenAi => error_event(message),
        StreamFormat::Anthropic => {
            let body = serde_json::json!({
                "type": "error", "error": { "type": "api_error", "message": message }
            });
            Bytes::from(format!("event: error\ndata: {body}\n\n"))
        }
        StreamFormat::Responses => {
            let body = serde_json::json!({
                "type": "error", "code": "stream_interrupted", "message": message, "param": null
            });
            Bytes::from(format!("event: error\ndata: {body}\n\n"))
        }
    }
}

/// A transformation of the bytes going to the client: taking out the usage chunk, or
/// translating events to another format. Chunks pass one at a time; `rest` is called once at
/// a normal end.
pub trait ChunkTransform: 'static {
    fn pass(&mut self, chunk: Bytes) -> Bytes;
    /// Like `pass`, for a chunk the observer already found holds no `"usage"` (one search
    /// of each chunk, not two, on a native stream with the usage chunk taken out), and, when
    /// it knows, where the chunk's complete events end.
    fn pass_without_usage(&mut self, chunk: Bytes, _events_end: Option<usize>) -> Bytes {
        self.pass(chunk)
    }
    fn rest(&mut self) -> Bytes {
        Bytes::new()
    }
}

impl ChunkTransform for UsageFilter {
    fn pass(&mut self, chunk: Bytes) -> Bytes {
        UsageFilter::pass(self, chunk)
    }
    fn pass_without_usage(&mut self, chunk: Bytes, events_end: Option<usize>) -> Bytes {
        if self.carry.is_empty() {
            let end = events_end.unwrap_or_else(|| last_event_end(&chunk).unwrap_or(0));
            return self.pass_events(chunk, end);
        }
        // The held part of an event and this chunk may spell `"usage"` between them.
        UsageFilter::pass(self, chunk)
    }
    fn rest(&mut self) -> Bytes {
        UsageFilter::rest(self)
    }
}

/// The SSE error event sent when an upstream fails mid-stream (OpenAI's shape).
pub fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": { "message": message, "type": "upstream_error", "code": "stream_interrupted" }
    });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

/// Takes the usage chunk out of a stream whose client did not ask for it (the router asked on
/// its behalf, for the usage record). OpenAI sends that chunk only to clients that asked, and
/// clients that read `choices[0]` of every chunk break on its empty `choices`.
///
/// Complete events pass through as slices of the chunk they came in (no copy when a chunk
/// ends on an event boundary, the usual case); an event split across chunks is held until
/// its end arrives, bounded like the observer's.
#[derive(Debug, Default)]
pub struct UsageFilter {
    carry: Vec<u8>,
}

impl UsageFilter {
    /// What of `chunk` goes to the client now (possibly nothing).
    pub fn pass(&mut self, chunk: Bytes) -> Bytes {
        let usage_object = &needles().usage_object;
        let mut usage_at = if self.carry.is_empty() {
            match usage_object.find(&chunk) {
                None => {
                    let end = last_event_end(&chunk).unwrap_or(0);
                    return self.pass_events(chunk, end);
                }
                found => found,
            }
        } else {
            None
        };
        let data = if self.carry.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&chunk);
            usage_at = usage_object.find(&joined);
            Bytes::from(joined)
        };
        let mut out: Option<Vec<u8>> = None;
        let mut start = 0;
        let mut kept_until = 0;
        while let Some(end) = find_event_end(&data[start..]).map(|e| start + e) {
            // Only an event that `"usage":{` falls in can be the usage chunk; the needle holds
            // no line end, so an occurrence lies within one event.
            let here = usage_at.is_some_and(|at| at < end);
            if here {
                usage_at = usage_object.find(&data[end..]).map(|at| end + at);
            }
            if here && is_usage_only(&data[start..end]) {
                let buf = out.get_or_insert_with(Vec::new);
                buf.extend_from_slice(&data[kept_until..start]);
                kept_until = end;
            }
            start = end;
        }
        if data.len() - start > MAX_EVENT_BYTES {
            // The observer fails such a stream; pass the bytes rather than hold them.
            start = data.len();
        }
        self.carry.extend_from_slice(&data[start..]);
        match out {
            None => data.slice(..start),
            Some(mut buf) => {
                buf.extend_from_slice(&data[kept_until..start]);
                Bytes::from(buf)
            }
        }
    }

    /// A chunk with no usage chunk in it (most chunks), nothing held before it: its complete
    /// events pass as they are, a trailing partial one is held.
    /// `end` is where its complete events end.
    fn pass_events(&mut self, chunk: Bytes, end: usize) -> Bytes {
        if chunk.len() - end > MAX_EVENT_BYTES {
            return chunk;
        }
        self.carry.extend_from_slice(&chunk[end..]);
        chunk.slice(..end)
    }

    /// Bytes still held at the end of the stream.
    pub fn rest(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.carry))
    }
}

/// The usage chunk, of an event known to hold a `usage` object: empty `choices`, or none.
fn is_usage_only(event: &[u8]) -> bool {
    let n = needles();
    contains(event, &n.empty_choices) || !contains(event, &n.choices)
}

/// The upstream body, passed through and observed.
pub struct ObservedStream<S> {
    /// Set when the usage chunk is to be taken out (see `UsageFilter`) or the events are
    /// translated.
    filter: Option<Box<dyn ChunkTransform>>,
    /// The format of the client's stream, for the error event that ends a failed stream.
    client_format: StreamFormat,
    first: Option<Bytes>,
    inner: S,
    idle_timeout: Duration,
    /// Fires `idle_timeout` after the last chunk, or earlier: it is armed for the first
    /// chunk and moved on only when it fires (to `idle_timeout` after `last_chunk`). Moving
    /// a timer takes the runtime's timer lock; a clock read per chunk is much cheaper, and a
    /// stream has a chunk per token.
    idle: Pin<Box<Sleep>>,
    last_chunk: Instant,
    observer: SseObserver,
    report: Option<Box<dyn StreamReport>>,
    failed: Option<AttemptError>,
    finished: bool,
    /// Chunks read (and dropped) after `[DONE]` while looking for the body's end.
    after_done: u8,
}

/// How many chunks after `[DONE]` are read (and dropped) looking for the body's end before
/// the stream ends anyway.
const MAX_POLLS_AFTER_DONE: u8 = 4;

impl<S, E> ObservedStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// `first` is the chunk already read (the failover boundary); `inner` yields the rest.
    pub fn new(first: Bytes, inner: S, idle_timeout: Duration, report: Box<dyn StreamReport>) -> Self {
        Self::observing(StreamFormat::OpenAi, first, inner, idle_timeout, report)
    }

    /// Like [`Self::new`] for an upstream stream of `format`; the client gets the same format
    /// unless [`Self::translated`] says otherwise.
    pub fn observing(
        format: StreamFormat,
        first: Bytes,
        inner: S,
        idle_timeout: Duration,
        report: Box<dyn StreamReport>,
    ) -> Self {
        let mut observer = SseObserver::new(format);
        observer.feed(&first);
        ObservedStream {
            filter: None,
            client_format: format,
            first: Some(first),
            inner,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            last_chunk: Instant::now(),
            observer,
            report: Some(report),
            failed: None,
            finished: false,
            after_done: 0,
        }
    }

    /// Takes the usage chunk out of what the client receives (it is still recorded).
    pub fn without_usage_chunk(mut self) -> Self {
        self.filter = Some(Box::new(UsageFilter::default()));
        self
    }

    /// Translates the events for a client of `client_format` (see `crate::translate`).
    pub fn translated(mut self, client_format: StreamFormat, translator: Box<dyn ChunkTransform>) -> Self {
        self.filter = Some(translator);
        self.client_format = client_format;
        self
    }

    /// A chunk on its way to the client: through the filter, if any.
    fn out(&mut self, chunk: Bytes) -> Bytes {
        match &mut self.filter {
            Some(f) if self.observer.chunk_without_usage => {
                f.pass_without_usage(chunk, self.observer.chunk_events_end)
            }
            Some(f) => f.pass(chunk),
            None => chunk,
        }
    }

    fn fail(&mut self, error: AttemptError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let event = error_event_for(self.client_format, &error.client_text());
        self.failed = Some(error);
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
        // A chunk the filter holds back entirely is not sent as an empty one: poll again.
        loop {
            if let Some(first) = this.first.take() {
                let out = this.out(first);
                if out.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(out)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            if this.observer.done {
                // `[DONE]` was passed on: the stream is complete, whether or not the upstream
                // closes its side. One look at what is already read lets awc see the body's
                // end (the last chunk of a chunked body nearly always arrives with `[DONE]`)
                // and put the connection back in its pool; otherwise every stream would pay
                // for a new upstream connection. Anything after `[DONE]` is not forwarded.
                return match Pin::new(&mut this.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(_))) if this.after_done < MAX_POLLS_AFTER_DONE => {
                        this.after_done += 1;
                        continue;
                    }
                    _ => this.end(),
                };
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.observer.feed(&chunk);
                    if this.observer.oversized {
                        return this.fail(AttemptError::StreamBroke(format!(
                            "it sent an event larger than {MAX_EVENT_BYTES} bytes"
                        )));
                    }
                    if let Some(message) = this.observer.upstream_error.take() {
                        return this.upstream_failed(chunk, message);
                    }
                    this.last_chunk = Instant::now();
                    let out = this.out(chunk);
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(e))) => return this.fail(AttemptError::StreamBroke(e.to_string())),
                // An OpenAI stream ends with `[DONE]`; a body that stops before it was cut (awc
                // reports a connection closed mid-body as a normal end).
                Poll::Ready(None) if !this.observer.done => {
                    return this.fail(AttemptError::StreamEnded { committed: true });
                }
                Poll::Ready(None) => return this.end(),
                Poll::Pending => loop {
                    if this.idle.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The timer fired: idle only if no chunk came since it was armed;
                    // otherwise it moves to `idle_timeout` after the last one.
                    let deadline = this.last_chunk + this.idle_timeout;
                    if deadline <= Instant::now() {
                        return this.fail(AttemptError::Timeout(Phase::Idle));
                    }
                    this.idle.as_mut().reset(deadline);
                },
            }
        }
    }
}

impl<S> ObservedStream<S> {
    /// The upstream sent an error event: the stream ends as failed. A client of the
    /// upstream's own format already has the event in `chunk`; a translated one gets one in
    /// its format after what was translated.
    fn upstream_failed(
        &mut self,
        chunk: Bytes,
        message: String,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let translated = self.filter.is_some() && self.client_format != self.observer.format;
        let mut out = match &mut self.filter {
            Some(f) => f.pass(chunk).to_vec(),
            None => chunk.to_vec(),
        };
        if translated {
            out.extend_from_slice(&error_event_for(self.client_format, &message));
        }
        self.failed = Some(AttemptError::StreamBroke(format!(
            "it sent an error event: {message}"
        )));
        self.finished = true;
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }

    /// The normal end: whatever the filter still holds, then nothing.
    fn end(&mut self) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.finished = true;
        match self.filter.as_mut().map(|f| f.rest()) {
            Some(rest) if !rest.is_empty() => Poll::Ready(Some(Ok(rest))),
            _ => Poll::Ready(None),
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
    fn the_last_event_end_is_found_from_the_end() {
        assert_eq!(last_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_event_end(b"data: a\n\ndata: b\n\n"), Some(18));
        assert_eq!(last_event_end(b"data: a\r\n\r\nx"), Some(11));
        assert_eq!(last_event_end(b"data: a\n\r\nx"), Some(10));
        assert_eq!(last_event_end(b"data: a\r\ndata: b\r\n"), None);
        assert_eq!(last_event_end(b""), None);
        assert_eq!(last_event_end(b"\n"), None);
        assert_eq!(last_event_end(b"\n\n"), Some(2));
        // Over chunks of many events, the ends agree with the forward search.
        let text = b"data: a\n\ndata: b\r\n\r\n: c\n\ndata: d";
        let mut from = 0;
        let mut last = None;
        while let Some(e) = find_event_end(&text[from..]) {
            from += e;
            last = Some(from);
        }
        assert_eq!(last_event_end(text), last);
    }

    #[test]
    fn crlf_events_are_understood() {
        let mut o = SseObserver::default();
        o.feed(b"data: [DONE]\r\n\r\n");
        assert!(o.done);
    }

    #[test]
    fn event_ends_are_found_whatever_the_line_endings() {
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_event_end(b"data: a\r\n\r\nx"), Some(11));
        assert_eq!(find_event_end(b"data: a\n\r\nx"), Some(10));
        assert_eq!(find_event_end(b"data: a\r\ndata: b\r\n"), None);
        assert_eq!(find_event_end(b""), None);
        assert_eq!(find_event_end(b"\n"), None);
    }

    #[test]
    fn a_chunk_of_many_events_is_read_in_one_pass() {
        // 200,000 LF-only events in one chunk: a search for CRLF from every event would be
        // quadratic (tens of billions of steps); this finishes at once.
        let mut chunk = b"data: {\"choices\":[]}\n\n".repeat(200_000);
        chunk.extend_from_slice(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n");
        let mut o = SseObserver::default();
        let started = std::time::Instant::now();
        o.feed(&chunk);
        assert!(o.done && o.usage.is_some());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
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

    /// The idle timeout counts from the last chunk, exactly: chunks 7 s apart keep a stream
    /// with a 10 s idle timeout alive for 35 s, and it fails 10 s after the last one (at
    /// 45 s, not when a timer armed earlier happens to fire).
    #[actix_rt::test]
    async fn the_idle_timeout_counts_from_the_last_chunk() {
        tokio::time::pause();
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let chunks = futures_util::stream::iter(0..5)
            .then(|_| async {
                tokio::time::sleep(Duration::from_secs(7)).await;
                Ok::<_, &str>(Bytes::from_static(b"data: {}\n\n"))
            })
            .chain(futures_util::stream::pending())
            .boxed_local();
        let started = Instant::now();
        let s = ObservedStream::new(
            Bytes::from_static(b"data: {}\n\n"),
            chunks,
            Duration::from_secs(10),
            Box::new(Capture(seen.clone())),
        );
        let out: Vec<_> = s.collect().await;
        let took = started.elapsed();
        assert_eq!(out.len(), 7, "the first chunk, five more, the error event");
        assert!(
            (Duration::from_secs(45)..Duration::from_millis(45_010)).contains(&took),
            "{took:?}"
        );
        assert_eq!(
            seen.borrow().as_ref().unwrap().0,
            StreamEnd::Failed(AttemptError::Timeout(Phase::Idle))
        );
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

    #[test]
    fn anthropic_and_responses_streams_are_observed() {
        let anthropic = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        for split in [1, 13, anthropic.len()] {
            let mut o = SseObserver::new(StreamFormat::Anthropic);
            for part in anthropic.as_bytes().chunks(split) {
                o.feed(part);
            }
            assert!(o.done, "split {split}");
            assert_eq!(
                o.usage,
                Some(TokenUsage {
                    prompt_tokens: 13,
                    completion_tokens: 6,
                    total_tokens: 19
                })
            );
        }
        let mut o = SseObserver::new(StreamFormat::Anthropic);
        o.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(o.upstream_error.as_deref(), Some("Overloaded"));
        assert!(!o.done);

        let mut o = SseObserver::new(StreamFormat::Responses);
        o.feed(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n");
        assert!(!o.done);
        o.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":4,\"output_tokens\":2,\"total_tokens\":6}}}\n\n");
        assert!(o.done);
        assert_eq!(o.usage.map(|u| u.total_tokens), Some(6));
    }

    #[actix_rt::test]
    async fn an_upstream_error_event_fails_a_translated_stream_in_the_clients_format() {
        struct Nothing;
        impl ChunkTransform for Nothing {
            fn pass(&mut self, _: Bytes) -> Bytes {
                Bytes::new()
            }
        }
        let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
        let rest = futures_util::stream::iter(vec![Ok::<_, &str>(Bytes::from_static(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ))])
        .chain(futures_util::stream::pending());
        let s = ObservedStream::observing(
            StreamFormat::Anthropic,
            Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n"),
            rest,
            Duration::from_secs(30),
            Box::new(Capture(seen.clone())),
        )
        .translated(StreamFormat::OpenAi, Box::new(Nothing));
        let out: Vec<_> =
            tokio::time::timeout(Duration::from_secs(2), s.map(|r| r.unwrap()).collect::<Vec<_>>())
                .await
                .expect("ends at the error event");
        let text = String::from_utf8_lossy(&out.concat()).into_owned();
        assert!(text.starts_with("event: error\ndata: {\"error\""), "{text}");
        assert!(text.contains("Overloaded"));
        assert!(matches!(seen.borrow().as_ref().unwrap().0, StreamEnd::Failed(_)));
    }

    /// A stream of `content`, the usage chunk and `[DONE]`, and what a client that did not
    /// ask for usage receives of it (the same without the usage chunk).
    fn with_usage_chunk(content: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        let mut all = content.clone();
        all.extend_from_slice(USAGE);
        all.extend_from_slice(b"data: [DONE]\n\n");
        let mut expected = content;
        expected.extend_from_slice(b"data: [DONE]\n\n");
        (all, expected)
    }

    /// The same through a whole observed stream, where the filter skips its search in the
    /// chunks the observer found without `"usage"`: every split, the usage chunk taken out of
    /// what the client gets and still recorded.
    #[actix_rt::test]
    async fn an_observed_stream_takes_the_usage_chunk_out_wherever_the_chunks_split() {
        let content = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n".repeat(3);
        let (all, expected) = with_usage_chunk(content);
        for split in 1..all.len() {
            let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
            let mut parts = all.chunks(split).map(Bytes::copy_from_slice);
            let first = parts.next().unwrap();
            let rest = futures_util::stream::iter(parts.map(Ok::<_, &str>).collect::<Vec<_>>());
            let s = ObservedStream::new(
                first,
                rest,
                Duration::from_secs(5),
                Box::new(Capture(seen.clone())),
            )
            .without_usage_chunk();
            let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
            assert_eq!(out.concat(), expected, "split {split}");
            let (end, usage) = seen.borrow_mut().take().unwrap();
            assert_eq!(end, StreamEnd::Completed, "split {split}");
            assert_eq!(usage.map(|u| u.total_tokens), Some(7), "split {split}");
        }
    }

    /// Several events of one chunk name `usage`: one with choices and a usage object (kept:
    /// only the usage chunk is taken out), others with `"usage":null`. Each occurrence is
    /// found in its own event; the last usage is the one recorded.
    #[actix_rt::test]
    async fn every_event_naming_usage_is_judged_on_its_own() {
        let mut content = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n".repeat(2);
        content.extend_from_slice(b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"total_tokens\":3}}\n\n");
        content.extend_from_slice(b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n");
        let (all, expected) = with_usage_chunk(content);
        for split in [1, 7, 40, 61, 100, all.len()] {
            let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
            let mut parts = all.chunks(split).map(Bytes::copy_from_slice);
            let first = parts.next().unwrap();
            let rest = futures_util::stream::iter(parts.map(Ok::<_, &str>).collect::<Vec<_>>());
            let s = ObservedStream::new(
                first,
                rest,
                Duration::from_secs(5),
                Box::new(Capture(seen.clone())),
            )
            .without_usage_chunk();
            let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
            assert_eq!(out.concat(), expected, "split {split}");
            let (end, usage) = seen.borrow_mut().take().unwrap();
            assert_eq!(end, StreamEnd::Completed, "split {split}");
            assert_eq!(usage.map(|u| u.total_tokens), Some(7), "split {split}");
        }
    }

    #[test]
    fn the_usage_chunk_is_taken_out_wherever_the_chunks_split() {
        let content = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n".to_vec();
        let (all, expected) = with_usage_chunk(content);
        for split in 1..all.len() {
            let mut f = UsageFilter::default();
            let mut out = Vec::new();
            for part in all.chunks(split) {
                out.extend_from_slice(&f.pass(Bytes::copy_from_slice(part)));
            }
            out.extend_from_slice(&f.rest());
            assert_eq!(out, expected, "split {split}");
        }
        // A chunk of whole events without the usage chunk is passed as it is.
        let mut f = UsageFilter::default();
        let chunk = Bytes::from_static(b"data: {\"choices\":[{}]}\n\n");
        assert_eq!(f.pass(chunk.clone()).as_ptr(), chunk.as_ptr());
    }
}
