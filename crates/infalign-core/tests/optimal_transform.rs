//! The optimal-transform solver: limits, consistency, an independent re-solve, and dominance.

use infalign_core::theory::{self, closed_form};
use infalign_core::{ExpFamily, Procedure, TiltedPolicy, Transform};

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:.12}, expected {expected:.12} (tolerance {tolerance:e})"
    );
}

#[test]
fn n_equal_one_is_the_identity() {
    for procedure in Procedure::ALL {
        let solution = theory::optimal_transform(procedure, 1, 3.0).unwrap();
        for u in [0.0, 0.2, 0.65, 1.0] {
            close(solution.transform.value(u), u, 1e-12, "Phi*(u) = u");
        }
        close(solution.kl, closed_form::identity_kl(3.0), 1e-10, "KL");
        close(
            solution.win_rate,
            closed_form::identity_expected_u(3.0),
            1e-10,
            "standard win rate",
        );
    }
}

#[test]
fn small_lambda_tends_to_the_polynomial_shape() {
    let n = 3u32;
    let m = 2.0 * n as f64 - 1.0;
    let c = (n * n) as f64 / m;
    let lambda = 1e-4;
    let bon = theory::optimal_transform(Procedure::BestOfN, n, lambda).unwrap();
    let won = theory::optimal_transform(Procedure::WorstOfN, n, lambda).unwrap();
    for u in [0.1, 0.5, 0.8, 1.0] {
        // F* = u + O(lambda), so Phi* = c u^m + O(lambda).
        close(bon.transform.value(u), c * u.powf(m), 1e-3, "BoN shape");
        close(
            won.transform.value(u),
            c * (1.0 - (1.0 - u).powf(m)),
            1e-3,
            "WoN shape",
        );
    }
}

#[test]
fn solution_is_consistent_with_the_tilted_engine() {
    for (procedure, n, lambda) in [
        (Procedure::BestOfN, 4, 2.0),
        (Procedure::WorstOfN, 4, 2.0),
        (Procedure::BestOfN, 16, 0.5),
    ] {
        let solution = theory::optimal_transform(procedure, n, lambda).unwrap();
        let evaluation = theory::evaluate(&solution.transform, lambda, n).unwrap();
        close(evaluation.kl, solution.kl, 1e-9, "KL through the table");
        close(
            evaluation.win_rate_for(procedure),
            solution.win_rate,
            1e-9,
            "win rate through the table",
        );
        // Stationarity: Phi*(u) = N^2 int_0^u F*(v)^(N-1) v^(N-1) dv (BoN), with F* from the
        // tilted engine's CDF and a plain composite Simpson rule.
        let policy = TiltedPolicy::new(&solution.transform, lambda).unwrap();
        let n2 = (n * n) as f64;
        let integrand = |v: f64| {
            let f = policy.cdf(v);
            match procedure {
                Procedure::BestOfN => n2 * (f * v).powi(n as i32 - 1),
                Procedure::WorstOfN => n2 * ((1.0 - f) * (1.0 - v)).powi(n as i32 - 1),
            }
        };
        for u in [0.3, 0.7, 1.0] {
            let steps = 2000;
            let h = u / steps as f64;
            let mut simpson = integrand(0.0) + integrand(u);
            for i in 1..steps {
                simpson += if i % 2 == 1 { 4.0 } else { 2.0 } * integrand(h * i as f64);
            }
            simpson *= h / 3.0;
            close(
                solution.transform.value(u),
                simpson,
                1e-8 * n2,
                &format!("stationarity at u = {u} ({procedure}, N = {n})"),
            );
        }
    }
}

