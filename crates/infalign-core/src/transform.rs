//! Reward transforms Phi applied to calibrated rewards u in [0, 1].
//!
//! | spec | Phi(u) |
//! |---|---|
//! | `identity` | u |
//! | `log` | log u |
//! | `exp:T` | exp(T u) |
//! | `negexp:T` | -exp(-T u) |
//! | `normexp:T` | (exp(T u) - 1) / (exp(T) - 1) |
//! | `normnegexp:T` | (1 - exp(-T u)) / (1 - exp(-T)) |
//! | `optimal:bon:N:L` / `optimal:won:N:L` | the fixed point of [`crate::theory::optimal_transform`] for BoN_N / WoN_N at lambda L |
//!
//! An affine change of Phi only rescales lambda = 1/beta, so `exp:T` and `normexp:T` trace the
//! same win-rate-versus-KL curve (and likewise the negexp pair); the normalised forms keep lambda
//! in a sensible range and are what the theory engine uses internally. T must be finite and > 0.
//!
//! `Transform` implements `FromStr` / `Display` with the specs above, and serde as a tagged
//! object: `{"kind": "exp", "t": 5.0}`, `{"kind": "identity"}`, or for the optimal transform
//! `{"kind": "optimal", "procedure": "bon", "n": 4, "lambda": 5.0, "order": 16, "breaks": [..],
//! "values": [..]}` (the solved table: Phi at `order` Gauss-Legendre nodes per panel between
//! consecutive `breaks`). Deserialising also accepts a plain spec string such as `"normexp:12"`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quadrature::{PiecewiseNodal, ORDER};
use crate::selection::Procedure;

/// A reward transform; see the module documentation for the forms and their specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", try_from = "TransformRepr")]
pub enum Transform {
    /// Phi(u) = u: optimal for the standard win rate.
    Identity,
    /// Phi(u) = log u: the tilted policy is exactly BoN_(lambda+1).
    Log,
    /// Phi(u) = exp(t u).
    Exp {
        /// Steepness, > 0.
        t: f64,
    },
    /// Phi(u) = -exp(-t u).
    NegExp {
        /// Steepness, > 0.
        t: f64,
    },
    /// Phi(u) = (exp(t u) - 1) / (exp(t) - 1), the normalised exp(t).
    NormExp {
        /// Steepness, > 0.
        t: f64,
    },
    /// Phi(u) = (1 - exp(-t u)) / (1 - exp(-t)), the normalised negexp(t).
    NormNegExp {
        /// Steepness, > 0.
        t: f64,
    },
    /// The optimal transform for BoN_N or WoN_N, solved at one lambda.
    Optimal(OptimalTransform),
}

/// Which exponential family a tuned transform belongs to (see [`crate::theory::best_t`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpFamily {
    /// exp(t u): concentrates on the top quantiles (for best-of-N).
    Exp,
    /// -exp(-t u): lifts the bottom quantiles (for worst-of-N).
    NegExp,
}

impl ExpFamily {
    /// The normalised member with steepness `t` (same curves as the raw form).
    pub fn transform(self, t: f64) -> Transform {
        match self {
            ExpFamily::Exp => Transform::NormExp { t },
            ExpFamily::NegExp => Transform::NormNegExp { t },
        }
    }

    /// "exp" or "negexp".
    pub fn as_str(self) -> &'static str {
        match self {
            ExpFamily::Exp => "exp",
            ExpFamily::NegExp => "negexp",
        }
    }
}

/// The numerically solved optimal transform for BoN_N / WoN_N at one lambda, as a table.
///
/// Phi* is stored at [`OptimalTransform::order`] Gauss-Legendre nodes on each panel between
/// consecutive `breaks` and interpolated by the panel's polynomial, which is spectrally accurate.
/// Its scale is the natural one of the stationarity condition (Phi*(0) = 0, Phi*' = N^2 F^(N-1)
/// u^(N-1) for BoN), so used with its own lambda it is the exact optimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OptimalTransformRepr", into = "OptimalTransformRepr")]
pub struct OptimalTransform {
    procedure: Procedure,
    n: u32,
    lambda: f64,
    table: PiecewiseNodal,
    /// Phi*(1), cached.
    top: f64,
}

