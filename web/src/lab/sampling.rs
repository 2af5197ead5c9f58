//! What the lab computes: answers streamed from a policy, reference tables, rounds against the
//! base policy, the theory's prediction; the bundle it runs.

use crate::bundle::{self, LoadedBundle};
use crate::engine::{absolute, base_rewards, Engine};
use crate::timing::now;
use infalign_core::{Procedure, ReferenceTable, WinRates};
use infalign_model::backend::BackendKind;
use infalign_model::bundle::BASE_POLICY;
use infalign_model::ctrl::rollout::ReferenceProgress;
use infalign_model::ctrl::{RolloutStream, TrainingReward};
use infalign_model::Policy;
use infalign_view::engine::{self as protocol, BaseSet, Done, Job};
use infalign_view::lab::{predicted_win_rates, Tally};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::*;

/// Let the browser paint (and handle input) before going on.
///
/// A task posted through a `MessageChannel`, not a `setTimeout(0)`: browsers hold a timeout back
/// at least 4 ms once timeouts are nested five deep, as they are when a sampler yields after
/// every token, so a streamed Best-of-8 of 48 tokens waited about 0.2 s for nothing. Without a
/// channel (none could be made), the timeout.
pub(crate) async fn yield_to_browser() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if YIELDS.with(|yields| yields.post(&resolve)) {
            return;
        }
        let scheduled = web_sys::window()
            .map(|window| window.set_timeout_with_callback(&resolve).is_ok())
            .unwrap_or(false);
        if !scheduled {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// The page's one channel for yielding (with the handler that keeps it answering; none where no
/// channel could be made): each post is answered by one message, in order, which resumes the
/// oldest waiting yield.
struct Yields {
    channel: Option<(
        web_sys::MessageChannel,
        wasm_bindgen::closure::Closure<dyn FnMut()>,
    )>,
    waiting: Waiting,
}

/// The resolvers of the yields waiting for their message, oldest first.
type Waiting = Rc<std::cell::RefCell<std::collections::VecDeque<js_sys::Function>>>;

thread_local! {
    static YIELDS: Yields = Yields::new();
}

impl Yields {
    fn new() -> Self {
        let waiting: Waiting = Rc::default();
        let channel = web_sys::MessageChannel::new().ok().map(|channel| {
            let queue = waiting.clone();
            let on_message = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
                let next = queue.borrow_mut().pop_front();
                if let Some(resolve) = next {
                    let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
                }
            });
            channel
                .port1()
                .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            (channel, on_message)
        });
        Yields { channel, waiting }
    }

    /// Queue `resolve` to be called from a task of its own; false when there is no channel.
    fn post(&self, resolve: &js_sys::Function) -> bool {
        let Some((channel, _)) = &self.channel else {
            return false;
        };
        self.waiting.borrow_mut().push_back(resolve.clone());
        if channel
            .port2()
            .post_message(&wasm_bindgen::JsValue::NULL)
            .is_ok()
        {
            return true;
        }
        self.waiting.borrow_mut().pop_back();
        false
    }
}

/// What a sampler calls between tokens: report where it stands in `progress` and let the page
/// draw.
pub(super) fn report_to(
    progress: RwSignal<Option<(usize, usize)>>,
) -> impl AsyncFnMut(ReferenceProgress) {
    async move |step: ReferenceProgress| {
        progress.set(Some((step.finished, step.k)));
        yield_to_browser().await;
    }
}

/// What a job in the sampling worker reports as it goes: where it stands, in `progress`.
fn show_progress(
    progress: RwSignal<Option<(usize, usize)>>,
) -> impl Fn(protocol::Update) -> bool + 'static {
    move |update| {
        if let protocol::Update::Progress { finished, of } = update {
            progress.set(Some((finished, of)));
        }
        true
    }
}

/// The answers and how long sampling them took.
pub(crate) struct Sampled {
    pub(crate) texts: Vec<String>,
    pub(crate) tokens: usize,
    pub(crate) millis: f64,
}

