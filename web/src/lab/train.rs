//! "Train it yourself": the lab's prompt and reward, C answers of the base policy sampled here
//! (the candidates) and the lab's K reference answers; two training scores side by side, their
//! exact optima at a KL budget with the theory beside them, and the tabular RLOO trainer run
//! live on each, its policy walking onto the exact frontier
//! ([`infalign_view::train`] holds the model; this is its page).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use infalign_core::candidates::CandidatePrompt;
use infalign_core::Procedure;
use infalign_view::chart::render_svg;
use infalign_view::engine::{self as protocol, BaseSet, Job};
use infalign_view::explorer::short;
use infalign_view::train::{
    exact_sides, frontier_chart, probability_chart, runs_csv, verdict, ExactSide, Score, TrainPair,
    TrainPoint, TrainSettings, C_RANGE, KL_RANGE, LR_RANGE, M_RANGE, N_MAX, QUERY_KEYS,
    STEPS_RANGE, T_RANGE,
};
use leptos::prelude::*;

use super::sampling::yield_to_browser;
use super::*;
use crate::svg::SvgFigure;
use crate::url::{current_query, write_query};

/// What a candidate set was sampled for: (bundle, message, reward, K, C).
type CandidateKey = (String, String, String, usize, usize);

/// Resolves at the page's next animation frame (at once where there is none).
async fn next_animation_frame() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let asked = web_sys::window()
            .map(|window| window.request_animation_frame(&resolve).is_ok())
            .unwrap_or(false);
        if !asked {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A frame of training: both sides' paths so far and their policies.
type TrainedFrame = ([Vec<TrainPoint>; 2], [Vec<f64>; 2]);

/// Where a run stands (`data-state` of the panel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// No candidates for the current prompt, reward, K and C.
    Empty,
    /// Candidates in hand, nothing trained.
    Ready,
    Training,
    /// Both sides trained to the end (or stopped).
    Done,
}

impl RunState {
    fn key(self) -> &'static str {
        match self {
            RunState::Empty => "empty",
            RunState::Ready => "ready",
            RunState::Training => "training",
            RunState::Done => "done",
        }
    }
}

/// The panel's reactive state.
#[derive(Clone, Copy)]
struct Panel {
    settings: RwSignal<TrainSettings>,
    /// The candidates and what they were sampled for.
    candidates: RwSignal<Option<(CandidateKey, Arc<CandidatePrompt>)>>,
    progress: RwSignal<Option<(usize, usize)>>,
    paths: RwSignal<[Vec<TrainPoint>; 2]>,
    trained: RwSignal<[Option<Vec<f64>>; 2]>,
    state: RwSignal<RunState>,
    stop: StoredValue<bool>,
    /// Where the last run trained: "worker" or "page" (`data-trained-in` of the panel).
    trained_in: RwSignal<Option<&'static str>>,
}

impl Panel {
    /// The candidates, when they were sampled for the lab's current prompt, reward, K and C.
    fn current(&self, lab: Lab) -> Option<Arc<CandidatePrompt>> {
        let wanted = self.key(lab)?;
        self.candidates.with(|held| {
            held.as_ref()
                .filter(|(key, _)| *key == wanted)
                .map(|(_, prompt)| prompt.clone())
        })
    }

    fn key(&self, lab: Lab) -> Option<CandidateKey> {
        let bundle = lab.loaded()?;
        let settings = lab.settings.get();
        let reward = lab.reward_key(&bundle, &settings).ok()?;
        Some((
            bundle.origin.clone(),
            settings.prompt.message(),
            reward,
            settings.k,
            self.settings.with(|s| s.c),
        ))
    }

    fn reset(&self) {
        self.stop.set_value(true);
        self.paths.set([Vec::new(), Vec::new()]);
        self.trained.set([None, None]);
    }

