//! The adaptive KL controller both CTRL trainers share (the language-model trainer in
//! `infalign-model` and the candidate-set trainer in [`crate::candidates`]): after each step it
//! moves beta towards the value that holds the mean KL at a target.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Error, Result};

/// How the adaptive KL controller moves beta after each step, towards the target KL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlControl {
    /// Ziegler et al. (2019): `beta * (1 + rate * clip(KL / target - 1, -0.2, 0.2))`, at most
    /// `0.2 * rate` (2 % at the default rate) per step.
    #[default]
    Ziegler,
    /// In log space: `beta * exp(rate * clip(ln(KL / target), -1, 1))`, up to a factor
    /// `e^rate` (10.5 % at the default rate) per step, symmetric in over- and undershoot; for a
    /// start far from the beta that holds the target (a saturating transform's theory beta).
    Log,
}

impl KlControl {
    /// Beta for the next step, after a step with mean KL `kl` (nats).
    pub fn next_beta(self, beta: f64, kl: f64, target: f64, rate: f64) -> f64 {
        match self {
            KlControl::Ziegler => beta * (1.0 + rate * (kl / target - 1.0).clamp(-0.2, 0.2)),
            KlControl::Log => {
                // A step whose KL estimate is <= 0 counts as far below the target.
                let error = if kl > 0.0 {
                    (kl / target).ln().clamp(-1.0, 1.0)
                } else {
                    -1.0
                };
                beta * (rate * error).exp()
            }
        }
    }

    /// The name `FromStr` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            KlControl::Ziegler => "ziegler",
            KlControl::Log => "log",
        }
    }
}

impl FromStr for KlControl {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim() {
            "ziegler" => Ok(KlControl::Ziegler),
            "log" => Ok(KlControl::Log),
            other => Err(invalid(
                "KL controller",
                other,
                "expected `ziegler` or `log`",
            )),
        }
    }
}

impl fmt::Display for KlControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_names_read_back() {
        for control in [KlControl::Ziegler, KlControl::Log] {
            assert_eq!(control.to_string().parse::<KlControl>().unwrap(), control);
        }
        assert!("linear".parse::<KlControl>().is_err());
    }

    #[test]
    fn controllers_move_beta_towards_the_target() {
        let (beta, target, rate) = (0.1, 1.0, 0.1);
        for control in [KlControl::Ziegler, KlControl::Log] {
            assert!(
                control.next_beta(beta, 2.0, target, rate) > beta,
                "{control:?}"
            );
            assert!(
                control.next_beta(beta, 0.5, target, rate) < beta,
                "{control:?}"
            );
            assert_eq!(
                control.next_beta(beta, 1.0, target, rate),
                beta,
                "{control:?}"
            );
        }
        // Ziegler's step is capped at 0.2 * rate; the log controller's at a factor e^rate,
        // the same up as down.
        let ziegler = KlControl::Ziegler.next_beta(beta, 50.0, target, rate);
        assert!((ziegler / beta - 1.02).abs() < 1e-12, "{ziegler}");
        let up = KlControl::Log.next_beta(beta, 50.0, target, rate);
        let down = KlControl::Log.next_beta(beta, 0.02, target, rate);
        assert!((up / beta - 0.1f64.exp()).abs() < 1e-12, "{up}");
        assert!((down * up - beta * beta).abs() < 1e-15, "{down}");
        // A KL estimate at or below zero is far below any target.
        assert_eq!(KlControl::Log.next_beta(beta, -0.3, target, rate), down);
        // From a saturating transform's theory beta, 80 log steps can span three orders of
        // magnitude; Ziegler's cannot span one.
        let mut log_beta = 2.4e-5;
        let mut ziegler_beta = 2.4e-5;
        for _ in 0..80 {
            log_beta = KlControl::Log.next_beta(log_beta, 24.0, target, rate);
            ziegler_beta = KlControl::Ziegler.next_beta(ziegler_beta, 24.0, target, rate);
        }
        assert!(
            log_beta > 2.4e-2 && ziegler_beta < 2.4e-4,
            "{log_beta} {ziegler_beta}"
        );
        assert_eq!("log".parse::<KlControl>().unwrap(), KlControl::Log);
        assert!("pid".parse::<KlControl>().is_err());
    }
}
