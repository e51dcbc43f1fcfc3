//! Prometheus metrics, rendered as text for `GET /metrics`.
//!
//! Counters are plain atomics or small maps behind a mutex that only one thread touches per
//! event (request counters are updated by the `StatsActor`, which already sees every
//! request), so recording costs nothing on the workers' hot path.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the upstream latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the time-to-recovery histogram, in seconds.
const RECOVERY_BUCKETS: [f64; 8] = [1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

/// A cumulative histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Outcome label of a finished upstream attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RequestOutcome {
    Success,
    Failure,
    ClientError,
}

impl RequestOutcome {
    /// Every outcome, in the order the metric lists them.
    const ALL: [RequestOutcome; 3] = [
        RequestOutcome::Success,
        RequestOutcome::Failure,
        RequestOutcome::ClientError,
    ];

    /// Its place in `ALL`.
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            RequestOutcome::Success => "success",
            RequestOutcome::Failure => "failure",
            RequestOutcome::ClientError => "client_error",
        }
    }
}

/// Every metric of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By provider, then model (looked up by `&str`: counting copies no string), then
    /// outcome in `RequestOutcome::ALL`'s order.
    requests: Mutex<BTreeMap<i64, BTreeMap<String, [u64; 3]>>>,
    latency: Mutex<BTreeMap<i64, Histogram>>,
    failovers: AtomicU64,
    /// Counted attempt failures by cause (`AttemptError::cause`), a fixed small set.
    attempt_failures: Mutex<BTreeMap<&'static str, u64>>,
    health_checks_ok: AtomicU64,
    health_checks_failed: AtomicU64,
    recovery: Mutex<Histogram>,
    /// Unix ms of the oldest usage not yet written (0 when none is pending).
    stats_oldest_pending_ms: AtomicU64,
    stats_flush_failures: AtomicU64,
    /// Whether this instance runs the health sweep (set once at start).
    sweep_flag: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// What the renderer needs to know of a provider.
pub struct ProviderLabel {
    pub id: i64,
    pub name: String,
    pub healthy: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind: keep using them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// One finished upstream attempt (called by the `StatsActor`).
    pub fn count_request(&self, provider_id: i64, model: &str, outcome: RequestOutcome, latency: Duration) {
        let mut requests = lock(&self.requests);
        let models = requests.entry(provider_id).or_default();
        let counts = match models.get_mut(model) {
            Some(c) => c,
            None => models.entry(model.to_owned()).or_default(),
        };
        counts[outcome.index()] += 1;
        drop(requests);
        lock(&self.latency)
            .entry(provider_id)
            .or_default()
            .observe(&LATENCY_BUCKETS, latency.as_secs_f64());
    }

    /// A counted attempt failure (called by the provider actor).
    pub fn count_attempt_failure(&self, cause: &'static str) {
        *lock(&self.attempt_failures).entry(cause).or_default() += 1;
    }