    /// Sample the candidates (and the lab's reference table, cached) for the current settings.
    async fn sample(&self, lab: Lab, kind: BackendKind) -> Result<(), String> {
        let bundle = lab.loaded().ok_or("the bundle is not loaded yet")?;
        let settings = lab.settings.get_untracked();
        let message = settings.prompt.message();
        if message.trim().is_empty() {
            return Err("write a prompt first".into());
        }
        let reward = lab.reward_key(&bundle, &settings)?;
        let c = self.settings.get_untracked().c;
        let key = (
            bundle.origin.clone(),
            message.clone(),
            reward.clone(),
            settings.k,
            c,
        );
        let table = lab
            .reference(&bundle, kind, &message, &reward, settings.k)
            .await?;
        self.progress.set(Some((0, c)));
        let set = BaseSet::Candidates { c };
        let raw = lab
            .base_rewards(&bundle, kind, (&message, &reward), set, self.progress)
            .await;
        self.progress.set(None);
        let prompt = CandidatePrompt::new(raw?, (*table).clone()).map_err(|e| e.to_string())?;
        self.reset();
        self.candidates.set(Some((key, Arc::new(prompt))));
        self.state.set(RunState::Ready);
        Ok(())
    }

    /// Show a frame of training (the callers check first that the run was not stopped or reset).
    fn draw(&self, (paths, policies): TrainedFrame) {
        let [first, second] = policies;
        self.paths.set(paths);
        self.trained.set([Some(first), Some(second)]);
    }

    /// Train both sides, drawing every frame: in the sampling worker when it runs (training
    /// needs no backend: the worker trains whichever the lab samples on), else here between
    /// paints.
    async fn train(
        &self,
        lab: Lab,
        prompt: Arc<CandidatePrompt>,
        sides: [ExactSide; 2],
    ) -> Result<(), String> {
        let settings = self.settings.get_untracked();
        let betas = [sides[0].beta, sides[1].beta];
        self.stop.set_value(false);
        let bundle = lab.loaded();
        let engine = bundle
            .as_ref()
            .and_then(|bundle| lab.engine_for(BackendKind::Flex, bundle));
        if let (Some(engine), Some(bundle)) = (engine, bundle) {
            self.trained_in.set(Some("worker"));
            let panel = *self;
            let job = Job::Train {
                prompt: Box::new((*prompt).clone()),
                settings,
                betas,
            };
            // The worker trains the whole run in a few tens of milliseconds: keep its frames and
            // play them one an animation frame, so that the student sees the policies move.
            let frames: Rc<RefCell<VecDeque<TrainedFrame>>> = Rc::default();
            let received = frames.clone();
            let on_update = move |update| {
                // Stopped, or reset by a change of settings: stop the worker.
                if panel.stop.get_value() {
                    return false;
                }
                if let protocol::Update::Trained { paths, policies } = update {
                    received.borrow_mut().push_back((paths, policies));
                }
                true
            };
            let outcome = engine.run(&bundle.origin, job, on_update).await;
            loop {
                let frame = frames.borrow_mut().pop_front();
                let Some(frame) = frame else { break };
                if self.stop.get_value() {
                    break;
                }
                self.draw(frame);
                next_animation_frame().await;
            }
            match outcome {
                Err(_) if !engine.alive() => {}
                outcome => return outcome.map(drop),
            }
        }
        self.trained_in.set(Some("page"));
        let text = |error: infalign_core::Error| error.to_string();
        let mut pair = TrainPair::new(&prompt, &settings, betas).map_err(text)?;
        loop {
            let done = pair.frame().map_err(text)?;
            self.draw((pair.paths(), pair.policies()));
            if done {
                return Ok(());
            }
            yield_to_browser().await;
            // Stopped, or reset by a change of settings while the page was drawing.
            if self.stop.get_value() {
                return Ok(());
            }
        }
    }
}

