//! Collecting a candidate set for candidate-set CTRL ([`infalign_core::candidates`]): for each
//! prompt, C candidate replies and K reference replies sampled from the base policy and scored
//! with a real reward. Only the rewards are kept (the replies' texts may be offensive).
//!
//! The file is JSON Lines: a [`CollectionHeader`] on the first line, then one
//! [`CollectedPrompt`] per line, appended and flushed as each prompt finishes, so a killed
//! collection loses at most the prompt it was sampling and resumes after the last full line.
//! The reference replies of a prompt are exactly the ones [`crate::ctrl::reference_table`]
//! draws for the same base policy, prompt, K, decoding and seed (in sampling order here; the
//! table keeps them sorted); any prefix of them is a smaller reference set of iid replies.

use serde::{Deserialize, Serialize};

use infalign_core::candidates::{CandidatePrompt, CandidateSet};
use infalign_core::seed::{derive_seed, text_key, Stream};

use crate::ctrl::rollout::{reference_seed, ReferenceProgress};
use crate::ctrl::{rollout, score, Decoding, RolloutStream};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::reward::Reward;
use crate::tokenizer::DialogueTokenizer;

/// The `format` field of a collection's header.
pub const FORMAT: &str = "infalign-candidates";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// The first line of a collection: what every prompt line was sampled and scored with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// sha256 of the base policy's weights (burnpack bytes, as its bundle stores them).
    pub base_policy_sha256: String,
    /// The reward, as a spec (`vader`, `linear:FILE` by file name).
    pub reward: String,
    /// The prompt file, in words.
    pub prompts: String,
    /// C: candidate replies per prompt.
    pub candidates: usize,
    /// K: reference replies per prompt.
    pub references: usize,
    /// How replies were sampled.
    pub decoding: Decoding,
    /// The seed of every sampler stream.
    pub seed: u64,
}

impl CollectionHeader {
    /// Whether `other` describes the same collection; the error names the first field that
    /// differs, with both values.
    pub fn check_same(&self, other: &CollectionHeader, origin: &str) -> Result<()> {
        let differs = |field: &str, ours: String, theirs: String| {
            Err(Error::Invalid {
                what: origin.to_string(),
                reason: format!(
                    "it was collected with {field} {theirs}, but this run asks for {ours}; \
                     choose another output file or the same settings"
                ),
            })
        };
        if self.base_policy_sha256 != other.base_policy_sha256 {
            return differs(
                "the base policy",
                short(&self.base_policy_sha256),
                short(&other.base_policy_sha256),
            );
        }
        if self.reward != other.reward {
            return differs("reward", self.reward.clone(), other.reward.clone());
        }
        if self.candidates != other.candidates {
            return differs(
                "C",
                self.candidates.to_string(),
                other.candidates.to_string(),
            );
        }
        if self.references != other.references {
            return differs(
                "K",
                self.references.to_string(),
                other.references.to_string(),
            );
        }
        if self.decoding != other.decoding {
            return differs(
                "decoding",
                format!("{:?}", self.decoding),
                format!("{:?}", other.decoding),
            );
        }
        if self.seed != other.seed {
            return differs("seed", self.seed.to_string(), other.seed.to_string());
        }
        Ok(())
    }
}

fn short(sha: &str) -> String {
    format!("sha256 {}...", &sha[..sha.len().min(12)])
}

/// One prompt's rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectedPrompt {
    /// Its position in the prompt file.
    pub index: usize,
    /// [`text_key`] of the prompt's text in hex: which prompt it was, without its text.
    pub key: String,
    /// The C candidates' raw rewards, in sampling order.
    pub candidates: Vec<f64>,
    /// The K reference replies' raw rewards, in sampling order.
    pub reference: Vec<f64>,
}

/// The key a [`CollectedPrompt`] records for `prompt`.
pub fn prompt_key(prompt: &str) -> String {
    format!("{:016x}", text_key(prompt))
}

/// The sampler seed of batch `part` of `prompt`'s candidates in a collection seeded with
/// `seed`: like [`reference_seed`], it follows the prompt's text alone.
pub fn candidate_seed(seed: u64, prompt: &str, part: u64) -> u64 {
    let prompt_seed = derive_seed(seed, Stream::Candidates, text_key(prompt));
    derive_seed(prompt_seed, Stream::Candidates, part)
}

