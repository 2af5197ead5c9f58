//! The one rollout and the one reference table.
//!
//! [`RolloutStream`] turns messages into chat prompts (left-trimmed to fit the context), samples
//! replies one token per [`RolloutStream::step`] (so the browser can show them grow and yield
//! between tokens) and decodes them; [`rollout`] is a stream run to its end. [`reference_table`]
//! is how a prompt's K reference replies are drawn from the base policy and scored: `infalign
//! calibrate`, `infalign sample --reference-k`, `infalign eval` and the browser lab all call it,
//! with the seed scheme of [`infalign_core::seed`], so the same bundle, prompt, reward, K and
//! seed give the same table everywhere.

use infalign_core::seed::{derive_seed, text_key, Stream};
use infalign_core::ReferenceTable;

use super::Decoding;
use crate::error::{Error, Result};
use crate::policy::{Policy, Sampler, TokenBatch};
use crate::reward::Reward;
use crate::tokenizer::{chat_prompt, DialogueTokenizer};

/// Responses sampled for a list of prompts (one row per response).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollouts {
    /// The prompt's tokens as the policy saw them (left-trimmed to fit the context).
    pub prompt_ids: Vec<Vec<u32>>,
    /// The response's tokens, the end-of-turn token included when the row stopped.
    pub response_ids: Vec<Vec<u32>>,
    /// The response's text (without the end-of-turn token), trimmed.
    pub texts: Vec<String>,
    /// Whether each row ended at end of turn rather than at the length limit.
    pub stopped: Vec<bool>,
}

impl Rollouts {
    /// Number of responses.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Mean response length in tokens.
    pub fn mean_length(&self) -> f64 {
        let total: usize = self.response_ids.iter().map(Vec::len).sum();
        total as f64 / self.len().max(1) as f64
    }

    /// Tokens generated, end-of-turn tokens included.
    pub fn tokens(&self) -> usize {
        self.response_ids.iter().map(Vec::len).sum()
    }

    /// The rows `rows` as one teacher-forced batch (responses scored given their prompts) on
    /// `device`, for a model of context `max_seq_len`.
    pub fn batch(
        &self,
        rows: std::ops::Range<usize>,
        max_seq_len: usize,
        device: &burn::tensor::Device,
    ) -> Result<TokenBatch> {
        TokenBatch::prompt_response(
            &self.prompt_ids[rows.clone()],
            &self.response_ids[rows],
            max_seq_len + 1,
            device,
        )
    }
}

/// A rollout in progress: one response per message, one token per [`RolloutStream::step`].
/// Run to the end, it gives exactly what [`rollout`] gives for the same inputs.
pub struct RolloutStream<'a> {
    sampler: Sampler<'a>,
    tokenizer: &'a DialogueTokenizer,
    prompt_ids: Vec<Vec<u32>>,
}

impl<'a> RolloutStream<'a> {
    /// Encode `messages` as chat prompts for `policy` and set up the sampler (seeded with
    /// `seed`); nothing runs yet.
    pub fn new(
        policy: &'a Policy,
        tokenizer: &'a DialogueTokenizer,
        messages: &[&str],
        decoding: &Decoding,
        seed: u64,
    ) -> Result<Self> {
        let context = policy
            .config()
            .max_seq_len
            .saturating_sub(decoding.max_new_tokens)
            .max(1);
        let prompt_ids = messages
            .iter()
            .map(|message| {
                let ids = tokenizer.encode(&chat_prompt(message))?;
                Ok(ids[ids.len().saturating_sub(context)..].to_vec())
            })
            .collect::<Result<Vec<_>>>()?;
        let sampler = Sampler::new(
            policy,
            &prompt_ids,
            Some(tokenizer.end_of_turn()),
            &decoding.sampling(),
            seed,
        )?;
        Ok(Self {
            sampler,
            tokenizer,
            prompt_ids,
        })
    }

    /// Add one token to every running response; `Ok(false)` once all are done.
    pub async fn step(&mut self) -> Result<bool> {
        self.sampler.step().await
    }

