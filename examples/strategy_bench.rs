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

mod bench_common;

use actix::prelude::*;
use bench_common::thread_cpu;
use switchyard::config::{ProviderSpec, Strategy};
use switchyard::store::{Backend, DbPool};
use switchyard::supervisor::PickResult;

const PICKS: u32 = 200_000;

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
        println!("| providers | limits | strategy | ns/pick |");
        println!("|---:|---|---|---:|");
        for (n, limited) in [(3, false), (3, true), (10, false), (10, true)] {
            for strategy in Strategy::ALL {
                let specs = (0..n).map(|i| spec(i, limited)).collect();
                let (routes, supervisor) = bench_common::table(&pool, strategy, specs, 3).await;
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