/// Sample `n` answers to `message` from `policy` (the one streaming rollout, with the decoding
/// the bundle's variants were calibrated with), calling `on_step` with the partial texts after
/// every token when given, and yielding to the browser between tokens.
pub(crate) async fn sample_answers(
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
    pub(super) fn loaded(&self) -> Option<Arc<LoadedBundle>> {
        self.bundle.with_untracked(|state| match state {
            BundleState::Ready(bundle) => Some(bundle.clone()),
            _ => None,
        })
    }

    pub(super) fn next_seed(&self) -> u64 {
        let seed = self.seed.get_value();
        self.seed.set_value(seed + 1);
        seed
    }

    /// The policy `name` on `kind`'s device, loaded once per backend; an aligned variant of a
    /// fetched bundle is fetched the first time it is used.
    pub(super) async fn policy(
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
        let fetching = self.fetching;
        let policy = Rc::new(
            bundle
                .policy(name, &device, |name| fetching.set(name.map(str::to_string)))
                .await?,
        );
        self.policies
            .update_value(|cache| drop(cache.insert(key, policy.clone())));
        Ok(policy)
    }

    /// The sampling worker, when it runs this bundle's jobs on `kind` (it samples on the CPU).
    pub(super) fn engine_for(&self, kind: BackendKind, bundle: &LoadedBundle) -> Option<Engine> {
        if kind != BackendKind::Flex {
            return None;
        }
        self.engine
            .get_value()
            .filter(|engine| engine.serves(&bundle.origin))
    }

    /// `job` in the sampling worker when it runs this bundle's jobs on `kind`: `None` when it
    /// does not, or could not (it stopped, or could not read the bundle; the page then runs the
    /// job itself).
    async fn in_worker(
        &self,
        kind: BackendKind,
        bundle: &LoadedBundle,
        job: Job,
        on_update: impl Fn(protocol::Update) -> bool + 'static,
    ) -> Option<Result<Done, String>> {
        let outcome = match self.engine_for(kind, bundle) {
            Some(engine) => match engine.run(&bundle.origin, job, on_update).await {
                Err(_) if !engine.serves(&bundle.origin) => None,
                outcome => Some(outcome),
            },
            None => None,
        };
        self.sampled_in
            .set(Some(if outcome.is_some() { "worker" } else { "page" }));
        outcome
    }

    /// `n` answers of the policy `name` to `message` (seed `seed`), on `kind`; `on_step` gets
    /// the partial texts after every token. On the CPU they are sampled in the worker.
    pub(super) async fn answers(
        &self,
        bundle: &LoadedBundle,
        kind: BackendKind,
        name: &str,
        message: &str,
        (n, seed): (usize, u64),
        on_step: Option<Rc<dyn Fn(Vec<String>)>>,
    ) -> Result<Sampled, String> {
        let start = now();
        let job = Job::Answers {
            policy: name.to_string(),
            message: message.to_string(),
            n,
            seed,
            stream: on_step.is_some(),
        };
        let stream = on_step.clone();
        let on_update = move |update| {
            if let (protocol::Update::Texts(texts), Some(on_step)) = (update, &stream) {
                on_step(texts);
            }
            true
        };
        match self.in_worker(kind, bundle, job, on_update).await {
            Some(Ok(Done::Answers { texts, tokens })) => Ok(Sampled {
                texts,
                tokens,
                millis: now() - start,
            }),
            Some(Ok(other)) => Err(format!("the sampling worker answered {other:?}")),
            Some(Err(reason)) => Err(reason),
            None => {
                let policy = self.policy(bundle, name, kind).await?;
                sample_answers(bundle, &policy, message, n, seed, on_step.as_deref()).await
            }
        }
    }

    /// The rewards of the base policy's answer set `set` for `message` under `reward` (see
    /// [`base_rewards`]), with where sampling stands in `progress`. On the CPU they are sampled
    /// in the worker.
    pub(super) async fn base_rewards(
        &self,
        bundle: &LoadedBundle,
        kind: BackendKind,
        (message, reward): (&str, &str),
        set: BaseSet,
        progress: RwSignal<Option<(usize, usize)>>,
    ) -> Result<Vec<f64>, String> {
        let job = Job::BaseRewards {
            message: message.to_string(),
            reward: reward.to_string(),
            set,
        };
        match self
            .in_worker(kind, bundle, job, show_progress(progress))
            .await
        {
            Some(Ok(Done::Rewards(rewards))) => Ok(rewards),
            Some(Ok(other)) => Err(format!("the sampling worker answered {other:?}")),
            Some(Err(reason)) => Err(reason),
            None => {
                let base = self.policy(bundle, BASE_POLICY, kind).await?;
                let progress = report_to(progress);
                base_rewards(bundle, &base, message, reward, set, progress).await
            }
        }
    }

    pub(super) fn record_speed(&self, sampled: &Sampled) {
        if sampled.millis > 0.0 {
            self.compute
                .tokens_per_second
                .set(Some(sampled.tokens as f64 / sampled.millis * 1000.0));
        }
    }

    /// Score `texts` with the reward `key`.
    pub(super) fn score(
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
    pub(super) async fn reference(
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
        self.reference_progress.set(Some((0, k)));
        let set = BaseSet::Reference { k };
        let rewards = self
            .base_rewards(
                bundle,
                kind,
                (message, reward),
                set,
                self.reference_progress,
            )
            .await?;
        let table = ReferenceTable::new(rewards).map_err(|error| error.to_string())?;
        let table = Rc::new(table);
        self.references
            .update_value(|cache| drop(cache.insert(key, table.clone())));
        Ok(table)
    }

    /// One round shown in full: N streamed answers of the chosen policy, raw rewards and picks,
    /// then the reference table and calibrated rewards.
    pub(super) async fn show_round(&self, kind: BackendKind, clicked: f64) -> Result<(), String> {
        let bundle = self.loaded().ok_or("the bundle is not loaded yet")?;
        let settings = self.settings.get_untracked();
        let reward = self.reward_key(&bundle, &settings)?;
        let message = settings.prompt.message();
        if message.trim().is_empty() {
            return Err("write a prompt first".into());
        }
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
        let sampled = self
            .answers(
                &bundle,
                kind,
                &settings.policy,
                &message,
                (settings.n, self.next_seed()),
                Some(Rc::new(on_step)),
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
        // The Sample button was disabled while it ran, which drops the keyboard's focus to the
        // page: hand it to the answers, which a screen reader then reads.
        if let Some(answers) = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id("answers"))
            .and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = answers.focus();
        }
        Ok(())
    }

    /// `count` rounds of the chosen policy against the base policy, added to the tally.
    pub(super) async fn play_rounds(&self, kind: BackendKind, count: usize) -> Result<(), String> {
        let bundle = self.loaded().ok_or("the bundle is not loaded yet")?;
        let settings = self.settings.get_untracked();
        if settings.policy == BASE_POLICY {
            return Err("choose an aligned policy to play it against the base policy".into());
        }
        let reward = self.reward_key(&bundle, &settings)?;
        let message = settings.prompt.message();
        if message.trim().is_empty() {
            return Err("write a prompt first".into());
        }
        let table = self
            .reference(&bundle, kind, &message, &reward, settings.k)
            .await?;
        self.stop_rounds.set_value(false);
        for round in 0..count {
            if self.stop_rounds.get_value() {
                break;
            }
            self.rounds_progress.set(Some((round, count)));
            let seed = self.next_seed();
            let mut sides = Vec::with_capacity(2);
            let mut texts = Vec::with_capacity(2);
            for (side, policy) in [settings.policy.as_str(), BASE_POLICY]
                .into_iter()
                .enumerate()
            {
                let side_seed = seed.wrapping_mul(2).wrapping_add(side as u64);
                let sampled = self
                    .answers(
                        &bundle,
                        kind,
                        policy,
                        &message,
                        (settings.n, side_seed),
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
                texts.push(sampled.texts);
            }
            let played = self
                .tally
                .try_update(|tally| tally.record(&sides[0], &sides[1]))
                .ok_or("the lab was closed")?
                .map_err(|error| error.to_string())?;
            let pair = |procedure: Procedure| {
                let (a, b) = (played.aligned.get(procedure), played.base.get(procedure));
                ServedPair {
                    aligned: (texts[0][a].clone(), sides[0][a]),
                    base: (texts[1][b].clone(), sides[1][b]),
                    outcome: played.outcome(procedure),
                }
            };
            self.round_log.update(|log| {
                log.push(LoggedRound {
                    served: [pair(Procedure::BestOfN), pair(Procedure::WorstOfN)],
                    calibrated: (sides[0].clone(), sides[1].clone()),
                    round: played,
                })
            });
        }
        self.rounds_progress.set(None);
        Ok(())
    }

    /// Start the tally and its round log over.
    pub(super) fn reset_tally(&self) {
        self.stop_rounds.set_value(true);
        self.tally.set(Tally::new());
        self.round_log.set(Vec::new());
    }

    /// The reward to score with: the chosen one, else the policy's own.
    pub(super) fn reward_key(
        &self,
        bundle: &LoadedBundle,
        settings: &LabSettings,
    ) -> Result<String, String> {
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
    pub(super) fn run<F, Fut>(self, job: F)
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
            let first_on_gpu = kind == BackendKind::Wgpu && !self.gpu_warm.get_value();
            self.gpu_compiling.set(first_on_gpu);
            let mut outcome = match kind {
                // Work on a lost device never finishes: stop waiting when the loss is reported.
                BackendKind::Wgpu => crate::gpu_watch::unless_lost(job(self, kind))
                    .await
                    .unwrap_or_else(|reason| Err(format!("the device was lost: {reason}"))),
                BackendKind::Flex => job(self, kind).await,
            };
            if kind == BackendKind::Wgpu {
                self.gpu_warm.set_value(true);
                self.gpu_compiling.set(false);
            }
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

    /// Use `loaded`, read from `files`, from now on (keeping the settings that still make
    /// sense); the sampling worker is sent the files too.
    pub(super) fn install(&self, loaded: LoadedBundle, files: &bundle::Files) {
        if let Some(engine) = self.engine.get_value() {
            engine.open(
                &loaded.origin,
                loaded.source.as_deref().map(absolute),
                files,
            );
        }
        self.policies.update_value(HashMap::clear);
        self.tally.set(Tally::new());
        self.answers.set(Vec::new());
        self.phase.set(Phase::Idle);
        let names = loaded.policy_names();
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
    pub(super) fn load_files(self, event: wasm_bindgen::JsValue, origin: &'static str) {
        spawn_local(async move {
            let result = match bundle::read_event_files(&event).await {
                Ok(files) => bundle::assemble(origin, &files)
                    .await
                    .map(|loaded| (loaded, files)),
                Err(reason) => Err(reason),
            };
            self.replace_with(result);
        });
    }

    /// Load a bundle the user gave (files or a URL): on success it replaces the current one,
    /// on failure the banner says why and the current one stays.
    pub(super) fn replace_with(&self, result: Result<(LoadedBundle, bundle::Files), String>) {
        match result {
            Ok((loaded, files)) => {
                self.banner.set(None);
                self.install(loaded, &files);
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
pub(super) fn prediction(bundle: &LoadedBundle, policy: &str, n: usize) -> Option<Prediction> {
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
pub(super) type Prediction = Result<(WinRates, f64, &'static str), (f64, &'static str, String)>;
