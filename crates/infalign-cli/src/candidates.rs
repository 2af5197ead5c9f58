//! `infalign candidates`: candidate-set CTRL on real rewards.
//!
//! - `collect`: for each prompt, C candidate replies and K reference replies from the base
//!   policy, scored with a real reward; JSON Lines appended prompt by prompt, so a killed
//!   collection resumes where it stopped (see [`infalign_model::candidates`]).
//! - `exact`: every method's exact optimum over the candidates at matched KL budgets, evaluated
//!   exactly (KL, standard / BoN_N / WoN_N win rates, calibrated KL per prompt and pooled), with
//!   the one-dimensional theory's value beside each; a table, JSON and plots.
//! - `train`: the stochastic RLOO trainer on the candidate set with a sample budget S per
//!   prompt, checkpointed and resumable, evaluated exactly at the end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use infalign_core::candidates::{
    beta_for_kl, evaluate, exact_policy, CandidateEvaluation, CandidateSet, CandidateTrainConfig,
    CandidateTrainer, CandidateTrainerState, Optimizer, Scoring,
};
use infalign_core::estimators::{bootstrap_mean, ConfidenceInterval};
use infalign_core::seed::{derive_seed, Stream};
use infalign_core::theory::{self};
use infalign_core::{KlControl, Procedure};
use infalign_model::bundle::{Bundle, BASE_POLICY};
use infalign_model::candidates::{collect_prompt, Collection, CollectionHeader, FORMAT, VERSION};
use infalign_model::ctrl::prompts::read_prompts;
use infalign_model::ctrl::Decoding;
use infalign_model::RewardSpec;
use infalign_view::chart::{render_svg, Chart, Series, COLORS, KL_AXIS};
use serde::{Deserialize, Serialize};

use crate::args::{DeviceArg, Serving};
use crate::files::{append_line, print_stdout, read_json, write_atomic};
use crate::progress::{items_bar, say, steps_bar};

#[derive(Debug, Args)]
pub struct CandidatesArgs {
    #[command(subcommand)]
    command: CandidatesCommand,
}

#[derive(Debug, Subcommand)]
enum CandidatesCommand {
    /// Sample and score C candidates and K reference replies per prompt (resumable).
    Collect(CollectArgs),
    /// Exact optimum of every method at matched KL, with the theory beside it.
    Exact(ExactArgs),
    /// Stochastic RLOO on the candidate set with S samples per prompt (resumable).
    Train(TrainArgs),
}

pub fn run(args: CandidatesArgs) -> anyhow::Result<()> {
    match args.command {
        CandidatesCommand::Collect(args) => collect(args),
        CandidatesCommand::Exact(args) => exact(args),
        CandidatesCommand::Train(args) => train(args),
    }
}

