//! The CTRL trainer: KL-regularised policy gradients on a calibrated, transformed reward.
//!
//! One step (theory notes, section 6; the paper's own solver is not public, so this is our
//! choice, written down):
//!
//! 1. Draw `prompts_per_step` training prompts (uniformly, from a stream keyed by the seed and
//!    the step) and sample `samples_per_prompt` = m >= 2 responses to each from pi_theta.
//! 2. Score them; the training score is `Phi(C_K(x, y))` with the prompt's reference table, or
//!    the raw reward for the `raw` baseline.
//! 3. Sequence-level KL penalty: `R = score - beta * (log pi_theta(y|x) - log pi_ref(y|x))`.
//! 4. RLOO: each response's advantage is its R minus the mean R of the other m - 1 responses to
//!    the same prompt (an unbiased baseline).
//! 5. Loss `-mean(A * log pi_theta(y|x))` (REINFORCE), or with `clip_range` the PPO clipped
//!    surrogate over `ppo_epochs` passes on the same samples; AdamW with gradient clipping.
//! 6. With `target_kl`, an adaptive controller ([`KlControl`]): by default the one of Ziegler
//!    et al. (2019), `beta <- beta * (1 + kl_rate * clip(KL / target - 1, -0.2, 0.2))`; or one
//!    that works in log space, `beta <- beta * exp(kl_rate * clip(ln(KL / target), -1, 1))`,
//!    which can move beta by orders of magnitude within a run.
//!
//! Every random choice of step s is keyed by `(seed, s)`, and checkpoints carry the weights,
//! the optimiser state and beta, so a resumed run repeats an uninterrupted one exactly (on the
//! CPU).

// The trainer itself is native only (the browser build has no autodiff); its settings and
// metrics types are shared, so on wasm32 the trainer's imports and helpers go unused.
#![cfg_attr(target_arch = "wasm32", allow(unused_imports, dead_code))]

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

#[cfg(not(target_arch = "wasm32"))]
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
#[cfg(not(target_arch = "wasm32"))]
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use infalign_core::{ReferenceTable, Transform};

use infalign_core::seed::{derive_seed, Stream};

use super::{rollout, score, sequence_logprobs, tensor_1d, Decoding};
use crate::error::{Error, Result, Settings};
use crate::policy::Policy;
#[cfg(not(target_arch = "wasm32"))]
use crate::policy::{parts_for, split_gradients, split_rows, PartLoss};
use crate::reward::Reward;
use crate::tokenizer::DialogueTokenizer;
use crate::weights::{policy_from_burnpack, policy_to_burnpack, Precision};

/// What the policy is trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TrainingReward {
    /// The reward model's raw score (no calibration): the baseline.
    Raw,
    /// `Phi(C_K(x, y))` for a transform Phi of the calibrated reward.
    Calibrated(Transform),
}

impl TrainingReward {
    /// Whether a calibration set is needed.
    pub fn needs_calibration(&self) -> bool {
        matches!(self, TrainingReward::Calibrated(_))
    }

    /// The training score of a response with raw reward `raw`, given its prompt's table (for
    /// calibrated rewards). Calibrated rewards are kept at least `1 / (4K)` so that `log u`
    /// stays finite for a response below every reference sample.
    pub fn score(&self, raw: f64, table: Option<&ReferenceTable>) -> Result<(f64, Option<f64>)> {
        match (self, table) {
            (TrainingReward::Raw, _) => Ok((raw, None)),
            (TrainingReward::Calibrated(transform), Some(table)) => {
                let u = table.calibrated_reward(raw)?;
                let floor = 0.25 / table.len() as f64;
                Ok((transform.value(u.max(floor)), Some(u)))
            }
            (TrainingReward::Calibrated(_), None) => Err(Error::Invalid {
                what: "training reward".into(),
                reason: format!("`{self}` needs a calibration set"),
            }),
        }
    }
}

