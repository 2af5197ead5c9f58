//! The theory explorer's model: its settings (with the URL query form that makes a view
//! shareable) and the figures it draws from the theory engine.
//!
//! The browser lab holds a [`Settings`] in a signal and renders the charts built here; keeping
//! the model in this crate lets native tests check it, and lets the CLI draw the same figures.
//!
//! The exponential transforms are used in their normalised forms (normexp, normnegexp): the same
//! policies as exp(t) and negexp(t) (a rescaled Phi is a rescaled beta), but with Phi in [0, 1], so
//! one beta means a comparable strength for identity, exp and negexp.

use crate::chart::{Chart, Series, WinRateCurves, COLORS, KL_AXIS};
use crate::procedure_label;
use infalign_core::error::invalid;
use infalign_core::theory::{self, OptimalSolution, PolicyEvaluation, TiltedPolicy};
use infalign_core::Result;
use infalign_core::{Procedure, Transform};

/// Largest N the explorer offers.
pub const N_MAX: u32 = 64;
/// Range of the t sliders: the range [`theory::best_t`] searches.
pub const T_RANGE: (f64, f64) = (theory::T_MIN, theory::T_MAX);
/// Range of the KL budget (nats); the upper end is also the win-rate charts' x range.
pub const KL_RANGE: (f64, f64) = (0.01, 4.0);
/// Range of beta = 1/lambda.
pub const BETA_RANGE: (f64, f64) = (0.001, 10.0);
/// Lambdas per win-rate curve.
pub const CURVE_POINTS: usize = 24;
/// KL budgets per optimal envelope.
pub const ENVELOPE_POINTS: usize = 24;
/// Grid points of the shape and density charts.
const GRID_POINTS: usize = 161;

/// How strongly the policy is held to the reference: a KL budget that each transform spends
/// exactly (the paper's comparison), or one beta for all of them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Regularisation {
    /// Each transform at the lambda whose tilted policy has this KL (nats).
    KlBudget(f64),
    /// lambda = 1/beta for every transform.
    Beta(f64),
}

/// The policies the explorer draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    /// Calibrated identity, Phi(u) = u.
    Identity,
    /// Phi(u) = log u (BoN distillation).
    Log,
    /// exp(t u), for Best-of-N.
    Exp,
    /// -exp(-t u), for Worst-of-N.
    NegExp,
    /// The solved optimal transform for BoN_N.
    OptimalBon,
    /// The solved optimal transform for WoN_N.
    OptimalWon,
}

impl Policy {
    /// Every policy, in drawing order.
    pub const ALL: [Policy; 6] = [
        Policy::Identity,
        Policy::Log,
        Policy::Exp,
        Policy::NegExp,
        Policy::OptimalBon,
        Policy::OptimalWon,
    ];

    /// The name used in URLs, `data-series` attributes and element ids.
    pub fn key(self) -> &'static str {
        match self {
            Policy::Identity => "identity",
            Policy::Log => "log",
            Policy::Exp => "exp",
            Policy::NegExp => "negexp",
            Policy::OptimalBon => "optimal-bon",
            Policy::OptimalWon => "optimal-won",
        }
    }

    /// Parses [`Policy::key`].
    pub fn from_key(key: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.key() == key)
    }

    /// The solved optimum's procedure, for the two optimal policies.
    pub fn optimal_procedure(self) -> Option<Procedure> {
        match self {
            Policy::OptimalBon => Some(Procedure::BestOfN),
            Policy::OptimalWon => Some(Procedure::WorstOfN),
            _ => None,
        }
    }

    /// Line colour.
    pub fn color(self) -> &'static str {
        match self {
            Policy::Identity => COLORS[0],
            Policy::Log => COLORS[1],
            Policy::Exp => COLORS[2],
            Policy::NegExp => COLORS[3],
            Policy::OptimalBon => "#000000",
            Policy::OptimalWon => "#7f7f7f",
        }
    }
}

