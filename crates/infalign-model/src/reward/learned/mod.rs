//! A learned reward model, trained Bradley-Terry on preference pairs.
//!
//! The response is read as a bag of hashed n-grams (words, optionally word pairs and the 2- to
//! 5-character pieces of each word, each hashed into one of `buckets` rows), each n-gram counts
//! once and has a learned `dim`-vector, the vectors are summed and divided by `sqrt(n)`, and a
//! small network (one ReLU layer of `hidden` units, or none) maps the result to a score.
//! Training minimises `-log sigmoid(r(chosen) - r(rejected))` plus an L2 penalty with AdamW; with
//! `dim = 1`, no hidden layer and words only, the model is logistic regression on the bag of
//! words, the usual baseline.
//!
//! The prompt is not read: in a pair both answers share it, so in a Bradley-Terry model any term
//! of the prompt alone cancels.
//!
//! Scoring runs on the host from the trained weights (no device, no async), so the reward works
//! the same natively and in the browser. On disk a reward model is a directory with
//! `reward.json` (the [`RewardManifest`]) and `model.bpk` (burnpack weights).
//!
//! - [`features`]: the n-gram features of a reply, the model's shape.
//! - [`model`]: the network, the host-side scorer and its files.
//! - [`train`]: Bradley-Terry training and the folds of a cross-validation.

pub mod features;
pub mod model;
pub mod train;

pub use features::{encode_pairs, EncodedPair, LearnedRewardConfig};
pub use model::{LearnedReward, RewardManifest, RewardNet};
#[cfg(not(target_arch = "wasm32"))]
pub use train::train_bradley_terry;
pub use train::{prompt_folds, BradleyTerryConfig, EpochReport};

/// `format` of a reward manifest.
pub const REWARD_FORMAT: &str = "infalign-reward";
/// The newest reward format version this build reads and the one it writes.
pub const REWARD_FORMAT_VERSION: u32 = 1;
/// The architecture described in the module documentation.
pub const REWARD_ARCHITECTURE: &str = "hashed-ngram-bag";
/// The manifest's file name in a reward directory.
pub const REWARD_MANIFEST_FILE: &str = "reward.json";
/// The weights' file name in a reward directory.
pub const REWARD_WEIGHTS_FILE: &str = "model.bpk";
