//! The optimal transform for BoN_N / WoN_N: a damped, Anderson-accelerated fixed-point
//! iteration on the CDF.
//!
//! Stationarity of W_T(p) - beta KL(p) gives p* proportional to exp(lambda Phi*) with
//!
//! ```text
//! BoN_N:  Phi*(u) = N^2 int_0^u F*(v)^(N-1) v^(N-1) dv
//! WoN_N:  Phi*(u) = N^2 int_0^u (1 - F*(v))^(N-1) (1 - v)^(N-1) dv
//! ```
//!
//! where F* is the CDF of p*. The map G(F) = CDF[exp(lambda Phi[F])] is iterated as
//! F <- (1 - eta) F + eta G(F) with eta = 0.5 on a fixed adaptive grid, with Anderson mixing over
//! the last 8 iterates: the plain damped iteration stalls for large lambda, where G expands along
//! a few smooth directions (more mass on the left raises Phi on the left, which flattens p and
//! moves more mass to the left), and Anderson's multi-secant step solves for exactly those
//! directions. After convergence the grid is rebuilt for the solved Phi* and the iteration
//! continues until the grid no longer changes. Sweeps over lambda are warm-started from the
//! previous solution; a cold start walks up from small lambda (continuation by factors of 4),
//! starting from the small-KL limit N^2 u^(2N-1)/(2N-1) (BoN) or N^2 (1 - (1-u)^(2N-1))/(2N-1)
//! (WoN). For N = 1 the solution is the identity.
//!
//! W_BoN and W_WoN are concave in p (F^N is convex in F, and F is linear in p) and the KL is
//! strictly convex, so the stationary point is the unique maximiser of W - beta KL.

use super::{check_lambda, check_n, moments, resolve, solve_for_kl, Resolved};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quadrature::{integrate, power, rule, OrderStatistics, Panel, PiecewiseNodal, ORDER};
use crate::selection::Procedure;
use crate::transform::{OptimalTransform, Transform};

/// Convergence tolerance on max |F_new - F| at the nodes.
const FIXED_POINT_TOLERANCE: f64 = 1e-11;
/// Iterations (over all grids) one attempt may take before continuation splits the lambda step.
const ATTEMPT_ITERATIONS: usize = 200;
/// How many times continuation may halve a lambda step (in log).
const MAX_CONTINUATION_DEPTH: u32 = 12;
const MAX_REGRIDS: usize = 5;

/// The optimal transform at one lambda with its KL and win rate.
///
/// It serialises whole, its CDF table included (so a solution computed elsewhere, e.g. in a
/// worker, can warm-start a solve here); reading one back checks both tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OptimalSolutionRepr", into = "OptimalSolutionRepr")]
pub struct OptimalSolution {
    /// BoN or WoN.
    pub procedure: Procedure,
    /// N.
    pub n: u32,
    /// lambda = 1/beta.
    pub lambda: f64,
    /// KL(p* || Uniform) in nats.
    pub kl: f64,
    /// E_{p*}[U].
    pub expected_u: f64,
    /// The BoN_N (or WoN_N) win rate of p*.
    pub win_rate: f64,
    /// Fixed-point iterations used (all grids together).
    pub iterations: usize,
    /// The solved transform ([`Transform::Optimal`]).
    pub transform: Transform,
    /// Set by [`optimal_envelope`] when the KL budget lies beyond the largest lambda the solver
    /// resolves (lambda times the range of Phi* up to 1e8) and the win rate there is already
    /// within [`SATURATION`] of 1: the solution is the one at that lambda, `kl` is below the
    /// budget and `win_rate` is a lower bound on the envelope within [`SATURATION`].
    pub saturated: bool,
    /// F* on the solver's grid, for warm starts.
    cdf: PiecewiseNodal,
}

/// [`OptimalSolution`] as written: the CDF table as its two arrays.
#[derive(Serialize, Deserialize)]
struct OptimalSolutionRepr {
    procedure: Procedure,
    n: u32,
    lambda: f64,
    kl: f64,
    expected_u: f64,
    win_rate: f64,
    iterations: usize,
    transform: Transform,
    saturated: bool,
    cdf_breaks: Vec<f64>,
    cdf_values: Vec<f64>,
}

