//! The page's settings in its address: each view owns some query keys, reads them at start and
//! writes them back (without a history entry) when they change, leaving the other views' keys
//! alone, so a shared link reproduces the whole page.

/// The page's query string, "" when unavailable.
pub fn current_query() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default()
}

/// The value of `key` in the page's query, if present.
pub fn query_value(key: &str) -> Option<String> {
    web_sys::UrlSearchParams::new_with_str(&current_query())
        .ok()?
        .get(key)
}

/// Replace the `owned` keys in the address with `pairs` (keys of `owned` missing from `pairs`
/// are removed), keeping every other key, without adding a history entry.
pub fn write_query(owned: &[&str], pairs: &[(&str, String)]) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&current_query()) else {
        return;
    };
    for key in owned {
        params.delete(key);
    }
    for (key, value) in pairs {
        params.set(key, value);
    }
    let url = format!("?{}", String::from(params.to_string()));
    if let Ok(history) = window.history() {
        // Failing to update the address bar loses nothing the page needs.
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}
