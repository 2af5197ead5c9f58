//! `infalign sweep`: CTRL runs for several methods and betas (or KL budgets), each evaluated on
//! held-out prompts, then the methods compared at matched KL: each method's measured points (KL,
//! win rate) are joined by straight lines and read off at common KL values inside every method's
//! range (no extrapolation). Every evaluation meets the same prompts and reference replies, so
//! two methods are also compared paired: at each matched KL, each prompt's win rate is read off
//! the same straight lines and the per-prompt differences bootstrapped over prompts, with the
//! smallest difference the comparison could have detected; with KL budgets, runs of different
//! methods at the same budget are compared directly the same way. Writes `comparison.md`,
//! `comparison.json` and one SVG per measure and KL axis with the measured points, their
//! intervals and the theory engine's curves.
//!
//! Each run is a subprocess (`infalign ctrl`, then `infalign eval`) in `OUT/runs/NAME/`; a
//! finished run or evaluation is reused and an interrupted one resumes, so rerunning the same
//! sweep continues where it stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use infalign_core::estimators::ConfidenceInterval;
use infalign_core::{Procedure, Transform};
use infalign_model::ctrl::{
    check_paired, paired_difference, paired_mean, per_prompt_win_rates, EvalReport, EvalSettings,
    KlControl, PromptSamples, TrainingReward,
};
use serde::Serialize;

use crate::args::{DeviceArg, Serving, TrainingPrompts};
use crate::eval::read_eval;
use crate::files::{print_stdout, read_json, write_atomic};
use infalign_view::chart::{render_svg, transform_curve, Chart, Series, COLORS, KL_AXIS};

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    training: TrainingPrompts,
    /// The calibration set of the training prompts.
    #[arg(long)]
    calibration: PathBuf,
    /// Held-out prompts for the evaluation.
    #[arg(long)]
    eval_prompts: PathBuf,
    /// Distinct held-out prompts used.
    #[arg(long, default_value_t = 64)]
    eval_limit: usize,
    /// Methods: `--transform` values of `infalign ctrl` (comma-separated); with `--target-kls`,
    /// bare `exp`, `negexp` and `optimal` are tuned for each budget by the theory engine.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,identity,log,normexp:12"
    )]
    methods: Vec<String>,
    /// KL coefficients, one run per method and beta (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.02,0.05,0.15")]
    betas: Vec<f64>,
    /// Instead of fixed betas: KL budgets in nats, one run per method and budget, each holding
    /// its KL near the budget with the adaptive controller. Runs of different methods at the same
    /// budget are then also compared pairwise (paired bootstrap over prompts).
    #[arg(long, value_delimiter = ',', conflicts_with = "betas")]
    target_kls: Vec<f64>,
    /// How the `--target-kls` runs adapt beta: `ziegler` or `log` (`infalign ctrl --kl-control`).
    #[arg(long, default_value = "ziegler")]
    kl_control: KlControl,
    /// Starting beta of every `--target-kls` run (default: `infalign ctrl`'s, the theory
    /// engine's beta for each calibrated method and budget). With `--kl-control log`, a common
    /// start keeps a saturating transform's tiny theory beta from overshooting the budget.
    #[arg(long, requires = "target_kls")]
    start_beta: Option<f64>,
    #[command(flatten)]
    serving: Serving,
    /// Optimiser steps per run.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Responses per prompt in training (RLOO group).
    #[arg(long, default_value_t = 4)]
    m: usize,
    /// Prompts per training step.
    #[arg(long, default_value_t = 8)]
    prompts_per_step: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Responses per prompt and side in the evaluation.
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// Longest response in tokens (training and evaluation).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// KL values of the matched comparison (default: three spread over the common range).
    #[arg(long, value_delimiter = ',')]
    matched_kl: Vec<f64>,
    /// Seed of every run and evaluation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

/// What sets a run's KL: a fixed coefficient, or a budget the adaptive controller holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Knob {
    Beta(f64),
    TargetKl(f64),
}

impl Knob {
    /// `infalign ctrl`'s flag and value.
    fn flag(self) -> [String; 2] {
        match self {
            Knob::Beta(beta) => ["--beta".into(), beta.to_string()],
            Knob::TargetKl(kl) => ["--target-kl".into(), kl.to_string()],
        }
    }
}

impl std::fmt::Display for Knob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Knob::Beta(beta) => write!(f, "beta {beta}"),
            Knob::TargetKl(kl) => write!(f, "KL budget {kl}"),
        }
    }
}