impl From<OptimalSolution> for OptimalSolutionRepr {
    fn from(solution: OptimalSolution) -> Self {
        OptimalSolutionRepr {
            procedure: solution.procedure,
            n: solution.n,
            lambda: solution.lambda,
            kl: solution.kl,
            expected_u: solution.expected_u,
            win_rate: solution.win_rate,
            iterations: solution.iterations,
            transform: solution.transform,
            saturated: solution.saturated,
            cdf_breaks: solution.cdf.breaks,
            cdf_values: solution.cdf.values,
        }
    }
}

impl TryFrom<OptimalSolutionRepr> for OptimalSolution {
    type Error = Error;
    fn try_from(repr: OptimalSolutionRepr) -> Result<Self> {
        let cdf = PiecewiseNodal {
            breaks: repr.cdf_breaks,
            values: repr.cdf_values,
        };
        cdf.check("optimal solution's CDF table")?;
        if !matches!(repr.transform, Transform::Optimal(_)) {
            return Err(Error::InvalidTable {
                what: "optimal solution",
                reason: format!("its transform is {}, not a solved optimum", repr.transform),
            });
        }
        Ok(OptimalSolution {
            procedure: repr.procedure,
            n: repr.n,
            lambda: repr.lambda,
            kl: repr.kl,
            expected_u: repr.expected_u,
            win_rate: repr.win_rate,
            iterations: repr.iterations,
            transform: repr.transform,
            saturated: repr.saturated,
            cdf,
        })
    }
}

/// How close to 1 the win rate must be for an unreachable budget to count as saturated.
pub const SATURATION: f64 = 1e-7;
/// Largest lambda times the range of Phi* that the solver attempts (rounding in Phi* times
/// lambda limits the resolution beyond it).
const LAMBDA_RANGE_MAX: f64 = 1e8;

impl OptimalSolution {
    fn table(&self) -> Option<&OptimalTransform> {
        match &self.transform {
            Transform::Optimal(table) => Some(table),
            _ => None,
        }
    }
}

fn order_statistics(procedure: Procedure, n: u32) -> OrderStatistics {
    OrderStatistics {
        n,
        best: procedure == Procedure::BestOfN,
        worst: procedure == Procedure::WorstOfN,
    }
}

/// Phi at every node from the CDF at the nodes; returns Phi(1).
fn phi_from_cdf(
    panels: &[Panel],
    cdf: &[[f64; ORDER]],
    procedure: Procedure,
    n: u32,
    phi: &mut Vec<[f64; ORDER]>,
) -> f64 {
    let rule = rule();
    let n2 = (n as f64) * (n as f64);
    let exponent = n - 1;
    phi.clear();
    let mut start = 0.0;
    for (panel, f) in panels.iter().zip(cdf) {
        let mut integrand = [0.0; ORDER];
        for j in 0..ORDER {
            integrand[j] = match procedure {
                Procedure::BestOfN => n2 * power(f[j] * panel.u[j], exponent),
                Procedure::WorstOfN => n2 * power((1.0 - f[j]) * panel.w[j], exponent),
            };
        }
        let mut cumulative = [0.0; ORDER];
        rule.cumulate(&integrand, &mut cumulative);
        let half = panel.half_width();
        let mut values = [0.0; ORDER];
        for j in 0..ORDER {
            values[j] = start + half * cumulative[j];
        }
        phi.push(values);
        start += half * rule.integrate(&integrand);
    }
    start
}

fn table_from(panels: &[Panel], phi: &[[f64; ORDER]]) -> PiecewiseNodal {
    let mut breaks: Vec<f64> = panels.iter().map(|p| p.a).collect();
    breaks.push(1.0);
    breaks[0] = 0.0;
    let values = phi.iter().flat_map(|v| v.iter().copied()).collect();
    PiecewiseNodal { breaks, values }
}

