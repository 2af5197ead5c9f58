//! Entry point of the browser lab: run the static constructors once, install the panic hook and
//! mount the app (or, in the sampling worker, serve the page).

// Static constructors (burn's cubecl kernels register themselves through `inventory`, which uses
// `.init_array` on wasm). When a module never calls `__wasm_call_ctors` itself, wasm-ld links it
// "command style" and wraps *every* export in a call to it, so every call from JavaScript into
// the app (each event handler, each closure, each externref allocation) re-ran all constructors:
// about 30 ms per slider move. Calling it once here, first, is the documented way out: wasm-ld
// then leaves the exports alone.
#[cfg(target_arch = "wasm32")]
extern "C" {
    fn __wasm_call_ctors();
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: called exactly once, before any other code of the module runs (wasm-bindgen calls
    // `main` right after instantiation); the constructors only register static tables.
    unsafe {
        __wasm_call_ctors();
    }
    console_error_panic_hook::set_once();
    // Started a second time in a Web Worker, as the lab's sampling engine: serve the page there
    // and mount nothing.
    if web_sys::window().is_none() {
        infalign_web::serve_engine();
        return;
    }
    leptos::mount::mount_to_body(infalign_web::App);
}
