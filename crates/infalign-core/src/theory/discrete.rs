//! Best-of-N and Worst-of-N of the reference policy for a reward with finitely many values.
//!
//! With ties the served distribution over reward levels is still determined: the maximum of N
//! draws has CDF F^N at every level. These closed forms check the Beirami et al. bound
//! KL(BoN_N(pi_ref) || pi_ref) <= log N - (N-1)/N, with equality only without ties.

use crate::error::{check_finite, invalid, Error, Result};
use crate::selection::Procedure;

/// KL(T_N(pi_ref) || pi_ref) over reward levels, for T = BoN or WoN, given the probabilities of
/// the distinct reward levels in increasing order of reward.
///
/// Errors: empty, negative or non-finite probabilities, probabilities not summing to 1 (within
/// 1e-9), or N = 0.
pub fn procedure_kl(procedure: Procedure, level_probabilities: &[f64], n: u32) -> Result<f64> {
    if level_probabilities.is_empty() {
        return Err(Error::Empty {
            what: "reward level probabilities",
        });
    }
    check_finite("reward level probability", level_probabilities)?;
    if let Some(i) = level_probabilities.iter().position(|&p| p < 0.0) {
        return Err(invalid(
            "level probability",
            level_probabilities[i],
            &format!("probabilities must be >= 0 (index {i})"),
        ));
    }
    let total: f64 = level_probabilities.iter().sum();
    if (total - 1.0).abs() > 1e-9 {
        return Err(invalid("level probabilities sum", total, "must sum to 1"));
    }
    if n == 0 {
        return Err(invalid("n", n, "N must be at least 1"));
    }
    let ni = n as i32;
    let mut kl = 0.0;
    let mut below = 0.0f64;
    for &p in level_probabilities {
        let above = (below + p).min(1.0);
        let served = match procedure {
            Procedure::BestOfN => above.powi(ni) - below.powi(ni),
            Procedure::WorstOfN => (1.0 - below).powi(ni) - (1.0 - above).powi(ni),
        };
        if served > 0.0 && p > 0.0 {
            kl += served * (served / p).ln();
        }
        below = above;
    }
    Ok(kl.max(0.0))
}

/// The tie-free value log N - (N-1)/N, the upper bound on KL(BoN_N(pi_ref) || pi_ref).
pub fn best_of_n_kl_bound(n: u32) -> f64 {
    let n = n.max(1) as f64;
    n.ln() - (n - 1.0) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // 0.693147 is the reference value from theory.md (it is ln 2 to six places, the N -> inf limit).
    #[allow(clippy::approx_constant)]
    fn two_equally_likely_values() {
        // Reference values from shared/notes/theory.md.
        for (n, expected) in [(2, 0.130812), (4, 0.459356), (8, 0.667588), (32, 0.693147)] {
            let kl = procedure_kl(Procedure::BestOfN, &[0.5, 0.5], n).unwrap();
            assert!((kl - expected).abs() < 1e-6, "N = {n}: {kl}");
            assert!(kl <= best_of_n_kl_bound(n));
            let won = procedure_kl(Procedure::WorstOfN, &[0.5, 0.5], n).unwrap();
            assert!((won - expected).abs() < 1e-6, "WoN by symmetry, N = {n}");
        }
    }

    #[test]
    fn many_distinct_levels_approach_the_bound() {
        let levels = vec![1e-4; 10_000];
        for n in [2, 4, 16] {
            let kl = procedure_kl(Procedure::BestOfN, &levels, n).unwrap();
            let bound = best_of_n_kl_bound(n);
            assert!(
                kl <= bound + 1e-12 && bound - kl < 2e-3,
                "N = {n}: {kl} vs {bound}"
            );
        }
    }

    #[test]
    fn bad_probabilities_are_errors() {
        assert!(procedure_kl(Procedure::BestOfN, &[], 2).is_err());
        assert!(procedure_kl(Procedure::BestOfN, &[0.5, 0.6], 2).is_err());
        assert!(procedure_kl(Procedure::BestOfN, &[1.5, -0.5], 2).is_err());
        assert!(procedure_kl(Procedure::BestOfN, &[f64::NAN], 2).is_err());
        assert!(procedure_kl(Procedure::BestOfN, &[1.0], 0).is_err());
    }
}
