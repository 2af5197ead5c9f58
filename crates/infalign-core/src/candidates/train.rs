//! Stochastic candidate-set CTRL: the language-model trainer's recipe (theory notes, section 6;
//! `infalign-model`'s `ctrl::trainer`) on tabular logits, one vector of C logits per prompt,
//! starting at 0 (= pi_ref).
//!
//! One step:
//!
//! 1. Draw `prompts_per_step` prompts uniformly **with replacement** (the same prompt can come
//!    twice in a step, as in the language-model trainer) and sample m = `samples_per_prompt`
//!    >= 2 candidates from each prompt's current policy pi_x = softmax(theta_x), with replacement.
//! 2. Score: s = the training score of the candidate ([`Scoring`]).
//! 3. Sequence KL penalty: `R = s - beta (log pi_x(y) - log pi_ref(y))`, log pi_ref = -ln C.
//! 4. RLOO: `A = R - mean of the other m - 1 replies' R` to the same prompt draw.
//! 5. Loss `-mean(A log pi_x(y))` over the step's B = prompts_per_step * m samples (A held
//!    fixed), whose gradient in theta_x is `-(1/B) sum_(samples of x) A (onehot(y) - pi_x)`;
//!    one optimiser step (AdamW or SGD) on all logits.
//! 6. With `target_kl`, beta moves by [`KlControl::next_beta`] from the step's mean sampled KL.
//!
//! The expected update vanishes exactly at the tilted policy `pi_x ∝ exp(s / beta)` (the
//! penalised reward's policy gradient is that of `E_pi[s] - beta KL`), so a long run with a small
//! learning rate approaches [`super::exact_policy`] at the same beta.
//!
//! All randomness of step t comes from one ChaCha8 stream keyed by `(seed,
//! Stream::CandidateTraining, t)`; the state ([`CandidateTrainerState`]: logits, AdamW moments,
//! beta, step) serialises bit for bit, so a resumed run repeats an uninterrupted one exactly.
//! AdamW is dense like burn's and torch's: every logit's moments decay and move each step, also
//! for prompts not drawn. Unlike the language-model trainer there is no gradient clipping and no
//! PPO variant: the tabular gradient is bounded by the advantages, and one pass per batch is
//! plain RLOO.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Error, Result};
use crate::kl_control::KlControl;
use crate::seed::{derive_seed, Stream};

use super::evaluate::{evaluate, CandidateEvaluation};
use super::{CandidateSet, Scoring};

/// AdamW's first-moment decay.
const BETA1: f64 = 0.9;
/// AdamW's second-moment decay.
const BETA2: f64 = 0.999;
/// AdamW's epsilon.
const EPSILON: f64 = 1e-8;

/// The optimiser of the logits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Optimizer {
    /// AdamW (betas 0.9 / 0.999, epsilon 1e-8, bias-corrected), with decoupled weight decay
    /// `theta -= learning_rate * weight_decay * theta`, which pulls the logits towards pi_ref.
    AdamW {
        /// The (constant) learning rate, > 0.
        learning_rate: f64,
        /// Decoupled weight decay, >= 0.
        weight_decay: f64,
    },
    /// Plain gradient descent.
    Sgd {
        /// The (constant) learning rate, > 0.
        learning_rate: f64,
    },
}