#[derive(Serialize, Deserialize)]
struct OptimalTransformRepr {
    procedure: Procedure,
    n: u32,
    lambda: f64,
    order: usize,
    breaks: Vec<f64>,
    values: Vec<f64>,
}

impl From<OptimalTransform> for OptimalTransformRepr {
    fn from(value: OptimalTransform) -> Self {
        OptimalTransformRepr {
            procedure: value.procedure,
            n: value.n,
            lambda: value.lambda,
            order: ORDER,
            breaks: value.table.breaks,
            values: value.table.values,
        }
    }
}

impl TryFrom<OptimalTransformRepr> for OptimalTransform {
    type Error = Error;
    fn try_from(repr: OptimalTransformRepr) -> Result<Self> {
        let bad = |reason: String| Error::InvalidTable {
            what: "optimal transform table",
            reason,
        };
        if repr.order != ORDER {
            return Err(bad(format!(
                "order is {}, but this build uses {ORDER} nodes per panel",
                repr.order
            )));
        }
        OptimalTransform::from_table(
            repr.procedure,
            repr.n,
            repr.lambda,
            PiecewiseNodal {
                breaks: repr.breaks,
                values: repr.values,
            },
        )
    }
}

impl OptimalTransform {
    /// Validates and wraps a solved table.
    pub(crate) fn from_table(
        procedure: Procedure,
        n: u32,
        lambda: f64,
        table: PiecewiseNodal,
    ) -> Result<Self> {
        let bad = |reason: String| Error::InvalidTable {
            what: "optimal transform table",
            reason,
        };
        if n == 0 {
            return Err(bad("n must be at least 1".into()));
        }
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(bad(format!("lambda = {lambda} must be finite and >= 0")));
        }
        table.check("optimal transform table")?;
        let top = table.eval(1.0);
        Ok(OptimalTransform {
            procedure,
            n,
            lambda,
            table,
            top,
        })
    }

    /// The procedure it is optimal for.
    pub fn procedure(&self) -> Procedure {
        self.procedure
    }

    /// N.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// The lambda (1/beta) it was solved at.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Nodes per panel of the table.
    pub fn order(&self) -> usize {
        ORDER
    }

    /// Panel boundaries of the table.
    pub fn breaks(&self) -> &[f64] {
        &self.table.breaks
    }

    /// Phi*(u).
    pub fn value(&self, u: f64) -> f64 {
        self.table.eval(u)
    }

    /// Phi*(1) - Phi*(0), the range of the transform.
    pub fn range(&self) -> f64 {
        self.top - self.table.eval(0.0)
    }

    fn minus_top(&self, u: f64) -> f64 {
        (self.table.eval(u) - self.top).min(0.0)
    }
}

