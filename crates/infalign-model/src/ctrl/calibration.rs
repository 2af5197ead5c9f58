//! `calibration.json`: for each training prompt, the sorted rewards of K responses sampled from
//! pi_ref once (theory notes, section 6, step 2). The calibrated reward of any later response is
//! its mid-rank among them ([`infalign_core::ReferenceTable`]).

use serde::{Deserialize, Serialize};

use infalign_core::ReferenceTable;

use super::{reference_table, Decoding};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::reward::{Reward, RewardSpec};
use crate::tokenizer::DialogueTokenizer;

/// The `format` field of a calibration file.
pub const FORMAT: &str = "infalign-calibration";
/// The newest version this build writes and reads.
pub const VERSION: u32 = 1;

/// How a calibration set was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSettings {
    /// Reference responses per prompt.
    pub k: usize,
    /// The reward that scored them.
    pub reward: RewardSpec,
    /// How they were sampled (the same decoding must be used for training and evaluation).
    pub decoding: Decoding,
    /// Seed of the sampler (each prompt uses a stream derived from it and the prompt's text).
    pub seed: u64,
    /// sha256 of the base policy's weights (burnpack bytes) they were sampled from.
    pub base_policy_sha256: String,
}

/// One prompt's reference table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedPrompt {
    /// The user's message.
    pub prompt: String,
    /// The K reference rewards, sorted.
    pub reference: ReferenceTable,
}

/// A calibration set: settings and one table per prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSet {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// How the tables were made.
    pub settings: CalibrationSettings,
    /// One table per prompt, in the prompt set's order.
    pub prompts: Vec<CalibratedPrompt>,
}

/// What K buys: how noisy and how tied the calibrated rewards of a set are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// Prompts in the set.
    pub prompts: usize,
    /// Reference responses per prompt.
    pub k: usize,
    /// Mean number of distinct reward values per prompt (K when nothing ties).
    pub mean_distinct: f64,
    /// Fraction of pairs of reference responses (same prompt) whose rewards tie.
    pub tie_fraction: f64,
    /// Split-half disagreement: each prompt's references are split at random into two halves,
    /// whose tables calibrate all of the prompt's references; the mean absolute difference of
    /// the two calibrated rewards (the noise of two K/2 tables, so about twice a K table's).
    pub split_half_difference: f64,
    /// Upper bound on the standard error of one calibrated reward, 1 / (2 sqrt(K)).
    pub standard_error_bound: f64,
}

impl CalibrationSet {
    /// Parse and check a calibration file's bytes; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let fail = |reason: String| Error::Parse {
            origin: origin.to_string(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| fail(format!("not valid JSON: {error}")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(fail(format!(
                "not an InfAlign calibration file (`format` {}, expected {FORMAT:?}); write one \
                 with `infalign calibrate`",
                crate::error::stated(format)
            )));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(version) if version >= 1 && version <= u64::from(VERSION) => {}
            other => {
                return Err(fail(format!(
                    "calibration version {other:?}; this build reads 1 to {VERSION}"
                )))
            }
        }
        let set: CalibrationSet =
            serde_json::from_value(value).map_err(|error| fail(error.to_string()))?;
        set.check().map_err(fail)?;
        Ok(set)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.settings.k == 0 {
            return Err("settings.k is 0".into());
        }
        if self.prompts.is_empty() {
            return Err("no prompts".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (index, entry) in self.prompts.iter().enumerate() {
            if entry.reference.len() != self.settings.k {
                return Err(format!(
                    "prompts[{index}] has {} reference rewards; settings.k is {}",
                    entry.reference.len(),
                    self.settings.k
                ));
            }
            if !seen.insert(entry.prompt.as_str()) {
                return Err(format!("prompts[{index}] repeats an earlier prompt"));
            }
        }
        Ok(())
    }

    /// The set as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|error| Error::Invalid {
            what: "calibration set".into(),
            reason: error.to_string(),
        })
    }

    /// The table of each of `messages`, in order; an error names the first message (by index)
    /// that the set does not cover.
    pub fn tables_for<'a>(&'a self, messages: &[String]) -> Result<Vec<&'a ReferenceTable>> {
        let by_prompt: std::collections::HashMap<&str, &ReferenceTable> = self
            .prompts
            .iter()
            .map(|entry| (entry.prompt.as_str(), &entry.reference))
            .collect();
        messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                by_prompt
                    .get(message.as_str())
                    .copied()
                    .ok_or_else(|| Error::Invalid {
                        what: "calibration set".into(),
                        reason: format!(
                            "prompt {index} of the training set has no reference table; run \
                         `infalign calibrate` on the same prompt set"
                        ),
                    })
            })
            .collect()
    }

    /// How noisy and how tied the set's calibrated rewards are (see [`CalibrationSummary`]).
    pub fn summary(&self) -> Result<CalibrationSummary> {
        summarize(&self.prompts)
    }

    /// Read a calibration file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|error| Error::io(path, error))?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Write the set to `path` (through a temporary file and a rename).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "calibration.json".into());
        crate::files::write_files_atomically(dir, [(name, self.to_json()?.into_bytes())])
    }
}

