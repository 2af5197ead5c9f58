//! The sampling lab: a policy of the bundle answers a prompt N times in the tab (streamed token
//! by token), each answer gets its raw reward and its calibrated reward (its quantile among K
//! answers of the base policy, sampled here and cached per prompt), Best-of-N and Worst-of-N
//! picks are marked, and repeated rounds against the base policy build a running tally with an
//! interval and the theory's prediction beside it.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use infalign_core::{Procedure, ReferenceTable, WinRates};
use infalign_model::backend::{cpu_device, BackendKind};
use infalign_model::bundle::BASE_POLICY;
use infalign_model::ctrl::rollout::ReferenceProgress;
use infalign_model::ctrl::{reference_table, RolloutStream, TrainingReward};
use infalign_model::Policy;
use infalign_view::explorer::short;
use infalign_view::lab::{histogram_svg, predicted_win_rates, Picks, Tally, BUILT_IN_PROMPTS};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;

use crate::bundle::{self, LoadedBundle};
use crate::explorer::after_paint;
use crate::timing::{now, timed};
use crate::url::{query_value, write_query};

/// The query keys this view owns.
const QUERY_KEYS: [&str; 5] = ["policy", "reward", "prompt", "lab_n", "k"];
/// Largest N and K the controls offer.
const N_MAX: usize = 32;
const K_MAX: usize = 256;
/// Rounds one click of "play rounds" adds to the tally.
const ROUNDS_PER_CLICK: usize = 10;
/// Bins of the calibrated-reward histogram.
const HISTOGRAM_BINS: usize = 10;

/// The compute backend the lab samples on, shared with the header's badge and switch.
#[derive(Clone, Copy)]
pub struct Compute {
    /// The backend in use; `None` until one is up.
    pub active: RwSignal<Option<BackendKind>>,
    /// The WebGPU device, when the browser gave one.
    pub gpu: StoredValue<Option<infalign_model::Device>, LocalStorage>,
    /// Why the lab left WebGPU while running, if it had to.
    pub notice: RwSignal<Option<String>>,
    /// Tokens per second of the last generation.
    pub tokens_per_second: RwSignal<Option<f64>>,
}

impl Compute {
    pub fn new() -> Self {
        Self {
            active: RwSignal::new(None),
            gpu: StoredValue::new_local(None),
            notice: RwSignal::new(None),
            tokens_per_second: RwSignal::new(None),
        }
    }

    fn device(&self, kind: BackendKind) -> Option<infalign_model::Device> {
        match kind {
            BackendKind::Flex => Some(cpu_device()),
            BackendKind::Wgpu => self.gpu.get_value(),
        }
    }
}

/// The prompt: one of [`BUILT_IN_PROMPTS`] or the user's own.
#[derive(Debug, Clone, PartialEq)]
enum PromptChoice {
    BuiltIn(usize),
    Own(String),
}

impl PromptChoice {
    fn message(&self) -> String {
        match self {
            PromptChoice::BuiltIn(index) => BUILT_IN_PROMPTS[*index].to_string(),
            PromptChoice::Own(text) => text.clone(),
        }
    }

    fn query(&self) -> String {
        match self {
            PromptChoice::BuiltIn(index) => index.to_string(),
            PromptChoice::Own(text) => text.clone(),
        }
    }
}

/// The lab's settings (in the URL).
#[derive(Debug, Clone, PartialEq)]
struct LabSettings {
    policy: String,
    /// `None`: the reward the policy was aligned with.
    reward: Option<String>,
    prompt: PromptChoice,
    n: usize,
    k: usize,
}

impl Default for LabSettings {
    fn default() -> Self {
        Self {
            policy: BASE_POLICY.to_string(),
            reward: None,
            prompt: PromptChoice::BuiltIn(0),
            n: 8,
            k: 32,
        }
    }
}

impl LabSettings {
    /// The settings in the page's URL, with a message for each value that was replaced.
    fn from_url() -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut problems = Vec::new();
        if let Some(policy) = query_value("policy") {
            settings.policy = policy;
        }
        settings.reward = query_value("reward");
        if let Some(prompt) = query_value("prompt") {
            settings.prompt = match prompt.parse::<usize>() {
                Ok(index) if index < BUILT_IN_PROMPTS.len() => PromptChoice::BuiltIn(index),
                Ok(index) => {
                    problems.push(format!(
                        "prompt={index}: there are {} built-in prompts (0-{})",
                        BUILT_IN_PROMPTS.len(),
                        BUILT_IN_PROMPTS.len() - 1
                    ));
                    PromptChoice::BuiltIn(0)
                }
                Err(_) if prompt.trim().is_empty() => PromptChoice::BuiltIn(0),
                Err(_) => PromptChoice::Own(prompt),
            };
        }
        let mut count = |key: &str, max: usize, min: usize, into: &mut usize| {
            if let Some(given) = query_value(key) {
                match given.parse::<usize>() {
                    Ok(value) if (min..=max).contains(&value) => *into = value,
                    _ => problems.push(format!(
                        "{key}={given:?} is not a whole number from {min} to {max}"
                    )),
                }
            }
        };
        count("lab_n", N_MAX, 1, &mut settings.n);
        count("k", K_MAX, 2, &mut settings.k);
        (settings, problems)
    }

    fn write_url(&self) {
        let mut pairs = vec![
            ("policy", self.policy.clone()),
            ("prompt", self.prompt.query()),
            ("lab_n", self.n.to_string()),
            ("k", self.k.to_string()),
        ];
        if let Some(reward) = &self.reward {
            pairs.push(("reward", reward.clone()));
        }
        write_query(&QUERY_KEYS, &pairs);
    }
}

