//! # infalign-core
//!
//! InfAlign's mathematical core, shared by the native trainer and the browser lab. Pure Rust with
//! no burn, no threads, no clocks and no OS randomness, so it builds for native targets and for
//! wasm32 alike.
//!
//! - [`calibration`]: per-prompt reference tables and calibrated rewards (mid-rank quantiles).
//! - [`transform`]: reward transforms (identity, log, exp, negexp, their normalised forms and the
//!   solved optimal transform) as one serde-serialisable [`Transform`] with `FromStr`/`Display`.
//! - [`selection`]: Best-of-N / Worst-of-N selection with a lowest-index tie rule.
//! - [`theory`]: the exact win-rate-versus-KL engine in calibrated space, lambda for a KL budget,
//!   curves, the optimal-transform solver and the best t of exp / negexp.
//! - [`chart`]: SVG charts (lines, markers, error bars) for the CLI's plot files and the browser lab.
//! - [`explorer`]: the browser lab's theory explorer as a model: settings with a URL form, and
//!   the charts (transform shapes, densities, win rate versus KL) it draws.
//! - [`lab`]: the browser lab's sampling rounds: Best-of-N / Worst-of-N picks, the running
//!   aligned-versus-base tally with its interval, the theory's prediction, the reward histogram.
//! - [`estimators`]: U-statistic BoN/WoN win rates from samples, KL estimators, bootstrap CIs.
//!
//! ```
//! use infalign_core::{theory, Transform};
//!
//! // The log transform at lambda = M - 1 is the BoN_M policy: win rate M/(M+1) for every N.
//! let point = theory::evaluate(&Transform::Log, 3.0, 8).unwrap();
//! assert!((point.win_rate.bon - 0.8).abs() < 1e-9);
//! ```
//!
//! All fallible functions return [`Result`] with the crate's [`Error`]; nothing panics on input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod calibration;
pub mod chart;
mod error;
pub mod estimators;
pub mod explorer;
pub mod lab;
mod quadrature;
pub mod selection;
pub mod theory;
pub mod transform;

pub use calibration::ReferenceTable;
pub use error::{Error, Result};
pub use selection::Procedure;
pub use theory::{PolicyEvaluation, TiltedPolicy, WinRates};
pub use transform::{ExpFamily, OptimalTransform, Transform};