/// Sample `settings.k` responses per prompt from `base`, score them with `reward`, and keep
/// the sorted rewards. A prompt's responses come from a sampler stream derived from
/// `settings.seed` and the prompt's text alone, so its table does not depend on the rest of the
/// prompt set, its order, or how the work is batched.
/// `progress(done, total)` is called after each prompt.
pub async fn calibrate(
    base: &Policy,
    tokenizer: &DialogueTokenizer,
    reward: &dyn Reward,
    prompts: &[String],
    settings: CalibrationSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<CalibrationSet> {
    settings.decoding.validate(false)?;
    if settings.k == 0 {
        return Err(Error::Invalid {
            what: "calibration setting `k`".into(),
            reason: "must be at least 1".into(),
        });
    }
    if prompts.is_empty() {
        return Err(Error::Invalid {
            what: "calibration".into(),
            reason: "no prompts".into(),
        });
    }
    let mut entries = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        let reference = reference_table(
            base,
            tokenizer,
            prompt,
            reward,
            settings.k,
            &settings.decoding,
            settings.seed,
            async |_| {},
        )
        .await?;
        entries.push(CalibratedPrompt {
            prompt: prompt.clone(),
            reference,
        });
        progress(index + 1, prompts.len());
    }
    Ok(CalibrationSet {
        format: FORMAT.into(),
        version: VERSION,
        settings,
        prompts: entries,
    })
}

/// [`CalibrationSet::summary`] of any tables; `k` is the smallest table's size (they may differ
/// when the rewards came from elsewhere), and the standard-error bound is that table's.
pub fn summarize(tables: &[CalibratedPrompt]) -> Result<CalibrationSummary> {
    let k = tables
        .iter()
        .map(|entry| entry.reference.len())
        .min()
        .unwrap_or(0);
    let (mut distinct, mut ties, mut pairs) = (0.0, 0.0, 0.0);
    let (mut difference, mut compared) = (0.0, 0usize);
    for entry in tables {
        let sorted = entry.reference.rewards();
        let mut run = 1usize;
        let mut values = 1usize;
        for i in 1..=sorted.len() {
            if i < sorted.len() && sorted[i] == sorted[i - 1] {
                run += 1;
            } else {
                ties += (run * (run - 1) / 2) as f64;
                run = 1;
                if i < sorted.len() {
                    values += 1;
                }
            }
        }
        distinct += values as f64;
        let size = sorted.len();
        pairs += (size * size.saturating_sub(1) / 2) as f64;
        if size >= 2 {
            // The references are i.i.d., so a random partition gives two independent halves
            // (an alternating split of the sorted table would give two near-copies and hide
            // the noise).
            let mut order: Vec<usize> = (0..sorted.len()).collect();
            crate::shuffle(&mut order, infalign_core::seed::text_key(&entry.prompt));
            let (left, right) = order.split_at(sorted.len() / 2);
            let first: Vec<f64> = left.iter().map(|&i| sorted[i]).collect();
            let second: Vec<f64> = right.iter().map(|&i| sorted[i]).collect();
            let first = ReferenceTable::new(first)?;
            let second = ReferenceTable::new(second)?;
            for &reward in sorted {
                difference +=
                    (first.calibrated_reward(reward)? - second.calibrated_reward(reward)?).abs();
                compared += 1;
            }
        }
    }
    let prompts = tables.len();
    Ok(CalibrationSummary {
        prompts,
        k,
        mean_distinct: distinct / prompts.max(1) as f64,
        tie_fraction: if pairs > 0.0 { ties / pairs } else { 0.0 },
        split_half_difference: difference / compared.max(1) as f64,
        standard_error_bound: 0.5 / (k.max(1) as f64).sqrt(),
    })
}

/// The reference rewards of prompts whose replies were scored elsewhere: JSON Lines, one prompt
/// per line, `{"prompt": "...", "reference_rewards": [r1, ..., rK]}` (other fields are ignored).
/// `infalign calibrate --from-rewards` reads it and writes it back checked, with each prompt's
/// rewards sorted: the column the Python adapters (`infalign.trl`, `.verl`, `.openrlhf`) read.
pub const REFERENCE_REWARDS_FORMAT: &str = "infalign reference rewards (JSON Lines), version 1";

#[derive(Debug, Serialize, Deserialize)]
struct ReferenceRewardsLine {
    prompt: String,
    reference_rewards: Vec<f64>,
}

/// Parse reference rewards in the [`REFERENCE_REWARDS_FORMAT`]; an error names `origin` and the
/// line (a missing field, a non-number, an empty list, a repeated prompt).
pub fn parse_reference_rewards(text: &str, origin: &str) -> Result<Vec<CalibratedPrompt>> {
    super::prompts::parse_per_prompt_lines(
        text,
        origin,
        r#"{"prompt": ..., "reference_rewards": [...]}"#,
        |line: &ReferenceRewardsLine| &line.prompt,
        |line, fail| {
            let reference = ReferenceTable::new(line.reference_rewards)
                .map_err(|error| fail(format!("reference_rewards: {error}")))?;
            Ok(CalibratedPrompt {
                prompt: line.prompt,
                reference,
            })
        },
    )
}

/// The tables in the [`REFERENCE_REWARDS_FORMAT`], rewards sorted, one line per prompt.
pub fn reference_rewards_jsonl(tables: &[CalibratedPrompt]) -> Result<String> {
    let mut out = String::new();
    for entry in tables {
        let line = ReferenceRewardsLine {
            prompt: entry.prompt.clone(),
            reference_rewards: entry.reference.rewards().to_vec(),
        };
        out += &serde_json::to_string(&line).map_err(|error| Error::Invalid {
            what: "reference rewards".into(),
            reason: error.to_string(),
        })?;
        out.push('\n');
    }
    Ok(out)
}