/// Where the lab stands with its bundle.
#[derive(Clone)]
enum BundleState {
    Loading { done: u64, total: u64 },
    Ready(Arc<LoadedBundle>),
    Failed(String),
}

/// One answer on screen.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    text: String,
    raw: Option<f64>,
    calibrated: Option<f64>,
}

/// How far the current round has come (`data-state` of the answer list).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    Streaming,
    Scored,
    Calibrated,
}

impl Phase {
    fn key(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Streaming => "streaming",
            Phase::Scored => "scored",
            Phase::Calibrated => "calibrated",
        }
    }
}

/// The lab's reactive state: every handle is `Copy`, so closures capture the whole thing.
#[derive(Clone, Copy)]
struct Lab {
    compute: Compute,
    bundle: RwSignal<BundleState>,
    banner: RwSignal<Option<String>>,
    settings: RwSignal<LabSettings>,
    answers: RwSignal<Vec<Answer>>,
    phase: RwSignal<Phase>,
    busy: RwSignal<bool>,
    error: RwSignal<Option<String>>,
    reference_progress: RwSignal<Option<(usize, usize)>>,
    /// The sorted rewards of the reference answers the shown answers were calibrated against.
    reference_rewards: RwSignal<Option<Vec<f64>>>,
    rounds_progress: RwSignal<Option<(usize, usize)>>,
    first_result_ms: RwSignal<Option<f64>>,
    tally: RwSignal<Tally>,
    /// Sampling seeds: each round draws new answers, reproducibly from page load.
    seed: StoredValue<u64>,
    policies: StoredValue<HashMap<(String, BackendKind), Rc<Policy>>, LocalStorage>,
    /// Reference reward tables by (bundle, message, reward, K).
    references: StoredValue<HashMap<ReferenceKey, Rc<ReferenceTable>>, LocalStorage>,
}

/// What a cached reference table is for: (bundle, message, reward, K).
type ReferenceKey = (String, String, String, usize);

