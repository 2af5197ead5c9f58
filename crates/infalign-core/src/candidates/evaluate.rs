//! Exact evaluation of a policy over candidate sets: KL, inference-time win rates judged by the
//! raw reward, and the calibrated KL.
//!
//! Win rates. For one prompt, group the candidates by equal raw reward into levels
//! v_1 < ... < v_J; the policy puts mass p_j on level j and pi_ref (uniform) q_j. A procedure T
//! serves a level distribution: plain sampling serves p itself; BoN_N (the best of N draws with
//! replacement) serves `P_j^N - P_(j-1)^N` and WoN_N `S_(j-1)^N - S_j^N`, with P the CDF and
//! S = 1 - P the survival function (summed from the top, so small tails keep their precision).
//! With a the policy's served pmf, b the reference's, and A, B their CDFs,
//!
//! ```text
//! W = sum_j a_j (B_(j-1) + b_j / 2) = 1/2 + 1/2 sum_j (a_j B_(j-1) - b_j A_(j-1))
//! ```
//!
//! (ties split; the second form uses sum_j a_j b_j + a_j B_(j-1) + b_j A_(j-1) = A_J B_J = 1). It
//! is evaluated in the antisymmetric form, so a policy equal to pi_ref scores exactly 1/2.
//! Per-prompt win rates are averaged with equal weight per prompt.
//!
//! Calibrated KL. The calibrated reward u of a candidate lies on the grid j/(2K). Per prompt,
//! the KL between the distributions of u under pi and under pi_ref (candidates grouped by
//! equal u) is a lower bound on KL(pi || pi_ref) (data processing); its mean over prompts is the
//! theory's KL axis. Pooled: the per-prompt grid distributions are averaged over prompts for
//! pi and for pi_ref, and the KL of the two averages is taken; by convexity it is at most the
//! mean of the per-prompt values. It is what a histogram of pooled calibrated rewards sees.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::theory::{check_n, WinRates};

use super::CandidateSet;

/// Largest deviation from 1 accepted in a policy's per-prompt probability sum (the
/// probabilities are then divided by their sum).
const SUM_TOLERANCE: f64 = 1e-6;

/// One prompt's exact evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PromptEvaluation {
    /// KL(pi_x || pi_ref) in nats.
    pub kl: f64,
    /// Win rates of T(pi) against T(pi_ref) by raw reward, ties split.
    pub win_rate: WinRates,
    /// KL between the distributions of the calibrated reward under pi_x and pi_ref.
    pub calibrated_kl: f64,
}

/// A policy's exact evaluation over a candidate set: means over prompts with equal weight,
/// and the per-prompt values (for a bootstrap over prompts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateEvaluation {
    /// N of the BoN_N / WoN_N win rates.
    pub n: u32,
    /// Mean over prompts of KL(pi_x || pi_ref).
    pub kl: f64,
    /// Mean over prompts of the standard, BoN_N and WoN_N win rates (by raw reward).
    pub win_rate: WinRates,
    /// Mean over prompts of the per-prompt calibrated KL (the theory's KL axis).
    pub calibrated_kl_mean: f64,
    /// KL of the calibrated-reward distributions pooled over prompts (<= the mean).
    pub calibrated_kl_pooled: f64,
    /// Per prompt, in the set's order.
    pub prompts: Vec<PromptEvaluation>,
}

