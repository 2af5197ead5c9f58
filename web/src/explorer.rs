//! The theory explorer: the transforms, the tilted densities and what Best-of-N and Worst-of-N
//! serve from them, and the exact win-rate-versus-KL curves, redrawn live as t, the KL budget (or
//! beta) and N move. The model (settings, charts) is `infalign_view::explorer`; this module wires
//! it to controls and to the URL.
//!
//! The closed-form policies are recomputed on every change, each memo only when its own inputs
//! change (moving the KL budget recomputes no curve, moving exp's t no other policy's row), and
//! their curves are cached per N and t. The solved optimal transforms take longer (up to a second
//! a solve at large N), so they run in a Web Worker (`solves`, `infalign_view::solves`): the page
//! sends each new setting and draws the optima and N's envelopes as they come, the latest setting
//! only; the worker keeps every envelope it solved, and warm-starts the optima from them.

use std::collections::HashMap;
use std::time::Duration;

use infalign_core::theory::{self, BestT};
use infalign_core::{ExpFamily, Procedure};
use infalign_view::chart::{render_svg, WinRateCurves};
use infalign_view::explorer::{
    density_chart, plain_error, policy_curves, row, shapes_chart, short, tilted, win_rate_chart,
    Optima, Policy, Regularisation, Row, Settings, BETA_RANGE, KL_RANGE, N_MAX, T_RANGE,
};
use leptos::prelude::*;

use crate::math;
use crate::svg::SvgFigure;
use infalign_view::solves::{Reply, Request};

use crate::solves::Solver;
use crate::timing::timed;
use crate::url::{self, current_query};

/// The settings keys this view owns in the URL query.
const QUERY_KEYS: [&str; 6] = ["n", "t_exp", "t_negexp", "kl", "beta", "inspect"];

/// Replace this view's keys in the URL (keeping any others).
fn write_query(settings: &Settings) {
    let query = settings.to_query();
    let pairs: Vec<(&str, String)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key, value.to_string()))
        .collect();
    url::write_query(&QUERY_KEYS, &pairs);
}