/// Let the browser paint (and handle input) before going on.
async fn yield_to_browser() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let scheduled = web_sys::window()
            .map(|window| window.set_timeout_with_callback(&resolve).is_ok())
            .unwrap_or(false);
        if !scheduled {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// The answers and how long sampling them took.
struct Sampled {
    texts: Vec<String>,
    tokens: usize,
    millis: f64,
}

/// Sample `n` answers to `message` from `policy` (the one streaming rollout, with the decoding
/// the bundle's variants were calibrated with), calling `on_step` with the partial texts after
/// every token when given, and yielding to the browser between tokens.
async fn sample_answers(
    bundle: &LoadedBundle,
    policy: &Policy,
    message: &str,
    n: usize,
    seed: u64,
    on_step: Option<&dyn Fn(Vec<String>)>,
) -> Result<Sampled, String> {
    let text = |error: infalign_model::Error| error.to_string();
    let messages = vec![message; n];
    let decoding = bundle.bundle.reference_decoding();
    let start = now();
    let mut stream =
        RolloutStream::new(policy, &bundle.bundle.tokenizer, &messages, &decoding, seed)
            .map_err(text)?;
    while stream.step().await.map_err(text)? {
        if let Some(on_step) = on_step {
            on_step(stream.texts().map_err(text)?);
        }
        yield_to_browser().await;
    }
    let rollouts = stream.finish().map_err(text)?;
    Ok(Sampled {
        tokens: rollouts.tokens(),
        texts: rollouts.texts,
        millis: now() - start,
    })
}

impl Lab {
    fn loaded(&self) -> Option<Arc<LoadedBundle>> {
        self.bundle.with_untracked(|state| match state {
            BundleState::Ready(bundle) => Some(bundle.clone()),
            _ => None,
        })
    }

    fn next_seed(&self) -> u64 {
        let seed = self.seed.get_value();
        self.seed.set_value(seed + 1);
        seed
    }

    /// The policy `name` on `kind`'s device, loaded once per backend.
    fn policy(
        &self,
        bundle: &LoadedBundle,
        name: &str,
        kind: BackendKind,
    ) -> Result<Rc<Policy>, String> {
        let key = (name.to_string(), kind);
        if let Some(policy) = self.policies.with_value(|cache| cache.get(&key).cloned()) {
            return Ok(policy);
        }
        let device = self
            .compute
            .device(kind)
            .ok_or_else(|| format!("no {} device", kind.name()))?;
        let policy = Rc::new(
            timed("load policy", || bundle.bundle.named_policy(name, &device))
                .map_err(|error| error.to_string())?,
        );
        self.policies
            .update_value(|cache| drop(cache.insert(key, policy.clone())));
        Ok(policy)
    }

    fn record_speed(&self, sampled: &Sampled) {
        if sampled.millis > 0.0 {
            self.compute
                .tokens_per_second
                .set(Some(sampled.tokens as f64 / sampled.millis * 1000.0));
        }
    }

    /// Score `texts` with the reward `key`.
    fn score(
        bundle: &LoadedBundle,
        key: &str,
        message: &str,
        texts: &[String],
    ) -> Result<Vec<f64>, String> {
        let choice = bundle
            .reward(key)
            .ok_or_else(|| format!("the bundle has no reward {key:?}"))?;
        infalign_model::ctrl::score(choice.reward.as_ref(), &vec![message; texts.len()], texts)
            .map_err(|error| error.to_string())
    }

    /// The base policy's reference table for (message, reward, K), sampled here once.
    async fn reference(
        &self,
        bundle: &LoadedBundle,
        kind: BackendKind,
        message: &str,
        reward: &str,
        k: usize,
    ) -> Result<Rc<ReferenceTable>, String> {
        let key = (
            bundle.origin.clone(),
            message.to_string(),
            reward.to_string(),
            k,
        );
        if let Some(table) = self.references.with_value(|cache| cache.get(&key).cloned()) {
            return Ok(table);
        }
        let base = self.policy(bundle, BASE_POLICY, kind)?;
        let choice = bundle
            .reward(reward)
            .ok_or_else(|| format!("the bundle has no reward {reward:?}"))?;
        self.reference_progress.set(Some((0, k)));
        let progress = self.reference_progress;
        let table = reference_table(
            &base,
            &bundle.bundle.tokenizer,
            message,
            choice.reward.as_ref(),
            k,
            &bundle.bundle.reference_decoding(),
            bundle.bundle.calibration_seed(),
            async |step: ReferenceProgress| {
                progress.set(Some((step.finished, step.k)));
                yield_to_browser().await;
            },
        )
        .await
        .map_err(|error| error.to_string())?;
        let table = Rc::new(table);
        self.references
            .update_value(|cache| drop(cache.insert(key, table.clone())));
        Ok(table)
    }

    /// One round shown in full: N streamed answers of the chosen policy, raw rewards and picks,
    /// then the reference table and calibrated rewards.
    async fn show_round(&self, kind: BackendKind, clicked: f64) -> Result<(), String> {
        let bundle = self.loaded().ok_or("the bundle is not loaded yet")?;
        let settings = self.settings.get_untracked();
        let reward = self.reward_key(&bundle, &settings)?;
        let message = settings.prompt.message();
        let policy = self.policy(&bundle, &settings.policy, kind)?;
        self.answers.set(vec![
            Answer {
                text: String::new(),
                raw: None,
                calibrated: None
            };
            settings.n
        ]);
        self.phase.set(Phase::Streaming);
        let answers = self.answers;
        let on_step = move |texts: Vec<String>| {
            answers.set(
                texts
                    .into_iter()
                    .map(|text| Answer {
                        text,
                        raw: None,
                        calibrated: None,
                    })
                    .collect(),
            )
        };
        let sampled = sample_answers(
            &bundle,
            &policy,
            &message,
            settings.n,
            self.next_seed(),
            Some(&on_step),
        )
        .await?;
        self.record_speed(&sampled);
        let raw = Self::score(&bundle, &reward, &message, &sampled.texts)?;
        self.answers.set(
            sampled
                .texts
                .into_iter()
                .zip(&raw)
                .map(|(text, &raw)| Answer {
                    text,
                    raw: Some(raw),
                    calibrated: None,
                })
                .collect(),
        );
        self.phase.set(Phase::Scored);
        self.first_result_ms.set(Some(now() - clicked));
        let table = self
            .reference(&bundle, kind, &message, &reward, settings.k)
            .await?;
        let calibrated = table
            .calibrate_batch(&raw)
            .map_err(|error| error.to_string())?;
        self.reference_rewards.set(Some(table.rewards().to_vec()));
        self.answers.update(|answers| {
            for (answer, value) in answers.iter_mut().zip(calibrated) {
                answer.calibrated = Some(value);
            }
        });
        self.phase.set(Phase::Calibrated);
        Ok(())
    }

    /// `count` rounds of the chosen policy against the base policy, added to the tally.
    async fn play_rounds(&self, kind: BackendKind, count: usize) -> Result<(), String> {
        let bundle = self.loaded().ok_or("the bundle is not loaded yet")?;
        let settings = self.settings.get_untracked();
        if settings.policy == BASE_POLICY {
            return Err("choose an aligned policy to play it against the base policy".into());
        }
        let reward = self.reward_key(&bundle, &settings)?;
        let message = settings.prompt.message();
        let aligned = self.policy(&bundle, &settings.policy, kind)?;
        let base = self.policy(&bundle, BASE_POLICY, kind)?;
        let table = self
            .reference(&bundle, kind, &message, &reward, settings.k)
            .await?;
        for round in 0..count {
            self.rounds_progress.set(Some((round, count)));
            let seed = self.next_seed();
            let mut sides = Vec::with_capacity(2);
            for (side, policy) in [&aligned, &base].into_iter().enumerate() {
                let sampled = sample_answers(
                    &bundle,
                    policy,
                    &message,
                    settings.n,
                    seed.wrapping_mul(2).wrapping_add(side as u64),
                    None,
                )
                .await?;
                self.record_speed(&sampled);
                let raw = Self::score(&bundle, &reward, &message, &sampled.texts)?;
                sides.push(
                    table
                        .calibrate_batch(&raw)
                        .map_err(|error| error.to_string())?,
                );
            }
            let mut failed = None;
            self.tally.update(|tally| {
                failed = tally.record(&sides[0], &sides[1]).err();
            });
            if let Some(error) = failed {
                return Err(error.to_string());
            }
        }
        self.rounds_progress.set(None);
        Ok(())
    }

    /// The reward to score with: the chosen one, else the policy's own.
    fn reward_key(&self, bundle: &LoadedBundle, settings: &LabSettings) -> Result<String, String> {
        match &settings.reward {
            Some(key) if bundle.reward(key).is_some() => Ok(key.clone()),
            Some(key) => Err(format!(
                "the bundle has no reward {key:?}; it has {}",
                bundle
                    .rewards
                    .iter()
                    .map(|r| r.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => bundle
                .default_reward(&settings.policy)
                .map(str::to_string)
                .ok_or_else(|| "the bundle has no reward".to_string()),
        }
    }

    /// Run `job` on the active backend; when it fails on WebGPU, switch to the CPU (saying so)
    /// and run it once more there.
    fn run<F, Fut>(self, job: F)
    where
        F: Fn(Lab, BackendKind) -> Fut + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + 'static,
    {
        if self.busy.get_untracked() {
            return;
        }
        self.busy.set(true);
        self.error.set(None);
        spawn_local(async move {
            let kind = self
                .compute
                .active
                .get_untracked()
                .unwrap_or(BackendKind::Flex);
            let mut outcome = match kind {
                // Work on a lost device never finishes: stop waiting when the loss is reported.
                BackendKind::Wgpu => crate::gpu_watch::unless_lost(job(self, kind))
                    .await
                    .unwrap_or_else(|reason| Err(format!("the device was lost: {reason}"))),
                BackendKind::Flex => job(self, kind).await,
            };
            if let (Err(reason), BackendKind::Wgpu) = (&outcome, kind) {
                self.compute.notice.set(Some(format!(
                    "WebGPU failed while sampling ({reason}); the lab switched to the CPU."
                )));
                self.compute.active.set(Some(BackendKind::Flex));
                outcome = job(self, BackendKind::Flex).await;
            }
            if let Err(reason) = outcome {
                self.error.set(Some(reason));
            }
            self.reference_progress.set(None);
            self.rounds_progress.set(None);
            self.busy.set(false);
        });
    }

    /// Use `loaded` from now on (keeping the settings that still make sense).
    fn install(&self, loaded: LoadedBundle) {
        self.policies.update_value(HashMap::clear);
        self.tally.set(Tally::new());
        self.answers.set(Vec::new());
        self.phase.set(Phase::Idle);
        let names: Vec<String> = loaded
            .bundle
            .policy_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let rewards: Vec<&str> = loaded.rewards.iter().map(|r| r.key).collect();
        let mut problems = Vec::new();
        self.settings.update(|settings| {
            if !names.contains(&settings.policy) {
                problems.push(format!(
                    "policy={:?} is not in the bundle (it has {})",
                    settings.policy,
                    names.join(", ")
                ));
                settings.policy = BASE_POLICY.to_string();
            }
            if let Some(reward) = &settings.reward {
                if !rewards.contains(&reward.as_str()) {
                    problems.push(format!(
                        "reward={reward:?} is not in the bundle (it has {})",
                        rewards.join(", ")
                    ));
                    settings.reward = None;
                }
            }
        });
        if !problems.is_empty() {
            self.banner.set(Some(problems.join("; ")));
        }
        self.bundle.set(BundleState::Ready(Arc::new(loaded)));
    }

    /// Read the files of a file-input change or a drop event and load them as a bundle called
    /// `origin`.
    fn load_files(self, event: wasm_bindgen::JsValue, origin: &'static str) {
        spawn_local(async move {
            let result = match bundle::read_event_files(&event).await {
                Ok(files) => bundle::assemble(origin, &files),
                Err(reason) => Err(reason),
            };
            self.replace_with(result);
        });
    }

    /// Load a bundle the user gave (files or a URL): on success it replaces the current one,
    /// on failure the banner says why and the current one stays.
    fn replace_with(&self, result: Result<LoadedBundle, String>) {
        match result {
            Ok(loaded) => {
                self.banner.set(None);
                self.install(loaded);
            }
            Err(reason) => {
                let keeping = if self.loaded().is_some() {
                    " The lab keeps the bundle it had."
                } else {
                    ""
                };
                self.banner.set(Some(format!(
                    "That bundle could not be used: {reason}.{keeping}"
                )));
            }
        }
    }
}

/// The theory's prediction for the tally of `policy` (aligned with a calibrated transform) with
/// N per side, at the KL of its calibrated rewards measured at evaluation (what the theory's
/// tilted policies are about) or, for a bundle without it, at its whole KL (at evaluation, or
/// failing that in training), an overstatement: most of a trained policy's KL moves what the
/// reward does not see. `None` for the base policy and policies without a calibrated transform
/// or a measured KL; `Err` (with the KL) when no tilted policy of that transform has that KL.
fn prediction(bundle: &LoadedBundle, policy: &str, n: usize) -> Option<Prediction> {
    let variant = bundle
        .bundle
        .manifest
        .variants
        .iter()
        .find(|variant| variant.name == policy)?;
    let alignment = variant.alignment.as_ref()?;
    let TrainingReward::Calibrated(transform) = &alignment.training.reward else {
        return None;
    };
    let (kl, which) = alignment.evaluation.as_ref()?.theory_kl();
    // The calibrated KL is bias-corrected and can dip below 0 for a policy close to the base.
    let kl = kl.max(1e-4);
    Some(
        predicted_win_rates(transform, kl, n as u32)
            .map(|rates| (rates, kl, which))
            .map_err(|error| (kl, which, error.to_string())),
    )
}

/// The theory's win rates at a KL (and which KL it is), or why there are none.
type Prediction = Result<(WinRates, f64, &'static str), (f64, &'static str, String)>;

/// The sampling lab.
#[component]
pub fn SamplingLab(compute: Compute) -> impl IntoView {
    let (initial, problems) = LabSettings::from_url();
    let lab = Lab {
        compute,
        bundle: RwSignal::new(BundleState::Loading { done: 0, total: 0 }),
        banner: RwSignal::new((!problems.is_empty()).then(|| problems.join("; "))),
        settings: RwSignal::new(initial),
        answers: RwSignal::new(Vec::new()),
        phase: RwSignal::new(Phase::Idle),
        busy: RwSignal::new(false),
        error: RwSignal::new(None),
        reference_progress: RwSignal::new(None),
        reference_rewards: RwSignal::new(None),
        rounds_progress: RwSignal::new(None),
        first_result_ms: RwSignal::new(None),
        tally: RwSignal::new(Tally::new()),
        seed: StoredValue::new(1),
        policies: StoredValue::new_local(HashMap::new()),
        references: StoredValue::new_local(HashMap::new()),
    };

    // The bundle loads after the first paint, so the explorer never waits for it.
    let source = query_value("bundle").unwrap_or_else(|| bundle::DEFAULT_BUNDLE.to_string());
    after_paint(move || {
        spawn_local(async move {
            let progress = move |done, total| {
                lab.bundle.set(BundleState::Loading { done, total });
            };
            match bundle::fetch_bundle(&source, progress).await {
                Ok(loaded) => lab.install(loaded),
                Err(reason) if source == bundle::DEFAULT_BUNDLE => {
                    lab.bundle.set(BundleState::Failed(reason))
                }
                Err(reason) => {
                    // A bad `?bundle=` link: say so, and fall back to the default bundle.
                    lab.banner.set(Some(format!(
                        "The bundle at {source} could not be used: {reason}. Loading the default \
                         bundle instead."
                    )));
                    match bundle::fetch_bundle(bundle::DEFAULT_BUNDLE, progress).await {
                        Ok(loaded) => lab.install(loaded),
                        Err(reason) => lab.bundle.set(BundleState::Failed(reason)),
                    }
                }
            }
        });
    });

    Effect::new(move |_| {
        let wanted = lab.settings.get();
        after_paint(move || {
            if lab.settings.get_untracked() == wanted {
                wanted.write_url();
            }
        });
    });
    // A new policy, reward, prompt, N or K starts a new tally.
    Effect::new(move |previous: Option<LabSettings>| {
        let now = lab.settings.get();
        if previous.is_some_and(|previous| previous != now) {
            lab.tally.set(Tally::new());
        }
        now
    });

    let on_files = move |event: leptos::ev::Event| {
        event.prevent_default();
        lab.load_files(event.into(), "the chosen files");
    };
    let on_drop = move |event: leptos::ev::DragEvent| {
        event.prevent_default();
        lab.load_files(event.into(), "the dropped files");
    };

    let bundle_key = move || {
        lab.bundle.with(|state| match state {
            BundleState::Loading { .. } => "loading",
            BundleState::Ready(_) => "ready",
            BundleState::Failed(_) => "error",
        })
    };

    view! {
        <section
            class="card"
            id="lab"
            data-bundle=bundle_key
            on:dragover=move |event: leptos::ev::DragEvent| event.prevent_default()
            on:drop=on_drop
        >
            <h2>"Sampling lab"</h2>
            <p class="muted">
                "A policy answers the prompt N times, here in the tab. Each answer gets its raw "
                "reward and its calibrated reward: its quantile among K answers of the base "
                "policy to the same prompt. Best-of-N serves the top answer, Worst-of-N (an "
                "attacker's pick) the bottom one. Drop a bundle's files here to use your own."
            </p>
            <BundleStatus lab=lab on_files=on_files />
            {move || lab.banner.get().map(|message| view! {
                <div id="bundle-banner" class="error" role="alert">
                    {message}
                    " "
                    <button class="link" on:click=move |_| lab.banner.set(None)>"Dismiss"</button>
                </div>
            })}
            {move || lab.bundle.with(|state| match state {
                BundleState::Ready(loaded) => view! { <LabControls lab=lab loaded=loaded.clone() /> }.into_any(),
                BundleState::Loading { .. } => ().into_any(),
                BundleState::Failed(reason) => view! {
                    <p class="error" id="bundle-error">"The default bundle could not be loaded: " {reason.clone()}</p>
                }.into_any(),
            })}
            {move || lab.error.get().map(|reason| view! {
                <p class="error" id="lab-error" role="alert">{reason}</p>
            })}
            {move || lab.reference_progress.get().map(|(done, total)| view! {
                <p class="progress-line" id="reference-status">
                    "Sampling the base policy's reference answers: " {done} " of " {total} " "
                    <progress id="reference-progress" max=total value=done></progress>
                </p>
            })}
            {move || lab.rounds_progress.get().map(|(done, total)| view! {
                <p class="progress-line" id="rounds-status">
                    "Playing rounds: " {done} " of " {total} " "
                    <progress max=total value=done></progress>
                </p>
            })}
            <Answers lab=lab />
            <Tallies lab=lab />
        </section>
    }
}

/// The bundle line: origin and size, the load progress, and the file picker.
#[component]
fn BundleStatus(lab: Lab, on_files: impl Fn(leptos::ev::Event) + 'static) -> impl IntoView {
    view! {
        <div class="bundle-line">
            {move || lab.bundle.with(|state| match state {
                BundleState::Loading { done, total } => view! {
                    <span id="bundle-status" data-state="loading">
                        "Loading the model bundle… "
                        <progress id="bundle-progress" max=*total.max(&1) value=*done></progress>
                        {format!(" {:.1} of {:.1} MB", *done as f64 / 1e6, *total as f64 / 1e6)}
                    </span>
                }.into_any(),
                BundleState::Ready(loaded) => {
                    let names = loaded.bundle.policy_names().len();
                    let bytes = loaded.bundle.total_bytes().unwrap_or(0);
                    let missing = (!loaded.missing_rewards.is_empty())
                        .then(|| format!(" Not available: {}.", loaded.missing_rewards.join("; ")));
                    view! {
                        <span id="bundle-status" data-state="ready">
                            {format!(
                                "Bundle: {} ({names} policies, {:.1} MB).",
                                loaded.origin,
                                bytes as f64 / 1e6
                            )}
                            {missing}
                        </span>
                    }.into_any()
                }
                BundleState::Failed(_) => view! {
                    <span id="bundle-status" data-state="error">"No bundle."</span>
                }.into_any(),
            })}
            <label class="file-button">
                "Open a bundle…"
                <input
                    id="bundle-files"
                    type="file"
                    multiple
                    title="Choose every file of a bundle: manifest.json, the .bpk weights, tokenizer.json"
                    on:change=on_files
                />
            </label>
        </div>
    }
}

/// Prompt, policy, reward, N, K and the two buttons.
#[component]
fn LabControls(lab: Lab, loaded: Arc<LoadedBundle>) -> impl IntoView {
    let settings = lab.settings;
    let names: Vec<String> = loaded
        .bundle
        .policy_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let rewards: Vec<(&'static str, &'static str)> =
        loaded.rewards.iter().map(|r| (r.key, r.label)).collect();
    let own = move || settings.with(|s| matches!(s.prompt, PromptChoice::Own(_)));
    let idle = move || !lab.busy.get();
    let reward_shown = {
        let loaded = loaded.clone();
        move || {
            settings.with(|s| {
                s.reward
                    .clone()
                    .or_else(|| loaded.default_reward(&s.policy).map(str::to_string))
                    .unwrap_or_default()
            })
        }
    };
    view! {
        <div class="controls lab-controls">
            <label>
                "Prompt"
                <select
                    id="lab-prompt"
                    on:change=move |event| {
                        let value = event_target_value(&event);
                        settings.update(|s| {
                            s.prompt = match value.parse::<usize>() {
                                Ok(index) if index < BUILT_IN_PROMPTS.len() => PromptChoice::BuiltIn(index),
                                _ => PromptChoice::Own(s.prompt.message()),
                            }
                        });
                    }
                >
                    {BUILT_IN_PROMPTS.iter().enumerate().map(|(index, text)| view! {
                        <option
                            value=index.to_string()
                            selected=move || settings.with(|s| s.prompt == PromptChoice::BuiltIn(index))
                        >{*text}</option>
                    }).collect_view()}
                    <option value="own" selected=own>"Your own…"</option>
                </select>
            </label>
            <Show when=own>
                <label>
                    "Your prompt"
                    <input
                        id="lab-own-prompt"
                        type="text"
                        maxlength="300"
                        prop:value=move || settings.with(|s| s.prompt.message())
                        on:change=move |event| {
                            let text = event_target_value(&event);
                            settings.update(|s| s.prompt = PromptChoice::Own(text));
                        }
                    />
                </label>
            </Show>
            <label>
                "Policy"
                <select
                    id="lab-policy"
                    on:change=move |event| {
                        let value = event_target_value(&event);
                        settings.update(|s| s.policy = value);
                    }
                >
                    {names.into_iter().map(|name| {
                        let selected = {
                            let name = name.clone();
                            move || settings.with(|s| s.policy == name)
                        };
                        view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                "Reward"
                <select
                    id="lab-reward"
                    on:change=move |event| {
                        let value = event_target_value(&event);
                        settings.update(|s| s.reward = Some(value));
                    }
                >
                    {rewards.into_iter().map(|(key, label)| {
                        let reward_shown = reward_shown.clone();
                        view! { <option value=key selected=move || reward_shown() == key>{label}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                <span>"N answers " <output id="lab-n-value">{move || settings.with(|s| s.n)}</output></span>
                <input
                    id="lab-n"
                    type="range"
                    min="1"
                    max=N_MAX.to_string()
                    prop:value=move || settings.with(|s| s.n.to_string())
                    on:input=move |event| {
                        if let Ok(n) = event_target_value(&event).parse::<usize>() {
                            settings.update(|s| s.n = n.clamp(1, N_MAX));
                        }
                    }
                />
            </label>
            <label>
                <span>"K reference answers " <output>{move || settings.with(|s| s.k)}</output></span>
                <input
                    id="lab-k"
                    type="number"
                    min="2"
                    max=K_MAX.to_string()
                    prop:value=move || settings.with(|s| s.k.to_string())
                    on:change=move |event| {
                        if let Ok(k) = event_target_value(&event).parse::<usize>() {
                            settings.update(|s| s.k = k.clamp(2, K_MAX));
                        }
                    }
                />
            </label>
            <div class="buttons">
                <button
                    id="sample"
                    prop:disabled=move || !idle()
                    on:click=move |_| {
                        let clicked = now();
                        lab.run(move |lab, kind| async move { lab.show_round(kind, clicked).await });
                    }
                >
                    {move || format!("Sample {} answers", settings.with(|s| s.n))}
                </button>
                <button
                    id="play-rounds"
                    prop:disabled=move || !idle() || settings.with(|s| s.policy == BASE_POLICY)
                    title="Both the chosen policy and the base policy answer N times; each procedure serves one answer per side, and the higher calibrated reward wins"
                    on:click=move |_| {
                        lab.run(move |lab, kind| async move { lab.play_rounds(kind, ROUNDS_PER_CLICK).await });
                    }
                >
                    {format!("Play {ROUNDS_PER_CLICK} rounds against the base")}
                </button>
            </div>
        </div>
    }
}

/// The answers with their rewards and the picks, and the histogram.
#[component]
fn Answers(lab: Lab) -> impl IntoView {
    let picks = move || {
        lab.answers.with(|answers| {
            let raw: Option<Vec<f64>> = answers.iter().map(|a| a.raw).collect();
            raw.and_then(|raw| Picks::of(&raw).ok())
        })
    };
    let n = move || lab.settings.with(|s| s.n);
    view! {
        <ol
            id="answers"
            class="answers"
            data-state=move || lab.phase.get().key()
            data-first-result-ms=move || lab.first_result_ms.get().map(|ms| format!("{ms:.0}"))
        >
            {move || {
                let picks = picks();
                lab.answers.get().into_iter().enumerate().map(|(index, answer)| {
                    let best = picks.is_some_and(|p| p.best == index);
                    let worst = picks.is_some_and(|p| p.worst == index);
                    let class = match (best, worst) {
                        (true, true) => "answer best worst",
                        (true, false) => "answer best",
                        (false, true) => "answer worst",
                        _ => "answer",
                    };
                    let text = if answer.text.is_empty() { "…".to_string() } else { answer.text.clone() };
                    view! {
                        <li
                            class=class
                            data-raw=answer.raw.map(|r| format!("{r}"))
                            data-calibrated=answer.calibrated.map(|c| format!("{c}"))
                        >
                            <span class="answer-text">{text}</span>
                            <span class="answer-scores">
                                {best.then(|| view! { <span class="pick pick-best">{format!("Best-of-{}", n())}</span> })}
                                {worst.then(|| view! { <span class="pick pick-worst">{format!("Worst-of-{}", n())}</span> })}
                                {answer.raw.map(|r| format!("raw {r:.3}"))}
                                {answer.calibrated.map(|c| format!(" · calibrated {c:.2}"))}
                            </span>
                        </li>
                    }
                }).collect_view()
            }}
        </ol>
        {move || (lab.phase.get() == Phase::Calibrated).then(|| {
            let calibrated: Vec<f64> = lab.answers.with(|a| a.iter().filter_map(|a| a.calibrated).collect());
            let reference = lab.reference_rewards.get().unwrap_or_default();
            let listed = reference.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
            let exact = reference.iter().map(|r| format!("{r}")).collect::<Vec<_>>().join(",");
            view! {
                <figure class="chart histogram-figure">
                    <figcaption>"Calibrated rewards of these answers (dashed: what the base policy's answers would give, uniform)"</figcaption>
                    <div inner_html=histogram_svg("lab-histogram", &calibrated, HISTOGRAM_BINS)></div>
                </figure>
                <details id="reference-table" data-rewards=exact>
                    <summary>{format!("The {} reference answers' rewards", reference.len())}</summary>
                    <p>"Each answer's calibrated reward is its mid-rank among these (ties count half). The same bundle, prompt, reward, K and seed give the same table in "<code>"infalign sample --reference-k"</code>" and "<code>"infalign calibrate"</code>": "{listed}</p>
                </details>
            }
        })}
    }
}

/// The running tally of the chosen policy against the base policy, with the theory beside it.
#[component]
fn Tallies(lab: Lab) -> impl IntoView {
    let row = move |procedure: Procedure| {
        let n = lab.settings.with(|s| s.n);
        let name = match procedure {
            Procedure::BestOfN => format!("BoN_{n}"),
            Procedure::WorstOfN => format!("WoN_{n}"),
        };
        let measured = lab.tally.with(|t| t.win_rate(procedure));
        let theory = lab.bundle.with(|state| match state {
            BundleState::Ready(loaded) => lab.settings.with(|s| prediction(loaded, &s.policy, s.n)),
            _ => None,
        });
        let (predicted, why) = match theory {
            None => ("–".to_string(), None),
            Some(Ok((rates, kl, which))) => {
                let rate = match procedure {
                    Procedure::BestOfN => rates.bon,
                    Procedure::WorstOfN => rates.won,
                };
                (format!("{rate:.3} ({which} {})", short(kl)), None)
            }
            // E.g. a run whose KL ran away beyond what the transform's tilts can reach.
            Some(Err((kl, which, reason))) => {
                (format!("none at {which} {}", short(kl)), Some(reason))
            }
        };
        view! {
            <tr data-procedure=procedure.as_str()>
                <td>{name}</td>
                <td class="measured" data-rate=measured.map(|ci| format!("{}", ci.estimate))>
                    {measured.map(|ci| format!("{:.3}", ci.estimate)).unwrap_or_else(|| "–".into())}
                </td>
                <td>{measured.map(|ci| format!("[{:.2}, {:.2}]", ci.lower, ci.upper)).unwrap_or_else(|| "–".into())}</td>
                <td class="theory" title=why>{predicted}</td>
            </tr>
        }
    };
    view! {
        <div id="tally" data-rounds=move || lab.tally.with(Tally::rounds)>
            <h3>"Aligned against base, round by round"</h3>
            <p class="muted">
                {move || {
                    let (policy, n) = lab.settings.with(|s| (s.policy.clone(), s.n));
                    let rounds = lab.tally.with(Tally::rounds);
                    if policy == BASE_POLICY {
                        "Choose an aligned policy to play it against the base policy.".to_string()
                    } else {
                        format!(
                            "{rounds} rounds of {policy} against base, N = {n} per side: the win rate of the answer each procedure serves (ties count half), with a 95% bootstrap interval; the theory column is the exactly tilted policy at the KL the policy's calibrated rewards moved (measured at evaluation)."
                        )
                    }
                }}
            </p>
            <table class="numbers">
                <thead><tr><th>"procedure"</th><th>"win rate"</th><th>"95% interval"</th><th>"theory"</th></tr></thead>
                <tbody>
                    {move || row(Procedure::BestOfN)}
                    {move || row(Procedure::WorstOfN)}
                </tbody>
            </table>
        </div>
    }
}