impl fmt::Display for TrainingReward {
    /// `raw`, or the transform's own spec (the one meaning `infalign theory`, the sweep, the
    /// manifest and the lab give it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainingReward::Raw => f.write_str("raw"),
            TrainingReward::Calibrated(transform) => transform.fmt(f),
        }
    }
}

impl FromStr for TrainingReward {
    type Err = Error;

    /// `raw`, or a transform spec of the calibrated reward, with the meaning it has in every
    /// command: `identity`, `log`, `exp:T` (e^(Tu)), `negexp:T` (-e^(-Tu)), `normexp:T`
    /// ((e^(Tu) - 1) / (e^T - 1)), `normnegexp:T`, `optimal:bon:N:LAMBDA`,
    /// `optimal:won:N:LAMBDA`. The normalised forms differ from the plain ones by an affine map
    /// (a rescaled beta) and keep rewards in [0, 1], which is what training wants.
    fn from_str(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("raw") {
            return Ok(TrainingReward::Raw);
        }
        Ok(TrainingReward::Calibrated(spec.parse()?))
    }
}

impl TrainingReward {
    /// Read a spec written before [`SPEC_VERSION`] 2, when the trainer read `exp:T` and
    /// `negexp:T` as the normalised forms: the same function under today's name.
    fn upgraded_from_legacy(self) -> Self {
        match self {
            TrainingReward::Calibrated(Transform::Exp { t }) => {
                TrainingReward::Calibrated(Transform::NormExp { t })
            }
            TrainingReward::Calibrated(Transform::NegExp { t }) => {
                TrainingReward::Calibrated(Transform::NormNegExp { t })
            }
            other => other,
        }
    }
}

impl TryFrom<String> for TrainingReward {
    type Error = Error;
    fn try_from(spec: String) -> Result<Self> {
        spec.parse()
    }
}

impl From<TrainingReward> for String {
    fn from(reward: TrainingReward) -> String {
        reward.to_string()
    }
}

pub use infalign_core::KlControl;

/// Settings of a CTRL run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtrlConfig {
    /// Which meaning `reward`'s spec has: [`SPEC_VERSION`] when written by this build; absent
    /// (read as 1) in files written before, where `exp:T` and `negexp:T` named the normalised
    /// forms. [`CtrlConfig::upgrade_legacy_specs`] reads those as they were meant.
    #[serde(default = "legacy_spec_version")]
    pub spec_version: u32,
    /// The training reward.
    pub reward: TrainingReward,
    /// The KL coefficient (the starting value when `target_kl` is set).
    pub beta: f64,
    /// Adapt beta to hold the mean sequence KL (nats) at this value.
    pub target_kl: Option<f64>,
    /// Gain of the adaptive controller.
    pub kl_rate: f64,
    /// How the adaptive controller moves beta.
    #[serde(default)]
    pub kl_control: KlControl,
    /// Stop with an error when a step's mean KL exceeds this (nats): the policy has run away.
    pub max_kl: f64,
    /// Responses per prompt, m >= 2 (RLOO needs a leave-one-out baseline).
    pub samples_per_prompt: usize,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Optimiser steps in the run.
    pub steps: u64,
    /// AdamW learning rate (constant).
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Largest gradient norm per parameter tensor (0: none).
    pub grad_clip: f64,
    /// Optimisation passes over each step's samples (1: plain RLOO).
    pub ppo_epochs: usize,
    /// PPO's clipping range epsilon on the sequence probability ratio (`None`: no clipping).
    pub clip_range: Option<f64>,
    /// How responses are sampled.
    pub decoding: Decoding,
    /// Seed of every prompt draw and sampler stream.
    pub seed: u64,
}

/// The meaning of transform specs this build writes: `exp:T` is e^(Tu) in every command.
pub const SPEC_VERSION: u32 = 2;

fn legacy_spec_version() -> u32 {
    1
}

