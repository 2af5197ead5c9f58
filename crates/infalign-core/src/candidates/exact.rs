//! The exact optimum of candidate-set CTRL: the tilted policy `pi_x(y) ∝ (1/C) exp(s(y)/beta)`
//! of each prompt, and the common beta that spends a KL budget on average over prompts.
//!
//! Everything is computed from the gaps `d = s - max s <= 0` and lambda = 1/beta, so
//! `exp(lambda d)` never overflows however large the scores or small beta:
//!
//! ```text
//! Z = sum_y exp(lambda d_y) >= 1,   pi(y) = exp(lambda d_y) / Z
//! KL(pi || uniform) = lambda E_pi[d] - ln Z + ln C,      dKL/dlambda = lambda Var_pi(d)
//! ```
//!
//! The mean KL over prompts rises from 0 at lambda = 0 to `mean ln(C / #ties at the top score)`
//! as lambda -> infinity (beta -> 0), strictly where any prompt has unequal scores, so a budget
//! below that supremum has exactly one beta; it is found by a bracketed Newton iteration in
//! ln lambda (Newton steps that leave the bracket become bisections).

use crate::error::{invalid, Error, Result};
use crate::theory::check_n;

use super::evaluate::{evaluate, CandidateEvaluation};
use super::{CandidateSet, Scoring};

/// Relative tolerance on the mean KL when solving for a budget.
const KL_TOLERANCE: f64 = 1e-13;
/// Iteration cap of the solver (bisection alone would need ~70 steps over the whole f64 range).
const MAX_ITERATIONS: usize = 400;

/// Checks beta: finite and > 0.
fn check_beta(beta: f64) -> Result<()> {
    if beta.is_finite() && beta > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            "beta",
            beta,
            "the KL coefficient must be finite and > 0",
        ))
    }
}

/// One prompt's scores as gaps below their maximum.
struct Gaps {
    /// s - max s, all <= 0, at least one 0.
    gaps: Vec<f64>,
    /// ln C.
    ln_c: f64,
    /// How many candidates share the top score.
    ties_at_top: usize,
}

impl Gaps {
    /// From finite, non-empty scores.
    fn new(scores: &[f64]) -> Gaps {
        let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Gaps {
            gaps: scores.iter().map(|&s| s - top).collect(),
            ln_c: (scores.len() as f64).ln(),
            ties_at_top: scores.iter().filter(|&&s| s == top).count(),
        }
    }

    /// The unnormalised weights exp(lambda d) and their sum Z >= 1.
    fn weights(&self, lambda: f64) -> (Vec<f64>, f64) {
        let weights: Vec<f64> = self
            .gaps
            .iter()
            .map(|&d| if d == 0.0 { 1.0 } else { (lambda * d).exp() })
            .collect();
        let total = weights.iter().sum();
        (weights, total)
    }

    /// The tilted probabilities at lambda.
    fn probabilities(&self, lambda: f64) -> Vec<f64> {
        let (weights, total) = self.weights(lambda);
        weights.into_iter().map(|w| w / total).collect()
    }

    /// KL(pi_lambda || uniform) and its derivative in ln lambda, lambda^2 Var(d).
    fn kl_and_slope(&self, lambda: f64) -> (f64, f64) {
        let (weights, total) = self.weights(lambda);
        let mean: f64 = weights
            .iter()
            .zip(&self.gaps)
            .map(|(w, d)| w * d)
            .sum::<f64>()
            / total;
        let variance: f64 = weights
            .iter()
            .zip(&self.gaps)
            .map(|(w, d)| w * (d - mean) * (d - mean))
            .sum::<f64>()
            / total;
        let kl = (lambda * mean - total.ln() + self.ln_c).max(0.0);
        (kl, lambda * lambda * variance)
    }

    /// The KL as lambda -> infinity: ln(C / #ties at the top).
    fn max_kl(&self) -> f64 {
        self.ln_c - (self.ties_at_top as f64).ln()
    }
}

/// The scores of every prompt as gaps; errors name the prompt of a bad score.
fn gaps_of(set: &CandidateSet, scoring: &Scoring) -> Result<Vec<Gaps>> {
    Ok(set
        .scores(scoring)?
        .iter()
        .map(|scores| Gaps::new(scores))
        .collect())
}

