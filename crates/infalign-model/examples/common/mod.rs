//! Helpers shared by the benchmark examples (each example uses what it needs).
#![allow(dead_code)]

use std::time::Instant;

/// The median (the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        0.5 * (sorted[middle - 1] + sorted[middle])
    }
}

/// Seconds of each of `repeats` runs of `work`, after one warm-up run.
pub fn time(repeats: usize, mut work: impl FnMut()) -> Vec<f64> {
    work();
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect()
}

/// A clap value parser for counts and sizes: a positive integer.
pub fn positive(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("`{value}` is not a positive integer"))
}
