//! The crate's one error type.

/// Everything in `infalign-core` that can go wrong on bad input or an unreachable target.
///
/// Every variant names the value, field or parameter at fault, so a message can be shown to a
/// user as is (in the CLI or in the browser) without a backtrace.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A list that must hold at least one value was empty.
    #[error("{what} is empty; at least one value is needed")]
    Empty {
        /// What was empty, e.g. "reference rewards".
        what: &'static str,
    },

    /// A reward (or another sample value) was NaN or infinite.
    #[error("{what} at index {index} is {value}, but must be a finite number")]
    NonFinite {
        /// What the value is, e.g. "reference reward" or "query reward".
        what: &'static str,
        /// Its position in the list it came from (0 for a single value).
        index: usize,
        /// The value itself.
        value: f64,
    },

    /// A numeric parameter was outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter, e.g. "lambda", "t", "n".
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },

    /// Fewer samples than the procedure draws (an N-subset estimator needs M >= N).
    #[error("{what} has {available} samples, but {needed} are needed (M >= N)")]
    TooFewSamples {
        /// Which side or list, e.g. "policy rewards".
        what: &'static str,
        /// How many there are.
        available: usize,
        /// How many are needed.
        needed: usize,
    },

    /// A transform spec such as `exp:5` could not be parsed.
    #[error("cannot parse transform spec {spec:?}: {reason}")]
    ParseTransform {
        /// The spec as given.
        spec: String,
        /// What is wrong with it and which forms are accepted.
        reason: String,
    },

    /// A procedure name such as `bon` could not be parsed.
    #[error(
        "cannot parse procedure {name:?}: expected \"bon\" (best-of-N) or \"won\" (worst-of-N)"
    )]
    ParseProcedure {
        /// The name as given.
        name: String,
    },

    /// A KL budget that the transform cannot reach with any lambda in the searched range.
    #[error("KL budget {budget} nats is not reachable for transform {transform}: {reason}")]
    KlBudgetUnreachable {
        /// The requested budget in nats.
        budget: f64,
        /// The transform, in its spec form.
        transform: String,
        /// Why (e.g. the largest KL found).
        reason: String,
    },

    /// A tilted density so concentrated that f64 cannot resolve it in calibrated space.
    #[error("tilted density for {transform} at lambda = {lambda} is narrower than f64 resolution near u = 1 ({detail}); use a normalised transform (normexp/normnegexp) or a smaller lambda")]
    Degenerate {
        /// The transform, in its spec form.
        transform: String,
        /// The lambda (1/beta) used.
        lambda: f64,
        /// Where it collapsed.
        detail: String,
    },

    /// An iterative solver did not reach its tolerance.
    #[error("{what} did not converge after {iterations} iterations (residual {residual:e})")]
    NoConvergence {
        /// Which solver, with its parameters.
        what: String,
        /// Iterations run.
        iterations: usize,
        /// Last residual.
        residual: f64,
    },

    /// A serialised object (an optimal-transform table, a reference table) is inconsistent.
    #[error("invalid {what}: {reason}")]
    InvalidTable {
        /// Which object, e.g. "optimal transform table".
        what: &'static str,
        /// What is inconsistent.
        reason: String,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that every value is finite; names the first bad one.
pub fn check_finite(what: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: values[index],
        }),
    }
}

/// An [`Error::InvalidParameter`] with a formatted value.
pub fn invalid(name: &'static str, value: impl std::fmt::Display, reason: &str) -> Error {
    Error::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
