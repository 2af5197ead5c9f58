//! Choosing a compute backend: flex on the CPU, or wgpu on a GPU, with a fallback to the CPU.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The backend a [`Device`] runs on, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (native and wasm32).
    Flex,
    /// burn's wgpu backend: Vulkan, Metal or DX12 natively, WebGPU in a browser.
    Wgpu,
}

impl BackendKind {
    /// Short, user-facing name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "cpu (flex)",
            BackendKind::Wgpu => {
                if cfg!(target_arch = "wasm32") {
                    "webgpu"
                } else {
                    "gpu (wgpu)"
                }
            }
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for with `--device cpu|wgpu|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    /// The CPU only.
    Cpu,
    /// A GPU through wgpu; failing to get one is an error.
    Wgpu,
    /// A GPU when one is available, the CPU otherwise.
    #[default]
    Auto,
}

impl FromStr for BackendPreference {
    type Err = Error;

    fn from_str(given: &str) -> Result<Self> {
        match given.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "auto" => Ok(Self::Auto),
            _ => Err(Error::UnknownBackend {
                given: given.to_string(),
            }),
        }
    }
}

/// The CPU device (burn's flex backend).
pub fn cpu_device() -> Device {
    Device::flex()
}

/// Initialise the wgpu runtime on the default adapter and return its device.
///
/// Works natively and in a browser (there it asks the page for a WebGPU adapter). An error,
/// never a panic, when no adapter is available. The runtime initialises once per process;
/// later calls get the same device.
pub async fn gpu_device() -> Result<Device> {
    match Device::wgpu_options().init_async().await {
        Ok(device) => Ok(device),
        // Initialised before (by an earlier call, or by a tensor operation): it is up.
        Err(error) if error.to_string().contains("already initialized") => {
            Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
        }
        Err(error) => Err(Error::GpuUnavailable {
            reason: error.to_string(),
        }),
    }
}

/// The outcome of resolving a [`BackendPreference`].
#[derive(Debug, Clone)]
pub struct ResolvedBackend {
    /// The device to create tensors on.
    pub device: Device,
    /// Which backend it is.
    pub kind: BackendKind,
    /// Why the GPU was not used, when `Auto` fell back to the CPU.
    pub fallback_reason: Option<String>,
}

/// Resolve a preference to a device: `Auto` falls back to the CPU, with the reason kept.
pub async fn resolve_backend(preference: BackendPreference) -> Result<ResolvedBackend> {
    match preference {
        BackendPreference::Cpu => Ok(ResolvedBackend {
            device: cpu_device(),
            kind: BackendKind::Flex,
            fallback_reason: None,
        }),
        BackendPreference::Wgpu => Ok(ResolvedBackend {
            device: gpu_device().await?,
            kind: BackendKind::Wgpu,
            fallback_reason: None,
        }),
        BackendPreference::Auto => match gpu_device().await {
            Ok(device) => Ok(ResolvedBackend {
                device,
                kind: BackendKind::Wgpu,
                fallback_reason: None,
            }),
            Err(error) => Ok(ResolvedBackend {
                device: cpu_device(),
                kind: BackendKind::Flex,
                fallback_reason: Some(error.to_string()),
            }),
        },
    }
}

/// Flush subnormal floats to zero on this thread's CPU (x86-64: MXCSR's flush-to-zero and
/// denormals-are-zero bits), and on every thread it starts afterwards (they inherit the
/// setting), so call it first thing, before any tensor work starts a thread pool.
///
/// Why: on some CPUs (Intel's among them) an operation on a subnormal input or result takes a
/// microcode assist, about a hundred times the normal cost, and a training step that makes
/// them (tiny gradients, Adam's second moments) runs several times slower. Values below
/// 1.2e-38 are noise to training. Returns whether the setting was made (false on other
/// architectures, which keep their default).
pub fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const FLUSH_TO_ZERO: u32 = 1 << 15;
        const DENORMALS_ARE_ZERO: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register; the bits
        // set change only how subnormal values are treated.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FLUSH_TO_ZERO | DENORMALS_ARE_ZERO;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
