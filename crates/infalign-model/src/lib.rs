//! InfAlign's models on burn 0.22.
//!
//! One code path serves every backend: burn's `Device` carries the backend (flex on the CPU,
//! wgpu over Vulkan / Metal / WebGPU on a GPU), so the same functions run natively, in tests on
//! a software Vulkan driver, and in the browser.

pub mod backend;
pub mod bundle;
pub mod candidates;
#[cfg(not(target_arch = "wasm32"))]
mod checkpoint;
pub mod ctrl;
pub mod data;
pub mod error;
pub mod files;
pub mod policy;
#[cfg(not(target_arch = "wasm32"))]
pub mod pretrain;
pub mod provenance;
pub mod reward;
pub mod smoke;
pub mod tokenizer;
pub mod weights;

pub use backend::{BackendKind, BackendPreference};
/// The device type tensors live on (re-exported so callers need not depend on burn).
pub use burn::tensor::Device;
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

/// [`host_values`] without blocking: the only way to read a tensor back on WebGPU.
pub(crate) async fn host_values_async<const D: usize>(
    tensor: burn::tensor::Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>> {
    let readback = |reason: String| Error::Readback {
        what,
        backend: "compute",
        reason,
    };
    tensor
        .into_data_async()
        .await
        .map_err(|error| readback(format!("{error:?}")))?
        .try_to_vec::<f32>()
        .map_err(|error| readback(format!("{error:?}")))
}

/// Shuffle `items` in place (Fisher-Yates) with a ChaCha8 stream seeded by `seed`.
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        items.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
}

/// The sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
