//! `infalign backend`: which compute backend this machine offers, proven by a small computation.

use anyhow::Context;
use clap::Args;
use infalign_model::backend::{resolve_backend, BackendPreference};
use infalign_model::smoke::{reference_smoke, run_smoke};

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Which device to try: `cpu`, `wgpu` (a GPU, or fail) or `auto` (a GPU if any, else the CPU).
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(args: BackendArgs) -> anyhow::Result<()> {
    let preference: BackendPreference = args.device.parse()?;
    let resolved = pollster::block_on(resolve_backend(preference))?;
    if let Some(reason) = &resolved.fallback_reason {
        eprintln!("note: no GPU backend ({reason}); using the CPU");
    }
    let result = pollster::block_on(run_smoke(&resolved.device, resolved.kind.name()))
        .with_context(|| format!("running the smoke computation on {}", resolved.kind))?;
    let reference = reference_smoke();
    println!("backend: {}", resolved.kind);
    println!(
        "smoke score: {:.6} (f64 reference {:.6}, difference {:.2e})",
        result.score,
        reference.score,
        (result.score - reference.score).abs()
    );
    Ok(())
}