/// Evaluates `policy` (one probability vector over each prompt's candidates, in the set's
/// order) exactly, with BoN_N / WoN_N win rates for `n`.
///
/// Errors name the prompt and field: a different number of prompts or candidates, a negative
/// or non-finite probability (with its candidate index), probabilities whose sum is off 1 by
/// more than 1e-6 (smaller deviations are normalised away), or N outside 1..=4096.
pub fn evaluate(set: &CandidateSet, policy: &[Vec<f64>], n: u32) -> Result<CandidateEvaluation> {
    check_n(n)?;
    if policy.len() != set.len() {
        return Err(invalid(
            "policy",
            format!("{} prompts", policy.len()),
            &format!("the candidate set has {} prompts", set.len()),
        ));
    }
    let cells = 2 * set.k() + 1;
    let mut pooled_policy = vec![0.0; cells];
    let mut pooled_reference = vec![0.0; cells];
    let weight = 1.0 / set.len() as f64;
    let mut prompts = Vec::with_capacity(set.len());
    for (p, (prompt, probabilities)) in set.prompts().iter().zip(policy).enumerate() {
        let c = prompt.len();
        if probabilities.len() != c {
            return Err(invalid(
                "policy probabilities",
                format!("{} values", probabilities.len()),
                &format!("prompt {p} has {c} candidates"),
            ));
        }
        let pi = normalised(probabilities, Some(p))?;
        // pi_ref goes through the same arithmetic as the policy, so that a policy equal to
        // pi_ref gives bit-identical level distributions.
        let reference = normalised(&vec![1.0 / c as f64; c], Some(p))?;
        let levels = |probabilities: &[f64]| {
            let mut mass = vec![0.0; prompt.levels];
            for (&level, &q) in prompt.level.iter().zip(probabilities) {
                mass[level] += q;
            }
            mass
        };
        let win_rate = level_win_rates_unchecked(&levels(&pi), &levels(&reference), n);
        let grid = |probabilities: &[f64]| {
            let mut mass = vec![0.0; cells];
            for (&cell, &q) in prompt.grid.iter().zip(probabilities) {
                mass[cell] += q;
            }
            mass
        };
        let (policy_grid, reference_grid) = (grid(&pi), grid(&reference));
        for (total, q) in pooled_policy.iter_mut().zip(&policy_grid) {
            *total += weight * q;
        }
        for (total, q) in pooled_reference.iter_mut().zip(&reference_grid) {
            *total += weight * q;
        }
        prompts.push(PromptEvaluation {
            kl: kl_uniform(&pi),
            win_rate,
            calibrated_kl: kl_between(&policy_grid, &reference_grid),
        });
    }
    let mean = |value: fn(&PromptEvaluation) -> f64| {
        prompts.iter().map(value).sum::<f64>() / prompts.len() as f64
    };
    Ok(CandidateEvaluation {
        n,
        kl: mean(|e| e.kl),
        win_rate: WinRates {
            standard: mean(|e| e.win_rate.standard),
            bon: mean(|e| e.win_rate.bon),
            won: mean(|e| e.win_rate.won),
        },
        calibrated_kl_mean: mean(|e| e.calibrated_kl),
        calibrated_kl_pooled: kl_between(&pooled_policy, &pooled_reference),
        prompts,
    })
}

/// Checks a probability vector and divides it by its sum.
pub(super) fn normalised(probabilities: &[f64], prompt: Option<usize>) -> Result<Vec<f64>> {
    let place = prompt.map_or(String::new(), |p| format!("prompt {p}, "));
    if let Some(i) = probabilities
        .iter()
        .position(|q| !(q.is_finite() && *q >= 0.0))
    {
        return Err(invalid(
            "policy probability",
            probabilities[i],
            &format!("{place}candidate {i}: must be finite and >= 0"),
        ));
    }
    let total: f64 = probabilities.iter().sum();
    // Finite entries >= 0, so the sum is a number (possibly +inf, which fails here too).
    if (total - 1.0).abs() > SUM_TOLERANCE {
        return Err(invalid(
            "policy probabilities' sum",
            total,
            &format!("{place}the probabilities must sum to 1 (within {SUM_TOLERANCE})"),
        ));
    }
    Ok(probabilities.iter().map(|q| q / total).collect())
}

/// KL(pi || uniform) = sum pi ln(pi C), for a valid distribution.
pub(super) fn kl_uniform(probabilities: &[f64]) -> f64 {
    let c = probabilities.len() as f64;
    probabilities
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| q * (q * c).ln())
        .sum::<f64>()
        .max(0.0)
}

/// KL(p || q) over cells; q > 0 wherever p > 0.
fn kl_between(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(&a, _)| a > 0.0)
        .map(|(&a, &b)| a * (a / b).ln())
        .sum::<f64>()
        .max(0.0)
}

/// Standard, BoN_N and WoN_N win rates (ties split) of a policy against a reference, given
/// their probabilities on the same reward levels in increasing order of reward.
///
/// Errors: unequal lengths or no levels, a negative or non-finite probability, a sum off 1 by
/// more than 1e-6, or N outside 1..=4096.
pub fn level_win_rates(policy: &[f64], reference: &[f64], n: u32) -> Result<WinRates> {
    check_n(n)?;
    if policy.is_empty() || policy.len() != reference.len() {
        return Err(invalid(
            "reward levels",
            format!("{} and {}", policy.len(), reference.len()),
            "policy and reference need probabilities on the same, non-empty list of levels",
        ));
    }
    Ok(level_win_rates_unchecked(
        &normalised(policy, None)?,
        &normalised(reference, None)?,
        n,
    ))
}