/// What serde reads: a tagged object or a plain spec string.
#[derive(Deserialize)]
#[serde(untagged)]
enum TransformRepr {
    Spec(String),
    Tagged(TaggedTransform),
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum TaggedTransform {
    Identity,
    Log,
    Exp { t: f64 },
    NegExp { t: f64 },
    NormExp { t: f64 },
    NormNegExp { t: f64 },
    Optimal(OptimalTransform),
}

impl TryFrom<TransformRepr> for Transform {
    type Error = Error;
    fn try_from(repr: TransformRepr) -> Result<Self> {
        let transform = match repr {
            TransformRepr::Spec(spec) => return spec.parse(),
            TransformRepr::Tagged(tagged) => match tagged {
                TaggedTransform::Identity => Transform::Identity,
                TaggedTransform::Log => Transform::Log,
                TaggedTransform::Exp { t } => Transform::Exp { t },
                TaggedTransform::NegExp { t } => Transform::NegExp { t },
                TaggedTransform::NormExp { t } => Transform::NormExp { t },
                TaggedTransform::NormNegExp { t } => Transform::NormNegExp { t },
                TaggedTransform::Optimal(optimal) => Transform::Optimal(optimal),
            },
        };
        transform.validate()?;
        Ok(transform)
    }
}

/// The shape the engine integrates: lambda * Phi(u) - lambda * Phi(1) = lambda_eff * shape(u).
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    Identity,
    Log,
    /// t and 1 / (1 - e^-t).
    NormExp(f64, f64),
    /// t and 1 / (1 - e^-t).
    NormNegExp(f64, f64),
    Table(&'a OptimalTransform),
}

impl Shape<'_> {
    /// Phi(u) - Phi(1) for the normalised shape, <= 0, accurate near u = 1 through w = 1 - u.
    #[inline]
    pub fn minus_top(&self, u: f64, w: f64) -> f64 {
        match *self {
            Shape::Identity => -w,
            Shape::Log => {
                if u < 0.5 {
                    u.ln()
                } else {
                    (-w).ln_1p()
                }
            }
            Shape::NormExp(t, inverse) => (-t * w).exp_m1() * inverse,
            Shape::NormNegExp(t, inverse) => (-t * u).exp() * (-t * w).exp_m1() * inverse,
            Shape::Table(table) => table.minus_top(u),
        }
    }
}

impl Transform {
    /// The short kind name: identity, log, exp, negexp, normexp, normnegexp or optimal.
    pub fn kind(&self) -> &'static str {
        match self {
            Transform::Identity => "identity",
            Transform::Log => "log",
            Transform::Exp { .. } => "exp",
            Transform::NegExp { .. } => "negexp",
            Transform::NormExp { .. } => "normexp",
            Transform::NormNegExp { .. } => "normnegexp",
            Transform::Optimal(_) => "optimal",
        }
    }

    /// The steepness t of the exponential forms, `None` for the others.
    pub fn t(&self) -> Option<f64> {
        match *self {
            Transform::Exp { t }
            | Transform::NegExp { t }
            | Transform::NormExp { t }
            | Transform::NormNegExp { t } => Some(t),
            _ => None,
        }
    }

    /// Checks the parameters: t finite and > 0.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.t() {
            if !(t.is_finite() && t > 0.0) {
                return Err(crate::error::invalid(
                    "t",
                    t,
                    "the steepness of an exponential transform must be finite and > 0",
                ));
            }
        }
        Ok(())
    }

    /// Phi(u) for u in [0, 1] (clamped into it); `log` gives -inf at 0.
    pub fn value(&self, u: f64) -> f64 {
        let u = if u.is_nan() { u } else { u.clamp(0.0, 1.0) };
        match self {
            Transform::Identity => u,
            Transform::Log => u.ln(),
            Transform::Exp { t } => (t * u).exp(),
            Transform::NegExp { t } => -(-t * u).exp(),
            // exp(-t(1-u)) (1 - exp(-t u)) / (1 - exp(-t)): no overflow for any t.
            Transform::NormExp { t } => {
                (-t * (1.0 - u)).exp() * -(-t * u).exp_m1() / -(-t).exp_m1()
            }
            Transform::NormNegExp { t } => -(-t * u).exp_m1() / -(-t).exp_m1(),
            Transform::Optimal(optimal) => optimal.value(u),
        }
    }

    /// Phi values for a batch of calibrated rewards.
    pub fn apply(&self, calibrated: &[f64]) -> Vec<f64> {
        calibrated.iter().map(|&u| self.value(u)).collect()
    }

    /// The engine's view: a normalised shape and the factor that turns lambda into the lambda
    /// of that shape (exp(t) = 1 + (e^t - 1) normexp(t), -exp(-t u) = -1 + (1 - e^-t)
    /// normnegexp(t)).
    pub(crate) fn shape(&self) -> (Shape<'_>, f64) {
        match self {
            Transform::Identity => (Shape::Identity, 1.0),
            Transform::Log => (Shape::Log, 1.0),
            Transform::Exp { t } => (Shape::NormExp(*t, inverse(*t)), t.exp_m1()),
            Transform::NegExp { t } => (Shape::NormNegExp(*t, inverse(*t)), -(-t).exp_m1()),
            Transform::NormExp { t } => (Shape::NormExp(*t, inverse(*t)), 1.0),
            Transform::NormNegExp { t } => (Shape::NormNegExp(*t, inverse(*t)), 1.0),
            Transform::Optimal(optimal) => (Shape::Table(optimal), 1.0),
        }
    }
}

