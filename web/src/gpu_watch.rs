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

// The adapter the page would get, when it is a software one (`isFallbackAdapter`: SwiftShader,
// say): its name; otherwise "" (a hardware adapter, none, or no WebGPU at all).
export async function software_adapter() {
  try {
    if (!navigator.gpu) return "";
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return "";
    const info = adapter.info ?? {};
    const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
    if (!fallback) return "";
    return [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "software adapter";
  } catch (error) {
    return "";
  }
}
"#)]
extern "C" {
    fn watch_gpu_devices();
    fn gpu_lost() -> js_sys::Promise;
    fn software_adapter() -> js_sys::Promise;
}

/// The name of the WebGPU adapter the browser offers when it is a software one (it runs
/// shaders on the CPU, far slower than the lab's own CPU path); `None` for a hardware adapter or
/// none at all.
pub async fn software_adapter_name() -> Option<String> {
    let name = JsFuture::from(software_adapter()).await.ok()?.as_string()?;
    (!name.is_empty()).then_some(name)
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
