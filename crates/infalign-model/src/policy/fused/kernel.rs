//! The fused operations on host slices, in parallel over the cores: the log-probability of a
//! target (one row of logits at a time) and the exact GELU (element by element).
//!
//! Forward, per row `x` of `V` logits and its target `t`: `log p(t) = x[t] - logsumexp(x)`, in two
//! sweeps over the row (its maximum, then the sum of `exp(x - max)`), so nothing of size `V` is
//! written. Backward, given the upstream gradient `g` of `log p(t)`: the gradient of the row is
//! `g (onehot(t) - softmax(x))`, and `logsumexp(x)` is recovered from the forward's output as
//! `x[t] - log p(t)`, so the backward is one sweep that writes the gradient and nothing else.
//!
//! GELU is the exact one, `x Phi(x)` with the normal CDF through `erfc`, and its derivative
//! `Phi(x) + x phi(x)`; the same function burn's `gelu` computes, to f32 rounding.
//!
//! `exp` is a range-reduced polynomial (relative error below 2e-7 on the whole f32 range the rows
//! reach) written so that the compiler vectorises it; on x86-64 the row sweeps are also compiled
//! for AVX2 + FMA and chosen at run time when the CPU has them.

use rayon::prelude::*;

/// Lanes of the independent accumulators in the row reductions (lets the compiler vectorise a
/// reduction whose order it may not change).
const LANES: usize = 16;

/// Rows per rayon task: enough work per task (16 rows of a 4k vocabulary is 64k exps) that the
/// scheduling cost is noise, few enough that two or more cores share a batch.
const ROWS_PER_TASK: usize = 8;

/// `e^x` for `x` in f32's range, vectorisable: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-7
/// Taylor polynomial for `e^r` (truncation below 6e-9), and `2^n` built from its exponent bits.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // `n` as an integer, read off the rounded sum's low mantissa bits (no float-to-int
    // conversion, which does not vectorise), then 2^n from its exponent bits.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

#[inline(always)]
pub(super) fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let mut max = tail.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for lane in lanes {
        max = max.max(lane);
    }
    max
}

#[inline(always)]
fn row_sum_exp(row: &[f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp(x - shift);
        }
    }
    let tail: f32 = tail.iter().map(|&x| exp(x - shift)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `log p(target)` of one row; NaN when the target is outside the row.
#[inline(always)]
fn forward_row(row: &[f32], target: usize) -> f32 {
    let Some(&picked) = row.get(target) else {
        return f32::NAN;
    };
    let max = row_max(row);
    picked - (max + row_sum_exp(row, max).ln())
}

/// The gradient of one row: `out = g (onehot(target) - exp(row - lse))`.
#[inline(always)]
fn backward_row(row: &[f32], target: usize, logprob: f32, g: f32, out: &mut [f32]) {
    let Some(&picked) = row.get(target) else {
        out.fill(f32::NAN);
        return;
    };
    let lse = picked - logprob;
    let neg_g = -g;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = neg_g * exp(x - lse);
    }
    out[target] += g;
}

/// Compile `$body` (a closure over one row) for AVX2 + FMA where the CPU has them, and plainly
/// otherwise; the two agree to rounding.
macro_rules! multiversion {
    ($name:ident, $avx:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $body:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx($($arg: $ty),*) -> $ret {
            $body
        }

        #[inline]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has both features the function was compiled for.
                    return unsafe { $avx($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(super) use multiversion;

multiversion!(
    forward_rows,
    forward_rows_avx2,
    (logits: &[f32], vocab: usize, targets: &[usize], out: &mut [f32]) -> (),
    {
        for ((row, &target), o) in logits.chunks_exact(vocab).zip(targets).zip(out.iter_mut()) {
            *o = forward_row(row, target);
        }
    }
);

multiversion!(
    backward_rows,
    backward_rows_avx2,
    (
        logits: &[f32],
        vocab: usize,
        targets: &[usize],
        logprobs: &[f32],
        grads: &[f32],
        out: &mut [f32]
    ) -> (),
    {
        let rows = logits.chunks_exact(vocab).zip(out.chunks_exact_mut(vocab));
        for (((row, o), &target), (&logprob, &g)) in
            rows.zip(targets).zip(logprobs.iter().zip(grads))
        {
            backward_row(row, target, logprob, g, o);
        }
    }
);

/// `log p(targets[i])` under the softmax of row `i` of `logits` (`[rows, vocab]`, row-major);
/// NaN for a target outside the vocabulary.
pub fn target_logprobs(logits: &[f32], vocab: usize, targets: &[usize]) -> Vec<f32> {
    debug_assert_eq!(logits.len(), vocab * targets.len());
    let mut out = vec![0.0f32; targets.len()];
    if vocab == 0 {
        out.fill(f32::NAN);
        return out;
    }
    out.par_chunks_mut(ROWS_PER_TASK)
        .zip(logits.par_chunks(ROWS_PER_TASK * vocab))
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .for_each(|((out, logits), targets)| forward_rows(logits, vocab, targets, out));
    out
}

/// The gradient of `sum_i grads[i] * log p(targets[i])` with respect to `logits`, given the
/// forward's `logprobs`: `[rows, vocab]`, row-major.
pub fn target_logprobs_backward(
    logits: &[f32],
    vocab: usize,
    targets: &[usize],
    logprobs: &[f32],
    grads: &[f32],
) -> Vec<f32> {
    debug_assert_eq!(logits.len(), vocab * targets.len());
    let mut out = vec![0.0f32; logits.len()];
    if vocab == 0 {
        return out;
    }
    out.par_chunks_mut(ROWS_PER_TASK * vocab)
        .zip(logits.par_chunks(ROWS_PER_TASK * vocab))
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .zip(logprobs.par_chunks(ROWS_PER_TASK))
        .zip(grads.par_chunks(ROWS_PER_TASK))
        .for_each(|((((out, logits), targets), logprobs), grads)| {
            backward_rows(logits, vocab, targets, logprobs, grads, out)
        });
    out
}

/// Elements per rayon task of the elementwise kernels.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `erfc(z)` for `z >= 0`, to a relative error of about 1.2e-7 (a Chebyshev fit of
/// `erfc(z) e^(z^2)` in `t = 1 / (1 + z / 2)`), vectorisable.
#[inline(always)]
fn erfc_nonnegative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    t * exp(-z * z + poly)
}

/// The standard normal CDF at `x`.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    let half_tail = 0.5 * erfc_nonnegative(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    if x >= 0.0 {
        1.0 - half_tail
    } else {
        half_tail
    }
}

/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

multiversion!(
    gelu_slice,
    gelu_slice_avx2,
    (input: &[f32], out: &mut [f32]) -> (),
    {
        for (o, &x) in out.iter_mut().zip(input) {
            *o = x * normal_cdf(x);
        }
    }
);

multiversion!(
    gelu_backward_slice,
    gelu_backward_slice_avx2,
    (input: &[f32], grads: &[f32], out: &mut [f32]) -> (),
    {
        for ((o, &x), &g) in out.iter_mut().zip(input).zip(grads) {
            let density = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
            *o = g * (normal_cdf(x) + x * density);
        }
    }
);

/// The exact GELU of every element, `x Phi(x)`.
pub fn gelu(input: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; input.len()];
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(input.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(out, input)| gelu_slice(input, out));
    out
}

