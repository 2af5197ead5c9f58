//! Causal self-attention on host slices, forward and backward, one batch row per rayon task.
//!
//! The input is the block's fused projection `qkv`, `[batch, seq, 3 d]` row-major (queries, keys
//! and values side by side, each `heads` heads of `d / heads`), and the output `[batch, seq, d]`,
//! so neither direction splits the heads into a separate layout or writes a `[seq, seq]` score
//! tensor: per head, a query's scores over the keys it may see (`pad <= j <= i`) live in one
//! buffer of `seq` floats. The forward also returns each query's `logsumexp` of its scores, from
//! which the backward recomputes the probabilities (`p_ij = exp(s_ij - lse_i)`) and then
//!
//! - `dv_j += p_ij do_i`
//! - `ds_ij = p_ij (do_i . v_j - do_i . o_i)`
//! - `dq_i = scale sum_j ds_ij k_j`, `dk_j += scale sum_i ds_ij q_i`.
//!
//! A query with no visible key (a row of left padding, `i < pad`) gets an output of zeros and no
//! gradient, as burn's masked softmax gives it. Every inner loop runs over independent lanes (the
//! keys of a score row, or the channels of a head), so the compiler vectorises them; on x86-64
//! they are also compiled for AVX2 + FMA and chosen at run time.

use rayon::prelude::*;

use super::kernel::{exp, multiversion, row_max};

/// The shape of one call: `[batch, seq, 3 d]` in, `[batch, seq, d]` out, `d = heads * head_dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Shape {
    fn d_model(&self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Keys per block of a score row: a block's scores are accumulated in registers.
const KEYS: usize = 32;

/// Channels of a head are padded to a multiple of this (a vector of f32 on AVX2).
const CHANNELS: usize = 8;

fn round_up(value: usize, multiple: usize) -> usize {
    value.div_ceil(multiple) * multiple
}

/// One head of one batch row, gathered out of the fused projection and zero-padded: the queries
/// (already multiplied by the scale), keys and values as `[seq, channels]` rows, the keys and
/// values transposed as `[channels, keys]` (`keys` = `seq` rounded up to [`KEYS`]), so that a
/// block of a score row is a sum of contiguous rows. The forward reads `q`, `kt` and `v` only;
/// `k` and `vt` are gathered for the backward.
struct Head {
    /// Whether `k` and `vt` are gathered too.
    backward: bool,
    /// `head_dim` rounded up to [`CHANNELS`].
    channels: usize,
    /// `seq` rounded up to [`KEYS`].
    keys: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    vt: Vec<f32>,
}

impl Head {
    fn new(shape: &Shape, backward: bool) -> Self {
        let channels = round_up(shape.head_dim, CHANNELS);
        let keys = round_up(shape.seq, KEYS);
        let rows = shape.seq * channels;
        let columns = channels * keys;
        let for_backward = |size: usize| vec![0.0; if backward { size } else { 0 }];
        Head {
            backward,
            channels,
            keys,
            q: vec![0.0; rows],
            k: for_backward(rows),
            kt: vec![0.0; columns],
            v: vec![0.0; rows],
            vt: for_backward(columns),
        }
    }

    /// Copy head `h` of one batch row's `qkv` (`[seq, 3 d]`) in.
    fn gather(&mut self, qkv: &[f32], h: usize, shape: &Shape) {
        let (dh, d, channels, keys) = (shape.head_dim, shape.d_model(), self.channels, self.keys);
        let scale = shape.scale();
        for (i, row) in qkv.chunks_exact(3 * d).enumerate() {
            let q = &row[h * dh..(h + 1) * dh];
            let k = &row[d + h * dh..d + (h + 1) * dh];
            let v = &row[2 * d + h * dh..2 * d + (h + 1) * dh];
            let at = i * channels..i * channels + dh;
            for (out, &q) in self.q[at.clone()].iter_mut().zip(q) {
                *out = q * scale;
            }
            self.v[at.clone()].copy_from_slice(v);
            for (c, &k) in k.iter().enumerate() {
                self.kt[c * keys + i] = k;
            }
            if self.backward {
                self.k[at].copy_from_slice(k);
                for (c, &v) in v.iter().enumerate() {
                    self.vt[c * keys + i] = v;
                }
            }
        }
    }

    /// Row `i` of a `[seq, channels]` buffer.
    fn row<'a>(&self, rows: &'a [f32], i: usize) -> &'a [f32] {
        &rows[i * self.channels..(i + 1) * self.channels]
    }

    /// The key blocks a query `i` needs when keys from `pad` on are visible: `first..end`,
    /// whole blocks of [`KEYS`].
    fn blocks(&self, pad: usize, i: usize) -> std::ops::Range<usize> {
        (pad / KEYS) * KEYS..(i / KEYS + 1) * KEYS
    }
}

