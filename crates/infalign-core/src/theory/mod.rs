//! The exact one-dimensional theory in calibrated space (f64, log-space throughout).
//!
//! With calibrated rewards every policy is summarised by the density p of u = C(x, y) on [0, 1],
//! and the reference policy is Uniform[0, 1]. A transform Phi and lambda = 1/beta give the tilted
//! policy
//!
//! ```text
//! p(u) = exp(lambda Phi(u)) / Z,   KL = lambda E_p[Phi] - log Z,   F(u) = int_0^u p
//! standard win rate  W_1     = E_p[U]
//! BoN_N win rate     W_BoN_N = 1 - N int_0^1 F(u)^N u^(N-1) du
//! WoN_N win rate     W_WoN_N = N int_0^1 (1 - F(u))^N (1 - u)^(N-1) du
//! ```
//!
//! (win rates of T(pi) against T(pi_ref), ties split). See `shared/notes/theory.md`.
//!
//! # Numerics
//!
//! Integrals use composite 16-point Gauss-Legendre panels that are split adaptively until the
//! density, psi times the density (for the KL) and the order-statistic integrands above are
//! resolved (their highest Legendre coefficients are below ~1e-13; see `quadrature`). The density
//! is handled as exp(psi) with psi = lambda (Phi(u) - Phi(1)) <= 0, so nothing overflows; every
//! node carries w = 1 - u computed without cancellation, so densities concentrated next to u = 1
//! (lambda up to 1e4 and far beyond, t up to 400) keep full precision. Where psi < -90 the density
//! is below e^-90 of its peak: that region [0, lo] is left out of the panels, and its exact
//! contribution to the WoN integral, 1 - (1 - lo)^N, is added in closed form.
//!
//! A KL budget is met by a bracketed root search in log lambda (bisection safeguarded Illinois
//! steps on log KL), which relies on KL being increasing in lambda (dKL/dlambda = lambda
//! Var_p(Phi) > 0).

// Node-wise loops over several parallel arrays read best with an index.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Error, Result};
use crate::quadrature::{
    integrate, locate, panels_between, power, refine_density, refine_order_statistics, rule,
    Integrated, OrderStatistics, Panel, ORDER,
};
use crate::selection::Procedure;
use crate::transform::{ExpFamily, Transform};

pub mod closed_form;
pub mod discrete;
mod optimal;
mod spec;

pub use optimal::{
    optimal_curve, optimal_envelope, optimal_transform, EnvelopeSolver, OptimalSolution, SATURATION,
};

/// Where the log-density is below -CUT_LOG (relative to its peak) the density is neglected.
const CUT_LOG: f64 = 90.0;
/// Relative tolerance for resolving the density.
const DENSITY_TOLERANCE: f64 = 1e-12;
/// Absolute tolerance for resolving the order-statistic integrands.
const ORDER_TOLERANCE: f64 = 1e-12;
/// Largest N accepted by the engine.
pub const MAX_N: u32 = 4096;

/// Standard, BoN_N and WoN_N win rates of T(pi) against T(pi_ref).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WinRates {
    /// W(pi > pi_ref) = E_p[U].
    pub standard: f64,
    /// W(BoN_N(pi) > BoN_N(pi_ref)).
    pub bon: f64,
    /// W(WoN_N(pi) > WoN_N(pi_ref)).
    pub won: f64,
}

/// One tilted policy: its KL, E[U] and win rates for one N.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvaluation {
    /// lambda = 1/beta.
    pub lambda: f64,
    /// N of the BoN / WoN win rates.
    pub n: u32,
    /// KL(pi || pi_ref) in nats.
    pub kl: f64,
    /// E_p[U], equal to the standard win rate.
    pub expected_u: f64,
    /// Win rates.
    pub win_rate: WinRates,
}

impl PolicyEvaluation {
    /// The win rate under `procedure` (BoN_N or WoN_N).
    pub fn win_rate_for(&self, procedure: Procedure) -> f64 {
        match procedure {
            Procedure::BestOfN => self.win_rate.bon,
            Procedure::WorstOfN => self.win_rate.won,
        }
    }
}

pub(crate) fn check_lambda(lambda: f64) -> Result<()> {
    if lambda.is_finite() && lambda >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            "lambda",
            lambda,
            "lambda = 1/beta must be finite and >= 0",
        ))
    }
}

