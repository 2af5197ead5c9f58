//! `infalign export`: one bundle with the base policy and aligned variants from CTRL runs, each
//! with how it was trained (settings, reward, calibration) and what its evaluation measured;
//! the browser lab loads such a bundle from `static/default-model`. The model file of a linear
//! reward (and its licence) is copied in beside the weights, where the browser lab reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use infalign_model::bundle::{Alignment, Bundle, Evaluation, Precision};
use infalign_model::ctrl::{CalibrationSettings, CtrlConfig};
use infalign_model::RewardSpec;

use crate::ctrl::{EvalFile, RUN_CALIBRATION_FILE, RUN_CONFIG_FILE, TRAINED_POLICY};
use crate::files::read_json;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The base policy's bundle (the one the runs were trained from, at any precision).
    #[arg(long, default_value = "static/default-model")]
    base: PathBuf,
    /// An aligned policy: `NAME=RUN_DIR`, a finished `infalign ctrl` run (its `bundle/`,
    /// `config.json` and, when present, `eval/eval.json`). Repeat for each variant.
    #[arg(long = "variant", value_name = "NAME=RUN_DIR", required = true)]
    variants: Vec<String>,
    /// Storage of the weights: `f32`, or `f16` (half the size; outputs move by ~1e-3).
    #[arg(long, default_value = "f32")]
    precision: Precision,
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
    let document = EvalFile::read(&run.join("eval"))?;
    if document.policy != TRAINED_POLICY {
        bail!(
            "{}: evaluates policy {:?}, not the run's trained policy {TRAINED_POLICY:?}",
            path.display(),
            document.policy
        );
    }
    Ok(Some(Evaluation {
        prompts: document
            .prompts
            .unwrap_or_else(|| "(not recorded)".to_string()),
        settings: document.settings,
        report: document.report,
    }))
}

/// The headline numbers of an evaluation, for the variant's `metrics`.
fn evaluation_metrics(evaluation: &Evaluation) -> BTreeMap<String, f64> {
    let report = &evaluation.report;
    let mut metrics = BTreeMap::from([
        ("eval_kl".to_string(), report.kl.estimate),
        (
            "eval_standard_win_rate".to_string(),
            report.standard.estimate,
        ),
    ]);
    for rate in &report.procedures {
        metrics.insert(
            format!("eval_{}_{}_win_rate", rate.procedure, rate.n),
            rate.win_rate.estimate,
        );
    }
    if let Some(calibrated) = &report.calibrated_kl {
        metrics.insert("eval_calibrated_kl".to_string(), calibrated.estimate);
    }
    metrics
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let variants = args
        .variants
        .iter()
        .map(|text| parse_variant(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let device = infalign_model::backend::cpu_device();
    let mut bundle = Bundle::read_dir(&args.base)?;
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
    bundle.set_precision(args.precision, &device)?;

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
        let training: CtrlConfig = read_json(&run.join(RUN_CONFIG_FILE))?;
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
        let mut metrics = run_bundle
            .manifest
            .variants
            .iter()
            .find(|v| v.name == TRAINED_POLICY)
            .map(|v| v.metrics.clone())
            .unwrap_or_default();
        if let Some(evaluation) = &evaluation {
            metrics.extend(evaluation_metrics(evaluation));
        }
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

    let reward_files = reward_files(&bundle)?;
    let total = bundle.total_bytes()?
        + reward_files
            .iter()
            .map(|(_, bytes)| bytes.len() as u64)
            .sum::<u64>();
    let megabytes = total as f64 / 1e6;
    if megabytes > args.max_mb {
        bail!(
            "the bundle would be {megabytes:.1} MB, over --max-mb {}: store the weights in half \
             precision (--precision f16) or export fewer variants; nothing was written",
            args.max_mb
        );
    }
    bundle.write_dir(&args.out)?;
    for (name, bytes) in &reward_files {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    remove_stale_parts(&args.out, &bundle)?;
    eprintln!(
        "export: wrote {} ({}; {megabytes:.1} MB, weights in {})",
        args.out.display(),
        bundle.policy_names().join(", "),
        bundle.manifest.precision
    );
    Ok(())
}

/// The model files of the linear rewards the variants name (`linear:PATH`), with the licence
/// beside each (`PATH` with the extension `LICENSE`) when there is one, as `(file name,
/// contents)`: the browser lab reads a linear reward from the file of that name in the bundle.
fn reward_files(bundle: &Bundle) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let specs = bundle
        .manifest
        .variants
        .iter()
        .filter_map(|v| v.alignment.as_ref())
        .flat_map(|a| std::iter::once(&a.reward).chain(a.calibration.as_ref().map(|c| &c.reward)));
    for spec in specs {
        let RewardSpec::Linear { path } = spec else {
            continue;
        };
        for (source, required) in [
            (path.clone(), true),
            (path.with_extension("LICENSE"), false),
        ] {
            let Some(name) = source.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if files.iter().any(|(known, _)| *known == name) || (!required && !source.exists()) {
                continue;
            }
            let bytes = std::fs::read(&source)
                .with_context(|| format!("reading the reward model {}", source.display()))?;
            files.push((name, bytes));
        }
    }
    Ok(files)
}

/// Remove `policy-*.bpk` files in `dir` that the bundle just written there does not list (left
/// by an earlier export with other variants).
fn remove_stale_parts(dir: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    let listed: Vec<&str> = bundle
        .manifest
        .variants
        .iter()
        .map(|v| v.weights.file.as_str())
        .collect();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with("policy-")
            && name.ends_with(".bpk")
            && !listed.contains(&name.as_str());
        if stale {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
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
