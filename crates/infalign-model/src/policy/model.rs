//! The transformer itself: embeddings, pre-norm blocks, a KV cache, logits and log-probabilities.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::module::{embedding, linear};
use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::batch::TokenBatch;
use super::fused::{attend, causal_attention, gelu, padding_mask, split_heads, target_logprobs};
use super::PolicyConfig;
use crate::error::Result;

/// Standard deviation of the initial weights (GPT-2's choice).
const INIT_STD: f64 = 0.02;

/// One pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: LayerNorm,
    /// Fused query, key and value projection, `[d_model, 3 d_model]`.
    qkv: Linear,
    attn_out: Linear,
    mlp_norm: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
    n_heads: usize,
}

/// The policy network. Build with [`Policy::init`]; the shape is in [`Policy::config`].
#[derive(Module, Debug)]
pub struct Policy {
    /// `[vocab_size, d_model]`; also the output projection (tied embeddings).
    token_embedding: Param<Tensor<2>>,
    /// `[max_seq_len, d_model]`, learned absolute positions.
    position_embedding: Param<Tensor<2>>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    vocab_size: usize,
    d_model: usize,
    n_heads: usize,
    d_ff: usize,
    max_seq_len: usize,
}

/// Keys and values of the tokens seen so far, one pair per block, each
/// `[batch, heads, seen, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions cached (including left padding).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache of a batch whose row `i` is this batch's row `rows[i]` (rows may repeat): how
    /// a prompt pass over distinct rows serves a batch that holds some of them several times.
    pub(crate) fn select_rows(&mut self, rows: &[usize]) {
        let indices: Vec<i32> = rows.iter().map(|&row| row as i32).collect();
        for (keys, values) in self.layers.iter_mut().flatten() {
            let index = Tensor::<1, Int>::from_data(
                TensorData::new(indices.clone(), [indices.len()]),
                &keys.device(),
            );
            *keys = keys.clone().select(0, index.clone());
            *values = values.clone().select(0, index);
        }
    }
}

/// Seeded N(0, std^2) values (Box-Muller on a ChaCha8 stream), the same on every platform.
fn normal_values(rng: &mut ChaCha8Rng, count: usize, std: f64) -> Vec<f32> {
    let mut uniform = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut values = Vec::with_capacity(count + 1);
    while values.len() < count {
        let (u1, u2) = (uniform(), uniform());
        let radius = (-2.0 * u1.ln()).sqrt() * std;
        let angle = std::f64::consts::TAU * u2;
        values.push((radius * angle.cos()) as f32);
        values.push((radius * angle.sin()) as f32);
    }
    values.truncate(count);
    values
}

pub(crate) fn normal_param<const D: usize>(
    rng: &mut ChaCha8Rng,
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    let count = shape.iter().product();
    let data = TensorData::new(normal_values(rng, count, std), shape);
    Param::from_tensor(Tensor::from_data(data, device))
}

/// Where a new policy's weight matrices come from.
enum Draw<'a> {
    /// N(0, std^2), drawn from this stream ([`normal_param`]).
    Normal(&'a mut ChaCha8Rng),
    /// Zeros, for a policy whose weights are about to be loaded: drawing numbers that are
    /// overwritten at once took about half of loading a policy in the browser.
    Zeros,
}

impl Draw<'_> {
    fn param<const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f64,
        device: &Device,
    ) -> Param<Tensor<D>> {
        match self {
            Draw::Normal(rng) => normal_param(rng, shape, std, device),
            Draw::Zeros => Param::from_tensor(Tensor::zeros(shape, device)),
        }
    }

    fn linear(&mut self, d_input: usize, d_output: usize, std: f64, device: &Device) -> Linear {
        match self {
            Draw::Normal(rng) => init_linear(rng, d_input, d_output, std, device),
            Draw::Zeros => Linear {
                weight: self.param([d_input, d_output], std, device),
                bias: Some(Param::from_tensor(Tensor::zeros([d_output], device))),
            },
        }
    }
}