/// An independent, deliberately simple solver: F on a uniform grid of 4001 points, trapezoid
/// integrals, damped fixed-point iteration.
fn simple_solver(procedure: Procedure, n: i32, lambda: f64) -> (f64, f64) {
    let points = 4001;
    let h = 1.0 / (points - 1) as f64;
    let u: Vec<f64> = (0..points).map(|i| i as f64 * h).collect();
    let mut f = u.clone();
    let n2 = (n * n) as f64;
    let cumulative_trapezoid = |values: &[f64]| {
        let mut out = vec![0.0; values.len()];
        for i in 1..values.len() {
            out[i] = out[i - 1] + 0.5 * h * (values[i] + values[i - 1]);
        }
        out
    };
    let mut density = vec![1.0; points];
    for _ in 0..400 {
        let integrand: Vec<f64> = (0..points)
            .map(|i| match procedure {
                Procedure::BestOfN => n2 * (f[i] * u[i]).powi(n - 1),
                Procedure::WorstOfN => n2 * ((1.0 - f[i]) * (1.0 - u[i])).powi(n - 1),
            })
            .collect();
        let phi = cumulative_trapezoid(&integrand);
        let top = phi[points - 1];
        let g: Vec<f64> = phi.iter().map(|p| (lambda * (p - top)).exp()).collect();
        let cg = cumulative_trapezoid(&g);
        let z = cg[points - 1];
        for i in 0..points {
            f[i] = 0.5 * f[i] + 0.5 * cg[i] / z;
            density[i] = g[i] / z;
        }
    }
    let kl_integrand: Vec<f64> = density.iter().map(|p| p * p.ln()).collect();
    let kl = cumulative_trapezoid(&kl_integrand)[points - 1];
    let win_integrand: Vec<f64> = (0..points)
        .map(|i| match procedure {
            Procedure::BestOfN => f[i].powi(n) * u[i].powi(n - 1),
            Procedure::WorstOfN => (1.0 - f[i]).powi(n) * (1.0 - u[i]).powi(n - 1),
        })
        .collect();
    let integral = cumulative_trapezoid(&win_integrand)[points - 1];
    let win = match procedure {
        Procedure::BestOfN => 1.0 - n as f64 * integral,
        Procedure::WorstOfN => n as f64 * integral,
    };
    (kl, win)
}

#[test]
fn agrees_with_an_independent_simple_solver() {
    for (procedure, n, lambda) in [(Procedure::BestOfN, 4, 1.5), (Procedure::WorstOfN, 2, 3.0)] {
        let solution = theory::optimal_transform(procedure, n, lambda).unwrap();
        let (kl, win) = simple_solver(procedure, n as i32, lambda);
        close(solution.kl, kl, 2e-6, &format!("KL ({procedure}, N = {n})"));
        close(
            solution.win_rate,
            win,
            2e-6,
            &format!("win rate ({procedure}, N = {n})"),
        );
    }
}

#[test]
fn envelope_dominates_and_tuned_exponentials_come_close() {
    let budgets = [0.1, 0.5, 1.0];
    for (procedure, family, n) in [
        (Procedure::BestOfN, ExpFamily::Exp, 4),
        (Procedure::WorstOfN, ExpFamily::NegExp, 4),
    ] {
        let envelope = theory::optimal_envelope(procedure, n, &budgets).unwrap();
        for (solution, &budget) in envelope.iter().zip(&budgets) {
            close(solution.kl, budget, 1e-8, "envelope KL hits the budget");
            for transform in [Transform::Identity, Transform::Log] {
                let other = theory::evaluate_at_kl(&transform, n, budget)
                    .unwrap()
                    .win_rate_for(procedure);
                assert!(
                    solution.win_rate >= other - 1e-9,
                    "{procedure}: optimal {} < {transform} {other} at {budget}",
                    solution.win_rate
                );
            }
            let best = theory::best_t(family, procedure, n, budget).unwrap();
            let gap = solution.win_rate - best.win_rate;
            assert!(
                (-1e-9..0.005).contains(&gap),
                "{procedure}: optimal {} vs best {} (t = {}) at {budget}: gap {gap}",
                solution.win_rate,
                best.win_rate,
                best.t
            );
        }
    }
}

#[test]
fn best_t_grows_with_n_as_in_the_notes() {
    // theory.md: roughly 5 for BoN_2, 12 for BoN_4, 30 for BoN_8 at 0.5 nats.
    let t2 = theory::best_t(ExpFamily::Exp, Procedure::BestOfN, 2, 0.5)
        .unwrap()
        .t;
    let t4 = theory::best_t(ExpFamily::Exp, Procedure::BestOfN, 4, 0.5)
        .unwrap()
        .t;
    let t8 = theory::best_t(ExpFamily::Exp, Procedure::BestOfN, 8, 0.5)
        .unwrap()
        .t;
    assert!(t2 < t4 && t4 < t8, "t: {t2} {t4} {t8}");
    assert!((3.0..8.0).contains(&t2), "BoN_2 best t {t2}");
    assert!((8.0..18.0).contains(&t4), "BoN_4 best t {t4}");
    assert!((18.0..45.0).contains(&t8), "BoN_8 best t {t8}");
}

