//! The page's side of the theory worker (`src/bin/theory-worker.rs`): send the explorer's
//! setting, receive the solved envelopes and optima.
//!
//! The worker is started from the loader Trunk writes next to the page. Where it cannot start
//! (no Worker, a blocked script, a failed load), the page runs the same desk itself in short
//! slices between paints and says so in the explorer: the answers are the same, only slower to
//! come and, at large N, with pauses.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use infalign_view::solves::{decode, encode, Desk, Reply, Request, PAGE_SLICE_MS};
use leptos::prelude::set_timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::timing::{self, timed};

/// Where the worker's loader is, next to the page (Trunk's `data-loader-shim`: `<bin>_loader.js`).
const WORKER_URL: &str = "./theory-worker_loader.js";

/// Who runs the solves.
enum Runner {
    /// The Web Worker.
    Worker(Worker),
    /// The page itself (no worker): the same desk, in slices between paints.
    Page {
        desk: RefCell<Desk>,
        queued: Cell<bool>,
    },
}

/// Sends requests to the solver and hands its replies to the page.
#[derive(Clone)]
pub struct Solver {
    inner: Rc<Inner>,
}

struct Inner {
    runner: RefCell<Runner>,
    on_reply: Box<dyn Fn(Reply)>,
    /// The last request, re-sent to the page's own desk if the worker fails after starting.
    last: Cell<Option<Request>>,
    /// Whether the page has been told that it solves on its own thread.
    fell_back: Cell<bool>,
    on_fallback: Box<dyn Fn(String)>,
}

impl Solver {
    /// Start the worker (or, failing that, the page's own desk). `on_reply` gets every reply;
    /// `on_fallback` is told, once, why the page solves on its own thread.
    pub fn start(
        on_reply: impl Fn(Reply) + 'static,
        on_fallback: impl Fn(String) + 'static,
    ) -> Self {
        let worker = Worker::new(WORKER_URL);
        let solver = Solver {
            inner: Rc::new(Inner {
                runner: RefCell::new(Runner::Page {
                    desk: RefCell::new(Desk::new()),
                    queued: Cell::new(false),
                }),
                on_reply: Box::new(on_reply),
                last: Cell::new(None),
                fell_back: Cell::new(false),
                on_fallback: Box::new(on_fallback),
            }),
        };
        match worker {
            Ok(worker) => {
                let weak = Rc::downgrade(&solver.inner);
                let on_message =
                    Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
                        let Some(inner) = weak.upgrade() else { return };
                        let text = event.data().as_string().unwrap_or_default();
                        match decode::<Reply>(&text).unwrap_or_else(Reply::Unreadable) {
                            // The worker is listening now; what was sent before may be lost.
                            Reply::Ready => {
                                if let Some(request) = inner.last.get() {
                                    Solver { inner }.send(request);
                                }
                            }
                            reply => (inner.on_reply)(reply),
                        }
                    });
                worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
                on_message.forget();
                let weak = Rc::downgrade(&solver.inner);
                let on_error = Closure::<dyn Fn(ErrorEvent)>::new(move |event: ErrorEvent| {
                    let Some(inner) = weak.upgrade() else { return };
                    let message = event.message();
                    let reason = if message.is_empty() {
                        "the theory worker could not be loaded".to_string()
                    } else {
                        format!("the theory worker stopped ({message})")
                    };
                    Solver { inner }.fall_back(reason);
                });
                worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
                on_error.forget();
                *solver.inner.runner.borrow_mut() = Runner::Worker(worker);
            }
            Err(error) => {
                let detail = error
                    .as_string()
                    .or_else(|| {
                        error
                            .dyn_ref::<js_sys::Error>()
                            .map(|e| String::from(e.message()))
                    })
                    .unwrap_or_else(|| "no Worker in this browser".into());
                solver.fall_back(format!("the theory worker could not start ({detail})"));
            }
        }
        solver
    }

    /// Ask for a setting (replacing any earlier request).
    pub fn send(&self, request: Request) {
        self.inner.last.set(Some(request));
        match &*self.inner.runner.borrow() {
            Runner::Worker(worker) => {
                // A worker that cannot take messages reports it through `onerror`, where the
                // page's own desk takes over with this request.
                let _ = worker.post_message(&JsValue::from_str(&encode(&request)));
            }
            Runner::Page { desk, .. } => desk.borrow_mut().receive(request),
        }
        self.queue_page_slice();
    }

    /// Stop using the worker: the page's own desk takes the last request.
    fn fall_back(&self, reason: String) {
        if let Runner::Worker(worker) = &*self.inner.runner.borrow() {
            worker.terminate();
        }
        *self.inner.runner.borrow_mut() = Runner::Page {
            desk: RefCell::new(Desk::new()),
            queued: Cell::new(false),
        };
        if !self.inner.fell_back.replace(true) {
            (self.inner.on_fallback)(reason);
        }
        if let Some(request) = self.inner.last.get() {
            self.send(request);
        }
    }

    /// On the page's own desk: one slice after the next paint, then more until it is idle.
    fn queue_page_slice(&self) {
        let Runner::Page { queued, .. } = &*self.inner.runner.borrow() else {
            return;
        };
        if queued.replace(true) {
            return;
        }
        let solver = self.clone();
        crate::explorer::after_paint(move || solver.page_slice());
    }

    fn page_slice(&self) {
        let replies = {
            let runner = self.inner.runner.borrow();
            let Runner::Page { desk, queued } = &*runner else {
                return;
            };
            queued.set(false);
            let replies = timed("solves", || {
                desk.borrow_mut().work(PAGE_SLICE_MS, &timing::now)
            });
            if desk.borrow().busy() {
                queued.set(true);
                let solver = self.clone();
                set_timeout(move || solver.page_slice(), Duration::ZERO);
            }
            replies
        };
        for reply in replies {
            (self.inner.on_reply)(reply);
        }
    }
}
