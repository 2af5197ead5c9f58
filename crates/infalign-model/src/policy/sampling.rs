//! Batched generation with a KV cache, and the host-side token sampler (temperature, top-k,
//! top-p).

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{KvCache, Policy};
use crate::error::{Error, Result, Settings};

/// How to draw tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
    /// Reuse keys and values of earlier positions (a KV cache); off recomputes the whole
    /// sequence at every step (same tokens, slower: kept for benchmarks and checks).
    pub use_cache: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_new_tokens: 48,
            use_cache: true,
        }
    }
}

impl SamplingConfig {
    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let settings = Settings::new("sampling setting");
        let invalid = |field: &str, reason: String| settings.fail(field, reason);
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return invalid(
                "temperature",
                format!("{} is not a finite number >= 0", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return invalid("max_new_tokens", "must be at least 1".into());
        }
        Ok(())
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens of each row, without the stop token.
    pub responses: Vec<Vec<u32>>,
    /// Whether each row ended with the stop token (rather than at the length limit).
    pub stopped: Vec<bool>,
    /// Forward passes run (one per generated position).
    pub steps: usize,
}

/// Draw one token from `logits` with `config`'s temperature, top-k and top-p, using the uniform
/// number `u` in [0, 1). Greedy (temperature 0 or top-k 1) takes the most likely token, the
/// lowest index on ties.
pub fn sample_token(logits: &[f32], config: &SamplingConfig, u: f64) -> u32 {
    let descending = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if config.temperature == 0.0 || config.top_k == 1 {
        return (0..logits.len() as u32)
            .min_by(descending)
            .unwrap_or_default();
    }
    // The tokens, most likely first (ties: lower index first), by sorting plain u64 keys that
    // encode exactly that order: several times faster than a comparator that looks the logits
    // up, and this runs for every row at every step.
    let mut keys: Vec<u64> = logits
        .iter()
        .zip(0u32..)
        .map(|(&logit, token)| descending_key(logit, token))
        .collect();
    if config.top_k > 0 && config.top_k < keys.len() {
        keys.select_nth_unstable(config.top_k - 1);
        keys.truncate(config.top_k);
    }
    keys.sort_unstable();
    let order: Vec<u32> = keys.iter().map(|&key| key as u32).collect();
    let Some(&best) = order.first() else {
        return 0;
    };
    let max = f64::from(logits[best as usize]);
    let temperature = f64::from(config.temperature);
    let weights: Vec<f64> = order
        .iter()
        .map(|&token| ((f64::from(logits[token as usize]) - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // Top-p: the shortest prefix (most likely first) whose probability reaches top_p.
    let mut kept = weights.len();
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        for (index, weight) in weights.iter().enumerate() {
            cumulative += weight / total;
            if cumulative >= f64::from(config.top_p) {
                kept = index + 1;
                break;
            }
        }
    }
    let kept_total: f64 = weights[..kept].iter().sum();
    let mut threshold = u * kept_total;
    for (index, weight) in weights[..kept].iter().enumerate() {
        if threshold < *weight {
            return order[index];
        }
        threshold -= weight;
    }
    order[kept - 1]
}

/// A key whose ascending order is `logit` descending in [`f32::total_cmp`]'s order, then
/// `token` ascending.
fn descending_key(logit: f32, token: u32) -> u64 {
    // total_cmp compares these as i32; flipping the sign bit makes that order unsigned.
    let bits = logit.to_bits() as i32;
    let ordered = (bits ^ (((bits >> 31) as u32) >> 1) as i32) as u32 ^ 0x8000_0000;
    (u64::from(!ordered) << 32) | u64::from(token)
}

/// Uniform in [0, 1) from 53 random bits.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Continue each prompt with up to `config.max_new_tokens` tokens, stopping a row at
/// `stop_token`. Rows are left-padded and run as one batch; each step's logits are read back
/// (asynchronously, as WebGPU requires) and tokens drawn on the host from a ChaCha8 stream
/// seeded with `seed`, one number per row and step whether or not the row has stopped, so a
/// row's tokens do not depend on how long the others run.
///
/// A prompt longer than `max_seq_len - max_new_tokens` keeps only its last tokens. To watch the
/// responses grow token by token (the browser lab streams them), drive a [`Sampler`] instead.
pub async fn generate(
    policy: &Policy,
    prompts: &[Vec<u32>],
    stop_token: Option<u32>,
    config: &SamplingConfig,
    seed: u64,
) -> Result<Generation> {
    let mut sampler = Sampler::new(policy, prompts, stop_token, config, seed)?;
    while sampler.step().await? {}
    Ok(sampler.finish())
}

/// The positions of a left-padded `[rows, columns]` grid with these pads: 0 over a row's pad,
/// then counting from 0 at its first token.
fn grid_positions(pads: &[usize], columns: usize) -> Vec<i32> {
    pads.iter()
        .flat_map(|&pad| (0..columns).map(move |c| c.saturating_sub(pad) as i32))
        .collect()
}

/// The distinct rows of a left-padded `[batch, columns]` token grid (a row is its pad and its
/// tokens), in order of first appearance, and for each row the index of its copy among them.
fn distinct_rows(grid: &[i32], pads: &[usize], columns: usize) -> (Vec<usize>, Vec<usize>) {
    let mut first: HashMap<(usize, &[i32]), usize> = HashMap::new();
    let mut distinct = Vec::new();
    let of_row = pads
        .iter()
        .enumerate()
        .map(|(row, &pad)| {
            let tokens = &grid[row * columns..(row + 1) * columns];
            *first.entry((pad, tokens)).or_insert_with(|| {
                distinct.push(row);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of_row)
}

/// [`generate`] one step at a time: each [`Sampler::step`] runs one forward pass and adds one
/// token to every running row, so a caller can show partial responses (and yield to the
/// browser) between steps. The tokens are exactly those of [`generate`] with the same inputs.
pub struct Sampler<'a> {
    policy: &'a Policy,
    config: SamplingConfig,
    stop_token: Option<u32>,
    rng: ChaCha8Rng,
    cache: KvCache,
    pads: Vec<usize>,
    /// The padded token grid so far, row-major `[batch, columns]` (only without the cache).
    grid: Vec<i32>,
    columns: usize,
    last_tokens: Vec<i32>,
    responses: Vec<Vec<u32>>,
    stopped: Vec<bool>,
    steps: usize,
}

impl<'a> Sampler<'a> {
    /// Check the request and set up the batch; no forward pass runs yet.
    pub fn new(
        policy: &'a Policy,
        prompts: &[Vec<u32>],
        stop_token: Option<u32>,
        config: &SamplingConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let model = policy.config();
        let invalid = |reason: String| Error::Invalid {
            what: "generation request".into(),
            reason,
        };
        if prompts.is_empty() {
            return Err(invalid("no prompts".into()));
        }
        if config.max_new_tokens >= model.max_seq_len {
            return Err(invalid(format!(
                "max_new_tokens = {} leaves no room for a prompt within the model's {} positions",
                config.max_new_tokens, model.max_seq_len
            )));
        }
        let context = model.max_seq_len - config.max_new_tokens;
        let mut rows: Vec<Vec<u32>> = Vec::with_capacity(prompts.len());
        for (row, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(invalid(format!("prompt {row} is empty")));
            }
            if let Some(&token) = prompt.iter().find(|&&t| t as usize >= model.vocab_size) {
                return Err(invalid(format!(
                    "prompt {row} has token {token}, outside the vocabulary of {}",
                    model.vocab_size
                )));
            }
            rows.push(prompt[prompt.len().saturating_sub(context)..].to_vec());
        }
        let batch = rows.len();
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let pads: Vec<usize> = rows.iter().map(|row| width - row.len()).collect();
        let mut grid: Vec<i32> = Vec::with_capacity(batch * width);
        for (row, pad) in rows.iter().zip(&pads) {
            grid.extend(std::iter::repeat_n(0, *pad));
            grid.extend(row.iter().map(|&t| t as i32));
        }
        Ok(Self {
            policy,
            config: *config,
            stop_token,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cache: KvCache::new(),
            pads,
            grid,
            columns: width,
            last_tokens: Vec::new(),
            responses: vec![Vec::new(); batch],
            stopped: vec![false; batch],
            steps: 0,
        })
    }

    /// Whether every row has stopped or the length limit is reached.
    pub fn is_done(&self) -> bool {
        self.steps >= self.config.max_new_tokens || self.stopped.iter().all(|&s| s)
    }

    /// New tokens of each row so far (without the stop token).
    pub fn responses(&self) -> &[Vec<u32>] {
        &self.responses
    }

    /// Whether each row has reached the stop token.
    pub fn stopped(&self) -> &[bool] {
        &self.stopped
    }

    /// Forward passes run so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Run one step; `Ok(false)` (and nothing run) once [`Sampler::is_done`].
    pub async fn step(&mut self) -> Result<bool> {
        if self.is_done() {
            return Ok(false);
        }
        let device = self.policy.device();
        let batch = self.responses.len();
        let int_tensor = |values: Vec<i32>, rows: usize, columns: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(values, [rows, columns]), &device)
        };
        let columns = self.columns;
        // The row of the logits each batch row samples from: its own, except on the prompt pass
        // with a cache, which runs each distinct prompt once.
        let mut source: Option<Vec<usize>> = None;
        let logits = if self.config.use_cache && self.steps > 0 {
            let positions: Vec<i32> = self
                .pads
                .iter()
                .map(|&pad| (columns - 1 - pad) as i32)
                .collect();
            self.policy.forward_last(
                int_tensor(self.last_tokens.clone(), batch, 1),
                int_tensor(positions, batch, 1),
                &self.pads,
                Some(&mut self.cache),
            )
        } else if self.config.use_cache {
            // The prompt pass fills the cache. A batch that samples several answers to one
            // prompt holds the same row many times: run each distinct row once, then give every
            // row its copy of the keys and values.
            let (distinct, of_row) = distinct_rows(&self.grid, &self.pads, columns);
            let grid: Vec<i32> = distinct
                .iter()
                .flat_map(|&row| {
                    self.grid[row * columns..(row + 1) * columns]
                        .iter()
                        .copied()
                })
                .collect();
            let pads: Vec<usize> = distinct.iter().map(|&row| self.pads[row]).collect();
            let rows = distinct.len();
            let logits = self.policy.forward_last(
                int_tensor(grid, rows, columns),
                int_tensor(grid_positions(&pads, columns), rows, columns),
                &pads,
                Some(&mut self.cache),
            );
            if rows < batch {
                self.cache.select_rows(&of_row);
                source = Some(of_row);
            }
            logits
        } else {
            self.policy.forward_last(
                int_tensor(self.grid.clone(), batch, columns),
                int_tensor(grid_positions(&self.pads, columns), batch, columns),
                &self.pads,
                None,
            )
        };
        let [_, vocab] = logits.dims();
        let values = crate::host_values_async(logits, "policy logits").await?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid {
                what: "policy output".into(),
                reason: "the policy produced non-finite logits".into(),
            });
        }
        self.last_tokens.clear();
        let mut next_grid = Vec::with_capacity(if self.config.use_cache {
            0
        } else {
            batch * (columns + 1)
        });
        for row in 0..batch {
            let u = uniform(&mut self.rng);
            let from = source.as_ref().map_or(row, |source| source[row]);
            let token = sample_token(&values[from * vocab..(from + 1) * vocab], &self.config, u);
            if !self.stopped[row] {
                if Some(token) == self.stop_token {
                    self.stopped[row] = true;
                } else {
                    self.responses[row].push(token);
                }
            }
            self.last_tokens.push(token as i32);
            if !self.config.use_cache {
                next_grid.extend_from_slice(&self.grid[row * columns..(row + 1) * columns]);
                next_grid.push(token as i32);
            }
        }
        self.grid = next_grid;
        self.columns += 1;
        self.steps += 1;
        Ok(true)
    }

