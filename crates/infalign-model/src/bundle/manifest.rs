//! `manifest.json`: what a bundle holds (its parts, with sizes and sha256), the policies'
//! shape and how each variant was aligned and evaluated. Parsing checks the format and version
//! first, then every field, so a newer or damaged manifest gets a clear message.

use std::collections::BTreeMap;

pub use crate::ctrl::Evaluation;
use crate::ctrl::{CalibrationSettings, CtrlConfig};
use crate::error::{Error, Result};
use crate::policy::PolicyConfig;
pub use crate::provenance::Provenance;
use crate::reward::RewardSpec;
use crate::sha256_hex;
pub use crate::weights::{Precision, ARCHITECTURE};

/// The `format` field of every manifest.
pub const FORMAT: &str = "infalign-bundle";
/// The manifest version this build writes (it reads this one and every earlier one). Version 2
/// added named `variants`; version 3 the weights' `precision` and the variants' `alignment`;
/// version 4 the `reward_models` parts (a `linear:FILE` reward names one of them, never a path
/// of the exporting machine) and transform specs with one meaning (`exp:T` is e^(Tu); before,
/// a variant's `exp:T` named the normalised form, and reading an older manifest renames it).
pub const FORMAT_VERSION: u32 = 4;
/// The name of the bundle's main policy (the one in [`WEIGHTS_FILE`]).
pub const BASE_POLICY: &str = "base";
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
    pub(crate) fn describe(file: &str, contents: &[u8]) -> Self {
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

pub(crate) fn check_variant_name(name: &str) -> std::result::Result<(), String> {
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
    /// The files of the reward models the bundle's rewards read (version 4), each checked
    /// like every other part; `linear:FILE` names one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reward_models: Vec<Part>,
}

pub(crate) fn bundle_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: reason.into(),
    }
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
                    "not an InfAlign bundle manifest (`format` {}, expected {FORMAT:?})",
                    crate::error::stated(format)
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
        let mut manifest: Manifest = serde_json::from_value(value)
            .map_err(|error| bundle_error(origin, format!("invalid manifest: {error}")))?;
        if manifest.format_version < 4 {
            manifest.upgrade_legacy();
        }
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
        let mut files = std::collections::BTreeSet::new();
        for part in manifest.parts() {
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

    /// Every part: the weights, the tokenizer, the variants' weights, the reward models.
    pub fn parts(&self) -> impl Iterator<Item = &Part> {
        [&self.weights, &self.tokenizer]
            .into_iter()
            .chain(self.variants.iter().map(|v| &v.weights))
            .chain(&self.reward_models)
    }

    /// Every reward the manifest names (the bundle's own, each variant's training and
    /// calibration rewards), each once, in order of appearance.
    pub fn reward_specs(&self) -> Vec<RewardSpec> {
        let mut specs: Vec<RewardSpec> = Vec::new();
        for spec in self.named_rewards() {
            if !specs.contains(spec) {
                specs.push(spec.clone());
            }
        }
        specs
    }

    fn named_rewards(&self) -> impl Iterator<Item = &RewardSpec> {
        self.reward.iter().chain(
            self.variants
                .iter()
                .filter_map(|variant| variant.alignment.as_ref())
                .flat_map(|alignment| {
                    std::iter::once(&alignment.reward)
                        .chain(alignment.calibration.as_ref().map(|c| &c.reward))
                }),
        )
    }

    /// Apply `rename` to every reward spec the manifest holds.
    pub(crate) fn rename_rewards(&mut self, mut rename: impl FnMut(&RewardSpec) -> RewardSpec) {
        let specs = self.reward.iter_mut().chain(
            self.variants
                .iter_mut()
                .filter_map(|variant| variant.alignment.as_mut())
                .flat_map(|alignment| {
                    std::iter::once(&mut alignment.reward)
                        .chain(alignment.calibration.as_mut().map(|c| &mut c.reward))
                }),
        );
        for spec in specs {
            *spec = rename(spec);
        }
    }

    /// Read a manifest older than version 4 as it was meant: a variant's `exp:T` / `negexp:T`
    /// named the normalised transforms, and a `linear:PATH` reward a path on the exporting
    /// machine whose file name the exporter copied beside the manifest (unchecked; the
    /// reading bundle adds it as a part when it is there).
    fn upgrade_legacy(&mut self) {
        for alignment in self
            .variants
            .iter_mut()
            .filter_map(|v| v.alignment.as_mut())
        {
            alignment.training = alignment.training.clone().upgrade_legacy_specs();
        }
        self.rename_rewards(|spec| match spec {
            RewardSpec::Linear { path } => RewardSpec::Linear {
                path: path
                    .file_name()
                    .map(Into::into)
                    .unwrap_or_else(|| path.clone()),
            },
            other => other.clone(),
        });
    }

    /// The reward-model files a manifest older than version 4 expects beside it, unlisted: each
    /// linear model and the licence beside it (`FILE` with the extension `LICENSE`).
    pub fn legacy_reward_files(&self) -> Vec<String> {
        if self.format_version >= 4 {
            return Vec::new();
        }
        let mut files = Vec::new();
        for spec in self.reward_specs() {
            if let RewardSpec::Linear { path } = spec {
                files.push(path.display().to_string());
                files.push(path.with_extension("LICENSE").display().to_string());
            }
        }
        files
    }
}
