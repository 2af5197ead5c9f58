//! The lab's sampling engine in a Web Worker, so that sampling on the CPU never holds up the page
//! (the messages, and why, are in [`infalign_view::engine`]).
//!
//! The worker runs this same module: the page posts it the compiled module and the URL of its
//! JavaScript glue, the worker instantiates them, and `main` (seeing no window) calls [`serve`]
//! instead of mounting the page. Nothing more is downloaded or compiled. [`Engine`] is the page's
//! side: start the worker, send it each bundle the page reads, run a job and await its outcome.
//! Where the worker cannot start, or stops, or cannot read a bundle, the page runs the jobs
//! itself (the lab falls back per job, and says so once).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use infalign_core::candidates::CandidatePrompt;
use infalign_model::backend::cpu_device;
use infalign_model::bundle::BASE_POLICY;
use infalign_model::candidates::candidate_rewards;
use infalign_model::ctrl::reference_table;
use infalign_model::ctrl::rollout::ReferenceProgress;
use infalign_model::Policy;
use infalign_view::engine::{job_bundle, BaseSet, Done, Job, Reply, Request, Update};
use infalign_view::solves::{decode, encode};
use infalign_view::train::{TrainPair, TrainSettings};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, ErrorEvent, MessageEvent, Worker};

use crate::bundle::{self, Files, LoadedBundle};
use crate::lab::sampling::{sample_answers, yield_to_browser};
use crate::tokens::describe;

#[wasm_bindgen(inline_js = r#"
// The URL of the page's own JavaScript glue. wasm-bindgen names a module's pair `<name>.js` and
// `<name>_bg.wasm`, and Trunk preloads both: the glue is the preloaded module whose wasm is
// preloaded too (the theory worker's is not).
function glueUrl() {
  const wasm = new Set(
    [...document.querySelectorAll('link[rel="preload"][href$="_bg.wasm"]')].map((link) => link.href),
  );
  for (const link of document.querySelectorAll('link[rel="modulepreload"][href$=".js"]')) {
    if (wasm.has(link.href.replace(/\.js$/, "_bg.wasm"))) return link.href;
  }
  throw new Error("the page's module is not among its preloaded files");
}

// A module worker from a few lines of source: it imports the page's glue, instantiates the
// page's compiled module with it (whose `main` then serves), and rethrows a failure so that the
// page's `onerror` hears of it.
export function start_engine_worker(module) {
  const glue = glueUrl();
  const source = `self.onmessage = (event) => {
  self.onmessage = null;
  import(event.data.glue)
    .then((bindings) => bindings.default({ module_or_path: event.data.module }))
    .catch((error) => setTimeout(() => { throw error; }));
};`;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const worker = new Worker(url, { type: "module", name: "infalign-sampling" });
  worker.postMessage({ glue, module });
  return worker;
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn start_engine_worker(module: &JsValue) -> Result<Worker, JsValue>;
}

/// A message on the wire: the request's text, and with a bundle's files an array of the text
/// and an object of their bytes by name.
fn envelope(request: &Request, files: Option<&Files>) -> JsValue {
    let text = JsValue::from_str(&encode(request));
    let Some(files) = files else {
        return text;
    };
    let object = js_sys::Object::new();
    for (name, bytes) in files {
        let _ = js_sys::Reflect::set(
            &object,
            &JsValue::from_str(name),
            &js_sys::Uint8Array::from(bytes.as_slice()),
        );
    }
    js_sys::Array::of2(&text, &object).into()
}

/// The page's handle on the engine.
#[derive(Clone)]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    worker: Worker,
    /// Whether the worker is listening ([`Reply::Ready`]); until then messages wait in `held`.
    ready: Cell<bool>,
    held: RefCell<Vec<JsValue>>,
    /// False once the worker has stopped (an uncaught error in it).
    alive: Cell<bool>,
    next_id: Cell<u64>,
    jobs: RefCell<HashMap<u64, Pending>>,
    /// The bundle last sent, and the bundles the worker could not read.
    opened: RefCell<Option<String>>,
    refused: RefCell<HashSet<String>>,
    /// Told why, when the worker stops or cannot read a bundle.
    on_trouble: Box<dyn Fn(String)>,
}

/// A job the page awaits.
struct Pending {
    /// Told each update; false asks the worker to stop the job.
    on_update: Box<dyn Fn(Update) -> bool>,
    settle: js_sys::Function,
    outcome: Rc<RefCell<Option<Result<Done, String>>>>,
}