/// Mean over prompts of KL and of its derivative in ln lambda.
fn mean_kl_and_slope(all: &[Gaps], lambda: f64) -> (f64, f64) {
    let (kl, slope) = all.iter().fold((0.0, 0.0), |(kl, slope), gaps| {
        let (k, s) = gaps.kl_and_slope(lambda);
        (kl + k, slope + s)
    });
    let count = all.len() as f64;
    (kl / count, slope / count)
}

/// The tilted distribution `pi(y) ∝ exp(score(y) / beta)` over one prompt's candidates (the
/// exact optimum of `E_pi[score] - beta KL(pi || uniform)`).
///
/// Errors: no scores, a NaN or infinite score (naming its index), beta not finite and > 0.
pub fn tilt(scores: &[f64], beta: f64) -> Result<Vec<f64>> {
    check_beta(beta)?;
    if scores.is_empty() {
        return Err(Error::Empty { what: "scores" });
    }
    crate::error::check_finite("score", scores)?;
    Ok(Gaps::new(scores).probabilities(1.0 / beta))
}

/// KL(pi || uniform) = sum pi ln(pi C) of one distribution over C outcomes.
///
/// Errors: no probabilities, a negative or non-finite one, or a sum off 1 by more than 1e-6.
pub fn kl_from_uniform(probabilities: &[f64]) -> Result<f64> {
    if probabilities.is_empty() {
        return Err(Error::Empty {
            what: "probabilities",
        });
    }
    Ok(super::evaluate::kl_uniform(&super::evaluate::normalised(
        probabilities,
        None,
    )?))
}

/// The exact optimum at `beta`: every prompt's tilted distribution over its candidates.
pub fn exact_policy(set: &CandidateSet, scoring: &Scoring, beta: f64) -> Result<Vec<Vec<f64>>> {
    check_beta(beta)?;
    Ok(gaps_of(set, scoring)?
        .iter()
        .map(|gaps| gaps.probabilities(1.0 / beta))
        .collect())
}

/// The mean over prompts of KL(pi_x || pi_ref) of the exact optimum at `beta`.
pub fn mean_kl_at_beta(set: &CandidateSet, scoring: &Scoring, beta: f64) -> Result<f64> {
    check_beta(beta)?;
    Ok(mean_kl_and_slope(&gaps_of(set, scoring)?, 1.0 / beta).0)
}

/// The supremum of the mean KL over beta (reached only as beta -> 0): the mean over prompts of
/// ln(C / number of candidates that share the top score).
pub fn max_mean_kl(set: &CandidateSet, scoring: &Scoring) -> Result<f64> {
    let all = gaps_of(set, scoring)?;
    Ok(all.iter().map(Gaps::max_kl).sum::<f64>() / all.len() as f64)
}

