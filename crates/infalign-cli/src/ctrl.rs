//! `infalign ctrl`: KL-regularised RL on the calibrated, transformed reward (CTRL) or the raw
//! reward.
//!
//! A CTRL run directory holds `checkpoint/` (weights, optimiser state, beta; every
//! `--checkpoint-every` steps, on Ctrl-C and at the end), `metrics.jsonl` (one line per step,
//! TRL's names) and, at the end, `bundle/`: the base policy and the trained one (variant
//! `ctrl`), ready for `infalign sample --policy ctrl` and `infalign eval`, with the run's
//! settings in `config.json` and, when calibrated, the table's in `calibration-settings.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use infalign_core::theory::{self};
use infalign_model::bundle::{Bundle, Provenance};
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::{
    CalibrationSet, CtrlConfig, CtrlTrainer, Decoding, KlControl, TrainingReward,
};

use crate::args::{DeviceArg, Serving, TrainingPrompts};
use crate::files::{append_line, write_atomic};
use crate::progress::{say, steps_bar};
use crate::reward::spec_or;

/// The variant name of the trained policy in a run's bundle.
pub const TRAINED_POLICY: &str = "ctrl";
/// A finished run's training settings (`CtrlConfig`), in its directory.
pub const RUN_CONFIG_FILE: &str = "config.json";
/// A finished calibrated run's calibration settings (`CalibrationSettings`), in its directory.
pub const RUN_CALIBRATION_FILE: &str = "calibration-settings.json";

#[derive(Debug, Args)]
pub struct CtrlArgs {
    #[command(flatten)]
    training: TrainingPrompts,
    /// The calibration set of `infalign calibrate` (needed unless `--transform raw`).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Reward (default: the calibration set's; `vader` for `raw` without one).
    #[arg(long)]
    reward: Option<String>,
    /// `raw` (no calibration), or a transform of the calibrated reward, with the meaning every
    /// command gives it: `identity`, `log`, `exp:T` (e^(Tu)), `negexp:T` (-e^(-Tu)),
    /// `normexp:T` ((e^(Tu) - 1) / (e^T - 1): exp's curves at a rescaled beta, rewards in
    /// [0, 1], what to train on), `normnegexp:T`, `optimal:bon:N:LAMBDA`; `exp`, `negexp` and
    /// `optimal` alone pick t (or lambda) with the theory engine for `--procedure`, `--n` and
    /// `--target-kl` (and train on the normalised form).
    #[arg(long, default_value = "identity")]
    transform: String,
    #[command(flatten)]
    serving: Serving,
    /// KL coefficient (the starting value with `--target-kl`). Default: with `--target-kl` and a
    /// calibrated transform, the theory engine's beta for that KL (1 / lambda); else 0.05.
    #[arg(long)]
    beta: Option<f64>,
    /// Hold the mean sequence KL at this many nats with an adaptive beta.
    #[arg(long)]
    target_kl: Option<f64>,
    /// How `--target-kl` adapts beta: `ziegler` (at most 2 % a step) or `log` (up to 10.5 % a
    /// step, in log space: for a starting beta far from the one that holds the target).
    #[arg(long, default_value = "ziegler")]
    kl_control: KlControl,
    /// Stop when a step's mean KL exceeds this many nats.
    #[arg(long, default_value_t = 50.0)]
    max_kl: f64,
    /// Responses per prompt (RLOO group size, at least 2).
    #[arg(long, default_value_t = 4)]
    m: usize,
    /// Prompts per step.
    #[arg(long, default_value_t = 8)]
    prompts_per_step: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Passes over each step's samples (1: plain RLOO).
    #[arg(long, default_value_t = 1)]
    ppo_epochs: usize,
    /// PPO clipping range on the sequence probability ratio.
    #[arg(long)]
    clip_range: Option<f64>,
    /// Longest response (default: the calibration's).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Seed of prompt draws and samplers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run checkpointed in `--out` (its settings win over the flags).
    #[arg(long)]
    resume: bool,
    /// Checkpoint every this many steps (and on Ctrl-C, and at the end).
    #[arg(long, default_value_t = 10)]
    checkpoint_every: u64,
    #[command(flatten)]
    device: DeviceArg,
}

