//! Calibrated rewards: the quantile of a reward among reference samples of the same prompt.
//!
//! For a prompt x, draw K responses z_1..z_K from the reference policy once, score them and keep
//! the rewards sorted in a [`ReferenceTable`]. The calibrated reward of a new response y is
//!
//! ```text
//! C_K(x, y) = (1/K) * sum_k ( 1{r(y) > r(z_k)} + 0.5 * 1{r(y) = r(z_k)} )
//! ```
//!
//! (ties split by mid-rank). It is an unbiased estimator of the calibrated reward
//! `C(x, y) = P[r(z) < r(y)] + 0.5 P[r(z) = r(y)]`, `z ~ pi_ref(.|x)`: each term of the average is
//! an unbiased draw of it, so the variance is at most 1/(4K). Values lie on the grid j/(2K) in
//! [0, 1], and are unchanged by any strictly increasing map of the reward. A query costs two
//! branch-free binary searches, O(log K).

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, Error, Result};

/// The sorted rewards of K reference samples for one prompt.
///
/// Serialises as `{"rewards": [..]}` (sorted ascending); deserialising validates the values
/// (non-empty, finite) and sorts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReferenceTableRepr", into = "ReferenceTableRepr")]
pub struct ReferenceTable {
    sorted: Vec<f64>,
    /// 1 / (2K), the grid step of calibrated rewards.
    half_inv_len: f64,
}

#[derive(Serialize, Deserialize)]
struct ReferenceTableRepr {
    rewards: Vec<f64>,
}

impl TryFrom<ReferenceTableRepr> for ReferenceTable {
    type Error = Error;
    fn try_from(repr: ReferenceTableRepr) -> Result<Self> {
        ReferenceTable::new(repr.rewards)
    }
}

impl From<ReferenceTable> for ReferenceTableRepr {
    fn from(table: ReferenceTable) -> Self {
        ReferenceTableRepr {
            rewards: table.sorted,
        }
    }
}

impl ReferenceTable {
    /// Builds a table from K reference rewards (any order).
    ///
    /// Errors: [`Error::Empty`] when there are none, [`Error::NonFinite`] naming the index of the
    /// first NaN or infinite reward.
    pub fn new(rewards: impl Into<Vec<f64>>) -> Result<Self> {
        let mut sorted = rewards.into();
        if sorted.is_empty() {
            return Err(Error::Empty {
                what: "reference rewards",
            });
        }
        check_finite("reference reward", &sorted)?;
        // All finite, so the total order agrees with the usual one (-0.0 sorts before 0.0, which
        // only matters for ties between them; both searches below use the same `<`, so 0.0 and
        // -0.0 still count as equal).
        sorted.sort_by(f64::total_cmp);
        let half_inv_len = 0.5 / sorted.len() as f64;
        Ok(ReferenceTable {
            sorted,
            half_inv_len,
        })
    }

    /// K, the number of reference rewards.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always false: a table holds at least one reward.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The reference rewards, sorted ascending.
    pub fn rewards(&self) -> &[f64] {
        &self.sorted
    }

    /// The calibrated reward of `reward`: its mid-rank quantile among the reference rewards,
    /// in [0, 1] on the grid j/(2K).
    ///
    /// Errors: [`Error::NonFinite`] for a NaN or infinite reward.
    #[inline]
    pub fn calibrated_reward(&self, reward: f64) -> Result<f64> {
        if !reward.is_finite() {
            return Err(Error::NonFinite {
                what: "query reward",
                index: 0,
                value: reward,
            });
        }
        Ok(self.calibrated_unchecked(reward))
    }

    /// Calibrates a batch of rewards into `out` (same length).
    ///
    /// Errors: [`Error::InvalidParameter`] when the lengths differ, [`Error::NonFinite`] naming
    /// the index of the first bad reward (then `out` is left partly written).
    pub fn calibrate_into(&self, rewards: &[f64], out: &mut [f64]) -> Result<()> {
        if rewards.len() != out.len() {
            return Err(crate::error::invalid(
                "out.len()",
                out.len(),
                &format!("must equal rewards.len() = {}", rewards.len()),
            ));
        }
        check_finite("query reward", rewards)?;
        for (slot, &reward) in out.iter_mut().zip(rewards) {
            *slot = self.calibrated_unchecked(reward);
        }
        Ok(())
    }

