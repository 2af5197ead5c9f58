//! CTRL: calibrate, transform, KL-regularised RL (theory notes, section 6).
//!
//! - [`prompts`]: the prompt sets (users' messages) that calibration, training and evaluation
//!   draw from.
//! - [`calibration`]: K reference responses per prompt from pi_ref, scored and kept sorted.
//! - [`eval`]: win rates (standard, BoN_N, WoN_N) and KL of a policy against pi_ref on
//!   held-out prompts, with bootstrap intervals.
//! - [`trainer`]: RLOO policy gradients on `Phi(calibrated reward)` (or the raw reward, the
//!   baseline) with a sequence-level KL penalty against pi_ref, an adaptive KL coefficient,
//!   optional PPO clipping, AdamW, and checkpoints that resume exactly.
//!
//! Everything that samples is `async` (WebGPU reads results back asynchronously); native callers
//! wrap it in `pollster::block_on`.

pub mod calibration;
pub mod eval;
pub mod prompts;
pub mod trainer;

pub use calibration::{calibrate, CalibrationSet, CalibrationSettings, CalibrationSummary};
pub use eval::{
    calibrated_kl_of, paired_difference, per_prompt_win_rates, sample_prompts, summarise,
    EvalReport, EvalSettings, PromptSamples,
};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::CtrlTrainer;
pub use trainer::{CtrlConfig, KlControl, StepMetrics, TrainingReward};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{generate, Policy, SamplingConfig, TokenBatch};
use crate::reward::Reward;
use crate::tokenizer::{chat_prompt, DialogueTokenizer};

/// How responses are drawn, the same for pi and pi_ref wherever they are compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoding {
    /// Softmax temperature (> 0 for a stochastic policy; KL needs one).
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Nucleus mass (1: all).
    pub top_p: f32,
    /// Longest response in tokens (the end-of-turn token included).
    pub max_new_tokens: usize,
}

impl Default for Decoding {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_new_tokens: 32,
        }
    }
}

impl Decoding {
    /// The sampler's settings (always with the KV cache).
    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            max_new_tokens: self.max_new_tokens,
            use_cache: true,
        }
    }

    /// Check the settings; KL-regularised training and KL estimates need the policy's own
    /// distribution, so temperature must be 1 and neither top-k nor top-p may truncate it
    /// when `exact` is asked for.
    pub fn validate(&self, exact: bool) -> Result<()> {
        self.sampling().validate()?;
        if exact && (self.temperature != 1.0 || self.top_k != 0 || self.top_p != 1.0) {
            return Err(Error::Invalid {
                what: "decoding settings".into(),
                reason: format!(
                    "temperature {}, top-k {}, top-p {}: KL-regularised training and KL \
                     estimates need plain sampling (temperature 1, top-k 0, top-p 1)",
                    self.temperature, self.top_k, self.top_p
                ),
            });
        }
        Ok(())
    }
}

/// Responses sampled for a list of prompts (one row per response).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollouts {
    /// The prompt's tokens as the policy saw them (left-trimmed to fit the context).
    pub prompt_ids: Vec<Vec<u32>>,
    /// The response's tokens, the end-of-turn token included when the row stopped.
    pub response_ids: Vec<Vec<u32>>,
    /// The response's text (without the end-of-turn token), trimmed.
    pub texts: Vec<String>,
    /// Whether each row ended at end of turn rather than at the length limit.
    pub stopped: Vec<bool>,
}

impl Rollouts {
    /// Number of responses.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Mean response length in tokens.
    pub fn mean_length(&self) -> f64 {
        let total: usize = self.response_ids.iter().map(Vec::len).sum();
        total as f64 / self.len().max(1) as f64
    }

    /// The rows as one teacher-forced batch (responses scored given their prompts) on `device`.
    pub fn batch(&self, max_seq_len: usize, device: &burn::tensor::Device) -> Result<TokenBatch> {
        TokenBatch::prompt_response(
            &self.prompt_ids,
            &self.response_ids,
            max_seq_len + 1,
            device,
        )
    }
}

