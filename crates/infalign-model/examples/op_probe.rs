//! Where the training step's forward pass goes on flex: each op at the benchmark's shapes
//! (batch 16, length 128, d_model 128, 4 heads, MLP 512, vocab 4096), timed alone. Prints
//! `op median_ms GFLOP/s` lines; `scripts/bench_ops_torch.py` prints the same for PyTorch.
//!
//! `cargo run -p infalign-model --release --example op_probe [-- --repeats 20]`

mod common;

use burn::nn::LayerNormConfig;
use burn::tensor::activation::{gelu, log_softmax};
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use infalign_model::backend::cpu_device;
use infalign_model::policy::{gelu as fused_gelu, target_logprobs};

use common::{median, time};

#[derive(Parser)]
struct Options {
    /// Timed runs of each op (after one warm-up run).
    #[arg(long, default_value_t = 20, value_parser = common::positive)]
    repeats: usize,
}

fn main() {
    let repeats = Options::parse().repeats;
    let device = cpu_device();
    let (b, l, d, h, f, v) = (16usize, 128usize, 128usize, 4usize, 512usize, 4096usize);
    let rows = b * l;
    let normal = Distribution::Normal(0.0, 1.0);
    let x2 = Tensor::<2>::random([rows, d], normal, &device);
    let x3 = Tensor::<3>::random([b, l, d], normal, &device);
    let hidden2 = Tensor::<2>::random([rows, f], normal, &device);
    let hidden3 = Tensor::<3>::random([b, l, f], normal, &device);
    let w_qkv = Tensor::<2>::random([d, 3 * d], normal, &device);
    let w_in = Tensor::<2>::random([d, f], normal, &device);
    let w_out = Tensor::<2>::random([f, d], normal, &device);
    let embeddings = Tensor::<2>::random([v, d], normal, &device);
    let logits = Tensor::<3>::random([b, l, v], normal, &device);
    let q = Tensor::<4>::random([b, h, l, d / h], normal, &device);
    let k = Tensor::<4>::random([b, h, l, d / h], normal, &device);
    let vv = Tensor::<4>::random([b, h, l, d / h], normal, &device);
    let tokens: Vec<i32> = (0..rows).map(|i| (i * 37 % v) as i32).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, l]), &device);
    let norm = LayerNormConfig::new(d).init(&device);
    let embeddings_t = Tensor::<2>::random([d, v], normal, &device);
    let column = Tensor::<3>::random([b, l, 1], normal, &device);
    let targets: Vec<i32> = (0..rows).map(|i| (i * 131 % v) as i32).collect();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, l, 1]), &device);
    let (logits_rows, targets_rows) = (
        logits.clone().reshape([rows, v]),
        targets.clone().reshape([rows]),
    );
    let options = AttentionModuleOptions {
        scale: Some(1.0 / ((d / h) as f64).sqrt()),
        softcap: None,
        is_causal: true,
    };
    let flops = |m: usize, k: usize, n: usize| 2.0 * (m * k * n) as f64;
    type Op<'a> = (&'a str, f64, Box<dyn Fn() + 'a>);
    let ops: Vec<Op> = vec![
        (
            "linear qkv [2048x128]x[128x384]",
            flops(rows, d, 3 * d),
            Box::new(|| {
                let _ = linear(x2.clone(), w_qkv.clone(), None);
            }),
        ),
        (
            "linear mlp_in [2048x128]x[128x512]",
            flops(rows, d, f),
            Box::new(|| {
                let _ = linear(x2.clone(), w_in.clone(), None);
            }),
        ),
        (
            "linear mlp_out [2048x512]x[512x128]",
            flops(rows, f, d),
            Box::new(|| {
                let _ = linear(hidden2.clone(), w_out.clone(), None);
            }),
        ),
        (
            "logits [2048x128]x[128x4096]^T",
            flops(rows, d, v),
            Box::new(|| {
                let _ = linear(x2.clone(), embeddings.clone().transpose(), None);
            }),
        ),
        (
            "attention causal [16,4,128,32]",
            2.0 * flops(b * h * l, d / h, l),
            Box::new(|| {
                let _ = attention(q.clone(), k.clone(), vv.clone(), None, None, options);
            }),
        ),
        (
            "layer_norm [16,128,128]",
            0.0,
            Box::new(|| {
                let _ = norm.forward(x3.clone());
            }),
        ),
        (
            "gelu [16,128,512]",
            0.0,
            Box::new(|| {
                let _ = gelu(hidden3.clone());
            }),
        ),
        (
            "gelu, ours (fused, exact) [16,128,512]",
            0.0,
            Box::new(|| {
                let _ = fused_gelu(hidden3.clone());
            }),
        ),
        (
            "log_softmax [16,128,4096]",
            0.0,
            Box::new(|| {
                let _ = log_softmax(logits.clone(), 2);
            }),
        ),
        (
            "logits, contiguous [128x4096] weight",
            flops(rows, d, v),
            Box::new(|| {
                let _ = linear(x2.clone(), embeddings_t.clone(), None);
            }),
        ),
        (
            "log p(target): max, exp, sum, log, gather",
            0.0,
            Box::new(|| {
                let max = logits.clone().max_dim(2);
                let lse = (logits.clone() - max.clone()).exp().sum_dim(2).log() + max;
                let _ = logits.clone().gather(2, targets.clone()) - lse;
            }),
        ),
        (
            "log p(target), ours (fused) [2048 x 4096]",
            0.0,
            Box::new(|| {
                let _ = target_logprobs(logits_rows.clone(), targets_rows.clone());
            }),
        ),
        (
            "exp [16,128,4096]",
            0.0,
            Box::new(|| {
                let _ = logits.clone().exp();
            }),
        ),
        (
            "max_dim [16,128,4096]",
            0.0,
            Box::new(|| {
                let _ = logits.clone().max_dim(2);
            }),
        ),
        (
            "sub broadcast [16,128,4096] - [16,128,1]",
            0.0,
            Box::new(|| {
                let _ = logits.clone() - column.clone();
            }),
        ),
        (
            "sum_dim [16,128,4096]",
            0.0,
            Box::new(|| {
                let _ = logits.clone().sum_dim(2);
            }),
        ),
        (
            "embedding gather [16,128] of [4096,128]",
            0.0,
            Box::new(|| {
                let _ = embedding(embeddings.clone(), tokens.clone());
            }),
        ),
    ];
    for (name, flop, op) in &ops {
        let ms = median(&time(repeats, op)) * 1e3;
        let rate = if *flop > 0.0 {
            format!("{:7.1} GFLOP/s", flop / ms / 1e6)
        } else {
            String::new()
        };
        println!("{name:42} {ms:8.3} ms {rate}");
    }
}
