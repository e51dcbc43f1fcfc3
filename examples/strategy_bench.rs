//! Micro-benchmark of one routing pick per strategy: the whole `Routes::pick` a request makes
//! per attempt (the snapshot, candidates and their figures, the strategy, the limiter's slot,
//! today's count) and dropping its route (which frees the slot). Prints the thread's CPU time
//! per pick, in ns.
//!
//! ```text
//! cargo run --example strategy_bench            # debug build: an upper bound
//! cargo run --release --example strategy_bench  # what production pays
//! ```
//!
//! Providers point at an address where nothing listens: no request is ever sent.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use switchyard::config::{Config, ProviderSpec, Strategy};
use switchyard::events::EventBus;
use switchyard::metrics::Metrics;
use switchyard::provider::ProbeSettings;
use switchyard::provider::health::{Health, Policy};
use switchyard::store::{Backend, DbPool, Store};
use switchyard::supervisor::strategy::Strategies;
use switchyard::supervisor::{AddProvider, PickResult, Supervisor};

const PICKS: u32 = 200_000;

/// CPU time of this thread: on a busy machine wall time would count other processes' turns.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

fn spec(i: usize, limited: bool) -> ProviderSpec {
    let mut v = serde_json::json!({
        "name": format!("p{i}"), "base_url": "http://127.0.0.1:9/v1", "models": ["m"],
    });
    if limited {
        v["max_concurrency"] = 100_000.into();
        v["rpm"] = 100_000_000.into();
    }
    serde_json::from_value(v).expect("spec")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    System::new().block_on(async move {
        let pool = DbPool::connect(&Backend::from_url(&url).expect("url"), 1).expect("pool");
        switchyard::store::migrations::run(&pool).expect("migrations");
        let config = Config::default();
        println!("| providers | limits | strategy | ns/pick |");
        println!("|---:|---|---|---:|");
        for (n, limited) in [(3, false), (3, true), (10, false), (10, true)] {
            for strategy in Strategy::ALL {
                let pool = pool.clone();
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
                for i in 0..n {
                    let config = spec(i, limited)
                        .validate(i as i64 + 1, 30_000, &|_| None)
                        .expect("valid");
                    let health = Health::healthy();
                    supervisor
                        .send(AddProvider { config, health })
                        .await
                        .expect("added");
                }
                // Figures to rank by: each provider measured, a little load.
                for _ in 0..3 {
                    if let PickResult::Route(r) = routes.pick("m", &[]) {
                        r.load
                            .observe_latency(Duration::from_millis(40 + 10 * r.provider.id as u64));
                    }
                }
                let t0 = thread_cpu();
                for _ in 0..PICKS {
                    match routes.pick("m", &[]) {
                        PickResult::Route(r) => drop(std::hint::black_box(r)),
                        _ => panic!("no route"),
                    }
                }
                let ns = (thread_cpu() - t0).as_nanos() as f64 / f64::from(PICKS);
                let limits = if limited { "set" } else { "none" };
                println!("| {n} | {limits} | {} | {ns:.0} |", strategy.as_str());
                supervisor.do_send(switchyard::supervisor::ListProviders);
            }
        }
    });
}
