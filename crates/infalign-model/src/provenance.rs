//! Where a bundle or a reward model came from, as their manifests record it.

/// Where a bundle came from.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Provenance {
    /// The program and version that wrote it, e.g. `infalign 0.1.0`.
    pub created_by: String,
    /// The command or procedure that trained it.
    pub command: String,
    /// The training data, in words (e.g. `chitchat-dataset 0.9.0, train split`).
    pub data: String,
    /// Seed of the run.
    pub seed: u64,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Training tokens seen.
    pub tokens: u64,
}
