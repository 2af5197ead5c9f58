//! The InfAlign browser lab (Leptos, client-side rendered).
//!
//! - The theory explorer ([`explorer`]): transforms, tilted densities and the exact
//!   win-rate-versus-KL curves, live, with the settings in the URL.
//! - The compute backend: burn on WebGPU when the browser offers an adapter and on the CPU
//!   (flex) otherwise, shown as a badge (with a visible notice when it had to fall back) with a
//!   manual switch and the measured tokens per second, checked by a small tensor computation.
//! - The sampling lab ([`lab`]): policies of a bundle answer prompts N times in the tab, with raw
//!   and calibrated rewards, Best-of-N / Worst-of-N picks and a running tally against the base;
//!   on the CPU it samples in a Web Worker running this same module ([`engine`]).
//! - The default model's tokenizer.

use infalign_model::backend::{resolve_backend, BackendKind, BackendPreference};
use infalign_model::smoke::{run_smoke, SmokeResult, COLS};
use infalign_model::Device;
use leptos::prelude::*;
use leptos::task::spawn_local;

mod bundle;
mod engine;
mod explorer;
mod export;
mod gpu_watch;
mod lab;
mod math;
mod solves;
mod svg;
mod timing;
mod tokens;
mod url;

use lab::Compute;

/// Serve the page as its sampling engine: what the module does when it is started in a Web
/// Worker (see `engine`).
pub fn serve_engine() {
    engine::serve();
}

/// Where the page stands with its compute backend.
#[derive(Debug, Clone)]
enum BackendState {
    /// Still initialising.
    Starting,
    /// A backend is up and the smoke computation ran on it.
    Ready {
        kind: BackendKind,
        /// The device it came up on.
        device: Device,
        /// Why WebGPU was not used, when the page fell back to the CPU.
        fallback_reason: Option<String>,
        result: SmokeResult,
    },
    /// Neither backend could run the computation (shown, never a panic).
    Failed(String),
}

/// The value of the badge's `data-backend` attribute (the browser tests read it).
fn badge_key(state: &BackendState, active: Option<BackendKind>) -> &'static str {
    match (state, active) {
        (BackendState::Failed(_), _) => "error",
        (_, Some(BackendKind::Wgpu)) => "webgpu",
        (_, Some(BackendKind::Flex)) => "cpu",
        (_, None) => "pending",
    }
}

