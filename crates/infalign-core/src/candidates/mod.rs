//! Candidate-set CTRL: calibrate-transform-RL where each prompt's replies are a fixed list of
//! candidates, so the policy, its optimum and every win rate are exact finite sums.
//!
//! For each prompt x there are C candidate replies sampled once from the base policy pi_ref,
//! each with a raw reward, and a [`ReferenceTable`] of K further reference replies' rewards that
//! calibrates them: `u = C_K(x, y)`, the mid-rank quantile of the candidate among the references
//! (theory notes, section 2). The policy is a distribution over each prompt's C candidates, and
//! pi_ref is uniform over them (probability 1/C each, as the candidates are pi_ref's own draws).
//! That replaces the language model by a table while keeping every object of the method:
//!
//! - [`CandidatePrompt`] / [`CandidateSet`]: the data, validated (finite rewards, C >= 2, one K).
//! - [`Scoring`]: what the policy is trained on, the raw reward or `Phi(u)` for a [`Transform`].
//! - Exact optimum ([`tilt`], [`beta_for_kl`], [`exact_at_kl`]): `pi_x(y) ∝ exp(score(y) / beta)`
//!   per prompt, in log space; a common beta meets a budget on the mean KL over prompts.
//! - Exact evaluation ([`evaluate`]): KL, the standard / BoN_N / WoN_N win rates judged by the
//!   raw reward, and the calibrated KL (the theory's x-axis) per prompt and pooled.
//! - Stochastic training ([`CandidateTrainer`]): the language-model trainer's RLOO recipe on
//!   tabular logits, deterministic and resumable bit for bit; compare it with the exact optimum.
//!
//! Nothing here samples except the trainer. With C large and no ties, the identity transform at
//! beta reproduces the one-dimensional theory ([`crate::theory::evaluate`] at lambda = 1/beta).
//!
//! Errors name the prompt (its index in the set), the field and, for a reward, the candidate or
//! reference index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::calibration::ReferenceTable;
use crate::error::{invalid, Error, Result};
use crate::transform::Transform;

mod evaluate;
mod exact;
mod train;

pub use evaluate::{evaluate, level_win_rates, CandidateEvaluation, PromptEvaluation};
pub use exact::{
    beta_for_kl, exact_at_beta, exact_at_kl, exact_policy, kl_from_uniform, max_mean_kl,
    mean_kl_at_beta, tilt,
};
pub use train::{
    CandidateStepMetrics, CandidateTrainConfig, CandidateTrainer, CandidateTrainerState, Optimizer,
};

/// What the policy is trained on: the raw reward, or a transform of the calibrated reward.
///
/// Serialises as `"raw"` or `{"calibrated": <transform>}` (a transform object, or a spec string
/// such as `"exp:5"`). `FromStr` / `Display` use `raw` or the transform's own spec, unchanged:
/// `exp:5` is `e^(5u)` and `normexp:5` its normalised form (they differ by an affine map, so they
/// give the same policies at rescaled betas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// The raw reward (no calibration): the baseline.
    Raw,
    /// `Phi(max(u, 1/(4K)))`: the transform of the calibrated reward, floored like the
    /// language-model trainer so that `log u` stays finite for a candidate below every reference.
    Calibrated(Transform),
}

impl Scoring {
    /// Checks the transform's parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            Scoring::Raw => Ok(()),
            Scoring::Calibrated(transform) => transform.validate(),
        }
    }

    /// The training score of a candidate with raw reward `raw` and calibrated reward `u` among
    /// `k` reference rewards. May be infinite for a transform that overflows (`exp:T` with a
    /// very large T); [`CandidatePrompt::scores`] reports that as an error.
    pub fn score(&self, raw: f64, u: f64, k: usize) -> f64 {
        match self {
            Scoring::Raw => raw,
            Scoring::Calibrated(transform) => transform.value(u.max(calibration_floor(k))),
        }
    }
}

/// The floor 1/(4K) under calibrated rewards before a transform (half of the lowest nonzero
/// grid value 1/(2K)).
pub fn calibration_floor(k: usize) -> f64 {
    0.25 / k.max(1) as f64
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scoring::Raw => f.write_str("raw"),
            Scoring::Calibrated(transform) => transform.fmt(f),
        }
    }
}