/// The gradient through GELU: `grads * (Phi(x) + x phi(x))`, element by element.
pub fn gelu_backward(input: &[f32], grads: &[f32]) -> Vec<f32> {
    debug_assert_eq!(input.len(), grads.len());
    let mut out = vec![0.0f32; input.len()];
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(input.par_chunks(ELEMENTS_PER_TASK))
        .zip(grads.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((out, input), grads)| gelu_backward_slice(input, grads, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same quantities in f64, the textbook way.
    fn reference(row: &[f32], target: usize) -> (f64, Vec<f64>) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        let softmax = row.iter().map(|&x| (x as f64 - lse).exp()).collect();
        (row[target] as f64 - lse, softmax)
    }

    #[test]
    fn exp_is_accurate_over_the_range_the_rows_reach() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let relative = ((exp(x) as f64) / (x as f64).exp() - 1.0).abs();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn rows_agree_with_f64_including_a_ragged_vocabulary() {
        // 37 is not a multiple of the lane count; 1 row is shorter than a rayon task.
        for (rows, vocab) in [(1usize, 37usize), (21, 37), (9, 16), (3, 4099)] {
            let logits: Vec<f32> = (0..rows * vocab)
                .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 9.0)
                .collect();
            let targets: Vec<usize> = (0..rows).map(|r| (r * 31) % vocab).collect();
            let grads: Vec<f32> = (0..rows).map(|r| 0.5 - r as f32 * 0.1).collect();
            let logp = target_logprobs(&logits, vocab, &targets);
            let grad = target_logprobs_backward(&logits, vocab, &targets, &logp, &grads);
            for r in 0..rows {
                let row = &logits[r * vocab..(r + 1) * vocab];
                let (want, softmax) = reference(row, targets[r]);
                assert!((logp[r] as f64 - want).abs() < 2e-6, "row {r}");
                for (j, p) in softmax.iter().enumerate() {
                    let onehot = if j == targets[r] { 1.0 } else { 0.0 };
                    let want = grads[r] as f64 * (onehot - p);
                    let got = grad[r * vocab + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-6,
                        "row {r}, column {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gelu_and_its_derivative_agree_with_f64() {
        let xs: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.005).collect();
        let ones = vec![1.0f32; xs.len()];
        let (values, slopes) = (gelu(&xs), gelu_backward(&xs, &ones));
        for ((&x, &value), &slope) in xs.iter().zip(&values).zip(&slopes) {
            let x64 = x as f64;
            let cdf = 0.5 * libm::erfc(-x64 / std::f64::consts::SQRT_2);
            let density = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((value as f64 - x64 * cdf).abs() < 2e-6, "gelu({x})");
            assert!(
                (slope as f64 - (cdf + x64 * density)).abs() < 2e-6,
                "gelu'({x})"
            );
        }
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_nan_not_a_panic() {
        let logp = target_logprobs(&[0.0, 1.0, 2.0], 3, &[3]);
        assert!(logp[0].is_nan());
        let grad = target_logprobs_backward(&[0.0, 1.0, 2.0], 3, &[7], &logp, &[1.0]);
        assert!(grad.iter().all(|g| g.is_nan()));
    }
}
