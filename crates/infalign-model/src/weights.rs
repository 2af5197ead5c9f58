//! A policy's weights as bytes: burnpack (the bundle's and the checkpoints' format) in single
//! or half precision, and SafeTensors in PyTorch's layout for Python users. Loading checks that
//! the weights fit the architecture exactly, and names the file when they do not.

use burn::store::{BurnpackStore, FloatCastAdapter, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device};

use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyConfig};

/// The policy architecture this build implements.
pub const ARCHITECTURE: &str = "gpt-prenorm-tied";

fn weights_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// How a bundle stores its weights. Loading always gives single-precision policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats, exactly as trained.
    #[default]
    F32,
    /// 16-bit floats: half the size; the policy's outputs move by about 1e-3 relative.
    F16,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(format!("precision {other:?}: expected f32 or f16")),
        }
    }
}

/// The policy's weights as burnpack bytes, stored at `precision`.
pub fn policy_to_burnpack(policy: &Policy, precision: Precision) -> Result<Vec<u8>> {
    let mut store =
        BurnpackStore::from_bytes(None).with_to_adapter(FloatCastAdapter::to(precision.dtype()));
    policy
        .save_into(&mut store)
        .map_err(|error| weights_error("weights", format!("cannot serialise: {error}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|error| weights_error("weights", format!("cannot serialise: {error}")))?;
    Ok(bytes.to_vec())
}

/// A policy of shape `config` on `device` with the weights in `bytes` (burnpack, single or half
/// precision: they load as single precision). Every tensor must be present with the right
/// shape, and nothing else may be there; `origin` names the weights in errors.
pub fn policy_from_burnpack(
    config: &PolicyConfig,
    bytes: &[u8],
    device: &Device,
    origin: &str,
) -> Result<Policy> {
    let mut policy = Policy::to_load(config, device)?;
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())))
        .with_from_adapter(FloatCastAdapter::to(DType::F32))
        .validate(true);
    let applied = policy.load_from(&mut store).map_err(|error| {
        weights_error(
            origin,
            format!("the weights do not fit the {ARCHITECTURE} architecture {config:?}: {error}"),
        )
    })?;
    if !applied.unused.is_empty() {
        return Err(weights_error(
            origin,
            format!(
                "the weights hold tensors this architecture does not have: {}",
                applied.unused.join(", ")
            ),
        ));
    }
    Ok(policy)
}

/// SafeTensors export for Python users (native only).
#[cfg(not(target_arch = "wasm32"))]
mod safetensors_export {
    use burn::store::{
        BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    };
    use burn::tensor::Device;

    use super::{weights_error, ARCHITECTURE};
    use crate::error::Result;
    use crate::policy::{Policy, PolicyConfig};

    /// Metadata key holding the policy's shape (JSON) in an exported file.
    pub const SAFETENSORS_POLICY_KEY: &str = "infalign_policy";
    /// Metadata key holding the architecture name in an exported file.
    pub const SAFETENSORS_ARCHITECTURE_KEY: &str = "infalign_architecture";

    /// `policy`'s weights as a SafeTensors file in PyTorch's conventions: `Linear` weights are
    /// `[out, in]`, layer norms hold `weight` and `bias`, names are the module paths
    /// (`token_embedding`, `blocks.0.qkv.weight`, ...). The metadata holds the architecture and
    /// the policy's shape as JSON, so a Python loader can rebuild the model.
    pub fn policy_to_safetensors(policy: &Policy) -> Result<Vec<u8>> {
        let shape = serde_json::to_string(&policy.config())
            .map_err(|error| weights_error("safetensors export", error.to_string()))?;
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .metadata(SAFETENSORS_ARCHITECTURE_KEY, ARCHITECTURE)
            .metadata(SAFETENSORS_POLICY_KEY, shape);
        policy
            .save_into(&mut store)
            .map_err(|error| weights_error("safetensors export", error.to_string()))?;
        store
            .get_bytes()
            .map_err(|error| weights_error("safetensors export", error.to_string()))
    }

    /// A policy of shape `config` from a SafeTensors file written by
    /// [`policy_to_safetensors`] (or by Python in the same layout); `origin` names it in errors.
    pub fn policy_from_safetensors(
        config: &PolicyConfig,
        bytes: Vec<u8>,
        device: &Device,
        origin: &str,
    ) -> Result<Policy> {
        let mut policy = Policy::to_load(config, device)?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes))
            .with_from_adapter(PyTorchToBurnAdapter)
            .validate(true);
        let applied = policy
            .load_from(&mut store)
            .map_err(|error| weights_error(origin, format!("does not fit {config:?}: {error}")))?;
        if let Some(misfit) = super::misfit(&applied) {
            return Err(weights_error(
                origin,
                format!("does not fit {config:?} ({misfit})"),
            ));
        }
        Ok(policy)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use safetensors_export::{
    policy_from_safetensors, policy_to_safetensors, SAFETENSORS_ARCHITECTURE_KEY,
    SAFETENSORS_POLICY_KEY,
};

/// What did not fit when weights were loaded into a module: tensors the file has and the module
/// lacks, and the other way round; `None` when everything fit.
pub(crate) fn misfit(applied: &burn::store::ApplyResult) -> Option<String> {
    if applied.unused.is_empty() && applied.missing.is_empty() {
        return None;
    }
    let missing: Vec<&str> = applied
        .missing
        .iter()
        .map(|(path, _)| path.as_str())
        .collect();
    Some(format!(
        "unexpected: [{}], missing: [{}]",
        applied.unused.join(", "),
        missing.join(", ")
    ))
}
