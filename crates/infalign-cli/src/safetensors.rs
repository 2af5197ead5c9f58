//! `infalign safetensors`: a bundle's policy weights as SafeTensors, for Python users.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use infalign_model::backend::cpu_device;
use infalign_model::bundle::Bundle;

use crate::files::write_atomic;

#[derive(Debug, Args)]
pub struct SafetensorsArgs {
    /// The bundle directory (from `infalign pretrain` or a later stage).
    #[arg(long)]
    bundle: PathBuf,
    /// Which of the bundle's policies (`base`, or a variant the bundle holds).
    #[arg(long, default_value = "base")]
    policy: String,
    /// The SafeTensors file to write. Tensor names are the module paths
    /// (`token_embedding`, `blocks.0.qkv.weight`, ...), in PyTorch's layout (`Linear` weights
    /// `[out, in]`); the metadata holds the policy's shape as JSON under `infalign_policy`.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: SafetensorsArgs) -> anyhow::Result<()> {
    let bundle = Bundle::read_dir(&args.bundle)?;
    let bytes = bundle.to_safetensors(&args.policy, &cpu_device())?;
    write_atomic(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "safetensors: wrote {} ({} bytes, {} parameters)",
        args.out.display(),
        bytes.len(),
        bundle.manifest.policy.num_parameters()
    );
    Ok(())
}
