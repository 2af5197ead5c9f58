//! Evaluation on held-out prompts (theory notes, section 7): M responses per prompt from pi and
//! from pi_ref, the standard, BoN_N and WoN_N win rates of pi against pi_ref by the exact
//! U-statistic over all N-subsets, the KL estimate from pi's samples, and bootstrap confidence
//! intervals over prompts.
//!
//! The reference side's samples of a prompt depend only on the seed and the prompt, so every
//! policy evaluated with the same seed meets the same reference responses (common random
//! numbers: differences between methods are less noisy than the methods' own intervals).

use serde::{Deserialize, Serialize};

use infalign_core::estimators::{
    bootstrap_mean, calibrated_kl, kl_k1, kl_k3, per_prompt_calibrated_kl, procedure_win_rate,
    ConfidenceInterval, PER_PROMPT_KL_CELLS,
};
use infalign_core::Procedure;

use infalign_core::seed::{derive_seed, text_key, Stream};
use infalign_core::ReferenceTable;

use super::{reference_table, rollout, score, sequence_logprobs, Decoding};
use crate::error::{Error, Result, Settings};
use crate::policy::Policy;
use crate::reward::Reward;
use crate::tokenizer::DialogueTokenizer;

/// How an evaluation samples and summarises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Responses per prompt on each side (M >= every N).
    pub samples: usize,
    /// The N of the BoN_N and WoN_N win rates.
    pub ns: Vec<u32>,
    /// How both sides sample; absent when the replies were sampled and scored elsewhere
    /// (`infalign eval --scored`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding: Option<Decoding>,
    /// Seed of the samplers and of the bootstrap.
    pub seed: u64,
    /// Bootstrap resamples over prompts.
    pub resamples: usize,
    /// Confidence level of the intervals.
    pub level: f64,
}

impl EvalSettings {
    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let settings = Settings::new("evaluation setting");
        let invalid = |field: &str, reason: String| settings.fail(field, reason);
        if self.samples < 2 {
            return invalid("samples", format!("{}; need at least 2", self.samples));
        }
        if let Some(&n) = self
            .ns
            .iter()
            .find(|&&n| n == 0 || n as usize > self.samples)
        {
            return invalid(
                "ns",
                format!(
                    "N = {n} is outside 1..={} (the samples per prompt)",
                    self.samples
                ),
            );
        }
        if self.resamples < 2 {
            return invalid("resamples", format!("{}; need at least 2", self.resamples));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return invalid("level", format!("{} is not in (0, 1)", self.level));
        }
        match &self.decoding {
            Some(decoding) => decoding.validate(true),
            None => Ok(()),
        }
    }
}

/// An evaluation of a policy against the base policy: `eval.json` as `infalign eval` writes it,
/// and the record a bundle keeps for each evaluated variant (the same type, so a figure read
/// from either means the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The held-out prompts, in words (usually the file they came from).
    #[serde(default)]
    pub prompts: String,
    /// How it sampled and summarised.
    pub settings: EvalSettings,
    /// Win rates, KL and rewards with their intervals.
    pub report: EvalReport,
    /// The evaluated policy's name in its bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The bundle it came from, as given to `infalign eval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// A label for plots and tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The reward it was judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<crate::reward::RewardSpec>,
}

impl Evaluation {
    /// The KL the theory's curves are about, and which one it is: the calibrated rewards'
    /// when the evaluation measured it, else the policy's.
    pub fn theory_kl(&self) -> (f64, &'static str) {
        match &self.report.calibrated_kl {
            Some(calibrated) => (calibrated.estimate, "calibrated KL"),
            None => (self.report.kl.estimate, "KL"),
        }
    }
}

/// One prompt's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSamples {
    /// Rewards of pi's responses.
    pub policy_rewards: Vec<f64>,
    /// Rewards of pi_ref's responses.
    pub reference_rewards: Vec<f64>,
    /// `log pi(y|x) - log pi_ref(y|x)` of pi's responses.
    pub log_ratios: Vec<f64>,
}

