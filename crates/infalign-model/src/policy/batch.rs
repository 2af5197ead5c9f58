//! Left-padded batches of token sequences for teacher-forced passes (log-probabilities, losses).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};

/// Sequences packed for one teacher-forced pass: the model reads `sequence[..len - 1]` and is
/// scored on `sequence[1..]`. Rows are left-padded to a common length, so every row's last token
/// sits in the last column (as in generation).
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Input tokens, `[batch, len]` (padding: token 0).
    pub inputs: Tensor<2, Int>,
    /// Position of each input within its own sequence, `[batch, len]` (padding: 0).
    pub positions: Tensor<2, Int>,
    /// The next token after each input, `[batch, len]`.
    pub targets: Tensor<2, Int>,
    /// Where the scored targets are, as indices into the flattened `[batch * len]` positions,
    /// in order (padding and prompt tokens are not scored).
    pub scored: Tensor<1, Int>,
    /// Left-padding positions per row.
    pub pads: Vec<usize>,
    target_count: usize,
}

impl TokenBatch {
    /// Pack `sequences`, scoring the targets of row `i` from `first_target[i]` on (an index into
    /// the sequence, at least 1: for a prompt + response it is the prompt's length; for language
    /// modelling it is 1). Every sequence needs at least two tokens and at most `max_len`.
    pub fn new(
        sequences: &[Vec<u32>],
        first_target: &[usize],
        max_len: usize,
        device: &Device,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            what: "token batch".into(),
            reason,
        };
        if sequences.is_empty() {
            return Err(invalid("no sequences".into()));
        }
        if sequences.len() != first_target.len() {
            return Err(invalid(format!(
                "{} sequences but {} first-target indices",
                sequences.len(),
                first_target.len()
            )));
        }
        for (row, (sequence, &first)) in sequences.iter().zip(first_target).enumerate() {
            if sequence.len() < 2 || sequence.len() > max_len {
                return Err(invalid(format!(
                    "sequence {row} has {} tokens; expected 2 to {max_len}",
                    sequence.len()
                )));
            }
            if first == 0 || first > sequence.len() {
                return Err(invalid(format!(
                    "sequence {row}: first target {first} outside 1..={}",
                    sequence.len()
                )));
            }
        }
        let len = sequences.iter().map(|s| s.len() - 1).max().unwrap_or(1);
        let rows = sequences.len();
        let mut inputs = vec![0i32; rows * len];
        let mut positions = vec![0i32; rows * len];
        let mut targets = vec![0i32; rows * len];
        let mut scored = Vec::new();
        let mut pads = Vec::with_capacity(rows);
        for (row, (sequence, &first)) in sequences.iter().zip(first_target).enumerate() {
            let pad = len - (sequence.len() - 1);
            pads.push(pad);
            for j in 0..sequence.len() - 1 {
                let at = row * len + pad + j;
                inputs[at] = sequence[j] as i32;
                positions[at] = j as i32;
                targets[at] = sequence[j + 1] as i32;
                if j + 1 >= first {
                    scored.push(at as i32);
                }
            }
        }
        let int = |values: Vec<i32>| {
            Tensor::<2, Int>::from_data(TensorData::new(values, [rows, len]), device)
        };
        let target_count = scored.len();
        Ok(Self {
            inputs: int(inputs),
            positions: int(positions),
            targets: int(targets),
            scored: Tensor::from_data(TensorData::new(scored, [target_count]), device),
            pads,
            target_count,
        })
    }

    /// Prompt + response pairs: each response's tokens are scored given its prompt.
    pub fn prompt_response(
        prompts: &[Vec<u32>],
        responses: &[Vec<u32>],
        max_len: usize,
        device: &Device,
    ) -> Result<Self> {
        if prompts.len() != responses.len() {
            return Err(Error::Invalid {
                what: "token batch".into(),
                reason: format!(
                    "{} prompts but {} responses",
                    prompts.len(),
                    responses.len()
                ),
            });
        }
        if let Some(row) = prompts.iter().position(|prompt| prompt.is_empty()) {
            return Err(Error::Invalid {
                what: "token batch".into(),
                reason: format!(
                    "prompt {row} is empty: a response needs at least one token of context"
                ),
            });
        }
        let sequences: Vec<Vec<u32>> = prompts
            .iter()
            .zip(responses)
            .map(|(prompt, response)| prompt.iter().chain(response).copied().collect())
            .collect();
        let first: Vec<usize> = prompts.iter().map(Vec::len).collect();
        Self::new(&sequences, &first, max_len, device)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.pads.len()
    }

    /// Number of scored targets over the whole batch.
    pub fn target_count(&self) -> usize {
        self.target_count
    }
}
