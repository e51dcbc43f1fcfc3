//! Micro-benchmark of routing picks under contention: N threads each pick a route and drop it
//! in a loop, for a fixed time, on one shared `Routes` (as the HTTP workers do). Prints, per
//! thread count and provider count:
//!
//! - the total picks per second (wall clock);
//! - the CPU time per pick of each thread (`CLOCK_THREAD_CPUTIME_ID`): the work, plus any
//!   spinning on a contended lock;
//! - the off-CPU time per pick and thread (wall × threads − CPU, per pick): time asleep on a
//!   lock or waiting for a core, which is all a pick adds beyond its work when the cores are
//!   not oversubscribed;
//! - the cores kept busy (CPU time of all threads / wall time): a pick serialised on one
//!   lock keeps about one core busy however many threads try;
//! - the times a thread went to sleep per 1000 picks (voluntary context switches,
//!   `RUSAGE_THREAD`): a thread sleeps only to wait for a lock held by another, so this
//!   counts contention even when other processes take the cores (which the wall-clock
//!   columns cannot tell from it).
//!
//! ```text
//! cargo run --release --example pick_contention            # 1 s per row
//! cargo run --release --example pick_contention -- 3 least_busy
//! ```
//!
//! The arguments are the seconds per row (default 1) and a strategy (default
//! `weighted_round_robin`). Compare thread counts up to the machine's cores: beyond them,
//! threads wait for a core whatever the pick does. Providers point at an address where
//! nothing listens: no request is ever sent.

mod bench_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bench_common::thread_cpu;
use switchyard::config::{ProviderSpec, Strategy};
use switchyard::store::{Backend, DbPool};
use switchyard::supervisor::{PickResult, Routes};

const THREADS: [usize; 4] = [1, 2, 4, 8];
const PROVIDERS: [usize; 2] = [3, 20];
/// Picks between two looks at the clock.
const BATCH: u64 = 256;

fn spec(i: usize) -> ProviderSpec {
    let v = serde_json::json!({
        "name": format!("p{i}"), "base_url": "http://127.0.0.1:9/v1", "models": ["m"],
        // Uneven weights: the round-robin has a real sequence to follow.
        "weight": 1 + i % 3,
    });
    serde_json::from_value(v).expect("spec")
}

/// Times this thread gave up its core (to wait for a lock: nothing else here sleeps).
fn thread_sleeps() -> u64 {
    // SAFETY: an all-zero rusage is valid; `usage` is writable for the duration of the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    u64::try_from(usage.ru_nvcsw).unwrap_or(0)
}

/// One thread's share of a run: (picks, CPU time, sleeps).
fn picker(routes: Routes, start: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> (u64, Duration, u64) {
    while !start.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let s0 = thread_sleeps();
    let t0 = thread_cpu();
    let mut picks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            match routes.pick("m", &[]) {
                PickResult::Route(r) => drop(std::hint::black_box(r)),
                _ => panic!("no route"),
            }
        }
        picks += BATCH;
    }
    (picks, thread_cpu() - t0, thread_sleeps() - s0)
}

/// Runs `threads` pickers for `run` and prints the row.
fn measure(routes: &Routes, providers: usize, threads: usize, run: Duration) {
    let start = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (routes, start, stop) = (routes.clone(), start.clone(), stop.clone());
            std::thread::spawn(move || picker(routes, start, stop))
        })
        .collect();
    let began = Instant::now();
    start.store(true, Ordering::Release);
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(u64, Duration, u64)> = handles.into_iter().map(|h| h.join().expect("picker")).collect();
    let wall = began.elapsed();
    let picks: u64 = results.iter().map(|r| r.0).sum();
    let cpu: Duration = results.iter().map(|r| r.1).sum();
    let per_second = picks as f64 / wall.as_secs_f64();
    let cpu_ns = cpu.as_nanos() as f64 / picks as f64;
    let off_ns = (wall.as_nanos() as f64 * threads as f64 - cpu.as_nanos() as f64).max(0.0) / picks as f64;
    let cores = cpu.as_secs_f64() / wall.as_secs_f64();
    let sleeps = results.iter().map(|r| r.2).sum::<u64>() as f64 * 1000.0 / picks as f64;
    println!(
        "| {providers} | {threads} | {:.2} M | {cpu_ns:.0} | {off_ns:.0} | {cores:.2} | {sleeps:.1} |",
        per_second / 1e6
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let run = Duration::from_secs_f64(args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0));
    let strategy = args
        .next()
        .map(|name| {
            Strategy::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .expect("a strategy name")
        })
        .unwrap_or_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{} for {:.1} s per row, {cores} cores available",
        strategy.as_str(),
        run.as_secs_f64()
    );
    println!();
    println!(
        "| providers | threads | picks/s | CPU ns/pick | off-CPU ns/pick | cores busy | sleeps/1k picks |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    System::new().block_on(async move {
        let pool = DbPool::connect(&Backend::from_url(&url).expect("url"), 1).expect("pool");
        switchyard::store::migrations::run(&pool).expect("migrations");
        for n in PROVIDERS {
            let specs = (0..n).map(spec).collect();
            let (routes, _supervisor) = bench_common::table(&pool, strategy, specs, n).await;
            for threads in THREADS {
                measure(&routes, n, threads, run);
            }
        }
    });
}
