//! `infalign theory`: tables and plots from the exact theory engine.
//!
//! - `infalign theory [--n 1,2,4,8,32] [--kl 0.1,0.25,0.5,1] [--json] [--out-dir DIR] [--no-plots]`
//!   prints, for BoN and WoN, each N and each KL budget, the win rate of identity, log, the best
//!   exp / negexp (with its t) and the optimal transform, as a markdown table or (with `--json`)
//!   an array of rows `{"procedure", "n", "kl", "transform", "t", "win_rate"}`; it also writes the
//!   table (theory-table.md, theory-table.json) and SVG plots (win rate versus KL, one per N, and
//!   the transform shapes) into the output directory.
//! - `infalign theory point --transform SPEC --lambda L --n N [--json]` evaluates one tilted
//!   policy and prints `{"kl", "expected_u", "win_rate": {"standard", "bon", "won"}}`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use infalign_core::theory::{self, BestT, OptimalSolution};
use infalign_core::{ExpFamily, Procedure, Transform};
use infalign_view::explorer;
use serde_json::{json, Value};

use crate::files::{print_stdout, write_atomic};
use infalign_view::chart::{render_svg, transform_curve, Chart, Series, COLORS, KL_AXIS};

/// Exact win-rate-versus-KL theory in calibrated space.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TheoryArgs {
    #[command(subcommand)]
    command: Option<TheoryCommand>,
    #[command(flatten)]
    table: TableArgs,
}

#[derive(Debug, Subcommand)]
enum TheoryCommand {
    /// Evaluate one tilted policy: KL, E[U] and the standard / BoN_N / WoN_N win rates.
    Point(PointArgs),
}

/// Options of the table (the default action of `infalign theory`).
#[derive(Debug, Args)]
struct TableArgs {
    /// Values of N (comma-separated).
    #[arg(long = "n", value_delimiter = ',', default_values_t = vec![1u32, 2, 4, 8, 32])]
    n: Vec<u32>,
    /// KL budgets in nats (comma-separated).
    #[arg(long = "kl", value_delimiter = ',', default_values_t = vec![0.1f64, 0.25, 0.5, 1.0])]
    kl: Vec<f64>,
    /// Print the table as a JSON array of rows instead of markdown.
    #[arg(long)]
    json: bool,
    /// Directory for the SVG plots and the table files.
    #[arg(long, default_value = "theory-out")]
    out_dir: PathBuf,
    /// Do not write plots or table files.
    #[arg(long)]
    no_plots: bool,
    /// Largest KL (nats) on the plots' x axis.
    #[arg(long, default_value_t = 2.0)]
    plot_max_kl: f64,
}

#[derive(Debug, Args)]
struct PointArgs {
    /// Transform spec: identity, log, exp:T, negexp:T, normexp:T, normnegexp:T, or
    /// optimal:bon:N:L / optimal:won:N:L.
    #[arg(long)]
    transform: Transform,
    /// lambda = 1/beta (>= 0).
    #[arg(long)]
    lambda: f64,
    /// N for the BoN / WoN win rates.
    #[arg(long = "n", default_value_t = 1)]
    n: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TheoryArgs) -> anyhow::Result<()> {
    match args.command {
        Some(TheoryCommand::Point(point)) => run_point(point),
        None => run_table(args.table),
    }
}

fn run_point(args: PointArgs) -> anyhow::Result<()> {
    let evaluation = theory::evaluate(&args.transform, args.lambda, args.n)
        .with_context(|| format!("evaluating {} at lambda = {}", args.transform, args.lambda))?;
    if args.json {
        let value = json!({
            "kl": evaluation.kl,
            "expected_u": evaluation.expected_u,
            "win_rate": {
                "standard": evaluation.win_rate.standard,
                "bon": evaluation.win_rate.bon,
                "won": evaluation.win_rate.won,
            }
        });
        println!("{}", serde_json::to_string(&value)?);
    } else {
        println!("transform   {}", args.transform);
        println!("lambda      {}", args.lambda);
        println!("KL          {:.9} nats", evaluation.kl);
        println!("E[U]        {:.9}", evaluation.expected_u);
        println!("standard    {:.9}", evaluation.win_rate.standard);
        println!("BoN_{:<3}     {:.9}", args.n, evaluation.win_rate.bon);
        println!("WoN_{:<3}     {:.9}", args.n, evaluation.win_rate.won);
    }
    Ok(())
}

/// One cell of the table.
struct Row {
    procedure: Procedure,
    n: u32,
    kl: f64,
    transform: &'static str,
    t: Option<f64>,
    win_rate: f64,
}

