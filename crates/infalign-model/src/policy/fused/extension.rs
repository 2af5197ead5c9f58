//! The fused operations as a burn backend extension: flex runs [`super::kernel`], and autodiff
//! over flex records one node per operation whose backward is the kernel's backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Backend, Dispatch, Flex};
use burn::tensor::{Int, Tensor, TensorData};

use super::attention::{self, Shape};
use super::kernel;

/// Backends that compute `log p(target)` of `[rows, vocab]` logits, and the exact GELU, in one
/// fused operation each.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBackend: Backend {
    /// `[rows]`: `logits[i, targets[i]] - logsumexp(logits[i, ..])`.
    fn target_logprobs(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self>;

    /// `[rows, vocab]`: the gradient of `sum_i grads[i] * logprobs[i]` with respect to `logits`,
    /// given the forward's output `logprobs`.
    fn target_logprobs_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        logprobs: FloatTensor<Self>,
        grads: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The exact GELU, `x Phi(x)`, element by element.
    fn exact_gelu(input: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grads * GELU'(input)`, element by element.
    fn exact_gelu_backward(input: FloatTensor<Self>, grads: FloatTensor<Self>)
        -> FloatTensor<Self>;

    /// Causal self-attention over the fused projection `qkv` (`[batch, seq, 3 d]`, `heads`
    /// heads), keys `j < pads[b]` hidden from row `b`: the output `[batch, seq, d]` and each
    /// query's logsumexp `[batch, heads, seq]` (what the backward needs).
    fn causal_attention(
        qkv: FloatTensor<Self>,
        pads: IntTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `[batch, seq, 3 d]`: the gradient of `sum(grads * output)` with respect to `qkv`, given
    /// the forward's output and logsumexp.
    fn causal_attention_backward(
        qkv: FloatTensor<Self>,
        pads: IntTensor<Self>,
        heads: usize,
        output: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grads: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The values of a flex tensor as f32, row-major (borrowed when they already are).
fn with_f32<R>(tensor: &FlexTensor, read: impl FnOnce(&[f32]) -> R) -> R {
    match tensor.as_slice::<f32>() {
        Some(values) => read(values),
        None => {
            let values = tensor.clone().into_data().convert::<f32>();
            read(values.as_slice::<f32>().unwrap_or_default())
        }
    }
}

/// Token ids as indices; a negative id becomes one no vocabulary has (the kernel answers NaN).
fn indices(tensor: &FlexTensor) -> Vec<usize> {
    let values = tensor.clone().into_data().convert::<i64>();
    values
        .as_slice::<i64>()
        .unwrap_or_default()
        .iter()
        .map(|&id| usize::try_from(id).unwrap_or(usize::MAX))
        .collect()
}

fn rows_and_vocab(logits: &FlexTensor) -> (usize, usize) {
    match logits.layout().shape().as_slice() {
        [rows, vocab] => (*rows, *vocab),
        _ => (0, 0),
    }
}

/// The attention's shape from `qkv`'s (`[batch, seq, 3 heads head_dim]`; the caller,
/// [`super::causal_attention`], has checked that it divides).
fn attention_shape(qkv: &FlexTensor, heads: usize) -> Shape {
    let [batch, seq, width] = match qkv.layout().shape().as_slice() {
        [batch, seq, width] => [*batch, *seq, *width],
        _ => [0; 3],
    };
    Shape {
        batch,
        seq,
        heads,
        head_dim: width / 3 / heads.max(1),
    }
}

impl FusedBackend for Flex {
    fn target_logprobs(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        let (_, vocab) = rows_and_vocab(&logits);
        let targets = indices(&targets);
        let out = with_f32(&logits, |values| {
            kernel::target_logprobs(values, vocab, &targets)
        });
        let rows = out.len();
        FlexTensor::from_data(TensorData::new(out, [rows]))
    }

    fn target_logprobs_backward(
        logits: FlexTensor,
        targets: FlexTensor,
        logprobs: FlexTensor,
        grads: FlexTensor,
    ) -> FlexTensor {
        let (rows, vocab) = rows_and_vocab(&logits);
        let targets = indices(&targets);
        let out = with_f32(&logits, |values| {
            with_f32(&logprobs, |logprobs| {
                with_f32(&grads, |grads| {
                    kernel::target_logprobs_backward(values, vocab, &targets, logprobs, grads)
                })
            })
        });
        FlexTensor::from_data(TensorData::new(out, [rows, vocab]))
    }

    fn exact_gelu(input: FlexTensor) -> FlexTensor {
        let shape = input.layout().shape().clone();
        let out = with_f32(&input, kernel::gelu);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn exact_gelu_backward(input: FlexTensor, grads: FlexTensor) -> FlexTensor {
        let shape = input.layout().shape().clone();
        let out = with_f32(&input, |input| {
            with_f32(&grads, |grads| kernel::gelu_backward(input, grads))
        });
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn causal_attention(
        qkv: FlexTensor,
        pads: FlexTensor,
        heads: usize,
    ) -> (FlexTensor, FlexTensor) {
        let shape = attention_shape(&qkv, heads);
        let pads = indices(&pads);
        let (out, lse) = with_f32(&qkv, |qkv| attention::causal_attention(qkv, &pads, &shape));
        let Shape {
            batch,
            seq,
            head_dim,
            ..
        } = shape;
        (
            FlexTensor::from_data(TensorData::new(out, [batch, seq, heads * head_dim])),
            FlexTensor::from_data(TensorData::new(lse, [batch, heads, seq])),
        )
    }

    fn causal_attention_backward(
        qkv: FlexTensor,
        pads: FlexTensor,
        heads: usize,
        output: FlexTensor,
        lse: FlexTensor,
        grads: FlexTensor,
    ) -> FlexTensor {
        let shape = attention_shape(&qkv, heads);
        let dims = qkv.layout().shape().clone();
        let pads = indices(&pads);
        let out = with_f32(&qkv, |qkv| {
            with_f32(&output, |output| {
                with_f32(&lse, |lse| {
                    with_f32(&grads, |grads| {
                        attention::causal_attention_backward(qkv, &pads, &shape, output, lse, grads)
                    })
                })
            })
        });
        FlexTensor::from_data(TensorData::new(out, dims))
    }
}

/// The autodiff node: its state is what the backward needs (the logits, the targets, the
/// forward's output), and its backward is the inner backend's fused backward.
#[derive(Debug)]
struct TargetLogprobNode;

impl<B: FusedBackend> Backward<B, 1> for TargetLogprobNode {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let (logits, targets, logprobs) = ops.state;
            let grad_logits = B::target_logprobs_backward(logits, targets, logprobs, grad);
            grads.register::<B>(parent.id, grad_logits);
        }
    }
}

/// GELU's node: the input is its state.
#[derive(Debug)]
struct GeluNode;

impl<B: FusedBackend> Backward<B, 1> for GeluNode {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, B::exact_gelu_backward(ops.state, grad));
        }
    }
}

/// Attention's node: the projection, the pads, the head count, the forward's output and
/// logsumexp.
#[derive(Debug)]
struct AttentionNode;

type AttentionState<B> = (
    FloatTensor<B>,
    IntTensor<B>,
    usize,
    FloatTensor<B>,
    FloatTensor<B>,
);

impl<B: FusedBackend> Backward<B, 1> for AttentionNode {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let (qkv, pads, heads, output, lse) = ops.state;
            let grad_qkv = B::causal_attention_backward(qkv, pads, heads, output, lse, grad);
            grads.register::<B>(parent.id, grad_qkv);
        }
    }
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn target_logprobs(logits: FloatTensor<Self>, targets: IntTensor<B>) -> FloatTensor<Self> {
        match TargetLogprobNode
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let output = B::target_logprobs(logits.clone(), targets.clone());
                prep.finish((logits, targets, output.clone()), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::target_logprobs(logits.into_primitive(), targets))
            }
        }
    }

    /// Not differentiated again (nothing takes a second derivative): the inner backend's
    /// gradient, as a constant.
    fn target_logprobs_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<B>,
        logprobs: FloatTensor<Self>,
        grads: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let inner = B::target_logprobs_backward(
            logits.into_primitive(),
            targets,
            logprobs.into_primitive(),
            grads.into_primitive(),
        );
        FloatTensor::<Self>::new(inner)
    }

    fn exact_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluNode
            .prepare::<C>([input.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = input.into_primitive();
                let output = B::exact_gelu(input.clone());
                prep.finish(input, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::exact_gelu(input.into_primitive())),
        }
    }

    /// Not differentiated again: the inner backend's gradient, as a constant.
    fn exact_gelu_backward(
        input: FloatTensor<Self>,
        grads: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let inner = B::exact_gelu_backward(input.into_primitive(), grads.into_primitive());
        FloatTensor::<Self>::new(inner)
    }

    /// The output is tracked; the logsumexp is a constant (nothing differentiates through it).
    fn causal_attention(
        qkv: FloatTensor<Self>,
        pads: IntTensor<B>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match AttentionNode
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let qkv = qkv.into_primitive();
                let (output, lse) = B::causal_attention(qkv.clone(), pads.clone(), heads);
                let state = (qkv, pads, heads, output.clone(), lse.clone());
                (prep.finish(state, output), FloatTensor::<Self>::new(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (output, lse) = B::causal_attention(qkv.into_primitive(), pads, heads);
                (prep.finish(output), FloatTensor::<Self>::new(lse))
            }
        }
    }

    /// Not differentiated again: the inner backend's gradient, as a constant.
    fn causal_attention_backward(
        qkv: FloatTensor<Self>,
        pads: IntTensor<B>,
        heads: usize,
        output: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grads: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let inner = B::causal_attention_backward(
            qkv.into_primitive(),
            pads,
            heads,
            output.into_primitive(),
            lse.into_primitive(),
            grads.into_primitive(),
        );
        FloatTensor::<Self>::new(inner)
    }
}

/// The fused log-probability of `[rows, vocab]` logits (flex, with or without autodiff).
pub(super) fn target_logprobs(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let output = <Dispatch as FusedBackend>::target_logprobs(
        logits.into_dispatch(),
        targets.into_dispatch(),
    );
    Tensor::from_dispatch(output)
}

/// The fused GELU (flex, with or without autodiff).
pub(super) fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::exact_gelu(
        input.into_dispatch(),
    ))
}

/// The fused causal self-attention of `[batch, seq, 3 d]` (flex, with or without autodiff).
pub(super) fn causal_attention(qkv: Tensor<3>, pads: Tensor<1, Int>, heads: usize) -> Tensor<3> {
    let (output, _lse) = <Dispatch as FusedBackend>::causal_attention(
        qkv.into_dispatch(),
        pads.into_dispatch(),
        heads,
    );
    Tensor::from_dispatch(output)
}