/// The panel.
#[component]
pub(super) fn TrainPanel(lab: Lab) -> impl IntoView {
    let (initial, problems) = TrainSettings::from_query(&current_query());
    if !problems.is_empty() {
        let message = problems.join("; ");
        lab.banner.update(|banner| {
            *banner = Some(match banner.take() {
                Some(earlier) => format!("{earlier}; {message}"),
                None => message,
            })
        });
    }
    let panel = Panel {
        settings: RwSignal::new(initial),
        candidates: RwSignal::new(None),
        progress: RwSignal::new(None),
        paths: RwSignal::new([Vec::new(), Vec::new()]),
        trained: RwSignal::new([None, None]),
        state: RwSignal::new(RunState::Empty),
        stop: StoredValue::new(false),
        trained_in: RwSignal::new(None),
    };
    let settings = panel.settings;

    // The address follows the controls.
    Effect::new(move |_| {
        let query = settings.with(TrainSettings::to_query);
        let pairs: Vec<(&str, String)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(key, value)| {
                QUERY_KEYS
                    .iter()
                    .find(|k| **k == key)
                    .map(|k| (*k, value.to_string()))
            })
            .collect();
        write_query(&QUERY_KEYS, &pairs);
    });
    // New settings, new prompt or new candidates: the trained policies no longer apply.
    Effect::new(move |_| {
        settings.track();
        panel.candidates.track();
        lab.settings.track();
        panel.reset();
        panel.state.set(RunState::Ready);
    });

    let candidates = Memo::new(move |_| panel.current(lab));
    let sides = Memo::new(move |_| {
        let prompt = candidates.get()?;
        Some(
            settings
                .with(|s| exact_sides(&prompt, s))
                .map_err(|e| e.to_string()),
        )
    });
    let state = move || {
        if candidates.with(Option::is_none) {
            RunState::Empty
        } else {
            panel.state.get()
        }
    };
    let frontier_svg = Signal::derive(move || {
        let (Some(prompt), Some(Ok(sides))) = (candidates.get(), sides.get()) else {
            return String::new();
        };
        let paths = panel.paths.get();
        settings
            .with(|s| frontier_chart(&prompt, s, &sides, [&paths[0], &paths[1]]))
            .map(|chart| render_svg(&[chart]))
            .unwrap_or_default()
    });
    let probability_svg = Signal::derive(move || {
        let (Some(prompt), Some(Ok(sides))) = (candidates.get(), sides.get()) else {
            return String::new();
        };
        let trained = panel.trained.get();
        let chart = settings.with(|s| {
            probability_chart(
                &prompt,
                s,
                &sides,
                [trained[0].as_deref(), trained[1].as_deref()],
            )
        });
        render_svg(&[chart])
    });

    let on_sample = move |_| {
        lab.run(move |lab, kind| async move { panel.sample(lab, kind).await });
    };
    let on_train = move |_| {
        let (Some(prompt), Some(Ok(sides))) = (candidates.get_untracked(), sides.get_untracked())
        else {
            return;
        };
        panel.state.set(RunState::Training);
        spawn_local(async move {
            if let Err(reason) = panel.train(lab, prompt, sides).await {
                lab.error.set(Some(reason));
            }
            // A reset while training leaves nothing trained to show.
            let trained = panel.paths.with(|paths| !paths[0].is_empty());
            panel.state.set(if trained {
                RunState::Done
            } else {
                RunState::Ready
            });
        });
    };

    let side_row = move |index: usize| {
        let s = settings.get();
        let name = infalign_view::procedure_label(s.procedure, s.n);
        let side = sides
            .get()
            .and_then(Result::ok)
            .map(|sides| sides[index].clone());
        let end = panel.paths.with(|paths| paths[index].last().copied());
        let exact = side
            .as_ref()
            .map(|side| s.win_rate(&side.evaluation.win_rate));
        let theory = side
            .as_ref()
            .and_then(|side| side.theory.map(|t| s.win_rate(&t)));
        let trained = end.map(|p| s.win_rate(&p.win_rate));
        view! {
            <tr data-side=index data-score=s.sides[index].key()>
                <th scope="row">{s.sides[index].label(s.t)}</th>
                <td>{side.as_ref().map(|side| format!("{:.4}", side.beta)).unwrap_or_else(|| "–".into())}</td>
                <td class="exact" data-rate=exact.map(|r| format!("{r}")) data-kl=side.as_ref().map(|side| format!("{}", side.evaluation.kl))>
                    {exact.map(|r| format!("{r:.3}")).unwrap_or_else(|| "–".into())}
                </td>
                <td class="theory" data-rate=theory.map(|r| format!("{r}"))>
                    {theory.map(|r| format!("{r:.3}")).unwrap_or_else(|| "–".into())}
                </td>
                <td class="trained" data-rate=trained.map(|r| format!("{r}")) data-kl=end.map(|p| format!("{}", p.kl)) data-step=end.map(|p| p.step)>
                    {end.map(|p| format!("{:.3} at {:.2} nats (step {})", s.win_rate(&p.win_rate), p.kl, p.step)).unwrap_or_else(|| "–".into())}
                </td>
                <td class="muted">{name}</td>
            </tr>
        }
    };

    let score_select = move |index: usize, id: &'static str, label: &'static str| {
        view! {
            <label for=id>
                {label}
                <select
                    id=id
                    on:change=move |event| {
                        if let Some(score) = Score::from_key(&event_target_value(&event)) {
                            settings.update(|s| s.sides[index] = score);
                        }
                    }
                >
                    {Score::ALL.into_iter().map(|score| view! {
                        <option value=score.key() selected=move || settings.with(|s| s.sides[index] == score)>{score.key()}</option>
                    }).collect_view()}
                </select>
            </label>
        }
    };
    let slider = move |id: &'static str,
                       label: &'static str,
                       (lo, hi, step): (f64, f64, f64),
                       get: fn(&TrainSettings) -> f64,
                       set: fn(&mut TrainSettings, f64)| {
        view! {
            <label for=id>
                <span>{label} " " <output>{move || short(settings.with(get))}</output></span>
                <input
                    id=id
                    type="range"
                    min=lo.to_string()
                    max=hi.to_string()
                    step=step.to_string()
                    prop:value=move || settings.with(get).to_string()
                    aria-valuetext=move || format!("{label} {}", short(settings.with(get)))
                    on:input=move |event| {
                        if let Ok(value) = event_target_value(&event).parse::<f64>() {
                            settings.update(|s| set(s, value.clamp(lo, hi)));
                        }
                    }
                />
            </label>
        }
    };

    view! {
        <div id="train" class="train-panel" data-state=move || state().key() data-trained-in=move || panel.trained_in.get()>
            <h3>"Train it yourself"</h3>
            <p class="muted">
                "The base policy answers the lab's prompt C times: these answers are the "
                "candidates, and a policy here is a probability over them (the base policy: "
                "1/C each). Over a fixed set of answers the best policy for a training score "
                "at a KL budget is exact, and so are its win rates. Pick two scores, sample the "
                "candidates, and train both: the dots are the trained policies, the lines the "
                "exact optimum they should land on."
            </p>
            <div class="controls train-controls">
                <label for="train-procedure">
                    "Served with"
                    <select
                        id="train-procedure"
                        on:change=move |event| {
                            let procedure = if event_target_value(&event) == "won" { Procedure::WorstOfN } else { Procedure::BestOfN };
                            settings.update(|s| s.procedure = procedure);
                        }
                    >
                        <option value="bon" selected=move || settings.with(|s| s.procedure == Procedure::BestOfN)>"Best-of-N"</option>
                        <option value="won" selected=move || settings.with(|s| s.procedure == Procedure::WorstOfN)>"Worst-of-N (an attacker's pick)"</option>
                    </select>
                </label>
                {slider("train-n", "N (served)", (1.0, f64::from(N_MAX), 1.0), |s| f64::from(s.n), |s, v| s.n = v as u32)}
                {score_select(0, "train-a", "First score")}
                {score_select(1, "train-b", "Second score")}
                {slider("train-t", "t of exp / negexp", (T_RANGE.0, T_RANGE.1, 0.5), |s| s.t, |s, v| s.t = v)}
                {slider("train-kl", "KL budget (nats)", (KL_RANGE.0, KL_RANGE.1, 0.02), |s| s.kl, |s, v| s.kl = v)}
                {slider("train-c", "C candidates", (C_RANGE.0 as f64, C_RANGE.1 as f64, 16.0), |s| s.c as f64, |s, v| s.c = v as usize)}
                {slider("train-m", "m answers per step (RLOO group)", (M_RANGE.0 as f64, M_RANGE.1 as f64, 1.0), |s| s.m as f64, |s, v| s.m = v as usize)}
                {slider("train-lr", "learning rate", (LR_RANGE.0, LR_RANGE.1, 0.001), |s| s.learning_rate, |s, v| s.learning_rate = v)}
                {slider("train-steps", "steps", (STEPS_RANGE.0 as f64, STEPS_RANGE.1 as f64, 10.0), |s| s.steps as f64, |s, v| s.steps = v as u64)}
                <div class="buttons">
                    <button id="train-sample" prop:disabled=move || lab.busy.get() || state() == RunState::Training on:click=on_sample>
                        {move || format!("Sample {} candidates", settings.with(|s| s.c))}
                    </button>
                    <button id="train-run" prop:disabled=move || state() == RunState::Empty || state() == RunState::Training on:click=on_train>
                        "Train both"
                    </button>
                    <button id="train-stop" prop:disabled=move || state() != RunState::Training on:click=move |_| panel.stop.set_value(true)>
                        "Stop"
                    </button>
                    <button
                        id="train-save"
                        prop:disabled=move || !matches!(sides.get(), Some(Ok(_)))
                        on:click=move |_| {
                            if let Some(Ok(found)) = sides.get_untracked() {
                                let paths = panel.paths.get_untracked();
                                let csv = settings.with_untracked(|s| runs_csv(s, &found, [&paths[0], &paths[1]]));
                                crate::export::save_csv("train-it-yourself.csv", &csv);
                            }
                        }
                    >
                        "Save the run (CSV)"
                    </button>
                    <button id="train-reset" prop:disabled=move || state() == RunState::Training on:click=move |_| { panel.reset(); panel.state.set(RunState::Ready); }>
                        "Reset"
                    </button>
                </div>
            </div>
            {move || panel.progress.get().map(|(done, total)| view! {
                <p class="progress-line" id="train-progress">
                    "Sampling the candidates: " {done} " of " {total} " "
                    <progress max=total value=done></progress>
                </p>
            })}
            {move || match sides.get() {
                None => view! {
                    <p class="muted" id="train-empty">"No candidates for this prompt, reward, K and C yet: sample them."</p>
                }.into_any(),
                Some(Err(reason)) => view! {
                    <p class="error" id="train-error" role="alert">{format!("No exact optimum at these settings: {reason}")}</p>
                }.into_any(),
                Some(Ok(found)) => view! {
                    <p id="train-verdict">{settings.with(|s| verdict(s, &found))}</p>
                    <table class="numbers" id="train-table">

                        <thead><tr><th>"score"</th><th>"beta"</th><th>"exact"</th><th>"theory"</th><th>"trained"</th><th>"win rate"</th></tr></thead>
                        <tbody>
                            {move || side_row(0)}
                            {move || side_row(1)}
                        </tbody>
                    </table>
                    <p class="caption muted">"Exact: the best policy over these candidates for the score at the budget. Theory: the same transform with infinitely many answers and no ties, at the optimum's calibrated KL. Trained: where the training run is."</p>
                }.into_any(),
            }}
            <div class="charts">
                <SvgFigure class="chart" id="train-frontier" name="the training frontier chart" svg=frontier_svg
                    caption="Each line: the best policy for that score at every KL, exact. Each dot: the trained policy after some steps, starting from the base policy at (0, 0.5); it should end on its line at the budget." />
                <SvgFigure class="chart" id="train-probability" name="the candidate probability chart" svg=probability_svg
                    caption="How much more (above 1) or less (below 1) often the policy picks each candidate than the base policy does, candidates ordered by calibrated reward. Lines: the exact optimum; dots: the trained policy." />
            </div>
        </div>
    }
}
