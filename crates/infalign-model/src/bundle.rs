//! The bundle: everything needed to run a trained policy, in one directory.
//!
//! ```text
//! manifest.json    format and version, architecture and shape, parts with sizes and sha256,
//!                  reward spec, provenance, metrics
//! model.bpk        the policy's weights (burnpack): the policy named `base`
//! policy-NAME.bpk  optional further policies of the same shape (e.g. aligned variants), each
//!                  with how it was aligned and what its evaluation measured
//! tokenizer.json   the tokenizer (Hugging Face format)
//! ```
//!
//! Weights are stored in single or half precision ([`Precision`]); either way they load into
//! single-precision policies.
//!
//! [`Bundle::from_parts`] takes the three files' bytes (the browser fetches them); natively,
//! [`Bundle::read_dir`] and [`Bundle::write_dir`] read and write the directory. Loading checks
//! the format version, the architecture, every part's size and sha256, the tokenizer against the
//! model's vocabulary, and that the weights fit the architecture exactly; each failure is an
//! error that names the bundle and the part.

use std::collections::BTreeMap;

use burn::store::{BurnpackStore, FloatCastAdapter, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device};

use crate::ctrl::{CalibrationSettings, CtrlConfig, EvalReport, EvalSettings};
use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyConfig};
use crate::reward::RewardSpec;
use crate::sha256_hex;
use crate::tokenizer::DialogueTokenizer;

/// The `format` field of every manifest.
pub const FORMAT: &str = "infalign-bundle";
/// The manifest version this build writes (it reads this one and every earlier one). Version 2
/// added named `variants`; version 3 the weights' `precision` and the variants' `alignment`.
pub const FORMAT_VERSION: u32 = 3;
/// The name of the bundle's main policy (the one in [`WEIGHTS_FILE`]).
pub const BASE_POLICY: &str = "base";
/// The policy architecture this build implements.
pub const ARCHITECTURE: &str = "gpt-prenorm-tied";
/// File names inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// See [`MANIFEST_FILE`].
pub const WEIGHTS_FILE: &str = "model.bpk";
/// See [`MANIFEST_FILE`].
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A file of the bundle, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// File name inside the bundle.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the contents, lowercase hex.
    pub sha256: String,
}

impl Part {
    fn describe(file: &str, contents: &[u8]) -> Self {
        Self {
            file: file.to_string(),
            bytes: contents.len() as u64,
            sha256: sha256_hex(contents),
        }
    }
}

/// A further policy in the bundle: the same shape and tokenizer as the base policy, other weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its name (`--policy NAME`): lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Its weights file, `policy-NAME.bpk`.
    pub weights: Part,
    /// Named measurements of this policy.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// How it was aligned and evaluated, when it came from `infalign ctrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<Alignment>,
}

/// How an aligned policy was trained and what its held-out evaluation measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alignment {
    /// The training run's settings (transform, beta or target KL, steps, decoding, seed, ...).
    pub training: CtrlConfig,
    /// The reward model it was trained with.
    pub reward: RewardSpec,
    /// How the calibration table was made (absent for raw-reward training).
    #[serde(default)]
    pub calibration: Option<CalibrationSettings>,
    /// Its evaluation against the base policy on held-out prompts, when one was run.
    #[serde(default)]
    pub evaluation: Option<Evaluation>,
}

/// An evaluation of a policy against the base policy (`infalign eval`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The held-out prompts, in words (usually the file they came from).
    pub prompts: String,
    /// How it sampled and summarised.
    pub settings: EvalSettings,
    /// Win rates, KL and rewards with their intervals.
    pub report: EvalReport,
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

fn check_variant_name(name: &str) -> std::result::Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !plain {
        Err(format!(
            "policy name {name:?} must be 1 to 40 of a-z, 0-9, `-`, `_`"
        ))
    } else if name == BASE_POLICY {
        Err(format!("{BASE_POLICY:?} names the main policy"))
    } else {
        Ok(())
    }
}