/// Draw and score `settings.samples` responses per prompt from `policy` and from `reference`.
/// `progress(done, total)` is called after each prompt.
pub async fn sample_prompts(
    policy: &Policy,
    reference: &Policy,
    tokenizer: &DialogueTokenizer,
    reward: &dyn Reward,
    prompts: &[String],
    settings: &EvalSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<PromptSamples>> {
    settings.validate()?;
    let decoding = settings.decoding.as_ref().ok_or_else(|| Error::Invalid {
        what: "evaluation setting `decoding`".into(),
        reason: "missing: sampling needs to know how to decode".into(),
    })?;
    let m = settings.samples;
    let mut out = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        let messages = vec![prompt.as_str(); m];
        let key = text_key(prompt);
        let ours = rollout(
            policy,
            tokenizer,
            &messages,
            decoding,
            derive_seed(settings.seed, Stream::EvalPolicy, key),
        )
        .await?;
        // The reference side is the prompt's reference table (the one every command and the
        // lab draw), so its rewards also calibrate the policy's replies.
        let theirs = reference_table(
            reference,
            tokenizer,
            prompt,
            reward,
            m,
            decoding,
            settings.seed,
            async |_| {},
        )
        .await?;
        let logp = sequence_logprobs(policy, &ours, m).await?;
        let logp_ref = sequence_logprobs(reference, &ours, m).await?;
        out.push(PromptSamples {
            policy_rewards: score(reward, &messages, &ours.texts)?,
            reference_rewards: theirs.rewards().to_vec(),
            log_ratios: logp.iter().zip(&logp_ref).map(|(a, b)| a - b).collect(),
        });
        progress(index + 1, prompts.len());
    }
    Ok(out)
}

/// Rollouts sampled and scored elsewhere, what `infalign eval --scored` reads: JSON Lines, one
/// prompt per line, `{"prompt": "...", "policy_rewards": [...], "reference_rewards": [...],
/// "log_ratios": [...]}`, where `log_ratios[i]` is `log pi(y_i|x) - log pi_ref(y_i|x)` of the
/// policy's reply i (other fields are ignored).
pub const SCORED_FORMAT: &str = "infalign scored rollouts (JSON Lines), version 1";

#[derive(Debug, Deserialize)]
struct ScoredLine {
    prompt: String,
    policy_rewards: Vec<f64>,
    reference_rewards: Vec<f64>,
    log_ratios: Vec<f64>,
}

/// Parse rollouts in the [`SCORED_FORMAT`]: the prompts and their samples, in order. An error
/// names `origin` and the line (a missing field, a non-finite number, a count that does not
/// match, a repeated prompt).
pub fn parse_scored(text: &str, origin: &str) -> Result<(Vec<String>, Vec<PromptSamples>)> {
    let parsed = super::prompts::parse_per_prompt_lines(
        text,
        origin,
        r#"{"prompt", "policy_rewards", "reference_rewards", "log_ratios"}"#,
        |line: &ScoredLine| &line.prompt,
        |line, fail| {
            for (field, values) in [
                ("policy_rewards", &line.policy_rewards),
                ("reference_rewards", &line.reference_rewards),
                ("log_ratios", &line.log_ratios),
            ] {
                if values.len() < 2 {
                    return Err(fail(format!(
                        "{field} has {} values; need at least 2",
                        values.len()
                    )));
                }
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(fail(format!("{field} holds {bad}")));
                }
            }
            if line.log_ratios.len() != line.policy_rewards.len() {
                return Err(fail(format!(
                    "{} log_ratios for {} policy_rewards (one per policy reply)",
                    line.log_ratios.len(),
                    line.policy_rewards.len()
                )));
            }
            let samples = PromptSamples {
                policy_rewards: line.policy_rewards,
                reference_rewards: line.reference_rewards,
                log_ratios: line.log_ratios,
            };
            Ok((line.prompt, samples))
        },
    )?;
    Ok(parsed.into_iter().unzip())
}

/// The per-reply file every evaluation writes beside `eval.json`, so that anyone can recompute
/// its win rates and KL (`scripts/recompute_results.py`): gzip'd CSV, one row per reply.
pub const REPLIES_FILE: &str = "replies.csv.gz";
/// The columns of [`REPLIES_FILE`]: the prompt's index in the evaluation, `policy` or
/// `reference`, the reply's index on its side, its raw reward, its calibrated reward (mid-rank
/// among the prompt's reference rewards) and, for policy replies, `log pi(y|x) - log pi_ref(y|x)`
/// (empty for reference replies). Numbers are written so that they read back to the same f64.
pub const REPLIES_HEADER: &str =
    "prompt_index,side,reply_index,raw_reward,calibrated_reward,log_ratio";

/// The text of [`REPLIES_FILE`] (before gzip) for `samples`.
pub fn replies_csv(samples: &[PromptSamples]) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::from(REPLIES_HEADER);
    out.push('\n');
    for (prompt, sample) in samples.iter().enumerate() {
        let table = ReferenceTable::new(sample.reference_rewards.clone())?;
        for (index, &reward) in sample.policy_rewards.iter().enumerate() {
            let ratio = sample.log_ratios.get(index).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "{prompt},policy,{index},{reward:?},{:?},{ratio:?}",
                table.calibrated_reward(reward)?
            );
        }
        for (index, &reward) in sample.reference_rewards.iter().enumerate() {
            let _ = writeln!(
                out,
                "{prompt},reference,{index},{reward:?},{:?},",
                table.calibrated_reward(reward)?
            );
        }
    }
    Ok(out)
}

