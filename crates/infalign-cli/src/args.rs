//! Argument groups that several commands share, declared once (`#[command(flatten)]`), so a
//! flag means the same and says the same in every command.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use infalign_core::theory::{best_t, optimal_envelope};
use infalign_core::{ExpFamily, Procedure, Transform};
use infalign_model::backend::ResolvedBackend;

/// `--device`, the same flag in every command that runs a policy (`#[command(flatten)]`).
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    /// `cpu`, `wgpu` (a GPU, or fail) or `auto` (a GPU if any, else the CPU).
    #[arg(long = "device", default_value = "cpu")]
    pub device: String,
}

impl DeviceArg {
    /// The backend it names.
    pub fn resolve(&self) -> anyhow::Result<ResolvedBackend> {
        crate::backend::resolve(&self.device)
    }
}

/// The base policy and the training prompts, as `calibrate`, `ctrl` and `sweep` take them.
#[derive(Debug, Clone, Args)]
pub struct TrainingPrompts {
    /// The base policy's bundle (pi_ref; CTRL starts from it).
    #[arg(long, default_value = "static/default-model")]
    pub bundle: PathBuf,
    /// Training prompts: `prompts-train.jsonl` of `infalign data fetch`, or an HH-RLHF file
    /// (required; `calibrate --from-rewards` goes without).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Use at most this many distinct prompts, the first ones (calibrate and train with the
    /// same limit).
    #[arg(long, default_value_t = 256)]
    pub limit: usize,
}

impl TrainingPrompts {
    /// The training prompts' file; an error when `--prompts` was not given.
    pub fn prompts(&self) -> anyhow::Result<&Path> {
        self.prompts
            .as_deref()
            .context("--prompts is required: the file of training prompts")
    }
}

/// The inference-time procedure a policy is served with, and its N.
#[derive(Debug, Clone, Copy, Args)]
pub struct Serving {
    /// `bon` (Best-of-N) or `won` (Worst-of-N).
    #[arg(long, default_value = "bon")]
    pub procedure: Procedure,
    /// N of the procedure.
    #[arg(long, default_value_t = 4)]
    pub n: u32,
}

impl Serving {
    /// What the theory engine picks for a transform named without its parameters, for this
    /// procedure and N at a KL budget: `exp` / `negexp` with t tuned (`theory::best_t`; the
    /// normalised form, what training wants) or `optimal` solved; `None` for any other name.
    pub fn tuned_transform(&self, name: &str, budget: f64) -> anyhow::Result<Option<Transform>> {
        let family = match name.trim() {
            "exp" => ExpFamily::Exp,
            "negexp" => ExpFamily::NegExp,
            "optimal" => {
                let solution = optimal_envelope(self.procedure, self.n, &[budget])?
                    .pop()
                    .context("the theory engine returned no optimal transform")?;
                return Ok(Some(solution.transform));
            }
            _ => return Ok(None),
        };
        let best = best_t(family, self.procedure, self.n, budget)?;
        Ok(Some(family.transform(best.t)))
    }

    /// Whether [`Serving::tuned_transform`] resolves `name`.
    pub fn is_tuned(name: &str) -> bool {
        matches!(name.trim(), "exp" | "negexp" | "optimal")
    }
}
