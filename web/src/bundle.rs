//! Loading a bundle into the page: the default one served beside it, one named by `?bundle=URL`,
//! or files the user drops on the lab or picks. Every part is checked against the manifest
//! (size and sha256) by [`Bundle::from_parts`]; a bundle that fails is reported in words and the
//! page keeps the one it had. A bundle fetched from a URL comes without its aligned variants
//! ([`Bundle::from_parts_deferring_variants`]): each is fetched (and checked) when the lab first
//! uses it, so the first answer waits only for the base policy.
//!
//! Rewards come with the bundle: VADER is built in (rustrict only in the CLI); a linear classifier
//! (`linear:FILE` in the manifest) is one of the bundle's parts, checked like the weights.

use std::collections::BTreeMap;
use std::sync::Mutex;

use infalign_model::bundle::{Bundle, Manifest, MANIFEST_FILE};
use infalign_model::reward::VaderReward;
use infalign_model::{Device, Policy, Reward, RewardSpec};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::lab::sampling::yield_to_browser;
use crate::timing::timed;
use crate::tokens::fetch_bytes;

/// Where the default bundle is served, relative to the page.
pub const DEFAULT_BUNDLE: &str = "default-model";

/// A file's contents by its name.
pub type Files = BTreeMap<String, Vec<u8>>;

/// One reward the lab can score with.
pub struct RewardChoice {
    /// Its key in the URL and the selector (`vader`, `rustrict`, `linear`).
    pub key: &'static str,
    /// How the selector names it.
    pub label: &'static str,
    /// The spec the manifest gives (policies trained with it default to it).
    pub spec: RewardSpec,
    /// The scorer.
    pub reward: Box<dyn Reward + Send + Sync>,
}

/// A validated bundle with its rewards.
pub struct LoadedBundle {
    /// Where it came from, in words.
    pub origin: String,
    /// The policies, tokenizer and manifest.
    pub bundle: Bundle,
    /// The rewards it names that could be built here.
    pub rewards: Vec<RewardChoice>,
    /// Rewards it names that could not be built, and why.
    pub missing_rewards: Vec<String>,
    /// Where a fetched bundle's files are (its folder's URL), for the variants it has not
    /// fetched yet; `None` for a bundle that came whole (dropped or picked files).
    pub source: Option<String>,
    /// The variants' weights fetched so far, by policy name (each backend loads from them).
    pub fetched: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl LoadedBundle {
    /// The bytes of the weights of variant `name`, fetched the first time they are wanted.
    pub async fn variant_bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        if let Some(bytes) = self.fetched.lock().ok().and_then(|f| f.get(name).cloned()) {
            return Ok(bytes);
        }
        let source = self
            .source
            .as_deref()
            .ok_or_else(|| format!("the bundle has no weights for {name:?}"))?;
        let file = self
            .bundle
            .variant_file(name)
            .map_err(|error| error.to_string())?;
        let bytes = fetch_bytes(&file_url(source, file)).await?;
        if let Ok(mut fetched) = self.fetched.lock() {
            fetched.insert(name.to_string(), bytes.clone());
        }
        Ok(bytes)
    }

    /// The policy `name` on `device`; an aligned variant of a fetched bundle is fetched first
    /// (`fetching` is told its name then, and `None` once it is in).
    pub async fn policy(
        &self,
        name: &str,
        device: &Device,
        fetching: impl Fn(Option<&str>),
    ) -> Result<Policy, String> {
        let loaded = if name == infalign_model::bundle::BASE_POLICY || self.bundle.holds_variants()
        {
            timed("load policy", || self.bundle.named_policy(name, device))
        } else {
            fetching(Some(name));
            let bytes = self.variant_bytes(name).await;
            fetching(None);
            let bytes = bytes?;
            timed("load policy", || {
                self.bundle.variant_from_bytes(name, &bytes, device)
            })
        };
        loaded.map_err(|error| error.to_string())
    }