/// The rewards of `c` candidates for `prompt`, sampled in one streamed batch (the browser
/// lab's way: `between_steps` is awaited after every token with where sampling stands): the
/// same replies as [`collect_prompt`] samples with a batch of at least `c` rows, so the lab's
/// candidate set is the command's for the same seed.
#[allow(clippy::too_many_arguments)] // each input is part of what makes the candidates
pub async fn candidate_rewards(
    base: &Policy,
    tokenizer: &DialogueTokenizer,
    prompt: &str,
    reward: &dyn Reward,
    c: usize,
    decoding: &Decoding,
    seed: u64,
    mut between_steps: impl AsyncFnMut(ReferenceProgress),
) -> Result<Vec<f64>> {
    if c == 0 {
        return Err(Error::Invalid {
            what: "candidate replies C".into(),
            reason: "must be at least 1".into(),
        });
    }
    let messages = vec![prompt; c];
    let mut stream = RolloutStream::new(
        base,
        tokenizer,
        &messages,
        decoding,
        candidate_seed(seed, prompt, 0),
    )?;
    while stream.step().await? {
        between_steps(ReferenceProgress {
            finished: stream.finished(),
            k: c,
        })
        .await;
    }
    let rollouts = stream.finish()?;
    score(reward, &messages, &rollouts.texts)
}

/// Sample and score one prompt's candidates (in batches of `batch` rows) and references.
pub async fn collect_prompt(
    base: &Policy,
    tokenizer: &DialogueTokenizer,
    reward: &dyn Reward,
    header: &CollectionHeader,
    index: usize,
    prompt: &str,
    batch: usize,
) -> Result<CollectedPrompt> {
    let batch = batch.max(1);
    let mut candidates = Vec::with_capacity(header.candidates);
    let mut part = 0u64;
    while candidates.len() < header.candidates {
        let rows = batch.min(header.candidates - candidates.len());
        let messages = vec![prompt; rows];
        let seed = candidate_seed(header.seed, prompt, part);
        let replies = rollout(base, tokenizer, &messages, &header.decoding, seed).await?;
        candidates.extend(score(reward, &messages, &replies.texts)?);
        part += 1;
    }
    let messages = vec![prompt; header.references];
    let replies = rollout(
        base,
        tokenizer,
        &messages,
        &header.decoding,
        reference_seed(header.seed, prompt),
    )
    .await?;
    Ok(CollectedPrompt {
        index,
        key: prompt_key(prompt),
        candidates,
        reference: score(reward, &messages, &replies.texts)?,
    })
}

/// Replace `values` with the numbers of the array `"field":[...]` of `line` as the standard
/// library parses them. serde_json's default float parser can land one unit in the last place
/// away from the nearest double, and rewards one unit apart (VADER's sums in another order) must
/// stay apart, or ties appear that the writer never had. Left as they are when the array is not
/// found in the form this module writes or does not parse to the same count.
fn exact_numbers(line: &str, field: &str, values: &mut [f64]) {
    let key = format!("\"{field}\":[");
    let Some(start) = line.find(&key).map(|i| i + key.len()) else {
        return;
    };
    let Some(length) = line[start..].find(']') else {
        return;
    };
    let parsed: Option<Vec<f64>> = line[start..start + length]
        .split(',')
        .map(|text| text.trim().parse::<f64>().ok())
        .collect();
    if let Some(parsed) = parsed.filter(|p| p.len() == values.len()) {
        values.copy_from_slice(&parsed);
    }
}

/// A collection read back: its header and its complete prompt lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// The first line.
    pub header: CollectionHeader,
    /// The prompts, in file order.
    pub prompts: Vec<CollectedPrompt>,
    /// Whether the last line was cut short (a killed collection); it is left out.
    pub truncated_tail: bool,
    /// Bytes of the text up to the end of the last complete line (what to keep of a cut file).
    pub complete_len: usize,
}