/// 1 / (1 - e^-t).
fn inverse(t: f64) -> f64 {
    1.0 / -(-t).exp_m1()
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Identity | Transform::Log => f.write_str(self.kind()),
            Transform::Exp { t }
            | Transform::NegExp { t }
            | Transform::NormExp { t }
            | Transform::NormNegExp { t } => write!(f, "{}:{}", self.kind(), t),
            Transform::Optimal(optimal) => write!(
                f,
                "optimal:{}:{}:{}",
                optimal.procedure, optimal.n, optimal.lambda
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for spec in [
            "identity",
            "log",
            "exp:5",
            "negexp:0.25",
            "normexp:400",
            "normnegexp:12.5",
        ] {
            let transform: Transform = spec.parse().unwrap();
            assert_eq!(transform.to_string(), spec);
        }
        assert_eq!(
            " NormExp:3 ".parse::<Transform>().unwrap(),
            Transform::NormExp { t: 3.0 }
        );
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in [
            "", "exp", "exp:", "exp:-1", "exp:0", "exp:nan", "exp:inf", "log:2", "cubic", "exp:1:2",
        ] {
            let error = spec.parse::<Transform>().unwrap_err();
            assert!(
                matches!(error, Error::ParseTransform { .. }),
                "{spec}: {error}"
            );
        }
    }

    #[test]
    fn serde_is_tagged_and_accepts_specs() {
        let transform = Transform::NormExp { t: 12.0 };
        let json = serde_json::to_string(&transform).unwrap();
        assert_eq!(json, r#"{"kind":"normexp","t":12.0}"#);
        assert_eq!(serde_json::from_str::<Transform>(&json).unwrap(), transform);
        assert_eq!(
            serde_json::to_string(&Transform::Identity).unwrap(),
            r#"{"kind":"identity"}"#
        );
        assert_eq!(
            serde_json::from_str::<Transform>(r#""negexp:4""#).unwrap(),
            Transform::NegExp { t: 4.0 }
        );
        assert!(serde_json::from_str::<Transform>(r#"{"kind":"exp","t":-2.0}"#).is_err());
        assert!(serde_json::from_str::<Transform>(r#""exp:abc""#).is_err());
    }

    #[test]
    fn values_and_shapes_agree() {
        for transform in [
            Transform::Identity,
            Transform::Log,
            Transform::Exp { t: 3.0 },
            Transform::NegExp { t: 3.0 },
            Transform::NormExp { t: 3.0 },
            Transform::NormNegExp { t: 3.0 },
        ] {
            let (shape, scale) = transform.shape();
            for u in [0.01, 0.3, 0.5, 0.77, 0.999] {
                let direct = transform.value(u) - transform.value(1.0);
                let via_shape = scale * shape.minus_top(u, 1.0 - u);
                assert!(
                    (direct - via_shape).abs() < 1e-12 * (1.0 + direct.abs()),
                    "{transform} at {u}: {direct} vs {via_shape}"
                );
            }
        }
        let normexp = Transform::NormExp { t: 400.0 };
        assert!((normexp.value(1.0) - 1.0).abs() < 1e-15);
        assert_eq!(normexp.value(0.0), 0.0);
        assert!((Transform::NormNegExp { t: 1e-9 }.value(0.3) - 0.3).abs() < 1e-9);
    }
}