pub(crate) fn check_n(n: u32) -> Result<()> {
    if (1..=MAX_N).contains(&n) {
        Ok(())
    } else {
        Err(invalid("n", n, &format!("N must be between 1 and {MAX_N}")))
    }
}

pub(crate) fn check_budget(budget: f64) -> Result<()> {
    if budget.is_finite() && budget > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            "kl budget",
            budget,
            "a KL budget must be finite and > 0 nats",
        ))
    }
}

/// A density exp(psi) resolved on panels, with its CDF.
pub(crate) struct Resolved {
    pub panels: Vec<Panel>,
    pub integrated: Integrated,
    /// 1 - lo; the density is neglected on [0, lo].
    pub w_cut: f64,
}

/// w such that psi < -CUT_LOG on [0, 1 - w] (1 when no such region).
fn find_cut(psi: &mut dyn FnMut(f64, f64) -> f64) -> Option<f64> {
    if psi(0.0, 1.0) >= -CUT_LOG {
        return Some(1.0);
    }
    let mut w = 0.5f64;
    while psi(1.0 - w, w) < -CUT_LOG {
        w *= 0.5;
        if w < 1e-290 {
            return None;
        }
    }
    Some((2.0 * w).min(1.0))
}

/// Resolves exp(psi) on panels over [lo, 1] (or [0, 1] when `full` is set).
///
/// `noise` is the absolute rounding error expected in psi (about lambda times the range of Phi
/// times a few ulps); the refinement tolerances never go below a small multiple of it, since no
/// panel can resolve a density more finely than its values are known.
pub(crate) fn resolve(
    psi: &mut dyn FnMut(f64, f64) -> f64,
    stats: Option<OrderStatistics>,
    full: bool,
    noise: f64,
) -> Option<Resolved> {
    let floor = 16.0 * noise.max(0.0);
    let w_cut = find_cut(psi)?;
    // [lo, 1] in 4 graded panels; with `full`, [0, lo] too (2 panels), where the density is negligible
    // but the order-statistic integrands are not.
    let mut panels = Vec::new();
    if full && w_cut < 1.0 {
        panels.extend(panels_between(1.0, w_cut, 2, psi));
    }
    // Graded towards u = 1, where increasing transforms put the mass.
    for (start, end) in [
        (1.0, 0.5),
        (0.5, 0.25),
        (0.25, 1.0 / 16.0),
        (1.0 / 16.0, 0.0),
    ] {
        panels.extend(panels_between(w_cut * start, w_cut * end, 1, psi));
    }
    let mut panels = refine_density(panels, DENSITY_TOLERANCE.max(floor), psi);
    if let Some(stats) = stats {
        let z: f64 = panels.iter().map(Panel::mass).sum();
        panels = refine_order_statistics(panels, z, stats, ORDER_TOLERANCE.max(floor), psi);
    }
    if panels.len() >= crate::quadrature::MAX_PANELS {
        // The density could not be resolved within the panel budget.
        return None;
    }
    let integrated = integrate(&panels);
    if !(integrated.z.is_finite() && integrated.z > 0.0) {
        return None;
    }
    let w_cut = if full { 1.0 } else { w_cut };
    Some(Resolved {
        panels,
        integrated,
        w_cut,
    })
}

/// KL and E[U] of a resolved density, and the BoN_N / WoN_N win rates when `n` is given.
pub(crate) struct Moments {
    pub kl: f64,
    pub expected_u: f64,
    pub bon: f64,
    pub won: f64,
}

pub(crate) fn moments(resolved: &Resolved, n: u32) -> Moments {
    let rule = rule();
    let z = resolved.integrated.z;
    let ni = n as i32;
    let mut e_psi = 0.0;
    let mut e_u = 0.0;
    let mut bon_integral = 0.0;
    let mut won_integral = 0.0;
    for (panel, cdf) in resolved.panels.iter().zip(&resolved.integrated.cdf) {
        let half = panel.half_width();
        let (mut s_psi, mut s_u, mut s_bon, mut s_won) = (0.0, 0.0, 0.0, 0.0);
        for j in 0..ORDER {
            let weight = rule.w[j];
            let g = panel.g[j];
            if g != 0.0 {
                s_psi += weight * g * panel.psi[j];
                s_u += weight * g * panel.u[j];
            }
            if n > 1 {
                s_bon += weight * power(cdf[j], n) * power(panel.u[j], n - 1);
                s_won += weight * power(1.0 - cdf[j], n) * power(panel.w[j], n - 1);
            }
        }
        e_psi += half * s_psi;
        e_u += half * s_u;
        bon_integral += half * s_bon;
        won_integral += half * s_won;
    }
    let kl = (e_psi / z - z.ln()).max(0.0);
    let expected_u = (e_u / z).clamp(0.0, 1.0);
    let (bon, won) = if n > 1 {
        let nf = n as f64;
        (
            (1.0 - nf * bon_integral).clamp(0.0, 1.0),
            (1.0 - resolved.w_cut.powi(ni) + nf * won_integral).clamp(0.0, 1.0),
        )
    } else {
        (expected_u, expected_u)
    };
    Moments {
        kl,
        expected_u,
        bon,
        won,
    }
}