    /// What the policy `name` is, in a line for someone who has not met the project's names
    /// (`ctrl-exp-bon4`): how it was trained, from the bundle's own record.
    pub fn describe(&self, name: &str) -> String {
        if name == infalign_model::bundle::BASE_POLICY {
            return "The base policy π_ref: pretrained on dialogue, not aligned; every other \
                    policy started from it."
                .into();
        }
        let Some(variant) = self
            .bundle
            .manifest
            .variants
            .iter()
            .find(|v| v.name == name)
        else {
            return String::new();
        };
        let Some(alignment) = &variant.alignment else {
            return "An aligned variant (the bundle does not say how it was trained).".into();
        };
        let training = &alignment.training;
        // Numbers in a spec (normexp:17.323272...) to a few digits.
        let spec = training
            .reward
            .to_string()
            .split(':')
            .map(|part| match part.parse::<f64>() {
                Ok(value) => infalign_view::explorer::short(value),
                Err(_) => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(":");
        let what = if spec == "raw" {
            format!("the raw {} reward", alignment.reward)
        } else {
            format!("{spec} of the calibrated {} reward", alignment.reward)
        };
        let held = match training.target_kl {
            Some(kl) => format!("KL held near {} nats", infalign_view::explorer::short(kl)),
            None => format!("β = {}", infalign_view::explorer::short(training.beta)),
        };
        format!("Trained with CTRL on {what}, {held}.")
    }

    /// The bundle's size as its manifest records it (every part, fetched or not).
    pub fn recorded_bytes(&self) -> u64 {
        self.bundle.manifest.parts().map(|part| part.bytes).sum()
    }

    /// The names of the bundle's policies, owned.
    pub fn policy_names(&self) -> Vec<String> {
        self.bundle
            .policy_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The reward with `key`.
    pub fn reward(&self, key: &str) -> Option<&RewardChoice> {
        self.rewards.iter().find(|choice| choice.key == key)
    }

    /// The key of the reward `policy` was aligned with, else the first reward.
    pub fn default_reward(&self, policy: &str) -> Option<&'static str> {
        let aligned = self
            .bundle
            .manifest
            .variants
            .iter()
            .find(|variant| variant.name == policy)
            .and_then(|variant| variant.alignment.as_ref())
            .map(|alignment| &alignment.reward);
        aligned
            .and_then(|spec| self.rewards.iter().find(|choice| &choice.spec == spec))
            .or(self.rewards.first())
            .map(|choice| choice.key)
    }
}

/// A reward built from the manifest: its key, its label and the reward, or why it is missing.
type BuiltReward = Result<(&'static str, &'static str, Box<dyn Reward + Send + Sync>), String>;

/// Build the rewards the bundle's manifest names (their model files are its parts), each in a
/// task of its own (a lexicon or a classifier to read: tens of milliseconds each).
async fn build_rewards(bundle: &Bundle) -> (Vec<RewardChoice>, Vec<String>) {
    let mut rewards: Vec<RewardChoice> = Vec::new();
    let mut missing = Vec::new();
    for spec in bundle.manifest.reward_specs() {
        yield_to_browser().await;
        let built = timed("build reward", || -> BuiltReward {
            match &spec {
                RewardSpec::Vader => Ok((
                    "vader",
                    "helpfulness (VADER sentiment)",
                    Box::new(VaderReward::new()),
                )),
                // rustrict's word lists and tables would add about 0.3 MB (gzip) to a page
                // that must stay within 6 MB; the bundles the lab ships do not use it.
                RewardSpec::Rustrict => Err(
                    "the rustrict reward is not built into the browser lab (it is in the CLI)"
                        .to_string(),
                ),
                RewardSpec::Linear { .. } => bundle
                    .load_reward(&spec)
                    .map_err(|error| error.to_string())
                    .map(|reward| ("linear", "harmlessness (linear classifier)", reward)),
                RewardSpec::Learned { .. } => Err(format!(
                    "{spec}: learned rewards are not available in the browser yet"
                )),
            }
        });
        match built {
            Ok((key, _, _)) if rewards.iter().any(|r| r.key == key) => {}
            Ok((key, label, reward)) => rewards.push(RewardChoice {
                key,
                label,
                spec,
                reward,
            }),
            Err(reason) => missing.push(reason),
        }
    }
    if rewards.is_empty() {
        // A bundle that names no reward can still be scored for helpfulness.
        rewards.push(RewardChoice {
            key: "vader",
            label: "helpfulness (VADER sentiment)",
            spec: RewardSpec::Vader,
            reward: Box::new(VaderReward::new()),
        });
    }
    (rewards, missing)
}

/// Validate the bundle in `files`; `origin` names it in errors.
pub async fn assemble(origin: &str, files: &Files) -> Result<LoadedBundle, String> {
    let bundle = Bundle::from_parts(origin, |name| Ok(files.get(name).cloned()))
        .map_err(|error| error.to_string())?;
    Ok(loaded(origin, bundle, None).await)
}

/// A validated bundle with its rewards built; `source` as [`LoadedBundle::source`].
async fn loaded(origin: &str, bundle: Bundle, source: Option<String>) -> LoadedBundle {
    let (rewards, missing_rewards) = build_rewards(&bundle).await;
    LoadedBundle {
        origin: origin.to_string(),
        bundle,
        rewards,
        missing_rewards,
        source,
        fetched: Mutex::new(BTreeMap::new()),
    }
}

/// `file` in the bundle folder at `base` ("" for the page's own folder).
fn file_url(base: &str, file: &str) -> String {
    if base.is_empty() {
        file.to_string()
    } else {
        format!("{base}/{file}")
    }
}

/// The file a bundle link names instead of a folder (`model.bpk`, `bundle.zip`), if it does: its
/// last path segment has an extension and is not the manifest.
pub fn not_a_folder(given: &str) -> Option<String> {
    let link = given.split(['?', '#']).next().unwrap_or_default().trim();
    // The path after the host, if the link has one (`https://example.com` is a folder).
    let path = match link.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => link,
    };
    if path.is_empty() || path.ends_with('/') {
        return None;
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let (stem, extension) = last.rsplit_once('.')?;
    let is_file = !stem.is_empty()
        && !extension.is_empty()
        && extension.chars().all(|c| c.is_ascii_alphanumeric())
        && last != MANIFEST_FILE;
    is_file.then(|| last.to_string())
}

/// The directory URL of a bundle given as a directory or as its `manifest.json`.
pub fn base_url(given: &str) -> String {
    let trimmed = given.trim().trim_end_matches('/');
    match trimmed.strip_suffix(MANIFEST_FILE) {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => trimmed.to_string(),
    }
}

/// Fetch and validate the bundle at `url` (a directory or its manifest), reporting
/// `(bytes fetched, bytes expected)` after each file; with the files fetched (all but the
/// aligned variants' weights, fetched when first used).
pub async fn fetch_bundle(
    url: &str,
    progress: impl Fn(u64, u64),
) -> Result<(LoadedBundle, Files), String> {
    if let Some(file) = not_a_folder(url) {
        return Err(format!(
            "{url} names a file ({file}); a bundle link points at the folder that holds \
             manifest.json, or at manifest.json itself"
        ));
    }
    let base = base_url(url);
    let at = |file: &str| file_url(&base, file);
    let manifest_bytes = fetch_bytes(&at(MANIFEST_FILE)).await.map_err(|error| {
        if error.ends_with("HTTP 404") {
            format!(
                "there is no {MANIFEST_FILE} at {}: a bundle link points at the folder that holds \
                 it",
                at(MANIFEST_FILE)
            )
        } else {
            error
        }
    })?;
    let manifest =
        Manifest::parse(&manifest_bytes, &at(MANIFEST_FILE)).map_err(|error| error.to_string())?;
    // Everything but the aligned variants, which are fetched when first used.
    let variants: Vec<&str> = manifest
        .variants
        .iter()
        .map(|v| v.weights.file.as_str())
        .collect();
    let parts: Vec<(String, u64)> = manifest
        .parts()
        .filter(|part| !variants.contains(&part.file.as_str()))
        .map(|part| (part.file.clone(), part.bytes))
        .collect();
    // A bundle older than manifest version 4 keeps its reward models beside it, unlisted.
    let reward_files = manifest.legacy_reward_files();
    let total: u64 = parts.iter().map(|(_, bytes)| bytes).sum();
    let mut done = 0;
    progress(done, total);
    let mut files = Files::new();
    files.insert(MANIFEST_FILE.to_string(), manifest_bytes);
    for (file, _) in parts {
        let bytes = fetch_bytes(&at(&file)).await?;
        done += bytes.len() as u64;
        progress(done.min(total), total);
        files.insert(file, bytes);
    }
    for file in reward_files {
        // A missing reward file leaves that reward out (named in the lab), not the bundle.
        if let Ok(bytes) = fetch_bytes(&at(&file)).await {
            files.insert(file, bytes);
        }
    }
    let loaded = fetched(&base, &base, &files).await?;
    Ok((loaded, files))
}

/// The bundle fetched from the folder `base` as far as `files` go (the aligned variants' weights
/// are fetched from there when first used), called `origin`. Reading it and building each of
/// its rewards are tasks of their own, with paints between.
pub async fn fetched(origin: &str, base: &str, files: &Files) -> Result<LoadedBundle, String> {
    let bundle = timed("read bundle", || {
        Bundle::from_parts_deferring_variants(origin, |name| Ok(files.get(name).cloned()))
    })
    .map_err(|error| error.to_string())?;
    Ok(loaded(origin, bundle, Some(base.to_string())).await)
}

#[wasm_bindgen]
extern "C" {
    /// A `File` of a file input or a drop.
    type PickedFile;
    #[wasm_bindgen(method, getter)]
    fn name(this: &PickedFile) -> String;
    #[wasm_bindgen(method, js_name = arrayBuffer)]
    fn array_buffer(this: &PickedFile) -> js_sys::Promise;
}

/// The files of an `<input type=file>` change event or of a drop event.
pub async fn read_event_files(event: &JsValue) -> Result<Files, String> {
    let get = |target: &JsValue, key: &str| js_sys::Reflect::get(target, &JsValue::from_str(key));
    let list = match get(event, "dataTransfer") {
        Ok(transfer) if !transfer.is_undefined() && !transfer.is_null() => get(&transfer, "files"),
        _ => get(event, "target").and_then(|target| get(&target, "files")),
    }
    .map_err(|_| "the browser gave no files".to_string())?;
    let mut files = Files::new();
    for item in js_sys::Array::from(&list).iter() {
        let file: PickedFile = item.unchecked_into();
        let name = file.name();
        let buffer = JsFuture::from(file.array_buffer())
            .await
            .map_err(|_| format!("{name}: the browser could not read the file"))?;
        files.insert(name, js_sys::Uint8Array::new(&buffer).to_vec());
    }
    if files.is_empty() {
        return Err("no files were given".into());
    }
    Ok(files)
}