impl Default for CtrlConfig {
    fn default() -> Self {
        Self {
            spec_version: SPEC_VERSION,
            reward: TrainingReward::Calibrated(Transform::Identity),
            beta: 0.05,
            target_kl: None,
            kl_rate: 0.1,
            kl_control: KlControl::default(),
            max_kl: 50.0,
            samples_per_prompt: 4,
            prompts_per_step: 8,
            steps: 200,
            learning_rate: 1e-4,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ppo_epochs: 1,
            clip_range: None,
            decoding: Decoding::default(),
            seed: 0,
        }
    }
}

impl CtrlConfig {
    /// A configuration read from a file written before [`SPEC_VERSION`] 2 says `exp:T` for
    /// what is now `normexp:T` (and `negexp:T` for `normnegexp:T`): rename it, so that what a
    /// run trained on is what its config says. Every reader of stored configs calls this.
    pub fn upgrade_legacy_specs(mut self) -> Self {
        if self.spec_version < 2 {
            self.reward = self.reward.upgraded_from_legacy();
            self.spec_version = SPEC_VERSION;
        }
        self
    }

    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let settings = Settings::new("CTRL setting");
        let invalid = |field: &str, reason: String| settings.fail(field, reason);
        if self.samples_per_prompt < 2 {
            return invalid(
                "samples_per_prompt",
                format!(
                    "{}; RLOO needs at least 2 responses per prompt",
                    self.samples_per_prompt
                ),
            );
        }
        for (field, value) in [
            ("prompts_per_step", self.prompts_per_step),
            ("ppo_epochs", self.ppo_epochs),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if self.steps == 0 {
            return invalid("steps", "must be at least 1".into());
        }
        settings.finite_non_negative(&[
            ("beta", self.beta),
            ("kl_rate", self.kl_rate),
            ("learning_rate", self.learning_rate),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ])?;
        if !(self.max_kl.is_finite() && self.max_kl > 0.0) {
            return invalid(
                "max_kl",
                format!("{} is not a finite number > 0", self.max_kl),
            );
        }
        if let Some(target) = self.target_kl {
            if !(target.is_finite() && target > 0.0 && target < self.max_kl) {
                return invalid(
                    "target_kl",
                    format!("{target} is not a number in (0, max_kl = {})", self.max_kl),
                );
            }
            if self.beta <= 0.0 {
                return invalid(
                    "beta",
                    "the adaptive controller scales beta, so it must start above 0".into(),
                );
            }
        }
        if let Some(clip) = self.clip_range {
            if !(clip.is_finite() && clip > 0.0 && clip < 1.0) {
                return invalid("clip_range", format!("{clip} is not a number in (0, 1)"));
            }
        }
        if let TrainingReward::Calibrated(transform) = &self.reward {
            transform.validate()?;
        }
        self.decoding.validate(true)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn optimizer(&self) -> ModuleOptimizer {
        let mut config = AdamWConfig::new().with_weight_decay(self.weight_decay as f32);
        if self.grad_clip > 0.0 {
            config = config
                .with_grad_clipping(Some(GradientClippingConfig::Norm(self.grad_clip as f32)));
        }
        config.init()
    }
}

/// One step's metrics, one line of `metrics.jsonl`. Names follow TRL's RLOO trainer where it
/// has one; `infalign/...` are ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps completed, this one included.
    pub step: u64,
    /// Responses sampled so far.
    pub episode: u64,
    /// Mean sequence KL estimate `log pi_theta(y|x) - log pi_ref(y|x)` over the step's samples
    /// (before the update).
    #[serde(rename = "objective/kl")]
    pub kl: f64,
    /// Mean `-log pi_theta(y|x)` of the samples.
    #[serde(rename = "objective/entropy")]
    pub entropy: f64,
    /// `-beta * KL`.
    #[serde(rename = "objective/non_score_reward")]
    pub non_score_reward: f64,
    /// Mean training score minus `beta * KL`.
    #[serde(rename = "objective/rlhf_reward")]
    pub rlhf_reward: f64,
    /// Mean training score (`Phi(u)`, or the raw reward for `raw`).
    #[serde(rename = "objective/scores")]
    pub scores: f64,
    /// The policy-gradient loss of the last pass.
    #[serde(rename = "loss/policy_avg")]
    pub policy_loss: f64,
    /// Mean `0.5 * (log ratio)^2` between the updated and the sampling policy over later passes
    /// (0 with one pass).
    #[serde(rename = "policy/approxkl_avg")]
    pub approx_kl: f64,
    /// Fraction of samples whose ratio was clipped (0 without clipping).
    #[serde(rename = "policy/clipfrac_avg")]
    pub clip_fraction: f64,
    /// Number of responses that ended at end of turn.
    #[serde(rename = "val/num_eos_tokens")]
    pub stopped: usize,
    /// The learning rate.
    pub lr: f64,
    /// The KL coefficient used in this step.
    #[serde(rename = "infalign/beta")]
    pub beta: f64,
    /// Mean raw reward of the samples.
    #[serde(rename = "infalign/raw_reward")]
    pub raw_reward: f64,
    /// Mean calibrated reward u of the samples (calibrated runs only).
    #[serde(rename = "infalign/calibrated_reward")]
    pub calibrated_reward: Option<f64>,
    /// Mean response length in tokens.
    #[serde(rename = "infalign/response_length")]
    pub response_length: f64,
}

