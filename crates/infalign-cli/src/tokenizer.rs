//! `infalign tokenizer train`: byte-level BPE on the training dialogues, saved as
//! `tokenizer.json`, with the compression it reaches on the validation dialogues.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use infalign_model::data::{dialogue, Dialogue, Split};
use infalign_model::tokenizer::{training_text, DialogueTokenizer};

use crate::files::write_atomic;

#[derive(Debug, Args)]
pub struct TokenizerArgs {
    #[command(subcommand)]
    command: TokenizerCommand,
}

#[derive(Debug, Subcommand)]
enum TokenizerCommand {
    /// Train the tokenizer on `dialogues-train.jsonl` of a data directory.
    Train(TrainArgs),
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Data directory written by `infalign data`.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Vocabulary size, counting the 256 byte symbols and the end-of-turn token.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// Where to write `tokenizer.json`.
    #[arg(long, default_value = "tokenizer.json")]
    out: PathBuf,
}

pub fn run(args: TokenizerArgs) -> anyhow::Result<()> {
    match args.command {
        TokenizerCommand::Train(args) => train(args),
    }
}

/// The dialogues of one split of a data directory.
pub fn read_split(data: &Path, split: Split) -> anyhow::Result<Vec<Dialogue>> {
    let path = data.join(format!("dialogues-{split}.jsonl"));
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "reading {}: run `infalign data fetch` (or `data prepare`) first",
            path.display()
        )
    })?;
    Ok(dialogue::read_jsonl(
        BufReader::new(file),
        &path.display().to_string(),
    )?)
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let train_dialogues = read_split(&args.data, Split::Train)?;
    anyhow::ensure!(
        !train_dialogues.is_empty(),
        "{} has no training dialogues",
        args.data.display()
    );
    let texts: Vec<String> = train_dialogues.iter().map(training_text).collect();
    let characters: usize = texts.iter().map(|text| text.chars().count()).sum();
    eprintln!(
        "tokenizer: training byte-level BPE ({} tokens) on {} dialogues, {characters} characters",
        args.vocab_size,
        texts.len()
    );
    let start = Instant::now();
    let tokenizer = DialogueTokenizer::train(texts.iter(), args.vocab_size, true)?;
    let seconds = start.elapsed().as_secs_f64();
    write_atomic(&args.out, tokenizer.to_json()?)?;

    // Compression on held-out text: characters per token.
    let validation = read_split(&args.data, Split::Validation)?;
    let (mut held_out_characters, mut held_out_tokens) = (0usize, 0usize);
    for text in validation.iter().map(training_text) {
        held_out_characters += text.chars().count();
        held_out_tokens += tokenizer.encode(&text)?.len();
    }
    eprintln!(
        "tokenizer: {} tokens in {seconds:.1} s; validation: {:.2} characters per token; wrote {}",
        tokenizer.vocab_size(),
        held_out_characters as f64 / held_out_tokens.max(1) as f64,
        args.out.display()
    );
    Ok(())
}