impl Engine {
    /// Start the worker; `on_trouble` is told (in the page's words) when it stops or cannot
    /// read a bundle.
    pub fn start(on_trouble: impl Fn(String) + 'static) -> Result<Engine, String> {
        let worker = start_engine_worker(&wasm_bindgen::module()).map_err(describe)?;
        let engine = Engine {
            inner: Rc::new(Inner {
                worker,
                ready: Cell::new(false),
                held: RefCell::new(Vec::new()),
                alive: Cell::new(true),
                next_id: Cell::new(0),
                jobs: RefCell::new(HashMap::new()),
                opened: RefCell::new(None),
                refused: RefCell::new(HashSet::new()),
                on_trouble: Box::new(on_trouble),
            }),
        };
        let weak = Rc::downgrade(&engine.inner);
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let text = event.data().as_string().unwrap_or_default();
            Engine { inner }.receive(decode::<Reply>(&text).unwrap_or_else(Reply::Unreadable));
        });
        engine
            .inner
            .worker
            .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let weak = Rc::downgrade(&engine.inner);
        let on_error = Closure::<dyn Fn(ErrorEvent)>::new(move |event: ErrorEvent| {
            event.prevent_default();
            let Some(inner) = weak.upgrade() else { return };
            let message = event.message();
            Engine { inner }.stopped(if message.is_empty() {
                "the sampling worker could not be started".into()
            } else {
                format!("the sampling worker stopped ({message})")
            });
        });
        engine
            .inner
            .worker
            .set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        Ok(engine)
    }

    /// Whether the worker runs the jobs of the bundle `origin` (it was sent, and not refused).
    pub fn serves(&self, origin: &str) -> bool {
        self.inner.alive.get()
            && self.inner.opened.borrow().as_deref() == Some(origin)
            && !self.inner.refused.borrow().contains(origin)
    }

    /// Send the worker the bundle `origin` the page read from `files` (fetched from the folder
    /// `url`, absolute, where the rest of it is fetched from). Jobs sent after it run on it.
    pub fn open(&self, origin: &str, url: Option<String>, files: &Files) {
        *self.inner.opened.borrow_mut() = Some(origin.to_string());
        let request = Request::Open {
            origin: origin.to_string(),
            url,
        };
        self.post(envelope(&request, Some(files)));
    }

    /// Whether the worker is still there.
    pub fn alive(&self) -> bool {
        self.inner.alive.get()
    }

    /// Run `job` on the bundle `origin`; `on_update` hears how far it has come, and answers
    /// false to have the worker stop it (a training run stops at its next frame).
    pub async fn run(
        &self,
        origin: &str,
        job: Job,
        on_update: impl Fn(Update) -> bool + 'static,
    ) -> Result<Done, String> {
        if !self.inner.alive.get() {
            return Err("the sampling worker has stopped".into());
        }
        let id = self.inner.next_id.get();
        self.inner.next_id.set(id + 1);
        let outcome = Rc::new(RefCell::new(None));
        let mut settle = None;
        let done = js_sys::Promise::new(&mut |resolve, _| settle = Some(resolve));
        let Some(settle) = settle else {
            return Err("the page could not wait for the sampling worker".into());
        };
        self.inner.jobs.borrow_mut().insert(
            id,
            Pending {
                on_update: Box::new(on_update),
                settle,
                outcome: outcome.clone(),
            },
        );
        let request = Request::Job {
            id,
            origin: origin.to_string(),
            job,
        };
        self.post(envelope(&request, None));
        let _ = JsFuture::from(done).await;
        let result = outcome.borrow_mut().take();
        result.unwrap_or_else(|| Err("the sampling worker gave no answer".into()))
    }

    fn post(&self, message: JsValue) {
        if self.inner.ready.get() {
            // A worker that cannot take a message says so through `onerror`.
            let _ = self.inner.worker.post_message(&message);
        } else {
            self.inner.held.borrow_mut().push(message);
        }
    }

    fn receive(&self, reply: Reply) {
        match reply {
            Reply::Ready => {
                self.inner.ready.set(true);
                for message in self.inner.held.take() {
                    let _ = self.inner.worker.post_message(&message);
                }
            }
            Reply::Opened { result: Ok(()), .. } => {}
            Reply::Opened {
                origin,
                result: Err(reason),
            } => {
                self.inner.refused.borrow_mut().insert(origin.clone());
                (self.inner.on_trouble)(format!(
                    "The sampling worker could not read the bundle {origin} ({reason}): the lab \
                     samples it on the page's own thread, which may pause the page."
                ));
            }
            Reply::Update { id, update } => {
                let go_on = match self.inner.jobs.borrow().get(&id) {
                    Some(job) => (job.on_update)(update),
                    None => true,
                };
                if !go_on {
                    self.post(envelope(&Request::Cancel { id }, None));
                }
            }
            Reply::Done { id, result } => {
                let job = self.inner.jobs.borrow_mut().remove(&id);
                if let Some(job) = job {
                    *job.outcome.borrow_mut() = Some(result);
                    let _ = job.settle.call0(&JsValue::NULL);
                }
            }
            Reply::Unreadable(reason) => {
                web_sys::console::warn_1(&format!("sampling worker: {reason}").into());
            }
        }
    }

    /// The worker is gone: every job waiting on it fails, and the page is told once.
    fn stopped(&self, reason: String) {
        if !self.inner.alive.replace(false) {
            return;
        }
        self.inner.worker.terminate();
        let jobs: Vec<Pending> = self
            .inner
            .jobs
            .borrow_mut()
            .drain()
            .map(|(_, job)| job)
            .collect();
        for job in jobs {
            *job.outcome.borrow_mut() = Some(Err(reason.clone()));
            let _ = job.settle.call0(&JsValue::NULL);
        }
        (self.inner.on_trouble)(format!(
            "{}: the lab samples on the page's own thread, which may pause the page.",
            capitalised(&reason)
        ));
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `url` made absolute against the page's address (the worker has no page to resolve it).
pub fn absolute(url: &str) -> String {
    web_sys::window()
        .and_then(|window| window.location().href().ok())
        .and_then(|base| web_sys::Url::new_with_base(url, &base).ok())
        .map(|url| url.href())
        .unwrap_or_else(|| url.to_string())
}

/// The rewards under `reward` of the base policy's answer set `set` for `message` (a reference
/// table's come sorted), sampled with the bundle's decoding and calibration seed: what
/// [`Job::BaseRewards`] computes, in the worker or on the page.
pub(crate) async fn base_rewards(
    bundle: &LoadedBundle,
    base: &Policy,
    message: &str,
    reward: &str,
    set: BaseSet,
    progress: impl AsyncFnMut(ReferenceProgress),
) -> Result<Vec<f64>, String> {
    let choice = bundle
        .reward(reward)
        .ok_or_else(|| format!("the bundle has no reward {reward:?}"))?;
    let tokenizer = &bundle.bundle.tokenizer;
    let decoding = bundle.bundle.reference_decoding();
    let seed = bundle.bundle.calibration_seed();
    let reward = choice.reward.as_ref();
    match set {
        BaseSet::Reference { k } => reference_table(
            base, tokenizer, message, reward, k, &decoding, seed, progress,
        )
        .await
        .map(|table| table.rewards().to_vec()),
        BaseSet::Candidates { c } => {
            candidate_rewards(
                base, tokenizer, message, reward, c, &decoding, seed, progress,
            )
            .await
        }
    }
    .map_err(|error| error.to_string())
}

/// The worker's side: read requests, run them one at a time in order, post the replies.
struct Server {
    scope: DedicatedWorkerGlobalScope,
    /// The bundle, under the page's name for it.
    bundle: RefCell<Option<(String, Rc<LoadedBundle>)>>,
    policies: RefCell<HashMap<String, Rc<Policy>>>,
    inbox: RefCell<VecDeque<(Request, Files)>>,
    busy: Cell<bool>,
    /// Jobs the page asked to stop.
    cancelled: RefCell<HashSet<u64>>,
}

/// Serve the page from this worker (called by `main` where there is no window).
pub fn serve() {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let server = Rc::new(Server {
        scope: scope.clone(),
        bundle: RefCell::new(None),
        policies: RefCell::new(HashMap::new()),
        inbox: RefCell::new(VecDeque::new()),
        busy: Cell::new(false),
        cancelled: RefCell::new(HashSet::new()),
    });
    let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        let (text, files) = if data.is_string() {
            (data.as_string().unwrap_or_default(), Files::new())
        } else {
            let parts = js_sys::Array::from(&data);
            (
                parts.get(0).as_string().unwrap_or_default(),
                read_files(&parts.get(1)),
            )
        };
        match decode::<Request>(&text) {
            // Read at once (jobs run one at a time): a running job sees it between two frames.
            Ok(Request::Cancel { id }) => {
                server.cancelled.borrow_mut().insert(id);
            }
            Ok(request) => {
                server.inbox.borrow_mut().push_back((request, files));
                if !server.busy.replace(true) {
                    let server = server.clone();
                    wasm_bindgen_futures::spawn_local(async move { server.drain().await });
                }
            }
            Err(reason) => server.post(&Reply::Unreadable(reason)),
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let _ = scope.post_message(&JsValue::from_str(&encode(&Reply::Ready)));
}

/// The files of an [`envelope`].
fn read_files(object: &JsValue) -> Files {
    let mut files = Files::new();
    if let Ok(entries) = js_sys::Object::entries(object.unchecked_ref()).dyn_into::<js_sys::Array>()
    {
        for entry in entries.iter() {
            let pair = js_sys::Array::from(&entry);
            if let Some(name) = pair.get(0).as_string() {
                files.insert(name, js_sys::Uint8Array::new(&pair.get(1)).to_vec());
            }
        }
    }
    files
}

impl Server {
    fn post(&self, reply: &Reply) {
        let _ = self.scope.post_message(&JsValue::from_str(&encode(reply)));
    }

    async fn drain(self: Rc<Self>) {
        loop {
            let next = self.inbox.borrow_mut().pop_front();
            let Some((request, files)) = next else { break };
            match request {
                Request::Open { origin, url } => {
                    let read = match url {
                        Some(url) => bundle::fetched(&origin, &url, &files).await,
                        None => bundle::assemble(&origin, &files).await,
                    };
                    self.policies.borrow_mut().clear();
                    let result = read.map(|loaded| {
                        *self.bundle.borrow_mut() = Some((origin.clone(), Rc::new(loaded)));
                    });
                    if result.is_err() {
                        *self.bundle.borrow_mut() = None;
                    }
                    self.post(&Reply::Opened { origin, result });
                }
                Request::Job { id, origin, job } => {
                    let result = self.job(id, &origin, job).await;
                    self.cancelled.borrow_mut().remove(&id);
                    self.post(&Reply::Done { id, result });
                }
                Request::Cancel { .. } => {}
            }
        }
        self.busy.set(false);
    }

    /// The bundle `origin`, if it is the one held.
    fn bundle(&self, origin: &str) -> Result<Rc<LoadedBundle>, String> {
        let held = self.bundle.borrow();
        job_bundle(
            origin,
            held.as_ref().map(|(name, loaded)| (name.as_str(), loaded)),
        )
        .cloned()
    }

    async fn policy(&self, bundle: &LoadedBundle, name: &str) -> Result<Rc<Policy>, String> {
        if let Some(policy) = self.policies.borrow().get(name) {
            return Ok(policy.clone());
        }
        let policy = Rc::new(bundle.policy(name, &cpu_device(), |_| {}).await?);
        self.policies
            .borrow_mut()
            .insert(name.to_string(), policy.clone());
        Ok(policy)
    }

    async fn job(&self, id: u64, origin: &str, job: Job) -> Result<Done, String> {
        let progress = async |step: ReferenceProgress| {
            self.post(&Reply::Update {
                id,
                update: Update::Progress {
                    finished: step.finished,
                    of: step.k,
                },
            });
            yield_to_browser().await;
        };
        match job {
            Job::Answers {
                policy,
                message,
                n,
                seed,
                stream,
            } => {
                let bundle = self.bundle(origin)?;
                let policy = self.policy(&bundle, &policy).await?;
                let on_step = |texts: Vec<String>| {
                    self.post(&Reply::Update {
                        id,
                        update: Update::Texts(texts),
                    })
                };
                let on_step: Option<&dyn Fn(Vec<String>)> = stream.then_some(&on_step);
                let sampled = sample_answers(&bundle, &policy, &message, n, seed, on_step).await?;
                Ok(Done::Answers {
                    texts: sampled.texts,
                    tokens: sampled.tokens,
                })
            }
            Job::BaseRewards {
                message,
                reward,
                set,
            } => {
                let bundle = self.bundle(origin)?;
                let base = self.policy(&bundle, BASE_POLICY).await?;
                let rewards = base_rewards(&bundle, &base, &message, &reward, set, progress);
                Ok(Done::Rewards(rewards.await?))
            }
            // Training needs no bundle: the candidates' rewards come with the job.
            Job::Train {
                prompt,
                settings,
                betas,
            } => self.train(id, &prompt, &settings, betas).await,
        }
    }

    /// Train both sides, posting every frame, until the end or a cancel.
    async fn train(
        &self,
        id: u64,
        prompt: &CandidatePrompt,
        settings: &TrainSettings,
        betas: [f64; 2],
    ) -> Result<Done, String> {
        let text = |error: infalign_core::Error| error.to_string();
        let mut pair = TrainPair::new(prompt, settings, betas).map_err(text)?;
        loop {
            let done = pair.frame().map_err(text)?;
            self.post(&Reply::Update {
                id,
                update: Update::Trained {
                    paths: pair.paths(),
                    policies: pair.policies(),
                },
            });
            if done {
                return Ok(Done::Trained);
            }
            yield_to_browser().await;
            if self.cancelled.borrow().contains(&id) {
                return Ok(Done::Trained);
            }
        }
    }
}