/// A run's directory name: the method with `:` dropped, and beta or the KL budget.
fn run_name(method: &str, knob: Knob) -> String {
    let method: String = method
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    match knob {
        Knob::Beta(beta) => format!("{method}-beta{beta}"),
        Knob::TargetKl(kl) => format!("{method}-kl{kl}"),
    }
}

fn infalign(args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the infalign binary")?;
    eprintln!("sweep: $ infalign {}", args.join(" "));
    // The subcommand's tables go to this command's standard error: standard output carries
    // only the comparison.
    let status = Command::new(&exe)
        .args(args)
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("`infalign {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// One evaluated run.
#[derive(Debug, Clone, Serialize)]
struct Point {
    method: String,
    knob: Knob,
    report: EvalReport,
    /// The KL of its calibrated rewards (the report's, repeated at the top of each run in
    /// `comparison.json`).
    calibrated_kl: Option<ConfidenceInterval>,
    /// The evaluation's per-prompt samples (for paired comparisons; empty where an evaluation
    /// kept none).
    #[serde(skip)]
    samples: Vec<PromptSamples>,
    #[serde(skip)]
    settings: EvalSettings,
}

/// A measure the comparison reads from an evaluation report.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Standard,
    Procedure(Procedure, u32),
}

impl Measure {
    fn name(self) -> String {
        match self {
            Measure::Standard => "standard".into(),
            Measure::Procedure(procedure, n) => format!("{procedure}_{n}"),
        }
    }

    /// The procedure and N the measure's win rate is of (plain sampling: BoN_1).
    fn procedure(self) -> (Procedure, u32) {
        match self {
            Measure::Standard => (Procedure::BestOfN, 1),
            Measure::Procedure(procedure, n) => (procedure, n),
        }
    }

    fn of(self, report: &EvalReport) -> Option<ConfidenceInterval> {
        match self {
            Measure::Standard => Some(report.standard),
            Measure::Procedure(procedure, n) => report.win_rate(procedure, n),
        }
    }
}

/// Linear interpolation of `(x, estimate, lower, upper)` points (sorted by x) at `x`; `None`
/// outside their range.
fn interpolate(points: &[(f64, f64, f64, f64)], x: f64) -> Option<(f64, f64, f64)> {
    let first = points.first()?;
    let last = points.last()?;
    if x < first.0 || x > last.0 {
        return None;
    }
    if points.len() == 1 {
        return Some((first.1, first.2, first.3));
    }
    let window = points.windows(2).find(|w| x <= w[1].0)?;
    let (a, b) = (window[0], window[1]);
    let f = if b.0 > a.0 {
        (x - a.0) / (b.0 - a.0)
    } else {
        0.0
    };
    let mix = |p: f64, q: f64| p + f * (q - p);
    Some((mix(a.1, b.1), mix(a.2, b.2), mix(a.3, b.3)))
}

/// `(kl, estimate, lower, upper)` of a method's runs, sorted by the KL `axis` shows (runs
/// without that KL left out).
fn curve(
    points: &[Point],
    method: &str,
    measure: Measure,
    axis: KlAxis,
) -> Vec<(f64, f64, f64, f64)> {
    let mut curve: Vec<_> = points
        .iter()
        .filter(|p| p.method == method)
        .filter_map(|p| {
            let ci = measure.of(&p.report)?;
            Some((axis.of(p)?.estimate, ci.estimate, ci.lower, ci.upper))
        })
        .collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    curve
}

/// The KL values of the matched comparison: the given ones, or three spread over the range
/// that every method covers.
fn matched_values(points: &[Point], methods: &[String], given: &[f64]) -> Vec<f64> {
    matched_on(points, methods, given, KlAxis::Policy)
}

/// [`matched_values`] on the KL `axis` shows.
fn matched_on(points: &[Point], methods: &[String], given: &[f64], axis: KlAxis) -> Vec<f64> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let ranges: Vec<(f64, f64)> = methods
        .iter()
        .filter_map(|method| {
            let kls: Vec<f64> = points
                .iter()
                .filter(|p| &p.method == method)
                .filter_map(|p| axis.of(p).map(|kl| kl.estimate))
                .collect();
            let lo = kls.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = kls.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo <= hi).then_some((lo, hi))
        })
        .collect();
    let lo = ranges.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
    let hi = ranges.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Vec::new();
    }
    if hi - lo < 1e-9 {
        return vec![lo];
    }
    (1..=3).map(|i| lo + (hi - lo) * i as f64 / 4.0).collect()
}

