#!/usr/bin/env python3
"""PyTorch twin of crates/infalign-model/examples/op_probe.rs: each op of the training step's
forward pass at the benchmark's shapes (batch 16, length 128, d_model 128, 4 heads, MLP 512,
vocab 4096), timed alone on the CPU, median of `--repeats` after a warm-up.

Usage: python scripts/bench_ops_torch.py [--repeats 20] [--threads 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, l, d, h, f, v = 16, 128, 128, 4, 512, 4096
    rows = b * l
    x2, x3 = torch.randn(rows, d), torch.randn(b, l, d)
    hidden2, hidden3 = torch.randn(rows, f), torch.randn(b, l, f)
    w_qkv, w_in, w_out = torch.randn(3 * d, d), torch.randn(f, d), torch.randn(d, f)
    embeddings, logits = torch.randn(v, d), torch.randn(b, l, v)
    q, k, vv = (torch.randn(b, h, l, d // h) for _ in range(3))
    tokens = (torch.arange(rows) * 37 % v).reshape(b, l)
    targets = (torch.arange(rows) * 131 % v).reshape(b, l, 1)
    column = torch.randn(b, l, 1)
    norm = torch.nn.LayerNorm(d)
    flops = lambda m, k, n: 2.0 * m * k * n  # noqa: E731
    ops = [
        ("linear qkv [2048x128]x[128x384]", flops(rows, d, 3 * d), lambda: F.linear(x2, w_qkv)),
        ("linear mlp_in [2048x128]x[128x512]", flops(rows, d, f), lambda: F.linear(x2, w_in)),
        ("linear mlp_out [2048x512]x[512x128]", flops(rows, f, d), lambda: F.linear(hidden2, w_out)),
        ("logits [2048x128]x[128x4096]^T", flops(rows, d, v), lambda: F.linear(x2, embeddings)),
        ("attention causal [16,4,128,32]", 2 * flops(b * h * l, d // h, l),
         lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=True)),
        ("layer_norm [16,128,128]", 0, lambda: norm(x3)),
        ("gelu [16,128,512]", 0, lambda: F.gelu(hidden3)),
        ("log_softmax [16,128,4096]", 0, lambda: torch.log_softmax(logits, 2)),
        ("log p(target): max, exp, sum, log, gather", 0,
         lambda: logits.gather(2, targets) - torch.logsumexp(logits, 2, keepdim=True)),
        ("exp [16,128,4096]", 0, lambda: logits.exp()),
        ("max_dim [16,128,4096]", 0, lambda: logits.amax(2, keepdim=True)),
        ("sub broadcast [16,128,4096] - [16,128,1]", 0, lambda: logits - column),
        ("sum_dim [16,128,4096]", 0, lambda: logits.sum(2, keepdim=True)),
        ("embedding gather [16,128] of [4096,128]", 0, lambda: F.embedding(tokens, embeddings)),
    ]  # fmt: skip
    with torch.no_grad():
        for name, flop, op in ops:
            op()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                op()
                times.append(time.perf_counter() - start)
            ms = 1e3 * statistics.median(times)
            rate = f"{flop / ms / 1e6:7.1f} GFLOP/s" if flop else ""
            print(f"{name:42} {ms:8.3f} ms {rate}")


if __name__ == "__main__":
    main()
