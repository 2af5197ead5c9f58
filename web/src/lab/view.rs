//! The lab's parts on the page: the bundle's status, the controls, the answers and the tally.

use crate::bundle::LoadedBundle;
use crate::timing::now;
use infalign_core::Procedure;
use infalign_model::bundle::BASE_POLICY;
use infalign_view::explorer::short;
use infalign_view::lab::{histogram_svg, Picks, Tally, BUILT_IN_PROMPTS};
use leptos::prelude::*;
use std::sync::Arc;

use super::sampling::prediction;
use super::*;

/// The bundle line: origin and size, the load progress, and the file picker.
#[component]
pub(super) fn BundleStatus(
    lab: Lab,
    on_files: impl Fn(leptos::ev::Event) + 'static,
) -> impl IntoView {
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
                    let bytes = loaded.recorded_bytes();
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
pub(super) fn LabControls(lab: Lab, loaded: Arc<LoadedBundle>) -> impl IntoView {
    let settings = lab.settings;
    let names = loaded.policy_names();
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
                <small class="muted" id="policy-gloss">
                    {let loaded = loaded.clone(); move || settings.with(|s| loaded.describe(&s.policy))}
                </small>
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
            <label for="lab-n">
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
            <label for="lab-k">
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
pub(super) fn Answers(lab: Lab) -> impl IntoView {
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
            tabindex="-1"
            aria-label="The answers"
            aria-live="polite"
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
pub(super) fn Tallies(lab: Lab) -> impl IntoView {
    let row = move |procedure: Procedure| {
        let n = lab.settings.with(|s| s.n);
        let name = infalign_view::procedure_label(procedure, n as u32);
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
                            "{rounds} rounds of {policy} against base, N = {n} per side: the win rate of the answer each procedure serves (ties count half), with a 95% bootstrap interval over the rounds (the K reference answers stay fixed, so the interval leaves out how another reference table would move the calibrated rewards); the theory column is the exactly tilted policy at the KL the policy's calibrated rewards moved (measured at evaluation)."
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
            <div class="buttons">
                <button
                    id="stop-rounds"
                    prop:disabled=move || lab.rounds_progress.with(Option::is_none)
                    on:click=move |_| lab.stop_rounds.set_value(true)
                >"Stop after this round"</button>
                <button
                    id="save-rounds"
                    prop:disabled=move || lab.round_log.with(Vec::is_empty)
                    on:click=move |_| {
                        let n = lab.settings.with_untracked(|s| s.n);
                        let rows: Vec<_> = lab.round_log.with_untracked(|log| {
                            log.iter()
                                .map(|r| (r.calibrated.0.clone(), r.calibrated.1.clone(), r.round))
                                .collect()
                        });
                        crate::export::save_csv("rounds.csv", &infalign_view::lab::rounds_csv(n, &rows));
                    }
                >"Save the rounds (CSV)"</button>
                <button
                    id="reset-tally"
                    prop:disabled=move || lab.busy.get() || lab.tally.with(|t| t.rounds() == 0)
                    on:click=move |_| lab.reset_tally()
                >"Reset the tally"</button>
            </div>
            <RoundLog lab=lab />
        </div>
    }
}

/// Every round of the tally: what each procedure served on each side, and who won.
#[component]
fn RoundLog(lab: Lab) -> impl IntoView {
    let outcome = |value: f64| match value {
        1.0 => "aligned wins",
        0.0 => "base wins",
        _ => "a tie",
    };
    view! {
        <details id="round-log" data-rounds=move || lab.round_log.with(Vec::len)>
            <summary>{move || format!("Round by round ({} played)", lab.round_log.with(Vec::len))}</summary>
            <ol class="round-log">
                {move || {
                    let n = lab.settings.with(|s| s.n) as u32;
                    lab.round_log.get().into_iter().map(|round| {
                        let [bon, won] = round.served;
                        let line = move |procedure: Procedure, pair: ServedPair| view! {
                            <p data-procedure=procedure.as_str() data-outcome=format!("{}", pair.outcome)>
                                <strong>{infalign_view::procedure_label(procedure, n)}</strong>
                                {format!(
                                    ": aligned served \u{201c}{}\u{201d} (u {:.2}), base \u{201c}{}\u{201d} (u {:.2}): {}.",
                                    pair.aligned.0, pair.aligned.1, pair.base.0, pair.base.1, outcome(pair.outcome)
                                )}
                            </p>
                        };
                        view! {
                            <li>
                                {line(Procedure::BestOfN, bon)}
                                {line(Procedure::WorstOfN, won)}
                            </li>
                        }
                    }).collect_view()
                }}
            </ol>
        </details>
    }
}
