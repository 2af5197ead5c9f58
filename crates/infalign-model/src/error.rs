//! The crate's error type.

use std::path::PathBuf;

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
    /// A setting or argument is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// A whole document (a JSON file, an archive) is malformed.
    #[error("{origin}: {reason}")]
    Parse { origin: String, reason: String },
    /// One record of a line-oriented file is malformed; `line` counts from 1.
    #[error("{origin}, line {line}: {reason}")]
    Record {
        origin: String,
        line: usize,
        reason: String,
    },
    /// An error of the analytic core (calibration tables, transforms, estimators).
    #[error(transparent)]
    Core(#[from] infalign_core::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The checks of one group of settings (a config struct's `validate`): every failure is an
/// [`Error::Invalid`] that names the group and the field, in one wording across the crate.
pub(crate) struct Settings {
    group: &'static str,
}

impl Settings {
    /// Checks of the settings called `group` in messages, e.g. "CTRL setting".
    pub(crate) fn new(group: &'static str) -> Self {
        Self { group }
    }

    /// The error for `field`.
    pub(crate) fn fail<T>(&self, field: &str, reason: impl Into<String>) -> Result<T> {
        Err(Error::Invalid {
            what: format!("{} `{field}`", self.group),
            reason: reason.into(),
        })
    }

    /// Each count at least 1.
    pub(crate) fn at_least_one(&self, fields: &[(&str, usize)]) -> Result<()> {
        match fields.iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => self.fail(field, "must be at least 1"),
            None => Ok(()),
        }
    }

    /// Each value a finite number >= 0.
    pub(crate) fn finite_non_negative(&self, fields: &[(&str, f64)]) -> Result<()> {
        match fields
            .iter()
            .find(|(_, value)| !(value.is_finite() && *value >= 0.0))
        {
            Some((field, value)) => {
                self.fail(field, format!("{value} is not a finite number >= 0"))
            }
            None => Ok(()),
        }
    }
}

/// A text field's value as an error message states it: `is "x"`, or `is missing`.
pub(crate) fn stated(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("is {value:?}"),
        None => "is missing".to_string(),
    }
}