    /// A request moved from one provider to another.
    pub fn count_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_health_check(&self, ok: bool) {
        let c = if ok {
            &self.health_checks_ok
        } else {
            &self.health_checks_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_recovery(&self, took: Duration) {
        lock(&self.recovery).observe(&RECOVERY_BUCKETS, took.as_secs_f64());
    }

    /// Set by the `StatsActor` after each flush attempt.
    pub fn set_stats_pending_since(&self, unix_ms: Option<u64>) {
        self.stats_oldest_pending_ms
            .store(unix_ms.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn count_stats_flush_failure(&self) {
        self.stats_flush_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Shares the flag that says whether this instance runs the health sweep.
    pub fn set_sweep_flag(&self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let _ = self.sweep_flag.set(flag);
    }

    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, providers: &[ProviderLabel]) -> String {
        let name_of = |id: i64| {
            providers
                .iter()
                .find(|p| p.id == id)
                .map(|p| escape(&p.name))
                .unwrap_or_else(|| format!("removed-{id}"))
        };
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP switchyard_requests_total Upstream attempts by provider, model and outcome.\n");
        out.push_str("# TYPE switchyard_requests_total counter\n");
        for (id, models) in lock(&self.requests).iter() {
            for (model, counts) in models {
                for (outcome, n) in RequestOutcome::ALL.iter().zip(counts).filter(|(_, n)| **n > 0) {
                    let _ = writeln!(
                        out,
                        "switchyard_requests_total{{provider=\"{}\",provider_id=\"{id}\",model=\"{}\",outcome=\"{}\"}} {n}",
                        name_of(*id),
                        escape(model),
                        outcome.label()
                    );
                }
            }
        }
        out.push_str("# HELP switchyard_upstream_latency_seconds Time of upstream attempts.\n");
        out.push_str("# TYPE switchyard_upstream_latency_seconds histogram\n");
        for (id, h) in lock(&self.latency).iter() {
            let labels = format!("provider=\"{}\",provider_id=\"{id}\"", name_of(*id));
            h.render(
                &mut out,
                "switchyard_upstream_latency_seconds",
                &labels,
                &LATENCY_BUCKETS,
            );
        }
        out.push_str(
            "# HELP switchyard_failovers_total Requests moved to another provider after a failure.\n",
        );
        out.push_str("# TYPE switchyard_failovers_total counter\n");
        let _ = writeln!(out, "switchyard_failovers_total {}", self.failovers());
        out.push_str(
            "# HELP switchyard_attempt_failures_total Upstream attempts that counted against their provider, by cause.\n",
        );
        out.push_str("# TYPE switchyard_attempt_failures_total counter\n");
        for (cause, n) in lock(&self.attempt_failures).iter() {
            let _ = writeln!(out, "switchyard_attempt_failures_total{{cause=\"{cause}\"}} {n}");
        }
        out.push_str("# HELP switchyard_health_checks_total Probes of providers by result.\n");
        out.push_str("# TYPE switchyard_health_checks_total counter\n");
        let _ = writeln!(
            out,
            "switchyard_health_checks_total{{result=\"success\"}} {}",
            self.health_checks_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "switchyard_health_checks_total{{result=\"failure\"}} {}",
            self.health_checks_failed.load(Ordering::Relaxed)
        );
        out.push_str("# HELP switchyard_provider_healthy 1 when the provider is healthy, 0 when not.\n");
        out.push_str("# TYPE switchyard_provider_healthy gauge\n");
        for p in providers {
            let _ = writeln!(
                out,
                "switchyard_provider_healthy{{provider=\"{}\",provider_id=\"{}\"}} {}",
                escape(&p.name),
                p.id,
                u8::from(p.healthy)
            );
        }
        out.push_str("# HELP switchyard_recovery_seconds Time from unhealthy to healthy again.\n");
        out.push_str("# TYPE switchyard_recovery_seconds histogram\n");
        lock(&self.recovery).render(&mut out, "switchyard_recovery_seconds", "", &RECOVERY_BUCKETS);
        out.push_str("# HELP switchyard_stats_flush_lag_seconds Age of the oldest usage not yet written.\n");
        out.push_str("# TYPE switchyard_stats_flush_lag_seconds gauge\n");
        let pending = self.stats_oldest_pending_ms.load(Ordering::Relaxed);
        let lag = if pending == 0 {
            0.0
        } else {
            (chrono::Utc::now().timestamp_millis() as u64).saturating_sub(pending) as f64 / 1000.0
        };
        let _ = writeln!(out, "switchyard_stats_flush_lag_seconds {lag}");
        out.push_str(
            "# HELP switchyard_stats_flush_failures_total Usage writes that failed and were kept.\n",
        );
        out.push_str("# TYPE switchyard_stats_flush_failures_total counter\n");
        let _ = writeln!(
            out,
            "switchyard_stats_flush_failures_total {}",
            self.stats_flush_failures.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP switchyard_health_sweep_leader 1 when this instance runs the periodic health sweep.\n",
        );
        out.push_str("# TYPE switchyard_health_sweep_leader gauge\n");
        let leader = self.sweep_flag.get().is_some_and(|f| f.load(Ordering::Relaxed));
        let _ = writeln!(out, "switchyard_health_sweep_leader {}", u8::from(leader));
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.count_request(1, "gpt", RequestOutcome::Success, Duration::from_millis(20));
        m.count_failover();
        let text = m.render(&[ProviderLabel {
            id: 1,
            name: "p\"1".into(),
            healthy: true,
        }]);
        assert!(text.contains(
            r#"switchyard_requests_total{provider="p\"1",provider_id="1",model="gpt",outcome="success"} 1"#
        ));
        assert!(text.contains("switchyard_failovers_total 1"));
        assert!(text.contains(
            r#"switchyard_upstream_latency_seconds_bucket{provider="p\"1",provider_id="1",le="0.025"} 1"#
        ));
        assert!(text.contains("switchyard_recovery_seconds_count 0"));
    }

    #[test]
    fn request_counts_by_provider_model_and_outcome_in_order() {
        for (i, o) in RequestOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        let m = Metrics::default();
        let ms = Duration::from_millis(1);
        m.count_request(2, "b", RequestOutcome::ClientError, ms);
        m.count_request(2, "a", RequestOutcome::Failure, ms);
        m.count_request(2, "a", RequestOutcome::Success, ms);
        m.count_request(2, "a", RequestOutcome::Failure, ms);
        m.count_request(1, "b", RequestOutcome::Success, ms);
        let text = m.render(&[]);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("switchyard_requests_total{"))
            .map(|l| l.split_once(",model=").unwrap().1)
            .collect();
        assert_eq!(
            lines,
            [
                r#""b",outcome="success"} 1"#,
                r#""a",outcome="success"} 1"#,
                r#""a",outcome="failure"} 2"#,
                r#""b",outcome="client_error"} 1"#,
            ]
        );
    }
}
