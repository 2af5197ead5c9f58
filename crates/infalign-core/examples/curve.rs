//! Prints a win-rate-versus-KL curve as JSON lines, for comparison with other implementations.
//!
//! `cargo run -p infalign-core --release --example curve -- [SPEC] [N] [POINTS] [LAMBDA_MIN] [LAMBDA_MAX]`
//! (defaults: normexp:12 4 200 0.01 1000, the benchmark curve).

use infalign_core::{theory, Transform};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let transform: Transform = arg(0, "normexp:12").parse()?;
    let n: u32 = arg(1, "4").parse()?;
    let points: usize = arg(2, "200").parse()?;
    let lo: f64 = arg(3, "0.01").parse()?;
    let hi: f64 = arg(4, "1000").parse()?;
    let lambdas = theory::log_spaced(lo, hi, points)?;
    for evaluation in theory::win_rate_curve(&transform, n, &lambdas)? {
        println!("{}", serde_json::to_string(&evaluation)?);
    }
    Ok(())
}