impl Collection {
    /// Parse a collection's text; `origin` names the file in errors, which give the line.
    /// A last line without its newline that does not parse is a collection killed while
    /// writing: it is dropped and reported in [`Collection::truncated_tail`]; any other bad
    /// line is an error.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let at = |line: usize, reason: String| Error::Parse {
            origin: format!("{origin}:{line}"),
            reason,
        };
        let mut lines = text.split_inclusive('\n').enumerate();
        let (_, first) = lines
            .next()
            .ok_or_else(|| at(1, "empty file; expected a collection header".into()))?;
        let header: CollectionHeader = serde_json::from_str(first.trim_end())
            .map_err(|error| at(1, format!("not a candidate collection header: {error}")))?;
        if header.format != FORMAT {
            return Err(at(
                1,
                format!("format {:?}, expected {FORMAT:?}", header.format),
            ));
        }
        if header.version != VERSION {
            return Err(at(
                1,
                format!(
                    "version {}; this build reads version {VERSION}",
                    header.version
                ),
            ));
        }
        let mut prompts: Vec<CollectedPrompt> = Vec::new();
        let mut truncated_tail = false;
        let mut complete_len = first.len();
        for (number, line) in lines {
            let line_number = number + 1;
            let complete = line.ends_with('\n');
            let parsed = serde_json::from_str::<CollectedPrompt>(line.trim_end());
            let entry = match parsed {
                Ok(mut entry) => {
                    exact_numbers(line, "candidates", &mut entry.candidates);
                    exact_numbers(line, "reference", &mut entry.reference);
                    entry
                }
                Err(_) if !complete => {
                    truncated_tail = true;
                    break;
                }
                Err(error) => return Err(at(line_number, format!("not a prompt line: {error}"))),
            };
            let check = |what: &str, values: &[f64], expected: usize| -> Result<()> {
                if values.len() != expected {
                    return Err(at(
                        line_number,
                        format!(
                            "prompt {} has {} {what} rewards, the header says {expected}",
                            entry.index,
                            values.len()
                        ),
                    ));
                }
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(at(
                        line_number,
                        format!("prompt {}: {what} reward {i} is {}", entry.index, values[i]),
                    ));
                }
                Ok(())
            };
            check("candidate", &entry.candidates, header.candidates)?;
            check("reference", &entry.reference, header.references)?;
            if prompts.iter().any(|p| p.index == entry.index) {
                return Err(at(
                    line_number,
                    format!("prompt {} appears twice", entry.index),
                ));
            }
            prompts.push(entry);
            complete_len += line.len();
        }
        Ok(Self {
            header,
            prompts,
            truncated_tail,
            complete_len,
        })
    }

    /// The candidate set for CTRL with the first `k` reference replies of each prompt (all of
    /// them when `k` is `None`); prompts in file order.
    pub fn candidate_set(&self, k: Option<usize>) -> Result<CandidateSet> {
        let k = k.unwrap_or(self.header.references);
        if k == 0 || k > self.header.references {
            return Err(Error::Invalid {
                what: "reference replies K".into(),
                reason: format!(
                    "{k}: the collection has {} per prompt",
                    self.header.references
                ),
            });
        }
        let prompts = self
            .prompts
            .iter()
            .map(|entry| {
                CandidatePrompt::from_rewards(
                    entry.candidates.clone(),
                    entry.reference[..k].to_vec(),
                )
                .map_err(|error| Error::Invalid {
                    what: format!("prompt {}", entry.index),
                    reason: error.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CandidateSet::new(prompts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_read_back_to_the_bit() {
        // Two rewards one unit in the last place apart, as a sum in another order gives.
        let a: f64 = 0.1 + 0.2 + 0.3;
        let b: f64 = 0.3 + 0.2 + 0.1;
        assert_ne!(a.to_bits(), b.to_bits());
        let header = CollectionHeader {
            format: FORMAT.into(),
            version: VERSION,
            base_policy_sha256: "0".repeat(64),
            reward: "vader".into(),
            prompts: "p.jsonl".into(),
            candidates: 2,
            references: 2,
            decoding: Decoding::default(),
            seed: 0,
        };
        let entry = CollectedPrompt {
            index: 0,
            key: prompt_key("hi"),
            candidates: vec![a, b],
            reference: vec![b, 0.7],
        };
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string(&header).unwrap(),
            serde_json::to_string(&entry).unwrap()
        );
        let collection = Collection::parse(&text, "c.jsonl").unwrap();
        assert_eq!(collection.prompts[0], entry);
        assert!(!collection.truncated_tail);
        assert_eq!(collection.complete_len, text.len());
        // A cut last line is left out; a bad complete one names the line.
        let cut = format!("{text}{{\"index\": 1, \"ke");
        let read = Collection::parse(&cut, "c.jsonl").unwrap();
        assert!(read.truncated_tail);
        assert_eq!(read.complete_len, text.len());
        let bad = text.replace("\"reference\":[", "\"reference\":[NaN,");
        let message = Collection::parse(&bad, "c.jsonl").unwrap_err().to_string();
        assert!(message.contains("c.jsonl:2"), "{message}");
    }
}