/// A CTRL run in progress (native only: training needs autodiff, which the browser build leaves
/// out).
#[cfg(not(target_arch = "wasm32"))]
pub struct CtrlTrainer {
    /// The run's settings.
    pub config: CtrlConfig,
    /// The policy being trained (on an autodiff device).
    pub policy: Policy,
    reference: Policy,
    reference_sha256: String,
    optimizer: ModuleOptimizer,
    /// Steps completed.
    pub step: u64,
    /// The current KL coefficient.
    pub beta: f64,
    /// Responses sampled so far.
    pub episodes: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl CtrlTrainer {
    /// A fresh run that starts from (a copy of) the base policy `base` and trains on `device`.
    pub fn new(config: CtrlConfig, base: &Policy, device: &Device) -> Result<Self> {
        config.validate()?;
        let weights = policy_to_burnpack(base, Precision::F32)?;
        let reference_sha256 = crate::sha256_hex(&weights);
        let policy = policy_from_burnpack(
            &base.config(),
            &weights,
            &device.clone().autodiff(),
            "the base policy",
        )?;
        let reference = policy_from_burnpack(&base.config(), &weights, device, "the base policy")?;
        Ok(Self {
            optimizer: config.optimizer(),
            beta: config.beta,
            config,
            policy,
            reference,
            reference_sha256,
            step: 0,
            episodes: 0,
        })
    }

    /// Whether every step has run.
    pub fn finished(&self) -> bool {
        self.step >= self.config.steps
    }

    /// The policy as it stands, without gradient tracking.
    pub fn inference_policy(&self) -> Policy {
        self.policy.valid()
    }

    /// The prompts (indices into a set of `count`) of step `step`.
    pub fn prompts_of_step(&self, step: u64, count: usize) -> Vec<usize> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, Stream::TrainPrompts, step));
        (0..self.config.prompts_per_step)
            .map(|_| ((u128::from(rng.next_u64()) * count as u128) >> 64) as usize)
            .collect()
    }

    /// Run one step on `prompts` (users' messages). `tables` holds each prompt's reference table
    /// (same order) when the training reward is calibrated.
    pub async fn train_step(
        &mut self,
        prompts: &[String],
        tables: Option<&[&ReferenceTable]>,
        reward: &dyn Reward,
        tokenizer: &DialogueTokenizer,
    ) -> Result<StepMetrics> {
        if prompts.is_empty() {
            return Err(Error::Invalid {
                what: "CTRL training".into(),
                reason: "no training prompts".into(),
            });
        }
        if let Some(tables) = tables {
            if tables.len() != prompts.len() {
                return Err(Error::Invalid {
                    what: "CTRL training".into(),
                    reason: format!(
                        "{} prompts but {} reference tables",
                        prompts.len(),
                        tables.len()
                    ),
                });
            }
        }
        let m = self.config.samples_per_prompt;
        let chosen = self.prompts_of_step(self.step, prompts.len());
        let rows: Vec<usize> = chosen
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, m))
            .collect();
        let messages: Vec<&str> = rows.iter().map(|&p| prompts[p].as_str()).collect();

        // 1-2: sample from the current policy and score.
        let sampler = self.inference_policy();
        let seed = derive_seed(self.config.seed, Stream::TrainRollout, self.step);
        let rollouts = rollout(&sampler, tokenizer, &messages, &self.config.decoding, seed).await?;
        let raw = score(reward, &messages, &rollouts.texts)?;
        let mut scores = Vec::with_capacity(rows.len());
        let mut calibrated = Vec::new();
        for (row, &p) in rows.iter().enumerate() {
            let table = tables.map(|tables| tables[p]);
            let (value, u) = self.config.reward.score(raw[row], table)?;
            scores.push(value);
            calibrated.extend(u);
        }

        // 3: the sequence-level KL penalty.
        let chunk = rows.len();
        let logp_old = sequence_logprobs(&sampler, &rollouts, chunk).await?;
        let logp_ref = sequence_logprobs(&self.reference, &rollouts, chunk).await?;
        let kls: Vec<f64> = logp_old.iter().zip(&logp_ref).map(|(a, b)| a - b).collect();
        let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
        let kl = mean(&kls);
        if !kl.is_finite() || kl > self.config.max_kl {
            return Err(Error::Invalid {
                what: "CTRL training".into(),
                reason: format!(
                    "the policy ran away from pi_ref at step {}: mean KL {kl:.3} nats exceeds \
                     max_kl {}; raise beta (or lower target_kl) or the learning rate; the last \
                     checkpoint is kept",
                    self.step + 1,
                    self.config.max_kl
                ),
            });
        }
        let beta = self.beta;
        let penalised: Vec<f64> = scores
            .iter()
            .zip(&kls)
            .map(|(score, kl)| score - beta * kl)
            .collect();

        // 4: RLOO advantages within each prompt's group.
        let mut advantages = Vec::with_capacity(rows.len());
        for group in penalised.chunks(m) {
            let total: f64 = group.iter().sum();
            advantages.extend(group.iter().map(|&r| r - (total - r) / (m - 1) as f64));
        }

        // 5: policy-gradient passes, the rows split across the cores on flex (each part's loss
        // is its rows' sum over the whole batch's row count, so the parts' gradients add up to
        // the batch's).
        let device = self.policy.device();
        let max_seq_len = self.policy.config().max_seq_len;
        let ranges = split_rows(rows.len(), parts_for(&device, rows.len())?);
        let clip_range = self.config.clip_range;
        let count = rows.len() as f64;
        let (mut loss_value, mut approx_kl, mut clipped, mut later_passes) = (0.0, 0.0, 0.0, 0);
        for pass in 0..self.config.ppo_epochs {
            let parts = ranges.to_vec();
            let split = split_gradients(&self.policy, parts, |model, range: Range<usize>| {
                let device = model.device();
                let batch = rollouts.batch(range.clone(), max_seq_len, &device)?;
                let advantage = tensor_1d(&advantages[range.clone()], &device);
                let logp = model.sequence_logprobs(&batch);
                let objective = match clip_range {
                    None => logp.clone() * advantage,
                    Some(epsilon) => {
                        let old = tensor_1d(&logp_old[range], &device);
                        let ratio = (logp.clone() - old).exp();
                        let unclipped = ratio.clone() * advantage.clone();
                        let clipped_ratio = ratio.clamp(1.0 - epsilon, 1.0 + epsilon);
                        unclipped.min_pair(clipped_ratio * advantage)
                    }
                };
                let extra = if pass > 0 || clip_range.is_some() {
                    crate::host_values(logp, "log-probabilities")?
                } else {
                    Vec::new()
                };
                Ok(PartLoss {
                    loss: objective.sum().neg() / count,
                    extra,
                })
            })?;
            if pass > 0 || clip_range.is_some() {
                let log_ratios: Vec<f64> = split
                    .extras
                    .iter()
                    .flatten()
                    .zip(&logp_old)
                    .map(|(&new, old)| f64::from(new) - old)
                    .collect();
                if pass > 0 {
                    approx_kl += mean(&log_ratios.iter().map(|r| 0.5 * r * r).collect::<Vec<_>>());
                    later_passes += 1;
                }
                if let Some(epsilon) = clip_range {
                    let outside = log_ratios
                        .iter()
                        .filter(|r| (r.exp() - 1.0).abs() > epsilon)
                        .count();
                    clipped += outside as f64 / log_ratios.len() as f64;
                }
            }
            loss_value = split.loss;
            if !loss_value.is_finite() {
                return Err(Error::Invalid {
                    what: "CTRL training".into(),
                    reason: format!(
                        "the policy loss became {loss_value} at step {}; lower the learning rate",
                        self.step + 1
                    ),
                });
            }
            self.policy =
                self.optimizer
                    .step(self.config.learning_rate, self.policy.clone(), split.grads);
        }

        // 6: the adaptive KL coefficient.
        if let Some(target) = self.config.target_kl {
            self.beta =
                self.config
                    .kl_control
                    .next_beta(self.beta, kl, target, self.config.kl_rate);
        }
        self.step += 1;
        self.episodes += rows.len() as u64;
        let score_mean = mean(&scores);
        Ok(StepMetrics {
            step: self.step,
            episode: self.episodes,
            kl,
            entropy: -mean(&logp_old),
            non_score_reward: -beta * kl,
            rlhf_reward: mean(&penalised),
            scores: score_mean,
            policy_loss: loss_value,
            approx_kl: approx_kl / later_passes.max(1) as f64,
            clip_fraction: clipped / self.config.ppo_epochs as f64,
            stopped: rollouts.stopped.iter().filter(|&&s| s).count(),
            lr: self.config.learning_rate,
            beta,
            raw_reward: mean(&raw),
            calibrated_reward: (!calibrated.is_empty()).then(|| mean(&calibrated)),
            response_length: rollouts.mean_length(),
        })
    }
}

