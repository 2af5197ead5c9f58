//! CTRL: calibrate, transform, KL-regularised RL (theory notes, section 6).
//!
//! - [`prompts`]: the prompt sets (users' messages) that calibration, training and evaluation
//!   draw from.
//! - [`rollout`]: the one streaming rollout (encode, sample token by token, decode), scoring,
//!   and the one reference-table builder every command and the browser lab use.
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
pub mod rollout;
pub mod trainer;

pub use calibration::{
    calibrate, parse_reference_rewards, reference_rewards_jsonl, summarize, CalibrationSet,
    CalibrationSettings, CalibrationSummary, REFERENCE_REWARDS_FORMAT,
};
pub use eval::{
    calibrated_kl_of, check_paired, paired_difference, paired_mean, parse_scored,
    per_prompt_calibrated_kl_of, per_prompt_win_rates, replies_csv, sample_prompts, summarise,
    EvalReport, EvalSettings, Evaluation, PromptSamples, REPLIES_FILE, SCORED_FORMAT,
};
pub use rollout::{reference_table, rollout, score, RolloutStream, Rollouts};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::CtrlTrainer;
pub use trainer::{CtrlConfig, KlControl, StepMetrics, TrainingReward};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{Policy, SamplingConfig, TokenBatch};

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

/// A tensor of host values on `device`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the trainer's, native only
pub(crate) fn tensor_1d(values: &[f64], device: &burn::tensor::Device) -> Tensor<1> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let len = values.len();
    Tensor::from_data(burn::tensor::TensorData::new(values, [len]), device)
}
