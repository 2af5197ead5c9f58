//! Training the base policy pi_ref on dialogue text: windows of dialogues that start at a human
//! turn, next-token cross-entropy, AdamW with linear warm-up and a cosine schedule, per-tensor
//! gradient-norm clipping, and checkpoints that resume exactly.
//!
//! Every step's batch is drawn from a ChaCha8 stream keyed by `(seed, step)`, and the optimiser
//! state travels in the checkpoint, so stopping after step k and resuming gives the same weights
//! as an uninterrupted run (on the CPU, whose kernels are deterministic).

use std::f64::consts::PI;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{Dialogue, Role};
use crate::error::{Error, Result, Settings};
use crate::host_values;
use crate::policy::{
    parts_for, split_gradients, split_rows, PartLoss, Policy, PolicyConfig, SplitGradients,
    TokenBatch,
};
use crate::tokenizer::{DialogueTokenizer, END_OF_TURN};

/// Settings of a pre-training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The policy's shape (`vocab_size` must match the tokenizer).
    pub policy: PolicyConfig,
    /// Sequences per step.
    pub batch_size: usize,
    /// Optimiser steps in the whole run.
    pub steps: u64,
    /// Peak learning rate, reached after the warm-up.
    pub learning_rate: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_learning_rate: f64,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: u64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Largest gradient norm per parameter tensor.
    pub grad_clip: f64,
    /// Seed of the initial weights and of every batch.
    pub seed: u64,
}

impl PretrainConfig {
    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.policy.validate()?;
        let settings = Settings::new("pre-training setting");
        let invalid = |field: &str, reason: String| settings.fail(field, reason);
        settings.at_least_one(&[("batch_size", self.batch_size)])?;
        if self.steps == 0 {
            return invalid("steps", "must be at least 1".into());
        }
        settings.finite_non_negative(&[
            ("learning_rate", self.learning_rate),
            ("min_learning_rate", self.min_learning_rate),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ])?;
        if self.min_learning_rate > self.learning_rate {
            return invalid(
                "min_learning_rate",
                format!(
                    "{} exceeds learning_rate {}",
                    self.min_learning_rate, self.learning_rate
                ),
            );
        }
        Ok(())
    }

    /// The learning rate at `step` (0-based): linear warm-up, then cosine decay to the minimum.
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.min_learning_rate
            + 0.5 * (self.learning_rate - self.min_learning_rate) * (1.0 + (PI * progress).cos())
    }

    fn optimizer(&self) -> ModuleOptimizer {
        let mut config = AdamWConfig::new()
            .with_beta_2(0.95)
            .with_epsilon(1e-8)
            .with_weight_decay(self.weight_decay as f32);
        if self.grad_clip > 0.0 {
            config = config
                .with_grad_clipping(Some(GradientClippingConfig::Norm(self.grad_clip as f32)));
        }
        config.init()
    }
}

/// Tokenised dialogues and the places a training window may start (each human turn).
#[derive(Debug, Clone)]
pub struct TrainingWindows {
    dialogues: Vec<Vec<u32>>,
    /// `(dialogue, token offset)` of every human turn.
    starts: Vec<(u32, u32)>,
    /// Tokens per window (the model reads `window - 1` of them).
    window: usize,
}