    /// Calibrates a batch of rewards. Errors as [`ReferenceTable::calibrate_into`].
    pub fn calibrate_batch(&self, rewards: &[f64]) -> Result<Vec<f64>> {
        let mut out = vec![0.0; rewards.len()];
        self.calibrate_into(rewards, &mut out)?;
        Ok(out)
    }

    /// (number below + number at-or-below) / (2K), for a finite reward.
    #[inline]
    fn calibrated_unchecked(&self, reward: f64) -> f64 {
        let (below, ties) = self.rank(reward);
        (2 * below + ties) as f64 * self.half_inv_len
    }

    /// How many reference rewards lie below `reward`, and how many equal it: its rank among
    /// them (uniform on 0..=K for a reply of the reference policy, ties spread over the ranks
    /// they span). The calibrated reward is `(below + ties / 2) / K`.
    pub fn rank(&self, reward: f64) -> (usize, usize) {
        let below = count_less(&self.sorted, reward);
        (below, count_less_or_equal(&self.sorted, reward) - below)
    }
}

/// Number of elements `< x` in a sorted slice (branch-free lower bound).
#[inline]
fn count_less(sorted: &[f64], x: f64) -> usize {
    let mut base = 0usize;
    let mut size = sorted.len();
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        // `mid < len` always holds: base + half < base + size <= len.
        base = if sorted[mid] < x { mid } else { base };
        size -= half;
    }
    base + usize::from(!sorted.is_empty() && sorted[base] < x)
}

/// Number of elements `<= x` in a sorted slice (branch-free upper bound).
#[inline]
fn count_less_or_equal(sorted: &[f64], x: f64) -> usize {
    let mut base = 0usize;
    let mut size = sorted.len();
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if sorted[mid] <= x { mid } else { base };
        size -= half;
    }
    base + usize::from(!sorted.is_empty() && sorted[base] <= x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(reference: &[f64], x: f64) -> f64 {
        let below = reference.iter().filter(|&&z| z < x).count() as f64;
        let equal = reference.iter().filter(|&&z| z == x).count() as f64;
        (below + 0.5 * equal) / reference.len() as f64
    }

    #[test]
    fn matches_brute_force_with_ties() {
        let reference = [3.0, 1.0, 2.0, 2.0, 2.0, 5.0, 1.0];
        let table = ReferenceTable::new(reference.to_vec()).unwrap();
        for x in [-1.0, 0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0] {
            let got = table.calibrated_reward(x).unwrap();
            assert!((got - brute(&reference, x)).abs() < 1e-15, "x = {x}");
        }
    }

    #[test]
    fn counts_on_every_length() {
        for len in 1..40usize {
            let sorted: Vec<f64> = (0..len).map(|i| (i / 2) as f64).collect();
            for q in 0..(len + 2) {
                let x = q as f64 * 0.5 - 0.5;
                let less = sorted.iter().filter(|&&z| z < x).count();
                let less_eq = sorted.iter().filter(|&&z| z <= x).count();
                assert_eq!(count_less(&sorted, x), less, "len {len} x {x}");
                assert_eq!(count_less_or_equal(&sorted, x), less_eq, "len {len} x {x}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            ReferenceTable::new(Vec::<f64>::new()),
            Err(Error::Empty { .. })
        ));
        let err = ReferenceTable::new(vec![0.0, f64::NAN]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 1, .. }));
        assert!(err.to_string().contains("index 1"));
        let table = ReferenceTable::new(vec![0.0, 1.0]).unwrap();
        assert!(table.calibrated_reward(f64::INFINITY).is_err());
        assert!(table.calibrate_batch(&[0.5, f64::NEG_INFINITY]).is_err());
        let mut out = [0.0; 1];
        assert!(table.calibrate_into(&[0.5, 0.7], &mut out).is_err());
    }

    #[test]
    fn serde_round_trip_sorts_and_validates() {
        let table = ReferenceTable::new(vec![2.0, -1.0, 0.5]).unwrap();
        let json = serde_json::to_string(&table).unwrap();
        assert_eq!(json, r#"{"rewards":[-1.0,0.5,2.0]}"#);
        let back: ReferenceTable = serde_json::from_str(r#"{"rewards":[2.0,-1.0,0.5]}"#).unwrap();
        assert_eq!(back, table);
        assert!(serde_json::from_str::<ReferenceTable>(r#"{"rewards":[]}"#).is_err());
    }
}
