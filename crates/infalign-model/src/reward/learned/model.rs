//! The learned reward model: its network (on a device, for training), the host-side scorer
//! (no device, the same natively and in the browser) and its files.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::relu;
use burn::tensor::module::embedding;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::host_values;
use crate::policy::{init_linear, normal_param};
use crate::provenance::Provenance;
use crate::reward::Reward;

use super::*;

/// The network (see the module documentation), on a device; trained by
/// [`super::train_bradley_terry`].
#[derive(Module, Debug)]
pub struct RewardNet {
    /// `[buckets, dim]`.
    table: Param<Tensor<2>>,
    hidden: Option<Linear>,
    output: Linear,
}

/// Rows of n-gram ids, right-padded, with the pooling weight of each slot (`1/sqrt(n)`, 0 on
/// padding).
pub(super) struct FeatureBatch {
    ids: Tensor<2, Int>,
    weights: Tensor<2>,
}

impl FeatureBatch {
    pub(super) fn new(rows: &[&[u32]], device: &Device) -> Self {
        let width = rows.iter().map(|row| row.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; rows.len() * width];
        let mut weights = vec![0f32; rows.len() * width];
        for (r, row) in rows.iter().enumerate() {
            let weight = pooling_weight(row.len());
            for (slot, id) in row.iter().enumerate() {
                ids[r * width + slot] = i64::from(*id);
                weights[r * width + slot] = weight;
            }
        }
        let shape = [rows.len(), width];
        Self {
            ids: Tensor::from_data(TensorData::new(ids, shape), device),
            weights: Tensor::from_data(TensorData::new(weights, shape), device),
        }
    }
}

fn pooling_weight(count: usize) -> f32 {
    1.0 / (count.max(1) as f32).sqrt()
}

impl RewardNet {
    /// Fresh weights for `config` from `seed` (the same on every backend).
    pub fn init(config: &LearnedRewardConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let table = normal_param(&mut rng, [config.buckets, config.dim], 0.02, device);
        let (hidden, width) = if config.hidden > 0 {
            let std = (2.0 / config.dim as f64).sqrt();
            let layer = init_linear(&mut rng, config.dim, config.hidden, std, device);
            (Some(layer), config.hidden)
        } else {
            (None, config.dim)
        };
        let output = init_linear(&mut rng, width, 1, (1.0 / width as f64).sqrt(), device);
        Ok(Self {
            table,
            hidden,
            output,
        })
    }

    pub(super) fn forward(&self, batch: &FeatureBatch) -> Tensor<1> {
        let [rows, _] = batch.ids.dims();
        let vectors = embedding(self.table.val(), batch.ids.clone());
        let summed = (vectors * batch.weights.clone().unsqueeze_dim::<3>(2)).sum_dim(1);
        let [_, _, dim] = summed.dims();
        let pooled = summed.reshape([rows, dim]);
        let features = match &self.hidden {
            Some(layer) => relu(layer.forward(pooled)),
            None => pooled,
        };
        self.output.forward(features).reshape([rows])
    }

    /// The sum of the squares of every weight.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // training only
    pub(super) fn squared_norm(&self) -> Tensor<1> {
        let mut total = self.table.val().powi_scalar(2).sum();
        for layer in self.hidden.iter().chain(std::iter::once(&self.output)) {
            total = total + layer.weight.val().powi_scalar(2).sum();
        }
        total
    }

    /// Scores of feature rows (see [`LearnedRewardConfig::features`]), computed on the device.
    pub fn score_rows(&self, rows: &[&[u32]]) -> Result<Vec<f32>> {
        let device = self.table.val().device();
        host_values(
            self.forward(&FeatureBatch::new(rows, &device)),
            "reward scores",
        )
    }
}

/// A trained reward model, scored on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedReward {
    config: LearnedRewardConfig,
    /// `[buckets, dim]`, row-major.
    table: Vec<f32>,
    /// `[dim, hidden]` weights and `[hidden]` bias.
    hidden: Option<(Vec<f32>, Vec<f32>)>,
    /// `[width]` weights and the bias.
    output: (Vec<f32>, f32),
    /// The manifest it was loaded from, if any.
    manifest: Option<RewardManifest>,
}

