//! # infalign-view
//!
//! What InfAlign Lab draws and says about the math in `infalign-core`: the page's and the CLI's
//! view layer, kept out of the core so that the core stays math only. No DOM here either: the
//! browser lab (`web/`) turns these models into elements, the CLI writes them to files.
//!
//! - [`chart`]: SVG charts (lines, markers, error bars) for the CLI's plot files and the browser lab.
//! - [`explorer`]: the theory explorer as a model: settings with a URL form, and the charts
//!   (transform shapes, densities, win rate versus KL) it draws.
//! - [`lab`]: the sampling lab's rounds: Best-of-N / Worst-of-N picks, the running
//!   aligned-versus-base tally with its interval, the theory's prediction, the reward histogram,
//!   and the built-in prompts.
//! - [`solves`]: the explorer's slow solves (optimal envelopes, optima) as a desk a Web Worker
//!   runs, with its typed messages.
//! - [`train`]: "train it yourself": candidate-set CTRL on one prompt's answers, two training
//!   scores side by side, exact optima and the trained policies on one frontier.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chart;
pub mod engine;
pub mod explorer;
pub mod lab;
pub mod solves;
pub mod train;

use infalign_core::selection::Procedure;

/// How the page and the plots name a procedure with its N: "BoN_4", "WoN_8".
pub fn procedure_label(procedure: Procedure, n: u32) -> String {
    match procedure {
        Procedure::BestOfN => format!("BoN_{n}"),
        Procedure::WorstOfN => format!("WoN_{n}"),
    }
}