/// The tilted policy p(u) = exp(lambda Phi(u)) / Z of one transform and lambda, resolved on an
/// adaptive grid: density, CDF, KL and E[U]; win rates for any N through
/// [`TiltedPolicy::evaluate`].
pub struct TiltedPolicy {
    transform: Transform,
    lambda: f64,
    /// lambda times the factor that maps the transform onto its normalised shape.
    lambda_shape: f64,
    resolved: Resolved,
    moments: Moments,
}

impl std::fmt::Debug for TiltedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiltedPolicy")
            .field("transform", &self.transform.to_string())
            .field("lambda", &self.lambda)
            .field("kl", &self.moments.kl)
            .field("expected_u", &self.moments.expected_u)
            .field("panels", &self.resolved.panels.len())
            .finish()
    }
}

fn resolve_transform(
    transform: &Transform,
    lambda: f64,
    stats: Option<OrderStatistics>,
) -> Result<(Resolved, f64)> {
    transform.validate()?;
    check_lambda(lambda)?;
    let (shape, scale) = transform.shape();
    let lambda_shape = lambda * scale;
    let degenerate = |detail: &str| Error::Degenerate {
        transform: transform.to_string(),
        lambda,
        detail: detail.to_string(),
    };
    if !lambda_shape.is_finite() {
        return Err(degenerate(
            "lambda times the transform's range overflows f64",
        ));
    }
    let mut psi = |u: f64, w: f64| {
        if lambda_shape == 0.0 {
            0.0
        } else {
            lambda_shape * shape.minus_top(u, w)
        }
    };
    // psi = lambda_shape * (Phi - Phi(1)) with |Phi - Phi(1)| <= 1 for the normalised shapes.
    let noise = lambda_shape * 4.0 * f64::EPSILON;
    let resolved = resolve(&mut psi, stats, false, noise).ok_or_else(|| {
        degenerate("the density is narrower than 1e-290 or needs more than the panel budget")
    })?;
    if !resolved.integrated.z.is_finite() || resolved.integrated.z <= 0.0 {
        return Err(degenerate("the normaliser is not a positive finite number"));
    }
    Ok((resolved, lambda_shape))
}

impl TiltedPolicy {
    /// Resolves the tilted policy of `transform` at `lambda` (>= 0, finite).
    pub fn new(transform: &Transform, lambda: f64) -> Result<Self> {
        let (resolved, lambda_shape) = resolve_transform(transform, lambda, None)?;
        let moments = moments(&resolved, 1);
        Ok(TiltedPolicy {
            transform: transform.clone(),
            lambda,
            lambda_shape,
            resolved,
            moments,
        })
    }

    /// The transform.
    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// lambda = 1/beta.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// KL(p || Uniform) in nats.
    pub fn kl(&self) -> f64 {
        self.moments.kl
    }

    /// E_p[U] (the standard win rate).
    pub fn expected_u(&self) -> f64 {
        self.moments.expected_u
    }

    /// log Z = log int_0^1 exp(lambda Phi(v)) dv.
    pub fn log_partition(&self) -> f64 {
        let top = self.transform.value(1.0);
        let shift = if self.lambda == 0.0 {
            0.0
        } else {
            self.lambda * top
        };
        shift + self.resolved.integrated.z.ln()
    }

    /// log p(u) for u in [0, 1].
    pub fn log_density(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        let (shape, _) = self.transform.shape();
        let psi = if self.lambda_shape == 0.0 {
            0.0
        } else {
            self.lambda_shape * shape.minus_top(u, 1.0 - u)
        };
        psi - self.resolved.integrated.z.ln()
    }