/// `sum_k coefs[k] * rows[k * stride + offset..][..W]`, the `W` sums kept in registers.
#[inline(always)]
fn combine<const W: usize>(coefs: &[f32], rows: &[f32], stride: usize, offset: usize) -> [f32; W] {
    let mut acc = [0.0f32; W];
    for (k, &a) in coefs.iter().enumerate() {
        let start = k * stride + offset;
        let row = &rows[start..start + W];
        for (acc, &x) in acc.iter_mut().zip(row) {
            *acc += a * x;
        }
    }
    acc
}

/// `out[w] = sum_k coefs[k] * rows[k * stride + offset + w]` for a whole `out` (a multiple of
/// [`CHANNELS`] long), 32 lanes at a time while they last, then 8.
#[inline(always)]
fn combine_into(coefs: &[f32], rows: &[f32], stride: usize, offset: usize, out: &mut [f32]) {
    let mut start = 0;
    while start + 32 <= out.len() {
        let acc = combine::<32>(coefs, rows, stride, offset + start);
        out[start..start + 32].copy_from_slice(&acc);
        start += 32;
    }
    while start + CHANNELS <= out.len() {
        let acc = combine::<CHANNELS>(coefs, rows, stride, offset + start);
        out[start..start + CHANNELS].copy_from_slice(&acc);
        start += CHANNELS;
    }
}

/// `sum_c a[c] b[c]` (a head's worth of channels).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `row[j] = exp(row[j] - shift)`, returning their sum (in independent lanes, so that the
/// loop vectorises).
#[inline(always)]
fn exp_in_place(row: &mut [f32], shift: f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *x = exp(*x - shift);
            *lane += *x;
        }
    }
    let mut tail = 0.0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        tail += *x;
    }
    lanes.iter().sum::<f32>() + tail
}

/// Scores of query `i` over the key blocks it needs (`scores[first..end]`; those before `pad`
/// and after `i` are computed and not used).
#[inline(always)]
fn score_row(
    head: &Head,
    coefs: &[f32],
    transposed: &[f32],
    pad: usize,
    i: usize,
    out: &mut [f32],
) {
    let blocks = head.blocks(pad, i);
    let first = blocks.start;
    combine_into(coefs, transposed, head.keys, first, &mut out[blocks]);
}

multiversion!(
    forward_batch_row,
    forward_batch_row_avx2,
    (qkv: &[f32], pad: usize, shape: &Shape, out: &mut [f32], lse: &mut [f32]) -> (),
    {
        let (seq, dh, d) = (shape.seq, shape.head_dim, shape.d_model());
        let mut head = Head::new(shape, false);
        let mut scores = vec![0.0f32; head.keys];
        let mut o = vec![0.0f32; head.channels];
        for h in 0..shape.heads {
            head.gather(qkv, h, shape);
            for i in 0..seq {
                let out_i = &mut out[i * d + h * dh..i * d + (h + 1) * dh];
                if i < pad {
                    out_i.fill(0.0);
                    lse[h * seq + i] = f32::NEG_INFINITY;
                    continue;
                }
                score_row(&head, head.row(&head.q, i), &head.kt, pad, i, &mut scores);
                let p = &mut scores[pad..=i];
                let max = row_max(p);
                let sum = exp_in_place(p, max);
                combine_into(p, &head.v, head.channels, pad * head.channels, &mut o);
                let inverse = 1.0 / sum;
                for (out, &o) in out_i.iter_mut().zip(&o) {
                    *out = o * inverse;
                }
                lse[h * seq + i] = max + sum.ln();
            }
        }
    }
);

/// The backward's buffers for one head: the upstream gradient gathered as `[seq, channels]`,
/// a score row's probabilities and their gradients, and both transposed (`[seq, keys]`, row `j`
/// holding column `j` of the query-by-key matrices), from which `dv` and `dk` are row sums.
struct HeadGrads {
    grad: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
    pt: Vec<f32>,
    dst: Vec<f32>,
    sums: Vec<f32>,
}