/// Everything the explorer's controls set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// N of Best-of-N and Worst-of-N.
    pub n: u32,
    /// Steepness of exp(t u).
    pub t_exp: f64,
    /// Steepness of -exp(-t u).
    pub t_negexp: f64,
    /// KL budget or beta.
    pub regularisation: Regularisation,
    /// The policy whose densities are drawn.
    pub inspect: Policy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            n: 4,
            t_exp: 10.0,
            t_negexp: 10.0,
            regularisation: Regularisation::KlBudget(1.0),
            inspect: Policy::Exp,
        }
    }
}

/// `value` if it is finite and within `lo..=hi`, else an error naming `name`.
pub(crate) fn check_range(name: &'static str, value: f64, (lo, hi): (f64, f64)) -> Result<f64> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            name,
            value,
            &format!("must be between {lo} and {hi}"),
        ))
    }
}

impl Settings {
    /// Checks every field against the explorer's ranges.
    pub fn validate(&self) -> Result<()> {
        if !(1..=N_MAX).contains(&self.n) {
            return Err(invalid(
                "n",
                self.n,
                &format!("N must be between 1 and {N_MAX}"),
            ));
        }
        check_range("t_exp", self.t_exp, T_RANGE)?;
        check_range("t_negexp", self.t_negexp, T_RANGE)?;
        match self.regularisation {
            Regularisation::KlBudget(kl) => check_range("kl", kl, KL_RANGE)?,
            Regularisation::Beta(beta) => check_range("beta", beta, BETA_RANGE)?,
        };
        Ok(())
    }

    /// Reads settings from a URL query (`n=4&t_exp=10&t_negexp=10&kl=1&inspect=exp`, or
    /// `beta=0.1` instead of `kl`; a leading `?` is allowed). Keys it does not know are left to
    /// the rest of the page. A value that does not parse or is out of range is replaced by the
    /// default, with a message naming the key and the value.
    pub fn from_query(query: &str) -> (Settings, Vec<String>) {
        let mut settings = Settings::default();
        let mut problems = Vec::new();
        let query = query.strip_prefix('?').unwrap_or(query);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut number = |name: &'static str, range: (f64, f64)| -> Option<f64> {
                match value.parse::<f64>() {
                    Ok(v) => match check_range(name, v, range) {
                        Ok(v) => Some(v),
                        Err(error) => {
                            problems.push(format!("ignored {key}={value}: {error}"));
                            None
                        }
                    },
                    Err(_) => {
                        problems.push(format!("ignored {key}={value}: not a number"));
                        None
                    }
                }
            };
            match key {
                "n" => {
                    if let Some(n) = number("n", (1.0, N_MAX as f64)) {
                        if n.fract() == 0.0 {
                            settings.n = n as u32;
                        } else {
                            problems.push(format!("ignored n={value}: N must be a whole number"));
                        }
                    }
                }
                "t_exp" => settings.t_exp = number("t_exp", T_RANGE).unwrap_or(settings.t_exp),
                "t_negexp" => {
                    settings.t_negexp = number("t_negexp", T_RANGE).unwrap_or(settings.t_negexp)
                }
                "kl" => {
                    if let Some(kl) = number("kl", KL_RANGE) {
                        settings.regularisation = Regularisation::KlBudget(kl);
                    }
                }
                "beta" => {
                    if let Some(beta) = number("beta", BETA_RANGE) {
                        settings.regularisation = Regularisation::Beta(beta);
                    }
                }
                "inspect" => match Policy::from_key(value) {
                    Some(policy) => settings.inspect = policy,
                    None => problems.push(format!(
                        "ignored inspect={value}: expected one of {}",
                        Policy::ALL.map(Policy::key).join(", ")
                    )),
                },
                _ => {}
            }
        }
        (settings, problems)
    }

    /// The URL query form (without `?`), read back by [`Settings::from_query`].
    pub fn to_query(&self) -> String {
        let regularisation = match self.regularisation {
            Regularisation::KlBudget(kl) => format!("kl={kl}"),
            Regularisation::Beta(beta) => format!("beta={beta}"),
        };
        format!(
            "n={}&t_exp={}&t_negexp={}&{regularisation}&inspect={}",
            self.n,
            self.t_exp,
            self.t_negexp,
            self.inspect.key()
        )
    }

    /// The transform of a non-optimal policy (`None` for the optimal ones, which are solved).
    pub fn transform(&self, policy: Policy) -> Option<Transform> {
        match policy {
            Policy::Identity => Some(Transform::Identity),
            Policy::Log => Some(Transform::Log),
            Policy::Exp => Some(Transform::NormExp { t: self.t_exp }),
            Policy::NegExp => Some(Transform::NormNegExp { t: self.t_negexp }),
            Policy::OptimalBon | Policy::OptimalWon => None,
        }
    }

    /// A short label: "identity", "exp (t = 10)", "optimal BoN_4", ...
    pub fn label(&self, policy: Policy) -> String {
        match policy {
            Policy::Identity => "identity".into(),
            Policy::Log => "log".into(),
            Policy::Exp => format!("exp (t = {})", short(self.t_exp)),
            Policy::NegExp => format!("negexp (t = {})", short(self.t_negexp)),
            Policy::OptimalBon => format!("optimal BoN_{}", self.n),
            Policy::OptimalWon => format!("optimal WoN_{}", self.n),
        }
    }
}

