//! Data parallelism for a training step on the CPU.
//!
//! flex runs its matmuls and our fused kernels on all cores, but its elementwise operations
//! (residual adds, layer norm, the attention's softmax, their backward) run on the calling thread,
//! so a single forward and backward keeps about 1.2 of 2 cores busy. Splitting the batch into one
//! part per core and running each part's forward and backward on its own thread keeps both busy:
//! the parts' graphs are independent (each thread trains a [`Module::fork`] of the policy, which
//! shares the weights but records its own autodiff graph), and their gradients are summed in part
//! order, so the result does not depend on thread timing.
//!
//! Each part's loss must be that part's share of the whole batch's loss (a sum over its rows
//! divided by the whole batch's normaliser), so that the summed gradient is the gradient of the
//! whole batch's loss. On wgpu there is one part: the device already runs the work in parallel.
//! Native only, as training is.

use burn::backend::DispatchDevice;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

use super::Policy;
use crate::error::{Error, Result};

/// What one part's forward pass gives: its loss (a one-element tensor, its share of the batch's
/// loss) and whatever the caller wants read back from the same pass.
pub struct PartLoss<T> {
    /// This part's share of the batch's loss.
    pub loss: Tensor<1>,
    /// Anything else the caller reads from the pass (e.g. the rows' log-probabilities).
    pub extra: T,
}

/// The summed gradients of a split batch and what each part gave.
pub struct SplitGradients<T> {
    /// The batch's loss: the sum of the parts' losses.
    pub loss: f64,
    /// Each part's `extra`, in part order.
    pub extras: Vec<T>,
    /// The gradient of the batch's loss with respect to the policy's parameters.
    pub grads: GradientsParams,
}

/// The environment variable that sets how many parts a step is split into on flex (a whole
/// number of at least 1; 1 runs the whole batch in one pass, as before the split), for measuring
/// one against the other. Unset: one part per core.
pub const STEP_PARTS_VARIABLE: &str = "INFALIGN_STEP_PARTS";

/// How many parts a batch of `rows` rows is split into on `device`: one per core on flex (or
/// what [`STEP_PARTS_VARIABLE`] says), at most one per row; one on any other device. An error
/// names the variable when its value is not a whole number of at least 1.
pub fn parts_for(device: &Device, rows: usize) -> Result<usize> {
    if !matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    ) {
        return Ok(1);
    }
    let parts = match std::env::var(STEP_PARTS_VARIABLE) {
        Ok(given) => match given.trim().parse::<usize>() {
            Ok(parts) if parts >= 1 => parts,
            _ => {
                return Err(Error::Invalid {
                    what: format!("the environment variable {STEP_PARTS_VARIABLE}"),
                    reason: format!("{given:?} is not a whole number of parts of at least 1"),
                })
            }
        },
        Err(_) => rayon::current_num_threads(),
    };
    Ok(parts.clamp(1, rows.max(1)))
}

/// The contiguous row ranges of `rows` rows split into `parts` near-equal parts (the first parts
/// take the remainder), in order; never an empty range.
pub fn split_rows(rows: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, rows.max(1));
    let (size, extra) = (rows / parts, rows % parts);
    let mut start = 0;
    (0..parts)
        .map(|part| {
            let len = size + usize::from(part < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .filter(|range| !range.is_empty())
        .collect()
}

/// Run `part_loss` on every part (each on its own thread when there are several) and
/// return the summed gradients. `policy` must be on an autodiff device; it is not changed.
///
/// The loss values are read back before the backward pass; a part's error is returned as is (the
/// first in part order).
pub fn split_gradients<P, T, F>(
    policy: &Policy,
    parts: Vec<P>,
    part_loss: F,
) -> Result<SplitGradients<T>>
where
    P: Send,
    T: Send,
    F: Fn(&Policy, P) -> Result<PartLoss<T>> + Sync,
{
    let device = policy.device();
    let run = |model: Policy, part: P| -> Result<(f64, T, GradientsParams)> {
        let PartLoss { loss, extra } = part_loss(&model, part)?;
        let value = f64::from(crate::host_values(loss.clone(), "training loss")?[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        Ok((value, extra, grads))
    };
    let outcomes: Vec<Result<(f64, T, GradientsParams)>> = if parts.len() <= 1 {
        parts
            .into_iter()
            .map(|part| run(policy.clone(), part))
            .collect()
    } else {
        run_on_threads(policy, &device, parts, &run)
    };
    let mut accumulator = GradientsAccumulator::<Policy>::new();
    let mut loss = 0.0;
    let mut extras = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let (value, extra, grads) = outcome?;
        loss += value;
        extras.push(extra);
        accumulator.accumulate(policy, grads);
    }
    Ok(SplitGradients {
        loss,
        extras,
        grads: accumulator.grads(),
    })
}

/// Each part on a thread of its own, with a fork of the policy (its own autodiff graph); the
/// first part on the calling thread.
fn run_on_threads<P, R>(
    policy: &Policy,
    device: &Device,
    parts: Vec<P>,
    run: &(impl Fn(Policy, P) -> R + Sync),
) -> Vec<R>
where
    P: Send,
    R: Send,
{
    let mut jobs: Vec<(Policy, P)> = parts
        .into_iter()
        .map(|part| (policy.clone().fork(device), part))
        .collect();
    let (model, part) = jobs.remove(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(model, part)| scope.spawn(move || run(model, part)))
            .collect();
        let mut results = vec![run(model, part)];
        for handle in handles {
            match handle.join() {
                Ok(result) => results.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::split_rows;

    #[test]
    fn rows_split_into_contiguous_near_equal_parts_covering_every_row() {
        assert_eq!(split_rows(16, 2), vec![0..8, 8..16]);
        assert_eq!(split_rows(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(split_rows(1, 4), vec![0..1]);
        assert_eq!(split_rows(5, 0), vec![0..5]);
        assert!(split_rows(0, 2).is_empty());
    }
}