/// The training reward for `--transform`, resolving `exp`, `negexp` and `optimal` without
/// parameters with the theory engine.
fn training_reward(args: &CtrlArgs) -> anyhow::Result<TrainingReward> {
    if !Serving::is_tuned(&args.transform) {
        return Ok(args.transform.parse()?);
    }
    let budget = args.target_kl.context(
        "--transform exp, negexp or optimal without a parameter needs --target-kl (the KL \
         budget the theory engine tunes for)",
    )?;
    let transform = args
        .serving
        .tuned_transform(&args.transform, budget)?
        .context("the theory engine resolved no transform")?;
    eprintln!(
        "ctrl: theory picks {transform} for {}_{} at {budget} nats",
        args.serving.procedure, args.serving.n
    );
    Ok(TrainingReward::Calibrated(transform))
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Keep the lines of `metrics.jsonl` up to `step` (a run killed after its last checkpoint
/// logged steps that the resumed run will redo).
fn truncate_metrics(path: &Path, step: u64) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|value| value.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    write_atomic(path, kept)
}

pub fn ctrl_command(args: CtrlArgs) -> anyhow::Result<()> {
    let bundle = Bundle::read_dir(&args.training.bundle)?;
    let backend = args.device.resolve()?;
    let base = bundle.policy(&backend.device)?;
    let calibration = match &args.calibration {
        Some(path) => Some(CalibrationSet::read(path)?),
        None => None,
    };
    if let Some(set) = &calibration {
        anyhow::ensure!(
            set.settings.base_policy_sha256 == bundle.manifest.weights.sha256,
            "{} was sampled from another base policy than {} (weights sha256 differ)",
            args.calibration.as_ref().expect("set").display(),
            args.training.bundle.display()
        );
    }
    let dir = checkpoint_dir(&args.out);
    let mut trainer = if args.resume {
        let trainer = CtrlTrainer::resume(&dir, &base, &backend.device)
            .with_context(|| format!("resuming from {}", dir.display()))?;
        eprintln!(
            "ctrl: resuming at step {} of {} from {}",
            trainer.step,
            trainer.config.steps,
            dir.display()
        );
        trainer
    } else {
        anyhow::ensure!(
            !dir.join("state.json").exists(),
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            args.out.display()
        );
        let reward = training_reward(&args)?;
        let decoding = Decoding {
            max_new_tokens: args
                .max_new_tokens
                .or(calibration
                    .as_ref()
                    .map(|c| c.settings.decoding.max_new_tokens))
                .unwrap_or(Decoding::default().max_new_tokens),
            ..Decoding::default()
        };
        let beta = match (args.beta, args.target_kl, &reward) {
            (Some(beta), _, _) => beta,
            (None, Some(target), TrainingReward::Calibrated(transform)) => {
                let lambda = theory::lambda_for_kl(transform, target).with_context(|| {
                    format!("choosing beta for {transform} at {target} nats (pass --beta)")
                })?;
                eprintln!("ctrl: theory's beta for {target} nats: {:.4}", 1.0 / lambda);
                1.0 / lambda
            }
            (None, _, _) => 0.05,
        };
        let config = CtrlConfig {
            reward,
            beta,
            target_kl: args.target_kl,
            max_kl: args.max_kl,
            kl_control: args.kl_control,
            samples_per_prompt: args.m,
            prompts_per_step: args.prompts_per_step,
            steps: args.steps,
            learning_rate: args.lr,
            ppo_epochs: args.ppo_epochs,
            clip_range: args.clip_range,
            decoding,
            seed: args.seed,
            ..CtrlConfig::default()
        };
        CtrlTrainer::new(config, &base, &backend.device)?
    };
    let config = trainer.config.clone();
    let spec = spec_or(
        args.reward.as_deref(),
        calibration.as_ref().map(|set| set.settings.reward.clone()),
    )?;
    if let Some(set) = &calibration {
        anyhow::ensure!(
            set.settings.reward == spec,
            "the calibration set was scored with `{}`, but the run's reward is `{spec}`",
            set.settings.reward
        );
    }
    let reward = spec.load()?;
    let prompts_file = args.training.prompts()?;
    let prompts = read_prompts(prompts_file, args.training.limit)?;
    let tables = match (&calibration, config.reward.needs_calibration()) {
        (Some(set), true) => Some(set.tables_for(&prompts).with_context(|| {
            format!(
                "{} against {}",
                prompts_file.display(),
                args.calibration.as_ref().expect("set").display()
            )
        })?),
        (None, true) => anyhow::bail!(
            "--transform {} calibrates the reward: pass --calibration (from `infalign calibrate`)",
            config.reward
        ),
        (_, false) => None,
    };
    eprintln!(
        "ctrl: {} on {} prompts, reward {spec}; beta {}{}; {} steps of {} prompts x {} \
         responses on {}",
        config.reward,
        prompts.len(),
        config.beta,
        config
            .target_kl
            .map(|t| format!(" adapting to KL {t}"))
            .unwrap_or_default(),
        config.steps,
        config.prompts_per_step,
        config.samples_per_prompt,
        backend.kind
    );

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let metrics_path = args.out.join("metrics.jsonl");
    if args.resume {
        truncate_metrics(&metrics_path, trainer.step)?;
    } else {
        let _ = std::fs::remove_file(&metrics_path);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let progress = steps_bar(config.steps, trainer.step);
    let started = Instant::now();
    let mut last = None;
    while !trainer.finished() {
        let metrics = pollster::block_on(trainer.train_step(
            &prompts,
            tables.as_deref(),
            reward.as_ref(),
            &bundle.tokenizer,
        ))
        .with_context(|| {
            format!(
                "step {}; the last checkpoint in {} is kept",
                trainer.step + 1,
                dir.display()
            )
        })?;
        progress.set_position(trainer.step);
        progress.set_message(format!(
            "score {:.3}  raw {:.3}  KL {:.3}  beta {:.4}",
            metrics.scores, metrics.raw_reward, metrics.kl, metrics.beta
        ));
        append_line(&metrics_path, &serde_json::to_string(&metrics)?)?;
        let at_end = trainer.finished();
        let stop = interrupted.load(Ordering::SeqCst);
        if trainer.step % args.checkpoint_every.max(1) == 0 || at_end || stop {
            trainer.save_checkpoint(&dir)?;
        }
        if trainer.step % 10 == 0 || at_end {
            say(
                &progress,
                format!(
                    "step {}: score {:.3}, raw reward {:.3}, KL {:.3} nats, beta {:.4} ({:.0} s)",
                    trainer.step,
                    metrics.scores,
                    metrics.raw_reward,
                    metrics.kl,
                    metrics.beta,
                    started.elapsed().as_secs_f64()
                ),
            );
        }
        last = Some(metrics);
        if stop {
            progress.abandon();
            eprintln!(
                "ctrl: interrupted; checkpoint at step {} in {} (continue with --resume)",
                trainer.step,
                dir.display()
            );
            return Ok(());
        }
    }
    progress.finish();

    let mut metrics = BTreeMap::new();
    if let Some(last) = &last {
        metrics.insert("train_kl".to_string(), last.kl);
        metrics.insert("train_raw_reward".to_string(), last.raw_reward);
        metrics.insert("beta".to_string(), last.beta);
    }
    let provenance = Provenance {
        created_by: format!("infalign {}", env!("CARGO_PKG_VERSION")),
        command: format!("infalign ctrl --transform {}", config.reward),
        data: args.training.prompts()?.display().to_string(),
        seed: config.seed,
        steps: trainer.step,
        tokens: trainer.episodes,
    };
    let mut out_bundle = Bundle::new(
        &base,
        &bundle.tokenizer,
        Some(spec),
        provenance,
        bundle.manifest.metrics.clone(),
    )?;
    out_bundle.add_variant(TRAINED_POLICY, &trainer.inference_policy(), metrics, None)?;
    let bundle_dir = args.out.join("bundle");
    out_bundle.write_dir(&bundle_dir)?;
    write_atomic(
        &args.out.join(RUN_CONFIG_FILE),
        serde_json::to_string_pretty(&config)?,
    )?;
    // The table matters only to a calibrated reward (a raw run may be given one and ignore it).
    if let (Some(set), TrainingReward::Calibrated(_)) = (&calibration, &config.reward) {
        write_atomic(
            &args.out.join(RUN_CALIBRATION_FILE),
            serde_json::to_string_pretty(&set.settings)?,
        )?;
    }
    eprintln!(
        "ctrl: wrote {} (policy {TRAINED_POLICY:?}) in {:.1} min",
        bundle_dir.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