/// Rounds to three significant digits (slider positions map to tidy values).
fn round3(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(2 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

/// A log-scaled slider position (0..=1000) and back.
fn to_slider(value: f64, (lo, hi): (f64, f64)) -> f64 {
    ((value.ln() - lo.ln()) / (hi.ln() - lo.ln()) * 1000.0).round()
}

fn from_slider(position: f64, (lo, hi): (f64, f64)) -> f64 {
    round3((lo.ln() + position / 1000.0 * (hi.ln() - lo.ln())).exp()).clamp(lo, hi)
}

/// Runs `work` once the current frame has been painted.
pub(crate) fn after_paint(work: impl FnOnce() + 'static) {
    request_animation_frame(move || set_timeout(work, Duration::ZERO));
}

/// The optima at one (N, regularisation) with their table rows, or why they could not be solved.
struct Solved {
    key: (u32, Regularisation),
    result: Result<(Optima, Vec<Row>), String>,
}

/// N's optimal envelopes as the solver sent them: `(KL, win rate)` points (empty where none
/// could be solved) and what to say about them.
#[derive(Debug, Clone, Default)]
struct Envelopes {
    bon: Vec<(f64, f64)>,
    won: Vec<(f64, f64)>,
    notes: Vec<String>,
}

impl Envelopes {
    fn of(&self, procedure: Procedure) -> &[(f64, f64)] {
        match procedure {
            Procedure::BestOfN => &self.bon,
            Procedure::WorstOfN => &self.won,
        }
    }
}

/// Curves kept per (policy, N, t) before the cache starts over.
const CURVE_CACHE: usize = 512;

#[component]
pub fn Explorer() -> impl IntoView {
    let (initial, problems) = Settings::from_query(&current_query());
    let settings = RwSignal::new(initial);
    // Writing the address bar costs a browser round trip (~10 ms): after the paint, latest only.
    Effect::new(move |_| {
        let wanted = settings.get();
        after_paint(move || {
            if settings.get_untracked() == wanted {
                timed("url", || write_query(&wanted));
            }
        });
    });

    // Inputs of the curve memos, each changing only when its own field does.
    let n = Memo::new(move |_| settings.with(|s| s.n));
    let t_exp = Memo::new(move |_| settings.with(|s| s.t_exp));
    let t_negexp = Memo::new(move |_| settings.with(|s| s.t_negexp));
    let regularisation = Memo::new(move |_| settings.with(|s| s.regularisation));
    // The settings a closed-form policy's curve and row depend on, tracking only those: moving
    // exp's t touches exp's, not the other three.
    let own_settings = move |policy: Policy| {
        let mut at = Settings {
            n: n.get(),
            ..Settings::default()
        };
        match policy {
            Policy::Exp => at.t_exp = t_exp.get(),
            Policy::NegExp => at.t_negexp = t_negexp.get(),
            _ => {}
        }
        at
    };
    type CurveKey = (Policy, u32, u64);
    let curve_cache: StoredValue<HashMap<CurveKey, WinRateCurves>> =
        StoredValue::new(HashMap::new());
    let curve = move |policy: Policy| {
        Memo::new(move |_| {
            let at = own_settings(policy);
            let t = match policy {
                Policy::Exp => at.t_exp,
                Policy::NegExp => at.t_negexp,
                _ => 0.0,
            };
            let key = (policy, at.n, t.to_bits());
            if let Some(cached) = curve_cache.with_value(|c| c.get(&key).cloned()) {
                return Ok(cached);
            }
            let computed =
                timed("curve", || policy_curves(&at, policy)).map_err(|e| e.to_string())?;
            curve_cache.update_value(|c| {
                if c.len() >= CURVE_CACHE {
                    c.clear();
                }
                c.insert(key, computed.clone());
            });
            Ok(computed)
        })
    };
    let curves: Vec<(Policy, Memo<Result<WinRateCurves, String>>)> =
        [Policy::Identity, Policy::Log, Policy::Exp, Policy::NegExp]
            .into_iter()
            .map(|policy| (policy, curve(policy)))
            .collect();

    // The solved optima, one step behind the controls: until the optimum for a new setting is in,
    // the last one stays on screen (its rows marked stale) rather than blinking out. They and
    // N's envelopes are solved off the page's thread (`solves`), for the latest setting only.
    let solved: RwSignal<Option<Solved>> = RwSignal::new(None);
    let envelopes: RwSignal<HashMap<u32, Envelopes>> = RwSignal::new(HashMap::new());
    let solving_here: RwSignal<Option<String>> = RwSignal::new(None);
    let solver = Solver::start(
        move |reply| match reply {
            Reply::Optima {
                n,
                regularisation,
                result,
            } => solved.set(Some(Solved {
                key: (n, regularisation),
                result: result.map(|solved| *solved),
            })),
            Reply::Envelopes { n, bon, won, notes } => envelopes.update(|e| {
                e.insert(n, Envelopes { bon, won, notes });
            }),
            // Handled by the solver itself (it re-sends the latest request).
            Reply::Ready => {}
            Reply::Unreadable(error) => {
                web_sys::console::error_1(&format!("theory worker: {error}").into())
            }
        },
        move |reason| solving_here.set(Some(reason)),
    );
    Effect::new(move |_| {
        solver.send(Request::Show {
            n: n.get(),
            regularisation: regularisation.get(),
        });
    });
    let shown_optima = Memo::new(move |_| {
        solved.with(|o| match o {
            Some(Solved {
                result: Ok((optima, _)),
                ..
            }) => Some(optima.clone()),
            _ => None,
        })
    });
    let optima_error = Memo::new(move |_| {
        solved.with(|o| match o {
            Some(Solved {
                result: Err(error), ..
            }) => Some(error.clone()),
            _ => None,
        })
    });

    // The closed-form rows, each recomputed only when its own inputs change.
    let closed_rows: Vec<Memo<Option<Row>>> =
        [Policy::Identity, Policy::Log, Policy::Exp, Policy::NegExp]
            .into_iter()
            .map(|policy| {
                Memo::new(move |_| {
                    let at = Settings {
                        regularisation: regularisation.get(),
                        ..own_settings(policy)
                    };
                    timed("rows", || row(&at, policy, None))
                })
            })
            .collect();
    let table = Memo::new(move |_| {
        let at = settings.get();
        let mut table: Vec<(Row, bool)> = closed_rows
            .iter()
            .filter_map(|memo| memo.get())
            .map(|row| (row, false))
            .collect();
        solved.with(|o| {
            if let Some(Solved {
                key,
                result: Ok((_, optimal)),
            }) = o
            {
                let stale = *key != (at.n, at.regularisation);
                table.extend(optimal.iter().map(|row| (row.clone(), stale)));
            }
        });
        table
    });
    let table_rows = Memo::new(move |_| {
        table.with(|t| t.iter().map(|(row, _)| row.clone()).collect::<Vec<_>>())
    });

    let win_rate_svg = move |procedure: Procedure| {
        let curves = curves.clone();
        Memo::new(move |_| {
            let at = settings.get();
            let owned: Vec<(Policy, WinRateCurves)> = curves
                .iter()
                .filter_map(|(policy, memo)| memo.get().ok().map(|c| (*policy, c)))
                .collect();
            let borrowed: Vec<(Policy, &WinRateCurves)> =
                owned.iter().map(|(p, c)| (*p, c)).collect();
            let envelope = envelopes.with(|e| {
                e.get(&at.n)
                    .map(|envelope| envelope.of(procedure).to_vec())
                    .filter(|points| !points.is_empty())
            });
            table_rows.with(|rows| {
                timed("winrate-chart", || {
                    render_svg(&[win_rate_chart(
                        &at,
                        procedure,
                        &borrowed,
                        envelope.as_deref(),
                        rows,
                    )])
                })
            })
        })
    };
    let bon_svg = win_rate_svg(Procedure::BestOfN);
    let won_svg = win_rate_svg(Procedure::WorstOfN);
    let envelope_pending = move || envelopes.with(|e| !e.contains_key(&n.get()));
    let envelope_notes = move || {
        envelopes.with(|e| {
            e.get(&n.get())
                .map(|envelope| envelope.notes.clone())
                .unwrap_or_default()
        })
    };

    let shapes_svg = Memo::new(move |_| {
        shown_optima.with(|optima| {
            // The closed forms do not depend on N; the optima are labelled with their own N
            // (until the optimum for a new N is in, the last one stays).
            let at = Settings {
                n: optima.as_ref().map_or(Settings::default().n, |o| o.bon.n),
                t_exp: t_exp.get(),
                t_negexp: t_negexp.get(),
                ..Settings::default()
            };
            timed("shapes-chart", || {
                render_svg(&[shapes_chart(&at, optima.as_ref())])
            })
        })
    });
    let density_svg = Memo::new(move |_| {
        let at = settings.get();
        shown_optima.with(|optima| {
            timed("density-chart", || {
                match tilted(&at, at.inspect, optima.as_ref()) {
                    Ok(Some(policy)) => Ok(Some(render_svg(&[density_chart(
                        &at,
                        &at.label(at.inspect),
                        &policy,
                    )]))),
                    Ok(None) => Ok(None),
                    Err(error) => Err(plain_error(&error)),
                }
            })
        })
    });

    // "Best t for this KL".
    let best_t_state: RwSignal<Option<Result<String, String>>> = RwSignal::new(None);
    // The answer is for one N and KL budget: another N, budget or a beta makes it stale.
    Effect::new(move |previous: Option<(u32, Regularisation)>| {
        let now = (n.get(), regularisation.get());
        if previous.is_some_and(|previous| previous != now) {
            best_t_state.set(None);
        }
        now
    });
    let searching = RwSignal::new(false);
    let find_best_t = move |_| {
        searching.set(true);
        best_t_state.set(None);
        // After the paint, so that "Searching…" shows while the search runs.
        after_paint(move || {
            let at = settings.get_untracked();
            let result = best_t_for(&at, &table_rows.get_untracked());
            searching.set(false);
            match result {
                Ok((bon, won, kl)) => {
                    let clamp = |t: f64| round3(t).clamp(T_RANGE.0, T_RANGE.1);
                    settings.update(|s| {
                        s.t_exp = clamp(bon.t);
                        s.t_negexp = clamp(won.t);
                    });
                    best_t_state.set(Some(Ok(format!(
                            "At {} nats: exp t = {} gives BoN_{n} {:.4}; negexp t = {} gives WoN_{n} {:.4}.",
                            short(kl),
                            short(bon.t),
                            bon.win_rate,
                            short(won.t),
                            won.win_rate,
                            n = at.n,
                        ))));
                }
                Err(error) => best_t_state.set(Some(Err(error))),
            }
        });
    };

    view! {
        <section class="card" id="explorer">
            <h2>"Theory explorer"</h2>
            <p class="muted">
                "Exact results in calibrated space: a reward's quantile u among the base policy's \
                 samples is uniform under the base policy, so every aligned policy is a density on \
                 [0, 1]. Move the controls; the link in the address bar reproduces this view."
            </p>
            {(!problems.is_empty()).then(|| view! {
                <div class="notice" id="explorer-link-notice" role="status">
                    "Some settings in the link were not used: " {problems.join("; ")}
                </div>
            })}
            <Controls settings=settings find_best_t=find_best_t searching=searching />
            {move || best_t_state.get().map(|state| match state {
                Ok(text) => view! { <p id="best-t-result" class="result">{text}</p> }.into_any(),
                Err(text) => view! { <p id="best-t-result" class="error">{text}</p> }.into_any(),
            })}
            <div class="charts">
                <SvgFigure class="chart" id="chart-winrate-bon" name="the Best-of-N win-rate chart" svg=bon_svg
                    caption="How often the policy's Best-of-N answer beats the base policy's, against how far the policy moved (KL). Higher at the same KL is better; dots mark the table's rows." />
                <SvgFigure class="chart" id="chart-winrate-won" name="the Worst-of-N win-rate chart" svg=won_svg
                    caption="The same for Worst-of-N, an attacker picking the worst of N answers: a policy that lifts its worst answers wins here." />
            </div>
            {move || envelope_pending().then(|| view! {
                <p class="muted" id="envelope-pending">"Solving the optimal envelope for this N…"</p>
            })}
            {move || solving_here.get().map(|reason| view! {
                <p class="notice" id="solving-here" role="status">
                    "The optimal solves run on the page itself ("{reason}"), so the page may pause at large N."
                </p>
            })}
            {move || {
                let notes = envelope_notes();
                (!notes.is_empty()).then(|| view! {
                    <p class="notice" id="envelope-note" role="status">{notes.join(" ")}</p>
                })
            }}
            <RowsTable settings=settings table=table optima_error=optima_error />
            <SvgFigure class="chart wide" id="chart-shapes" name="the transforms chart" svg=shapes_svg
                caption="The transforms Φ: what each one pays for a calibrated reward u (the answer's rank among the base policy's answers), rescaled to [0, 1]. Steep near 1 rewards only the best answers (for Best-of-N); steep near 0 punishes the worst (for Worst-of-N)." />
            // One figure kept across redraws (updated in place); empty while there is nothing to show.
            <SvgFigure
                class="chart wide"
                id="chart-densities" name="the densities chart"
                svg=Signal::derive(move || density_svg.with(|d| match d {
                    Ok(Some(svg)) => svg.clone(),
                    _ => String::new(),
                }))
                caption="Where the chosen policy puts its answers: its density over the calibrated reward u (the base policy's is flat at 1), and the densities of the answer Best-of-N and Worst-of-N serve from it and from the base policy."
            />
            {move || density_svg.with(|density| match density {
                Ok(Some(_)) => ().into_any(),
                Ok(None) => view! {
                    <p class="muted" id="chart-densities-pending">"Solving the optimal transform…"</p>
                }.into_any(),
                Err(error) => view! {
                    <p class="error" id="chart-densities-error">{error.clone()}</p>
                }.into_any(),
            })}
            <details class="math">
                <summary>"The formulas"</summary>
                <div inner_html=math::FORMULAS></div>
            </details>
        </section>
    }
}

/// The best t of exp for BoN_N and of negexp for WoN_N at the current KL (the budget, or in beta
/// mode the KL that exp / negexp spend now).
fn best_t_for(at: &Settings, rows: &[Row]) -> Result<(BestT, BestT, f64), String> {
    let kl_of = |policy: Policy| {
        rows.iter()
            .find(|r| r.policy == policy)
            .and_then(|r| r.evaluation.as_ref().ok())
            .map(|e| e.kl)
            .ok_or_else(|| format!("{} has no KL at this setting", at.label(policy)))
    };
    let kl_for = |policy: Policy| match at.regularisation {
        Regularisation::KlBudget(kl) => Ok(kl),
        Regularisation::Beta(_) => kl_of(policy),
    };
    let kl = kl_for(Policy::Exp)?;
    let bon =
        theory::best_t(ExpFamily::Exp, Procedure::BestOfN, at.n, kl).map_err(|e| e.to_string())?;
    let won = theory::best_t(
        ExpFamily::NegExp,
        Procedure::WorstOfN,
        at.n,
        kl_for(Policy::NegExp)?,
    )
    .map_err(|e| e.to_string())?;
    Ok((bon, won, kl))
}

#[component]
fn Controls(
    settings: RwSignal<Settings>,
    find_best_t: impl Fn(leptos::ev::MouseEvent) + 'static,
    searching: RwSignal<bool>,
) -> impl IntoView {
    let number = |ev: &leptos::ev::Event| event_target_value(ev).parse::<f64>().ok();
    // A memo, so that the block below re-renders (replacing the slider) only when the mode flips,
    // not on every move of the slider being dragged.
    let is_kl = Memo::new(move |_| {
        matches!(
            settings.with(|s| s.regularisation),
            Regularisation::KlBudget(_)
        )
    });
    let kl = move || match settings.with(|s| s.regularisation) {
        Regularisation::KlBudget(kl) => kl,
        Regularisation::Beta(_) => 1.0,
    };
    let beta = move || match settings.with(|s| s.regularisation) {
        Regularisation::Beta(beta) => beta,
        Regularisation::KlBudget(_) => 0.1,
    };
    view! {
        <div class="controls">
            <label for="n">
                <span>"N " <output id="n-value">{move || settings.with(|s| s.n)}</output></span>
                <input id="n" type="range" min="1" max=N_MAX step="1"
                    prop:value=move || settings.with(|s| s.n.to_string())
                    on:input=move |ev| if let Some(v) = number(&ev) {
                        settings.update(|s| s.n = (v as u32).clamp(1, N_MAX));
                    } />
            </label>
            <label for="t-exp">
                <span>"exp t " <output id="t-exp-value">{move || short(settings.with(|s| s.t_exp))}</output></span>
                <input id="t-exp" type="range" min="0" max="1000" step="1"
                    aria-valuetext=move || format!("t = {}", short(settings.with(|s| s.t_exp)))
                    prop:value=move || to_slider(settings.with(|s| s.t_exp), T_RANGE).to_string()
                    on:input=move |ev| if let Some(v) = number(&ev) {
                        settings.update(|s| s.t_exp = from_slider(v, T_RANGE));
                    } />
            </label>
            <label for="t-negexp">
                <span>"negexp t " <output id="t-negexp-value">{move || short(settings.with(|s| s.t_negexp))}</output></span>
                <input id="t-negexp" type="range" min="0" max="1000" step="1"
                    aria-valuetext=move || format!("t = {}", short(settings.with(|s| s.t_negexp)))
                    prop:value=move || to_slider(settings.with(|s| s.t_negexp), T_RANGE).to_string()
                    on:input=move |ev| if let Some(v) = number(&ev) {
                        settings.update(|s| s.t_negexp = from_slider(v, T_RANGE));
                    } />
            </label>
            <fieldset class="regularisation">
                <legend>"Hold the policy to the reference by"</legend>
                <label class="inline">
                    <input type="radio" name="regularisation" id="mode-kl"
                        prop:checked=move || is_kl.get()
                        on:change=move |_| {
                            // Read before writing: a read inside `update` would re-enter the signal.
                            let kl = kl();
                            settings.update(|s| s.regularisation = Regularisation::KlBudget(kl));
                        } />
                    "a KL budget (each transform spends it)"
                </label>
                <label class="inline">
                    <input type="radio" name="regularisation" id="mode-beta"
                        prop:checked=move || !is_kl.get()
                        on:change=move |_| {
                            let beta = beta();
                            settings.update(|s| s.regularisation = Regularisation::Beta(beta));
                        } />
                    "one β for all (λ = 1/β)"
                </label>
                {move || if is_kl.get() {
                    view! {
                        <label for="kl">
                            <span>"KL budget " <output id="kl-value">{move || short(kl())}</output> " nats"</span>
                            <input id="kl" type="range" min=KL_RANGE.0 max=KL_RANGE.1 step="0.01"
                                aria-valuetext=move || format!("{} nats", short(kl()))
                                prop:value=move || kl().to_string()
                                on:input=move |ev| if let Some(v) = number(&ev) {
                                    settings.update(|s| s.regularisation =
                                        Regularisation::KlBudget(round3(v).clamp(KL_RANGE.0, KL_RANGE.1)));
                                } />
                        </label>
                    }.into_any()
                } else {
                    view! {
                        <label for="beta">
                            <span>"β " <output id="beta-value">{move || short(beta())}</output></span>
                            <input id="beta" type="range" min="0" max="1000" step="1"
                                aria-valuetext=move || format!("β = {}", short(beta()))
                                prop:value=move || to_slider(beta(), BETA_RANGE).to_string()
                                on:input=move |ev| if let Some(v) = number(&ev) {
                                    settings.update(|s| s.regularisation =
                                        Regularisation::Beta(from_slider(v, BETA_RANGE)));
                                } />
                        </label>
                    }.into_any()
                }}
            </fieldset>
            <label>
                <span>"Densities of"</span>
                <select id="inspect"
                    prop:value=move || settings.with(|s| s.inspect.key())
                    on:change=move |ev| if let Some(policy) = Policy::from_key(&event_target_value(&ev)) {
                        settings.update(|s| s.inspect = policy);
                    }>
                    {Policy::ALL.into_iter().map(|policy| view! {
                        <option value=policy.key()>{move || settings.with(|s| s.label(policy))}</option>
                    }).collect_view()}
                </select>
            </label>
            <button id="best-t" on:click=find_best_t disabled=move || searching.get()>
                {move || if searching.get() { "Searching…" } else { "Best t for this KL" }}
            </button>
        </div>
    }
}

/// The policies at the current setting: lambda, KL and the three win rates.
#[component]
fn RowsTable(
    settings: RwSignal<Settings>,
    table: Memo<Vec<(Row, bool)>>,
    optima_error: Memo<Option<String>>,
) -> impl IntoView {
    view! {
        <table class="numbers" id="explorer-table">
            <thead>
                <tr>
                    <th>"policy"</th>
                    <th title="λ = 1/β: how hard the policy leans towards what the transform pays for">"λ"</th>
                    <th title="KL(π ‖ π_ref): how far the policy moved from the base policy">"KL (nats)"</th>
                    <th title="Standard win rate: one answer from each policy, no selection">"standard"</th>
                    <th>{move || format!("BoN_{}", settings.with(|s| s.n))}</th>
                    <th>{move || format!("WoN_{}", settings.with(|s| s.n))}</th>
                </tr>
            </thead>
            <tbody>
                {move || {
                    let at = settings.get();
                    table.get().into_iter().map(|(row, stale)| {
                        let label = at.label(row.policy);
                        let class = if stale { "stale" } else { "" };
                        match row.evaluation {
                            Ok(e) => view! {
                                <tr id=format!("row-{}", row.policy.key()) class=class
                                    data-lambda=e.lambda.to_string()
                                    data-kl=e.kl.to_string()
                                    data-bon=e.win_rate.bon.to_string()
                                    data-won=e.win_rate.won.to_string()>
                                    <td>
                                        {label}
                                        {row.note.clone().map(|note| view! { <small class="row-note">{note}</small> })}
                                    </td>
                                    <td>{short(e.lambda)}</td>
                                    <td>{format!("{:.3}", e.kl)}</td>
                                    <td>{format!("{:.4}", e.win_rate.standard)}</td>
                                    <td>{format!("{:.4}", e.win_rate.bon)}</td>
                                    <td>{format!("{:.4}", e.win_rate.won)}</td>
                                </tr>
                            }.into_any(),
                            Err(error) => view! {
                                <tr id=format!("row-{}", row.policy.key()) class=format!("unavailable {class}")>
                                    <td>{label}</td>
                                    <td colspan="5" class="muted">{error}</td>
                                </tr>
                            }.into_any(),
                        }
                    }).collect_view()
                }}
                {move || optima_error.get().map(|error| view! {
                    <tr class="unavailable" id="row-optimal"><td>"optimal"</td><td colspan="5" class="muted">{error}</td></tr>
                })}
            </tbody>
        </table>
    }
}
