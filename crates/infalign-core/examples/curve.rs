//! Prints a win-rate-versus-KL curve as JSON lines, for comparison with other implementations,
//! or with `--repeats R` times the computation and prints `{"median_ms", "min_ms", "repeats"}`
//! with every run's time in `seconds` (the shape `cargo xtask bench` reads).
//!
//! `cargo run -p infalign-core --release --example curve -- [--repeats R] [SPEC] [N] [POINTS] [LAMBDA_MIN] [LAMBDA_MAX]`
//! (defaults: normexp:12 4 200 0.01 1000, the benchmark curve). scripts/bench_theory_numpy.py
//! runs this beside its NumPy version and reports the ratio.

use infalign_core::{theory, Transform};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let repeats = match args.first().map(String::as_str) {
        Some("--repeats") => {
            let value = args.get(1).ok_or("--repeats needs a value")?;
            let repeats: usize = value
                .parse()
                .map_err(|_| format!("--repeats: `{value}` is not a positive integer"))?;
            args.drain(..2);
            Some(repeats.max(1))
        }
        _ => None,
    };
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let transform: Transform = arg(0, "normexp:12").parse()?;
    let n: u32 = arg(1, "4").parse()?;
    let points: usize = arg(2, "200").parse()?;
    let lo: f64 = arg(3, "0.01").parse()?;
    let hi: f64 = arg(4, "1000").parse()?;
    let lambdas = theory::log_spaced(lo, hi, points)?;
    if let Some(repeats) = repeats {
        theory::win_rate_curve(&transform, n, &lambdas)?; // warm-up
        let mut times_ms = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let start = Instant::now();
            std::hint::black_box(theory::win_rate_curve(&transform, n, &lambdas)?);
            times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let seconds: Vec<f64> = times_ms.iter().map(|ms| ms / 1e3).collect();
        times_ms.sort_by(f64::total_cmp);
        let middle = times_ms.len() / 2;
        let median_ms = if times_ms.len() % 2 == 1 {
            times_ms[middle]
        } else {
            0.5 * (times_ms[middle - 1] + times_ms[middle])
        };
        let summary = serde_json::json!({
            "median_ms": median_ms,
            "min_ms": times_ms[0],
            "repeats": repeats,
            "work": "win-rate curve",
            "side": "infalign-core",
            "seconds": seconds,
            "units": points,
            "unit": "points",
        });
        println!("{summary}");
        return Ok(());
    }
    for evaluation in theory::win_rate_curve(&transform, n, &lambdas)? {
        println!("{}", serde_json::to_string(&evaluation)?);
    }
    Ok(())
}