/// Try WebGPU, fall back to the CPU, and run the smoke computation on whichever came up. A
/// WebGPU without subgroups is not tried: the GPU kernels would fail to compile there.
async fn start_backend(adapter: &gpu_watch::Adapter) -> BackendState {
    let preference = if adapter.present && !adapter.subgroups {
        BackendPreference::Cpu
    } else {
        BackendPreference::Auto
    };
    let resolved = match resolve_backend(preference).await.map(|mut resolved| {
        if preference == BackendPreference::Cpu {
            resolved.fallback_reason = Some(
                "This browser's WebGPU has no subgroups (the `subgroups` feature), which the \
                 GPU kernels of the lab's tensor library (burn 0.22, cubecl) need."
                    .into(),
            );
        }
        resolved
    }) {
        Ok(resolved) => resolved,
        Err(error) => return BackendState::Failed(error.to_string()),
    };
    match run_smoke(&resolved.device, resolved.kind.name()).await {
        Ok(result) => BackendState::Ready {
            kind: resolved.kind,
            device: resolved.device,
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
    let (state, set_state) = signal_local(BackendState::Starting);
    let compute = Compute::new();
    let tokenizer = RwSignal::new_local(tokens::SharedTokenizer::Waiting);
    // `?backend=cpu` starts on the CPU even where WebGPU is available; `?backend=webgpu` on
    // WebGPU even where the adapter is a software one.
    let wanted = url::query_value("backend").map(|b| b.to_ascii_lowercase());
    let wants_cpu = wanted.as_deref() == Some("cpu");
    let wants_gpu = wanted.as_deref() == Some("webgpu");
    if let Some(other) = wanted
        .as_deref()
        .filter(|b| !matches!(*b, "cpu" | "webgpu"))
    {
        compute.notice.set(Some(format!(
            "Ignored backend={other}: the lab runs on webgpu or cpu; it chose by itself."
        )));
    }
    gpu_watch::install();
    spawn_local(async move {
        let adapter = gpu_watch::adapter().await;
        let started = start_backend(&adapter).await;
        // A software adapter runs shaders on the CPU, many times slower than the lab's own CPU
        // path: start on the CPU and say so (the switch still offers WebGPU).
        let software = match &started {
            BackendState::Ready {
                kind: BackendKind::Wgpu,
                ..
            } if !wants_gpu && !wants_cpu => adapter.software.clone(),
            _ => None,
        };
        if let BackendState::Ready { kind, device, .. } = &started {
            if *kind == BackendKind::Wgpu {
                compute.gpu.set_value(Some(device.clone()));
                // A lost device takes no more work: off WebGPU, and say why.
                spawn_local(async move {
                    let reason = gpu_watch::lost().await;
                    compute.gpu.set_value(None);
                    if compute.active.get_untracked() == Some(BackendKind::Wgpu) {
                        compute.active.set(Some(BackendKind::Flex));
                    }
                    compute.notice.set(Some(format!(
                        "The WebGPU device was lost ({reason}); the lab runs on the CPU now."
                    )));
                });
            }
            let active = if wants_cpu || software.is_some() {
                BackendKind::Flex
            } else {
                *kind
            };
            if let Some(name) = &software {
                compute.notice.set(Some(format!(
                    "This browser's WebGPU adapter is a software one ({name}): it would run \
                     slower than the CPU, so the lab runs on the CPU. The switch above moves it \
                     to WebGPU anyway."
                )));
            }
            compute.active.set(Some(active));
        }
        set_state.set(started);
    });
    let has_gpu = move || compute.gpu.with_value(Option::is_some);

    view! {
        <main class="app">
            <header class="app-header">
                <h1>"InfAlign Lab"</h1>
                <span class="backend-controls">
                    <span
                        id="backend"
                        class="badge"
                        data-backend=move || state.with(|state| badge_key(state, compute.active.get()))
                        title="The compute backend this page runs on"
                    >
                        {move || state.with(|state| match (state, compute.active.get()) {
                            (BackendState::Failed(_), _) => "no backend".to_string(),
                            (_, None) => "starting…".to_string(),
                            (_, Some(kind)) => kind.name().to_string(),
                        })}
                        {move || compute.tokens_per_second.get().map(|speed| view! {
                            " · " <span id="tokens-per-second">{format!("{speed:.0} tokens/s")}</span>
                        })}
                    </span>
                    <select
                        id="backend-switch"
                        title="Switch the compute backend"
                        aria-label="Compute backend"
                        prop:disabled=move || compute.active.get().is_none()
                        on:change=move |event| {
                            let kind = if event_target_value(&event) == "webgpu" {
                                BackendKind::Wgpu
                            } else {
                                BackendKind::Flex
                            };
                            compute.notice.set(None);
                            compute.active.set(Some(kind));
                        }
                    >
                        <option
                            value="webgpu"
                            prop:disabled=move || { compute.active.track(); !has_gpu() }
                            selected=move || compute.active.get() == Some(BackendKind::Wgpu)
                        >"WebGPU"</option>
                        <option value="cpu" selected=move || compute.active.get() == Some(BackendKind::Flex)>"CPU"</option>
                    </select>
                </span>
            </header>
            <p class="muted">
                "Inference-aware alignment: calibrate the reward against the base policy, "
                "transform it for Best-of-N or Worst-of-N, and align with KL-regularised RL."
            </p>
            {move || state.with(|state| match state {
                BackendState::Ready { fallback_reason: Some(reason), .. } => view! {
                    <div id="fallback-notice" class="notice" role="status">
                        <strong>"WebGPU is not available in this browser, so the lab runs on the CPU."</strong>
                        " Everything works there, only the sampling is slower."
                        <details>
                            <summary>"Details"</summary>
                            <code class="muted">{reason.clone()}</code>
                        </details>
                    </div>
                }.into_any(),
                BackendState::Failed(reason) => view! {
                    <div id="backend-error" class="error" role="alert">
                        "No compute backend could run: " {reason.clone()}
                    </div>
                }.into_any(),
                _ => ().into_any(),
            })}
            {move || compute.notice.get().map(|notice| view! {
                <div id="backend-notice" class="notice" role="status">{notice}</div>
            })}
            <explorer::Explorer />
            <lab::SamplingLab compute=compute tokenizer=tokenizer />
            <SmokeCard state=state />
            <tokens::TokenizerCard shared=tokenizer />
        </main>
    }
}

/// The result of the smoke computation: `softmax(tanh(x w))` row by row, and its score.
#[component]
fn SmokeCard(state: ReadSignal<BackendState, LocalStorage>) -> impl IntoView {
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