pub(crate) fn init_linear(
    rng: &mut ChaCha8Rng,
    d_input: usize,
    d_output: usize,
    std: f64,
    device: &Device,
) -> Linear {
    Linear {
        weight: normal_param(rng, [d_input, d_output], std, device),
        bias: Some(Param::from_tensor(Tensor::zeros([d_output], device))),
    }
}

impl Block {
    fn init(config: &PolicyConfig, draw: &mut Draw, device: &Device) -> Self {
        let d = config.d_model;
        // GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 layers).
        let residual_std = INIT_STD / (2.0 * config.n_layers as f64).sqrt();
        Block {
            attn_norm: LayerNormConfig::new(d).init(device),
            qkv: draw.linear(d, 3 * d, INIT_STD, device),
            attn_out: draw.linear(d, d, residual_std, device),
            mlp_norm: LayerNormConfig::new(d).init(device),
            mlp_in: draw.linear(d, config.d_ff, INIT_STD, device),
            mlp_out: draw.linear(config.d_ff, d, residual_std, device),
            n_heads: config.n_heads,
        }
    }

    /// `x`: `[batch, new, d_model]`; `pads`: each row's left padding among all positions seen
    /// (cached and new). Without a cache, the fused causal attention; with one, the new queries
    /// attend to the cached keys as well, `mask` (`[batch, heads, new, seen + new]`, true =
    /// hidden) hiding the padding.
    fn forward(
        &self,
        x: Tensor<3>,
        pads: &[usize],
        mask: Option<Tensor<4, Bool>>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let qkv = self.qkv.forward(self.attn_norm.forward(x.clone()));
        let attended = match cache {
            None => causal_attention(qkv, pads, self.n_heads),
            Some(slot) => {
                let (q, mut k, mut v) = split_heads(qkv, self.n_heads);
                if let Some((k_seen, v_seen)) = slot.take() {
                    k = Tensor::cat(vec![k_seen, k], 2);
                    v = Tensor::cat(vec![v_seen, v], 2);
                }
                *slot = Some((k.clone(), v.clone()));
                attend(q, k, v, mask)
            }
        };
        let x = x + self.attn_out.forward(attended);
        let hidden = gelu(self.mlp_in.forward(self.mlp_norm.forward(x.clone())));
        x + self.mlp_out.forward(hidden)
    }
}

impl Policy {
    /// A freshly initialised policy: weights drawn on the host from a ChaCha8 stream seeded with
    /// `seed`, so every backend and platform starts from the same numbers.
    pub fn init(config: &PolicyConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self::build(config, Draw::Normal(&mut rng), device)
    }

    /// A policy of this shape with zero weights, to load weights into.
    pub(crate) fn to_load(config: &PolicyConfig, device: &Device) -> Result<Self> {
        Self::build(config, Draw::Zeros, device)
    }

    fn build(config: &PolicyConfig, mut draw: Draw, device: &Device) -> Result<Self> {
        config.validate()?;
        let d = config.d_model;
        let token_embedding = draw.param([config.vocab_size, d], INIT_STD, device);
        let position_embedding = draw.param([config.max_seq_len, d], INIT_STD, device);
        let blocks = (0..config.n_layers)
            .map(|_| Block::init(config, &mut draw, device))
            .collect();
        Ok(Policy {
            token_embedding,
            position_embedding,
            blocks,
            final_norm: LayerNormConfig::new(d).init(device),
            vocab_size: config.vocab_size,
            d_model: d,
            n_heads: config.n_heads,
            d_ff: config.d_ff,
            max_seq_len: config.max_seq_len,
        })
    }

    /// The shape of this policy.
    pub fn config(&self) -> PolicyConfig {
        PolicyConfig {
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            n_layers: self.blocks.len(),
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            max_seq_len: self.max_seq_len,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.token_embedding.val().device()
    }

    /// Logits for `tokens` (`[batch, new]`, at `positions`), `[batch, new, vocab]`.
    ///
    /// `pads[b]` is the number of left-padding positions of row `b` among all positions seen so
    /// far (cached and new); they are hidden from attention. With a `cache`, the new tokens
    /// attend to the cached ones and are appended to the cache.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        pads: &[usize],
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.project(self.hidden(tokens, positions, pads, cache))
    }

