//! A small, deterministic tensor computation that proves a backend works end to end.
//!
//! The web page runs it on WebGPU or on the CPU and displays the result; native tests run it on
//! flex and on wgpu and compare. It touches the kernels the policy will need: a matrix product,
//! an element-wise non-linearity, a softmax along rows and a reduction.

use burn::tensor::{activation::softmax, Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// Rows of the input matrix.
pub const ROWS: usize = 4;
/// Columns of the input matrix (the inner dimension of the product).
pub const INNER: usize = 8;
/// Columns of the output.
pub const COLS: usize = 3;

/// The result of [`run_smoke`]: row-wise softmax probabilities and a scalar score.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeResult {
    /// `softmax(tanh(x w), dim = 1)`, row-major, shape `[ROWS, COLS]`.
    pub probabilities: Vec<f32>,
    /// `sum_i sum_j (j + 1) * probabilities[i, j]`: one number to display and compare.
    pub score: f32,
}

fn input_values() -> (Vec<f32>, Vec<f32>) {
    // Smooth, sign-changing values with no randomness, so every backend sees the same input.
    let x = (0..ROWS * INNER)
        .map(|k| ((k as f32) * 0.37).sin())
        .collect();
    let w = (0..INNER * COLS)
        .map(|k| ((k as f32) * 0.23 + 0.5).cos() * 0.8)
        .collect();
    (x, w)
}

/// Build the computation on `device` and return the probabilities tensor, shape `[ROWS, COLS]`.
pub fn smoke_tensor(device: &Device) -> Tensor<2> {
    let (x, w) = input_values();
    let x = Tensor::<2>::from_data(TensorData::new(x, [ROWS, INNER]), device);
    let w = Tensor::<2>::from_data(TensorData::new(w, [INNER, COLS]), device);
    softmax(x.matmul(w).tanh(), 1)
}

/// Run the computation on `device` and read the result back (asynchronously, as WebGPU requires).
pub async fn run_smoke(device: &Device, backend: &'static str) -> Result<SmokeResult> {
    let readback = |reason: String| Error::Readback {
        what: "smoke probabilities",
        backend,
        reason,
    };
    let data = smoke_tensor(device)
        .into_data_async()
        .await
        .map_err(|error| readback(format!("{error:?}")))?;
    let probabilities: Vec<f32> = data
        .try_to_vec::<f32>()
        .map_err(|error| readback(format!("{error:?}")))?;
    Ok(SmokeResult {
        score: score(&probabilities),
        probabilities,
    })
}

/// The same computation in plain f64 arithmetic, as an independent reference.
pub fn reference_smoke() -> SmokeResult {
    let (x, w) = input_values();
    let mut probabilities = Vec::with_capacity(ROWS * COLS);
    for i in 0..ROWS {
        let logits: Vec<f64> = (0..COLS)
            .map(|j| {
                let dot: f64 = (0..INNER)
                    .map(|k| f64::from(x[i * INNER + k]) * f64::from(w[k * COLS + j]))
                    .sum();
                dot.tanh()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        probabilities.extend(logits.iter().map(|l| ((l - max).exp() / total) as f32));
    }
    SmokeResult {
        score: score(&probabilities),
        probabilities,
    }
}

fn score(probabilities: &[f32]) -> f32 {
    probabilities
        .iter()
        .enumerate()
        .map(|(k, p)| ((k % COLS) + 1) as f32 * p)
        .sum()
}