impl TrainingWindows {
    /// Tokenise `dialogues` (turns closed by the end-of-turn token) for windows of `window`
    /// tokens. Turns are tokenised one by one, which gives the same ids as the whole text
    /// because the end-of-turn token splits the text before BPE.
    pub fn new(
        dialogues: &[Dialogue],
        tokenizer: &DialogueTokenizer,
        window: usize,
    ) -> Result<Self> {
        if window < 2 {
            return Err(Error::Invalid {
                what: "training window".into(),
                reason: format!("{window} tokens; need at least 2"),
            });
        }
        let mut tokens = Vec::with_capacity(dialogues.len());
        let mut starts = Vec::new();
        for dialogue in dialogues {
            let mut ids: Vec<u32> = Vec::new();
            for turn in &dialogue.turns {
                if turn.role == Role::Human {
                    starts.push((tokens.len() as u32, ids.len() as u32));
                }
                let text = format!("{}{}{END_OF_TURN}", turn.role.prefix(), turn.text);
                ids.extend(tokenizer.encode(&text)?);
            }
            tokens.push(ids);
        }
        // A window needs at least two tokens.
        starts.retain(|&(d, offset)| tokens[d as usize].len() >= offset as usize + 2);
        if starts.is_empty() {
            return Err(Error::Invalid {
                what: "training data".into(),
                reason: "no dialogue has a human turn to train on".into(),
            });
        }
        Ok(Self {
            dialogues: tokens,
            starts,
            window,
        })
    }

    /// Number of places a window can start.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there are no windows (never true for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Total tokens over all dialogues.
    pub fn total_tokens(&self) -> usize {
        self.dialogues.iter().map(Vec::len).sum()
    }

    fn window_at(&self, index: usize) -> Vec<u32> {
        let (dialogue, offset) = self.starts[index];
        let ids = &self.dialogues[dialogue as usize];
        let start = offset as usize;
        ids[start..(start + self.window).min(ids.len())].to_vec()
    }

    /// The windows of step `step`: `batch_size` starts drawn uniformly from a ChaCha8 stream
    /// keyed by `(seed, step)`.
    pub fn batch(&self, seed: u64, step: u64, batch_size: usize) -> Vec<Vec<u32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..batch_size)
            .map(|_| {
                let index =
                    ((u128::from(rng.next_u64()) * self.starts.len() as u128) >> 64) as usize;
                self.window_at(index)
            })
            .collect()
    }

    /// Up to `count` windows spread evenly over all starts (a fixed evaluation set).
    pub fn evenly_spaced(&self, count: usize) -> Vec<Vec<u32>> {
        let count = count.min(self.starts.len()).max(1);
        (0..count)
            .map(|k| self.window_at(k * self.starts.len() / count))
            .collect()
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The step's training loss (mean cross-entropy per target token, nats).
    pub loss: f64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// Target tokens in the batch.
    pub tokens: usize,
}

/// A pre-training run in progress.
pub struct Pretrainer {
    /// The run's settings.
    pub config: PretrainConfig,
    /// The policy being trained (on an autodiff device).
    pub policy: Policy,
    optimizer: ModuleOptimizer,
    /// Steps completed.
    pub step: u64,
    /// Target tokens trained on so far.
    pub tokens: u64,
}

impl Pretrainer {
    /// A fresh run on `device` (gradients are enabled on it).
    pub fn new(config: PretrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let policy = Policy::init(&config.policy, config.seed, &device.clone().autodiff())?;
        Ok(Self {
            optimizer: config.optimizer(),
            config,
            policy,
            step: 0,
            tokens: 0,
        })
    }

    /// Whether every step has run.
    pub fn finished(&self) -> bool {
        self.step >= self.config.steps
    }

    /// Run one optimiser step on the batch the schedule assigns to it.
    pub fn train_step(&mut self, data: &TrainingWindows) -> Result<StepReport> {
        let windows = data.batch(self.config.seed, self.step, self.config.batch_size);
        let split = language_model_gradients(&self.policy, &windows)?;
        let loss_value = split.loss;
        if !loss_value.is_finite() {
            return Err(Error::Invalid {
                what: "training".into(),
                reason: format!(
                    "the loss became {loss_value} at step {}; lower the learning rate",
                    self.step + 1
                ),
            });
        }
        let learning_rate = self.config.learning_rate_at(self.step);
        // A module clone shares its tensors; the optimiser returns the updated module.
        self.policy = self
            .optimizer
            .step(learning_rate, self.policy.clone(), split.grads);
        let targets = target_count(&windows);
        self.step += 1;
        self.tokens += targets as u64;
        Ok(StepReport {
            loss: loss_value,
            learning_rate,
            tokens: targets,
        })
    }

