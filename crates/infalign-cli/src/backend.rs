//! `infalign backend`: which compute backend this machine offers, proven by a small computation.

use anyhow::Context;
use clap::Args;
use infalign_model::backend::{resolve_backend, BackendPreference, ResolvedBackend};
use infalign_model::smoke::{reference_smoke, run_smoke};

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Which device to try: `cpu`, `wgpu` (a GPU, or fail) or `auto` (a GPU if any, else the CPU).
    #[arg(long, default_value = "auto")]
    device: String,
}

/// The backend a `--device` flag names (`cpu`, `wgpu`, `auto`), saying so when `auto` fell back
/// to the CPU.
pub fn resolve(device: &str) -> anyhow::Result<ResolvedBackend> {
    let preference: BackendPreference = device.parse()?;
    let resolved = pollster::block_on(resolve_backend(preference))?;
    if let Some(reason) = &resolved.fallback_reason {
        eprintln!("note: no GPU backend ({reason}); using the CPU");
    }
    Ok(resolved)
}

pub fn run(args: BackendArgs) -> anyhow::Result<()> {
    let resolved = resolve(&args.device)?;
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