/// Sample one response per entry of `messages` from `policy` (rows of the same message are
/// independent draws), with `seed` for the sampler.
pub async fn rollout(
    policy: &Policy,
    tokenizer: &DialogueTokenizer,
    messages: &[&str],
    decoding: &Decoding,
    seed: u64,
) -> Result<Rollouts> {
    let context = policy
        .config()
        .max_seq_len
        .saturating_sub(decoding.max_new_tokens)
        .max(1);
    let prompt_ids = messages
        .iter()
        .map(|message| {
            let ids = tokenizer.encode(&chat_prompt(message))?;
            Ok(ids[ids.len().saturating_sub(context)..].to_vec())
        })
        .collect::<Result<Vec<_>>>()?;
    let stop = tokenizer.end_of_turn();
    let generation = generate(policy, &prompt_ids, Some(stop), &decoding.sampling(), seed).await?;
    let texts = generation
        .responses
        .iter()
        .map(|ids| Ok(tokenizer.decode(ids)?.trim().to_string()))
        .collect::<Result<Vec<_>>>()?;
    let response_ids = generation
        .responses
        .into_iter()
        .zip(&generation.stopped)
        .map(|(mut ids, &stopped)| {
            if stopped {
                ids.push(stop);
            }
            ids
        })
        .collect();
    Ok(Rollouts {
        prompt_ids,
        response_ids,
        texts,
        stopped: generation.stopped,
    })
}

/// Score each response with `reward`; a NaN or infinite score is an error naming the reward, the
/// row and the value (never the text, which may be offensive).
pub fn score(reward: &dyn Reward, messages: &[&str], texts: &[String]) -> Result<Vec<f64>> {
    let responses: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores = reward.score_batch(messages, &responses)?;
    if let Some((row, value)) = scores.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Invalid {
            what: format!("reward `{}`", reward.name()),
            reason: format!(
                "it returned {value} for response {row} of the batch; rewards must be finite"
            ),
        });
    }
    Ok(scores)
}

/// `log pi(response | prompt)` of every row under `policy`, on the host, in chunks of `chunk`
/// rows.
pub async fn sequence_logprobs(
    policy: &Policy,
    rollouts: &Rollouts,
    chunk: usize,
) -> Result<Vec<f64>> {
    let max_seq_len = policy.config().max_seq_len;
    let device = policy.device();
    let mut values = Vec::with_capacity(rollouts.len());
    let rows: Vec<usize> = (0..rollouts.len()).collect();
    for part in rows.chunks(chunk.max(1)) {
        let batch = TokenBatch::prompt_response(
            &part
                .iter()
                .map(|&i| rollouts.prompt_ids[i].clone())
                .collect::<Vec<_>>(),
            &part
                .iter()
                .map(|&i| rollouts.response_ids[i].clone())
                .collect::<Vec<_>>(),
            max_seq_len + 1,
            &device,
        )?;
        let logprobs = policy.sequence_logprobs(&batch);
        values.extend(
            crate::host_values_async(logprobs, "sequence log-probabilities")
                .await?
                .into_iter()
                .map(f64::from),
        );
    }
    Ok(values)
}

/// Seed of one stage of one step, from a run's seed (a SplitMix64 mix, so nearby inputs give
/// unrelated streams).
pub(crate) fn derive_seed(seed: u64, stage: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stage.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit key of a text, for seeds that follow a prompt wherever it appears.
pub(crate) fn text_key(text: &str) -> u64 {
    crate::fnv1a64(text.bytes())
}

/// A tensor of host values on `device`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the trainer's, native only
pub(crate) fn tensor_1d(values: &[f64], device: &burn::tensor::Device) -> Tensor<1> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let len = values.len();
    Tensor::from_data(burn::tensor::TensorData::new(values, [len]), device)
}