pub fn run(args: SweepArgs) -> anyhow::Result<()> {
    let procedure = args.serving.procedure;
    anyhow::ensure!(!args.methods.is_empty(), "--methods is empty");
    let knobs: Vec<Knob> = if args.target_kls.is_empty() {
        args.betas.iter().map(|&b| Knob::Beta(b)).collect()
    } else {
        args.target_kls
            .iter()
            .map(|&kl| Knob::TargetKl(kl))
            .collect()
    };
    anyhow::ensure!(!knobs.is_empty(), "--betas is empty");
    for method in &args.methods {
        // With KL budgets, bare `exp`, `negexp` and `optimal` are tuned per budget by ctrl.
        let tuned = matches!(method.as_str(), "exp" | "negexp" | "optimal");
        if tuned && !args.target_kls.is_empty() {
            continue;
        }
        method.parse::<TrainingReward>().with_context(|| {
            format!(
                "--methods: {method:?} (give exp and negexp their t, or pass --target-kls to \
                 have the theory engine tune t for each budget; `infalign theory` prints the \
                 best t for each N and KL budget)"
            )
        })?;
    }
    let mut points = Vec::new();
    for method in &args.methods {
        for &knob in &knobs {
            let dir = args.out.join("runs").join(run_name(method, knob));
            if !dir.join("bundle/manifest.json").exists() {
                let mut ctrl = vec![
                    "ctrl".to_string(),
                    "--bundle".into(),
                    path_arg(&args.training.bundle),
                    "--prompts".into(),
                    path_arg(args.training.prompts()?),
                    "--limit".into(),
                    args.training.limit.to_string(),
                    "--calibration".into(),
                    path_arg(&args.calibration),
                    "--transform".into(),
                    method.clone(),
                    "--procedure".into(),
                    args.serving.procedure.to_string(),
                    "--n".into(),
                    args.serving.n.to_string(),
                    "--m".into(),
                    args.m.to_string(),
                    "--prompts-per-step".into(),
                    args.prompts_per_step.to_string(),
                    "--steps".into(),
                    args.steps.to_string(),
                    "--lr".into(),
                    args.lr.to_string(),
                    "--max-new-tokens".into(),
                    args.max_new_tokens.to_string(),
                    "--seed".into(),
                    args.seed.to_string(),
                    "--device".into(),
                    args.device.device.clone(),
                    "--out".into(),
                    path_arg(&dir),
                ];
                ctrl.extend(knob.flag());
                if let Knob::TargetKl(_) = knob {
                    ctrl.extend(["--kl-control".into(), args.kl_control.to_string()]);
                    if let Some(beta) = args.start_beta {
                        ctrl.extend(["--beta".into(), beta.to_string()]);
                    }
                }
                if dir.join("checkpoint/state.json").exists() {
                    ctrl.push("--resume".into());
                }
                infalign(&ctrl)?;
            }
            let eval_dir = dir.join("eval");
            if !eval_dir.join("eval.json").exists() {
                infalign(&[
                    "eval".to_string(),
                    "--bundle".into(),
                    path_arg(&dir.join("bundle")),
                    "--prompts".into(),
                    path_arg(&args.eval_prompts),
                    "--limit".into(),
                    args.eval_limit.to_string(),
                    "--samples".into(),
                    args.samples.to_string(),
                    "--n".into(),
                    args.serving.n.to_string(),
                    "--max-new-tokens".into(),
                    args.max_new_tokens.to_string(),
                    "--seed".into(),
                    args.seed.to_string(),
                    "--label".into(),
                    format!("{method}, {knob}"),
                    "--device".into(),
                    args.device.device.clone(),
                    "--out".into(),
                    path_arg(&eval_dir),
                ])?;
            }
            let evaluation = read_eval(&eval_dir)?;
            // Per-prompt samples pair the runs: required to compare runs at the same KL
            // budget, used at matched KL where every evaluation kept them.
            let samples_file = eval_dir.join("samples.json");
            let samples: Vec<PromptSamples> =
                if args.target_kls.is_empty() && !samples_file.exists() {
                    Vec::new()
                } else {
                    read_json(&samples_file)?
                };
            points.push(Point {
                method: method.clone(),
                knob,
                calibrated_kl: evaluation.report.calibrated_kl,
                report: evaluation.report,
                samples,
                settings: evaluation.settings,
            });
        }
    }

    let other = match procedure {
        Procedure::BestOfN => Procedure::WorstOfN,
        Procedure::WorstOfN => Procedure::BestOfN,
    };
    // The served procedure first; the other one is reported beside it.
    let measures = [
        Measure::Standard,
        Measure::Procedure(procedure, args.serving.n),
        Measure::Procedure(other, args.serving.n),
    ];
    let matched = matched_values(&points, &args.methods, &args.matched_kl);
    let mut markdown = format!(
        "# Sweep: {} at matched KL\n\nEach cell: win rate against pi_ref [95% bootstrap interval \
         over prompts], read off the straight line through the method's measured points at that \
         KL (no extrapolation: `-` outside the method's range).\n\n",
        args.methods.join(", ")
    );
    if matched.is_empty() {
        markdown.push_str(
            "No KL value lies inside every method's measured range: widen `--betas` or pass \
             `--matched-kl`.\n\n",
        );
    }
    let mut comparison = Vec::new();
    for measure in measures {
        markdown.push_str(&format!(
            "## {} win rate\n\n| KL (nats) | {} |\n|---|{}\n",
            measure.name(),
            args.methods.join(" | "),
            "---|".repeat(args.methods.len())
        ));
        for &kl in &matched {
            let mut row = format!("| {kl:.3} |");
            for method in &args.methods {
                let value = interpolate(&curve(&points, method, measure, KlAxis::Policy), kl);
                match value {
                    Some((estimate, lower, upper)) => {
                        row.push_str(&format!(" {estimate:.3} [{lower:.3}, {upper:.3}] |"));
                        comparison.push(serde_json::json!({
                            "measure": measure.name(), "kl": kl, "method": method,
                            "win_rate": estimate, "lower": lower, "upper": upper,
                        }));
                    }
                    None => row.push_str(" - |"),
                }
            }
            markdown.push_str(&row);
            markdown.push('\n');
        }
        markdown.push('\n');
    }
    if points.iter().all(|p| !p.samples.is_empty()) {
        // At the same policy KL (what a run spends), and at the same per-prompt calibrated KL
        // (the theory's axis: what moved the reward's distribution).
        for axis in [KlAxis::Policy, KlAxis::CalibratedPerPrompt] {
            let given = if axis == KlAxis::Policy {
                args.matched_kl.as_slice()
            } else {
                &[]
            };
            let at = matched_on(&points, &args.methods, given, axis);
            if !at.is_empty() {
                markdown.push_str(&matched_paired_table(
                    &points,
                    &args.methods,
                    &at,
                    axis,
                    &measures,
                    &mut comparison,
                )?);
            }
        }
    }
    if !args.target_kls.is_empty() {
        markdown.push_str(&paired_table(
            &points,
            &args.methods,
            &knobs,
            &measures,
            &mut comparison,
        )?);
    }
    markdown.push_str(&runs_table(&points, &measures));
    std::fs::create_dir_all(&args.out)?;
    write_atomic(&args.out.join("comparison.md"), &markdown)?;
    write_atomic(
        &args.out.join("comparison.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "methods": args.methods, "runs_at": knobs, "procedure": procedure, "n": args.serving.n,
            "matched_kl": matched, "comparison": comparison, "runs": points,
        }))?,
    )?;
    for measure in &measures[..2] {
        let measure = *measure;
        for axis in KlAxis::ALL {
            let svg = render_svg(&[comparison_chart(&points, &args.methods, measure, axis)?]);
            write_atomic(
                &args
                    .out
                    .join(format!("{}-{}.svg", axis.file_stem(), measure.name())),
                &svg,
            )?;
        }
    }
    print_stdout(&markdown)
}

