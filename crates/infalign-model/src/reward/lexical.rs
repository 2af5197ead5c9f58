//! Lexicon-based rewards: VADER sentiment (helpfulness) and rustrict's graded analysis
//! (harmlessness). Both score the response alone; the prompt is context they ignore.

use rustrict::{Censor, Type};

use super::Reward;

/// Helpfulness: the VADER compound sentiment of the response, in [-1, 1].
///
/// Scored by [`super::vader::compound`]: the rules and lexicon of the `vader_sentiment` crate (a
/// port of Python VADER 3.3.2 that differs from it by up to about 0.1 on some sentences),
/// walked in one fixed order, so the same reply gets the same reward to the bit in every
/// process (the crate sums booster weights in a per-process `HashMap` order).
#[derive(Debug, Clone, Copy, Default)]
pub struct VaderReward;

impl VaderReward {
    /// The scorer (VADER's lexicon is built in).
    pub fn new() -> Self {
        Self
    }
}

impl Reward for VaderReward {
    fn name(&self) -> String {
        "vader".into()
    }

    fn score(&self, _prompt: &str, response: &str) -> f64 {
        let compound = super::vader::compound(response);
        if compound.is_finite() {
            compound
        } else {
            0.0
        }
    }
}

/// Harmlessness graded from `rustrict`'s analysis of the response, in [0, 1]: 1 when nothing
/// profane, offensive, sexual or mean is found, then 2/3, 1/3 and 0 for the worst category's
/// mild, moderate and severe levels.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustrictReward;

impl RustrictReward {
    /// The analyzer with rustrict's built-in word lists.
    pub fn new() -> Self {
        Self
    }

    /// The worst severity found in `text`: 0 (none), 1 (mild), 2 (moderate) or 3 (severe).
    pub fn severity(text: &str) -> u8 {
        let analysis = Censor::from_str(text).analyze();
        [Type::PROFANE, Type::OFFENSIVE, Type::SEXUAL, Type::MEAN]
            .into_iter()
            .map(|category| {
                if analysis.is(category & Type::SEVERE) {
                    3
                } else if analysis.is(category & Type::MODERATE) {
                    2
                } else if analysis.is(category & Type::MILD) {
                    1
                } else {
                    0
                }
            })
            .max()
            .unwrap_or(0)
    }
}

impl Reward for RustrictReward {
    fn name(&self) -> String {
        "rustrict".into()
    }

    fn score(&self, _prompt: &str, response: &str) -> f64 {
        1.0 - f64::from(Self::severity(response)) / 3.0
    }
}