/// Where a bundle came from.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Provenance {
    /// The program and version that wrote it, e.g. `infalign 0.1.0`.
    pub created_by: String,
    /// The command or procedure that trained it.
    pub command: String,
    /// The training data, in words (e.g. `chitchat-dataset 0.9.0, train split`).
    pub data: String,
    /// Seed of the run.
    pub seed: u64,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Training tokens seen.
    pub tokens: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// [`ARCHITECTURE`] when written by this build.
    pub architecture: String,
    /// The policy's shape.
    pub policy: PolicyConfig,
    /// The end-of-turn token id (generation stops there).
    pub end_of_turn: u32,
    /// The weights file.
    pub weights: Part,
    /// How every weights file stores its numbers (f32 before version 3).
    #[serde(default)]
    pub precision: Precision,
    /// The tokenizer file.
    pub tokenizer: Part,
    /// The reward the bundle was trained or evaluated with, if any.
    #[serde(default)]
    pub reward: Option<RewardSpec>,
    /// Where it came from.
    #[serde(default)]
    pub provenance: Provenance,
    /// Named measurements (e.g. `validation_loss`).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Further policies of the same shape (absent in version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The tokenizer.
    pub tokenizer: DialogueTokenizer,
    /// `tokenizer.json` exactly as hashed in the manifest (written back as it is).
    tokenizer_json: Vec<u8>,
    weights: Vec<u8>,
    /// The weights of `manifest.variants`, in the same order.
    variant_weights: Vec<Vec<u8>>,
}

fn bundle_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// The policy's weights as burnpack bytes, stored at `precision`.
pub fn policy_to_burnpack(policy: &Policy, precision: Precision) -> Result<Vec<u8>> {
    let mut store =
        BurnpackStore::from_bytes(None).with_to_adapter(FloatCastAdapter::to(precision.dtype()));
    policy
        .save_into(&mut store)
        .map_err(|error| bundle_error("weights", format!("cannot serialise: {error}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|error| bundle_error("weights", format!("cannot serialise: {error}")))?;
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
    let mut policy = Policy::init(config, 0, device)?;
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())))
        .with_from_adapter(FloatCastAdapter::to(DType::F32))
        .validate(true);
    let applied = policy.load_from(&mut store).map_err(|error| {
        bundle_error(
            origin,
            format!("the weights do not fit the {ARCHITECTURE} architecture {config:?}: {error}"),
        )
    })?;
    if !applied.unused.is_empty() {
        return Err(bundle_error(
            origin,
            format!(
                "the weights hold tensors this architecture does not have: {}",
                applied.unused.join(", ")
            ),
        ));
    }
    Ok(policy)
}