    /// p(u) for u in [0, 1].
    pub fn density(&self, u: f64) -> f64 {
        self.log_density(u).exp()
    }

    /// F(u) = P_p[U <= u].
    pub fn cdf(&self, u: f64) -> f64 {
        if u.is_nan() {
            return f64::NAN;
        }
        if u >= 1.0 {
            return 1.0;
        }
        let panels = &self.resolved.panels;
        if u <= panels[0].a {
            return 0.0;
        }
        let index = locate(|i| panels[i].a, panels.len(), u);
        let panel = &panels[index];
        let x = panel.local_x(u);
        let partial = rule().cumulate_to(x, &panel.g) * panel.half_width();
        (self.resolved.integrated.cdf_start[index] + partial / self.resolved.integrated.z)
            .clamp(0.0, 1.0)
    }

    /// KL, E[U] and the standard, BoN_N and WoN_N win rates (the grid is refined for this N).
    pub fn evaluate(&self, n: u32) -> Result<PolicyEvaluation> {
        evaluate(&self.transform, self.lambda, n)
    }

    /// Number of quadrature panels used (for diagnostics).
    pub fn panel_count(&self) -> usize {
        self.resolved.panels.len()
    }
}

/// KL, E[U] and the standard / BoN_N / WoN_N win rates of the tilted policy of `transform` at
/// `lambda` (what `infalign theory point` prints).
pub fn evaluate(transform: &Transform, lambda: f64, n: u32) -> Result<PolicyEvaluation> {
    check_n(n)?;
    let stats = OrderStatistics {
        n,
        best: true,
        worst: true,
    };
    let (resolved, _) = resolve_transform(transform, lambda, Some(stats))?;
    let m = moments(&resolved, n);
    Ok(PolicyEvaluation {
        lambda,
        n,
        kl: m.kl,
        expected_u: m.expected_u,
        win_rate: WinRates {
            standard: m.expected_u,
            bon: m.bon,
            won: m.won,
        },
    })
}

/// KL(p || Uniform) of the tilted policy of `transform` at `lambda`.
pub fn kl(transform: &Transform, lambda: f64) -> Result<f64> {
    let (resolved, _) = resolve_transform(transform, lambda, None)?;
    Ok(moments(&resolved, 1).kl)
}

/// Evaluations along a sweep of lambdas (any order; each point is exact, not interpolated).
pub fn win_rate_curve(
    transform: &Transform,
    n: u32,
    lambdas: &[f64],
) -> Result<Vec<PolicyEvaluation>> {
    lambdas
        .iter()
        .map(|&lambda| evaluate(transform, lambda, n))
        .collect()
}

/// `points` lambdas spaced evenly in log between `lo` and `hi` (both > 0), plus none at 0.
pub fn log_spaced(lo: f64, hi: f64, points: usize) -> Result<Vec<f64>> {
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= lo) {
        return Err(invalid(
            "sweep range",
            format!("[{lo}, {hi}]"),
            "needs 0 < lo <= hi, both finite",
        ));
    }
    if points == 0 {
        return Ok(Vec::new());
    }
    if points == 1 {
        return Ok(vec![lo]);
    }
    let (a, b) = (lo.ln(), hi.ln());
    Ok((0..points)
        .map(|i| (a + (b - a) * i as f64 / (points - 1) as f64).exp())
        .collect())
}

/// Smallest and largest lambda searched for a KL budget.
const LAMBDA_MIN: f64 = 1e-9;
pub(crate) const LAMBDA_MAX: f64 = 1e15;