/// A number with at most three significant decimals, for labels.
pub fn short(value: f64) -> String {
    let digits = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else if value.abs() >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The lambda of `transform` under `regularisation`.
pub fn lambda_for(transform: &Transform, regularisation: Regularisation) -> Result<f64> {
    match regularisation {
        Regularisation::KlBudget(kl) => theory::lambda_for_kl(transform, kl),
        Regularisation::Beta(beta) => Ok(1.0 / beta),
    }
}

/// The optimal transform for `procedure` and N under `regularisation`: at the lambda whose
/// optimum spends the KL budget, or at lambda = 1/beta.
pub fn optimal_at(
    procedure: Procedure,
    n: u32,
    regularisation: Regularisation,
) -> Result<OptimalSolution> {
    optimal_near(procedure, n, regularisation, &[])
}

/// [`optimal_at`], warm-started (for a KL budget) from the closest point at or below the budget
/// among `known` solutions (an envelope of the same procedure and N solved earlier): the same
/// optimum in fewer fixed-point iterations. Points of another procedure or N are ignored.
pub fn optimal_near(
    procedure: Procedure,
    n: u32,
    regularisation: Regularisation,
    known: &[OptimalSolution],
) -> Result<OptimalSolution> {
    match regularisation {
        Regularisation::KlBudget(kl) => {
            let mut solver = theory::EnvelopeSolver::new(procedure, n, &[kl])?;
            let below = known
                .iter()
                .filter(|s| s.procedure == procedure && s.n == n && s.kl <= kl)
                .max_by(|a, b| a.kl.total_cmp(&b.kl));
            if let Some(start) = below {
                solver = solver.warm_start(start);
            }
            while !solver.step()? {}
            solver
                .into_solutions()
                .pop()
                .ok_or_else(|| invalid("kl", kl, "the optimal envelope returned no solution"))
        }
        Regularisation::Beta(beta) => theory::optimal_transform(procedure, n, 1.0 / beta),
    }
}

/// The two solved optima (BoN_N, WoN_N) for one N and regularisation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Optima {
    /// For BoN_N.
    pub bon: OptimalSolution,
    /// For WoN_N.
    pub won: OptimalSolution,
}

impl Optima {
    /// Solves both.
    pub fn solve(n: u32, regularisation: Regularisation) -> Result<Optima> {
        Ok(Optima {
            bon: optimal_at(Procedure::BestOfN, n, regularisation)?,
            won: optimal_at(Procedure::WorstOfN, n, regularisation)?,
        })
    }

    /// The solution of an optimal policy.
    pub fn get(&self, policy: Policy) -> Option<&OptimalSolution> {
        match policy {
            Policy::OptimalBon => Some(&self.bon),
            Policy::OptimalWon => Some(&self.won),
            _ => None,
        }
    }
}

