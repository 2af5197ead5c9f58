//! The tokenizer card: the default model's byte-level BPE tokenizer, loaded from the served
//! bundle, shows how any text splits into tokens. The ids it shows are the ids the native
//! build produces (the browser tests check this against a committed golden file).

use infalign_model::tokenizer::DialogueTokenizer;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Where the default model's tokenizer is served, relative to the page.
const TOKENIZER_URL: &str = "default-model/tokenizer.json";
/// The text shown before the user types anything.
const SAMPLE_TEXT: &str = "Hi! Do you like hiking in the mountains?";

/// A JavaScript error (a thrown value, a rejection) in words.
pub(crate) fn describe(error: wasm_bindgen::JsValue) -> String {
    error
        .as_string()
        .or_else(|| {
            error
                .dyn_ref::<js_sys::Error>()
                .map(|error| String::from(error.message()))
        })
        .unwrap_or_else(|| format!("{error:?}"))
}

/// Fetch `url` (relative to the page; in a worker, absolute) as bytes; the error says what went
/// wrong, never panics.
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let global = js_sys::global();
    let fetch = if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        window.fetch_with_str(url)
    } else if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        worker.fetch_with_str(url)
    } else {
        return Err(format!("fetching {url}: this context cannot fetch"));
    };
    // A fetch that rejects got no response to read: the server is down or unreachable, or it is
    // on another origin and does not allow this page to read it (CORS); the browser tells the
    // page no more than "Failed to fetch".
    let response: web_sys::Response = JsFuture::from(fetch)
        .await
        .map_err(|error| {
            format!(
                "fetching {url}: no response the page may read ({}): the server is unreachable, \
                 or it is on another site and does not allow this page to read its files (it \
                 must send Access-Control-Allow-Origin)",
                describe(error)
            )
        })?
        .dyn_into()
        .map_err(|_| format!("fetching {url}: not a response"))?;
    if !response.ok() {
        return Err(format!("fetching {url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(
        response
            .array_buffer()
            .map_err(|error| format!("reading {url}: {}", describe(error)))?,
    )
    .await
    .map_err(|error| format!("reading {url}: {}", describe(error)))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// One row of the token table: id and the text it stands for.
fn pieces(tokenizer: &DialogueTokenizer, text: &str) -> Result<Vec<(u32, String)>, String> {
    let ids = tokenizer.encode(text).map_err(|error| error.to_string())?;
    ids.iter()
        .map(|&id| {
            tokenizer
                .decode(&[id])
                .map(|piece| (id, piece))
                .map_err(|error| error.to_string())
        })
        .collect()
}

/// The default model's tokenizer, where the card stands with it. The sampling lab gives it the
/// one it read with the default bundle, so that the card does not read the same file a second
/// time (about 50 ms of the page's thread); with another bundle, the card reads it itself.
#[derive(Clone)]
pub enum SharedTokenizer {
    /// The lab's bundle is not in yet.
    Waiting,
    /// The lab runs another bundle (or none): the card reads the default model's tokenizer.
    FetchIt,
    /// The tokenizer.
    Ready(Box<DialogueTokenizer>),
    /// Why it could not be read.
    Failed(String),
}

/// Type text, see its tokens.
#[component]
pub fn TokenizerCard(shared: RwSignal<SharedTokenizer, LocalStorage>) -> impl IntoView {
    let (text, set_text) = signal(SAMPLE_TEXT.to_string());
    Effect::new(move |_| {
        if !shared.with(|shared| matches!(shared, SharedTokenizer::FetchIt)) {
            return;
        }
        spawn_local(async move {
            let loaded = match fetch_bytes(TOKENIZER_URL).await {
                Ok(bytes) => crate::timing::timed("parse tokenizer", || {
                    DialogueTokenizer::from_bytes(&bytes, TOKENIZER_URL)
                })
                .map(|tokenizer| SharedTokenizer::Ready(Box::new(tokenizer)))
                .unwrap_or_else(|error| SharedTokenizer::Failed(error.to_string())),
                Err(error) => SharedTokenizer::Failed(error),
            };
            shared.set(loaded);
        });
    });

    // `Ok(None)` while the tokenizer loads; an error when it failed to load or to encode.
    let tokens = move || {
        shared.with(|shared| match shared {
            SharedTokenizer::Waiting | SharedTokenizer::FetchIt => Ok(None),
            SharedTokenizer::Failed(reason) => {
                Err(format!("The tokenizer could not be loaded: {reason}"))
            }
            SharedTokenizer::Ready(tokenizer) => {
                text.with(|text| pieces(tokenizer, text)).map(Some)
            }
        })
    };

    view! {
        <section class="card" id="tokenizer">
            <h2>"Tokenizer"</h2>
            <p class="muted">
                "The default model reads text as byte-level BPE tokens. Type to see how it splits."
            </p>
            <textarea
                id="tokenizer-input"
                rows="2"
                aria-label="Text to split into tokens"
                prop:value=move || text.get()
                on:input=move |event| set_text.set(event_target_value(&event))
            ></textarea>
            {move || match tokens() {
                Ok(None) => view! { <p class="muted" id="token-status" data-state="pending">"Loading the tokenizer…"</p> }.into_any(),
                Ok(Some(tokens)) => {
                    let ids: Vec<u32> = tokens.iter().map(|(id, _)| *id).collect();
                    let ids_json = serde_json::to_string(&ids).unwrap_or_default();
                    let count = tokens.len();
                    view! {
                        <p id="token-status" data-state="ready">
                            <output id="token-ids" data-ids=ids_json>{count} " tokens"</output>
                        </p>
                        <div class="tokens">
                            {tokens.into_iter().map(|(id, piece)| view! {
                                <span class="token" title=format!("id {id}")>{piece}</span>
                            }).collect_view()}
                        </div>
                    }.into_any()
                }
                Err(reason) => view! {
                    <p class="error" id="token-status" data-state="error">{reason}</p>
                }.into_any(),
            }}
        </section>
    }
}