/// Finds lambda with kl_at(lambda) = budget by a bracketed search in log lambda: expand a bracket
/// from `guess`, first by `initial_step` (in log lambda), then by 1.5 times the secant prediction
/// of the remaining distance (at most four times the previous step), then Illinois (regula
/// falsi) steps on log KL, falling back to bisection whenever a step leaves the bracket.
/// Returns (lambda, kl).
pub(crate) fn solve_for_kl(
    budget: f64,
    guess: f64,
    initial_step: f64,
    lambda_max: f64,
    kl_at: &mut dyn FnMut(f64) -> Result<f64>,
    describe: &dyn Fn() -> String,
) -> Result<(f64, f64)> {
    check_budget(budget)?;
    let target = budget.ln();
    let (x_min, x_max) = (LAMBDA_MIN.ln(), lambda_max.min(LAMBDA_MAX).ln());
    let mut f = |x: f64| -> Result<(f64, f64)> {
        let kl = kl_at(x.exp())?;
        Ok((kl.max(1e-300).ln() - target, kl))
    };
    let guess = if guess.is_finite() && guess > 0.0 {
        guess
    } else {
        1.0
    };
    let mut x0 = guess.ln().clamp(x_min, x_max);
    let (mut f0, kl0) = f(x0)?;
    if f0 == 0.0 {
        return Ok((x0.exp(), kl0));
    }
    // Expand a bracket.
    let direction = if f0 < 0.0 { 1.0 } else { -1.0 };
    let mut step = initial_step.clamp(1e-3, 4.0);
    let (mut a, mut fa, mut b, mut fb);
    loop {
        let x1 = (x0 + direction * step).clamp(x_min, x_max);
        let (f1, kl1) = f(x1)?;
        if f1 == 0.0 {
            return Ok((x1.exp(), kl1));
        }
        if (f1 > 0.0) != (f0 > 0.0) {
            a = x0;
            fa = f0;
            b = x1;
            fb = f1;
            break;
        }
        if x1 == x_min || x1 == x_max {
            return Err(Error::KlBudgetUnreachable {
                budget,
                transform: describe(),
                reason: format!(
                    "KL is {kl1:.6e} nats at lambda = {:.3e}, the end of the searched range",
                    x1.exp()
                ),
            });
        }
        // log KL is close to linear in log lambda: aim 1.5 times past the secant prediction,
        // growing the step at most fourfold.
        let slope = (f1 - f0) / (x1 - x0);
        let predicted = (f1 / slope).abs();
        step = if slope.is_finite() && slope * direction * direction > 0.0 && predicted.is_finite()
        {
            (1.5 * predicted + 0.02).min(4.0 * step)
        } else {
            2.0 * step
        };
        x0 = x1;
        f0 = f1;
    }
    // Illinois on the bracket [a, b].
    let mut last = (b.exp(), fb);
    for _ in 0..200 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut x = b - fb * (b - a) / (fb - fa);
        if !(x > lo && x < hi) {
            x = 0.5 * (a + b);
        }
        let (fx, kl) = f(x)?;
        last = (x.exp(), kl);
        if fx.abs() < 1e-12 || (hi - lo) < 1e-12 {
            return Ok(last);
        }
        if (fx > 0.0) != (fb > 0.0) {
            a = b;
            fa = fb;
        } else {
            fa *= 0.5;
        }
        b = x;
        fb = fx;
    }
    Ok(last)
}

/// The lambda at which the tilted policy of `transform` has KL = `budget` nats.
pub fn lambda_for_kl(transform: &Transform, budget: f64) -> Result<f64> {
    lambda_for_kl_from(transform, budget, None).map(|(lambda, _)| lambda)
}

fn lambda_for_kl_from(
    transform: &Transform,
    budget: f64,
    guess: Option<f64>,
) -> Result<(f64, f64)> {
    transform.validate()?;
    // Search in the lambda of the normalised shape, then map back.
    let (_, scale) = transform.shape();
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::KlBudgetUnreachable {
            budget,
            transform: transform.to_string(),
            reason: "the transform's range is not a positive finite number".into(),
        });
    }
    let shape_guess = guess.map(|g| g * scale).unwrap_or(1.0);
    let step = if guess.is_some() { 0.25 } else { 1.0 };
    let mut kl_at = |lambda_shape: f64| kl(transform, lambda_shape / scale);
    let describe = || transform.to_string();
    let (lambda_shape, kl) =
        solve_for_kl(budget, shape_guess, step, LAMBDA_MAX, &mut kl_at, &describe)?;
    Ok((lambda_shape / scale, kl))
}

/// The tilted policy of `transform` at the lambda that spends exactly `budget` nats of KL.
pub fn evaluate_at_kl(transform: &Transform, n: u32, budget: f64) -> Result<PolicyEvaluation> {
    check_n(n)?;
    let (lambda, _) = lambda_for_kl_from(transform, budget, None)?;
    evaluate(transform, lambda, n)
}

/// The best steepness t of an exponential family for a procedure, N and KL budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestT {
    /// Family searched.
    pub family: ExpFamily,
    /// The best t found.
    pub t: f64,
    /// The lambda of the normalised transform (normexp / normnegexp) at that t.
    pub lambda: f64,
    /// The win rate under the procedure at the budget.
    pub win_rate: f64,
    /// The full evaluation at that t.
    pub evaluation: PolicyEvaluation,
}