fn linear_values(layer: &Linear) -> Result<(Vec<f32>, Vec<f32>)> {
    let weight = host_values(layer.weight.val(), "reward weights")?;
    let bias = match &layer.bias {
        Some(bias) => host_values(bias.val(), "reward weights")?,
        None => vec![0.0; layer.weight.val().dims()[1]],
    };
    Ok((weight, bias))
}

impl LearnedReward {
    /// Copy a network's weights to the host.
    pub fn from_net(config: LearnedRewardConfig, net: &RewardNet) -> Result<Self> {
        let (output_weight, output_bias) = linear_values(&net.output)?;
        Ok(Self {
            config,
            table: host_values(net.table.val(), "reward weights")?,
            hidden: net.hidden.as_ref().map(linear_values).transpose()?,
            output: (output_weight, output_bias[0]),
            manifest: None,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> LearnedRewardConfig {
        self.config
    }

    /// The manifest it was loaded from (`None` for a model trained in this process).
    pub fn manifest(&self) -> Option<&RewardManifest> {
        self.manifest.as_ref()
    }

    /// The score of a response given as n-gram ids.
    pub fn score_features(&self, ids: &[u32]) -> f64 {
        let dim = self.config.dim;
        let weight = pooling_weight(ids.len());
        let mut pooled = vec![0f32; dim];
        for &id in ids {
            let row = &self.table[id as usize * dim..(id as usize + 1) * dim];
            for (sum, value) in pooled.iter_mut().zip(row) {
                *sum += value * weight;
            }
        }
        let features = match &self.hidden {
            Some((weights, bias)) => {
                let width = bias.len();
                let mut out = bias.clone();
                for (i, x) in pooled.iter().enumerate() {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o += x * weights[i * width + j];
                    }
                }
                out.iter_mut().for_each(|o| *o = o.max(0.0));
                out
            }
            None => pooled,
        };
        let (weights, bias) = &self.output;
        f64::from(
            bias + features
                .iter()
                .zip(weights)
                .map(|(x, w)| x * w)
                .sum::<f32>(),
        )
    }

    /// Share of `pairs` whose chosen answer scores above the rejected one (ties count half).
    pub fn pair_accuracy(&self, pairs: &[EncodedPair]) -> f64 {
        if pairs.is_empty() {
            return f64::NAN;
        }
        let wins: f64 = pairs
            .iter()
            .map(|pair| {
                let margin =
                    self.score_features(&pair.chosen) - self.score_features(&pair.rejected);
                tie_aware_win(margin as f32)
            })
            .sum();
        wins / pairs.len() as f64
    }

    /// The network with these weights, on `device`.
    pub fn net(&self, device: &Device) -> Result<RewardNet> {
        fn param<const D: usize>(
            values: &[f32],
            shape: [usize; D],
            device: &Device,
        ) -> Param<Tensor<D>> {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(values.to_vec(), shape),
                device,
            ))
        }
        let mut net = RewardNet::init(&self.config, 0, device)?;
        let dim = self.config.dim;
        net.table = param(&self.table, [self.config.buckets, dim], device);
        if let (Some(layer), Some((weight, bias))) = (net.hidden.as_mut(), &self.hidden) {
            layer.weight = param(weight, [dim, bias.len()], device);
            layer.bias = Some(param(bias, [bias.len()], device));
        }
        let (weight, bias) = &self.output;
        net.output.weight = param(weight, [weight.len(), 1], device);
        net.output.bias = Some(param(&[*bias], [1], device));
        Ok(net)
    }

