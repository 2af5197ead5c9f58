//! The bundle: everything needed to run a trained policy, in one directory.
//!
//! ```text
//! manifest.json    format and version, architecture and shape, parts with sizes and sha256,
//!                  reward spec, provenance, metrics
//! model.bpk        the policy's weights (burnpack)
//! tokenizer.json   the tokenizer (Hugging Face format)
//! ```
//!
//! [`Bundle::from_parts`] takes the three files' bytes (the browser fetches them); natively,
//! [`Bundle::read_dir`] and [`Bundle::write_dir`] read and write the directory. Loading checks
//! the format version, the architecture, every part's size and sha256, the tokenizer against the
//! model's vocabulary, and that the weights fit the architecture exactly; each failure is an
//! error that names the bundle and the part.

use std::collections::BTreeMap;

use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Bytes, Device};

use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyConfig};
use crate::reward::RewardSpec;
use crate::sha256_hex;
use crate::tokenizer::DialogueTokenizer;

/// The `format` field of every manifest.
pub const FORMAT: &str = "infalign-bundle";
/// The manifest version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
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
}

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The tokenizer.
    pub tokenizer: DialogueTokenizer,
    weights: Vec<u8>,
}

fn bundle_error(origin: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// The policy's weights as burnpack bytes.
pub fn policy_to_burnpack(policy: &Policy) -> Result<Vec<u8>> {
    let mut store = BurnpackStore::from_bytes(None);
    policy
        .save_into(&mut store)
        .map_err(|error| bundle_error("weights", format!("cannot serialise: {error}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|error| bundle_error("weights", format!("cannot serialise: {error}")))?;
    Ok(bytes.to_vec())
}

/// A policy of shape `config` on `device` with the weights in `bytes` (burnpack). Every tensor
/// must be present with the right shape, and nothing else may be there; `origin` names the
/// weights in errors.
pub fn policy_from_burnpack(
    config: &PolicyConfig,
    bytes: &[u8],
    device: &Device,
    origin: &str,
) -> Result<Policy> {
    let mut policy = Policy::init(config, 0, device)?;
    let mut store =
        BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec()))).validate(true);
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
        let weights = policy_to_burnpack(policy)?;
        let tokenizer_json = tokenizer.to_json()?;
        Ok(Self {
            manifest: Manifest {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                architecture: ARCHITECTURE.into(),
                policy: config,
                end_of_turn: tokenizer.end_of_turn(),
                weights: Part::describe(WEIGHTS_FILE, &weights),
                tokenizer: Part::describe(TOKENIZER_FILE, tokenizer_json.as_bytes()),
                reward,
                provenance,
                metrics,
            },
            tokenizer: tokenizer.clone(),
            weights,
        })
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
            weights,
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

    /// The files of the bundle: `(name, contents)`.
    pub fn files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let manifest = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|error| bundle_error(MANIFEST_FILE, error.to_string()))?;
        Ok(vec![
            (MANIFEST_FILE, manifest),
            (WEIGHTS_FILE, self.weights.clone()),
            (TOKENIZER_FILE, self.tokenizer.to_json()?.into_bytes()),
        ])
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

/// Write `files` (`(name, contents)`) into `dir`, creating it if needed, in order, each through a
/// temporary name and a rename, so a reader never sees half a file.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn write_files_atomically(
    dir: &std::path::Path,
    files: impl IntoIterator<Item = (&'static str, Vec<u8>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
    for (name, contents) in files {
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
            Some(version) if version == u64::from(FORMAT_VERSION) => {}
            Some(version) => {
                return Err(bundle_error(
                    origin,
                    format!(
                        "format version {version}; this build reads version {FORMAT_VERSION} \
                         (re-export the bundle, or use a matching build)"
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
        for part in [&manifest.weights, &manifest.tokenizer] {
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
