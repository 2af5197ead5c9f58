//! What a learned reward model reads of a reply: hashed words, word pairs and word pieces.

use regex::Regex;

use crate::data::PreferencePair;
use crate::error::{Error, Result};

/// The shape of a learned reward model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedRewardConfig {
    /// Rows of the n-gram table (n-grams are hashed into them).
    pub buckets: usize,
    /// Whether word pairs count as well as single words.
    pub bigrams: bool,
    /// Whether the 2- to 5-character pieces of each word (padded with a space at both ends)
    /// count too: they share evidence between forms of a word and survive misspellings.
    #[serde(default)]
    pub chars: bool,
    /// Width of an n-gram's vector.
    pub dim: usize,
    /// ReLU units between the pooled vector and the score (0: none, a linear model).
    pub hidden: usize,
}

impl LearnedRewardConfig {
    /// Check the shape; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, value: usize, low: usize, high: usize| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(Error::Invalid {
                    what: format!("reward model setting `{field}`"),
                    reason: format!("{value} is outside {low}..={high}"),
                })
            }
        };
        check("buckets", self.buckets, 1, 1 << 24)?;
        check("dim", self.dim, 1, 1024)?;
        check("hidden", self.hidden, 0, 4096)?;
        if self.buckets * self.dim > 1 << 26 {
            return Err(Error::Invalid {
                what: "reward model setting `buckets`".into(),
                reason: format!(
                    "{} buckets of {} values is more than 2^26 weights",
                    self.buckets, self.dim
                ),
            });
        }
        Ok(())
    }

    /// The n-gram ids of `text`: sorted, without repeats (each n-gram counts once).
    pub fn features(&self, text: &str) -> Vec<u32> {
        let words = words(text);
        let mut ids: Vec<u32> = words
            .iter()
            .map(|word| self.bucket(&[b"1", word.as_bytes()]))
            .collect();
        if self.bigrams {
            ids.extend(
                words
                    .windows(2)
                    .map(|pair| self.bucket(&[b"2", pair[0].as_bytes(), b" ", pair[1].as_bytes()])),
            );
        }
        if self.chars {
            for word in &words {
                let padded: Vec<char> = std::iter::once(' ')
                    .chain(word.chars())
                    .chain(std::iter::once(' '))
                    .collect();
                for n in 2..=5.min(padded.len()) {
                    for piece in padded.windows(n) {
                        let piece: String = piece.iter().collect();
                        ids.push(self.bucket(&[b"c", piece.as_bytes()]));
                    }
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn bucket(&self, parts: &[&[u8]]) -> u32 {
        let hash = infalign_core::seed::fnv1a64(parts.iter().flat_map(|part| part.iter().copied()));
        (hash % self.buckets as u64) as u32
    }
}

/// Lower-cased words (letters, digits, apostrophes) and single punctuation marks.
fn words(text: &str) -> Vec<String> {
    static PATTERN: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        Regex::new(r"[\p{L}\p{N}']+|[^\s\p{L}\p{N}']").expect("the word pattern is valid")
    });
    pattern
        .find_iter(&text.to_lowercase())
        .map(|found| found.as_str().to_string())
        .collect()
}

/// A preference pair as n-gram ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Features of the preferred answer.
    pub chosen: Vec<u32>,
    /// Features of the dispreferred answer.
    pub rejected: Vec<u32>,
}

/// The features of each pair's answers under `config`.
pub fn encode_pairs(config: &LearnedRewardConfig, pairs: &[PreferencePair]) -> Vec<EncodedPair> {
    pairs
        .iter()
        .map(|pair| EncodedPair {
            chosen: config.features(&pair.chosen),
            rejected: config.features(&pair.rejected),
        })
        .collect()
}