/// Smallest and largest t searched by [`best_t`].
pub const T_MIN: f64 = 0.05;
/// Largest t searched by [`best_t`].
pub const T_MAX: f64 = 400.0;

/// Searches t in [T_MIN, T_MAX] for the exponential transform with the highest BoN_N / WoN_N win
/// rate at KL = `budget`: a log-spaced scan of 24 values, then golden-section search in log t
/// around the best one (to a relative precision of about 1e-4 in t).
pub fn best_t(family: ExpFamily, procedure: Procedure, n: u32, budget: f64) -> Result<BestT> {
    check_n(n)?;
    check_budget(budget)?;
    let mut guess: Option<f64> = None;
    // A t whose transform cannot spend the budget at all (a steep negexp saturates: its KL grows
    // only like log(lambda)/t) scores -inf and is skipped.
    let score = |log_t: f64, guess: &mut Option<f64>| -> Result<(f64, PolicyEvaluation)> {
        let transform = family.transform(log_t.exp());
        let (lambda, _) = match lambda_for_kl_from(&transform, budget, *guess) {
            Ok(found) => found,
            Err(Error::KlBudgetUnreachable { .. }) => {
                let placeholder = PolicyEvaluation {
                    lambda: f64::NAN,
                    n,
                    kl: f64::NAN,
                    expected_u: f64::NAN,
                    win_rate: WinRates {
                        standard: f64::NAN,
                        bon: f64::NAN,
                        won: f64::NAN,
                    },
                };
                return Ok((f64::NEG_INFINITY, placeholder));
            }
            Err(error) => return Err(error),
        };
        *guess = Some(lambda);
        let evaluation = evaluate(&transform, lambda, n)?;
        Ok((evaluation.win_rate_for(procedure), evaluation))
    };
    let (x_min, x_max) = (T_MIN.ln(), T_MAX.ln());
    const SCAN: usize = 24;
    let xs: Vec<f64> = (0..SCAN)
        .map(|i| x_min + (x_max - x_min) * i as f64 / (SCAN - 1) as f64)
        .collect();
    let mut best: Option<(usize, f64, PolicyEvaluation)> = None;
    for (i, &x) in xs.iter().enumerate() {
        let (value, evaluation) = score(x, &mut guess)?;
        if best.as_ref().is_none_or(|(_, v, _)| value > *v) {
            best = Some((i, value, evaluation));
        }
    }
    let (index, mut best_value, mut best_eval) =
        best.ok_or_else(|| invalid("t scan", SCAN, "empty"))?;
    if best_value == f64::NEG_INFINITY {
        return Err(Error::KlBudgetUnreachable {
            budget,
            transform: format!("{} with any t in [{T_MIN}, {T_MAX}]", family.as_str()),
            reason: "no t in the scan reaches this KL".into(),
        });
    }
    let mut best_x = xs[index];
    // Golden-section search on [x_{i-1}, x_{i+1}].
    let mut lo = xs[index.saturating_sub(1)];
    let mut hi = xs[(index + 1).min(SCAN - 1)];
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = hi - ratio * (hi - lo);
    let mut d = lo + ratio * (hi - lo);
    guess = Some(best_eval.lambda);
    let (mut fc, ec) = score(c, &mut guess)?;
    let (mut fd, ed) = score(d, &mut guess)?;
    for (x, v, e) in [(c, fc, ec), (d, fd, ed)] {
        if v > best_value {
            best_value = v;
            best_eval = e;
            best_x = x;
        }
    }
    while hi - lo > 1e-4 {
        if fc > fd {
            hi = d;
            d = c;
            fd = fc;
            c = hi - ratio * (hi - lo);
            let (v, e) = score(c, &mut guess)?;
            fc = v;
            if v > best_value {
                best_value = v;
                best_eval = e;
                best_x = c;
            }
        } else {
            lo = c;
            c = d;
            fc = fd;
            d = lo + ratio * (hi - lo);
            let (v, e) = score(d, &mut guess)?;
            fd = v;
            if v > best_value {
                best_value = v;
                best_eval = e;
                best_x = d;
            }
        }
    }
    Ok(BestT {
        family,
        t: best_x.exp(),
        lambda: best_eval.lambda,
        win_rate: best_value,
        evaluation: best_eval,
    })
}