/// A win rate under one procedure and N.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcedureWinRate {
    /// `bon` or `won`.
    pub procedure: Procedure,
    /// N.
    pub n: u32,
    /// W(T(pi) > T(pi_ref)), averaged over prompts, with its interval.
    pub win_rate: ConfidenceInterval,
}

/// The summary of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Prompts evaluated.
    pub prompts: usize,
    /// Responses per prompt and side.
    pub samples: usize,
    /// KL(pi || pi_ref) per prompt by the k1 estimator (mean log ratio), averaged over prompts.
    pub kl: ConfidenceInterval,
    /// The same by the k3 estimator (lower variance, never negative per sample).
    pub kl_k3: ConfidenceInterval,
    /// W(pi > pi_ref): plain sampling on both sides.
    pub standard: ConfidenceInterval,
    /// BoN_N and WoN_N win rates for each N.
    pub procedures: Vec<ProcedureWinRate>,
    /// KL(p || Uniform) of the distribution of pi's calibrated rewards (their ranks among the
    /// reference responses): the KL the theory engine's win-rate curves are drawn against, i.e.
    /// the part of the policy's KL that moved what the reward sees
    /// ([`infalign_core::estimators::calibrated_kl`]). Absent from evaluations written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_kl: Option<ConfidenceInterval>,
    /// The same KL per prompt, averaged over prompts: the theory's axis (pooling understates
    /// it; [`infalign_core::estimators::per_prompt_calibrated_kl`]). Absent from evaluations
    /// written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_kl_per_prompt: Option<ConfidenceInterval>,
    /// Mean raw reward of pi's responses.
    pub policy_reward: ConfidenceInterval,
    /// Mean raw reward of pi_ref's responses.
    pub reference_reward: ConfidenceInterval,
}

impl EvalReport {
    /// The win rate under `procedure` with `n`, when evaluated.
    pub fn win_rate(&self, procedure: Procedure, n: u32) -> Option<ConfidenceInterval> {
        self.procedures
            .iter()
            .find(|p| p.procedure == procedure && p.n == n)
            .map(|p| p.win_rate)
    }
}

/// Each prompt's win rate of pi against pi_ref under `procedure` with `n` (`BestOfN` with n = 1
/// is plain sampling).
pub fn per_prompt_win_rates(
    samples: &[PromptSamples],
    procedure: Procedure,
    n: usize,
) -> Result<Vec<f64>> {
    Ok(samples
        .iter()
        .map(|s| procedure_win_rate(procedure, n, &s.policy_rewards, &s.reference_rewards))
        .collect::<infalign_core::Result<Vec<f64>>>()?)
}

/// The difference in win rate (under `procedure` with `n`) of policy A over policy B, both
/// evaluated against pi_ref with the same settings: the mean over prompts of A's win rate minus
/// B's, with a paired bootstrap interval over prompts. Pairing removes the prompts' and the
/// reference samples' share of the noise, so it is much tighter than comparing the two
/// policies' own intervals. Both must have met the same prompts and reference responses (same
/// prompt set and seed); otherwise it is an error.
pub fn paired_difference(
    a: &[PromptSamples],
    b: &[PromptSamples],
    procedure: Procedure,
    n: usize,
    settings: &EvalSettings,
    stream: u64,
) -> Result<ConfidenceInterval> {
    check_paired(a, b)?;
    let rates_a = per_prompt_win_rates(a, procedure, n)?;
    let rates_b = per_prompt_win_rates(b, procedure, n)?;
    let differences: Vec<f64> = rates_a.iter().zip(&rates_b).map(|(x, y)| x - y).collect();
    paired_mean(&differences, settings, stream)
}

/// That two evaluations can be paired: the same prompts, each with the same reference rewards
/// to the bit. Every reward scores the same reply the same in every process (VADER included,
/// `reward::vader`), so the same prompts and seed give the same references.
pub fn check_paired(a: &[PromptSamples], b: &[PromptSamples]) -> Result<()> {
    let unpaired = |reason: String| Error::Invalid {
        what: "paired comparison".into(),
        reason,
    };
    if a.len() != b.len() {
        return Err(unpaired(format!(
            "the evaluations cover {} and {} prompts",
            a.len(),
            b.len()
        )));
    }
    let same = |x: &[f64], y: &[f64]| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
    };
    match a
        .iter()
        .zip(b)
        .position(|(x, y)| !same(&x.reference_rewards, &y.reference_rewards))
    {
        Some(index) => Err(unpaired(format!(
            "prompt {index} met different reference responses (different prompts or seeds)"
        ))),
        None => Ok(()),
    }
}

