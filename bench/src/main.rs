//! Side-by-side benchmarks: vishnu against the libraries people would use instead.
//!
//! `vishnu-bench [--quick] [--suite NAME]...` prints a JSON list of rows
//! `{"suite", "scenario", "library", "metric", "value", "unit"}` on stdout.
//! Suites: `rust-inprocess`, `rust-redis` (VISHNU_REDIS_URL), `rust-redis-cluster`
//! (VISHNU_REDIS_CLUSTER_URL), `scale` (and `scale-sql` with VISHNU_POSTGRES_URL set).
//! Run it through `scripts/bench.sh`, which builds in release mode, starts the
//! servers and merges the Python rows.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod actix_handlers;
mod inprocess;
mod redis;
mod scale;

/// One result row.
pub fn row(
    suite: &str,
    scenario: &str,
    library: &str,
    metric: &str,
    value: f64,
    unit: &str,
) -> Value {
    eprintln!("{suite:15} {scenario:12} {library:18} {metric:17} {value:>14.3} {unit}");
    json!({"suite": suite, "scenario": scenario, "library": library, "metric": metric, "value": value, "unit": unit})
}

/// Runs `f` (which performs `per_call` operations) in `rounds` batches of
/// `iters` calls and returns the median time per operation in microseconds.
pub fn median_us(rounds: usize, iters: u64, mut f: impl FnMut(u64) -> Duration) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| f(iters).as_secs_f64() * 1e6 / iters as f64)
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// The median of per-round samples (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times a plain closure.
pub fn time_loop(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    black_box(start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let [flag, library, scenario, iters] = args.as_slice() {
        if flag == "--profile" {
            inprocess::profile(library, scenario, iters.parse().unwrap_or(10_000));
            return;
        }
    }
    let mut suites: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--suite")
        .map(|w| w[1].as_str())
        .collect();
    if suites.is_empty() {
        suites = vec!["rust-inprocess", "scale"];
    }
    let mut rows = Vec::new();
    for suite in suites {
        match suite {
            "rust-inprocess" => rows.extend(inprocess::run(quick)),
            "rust-redis" => rows.extend(redis::run(quick)),
            "rust-redis-cluster" => rows.extend(redis::run_cluster(quick)),
            "scale" => rows.extend(scale::memory(quick)),
            "scale-sql" => rows.extend(scale::sql(quick)),
            other => {
                eprintln!("vishnu-bench: unknown suite {other:?}");
                std::process::exit(2);
            }
        }
    }
    println!("{}", Value::Array(rows));
}