/// Checkpoints: files on disk, so native only.
#[cfg(not(target_arch = "wasm32"))]
mod checkpoint {
    use std::path::Path;

    use burn::tensor::Device;

    use super::{CtrlConfig, CtrlTrainer};
    use crate::checkpoint::{read_optimizer, read_policy, read_state, save};
    use crate::error::{Error, Result};
    use crate::policy::Policy;

    /// `state.json` of a checkpoint.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CheckpointState {
        config: CtrlConfig,
        step: u64,
        /// For readers; `beta_bits` is what resumes (serde_json's float parsing may be off by
        /// one unit in the last place, which would make a resumed run drift).
        beta: f64,
        beta_bits: u64,
        episodes: u64,
        base_policy_sha256: String,
    }

    impl CtrlTrainer {
        /// Write a checkpoint into `dir` (see [`crate::checkpoint`]).
        pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
            let state = CheckpointState {
                config: self.config.clone(),
                step: self.step,
                beta: self.beta,
                beta_bits: self.beta.to_bits(),
                episodes: self.episodes,
                base_policy_sha256: self.reference_sha256.clone(),
            };
            save(dir, &self.policy, &self.optimizer, &state)
        }

        /// The step of the checkpoint in `dir`, without loading it.
        pub fn checkpoint_step(dir: &Path) -> Result<u64> {
            Ok(read_state::<CheckpointState>(dir)?.step)
        }

        /// Continue the run checkpointed in `dir` against the base policy `base` (which must be
        /// the one the run started from), on `device`.
        pub fn resume(dir: &Path, base: &Policy, device: &Device) -> Result<Self> {
            let mut state: CheckpointState = read_state(dir)?;
            state.config = state.config.upgrade_legacy_specs();
            state.config.validate()?;
            let mut trainer = CtrlTrainer::new(state.config.clone(), base, device)?;
            if trainer.reference_sha256 != state.base_policy_sha256 {
                return Err(Error::Invalid {
                    what: format!("checkpoint {}", dir.display()),
                    reason: "it was trained from a different base policy (its sha256 differs); \
                             pass the run's own base bundle"
                        .into(),
                });
            }
            trainer.policy = read_policy(dir, &base.config(), device)?;
            trainer.optimizer = read_optimizer(dir, state.config.optimizer())?;
            trainer.step = state.step;
            trainer.beta = f64::from_bits(state.beta_bits);
            trainer.episodes = state.episodes;
            Ok(trainer)
        }
    }
}