#[test]
fn optimal_transform_serde_round_trip() {
    let solution = theory::optimal_transform(Procedure::WorstOfN, 3, 2.0).unwrap();
    let json = serde_json::to_string(&solution.transform).unwrap();
    assert!(
        json.starts_with(r#"{"kind":"optimal","procedure":"won","n":3,"lambda":2.0,"order":16"#)
    );
    let back: Transform = serde_json::from_str(&json).unwrap();
    // serde_json's default float parser may be off by one ulp, so compare values, not bits.
    for u in [0.0, 0.37, 0.99, 1.0] {
        let (a, b) = (back.value(u), solution.transform.value(u));
        assert!(
            (a - b).abs() <= 1e-14 * b.abs().max(1.0),
            "Phi*({u}): {a} vs {b}"
        );
    }
    assert_eq!(back.to_string(), solution.transform.to_string());
    assert_eq!(solution.transform.to_string(), "optimal:won:3:2");
    let parsed: Transform = "optimal:won:3:2".parse().unwrap();
    close(
        parsed.value(0.5),
        solution.transform.value(0.5),
        1e-9,
        "parsed spec",
    );
    // A table whose breaks do not start at 0 is rejected.
    let broken = json.replacen("\"breaks\":[0.0", "\"breaks\":[0.1", 1);
    assert!(serde_json::from_str::<Transform>(&broken).is_err());
}

#[test]
fn envelope_solved_step_by_step_or_warm_started_matches_the_whole_solve() {
    let budgets = [1.0, 0.25, 0.5];
    for procedure in [Procedure::BestOfN, Procedure::WorstOfN] {
        let whole = theory::optimal_envelope(procedure, 8, &budgets).unwrap();
        let mut solver = theory::EnvelopeSolver::new(procedure, 8, &budgets).unwrap();
        assert_eq!((solver.solved(), solver.len()), (0, 3));
        assert!(!solver.step().unwrap() && !solver.step().unwrap());
        assert_eq!(solver.solved(), 2);
        assert!(solver.step().unwrap(), "done after the third budget");
        assert!(solver.step().unwrap(), "a finished solver stays finished");
        assert_eq!(
            solver.into_solutions(),
            whole,
            "{procedure}: same solutions, same order"
        );

        // From the 0.5-nat point, the optimum at 0.6 nats is the cold solve's, in fewer
        // fixed-point iterations.
        let mut cold = theory::EnvelopeSolver::new(procedure, 8, &[0.6]).unwrap();
        assert!(cold.step().unwrap());
        let cold_work = cold.iterations();
        let cold = cold.into_solutions().remove(0);
        let mut warm = theory::EnvelopeSolver::new(procedure, 8, &[0.6])
            .unwrap()
            .warm_start(&whole[2]);
        assert!(warm.step().unwrap());
        let warm_work = warm.iterations();
        let warm = warm.into_solutions().remove(0);
        close(warm.kl, 0.6, 1e-8, "warm-started KL hits the budget");
        close(
            warm.win_rate,
            cold.win_rate,
            1e-9,
            "warm and cold win rates",
        );
        close(
            warm.lambda,
            cold.lambda,
            1e-6 * cold.lambda,
            "warm and cold lambdas",
        );
        assert!(
            warm_work < cold_work,
            "{procedure}: warm start {warm_work} iterations, cold {cold_work}"
        );
        // A start from above the budget (or another N) is ignored: the solve starts cold.
        let mut above = theory::EnvelopeSolver::new(procedure, 8, &[0.6])
            .unwrap()
            .warm_start(&whole[0]);
        assert!(above.step().unwrap());
        assert_eq!(above.into_solutions().remove(0), cold);
    }
}

#[test]
fn a_solution_read_back_from_json_is_the_same_and_warm_starts_the_same() {
    let budgets = [0.5];
    for procedure in Procedure::ALL {
        let solved = theory::optimal_envelope(procedure, 6, &budgets)
            .unwrap()
            .remove(0);
        let json = serde_json::to_string(&solved).unwrap();
        let back: theory::OptimalSolution = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back, solved,
            "{procedure}: the round trip keeps every field"
        );
        // The CDF table travels too: a warm start from the copy is the warm start from the
        // original, to the bit.
        let from = |start: &theory::OptimalSolution| {
            let mut solver = theory::EnvelopeSolver::new(procedure, 6, &[0.6])
                .unwrap()
                .warm_start(start);
            assert!(solver.step().unwrap());
            (solver.iterations(), solver.into_solutions().remove(0))
        };
        assert_eq!(from(&back), from(&solved));

        // A damaged table is refused with what is wrong, not read.
        let broken = json.replacen("\"cdf_breaks\":[0.0", "\"cdf_breaks\":[0.2", 1);
        assert_ne!(broken, json);
        let error = serde_json::from_str::<theory::OptimalSolution>(&broken)
            .unwrap_err()
            .to_string();
        assert!(error.contains("CDF table"), "{error}");
        let short = json.replacen("\"cdf_values\":[", "\"cdf_values\":[0.5,", 1);
        assert!(serde_json::from_str::<theory::OptimalSolution>(&short).is_err());
    }
}