    /// Responses that have reached the end of their turn.
    pub fn finished(&self) -> usize {
        self.sampler.stopped().iter().filter(|&&s| s).count()
    }

    /// The responses' texts so far, decoded and trimmed.
    pub fn texts(&self) -> Result<Vec<String>> {
        self.sampler
            .responses()
            .iter()
            .map(|ids| Ok(self.tokenizer.decode(ids)?.trim().to_string()))
            .collect()
    }

    /// The finished rollouts (also fine before the last step).
    pub fn finish(self) -> Result<Rollouts> {
        let texts = self.texts()?;
        let stop = self.tokenizer.end_of_turn();
        let generation = self.sampler.finish();
        let response_ids = generation
            .responses
            .into_iter()
            .zip(&generation.stopped)
            .map(|(mut ids, &stopped)| {
                if stopped {
                    ids.push(stop);
                }
                ids
            })
            .collect();
        Ok(Rollouts {
            prompt_ids: self.prompt_ids,
            response_ids,
            texts,
            stopped: generation.stopped,
        })
    }
}

/// Sample one response per entry of `messages` from `policy` (rows of the same message are
/// independent draws), with `seed` for the sampler.
pub async fn rollout(
    policy: &Policy,
    tokenizer: &DialogueTokenizer,
    messages: &[&str],
    decoding: &Decoding,
    seed: u64,
) -> Result<Rollouts> {
    let mut stream = RolloutStream::new(policy, tokenizer, messages, decoding, seed)?;
    while stream.step().await? {}
    stream.finish()
}

/// Score each response with `reward`; a NaN or infinite score is an error naming the reward, the
/// row and the value (never the text, which may be offensive).
pub fn score(reward: &dyn Reward, messages: &[&str], texts: &[String]) -> Result<Vec<f64>> {
    let responses: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores = reward.score_batch(messages, &responses)?;
    if let Some((row, value)) = scores.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Invalid {
            what: format!("reward `{}`", reward.name()),
            reason: format!(
                "it returned {value} for response {row} of the batch; rewards must be finite"
            ),
        });
    }
    Ok(scores)
}

/// Where a reference table's sampling stands, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceProgress {
    /// Replies that have finished.
    pub finished: usize,
    /// Replies in all (K).
    pub k: usize,
}

/// The sampler seed of `prompt`'s reference replies in a run seeded with `seed`: it follows
/// the prompt's text alone, so a table does not depend on the rest of a prompt set, its order,
/// or how the work is batched.
pub fn reference_seed(seed: u64, prompt: &str) -> u64 {
    derive_seed(seed, Stream::Reference, text_key(prompt))
}

/// `prompt`'s reference table: `k` replies sampled from `policy` (the base policy pi_ref) with
/// `decoding` in one batch seeded by [`reference_seed`], scored with `reward` and kept sorted.
/// `between_steps` is awaited after every token with where sampling stands (the browser
/// yields to the page there; native callers move a progress bar).
#[allow(clippy::too_many_arguments)] // each input is part of what makes the table
pub async fn reference_table(
    policy: &Policy,
    tokenizer: &DialogueTokenizer,
    prompt: &str,
    reward: &dyn Reward,
    k: usize,
    decoding: &Decoding,
    seed: u64,
    mut between_steps: impl AsyncFnMut(ReferenceProgress),
) -> Result<ReferenceTable> {
    if k == 0 {
        return Err(Error::Invalid {
            what: "reference replies K".into(),
            reason: "must be at least 1".into(),
        });
    }
    let messages = vec![prompt; k];
    let mut stream = RolloutStream::new(
        policy,
        tokenizer,
        &messages,
        decoding,
        reference_seed(seed, prompt),
    )?;
    while stream.step().await? {
        between_steps(ReferenceProgress {
            finished: stream.finished(),
            k,
        })
        .await;
    }
    let rollouts = stream.finish()?;
    Ok(ReferenceTable::new(score(
        reward,
        &messages,
        &rollouts.texts,
    )?)?)
}
