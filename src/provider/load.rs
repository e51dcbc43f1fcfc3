//! Live load of one provider: requests in flight and successes not yet counted (shared
//! atomically with the workers that call it), and a one-minute window of finished requests
//! and their latency.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Successes are packed into one word, `count << SUCCESS_SHIFT | latency sum in ms`, so the
/// actor takes both with one atomic swap and never sees a count without its latency.
const SUCCESS_SHIFT: u32 = 40;
const LATENCY_MASK: u64 = (1 << SUCCESS_SHIFT) - 1;

/// Counters shared between the provider actor and the workers routing to it.
#[derive(Debug, Default)]
pub struct LoadCounters {
    inflight: AtomicI64,
    /// Successes since the actor last took them (see `SUCCESS_SHIFT`).
    successes: AtomicU64,
    /// The actor has been rung and will take the successes soon.
    rung: AtomicBool,
    /// The provider refused the `stream_options` member the router adds to streams: it is
    /// no longer sent (this instance, until restart).
    refuses_stream_options: AtomicBool,
    /// When routing last turned away from the provider (it was marked unhealthy), on the
    /// process clock (`clock_ms`); `u64::MAX` while a mark has not reached the routing table
    /// yet; 0 for "since the start". See `started_after_mark`.
    turned_away_at: AtomicU64,
    /// Successes of attempts that started after `turned_away_at`, since the actor last took
    /// them: on an unhealthy provider only these prove that it works again.
    fresh_successes: AtomicU64,
    /// Bumped each time routing turns away; every in-flight guard remembers the one it
    /// started under.
    mark_epoch: AtomicU64,
    /// Attempts still in flight that started before routing last turned away.
    stale_inflight: AtomicI64,
    /// Decaying latency average in ms, as `f64` bits (see `latency`).
    latency_ewma: AtomicU64,
    /// When the last latency sample came, on the process clock (`clock_ms`, never 0); 0
    /// before the first sample.
    latency_at_ms: AtomicU64,
}

/// Milliseconds since the process's first call, from the monotonic clock; never 0.
pub fn clock_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// By the clock, an attempt counts as started after the mark only when it started more than
/// this after routing turned away: latencies are whole milliseconds, measured from just after
/// the pick, so a start time read from one is up to a millisecond late.
const MARK_SETTLE_MS: u64 = 1;

impl LoadCounters {
    /// Marks one request as started; the guard marks it finished when dropped, so an early
    /// return or a cancelled request can never leak an in-flight count.
    pub fn start(self: &std::sync::Arc<Self>) -> InflightGuard {
        let epoch = self.mark_epoch.load(Ordering::SeqCst);
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone(), epoch)
    }

    pub fn refuses_stream_options(&self) -> bool {
        self.refuses_stream_options.load(Ordering::Relaxed)
    }

    /// Remembers that the provider refuses `stream_options`; true the first time.
    pub fn mark_refuses_stream_options(&self) -> bool {
        !self.refuses_stream_options.swap(true, Ordering::Relaxed)
    }

    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed).max(0)
    }

    /// Adds one success. Returns true when nobody has rung the actor since it last took
    /// them: the caller then rings it, and the actor takes the batch a moment later, so under
    /// load there is one message per batch window, not one per request.
    pub fn add_success(&self, latency_ms: u64) -> bool {
        if self.started_after_mark(latency_ms) {
            self.fresh_successes.fetch_add(1, Ordering::AcqRel);
        }
        let add = (1u64 << SUCCESS_SHIFT) | latency_ms.min(u64::from(u32::MAX));
        self.successes.fetch_add(add, Ordering::AcqRel);
        !self.rung.swap(true, Ordering::AcqRel)
    }

    /// Adds a latency sample (a whole answer, or the first byte of a stream) to the decaying
    /// average the latency-aware strategies rank by. Lock-free: concurrent samples retry.
    pub fn observe_latency(&self, latency: std::time::Duration) {
        self.observe_latency_at(latency, clock_ms());
    }

    fn observe_latency_at(&self, latency: std::time::Duration, now_ms: u64) {
        /// Weight of a new sample: about the last five samples count.
        const ALPHA: f64 = 0.3;
        let sample = latency.as_secs_f64() * 1000.0;
        let first = self.latency_at_ms.load(Ordering::Acquire) == 0;
        let _ = self
            .latency_ewma
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                let old = f64::from_bits(bits);
                let next = if first {
                    sample
                } else {
                    old + ALPHA * (sample - old)
                };
                Some(next.to_bits())
            });
        self.latency_at_ms.store(now_ms.max(1), Ordering::Release);
    }

    /// The latency average in ms and how long ago its last sample came; `None` before the
    /// first sample.
    pub fn latency(&self) -> Option<(f64, std::time::Duration)> {
        self.latency_at(clock_ms())
    }

    /// `latency` as of `now_ms` on `clock_ms`'s clock (a caller reading many providers reads
    /// the clock once).
    pub fn latency_at(&self, now_ms: u64) -> Option<(f64, std::time::Duration)> {
        let at = self.latency_at_ms.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let avg = f64::from_bits(self.latency_ewma.load(Ordering::Acquire));
        Some((avg, std::time::Duration::from_millis(now_ms.saturating_sub(at))))
    }

    /// Takes the successes added so far: (count, latency sum in ms). The next success rings
    /// again.
    pub fn take_successes(&self) -> (u64, u64) {
        self.rung.store(false, Ordering::Release);
        let v = self.successes.swap(0, Ordering::AcqRel);
        (v >> SUCCESS_SHIFT, v & LATENCY_MASK)
    }
}