#[derive(Debug, Args)]
struct CollectArgs {
    /// The base policy's bundle.
    #[arg(long, default_value = "static/default-model")]
    bundle: PathBuf,
    /// Prompts (JSON Lines as `infalign data` writes them).
    #[arg(long)]
    prompts: PathBuf,
    /// Use the first this many prompts.
    #[arg(long, default_value_t = 150)]
    limit: usize,
    /// Reward: `vader`, `linear:PATH`, ... (as `infalign calibrate --reward`).
    #[arg(long, default_value = "vader")]
    reward: String,
    /// C: candidate replies per prompt.
    #[arg(long, default_value_t = 256)]
    c: usize,
    /// K: reference replies per prompt (smaller K use their first K).
    #[arg(long, default_value_t = 128)]
    k: usize,
    /// Longest reply, in tokens.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Rows sampled at once.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed of every sampler stream.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The collection file (JSON Lines); an existing one with the same settings is resumed.
    /// When every prompt is in, a gzip'd copy is written beside it (`FILE.gz`).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

/// The reward as the header records it: a linear model by its file name, not a machine path.
fn recorded_reward(spec: &RewardSpec) -> String {
    match spec {
        RewardSpec::Linear { path } => format!(
            "linear:{}",
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Read a collection (`.jsonl` or `.jsonl.gz`); errors name the file and line.
pub fn read_collection(path: &Path) -> anyhow::Result<Collection> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = if path.extension().is_some_and(|ext| ext == "gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzip'd UTF-8 text", path.display()))?;
        text
    } else {
        String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?
    };
    Ok(Collection::parse(&text, &path.display().to_string())?)
}

/// `contents` gzip'd.
pub fn gzip(contents: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(contents)?;
    Ok(encoder.finish()?)
}

fn collect(args: CollectArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.c >= 2, "--c must be at least 2");
    anyhow::ensure!(args.k >= 1, "--k must be at least 1");
    let bundle = Bundle::read_dir(&args.bundle)?;
    let backend = args.device.resolve()?;
    let base = bundle.named_policy(BASE_POLICY, &backend.device)?;
    let spec: RewardSpec = args.reward.parse()?;
    let reward = spec.load()?;
    let prompts = read_prompts(&args.prompts, args.limit)?;
    let header = CollectionHeader {
        format: FORMAT.into(),
        version: VERSION,
        base_policy_sha256: bundle.manifest.weights.sha256.clone(),
        reward: recorded_reward(&spec),
        prompts: args.prompts.display().to_string(),
        candidates: args.c,
        references: args.k,
        decoding: Decoding {
            max_new_tokens: args.max_new_tokens,
            ..Decoding::default()
        },
        seed: args.seed,
    };
    let origin = args.out.display().to_string();
    let mut done: Vec<usize> = Vec::new();
    if args.out.exists() {
        let existing = read_collection(&args.out)?;
        header.check_same(&existing.header, &origin)?;
        if existing.truncated_tail {
            // Keep every complete line byte for byte; the cut one is sampled again.
            let text = std::fs::read(&args.out)?;
            write_atomic(&args.out, &text[..existing.complete_len])?;
            eprintln!("candidates: {origin}: dropped a line cut short by an earlier stop");
        }
        for entry in &existing.prompts {
            let prompt = prompts.get(entry.index).with_context(|| {
                format!(
                    "{origin}: prompt {} is beyond the {} prompts of {}",
                    entry.index,
                    prompts.len(),
                    args.prompts.display()
                )
            })?;
            if entry.key != infalign_model::candidates::prompt_key(prompt) {
                bail!(
                    "{origin}: prompt {} was collected for another text than line {} of {} \
                     (another prompt file?)",
                    entry.index,
                    entry.index + 1,
                    args.prompts.display()
                );
            }
        }
        done = existing.prompts.iter().map(|p| p.index).collect();
        eprintln!(
            "candidates: resuming {origin}: {} of {} prompts already collected",
            done.len(),
            prompts.len()
        );
    } else {
        if let Some(parent) = args.out.parent() {
            std::fs::create_dir_all(parent).ok();
        }
        write_atomic(&args.out, serde_json::to_string(&header)? + "\n")?;
    }
    let progress = items_bar(prompts.len() as u64, "prompts");
    progress.set_position(done.len() as u64);
    let start = std::time::Instant::now();
    let mut sampled = 0usize;
    for (index, prompt) in prompts.iter().enumerate() {
        if done.contains(&index) {
            continue;
        }
        let entry = pollster::block_on(collect_prompt(
            &base,
            &bundle.tokenizer,
            reward.as_ref(),
            &header,
            index,
            prompt,
            args.batch,
        ))?;
        append_line(&args.out, &serde_json::to_string(&entry)?)?;
        sampled += args.c + args.k;
        progress.inc(1);
        progress.set_message(format!(
            "{:.0} replies/s",
            sampled as f64 / start.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    progress.finish_and_clear();
    let collection = read_collection(&args.out)?;
    let packed = PathBuf::from(format!("{}.gz", args.out.display()));
    let text = std::fs::read(&args.out)?;
    write_atomic(&packed, gzip(&text)?)?;
    eprintln!(
        "candidates: {} prompts x ({} candidates + {} references) in {origin}; gzip'd copy {}",
        collection.prompts.len(),
        args.c,
        args.k,
        packed.display()
    );
    Ok(())
}

/// A method of the comparison: `raw`, a transform spec, or a name the theory engine tunes per
/// KL budget (`exp`, `negexp`, `optimal`: [`Serving::tuned_transform`]).
#[derive(Debug, Clone, PartialEq)]
struct Method(String);

impl Method {
    /// The scoring at `budget` for `serving`.
    fn scoring(&self, serving: Serving, budget: f64) -> anyhow::Result<Scoring> {
        Ok(match serving.tuned_transform(&self.0, budget)? {
            Some(transform) => Scoring::Calibrated(transform),
            None => self.0.parse()?,
        })
    }
}

#[derive(Debug, Args)]
struct ExactArgs {
    /// The collection (`infalign candidates collect`), `.jsonl` or `.jsonl.gz`.
    #[arg(long)]
    data: PathBuf,
    /// Reference replies per prompt that calibrate (the first K of the collection's).
    #[arg(long)]
    k: Option<usize>,
    #[command(flatten)]
    serving: Serving,
    /// Methods: `raw`, `exp` / `negexp` (t tuned per budget by the theory), `optimal`, or a
    /// transform spec (`identity`, `log`, `normexp:12`, ...).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,identity,log,exp,negexp,optimal"
    )]
    methods: Vec<String>,
    /// KL budgets (nats) of the table.
    #[arg(long, value_delimiter = ',', default_value = "0.03,0.1,0.2,0.4")]
    kls: Vec<f64>,
    /// Budgets per curve in the plots (log-spaced up to the largest budget).
    #[arg(long, default_value_t = 16)]
    curve_points: usize,
    /// Output directory: `exact.json`, `exact.md`, plots.
    #[arg(long)]
    out: PathBuf,
}

/// One method at one budget, exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactRow {
    /// The method as given.
    pub method: String,
    /// What it trained on at this budget (a transform spec or `raw`).
    pub scoring: String,
    /// The KL budget (nats).
    pub budget: f64,
    /// The common beta that meets it.
    pub beta: f64,
    /// The exact evaluation (per-prompt detail left out).
    pub kl: f64,
    /// Standard, BoN_N, WoN_N win rates (by raw reward, ties split).
    pub win_rate: theory::WinRates,
    /// Per-prompt mean of the calibrated KL (the theory's axis).
    pub calibrated_kl_mean: f64,
    /// Pooled calibrated KL.
    pub calibrated_kl_pooled: f64,
    /// The theory's win rates for the same transform at the same KL (none for `raw`).
    pub theory: Option<theory::WinRates>,
    /// For calibrated scorings: the score at each calibrated reward u = j / (2K), j = 0..=2K
    /// (every value a mid-rank among K can take), so the row can be recomputed without the
    /// transform's definition (the solved optimal transform is a table).
    pub score_grid: Option<Vec<f64>>,
    /// Per prompt: (standard, headline) win rates, for the paired comparisons.
    #[serde(skip)]
    pub per_prompt: Vec<(f64, f64)>,
}

