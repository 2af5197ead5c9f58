//! Noticing a lost WebGPU device. A driver reset, a GPU that goes to sleep or is unplugged, or the
//! browser reclaiming memory loses the device; after that, work sent to it never finishes (a read
//! back waits forever), so the lab must learn of the loss from the device itself and stop waiting.
//! wgpu keeps the page's `GPUDevice` to itself, so this module watches every device the page
//! asks for (it wraps `GPUAdapter.requestDevice` before the backend starts) and resolves one
//! promise with the reason when any of them is lost.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
let reason = null;
let settle;
const lost = new Promise((resolve) => { settle = resolve; });

export function watch_gpu_devices() {
  if (typeof GPUAdapter === "undefined" || GPUAdapter.prototype.__infalignWatched) return;
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    device.lost.then((info) => {
      reason ??= info.message ? `${info.reason}: ${info.message}` : String(info.reason);
      settle(reason);
    });
    return device;
  };
  GPUAdapter.prototype.__infalignWatched = true;
}

export function gpu_lost() { return lost; }

// What the page's WebGPU adapter is: {present, software (its name when it is a software one,
// `isFallbackAdapter`: SwiftShader, say), subgroups (whether it offers the feature)}.
export async function adapter_report() {
  const none = { present: false, software: "", subgroups: false };
  try {
    if (!navigator.gpu) return none;
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return none;
    const info = adapter.info ?? {};
    const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ");
    return {
      present: true,
      software: fallback ? name || "software adapter" : "",
      subgroups: adapter.features.has("subgroups"),
    };
  } catch (error) {
    return none;
  }
}
"#)]
extern "C" {
    fn watch_gpu_devices();
    fn gpu_lost() -> js_sys::Promise;
    fn adapter_report() -> js_sys::Promise;
}

/// What the browser's WebGPU adapter is, asked before the backend starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adapter {
    /// Whether there is one.
    pub present: bool,
    /// Its name when it is a software one (it runs shaders on the CPU, far slower than the lab's
    /// own CPU path).
    pub software: Option<String>,
    /// Whether it offers subgroups. burn 0.22's GPU matmuls need them: its autotune (cubek-matmul
    /// 0.3) benchmarks routines that call `plane_sum` (WGSL `subgroupAdd`: the gemm "dot"
    /// variant, the plane-vector gemv) without checking the device's plane operations (its
    /// `PlaneOpsUnavailable` error is never returned; cubek-reduce does check them), and on wasm
    /// cubecl-wgpu builds the pipeline of a shader that failed to compile outside any error
    /// scope, so the device's uncaptured-error handler panics and the page dies.
    pub subgroups: bool,
}

/// The browser's WebGPU adapter (none when anything goes wrong asking).
pub async fn adapter() -> Adapter {
    let Ok(report) = JsFuture::from(adapter_report()).await else {
        return Adapter::default();
    };
    let field = |name: &str| js_sys::Reflect::get(&report, &JsValue::from_str(name)).ok();
    Adapter {
        present: field("present").and_then(|v| v.as_bool()).unwrap_or(false),
        software: field("software")
            .and_then(|v| v.as_string())
            .filter(|name| !name.is_empty()),
        subgroups: field("subgroups")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}

/// Starts watching: call before the first WebGPU device is requested.
pub fn install() {
    watch_gpu_devices();
}

/// Resolves with the reason once a WebGPU device of this page is lost (never, if none is).
pub async fn lost() -> String {
    let reason = JsFuture::from(gpu_lost()).await;
    reason
        .ok()
        .and_then(|value| value.as_string())
        .unwrap_or_else(|| "unknown reason".into())
}

/// Runs `work` until it finishes or the WebGPU device is lost, whichever comes first (then the
/// work is dropped: it would wait forever on the lost device).
pub async fn unless_lost<T>(work: impl Future<Output = T>) -> Result<T, String> {
    let mut work = pin!(work);
    let mut lost = pin!(lost());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        lost.as_mut().poll(cx).map(Err)
    })
    .await
}