impl FromStr for Scoring {
    type Err = Error;

    /// `raw`, or any transform spec ([`Transform`]'s `FromStr`).
    fn from_str(spec: &str) -> Result<Self> {
        if spec.trim().eq_ignore_ascii_case("raw") {
            Ok(Scoring::Raw)
        } else {
            Ok(Scoring::Calibrated(spec.parse()?))
        }
    }
}

/// One prompt: C >= 2 candidate replies' raw rewards, their calibrated rewards, and the
/// reference table that calibrates them.
///
/// Serialises as `{"raw": [..], "reference": {"rewards": [..]}}`; the calibrated rewards are
/// recomputed on load, so they cannot disagree with the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CandidatePromptRepr", into = "CandidatePromptRepr")]
pub struct CandidatePrompt {
    raw: Vec<f64>,
    calibrated: Vec<f64>,
    reference: ReferenceTable,
    /// Per candidate, the index of its raw reward among the prompt's distinct raw rewards in
    /// increasing order (equal rewards share a level).
    level: Vec<usize>,
    /// Number of distinct raw rewards.
    levels: usize,
    /// Per candidate, `2 * below + ties` against the references: u = grid / (2K).
    grid: Vec<usize>,
}

/// The serialised form of a [`CandidatePrompt`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatePromptRepr {
    raw: Vec<f64>,
    reference: ReferenceTable,
}

impl TryFrom<CandidatePromptRepr> for CandidatePrompt {
    type Error = Error;
    fn try_from(repr: CandidatePromptRepr) -> Result<Self> {
        CandidatePrompt::new(repr.raw, repr.reference)
    }
}

impl From<CandidatePrompt> for CandidatePromptRepr {
    fn from(prompt: CandidatePrompt) -> Self {
        CandidatePromptRepr {
            raw: prompt.raw,
            reference: prompt.reference,
        }
    }
}

impl CandidatePrompt {
    /// A prompt from its candidates' raw rewards (C >= 2) and its reference table.
    ///
    /// Errors: [`Error::Empty`] for no candidates, [`Error::InvalidParameter`] for a single one
    /// or for a NaN / infinite reward (naming the candidate index). [`CandidateSet`]'s
    /// constructors add the prompt index to these.
    pub fn new(raw: impl Into<Vec<f64>>, reference: ReferenceTable) -> Result<Self> {
        Self::build(raw.into(), reference, None)
    }

    /// A prompt from its candidates' raw rewards and its K reference rewards (any order).
    /// Errors as [`CandidatePrompt::new`] and [`ReferenceTable::new`].
    pub fn from_rewards(raw: impl Into<Vec<f64>>, reference: impl Into<Vec<f64>>) -> Result<Self> {
        Self::new(raw, ReferenceTable::new(reference)?)
    }

    fn build(raw: Vec<f64>, reference: ReferenceTable, prompt: Option<usize>) -> Result<Self> {
        let at = |rest: String| match prompt {
            Some(p) => format!("prompt {p}: {rest}"),
            None => rest,
        };
        if raw.is_empty() {
            return match prompt {
                None => Err(Error::Empty {
                    what: "candidate raw rewards",
                }),
                Some(_) => Err(invalid(
                    "candidate raw rewards",
                    "[]",
                    &at("a prompt needs at least 2 candidates".into()),
                )),
            };
        }
        if raw.len() < 2 {
            return Err(invalid(
                "candidate count",
                raw.len(),
                &at("a prompt needs at least 2 candidates".into()),
            ));
        }
        if let Some(index) = raw.iter().position(|r| !r.is_finite()) {
            return Err(invalid(
                "candidate raw reward",
                raw[index],
                &at(format!("candidate {index} must be a finite number")),
            ));
        }
        let k = reference.len();
        let mut grid = Vec::with_capacity(raw.len());
        let mut calibrated = Vec::with_capacity(raw.len());
        for &reward in &raw {
            let (below, ties) = reference.rank(reward);
            grid.push(2 * below + ties);
            // The same arithmetic as the table's own calibrated reward.
            calibrated.push((2 * below + ties) as f64 * (0.5 / k as f64));
        }
        let (level, levels) = levels_of(&raw);
        Ok(CandidatePrompt {
            raw,
            calibrated,
            reference,
            level,
            levels,
            grid,
        })
    }

