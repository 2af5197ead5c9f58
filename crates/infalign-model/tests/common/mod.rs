//! Shared helpers for the integration tests: a generated corpus, a tokenizer trained on it, a
//! tiny policy shape and scratch directories.

#![allow(dead_code)]

use std::path::PathBuf;

use infalign_model::data::{chitchat, fixture, Dialogue};
use infalign_model::policy::PolicyConfig;
use infalign_model::tokenizer::{training_text, DialogueTokenizer};

/// Dialogues of the generated chitchat-like corpus.
pub fn dialogues(conversations: usize) -> Vec<Dialogue> {
    chitchat::parse(
        fixture::chitchat_json(conversations, 3).as_bytes(),
        "fixture",
    )
    .expect("the fixture parses")
    .dialogues
}

/// A small tokenizer trained on the fixture corpus.
pub fn tokenizer() -> DialogueTokenizer {
    let texts: Vec<String> = dialogues(120).iter().map(training_text).collect();
    DialogueTokenizer::train(texts.iter(), 320, false).expect("the tokenizer trains")
}

/// A tiny policy shape for `vocab_size` tokens.
pub fn tiny(vocab_size: usize) -> PolicyConfig {
    PolicyConfig {
        vocab_size,
        d_model: 32,
        n_layers: 2,
        n_heads: 2,
        d_ff: 64,
        max_seq_len: 32,
    }
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infalign-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}
