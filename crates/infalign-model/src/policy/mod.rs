//! The policy: a small decoder-only transformer (pre-norm, causal attention, learned positions,
//! tied input and output embeddings) with batched sampling through a KV cache and
//! log-probabilities of given responses.
//!
//! Everything runs on any burn [`Device`](burn::tensor::Device): flex on the CPU, wgpu natively or
//! WebGPU in a browser. Sampling reads each step's logits back to the host and draws tokens there
//! from a seeded ChaCha stream, so the same weights and seed give the same tokens on every
//! backend (up to float ties).

mod batch;
mod fused;
mod model;
// Training runs natively only (the page samples and never trains).
#[cfg(not(target_arch = "wasm32"))]
mod parallel;
mod sampling;

pub use batch::TokenBatch;
pub use fused::{
    causal_attention, causal_attention_plain, gelu, target_logprobs, target_logprobs_plain,
};
pub(crate) use model::{init_linear, normal_param};
pub use model::{KvCache, Policy};
#[cfg(not(target_arch = "wasm32"))]
pub use parallel::{
    parts_for, split_gradients, split_rows, PartLoss, SplitGradients, STEP_PARTS_VARIABLE,
};
pub use sampling::{generate, sample_token, Generation, Sampler, SamplingConfig};

use crate::error::{Result, Settings};

/// The shape of a [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Tokens in the vocabulary (the tokenizer's size).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads per block; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of each block's MLP.
    pub d_ff: usize,
    /// Longest sequence (prompt + response) the model can see.
    pub max_seq_len: usize,
}

impl PolicyConfig {
    /// A model of `d_model` width with the usual proportions: `d_model / 32` heads (at least 1)
    /// and a 4x MLP.
    pub fn new(vocab_size: usize, d_model: usize, n_layers: usize, max_seq_len: usize) -> Self {
        Self {
            vocab_size,
            d_model,
            n_layers,
            n_heads: (d_model / 32).max(1),
            d_ff: 4 * d_model,
            max_seq_len,
        }
    }

    /// Check that the shape is usable; the error names the offending field.
    pub fn validate(&self) -> Result<()> {
        let settings = Settings::new("policy config field");
        settings.at_least_one(&[
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ])?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return settings.fail(
                "n_heads",
                format!(
                    "{} heads do not divide d_model = {}",
                    self.n_heads, self.d_model
                ),
            );
        }
        if self.vocab_size > i32::MAX as usize || self.max_seq_len > i32::MAX as usize {
            return settings.fail("vocab_size", "too large for 32-bit token ids");
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Number of trainable parameters (embeddings counted once: they are tied).
    pub fn num_parameters(&self) -> usize {
        let d = self.d_model;
        let block = 2 * 2 * d          // two layer norms
            + d * 3 * d + 3 * d        // fused q, k, v projection
            + d * d + d                // attention output
            + d * self.d_ff + self.d_ff // MLP in
            + self.d_ff * d + d; // MLP out
        self.vocab_size * d + self.max_seq_len * d + self.n_layers * block + 2 * d
    }
}
