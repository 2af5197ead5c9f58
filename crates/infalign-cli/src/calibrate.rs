//! `infalign calibrate`: K reference replies per training prompt from the base policy pi_ref,
//! scored and kept sorted (the one reference table of `infalign_model::ctrl::reference_table`),
//! then what K buys: distinct rewards per prompt, ties, and how far two half tables disagree.
//! With `--from-rewards`, the reference rewards were computed elsewhere (another model, another
//! engine): they are checked, sorted and summarised the same way, for the Python adapters.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use infalign_model::bundle::Bundle;
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::{
    calibrate, parse_reference_rewards, reference_rewards_jsonl, summarize, CalibrationSettings,
    CalibrationSummary, Decoding,
};
use infalign_model::reward::RewardSpec;

use crate::args::{DeviceArg, TrainingPrompts};
use crate::files::write_atomic;
use crate::progress::items_bar;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The base policy and the prompts to sample reference replies for (not with
    /// `--from-rewards`).
    #[command(flatten)]
    training: TrainingPrompts,
    /// Reference responses per prompt.
    #[arg(long, default_value_t = 32)]
    k: usize,
    /// Reward: `vader`, `rustrict`, `linear:PATH` or `learned:DIR`.
    #[arg(long, default_value = "vader")]
    reward: String,
    /// Longest response in tokens (training and evaluation use the same).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the calibration set.
    #[arg(long, default_value = "runs/calibration.json")]
    out: PathBuf,
    /// Reference rewards computed elsewhere, JSON Lines of `{"prompt": ..., "reference_rewards":
    /// [...]}`: check, sort and summarise them into `--out` (the same format, for the Python
    /// adapters' `reference_rewards` column) instead of sampling from a bundle.
    #[arg(long, value_name = "FILE")]
    from_rewards: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn calibrate_command(args: CalibrateArgs) -> anyhow::Result<()> {
    if let Some(from) = &args.from_rewards {
        return calibrate_external(from, &args.out);
    }
    let bundle = Bundle::read_dir(&args.training.bundle)?;
    let backend = args.device.resolve()?;
    let base = bundle.policy(&backend.device)?;
    let spec: RewardSpec = args.reward.parse()?;
    let reward = spec.load()?;
    let prompts = read_prompts(args.training.prompts()?, args.training.limit)?;
    let settings = CalibrationSettings {
        k: args.k,
        reward: spec,
        decoding: Decoding {
            max_new_tokens: args.max_new_tokens,
            ..Decoding::default()
        },
        seed: args.seed,
        base_policy_sha256: bundle.manifest.weights.sha256.clone(),
    };
    eprintln!(
        "calibrate: {} prompts x {} reference responses from {} on {}",
        prompts.len(),
        args.k,
        args.training.bundle.display(),
        backend.kind
    );
    let progress = items_bar(prompts.len() as u64, "prompts");
    let started = Instant::now();
    let set = pollster::block_on(calibrate(
        &base,
        &bundle.tokenizer,
        reward.as_ref(),
        &prompts,
        settings,
        |done, _| progress.set_position(done as u64),
    ))?;
    progress.finish_and_clear();
    set.write(&args.out)?;
    report(&args.out, started, &set.summary()?)
}

/// Print what K buys and write it beside `out` (`*.summary.json`).
fn report(out: &Path, started: Instant, summary: &CalibrationSummary) -> anyhow::Result<()> {
    eprintln!(
        "calibrate: wrote {} in {:.1} s; K = {}: {:.1} distinct rewards per prompt, {:.1}% of \
         reference pairs tie, split-half difference of calibrated rewards {:.3} (a K table's \
         standard error is at most {:.3})",
        out.display(),
        started.elapsed().as_secs_f64(),
        summary.k,
        summary.mean_distinct,
        100.0 * summary.tie_fraction,
        summary.split_half_difference,
        summary.standard_error_bound
    );
    write_atomic(
        &out.with_extension("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )
}

/// `--from-rewards`: reference rewards scored elsewhere, checked, sorted and summarised.
fn calibrate_external(from: &Path, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let text = std::fs::read_to_string(from)
        .with_context(|| format!("reading reference rewards from {}", from.display()))?;
    let tables = parse_reference_rewards(&text, &from.display().to_string())?;
    eprintln!(
        "calibrate: {} prompts of reference rewards from {}",
        tables.len(),
        from.display()
    );
    write_atomic(out, reference_rewards_jsonl(&tables)?)?;
    report(out, started, &summarize(&tables)?)
}