/// The transform of `policy` at the current setting: the closed form from the settings, or the
/// solved optimum (`None` for an optimal policy when `optima` is not given).
fn transform_of(settings: &Settings, policy: Policy, optima: Option<&Optima>) -> Option<Transform> {
    settings
        .transform(policy)
        .or_else(|| Some(optima?.get(policy)?.transform.clone()))
}

/// The transform of `policy` and its lambda under the current regularisation (an optimum carries
/// its own lambda).
fn resolve(
    settings: &Settings,
    policy: Policy,
    optima: Option<&Optima>,
) -> Option<Result<(Transform, f64)>> {
    match (
        settings.transform(policy),
        optima.and_then(|o| o.get(policy)),
    ) {
        (Some(transform), _) => {
            Some(lambda_for(&transform, settings.regularisation).map(|lambda| (transform, lambda)))
        }
        (None, Some(solution)) => Some(Ok((solution.transform.clone(), solution.lambda))),
        (None, None) => None,
    }
}

/// A policy at the current setting: its transform and lambda, resolved.
pub fn tilted(
    settings: &Settings,
    policy: Policy,
    optima: Option<&Optima>,
) -> Result<Option<TiltedPolicy>> {
    match resolve(settings, policy, optima) {
        Some(resolved) => {
            let (transform, lambda) = resolved?;
            TiltedPolicy::new(&transform, lambda).map(Some)
        }
        None => Ok(None),
    }
}

/// One row of the explorer's table: a policy at the current setting.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Which policy.
    pub policy: Policy,
    /// Its evaluation, or why there is none in the page's words ([`plain_error`]).
    pub evaluation: std::result::Result<PolicyEvaluation, String>,
    /// What a reader should know about a number in the row (an optimum that stopped short of
    /// the budget, say).
    pub note: Option<String>,
}

/// Why the theory has no answer, in the page's words: what the reader asked for that double
/// precision or the transform cannot give, and what to move instead (the solver's own message,
/// meant for the command line, names flags the page does not have).
pub fn plain_error(error: &infalign_core::Error) -> String {
    use infalign_core::Error;
    match error {
        Error::Degenerate { lambda, .. } => format!(
            "not computable here: at this budget the tilt (λ = {}) squeezes the policy into a \
             sliver next to u = 1 that double precision cannot resolve. A smaller KL or N can \
             be shown.",
            short(*lambda)
        ),
        Error::KlBudgetUnreachable { budget, .. } => format!(
            "this transform cannot spend {} nats: its steepest tilt reaches less. A smaller KL \
             can be shown.",
            short(*budget)
        ),
        Error::NoConvergence { .. } => {
            "the solver did not settle at these settings; a nearby KL or N usually does.".into()
        }
        other => other.to_string(),
    }
}

/// Evaluates one policy at the current setting (`None` for an optimal one without `optima`).
pub fn row(settings: &Settings, policy: Policy, optima: Option<&Optima>) -> Option<Row> {
    let evaluation = resolve(settings, policy, optima)?
        .and_then(|(transform, lambda)| theory::evaluate(&transform, lambda, settings.n));
    let solution = optima.and_then(|o| o.get(policy));
    let note = match (solution, settings.regularisation) {
        (Some(solution), Regularisation::KlBudget(budget))
            if solution.saturated && solution.kl < budget * 0.99 =>
        {
            Some(format!(
                "saturated: at {} nats its win rate is already within {:e} of 1, so more KL \
                 buys nothing and the optimum stops there",
                short(solution.kl),
                theory::SATURATION
            ))
        }
        _ => None,
    };
    Some(Row {
        policy,
        evaluation: evaluation.map_err(|e| plain_error(&e)),
        note,
    })
}

/// Evaluates every policy at the current setting (the optimal ones only when `optima` is given).
pub fn rows(settings: &Settings, optima: Option<&Optima>) -> Vec<Row> {
    Policy::ALL
        .into_iter()
        .filter_map(|policy| row(settings, policy, optima))
        .collect()
}

/// `points` KL budgets spread evenly over (0, `max_kl`]: where the optimal envelope is solved.
pub fn envelope_budgets(max_kl: f64, points: usize) -> Vec<f64> {
    (1..=points)
        .map(|i| max_kl * i as f64 / points as f64)
        .collect()
}

