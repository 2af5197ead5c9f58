//! A trained linear offensive-language classifier, loaded from its text export: TF-IDF features
//! and an ensemble of sigmoid-calibrated linear SVMs (the model of `alt-profanity-check`).
//!
//! File format (tab-separated, UTF-8):
//!
//! ```text
//! # free comment lines
//! #fold  0  intercept  <f64>  a  <f64>  b  <f64>      one line per ensemble member k
//! token  idf  w0  w1 ...                              header: one weight column per fold
//! <token>  <idf>  <w0>  <w1> ...                      one line per vocabulary token
//! ```
//!
//! Scoring, as in scikit-learn's `TfidfVectorizer` (lowercase, tokens `\b\w\w+\b`, l2 norm) and
//! `CalibratedClassifierCV(method="sigmoid")`: `x` = l2-normalised `count * idf` over vocabulary
//! tokens, `score_k = w_k . x + intercept_k`, `p_k = 1 / (1 + exp(a_k score_k + b_k))`,
//! `p(offensive) = mean_k p_k`. The reward is `1 - p(offensive)`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use regex::Regex;

use super::Reward;
use crate::error::{Error, Result};

/// One calibrated member of the ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fold {
    intercept: f64,
    a: f64,
    b: f64,
}

/// Harmlessness as `1 - p(offensive)` under a TF-IDF + calibrated linear SVM ensemble.
#[derive(Debug, Clone)]
pub struct LinearClassifierReward {
    vocabulary: HashMap<String, usize>,
    idf: Vec<f64>,
    /// Row-major `[token][fold]`.
    weights: Vec<f64>,
    folds: Vec<Fold>,
    token_pattern: Regex,
}

impl LinearClassifierReward {
    /// Load the model from a file in the format described in the module documentation.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| Error::io(path, error))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse the model from its text; `origin` names the input in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let record = |line: usize, reason: String| Error::Record {
            origin: origin.to_string(),
            line,
            reason,
        };
        let number = |line: usize, field: &str, value: &str| -> Result<f64> {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| record(line, format!("{field} {value:?} is not a finite number")))
        };

        let mut folds: Vec<Fold> = Vec::new();
        let mut header_seen = false;
        let mut vocabulary = HashMap::new();
        let mut idf = Vec::new();
        let mut weights = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if let Some(tag) = fields[0].strip_prefix('#') {
                if tag != "fold" {
                    continue;
                }
                if header_seen {
                    return Err(record(line_no, "a #fold line after the header".into()));
                }
                if fields.len() != 8
                    || fields[2] != "intercept"
                    || fields[4] != "a"
                    || fields[6] != "b"
                {
                    return Err(record(
                        line_no,
                        "expected `#fold<TAB>k<TAB>intercept<TAB>v<TAB>a<TAB>v<TAB>b<TAB>v`".into(),
                    ));
                }
                if fields[1].trim() != folds.len().to_string() {
                    return Err(record(
                        line_no,
                        format!(
                            "fold {:?} out of order: expected {}",
                            fields[1],
                            folds.len()
                        ),
                    ));
                }
                folds.push(Fold {
                    intercept: number(line_no, "intercept", fields[3])?,
                    a: number(line_no, "a", fields[5])?,
                    b: number(line_no, "b", fields[7])?,
                });
                continue;
            }
            if !header_seen {
                let expected: Vec<String> = ["token".to_string(), "idf".to_string()]
                    .into_iter()
                    .chain((0..folds.len()).map(|k| format!("w{k}")))
                    .collect();
                if folds.is_empty() || fields != expected {
                    return Err(record(
                        line_no,
                        format!(
                            "expected the header `{}` after {} #fold line(s)",
                            expected.join(" "),
                            folds.len()
                        ),
                    ));
                }
                header_seen = true;
                continue;
            }
            if fields.len() != 2 + folds.len() {
                return Err(record(
                    line_no,
                    format!(
                        "expected {} tab-separated fields (token, idf, {} weights), found {}",
                        2 + folds.len(),
                        folds.len(),
                        fields.len()
                    ),
                ));
            }
            let token = fields[0];
            if token.is_empty() {
                return Err(record(line_no, "empty token".into()));
            }
            if vocabulary.insert(token.to_string(), idf.len()).is_some() {
                return Err(record(line_no, format!("token {token:?} appears twice")));
            }
            idf.push(number(line_no, "idf", fields[1])?);
            for (k, value) in fields[2..].iter().enumerate() {
                weights.push(number(line_no, &format!("w{k}"), value)?);
            }
        }
        if !header_seen || idf.is_empty() {
            return Err(Error::Parse {
                origin: origin.to_string(),
                reason: "no vocabulary: expected #fold lines, a `token idf w0 ...` header and \
                         one line per token"
                    .into(),
            });
        }
        Ok(Self {
            vocabulary,
            idf,
            weights,
            folds,
            token_pattern: Regex::new(r"\b\w\w+\b").expect("a valid, constant pattern"),
        })
    }

    /// Number of vocabulary tokens.
    pub fn vocabulary_size(&self) -> usize {
        self.idf.len()
    }

    /// Number of ensemble members.
    pub fn folds(&self) -> usize {
        self.folds.len()
    }

    /// The probability that `text` is offensive, in [0, 1].
    pub fn p_offensive(&self, text: &str) -> f64 {
        let lowered = text.to_lowercase();
        // Ordered by vocabulary index, so the sums below are reproducible to the last bit.
        let mut counts: BTreeMap<usize, f64> = BTreeMap::new();
        for token in self.token_pattern.find_iter(&lowered) {
            if let Some(&index) = self.vocabulary.get(token.as_str()) {
                *counts.entry(index).or_insert(0.0) += 1.0;
            }
        }
        let features: Vec<(usize, f64)> = counts
            .into_iter()
            .map(|(index, count)| (index, count * self.idf[index]))
            .collect();
        let norm = features.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
        let k = self.folds.len();
        let total: f64 = self
            .folds
            .iter()
            .enumerate()
            .map(|(fold_index, fold)| {
                let dot: f64 = if norm > 0.0 {
                    features
                        .iter()
                        .map(|&(index, x)| self.weights[index * k + fold_index] * x / norm)
                        .sum()
                } else {
                    0.0
                };
                let score = dot + fold.intercept;
                1.0 / (1.0 + (fold.a * score + fold.b).exp())
            })
            .sum();
        total / k as f64
    }
}

impl Reward for LinearClassifierReward {
    fn name(&self) -> String {
        "linear".into()
    }

    fn score(&self, _prompt: &str, response: &str) -> f64 {
        1.0 - self.p_offensive(response)
    }
}