#[cfg(test)]
mod tests {
    use infalign_core::Transform;

    use super::{CtrlConfig, TrainingReward, SPEC_VERSION};

    #[test]
    fn a_spec_means_what_it_means_everywhere() {
        for (spec, transform) in [
            ("exp:5", Transform::Exp { t: 5.0 }),
            ("negexp:5", Transform::NegExp { t: 5.0 }),
            ("normexp:5", Transform::NormExp { t: 5.0 }),
            ("normnegexp:5", Transform::NormNegExp { t: 5.0 }),
        ] {
            let reward: TrainingReward = spec.parse().unwrap();
            assert_eq!(
                reward,
                TrainingReward::Calibrated(transform.clone()),
                "{spec}"
            );
            assert_eq!(reward.to_string(), spec);
            // The score the trainer uses is the transform's own value.
            let table = infalign_core::ReferenceTable::new(vec![0.0, 1.0, 2.0, 3.0]).unwrap();
            let (score, u) = reward.score(1.5, Some(&table)).unwrap();
            assert_eq!(score, transform.value(u.unwrap()), "{spec}");
        }
        assert_eq!(
            TrainingReward::Calibrated("exp:5".parse().unwrap())
                .score(
                    3.5,
                    Some(&infalign_core::ReferenceTable::new(vec![0.0]).unwrap())
                )
                .unwrap()
                .0,
            5f64.exp()
        );
    }

    #[test]
    fn configs_written_before_spec_version_2_read_as_meant() {
        let mut current = serde_json::to_value(CtrlConfig {
            reward: "normexp:12".parse().unwrap(),
            ..CtrlConfig::default()
        })
        .unwrap();
        assert_eq!(current["spec_version"], SPEC_VERSION);
        assert_eq!(current["reward"], "normexp:12");
        // An old file: no spec_version, and `exp:12` meant the normalised form.
        let object = current.as_object_mut().unwrap();
        object.remove("spec_version");
        object.insert("reward".into(), "exp:12".into());
        let old: CtrlConfig = serde_json::from_value(current.clone()).unwrap();
        let upgraded = old.upgrade_legacy_specs();
        assert_eq!(upgraded.reward.to_string(), "normexp:12");
        assert_eq!(upgraded.spec_version, SPEC_VERSION);
        // A new file's `exp:12` stays e^(12u).
        let object = current.as_object_mut().unwrap();
        object.insert("spec_version".into(), SPEC_VERSION.into());
        let new: CtrlConfig = serde_json::from_value(current).unwrap();
        assert_eq!(new.upgrade_legacy_specs().reward.to_string(), "exp:12");
    }
}
