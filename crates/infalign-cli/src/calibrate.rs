//! `infalign calibrate`: K reference replies per training prompt from the base policy pi_ref,
//! scored and kept sorted (the one reference table of `infalign_model::ctrl::reference_table`),
//! then what K buys: distinct rewards per prompt, ties, and how far two half tables disagree.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use infalign_model::bundle::Bundle;
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::{calibrate, CalibrationSettings, Decoding};
use infalign_model::reward::RewardSpec;

use crate::args::{DeviceArg, TrainingPrompts};
use crate::files::write_atomic;
use crate::progress::items_bar;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
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
    #[command(flatten)]
    device: DeviceArg,
}

pub fn calibrate_command(args: CalibrateArgs) -> anyhow::Result<()> {
    let bundle = Bundle::read_dir(&args.training.bundle)?;
    let backend = args.device.resolve()?;
    let base = bundle.policy(&backend.device)?;
    let spec: RewardSpec = args.reward.parse()?;
    let reward = spec.load()?;
    let prompts = read_prompts(&args.training.prompts, args.training.limit)?;
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
    let summary = set.summary()?;
    eprintln!(
        "calibrate: wrote {} in {:.1} s; K = {}: {:.1} distinct rewards per prompt, {:.1}% of \
         reference pairs tie, split-half difference of calibrated rewards {:.3} (a K table's \
         standard error is at most {:.3})",
        args.out.display(),
        started.elapsed().as_secs_f64(),
        summary.k,
        summary.mean_distinct,
        100.0 * summary.tie_fraction,
        summary.split_half_difference,
        summary.standard_error_bound
    );
    write_atomic(
        &args.out.with_extension("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )
}