    /// The policy as it stands, without gradient tracking (for evaluation and sampling).
    pub fn inference_policy(&self) -> Policy {
        self.policy.valid()
    }

    /// Mean cross-entropy per token over `windows`, without gradients, in batches of the run's
    /// batch size.
    pub fn evaluate(&self, windows: &[Vec<u32>]) -> Result<f64> {
        evaluate_loss(&self.inference_policy(), windows, self.config.batch_size)
    }
}

/// Checkpoints: files on disk, so native only.
#[cfg(not(target_arch = "wasm32"))]
mod checkpoint {
    use std::path::Path;

    use burn::tensor::Device;

    use super::{PretrainConfig, Pretrainer};
    use crate::checkpoint::{read_optimizer, read_policy, read_state, save};
    use crate::error::Result;

    /// `state.json` of a checkpoint.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CheckpointState {
        config: PretrainConfig,
        step: u64,
        tokens: u64,
    }

    impl Pretrainer {
        /// Write a checkpoint into `dir` (see [`crate::checkpoint`]).
        pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
            let state = CheckpointState {
                config: self.config.clone(),
                step: self.step,
                tokens: self.tokens,
            };
            save(dir, &self.policy, &self.optimizer, &state)
        }

        /// Continue the run checkpointed in `dir`, on `device`.
        pub fn resume(dir: &Path, device: &Device) -> Result<Self> {
            let state: CheckpointState = read_state(dir)?;
            state.config.validate()?;
            Ok(Self {
                policy: read_policy(dir, &state.config.policy, device)?,
                optimizer: read_optimizer(dir, state.config.optimizer())?,
                config: state.config,
                step: state.step,
                tokens: state.tokens,
            })
        }
    }
}

/// Target tokens of language-model windows (every token after the first).
fn target_count(windows: &[Vec<u32>]) -> usize {
    windows
        .iter()
        .map(|window| window.len().saturating_sub(1))
        .sum()
}

/// The language-modelling loss of `windows` (mean next-token cross-entropy over all their
/// targets) and its gradient, the windows split across the cores on flex
/// ([`split_gradients`]): each part's loss is its summed cross-entropy over the whole batch's
/// target count, so the parts' gradients add up to the whole batch's. What pretraining and the
/// training-step benchmark run. `policy` must be on an autodiff device.
pub fn language_model_gradients(
    policy: &Policy,
    windows: &[Vec<u32>],
) -> Result<SplitGradients<()>> {
    let max_len = policy.config().max_seq_len + 1;
    let count = target_count(windows).max(1) as f64;
    let parts = split_rows(windows.len(), parts_for(&policy.device(), windows.len())?)
        .into_iter()
        .map(|rows| &windows[rows])
        .collect();
    split_gradients(policy, parts, |model, part: &[Vec<u32>]| {
        let first = vec![1; part.len()];
        let batch = TokenBatch::new(part, &first, max_len, &model.device())?;
        Ok(PartLoss {
            loss: model.token_logprobs(&batch).sum().neg() / count,
            extra: (),
        })
    })
}

/// Mean cross-entropy per target token of `policy` over `windows`, in batches of `batch_size`.
pub fn evaluate_loss(policy: &Policy, windows: &[Vec<u32>], batch_size: usize) -> Result<f64> {
    let device = policy.device();
    let max_len = policy.config().max_seq_len + 1;
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in windows.chunks(batch_size.max(1)) {
        let first = vec![1; chunk.len()];
        let batch = TokenBatch::new(chunk, &first, max_len, &device)?;
        let sum = host_values(policy.token_logprobs(&batch).sum(), "validation loss")?[0];
        total -= f64::from(sum);
        count += batch.target_count();
    }
    Ok(total / count.max(1) as f64)
}