fn level_win_rates_unchecked(policy: &[f64], reference: &[f64], n: u32) -> WinRates {
    WinRates {
        standard: duel(policy, reference),
        bon: duel(&best_of(policy, n), &best_of(reference, n)),
        won: duel(&worst_of(policy, n), &worst_of(reference, n)),
    }
}

/// The level pmf of the maximum of N draws: P_j^N - P_(j-1)^N.
fn best_of(pmf: &[f64], n: u32) -> Vec<f64> {
    let n = n as i32;
    let mut below = 0.0f64;
    pmf.iter()
        .map(|&q| {
            let at_or_below = (below + q).min(1.0);
            let served = at_or_below.powi(n) - below.powi(n);
            below = at_or_below;
            served
        })
        .collect()
}

/// The level pmf of the minimum of N draws: S_(j-1)^N - S_j^N, S_j the mass above level j.
fn worst_of(pmf: &[f64], n: u32) -> Vec<f64> {
    let n = n as i32;
    let mut served = vec![0.0; pmf.len()];
    let mut above = 0.0f64;
    for (slot, &q) in served.iter_mut().zip(pmf).rev() {
        let at_or_above = (above + q).min(1.0);
        *slot = at_or_above.powi(n) - above.powi(n);
        above = at_or_above;
    }
    served
}

