//! Parsing transform specs (`exp:5`, `optimal:bon:4:5`, ...): here rather than in
//! [`crate::transform`], because an `optimal:...` spec is solved by the theory engine, and the
//! transforms themselves must not depend on the engine that integrates them.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::selection::Procedure;
use crate::transform::Transform;

impl FromStr for Transform {
    type Err = Error;

    /// Parses `identity`, `log`, `exp:T`, `negexp:T`, `normexp:T`, `normnegexp:T`, or
    /// `optimal:bon:N:L` / `optimal:won:N:L` (which solves the fixed point at lambda L).
    fn from_str(spec: &str) -> Result<Self> {
        let fail = |reason: &str| Error::ParseTransform {
            spec: spec.to_string(),
            reason: format!(
                "{reason}; expected identity, log, exp:T, negexp:T, normexp:T, normnegexp:T \
                 (T > 0) or optimal:bon:N:LAMBDA / optimal:won:N:LAMBDA"
            ),
        };
        let trimmed = spec.trim();
        let mut parts = trimmed.split(':');
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<&str> = parts.collect();
        let number = |text: &str, what: &str| -> Result<f64> {
            text.trim()
                .parse::<f64>()
                .map_err(|_| fail(&format!("{what} {text:?} is not a number")))
        };
        let transform = match (kind.as_str(), rest.as_slice()) {
            ("identity", []) => Transform::Identity,
            ("log", []) => Transform::Log,
            ("exp", [t]) => Transform::Exp { t: number(t, "t")? },
            ("negexp", [t]) => Transform::NegExp { t: number(t, "t")? },
            ("normexp", [t]) => Transform::NormExp { t: number(t, "t")? },
            ("normnegexp", [t]) => Transform::NormNegExp { t: number(t, "t")? },
            ("optimal", [procedure, n, lambda]) => {
                let procedure: Procedure = procedure
                    .parse()
                    .map_err(|_| fail(&format!("procedure {procedure:?} is not bon or won")))?;
                let n: u32 = n
                    .trim()
                    .parse()
                    .map_err(|_| fail(&format!("N {n:?} is not a positive integer")))?;
                let lambda = number(lambda, "lambda")?;
                let solution = super::optimal_transform(procedure, n, lambda)?;
                return Ok(solution.transform);
            }
            ("identity" | "log", _) => return Err(fail("this transform takes no parameter")),
            ("exp" | "negexp" | "normexp" | "normnegexp", _) => {
                return Err(fail("this transform takes exactly one parameter, T"))
            }
            ("optimal", _) => return Err(fail("optimal takes a procedure, N and lambda")),
            _ => return Err(fail("unknown transform")),
        };
        transform
            .validate()
            .map_err(|error| fail(&error.to_string()))?;
        Ok(transform)
    }
}
