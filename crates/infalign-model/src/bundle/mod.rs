//! The bundle: everything needed to run a trained policy, in one directory.
//!
//! ```text
//! manifest.json    format and version, architecture and shape, parts with sizes and sha256,
//!                  reward spec, provenance, metrics
//! model.bpk        the policy's weights (burnpack): the policy named `base`
//! policy-NAME.bpk  optional further policies of the same shape (e.g. aligned variants), each
//!                  with how it was aligned and what its evaluation measured
//! tokenizer.json   the tokenizer (Hugging Face format)
//! FILE             the reward models its rewards read (`linear:FILE`), e.g. the linear
//!                  harmlessness classifier, with its licence
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

mod manifest;

pub use crate::weights::{policy_from_burnpack, policy_to_burnpack, Precision};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::weights::{
    policy_from_safetensors, SAFETENSORS_ARCHITECTURE_KEY, SAFETENSORS_POLICY_KEY,
};
pub use manifest::{
    Alignment, Evaluation, Manifest, Part, Provenance, Variant, ARCHITECTURE, BASE_POLICY, FORMAT,
    FORMAT_VERSION, MANIFEST_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};

use std::collections::BTreeMap;

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::reward::{LinearClassifierReward, Reward, RewardSpec};
use crate::sha256_hex;
use crate::tokenizer::DialogueTokenizer;
use manifest::{bundle_error, check_variant_name};

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
    /// The weights of `manifest.variants`, in the same order; empty for a bundle read with
    /// [`Bundle::from_parts_deferring_variants`], whose variants come in one by one through
    /// [`Bundle::variant_from_bytes`].
    variant_weights: Vec<Vec<u8>>,
    /// The reward-model files of `manifest.reward_models`, by file name.
    reward_models: BTreeMap<String, Vec<u8>>,
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
                reward_models: Vec::new(),
            },
            tokenizer: tokenizer.clone(),
            tokenizer_json,
            weights,
            variant_weights: Vec::new(),
            reward_models: BTreeMap::new(),
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
        // Keep only the reward models the bundle's own reward still reads.
        let named: Vec<String> = self
            .manifest
            .reward_specs()
            .iter()
            .filter_map(|spec| match spec {
                RewardSpec::Linear { path } => Some(path.display().to_string()),
                _ => None,
            })
            .collect();
        let stem = |file: &str| {
            std::path::Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        };
        self.manifest
            .reward_models
            .retain(|part| named.iter().any(|name| stem(name) == stem(&part.file)));
        let kept: Vec<String> = self
            .manifest
            .reward_models
            .iter()
            .map(|p| p.file.clone())
            .collect();
        self.reward_models.retain(|file, _| kept.contains(file));
    }

    /// Store every policy's weights at `precision` (a no-op when they already are). Going to
    /// f16 rounds the weights; going back to f32 does not restore the digits lost. `device`
    /// holds the policies while they are converted.
    pub fn set_precision(&mut self, precision: Precision, device: &Device) -> Result<()> {
        self.require_variants("converted")?;
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

    /// How reference replies are drawn for this bundle's policies: the decoding its aligned
    /// variants were calibrated with (the first that records one), else the trainer's default.
    /// `infalign sample --reference-k` and the browser lab both use it, so their tables match
    /// `infalign calibrate`'s.
    /// Without one, the default decoding, its replies capped at half the model's context.
    pub fn reference_decoding(&self) -> crate::ctrl::Decoding {
        let recorded = self
            .manifest
            .variants
            .iter()
            .filter_map(|variant| variant.alignment.as_ref())
            .find_map(|alignment| alignment.calibration.as_ref().map(|c| c.decoding));
        recorded.unwrap_or_else(|| {
            let default = crate::ctrl::Decoding::default();
            crate::ctrl::Decoding {
                max_new_tokens: default
                    .max_new_tokens
                    .min(self.manifest.policy.max_seq_len / 2)
                    .max(1),
                ..default
            }
        })
    }

    /// The seed the bundle's variants were calibrated with (the first that records one), else 0:
    /// the browser lab draws its reference tables with it.
    pub fn calibration_seed(&self) -> u64 {
        self.manifest
            .variants
            .iter()
            .filter_map(|variant| variant.alignment.as_ref())
            .find_map(|alignment| alignment.calibration.as_ref().map(|c| c.seed))
            .unwrap_or(0)
    }

    /// The weights of the policy called `name` as a SafeTensors file in PyTorch's layout (see
    /// [`crate::weights::policy_to_safetensors`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_safetensors(&self, name: &str, device: &Device) -> Result<Vec<u8>> {
        crate::weights::policy_to_safetensors(&self.named_policy(name, device)?)
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
        let index = self.variant_index(name)?;
        let file = &self.manifest.variants[index].weights.file;
        let weights = self
            .variant_weights
            .get(index)
            .ok_or_else(|| Error::Invalid {
                what: "policy".into(),
                reason: format!(
                    "the weights of {name:?} ({file}) are not loaded yet: this bundle was read \
                 without its variants"
                ),
            })?;
        policy_from_burnpack(&self.manifest.policy, weights, device, file)
    }

    /// Parse and validate a bundle from its files' bytes; `origin` (a path or URL) names it in
    /// errors. `part` returns a file's bytes by name, `None` when it is missing.
    pub fn from_parts(
        origin: &str,
        part: impl FnMut(&str) -> Result<Option<Vec<u8>>>,
    ) -> Result<Self> {
        Self::read_parts(origin, part, true)
    }

    /// [`Bundle::from_parts`] without the variants' weights: the manifest, tokenizer, base
    /// policy and reward models are read and checked, and each variant is loaded when it is
    /// wanted, from its file's bytes ([`Bundle::variant_from_bytes`]). A page that serves one
    /// policy need not wait for all of them. Such a bundle cannot be written back.
    pub fn from_parts_deferring_variants(
        origin: &str,
        part: impl FnMut(&str) -> Result<Option<Vec<u8>>>,
    ) -> Result<Self> {
        Self::read_parts(origin, part, false)
    }

    /// An error unless the variants' weights are held: a bundle read without them cannot be
    /// `done` (written, converted).
    fn require_variants(&self, done: &str) -> Result<()> {
        if self.holds_variants() {
            Ok(())
        } else {
            Err(Error::Invalid {
                what: "bundle".into(),
                reason: format!("it was read without its variants' weights and cannot be {done}"),
            })
        }
    }

    /// Whether the variants' weights are held (not deferred).
    pub fn holds_variants(&self) -> bool {
        self.variant_weights.len() == self.manifest.variants.len()
    }

    /// The variant `name` on `device` from the bytes of its weights file, fetched apart from the
    /// bundle; the bytes are checked against the manifest's record of that file first.
    pub fn variant_from_bytes(&self, name: &str, bytes: &[u8], device: &Device) -> Result<Policy> {
        let variant = self.variant(name)?;
        check_part(&variant.weights.file, &variant.weights, bytes)?;
        policy_from_burnpack(&self.manifest.policy, bytes, device, &variant.weights.file)
    }

    /// The weights file of the variant `name` (what to fetch for [`Bundle::variant_from_bytes`]).
    pub fn variant_file(&self, name: &str) -> Result<&str> {
        Ok(&self.variant(name)?.weights.file)
    }

    fn variant(&self, name: &str) -> Result<&Variant> {
        Ok(&self.manifest.variants[self.variant_index(name)?])
    }

    /// Where the variant `name` stands among the manifest's variants; the error lists the
    /// bundle's policies.
    fn variant_index(&self, name: &str) -> Result<usize> {
        self.manifest
            .variants
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| Error::Invalid {
                what: "policy name".into(),
                reason: format!(
                    "the bundle has no policy {name:?}; it has {}",
                    self.policy_names().join(", ")
                ),
            })
    }

    fn read_parts(
        origin: &str,
        mut part: impl FnMut(&str) -> Result<Option<Vec<u8>>>,
        with_variants: bool,
    ) -> Result<Self> {
        let at = |file: &str| format!("{origin}/{file}");
        let manifest_bytes = part(MANIFEST_FILE)?
            .ok_or_else(|| bundle_error(origin, format!("missing {MANIFEST_FILE}")))?;
        let mut manifest = Manifest::parse(&manifest_bytes, &at(MANIFEST_FILE))?;
        // An older bundle's reward models lie beside it unlisted: take them as they are, and
        // list them, so that the next write checks them like every other part.
        for file in manifest.legacy_reward_files() {
            if let Some(bytes) = part(&file)? {
                if !manifest.reward_models.iter().any(|p| p.file == file) {
                    manifest.reward_models.push(Part::describe(&file, &bytes));
                }
            }
        }
        let mut fetch = |recorded: &Part| -> Result<Vec<u8>> {
            let bytes = part(&recorded.file)?
                .ok_or_else(|| bundle_error(origin, format!("missing {}", recorded.file)))?;
            check_part(&at(&recorded.file), recorded, &bytes)?;
            Ok(bytes)
        };
        let tokenizer_bytes = fetch(&manifest.tokenizer)?;
        let weights = fetch(&manifest.weights)?;
        let variant_weights = if with_variants {
            manifest
                .variants
                .iter()
                .map(|variant| fetch(&variant.weights))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let reward_models = manifest
            .reward_models
            .iter()
            .map(|recorded| Ok((recorded.file.clone(), fetch(recorded)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
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
            reward_models,
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
        self.require_variants("written")?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            ..self.manifest.clone()
        };
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| bundle_error(MANIFEST_FILE, error.to_string()))?;
        let mut files = vec![
            (MANIFEST_FILE.to_string(), manifest),
            (WEIGHTS_FILE.to_string(), self.weights.clone()),
            (TOKENIZER_FILE.to_string(), self.tokenizer_json.clone()),
        ];
        for (variant, weights) in self.manifest.variants.iter().zip(&self.variant_weights) {
            files.push((variant.weights.file.clone(), weights.clone()));
        }
        for (file, bytes) in &self.reward_models {
            files.push((file.clone(), bytes.clone()));
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
    /// so a crash never leaves a bundle whose manifest points at missing parts; then the parts
    /// an earlier bundle in `dir` listed and this one does not are removed (and any
    /// `policy-*.bpk` left by an older writer that did not list its reward models).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_dir(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let dir = dir.as_ref();
        let earlier: Vec<String> = std::fs::read(dir.join(MANIFEST_FILE))
            .ok()
            .and_then(|bytes| Manifest::parse(&bytes, MANIFEST_FILE).ok())
            .map(|manifest| {
                manifest
                    .parts()
                    .map(|p| p.file.clone())
                    .chain(manifest.legacy_reward_files())
                    .collect()
            })
            .unwrap_or_default();
        let mut files = self.files()?;
        files.rotate_left(1); // the manifest last
        let written: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        crate::files::write_files_atomically(dir, files)?;
        let entries = std::fs::read_dir(dir).map_err(|error| Error::io(dir, error))?;
        for entry in entries {
            let entry = entry.map_err(|error| Error::io(dir, error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale_weights = name.starts_with("policy-") && name.ends_with(".bpk");
            if !written.contains(&name) && (earlier.contains(&name) || stale_weights) {
                std::fs::remove_file(entry.path())
                    .map_err(|error| Error::io(entry.path(), error))?;
            }
        }
        Ok(())
    }

    /// Carry the model file of `spec` in the bundle (for `linear:PATH`: the file, and its
    /// licence beside it, `PATH` with the extension `LICENSE`, when there is one) and return the
    /// spec that names it inside the bundle (`linear:FILE`). Other rewards need no file and come
    /// back as they are.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn add_reward_model(&mut self, spec: &RewardSpec) -> Result<RewardSpec> {
        let RewardSpec::Linear { path } = spec else {
            return Ok(spec.clone());
        };
        let licence = path.with_extension("LICENSE");
        for (source, required) in [(path.clone(), true), (licence, false)] {
            if !required && !source.exists() {
                continue;
            }
            let name = source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Error::Invalid {
                    what: "reward model".into(),
                    reason: format!("{} is not a file", source.display()),
                })?;
            let bytes = std::fs::read(&source).map_err(|error| Error::io(&source, error))?;
            self.add_reward_file(&name, bytes)?;
        }
        Ok(RewardSpec::Linear {
            path: path.file_name().map(Into::into).unwrap_or_default(),
        })
    }

    /// Add a reward-model file as a part (again with the same contents is a no-op).
    pub fn add_reward_file(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let part = Part::describe(name, &bytes);
        if let Some(known) = self.manifest.reward_models.iter().find(|p| p.file == name) {
            if *known != part {
                return Err(Error::Invalid {
                    what: "bundle reward model".into(),
                    reason: format!("two different files are called {name:?}"),
                });
            }
            return Ok(());
        }
        if self.manifest.parts().any(|p| p.file == name) {
            return Err(Error::Invalid {
                what: "bundle reward model".into(),
                reason: format!("{name:?} is already a part of the bundle"),
            });
        }
        self.manifest.reward_models.push(part);
        self.reward_models.insert(name.to_string(), bytes);
        Ok(())
    }

    /// Build the reward `spec` names, reading a model file from the bundle's own parts
    /// (`linear:FILE`), so it works the same natively and in the browser.
    pub fn load_reward(&self, spec: &RewardSpec) -> Result<Box<dyn Reward + Send + Sync>> {
        match spec {
            RewardSpec::Linear { path } => {
                let file = path.display().to_string();
                let bytes = self
                    .reward_models
                    .get(&file)
                    .ok_or_else(|| Error::Invalid {
                        what: format!("reward {spec}"),
                        reason: format!(
                            "the bundle carries no reward model {file:?} (it has: {})",
                            self.reward_models
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })?;
                let text = std::str::from_utf8(bytes).map_err(|_| Error::Parse {
                    origin: file.clone(),
                    reason: "not UTF-8 text".into(),
                })?;
                Ok(Box::new(LinearClassifierReward::parse(text, &file)?))
            }
            other => other.load(),
        }
    }
}

/// That `bytes` are the file `recorded` describes (size and sha256); `origin` names it in the
/// error.
fn check_part(origin: &str, recorded: &Part, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != recorded.bytes || sha256_hex(bytes) != recorded.sha256 {
        return Err(bundle_error(
            origin,
            format!(
                "{} bytes with sha256 {}, but the manifest records {} bytes with sha256 {}: the \
                 file is truncated, corrupt or from another bundle",
                bytes.len(),
                sha256_hex(bytes),
                recorded.bytes,
                recorded.sha256
            ),
        ));
    }
    Ok(())
}
