//! Rewards: one [`Reward`] trait (a batch of prompt + response pairs in, one score each out) and
//! the scorers InfAlign's experiments use.
//!
//! - [`VaderReward`]: helpfulness as the VADER compound sentiment of the response, in [-1, 1].
//! - [`RustrictReward`]: harmlessness graded from `rustrict`'s analysis, in [0, 1].
//! - [`LinearClassifierReward`]: harmlessness as `1 - p(offensive)` under a trained TF-IDF +
//!   calibrated linear SVM ensemble loaded from a text file (the `alt-profanity-check` export).
//! - [`LearnedReward`]: a bag-of-n-grams network trained Bradley-Terry on preference pairs
//!   (`infalign reward train`), loaded from its directory.
//!
//! A [`RewardSpec`] names a reward in manifests and on the command line (`vader`, `rustrict`,
//! `linear:PATH`, `learned:DIR`), and [`RewardSpec::load`] builds it.

pub mod learned;
mod lexical;
mod linear;
pub mod vader;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use learned::LearnedReward;
pub use lexical::{RustrictReward, VaderReward};
pub use linear::LinearClassifierReward;

use crate::error::{Error, Result};

/// A reward: scores responses to prompts, higher is better.
pub trait Reward {
    /// A short name for tables and logs.
    fn name(&self) -> String;

    /// Score each `(prompts[i], responses[i])` pair. The slices must have the same length.
    fn score_batch(&self, prompts: &[&str], responses: &[&str]) -> Result<Vec<f64>> {
        check_batch(prompts, responses)?;
        Ok(prompts
            .iter()
            .zip(responses)
            .map(|(prompt, response)| self.score(prompt, response))
            .collect())
    }

    /// Score one response to one prompt.
    fn score(&self, prompt: &str, response: &str) -> f64;
}

/// The error for prompt and response batches of different sizes.
pub(crate) fn check_batch(prompts: &[&str], responses: &[&str]) -> Result<()> {
    if prompts.len() == responses.len() {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "reward batch".into(),
            reason: format!(
                "{} prompts but {} responses",
                prompts.len(),
                responses.len()
            ),
        })
    }
}

/// Which reward to use, as written in manifests and on the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RewardSpec {
    /// [`VaderReward`].
    Vader,
    /// [`RustrictReward`].
    Rustrict,
    /// [`LinearClassifierReward`] loaded from `path`.
    Linear { path: PathBuf },
    /// [`LearnedReward`] read from the directory `path`.
    Learned { path: PathBuf },
}

impl RewardSpec {
    /// Build the reward (reads the model file for `linear:`).
    pub fn load(&self) -> Result<Box<dyn Reward + Send + Sync>> {
        Ok(match self {
            RewardSpec::Vader => Box::new(VaderReward::new()),
            RewardSpec::Rustrict => Box::new(RustrictReward::new()),
            RewardSpec::Linear { path } => Box::new(LinearClassifierReward::load(path)?),
            #[cfg(not(target_arch = "wasm32"))]
            RewardSpec::Learned { path } => Box::new(LearnedReward::read_dir(path)?),
            #[cfg(target_arch = "wasm32")]
            RewardSpec::Learned { path } => {
                return Err(Error::Invalid {
                    what: "reward".into(),
                    reason: format!(
                    "learned:{} reads a directory; in the browser, use LearnedReward::from_bytes",
                    path.display()
                ),
                })
            }
        })
    }
}

impl FromStr for RewardSpec {
    type Err = Error;

    fn from_str(given: &str) -> Result<Self> {
        let given = given.trim();
        match given.split_once(':') {
            None if given.eq_ignore_ascii_case("vader") => Ok(RewardSpec::Vader),
            None if given.eq_ignore_ascii_case("rustrict") => Ok(RewardSpec::Rustrict),
            Some((kind, path)) if kind.eq_ignore_ascii_case("linear") && !path.is_empty() => {
                Ok(RewardSpec::Linear { path: path.into() })
            }
            Some((kind, path)) if kind.eq_ignore_ascii_case("learned") && !path.is_empty() => {
                Ok(RewardSpec::Learned { path: path.into() })
            }
            _ => Err(Error::Invalid {
                what: "reward".into(),
                reason: format!(
                    "{given:?} is not one of `vader`, `rustrict`, `linear:PATH`, \
                     `learned:DIR` (PATH: a profanity_check_linear_model.tsv; DIR: written by \
                     `infalign reward train`)"
                ),
            }),
        }
    }
}

impl fmt::Display for RewardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewardSpec::Vader => f.write_str("vader"),
            RewardSpec::Rustrict => f.write_str("rustrict"),
            RewardSpec::Linear { path } => write!(f, "linear:{}", path.display()),
            RewardSpec::Learned { path } => write!(f, "learned:{}", path.display()),
        }
    }
}