    /// C, the number of candidates.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: a prompt holds at least two candidates.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// K, the number of reference rewards.
    pub fn k(&self) -> usize {
        self.reference.len()
    }

    /// The candidates' raw rewards.
    pub fn raw(&self) -> &[f64] {
        &self.raw
    }

    /// The candidates' calibrated rewards u = C_K(x, y), on the grid j/(2K).
    pub fn calibrated(&self) -> &[f64] {
        &self.calibrated
    }

    /// The reference table.
    pub fn reference(&self) -> &ReferenceTable {
        &self.reference
    }

    /// The training score of every candidate under `scoring`.
    ///
    /// Errors: a bad transform parameter, or a score that is not finite (naming the candidate).
    pub fn scores(&self, scoring: &Scoring) -> Result<Vec<f64>> {
        self.scores_at(scoring, None)
    }

    fn scores_at(&self, scoring: &Scoring, prompt: Option<usize>) -> Result<Vec<f64>> {
        scoring.validate()?;
        let k = self.k();
        let scores: Vec<f64> = self
            .raw
            .iter()
            .zip(&self.calibrated)
            .map(|(&raw, &u)| scoring.score(raw, u, k))
            .collect();
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            let place = match prompt {
                Some(p) => format!("prompt {p}, candidate {index}"),
                None => format!("candidate {index}"),
            };
            return Err(invalid(
                "training score",
                scores[index],
                &format!(
                    "{place} (u = {}) scores {} under `{scoring}`; use a normalised transform",
                    self.calibrated[index], scores[index]
                ),
            ));
        }
        Ok(scores)
    }
}

/// Each value's level among the distinct values in increasing order, and the number of levels.
fn levels_of(values: &[f64]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut level = vec![0; values.len()];
    let mut current = 0;
    for (position, &index) in order.iter().enumerate() {
        // `==`, not the total order: -0.0 and 0.0 are one reward.
        if position > 0 && values[index] != values[order[position - 1]] {
            current += 1;
        }
        level[index] = current;
    }
    (level, if values.is_empty() { 0 } else { current + 1 })
}

/// A set of prompts with their candidates, all calibrated against the same number K of
/// reference rewards (so that calibrated rewards pool on one grid j/(2K)). The number of
/// candidates C may differ between prompts.
///
/// Serialises as `{"prompts": [<CandidatePrompt>, ..]}`, validated on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CandidateSetRepr", into = "CandidateSetRepr")]
pub struct CandidateSet {
    prompts: Vec<CandidatePrompt>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateSetRepr {
    prompts: Vec<CandidatePromptRepr>,
}

impl TryFrom<CandidateSetRepr> for CandidateSet {
    type Error = Error;
    fn try_from(repr: CandidateSetRepr) -> Result<Self> {
        let prompts = repr
            .prompts
            .into_iter()
            .enumerate()
            .map(|(p, prompt)| CandidatePrompt::build(prompt.raw, prompt.reference, Some(p)))
            .collect::<Result<Vec<_>>>()?;
        CandidateSet::new(prompts)
    }
}

impl From<CandidateSet> for CandidateSetRepr {
    fn from(set: CandidateSet) -> Self {
        CandidateSetRepr {
            prompts: set.prompts.into_iter().map(Into::into).collect(),
        }
    }
}

impl CandidateSet {
    /// A set from prompts built by [`CandidatePrompt::new`].
    ///
    /// Errors: no prompts, or a prompt whose K differs from prompt 0's (naming it).
    pub fn new(prompts: Vec<CandidatePrompt>) -> Result<Self> {
        let Some(first) = prompts.first() else {
            return Err(Error::Empty { what: "prompts" });
        };
        let k = first.k();
        if let Some(p) = prompts.iter().position(|prompt| prompt.k() != k) {
            return Err(invalid(
                "reference rewards",
                prompts[p].k(),
                &format!(
                    "prompt {p} has this many reference rewards but prompt 0 has {k}; every \
                     prompt needs the same K"
                ),
            ));
        }
        Ok(CandidateSet { prompts })
    }