/// W(a > b) with ties split, for two pmfs on the same increasing levels, in the antisymmetric
/// form `1/2 + 1/2 sum_j (a_j B_(j-1) - b_j A_(j-1))`.
fn duel(a: &[f64], b: &[f64]) -> f64 {
    let (mut a_below, mut b_below, mut sum) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        sum += x * b_below - y * a_below;
        a_below += x;
        b_below += y;
    }
    (0.5 + 0.5 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::super::tests::repeated_set;
    use super::super::{exact_at_beta, exact_policy, CandidatePrompt, Scoring};
    use super::*;
    use crate::error::Error;
    use crate::transform::Transform;

    /// Brute force: every N-tuple of draws on each side, served by max / min raw reward.
    fn brute_force(raw: &[f64], policy: &[f64], reference: &[f64], n: u32, best: bool) -> f64 {
        let c = raw.len();
        let tuples = c.pow(n);
        let served = |probabilities: &[f64]| -> Vec<(f64, f64)> {
            (0..tuples)
                .map(|mut code| {
                    let (mut probability, mut value) = (
                        1.0,
                        if best {
                            f64::NEG_INFINITY
                        } else {
                            f64::INFINITY
                        },
                    );
                    for _ in 0..n {
                        let i = code % c;
                        code /= c;
                        probability *= probabilities[i];
                        value = if best {
                            value.max(raw[i])
                        } else {
                            value.min(raw[i])
                        };
                    }
                    (probability, value)
                })
                .collect()
        };
        let (ours, theirs) = (served(policy), served(reference));
        let mut w = 0.0;
        for &(p, a) in &ours {
            for &(q, b) in &theirs {
                let outcome = if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
                w += p * q * outcome;
            }
        }
        w
    }

    #[test]
    fn closed_form_matches_enumeration_of_all_tuples() {
        // Ties among candidates (raw 2 twice, 1 twice), C = 5, N = 1 and 3.
        let raw = [1.0, 2.0, 2.0, 3.0, 1.0];
        let set = CandidateSet::from_rewards(vec![raw.to_vec()], vec![vec![1.5, 2.5]]).unwrap();
        let policy = vec![0.1, 0.3, 0.05, 0.15, 0.4];
        let uniform = vec![0.2; 5];
        for n in [1u32, 3] {
            let evaluation = evaluate(&set, std::slice::from_ref(&policy), n).unwrap();
            let bon = brute_force(&raw, &policy, &uniform, n, true);
            let won = brute_force(&raw, &policy, &uniform, n, false);
            assert!((evaluation.win_rate.bon - bon).abs() < 1e-12, "N {n}");
            assert!((evaluation.win_rate.won - won).abs() < 1e-12, "N {n}");
            let standard = brute_force(&raw, &policy, &uniform, 1, true);
            assert!((evaluation.win_rate.standard - standard).abs() < 1e-12);
            // And a policy against itself ties.
            let own = level_win_rates(&[0.3, 0.2, 0.5], &[0.3, 0.2, 0.5], n).unwrap();
            assert_eq!((own.standard, own.bon, own.won), (0.5, 0.5, 0.5));
        }
        // N = 4 with C = 4 and a policy with zeros.
        let raw = [0.0, 5.0, 5.0, -1.0];
        let set = CandidateSet::from_rewards(vec![raw.to_vec()], vec![vec![0.0]]).unwrap();
        let policy = vec![0.0, 0.7, 0.0, 0.3];
        let evaluation = evaluate(&set, std::slice::from_ref(&policy), 4).unwrap();
        let uniform = [0.25; 4];
        assert!(
            (evaluation.win_rate.bon - brute_force(&raw, &policy, &uniform, 4, true)).abs() < 1e-12
        );
        assert!(
            (evaluation.win_rate.won - brute_force(&raw, &policy, &uniform, 4, false)).abs()
                < 1e-12
        );
    }

    #[test]
    fn best_of_n_of_the_reference_on_two_equally_likely_values() {
        // Half the candidates score 0, half 1. The policy BoN_M(pi_ref) puts 1 - 2^-M on the
        // ones, spread evenly within each level.
        let c = 6;
        let raw: Vec<f64> = (0..c).map(|i| (i % 2) as f64).collect();
        let set = CandidateSet::from_rewards(vec![raw.clone()], vec![vec![0.0, 1.0]]).unwrap();
        // KL(BoN_M(pi_ref) || pi_ref) from shared/notes/theory.md, section 5.
        for (m, expected_kl) in [(2, 0.130812), (4, 0.459356), (8, 0.667588)] {
            let top = 1.0 - 0.5f64.powi(m);
            let policy: Vec<f64> = raw
                .iter()
                .map(|&r| if r == 1.0 { top } else { 1.0 - top } / (c / 2) as f64)
                .collect();
            for n in [1u32, 2, 5] {
                let evaluation = evaluate(&set, std::slice::from_ref(&policy), n).unwrap();
                assert!((evaluation.kl - expected_kl).abs() < 1e-6, "M {m}");
                // BoN_N of BoN_M(pi_ref) is BoN_(NM)(pi_ref); against BoN_N(pi_ref), with
                // P(served = 1) = p and q on the two sides: W = p (1 - q) + (pq + (1-p)(1-q)) / 2.
                let p = 1.0 - 0.5f64.powi(m * n as i32);
                let q = 1.0 - 0.5f64.powi(n as i32);
                let expected = p * (1.0 - q) + 0.5 * (p * q + (1.0 - p) * (1.0 - q));
                assert!(
                    (evaluation.win_rate.bon - expected).abs() < 1e-14,
                    "M {m} N {n}"
                );
                // The calibrated reward only sees the two levels, so its KL is the same.
                assert!((evaluation.calibrated_kl_mean - evaluation.kl).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn reference_policy_scores_exactly_one_half_and_zero_kl() {
        let set = CandidateSet::from_rewards(
            vec![
                vec![0.3, 1.0, 1.0, -2.0, 7.0, 0.3, 0.0],
                vec![5.0, 4.0, 3.0],
                (0..49).map(|i| (i % 7) as f64).collect(),
            ],
            vec![
                vec![0.5, 1.0, 4.0],
                vec![3.5, 0.0, 9.0],
                vec![1.0, 2.0, 3.0],
            ],
        )
        .unwrap();
        for n in [1, 2, 7, 64] {
            let evaluation = evaluate(&set, &set.uniform_policy(), n).unwrap();
            assert_eq!(evaluation.win_rate.standard, 0.5);
            assert_eq!(evaluation.win_rate.bon, 0.5);
            assert_eq!(evaluation.win_rate.won, 0.5);
            // ln(C * (1/C)) is within one rounding of 0 (C = 49: 49 * (1/49) != 1 in f64).
            assert!(evaluation.kl < 1e-15, "{}", evaluation.kl);
            assert_eq!(evaluation.calibrated_kl_pooled, 0.0);
            assert_eq!(evaluation.calibrated_kl_mean, 0.0);
        }
        // The tilt at a huge beta is uniform to the bit, for every scoring.
        for scoring in [
            Scoring::Raw,
            Scoring::Calibrated(Transform::Exp { t: 30.0 }),
        ] {
            let evaluation = exact_at_beta(&set, &scoring, 1e300, 8).unwrap();
            assert_eq!(
                (
                    evaluation.win_rate.standard,
                    evaluation.win_rate.bon,
                    evaluation.win_rate.won
                ),
                (0.5, 0.5, 0.5)
            );
            assert!(evaluation.kl < 1e-15);
        }
    }

    #[test]
    fn pooled_calibrated_kl_is_at_most_the_mean() {
        let set = CandidateSet::from_rewards(
            vec![
                (0..12).map(|i| i as f64).collect(),
                (0..12).map(|i| (i * 7 % 5) as f64).collect(),
                (0..9).map(|i| -(i as f64)).collect(),
            ],
            vec![
                vec![1.0, 4.0, 8.0, 10.0],
                vec![0.5, 1.5, 2.5, 3.5],
                vec![-7.0, -1.0, -3.0, -3.0],
            ],
        )
        .unwrap();
        for scoring in [
            Scoring::Raw,
            Scoring::Calibrated(Transform::Identity),
            Scoring::Calibrated(Transform::NormNegExp { t: 8.0 }),
        ] {
            for beta in [0.05, 0.5, 5.0] {
                let evaluation = exact_at_beta(&set, &scoring, beta, 4).unwrap();
                assert!(
                    evaluation.calibrated_kl_pooled <= evaluation.calibrated_kl_mean + 1e-15,
                    "{scoring} beta {beta}: {evaluation:?}"
                );
                assert!(evaluation.calibrated_kl_pooled > 0.0);
                // Data processing: u is a function of the candidate.
                for prompt in &evaluation.prompts {
                    assert!(prompt.calibrated_kl <= prompt.kl + 1e-15);
                }
            }
        }
        // One prompt: pooled and per-prompt coincide (same sums in another order).
        let single = CandidateSet::new(vec![set.prompts()[1].clone()]).unwrap();
        let evaluation =
            exact_at_beta(&single, &Scoring::Calibrated(Transform::Identity), 0.2, 2).unwrap();
        assert!((evaluation.calibrated_kl_pooled - evaluation.calibrated_kl_mean).abs() < 1e-15);
        assert!(evaluation.calibrated_kl_mean > 0.01);
    }

    #[test]
    fn per_prompt_values_average_to_the_means() {
        let set = repeated_set(&[0.0, 3.0, 1.0, 2.0, 2.0], &[0.5, 2.5, 1.5], 3);
        // Different policies per prompt.
        let policy = vec![
            vec![0.2; 5],
            vec![0.1, 0.4, 0.2, 0.15, 0.15],
            vec![0.0, 1.0, 0.0, 0.0, 0.0],
        ];
        let evaluation = evaluate(&set, &policy, 3).unwrap();
        assert_eq!(evaluation.prompts.len(), 3);
        assert_eq!(evaluation.prompts[0].win_rate.bon, 0.5);
        let mean_bon: f64 = evaluation
            .prompts
            .iter()
            .map(|e| e.win_rate.bon)
            .sum::<f64>()
            / 3.0;
        assert!((mean_bon - evaluation.win_rate.bon).abs() < 1e-15);
        // All mass on the unique best candidate: KL ln 5; BoN_3 loses only to ties with a
        // reference triple that also contains it: W = 1 - (1 - (4/5)^3) / 2.
        let last = evaluation.prompts[2];
        assert!((last.kl - 5f64.ln()).abs() < 1e-15);
        assert!((last.win_rate.bon - (1.0 - 0.5 * (1.0 - 0.8f64.powi(3)))).abs() < 1e-15);
    }

    #[test]
    fn bad_policies_name_the_prompt() {
        let set = repeated_set(&[0.0, 1.0, 2.0], &[1.0], 2);
        let good = vec![1.0 / 3.0; 3];
        let cases = [
            (vec![good.clone()], "2 prompts"),
            (vec![good.clone(), vec![0.5, 0.5]], "prompt 1"),
            (
                vec![good.clone(), vec![0.5, f64::NAN, 0.5]],
                "prompt 1, candidate 1",
            ),
            (
                vec![vec![-0.1, 0.6, 0.5], good.clone()],
                "prompt 0, candidate 0",
            ),
            (vec![good.clone(), vec![0.5, 0.5, 0.5]], "prompt 1"),
        ];
        for (policy, needle) in cases {
            let err = evaluate(&set, &policy, 2).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
        assert!(matches!(
            evaluate(&set, &[good.clone(), good.clone()], 0),
            Err(Error::InvalidParameter { .. })
        ));
        // Sums off by less than 1e-6 are normalised.
        let close = vec![0.5, 0.25, 0.25 + 1e-9];
        assert!(evaluate(&set, &[close.clone(), close], 2).is_ok());
        assert!(level_win_rates(&[1.0], &[0.5, 0.5], 2).is_err());
        // A prompt on its own is accepted too (its candidate count only has to match).
        let prompt = CandidatePrompt::from_rewards(vec![0.0, 1.0], vec![0.5]).unwrap();
        let single = CandidateSet::new(vec![prompt]).unwrap();
        let policy = exact_policy(&single, &Scoring::Raw, 1.0).unwrap();
        assert!(evaluate(&single, &policy, 1).is_ok());
    }
}
