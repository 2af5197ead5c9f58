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
"#)]
extern "C" {
    fn watch_gpu_devices();
    fn gpu_lost() -> js_sys::Promise;
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
