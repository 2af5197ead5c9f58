//! Property tests (proptest) of calibration, the theory engine and the optimal transform.

use infalign_core::theory;
use infalign_core::{ExpFamily, Procedure, ReferenceTable, Transform};
use proptest::prelude::*;

/// Transforms with random parameters.
fn any_transform() -> impl Strategy<Value = Transform> {
    prop_oneof![
        Just(Transform::Identity),
        Just(Transform::Log),
        (0.1f64..400.0).prop_map(|t| Transform::NormExp { t }),
        (0.1f64..400.0).prop_map(|t| Transform::NormNegExp { t }),
        (0.1f64..20.0).prop_map(|t| Transform::Exp { t }),
        (0.1f64..20.0).prop_map(|t| Transform::NegExp { t }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn calibration_is_invariant_under_increasing_maps(
        reference in prop::collection::vec(-20i32..20, 1..60),
        queries in prop::collection::vec(-25i32..25, 1..20),
        map_index in 0usize..4,
    ) {
        // Integer-valued rewards (with ties) so every map below keeps distinct values distinct.
        let maps: [fn(f64) -> f64; 4] = [
            |x| 3.0 * x + 1.0,
            |x| x * x * x + x,
            |x| (x / 4.0).exp(),
            |x| x.atan(),
        ];
        let f = maps[map_index];
        let raw: Vec<f64> = reference.iter().map(|&v| v as f64).collect();
        let mapped: Vec<f64> = raw.iter().map(|&v| f(v)).collect();
        let table = ReferenceTable::new(raw.clone()).unwrap();
        let mapped_table = ReferenceTable::new(mapped).unwrap();
        for &q in &queries {
            let q = q as f64;
            let c = table.calibrated_reward(q).unwrap();
            prop_assert_eq!(c, mapped_table.calibrated_reward(f(q)).unwrap());
            // Mid-rank definition, by brute force.
            let below = raw.iter().filter(|&&z| z < q).count() as f64;
            let equal = raw.iter().filter(|&&z| z == q).count() as f64;
            prop_assert!((c - (below + 0.5 * equal) / raw.len() as f64).abs() < 1e-15);
        }
    }

    #[test]
    fn uniform_density_gives_one_half(transform in any_transform(), n in 1u32..65) {
        let p = theory::evaluate(&transform, 0.0, n).unwrap();
        prop_assert!((p.win_rate.standard - 0.5).abs() < 1e-12);
        prop_assert!((p.win_rate.bon - 0.5).abs() < 1e-12);
        prop_assert!((p.win_rate.won - 0.5).abs() < 1e-12);
        prop_assert!(p.kl.abs() < 1e-12);
    }

    #[test]
    fn identical_samples_give_one_half(
        rewards in prop::collection::vec(-5i32..5, 4..30),
        n in 1usize..4,
    ) {
        let rewards: Vec<f64> = rewards.iter().map(|&v| v as f64).collect();
        for procedure in Procedure::ALL {
            let w = infalign_core::estimators::procedure_win_rate(procedure, n, &rewards, &rewards).unwrap();
            prop_assert!((w - 0.5).abs() < 1e-12, "{} {}", procedure, w);
        }
    }

    #[test]
    fn kl_grows_with_lambda(
        transform in any_transform(),
        log_lambda in -6.0f64..9.0,
        factor in 1.01f64..10.0,
    ) {
        let lambda = log_lambda.exp();
        let small = theory::kl(&transform, lambda).unwrap();
        let large = theory::kl(&transform, lambda * factor).unwrap();
        prop_assert!(large > small, "{}: KL({}) = {} vs KL({}) = {}", transform, lambda, small, lambda * factor, large);
    }

    #[test]
    fn best_of_n_of_the_log_policy_is_m_over_m_plus_one(
        m in 1.0f64..500.0,
        n in 1u32..65,
    ) {
        let p = theory::evaluate(&Transform::Log, m - 1.0, n).unwrap();
        prop_assert!((p.win_rate.bon - m / (m + 1.0)).abs() < 1e-9, "M {} N {}: {}", m, n, p.win_rate.bon);
    }
}

proptest! {
    // Each case solves an optimal envelope and a t search; a few cases cover the space.
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn optimal_is_never_worse_at_the_same_kl(
        n in prop::sample::select(vec![2u32, 3, 4, 6]),
        budget in 0.05f64..1.0,
        t in 0.5f64..40.0,
        procedure in prop::sample::select(Procedure::ALL.to_vec()),
    ) {
        let optimal = theory::optimal_envelope(procedure, n, &[budget]).unwrap()[0].win_rate;
        let family = match procedure {
            Procedure::BestOfN => ExpFamily::Exp,
            Procedure::WorstOfN => ExpFamily::NegExp,
        };
        for transform in [Transform::Identity, Transform::Log, family.transform(t)] {
            let other = theory::evaluate_at_kl(&transform, n, budget).unwrap().win_rate_for(procedure);
            prop_assert!(optimal >= other - 1e-8, "{} N {} at {}: optimal {} < {} {}", procedure, n, budget, optimal, transform, other);
        }
    }
}
