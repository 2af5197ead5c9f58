//! Do the two backends agree? The base policy answers two built-in prompts on the CPU, then every
//! policy of the bundle scores those answers (`log pi(answer | prompt)`) on the CPU and on
//! WebGPU, and the page shows the largest difference per policy. A teacher who sees the tally
//! differ between backends can check here whether the models do.

use infalign_model::backend::BackendKind;
use infalign_model::bundle::BASE_POLICY;
use infalign_model::ctrl::{rollout, sequence_logprobs};
use infalign_view::lab::BUILT_IN_PROMPTS;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::sampling::yield_to_browser;
use super::*;

/// Built-in prompts answered.
const PROMPTS: usize = 2;
/// Answers scored per prompt.
const ANSWERS_PER_PROMPT: usize = 2;
/// Their length limit, in tokens.
const ANSWER_TOKENS: usize = 16;
/// The sampler seed of the answers.
const SEED: u64 = 7;
/// Largest difference of a sequence log-probability (nats) the backends may show.
pub const AGREEMENT: f64 = 1e-3;

/// One policy's comparison.
#[derive(Debug, Clone, PartialEq)]
struct Agreement {
    policy: String,
    /// Largest |log pi_cpu - log pi_webgpu| over the answers, in nats.
    largest: f64,
}

impl Lab {
    /// Every policy's largest difference between the backends.
    async fn compare_backends(&self) -> Result<Vec<Agreement>, String> {
        let bundle = self.loaded().ok_or("the bundle is not loaded yet")?;
        let text = |error: infalign_model::Error| error.to_string();
        // Let the page paint "Comparing…" first; the work below runs on this thread.
        yield_to_browser().await;
        let base = self.policy(&bundle, BASE_POLICY, BackendKind::Flex).await?;
        let messages: Vec<&str> = BUILT_IN_PROMPTS[..PROMPTS]
            .iter()
            .flat_map(|prompt| std::iter::repeat_n(*prompt, ANSWERS_PER_PROMPT))
            .collect();
        let mut decoding = bundle.bundle.reference_decoding();
        decoding.max_new_tokens = ANSWER_TOKENS;
        let answers = rollout(&base, &bundle.bundle.tokenizer, &messages, &decoding, SEED)
            .await
            .map_err(text)?;
        let mut found = Vec::new();
        for name in bundle.policy_names() {
            yield_to_browser().await;
            let cpu = self.policy(&bundle, &name, BackendKind::Flex).await?;
            let gpu = self.policy(&bundle, &name, BackendKind::Wgpu).await?;
            let on_cpu = sequence_logprobs(&cpu, &answers, messages.len())
                .await
                .map_err(text)?;
            let on_gpu =
                crate::gpu_watch::unless_lost(sequence_logprobs(&gpu, &answers, messages.len()))
                    .await
                    .map_err(|reason| format!("the WebGPU device was lost: {reason}"))?
                    .map_err(text)?;
            let largest = on_cpu
                .iter()
                .zip(&on_gpu)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            found.push(Agreement {
                policy: name,
                largest,
            });
        }
        Ok(found)
    }
}

/// The comparison's disclosure: a button and, once run, a table.
#[component]
pub(super) fn BackendComparison(lab: Lab) -> impl IntoView {
    let result = RwSignal::new(None::<Result<Vec<Agreement>, String>>);
    let running = RwSignal::new(false);
    let has_gpu = move || {
        lab.compute.active.track();
        lab.compute.gpu.with_value(Option::is_some)
    };
    let state = move || match (running.get(), result.with(Option::is_some)) {
        (true, _) => "running",
        (false, true) => "done",
        (false, false) => "idle",
    };
    let on_click = move |_| {
        running.set(true);
        spawn_local(async move {
            result.set(Some(lab.compare_backends().await));
            running.set(false);
        });
    };
    view! {
        <details id="backend-compare" data-state=state>
            <summary>"Do the CPU and WebGPU agree?"</summary>
            <p class="muted">
                "The base policy answers two built-in prompts twice each on the CPU; every policy of "
                "the bundle then scores those answers on both backends. Differences beyond "
                {format!("{AGREEMENT}")} " nats per answer would mean the backends compute "
                "different models, not just round differently."
            </p>
            <button
                id="backend-compare-run"
                prop:disabled=move || running.get() || !has_gpu()
                title=move || (!has_gpu()).then_some("WebGPU is not available here")
                on:click=on_click
            >
                {move || if running.get() { "Comparing…" } else { "Compare the backends" }}
            </button>
            {move || result.get().map(|found| match found {
                Err(reason) => view! { <p class="error" role="alert">{reason}</p> }.into_any(),
                Ok(rows) => view! {
                    <table class="numbers">
                        <thead><tr><th>"policy"</th><th>"largest difference (nats)"</th><th></th></tr></thead>
                        <tbody>
                            {rows.into_iter().map(|row| view! {
                                <tr data-policy=row.policy.clone() data-largest=format!("{}", row.largest)>
                                    <td>{row.policy.clone()}</td>
                                    <td>{format!("{:.2e}", row.largest)}</td>
                                    <td>{if row.largest <= AGREEMENT { "agree" } else { "DIFFER" }}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </details>
    }
}
