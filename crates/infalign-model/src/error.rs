//! The crate's error type.

/// Errors raised by `infalign-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter could be acquired through wgpu (no driver, no WebGPU in the browser, ...).
    #[error("no GPU backend available: {reason}")]
    GpuUnavailable { reason: String },
    /// Reading a tensor back from the device failed.
    #[error("reading {what} back from the {backend} device failed: {reason}")]
    Readback {
        what: &'static str,
        backend: &'static str,
        reason: String,
    },
    /// A backend name given by a user was not recognised.
    #[error("unknown backend {given:?}: expected one of `cpu`, `wgpu`, `auto`")]
    UnknownBackend { given: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