/// The table of every run: its KLs, signal share, win rates and reward.
fn runs_table(points: &[Point], measures: &[Measure]) -> String {
    let interval =
        |ci: &ConfidenceInterval| format!("{:.3} [{:.3}, {:.3}]", ci.estimate, ci.lower, ci.upper);
    let mut out = String::from(
        "## Runs\n\nKL (k1): the policy's KL from pi_ref over whole responses. Calibrated KL: \
         the KL of its calibrated rewards' distribution from the uniform one pi_ref gives \
         (their ranks among the reference responses), i.e. the part of the KL that moved what \
         the reward sees; pooled over prompts (bias-corrected by the bootstrap) and per prompt \
         (each prompt's ranks in 8 groups, Miller-Madow corrected, averaged: the theory's axis; \
         pooling understates it). Signal share: the per-prompt calibrated KL over the KL (k1). \
         Intervals: 95 % bootstrap over prompts.\n\n| method | run | KL (k1) | calibrated \
         KL, pooled | calibrated KL, per prompt | signal share |",
    );
    for measure in measures {
        out.push_str(&format!(" {} |", measure.name()));
    }
    out.push_str(" reward |\n|");
    out.push_str(&"---|".repeat(7 + measures.len()));
    out.push('\n');
    for point in points {
        let r = &point.report;
        let optional = |ci: Option<ConfidenceInterval>| ci.as_ref().map_or("-".into(), interval);
        let share = r.calibrated_kl_per_prompt.map_or("-".into(), |c| {
            format!("{:.0} %", 100.0 * c.estimate / r.kl.estimate)
        });
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {share} |",
            point.method,
            point.knob,
            interval(&r.kl),
            optional(r.calibrated_kl),
            optional(r.calibrated_kl_per_prompt),
        ));
        for measure in measures {
            out.push_str(&format!(" {} |", optional(measure.of(r))));
        }
        out.push_str(&format!(" {:.3} |\n", r.policy_reward.estimate));
    }
    out
}