    /// The responses as [`generate`] returns them (also fine before the last step).
    pub fn finish(self) -> Generation {
        Generation {
            responses: self.responses,
            stopped: self.stopped,
            steps: self.steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed keys sort tokens exactly as the comparator they replaced: logits descending
    /// in `total_cmp`'s order (negative zero below zero, infinities at the ends), ties by index.
    #[test]
    fn descending_keys_order_tokens_like_the_comparator() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let specials = [
            0.0,
            -0.0,
            1.5,
            -1.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        for trial in 0..50 {
            let logits: Vec<f32> = (0..300)
                .map(|i| match rng.next_u32() % 4 {
                    // Repeats, so ties are common.
                    0 => specials[(i + trial) % specials.len()],
                    1 => (rng.next_u32() % 5) as f32 - 2.0,
                    _ => (uniform(&mut rng) as f32 - 0.5) * 20.0,
                })
                .collect();
            let mut expected: Vec<u32> = (0..logits.len() as u32).collect();
            expected.sort_by(|a, b| {
                logits[*b as usize]
                    .total_cmp(&logits[*a as usize])
                    .then(a.cmp(b))
            });
            let mut keys: Vec<u64> = logits
                .iter()
                .zip(0u32..)
                .map(|(&logit, token)| descending_key(logit, token))
                .collect();
            keys.sort_unstable();
            let order: Vec<u32> = keys.iter().map(|&key| key as u32).collect();
            assert_eq!(order, expected, "trial {trial}");
        }
    }
}
