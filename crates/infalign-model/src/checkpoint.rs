//! Training checkpoints on disk (native only): a directory with the weights (`model.bpk`), the
//! optimiser state (`optimizer.bin`) and the run's own `state.json`, each written through a
//! temporary name and the state last, so an interrupted write leaves the previous checkpoint
//! readable.

use std::path::Path;

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::write_files_atomically;
use crate::policy::{Policy, PolicyConfig};
use crate::weights::{policy_from_burnpack, policy_to_burnpack, Precision};

const STATE: &str = "state.json";
const WEIGHTS: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bin";

/// Write `policy`, `optimizer` and `state` into `dir`.
pub(crate) fn save(
    dir: &Path,
    policy: &Policy,
    optimizer: &ModuleOptimizer,
    state: &impl Serialize,
) -> Result<()> {
    let optimizer = optimizer.into_bytes().map_err(|error| Error::Invalid {
        what: "optimizer state".into(),
        reason: format!("cannot serialise: {error:?}"),
    })?;
    let state = serde_json::to_vec_pretty(state).map_err(|error| Error::Invalid {
        what: "checkpoint state".into(),
        reason: error.to_string(),
    })?;
    write_files_atomically(
        dir,
        [
            (WEIGHTS, policy_to_burnpack(policy, Precision::F32)?),
            (OPTIMIZER, optimizer.to_vec()),
            (STATE, state),
        ],
    )
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|error| Error::io(path, error))
}

fn origin(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The `state.json` of the checkpoint in `dir`.
pub(crate) fn read_state<T: DeserializeOwned>(dir: &Path) -> Result<T> {
    serde_json::from_slice(&read(dir, STATE)?).map_err(|error| Error::Parse {
        origin: origin(dir, STATE),
        reason: error.to_string(),
    })
}

/// The checkpoint's weights as a policy of shape `config` on the autodiff version of `device`.
pub(crate) fn read_policy(dir: &Path, config: &PolicyConfig, device: &Device) -> Result<Policy> {
    policy_from_burnpack(
        config,
        &read(dir, WEIGHTS)?,
        &device.clone().autodiff(),
        &origin(dir, WEIGHTS),
    )
}

/// `fresh` (an optimiser with the run's settings) with the checkpoint's state loaded.
pub(crate) fn read_optimizer(dir: &Path, fresh: ModuleOptimizer) -> Result<ModuleOptimizer> {
    fresh
        .from_bytes(Bytes::from_bytes_vec(read(dir, OPTIMIZER)?))
        .map_err(|error| Error::Parse {
            origin: origin(dir, OPTIMIZER),
            reason: format!("{error:?}"),
        })
}