impl Bundle {
    /// A bundle of `policy` and `tokenizer`, with the given provenance and metrics.
    pub fn new(
        policy: &Policy,
        tokenizer: &DialogueTokenizer,
        reward: Option<RewardSpec>,
        provenance: Provenance,
        metrics: BTreeMap<String, f64>,
    ) -> Result<Self> {
        let config = policy.config();
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(Error::Invalid {
                what: "bundle".into(),
                reason: format!(
                    "the tokenizer has {} tokens but the policy's vocabulary is {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let weights = policy_to_burnpack(policy, Precision::F32)?;
        let tokenizer_json = tokenizer.to_json()?.into_bytes();
        Ok(Self {
            manifest: Manifest {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                architecture: ARCHITECTURE.into(),
                policy: config,
                end_of_turn: tokenizer.end_of_turn(),
                weights: Part::describe(WEIGHTS_FILE, &weights),
                precision: Precision::F32,
                tokenizer: Part::describe(TOKENIZER_FILE, &tokenizer_json),
                reward,
                provenance,
                metrics,
                variants: Vec::new(),
            },
            tokenizer: tokenizer.clone(),
            tokenizer_json,
            weights,
            variant_weights: Vec::new(),
        })
    }

    /// Add `policy` (same shape as the base policy) under `name`, with its metrics and, for an
    /// aligned policy, how it was aligned. It is stored at the bundle's precision.
    pub fn add_variant(
        &mut self,
        name: &str,
        policy: &Policy,
        metrics: BTreeMap<String, f64>,
        alignment: Option<Alignment>,
    ) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            what: "bundle variant".into(),
            reason,
        };
        check_variant_name(name).map_err(invalid)?;
        if self.manifest.variants.iter().any(|v| v.name == name) {
            return Err(invalid(format!("the bundle already has a policy {name:?}")));
        }
        if policy.config() != self.manifest.policy {
            return Err(invalid(format!(
                "{name:?} has shape {:?} but the bundle's policies are {:?}",
                policy.config(),
                self.manifest.policy
            )));
        }
        let weights = policy_to_burnpack(policy, self.manifest.precision)?;
        self.manifest.variants.push(Variant {
            name: name.to_string(),
            weights: Part::describe(&format!("policy-{name}.bpk"), &weights),
            metrics,
            alignment,
        });
        self.variant_weights.push(weights);
        Ok(())
    }

    /// Drop the variants, keeping the base policy.
    pub fn clear_variants(&mut self) {
        self.manifest.variants.clear();
        self.variant_weights.clear();
    }

    /// Store every policy's weights at `precision` (a no-op when they already are). Going to
    /// f16 rounds the weights; going back to f32 does not restore the digits lost. `device`
    /// holds the policies while they are converted.
    pub fn set_precision(&mut self, precision: Precision, device: &Device) -> Result<()> {
        if precision == self.manifest.precision {
            return Ok(());
        }
        let convert = |bytes: &[u8], origin: &str| -> Result<Vec<u8>> {
            let policy = policy_from_burnpack(&self.manifest.policy, bytes, device, origin)?;
            policy_to_burnpack(&policy, precision)
        };
        let weights = convert(&self.weights, &self.manifest.weights.file)?;
        let variant_weights = self
            .manifest
            .variants
            .iter()
            .zip(&self.variant_weights)
            .map(|(variant, bytes)| convert(bytes, &variant.weights.file))
            .collect::<Result<Vec<_>>>()?;
        self.manifest.weights = Part::describe(WEIGHTS_FILE, &weights);
        for (variant, bytes) in self.manifest.variants.iter_mut().zip(&variant_weights) {
            variant.weights = Part::describe(&variant.weights.file, bytes);
        }
        self.manifest.precision = precision;
        self.weights = weights;
        self.variant_weights = variant_weights;
        Ok(())
    }

    /// The sha256 that `policy`'s weights would have as this bundle's base policy, at its
    /// precision: equal to `manifest.weights.sha256` exactly when `policy` is (up to that
    /// precision) the base policy.
    pub fn base_sha256_of(&self, policy: &Policy) -> Result<String> {
        Ok(sha256_hex(&policy_to_burnpack(
            policy,
            self.manifest.precision,
        )?))
    }

    /// The total size of the bundle's files in bytes (manifest included).
    pub fn total_bytes(&self) -> Result<u64> {
        Ok(self
            .files()?
            .iter()
            .map(|(_, contents)| contents.len() as u64)
            .sum())
    }

    /// The names of the bundle's policies: [`BASE_POLICY`] first, then the variants.
    pub fn policy_names(&self) -> Vec<&str> {
        std::iter::once(BASE_POLICY)
            .chain(self.manifest.variants.iter().map(|v| v.name.as_str()))
            .collect()
    }

    /// The policy called `name` (see [`Bundle::policy_names`]), on `device`.
    pub fn named_policy(&self, name: &str, device: &Device) -> Result<Policy> {
        if name == BASE_POLICY {
            return self.policy(device);
        }
        let index = self
            .manifest
            .variants
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| Error::Invalid {
                what: "policy name".into(),
                reason: format!(
                    "the bundle has no policy {name:?}; it has {}",
                    self.policy_names().join(", ")
                ),
            })?;
        policy_from_burnpack(
            &self.manifest.policy,
            &self.variant_weights[index],
            device,
            &self.manifest.variants[index].weights.file,
        )
    }