/// The common beta at which the mean over prompts of KL(pi_x || pi_ref) of the exact optimum
/// equals `budget` (to a relative 1e-13, or to the resolution of f64 in beta).
///
/// Errors: a budget that is not finite and > 0; [`Error::KlBudgetUnreachable`] for a budget at
/// or above [`max_mean_kl`]; a bad score (naming the prompt).
pub fn beta_for_kl(set: &CandidateSet, scoring: &Scoring, budget: f64) -> Result<f64> {
    crate::theory::check_budget(budget)?;
    let all = gaps_of(set, scoring)?;
    let supremum = all.iter().map(Gaps::max_kl).sum::<f64>() / all.len() as f64;
    let unreachable = |reason: String| Error::KlBudgetUnreachable {
        budget,
        transform: scoring.to_string(),
        reason,
    };
    if budget >= supremum {
        return Err(unreachable(format!(
            "the mean KL over the {} prompts is below {supremum:.6} nats for every beta > 0 \
             (the mean of ln(C / #candidates sharing the top score))",
            all.len()
        )));
    }
    let f = |x: f64| {
        let (kl, slope) = mean_kl_and_slope(&all, x.exp());
        (kl - budget, slope, kl)
    };
    // Bracket in x = ln lambda: start where the typical score spread is 1/lambda.
    let spread = all
        .iter()
        .map(|gaps| -gaps.gaps.iter().copied().fold(0.0, f64::min))
        .sum::<f64>()
        / all.len() as f64;
    let (x_min, x_max) = (-700.0, 700.0);
    let mut x = if spread > 0.0 {
        (1.0 / spread).ln().clamp(x_min, x_max)
    } else {
        0.0
    };
    let (mut fx, mut slope);
    let (mut lo, mut hi);
    if f(x).0 < 0.0 {
        lo = x;
        loop {
            x = (x + 2.0).min(x_max);
            let next = f(x);
            if next.0 >= 0.0 {
                hi = x;
                (fx, slope) = (next.0, next.1);
                break;
            }
            if x == x_max {
                return Err(unreachable(format!(
                    "the mean KL is {:.6e} nats at beta = e^-{x_max}, the end of the searched range",
                    next.2
                )));
            }
            lo = x;
        }
    } else {
        hi = x;
        loop {
            x = (x - 2.0).max(x_min);
            let next = f(x);
            if next.0 < 0.0 {
                lo = x;
                (fx, slope) = (next.0, next.1);
                break;
            }
            if x == x_min {
                return Err(unreachable(format!(
                    "the mean KL is still {:.6e} nats at beta = e^{}",
                    next.2, -x_min
                )));
            }
            hi = x;
        }
    }
    // Safeguarded Newton on [lo, hi], f(lo) < 0 <= f(hi) with f increasing in x: a Newton
    // step that leaves the bracket, or follows one that did not halve |f|, is a bisection.
    let mut bisect = false;
    for _ in 0..MAX_ITERATIONS {
        if fx.abs() <= KL_TOLERANCE * budget {
            return Ok((-x).exp());
        }
        let newton = x - fx / slope;
        let next = if !bisect && slope > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if next <= lo || next >= hi {
            // The bracket is as narrow as f64 allows.
            return Ok((-x).exp());
        }
        let (value, next_slope, _) = f(next);
        if value < 0.0 {
            lo = next;
        } else {
            hi = next;
        }
        bisect = value.abs() > 0.5 * fx.abs();
        (x, fx, slope) = (next, value, next_slope);
    }
    Err(Error::NoConvergence {
        what: format!("candidate-set beta for a mean KL of {budget} nats ({scoring})"),
        iterations: MAX_ITERATIONS,
        residual: fx,
    })
}

/// The exact optimum at `beta`, evaluated exactly (win rates for BoN_N / WoN_N with this N).
pub fn exact_at_beta(
    set: &CandidateSet,
    scoring: &Scoring,
    beta: f64,
    n: u32,
) -> Result<CandidateEvaluation> {
    check_n(n)?;
    evaluate(set, &exact_policy(set, scoring, beta)?, n)
}

/// The exact optimum at the common beta that spends `budget` nats of mean KL, with that beta.
pub fn exact_at_kl(
    set: &CandidateSet,
    scoring: &Scoring,
    budget: f64,
    n: u32,
) -> Result<(f64, CandidateEvaluation)> {
    check_n(n)?;
    let beta = beta_for_kl(set, scoring, budget)?;
    Ok((beta, exact_at_beta(set, scoring, beta, n)?))
}

#[cfg(test)]
mod tests {
    use super::super::tests::repeated_set;
    use super::*;
    use crate::transform::Transform;

    fn identity() -> Scoring {
        Scoring::Calibrated(Transform::Identity)
    }