multiversion!(
    backward_batch_row,
    backward_batch_row_avx2,
    (
        qkv: &[f32],
        pad: usize,
        shape: &Shape,
        out: &[f32],
        lse: &[f32],
        grad: &[f32],
        dqkv: &mut [f32]
    ) -> (),
    {
        let (seq, dh, d) = (shape.seq, shape.head_dim, shape.d_model());
        let scale = shape.scale();
        let mut head = Head::new(shape, true);
        let (channels, keys) = (head.channels, head.keys);
        let mut g = HeadGrads {
            grad: vec![0.0; seq * channels],
            p: vec![0.0; keys],
            dp: vec![0.0; keys],
            pt: vec![0.0; seq * keys],
            dst: vec![0.0; seq * keys],
            sums: vec![0.0; channels],
        };
        dqkv.fill(0.0);
        for h in 0..shape.heads {
            head.gather(qkv, h, shape);
            for i in 0..seq {
                let from = i * d + h * dh;
                g.grad[i * channels..i * channels + dh].copy_from_slice(&grad[from..from + dh]);
            }
            for i in pad..seq {
                let channels_of_i = i * d + h * dh..i * d + (h + 1) * dh;
                let delta = dot(&grad[channels_of_i.clone()], &out[channels_of_i]);
                let do_i = &g.grad[i * channels..(i + 1) * channels];
                score_row(&head, head.row(&head.q, i), &head.kt, pad, i, &mut g.p);
                score_row(&head, do_i, &head.vt, pad, i, &mut g.dp);
                let lse_i = lse[h * seq + i];
                exp_in_place(&mut g.p[pad..=i], lse_i);
                for (dp, &p) in g.dp[pad..=i].iter_mut().zip(&g.p[pad..=i]) {
                    *dp = p * (*dp - delta);
                }
                for j in pad..=i {
                    g.pt[j * keys + i] = g.p[j];
                    g.dst[j * keys + i] = g.dp[j];
                }
                combine_into(&g.dp[pad..=i], &head.k, channels, pad * channels, &mut g.sums);
                let row = &mut dqkv[i * 3 * d + h * dh..i * 3 * d + (h + 1) * dh];
                for (r, &dq) in row.iter_mut().zip(&g.sums) {
                    *r = dq * scale;
                }
            }
            for j in pad..seq {
                // Queries j..seq see key j.
                let column = j * keys + j..j * keys + seq;
                let row = &mut dqkv[j * 3 * d..(j + 1) * 3 * d];
                combine_into(&g.pt[column.clone()], &g.grad, channels, j * channels, &mut g.sums);
                row[2 * d + h * dh..2 * d + (h + 1) * dh].copy_from_slice(&g.sums[..dh]);
                combine_into(&g.dst[column], &head.q, channels, j * channels, &mut g.sums);
                row[d + h * dh..d + (h + 1) * dh].copy_from_slice(&g.sums[..dh]);
            }
        }
    }
);

/// Causal self-attention of `qkv` (`[batch, seq, 3 d]`), keys `j < pads[b]` hidden from row
/// `b`: the output `[batch, seq, d]` and each query's logsumexp `[batch, heads, seq]`.
pub fn causal_attention(qkv: &[f32], pads: &[usize], shape: &Shape) -> (Vec<f32>, Vec<f32>) {
    let (seq, d) = (shape.seq, shape.d_model());
    debug_assert_eq!(qkv.len(), shape.batch * seq * 3 * d);
    debug_assert_eq!(pads.len(), shape.batch);
    let mut out = vec![0.0f32; shape.batch * seq * d];
    let mut lse = vec![0.0f32; shape.batch * shape.heads * seq];
    if out.is_empty() {
        return (out, lse);
    }
    out.par_chunks_mut(seq * d)
        .zip(lse.par_chunks_mut(shape.heads * seq))
        .zip(qkv.par_chunks(seq * 3 * d))
        .zip(pads.par_iter())
        .for_each(|(((out, lse), qkv), &pad)| forward_batch_row(qkv, pad, shape, out, lse));
    (out, lse)
}

