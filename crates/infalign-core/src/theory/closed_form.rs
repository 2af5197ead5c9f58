//! Closed forms for the identity and log transforms (used as checks and in the lab).

/// KL of the identity-tilted policy p = lambda e^(lambda u) / (e^lambda - 1).
///
/// KL = lambda E[U] - log((e^lambda - 1) / lambda), computed without overflow for large lambda.
pub fn identity_kl(lambda: f64) -> f64 {
    if lambda == 0.0 {
        return 0.0;
    }
    // log((e^l - 1)/l) = l + log(1 - e^-l) - log l
    let log_z = lambda + (-(-lambda).exp()).ln_1p() - lambda.ln();
    (lambda * identity_expected_u(lambda) - log_z).max(0.0)
}

/// E[U] of the identity-tilted policy: 1/(1 - e^-lambda) - 1/lambda.
pub fn identity_expected_u(lambda: f64) -> f64 {
    if lambda.abs() < 1e-4 {
        // Series: 1/2 + lambda/12 - lambda^3/720.
        return 0.5 + lambda / 12.0 - lambda.powi(3) / 720.0;
    }
    1.0 / -(-lambda).exp_m1() - 1.0 / lambda
}

/// CDF of the identity-tilted policy: (e^(lambda u) - 1)/(e^lambda - 1).
pub fn identity_cdf(lambda: f64, u: f64) -> f64 {
    if lambda == 0.0 {
        return u;
    }
    // e^(-lambda (1-u)) (1 - e^(-lambda u)) / (1 - e^-lambda)
    (-lambda * (1.0 - u)).exp() * -(-lambda * u).exp_m1() / -(-lambda).exp_m1()
}

/// KL of the log-tilted policy (the BoN_M policy, M = lambda + 1): log M - (M - 1)/M.
pub fn log_kl(lambda: f64) -> f64 {
    let m = lambda + 1.0;
    m.ln() - (m - 1.0) / m
}

/// Win rate of the log-tilted policy, standard or under BoN_N for any N: M/(M + 1).
pub fn log_win_rate(lambda: f64) -> f64 {
    let m = lambda + 1.0;
    m / (m + 1.0)
}
