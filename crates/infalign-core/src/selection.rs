//! Best-of-N and Worst-of-N selection.
//!
//! Tie rule (deterministic, documented): among equal extreme rewards the **lowest index wins**.
//! Selection over calibrated rewards picks the same response as over raw rewards except where
//! calibration merges distinct raw rewards into one grid value (two rewards between the same
//! pair of reference samples); such ties are then broken by the same lowest-index rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::calibration::ReferenceTable;
use crate::error::{check_finite, Error, Result};

/// An inference-time procedure that serves one of N samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Procedure {
    /// Best-of-N: the sample with the highest reward.
    #[serde(rename = "bon")]
    BestOfN,
    /// Worst-of-N ("best-of-N jailbreaking"): the sample with the lowest reward.
    #[serde(rename = "won")]
    WorstOfN,
}

impl Procedure {
    /// Both procedures, BoN first.
    pub const ALL: [Procedure; 2] = [Procedure::BestOfN, Procedure::WorstOfN];

    /// The short name used in specs and JSON: "bon" or "won".
    pub fn as_str(self) -> &'static str {
        match self {
            Procedure::BestOfN => "bon",
            Procedure::WorstOfN => "won",
        }
    }

    /// The index this procedure serves from `rewards` (see [`select`]).
    pub fn select(self, rewards: &[f64]) -> Result<usize> {
        select(self, rewards)
    }
}

impl fmt::Display for Procedure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Procedure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bon" | "best-of-n" | "best_of_n" | "best" => Ok(Procedure::BestOfN),
            "won" | "worst-of-n" | "worst_of_n" | "worst" => Ok(Procedure::WorstOfN),
            _ => Err(Error::ParseProcedure {
                name: s.to_string(),
            }),
        }
    }
}

/// Index of the highest reward; ties go to the lowest index.
///
/// Errors: [`Error::Empty`] for no rewards, [`Error::NonFinite`] for a NaN or infinite reward.
pub fn best_of_n(rewards: &[f64]) -> Result<usize> {
    select(Procedure::BestOfN, rewards)
}

/// Index of the lowest reward; ties go to the lowest index. Errors as [`best_of_n`].
pub fn worst_of_n(rewards: &[f64]) -> Result<usize> {
    select(Procedure::WorstOfN, rewards)
}

/// Index served by `procedure` from `rewards` (raw or calibrated); ties go to the lowest index.
pub fn select(procedure: Procedure, rewards: &[f64]) -> Result<usize> {
    if rewards.is_empty() {
        return Err(Error::Empty {
            what: "candidate rewards",
        });
    }
    check_finite("candidate reward", rewards)?;
    let mut chosen = 0;
    for (index, &reward) in rewards.iter().enumerate().skip(1) {
        // Strict comparison: a later equal reward never displaces an earlier one.
        let better = match procedure {
            Procedure::BestOfN => reward > rewards[chosen],
            Procedure::WorstOfN => reward < rewards[chosen],
        };
        if better {
            chosen = index;
        }
    }
    Ok(chosen)
}

/// The choice of `procedure` over the calibrated rewards of `rewards` against `table`, returned
/// with the calibrated rewards themselves. Ties on the calibrated grid go to the lowest index.
pub fn select_calibrated(
    procedure: Procedure,
    table: &ReferenceTable,
    rewards: &[f64],
) -> Result<(usize, Vec<f64>)> {
    if rewards.is_empty() {
        return Err(Error::Empty {
            what: "candidate rewards",
        });
    }
    let calibrated = table.calibrate_batch(rewards)?;
    let index = select(procedure, &calibrated)?;
    Ok((index, calibrated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_index_wins_ties() {
        let rewards = [1.0, 3.0, 0.0, 3.0, 0.0];
        assert_eq!(best_of_n(&rewards).unwrap(), 1);
        assert_eq!(worst_of_n(&rewards).unwrap(), 2);
        assert_eq!(best_of_n(&[2.0, 2.0, 2.0]).unwrap(), 0);
        assert_eq!(worst_of_n(&[2.0, 2.0, 2.0]).unwrap(), 0);
    }

    #[test]
    fn calibration_can_create_ties() {
        // 1.2 and 1.7 both sit between reference samples 1 and 2: same calibrated value.
        let table = ReferenceTable::new(vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let rewards = [1.2, 1.7, 0.5];
        assert_eq!(best_of_n(&rewards).unwrap(), 1);
        let (index, calibrated) = select_calibrated(Procedure::BestOfN, &table, &rewards).unwrap();
        assert_eq!(index, 0);
        assert_eq!(calibrated, vec![0.5, 0.5, 0.25]);
        let (index, _) = select_calibrated(Procedure::WorstOfN, &table, &rewards).unwrap();
        assert_eq!(index, 2);
    }

    #[test]
    fn errors_not_panics() {
        assert!(best_of_n(&[]).is_err());
        assert!(matches!(
            worst_of_n(&[0.0, f64::NAN]),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn procedure_names() {
        assert_eq!("bon".parse::<Procedure>().unwrap(), Procedure::BestOfN);
        assert_eq!("WON".parse::<Procedure>().unwrap(), Procedure::WorstOfN);
        assert!("median".parse::<Procedure>().is_err());
        assert_eq!(
            serde_json::to_string(&Procedure::WorstOfN).unwrap(),
            "\"won\""
        );
        assert_eq!(Procedure::BestOfN.to_string(), "bon");
    }
}
