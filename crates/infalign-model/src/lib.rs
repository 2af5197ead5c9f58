//! InfAlign's models on burn 0.22.
//!
//! One code path serves every backend: burn's `Device` carries the backend (flex on the CPU,
//! wgpu over Vulkan / Metal / WebGPU on a GPU), so the same functions run natively, in tests on
//! a software Vulkan driver, and in the browser.

pub mod backend;
pub mod bundle;
pub mod data;
pub mod error;
pub mod policy;
pub mod pretrain;
pub mod reward;
pub mod smoke;
pub mod tokenizer;

pub use backend::{BackendKind, BackendPreference};
pub use error::{Error, Result};
pub use policy::{Policy, PolicyConfig, SamplingConfig};
pub use reward::{Reward, RewardSpec};

/// A float tensor's values on the host (waits for the device); `what` names it in errors.
pub(crate) fn host_values<const D: usize>(
    tensor: burn::tensor::Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|error| Error::Readback {
            what,
            backend: "compute",
            reason: format!("{error:?}"),
        })
}

/// The sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