    /// Parse and validate a bundle from its files' bytes; `origin` (a path or URL) names it in
    /// errors. `part` returns a file's bytes by name, `None` when it is missing.
    pub fn from_parts(
        origin: &str,
        mut part: impl FnMut(&str) -> Result<Option<Vec<u8>>>,
    ) -> Result<Self> {
        let at = |file: &str| format!("{origin}/{file}");
        let manifest_bytes = part(MANIFEST_FILE)?
            .ok_or_else(|| bundle_error(origin, format!("missing {MANIFEST_FILE}")))?;
        let manifest = Manifest::parse(&manifest_bytes, &at(MANIFEST_FILE))?;
        let mut fetch = |recorded: &Part| -> Result<Vec<u8>> {
            let bytes = part(&recorded.file)?
                .ok_or_else(|| bundle_error(origin, format!("missing {}", recorded.file)))?;
            if bytes.len() as u64 != recorded.bytes || sha256_hex(&bytes) != recorded.sha256 {
                return Err(bundle_error(
                    &at(&recorded.file),
                    format!(
                        "{} bytes with sha256 {}, but the manifest records {} bytes with sha256 \
                         {}: the file is truncated, corrupt or from another bundle",
                        bytes.len(),
                        sha256_hex(&bytes),
                        recorded.bytes,
                        recorded.sha256
                    ),
                ));
            }
            Ok(bytes)
        };
        let tokenizer_bytes = fetch(&manifest.tokenizer)?;
        let weights = fetch(&manifest.weights)?;
        let variant_weights = manifest
            .variants
            .iter()
            .map(|variant| fetch(&variant.weights))
            .collect::<Result<Vec<_>>>()?;
        let tokenizer_origin = at(&manifest.tokenizer.file);
        let tokenizer = DialogueTokenizer::from_bytes(&tokenizer_bytes, &tokenizer_origin)?;
        if tokenizer.vocab_size() != manifest.policy.vocab_size
            || tokenizer.end_of_turn() != manifest.end_of_turn
        {
            return Err(bundle_error(
                &tokenizer_origin,
                format!(
                    "{} tokens with end of turn {}, but the policy expects {} tokens with end of \
                     turn {}",
                    tokenizer.vocab_size(),
                    tokenizer.end_of_turn(),
                    manifest.policy.vocab_size,
                    manifest.end_of_turn
                ),
            ));
        }
        Ok(Self {
            manifest,
            tokenizer,
            tokenizer_json: tokenizer_bytes,
            weights,
            variant_weights,
        })
    }

    /// The policy, on `device`.
    pub fn policy(&self, device: &Device) -> Result<Policy> {
        policy_from_burnpack(
            &self.manifest.policy,
            &self.weights,
            device,
            &self.manifest.weights.file,
        )
    }

    /// The files of the bundle: `(name, contents)`, the manifest first.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let manifest = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|error| bundle_error(MANIFEST_FILE, error.to_string()))?;
        let mut files = vec![
            (MANIFEST_FILE.to_string(), manifest),
            (WEIGHTS_FILE.to_string(), self.weights.clone()),
            (TOKENIZER_FILE.to_string(), self.tokenizer_json.clone()),
        ];
        for (variant, weights) in self.manifest.variants.iter().zip(&self.variant_weights) {
            files.push((variant.weights.file.clone(), weights.clone()));
        }
        Ok(files)
    }

    /// Read and validate the bundle in directory `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(bundle_error(
                &dir.display().to_string(),
                "not a directory (a bundle is a directory with manifest.json, model.bpk and \
                 tokenizer.json)",
            ));
        }
        Self::from_parts(&dir.display().to_string(), |file| {
            let path = dir.join(file);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(Error::io(path, error)),
            }
        })
    }

    /// Write the bundle into directory `dir` (created if needed). The manifest is written last,
    /// so a crash never leaves a bundle whose manifest points at missing parts.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let mut files = self.files()?;
        files.rotate_left(1); // the manifest last
        write_files_atomically(dir.as_ref(), files)
    }
}

/// SafeTensors export for Python users (native only).
#[cfg(not(target_arch = "wasm32"))]
mod safetensors_export {
    use burn::store::{
        BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    };
    use burn::tensor::Device;

    use super::{bundle_error, Bundle, ARCHITECTURE};
    use crate::error::Result;
    use crate::policy::{Policy, PolicyConfig};

    /// Metadata key holding the policy's shape (JSON) in an exported file.
    pub const SAFETENSORS_POLICY_KEY: &str = "infalign_policy";
    /// Metadata key holding the architecture name in an exported file.
    pub const SAFETENSORS_ARCHITECTURE_KEY: &str = "infalign_architecture";

    impl Bundle {
        /// The weights of the policy called `name` as a SafeTensors file in PyTorch's conventions: `Linear` weights
        /// are `[out, in]`, layer norms hold `weight` and `bias`, names are the module paths
        /// (`token_embedding`, `blocks.0.qkv.weight`, ...). The metadata holds the architecture
        /// and the policy's shape as JSON, so a Python loader can rebuild the model.
        pub fn to_safetensors(&self, name: &str, device: &Device) -> Result<Vec<u8>> {
            let policy = self.named_policy(name, device)?;
            let shape = serde_json::to_string(&self.manifest.policy)
                .map_err(|error| bundle_error("safetensors export", error.to_string()))?;
            let mut store = SafetensorsStore::from_bytes(None)
                .with_to_adapter(BurnToPyTorchAdapter)
                .metadata(SAFETENSORS_ARCHITECTURE_KEY, ARCHITECTURE)
                .metadata(SAFETENSORS_POLICY_KEY, shape);
            policy
                .save_into(&mut store)
                .map_err(|error| bundle_error("safetensors export", error.to_string()))?;
            store
                .get_bytes()
                .map_err(|error| bundle_error("safetensors export", error.to_string()))
        }
    }

