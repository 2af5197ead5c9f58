//! The fused operations against the plain ones, forward and backward, on flex with and without
//! autodiff, over random shapes: the log-probability against `log_softmax` + `gather` (a
//! vocabulary that is not a multiple of the kernel's lane count included), GELU against burn's,
//! the causal self-attention against burn's masked attention (left padding, a head size that is
//! not a multiple of the lanes, a row that is all padding).

use burn::tensor::{Device, Int, Tensor, TensorData};
use infalign_model::policy::{
    causal_attention, causal_attention_plain, gelu, target_logprobs, target_logprobs_plain,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    rows: usize,
    vocab: usize,
    logits: Vec<f32>,
    targets: Vec<i32>,
    weights: Vec<f32>,
}

fn case(rows: usize, vocab: usize, seed: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut unit = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    let logits = (0..rows * vocab).map(|_| (unit() - 0.5) * 16.0).collect();
    let targets = (0..rows)
        .map(|_| ((unit() * vocab as f32) as usize).min(vocab - 1) as i32)
        .collect();
    let weights = (0..rows).map(|_| unit() * 2.0 - 1.0).collect();
    Case {
        rows,
        vocab,
        logits,
        targets,
        weights,
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Forward values and the gradient of `sum_i w_i log p_i` with respect to the logits.
fn run(
    case: &Case,
    device: &Device,
    op: fn(Tensor<2>, Tensor<1, Int>) -> Tensor<1>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let logits = Tensor::<2>::from_data(
        TensorData::new(case.logits.clone(), [case.rows, case.vocab]),
        device,
    );
    let targets =
        Tensor::<1, Int>::from_data(TensorData::new(case.targets.clone(), [case.rows]), device);
    if !device.is_autodiff() {
        return (values(op(logits, targets)), None);
    }
    let logits = logits.require_grad();
    let weights =
        Tensor::<1>::from_data(TensorData::new(case.weights.clone(), [case.rows]), device);
    let logprobs = op(logits.clone(), targets);
    let grads = (logprobs.clone() * weights).sum().backward();
    let grad = logits.grad(&grads).expect("the logits have a gradient");
    (values(logprobs), Some(values(grad)))
}

fn assert_close(what: &str, fused: &[f32], plain: &[f32], tolerance: f32) {
    assert_eq!(fused.len(), plain.len(), "{what}: lengths");
    for (i, (a, b)) in fused.iter().zip(plain).enumerate() {
        assert!(
            (a - b).abs() <= tolerance,
            "{what}[{i}]: fused {a} against plain {b}"
        );
    }
}

#[test]
fn the_fused_operation_agrees_with_the_plain_one_forward_and_backward() {
    let shapes = [
        (1, 1),
        (3, 7),
        (5, 16),
        (17, 33),
        (64, 1000),
        (40, 4096),
        (9, 4099),
    ];
    for (seed, &(rows, vocab)) in shapes.iter().enumerate() {
        let case = case(rows, vocab, seed as u64);
        for device in [Device::flex(), Device::flex().autodiff()] {
            let (fused, fused_grad) = run(&case, &device, target_logprobs);
            let (plain, plain_grad) = run(&case, &device, target_logprobs_plain);
            let what = format!("{rows} x {vocab}, autodiff {}", device.is_autodiff());
            assert_close(&format!("log p, {what}"), &fused, &plain, 1e-5);
            if let (Some(fused), Some(plain)) = (fused_grad, plain_grad) {
                assert_close(&format!("gradient, {what}"), &fused, &plain, 1e-5);
            }
        }
    }
}

#[test]
fn an_untracked_input_under_autodiff_gives_the_plain_values() {
    // Untracked logits (no require_grad) under autodiff: the operation still answers, and the
    // graph it builds has nothing to differentiate.
    let case = case(4, 10, 99);
    let device = Device::flex().autodiff();
    let logits = Tensor::<2>::from_data(TensorData::new(case.logits.clone(), [4, 10]), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(case.targets.clone(), [4]), &device);
    let fused = values(target_logprobs(logits.clone(), targets.clone()));
    let plain = values(target_logprobs_plain(logits, targets));
    assert_close("untracked", &fused, &plain, 1e-5);
}

#[test]
fn the_fused_gelu_agrees_with_burns_forward_and_backward() {
    for (seed, shape) in [[1usize, 1, 1], [2, 3, 5], [16, 7, 513], [4, 128, 512]]
        .into_iter()
        .enumerate()
    {
        let count: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed as u64);
        let mut unit = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let inputs: Vec<f32> = (0..count).map(|_| (unit() - 0.5) * 14.0).collect();
        let weights: Vec<f32> = (0..count).map(|_| unit() - 0.5).collect();
        let run = |op: fn(Tensor<3>) -> Tensor<3>| {
            let device = Device::flex().autodiff();
            let x = Tensor::<3>::from_data(TensorData::new(inputs.clone(), shape), &device)
                .require_grad();
            let w = Tensor::<3>::from_data(TensorData::new(weights.clone(), shape), &device);
            let y = op(x.clone());
            let grads = (y.clone() * w).sum().backward();
            let grad = x.grad(&grads).expect("the input has a gradient");
            (values(y), values(grad))
        };
        let (fused, fused_grad) = run(gelu);
        let (plain, plain_grad) = run(burn::tensor::activation::gelu);
        assert_close(&format!("gelu {shape:?}"), &fused, &plain, 1e-5);
        assert_close(&format!("gelu' {shape:?}"), &fused_grad, &plain_grad, 1e-5);
    }
}

#[test]
fn the_fused_attention_agrees_with_burns_forward_and_backward() {
    // (batch, seq, heads, head_dim, pads): a pad as long as its row (every query hidden), a
    // head size of 5 (not a multiple of the lanes), the policy's own 128 x 4 x 32.
    let cases: [(usize, usize, usize, usize, Vec<usize>); 5] = [
        (1, 1, 1, 1, vec![0]),
        (2, 9, 3, 5, vec![0, 4]),
        (3, 17, 2, 8, vec![17, 0, 1]),
        (4, 33, 4, 16, vec![0, 0, 32, 5]),
        (2, 128, 4, 32, vec![0, 40]),
    ];
    for (seed, (batch, seq, heads, head_dim, pads)) in cases.into_iter().enumerate() {
        let shape = [batch, seq, 3 * heads * head_dim];
        let count: usize = shape.iter().product();
        let out_count = batch * seq * heads * head_dim;
        let mut rng = ChaCha8Rng::seed_from_u64(200 + seed as u64);
        let mut unit = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let inputs: Vec<f32> = (0..count).map(|_| (unit() - 0.5) * 6.0).collect();
        let weights: Vec<f32> = (0..out_count).map(|_| unit() - 0.5).collect();
        let out_shape = [batch, seq, heads * head_dim];
        let what = format!("{batch} x {seq}, {heads} heads of {head_dim}, pads {pads:?}");
        for device in [Device::flex(), Device::flex().autodiff()] {
            let run = |op: fn(Tensor<3>, &[usize], usize) -> Tensor<3>| {
                let x = Tensor::<3>::from_data(TensorData::new(inputs.clone(), shape), &device);
                if !device.is_autodiff() {
                    return (values(op(x, &pads, heads)), None);
                }
                let x = x.require_grad();
                let w =
                    Tensor::<3>::from_data(TensorData::new(weights.clone(), out_shape), &device);
                let y = op(x.clone(), &pads, heads);
                let grads = (y.clone() * w).sum().backward();
                let grad = x.grad(&grads).expect("the projection has a gradient");
                (values(y), Some(values(grad)))
            };
            let (fused, fused_grad) = run(causal_attention);
            let (plain, plain_grad) = run(causal_attention_plain);
            let what = format!("{what}, autodiff {}", device.is_autodiff());
            assert_close(&format!("attention, {what}"), &fused, &plain, 1e-5);
            if let (Some(fused), Some(plain)) = (fused_grad, plain_grad) {
                assert_close(&format!("its gradient, {what}"), &fused, &plain, 1e-5);
            }
        }
    }
}
