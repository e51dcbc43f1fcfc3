//! Cuts a byte stream into server-sent events, as chunks arrive. An event split across chunks
//! is held until its end; one longer than [`MAX_EVENT_BYTES`] is an error, so memory per
//! stream stays bounded.

use bytes::Bytes;

pub use crate::upstream::sse::MAX_EVENT_BYTES;
use crate::upstream::sse::{ChunkTransform, find_event_end};

/// One event: its `event:` name (if any) and its `data:` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// A stream translator: one event in, what the client receives appended to `out`.
pub trait TranslateEvent: 'static {
    fn event(&mut self, e: &Event, out: &mut Vec<u8>);
}

/// A [`TranslateEvent`] over a byte stream: events are cut as chunks arrive and translated
/// one by one.
#[derive(Debug, Default)]
pub struct Translating<T> {
    splitter: SseSplitter,
    translator: T,
    /// An event was over the bound: the observer fails such a stream, nothing more is sent.
    stopped: bool,
}

impl<T: TranslateEvent> Translating<T> {
    pub fn new(translator: T) -> Self {
        Translating {
            splitter: SseSplitter::default(),
            translator,
            stopped: false,
        }
    }
}

impl<T: TranslateEvent> ChunkTransform for Translating<T> {
    fn pass(&mut self, chunk: Bytes) -> Bytes {
        if self.stopped {
            return Bytes::new();
        }
        let Ok(events) = self.splitter.push(&chunk) else {
            self.stopped = true;
            return Bytes::new();
        };
        let mut out = Vec::new();
        for e in &events {
            self.translator.event(e, &mut out);
        }
        Bytes::from(out)
    }
}

/// An event grew past [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event is larger than {MAX_EVENT_BYTES} bytes")]
pub struct Oversized;

/// The event cutter.
#[derive(Debug, Default)]
pub struct SseSplitter {
    carry: Vec<u8>,
}

impl SseSplitter {
    /// Feeds one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, Oversized> {
        // What was held is known to hold no event end, except one straddling this chunk.
        let mut from = self.carry.len().saturating_sub(3);
        self.carry.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = find_event_end(&self.carry[from..]) {
            let end = from + end;
            if let Some(e) = parse(&self.carry[start..end]) {
                events.push(e);
            }
            start = end;
            from = end;
        }
        self.carry.drain(..start);
        if self.carry.len() > MAX_EVENT_BYTES {
            self.carry = Vec::new();
            return Err(Oversized);
        }
        Ok(events)
    }
}

/// An event's fields; `None` for an event without data (a comment, a keep-alive).
fn parse(raw: &[u8]) -> Option<Event> {
    // Valid UTF-8 (every event of a well-behaved upstream) is checked a word at a time;
    // the lossy decoder walks byte by byte and is only for the rest.
    let text = match std::str::from_utf8(raw) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.lines() {
        let value = |field: &str| {
            line.strip_prefix(field)
                .map(|v| v.strip_prefix(' ').unwrap_or(v).to_string())
        };
        if let Some(v) = value("event:") {
            name = Some(v);
        } else if let Some(v) = value("data:") {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&v);
                }
                None => data = Some(v),
            }
        }
    }
    data.map(|data| Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_wherever_the_chunks_split() {
        let all = b"event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: ping\r\ndata: {}\r\n\r\ndata: x\ndata: y\n\n";
        for split in 1..all.len() {
            let mut s = SseSplitter::default();
            let mut got = Vec::new();
            for part in all.chunks(split) {
                got.extend(s.push(part).unwrap());
            }
            assert_eq!(
                got,
                vec![
                    Event {
                        name: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        name: Some("ping".into()),
                        data: "{}".into()
                    },
                    Event {
                        name: None,
                        data: "x\ny".into()
                    },
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn an_endless_event_is_refused_and_memory_stays_bounded() {
        let mut s = SseSplitter::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..40 {
            if s.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(s.carry.capacity() <= MAX_EVENT_BYTES + chunk.len());
    }
}