impl Optimizer {
    fn validate(&self) -> Result<()> {
        let (learning_rate, weight_decay) = match *self {
            Optimizer::AdamW {
                learning_rate,
                weight_decay,
            } => (learning_rate, weight_decay),
            Optimizer::Sgd { learning_rate } => (learning_rate, 0.0),
        };
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(setting(
                "optimizer.learning_rate",
                learning_rate,
                "must be finite and > 0",
            ));
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(setting(
                "optimizer.weight_decay",
                weight_decay,
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }

    fn uses_moments(&self) -> bool {
        matches!(self, Optimizer::AdamW { .. })
    }
}

/// Settings of a candidate-set CTRL run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateTrainConfig {
    /// The training score.
    pub scoring: Scoring,
    /// The KL coefficient (the starting value when `target_kl` is set), > 0.
    pub beta: f64,
    /// Adapt beta after every step to hold the mean sampled KL (nats) at this value.
    pub target_kl: Option<f64>,
    /// How the adaptive controller moves beta.
    #[serde(default)]
    pub kl_control: KlControl,
    /// Gain of the adaptive controller, >= 0.
    pub kl_rate: f64,
    /// Candidates sampled per prompt draw, m >= 2 (RLOO needs a leave-one-out baseline).
    pub samples_per_prompt: usize,
    /// Prompt draws per step (uniform, with replacement), >= 1.
    pub prompts_per_step: usize,
    /// Run length: samples per prompt on average, S >= 1; the run has
    /// `ceil(S * prompts / (samples_per_prompt * prompts_per_step))` steps.
    pub samples_per_prompt_total: u64,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for CandidateTrainConfig {
    fn default() -> Self {
        Self {
            scoring: Scoring::Calibrated(crate::transform::Transform::Identity),
            beta: 0.1,
            target_kl: None,
            kl_control: KlControl::default(),
            kl_rate: 0.1,
            samples_per_prompt: 4,
            prompts_per_step: 16,
            samples_per_prompt_total: 1024,
            optimizer: Optimizer::AdamW {
                learning_rate: 0.01,
                weight_decay: 0.0,
            },
            seed: 0,
        }
    }
}

/// An [`Error::InvalidParameter`] for a setting.
fn setting(field: &'static str, value: impl std::fmt::Display, reason: &str) -> Error {
    invalid(
        field,
        value,
        &format!("candidate CTRL setting `{field}` {reason}"),
    )
}

impl CandidateTrainConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.scoring.validate()?;
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(setting("beta", self.beta, "must be finite and > 0"));
        }
        if let Some(target) = self.target_kl {
            if !(target.is_finite() && target > 0.0) {
                return Err(setting("target_kl", target, "must be finite and > 0"));
            }
        }
        if !(self.kl_rate.is_finite() && self.kl_rate >= 0.0) {
            return Err(setting("kl_rate", self.kl_rate, "must be finite and >= 0"));
        }
        if self.samples_per_prompt < 2 {
            return Err(setting(
                "samples_per_prompt",
                self.samples_per_prompt,
                "must be at least 2: RLOO needs a leave-one-out baseline",
            ));
        }
        if self.prompts_per_step == 0 {
            return Err(setting("prompts_per_step", 0, "must be at least 1"));
        }
        if self.samples_per_prompt_total == 0 {
            return Err(setting("samples_per_prompt_total", 0, "must be at least 1"));
        }
        self.optimizer.validate()
    }

    /// The number of steps for a set of `prompts` prompts:
    /// `ceil(S * prompts / (m * prompts_per_step))`.
    pub fn total_steps(&self, prompts: usize) -> u64 {
        let samples = u128::from(self.samples_per_prompt_total) * prompts as u128;
        let per_step = (self.samples_per_prompt as u128 * self.prompts_per_step as u128).max(1);
        u64::try_from(samples.div_ceil(per_step)).unwrap_or(u64::MAX)
    }
}

/// One step's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CandidateStepMetrics {
    /// Steps completed, this one included.
    pub step: u64,
    /// Mean sampled KL estimate `log pi(y) - log pi_ref(y)` over the step's samples (before
    /// the update): what the controller sees.
    pub kl: f64,
    /// Mean training score of the samples.
    pub score: f64,
    /// Mean raw reward of the samples.
    pub raw_reward: f64,
    /// Mean penalised reward `score - beta * KL`.
    pub penalised_reward: f64,
    /// The policy-gradient loss `-mean(A log pi(y))`.
    pub loss: f64,
    /// The KL coefficient used in this step.
    pub beta: f64,
}

