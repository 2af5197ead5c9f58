//! The theory engine against closed forms and the reference table of shared/notes/theory.md.

use infalign_core::theory::{self, closed_form};
use infalign_core::{Procedure, TiltedPolicy, Transform};

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:.12}, expected {expected:.12} (tolerance {tolerance:e})"
    );
}

#[test]
fn identity_matches_the_reference_table() {
    // lambda, KL, E[U], W_BoN2, W_BoN4, W_BoN32, W_WoN4 (theory.md section 5, tolerance 1e-6).
    let table = [
        (
            1.0, 0.040652, 0.581977, 0.595417, 0.603559, 0.611506, 0.614065,
        ),
        (
            5.0, 0.650117, 0.806784, 0.821881, 0.828419, 0.833574, 0.924273,
        ),
        (
            20.0, 1.995732, 0.950000, 0.951250, 0.951829, 0.952313, 0.999449,
        ),
    ];
    for (lambda, kl, expected_u, bon2, bon4, bon32, won4) in table {
        let tol = 1e-6;
        let at = |n| theory::evaluate(&Transform::Identity, lambda, n).unwrap();
        let p4 = at(4);
        close(p4.kl, kl, tol, &format!("KL at lambda {lambda}"));
        close(p4.expected_u, expected_u, tol, "E[U]");
        close(p4.win_rate.standard, expected_u, tol, "standard win rate");
        close(at(2).win_rate.bon, bon2, tol, "W_BoN2");
        close(p4.win_rate.bon, bon4, tol, "W_BoN4");
        close(at(32).win_rate.bon, bon32, tol, "W_BoN32");
        close(p4.win_rate.won, won4, tol, "W_WoN4");
    }
}

#[test]
fn identity_matches_its_closed_form_across_lambda() {
    for lambda in [1e-3, 0.3, 3.0, 50.0, 1e3, 1e4] {
        let policy = TiltedPolicy::new(&Transform::Identity, lambda).unwrap();
        close(
            policy.kl(),
            closed_form::identity_kl(lambda),
            1e-10,
            &format!("identity KL at {lambda}"),
        );
        close(
            policy.expected_u(),
            closed_form::identity_expected_u(lambda),
            1e-11,
            "identity E[U]",
        );
        for u in [0.0, 0.1, 0.5, 0.9, 0.999, 0.99999, 1.0] {
            close(
                policy.cdf(u),
                closed_form::identity_cdf(lambda, u),
                1e-11,
                &format!("identity CDF at u = {u}, lambda = {lambda}"),
            );
        }
        // log p(u) = log lambda + lambda (u - 1) - log(1 - e^-lambda), also where p underflows.
        let exact = lambda.ln() + lambda * (0.7 - 1.0) - (-(-lambda).exp()).ln_1p();
        close(
            policy.log_density(0.7),
            exact,
            1e-11 * exact.abs().max(1.0),
            "identity log density",
        );
    }
}

#[test]
fn log_is_the_best_of_m_policy() {
    for lambda in [0.2, 1.0, 7.0, 99.0, 1e4] {
        let m = lambda + 1.0;
        for n in [1, 2, 8, 64] {
            let p = theory::evaluate(&Transform::Log, lambda, n).unwrap();
            close(p.kl, closed_form::log_kl(lambda), 1e-10, "log KL");
            close(p.win_rate.standard, m / (m + 1.0), 1e-10, "log standard");
            close(
                p.win_rate.bon,
                m / (m + 1.0),
                1e-9,
                &format!("log BoN_{n} at M = {m}"),
            );
        }
    }
}

#[test]
fn uniform_policy_wins_half_the_time() {
    for transform in [
        Transform::Identity,
        Transform::Log,
        Transform::Exp { t: 3.0 },
        Transform::NormNegExp { t: 400.0 },
    ] {
        for n in [1, 2, 64] {
            let p = theory::evaluate(&transform, 0.0, n).unwrap();
            close(p.kl, 0.0, 1e-13, "KL at lambda 0");
            for w in [p.win_rate.standard, p.win_rate.bon, p.win_rate.won] {
                close(w, 0.5, 1e-13, &format!("{transform} N = {n}"));
            }
        }
    }
}

#[test]
fn raw_and_normalised_exponentials_trace_the_same_curve() {
    for t in [0.5, 5.0, 20.0] {
        for lambda in [0.1, 2.0] {
            let raw = theory::evaluate(&Transform::Exp { t }, lambda, 4).unwrap();
            let norm = theory::evaluate(&Transform::NormExp { t }, lambda * t.exp_m1(), 4).unwrap();
            close(raw.kl, norm.kl, 1e-12, "exp vs normexp KL");
            close(
                raw.win_rate.bon,
                norm.win_rate.bon,
                1e-12,
                "exp vs normexp BoN",
            );
            let raw = theory::evaluate(&Transform::NegExp { t }, lambda, 4).unwrap();
            let norm =
                theory::evaluate(&Transform::NormNegExp { t }, lambda * -(-t).exp_m1(), 4).unwrap();
            close(raw.kl, norm.kl, 1e-12, "negexp vs normnegexp KL");
            close(
                raw.win_rate.won,
                norm.win_rate.won,
                1e-12,
                "negexp vs normnegexp WoN",
            );
        }
    }
}