impl Row {
    fn to_json(&self) -> Value {
        json!({
            "procedure": self.procedure.as_str(),
            "n": self.n,
            "kl": self.kl,
            "transform": self.transform,
            "t": self.t,
            "win_rate": self.win_rate,
        })
    }
}

const TRANSFORM_NAMES: [&str; 5] = ["identity", "log", "exp", "negexp", "optimal"];

/// Everything computed for one (procedure, N), reused by the plots.
struct Block {
    procedure: Procedure,
    n: u32,
    rows: Vec<Row>,
    best_exp: Vec<BestT>,
    best_negexp: Vec<BestT>,
}

fn compute_block(procedure: Procedure, n: u32, budgets: &[f64]) -> anyhow::Result<Block> {
    let context = |what: &str| format!("{what} for {procedure} N = {n}");
    let mut identity = Vec::new();
    let mut log = Vec::new();
    let mut best_exp = Vec::new();
    let mut best_negexp = Vec::new();
    for &kl in budgets {
        identity.push(
            theory::evaluate_at_kl(&Transform::Identity, n, kl)
                .with_context(|| context("identity"))?
                .win_rate_for(procedure),
        );
        log.push(
            theory::evaluate_at_kl(&Transform::Log, n, kl)
                .with_context(|| context("log"))?
                .win_rate_for(procedure),
        );
        best_exp.push(
            theory::best_t(ExpFamily::Exp, procedure, n, kl)
                .with_context(|| context("best exp"))?,
        );
        best_negexp.push(
            theory::best_t(ExpFamily::NegExp, procedure, n, kl)
                .with_context(|| context("best negexp"))?,
        );
    }
    let optimal: Vec<OptimalSolution> = theory::optimal_envelope(procedure, n, budgets)
        .with_context(|| context("optimal envelope"))?;
    let mut rows = Vec::new();
    for (i, &kl) in budgets.iter().enumerate() {
        let row = |transform, t, win_rate| Row {
            procedure,
            n,
            kl,
            transform,
            t,
            win_rate,
        };
        rows.push(row("identity", None, identity[i]));
        rows.push(row("log", None, log[i]));
        rows.push(row("exp", Some(best_exp[i].t), best_exp[i].win_rate));
        rows.push(row(
            "negexp",
            Some(best_negexp[i].t),
            best_negexp[i].win_rate,
        ));
        rows.push(row("optimal", None, optimal[i].win_rate));
    }
    Ok(Block {
        procedure,
        n,
        rows,
        best_exp,
        best_negexp,
    })
}

fn validate_table_args(args: &TableArgs) -> anyhow::Result<()> {
    if args.n.is_empty() {
        bail!("--n needs at least one value");
    }
    if let Some(n) = args.n.iter().find(|&&n| n == 0 || n > 64) {
        bail!("--n value {n} is out of range: N must be between 1 and 64");
    }
    if args.kl.is_empty() {
        bail!("--kl needs at least one budget");
    }
    if let Some(kl) = args.kl.iter().find(|kl| !(kl.is_finite() && **kl > 0.0)) {
        bail!("--kl value {kl} is not a positive number of nats");
    }
    if !(args.plot_max_kl.is_finite() && args.plot_max_kl > 0.0) {
        bail!(
            "--plot-max-kl {} is not a positive number of nats",
            args.plot_max_kl
        );
    }
    Ok(())
}

fn run_table(args: TableArgs) -> anyhow::Result<()> {
    validate_table_args(&args)?;
    let mut blocks = Vec::new();
    for procedure in Procedure::ALL {
        for &n in &args.n {
            eprintln!("theory: {procedure} N = {n} ...");
            blocks.push(compute_block(procedure, n, &args.kl)?);
        }
    }
    let rows: Vec<&Row> = blocks.iter().flat_map(|b| b.rows.iter()).collect();
    let json_text = serde_json::to_string_pretty(&Value::Array(
        rows.iter().map(|row| row.to_json()).collect(),
    ))?;
    let markdown = markdown_table(&blocks, &args.kl);
    if args.json {
        print_stdout(&format!("{json_text}\n"))?;
    } else {
        print_stdout(&markdown)?;
    }
    if !args.no_plots {
        std::fs::create_dir_all(&args.out_dir)
            .with_context(|| format!("creating {}", args.out_dir.display()))?;
        write_atomic(&args.out_dir.join("theory-table.md"), &markdown)?;
        write_atomic(&args.out_dir.join("theory-table.json"), &json_text)?;
        write_plots(&args, &blocks)?;
        eprintln!(
            "theory: wrote table and plots to {}",
            args.out_dir.display()
        );
    }
    Ok(())
}