    /// A set from each prompt's candidate raw rewards and reference rewards (same order).
    ///
    /// Errors name the prompt index and the field: unequal list counts, fewer than 2
    /// candidates, a NaN or infinite reward (with its candidate or reference index), an empty
    /// reference list, or unequal K.
    pub fn from_rewards(raw: Vec<Vec<f64>>, reference: Vec<Vec<f64>>) -> Result<Self> {
        if raw.len() != reference.len() {
            return Err(invalid(
                "reference reward lists",
                reference.len(),
                &format!(
                    "there are {} candidate lists; one reference list each",
                    raw.len()
                ),
            ));
        }
        let prompts = raw
            .into_iter()
            .zip(reference)
            .enumerate()
            .map(|(p, (raw, reference))| {
                let table = ReferenceTable::new(reference).map_err(|error| match error {
                    Error::NonFinite { index, value, .. } => invalid(
                        "reference reward",
                        value,
                        &format!("prompt {p}: reference {index} must be a finite number"),
                    ),
                    Error::Empty { .. } => invalid(
                        "reference rewards",
                        "[]",
                        &format!("prompt {p}: at least one reference reward is needed"),
                    ),
                    other => other,
                })?;
                CandidatePrompt::build(raw, table, Some(p))
            })
            .collect::<Result<Vec<_>>>()?;
        CandidateSet::new(prompts)
    }

    /// The prompts.
    pub fn prompts(&self) -> &[CandidatePrompt] {
        &self.prompts
    }

    /// The number of prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Always false: a set holds at least one prompt.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// K, the number of reference rewards of every prompt.
    pub fn k(&self) -> usize {
        self.prompts.first().map_or(0, CandidatePrompt::k)
    }

    /// Every prompt's training scores under `scoring`. Errors name the prompt and candidate
    /// of a score that is not finite.
    pub fn scores(&self, scoring: &Scoring) -> Result<Vec<Vec<f64>>> {
        self.prompts
            .iter()
            .enumerate()
            .map(|(p, prompt)| prompt.scores_at(scoring, Some(p)))
            .collect()
    }

