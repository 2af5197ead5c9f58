//! Where the page's time goes: named spans of work accumulated per name (count, total and longest
//! single span in milliseconds), readable from the console or a test as `window.__infalignTimings()` (a JSON
//! object). Cheap enough to stay on: two `performance.now()` calls per span.

use std::cell::RefCell;
use std::collections::BTreeMap;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

thread_local! {
    static TOTALS: RefCell<BTreeMap<&'static str, Span>> = const { RefCell::new(BTreeMap::new()) };
}

/// The spans of one name so far.
#[derive(Default)]
struct Span {
    count: u32,
    total_ms: f64,
    max_ms: f64,
}

/// Milliseconds since navigation, or since the worker started in a worker (0 where there is no
/// `performance`).
pub fn now() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|performance| performance.dyn_into::<web_sys::Performance>().ok())
        .map(|performance| performance.now())
        .unwrap_or(0.0)
}

/// Runs `work`, adding its duration to `name`'s total.
pub fn timed<T>(name: &'static str, work: impl FnOnce() -> T) -> T {
    let start = now();
    let out = work();
    let elapsed = now() - start;
    TOTALS.with(|totals| {
        let mut totals = totals.borrow_mut();
        let span = totals.entry(name).or_default();
        span.count += 1;
        span.total_ms += elapsed;
        span.max_ms = span.max_ms.max(elapsed);
    });
    out
}

/// Publishes `window.__infalignTimings()` (the spans so far, as JSON text) and
/// `window.__infalignTimingsReset()` (start counting afresh, for a measurement of one stretch).
pub fn install() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let report = Closure::<dyn Fn() -> String>::new(|| {
        TOTALS.with(|totals| {
            let map: serde_json::Map<String, serde_json::Value> = totals
                .borrow()
                .iter()
                .map(|(name, span)| {
                    (
                        name.to_string(),
                        serde_json::json!({
                            "count": span.count,
                            "total_ms": span.total_ms,
                            "max_ms": span.max_ms,
                        }),
                    )
                })
                .collect();
            serde_json::Value::Object(map).to_string()
        })
    });
    // Failing to publish the hook costs only the diagnostics.
    let _ = js_sys::Reflect::set(&window, &"__infalignTimings".into(), report.as_ref());
    report.forget();
    let reset = Closure::<dyn Fn()>::new(|| TOTALS.with(|totals| totals.borrow_mut().clear()));
    let _ = js_sys::Reflect::set(&window, &"__infalignTimingsReset".into(), reset.as_ref());
    reset.forget();
}