/// An envelope's `(KL, win rate)` points, from `(0, 0.5)`.
pub fn envelope_points(solutions: &[OptimalSolution]) -> Vec<(f64, f64)> {
    std::iter::once((0.0, 0.5))
        .chain(solutions.iter().map(|s| (s.kl, s.win_rate)))
        .collect()
}

/// The optimal envelope of `procedure`: `(KL, win rate)` from `(0, 0.5)`.
pub fn optimal_curve(
    procedure: Procedure,
    n: u32,
    max_kl: f64,
    points: usize,
) -> Result<Vec<(f64, f64)>> {
    let solutions = theory::optimal_envelope(procedure, n, &envelope_budgets(max_kl, points))?;
    Ok(envelope_points(&solutions))
}

/// Phi rescaled to [0, 1] on a grid of [0, 1] (log on [e^-5, 1], clipped below).
pub fn rescaled_shape(transform: &Transform, points: usize) -> Vec<(f64, f64)> {
    let grid = (0..points).map(|i| i as f64 / (points - 1).max(1) as f64);
    match transform {
        Transform::Log => grid
            .map(|u| (u, ((u.max(1e-300).ln() + 5.0) / 5.0).max(0.0)))
            .collect(),
        _ => {
            let (low, high) = (transform.value(0.0), transform.value(1.0));
            let span = high - low;
            grid.map(|u| (u, (transform.value(u) - low) / span))
                .collect()
        }
    }
}

/// Chart of the transforms' shapes at the current t (and the optima, when solved).
pub fn shapes_chart(settings: &Settings, optima: Option<&Optima>) -> Chart {
    let mut series = Vec::new();
    for policy in Policy::ALL {
        let Some(transform) = transform_of(settings, policy, optima) else {
            continue;
        };
        let label = match policy {
            Policy::Log => "log (rescaled on [e^-5, 1])".to_string(),
            _ => settings.label(policy),
        };
        series.push(
            Series::line(
                label,
                rescaled_shape(&transform, GRID_POINTS),
                policy.color(),
                policy.optimal_procedure().is_some(),
            )
            .with_key(policy.key()),
        );
    }
    shapes_frame(series)
}

/// A chart of transform shapes (see [`rescaled_shape`]) on the unit square.
pub fn shapes_frame(series: Vec<Series>) -> Chart {
    Chart {
        id: "shapes".into(),
        title: "Transforms Phi(u), rescaled to [0, 1]".into(),
        x_label: "calibrated reward u".into(),
        y_label: "Phi (rescaled)".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        series,
        legend_outside: true,
    }
}

/// `points` values in [0, 1], denser towards both ends (u = (1 - cos(pi s)) / 2 for even s), where
/// tilted densities and their order statistics pile up.
fn clustered_grid(points: usize) -> Vec<f64> {
    let last = (points - 1).max(1) as f64;
    (0..points)
        .map(|i| (1.0 - (std::f64::consts::PI * i as f64 / last).cos()) / 2.0)
        .collect()
}