/// The mean of per-prompt differences between two paired evaluations ([`check_paired`]) with
/// its bootstrap interval over prompts (the paired-bootstrap stream `stream`).
pub fn paired_mean(
    differences: &[f64],
    settings: &EvalSettings,
    stream: u64,
) -> Result<ConfidenceInterval> {
    Ok(bootstrap_mean(
        differences,
        settings.level,
        settings.resamples,
        derive_seed(settings.seed, Stream::PairedBootstrap, stream),
    )?)
}

/// Each prompt's (policy rewards, reference rewards), as the calibrated-KL estimators take them.
fn reward_views(samples: &[PromptSamples]) -> Vec<(&[f64], &[f64])> {
    samples
        .iter()
        .map(|s| (s.policy_rewards.as_slice(), s.reference_rewards.as_slice()))
        .collect()
}

/// [`EvalReport::calibrated_kl`] of per-prompt samples.
pub fn calibrated_kl_of(
    samples: &[PromptSamples],
    settings: &EvalSettings,
) -> Result<ConfidenceInterval> {
    Ok(calibrated_kl(
        &reward_views(samples),
        settings.level,
        settings.resamples,
        derive_seed(settings.seed, Stream::Bootstrap, 20),
    )?)
}

/// [`EvalReport::calibrated_kl_per_prompt`] of per-prompt samples.
pub fn per_prompt_calibrated_kl_of(
    samples: &[PromptSamples],
    settings: &EvalSettings,
) -> Result<ConfidenceInterval> {
    Ok(per_prompt_calibrated_kl(
        &reward_views(samples),
        PER_PROMPT_KL_CELLS,
        settings.level,
        settings.resamples,
        derive_seed(settings.seed, Stream::Bootstrap, 21),
    )?)
}