/// The gradient of `sum(grad * out)` with respect to `qkv`, `[batch, seq, 3 d]`, given the
/// forward's output and logsumexp.
pub fn causal_attention_backward(
    qkv: &[f32],
    pads: &[usize],
    shape: &Shape,
    out: &[f32],
    lse: &[f32],
    grad: &[f32],
) -> Vec<f32> {
    let (seq, d) = (shape.seq, shape.d_model());
    debug_assert_eq!(out.len(), grad.len());
    let mut dqkv = vec![0.0f32; qkv.len()];
    if dqkv.is_empty() {
        return dqkv;
    }
    dqkv.par_chunks_mut(seq * 3 * d)
        .zip(qkv.par_chunks(seq * 3 * d))
        .zip(out.par_chunks(seq * d))
        .zip(grad.par_chunks(seq * d))
        .zip(lse.par_chunks(shape.heads * seq))
        .zip(pads.par_iter())
        .for_each(|(((((dqkv, qkv), out), grad), lse), &pad)| {
            backward_batch_row(qkv, pad, shape, out, lse, grad, dqkv)
        });
    dqkv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention in f64, the textbook way: `[batch, seq, d]` outputs.
    fn reference(qkv: &[f32], pads: &[usize], shape: &Shape) -> Vec<f64> {
        let (seq, dh, d) = (shape.seq, shape.head_dim, shape.d_model());
        let scale = 1.0 / (dh as f64).sqrt();
        let at = |b: usize, i: usize, c: usize| qkv[(b * seq + i) * 3 * d + c] as f64;
        let mut out = vec![0.0; shape.batch * seq * d];
        for b in 0..shape.batch {
            for h in 0..shape.heads {
                for i in pads[b]..seq {
                    let scores: Vec<f64> = (pads[b]..=i)
                        .map(|j| {
                            (0..dh)
                                .map(|c| at(b, i, h * dh + c) * at(b, j, d + h * dh + c))
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    for c in 0..dh {
                        out[(b * seq + i) * d + h * dh + c] = (pads[b]..=i)
                            .zip(&weights)
                            .map(|(j, w)| w / sum * at(b, j, 2 * d + h * dh + c))
                            .sum();
                    }
                }
            }
        }
        out
    }

    fn values(count: usize, seed: u32) -> Vec<f32> {
        (0..count)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2003) as f32)
            .map(|x| (x / 2003.0 - 0.5) * 3.0)
            .collect()
    }

    #[test]
    fn the_forward_agrees_with_f64_with_padding_and_a_ragged_head() {
        // head_dim 5 is not a multiple of the lanes; a pad as long as the row leaves it empty.
        for (batch, seq, heads, head_dim, pads) in [
            (1, 1, 1, 1, vec![0]),
            (2, 7, 3, 5, vec![0, 3]),
            (3, 16, 2, 8, vec![16, 1, 0]),
        ] {
            let shape = Shape {
                batch,
                seq,
                heads,
                head_dim,
            };
            let qkv = values(batch * seq * 3 * heads * head_dim, 17);
            let (out, lse) = causal_attention(&qkv, &pads, &shape);
            let want = reference(&qkv, &pads, &shape);
            for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-5,
                    "{shape:?}, [{i}]: {got} vs {want}"
                );
            }
            assert!(lse.iter().all(|x| !x.is_nan()));
        }
    }

    #[test]
    fn the_backward_agrees_with_finite_differences_of_the_f64_reference() {
        let shape = Shape {
            batch: 2,
            seq: 6,
            heads: 2,
            head_dim: 3,
        };
        let pads = [0, 2];
        let qkv = values(shape.batch * shape.seq * 3 * shape.d_model(), 5);
        let grad = values(shape.batch * shape.seq * shape.d_model(), 11);
        let (out, lse) = causal_attention(&qkv, &pads, &shape);
        let dqkv = causal_attention_backward(&qkv, &pads, &shape, &out, &lse, &grad);
        let loss = |qkv: &[f32]| -> f64 {
            let out = reference(qkv, &pads, &shape);
            out.iter().zip(&grad).map(|(o, &g)| o * g as f64).sum()
        };
        for index in 0..qkv.len() {
            let step = 1e-2f32;
            let (mut up, mut down) = (qkv.clone(), qkv.clone());
            up[index] += step;
            down[index] -= step;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * step as f64);
            assert!(
                (dqkv[index] as f64 - numeric).abs() < 1e-3,
                "d qkv[{index}]: {} against {numeric}",
                dqkv[index]
            );
        }
    }
}
