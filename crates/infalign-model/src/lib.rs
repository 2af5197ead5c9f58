//! InfAlign's models on burn 0.22.
//!
//! One code path serves every backend: burn's `Device` carries the backend (flex on the CPU,
//! wgpu over Vulkan / Metal / WebGPU on a GPU), so the same functions run natively, in tests on
//! a software Vulkan driver, and in the browser.

pub mod backend;
pub mod data;
pub mod error;
pub mod smoke;
pub mod tokenizer;

pub use backend::{BackendKind, BackendPreference};
pub use error::{Error, Result};
