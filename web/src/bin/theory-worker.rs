//! The explorer's theory worker: a Web Worker that runs `infalign_view::solves::Desk`, so that the
//! optimal envelopes and optima (up to a second per solve at large N) never block the page.
//!
//! It reads [`Request`]s posted by the page, works in slices of [`WORKER_SLICE_MS`] (reading new
//! messages between them, so only the latest setting is solved) and posts each [`Reply`] as soon
//! as it is ready. Built by Trunk as a classic worker with a loader shim (`index.html`); it links
//! the theory engine only, not the model.

#[cfg(target_arch = "wasm32")]
mod worker {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use infalign_view::solves::{decode, encode, Desk, Reply, Request, WORKER_SLICE_MS};
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

    /// The worker's state: the desk, and whether a slice is already queued.
    struct Worker {
        scope: DedicatedWorkerGlobalScope,
        desk: RefCell<Desk>,
        queued: Cell<bool>,
    }

    impl Worker {
        fn post(&self, reply: &Reply) {
            // Posting a string to the page cannot fail short of the worker being torn down.
            let _ = self.scope.post_message(&JsValue::from_str(&encode(reply)));
        }

        /// Queue one slice of work (a zero-delay timer, so messages are read in between).
        fn queue(self: &Rc<Self>) {
            if self.queued.replace(true) {
                return;
            }
            let this = Rc::clone(self);
            let slice = Closure::once_into_js(move || {
                this.queued.set(false);
                let replies = this
                    .desk
                    .borrow_mut()
                    .work(WORKER_SLICE_MS, &js_sys::Date::now);
                for reply in &replies {
                    this.post(reply);
                }
                if this.desk.borrow().busy() {
                    this.queue();
                }
            });
            if self
                .scope
                .set_timeout_with_callback_and_timeout_and_arguments_0(slice.unchecked_ref(), 0)
                .is_err()
            {
                self.queued.set(false);
            }
        }
    }

    pub fn start() {
        let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        let worker = Rc::new(Worker {
            scope: scope.clone(),
            desk: RefCell::new(Desk::new()),
            queued: Cell::new(false),
        });
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let text = event.data().as_string().unwrap_or_default();
            match decode::<Request>(&text) {
                Ok(request) => {
                    worker.desk.borrow_mut().receive(request);
                    worker.queue();
                }
                Err(error) => worker.post(&Reply::Unreadable(error)),
            }
        });
        scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The handler lives as long as the worker.
        on_message.forget();
        // Messages that came before the handler was set were dropped: ask for them again.
        let _ = scope.post_message(&JsValue::from_str(&encode(&Reply::Ready)));
    }
}

// Unlike the app (`main.rs`), the worker links no static constructors (no burn kernels
// registering themselves), so it has no `__wasm_call_ctors` to run first.
fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        console_error_panic_hook::set_once();
        worker::start();
    }
}
