//! Shared helpers for the integration tests: a generated corpus, a tokenizer trained on it, a
//! tiny policy shape and scratch directories.

#![allow(dead_code)]

use std::path::PathBuf;

use infalign_model::backend::cpu_device;
use infalign_model::bundle::Bundle;
use infalign_model::data::{chitchat, fixture, Dialogue};
use infalign_model::policy::{Policy, PolicyConfig, TokenBatch};
use infalign_model::reward::Reward;
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

/// Per-token log-probabilities of a fixed two-row batch (left padding included) on the CPU: a
/// fingerprint of a policy's weights.
pub fn fingerprint(policy: &Policy) -> Vec<f32> {
    let batch = TokenBatch::prompt_response(
        &[vec![1, 2, 3], vec![4]],
        &[vec![5, 6], vec![7, 8, 9]],
        32,
        &cpu_device(),
    )
    .expect("a valid batch");
    policy
        .token_logprobs(&batch)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// The crate's directory. `cargo test` sets it at run time; that wins over the compile-time value,
/// which goes stale when a cached test binary is reused from a checkout at another path (CI's
/// shared target directory).
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The repository's root.
pub fn repository() -> PathBuf {
    manifest_dir().join("../..")
}

/// The committed default model, `static/default-model`.
pub fn default_model() -> Bundle {
    Bundle::read_dir(repository().join("static/default-model")).unwrap_or_else(|error| {
        panic!(
            "the committed default model does not load ({error}); retrain it (README: \
             `The default model`) and commit static/default-model"
        )
    })
}

/// Longer replies score higher: a reward a tiny random policy can learn within a few steps
/// (prefer long tokens, avoid the end-of-turn token).
pub struct Length;

impl Reward for Length {
    fn name(&self) -> String {
        "length".into()
    }
    fn score(&self, _prompt: &str, response: &str) -> f64 {
        response.chars().count() as f64 / 10.0
    }
}
