//! Helpers shared by the benchmark examples (each example uses what it needs).
#![allow(dead_code)]

use std::time::Instant;

/// mimalloc, as the `infalign` binary uses: a training step allocates and frees tensors of
/// megabytes many times over, and glibc's allocator returns each to the kernel and faults it
/// back in (a fifth of the step's time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
pub fn time(repeats: usize, work: impl FnMut()) -> Vec<f64> {
    time_with_cpu(repeats, work).0
}

/// [`time`], and the CPU seconds the process spent (all threads) over the timed runs.
pub fn time_with_cpu(repeats: usize, mut work: impl FnMut()) -> (Vec<f64>, f64) {
    work();
    let cpu_start = cpu_seconds();
    let seconds = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect();
    (seconds, cpu_seconds() - cpu_start)
}

/// CPU time of this process so far, all threads, user and system (0 where the platform does
/// not say).
pub fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to write.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } == 0 {
            return now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// A clap value parser for counts and sizes: a positive integer.
pub fn positive(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("`{value}` is not a positive integer"))
}