    /// A policy of shape `config` from a SafeTensors file written by
    /// [`Bundle::to_safetensors`] (or by Python in the same layout); `origin` names it in errors.
    pub fn policy_from_safetensors(
        config: &PolicyConfig,
        bytes: Vec<u8>,
        device: &Device,
        origin: &str,
    ) -> Result<Policy> {
        let mut policy = Policy::init(config, 0, device)?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes))
            .with_from_adapter(PyTorchToBurnAdapter)
            .validate(true);
        let applied = policy
            .load_from(&mut store)
            .map_err(|error| bundle_error(origin, format!("does not fit {config:?}: {error}")))?;
        if let Some(misfit) = super::misfit(&applied) {
            return Err(bundle_error(
                origin,
                format!("does not fit {config:?} ({misfit})"),
            ));
        }
        Ok(policy)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use safetensors_export::{
    policy_from_safetensors, SAFETENSORS_ARCHITECTURE_KEY, SAFETENSORS_POLICY_KEY,
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

/// Write `files` (`(name, contents)`) into `dir`, creating it if needed, in order, each through a
/// temporary name and a rename, so a reader never sees half a file.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn write_files_atomically<N: AsRef<str>>(
    dir: &std::path::Path,
    files: impl IntoIterator<Item = (N, Vec<u8>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
    for (name, contents) in files {
        let name = name.as_ref();
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.partial"));
        std::fs::write(&temporary, &contents).map_err(|error| Error::io(&temporary, error))?;
        std::fs::rename(&temporary, &path).map_err(|error| Error::io(&path, error))?;
    }
    Ok(())
}

impl Manifest {
    /// Parse and check a manifest's bytes; `origin` names the file in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        // Check the format and version first, so a newer bundle gets a clear message rather
        // than a complaint about fields this build does not know.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| bundle_error(origin, format!("not valid JSON: {error}")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(bundle_error(
                origin,
                format!(
                    "not an InfAlign bundle manifest (`format` is {format:?}, expected {FORMAT:?})"
                ),
            ));
        }
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(version) if (1..=u64::from(FORMAT_VERSION)).contains(&version) => {}
            Some(version) => {
                return Err(bundle_error(
                    origin,
                    format!(
                        "format version {version}; this build reads versions 1 to \
                         {FORMAT_VERSION} (update infalign, or re-export the bundle)"
                    ),
                ))
            }
            None => return Err(bundle_error(origin, "no `format_version` number")),
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|error| bundle_error(origin, format!("invalid manifest: {error}")))?;
        if manifest.architecture != ARCHITECTURE {
            return Err(bundle_error(
                origin,
                format!(
                    "architecture {:?} is not supported by this build (it runs {ARCHITECTURE:?})",
                    manifest.architecture
                ),
            ));
        }
        manifest
            .policy
            .validate()
            .map_err(|error| bundle_error(origin, error.to_string()))?;
        let mut names = std::collections::BTreeSet::new();
        for variant in &manifest.variants {
            check_variant_name(&variant.name).map_err(|reason| bundle_error(origin, reason))?;
            if !names.insert(variant.name.as_str()) {
                return Err(bundle_error(
                    origin,
                    format!("two policies are called {:?}", variant.name),
                ));
            }
        }
        let parts = [&manifest.weights, &manifest.tokenizer]
            .into_iter()
            .chain(manifest.variants.iter().map(|v| &v.weights));
        let mut files = std::collections::BTreeSet::new();
        for part in parts {
            if !files.insert(part.file.as_str()) {
                return Err(bundle_error(
                    origin,
                    format!("two parts share the file {:?}", part.file),
                ));
            }
            let plain = !part.file.is_empty()
                && !part.file.contains(['/', '\\'])
                && part.file != ".."
                && part.file != ".";
            if !plain {
                return Err(bundle_error(
                    origin,
                    format!("part file name {:?} must be a plain file name", part.file),
                ));
            }
        }
        Ok(manifest)
    }
}