/// What a candidate-set run needs to resume exactly: the logits, the AdamW moments (empty for
/// SGD), beta and the step count.
///
/// Serialises every float as its IEEE-754 bit pattern (`u64`), because a JSON reader may round
/// a decimal float to a neighbouring value and a resumed run must repeat an uninterrupted one
/// bit for bit: `{"step": 5, "beta": 0.1, "beta_bits": .., "logits_bits": [[..], ..],
/// "first_moment_bits": [[..]], "second_moment_bits": [[..]]}` (`beta` for readers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StateRepr", into = "StateRepr")]
pub struct CandidateTrainerState {
    /// Steps completed.
    pub step: u64,
    /// The current KL coefficient.
    pub beta: f64,
    /// One vector of C logits per prompt.
    pub logits: Vec<Vec<f64>>,
    /// AdamW's first moments (same shape as the logits; empty for SGD).
    pub first_moment: Vec<Vec<f64>>,
    /// AdamW's second moments (same shape as the logits; empty for SGD).
    pub second_moment: Vec<Vec<f64>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRepr {
    step: u64,
    beta: f64,
    beta_bits: u64,
    logits_bits: Vec<Vec<u64>>,
    first_moment_bits: Vec<Vec<u64>>,
    second_moment_bits: Vec<Vec<u64>>,
}

fn to_bits(rows: &[Vec<f64>]) -> Vec<Vec<u64>> {
    rows.iter()
        .map(|row| row.iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn from_bits(rows: Vec<Vec<u64>>) -> Vec<Vec<f64>> {
    rows.into_iter()
        .map(|row| row.into_iter().map(f64::from_bits).collect())
        .collect()
}

impl From<CandidateTrainerState> for StateRepr {
    fn from(state: CandidateTrainerState) -> Self {
        StateRepr {
            step: state.step,
            beta: state.beta,
            beta_bits: state.beta.to_bits(),
            logits_bits: to_bits(&state.logits),
            first_moment_bits: to_bits(&state.first_moment),
            second_moment_bits: to_bits(&state.second_moment),
        }
    }
}

impl TryFrom<StateRepr> for CandidateTrainerState {
    type Error = Error;
    fn try_from(repr: StateRepr) -> Result<Self> {
        let state = CandidateTrainerState {
            step: repr.step,
            beta: f64::from_bits(repr.beta_bits),
            logits: from_bits(repr.logits_bits),
            first_moment: from_bits(repr.first_moment_bits),
            second_moment: from_bits(repr.second_moment_bits),
        };
        state.check_values()?;
        Ok(state)
    }
}

impl CandidateTrainerState {
    /// Checks that beta is finite and > 0 and every logit and moment finite (naming the prompt
    /// and candidate of a bad one).
    fn check_values(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(invalid(
                "trainer state beta",
                self.beta,
                "must be finite and > 0",
            ));
        }
        for (what, rows) in [
            ("trainer state logits", &self.logits),
            ("trainer state first moment", &self.first_moment),
            ("trainer state second moment", &self.second_moment),
        ] {
            for (p, row) in rows.iter().enumerate() {
                if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                    return Err(invalid(
                        what,
                        row[i],
                        &format!("prompt {p}, candidate {i}: must be finite"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A candidate-set CTRL run in progress.
#[derive(Debug, Clone)]
pub struct CandidateTrainer {
    set: CandidateSet,
    config: CandidateTrainConfig,
    /// Training scores per prompt and candidate.
    scores: Vec<Vec<f64>>,
    state: CandidateTrainerState,
    total_steps: u64,
}

impl CandidateTrainer {
    /// A fresh run on `set`: every logit 0 (the policy is pi_ref), beta = `config.beta`.
    ///
    /// Errors: a bad setting (naming the field), or a training score that is not finite
    /// (naming the prompt and candidate).
    pub fn new(set: CandidateSet, config: CandidateTrainConfig) -> Result<Self> {
        let zeros: Vec<Vec<f64>> = set
            .prompts()
            .iter()
            .map(|prompt| vec![0.0; prompt.len()])
            .collect();
        let moments = if config.optimizer.uses_moments() {
            zeros.clone()
        } else {
            Vec::new()
        };
        let state = CandidateTrainerState {
            step: 0,
            beta: config.beta,
            logits: zeros,
            first_moment: moments.clone(),
            second_moment: moments,
        };
        Self::resume(set, config, state)
    }

    /// Continues a run from `state` (from [`CandidateTrainer::state`]) with its own `config`
    /// (which the state does not hold: keep it beside the state, e.g. in the run's settings).
    ///
    /// Errors: a bad setting, a state whose shapes do not fit the set and the optimiser, or a
    /// beta, logit or moment that is not finite.
    pub fn resume(
        set: CandidateSet,
        config: CandidateTrainConfig,
        state: CandidateTrainerState,
    ) -> Result<Self> {
        config.validate()?;
        let scores = set.scores(&config.scoring)?;
        let fits = |rows: &[Vec<f64>]| {
            rows.len() == set.len()
                && rows
                    .iter()
                    .zip(set.prompts())
                    .all(|(row, prompt)| row.len() == prompt.len())
        };
        if !fits(&state.logits) {
            return Err(invalid(
                "trainer state logits",
                format!("{} prompts", state.logits.len()),
                "must hold one logit per candidate of every prompt of the set",
            ));
        }
        let moments_fit = if config.optimizer.uses_moments() {
            fits(&state.first_moment) && fits(&state.second_moment)
        } else {
            state.first_moment.is_empty() && state.second_moment.is_empty()
        };
        if !moments_fit {
            return Err(invalid(
                "trainer state moments",
                format!(
                    "{} and {} prompts",
                    state.first_moment.len(),
                    state.second_moment.len()
                ),
                "AdamW needs both moments shaped like the logits; SGD none",
            ));
        }
        state.check_values()?;
        Ok(CandidateTrainer {
            total_steps: config.total_steps(set.len()),
            set,
            config,
            scores,
            state,
        })
    }

    /// The candidate set it trains on.
    pub fn set(&self) -> &CandidateSet {
        &self.set
    }

    /// The run's settings.
    pub fn config(&self) -> &CandidateTrainConfig {
        &self.config
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &CandidateTrainerState {
        &self.state
    }

    /// Steps completed.
    pub fn step_index(&self) -> u64 {
        self.state.step
    }

    /// The current KL coefficient.
    pub fn beta(&self) -> f64 {
        self.state.beta
    }

    /// The run's length in steps.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Whether every step has run.
    pub fn finished(&self) -> bool {
        self.state.step >= self.total_steps
    }

    /// The current policy: softmax of each prompt's logits.
    pub fn policy(&self) -> Vec<Vec<f64>> {
        self.state
            .logits
            .iter()
            .map(|logits| softmax(logits).0)
            .collect()
    }

    /// The current policy evaluated exactly (see [`super::evaluate`]).
    pub fn evaluate(&self, n: u32) -> Result<CandidateEvaluation> {
        evaluate(&self.set, &self.policy(), n)
    }

    /// Runs one step (see the module documentation) and returns its metrics. Steps past
    /// [`CandidateTrainer::total_steps`] are allowed (they continue the same streams).
    ///
    /// Errors: a logit or moment that is no longer finite (the learning rate is too large).
    pub fn step(&mut self) -> Result<CandidateStepMetrics> {
        let config = &self.config;
        let m = config.samples_per_prompt;
        let batch = (config.prompts_per_step * m) as f64;
        let beta = self.state.beta;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
            config.seed,
            Stream::CandidateTraining,
            self.state.step,
        ));
        let mut gradient: Vec<Vec<f64>> = self
            .state
            .logits
            .iter()
            .map(|row| vec![0.0; row.len()])
            .collect();
        let (mut kl_sum, mut score_sum, mut raw_sum, mut penalised_sum, mut loss_sum) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut picks = Vec::with_capacity(m);
        let mut rewards = Vec::with_capacity(m);
        for _ in 0..config.prompts_per_step {
            let x = uniform_index(&mut rng, self.set.len());
            let (pi, log_pi) = softmax(&self.state.logits[x]);
            let ln_c = (pi.len() as f64).ln();
            picks.clear();
            rewards.clear();
            for _ in 0..m {
                let y = sample(&mut rng, &pi);
                let log_ratio = log_pi[y] + ln_c;
                let score = self.scores[x][y];
                let penalised = score - beta * log_ratio;
                kl_sum += log_ratio;
                score_sum += score;
                raw_sum += self.set.prompts()[x].raw()[y];
                penalised_sum += penalised;
                picks.push(y);
                rewards.push(penalised);
            }
            let total: f64 = rewards.iter().sum();
            let row = &mut gradient[x];
            for (&y, &reward) in picks.iter().zip(&rewards) {
                let advantage = reward - (total - reward) / (m - 1) as f64;
                loss_sum -= advantage * log_pi[y];
                // d(-A log pi(y) / B) / d theta = -(A / B) (onehot(y) - pi).
                let scale = advantage / batch;
                row[y] -= scale;
                for (g, &q) in row.iter_mut().zip(&pi) {
                    *g += scale * q;
                }
            }
        }
        self.apply(&gradient)?;
        let metrics = CandidateStepMetrics {
            step: self.state.step + 1,
            kl: kl_sum / batch,
            score: score_sum / batch,
            raw_reward: raw_sum / batch,
            penalised_reward: penalised_sum / batch,
            loss: loss_sum / batch,
            beta,
        };
        if let Some(target) = self.config.target_kl {
            self.state.beta =
                self.config
                    .kl_control
                    .next_beta(beta, metrics.kl, target, self.config.kl_rate);
        }
        self.state.step += 1;
        Ok(metrics)
    }

    /// Runs the remaining steps, calling `progress` after each.
    pub fn run(&mut self, mut progress: impl FnMut(&CandidateStepMetrics)) -> Result<()> {
        while !self.finished() {
            let metrics = self.step()?;
            progress(&metrics);
        }
        Ok(())
    }

    /// One optimiser step on every logit.
    fn apply(&mut self, gradient: &[Vec<f64>]) -> Result<()> {
        let state = &mut self.state;
        match self.config.optimizer {
            Optimizer::Sgd { learning_rate } => {
                for (row, grad) in state.logits.iter_mut().zip(gradient) {
                    for (theta, g) in row.iter_mut().zip(grad) {
                        *theta -= learning_rate * g;
                    }
                }
            }
            Optimizer::AdamW {
                learning_rate,
                weight_decay,
            } => {
                let t = (state.step + 1).min(i32::MAX as u64) as i32;
                let correction1 = 1.0 - BETA1.powi(t);
                let correction2 = 1.0 - BETA2.powi(t);
                for (((row, m_row), v_row), grad) in state
                    .logits
                    .iter_mut()
                    .zip(&mut state.first_moment)
                    .zip(&mut state.second_moment)
                    .zip(gradient)
                {
                    for (((theta, m), v), &g) in row.iter_mut().zip(m_row).zip(v_row).zip(grad) {
                        *m = BETA1 * *m + (1.0 - BETA1) * g;
                        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                        let update = (*m / correction1) / ((*v / correction2).sqrt() + EPSILON);
                        *theta -= learning_rate * (weight_decay * *theta + update);
                    }
                }
            }
        }
        for (p, row) in state.logits.iter().enumerate() {
            if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                return Err(invalid(
                    "logit",
                    row[i],
                    &format!(
                        "prompt {p}, candidate {i} after step {}: lower the learning rate",
                        state.step + 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// softmax and log-softmax of finite logits.
fn softmax(logits: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logits.iter().map(|&l| (l - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    let log_total = total.ln();
    (
        weights.iter().map(|w| w / total).collect(),
        logits.iter().map(|&l| l - top - log_total).collect(),
    )
}

/// A uniform index below `bound` (> 0), without modulo bias (Lemire's multiply-and-reject).
fn uniform_index(rng: &mut ChaCha8Rng, bound: usize) -> usize {
    let bound = bound as u64;
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as usize;
        }
    }
}

/// An index drawn from `probabilities` (summing to 1) by inverting the CDF at a uniform in
/// [0, 1) with 53 random bits; rounding past the end falls back to the last positive entry.
fn sample(rng: &mut ChaCha8Rng, probabilities: &[f64]) -> usize {
    let uniform = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let mut cumulative = 0.0;
    for (i, &q) in probabilities.iter().enumerate() {
        cumulative += q;
        if uniform < cumulative {
            return i;
        }
    }
    probabilities.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::{beta_for_kl, exact_at_beta, exact_policy};
    use super::*;
    use crate::transform::Transform;

    fn small_set() -> CandidateSet {
        // Three prompts, C = 8 distinct raw rewards each, K = 8 references.
        CandidateSet::from_rewards(
            vec![
                vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                vec![3.0, -1.0, 0.5, 2.5, 9.0, 1.5, 4.0, 0.0],
                vec![0.1, 0.9, 0.4, 0.6, 0.3, 0.8, 0.2, 0.7],
            ],
            vec![
                vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
                vec![-2.0, 0.2, 1.0, 2.0, 3.0, 3.5, 5.0, 10.0],
                vec![0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75],
            ],
        )
        .unwrap()
    }

    fn config() -> CandidateTrainConfig {
        CandidateTrainConfig {
            scoring: Scoring::Calibrated(Transform::Identity),
            beta: 0.1,
            samples_per_prompt: 4,
            prompts_per_step: 3,
            samples_per_prompt_total: 400,
            optimizer: Optimizer::AdamW {
                learning_rate: 0.05,
                weight_decay: 0.0,
            },
            seed: 7,
            ..CandidateTrainConfig::default()
        }
    }

    #[test]
    fn total_steps_rounds_up() {
        let config = config();
        // 400 * 3 / (4 * 3) = 100 exactly; one more prompt: 1600 / 12 -> 134.
        assert_eq!(config.total_steps(3), 100);
        assert_eq!(config.total_steps(4), 134);
    }

    #[test]
    fn settings_are_validated_by_field() {
        let cases: Vec<(CandidateTrainConfig, &str)> = vec![
            (
                CandidateTrainConfig {
                    samples_per_prompt: 1,
                    ..config()
                },
                "samples_per_prompt",
            ),
            (
                CandidateTrainConfig {
                    beta: 0.0,
                    ..config()
                },
                "beta",
            ),
            (
                CandidateTrainConfig {
                    beta: f64::NAN,
                    ..config()
                },
                "beta",
            ),
            (
                CandidateTrainConfig {
                    target_kl: Some(-1.0),
                    ..config()
                },
                "target_kl",
            ),
            (
                CandidateTrainConfig {
                    kl_rate: f64::INFINITY,
                    ..config()
                },
                "kl_rate",
            ),
            (
                CandidateTrainConfig {
                    prompts_per_step: 0,
                    ..config()
                },
                "prompts_per_step",
            ),
            (
                CandidateTrainConfig {
                    samples_per_prompt_total: 0,
                    ..config()
                },
                "samples_per_prompt_total",
            ),
            (
                CandidateTrainConfig {
                    optimizer: Optimizer::Sgd { learning_rate: 0.0 },
                    ..config()
                },
                "learning_rate",
            ),
            (
                CandidateTrainConfig {
                    optimizer: Optimizer::AdamW {
                        learning_rate: 0.1,
                        weight_decay: -1.0,
                    },
                    ..config()
                },
                "weight_decay",
            ),
            (
                CandidateTrainConfig {
                    scoring: Scoring::Calibrated(Transform::Exp { t: 0.0 }),
                    ..config()
                },
                "t",
            ),
        ];
        let set = small_set();
        for (config, field) in cases {
            let err = CandidateTrainer::new(set.clone(), config).unwrap_err();
            assert!(err.to_string().contains(field), "{err} lacks {field}");
        }
        // The settings read back from JSON, with the controller defaulted.
        let json = serde_json::to_string(&config()).unwrap();
        let back: CandidateTrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config());
    }

    #[test]
    fn gradient_is_the_rloo_policy_gradient() {
        // With SGD and learning rate 1 one step moves the logits by minus the gradient; rebuild
        // it from the step's own draws.
        let set = small_set();
        let config = CandidateTrainConfig {
            optimizer: Optimizer::Sgd { learning_rate: 1.0 },
            prompts_per_step: 2,
            ..config()
        };
        let mut trainer = CandidateTrainer::new(set.clone(), config.clone()).unwrap();
        // Take the policy away from uniform first, so the KL penalty matters.
        for _ in 0..3 {
            trainer.step().unwrap();
        }
        let before = trainer.state().logits.clone();
        let pis = trainer.policy();
        let step = trainer.step_index();
        let beta = trainer.beta();
        let metrics = trainer.step().unwrap();
        // Replay the draws.
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(config.seed, Stream::CandidateTraining, step));
        let scores = set.scores(&config.scoring).unwrap();
        let mut expected = before.clone();
        let batch = 8.0;
        let mut kl = 0.0;
        for _ in 0..2 {
            let x = uniform_index(&mut rng, 3);
            let pi = &pis[x];
            let ys: Vec<usize> = (0..4).map(|_| sample(&mut rng, pi)).collect();
            let r: Vec<f64> = ys
                .iter()
                .map(|&y| {
                    let log_ratio = (pi[y] * 8.0).ln();
                    kl += log_ratio;
                    scores[x][y] - beta * log_ratio
                })
                .collect();
            for (j, &y) in ys.iter().enumerate() {
                let others: f64 = (0..4).filter(|&k| k != j).map(|k| r[k]).sum::<f64>() / 3.0;
                let a = r[j] - others;
                for (c, theta) in expected[x].iter_mut().enumerate() {
                    let onehot = if c == y { 1.0 } else { 0.0 };
                    // theta -= grad, grad = -(a / B)(onehot - pi).
                    *theta += a / batch * (onehot - pi[c]);
                }
            }
        }
        assert!((metrics.kl - kl / batch).abs() < 1e-12);
        for (row, want) in trainer.state().logits.iter().zip(&expected) {
            for (got, want) in row.iter().zip(want) {
                assert!((got - want).abs() < 1e-12, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn converges_to_the_exact_optimum_at_fixed_beta() {
        let set = small_set();
        let scoring = Scoring::Calibrated(Transform::Identity);
        let exact = exact_at_beta(&set, &scoring, 0.1, 4).unwrap();
        for optimizer in [
            Optimizer::AdamW {
                learning_rate: 0.01,
                weight_decay: 0.0,
            },
            Optimizer::Sgd { learning_rate: 2.0 },
        ] {
            let config = CandidateTrainConfig {
                optimizer,
                samples_per_prompt_total: 40_000,
                ..config()
            };
            let mut trainer = CandidateTrainer::new(set.clone(), config).unwrap();
            let mut steps = 0;
            trainer.run(|_| steps += 1).unwrap();
            assert_eq!(steps, 10_000);
            let trained = trainer.evaluate(4).unwrap();
            // Stochastic: a constant learning rate leaves the logits fluctuating around the
            // optimum (and SGD approaches it slowly from below in KL). Over six seeds the KL
            // was off by at most 0.001 (AdamW) and 0.004 (SGD), the win rates by 2e-4, and
            // the policies by at most 0.005 in total variation: 0.01 and 0.02 leave room.
            assert!(
                (trained.kl - exact.kl).abs() < 0.01,
                "{optimizer:?}: KL {} vs {}",
                trained.kl,
                exact.kl
            );
            assert!(
                (trained.win_rate.bon - exact.win_rate.bon).abs() < 0.01,
                "{optimizer:?}: BoN {} vs {}",
                trained.win_rate.bon,
                exact.win_rate.bon
            );
            assert!((trained.win_rate.standard - exact.win_rate.standard).abs() < 0.01);
            // And the policy itself is close in total variation.
            let target = exact_policy(&set, &scoring, 0.1).unwrap();
            for (got, want) in trainer.policy().iter().zip(&target) {
                let tv: f64 = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>()
                    / 2.0;
                assert!(tv < 0.02, "{optimizer:?}: TV {tv}");
            }
        }
    }

    #[test]
    fn controller_moves_beta_towards_the_budget() {
        let set = small_set();
        let scoring = Scoring::Calibrated(Transform::Identity);
        let budget = 0.5;
        let exact_beta = beta_for_kl(&set, &scoring, budget).unwrap();
        let config = CandidateTrainConfig {
            beta: 1.0,
            target_kl: Some(budget),
            kl_control: KlControl::Log,
            kl_rate: 0.05,
            samples_per_prompt_total: 8_000,
            ..config()
        };
        let mut trainer = CandidateTrainer::new(set.clone(), config).unwrap();
        trainer.run(|_| {}).unwrap();
        let ratio = trainer.beta() / exact_beta;
        assert!(
            ratio > 0.5 && ratio < 2.0,
            "beta {} vs exact {exact_beta}",
            trainer.beta()
        );
        // The controller chases noisy per-step KL estimates, so beta wanders around the exact
        // value: over four seeds it ended within a factor 1.3 of it, the policy's KL within
        // 0.12 nats of the budget (from a start at 5 times the exact beta, KL 0.08).
        let kl = trainer.evaluate(1).unwrap().kl;
        assert!((kl - budget).abs() < 0.2, "KL {kl}");
    }

    #[test]
    fn deterministic_and_resumable_bit_for_bit() {
        let set = small_set();
        for config in [
            config(),
            CandidateTrainConfig {
                optimizer: Optimizer::Sgd { learning_rate: 0.3 },
                target_kl: Some(0.3),
                ..config()
            },
        ] {
            let mut straight = CandidateTrainer::new(set.clone(), config.clone()).unwrap();
            let mut straight_metrics = Vec::new();
            for _ in 0..10 {
                straight_metrics.push(straight.step().unwrap());
            }
            let mut again = CandidateTrainer::new(set.clone(), config.clone()).unwrap();
            for _ in 0..10 {
                again.step().unwrap();
            }
            assert_eq!(again.state(), straight.state());

            let mut first = CandidateTrainer::new(set.clone(), config.clone()).unwrap();
            for _ in 0..5 {
                first.step().unwrap();
            }
            let json = serde_json::to_string(first.state()).unwrap();
            let state: CandidateTrainerState = serde_json::from_str(&json).unwrap();
            let mut resumed = CandidateTrainer::resume(set.clone(), config.clone(), state).unwrap();
            let mut resumed_metrics = Vec::new();
            for _ in 0..5 {
                resumed_metrics.push(resumed.step().unwrap());
            }
            assert_eq!(resumed_metrics, straight_metrics[5..]);
            let bits = |state: &CandidateTrainerState| {
                (
                    state.step,
                    state.beta.to_bits(),
                    to_bits(&state.logits),
                    to_bits(&state.first_moment),
                    to_bits(&state.second_moment),
                )
            };
            assert_eq!(bits(resumed.state()), bits(straight.state()));
            // A different seed gives a different run.
            let mut other = CandidateTrainer::new(
                set.clone(),
                CandidateTrainConfig {
                    seed: 8,
                    ..config.clone()
                },
            )
            .unwrap();
            for _ in 0..10 {
                other.step().unwrap();
            }
            assert_ne!(other.state().logits, straight.state().logits);
        }
    }

    #[test]
    fn resume_rejects_states_that_do_not_fit() {
        let set = small_set();
        let trainer = CandidateTrainer::new(set.clone(), config()).unwrap();
        let mut state = trainer.state().clone();
        state.logits[1].pop();
        assert!(CandidateTrainer::resume(set.clone(), config(), state).is_err());
        // An AdamW state has moments, which SGD does not take.
        let sgd = CandidateTrainConfig {
            optimizer: Optimizer::Sgd { learning_rate: 0.1 },
            ..config()
        };
        assert!(CandidateTrainer::resume(set.clone(), sgd, trainer.state().clone()).is_err());
        let json = serde_json::to_string(trainer.state())
            .unwrap()
            .replace("\"beta_bits\":", "\"beta_bits\":0,\"x\":");
        assert!(serde_json::from_str::<CandidateTrainerState>(&json).is_err());
        let mut bad = trainer.state().clone();
        bad.logits[0][3] = f64::NAN;
        let err = CandidateTrainer::resume(set.clone(), config(), bad.clone()).unwrap_err();
        assert!(err.to_string().contains("prompt 0, candidate 3"), "{err}");
        let json = serde_json::to_string(&bad).unwrap();
        let err = serde_json::from_str::<CandidateTrainerState>(&json).unwrap_err();
        assert!(err.to_string().contains("prompt 0, candidate 3"), "{err}");
    }

    #[test]
    fn samplers_are_unbiased_enough() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let probabilities = [0.1, 0.0, 0.6, 0.3];
        let mut counts = [0usize; 4];
        let draws = 100_000;
        for _ in 0..draws {
            counts[sample(&mut rng, &probabilities)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (count, p) in counts.iter().zip(probabilities) {
            // Binomial standard error at most 0.0016; 5 of them.
            assert!((*count as f64 / draws as f64 - p).abs() < 0.008);
        }
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[uniform_index(&mut rng, 3)] += 1;
        }
        assert!(counts.iter().all(|&c| (c as f64 - 10_000.0).abs() < 400.0));
    }
}