impl LoadCounters {
    /// The provider is being marked unhealthy: from now until routing has turned away from
    /// it (`turned_away`), no success is fresh, and earlier fresh ones no longer count.
    pub fn turning_away(&self) {
        self.turned_away_at.store(u64::MAX, Ordering::Release);
        self.fresh_successes.store(0, Ordering::Release);
    }

    /// Routing no longer picks the provider as a healthy one (called by the routing table's
    /// writer once it holds the unhealthy view): attempts starting later were sent to it
    /// knowing it was marked.
    pub fn turned_away(&self) {
        self.mark_epoch.fetch_add(1, Ordering::SeqCst);
        self.stale_inflight
            .store(self.inflight.load(Ordering::SeqCst), Ordering::SeqCst);
        self.turned_away_at.store(clock_ms(), Ordering::Release);
    }

    /// Whether an attempt that just finished after `latency_ms` (its guard still held) started
    /// after routing turned away from the provider: its success is then a real success after
    /// the mark, which may recover it. Attempts already under way when the mark came are not.
    /// Known for sure when no such attempt is left in flight (this one would be one), else
    /// told by the clock.
    pub fn started_after_mark(&self, latency_ms: u64) -> bool {
        let mark = self.turned_away_at.load(Ordering::Acquire);
        if mark == 0 {
            return true;
        }
        mark != u64::MAX
            && (self.stale_inflight.load(Ordering::SeqCst) <= 0
                || clock_ms().saturating_sub(latency_ms) > mark.saturating_add(MARK_SETTLE_MS))
    }

    /// Takes the count of fresh successes (see `started_after_mark`).
    pub fn take_fresh_successes(&self) -> u64 {
        self.fresh_successes.swap(0, Ordering::AcqRel)
    }
}

/// See [`LoadCounters::start`]. Remembers the mark epoch it started under.
#[derive(Debug)]
pub struct InflightGuard(std::sync::Arc<LoadCounters>, u64);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.mark_epoch.load(Ordering::SeqCst) != self.1 {
            self.0.stale_inflight.fetch_sub(1, Ordering::SeqCst);
        }
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Finished requests per second over the last 60 seconds, as a ring of one-second buckets.
#[derive(Debug)]
pub struct Window {
    origin: Instant,
    buckets: [(u64, u64, u64); 60], // (second index, requests, latency sum in ms)
}

impl Default for Window {
    fn default() -> Self {
        Window {
            origin: Instant::now(),
            buckets: [(u64::MAX, 0, 0); 60],
        }
    }
}

impl Window {
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Records one finished request.
    pub fn record(&mut self, now: Instant, latency_ms: u64) {
        self.record_many(now, 1, latency_ms);
    }

    /// Records `count` finished requests whose latencies add up to `latency_sum_ms`.
    pub fn record_many(&mut self, now: Instant, count: u64, latency_sum_ms: u64) {
        let s = self.second(now);
        let b = &mut self.buckets[(s % 60) as usize];
        if b.0 != s {
            *b = (s, 0, 0);
        }
        b.1 += count;
        b.2 += latency_sum_ms;
    }

    /// (requests in the last minute, average latency in ms over them).
    pub fn summary(&self, now: Instant) -> (u64, f64) {
        let s = self.second(now);
        let (mut n, mut sum) = (0u64, 0u64);
        for b in &self.buckets {
            if b.0 != u64::MAX && b.0 + 60 > s && b.0 <= s {
                n += b.1;
                sum += b.2;
            }
        }
        (n, if n == 0 { 0.0 } else { sum as f64 / n as f64 })
    }
}