/// One method against another at one budget, paired over prompts (both optima met the same
/// candidates): the mean difference of the headline win rate with a bootstrap interval over
/// prompts, the resampling of the prompts being the only noise left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedDifference {
    /// The KL budget.
    pub budget: f64,
    /// The method.
    pub method: String,
    /// The method it is compared with.
    pub versus: String,
    /// `method - versus` in the standard win rate.
    pub standard: ConfidenceInterval,
    /// `method - versus` in the procedure's win rate.
    pub headline: ConfidenceInterval,
}

/// `exact.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactReport {
    /// The collection it was computed from.
    pub data: String,
    /// Prompts, candidates per prompt, reference replies per prompt.
    pub prompts: usize,
    /// C.
    pub candidates: usize,
    /// K.
    pub k: usize,
    /// The procedure.
    pub procedure: Procedure,
    /// N.
    pub n: u32,
    /// Every method at every budget of the table.
    pub rows: Vec<ExactRow>,
    /// Every method along the curve budgets (for the plots).
    pub curves: Vec<ExactRow>,
    /// Each method against the baseline (identity, else the first method) at each budget.
    pub paired: Vec<PairedDifference>,
}

/// Paired differences of every method against `versus` at each budget of `rows`.
fn paired_differences(rows: &[ExactRow], versus: &str) -> anyhow::Result<Vec<PairedDifference>> {
    let mut out = Vec::new();
    for base in rows.iter().filter(|r| r.method == versus) {
        for row in rows
            .iter()
            .filter(|r| r.method != versus && r.budget == base.budget)
        {
            let difference = |pick: fn(&(f64, f64)) -> f64| -> anyhow::Result<ConfidenceInterval> {
                let values: Vec<f64> = row
                    .per_prompt
                    .iter()
                    .zip(&base.per_prompt)
                    .map(|(a, b)| pick(a) - pick(b))
                    .collect();
                Ok(bootstrap_mean(
                    &values,
                    0.95,
                    2000,
                    derive_seed(0, Stream::PairedBootstrap, out.len() as u64),
                )?)
            };
            out.push(PairedDifference {
                budget: base.budget,
                method: row.method.clone(),
                versus: versus.to_string(),
                standard: difference(|p| p.0)?,
                headline: difference(|p| p.1)?,
            });
        }
    }
    Ok(out)
}