    #[test]
    fn tilt_is_a_normalised_softmax_without_overflow() {
        let scores = [0.0, 1.0, 2.0, 2.0];
        let p = tilt(&scores, 0.5).unwrap();
        let z: f64 = scores.iter().map(|s| (s / 0.5f64).exp()).sum();
        for (pi, s) in p.iter().zip(scores) {
            assert!((pi - (s / 0.5f64).exp() / z).abs() < 1e-15);
        }
        // Huge scores and tiny beta: all mass on the ties at the top.
        let p = tilt(&[1e300, -1e300, 1e300], 1e-300).unwrap();
        assert_eq!(p, vec![0.5, 0.0, 0.5]);
        // beta -> infinity: uniform, bit for bit.
        let p = tilt(&[3.0, -2.0, 7.0], 1e300).unwrap();
        assert_eq!(p, vec![1.0 / 3.0; 3]);
        assert!(tilt(&[1.0, f64::NAN], 1.0).is_err());
        assert!(tilt(&[], 1.0).is_err());
        for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = tilt(&[1.0, 2.0], beta).unwrap_err();
            assert!(err.to_string().contains("beta"), "{err}");
        }
    }

    #[test]
    fn kl_matches_the_direct_sum() {
        let scores = [0.3, -1.0, 2.5, 0.0, 2.5];
        for beta in [0.01, 0.3, 1.0, 10.0] {
            let p = tilt(&scores, beta).unwrap();
            let direct: f64 = p
                .iter()
                .filter(|&&q| q > 0.0)
                .map(|q| q * (q * 5.0).ln())
                .sum();
            let (kl, _) = Gaps::new(&scores).kl_and_slope(1.0 / beta);
            assert!((kl - direct).abs() < 1e-14, "beta {beta}: {kl} vs {direct}");
            assert!((kl_from_uniform(&p).unwrap() - direct).abs() < 1e-14);
        }
        assert!(kl_from_uniform(&[0.5, 0.6]).is_err());
        assert!(kl_from_uniform(&[1.5, -0.5]).is_err());
    }

    #[test]
    fn slope_matches_a_finite_difference() {
        let gaps = Gaps::new(&[0.3, -1.0, 2.5, 0.0, 1.5]);
        for x in [-2.0f64, 0.0, 1.0, 3.0] {
            let h = 1e-5;
            let (up, _) = gaps.kl_and_slope((x + h).exp());
            let (down, _) = gaps.kl_and_slope((x - h).exp());
            let (_, slope) = gaps.kl_and_slope(x.exp());
            // Central difference: error O(h^2) times the third derivative (order 1 here).
            assert!(((up - down) / (2.0 * h) - slope).abs() < 1e-8, "x {x}");
        }
    }

    #[test]
    fn beta_for_kl_hits_the_budget() {
        // Ties in raw and calibrated rewards, different C per prompt.
        let set = CandidateSet::from_rewards(
            vec![
                vec![0.0, 1.0, 1.0, 2.0, 3.0, 3.0],
                vec![5.0, -1.0, 2.0, 2.0],
                vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            ],
            vec![
                vec![0.5, 1.5, 2.5],
                vec![0.0, 2.0, 4.0],
                vec![0.25, 0.5, 0.75],
            ],
        )
        .unwrap();
        for scoring in [
            Scoring::Raw,
            identity(),
            Scoring::Calibrated(Transform::Log),
            Scoring::Calibrated(Transform::Exp { t: 40.0 }),
            Scoring::Calibrated(Transform::NormNegExp { t: 5.0 }),
        ] {
            let top = max_mean_kl(&set, &scoring).unwrap();
            for fraction in [1e-4, 0.01, 0.3, 0.9, 0.999] {
                let budget = fraction * top;
                let beta = beta_for_kl(&set, &scoring, budget).unwrap();
                let kl = mean_kl_at_beta(&set, &scoring, beta).unwrap();
                assert!(
                    ((kl - budget) / budget).abs() < 1e-9,
                    "{scoring} budget {budget}: beta {beta} gives {kl}"
                );
                let (beta2, evaluation) = exact_at_kl(&set, &scoring, budget, 4).unwrap();
                assert_eq!(beta2, beta);
                // The evaluation's KL is computed from the probabilities (another formula).
                assert!(((evaluation.kl - budget) / budget).abs() < 1e-9);
            }
            for budget in [top, 1.5 * top] {
                let err = beta_for_kl(&set, &scoring, budget).unwrap_err();
                assert!(
                    matches!(err, Error::KlBudgetUnreachable { .. }),
                    "{scoring}: {err}"
                );
            }
        }
        assert!(beta_for_kl(&set, &Scoring::Raw, 0.0).is_err());
        assert!(beta_for_kl(&set, &Scoring::Raw, f64::NAN).is_err());
    }

    #[test]
    fn identity_tilt_approaches_the_theory_without_ties() {
        // C = K = 2000 distinct rewards, references equal to the candidates: candidate i has u
        // = (i + 1/2) / C, the midpoints of C equal cells, and pi_ref is uniform on them. The
        // tilt is then the midpoint discretisation of the theory's density, and every quantity
        // is a midpoint or trapezoid sum of the theory's integrals, off by O(lambda^2 / C^2)
        // (the KL's leading error is exactly -lambda^2 / (24 C^2)). Seen: at most 4.2e-6 for
        // the KL and 6.2e-6 for BoN_4 at lambda = 20, 1.5e-7 at lambda = 1.
        let c = 2000;
        let raw: Vec<f64> = (0..c).map(|i| i as f64).collect();
        let set = repeated_set(&raw, &raw, 2);
        assert_eq!(set.prompts()[1].calibrated()[7], 7.5 / c as f64);
        for lambda in [1.0, 5.0, 20.0] {
            let theory = crate::theory::evaluate(&Transform::Identity, lambda, 4).unwrap();
            let ours = exact_at_beta(&set, &identity(), 1.0 / lambda, 4).unwrap();
            let pairs = [
                ("kl", ours.kl, theory.kl),
                ("calibrated kl", ours.calibrated_kl_mean, theory.kl),
                ("pooled calibrated kl", ours.calibrated_kl_pooled, theory.kl),
                ("standard", ours.win_rate.standard, theory.win_rate.standard),
                ("bon", ours.win_rate.bon, theory.win_rate.bon),
                ("won", ours.win_rate.won, theory.win_rate.won),
            ];
            let tolerance = lambda * lambda / (4.0 * (c * c) as f64) + 1e-6;
            for (what, got, want) in pairs {
                assert!(
                    (got - want).abs() < tolerance,
                    "lambda {lambda} {what}: {got} vs theory {want}"
                );
            }
        }
        // And a KL budget gives the theory's lambda.
        let beta = beta_for_kl(&set, &identity(), 0.650117).unwrap();
        let lambda = crate::theory::lambda_for_kl(&Transform::Identity, 0.650117).unwrap();
        assert!((1.0 / beta / lambda - 1.0).abs() < 2e-6, "{beta} {lambda}");
    }

    #[test]
    fn max_mean_kl_counts_ties_at_the_top() {
        // Prompt 0: top score shared by 2 of 4; prompt 1: all equal (KL stays 0).
        let set = CandidateSet::from_rewards(
            vec![vec![0.0, 3.0, 1.0, 3.0], vec![2.0, 2.0, 2.0]],
            vec![vec![0.0], vec![0.0]],
        )
        .unwrap();
        let top = max_mean_kl(&set, &Scoring::Raw).unwrap();
        assert!((top - 0.5 * (2.0f64).ln()).abs() < 1e-15);
        // At a tiny beta the mean KL is the supremum to f64 precision.
        let kl = mean_kl_at_beta(&set, &Scoring::Raw, 1e-3).unwrap();
        assert!((kl - top).abs() < 1e-12, "{kl}");
        // Calibrated: every candidate is above the single reference 0 except the first, so
        // under identity three share u = 1.
        let top = max_mean_kl(&set, &identity()).unwrap();
        assert!((top - 0.5 * (4.0f64 / 3.0).ln()).abs() < 1e-15, "{top}");
    }

    #[test]
    fn exact_optimum_maximises_the_regularised_objective() {
        // E_pi[s] - beta KL(pi || uniform) is largest at the tilt: compare with perturbations.
        let set = repeated_set(&[0.0, 1.0, 4.0, 2.0, 2.5], &[1.0, 3.0], 1);
        let scores = &set.scores(&Scoring::Raw).unwrap()[0];
        let beta = 0.7;
        let objective = |p: &[f64]| {
            let gain: f64 = p.iter().zip(scores).map(|(q, s)| q * s).sum();
            gain - beta * kl_from_uniform(p).unwrap()
        };
        let best = exact_policy(&set, &Scoring::Raw, beta).unwrap().remove(0);
        let value = objective(&best);
        // The optimum's value is beta ln mean exp(s / beta).
        let closed = beta * (scores.iter().map(|s| (s / beta).exp()).sum::<f64>() / 5.0).ln();
        assert!((value - closed).abs() < 1e-12);
        for i in 0..5 {
            for j in 0..5 {
                if i == j {
                    continue;
                }
                let mut q = best.clone();
                let shift = 0.01 * q[i];
                q[i] -= shift;
                q[j] += shift;
                assert!(objective(&q) < value, "moving mass {i} -> {j}");
            }
        }
    }
}
