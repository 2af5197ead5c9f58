//! `infalign calibrate`, `infalign ctrl` and `infalign eval`: the reference tables of pi_ref,
//! KL-regularised RL on the calibrated, transformed reward, and inference-time win rates.
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
use infalign_core::theory::{self, best_t, optimal_envelope};
use infalign_core::{ExpFamily, Procedure};
use infalign_model::bundle::{Bundle, Provenance};
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::{
    calibrate, calibrated_kl_of, sample_prompts, summarise, CalibrationSet, CalibrationSettings,
    CtrlConfig, CtrlTrainer, Decoding, EvalReport, EvalSettings, KlControl, PromptSamples,
    TrainingReward,
};
use infalign_model::reward::RewardSpec;

use crate::files::{append_line, print_stdout, read_json, write_atomic};
use crate::progress::{items_bar, say, steps_bar};
use crate::reward::spec_or;

/// The variant name of the trained policy in a run's bundle.
pub const TRAINED_POLICY: &str = "ctrl";
/// A finished run's training settings (`CtrlConfig`), in its directory.
pub const RUN_CONFIG_FILE: &str = "config.json";
/// A finished calibrated run's calibration settings (`CalibrationSettings`), in its directory.
pub const RUN_CALIBRATION_FILE: &str = "calibration-settings.json";

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The base policy's bundle (pi_ref).
    #[arg(long, default_value = "static/default-model")]
    bundle: PathBuf,
    /// Training prompts: `prompts-train.jsonl` of `infalign data fetch`, or an HH-RLHF file.
    #[arg(long)]
    prompts: PathBuf,
    /// Use at most this many distinct prompts (the first ones).
    #[arg(long, default_value_t = 256)]
    limit: usize,
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
    /// `cpu`, `wgpu` or `auto`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn calibrate_command(args: CalibrateArgs) -> anyhow::Result<()> {
    let bundle = Bundle::read_dir(&args.bundle)?;
    let backend = crate::backend::resolve(&args.device)?;
    let base = bundle.policy(&backend.device)?;
    let spec: RewardSpec = args.reward.parse()?;
    let reward = spec.load()?;
    let prompts = read_prompts(&args.prompts, args.limit)?;
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
        args.bundle.display(),
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