fn exact_row(
    set: &CandidateSet,
    method: &Method,
    serving: Serving,
    budget: f64,
) -> anyhow::Result<ExactRow> {
    let (procedure, n) = (serving.procedure, serving.n);
    let scoring = method.scoring(serving, budget)?;
    let beta = beta_for_kl(set, &scoring, budget)
        .with_context(|| format!("{} at {budget} nats", method.0))?;
    let policy = exact_policy(set, &scoring, beta)?;
    let evaluation = evaluate(set, &policy, n)?;
    let theory = match &scoring {
        Scoring::Raw => None,
        Scoring::Calibrated(transform) => {
            Some(theory::evaluate_at_kl(transform, n, evaluation.kl)?.win_rate)
        }
    };
    let k = set.k();
    let score_grid = match &scoring {
        Scoring::Raw => None,
        Scoring::Calibrated(_) => Some(
            (0..=2 * k)
                .map(|j| scoring.score(0.0, j as f64 / (2 * k) as f64, k))
                .collect(),
        ),
    };
    let per_prompt = evaluation
        .prompts
        .iter()
        .map(|p| (p.win_rate.standard, headline(&p.win_rate, procedure)))
        .collect();
    Ok(ExactRow {
        per_prompt,
        score_grid,
        method: method.0.clone(),
        scoring: scoring.to_string(),
        budget,
        beta,
        kl: evaluation.kl,
        win_rate: evaluation.win_rate,
        calibrated_kl_mean: evaluation.calibrated_kl_mean,
        calibrated_kl_pooled: evaluation.calibrated_kl_pooled,
        theory,
    })
}

fn headline(rates: &theory::WinRates, procedure: Procedure) -> f64 {
    match procedure {
        Procedure::BestOfN => rates.bon,
        Procedure::WorstOfN => rates.won,
    }
}

