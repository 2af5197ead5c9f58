//! Deterministic train / validation / test splits by conversation.
//!
//! A conversation's split depends only on its identifier (through SHA-256), so it never moves
//! when the corpus grows, shrinks or is reordered, and every machine agrees.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which part of the corpus a conversation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// Out of 1000 conversations, about this many go to validation, and as many to test.
pub const HELD_OUT_PER_MILLE: u64 = 50;

impl Split {
    /// All splits, in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The split of the conversation `id`: about 90 % train, 5 % validation, 5 % test.
    pub fn of(id: &str) -> Split {
        let digest = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        match u64::from_be_bytes(first) % 1000 {
            bucket if bucket < HELD_OUT_PER_MILLE => Split::Validation,
            bucket if bucket < 2 * HELD_OUT_PER_MILLE => Split::Test,
            _ => Split::Train,
        }
    }

    /// The name used in file names and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_stable_and_roughly_proportional() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("conversation-{i}")).collect();
        let mut counts = [0usize; 3];
        for id in &ids {
            let split = Split::of(id);
            assert_eq!(split, Split::of(id), "the split of {id} must not change");
            counts[Split::ALL.iter().position(|s| *s == split).unwrap()] += 1;
        }
        // 5 % of 20 000 is 1000; a binomial standard deviation is about 31.
        for held_out in &counts[1..] {
            assert!((850..1150).contains(held_out), "{counts:?}");
        }
        assert_eq!(counts.iter().sum::<usize>(), ids.len());
    }
}