    /// [`Policy::forward`] for the last position only: `[batch, vocab]` logits of the next token,
    /// without projecting the other positions onto the vocabulary (what a sampler needs).
    pub fn forward_last(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        pads: &[usize],
        cache: Option<&mut KvCache>,
    ) -> Tensor<2> {
        let hidden = self.hidden(tokens, positions, pads, cache);
        let [batch, seen, _] = hidden.dims();
        let logits = self.project(hidden.narrow(1, seen - 1, 1));
        let [_, _, vocab] = logits.dims();
        logits.reshape([batch, vocab])
    }

    /// The transformer's output at every position of `tokens`, before the final norm:
    /// `[batch, new, d_model]`.
    fn hidden(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        pads: &[usize],
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [_, new] = tokens.dims();
        let seen = cache.as_ref().map_or(0, |cache| cache.len);
        let device = tokens.device();
        // Only the cached path takes a mask; without a cache each block hides the padding itself.
        let mask = match cache {
            Some(_) => padding_mask(pads, self.n_heads, new, seen + new, &device),
            None => None,
        };
        let mut x = embedding(self.token_embedding.val(), tokens)
            + embedding(self.position_embedding.val(), positions);
        if let Some(cache) = cache.as_deref_mut() {
            cache.layers.resize(self.blocks.len(), None);
        }
        for (index, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|cache| &mut cache.layers[index]);
            x = block.forward(x, pads, mask.clone(), slot);
        }
        if let Some(cache) = cache {
            cache.len += new;
        }
        x
    }

    /// Final norm and the tied output projection (the token embedding, transposed).
    fn project<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(
            self.final_norm.forward(x),
            self.token_embedding.val().transpose(),
            None,
        )
    }

    /// `log p(target | prefix)` for every position of `batch`, `[batch, len]`, zero where the
    /// target is not scored (padding, prompt tokens).
    ///
    /// Only the scored positions are projected onto the vocabulary (a prompt's positions cost the
    /// transformer, not the `[.., vocab]` logits), and their log-probabilities come from the fused
    /// [`target_logprobs`].
    pub fn token_logprobs(&self, batch: &TokenBatch) -> Tensor<2> {
        let hidden = self.hidden(
            batch.inputs.clone(),
            batch.positions.clone(),
            &batch.pads,
            None,
        );
        let [rows, len, d_model] = hidden.dims();
        let device = hidden.device();
        let flat = rows * len;
        if batch.target_count() == 0 {
            // Nothing scored: zeros that still depend on the weights, so a loss built on them
            // has a (zero) gradient like any other.
            return self.project(hidden).sum_dim(2).squeeze_dim::<2>(2) * 0.0;
        }
        let targets = batch.targets.clone().reshape([flat]);
        let hidden = hidden.reshape([flat, d_model]);
        let logprobs = if batch.target_count() == flat {
            target_logprobs(self.project(hidden), targets)
        } else {
            let picked = target_logprobs(
                self.project(hidden.select(0, batch.scored.clone())),
                targets.select(0, batch.scored.clone()),
            );
            Tensor::<1>::zeros([flat], &device).select_assign(
                0,
                batch.scored.clone(),
                picked,
                IndexingUpdateOp::Add,
            )
        };
        logprobs.reshape([rows, len])
    }

    /// Total log-probability of each row's targets, `[batch]`.
    pub fn sequence_logprobs(&self, batch: &TokenBatch) -> Tensor<1> {
        self.token_logprobs(batch).sum_dim(1).squeeze_dim::<1>(1)
    }

    /// Mean next-token cross-entropy over the batch's targets (the language-modelling loss).
    pub fn loss(&self, batch: &TokenBatch) -> Tensor<1> {
        let count = batch.target_count().max(1) as f64;
        self.token_logprobs(batch).sum().neg() / count
    }
}