/// Win rates, KL and rewards with bootstrap intervals over prompts.
pub fn summarise(samples: &[PromptSamples], settings: &EvalSettings) -> Result<EvalReport> {
    settings.validate()?;
    if samples.is_empty() {
        return Err(Error::Invalid {
            what: "evaluation".into(),
            reason: "no prompts".into(),
        });
    }
    let interval = |values: Vec<f64>, stream: u64| {
        bootstrap_mean(
            &values,
            settings.level,
            settings.resamples,
            derive_seed(settings.seed, Stream::Bootstrap, stream),
        )
    };
    let per_prompt = |f: &dyn Fn(&PromptSamples) -> infalign_core::Result<f64>| {
        samples
            .iter()
            .map(f)
            .collect::<infalign_core::Result<Vec<f64>>>()
    };
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let kl = per_prompt(&|s| kl_k1(&s.log_ratios).map(|e| e.mean))?;
    let kl_k3 = per_prompt(&|s| kl_k3(&s.log_ratios).map(|e| e.mean))?;
    let standard = per_prompt(&|s| {
        procedure_win_rate(
            Procedure::BestOfN,
            1,
            &s.policy_rewards,
            &s.reference_rewards,
        )
    })?;
    let mut procedures = Vec::new();
    for (index, &n) in settings.ns.iter().enumerate() {
        for procedure in [Procedure::BestOfN, Procedure::WorstOfN] {
            let rates = per_prompt(&|s| {
                procedure_win_rate(
                    procedure,
                    n as usize,
                    &s.policy_rewards,
                    &s.reference_rewards,
                )
            })?;
            procedures.push(ProcedureWinRate {
                procedure,
                n,
                win_rate: interval(
                    rates,
                    10 + 2 * index as u64 + (procedure == Procedure::WorstOfN) as u64,
                )?,
            });
        }
    }
    Ok(EvalReport {
        prompts: samples.len(),
        samples: settings.samples,
        kl: interval(kl, 1)?,
        kl_k3: interval(kl_k3, 2)?,
        standard: interval(standard, 3)?,
        procedures,
        calibrated_kl: Some(calibrated_kl_of(samples, settings)?),
        calibrated_kl_per_prompt: Some(per_prompt_calibrated_kl_of(samples, settings)?),
        policy_reward: interval(samples.iter().map(|s| mean(&s.policy_rewards)).collect(), 4)?,
        reference_reward: interval(
            samples.iter().map(|s| mean(&s.reference_rewards)).collect(),
            5,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(policy: &[f64], reference: &[f64]) -> PromptSamples {
        PromptSamples {
            policy_rewards: policy.to_vec(),
            reference_rewards: reference.to_vec(),
            log_ratios: vec![0.0; policy.len()],
        }
    }

    fn settings() -> EvalSettings {
        EvalSettings {
            samples: 4,
            ns: vec![2],
            decoding: Some(Decoding::default()),
            seed: 3,
            resamples: 500,
            level: 0.95,
        }
    }

    #[test]
    fn the_report_carries_the_calibrated_kl() {
        // Every policy reward above every reference reward: all ranks at the top, the whole
        // distribution on one of K + 1 = 5 ranks, KL ln 5 (no noise to correct: every
        // resample is the same).
        let samples: Vec<PromptSamples> = (0..6)
            .map(|i| {
                prompt(
                    &[2.0, 3.0, 2.5, 4.0],
                    &[0.1, 0.4, 0.5, 0.9 + i as f64 / 100.0],
                )
            })
            .collect();
        let report = summarise(&samples, &settings()).unwrap();
        let kl = report.calibrated_kl.unwrap();
        assert!((kl.estimate - 5f64.ln()).abs() < 1e-12, "{kl:?}");
        assert_eq!(kl, calibrated_kl_of(&samples, &settings()).unwrap());
        // Per prompt the same: one occupied rank of five in every prompt (no bias term).
        let per_prompt = report.calibrated_kl_per_prompt.unwrap();
        assert!(
            (per_prompt.estimate - 5f64.ln()).abs() < 1e-12,
            "{per_prompt:?}"
        );
        assert_eq!(
            per_prompt,
            per_prompt_calibrated_kl_of(&samples, &settings()).unwrap()
        );
        // Evaluations written before the fields existed still read.
        let mut json = serde_json::to_value(&report).unwrap();
        json.as_object_mut().unwrap().remove("calibrated_kl");
        json.as_object_mut()
            .unwrap()
            .remove("calibrated_kl_per_prompt");
        let old: EvalReport = serde_json::from_value(json).unwrap();
        assert_eq!(old.calibrated_kl, None);
        assert_eq!(old.calibrated_kl_per_prompt, None);
    }

    #[test]
    fn paired_differences_are_exact_for_equal_policies_and_signed_otherwise() {
        let reference = [
            [0.1, 0.4, 0.5, 0.9],
            [0.2, 0.3, 0.6, 0.7],
            [0.0, 0.5, 0.8, 1.0],
        ];
        let weak: Vec<_> = reference
            .iter()
            .map(|r| prompt(&[0.05, 0.2, 0.35, 0.45], r))
            .collect();
        let strong: Vec<_> = reference
            .iter()
            .map(|r| prompt(&[0.55, 0.75, 0.85, 0.95], r))
            .collect();
        let same = paired_difference(&weak, &weak, Procedure::BestOfN, 2, &settings(), 0).unwrap();
        assert_eq!((same.estimate, same.lower, same.upper), (0.0, 0.0, 0.0));
        let better =
            paired_difference(&strong, &weak, Procedure::BestOfN, 2, &settings(), 0).unwrap();
        // The difference is the mean of the per-prompt differences, and it is resolved.
        let expected: f64 = per_prompt_win_rates(&strong, Procedure::BestOfN, 2)
            .unwrap()
            .iter()
            .zip(per_prompt_win_rates(&weak, Procedure::BestOfN, 2).unwrap())
            .map(|(a, b)| a - b)
            .sum::<f64>()
            / 3.0;
        assert!((better.estimate - expected).abs() < 1e-12);
        assert!(better.lower > 0.0, "{better:?}");
        let worse =
            paired_difference(&weak, &strong, Procedure::WorstOfN, 2, &settings(), 0).unwrap();
        assert!(worse.upper < 0.0, "{worse:?}");

        // Unpaired evaluations are refused, with the reason.
        let message = paired_difference(&weak[..2], &weak, Procedure::BestOfN, 2, &settings(), 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("2 and 3 prompts"), "{message}");
        let mut other = weak.clone();
        other[1].reference_rewards[0] = 0.25;
        let message = paired_difference(&weak, &other, Procedure::BestOfN, 2, &settings(), 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("prompt 1"), "{message}");
        // Rewards are reproducible to the bit, so a last-bit difference is another reference.
        let mut rescored = weak.clone();
        let first = &mut rescored[2].reference_rewards[0];
        *first = f64::from_bits(first.to_bits() + 1);
        let message = paired_difference(&weak, &rescored, Procedure::BestOfN, 2, &settings(), 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("prompt 2"), "{message}");
    }
}
