//! Training a learned reward model Bradley-Terry, and the folds of its cross-validation.

#[cfg(not(target_arch = "wasm32"))]
use burn::module::Module;
#[cfg(not(target_arch = "wasm32"))]
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
#[cfg(not(target_arch = "wasm32"))]
use burn::tensor::activation::log_sigmoid;
#[cfg(not(target_arch = "wasm32"))]
use burn::tensor::Device;

use crate::data::PreferencePair;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Error;
use crate::error::{Result, Settings};
#[cfg(not(target_arch = "wasm32"))]
use crate::host_values;

#[cfg(not(target_arch = "wasm32"))]
use super::model::tie_aware_win;
#[cfg(not(target_arch = "wasm32"))]
use super::model::FeatureBatch;
use super::*;

/// Settings of a Bradley-Terry training run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BradleyTerryConfig {
    /// The model's shape.
    pub model: LearnedRewardConfig,
    /// Passes over the pairs.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// AdamW's learning rate (constant).
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// L2 penalty on all weights, added to the mean pair loss (`l2 * sum w^2`).
    #[serde(default)]
    pub l2: f64,
    /// Seed of the weights and of the order of the pairs.
    pub seed: u64,
}

impl BradleyTerryConfig {
    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let settings = Settings::new("reward training setting");
        settings.at_least_one(&[("epochs", self.epochs), ("batch_size", self.batch_size)])?;
        settings.finite_non_negative(&[
            ("learning_rate", self.learning_rate),
            ("weight_decay", self.weight_decay),
            ("l2", self.l2),
        ])
    }
}

/// What one epoch of training did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean Bradley-Terry loss over the epoch's pairs (nats).
    pub loss: f64,
    /// Share of the epoch's pairs the model ranked right before each step.
    pub accuracy: f64,
}

/// Train a reward model on `pairs` (at least one) on `device`; `on_epoch` hears about each epoch.
/// Native only (training needs autodiff, which the browser build leaves out).
#[cfg(not(target_arch = "wasm32"))]
pub fn train_bradley_terry(
    pairs: &[EncodedPair],
    config: &BradleyTerryConfig,
    device: &Device,
    mut on_epoch: impl FnMut(EpochReport),
) -> Result<LearnedReward> {
    config.validate()?;
    if pairs.is_empty() {
        return Err(Error::Invalid {
            what: "reward training data".into(),
            reason: "no preference pairs".into(),
        });
    }
    let autodiff = device.clone().autodiff();
    let mut net = RewardNet::init(&config.model, config.seed, &autodiff)?;
    let mut optimizer: ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    for epoch in 1..=config.epochs {
        crate::shuffle(&mut order, config.seed ^ (epoch as u64).rotate_left(32));
        let (mut loss_sum, mut right) = (0.0, 0.0);
        for chunk in order.chunks(config.batch_size) {
            let rows: Vec<&[u32]> = chunk
                .iter()
                .map(|&i| pairs[i].chosen.as_slice())
                .chain(chunk.iter().map(|&i| pairs[i].rejected.as_slice()))
                .collect();
            let scores = net.forward(&FeatureBatch::new(&rows, &autodiff));
            let n = chunk.len();
            let margin = scores.clone().slice(0..n) - scores.slice(n..2 * n);
            let margins = host_values(margin.clone(), "reward margins")?;
            right += margins.iter().map(|&m| tie_aware_win(m)).sum::<f64>();
            let mut loss = log_sigmoid(margin).neg().mean();
            if config.l2 > 0.0 {
                loss = loss + net.squared_norm().mul_scalar(config.l2);
            }
            loss_sum += margins
                .iter()
                .map(|&m| f64::from(-m).exp().ln_1p())
                .sum::<f64>();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(config.learning_rate, net, grads);
        }
        on_epoch(EpochReport {
            epoch,
            loss: loss_sum / pairs.len() as f64,
            accuracy: right / pairs.len() as f64,
        });
    }
    LearnedReward::from_net(config.model, &net.valid())
}

/// Fold of each pair for `folds`-fold cross-validation: pairs whose prompts open with the same
/// human turn share a fold (HH repeats openings), so no opening is both trained and tested on.
pub fn prompt_folds(pairs: &[PreferencePair], folds: usize) -> Vec<usize> {
    pairs
        .iter()
        .map(|pair| {
            let opening = pair
                .prompt
                .split(crate::data::dialogue::ASSISTANT_CUE)
                .next()
                .unwrap_or("")
                .trim();
            let digest = crate::sha256_hex(opening.as_bytes());
            let value = u64::from_str_radix(&digest[..15], 16).unwrap_or(0);
            (value % folds.max(1) as u64) as usize
        })
        .collect()
}
