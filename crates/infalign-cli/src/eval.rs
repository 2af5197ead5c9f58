//! `infalign eval`: a policy against the base policy on held-out prompts: standard, BoN_N and
//! WoN_N win rates (exact U-statistics), the KL and the calibrated rewards' KL, with bootstrap
//! intervals, in `eval.json` / `eval.md`, and every reply's rewards in `replies.csv.gz`. With
//! `--scored`, the rollouts were sampled and scored elsewhere (another engine) and only summarised
//! here, into the same files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use infalign_model::bundle::Bundle;
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::{
    calibrated_kl_of, parse_scored, per_prompt_calibrated_kl_of, replies_csv, sample_prompts,
    summarise, Decoding, EvalReport, EvalSettings, Evaluation, PromptSamples, REPLIES_FILE,
};

use crate::args::DeviceArg;
use crate::files::{print_stdout, read_json, write_atomic};
use crate::progress::items_bar;
use crate::reward::spec_or;

use crate::ctrl::TRAINED_POLICY;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A bundle (a CTRL run's `bundle/`, or any bundle: its base policy is pi_ref); required
    /// unless `--scored`.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Rollouts sampled and scored elsewhere, JSON Lines of `{"prompt", "policy_rewards",
    /// "reference_rewards", "log_ratios"}`: summarise them instead of sampling from a bundle.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle", "prompts"])]
    scored: Option<PathBuf>,
    /// The policy evaluated against the bundle's base policy.
    #[arg(long, default_value = TRAINED_POLICY)]
    policy: String,
    /// Held-out prompts (`prompts-test.jsonl`, or an HH-RLHF file); required unless `--scored`.
    #[arg(long)]
    prompts: Option<PathBuf>,
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
    #[command(flatten)]
    device: DeviceArg,
}

pub fn eval_command(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(scored) = &args.scored {
        return eval_scored(&args, scored);
    }
    let bundle_dir = args
        .bundle
        .as_ref()
        .context("--bundle is required (or --scored FILE, for rollouts scored elsewhere)")?;
    let prompts_file = args
        .prompts
        .as_ref()
        .context("--prompts is required: the held-out prompts")?;
    let bundle = Bundle::read_dir(bundle_dir)?;
    let backend = args.device.resolve()?;
    let reference = bundle.policy(&backend.device)?;
    let policy = bundle
        .named_policy(&args.policy, &backend.device)
        .with_context(|| format!("{}: policy {:?}", bundle_dir.display(), args.policy))?;
    let spec = spec_or(args.reward.as_deref(), bundle.manifest.reward.clone())?;
    let reward = spec.load()?;
    let prompts = read_prompts(prompts_file, args.limit)?;
    let settings = EvalSettings {
        samples: args.samples,
        ns: args.n.clone(),
        decoding: Some(Decoding {
            max_new_tokens: args.max_new_tokens,
            ..Decoding::default()
        }),
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
    let document = Evaluation {
        prompts: prompts_file.display().to_string(),
        settings,
        report,
        policy: Some(args.policy.clone()),
        bundle: Some(bundle_dir.display().to_string()),
        label: Some(label),
        reward: Some(spec.clone()),
    };
    write_evaluation(&args.out, &document, &samples)
}

/// `--scored`: rollouts from elsewhere, summarised like our own (M is each side's smallest count
/// over the prompts).
fn eval_scored(args: &EvalArgs, scored: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(scored)
        .with_context(|| format!("reading scored rollouts from {}", scored.display()))?;
    let (prompts, samples) = parse_scored(&text, &scored.display().to_string())?;
    let samples_per_side = samples
        .iter()
        .map(|s| s.policy_rewards.len().min(s.reference_rewards.len()))
        .min()
        .unwrap_or(0);
    let settings = EvalSettings {
        samples: samples_per_side,
        ns: args.n.clone(),
        decoding: None,
        seed: args.seed,
        resamples: args.resamples,
        level: 0.95,
    };
    settings
        .validate()
        .with_context(|| format!("{}: the smallest side of a prompt", scored.display()))?;
    eprintln!(
        "eval: {} prompts of rollouts scored elsewhere, at least {samples_per_side} replies per \
         side",
        prompts.len()
    );
    let report = summarise(&samples, &settings)?;
    let document = Evaluation {
        prompts: scored.display().to_string(),
        settings,
        report,
        policy: None,
        bundle: None,
        label: Some(args.label.clone().unwrap_or_else(|| "scored".into())),
        reward: None,
    };
    write_evaluation(&args.out, &document, &samples)
}

/// `eval.json`, `samples.json`, the per-reply file and `eval.md` (also printed).
fn write_evaluation(
    out: &Path,
    document: &Evaluation,
    samples: &[PromptSamples],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(
        &out.join("eval.json"),
        serde_json::to_string_pretty(document)?,
    )?;
    write_atomic(&out.join("samples.json"), serde_json::to_string(samples)?)?;
    write_atomic(
        &out.join(REPLIES_FILE),
        crate::candidates::gzip(replies_csv(samples)?.as_bytes())?,
    )?;
    let label = document.label.as_deref().unwrap_or("policy");
    let table = markdown_report(label, &document.report);
    write_atomic(&out.join("eval.md"), &table)?;
    print_stdout(&table)
}

/// Reads `DIR/eval.json`. An evaluation written before reports had the calibrated rewards'
/// KLs (pooled, per prompt) gets them from `DIR/samples.json`, when that is there.
pub fn read_eval(dir: &Path) -> anyhow::Result<Evaluation> {
    let path = dir.join("eval.json");
    let mut document: Evaluation = read_json(&path)?;
    let samples = dir.join("samples.json");
    let report = &mut document.report;
    if (report.calibrated_kl.is_none() || report.calibrated_kl_per_prompt.is_none())
        && samples.exists()
    {
        let samples: Vec<PromptSamples> = read_json(&samples)?;
        let context = || format!("the calibrated KL of {}", path.display());
        if report.calibrated_kl.is_none() {
            report.calibrated_kl =
                Some(calibrated_kl_of(&samples, &document.settings).with_context(context)?);
        }
        if report.calibrated_kl_per_prompt.is_none() {
            report.calibrated_kl_per_prompt = Some(
                per_prompt_calibrated_kl_of(&samples, &document.settings).with_context(context)?,
            );
        }
    }
    Ok(document)
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
            "KL of the calibrated rewards, pooled (nats)".into(),
            calibrated,
        ));
    }
    if let Some(calibrated) = &report.calibrated_kl_per_prompt {
        out.push_str(&row(
            "KL of the calibrated rewards, per prompt (nats)".into(),
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
