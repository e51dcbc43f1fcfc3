//! The routing queue: requests that found every candidate provider at its limit wait here, in
//! arrival order, for the first free slot. It is bounded twice: by length (`max_queue`; a
//! request arriving at a full queue is refused at once) and by time (`queue_timeout_ms`, after
//! which the request gives up). Both refusals become a 429 with `Retry-After`.
//!
//! This is the pure part: who waits, in which order, who is served. Whoever frees a slot calls
//! `serve` with a function that tries to route one waiter; it tries every waiter from the
//! oldest, so a waiter for a model whose providers are still full does not hold back one whose
//! provider has room, while waiters for the same providers keep their order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Why a request was not queued or left the queue unserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRefusal {
    /// `max_queue` requests were waiting already.
    Full,
    /// It waited `queue_timeout_ms` without a free slot.
    TimedOut,
}

struct Waiter<W, R> {
    ticket: u64,
    what: W,
    since: Instant,
    tx: oneshot::Sender<R>,
}

/// Waiting requests, oldest first. `W` says what a waiter needs; `R` is what it is given.
pub struct WaitQueue<W, R> {
    max: usize,
    next_ticket: u64,
    waiters: VecDeque<Waiter<W, R>>,
}

/// A place in the queue: the ticket to leave it with, and where the served value arrives.
pub struct Place<R> {
    pub ticket: u64,
    pub rx: oneshot::Receiver<R>,
}

impl<W, R> WaitQueue<W, R> {
    pub fn new(max: usize) -> Self {
        WaitQueue {
            max,
            next_ticket: 0,
            waiters: VecDeque::new(),
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Whether any waiter matches: a new request for the same model goes behind it.
    pub fn any(&self, matches: impl Fn(&W) -> bool) -> bool {
        self.waiters.iter().any(|w| matches(&w.what))
    }

    /// How many waiters match.
    pub fn count(&self, matches: impl Fn(&W) -> bool) -> usize {
        self.waiters.iter().filter(|w| matches(&w.what)).count()
    }

    /// How long the oldest waiter has waited.
    pub fn oldest_wait(&self, now: Instant) -> Option<Duration> {
        self.waiters
            .front()
            .map(|w| now.saturating_duration_since(w.since))
    }

    /// Joins at the back, unless the queue is full.
    pub fn join(&mut self, what: W, now: Instant) -> Result<Place<R>, QueueRefusal> {
        if self.waiters.len() >= self.max {
            return Err(QueueRefusal::Full);
        }
        let (tx, rx) = oneshot::channel();
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.waiters.push_back(Waiter {
            ticket,
            what,
            since: now,
            tx,
        });
        Ok(Place { ticket, rx })
    }

    /// Leaves the queue (gave up). False if the ticket was already served.
    pub fn leave(&mut self, ticket: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.ticket != ticket);
        self.waiters.len() != before
    }

    /// Offers routing to every waiter, oldest first: `try_serve` returns what to give it, or
    /// `None` when nothing is free for it. Returns the values whose waiter had already gone
    /// (the caller drops them outside its locks: dropping one may free a slot again).
    #[must_use]
    pub fn serve(&mut self, mut try_serve: impl FnMut(&W) -> Option<R>) -> Vec<R> {
        let mut unclaimed = Vec::new();
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].tx.is_closed() {
                self.waiters.remove(i);
                continue;
            }
            match try_serve(&self.waiters[i].what) {
                Some(value) => {
                    if let Some(w) = self.waiters.remove(i)
                        && let Err(value) = w.tx.send(value)
                    {
                        unclaimed.push(value);
                    }
                }
                None => i += 1,
            }
        }
        unclaimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_in_arrival_order_as_slots_free() {
        let now = Instant::now();
        let mut q: WaitQueue<&str, u32> = WaitQueue::new(10);
        let mut a = q.join("m", now).unwrap();
        let mut b = q.join("m", now).unwrap();
        let mut c = q.join("m", now).unwrap();
        // One slot frees: the oldest gets it.
        let mut free = 1;
        let gone = q.serve(|_| {
            (free > 0).then(|| {
                free -= 1;
                7
            })
        });
        assert!(gone.is_empty());
        assert_eq!(a.rx.try_recv().ok(), Some(7));
        assert!(b.rx.try_recv().is_err());
        let mut free = 2;
        let _ = q.serve(|_| {
            (free > 0).then(|| {
                free -= 1;
                8
            })
        });
        assert_eq!(b.rx.try_recv().ok(), Some(8));
        assert_eq!(c.rx.try_recv().ok(), Some(8));
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_refuses_and_leaving_makes_room() {
        let now = Instant::now();
        let mut q: WaitQueue<(), u32> = WaitQueue::new(2);
        let a = q.join((), now).unwrap();
        let _b = q.join((), now).unwrap();
        assert_eq!(q.join((), now).err(), Some(QueueRefusal::Full));
        assert!(q.leave(a.ticket));
        assert!(!q.leave(a.ticket));
        assert!(q.join((), now).is_ok());
        let mut q: WaitQueue<(), u32> = WaitQueue::new(0);
        assert_eq!(q.join((), now).err(), Some(QueueRefusal::Full));
    }

    #[test]
    fn a_blocked_waiter_does_not_hold_back_another_model() {
        let now = Instant::now();
        let mut q: WaitQueue<&str, &str> = WaitQueue::new(10);
        let mut a = q.join("full", now).unwrap();
        let mut b = q.join("free", now).unwrap();
        assert!(q.any(|m| *m == "full"));
        let _ = q.serve(|m| (*m == "free").then_some("route"));
        assert!(a.rx.try_recv().is_err());
        assert_eq!(b.rx.try_recv().ok(), Some("route"));
        assert_eq!(q.len(), 1);
        assert!(!q.any(|m| *m == "free"));
    }

    #[test]
    fn gone_waiters_are_skipped_and_values_given_back() {
        let now = Instant::now();
        let mut q: WaitQueue<(), u32> = WaitQueue::new(10);
        let a = q.join((), now).unwrap();
        drop(a);
        let mut b = q.join((), now).unwrap();
        let mut offered = 0;
        let gone = q.serve(|_| {
            offered += 1;
            Some(1)
        });
        assert_eq!(offered, 1, "the closed waiter is not offered a slot");
        assert!(gone.is_empty());
        assert_eq!(b.rx.try_recv().ok(), Some(1));
        assert_eq!(q.oldest_wait(now), None);
    }
}
