//! # infalign-core
//!
//! InfAlign's mathematical core, shared by the native trainer and the browser lab. Pure Rust with
//! no burn, no threads, no clocks and no OS randomness, so it builds for native targets and for
//! wasm32 alike.
//!
//! - [`calibration`]: per-prompt reference tables and calibrated rewards (mid-rank quantiles).
//! - [`transform`]: reward transforms (identity, log, exp, negexp, their normalised forms and the
//!   solved optimal transform) as one serde-serialisable [`Transform`] with `FromStr`/`Display`.
//! - [`seed`]: the one seed scheme (streams keyed by a run's seed, a purpose and an index).
//! - [`kl_control`]: the adaptive KL controller both CTRL trainers use.
//! - [`selection`]: Best-of-N / Worst-of-N selection with a lowest-index tie rule.
//! - [`theory`]: the exact win-rate-versus-KL engine in calibrated space, lambda for a KL budget,
//!   curves, the optimal-transform solver and the best t of exp / negexp.
//! - [`estimators`]: U-statistic BoN/WoN win rates from samples, KL estimators, bootstrap CIs.
//! - [`candidates`]: candidate-set CTRL: exact tilt, beta for a KL budget, exact win rates and
//!   calibrated KL over fixed candidate lists, and the tabular RLOO trainer.
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
pub mod candidates;
pub mod error;
pub mod estimators;
pub mod kl_control;
mod quadrature;
pub mod seed;
pub mod selection;
pub mod theory;
pub mod transform;

pub use calibration::ReferenceTable;
pub use error::{Error, Result};
pub use kl_control::KlControl;
pub use selection::Procedure;
pub use theory::{PolicyEvaluation, TiltedPolicy, WinRates};
pub use transform::{ExpFamily, OptimalTransform, Transform};
