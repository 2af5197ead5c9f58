//! `infalign export`: one bundle with the base policy and aligned variants from CTRL runs, each
//! with how it was trained (settings, reward, calibration) and what its evaluation measured;
//! the browser lab loads such a bundle from `static/default-model`. The model file of a linear
//! reward (and its licence) becomes a part of the bundle, checked like the weights.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use infalign_model::bundle::{Alignment, Bundle, Evaluation, Precision};
use infalign_model::ctrl::{CalibrationSettings, CtrlConfig};

use crate::ctrl::{RUN_CALIBRATION_FILE, RUN_CONFIG_FILE, TRAINED_POLICY};
use crate::eval::read_eval;
use crate::files::read_json;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The base policy's bundle (the one the runs were trained from, at any precision).
    #[arg(long, default_value = "static/default-model")]
    base: PathBuf,
    /// An aligned policy: `NAME=RUN_DIR`, a finished `infalign ctrl` run (its `bundle/`,
    /// `config.json` and, when present, `eval/eval.json`). Repeat for each variant. Without
    /// any, the base bundle is written again as it is, in the current format (variants kept).
    #[arg(long = "variant", value_name = "NAME=RUN_DIR")]
    variants: Vec<String>,
    /// Storage of the weights: `f32`, or `f16` (half the size; outputs move by ~1e-3).
    /// Default: f32 with variants, else the base bundle's own.
    #[arg(long)]
    precision: Option<Precision>,
    /// Refuse to write a bundle larger than this many megabytes (10^6 bytes).
    #[arg(long, default_value_t = 16.0)]
    max_mb: f64,
    /// Output directory; a bundle already there is replaced (stale variant files removed).
    #[arg(long)]
    out: PathBuf,
}

/// `NAME=RUN_DIR`.
fn parse_variant(text: &str) -> anyhow::Result<(String, PathBuf)> {
    match text.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => bail!("--variant {text:?}: expected NAME=RUN_DIR"),
    }
}

/// The evaluation of a run, when `RUN/eval/eval.json` exists.
fn read_evaluation(run: &Path) -> anyhow::Result<Option<Evaluation>> {
    let path = run.join("eval").join("eval.json");
    if !path.exists() {
        return Ok(None);
    }
    let mut evaluation = read_eval(&run.join("eval"))?;
    if evaluation.policy.as_deref() != Some(TRAINED_POLICY) {
        bail!(
            "{}: evaluates policy {:?}, not the run's trained policy {TRAINED_POLICY:?}",
            path.display(),
            evaluation.policy
        );
    }
    if evaluation.prompts.is_empty() {
        evaluation.prompts = "(not recorded)".to_string();
    }
    // The bundle records what was measured, not where the run lay on the exporting machine.
    evaluation.bundle = None;
    evaluation.reward = None;
    Ok(Some(evaluation))
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let variants = args
        .variants
        .iter()
        .map(|text| parse_variant(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let device = infalign_model::backend::cpu_device();
    let mut bundle = Bundle::read_dir(&args.base)?;
    if variants.is_empty() {
        // Rewrite in the current format: reward models become checked parts, specs get
        // their one meaning; weights are kept as they are unless --precision says otherwise.
        if let Some(precision) = args.precision {
            bundle.set_precision(precision, &device)?;
        }
        bundle.write_dir(&args.out)?;
        eprintln!(
            "export: rewrote {} as {} ({}; manifest version {})",
            args.base.display(),
            args.out.display(),
            bundle.policy_names().join(", "),
            infalign_model::bundle::FORMAT_VERSION
        );
        return Ok(());
    }
    if !bundle.manifest.variants.is_empty() {
        eprintln!(
            "export: {} already has variants ({}); keeping only its base policy",
            args.base.display(),
            bundle.policy_names()[1..].join(", ")
        );
        bundle.clear_variants();
    }
    // Runs are matched against the base as it was read (a base stored in f16 matches a run
    // trained from its f32 original), before its precision changes.
    let source = bundle.clone();
    bundle.set_precision(args.precision.unwrap_or_default(), &device)?;

    for (name, run) in &variants {
        let run_bundle_dir = run.join("bundle");
        let run_bundle = Bundle::read_dir(&run_bundle_dir)
            .with_context(|| format!("{}: not a finished ctrl run", run.display()))?;
        let run_base = run_bundle.policy(&device)?;
        if source.base_sha256_of(&run_base)? != source.manifest.weights.sha256 {
            bail!(
                "{} was trained from another base policy than {} (their weights differ)",
                run.display(),
                args.base.display()
            );
        }
        let policy = run_bundle
            .named_policy(TRAINED_POLICY, &device)
            .with_context(|| run_bundle_dir.display().to_string())?;
        let training = read_json::<CtrlConfig>(&run.join(RUN_CONFIG_FILE))?.upgrade_legacy_specs();
        let reward = run_bundle.manifest.reward.clone().with_context(|| {
            format!(
                "{}: the run's bundle records no reward",
                run_bundle_dir.display()
            )
        })?;
        let calibration_path = run.join(RUN_CALIBRATION_FILE);
        let calibration: Option<CalibrationSettings> = if calibration_path.exists() {
            Some(read_json(&calibration_path)?)
        } else {
            None
        };
        let evaluation = read_evaluation(run)?;
        if evaluation.is_none() {
            eprintln!(
                "export: {name}: {} has no eval/eval.json; exported without an evaluation",
                run.display()
            );
        }
        let metrics = run_bundle
            .manifest
            .variants
            .iter()
            .find(|v| v.name == TRAINED_POLICY)
            .map(|v| v.metrics.clone())
            .unwrap_or_default();
        // The reward models travel in the bundle, checked like its weights; the manifest names
        // them by file, never by a path of this machine.
        let reward = bundle.add_reward_model(&reward)?;
        let calibration = match calibration {
            Some(settings) => Some(CalibrationSettings {
                reward: bundle.add_reward_model(&settings.reward)?,
                ..settings
            }),
            None => None,
        };
        eprintln!(
            "export: {name}: {} (reward {reward}, training reward {})",
            run.display(),
            training.reward
        );
        let alignment = Alignment {
            training,
            reward,
            calibration,
            evaluation,
        };
        bundle.add_variant(name, &policy, metrics, Some(alignment))?;
    }

    let total = bundle.total_bytes()?;
    let megabytes = total as f64 / 1e6;
    if megabytes > args.max_mb {
        bail!(
            "the bundle would be {megabytes:.1} MB, over --max-mb {}: store the weights in half \
             precision (--precision f16) or export fewer variants; nothing was written",
            args.max_mb
        );
    }
    bundle.write_dir(&args.out)?;
    eprintln!(
        "export: wrote {} ({}; {megabytes:.1} MB, weights in {})",
        args.out.display(),
        bundle.policy_names().join(", "),
        bundle.manifest.precision
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_variant;

    #[test]
    fn variant_arguments_need_a_name_and_a_directory() {
        let (name, dir) = parse_variant("ctrl-exp=runs/a=b").unwrap();
        assert_eq!(
            (name.as_str(), dir.to_str().unwrap()),
            ("ctrl-exp", "runs/a=b")
        );
        for bad in ["ctrl-exp", "=runs/a", "ctrl-exp=", ""] {
            let message = parse_variant(bad).unwrap_err().to_string();
            assert!(message.contains("NAME=RUN_DIR"), "{bad:?}: {message}");
        }
    }
}
