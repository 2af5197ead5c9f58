//! The sampling lab: a policy of the bundle answers a prompt N times in the tab (streamed token
//! by token), each answer gets its raw reward and its calibrated reward (its quantile among K
//! answers of the base policy, sampled here and cached per prompt), Best-of-N and Worst-of-N
//! picks are marked, and repeated rounds against the base policy build a running tally with an
//! interval and the theory's prediction beside it.

mod compare;
pub(crate) mod sampling;
mod settings;
mod train;
mod view;

use view::{Answers, BundleStatus, LabControls, Tallies};

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use infalign_core::ReferenceTable;
use infalign_model::backend::{cpu_device, BackendKind};
use infalign_model::bundle::BASE_POLICY;
use infalign_model::Policy;
use infalign_view::lab::Tally;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::bundle::{self, LoadedBundle};
use crate::engine::Engine;
use crate::explorer::after_paint;
use crate::tokens::SharedTokenizer;
use crate::url::query_value;

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

/// Where the lab stands with its bundle.
#[derive(Clone)]
enum BundleState {
    Loading { done: u64, total: u64 },
    Ready(Arc<LoadedBundle>),
    Failed(String),
}

/// One round of the tally, as the round log shows it: per procedure (BoN, WoN), the answer each
/// side served with its calibrated reward, and the aligned side's outcome.
#[derive(Debug, Clone, PartialEq)]
struct LoggedRound {
    served: [ServedPair; 2],
    /// Both sides' calibrated rewards (aligned, base) and what the round did, for the CSV.
    calibrated: (Vec<f64>, Vec<f64>),
    round: infalign_view::lab::Round,
}

/// What one procedure served in a round.
#[derive(Debug, Clone, PartialEq)]
struct ServedPair {
    aligned: (String, f64),
    base: (String, f64),
    outcome: f64,
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
    /// The aligned variant whose weights are being fetched, if one is.
    fetching: RwSignal<Option<String>>,
    /// Whether WebGPU has run a job yet (its first one compiles the kernels it uses), and
    /// whether that first job is running now.
    gpu_warm: StoredValue<bool>,
    gpu_compiling: RwSignal<bool>,
    /// The sorted rewards of the reference answers the shown answers were calibrated against.
    reference_rewards: RwSignal<Option<Vec<f64>>>,
    rounds_progress: RwSignal<Option<(usize, usize)>>,
    /// Every round played since the tally started: what each side served and who won.
    round_log: RwSignal<Vec<LoggedRound>>,
    /// Set by "Stop": the rounds being played end after the current one.
    stop_rounds: StoredValue<bool>,
    first_result_ms: RwSignal<Option<f64>>,
    tally: RwSignal<Tally>,
    /// Sampling seeds: each round draws new answers, reproducibly from page load.
    seed: StoredValue<u64>,
    policies: StoredValue<HashMap<(String, BackendKind), Rc<Policy>>, LocalStorage>,
    /// The sampling worker (none where it could not start): on the CPU it samples, so that the
    /// page never waits on a token.
    engine: StoredValue<Option<Engine>, LocalStorage>,
    /// Reference reward tables by (bundle, message, reward, K).
    references: StoredValue<HashMap<ReferenceKey, Rc<ReferenceTable>>, LocalStorage>,
    /// Where the last job sampled: "worker" or "page" (`data-sampled-in` of the lab).
    sampled_in: RwSignal<Option<&'static str>>,
}

/// What a cached reference table is for: (bundle, message, reward, K).
type ReferenceKey = (String, String, String, usize);

/// The sampling lab.
#[component]
pub fn SamplingLab(
    compute: Compute,
    /// Given the default bundle's tokenizer once it is read (the tokenizer card shows it).
    tokenizer: RwSignal<SharedTokenizer, LocalStorage>,
) -> impl IntoView {
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
        fetching: RwSignal::new(None),
        gpu_warm: StoredValue::new(false),
        gpu_compiling: RwSignal::new(false),
        reference_rewards: RwSignal::new(None),
        rounds_progress: RwSignal::new(None),
        round_log: RwSignal::new(Vec::new()),
        stop_rounds: StoredValue::new(false),
        first_result_ms: RwSignal::new(None),
        tally: RwSignal::new(Tally::new()),
        seed: StoredValue::new(1),
        policies: StoredValue::new_local(HashMap::new()),
        references: StoredValue::new_local(HashMap::new()),
        engine: StoredValue::new_local(None),
        sampled_in: RwSignal::new(None),
    };

    // The bundle loads after the first paint, so the explorer never waits for it.
    let source = query_value("bundle").unwrap_or_else(|| bundle::DEFAULT_BUNDLE.to_string());
    after_paint(move || {
        // The sampling worker starts with the bundle (it is this module again, already
        // compiled): after the first paint, so that it does not compete with drawing the page.
        let notice = compute.notice;
        match Engine::start(move |trouble| notice.set(Some(trouble))) {
            Ok(engine) => lab.engine.set_value(Some(engine)),
            Err(reason) => compute.notice.set(Some(format!(
                "The sampling worker could not start ({reason}): the lab samples on the page's \
                 own thread, which may pause the page."
            ))),
        }
        spawn_local(async move {
            let progress = move |done, total| {
                lab.bundle.set(BundleState::Loading { done, total });
            };
            match bundle::fetch_bundle(&source, progress).await {
                Ok((loaded, files)) => lab.install(loaded, &files),
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
                        Ok((loaded, files)) => lab.install(loaded, &files),
                        Err(reason) => lab.bundle.set(BundleState::Failed(reason)),
                    }
                }
            }
            let default = lab
                .loaded()
                .filter(|loaded| loaded.origin == bundle::DEFAULT_BUNDLE)
                .map(|loaded| Box::new(loaded.bundle.tokenizer.clone()));
            tokenizer.set(match default {
                Some(shared) => SharedTokenizer::Ready(shared),
                None => SharedTokenizer::FetchIt,
            });
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
    // A new policy, reward, prompt, N or K starts a new tally, and the answers on screen (drawn
    // under the old settings) go.
    Effect::new(move |previous: Option<LabSettings>| {
        let now = lab.settings.get();
        if previous.is_some_and(|previous| previous != now) {
            lab.reset_tally();
            lab.answers.set(Vec::new());
            lab.phase.set(Phase::Idle);
            lab.reference_rewards.set(None);
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
            data-sampled-in=move || lab.sampled_in.get()
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
            {move || lab.gpu_compiling.get().then(|| view! {
                <p class="progress-line" id="gpu-compiling" role="status">
                    "First run on WebGPU: the browser is compiling the GPU kernels (once per page; \
                     on a software adapter this can take minutes)… "
                    <progress></progress>
                </p>
            })}
            {move || lab.fetching.get().map(|name| view! {
                <p class="progress-line" id="policy-status">
                    {format!("Fetching the weights of {name}…")} " "
                    <progress></progress>
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
            <Show when=move || lab.bundle.with(|state| matches!(state, BundleState::Ready(_)))>
                <train::TrainPanel lab=lab />
                <compare::BackendComparison lab=lab />
            </Show>
        </section>
    }
}
