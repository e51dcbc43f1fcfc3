//! What the routing micro-benchmarks share: a routing table with providers added through a
//! real `Supervisor` (SQLite store, no upstream ever called), and this thread's CPU clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use switchyard::config::{Config, ProviderSpec, Strategy};
use switchyard::events::EventBus;
use switchyard::metrics::Metrics;
use switchyard::provider::ProbeSettings;
use switchyard::provider::health::{Health, Policy};
use switchyard::store::{DbPool, Store};
use switchyard::supervisor::strategy::Strategies;
use switchyard::supervisor::{AddProvider, PickResult, Routes, Supervisor};

/// CPU time of this thread: on a busy machine wall time would count other processes' turns.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// A routing table for model `m` routed by `strategy`, with `specs` added as providers 1, 2,
/// … and each measured once (`warm` picks), so latency-aware strategies have figures to rank
/// by. Returns the supervisor too: the table lives as long as it runs.
pub async fn table(
    pool: &DbPool,
    strategy: Strategy,
    specs: Vec<ProviderSpec>,
    warm: usize,
) -> (Routes, Addr<Supervisor>) {
    let pool = pool.clone();
    let config = Config::default();
    let deps = switchyard::provider::ProviderDeps {
        store: SyncArbiter::start(1, move || Store::new(pool.clone())),
        events: EventBus::default(),
        metrics: Arc::new(Metrics::default()),
        policy: Policy::default(),
        probe: ProbeSettings::from_config(&config),
    };
    let supervisor = Supervisor::new(deps);
    let routes = supervisor.routes();
    let supervisor = supervisor.start();
    routes.set_strategies(Strategies {
        global: strategy,
        models: Default::default(),
    });
    for (i, spec) in specs.into_iter().enumerate() {
        let config = spec.validate(i as i64 + 1, 30_000, &|_| None).expect("valid");
        let health = Health::healthy();
        supervisor
            .send(AddProvider { config, health })
            .await
            .expect("added");
    }
    for _ in 0..warm {
        if let PickResult::Route(r) = routes.pick("m", &[]) {
            r.entry
                .load
                .observe_latency(Duration::from_millis(40 + 10 * r.entry.config.id as u64));
        }
    }
    (routes, supervisor)
}