/// Applies the fixed-point map once: Phi from the CDF values `x` (flattened per panel), the
/// tilted density of lambda Phi on the panels, and its CDF. Leaves the density in `resolved`,
/// Phi in `phi`, and returns the new CDF values (flattened).
fn apply_map(
    resolved: &mut Resolved,
    phi: &mut Vec<[f64; ORDER]>,
    x: &[f64],
    procedure: Procedure,
    n: u32,
    lambda: f64,
) -> Vec<f64> {
    let cdf: Vec<[f64; ORDER]> = x
        .chunks_exact(ORDER)
        .map(|chunk| {
            let mut values = [0.0; ORDER];
            values.copy_from_slice(chunk);
            values
        })
        .collect();
    let top = phi_from_cdf(&resolved.panels, &cdf, procedure, n, phi);
    for (panel, values) in resolved.panels.iter_mut().zip(phi.iter()) {
        for j in 0..ORDER {
            let psi = (lambda * (values[j] - top)).min(0.0);
            panel.psi[j] = psi;
            panel.g[j] = psi.exp();
        }
    }
    resolved.integrated = integrate(&resolved.panels);
    resolved
        .integrated
        .cdf
        .iter()
        .flat_map(|values| values.iter().copied())
        .collect()
}

/// Solves the small dense system `a x = b` by Gaussian elimination with partial pivoting
/// (a singular pivot gives a zero component).
fn solve_dense(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let size = b.len();
    for col in 0..size {
        let pivot = (col..size)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        if a[col][col] == 0.0 {
            continue;
        }
        for row in col + 1..size {
            let factor = a[row][col] / a[col][col];
            for k in col..size {
                a[row][k] -= factor * a[col][k];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; size];
    for row in (0..size).rev() {
        let mut sum = b[row];
        for k in row + 1..size {
            sum -= a[row][k] * x[k];
        }
        x[row] = if a[row][row] == 0.0 {
            0.0
        } else {
            sum / a[row][row]
        };
    }
    x
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The Anderson history: differences of iterates and of residuals, with the Gram matrix of the
/// residual differences kept up to date.
struct AndersonHistory {
    delta_x: Vec<Vec<f64>>,
    delta_f: Vec<Vec<f64>>,
    gram: Vec<Vec<f64>>,
}

impl AndersonHistory {
    fn new() -> Self {
        AndersonHistory {
            delta_x: Vec::new(),
            delta_f: Vec::new(),
            gram: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.delta_x.clear();
        self.delta_f.clear();
        self.gram.clear();
    }

    fn push(&mut self, dx: Vec<f64>, df: Vec<f64>) {
        if self.delta_f.len() >= ANDERSON_MEMORY {
            self.delta_x.remove(0);
            self.delta_f.remove(0);
            self.gram.remove(0);
            for row in &mut self.gram {
                row.remove(0);
            }
        }
        let dots: Vec<f64> = self.delta_f.iter().map(|column| dot(column, &df)).collect();
        let self_dot = dot(&df, &df);
        for (row, &value) in self.gram.iter_mut().zip(&dots) {
            row.push(value);
        }
        let mut last = dots;
        last.push(self_dot);
        self.gram.push(last);
        self.delta_x.push(dx);
        self.delta_f.push(df);
    }

    /// gamma minimising |f - sum_i gamma_i delta_f_i| (regularised normal equations).
    fn coefficients(&self, f: &[f64]) -> Vec<f64> {
        let size = self.delta_f.len();
        if size == 0 {
            return Vec::new();
        }
        let scale = (0..size).map(|i| self.gram[i][i]).fold(0.0f64, f64::max);
        let mut a = self.gram.clone();
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-12 * scale;
        }
        let b: Vec<f64> = self.delta_f.iter().map(|column| dot(column, f)).collect();
        solve_dense(a, b)
    }
}

/// History length of the Anderson acceleration.
const ANDERSON_MEMORY: usize = 8;

/// Mixing factor of the Anderson step (with no history the step is F <- F + MIXING (G(F) - F));
/// the damping comes from the backtracking line search.
const MIXING: f64 = 1.0;

/// Runs the damped fixed-point iteration F <- (1 - eta) F + eta G(F) on a fixed grid, accelerated
/// by Anderson mixing over the last few iterates (which also handles the directions in which the
/// plain map expands, as it does for large lambda). On success `resolved` holds the density of the
/// last Phi and its CDF, and `phi` that Phi.
fn iterate_on_grid(
    resolved: &mut Resolved,
    phi: &mut Vec<[f64; ORDER]>,
    procedure: Procedure,
    n: u32,
    lambda: f64,
    budget: usize,
    start: Option<&PiecewiseNodal>,
) -> Result<(usize, f64)> {
    let mut x: Vec<f64> = match start {
        Some(cdf) => resolved
            .panels
            .iter()
            .flat_map(|panel| panel.u.iter().map(|&u| cdf.eval(u).clamp(0.0, 1.0)))
            .collect(),
        None => resolved
            .integrated
            .cdf
            .iter()
            .flat_map(|values| values.iter().copied())
            .collect(),
    };
    let mut history = AndersonHistory::new();
    let evaluate = |resolved: &mut Resolved, phi: &mut Vec<[f64; ORDER]>, x: &[f64]| {
        let g = apply_map(resolved, phi, x, procedure, n, lambda);
        let f: Vec<f64> = g.iter().zip(x).map(|(a, b)| a - b).collect();
        let residual = f.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        (f, residual)
    };
    let (mut f, mut residual) = evaluate(resolved, phi, &x);
    let mut iterations = 1;
    let mut previous: Option<(Vec<f64>, Vec<f64>)> = None;
    while iterations < budget && residual.is_finite() {
        if residual < FIXED_POINT_TOLERANCE {
            return Ok((iterations, residual));
        }
        if let Some((previous_x, previous_f)) = previous.take() {
            history.push(
                x.iter().zip(&previous_x).map(|(a, b)| a - b).collect(),
                f.iter().zip(&previous_f).map(|(a, b)| a - b).collect(),
            );
        }
        let gamma = history.coefficients(&f);
        let mut proposal: Vec<f64> = x.iter().zip(&f).map(|(xi, fi)| xi + MIXING * fi).collect();
        for ((coefficient, dx), df) in gamma.iter().zip(&history.delta_x).zip(&history.delta_f) {
            for ((value, a), b) in proposal.iter_mut().zip(dx).zip(df) {
                *value -= coefficient * (a + MIXING * b);
            }
        }
        // Backtrack along the step while the residual more than doubles: far from the fixed
        // point the map is strongly expansive and a full step can land where it explodes.
        let mut fraction = 1.0;
        let (candidate, candidate_f, candidate_residual) = loop {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&proposal)
                .map(|(a, b)| (a + fraction * (b - a)).clamp(0.0, 1.0))
                .collect();
            let (cf, cr) = evaluate(resolved, phi, &candidate);
            iterations += 1;
            if cr <= residual || fraction < 1.0 / 32.0 || iterations >= budget {
                break (candidate, cf, cr);
            }
            fraction *= 0.5;
        };
        if candidate_residual > residual {
            history.clear();
        }
        previous = Some((
            std::mem::replace(&mut x, candidate),
            std::mem::replace(&mut f, candidate_f),
        ));
        residual = candidate_residual;
    }
    if residual < FIXED_POINT_TOLERANCE {
        return Ok((iterations, residual));
    }
    Err(Error::NoConvergence {
        what: format!("optimal transform fixed point ({procedure}, N = {n}, lambda = {lambda})"),
        iterations: budget,
        residual,
    })
}

/// Solves the fixed point at `lambda`, starting from `warm` (a nearby solution) or from the
/// small-KL shape.
fn solve(
    procedure: Procedure,
    n: u32,
    lambda: f64,
    warm_solution: Option<&OptimalSolution>,
    budget: usize,
) -> Result<OptimalSolution> {
    let warm = warm_solution.and_then(OptimalSolution::table);
    // Start the iteration from the previous F* (first-order close for a nearby lambda).
    let mut start_cdf: Option<PiecewiseNodal> = warm_solution.map(|w| w.cdf.clone());
    check_n(n)?;
    check_lambda(lambda)?;
    let stats = order_statistics(procedure, n);
    let no_grid = || Error::Degenerate {
        transform: format!("optimal:{procedure}:{n}"),
        lambda,
        detail: "the density could not be resolved on the grid".into(),
    };
    // Initial guess for Phi - Phi(1).
    let m = 2.0 * n as f64 - 1.0;
    let c = (n as f64) * (n as f64) / m;
    let mut guess = |u: f64, w: f64| -> f64 {
        let shape = match warm {
            Some(table) => table.value(u) - table.value(1.0),
            None => match procedure {
                // c (u^m - 1), accurate near u = 1.
                Procedure::BestOfN => c * (m * (-w).ln_1p()).exp_m1(),
                // c (1 - w^m) - c.
                Procedure::WorstOfN => -c * w.powf(m),
            },
        };
        (lambda * shape).min(0.0)
    };
    let guess_range = match warm {
        Some(table) => table.range(),
        None => c,
    };
    let noise = lambda * guess_range * 32.0 * f64::EPSILON;
    let mut resolved = resolve(&mut guess, Some(stats), true, noise).ok_or_else(no_grid)?;
    let mut phi = Vec::new();
    let mut iterations = 0;
    for round in 0..MAX_REGRIDS {
        let (used, _) = iterate_on_grid(
            &mut resolved,
            &mut phi,
            procedure,
            n,
            lambda,
            budget.saturating_sub(iterations).max(1),
            start_cdf.as_ref(),
        )?;
        iterations += used;
        if round + 1 == MAX_REGRIDS {
            break;
        }
        // Rebuild the grid for the solved Phi; done when it no longer changes.
        let table = table_from(&resolved.panels, &phi);
        let top = table.eval(1.0);
        let mut psi = |u: f64, _w: f64| (lambda * (table.eval(u) - top)).min(0.0);
        let noise = lambda * (top - table.eval(0.0)).abs() * 32.0 * f64::EPSILON;
        let rebuilt = resolve(&mut psi, Some(stats), true, noise).ok_or_else(no_grid)?;
        let same = rebuilt.panels.len() == resolved.panels.len()
            && rebuilt
                .panels
                .iter()
                .zip(&resolved.panels)
                .all(|(x, y)| x.a == y.a && x.b == y.b);
        if same {
            break;
        }
        start_cdf = Some(table_from(&resolved.panels, &resolved.integrated.cdf));
        resolved = rebuilt;
    }
    let table = table_from(&resolved.panels, &phi);
    let cdf_table = table_from(&resolved.panels, &resolved.integrated.cdf);
    let moments = moments(&resolved, n);
    let optimal = OptimalTransform::from_table(procedure, n, lambda, table)?;
    Ok(OptimalSolution {
        procedure,
        n,
        lambda,
        kl: moments.kl,
        expected_u: moments.expected_u,
        win_rate: match procedure {
            Procedure::BestOfN => moments.bon,
            Procedure::WorstOfN => moments.won,
        },
        iterations,
        transform: Transform::Optimal(optimal),
        saturated: false,
        cdf: cdf_table,
    })
}

/// Solves at `lambda` starting from `warm` (or from the small-KL shape), with adaptive
/// continuation: when the iteration does not converge within [`ATTEMPT_ITERATIONS`], it first
/// solves at the geometric midpoint between the warm start's lambda (lambda / 4 from a cold start)
/// and the target, then continues from there.
fn solve_from(
    procedure: Procedure,
    n: u32,
    lambda: f64,
    warm: Option<&OptimalSolution>,
    depth: u32,
) -> Result<OptimalSolution> {
    match solve(procedure, n, lambda, warm, ATTEMPT_ITERATIONS) {
        Err(Error::NoConvergence { .. }) if depth < MAX_CONTINUATION_DEPTH => {
            let middle = match warm {
                Some(w) if w.lambda > 0.0 => (w.lambda * lambda).sqrt(),
                _ => lambda / 4.0,
            };
            let halfway = solve_from(procedure, n, middle, warm, depth + 1)?;
            solve_from(procedure, n, lambda, Some(&halfway), depth + 1)
        }
        other => other,
    }
}

/// The optimal transform for `procedure` with N samples at `lambda` (>= 0).
pub fn optimal_transform(procedure: Procedure, n: u32, lambda: f64) -> Result<OptimalSolution> {
    check_n(n)?;
    check_lambda(lambda)?;
    solve_from(procedure, n, lambda, None, 0)
}

/// Optimal solutions along a sweep of lambdas, warm-started in increasing order of lambda and
/// returned in the order given.
pub fn optimal_curve(
    procedure: Procedure,
    n: u32,
    lambdas: &[f64],
) -> Result<Vec<OptimalSolution>> {
    check_n(n)?;
    for &lambda in lambdas {
        check_lambda(lambda)?;
    }
    let mut order: Vec<usize> = (0..lambdas.len()).collect();
    order.sort_by(|&a, &b| lambdas[a].total_cmp(&lambdas[b]));
    let mut out: Vec<Option<OptimalSolution>> = vec![None; lambdas.len()];
    let mut previous: Option<OptimalSolution> = None;
    for index in order {
        let lambda = lambdas[index];
        let solution = solve_from(procedure, n, lambda, previous.as_ref(), 0)?;
        previous = Some(solution.clone());
        out[index] = Some(solution);
    }
    Ok(out.into_iter().flatten().collect())
}

/// The optimal envelope: for each KL budget, the optimal transform at the lambda whose optimum
/// spends exactly that budget, with its win rate. Budgets are solved in increasing order with warm
/// starts and returned in the order given (an [`EnvelopeSolver`] run to the end).
pub fn optimal_envelope(
    procedure: Procedure,
    n: u32,
    budgets: &[f64],
) -> Result<Vec<OptimalSolution>> {
    let mut solver = EnvelopeSolver::new(procedure, n, budgets)?;
    while !solver.step()? {}
    Ok(solver.into_solutions())
}

/// [`optimal_envelope`] one budget at a time, for a caller that must yield between solves (the
/// browser lab solves an envelope between frames, so that the page keeps answering input), and
/// optionally warm-started from a solution already known (a neighbouring point of an envelope
/// solved earlier), which takes far fewer fixed-point iterations than a cold start.
#[derive(Debug, Clone)]
pub struct EnvelopeSolver {
    procedure: Procedure,
    n: u32,
    budgets: Vec<f64>,
    /// Indices into `budgets`, increasing budget.
    order: Vec<usize>,
    /// How many of `order` are solved.
    done: usize,
    out: Vec<Option<OptimalSolution>>,
    warm: Option<OptimalSolution>,
    /// The budget `warm` spends (None for a cold start).
    previous_budget: Option<f64>,
    /// Fixed-point iterations of every solve so far.
    iterations: usize,
}

impl EnvelopeSolver {
    /// A solver for `budgets` (each checked) of `procedure` with N samples; nothing is solved yet.
    pub fn new(procedure: Procedure, n: u32, budgets: &[f64]) -> Result<EnvelopeSolver> {
        check_n(n)?;
        for &budget in budgets {
            super::check_budget(budget)?;
        }
        let mut order: Vec<usize> = (0..budgets.len()).collect();
        order.sort_by(|&a, &b| budgets[a].total_cmp(&budgets[b]));
        Ok(EnvelopeSolver {
            procedure,
            n,
            budgets: budgets.to_vec(),
            order,
            done: 0,
            out: vec![None; budgets.len()],
            warm: None,
            previous_budget: None,
            iterations: 0,
        })
    }

    /// Starts from `solution`, an envelope point of the same procedure and N at a budget no
    /// larger than the smallest one asked for (its KL: a saturated point stays saturated for
    /// every larger budget, so a start from above could wrongly claim saturation). A solution
    /// that does not qualify is ignored and the solver starts cold.
    pub fn warm_start(mut self, solution: &OptimalSolution) -> EnvelopeSolver {
        let smallest = self.order.first().map(|&i| self.budgets[i]);
        let fits = solution.procedure == self.procedure
            && solution.n == self.n
            && solution.kl > 0.0
            && smallest.is_some_and(|b| solution.kl <= b);
        if fits && self.done == 0 {
            self.previous_budget = Some(solution.kl);
            self.warm = Some(solution.clone());
        }
        self
    }

    /// Budgets solved so far, of [`EnvelopeSolver::len`].
    pub fn solved(&self) -> usize {
        self.done
    }

    /// Fixed-point iterations spent so far, over every solve of the KL searches (the work, where
    /// [`OptimalSolution::iterations`] counts only a solution's own solve).
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Number of budgets.
    pub fn len(&self) -> usize {
        self.budgets.len()
    }

    /// Whether there are no budgets.
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }

    /// Solves the next budget (in increasing order); `Ok(true)` once every budget is solved.
    pub fn step(&mut self) -> Result<bool> {
        let Some(&index) = self.order.get(self.done) else {
            return Ok(true);
        };
        let budget = self.budgets[index];
        // Saturated budgets stay saturated for every larger budget.
        let solution = match self.warm.as_ref().filter(|w| w.saturated) {
            Some(w) => w.clone(),
            None => self.solve_budget(budget)?,
        };
        self.previous_budget = Some(budget);
        self.warm = Some(solution.clone());
        self.out[index] = Some(solution);
        self.done += 1;
        Ok(self.done == self.order.len())
    }

    /// The solutions in the order of the budgets given (those solved so far).
    pub fn into_solutions(self) -> Vec<OptimalSolution> {
        self.out.into_iter().flatten().collect()
    }

    fn solve_budget(&mut self, budget: f64) -> Result<OptimalSolution> {
        let (procedure, n) = (self.procedure, self.n);
        // Small-KL estimate of lambda: KL ~ lambda^2 Var_U(Phi)/2 with Phi = c u^m.
        let m = 2.0 * n as f64 - 1.0;
        let c = (n as f64) * (n as f64) / m;
        let variance = c * c * (1.0 / (2.0 * m + 1.0) - 1.0 / ((m + 1.0) * (m + 1.0)));
        let guess = match (&self.warm, self.previous_budget) {
            (Some(w), Some(b)) => w.lambda * (budget / b).sqrt(),
            _ => (2.0 * budget / variance).sqrt(),
        };
        let lambda_max = LAMBDA_RANGE_MAX / c;
        let (warm, iterations) = (&mut self.warm, &mut self.iterations);
        let mut kl_at = |lambda: f64| -> Result<f64> {
            let solution = solve_from(procedure, n, lambda, warm.as_ref(), 0)?;
            *iterations += solution.iterations;
            let kl = solution.kl;
            *warm = Some(solution);
            Ok(kl)
        };
        let describe = || format!("optimal:{procedure}:{n}");
        let step = if self.previous_budget.is_some() {
            0.1
        } else {
            1.0
        };
        let found = solve_for_kl(budget, guess, step, lambda_max, &mut kl_at, &describe);
        match found {
            Ok((lambda, _)) => match self.warm.as_ref() {
                Some(w) if w.lambda == lambda => Ok(w.clone()),
                _ => {
                    let solution = solve_from(procedure, n, lambda, self.warm.as_ref(), 0)?;
                    self.iterations += solution.iterations;
                    Ok(solution)
                }
            },
            Err(Error::KlBudgetUnreachable { .. }) => {
                let mut at_cap = match self.warm.as_ref() {
                    Some(w) if w.lambda == lambda_max => w.clone(),
                    _ => solve_from(procedure, n, lambda_max, self.warm.as_ref(), 0)?,
                };
                if at_cap.kl >= budget || at_cap.win_rate < 1.0 - SATURATION {
                    return Err(Error::KlBudgetUnreachable {
                        budget,
                        transform: describe(),
                        reason: format!(
                            "the optimum at the largest resolvable lambda ({lambda_max:.3e}) has \
                             KL {:.6} and win rate {:.9}",
                            at_cap.kl, at_cap.win_rate
                        ),
                    });
                }
                at_cap.saturated = true;
                Ok(at_cap)
            }
            Err(error) => Err(error),
        }
    }
}