    /// The files of a reward directory: `reward.json` (with `provenance` and `metrics`) and
    /// `model.bpk`.
    pub fn files(
        &self,
        provenance: Provenance,
        metrics: BTreeMap<String, f64>,
    ) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let net = self.net(&crate::backend::cpu_device())?;
        let mut store = BurnpackStore::from_bytes(None);
        net.save_into(&mut store)
            .map_err(|error| reward_error("weights", format!("cannot serialise: {error}")))?;
        let weights = store
            .get_bytes()
            .map_err(|error| reward_error("weights", format!("cannot serialise: {error}")))?
            .to_vec();
        let manifest = RewardManifest {
            format: REWARD_FORMAT.into(),
            format_version: REWARD_FORMAT_VERSION,
            architecture: REWARD_ARCHITECTURE.into(),
            model: self.config,
            weights_sha256: crate::sha256_hex(&weights),
            provenance,
            metrics,
        };
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| reward_error(REWARD_MANIFEST_FILE, error.to_string()))?;
        Ok(vec![
            (REWARD_WEIGHTS_FILE, weights),
            (REWARD_MANIFEST_FILE, manifest),
        ])
    }

    /// Parse and validate a reward model from its manifest and weights; `origin` names the
    /// directory in errors.
    pub fn from_bytes(manifest: &[u8], weights: &[u8], origin: &str) -> Result<Self> {
        let at = |file: &str| format!("{origin}/{file}");
        let manifest: RewardManifest = serde_json::from_slice(manifest)
            .map_err(|error| reward_error(&at(REWARD_MANIFEST_FILE), error.to_string()))?;
        let manifest_error = |reason: String| reward_error(&at(REWARD_MANIFEST_FILE), reason);
        if manifest.format != REWARD_FORMAT {
            return Err(manifest_error(format!(
                "format {:?} is not {REWARD_FORMAT:?}",
                manifest.format
            )));
        }
        if manifest.format_version > REWARD_FORMAT_VERSION {
            return Err(manifest_error(format!(
                "format version {} is newer than this build reads ({REWARD_FORMAT_VERSION}): \
                 update infalign",
                manifest.format_version
            )));
        }
        if manifest.architecture != REWARD_ARCHITECTURE {
            return Err(manifest_error(format!(
                "architecture {:?} is not {REWARD_ARCHITECTURE:?}",
                manifest.architecture
            )));
        }
        manifest.model.validate()?;
        if crate::sha256_hex(weights) != manifest.weights_sha256 {
            return Err(reward_error(
                &at(REWARD_WEIGHTS_FILE),
                format!(
                    "sha256 {} differs from the manifest's {}: the file is truncated, corrupt or \
                     from another model",
                    crate::sha256_hex(weights),
                    manifest.weights_sha256
                ),
            ));
        }
        let device = crate::backend::cpu_device();
        let mut net = RewardNet::init(&manifest.model, 0, &device)?;
        let mut store =
            BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(weights.to_vec()))).validate(true);
        let applied = net.load_from(&mut store).map_err(|error| {
            reward_error(
                &at(REWARD_WEIGHTS_FILE),
                format!("the weights do not fit {:?}: {error}", manifest.model),
            )
        })?;
        if let Some(misfit) = crate::weights::misfit(&applied) {
            return Err(reward_error(
                &at(REWARD_WEIGHTS_FILE),
                format!("the weights do not fit {:?} ({misfit})", manifest.model),
            ));
        }
        let mut reward = Self::from_net(manifest.model, &net)?;
        reward.manifest = Some(manifest);
        Ok(reward)
    }

    /// Read a reward directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|error| Error::io(path, error))
        };
        Self::from_bytes(
            &read(REWARD_MANIFEST_FILE)?,
            &read(REWARD_WEIGHTS_FILE)?,
            &dir.display().to_string(),
        )
    }

    /// Write a reward directory (the manifest last).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(
        &self,
        dir: impl AsRef<std::path::Path>,
        provenance: Provenance,
        metrics: BTreeMap<String, f64>,
    ) -> Result<()> {
        crate::files::write_files_atomically(dir.as_ref(), self.files(provenance, metrics)?)
    }
}

fn reward_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// `reward.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardManifest {
    /// Always [`REWARD_FORMAT`].
    pub format: String,
    /// [`REWARD_FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Always [`REWARD_ARCHITECTURE`].
    pub architecture: String,
    /// The model's shape.
    pub model: LearnedRewardConfig,
    /// sha256 of `model.bpk`.
    pub weights_sha256: String,
    /// Where it came from.
    #[serde(default)]
    pub provenance: Provenance,
    /// Named measurements (e.g. cross-validated pair accuracy).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl Reward for LearnedReward {
    fn name(&self) -> String {
        "learned".into()
    }

    fn score(&self, _prompt: &str, response: &str) -> f64 {
        self.score_features(&self.config.features(response))
    }
}

/// 1 for a positive margin, 1/2 for a tie, 0 otherwise.
pub(super) fn tie_aware_win(margin: f32) -> f64 {
    if margin > 0.0 {
        1.0
    } else if margin == 0.0 {
        0.5
    } else {
        0.0
    }
}