/// The load score 0–100 shown by `GET /api/providers/load`:
/// `min(100, 60·min(1, inflight/16) + 25·min(1, rpm/600) + 15·min(1, avg_ms/10000))`.
/// In-flight requests weigh most because they are what an extra request would queue behind;
/// the one-minute rate and latency smooth it. The reference points (16 concurrent, 10 req/s,
/// 10 s) are where a typical LLM upstream starts to saturate.
pub fn load_score(inflight: i64, rpm: u64, avg_ms: f64) -> f64 {
    let part = |v: f64, full: f64| (v / full).clamp(0.0, 1.0);
    let score =
        60.0 * part(inflight as f64, 16.0) + 25.0 * part(rpm as f64, 600.0) + 15.0 * part(avg_ms, 10_000.0);
    (score * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn inflight_guard_counts_down_on_drop() {
        let c = Arc::new(LoadCounters::default());
        let g1 = c.start();
        let g2 = c.start();
        assert_eq!(c.inflight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(c.inflight(), 0);
    }

    #[test]
    fn successes_are_taken_in_one_piece() {
        let c = LoadCounters::default();
        assert!(c.add_success(10), "the first rings");
        assert!(!c.add_success(20), "later ones do not");
        assert_eq!(c.take_successes(), (2, 30));
        assert_eq!(c.take_successes(), (0, 0));
        assert!(c.add_success(5), "rings again after a take");
        assert!(!c.add_success(5));
    }

    #[test]
    fn only_attempts_started_after_the_mark_are_fresh() {
        let c = Arc::new(LoadCounters::default());
        c.add_success(1);
        assert_eq!(
            c.take_fresh_successes(),
            1,
            "before any mark every success is fresh"
        );
        let before = c.start();
        c.turning_away();
        c.add_success(0);
        assert_eq!(
            c.take_fresh_successes(),
            0,
            "nothing is fresh while the mark spreads"
        );
        c.turned_away();
        std::thread::sleep(Duration::from_millis(10));
        // The attempt under way when routing turned away took a long time: not fresh.
        assert!(!c.started_after_mark(1_000));
        c.add_success(1_000);
        assert_eq!(c.take_fresh_successes(), 0);
        // One that started after it, while the old one is still in flight: the clock says so.
        let after = c.start();
        assert!(c.started_after_mark(0));
        drop(after);
        drop(before);
        // With no old attempt left, any success is after the mark, however quick the mark.
        c.turning_away();
        c.turned_away();
        let quick = c.start();
        assert!(c.started_after_mark(5));
        c.add_success(5);
        drop(quick);
        assert_eq!(c.take_fresh_successes(), 1);
        assert!(c.started_after_mark(u64::MAX), "absurd latencies never overflow");
        let _old = c.start();
        c.turning_away();
        c.turned_away();
        assert!(!c.started_after_mark(u64::MAX), "absurd latencies never overflow");
    }

    #[test]
    fn latency_average_follows_samples_and_ages() {
        let c = LoadCounters::default();
        assert!(c.latency_at(10).is_none());
        c.observe_latency_at(Duration::from_millis(100), 10);
        assert_eq!(c.latency_at(10).map(|l| l.0), Some(100.0));
        c.observe_latency_at(Duration::from_millis(200), 10);
        let (avg, _) = c.latency_at(10).unwrap();
        assert!((avg - 130.0).abs() < 1e-9, "{avg}");
        let (_, idle) = c.latency_at(5_010).unwrap();
        assert_eq!(idle, Duration::from_secs(5));
        c.observe_latency_at(Duration::MAX, 10);
        assert!(c.latency_at(0).unwrap().0.is_finite());
    }

    #[test]
    fn window_forgets_after_a_minute() {
        let mut w = Window::default();
        let t0 = w.origin;
        w.record(t0, 100);
        w.record(t0 + Duration::from_secs(30), 300);
        assert_eq!(w.summary(t0 + Duration::from_secs(31)), (2, 200.0));
        assert_eq!(w.summary(t0 + Duration::from_secs(61)), (1, 300.0));
        assert_eq!(w.summary(t0 + Duration::from_secs(200)), (0, 0.0));
    }

    #[test]
    fn load_score_is_bounded() {
        assert_eq!(load_score(0, 0, 0.0), 0.0);
        assert_eq!(load_score(1000, 100_000, 1e9), 100.0);
        assert_eq!(load_score(8, 0, 0.0), 30.0);
    }
}