/// Chart of one policy's calibrated-reward density p(u), of what BoN_N and WoN_N serve from it
/// (N F^(N-1) p and N (1 - F)^(N-1) p), and of the same for the reference (dashed).
pub fn density_chart(settings: &Settings, label: &str, policy: &TiltedPolicy) -> Chart {
    let n = settings.n as f64;
    let m = settings.n as i32 - 1;
    let grid = clustered_grid(GRID_POINTS);
    let mut density = Vec::with_capacity(GRID_POINTS);
    let mut best = Vec::with_capacity(GRID_POINTS);
    let mut worst = Vec::with_capacity(GRID_POINTS);
    for &u in &grid {
        let (p, f) = (policy.density(u), policy.cdf(u));
        density.push((u, p));
        best.push((u, n * f.powi(m) * p));
        worst.push((u, n * (1.0 - f).powi(m) * p));
    }
    let reference = |f: &dyn Fn(f64) -> f64| grid.iter().map(|&u| (u, f(u))).collect::<Vec<_>>();
    let series = vec![
        Series::line(
            "reference (uniform)".into(),
            reference(&|_| 1.0),
            "#7f7f7f",
            true,
        )
        .with_key("ref"),
        Series::line(
            format!("BoN_{} of reference", settings.n),
            reference(&|u| n * u.powi(m)),
            COLORS[0],
            true,
        )
        .with_key("ref-bon"),
        Series::line(
            format!("WoN_{} of reference", settings.n),
            reference(&|u| n * (1.0 - u).powi(m)),
            COLORS[3],
            true,
        )
        .with_key("ref-won"),
        Series::line(format!("p(u): {label}"), density, "#000000", false).with_key("policy"),
        Series::line(format!("BoN_{} of p", settings.n), best, COLORS[0], false)
            .with_key("policy-bon"),
        Series::line(format!("WoN_{} of p", settings.n), worst, COLORS[3], false)
            .with_key("policy-won"),
    ];
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(1.0f64, f64::max);
    // Tilted densities pile up next to u = 1 in spikes far taller than the reference's curves;
    // past a few times the reference's peak (N) the chart clips them, and says so.
    let cap = (3.0 * n).max(12.0);
    let (y_top, clipped) = if y_max > cap {
        (cap, format!(" (clipped at {cap}; peak {})", short(y_max)))
    } else {
        (y_max * 1.05, String::new())
    };
    Chart {
        id: "densities".into(),
        title: format!("Densities of u: {label}{clipped}"),
        x_label: "calibrated reward u".into(),
        y_label: "density".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, y_top),
        series,
        legend_outside: true,
    }
}

/// Chart of win rate against KL under `procedure`: one curve per policy, the optimal envelope,
/// and a marker per row at the current setting (plus the budget as a vertical line).
pub fn win_rate_chart(
    settings: &Settings,
    procedure: Procedure,
    curves: &[(Policy, &WinRateCurves)],
    envelope: Option<&[(f64, f64)]>,
    rows: &[Row],
) -> Chart {
    let name = match procedure {
        Procedure::BestOfN => "Best-of-N",
        Procedure::WorstOfN => "Worst-of-N",
    };
    let mut series = Vec::new();
    let mut y_max: f64 = 0.5;
    for &(policy, policy_curves) in curves {
        let points = policy_curves.for_procedure(procedure).to_vec();
        y_max = points.iter().map(|p| p.1).fold(y_max, f64::max);
        series.push(
            Series::line(settings.label(policy), points, policy.color(), false)
                .with_key(policy.key()),
        );
    }
    if let Some(envelope) = envelope {
        y_max = envelope.iter().map(|p| p.1).fold(y_max, f64::max);
        series.push(
            Series::line(
                format!("optimal for {}", procedure_label(procedure, settings.n)),
                envelope.to_vec(),
                "#000000",
                true,
            )
            .with_key("envelope"),
        );
    }
    if let Regularisation::KlBudget(kl) = settings.regularisation {
        let mut line = Series::line(String::new(), vec![(kl, 0.0), (kl, 1.0)], "#b0b0b0", true);
        line.legend = false;
        series.push(line.with_key("budget"));
    }
    for row in rows {
        if let Ok(evaluation) = &row.evaluation {
            let y = evaluation.win_rate_for(procedure);
            series.push(
                Series::markers(vec![(evaluation.kl, y)], row.policy.color())
                    .with_key(format!("marker-{}", row.policy.key())),
            );
        }
    }
    Chart {
        id: format!("winrate-{procedure}"),
        title: format!("{name} win rate, N = {}", settings.n),
        x_label: KL_AXIS.into(),
        y_label: "win rate vs reference".into(),
        x_range: (0.0, KL_RANGE.1),
        y_range: (0.5, (y_max + 0.02).min(1.0)),
        series,
        legend_outside: false,
    }
}