#[test]
fn extreme_parameters_stay_finite_and_ordered() {
    for transform in [
        Transform::NormExp { t: 400.0 },
        Transform::NormNegExp { t: 400.0 },
        Transform::Identity,
        Transform::Log,
        Transform::Exp { t: 400.0 },
    ] {
        let mut previous_kl = 0.0;
        for lambda in [1e-6, 1.0, 100.0, 1e4] {
            let p = theory::evaluate(&transform, lambda, 64).unwrap();
            for value in [p.kl, p.expected_u, p.win_rate.bon, p.win_rate.won] {
                assert!(value.is_finite(), "{transform} at {lambda}: {p:?}");
            }
            assert!(
                p.kl >= previous_kl,
                "{transform}: KL not increasing at {lambda}"
            );
            assert!((0.5 - 1e-12..=1.0).contains(&p.win_rate.bon), "{p:?}");
            assert!((0.5 - 1e-12..=1.0).contains(&p.win_rate.won), "{p:?}");
            previous_kl = p.kl;
        }
    }
    // Raw exp:400 at lambda = 1 puts the mass within ~1e-176 of u = 1: KL ~ log(e^400 * 400) - 1.
    let p = theory::evaluate(&Transform::Exp { t: 400.0 }, 1.0, 2).unwrap();
    close(p.kl, 400.0 + 400f64.ln() - 1.0, 1e-6, "raw exp:400 KL");
}

#[test]
fn lambda_for_kl_hits_the_budget() {
    for transform in [
        Transform::Identity,
        Transform::Log,
        Transform::NormExp { t: 12.0 },
        Transform::NormNegExp { t: 30.0 },
        Transform::Exp { t: 5.0 },
    ] {
        for budget in [1e-3, 0.1, 0.5, 2.0] {
            let lambda = theory::lambda_for_kl(&transform, budget).unwrap();
            let kl = theory::kl(&transform, lambda).unwrap();
            close(
                kl,
                budget,
                1e-9 * budget.max(1.0),
                &format!("{transform} at {budget}"),
            );
        }
    }
    let lambda = theory::lambda_for_kl(&Transform::Log, 0.5).unwrap();
    // The closed form KL of the log policy, log M - (M-1)/M, at the lambda found numerically.
    let m = lambda + 1.0;
    close(m.ln() - (m - 1.0) / m, 0.5, 1e-10, "log root");
    assert!(theory::lambda_for_kl(&Transform::Identity, -1.0).is_err());
    assert!(theory::lambda_for_kl(&Transform::Identity, f64::NAN).is_err());
}

#[test]
fn tilted_policy_cdf_is_consistent_with_its_density() {
    let policy = TiltedPolicy::new(&Transform::NormExp { t: 10.0 }, 30.0).unwrap();
    // Trapezoid on a fine grid of the exact density against the spectral CDF.
    let (a, b) = (0.9, 0.97);
    let steps = 20_000;
    let h = (b - a) / steps as f64;
    let mut integral = 0.0;
    for i in 0..=steps {
        let weight = if i == 0 || i == steps { 0.5 } else { 1.0 };
        integral += weight * policy.density(a + h * i as f64);
    }
    integral *= h;
    close(
        policy.cdf(b) - policy.cdf(a),
        integral,
        1e-8,
        "CDF increment",
    );
    close(policy.cdf(1.0), 1.0, 0.0, "CDF at 1");
    close(policy.cdf(0.0), 0.0, 1e-15, "CDF at 0");
    assert!(policy.log_partition().is_finite());
}

#[test]
fn errors_instead_of_panics() {
    assert!(theory::evaluate(&Transform::Identity, -1.0, 2).is_err());
    assert!(theory::evaluate(&Transform::Identity, f64::NAN, 2).is_err());
    assert!(theory::evaluate(&Transform::Identity, 1.0, 0).is_err());
    assert!(theory::evaluate(&Transform::NormExp { t: -3.0 }, 1.0, 2).is_err());
    assert!(theory::best_t(infalign_core::ExpFamily::Exp, Procedure::BestOfN, 2, 0.0).is_err());
    assert!(theory::optimal_transform(Procedure::BestOfN, 0, 1.0).is_err());
}