fn markdown_table(blocks: &[Block], budgets: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| procedure | N | KL (nats) | identity | log | best exp (t) | best negexp (t) | optimal |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for block in blocks {
        for (i, &kl) in budgets.iter().enumerate() {
            let cells = &block.rows[i * TRANSFORM_NAMES.len()..(i + 1) * TRANSFORM_NAMES.len()];
            let cell = |row: &Row| match row.t {
                Some(t) => format!("{:.4} (t = {})", row.win_rate, format_t(t)),
                None => format!("{:.4}", row.win_rate),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                if block.procedure == Procedure::BestOfN {
                    "BoN"
                } else {
                    "WoN"
                },
                block.n,
                kl,
                cell(&cells[0]),
                cell(&cells[1]),
                cell(&cells[2]),
                cell(&cells[3]),
                cell(&cells[4]),
            );
        }
    }
    out
}

fn format_t(t: f64) -> String {
    if t >= 100.0 {
        format!("{t:.0}")
    } else if t >= 10.0 {
        format!("{t:.1}")
    } else {
        format!("{t:.2}")
    }
}

// ---------------------------------------------------------------------------------------------
// Plots

fn write_plots(args: &TableArgs, blocks: &[Block]) -> anyhow::Result<()> {
    let max_kl = args.plot_max_kl;
    // The t shown on the plots is the best t at the budget closest to the middle of the list.
    let middle = args.kl.len() / 2;
    for &n in &args.n {
        let mut charts = Vec::new();
        for procedure in Procedure::ALL {
            let Some(block) = blocks.iter().find(|b| b.procedure == procedure && b.n == n) else {
                continue;
            };
            let t_exp = block.best_exp[middle].t;
            let t_negexp = block.best_negexp[middle].t;
            let mut series = Vec::new();
            let curves: [(String, Transform, bool); 4] = [
                ("identity".into(), Transform::Identity, false),
                ("log".into(), Transform::Log, false),
                (
                    format!("exp (t = {})", format_t(t_exp)),
                    Transform::NormExp { t: t_exp },
                    false,
                ),
                (
                    format!("negexp (t = {})", format_t(t_negexp)),
                    Transform::NormNegExp { t: t_negexp },
                    false,
                ),
            ];
            for (i, (label, transform, dashed)) in curves.into_iter().enumerate() {
                series.push(Series::line(
                    label,
                    transform_curve(&transform, procedure, n, max_kl)?,
                    COLORS[i],
                    dashed,
                ));
            }
            let optimal = explorer::optimal_curve(procedure, n, max_kl, 40)?;
            series.push(Series::line("optimal".into(), optimal, "#000000", true));
            let y_max = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.5f64, f64::max);
            charts.push(Chart {
                id: format!("winrate-{procedure}"),
                title: format!(
                    "{} win rate, N = {n}",
                    if procedure == Procedure::BestOfN {
                        "Best-of-N"
                    } else {
                        "Worst-of-N"
                    }
                ),
                x_label: KL_AXIS.into(),
                y_label: "win rate vs reference".into(),
                x_range: (0.0, max_kl),
                y_range: (0.5, (y_max + 0.02).min(1.0)),
                series,
                legend_outside: false,
            });
        }
        let svg = render_svg(&charts);
        write_atomic(&args.out_dir.join(format!("winrate-vs-kl-n{n}.svg")), &svg)?;
    }
    write_atomic(
        &args.out_dir.join("transform-shapes.svg"),
        render_svg(&[shapes_chart()?]),
    )?;
    Ok(())
}

fn shapes_chart() -> anyhow::Result<Chart> {
    let mut series = Vec::new();
    let mut add = |label: String, transform: &Transform, color, dashed| {
        series.push(Series::line(
            label,
            explorer::rescaled_shape(transform, 201),
            color,
            dashed,
        ));
    };
    add("identity".into(), &Transform::Identity, COLORS[0], false);
    add(
        "log (rescaled on [e^-5, 1])".into(),
        &Transform::Log,
        COLORS[1],
        false,
    );
    for (i, t) in [4.0, 12.0].into_iter().enumerate() {
        let color = COLORS[2 + i];
        add(
            format!("exp (t = {t})"),
            &Transform::NormExp { t },
            color,
            false,
        );
        add(
            format!("negexp (t = {t})"),
            &Transform::NormNegExp { t },
            color,
            true,
        );
    }
    let optima = explorer::Optima::solve(4, explorer::Regularisation::KlBudget(0.5))?;
    for (procedure, solution, color) in [
        (Procedure::BestOfN, &optima.bon, "#000000"),
        (Procedure::WorstOfN, &optima.won, "#7f7f7f"),
    ] {
        add(
            format!("optimal {procedure}_4 at 0.5 nats"),
            &solution.transform,
            color,
            true,
        );
    }
    Ok(explorer::shapes_frame(series))
}