fn exact(args: ExactArgs) -> anyhow::Result<()> {
    let collection = read_collection(&args.data)?;
    let set = collection.candidate_set(args.k)?;
    let methods = args
        .methods
        .iter()
        .map(|text| {
            let method = Method(text.trim().to_string());
            // A bad spec is refused before any work, not at its first budget.
            if !Serving::is_tuned(&method.0) {
                method.0.parse::<Scoring>()?;
            }
            Ok(method)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!args.kls.is_empty(), "--kls needs at least one budget");
    let largest = args.kls.iter().copied().fold(0.0, f64::max);
    let curve_budgets = theory::log_spaced(largest / 40.0, largest, args.curve_points.max(2))?;
    let total = methods.len() * (args.kls.len() + curve_budgets.len());
    let progress = items_bar(total as u64, "optima");
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for method in &methods {
        for (budgets, out) in [(&args.kls, &mut rows), (&curve_budgets, &mut curves)] {
            for &budget in budgets {
                out.push(exact_row(&set, method, args.serving, budget)?);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let versus = match methods.iter().find(|m| m.0 == "identity") {
        Some(identity) => identity.0.clone(),
        None => methods[0].0.clone(),
    };
    let paired = paired_differences(&rows, &versus)?;
    let report = ExactReport {
        paired,
        data: args.data.display().to_string(),
        prompts: set.len(),
        candidates: collection.header.candidates,
        k: set.k(),
        procedure: args.serving.procedure,
        n: args.serving.n,
        rows,
        curves,
    };
    std::fs::create_dir_all(&args.out)?;
    write_atomic(
        &args.out.join("exact.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = exact_markdown(&report);
    write_atomic(&args.out.join("exact.md"), &table)?;
    for measure in [Measure::Headline, Measure::Standard] {
        let chart = exact_chart(&report, measure)?;
        write_atomic(
            &args
                .out
                .join(format!("exact-{}.svg", measure.file_name(&report))),
            render_svg(&[chart]),
        )?;
    }
    print_stdout(&table)
}

fn exact_markdown(report: &ExactReport) -> String {
    let mut out = exact_table(report);
    let name = format!("{}_{}", report.procedure, report.n);
    out.push_str(&format!(
        "\nPaired over prompts (95% bootstrap intervals over the {} prompts; the half-width is \
         about the smallest difference this set resolves):\n\n| KL | method - baseline | \
         standard | {name} |\n|---|---|---|---|\n",
        report.prompts
    ));
    for pair in &report.paired {
        let cell = |ci: &ConfidenceInterval| {
            format!("{:+.3} [{:+.3}, {:+.3}]", ci.estimate, ci.lower, ci.upper)
        };
        out.push_str(&format!(
            "| {} | {} - {} | {} | {} |\n",
            pair.budget,
            pair.method,
            pair.versus,
            cell(&pair.standard),
            cell(&pair.headline)
        ));
    }
    out
}

fn exact_table(report: &ExactReport) -> String {
    let name = format!("{}_{}", report.procedure, report.n);
    let mut out = format!(
        "Exact candidate-set optima: {} prompts x {} candidates, K = {}, served with {name}.\n\
         Win rates judged by the raw reward (ties split); theory: the one-dimensional engine for \
         the same transform at the same KL.\n\n\
         | method | trained on | KL | calibrated KL (per prompt / pooled) | standard (theory) | \
         {name} (theory) | gap to theory |\n|---|---|---|---|---|---|---|\n",
        report.prompts, report.candidates, report.k
    );
    for row in &report.rows {
        let theory = |value: Option<f64>| value.map(|v| format!(" ({v:.3})")).unwrap_or_default();
        let measured = headline(&row.win_rate, report.procedure);
        let expected = row.theory.as_ref().map(|t| headline(t, report.procedure));
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} / {:.3} | {:.3}{} | {:.3}{} | {} |\n",
            row.method,
            row.scoring,
            row.kl,
            row.calibrated_kl_mean,
            row.calibrated_kl_pooled,
            row.win_rate.standard,
            theory(row.theory.as_ref().map(|t| t.standard)),
            measured,
            theory(expected),
            expected
                .map(|e| format!("{:+.3}", measured - e))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Measure {
    /// The procedure's own win rate.
    Headline,
    /// The standard win rate.
    Standard,
}

impl Measure {
    fn file_name(self, report: &ExactReport) -> String {
        match self {
            Measure::Headline => format!("{}_{}", report.procedure, report.n),
            Measure::Standard => "standard".into(),
        }
    }

    fn of(self, rates: &theory::WinRates, procedure: Procedure) -> f64 {
        match self {
            Measure::Headline => headline(rates, procedure),
            Measure::Standard => rates.standard,
        }
    }
}

fn exact_chart(report: &ExactReport, measure: Measure) -> anyhow::Result<Chart> {
    let mut series = Vec::new();
    let mut methods: Vec<&str> = Vec::new();
    for row in &report.curves {
        if !methods.contains(&row.method.as_str()) {
            methods.push(&row.method);
        }
    }
    let (mut lo, mut hi) = (0.5f64, 0.5f64);
    let mut largest = 0.0f64;
    for (index, method) in methods.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let rows: Vec<&ExactRow> = report
            .curves
            .iter()
            .filter(|r| r.method == *method)
            .collect();
        let measured: Vec<(f64, f64)> = std::iter::once((0.0, 0.5))
            .chain(
                rows.iter()
                    .map(|r| (r.kl, measure.of(&r.win_rate, report.procedure))),
            )
            .collect();
        let theory: Vec<(f64, f64)> = std::iter::once((0.0, 0.5))
            .chain(rows.iter().filter_map(|r| {
                r.theory
                    .as_ref()
                    .map(|t| (r.kl, measure.of(t, report.procedure)))
            }))
            .collect();
        for &(x, y) in measured.iter().chain(&theory) {
            lo = lo.min(y);
            hi = hi.max(y);
            largest = largest.max(x);
        }
        series.push(Series::line(
            format!("{method} (exact, candidates)"),
            measured,
            color,
            false,
        ));
        if theory.len() > 1 {
            series.push(Series::line(
                format!("{method} (theory)"),
                theory,
                color,
                true,
            ));
        }
        let table: Vec<(f64, f64)> = report
            .rows
            .iter()
            .filter(|r| r.method == *method)
            .map(|r| (r.kl, measure.of(&r.win_rate, report.procedure)))
            .collect();
        series.push(Series::markers(table, color));
    }
    let name = match measure {
        Measure::Headline => format!("{}_{}", report.procedure, report.n),
        Measure::Standard => "standard".into(),
    };
    Ok(Chart {
        id: format!("candidates-{name}"),
        title: format!("{name} win rate: exact optima (solid), theory (dashed)"),
        x_label: KL_AXIS.into(),
        y_label: "win rate".into(),
        x_range: (0.0, largest * 1.02),
        y_range: ((lo - 0.02).max(0.0), (hi + 0.02).min(1.0)),
        series,
        legend_outside: true,
    })
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// The collection (`infalign candidates collect`), `.jsonl` or `.jsonl.gz`.
    #[arg(long)]
    data: PathBuf,
    /// Reference replies per prompt that calibrate (the first K of the collection's).
    #[arg(long)]
    k: Option<usize>,
    /// What to train on: `raw` or a transform spec (`identity`, `normexp:12`, ...).
    #[arg(long, default_value = "identity")]
    method: String,
    /// KL coefficient (the start with --target-kl).
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Hold the mean sampled KL here with the adaptive controller.
    #[arg(long)]
    target_kl: Option<f64>,
    /// The controller: `ziegler` or `log`.
    #[arg(long, default_value = "ziegler")]
    kl_control: KlControl,
    /// The controller's gain.
    #[arg(long, default_value_t = 0.1)]
    kl_rate: f64,
    /// Replies per prompt draw (RLOO group, m >= 2).
    #[arg(long, default_value_t = 4)]
    m: usize,
    /// Prompt draws per step.
    #[arg(long, default_value_t = 16)]
    prompts_per_step: usize,
    /// S: samples per prompt over the run (on average).
    #[arg(long, default_value_t = 80)]
    s: u64,
    /// `adamw` or `sgd`.
    #[arg(long, default_value = "adamw")]
    optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[command(flatten)]
    serving: Serving,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory: `config.json`, `metrics.jsonl`, `state.json` (checkpoint), `result.json`.
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
}

/// `result.json` of a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainResult {
    /// The collection it trained on.
    pub data: String,
    /// Reference replies per prompt that calibrated.
    pub k: usize,
    /// N of the BoN_N / WoN_N win rates.
    pub n: u32,
    /// The run's settings.
    pub config: CandidateTrainConfig,
    /// Steps taken.
    pub steps: u64,
    /// Beta at the end.
    pub beta: f64,
    /// The exact evaluation of the trained policy (per-prompt detail left out).
    pub kl: f64,
    /// Standard, BoN_N, WoN_N win rates.
    pub win_rate: theory::WinRates,
    /// Per-prompt mean calibrated KL.
    pub calibrated_kl_mean: f64,
    /// Pooled calibrated KL.
    pub calibrated_kl_pooled: f64,
    /// The exact optimum of the same scoring at the same KL, for comparison.
    pub exact_at_same_kl: Option<theory::WinRates>,
}

const STATE_FILE: &str = "state.json";
/// The trained policy, gzip'd CSV `prompt_index,candidate_index,probability` (prompts in the
/// collection's order; 13 significant digits, enough to recompute `result.json`'s figures to
/// 1e-12 and a third of the size of every digit).
const POLICY_FILE: &str = "policy.csv.gz";

fn policy_csv(policy: &[Vec<f64>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("prompt_index,candidate_index,probability\n");
    for (prompt, probabilities) in policy.iter().enumerate() {
        for (candidate, p) in probabilities.iter().enumerate() {
            let _ = writeln!(out, "{prompt},{candidate},{p:.12e}");
        }
    }
    out
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let collection = read_collection(&args.data)?;
    let set = collection.candidate_set(args.k)?;
    let scoring: Scoring = args.method.parse()?;
    let optimizer = match args.optimizer.as_str() {
        "adamw" => Optimizer::AdamW {
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
        },
        "sgd" => Optimizer::Sgd {
            learning_rate: args.lr,
        },
        other => bail!("--optimizer {other:?}: expected adamw or sgd"),
    };
    let config = CandidateTrainConfig {
        scoring,
        beta: args.beta,
        target_kl: args.target_kl,
        kl_control: args.kl_control,
        kl_rate: args.kl_rate,
        samples_per_prompt: args.m,
        prompts_per_step: args.prompts_per_step,
        samples_per_prompt_total: args.s,
        optimizer,
        seed: args.seed,
    };
    config.validate()?;
    std::fs::create_dir_all(&args.out)?;
    let state_path = args.out.join(STATE_FILE);
    let metrics_path = args.out.join("metrics.jsonl");
    let mut trainer = if state_path.exists() {
        let state: CandidateTrainerState = read_json(&state_path)?;
        let trainer = CandidateTrainer::resume(set.clone(), config.clone(), state)
            .with_context(|| format!("resuming {}", state_path.display()))?;
        eprintln!(
            "candidates: resuming {} at step {}",
            args.out.display(),
            trainer.step_index()
        );
        trainer
    } else {
        if metrics_path.exists() {
            std::fs::remove_file(&metrics_path)?;
        }
        CandidateTrainer::new(set.clone(), config.clone())?
    };
    write_atomic(
        &args.out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let total = trainer.total_steps();
    let progress = steps_bar(total, trainer.step_index());
    while !trainer.finished() {
        let metrics = trainer.step()?;
        append_line(&metrics_path, &serde_json::to_string(&metrics)?)?;
        progress.set_position(trainer.step_index());
        if trainer.step_index() % args.checkpoint_every.max(1) == 0 {
            write_atomic(&state_path, serde_json::to_string(trainer.state())?)?;
        }
    }
    write_atomic(&state_path, serde_json::to_string(trainer.state())?)?;
    progress.finish_and_clear();
    let evaluation: CandidateEvaluation = trainer.evaluate(args.serving.n)?;
    let exact_at_same_kl = if evaluation.kl > 1e-9 {
        let beta = beta_for_kl(&set, &config.scoring, evaluation.kl)?;
        Some(
            evaluate(
                &set,
                &exact_policy(&set, &config.scoring, beta)?,
                args.serving.n,
            )?
            .win_rate,
        )
    } else {
        None
    };
    let result = TrainResult {
        data: args.data.display().to_string(),
        k: set.k(),
        n: args.serving.n,
        config,
        steps: trainer.step_index(),
        beta: trainer.beta(),
        kl: evaluation.kl,
        win_rate: evaluation.win_rate,
        calibrated_kl_mean: evaluation.calibrated_kl_mean,
        calibrated_kl_pooled: evaluation.calibrated_kl_pooled,
        exact_at_same_kl,
    };
    write_atomic(
        &args.out.join("result.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    write_atomic(
        &args.out.join(POLICY_FILE),
        gzip(policy_csv(&trainer.policy()).as_bytes())?,
    )?;
    say(
        &progress,
        format!(
            "candidates: {} after {} steps: KL {:.4}, standard {:.3}, {}_{} {:.3} (exact optimum at \
             that KL: {})",
            args.method,
            result.steps,
            result.kl,
            result.win_rate.standard,
            args.serving.procedure,
            args.serving.n,
            headline(&result.win_rate, args.serving.procedure),
            result
                .exact_at_same_kl
                .map(|w| format!("{:.3}", headline(&w, args.serving.procedure)))
                .unwrap_or_else(|| "-".into())
        ),
    );
    Ok(())
}
