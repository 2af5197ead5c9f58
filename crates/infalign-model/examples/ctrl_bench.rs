//! The CTRL step as a whole, timed: sample m replies to each of a step's prompts (KV cache),
//! score them with VADER, calibrate against each prompt's reference table, transform, compute
//! the replies' log-probabilities under the policy and pi_ref, and take one RLOO policy-gradient
//! step with AdamW. This is `CtrlTrainer::train_step`, exactly what `infalign ctrl` runs.
//!
//! Two modes:
//!
//! - `--prepare DIR`: calibrate (K base replies to each built-in prompt, scored) and write what a
//!   peer implementation needs to run the same step: `DIR/work.json` (the prompts, their token
//!   ids, the end-of-turn id, the sorted reference rewards, the step's settings, and a few
//!   prompt + reply rows with their log-probabilities, which the peer must reproduce before it
//!   is timed) and `DIR/base.safetensors` (the base policy's weights).
//!   `scripts/bench_peer.py ctrl` reads them.
//! - `--work DIR`: time `--repeats` steps after one warm-up step, on the prompts and reference
//!   tables of `DIR/work.json`, and print one JSON line (or a sentence without `--json`).
//!
//! `cargo run -p infalign-model --release --example ctrl_bench -- --bundle static/default-model
//!  (--prepare DIR | --work DIR) [--device cpu|wgpu] [--repeats 5] [--k 32] [--json]`

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use infalign_core::{ReferenceTable, Transform};
use infalign_model::backend::{cpu_device, gpu_device};
use infalign_model::bundle::Bundle;
use infalign_model::ctrl::{
    rollout, score, sequence_logprobs, CtrlConfig, CtrlTrainer, Decoding, Rollouts, TrainingReward,
};
use infalign_model::reward::VaderReward;
use infalign_model::tokenizer::chat_prompt;
use infalign_view::lab::BUILT_IN_PROMPTS;
use serde::{Deserialize, Serialize};

use common::{cpu_seconds, median};

type Failure = Box<dyn std::error::Error>;

/// What both sides run: written by `--prepare`, read by `--work` and by the Python peer.
#[derive(Debug, Serialize, Deserialize)]
struct Work {
    /// The users' messages.
    prompts: Vec<String>,
    /// Each message as the policy sees it (`chat_prompt`, tokenized).
    prompt_ids: Vec<Vec<u32>>,
    end_of_turn: u32,
    /// Each prompt's K reference rewards (VADER compound of base replies), ascending.
    tables: Vec<Vec<f64>>,
    /// The training reward: normexp(t) of the calibrated reward.
    normexp_t: f64,
    beta: f64,
    samples_per_prompt: usize,
    prompts_per_step: usize,
    max_new_tokens: usize,
    learning_rate: f64,
    /// Largest gradient norm per parameter tensor.
    grad_clip: f64,
    /// The reward: always VADER's compound score of the reply.
    reward: String,
    /// A consistency check for the peer: prompt + reply rows (two base replies per prompt, so
    /// a left-padded batch) and their `log pi_ref(reply | prompt)` as this side computes them.
    check: Check,
}

#[derive(Debug, Serialize, Deserialize)]
struct Check {
    prompt_ids: Vec<Vec<u32>>,
    response_ids: Vec<Vec<u32>>,
    logprobs: Vec<f64>,
}

/// Prepare the work (`--prepare DIR`) or time it (`--work DIR`).
#[derive(Parser)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["prepare", "work"]))]
struct Options {
    /// The base policy's bundle.
    #[arg(long, default_value = "static/default-model")]
    bundle: PathBuf,
    /// Calibrate and write `work.json` and `base.safetensors` into this directory.
    #[arg(long)]
    prepare: Option<PathBuf>,
    /// Time the steps described by this directory's `work.json`.
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu"])]
    device: String,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5, value_parser = common::positive)]
    repeats: usize,
    /// Reference replies per prompt.
    #[arg(long, default_value_t = 32, value_parser = common::positive)]
    k: usize,
    /// One JSON line instead of a sentence.
    #[arg(long)]
    json: bool,
    /// Flush subnormal floats to zero (as the benchmark's PyTorch side does then too).
    #[arg(long)]
    flush_denormals: bool,
}