    /// pi_ref: probability 1/C on each candidate of each prompt.
    pub fn uniform_policy(&self) -> Vec<Vec<f64>> {
        self.prompts
            .iter()
            .map(|prompt| vec![1.0 / prompt.len() as f64; prompt.len()])
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A set whose prompts all have the candidates' raw rewards `raw` and references `reference`
    /// (shifted per prompt, which calibration ignores).
    pub(crate) fn repeated_set(raw: &[f64], reference: &[f64], prompts: usize) -> CandidateSet {
        let shift = |values: &[f64], p: usize| values.iter().map(|v| v + 10.0 * p as f64).collect();
        CandidateSet::from_rewards(
            (0..prompts).map(|p| shift(raw, p)).collect(),
            (0..prompts).map(|p| shift(reference, p)).collect(),
        )
        .unwrap()
    }

    #[test]
    fn calibration_matches_the_reference_table() {
        let reference = ReferenceTable::new(vec![0.0, 1.0, 1.0, 2.0]).unwrap();
        let raw = vec![-1.0, 0.0, 1.0, 1.5, 2.0, 3.0, 1.0];
        let prompt = CandidatePrompt::new(raw.clone(), reference.clone()).unwrap();
        for (i, &r) in raw.iter().enumerate() {
            assert_eq!(
                prompt.calibrated()[i],
                reference.calibrated_reward(r).unwrap()
            );
        }
        assert_eq!(prompt.calibrated()[2], 0.5);
        assert_eq!(prompt.grid, vec![0, 1, 4, 6, 7, 8, 4]);
        // Levels of the raw rewards: -1 < 0 < 1 = 1 < 1.5 < 2 < 3.
        assert_eq!(prompt.level, vec![0, 1, 2, 3, 4, 5, 2]);
        assert_eq!(prompt.levels, 6);
        assert_eq!((prompt.len(), prompt.k()), (7, 4));
    }

    #[test]
    fn scores_floor_u_and_reject_overflow() {
        let prompt = CandidatePrompt::from_rewards(vec![-5.0, 0.5, 5.0], vec![0.0, 1.0]).unwrap();
        assert_eq!(prompt.calibrated(), &[0.0, 0.5, 1.0]);
        assert_eq!(prompt.scores(&Scoring::Raw).unwrap(), vec![-5.0, 0.5, 5.0]);
        let log = prompt.scores(&"log".parse().unwrap()).unwrap();
        // u = 0 is floored at 1/(4K) = 1/8.
        assert_eq!(log, vec![(0.125f64).ln(), (0.5f64).ln(), 0.0]);
        let exp = prompt.scores(&"exp:2".parse().unwrap()).unwrap();
        assert!((exp[2] - 2f64.exp()).abs() < 1e-15);
        let err = prompt.scores(&"exp:1000".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("candidate 2"), "{err}");
        let set = CandidateSet::new(vec![prompt.clone(), prompt]).unwrap();
        let err = set.scores(&"exp:1000".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("prompt 0, candidate 2"), "{err}");
    }

    #[test]
    fn scoring_specs_read_back() {
        for spec in ["raw", "identity", "log", "exp:5", "normexp:5", "negexp:2"] {
            let scoring: Scoring = spec.parse().unwrap();
            assert_eq!(scoring.to_string(), spec);
        }
        assert_eq!(
            "exp:5".parse::<Scoring>().unwrap(),
            Scoring::Calibrated(Transform::Exp { t: 5.0 })
        );
        assert!("exp:-1".parse::<Scoring>().is_err());
        let json = serde_json::to_string(&Scoring::Raw).unwrap();
        assert_eq!(json, r#""raw""#);
        let back: Scoring = serde_json::from_str(r#"{"calibrated":"normexp:3"}"#).unwrap();
        assert_eq!(back, Scoring::Calibrated(Transform::NormExp { t: 3.0 }));
    }

    #[test]
    fn bad_input_names_the_prompt_and_field() {
        let good = vec![0.0, 1.0];
        let err = CandidateSet::from_rewards(
            vec![good.clone(), vec![0.0, 1.0, 2.0, f64::NAN]],
            vec![good.clone(), good.clone()],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("candidate raw reward") && text.contains("prompt 1: candidate 3"),
            "{text}"
        );
        let err = CandidateSet::from_rewards(
            vec![good.clone(), good.clone()],
            vec![good.clone(), vec![0.0, f64::INFINITY]],
        )
        .unwrap_err();
        assert!(err.to_string().contains("prompt 1: reference 1"), "{err}");
        let err = CandidateSet::from_rewards(vec![good.clone(), vec![]], vec![good.clone(); 2])
            .unwrap_err();
        assert!(
            err.to_string().contains("prompt 1") && err.to_string().contains("candidate"),
            "{err}"
        );
        let err = CandidateSet::from_rewards(vec![good.clone(), vec![3.0]], vec![good.clone(); 2])
            .unwrap_err();
        assert!(err.to_string().contains("prompt 1"), "{err}");
        let err = CandidateSet::from_rewards(vec![good.clone(); 2], vec![good.clone(), vec![]])
            .unwrap_err();
        assert!(err.to_string().contains("prompt 1"), "{err}");
        let err =
            CandidateSet::from_rewards(vec![good.clone(); 2], vec![good.clone(); 3]).unwrap_err();
        assert!(err.to_string().contains("reference reward lists"), "{err}");
        let err = CandidateSet::from_rewards(
            vec![good.clone(); 2],
            vec![good.clone(), vec![0.0, 1.0, 2.0]],
        )
        .unwrap_err();
        assert!(err.to_string().contains("prompt 1"), "{err}");
        assert!(matches!(
            CandidateSet::new(vec![]),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            CandidatePrompt::from_rewards(vec![], good.clone()),
            Err(Error::Empty { .. })
        ));
        assert!(
            CandidatePrompt::from_rewards(vec![f64::NAN, 0.0], good.clone())
                .unwrap_err()
                .to_string()
                .contains("candidate 0")
        );
    }

    #[test]
    fn serde_round_trip_recomputes_calibration() {
        let set = repeated_set(&[0.0, 2.0, 1.0], &[0.5, 1.5], 2);
        let json = serde_json::to_string(&set).unwrap();
        assert!(!json.contains("calibrated"), "{json}");
        let back: CandidateSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        let bad = r#"{"prompts":[{"raw":[0.0,1.0],"reference":{"rewards":[0.0]}},
                                  {"raw":[0.0],"reference":{"rewards":[0.0]}}]}"#;
        let err = serde_json::from_str::<CandidateSet>(bad).unwrap_err();
        assert!(err.to_string().contains("prompt 1"), "{err}");
    }
}