/// The curves of the four closed-form policies for N (the sliders change them one at a time).
pub fn policy_curves(settings: &Settings, policy: Policy) -> Result<WinRateCurves> {
    let transform = settings.transform(policy).ok_or_else(|| {
        invalid(
            "policy",
            policy.key(),
            "the optimal policies have an envelope, not a transform curve",
        )
    })?;
    crate::chart::win_rate_curves(&transform, settings.n, KL_RANGE.1, CURVE_POINTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_and_reports_bad_values() {
        let settings = Settings {
            n: 8,
            t_exp: 17.25,
            t_negexp: 3.5,
            regularisation: Regularisation::Beta(0.05),
            inspect: Policy::OptimalWon,
        };
        let (back, problems) = Settings::from_query(&format!("?{}", settings.to_query()));
        assert_eq!(back, settings);
        assert!(problems.is_empty());

        let (read, problems) =
            Settings::from_query("n=0&t_exp=abc&kl=2.5&inspect=nonsense&bundle=x.json");
        assert_eq!(read.n, 4, "out-of-range N falls back to the default");
        assert_eq!(read.t_exp, Settings::default().t_exp);
        assert_eq!(read.regularisation, Regularisation::KlBudget(2.5));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("n=0"), "{problems:?}");
        assert!(problems[1].contains("t_exp=abc"), "{problems:?}");
        assert!(problems[2].contains("inspect=nonsense"), "{problems:?}");
        assert!(Settings::from_query("n=2.5").1[0].contains("whole number"));
    }

    #[test]
    fn kl_budget_rows_spend_the_budget_and_log_matches_best_of_n() {
        let settings = Settings {
            regularisation: Regularisation::KlBudget(0.5),
            ..Settings::default()
        };
        let optima = Optima::solve(settings.n, settings.regularisation).unwrap();
        let rows = rows(&settings, Some(&optima));
        assert_eq!(rows.len(), 6);
        let mut bon = std::collections::HashMap::new();
        for row in &rows {
            let evaluation = row.evaluation.as_ref().unwrap();
            assert!((evaluation.kl - 0.5).abs() < 1e-6, "{row:?}");
            bon.insert(row.policy, evaluation.win_rate.bon);
        }
        // The optimum for BoN_N beats every closed form under BoN_N at the same KL.
        for policy in [Policy::Identity, Policy::Log, Policy::Exp, Policy::NegExp] {
            assert!(
                bon[&Policy::OptimalBon] >= bon[&policy] - 1e-9,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn optimum_started_from_a_known_envelope_is_the_cold_optimum() {
        let budgets = envelope_budgets(KL_RANGE.1, ENVELOPE_POINTS);
        let envelope = theory::optimal_envelope(Procedure::WorstOfN, 4, &budgets).unwrap();
        assert_eq!(envelope_points(&envelope).len(), ENVELOPE_POINTS + 1);
        let at = Regularisation::KlBudget(0.9);
        let cold = optimal_at(Procedure::WorstOfN, 4, at).unwrap();
        let warm = optimal_near(Procedure::WorstOfN, 4, at, &envelope).unwrap();
        assert!((warm.kl - 0.9).abs() < 1e-8, "{}", warm.kl);
        assert!((warm.win_rate - cold.win_rate).abs() < 1e-9);
        // Another N's envelope is not used as a start.
        let other = optimal_near(Procedure::WorstOfN, 5, at, &envelope).unwrap();
        assert_eq!(other, optimal_at(Procedure::WorstOfN, 5, at).unwrap());
    }

    #[test]
    fn beta_mode_uses_one_lambda_and_unreachable_budgets_are_reported() {
        let settings = Settings {
            regularisation: Regularisation::Beta(0.1),
            ..Settings::default()
        };
        for row in rows(&settings, None) {
            let evaluation = row.evaluation.unwrap();
            assert_eq!(evaluation.lambda, 10.0);
        }
        // A steep negexp saturates: 4 nats is out of its reach, and the row says so.
        let steep = Settings {
            t_negexp: 100.0,
            regularisation: Regularisation::KlBudget(4.0),
            ..Settings::default()
        };
        let rows = rows(&steep, None);
        let negexp = rows.iter().find(|r| r.policy == Policy::NegExp).unwrap();
        assert!(negexp
            .evaluation
            .as_ref()
            .unwrap_err()
            .contains("cannot spend 4 nats"));
    }

    #[test]
    fn densities_integrate_to_one_and_follow_the_theory() {
        let settings = Settings::default();
        let policy = tilted(&settings, Policy::Exp, None).unwrap().unwrap();
        let chart = density_chart(&settings, "exp", &policy);
        let integral = |key: &str| {
            let points = &chart.series.iter().find(|s| s.key == key).unwrap().points;
            points
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
                .sum::<f64>()
        };
        for key in [
            "ref",
            "ref-bon",
            "ref-won",
            "policy",
            "policy-bon",
            "policy-won",
        ] {
            assert!(
                (integral(key) - 1.0).abs() < 2e-2,
                "{key}: {}",
                integral(key)
            );
        }
        // E[U] under p matches the engine's standard win rate.
        let points = &chart
            .series
            .iter()
            .find(|s| s.key == "policy")
            .unwrap()
            .points;
        let mean: f64 = points
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].0 * w[0].1 + w[1].0 * w[1].1) / 2.0)
            .sum();
        assert!((mean - policy.expected_u()).abs() < 1e-3);
    }

    #[test]
    fn charts_carry_markers_at_the_rows_values() {
        let settings = Settings::default();
        let rows = rows(&settings, None);
        let curves: Vec<(Policy, WinRateCurves)> = [Policy::Identity, Policy::Exp]
            .into_iter()
            .map(|p| (p, policy_curves(&settings, p).unwrap()))
            .collect();
        let borrowed: Vec<(Policy, &WinRateCurves)> = curves.iter().map(|(p, c)| (*p, c)).collect();
        let chart = win_rate_chart(&settings, Procedure::BestOfN, &borrowed, None, &rows);
        let svg = crate::chart::render_svg(&[chart]);
        let exp_row = rows.iter().find(|r| r.policy == Policy::Exp).unwrap();
        let bon = exp_row.evaluation.as_ref().unwrap().win_rate.bon;
        assert!(svg.contains(r#"data-series="marker-exp" data-x="#));
        assert!(svg.contains(&format!(r#"data-y="{bon}""#)));
        assert!(svg.contains(r#"<polyline data-series="identity""#));
        assert!(svg.contains(r#"data-chart="winrate-bon""#));
        assert!(svg.contains(r#"clip-path="url(#clip-winrate-bon)""#));
        // The exp curve ends at the chart's KL limit.
        let exp = &curves[1].1.bon;
        assert!(exp.last().unwrap().0 > KL_RANGE.1 * 0.99);
    }

    #[test]
    fn what_the_theory_cannot_give_is_said_in_the_pages_words() {
        // Optimal BoN_32 at 4 nats: the tilt is narrower than f64 resolves near u = 1.
        let at = Settings {
            n: 32,
            regularisation: Regularisation::KlBudget(4.0),
            ..Settings::default()
        };
        let error = optimal_at(Procedure::BestOfN, at.n, at.regularisation).unwrap_err();
        let said = plain_error(&error);
        assert!(said.starts_with("not computable here"), "{said}");
        // The command line's advice (flags, transform names) stays out of the page.
        assert!(
            !said.contains("normexp") && !said.contains("lambda ="),
            "{said}"
        );
        // Optimal WoN_64 at 1 nat saturates well below the budget: its row says so.
        let at = Settings {
            n: 64,
            regularisation: Regularisation::KlBudget(1.0),
            ..Settings::default()
        };
        let won = optimal_at(Procedure::WorstOfN, at.n, at.regularisation).unwrap();
        assert!(won.saturated && won.kl < 0.99, "{won:?}");
        let optima = Optima {
            bon: optimal_at(Procedure::BestOfN, at.n, at.regularisation).unwrap(),
            won,
        };
        let row = row(&at, Policy::OptimalWon, Some(&optima)).unwrap();
        assert!(
            row.note.as_deref().unwrap().starts_with("saturated"),
            "{row:?}"
        );
        // A closed form that spends the budget has nothing to add.
        assert_eq!(row_note(&at, Policy::Identity), None);
    }

    fn row_note(at: &Settings, policy: Policy) -> Option<String> {
        row(at, policy, None).unwrap().note
    }
}
