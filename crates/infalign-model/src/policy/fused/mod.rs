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
//!
//! Under autodiff burn composes attention from a dozen operations (a transposed key, a score
//! matmul, two masks, a softmax in six steps, a second matmul, and each one's backward), most of
//! them elementwise passes over `[batch, heads, seq, seq]` on one core; [`causal_attention`] is one
//! operation over the block's fused `qkv` projection on flex ([`attention`]), and
//! [`causal_attention_plain`] the composition it is tested against and the path elsewhere.

#[cfg(not(target_arch = "wasm32"))]
mod attention;
#[cfg(not(target_arch = "wasm32"))]
mod extension;
#[cfg(not(target_arch = "wasm32"))]
mod kernel;

use burn::tensor::activation::log_softmax;
// In the browser, burn's decomposed attention (matmul, mask, softmax, matmul) on both backends:
// WebGPU runs it anyway, and leaving the fused kernels (flex's CPU kernel, cubecl's flash
// attention) out of the page keeps the download within its budget.
#[cfg(not(target_arch = "wasm32"))]
use burn::tensor::module::attention;
#[cfg(target_arch = "wasm32")]
use burn::tensor::module::attention_fallback as attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

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

/// Causal self-attention of a block's fused projection `qkv` (`[batch, seq, 3 d]`: queries, keys
/// and values side by side, each of `heads` heads), the first `pads[b]` positions of row `b`
/// hidden as keys (left padding): `[batch, seq, d]`. One fused operation on flex;
/// [`causal_attention_plain`] elsewhere.
pub fn causal_attention(qkv: Tensor<3>, pads: &[usize], heads: usize) -> Tensor<3> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let [batch, _, width] = qkv.dims();
        let divides = heads > 0 && width > 0 && width % (3 * heads) == 0 && pads.len() == batch;
        if divides && fused_here(&qkv) {
            let pads = pads.iter().map(|&pad| pad as i64).collect::<Vec<_>>();
            let pads = Tensor::<1, Int>::from_data(TensorData::new(pads, [batch]), &qkv.device());
            return extension::causal_attention(qkv, pads, heads);
        }
    }
    causal_attention_plain(qkv, pads, heads)
}

/// [`causal_attention`] composed of burn's operations: heads split off, burn's `attention` with
/// a padding mask, heads merged back.
pub fn causal_attention_plain(qkv: Tensor<3>, pads: &[usize], heads: usize) -> Tensor<3> {
    let [_, seq, _] = qkv.dims();
    let mask = padding_mask(pads, heads, seq, seq, &qkv.device());
    let (q, k, v) = split_heads(qkv, heads);
    attend(q, k, v, mask)
}

/// Queries, keys and values of a fused projection `[batch, seq, 3 d]`, each
/// `[batch, heads, seq, d / heads]`.
pub(crate) fn split_heads(qkv: Tensor<3>, heads: usize) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [batch, seq, width] = qkv.dims();
    let d = width / 3;
    let split = |t: Tensor<3>| t.reshape([batch, seq, heads, d / heads]).swap_dims(1, 2);
    (
        split(qkv.clone().narrow(2, 0, d)),
        split(qkv.clone().narrow(2, d, d)),
        split(qkv.narrow(2, 2 * d, d)),
    )
}

/// Causal attention of `[batch, heads, new, head_dim]` queries over `[batch, heads, seen + new,
/// head_dim]` keys and values (aligned at the bottom right, so new queries see every earlier
/// key), `mask` true where hidden; heads merged: `[batch, new, heads * head_dim]`.
pub(crate) fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<3> {
    let [batch, heads, new, head_dim] = q.dims();
    // An explicit scale keeps wgpu on burn's decomposed attention, which every WebGPU adapter
    // runs; flex without autodiff uses its fused CPU kernel.
    let options = AttentionModuleOptions {
        scale: Some(1.0 / (head_dim as f64).sqrt()),
        softcap: None,
        is_causal: true,
    };
    attention(q, k, v, mask, None, options)
        .swap_dims(1, 2)
        .reshape([batch, new, heads * head_dim])
}

/// `[batch, heads, queries, keys]`, true where key `k < pads[b]` (left padding); `None` when
/// nothing is padded.
pub(crate) fn padding_mask(
    pads: &[usize],
    heads: usize,
    queries: usize,
    keys: usize,
    device: &Device,
) -> Option<Tensor<4, Bool>> {
    if pads.iter().all(|&pad| pad == 0) {
        return None;
    }
    let values: Vec<bool> = pads
        .iter()
        .flat_map(|&pad| (0..keys).map(move |k| k < pad))
        .collect();
    let mask =
        Tensor::<4, Bool>::from_data(TensorData::new(values, [pads.len(), 1, 1, keys]), device);
    Some(mask.expand([pads.len(), heads, queries, keys]))
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
