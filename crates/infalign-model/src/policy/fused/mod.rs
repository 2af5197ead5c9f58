//! Fused operations of the policy on flex: `log p(target)` from logits (what pretraining, CTRL
//! and evaluation all ask of the policy) and the exact GELU.
//!
//! The plain way (`log_softmax`, then `gather`) writes a `[rows, vocab]` tensor of
//! log-probabilities, and its backward another; PyTorch's `cross_entropy` writes neither. On flex
//! (natively, with or without autodiff) [`target_logprobs`] is one fused operation: a logsumexp
//! and a gather per row in the forward, the softmax minus the one-hot in the backward, row by row
//! across the cores ([`kernel`]). Elsewhere (wgpu, the browser) it is the plain composition,
//! [`target_logprobs_plain`], which the tests hold the fused one to.
//!
//! flex's own `gelu` evaluates `erf` one element at a time (about 9 ns each); [`gelu`] is the same
//! exact function with a vectorised `erfc`, forward and backward.

#[cfg(not(target_arch = "wasm32"))]
mod extension;
#[cfg(not(target_arch = "wasm32"))]
mod kernel;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// `[rows]`: `log softmax(logits[i])[targets[i]]` for `[rows, vocab]` logits.
pub fn target_logprobs(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    #[cfg(not(target_arch = "wasm32"))]
    if fused_here(&logits) {
        return extension::target_logprobs(logits, targets);
    }
    target_logprobs_plain(logits, targets)
}

/// The same by `log_softmax` and `gather`: the reference the fused operation is tested against,
/// and the path on backends without the fused one.
pub fn target_logprobs_plain(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1)
}

/// The exact GELU, `x Phi(x)` (burn's `gelu`; fused on flex).
pub fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    #[cfg(not(target_arch = "wasm32"))]
    if fused_here(&input) {
        return extension::gelu(input);
    }
    burn::tensor::activation::gelu(input)
}

/// Whether the fused operations run on this tensor's device: flex (under autodiff or not), f32.
#[cfg(not(target_arch = "wasm32"))]
fn fused_here<const D: usize>(tensor: &Tensor<D>) -> bool {
    use burn::backend::DispatchDevice;
    use burn::tensor::DType;
    let on_flex = matches!(
        tensor.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    on_flex && tensor.dtype() == DType::F32
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use burn::tensor::{Device, Tensor};

    #[test]
    fn flex_takes_the_fused_path_with_and_without_autodiff() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let logits = Tensor::<2>::zeros([2, 3], &device);
            assert!(super::fused_here(&logits), "{device:?}");
        }
    }
}
