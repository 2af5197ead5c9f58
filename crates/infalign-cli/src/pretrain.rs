//! `infalign pretrain`: train the base policy pi_ref on the dialogue corpus.
//!
//! The run directory holds `checkpoint/` (weights, optimiser state, step; written every
//! `--checkpoint-every` steps and on Ctrl-C), `metrics.jsonl` (one line per evaluation) and, at
//! the end, `bundle/` (the policy with its tokenizer, ready for `infalign sample`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use infalign_model::bundle::{Bundle, Provenance};
use infalign_model::data::Split;
use infalign_model::policy::{generate, PolicyConfig, SamplingConfig};
use infalign_model::pretrain::{PretrainConfig, Pretrainer, TrainingWindows};
use infalign_model::tokenizer::{chat_prompt, DialogueTokenizer};

use crate::files::append_line;
use crate::progress::{say, steps_bar};
use crate::tokenizer::read_split;

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Data directory written by `infalign data`.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The tokenizer written by `infalign tokenizer train`.
    #[arg(long, default_value = "tokenizer.json")]
    tokenizer: PathBuf,
    /// Run directory (checkpoint, metrics, final bundle).
    #[arg(long, default_value = "runs/base")]
    out: PathBuf,
    /// Continue the run checkpointed in `--out` (its settings win over the flags below).
    #[arg(long)]
    resume: bool,
    /// `cpu`, `wgpu` or `auto` (a GPU when one works, else the CPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Attention heads (default: d_model / 32).
    #[arg(long)]
    heads: Option<usize>,
    /// Context length in tokens (prompt + response).
    #[arg(long, default_value_t = 128)]
    context: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Optimiser steps (the default trains the default model in under 30 minutes on 2 CPU cores).
    #[arg(long, default_value_t = 1600)]
    steps: u64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Final learning rate of the cosine schedule.
    #[arg(long, default_value_t = 2e-4)]
    min_lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Largest gradient norm per parameter tensor (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    /// Seed of the weights and batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate (validation loss and sample generations) every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_every: u64,
    /// Validation windows per evaluation.
    #[arg(long, default_value_t = 128)]
    eval_windows: usize,
    /// Checkpoint every this many steps (and on Ctrl-C, and at the end).
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u64,
    /// Sample generations shown at each evaluation.
    #[arg(long, default_value_t = 2)]
    samples: usize,
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    let tokenizer_bytes = std::fs::read(&args.tokenizer).with_context(|| {
        format!(
            "reading {}: run `infalign tokenizer train` first",
            args.tokenizer.display()
        )
    })?;
    let tokenizer =
        DialogueTokenizer::from_bytes(&tokenizer_bytes, &args.tokenizer.display().to_string())?;
    let backend = crate::backend::resolve(&args.device)?;

    let mut trainer = if args.resume {
        let dir = checkpoint_dir(&args.out);
        let trainer = Pretrainer::resume(&dir, &backend.device)
            .with_context(|| format!("resuming from {}", dir.display()))?;
        eprintln!(
            "pretrain: resuming at step {} of {} from {}",
            trainer.step,
            trainer.config.steps,
            dir.display()
        );
        trainer
    } else {
        let mut policy = PolicyConfig::new(
            tokenizer.vocab_size(),
            args.d_model,
            args.layers,
            args.context,
        );
        if let Some(heads) = args.heads {
            policy.n_heads = heads;
        }
        let config = PretrainConfig {
            policy,
            batch_size: args.batch_size,
            steps: args.steps,
            learning_rate: args.lr,
            min_learning_rate: args.min_lr,
            warmup_steps: args.warmup,
            weight_decay: args.weight_decay,
            grad_clip: args.grad_clip,
            seed: args.seed,
        };
        Pretrainer::new(config, &backend.device)?
    };
    let config = trainer.config.clone();
    anyhow::ensure!(
        config.policy.vocab_size == tokenizer.vocab_size(),
        "the checkpoint's vocabulary ({}) differs from {} ({} tokens)",
        config.policy.vocab_size,
        args.tokenizer.display(),
        tokenizer.vocab_size()
    );

    let window = config.policy.max_seq_len + 1;
    let train = TrainingWindows::new(&read_split(&args.data, Split::Train)?, &tokenizer, window)?;
    let validation_dialogues = read_split(&args.data, Split::Validation)?;
    let validation = TrainingWindows::new(&validation_dialogues, &tokenizer, window)?
        .evenly_spaced(args.eval_windows);
    let prompts: Vec<String> = validation_dialogues
        .iter()
        .filter_map(|d| d.turns.first().map(|t| t.text.clone()))
        .take(args.samples)
        .collect();
    eprintln!(
        "pretrain: {} parameters ({}x{} layers, {} heads, context {}) on {}; {} training windows \
         over {} tokens; {} steps of {} sequences",
        config.policy.num_parameters(),
        config.policy.d_model,
        config.policy.n_layers,
        config.policy.n_heads,
        config.policy.max_seq_len,
        backend.kind,
        train.len(),
        train.total_tokens(),
        config.steps,
        config.batch_size
    );

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }

    let progress = steps_bar(config.steps, trainer.step);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let metrics_path = args.out.join("metrics.jsonl");
    let started = Instant::now();
    let start_tokens = trainer.tokens;
    let mut last_validation = None;
    while !trainer.finished() {
        let report = trainer.train_step(&train)?;
        let rate = (trainer.tokens - start_tokens) as f64 / started.elapsed().as_secs_f64();
        progress.set_position(trainer.step);
        progress.set_message(format!(
            "loss {:.3}  lr {:.2e}  {rate:.0} tok/s",
            report.loss, report.learning_rate
        ));
        let at_end = trainer.finished();
        if trainer.step % args.eval_every == 0 || at_end {
            let loss = trainer.evaluate(&validation)?;
            last_validation = Some(loss);
            say(
                &progress,
                format!(
                "step {}: train loss {:.3}, validation loss {loss:.3} ({:.1} s, {rate:.0} tok/s)",
                trainer.step,
                report.loss,
                started.elapsed().as_secs_f64()
            ),
            );
            let record = serde_json::json!({
                "step": trainer.step,
                "tokens": trainer.tokens,
                "train_loss": report.loss,
                "validation_loss": loss,
                "learning_rate": report.learning_rate,
                "tokens_per_second": rate,
            });
            append_line(&metrics_path, &record.to_string())?;
            for line in sample_lines(&trainer, &tokenizer, &prompts, trainer.step)? {
                say(&progress, line);
            }
        }
        let stop = interrupted.load(Ordering::SeqCst);
        if trainer.step % args.checkpoint_every == 0 || at_end || stop {
            trainer.save_checkpoint(&checkpoint_dir(&args.out))?;
        }
        if stop {
            progress.abandon();
            eprintln!(
                "pretrain: interrupted; checkpoint at step {} in {} (continue with --resume)",
                trainer.step,
                checkpoint_dir(&args.out).display()
            );
            return Ok(());
        }
    }
    progress.finish();

    let policy = trainer.inference_policy();
    let validation_loss = match last_validation {
        Some(loss) => loss,
        None => trainer.evaluate(&validation)?,
    };
    let provenance = Provenance {
        created_by: format!("infalign {}", env!("CARGO_PKG_VERSION")),
        command: "infalign pretrain".into(),
        data: format!("{}, train split", args.data.display()),
        seed: config.seed,
        steps: trainer.step,
        tokens: trainer.tokens,
    };
    let metrics = BTreeMap::from([("validation_loss".to_string(), validation_loss)]);
    let bundle = Bundle::new(&policy, &tokenizer, None, provenance, metrics)?;
    let bundle_dir = args.out.join("bundle");
    bundle.write_dir(&bundle_dir)?;
    eprintln!(
        "pretrain: validation loss {validation_loss:.3} nats/token; wrote {} in {:.1} min",
        bundle_dir.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// A few generations for the evaluation log.
fn sample_lines(
    trainer: &Pretrainer,
    tokenizer: &DialogueTokenizer,
    prompts: &[String],
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let policy = trainer.inference_policy();
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|prompt| tokenizer.encode(&chat_prompt(prompt)))
        .collect::<Result<_, _>>()?;
    let config = SamplingConfig {
        temperature: 0.8,
        top_k: 40,
        // Half the context at most, so that the prompt fits too.
        max_new_tokens: (policy.config().max_seq_len / 2).clamp(1, 32),
        ..SamplingConfig::default()
    };
    let generation = pollster::block_on(generate(
        &policy,
        &encoded,
        Some(tokenizer.end_of_turn()),
        &config,
        seed,
    ))?;
    prompts
        .iter()
        .zip(&generation.responses)
        .map(|(prompt, response)| {
            Ok(format!(
                "  Human: {prompt}\n  Assistant:{}",
                tokenizer.decode(response)?
            ))
        })
        .collect()
}