#[derive(Debug, Args)]
pub struct CtrlArgs {
    /// The base policy's bundle (pi_ref, and the starting point).
    #[arg(long, default_value = "static/default-model")]
    bundle: PathBuf,
    /// Training prompts (as for `infalign calibrate`).
    #[arg(long)]
    prompts: PathBuf,
    /// Use at most this many distinct prompts (the same limit as the calibration).
    #[arg(long, default_value_t = 256)]
    limit: usize,
    /// The calibration set of `infalign calibrate` (needed unless `--transform raw`).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Reward (default: the calibration set's; `vader` for `raw` without one).
    #[arg(long)]
    reward: Option<String>,
    /// `raw` (no calibration), or a transform of the calibrated reward: `identity`, `log`,
    /// `exp:T`, `negexp:T`, `optimal:bon:N:LAMBDA`; `exp`, `negexp` and `optimal` alone pick
    /// t (or lambda) with the theory engine for `--procedure`, `--n` and `--target-kl`.
    #[arg(long, default_value = "identity")]
    transform: String,
    /// Inference-time procedure the policy will be served with: `bon` or `won`.
    #[arg(long, default_value = "bon")]
    procedure: String,
    /// N of the procedure.
    #[arg(long, default_value_t = 4)]
    n: u32,
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
    /// `cpu`, `wgpu` or `auto`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The training reward for `--transform`, resolving `exp`, `negexp` and `optimal` without
/// parameters with the theory engine.
fn training_reward(args: &CtrlArgs) -> anyhow::Result<TrainingReward> {
    let procedure: Procedure = args.procedure.parse()?;
    let budget = || {
        args.target_kl.context(
            "--transform exp, negexp or optimal without a parameter needs --target-kl (the KL \
             budget the theory engine tunes for)",
        )
    };
    let family = match args.transform.trim() {
        "exp" => ExpFamily::Exp,
        "negexp" => ExpFamily::NegExp,
        "optimal" => {
            let budget = budget()?;
            let solution = optimal_envelope(procedure, args.n, &[budget])?
                .pop()
                .context("the theory engine returned no optimal transform")?;
            eprintln!(
                "ctrl: optimal transform for {procedure}_{} at {budget} nats (lambda {:.3})",
                args.n, solution.lambda
            );
            return Ok(TrainingReward::Calibrated(solution.transform));
        }
        spec => return Ok(spec.parse()?),
    };
    let budget = budget()?;
    let best = best_t(family, procedure, args.n, budget)?;
    eprintln!(
        "ctrl: theory picks t = {:.2} for {} under {procedure}_{} at {budget} nats (analytic \
         win rate {:.3})",
        best.t,
        family.as_str(),
        args.n,
        best.win_rate
    );
    Ok(TrainingReward::Calibrated(family.transform(best.t)))
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
    let bundle = Bundle::read_dir(&args.bundle)?;
    let backend = crate::backend::resolve(&args.device)?;
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
            args.bundle.display()
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
    let prompts = read_prompts(&args.prompts, args.limit)?;
    let tables = match (&calibration, config.reward.needs_calibration()) {
        (Some(set), true) => Some(set.tables_for(&prompts).with_context(|| {
            format!(
                "{} against {}",
                args.prompts.display(),
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
        data: args.prompts.display().to_string(),
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

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A bundle (a CTRL run's `bundle/`, or any bundle: its base policy is pi_ref).
    #[arg(long)]
    bundle: PathBuf,
    /// The policy evaluated against the bundle's base policy.
    #[arg(long, default_value = TRAINED_POLICY)]
    policy: String,
    /// Held-out prompts (`prompts-test.jsonl`, or an HH-RLHF file).
    #[arg(long)]
    prompts: PathBuf,
    /// Use at most this many distinct prompts.
    #[arg(long, default_value_t = 64)]
    limit: usize,
    /// Responses per prompt from each side (M).
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// N of the BoN_N and WoN_N win rates (repeat or separate with commas).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    n: Vec<u32>,
    /// Reward (default: the bundle's, else `vader`).
    #[arg(long)]
    reward: Option<String>,
    /// Longest response in tokens (use the training run's).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Seed of the samplers and the bootstrap (the same seed gives every policy the same
    /// reference samples).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Bootstrap resamples over prompts.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// A label for tables and plots (default: the policy's name).
    #[arg(long)]
    label: Option<String>,
    /// Output directory: `eval.json`, `eval.md` and the per-prompt `samples.json`.
    #[arg(long)]
    out: PathBuf,
    /// `cpu`, `wgpu` or `auto`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn eval_command(args: EvalArgs) -> anyhow::Result<()> {
    let bundle = Bundle::read_dir(&args.bundle)?;
    let backend = crate::backend::resolve(&args.device)?;
    let reference = bundle.policy(&backend.device)?;
    let policy = bundle
        .named_policy(&args.policy, &backend.device)
        .with_context(|| format!("{}: policy {:?}", args.bundle.display(), args.policy))?;
    let spec = spec_or(args.reward.as_deref(), bundle.manifest.reward.clone())?;
    let reward = spec.load()?;
    let prompts = read_prompts(&args.prompts, args.limit)?;
    let settings = EvalSettings {
        samples: args.samples,
        ns: args.n.clone(),
        decoding: Decoding {
            max_new_tokens: args.max_new_tokens,
            ..Decoding::default()
        },
        seed: args.seed,
        resamples: args.resamples,
        level: 0.95,
    };
    settings.validate()?;
    eprintln!(
        "eval: {:?} against base on {} prompts x {} responses per side, reward {spec}",
        args.policy,
        prompts.len(),
        args.samples
    );
    let progress = items_bar(prompts.len() as u64, "prompts");
    let samples = pollster::block_on(sample_prompts(
        &policy,
        &reference,
        &bundle.tokenizer,
        reward.as_ref(),
        &prompts,
        &settings,
        |done, _| progress.set_position(done as u64),
    ))?;
    progress.finish_and_clear();
    let report = summarise(&samples, &settings)?;
    let label = args.label.clone().unwrap_or_else(|| args.policy.clone());
    let document = serde_json::json!({
        "label": label,
        "bundle": args.bundle.display().to_string(),
        "prompts": args.prompts.display().to_string(),
        "policy": args.policy,
        "reward": spec.to_string(),
        "settings": settings,
        "report": report,
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomic(
        &args.out.join("eval.json"),
        serde_json::to_string_pretty(&document)?,
    )?;
    write_atomic(
        &args.out.join("samples.json"),
        serde_json::to_string(&samples)?,
    )?;
    let table = markdown_report(&label, &report);
    write_atomic(&args.out.join("eval.md"), &table)?;
    print_stdout(&table)
}

/// `eval.json` as [`eval_command`] writes it: the fields other commands read back.
#[derive(Debug, serde::Deserialize)]
pub struct EvalFile {
    /// The evaluated policy's name in its bundle.
    pub policy: String,
    /// The held-out prompt file (absent in files written before it was recorded).
    #[serde(default)]
    pub prompts: Option<String>,
    /// How it sampled and summarised.
    pub settings: EvalSettings,
    /// What it measured.
    pub report: EvalReport,
}

impl EvalFile {
    /// Reads `DIR/eval.json`. An evaluation written before reports had the calibrated rewards'
    /// KL gets it from `DIR/samples.json`, when that is there.
    pub fn read(dir: &Path) -> anyhow::Result<EvalFile> {
        let path = dir.join("eval.json");
        let mut document: EvalFile = read_json(&path)?;
        let samples = dir.join("samples.json");
        if document.report.calibrated_kl.is_none() && samples.exists() {
            let samples: Vec<PromptSamples> = read_json(&samples)?;
            document.report.calibrated_kl = Some(
                calibrated_kl_of(&samples, &document.settings)
                    .with_context(|| format!("the calibrated KL of {}", path.display()))?,
            );
        }
        Ok(document)
    }
}

/// One row per measure: estimate and 95% interval.
pub fn markdown_report(label: &str, report: &EvalReport) -> String {
    let row = |name: String, ci: &infalign_core::estimators::ConfidenceInterval| {
        format!(
            "| {name} | {:.3} | [{:.3}, {:.3}] |\n",
            ci.estimate, ci.lower, ci.upper
        )
    };
    let mut out = format!(
        "{label}: {} prompts, {} responses per prompt and side\n\n| measure | estimate | 95% \
         interval |\n|---|---|---|\n",
        report.prompts, report.samples
    );
    out.push_str(&row("KL (k1, nats)".into(), &report.kl));
    out.push_str(&row("KL (k3, nats)".into(), &report.kl_k3));
    if let Some(calibrated) = &report.calibrated_kl {
        out.push_str(&row(
            "KL of the calibrated rewards (nats)".into(),
            calibrated,
        ));
    }
    out.push_str(&row("standard win rate".into(), &report.standard));
    for rate in &report.procedures {
        out.push_str(&row(
            format!("{}_{} win rate", rate.procedure, rate.n),
            &rate.win_rate,
        ));
    }
    out.push_str(&row("reward (policy)".into(), &report.policy_reward));
    out.push_str(&row("reward (reference)".into(), &report.reference_reward));
    out
}
