//! `infalign reward`: train a Bradley-Terry reward model on preference pairs, and measure how
//! often any reward ranks a pair's chosen answer above its rejected one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use infalign_core::estimators::mean_estimate;
use infalign_model::bundle::Provenance;
use infalign_model::data::{hh, PreferencePair};
use infalign_model::reward::learned::{
    encode_pairs, prompt_folds, train_bradley_terry, BradleyTerryConfig, EncodedPair,
    LearnedRewardConfig,
};
use infalign_model::RewardSpec;

use crate::files::print_stdout;

#[derive(Debug, Args)]
pub struct RewardArgs {
    #[command(subcommand)]
    command: RewardCommand,
}

#[derive(Debug, Subcommand)]
enum RewardCommand {
    /// Train a learned reward model (Bradley-Terry) on HH-format preference pairs, report its
    /// cross-validated pair accuracy next to a bag-of-words baseline, and save it.
    Train(TrainArgs),
    /// Pair accuracy of any reward (`vader`, `rustrict`, `linear:PATH`, `learned:DIR`) on
    /// HH-format preference pairs.
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Preference pairs in the HH-RLHF format (`.jsonl` or `.jsonl.gz`).
    #[arg(long)]
    pairs: PathBuf,
    /// Directory to write the model into (`reward.json`, `model.bpk`).
    #[arg(long, default_value = "runs/reward")]
    out: PathBuf,
    /// Cross-validation folds (pairs sharing an opening human turn share a fold); 0 or 1: none.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Also cross-validate the baseline (logistic regression on a bag of words) with the same
    /// folds, and report the difference.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    baseline: bool,
    /// Rows of the hashed n-gram table.
    #[arg(long, default_value_t = 1 << 18)]
    buckets: usize,
    /// Count single words only (no word pairs).
    #[arg(long)]
    unigrams_only: bool,
    /// Count the 2- to 5-character pieces of each word too.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    chars: bool,
    /// Width of an n-gram's vector.
    #[arg(long, default_value_t = 1)]
    dim: usize,
    /// ReLU units before the score (0: a linear model).
    #[arg(long, default_value_t = 0)]
    hidden: usize,
    /// Passes over the training pairs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Pairs per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// L2 penalty on the weights (added to the mean pair loss).
    #[arg(long, default_value_t = 1e-3)]
    l2: f64,
    /// Seed of the weights and the order of the pairs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The reward: `vader`, `rustrict`, `linear:PATH` or `learned:DIR`.
    #[arg(long)]
    reward: String,
    /// Preference pairs in the HH-RLHF format (`.jsonl` or `.jsonl.gz`).
    #[arg(long)]
    pairs: PathBuf,
}

/// The reward a `--reward` flag names, else `default` (a bundle's or a calibration set's), else
/// VADER.
pub fn spec_or(given: Option<&str>, default: Option<RewardSpec>) -> anyhow::Result<RewardSpec> {
    Ok(match given {
        Some(text) => text.parse()?,
        None => default.unwrap_or(RewardSpec::Vader),
    })
}

pub fn run(args: RewardArgs) -> anyhow::Result<()> {
    match args.command {
        RewardCommand::Train(args) => train(args),
        RewardCommand::Eval(args) => eval(args),
    }
}

fn load_pairs(path: &std::path::Path) -> anyhow::Result<Vec<PreferencePair>> {
    let pairs = hh::load(path)?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "{} holds no preference pairs",
        path.display()
    );
    Ok(pairs)
}

/// Mean and sample standard deviation (n - 1) of per-fold figures.
fn mean_sd(values: &[f64]) -> anyhow::Result<(f64, f64)> {
    let estimate = mean_estimate(values)?;
    Ok((
        estimate.mean,
        estimate.std_error * (estimate.count as f64).sqrt(),
    ))
}