/// The smallest difference a comparison with standard error `se` detects with 80 % power in a
/// two-sided test at 5 % (z = 1.96 + 0.84).
pub const DETECTABLE_Z: f64 = 2.8;

/// Each prompt's win rate under `measure` at KL `kl` on `axis`, read off the straight line
/// through `method`'s runs (sorted by that KL) like the unpaired table; `None` outside their
/// range.
fn interpolated_rates(
    points: &[Point],
    method: &str,
    measure: Measure,
    axis: KlAxis,
    kl: f64,
) -> anyhow::Result<Option<Vec<f64>>> {
    let (procedure, n) = measure.procedure();
    let mut runs: Vec<(f64, &Point)> = points
        .iter()
        .filter(|p| p.method == method)
        .filter_map(|p| Some((axis.of(p)?.estimate, p)))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return Ok(None);
    };
    if kl < first.0 || kl > last.0 {
        return Ok(None);
    }
    let ((xa, a), (xb, b)) = match runs.windows(2).find(|w| kl <= w[1].0) {
        Some(window) => (window[0], window[1]),
        None => (*first, *first),
    };
    let f = if xb > xa { (kl - xa) / (xb - xa) } else { 0.0 };
    let ra = per_prompt_win_rates(&a.samples, procedure, n as usize)?;
    let rb = per_prompt_win_rates(&b.samples, procedure, n as usize)?;
    Ok(Some(
        ra.iter().zip(&rb).map(|(x, y)| x + f * (y - x)).collect(),
    ))
}

