//! Which provider holds a Responses conversation: a request with `previous_response_id` must
//! go to the provider that created that response (only it knows it). Each instance remembers
//! the ids of the responses it served, in a bounded map (the oldest forgotten first); an id it
//! does not know is routed like any request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::translate::sse::SseSplitter;

/// Most response ids remembered per instance.
pub const MAX_REMEMBERED: usize = 100_000;
/// Longest id remembered (real ones are about 50 bytes).
const MAX_ID_BYTES: usize = 256;

/// Response id → provider id, bounded.
#[derive(Debug, Default)]
pub struct ResponseOwners {
    inner: Mutex<Owners>,
}

#[derive(Debug, Default)]
struct Owners {
    by_id: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl ResponseOwners {
    /// Remembers that `provider` created response `id`.
    pub fn remember(&self, id: &str, provider: i64) {
        self.remember_bounded(id, provider, MAX_REMEMBERED);
    }

    fn remember_bounded(&self, id: &str, provider: i64, max: usize) {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return;
        }
        let mut o = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if o.by_id.insert(id.to_string(), provider).is_none() {
            o.order.push_back(id.to_string());
        }
        while o.order.len() > max {
            if let Some(old) = o.order.pop_front() {
                o.by_id.remove(&old);
            }
        }
    }

    /// The provider that created response `id`, if this instance served it.
    pub fn owner(&self, id: &str) -> Option<i64> {
        let o = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        o.by_id.get(id).copied()
    }

    /// Remembers the id of a plain Responses answer.
    pub fn remember_answer(&self, body: &[u8], provider: i64) {
        #[derive(serde::Deserialize)]
        struct WithId {
            id: String,
        }
        if let Ok(r) = serde_json::from_slice::<WithId>(body) {
            self.remember(&r.id, provider);
        }
    }

    /// Remembers the id announced by a stream's `response.created` event, when it is in the
    /// stream's first chunk (where upstreams send it).
    pub fn remember_stream_start(&self, first: &[u8], provider: i64) {
        let Ok(events) = SseSplitter::default().push(first) else {
            return;
        };
        for e in events {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) else {
                continue;
            };
            if v.get("type").and_then(|t| t.as_str()) == Some("response.created")
                && let Some(id) = v
                    .get("response")
                    .and_then(|r| r.get("id"))
                    .and_then(|i| i.as_str())
            {
                self.remember(id, provider);
                return;
            }
        }
    }
}

/// `previous_response_id` of a Responses request, if any.
pub fn previous_response_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Prev {
        #[serde(default)]
        previous_response_id: Option<String>,
    }
    serde_json::from_slice::<Prev>(body).ok()?.previous_response_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_and_the_oldest_forgotten() {
        let o = ResponseOwners::default();
        for i in 0..10 {
            o.remember_bounded(&format!("resp_{i}"), i, 4);
        }
        assert_eq!(o.owner("resp_9"), Some(9));
        assert_eq!(o.owner("resp_6"), Some(6));
        assert_eq!(o.owner("resp_5"), None);
        assert_eq!(o.inner.lock().unwrap().by_id.len(), 4);
        o.remember(&"x".repeat(300), 1);
        assert_eq!(o.owner(&"x".repeat(300)), None);
    }

    #[test]
    fn ids_come_from_answers_and_stream_starts() {
        let o = ResponseOwners::default();
        o.remember_answer(br#"{"id":"resp_a","object":"response"}"#, 3);
        o.remember_stream_start(
            b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_b\"}}\n\n",
            4,
        );
        o.remember_answer(b"garbage", 5);
        assert_eq!(o.owner("resp_a"), Some(3));
        assert_eq!(o.owner("resp_b"), Some(4));
        assert_eq!(
            previous_response_id(br#"{"model":"m","previous_response_id":"resp_a"}"#).as_deref(),
            Some("resp_a")
        );
        assert_eq!(previous_response_id(br#"{"model":"m"}"#), None);
    }
}