/// Train on all folds but one and test on it, for each fold; returns per-fold accuracies.
/// `encoded` are the pairs encoded for `config.model`.
fn cross_validate(
    encoded: &[EncodedPair],
    fold_of: &[usize],
    folds: usize,
    config: &BradleyTerryConfig,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<f64>> {
    let device = infalign_model::backend::cpu_device();
    let mut accuracies = Vec::with_capacity(folds);
    for fold in 0..folds {
        let (test, train): (Vec<_>, Vec<_>) =
            encoded.iter().zip(fold_of).partition(|(_, &of)| of == fold);
        let train: Vec<_> = train.into_iter().map(|(pair, _)| pair.clone()).collect();
        let test: Vec<_> = test.into_iter().map(|(pair, _)| pair.clone()).collect();
        anyhow::ensure!(
            !train.is_empty() && !test.is_empty(),
            "fold {} of {folds} is empty: use fewer folds for {} pairs",
            fold + 1,
            encoded.len()
        );
        let model = train_bradley_terry(&train, config, &device, |_| progress.inc(1))?;
        accuracies.push(model.pair_accuracy(&test));
    }
    Ok(accuracies)
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let pairs = load_pairs(&args.pairs)?;
    let config = BradleyTerryConfig {
        model: LearnedRewardConfig {
            buckets: args.buckets,
            bigrams: !args.unigrams_only,
            chars: args.chars,
            dim: args.dim,
            hidden: args.hidden,
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        l2: args.l2,
        seed: args.seed,
    };
    config.validate()?;
    // The baseline: logistic regression on a bag of single words.
    let baseline = BradleyTerryConfig {
        model: LearnedRewardConfig {
            buckets: args.buckets,
            bigrams: false,
            chars: false,
            dim: 1,
            hidden: 0,
        },
        ..config
    };
    let folds = if args.folds >= 2 { args.folds } else { 0 };
    let runs = if args.baseline && folds > 0 { 2 } else { 1 };
    let total_epochs = (folds * runs + 1) * config.epochs;
    eprintln!(
        "reward: {} pairs from {}; {}-fold cross-validation{}, then a fit on all pairs",
        pairs.len(),
        args.pairs.display(),
        folds,
        if runs == 2 {
            " of the model and the baseline"
        } else {
            ""
        }
    );
    let progress = crate::progress::items_bar(total_epochs as u64, "epochs");

    let encoded = encode_pairs(&config.model, &pairs);
    let mut metrics = BTreeMap::new();
    let mut report = String::new();
    if folds > 0 {
        let fold_of = prompt_folds(&pairs, folds);
        progress.set_message("cross-validating the model");
        let model = cross_validate(&encoded, &fold_of, folds, &config, &progress)?;
        let (mean, sd) = mean_sd(&model)?;
        metrics.insert("cv_pair_accuracy".to_string(), mean);
        metrics.insert("cv_pair_accuracy_sd".to_string(), sd);
        metrics.insert("cv_folds".to_string(), folds as f64);
        report.push_str(&format!(
            "model    ({}, dim {}, hidden {}): held-out pair accuracy {mean:.3} \
             (sd {sd:.3} over {folds} folds: {})\n",
            match (config.model.bigrams, config.model.chars) {
                (true, true) => "words, word pairs, word pieces",
                (true, false) => "words, word pairs",
                (false, true) => "words, word pieces",
                (false, false) => "words",
            },
            config.model.dim,
            config.model.hidden,
            fold_list(&model)
        ));
        if runs == 2 {
            progress.set_message("cross-validating the baseline");
            let base_encoded = encode_pairs(&baseline.model, &pairs);
            let base = cross_validate(&base_encoded, &fold_of, folds, &baseline, &progress)?;
            let (base_mean, base_sd) = mean_sd(&base)?;
            let gains: Vec<f64> = model.iter().zip(&base).map(|(m, b)| m - b).collect();
            let gain = mean_estimate(&gains)?;
            let (gain, gain_se) = (gain.mean, gain.std_error);
            metrics.insert("cv_baseline_pair_accuracy".to_string(), base_mean);
            metrics.insert("cv_gain_over_baseline".to_string(), gain);
            report.push_str(&format!(
                "baseline (bag of words, logistic): held-out pair accuracy {base_mean:.3} \
                 (sd {base_sd:.3}: {})\n\
                 gain: {:+.1} points (paired over folds, standard error {:.1})\n",
                fold_list(&base),
                gain * 100.0,
                gain_se * 100.0
            ));
        }
    }
    progress.set_message("fitting on all pairs");
    let model = train_bradley_terry(
        &encoded,
        &config,
        &infalign_model::backend::cpu_device(),
        |_| progress.inc(1),
    )?;
    progress.finish_and_clear();
    metrics.insert(
        "train_pair_accuracy".to_string(),
        model.pair_accuracy(&encoded),
    );
    let provenance = Provenance {
        created_by: format!("infalign {}", env!("CARGO_PKG_VERSION")),
        command: "infalign reward train".into(),
        data: format!("{} ({} pairs)", args.pairs.display(), pairs.len()),
        seed: config.seed,
        steps: (config.epochs * encoded.len().div_ceil(config.batch_size)) as u64,
        tokens: 0,
    };
    model
        .write_dir(&args.out, provenance, metrics)
        .with_context(|| format!("writing {}", args.out.display()))?;
    report.push_str(&format!(
        "wrote {} (use it as --reward learned:{})\n",
        args.out.display(),
        args.out.display()
    ));
    print_stdout(&report)
}

fn fold_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let spec: RewardSpec = args.reward.parse()?;
    let reward = spec.load()?;
    let pairs = load_pairs(&args.pairs)?;
    let prompts: Vec<&str> = pairs.iter().map(|p| p.prompt.as_str()).collect();
    let chosen: Vec<&str> = pairs.iter().map(|p| p.chosen.as_str()).collect();
    let rejected: Vec<&str> = pairs.iter().map(|p| p.rejected.as_str()).collect();
    let chosen = reward.score_batch(&prompts, &chosen)?;
    let rejected = reward.score_batch(&prompts, &rejected)?;
    let (mut wins, mut ties) = (0usize, 0usize);
    for (c, r) in chosen.iter().zip(&rejected) {
        if c > r {
            wins += 1;
        } else if c == r {
            ties += 1;
        }
    }
    let accuracy = (wins as f64 + 0.5 * ties as f64) / pairs.len() as f64;
    print_stdout(&format!(
        "{}: pair accuracy {accuracy:.3} on {} pairs ({wins} right, {ties} ties counted half)\n",
        reward.name(),
        pairs.len()
    ))
}