/// Pairwise differences between methods at each matched KL: per prompt, each method's win rate
/// read off its line, the differences bootstrapped over prompts; with the smallest difference
/// detectable (80 % power, 5 % two-sided). Each row is also appended to `comparison`.
fn matched_paired_table(
    points: &[Point],
    methods: &[String],
    matched: &[f64],
    axis: KlAxis,
    measures: &[Measure],
    comparison: &mut Vec<serde_json::Value>,
) -> anyhow::Result<String> {
    for pair in points.windows(2) {
        check_paired(&pair[0].samples, &pair[1].samples).with_context(|| {
            format!(
                "pairing {} {} with {} {}",
                pair[0].method, pair[0].knob, pair[1].method, pair[1].knob
            )
        })?;
    }
    let (title, which) = match axis {
        KlAxis::Policy => ("matched KL", "the same policy KL"),
        KlAxis::Calibrated => (
            "matched pooled calibrated KL",
            "the same pooled calibrated KL",
        ),
        KlAxis::CalibratedPerPrompt => (
            "matched calibrated KL (the theory's axis)",
            "the same per-prompt calibrated KL",
        ),
    };
    let mut out = format!(
        "## Paired differences at {title}\n\nWin rate of the first method minus the \
         second's at {which}: each prompt's win rate read off the method's line through its \
         runs, the per-prompt differences averaged [95% paired bootstrap interval over \
         prompts]. Detectable: the smallest difference this evaluation finds with 80 % power at \
         5 % two-sided ({DETECTABLE_Z} standard errors).\n\n"
    );
    for (m, &measure) in measures.iter().enumerate() {
        out.push_str(&format!(
            "### {} win rate\n\n| KL (nats) | A - B | difference | detectable |\n|---|---|---|---|\n",
            measure.name()
        ));
        for (k, &kl) in matched.iter().enumerate() {
            for (i, a) in methods.iter().enumerate() {
                for (j, b) in methods.iter().enumerate().skip(i + 1) {
                    let (Some(rates_a), Some(rates_b)) = (
                        interpolated_rates(points, a, measure, axis, kl)?,
                        interpolated_rates(points, b, measure, axis, kl)?,
                    ) else {
                        continue;
                    };
                    let differences: Vec<f64> =
                        rates_a.iter().zip(&rates_b).map(|(x, y)| x - y).collect();
                    let stream =
                        (2 + axis as u64) << 32 | (((m * 64 + k) * 64 + i) * 64 + j) as u64;
                    let difference = paired_mean(&differences, &points[0].settings, stream)?;
                    let detectable = DETECTABLE_Z * difference.std_error;
                    out.push_str(&format!(
                        "| {kl:.3} | {a} - {b} | {:+.3} [{:+.3}, {:+.3}] | {detectable:.3} |\n",
                        difference.estimate, difference.lower, difference.upper,
                    ));
                    comparison.push(serde_json::json!({
                        "measure": measure.name(), "axis": axis.file_stem(), "matched_kl": kl, "method": a,
                        "baseline": b, "difference": difference.estimate,
                        "lower": difference.lower, "upper": difference.upper,
                        "std_error": difference.std_error, "detectable": detectable,
                    }));
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Pairwise differences between methods at each KL budget (paired bootstrap over prompts), as
/// markdown; each difference is also appended to `comparison`.
fn paired_table(
    points: &[Point],
    methods: &[String],
    knobs: &[Knob],
    measures: &[Measure],
    comparison: &mut Vec<serde_json::Value>,
) -> anyhow::Result<String> {
    let mut out = String::from(
        "## Paired differences at each KL budget\n\nWin rate of the first method minus the \
         second's, both against pi_ref on the same prompts and reference responses: mean over \
         prompts [95% paired bootstrap interval]. An interval that excludes 0 is a difference \
         this evaluation resolves. The measured KLs of the two runs are given beside it: the \
         comparison is fair only where they are close.\n\n",
    );
    for &measure in measures {
        let (procedure, n) = measure.procedure();
        out.push_str(&format!(
            "### {} win rate\n\n| KL budget | A - B | difference | KL of A, B |\n|---|---|---|---|\n",
            measure.name()
        ));
        for (k, &knob) in knobs.iter().enumerate() {
            let Knob::TargetKl(budget) = knob else {
                continue;
            };
            for (i, a) in methods.iter().enumerate() {
                for (j, b) in methods.iter().enumerate().skip(i + 1) {
                    let find = |method: &String| {
                        points
                            .iter()
                            .find(|p| &p.method == method && p.knob == knob)
                    };
                    let (Some(pa), Some(pb)) = (find(a), find(b)) else {
                        continue;
                    };
                    let stream = ((k * 64 + i) * 64 + j) as u64;
                    let difference = paired_difference(
                        &pa.samples,
                        &pb.samples,
                        procedure,
                        n as usize,
                        &pa.settings,
                        stream,
                    )
                    .with_context(|| format!("comparing {a} with {b} at {knob}"))?;
                    out.push_str(&format!(
                        "| {budget} | {a} - {b} | {:+.3} [{:+.3}, {:+.3}] | {:.2}, {:.2} |\n",
                        difference.estimate,
                        difference.lower,
                        difference.upper,
                        pa.report.kl.estimate,
                        pb.report.kl.estimate
                    ));
                    comparison.push(serde_json::json!({
                        "measure": measure.name(), "kl_budget": budget, "method": a,
                        "baseline": b, "difference": difference.estimate,
                        "lower": difference.lower, "upper": difference.upper,
                        "kl": pa.report.kl.estimate, "baseline_kl": pb.report.kl.estimate,
                    }));
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Which KL a chart's x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KlAxis {
    /// The policy's KL over whole responses (what the budgets hold).
    Policy,
    /// The KL of its calibrated rewards' distribution, pooled over prompts.
    Calibrated,
    /// The same per prompt, averaged: what the theory's curves are drawn against.
    CalibratedPerPrompt,
}

impl KlAxis {
    const ALL: [KlAxis; 3] = [
        KlAxis::Policy,
        KlAxis::Calibrated,
        KlAxis::CalibratedPerPrompt,
    ];

    fn of(self, point: &Point) -> Option<ConfidenceInterval> {
        match self {
            KlAxis::Policy => Some(point.report.kl),
            KlAxis::Calibrated => point.calibrated_kl,
            KlAxis::CalibratedPerPrompt => point.report.calibrated_kl_per_prompt,
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            KlAxis::Policy => "winrate-vs-kl",
            KlAxis::Calibrated => "winrate-vs-calibrated-kl",
            KlAxis::CalibratedPerPrompt => "winrate-vs-calibrated-kl-per-prompt",
        }
    }

    fn label(self) -> &'static str {
        match self {
            KlAxis::Policy => KL_AXIS,
            KlAxis::Calibrated => "KL of the calibrated rewards from uniform, pooled (nats)",
            KlAxis::CalibratedPerPrompt => {
                "KL of the calibrated rewards from uniform, per prompt (nats)"
            }
        }
    }
}

/// Measured points per method with the theory engine's curve of its transform (raw has none),
/// against the policy's KL or against the KL of its calibrated rewards.
fn comparison_chart(
    points: &[Point],
    methods: &[String],
    measure: Measure,
    axis: KlAxis,
) -> anyhow::Result<Chart> {
    let floor = match axis {
        KlAxis::Policy => 0.1,
        KlAxis::Calibrated | KlAxis::CalibratedPerPrompt => 0.01,
    };
    let max_kl = points
        .iter()
        .filter_map(|p| axis.of(p).map(|kl| kl.upper))
        .fold(floor, f64::max)
        * 1.1;
    let mut series = Vec::new();
    for (i, method) in methods.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let measured = curve(points, method, measure, axis);
        series.push(Series::measured(
            format!("{method} (measured)"),
            measured.iter().map(|p| (p.0, p.1)).collect(),
            measured.iter().map(|p| (p.2, p.3)).collect(),
            color,
        ));
        if let Ok(TrainingReward::Calibrated(transform)) = method.parse::<TrainingReward>() {
            let (procedure, n) = measure.procedure();
            let theory_transform = match transform {
                Transform::Optimal(_) => continue,
                other => other,
            };
            series.push(Series::line(
                format!("{method} (theory)"),
                transform_curve(&theory_transform, procedure, n, max_kl)?,
                color,
                true,
            ));
        }
    }
    let ys = series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.error_bars.iter().flatten().flat_map(|b| [b.0, b.1]))
            .collect::<Vec<_>>()
    });
    let (lo, hi) = ys.fold((0.5f64, 0.5f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    Ok(Chart {
        id: format!("sweep-{}", measure.name()),
        title: format!("{} win rate against pi_ref", measure.name()),
        x_label: axis.label().into(),
        y_label: "win rate".into(),
        x_range: (0.0, max_kl),
        y_range: ((lo - 0.02).max(0.0), (hi + 0.02).min(1.0)),
        series,
        legend_outside: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_stays_inside_the_measured_range() {
        let points = [(0.5, 0.6, 0.55, 0.65), (1.5, 0.8, 0.7, 0.9)];
        assert_eq!(interpolate(&points, 0.4), None);
        assert_eq!(interpolate(&points, 1.6), None);
        let (estimate, lower, upper) = interpolate(&points, 1.0).unwrap();
        assert!((estimate - 0.7).abs() < 1e-12);
        assert!((lower - 0.625).abs() < 1e-12 && (upper - 0.775).abs() < 1e-12);
        assert_eq!(interpolate(&points[..1], 0.5), Some((0.6, 0.55, 0.65)));
    }

    /// A run of `method` whose every reply has log ratio `kl` and rewards `policy` per prompt,
    /// against the fixed references `reference`.
    fn point(method: &str, kl: f64, policy: &[[f64; 4]], reference: &[[f64; 4]]) -> Point {
        let settings = EvalSettings {
            samples: 4,
            ns: vec![2],
            decoding: None,
            seed: 5,
            resamples: 300,
            level: 0.95,
        };
        let samples: Vec<PromptSamples> = policy
            .iter()
            .zip(reference)
            .map(|(p, r)| PromptSamples {
                policy_rewards: p.to_vec(),
                reference_rewards: r.to_vec(),
                log_ratios: vec![kl; 4],
            })
            .collect();
        let report = infalign_model::ctrl::summarise(&samples, &settings).unwrap();
        Point {
            method: method.into(),
            knob: Knob::Beta(kl),
            calibrated_kl: report.calibrated_kl,
            report,
            samples,
            settings,
        }
    }

    #[test]
    fn matched_pairs_read_each_prompts_rate_off_the_lines_and_say_what_they_resolve() {
        let reference = [
            [0.1, 0.4, 0.5, 0.9],
            [0.2, 0.3, 0.6, 0.7],
            [0.0, 0.5, 0.8, 1.0],
        ];
        let low = [
            [0.05, 0.2, 0.35, 0.45],
            [0.1, 0.2, 0.4, 0.5],
            [0.3, 0.4, 0.6, 0.9],
        ];
        let high = [
            [0.55, 0.75, 0.85, 0.95],
            [0.5, 0.8, 0.9, 0.6],
            [0.7, 0.9, 1.1, 0.2],
        ];
        let points = vec![
            point("a", 0.2, &low, &reference),
            point("a", 1.0, &high, &reference),
            point("b", 0.4, &low, &reference),
            point("b", 0.8, &high, &reference),
        ];
        let methods = ["a".to_string(), "b".to_string()];
        let measure = Measure::Procedure(Procedure::BestOfN, 2);
        let mut comparison = Vec::new();
        let table = matched_paired_table(
            &points,
            &methods,
            &[0.6],
            KlAxis::Policy,
            &[measure],
            &mut comparison,
        )
        .unwrap();
        // At KL 0.6 both lines sit halfway between their two runs, so the per-prompt
        // difference is exactly zero and nothing is resolved; the other KL values lie outside
        // b's range and give no row.
        assert_eq!(comparison.len(), 1, "{table}");
        let row = &comparison[0];
        assert!(row["difference"].as_f64().unwrap().abs() < 1e-12, "{row}");
        assert!(table.contains("| 0.600 | a - b | +0.000"), "{table}");
        // At KL 0.5, a is 3/8 of the way up its line, b 1/4 of the way up its: their
        // difference is 1/8 of (high - low), prompt by prompt.
        let mut comparison = Vec::new();
        matched_paired_table(
            &points,
            &methods,
            &[0.5],
            KlAxis::Policy,
            &[measure],
            &mut comparison,
        )
        .unwrap();
        let rates = |runs: &[[f64; 4]; 3]| {
            let samples = point("x", 0.0, runs, &reference).samples;
            per_prompt_win_rates(&samples, Procedure::BestOfN, 2).unwrap()
        };
        let (lo, hi) = (rates(&low), rates(&high));
        let expected = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 8.0).sum::<f64>() / 3.0;
        let row = &comparison[0];
        assert!(
            (row["difference"].as_f64().unwrap() - expected).abs() < 1e-12,
            "{row}"
        );
        let se = row["std_error"].as_f64().unwrap();
        assert!(se > 0.0);
        assert!((row["detectable"].as_f64().unwrap() - DETECTABLE_Z * se).abs() < 1e-12);
        // On the theory's axis the lines run through each run's per-prompt calibrated KL: give
        // the runs the policy KLs' values there, and swap their policy KLs, and the same
        // comparison comes out.
        let mut on_calibrated = points.clone();
        for point in &mut on_calibrated {
            let mut calibrated = point.report.kl;
            point.report.kl.estimate = 5.0 - point.report.kl.estimate;
            calibrated.estimate = 5.0 - point.report.kl.estimate;
            point.report.calibrated_kl_per_prompt = Some(calibrated);
        }
        let mut again = Vec::new();
        matched_paired_table(
            &on_calibrated,
            &methods,
            &[0.5],
            KlAxis::CalibratedPerPrompt,
            &[measure],
            &mut again,
        )
        .unwrap();
        assert!((again[0]["difference"].as_f64().unwrap() - expected).abs() < 1e-12);
        assert_eq!(again[0]["axis"], "winrate-vs-calibrated-kl-per-prompt");
        // Evaluations that met different references cannot be paired.
        let mut other = points.clone();
        other[3] = point("b", 0.8, &high, &[[0.0, 0.1, 0.2, 0.3]; 3]);
        let error = matched_paired_table(
            &other,
            &methods,
            &[0.6],
            KlAxis::Policy,
            &[measure],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("prompt 0 met different reference"),
            "{error:#}"
        );
    }

    #[test]
    fn run_names_are_safe_directory_names() {
        assert_eq!(run_name("exp:12", Knob::Beta(0.05)), "exp-12-beta0.05");
        assert_eq!(
            run_name("optimal:bon:4:3", Knob::Beta(0.1)),
            "optimal-bon-4-3-beta0.1"
        );
        assert_eq!(run_name("negexp:6", Knob::TargetKl(0.5)), "negexp-6-kl0.5");
    }
}
