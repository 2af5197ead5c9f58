//! Where the page's time goes: named spans of work accumulated per name (count and total
//! milliseconds), readable from the console or a test as `window.__infalignTimings()` (a JSON
//! object). Cheap enough to stay on: two `performance.now()` calls per span.

use std::cell::RefCell;
use std::collections::BTreeMap;

use wasm_bindgen::prelude::*;

thread_local! {
    static TOTALS: RefCell<BTreeMap<&'static str, (u32, f64)>> = const { RefCell::new(BTreeMap::new()) };
}

/// Milliseconds since navigation (0 where the page has no `performance`).
pub fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Runs `work`, adding its duration to `name`'s total.
pub fn timed<T>(name: &'static str, work: impl FnOnce() -> T) -> T {
    let start = now();
    let out = work();
    let elapsed = now() - start;
    TOTALS.with(|totals| {
        let mut totals = totals.borrow_mut();
        let entry = totals.entry(name).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += elapsed;
    });
    out
}

/// Publishes `window.__infalignTimings()`.
pub fn install() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let report = Closure::<dyn Fn() -> String>::new(|| {
        TOTALS.with(|totals| {
            let map: serde_json::Map<String, serde_json::Value> = totals
                .borrow()
                .iter()
                .map(|(name, (count, total))| {
                    (
                        name.to_string(),
                        serde_json::json!({ "count": count, "total_ms": total }),
                    )
                })
                .collect();
            serde_json::Value::Object(map).to_string()
        })
    });
    // Failing to publish the hook costs only the diagnostics.
    let _ = js_sys::Reflect::set(&window, &"__infalignTimings".into(), report.as_ref());
    report.forget();
}