fn prepare(options: &Options, dir: &PathBuf) -> Result<(), Failure> {
    let device = cpu_device();
    let bundle = Bundle::read_dir(&options.bundle)?;
    let base = bundle.policy(&device)?;
    let tokenizer = &bundle.tokenizer;
    let config = CtrlConfig::default();
    let decoding = config.decoding;
    let reward = VaderReward::new();
    let mut prompt_ids = Vec::new();
    let mut tables = Vec::new();
    let mut check = Rollouts {
        prompt_ids: Vec::new(),
        response_ids: Vec::new(),
        texts: Vec::new(),
        stopped: Vec::new(),
    };
    for (index, prompt) in BUILT_IN_PROMPTS.iter().enumerate() {
        prompt_ids.push(tokenizer.encode(&chat_prompt(prompt))?);
        let messages = vec![*prompt; options.k];
        let replies = pollster::block_on(rollout(
            &base,
            tokenizer,
            &messages,
            &decoding,
            index as u64,
        ))?;
        for row in 0..2.min(options.k) {
            check.prompt_ids.push(replies.prompt_ids[row].clone());
            check.response_ids.push(replies.response_ids[row].clone());
            check.texts.push(replies.texts[row].clone());
            check.stopped.push(replies.stopped[row]);
        }
        let mut rewards = score(&reward, &messages, &replies.texts)?;
        rewards.sort_by(f64::total_cmp);
        tables.push(rewards);
    }
    let logprobs = pollster::block_on(sequence_logprobs(&base, &check, check.len()))?;
    let work = Work {
        prompts: BUILT_IN_PROMPTS.iter().map(|p| p.to_string()).collect(),
        prompt_ids,
        end_of_turn: tokenizer.end_of_turn(),
        tables,
        normexp_t: 4.0,
        beta: config.beta,
        samples_per_prompt: config.samples_per_prompt,
        prompts_per_step: config.prompts_per_step,
        max_new_tokens: decoding.max_new_tokens,
        learning_rate: config.learning_rate,
        grad_clip: config.grad_clip,
        reward: "vader".into(),
        check: Check {
            prompt_ids: check.prompt_ids,
            response_ids: check.response_ids,
            logprobs,
        },
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("work.json"), serde_json::to_vec_pretty(&work)?)?;
    std::fs::write(
        dir.join("base.safetensors"),
        bundle.to_safetensors("base", &device)?,
    )?;
    eprintln!(
        "ctrl_bench: wrote {} ({} prompts x {} reference replies) and base.safetensors",
        dir.join("work.json").display(),
        work.prompts.len(),
        options.k
    );
    Ok(())
}

fn run(options: &Options, dir: &Path) -> Result<(), Failure> {
    let path = dir.join("work.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error} (run --prepare first)", path.display()))?;
    let work: Work =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    let (device, side) = match options.device.as_str() {
        "wgpu" => (pollster::block_on(gpu_device())?, "burn wgpu"),
        _ => (cpu_device(), "burn flex"),
    };
    let bundle = Bundle::read_dir(&options.bundle)?;
    let base = bundle.policy(&device)?;
    let tables = work
        .tables
        .iter()
        .map(|rewards| ReferenceTable::new(rewards.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let table_refs: Vec<&ReferenceTable> = tables.iter().collect();
    let config = CtrlConfig {
        reward: TrainingReward::Calibrated(Transform::NormExp { t: work.normexp_t }),
        beta: work.beta,
        samples_per_prompt: work.samples_per_prompt,
        prompts_per_step: work.prompts_per_step,
        learning_rate: work.learning_rate,
        grad_clip: work.grad_clip,
        steps: options.repeats as u64 + 1,
        decoding: Decoding {
            max_new_tokens: work.max_new_tokens,
            ..Decoding::default()
        },
        ..CtrlConfig::default()
    };
    let mut trainer = CtrlTrainer::new(config, &base, &device)?;
    let reward = VaderReward::new();
    let mut seconds = Vec::new();
    let mut lengths = Vec::new();
    let mut cpu_s = 0.0;
    for step in 0..=options.repeats {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let metrics = pollster::block_on(trainer.train_step(
            &work.prompts,
            Some(table_refs.as_slice()),
            &reward,
            &bundle.tokenizer,
        ))?;
        // The step ends with the loss read back, so the time covers the device's work.
        if step > 0 {
            seconds.push(start.elapsed().as_secs_f64());
            cpu_s += cpu_seconds() - cpu_start;
            lengths.push(metrics.response_length);
        }
    }
    let rows = work.samples_per_prompt * work.prompts_per_step;
    let median_s = median(&seconds);
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "work": "ctrl step", "side": side, "seconds": seconds, "median_s": median_s,
                "units": rows, "unit": "replies", "mean_reply_tokens": lengths,
                "cpu_s": cpu_s,
            })
        );
    } else {
        println!(
            "{side}: CTRL step of {rows} replies, median {median_s:.3} s over {} steps \
             (mean reply length {:.1} tokens)",
            seconds.len(),
            lengths.iter().sum::<f64>() / lengths.len() as f64
        );
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let options = Options::parse();
    if options.flush_denormals {
        infalign_model::backend::flush_denormals();
    }
    match (&options.prepare, &options.work) {
        (Some(dir), _) => prepare(&options, dir),
        (_, Some(dir)) => run(&options, dir),
        _ => unreachable!("clap requires exactly one mode"),
    }
}
