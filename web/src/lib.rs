//! The InfAlign browser lab (Leptos, client-side rendered).
//!
//! - The theory explorer ([`explorer`]): transforms, tilted densities and the exact
//!   win-rate-versus-KL curves, live, with the settings in the URL.
//! - The compute backend: burn on WebGPU when the browser offers an adapter and on the CPU
//!   (flex) otherwise, shown as a badge (with a visible notice when it had to fall back), checked
//!   by a small tensor computation; and the default model's tokenizer.

use infalign_model::backend::{resolve_backend, BackendKind, BackendPreference};
use infalign_model::smoke::{run_smoke, SmokeResult, COLS};
use leptos::prelude::*;
use leptos::task::spawn_local;

mod explorer;
mod math;
mod timing;
mod tokens;

/// Where the page stands with its compute backend.
#[derive(Debug, Clone, PartialEq)]
enum BackendState {
    /// Still initialising.
    Starting,
    /// A backend is up and the smoke computation ran on it.
    Ready {
        kind: BackendKind,
        /// Why WebGPU was not used, when the page fell back to the CPU.
        fallback_reason: Option<String>,
        result: SmokeResult,
    },
    /// Neither backend could run the computation (shown, never a panic).
    Failed(String),
}

impl BackendState {
    /// The value of the badge's `data-backend` attribute, which the browser tests read.
    fn badge_key(&self) -> &'static str {
        match self {
            BackendState::Starting => "pending",
            BackendState::Ready {
                kind: BackendKind::Wgpu,
                ..
            } => "webgpu",
            BackendState::Ready {
                kind: BackendKind::Flex,
                ..
            } => "cpu",
            BackendState::Failed(_) => "error",
        }
    }

    fn badge_text(&self) -> String {
        match self {
            BackendState::Starting => "starting…".to_string(),
            BackendState::Ready { kind, .. } => kind.name().to_string(),
            BackendState::Failed(_) => "no backend".to_string(),
        }
    }
}

/// Try WebGPU, fall back to the CPU, and run the smoke computation on whichever came up.
async fn start_backend() -> BackendState {
    let resolved = match resolve_backend(BackendPreference::Auto).await {
        Ok(resolved) => resolved,
        Err(error) => return BackendState::Failed(error.to_string()),
    };
    match run_smoke(&resolved.device, resolved.kind.name()).await {
        Ok(result) => BackendState::Ready {
            kind: resolved.kind,
            fallback_reason: resolved.fallback_reason,
            result,
        },
        Err(error) => BackendState::Failed(error.to_string()),
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    timing::install();
    let (state, set_state) = signal(BackendState::Starting);
    spawn_local(async move {
        set_state.set(start_backend().await);
    });

    view! {
        <main class="app">
            <header class="app-header">
                <h1>"InfAlign Lab"</h1>
                <span
                    id="backend"
                    class="badge"
                    data-backend=move || state.with(BackendState::badge_key)
                    title="The compute backend this page runs on"
                >
                    {move || state.with(BackendState::badge_text)}
                </span>
            </header>
            <p class="muted">
                "Inference-aware alignment: calibrate the reward against the base policy, "
                "transform it for Best-of-N or Worst-of-N, and align with KL-regularised RL."
            </p>
            {move || state.with(|state| match state {
                BackendState::Ready { fallback_reason: Some(reason), .. } => view! {
                    <div id="fallback-notice" class="notice" role="status">
                        <strong>"WebGPU is not available in this browser, so the lab runs on the CPU. "</strong>
                        <span class="muted">{reason.clone()}</span>
                    </div>
                }.into_any(),
                BackendState::Failed(reason) => view! {
                    <div id="backend-error" class="error" role="alert">
                        "No compute backend could run: " {reason.clone()}
                    </div>
                }.into_any(),
                _ => ().into_any(),
            })}
            <explorer::Explorer />
            <SmokeCard state=state />
            <tokens::TokenizerCard />
        </main>
    }
}

/// The result of the smoke computation: `softmax(tanh(x w))` row by row, and its score.
#[component]
fn SmokeCard(state: ReadSignal<BackendState>) -> impl IntoView {
    view! {
        <section class="card" id="smoke">
            <h2>"Backend check"</h2>
            {move || state.with(|state| match state {
                BackendState::Ready { result, kind, .. } => {
                    let rows = result
                        .probabilities
                        .chunks(COLS)
                        .map(|row| view! {
                            <tr>{row.iter().map(|p| view! { <td>{format!("{p:.4}")}</td> }).collect_view()}</tr>
                        })
                        .collect_view();
                    view! {
                        <p>
                            "softmax(tanh(x·w)) computed on " {kind.name()} ": score "
                            <output id="smoke-score">{format!("{:.6}", result.score)}</output>
                        </p>
                        <table class="probabilities">{rows}</table>
                    }.into_any()
                }
                BackendState::Starting => view! { <p class="muted">"Initialising the compute backend…"</p> }.into_any(),
                BackendState::Failed(_) => view! { <p class="muted">"Nothing to show."</p> }.into_any(),
            })}
        </section>
    }
}
