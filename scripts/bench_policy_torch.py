#!/usr/bin/env python3
"""PyTorch peer of the Rust policy benchmark (crates/infalign-model/examples/policy_bench.rs).

Builds the same decoder in PyTorch (pre-norm blocks, learned positions, fused q/k/v, exact GELU,
4x MLP, tied embeddings, the layout of `scripts/safetensors_reference.py`), and times the same
three pieces of work on the CPU:

- sampling `--batch` replies of `--new-tokens` tokens after a `--prompt-tokens` prompt, with a
  KV cache and without one (the whole sequence recomputed at every step), at temperature 1 with
  no top-k or top-p, never stopping early (the Rust side is given no end-of-turn token either);
- one training step: cross-entropy over a batch of windows of context + 1 tokens, backward,
  AdamW.

Each is timed as the median of `--repeats` runs after one warm-up run, as the Rust side does.
With `--rust-example PATH` (the built example, e.g. target/release/examples/policy_bench) it runs
the Rust benchmark on the same shape in the same invocation, one side after the other, and
prints both medians with their ratio. Both sides use `--threads` CPU threads (PyTorch through
`torch.set_num_threads`, burn's flex backend through rayon's RAYON_NUM_THREADS).

Usage: python scripts/bench_policy_torch.py [--rust-example PATH] [--repeats 7] [--threads 2]
           [--d-model 128] [--layers 4] [--vocab 4096] [--context 128] [--batch 16]
           [--new-tokens 48] [--prompt-tokens 16] [--json]
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, d_ff)
        self.mlp_out = nn.Linear(d_ff, d_model)

    def heads(self, x):
        batch, length, width = x.shape
        return x.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

    def forward(self, x, cache=None, mask=None):
        """`cache` is None (no cache), or a list holding this block's (keys, values) so far,
        updated in place. `mask` (boolean, `[batch, 1, queries, keys]`, True where a query may
        attend to a key) replaces the causal rule, for left-padded batches."""
        q, k, v = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        if cache is not None:
            if cache:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        if mask is not None:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            # With a cache, a one-token step attends to every earlier position: no mask needed.
            causal = x.shape[1] > 1
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        batch, _, length, _ = attended.shape
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, length, -1))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))


class Policy(nn.Module):
    def __init__(self, vocab, d_model, layers, context, n_heads=None, d_ff=None):
        super().__init__()
        n_heads = n_heads or max(d_model // 32, 1)  # as PolicyConfig::new
        self.token_embedding = nn.Embedding(vocab, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff or 4 * d_model) for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(d_model)

    def forward(self, tokens, start=0, caches=None, positions=None, mask=None):
        """`positions` (`[batch, length]`) and `mask` (see `Block.forward`) serve left-padded
        batches; without them the rows start at position `start`, unpadded."""
        if positions is None:
            positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[layer], mask)
        return self.final_norm(x) @ self.token_embedding.weight.T


@torch.inference_mode()
def sample(policy, prompts, new_tokens, use_cache, generator):
    tokens = prompts
    if use_cache:
        # As infalign's Sampler: the prompt pass runs each distinct prompt once and copies its
        # keys and values to the rows that repeat it.
        caches = [[] for _ in policy.blocks]
        distinct, of_row = torch.unique(prompts, dim=0, return_inverse=True)
        logits = policy(distinct, 0, caches)[:, -1][of_row]
        for cache in caches:
            cache[:] = [cache[0][of_row], cache[1][of_row]]
    else:
        caches = None
        logits = policy(tokens)[:, -1]
    for step in range(new_tokens):
        probabilities = torch.softmax(logits, dim=-1)
        chosen = torch.multinomial(probabilities, 1, generator=generator)
        tokens = torch.cat([tokens, chosen], dim=1)
        if step + 1 == new_tokens:
            break
        if use_cache:
            logits = policy(chosen, tokens.shape[1] - 1, caches)[:, -1]
        else:
            logits = policy(tokens)[:, -1]
    return tokens


def timings(repeats, work, device="cpu"):
    """Seconds of each of `repeats` runs of `work`, after one warm-up run (on a GPU, each run
    waits for the device)."""
    return timings_with_cpu(repeats, work, device)[0]


def timings_with_cpu(repeats, work, device="cpu"):
    """`timings`, and the CPU seconds this process spent over the timed runs (all threads)."""

    def run():
        work()
        if device != "cpu":
            torch.cuda.synchronize()

    run()
    seconds = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds, time.process_time() - cpu_start


def timed(repeats, work):
    return statistics.median(timings(repeats, work))


def sample_work(policy, args, use_cache, device="cpu"):
    """The sampling benchmark (the same prompt as policy_bench.rs): a function and the number
    of tokens it draws."""
    prompt = [(t * 37) % args.vocab for t in range(args.prompt_tokens)]
    prompts = torch.tensor([prompt] * args.batch, device=device)
    generator = torch.Generator(device=device).manual_seed(1)
    work = lambda: sample(policy, prompts, args.new_tokens, use_cache, generator)  # noqa: E731
    return work, args.batch * args.new_tokens


def train_work(policy, args, device="cpu"):
    """One training step on the same windows as policy_bench.rs: a function and the number of
    target tokens it trains on."""
    windows = torch.tensor(
        [
            [(row * 131 + t * 17) % args.vocab for t in range(args.context + 1)]
            for row in range(args.batch)
        ],
        device=device,
    )
    inputs, targets = windows[:, :-1], windows[:, 1:]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = policy(inputs)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    return step, targets.numel()


def torch_rows(args):
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    policy = Policy(args.vocab, args.d_model, args.layers, args.context)
    rows = []
    for use_cache, name in [(True, "sample (KV cache)"), (False, "sample (no cache)")]:
        work, tokens = sample_work(policy, args, use_cache)
        rows.append((name, timed(args.repeats, work), tokens))
    step, tokens = train_work(policy, args)
    rows.append(("train step", timed(args.repeats, step), tokens))
    return rows


def rust_rows(args):
    command = [
        args.rust_example, "--device", "cpu", "--json",
        "--repeats", str(args.repeats), "--d-model", str(args.d_model),
        "--layers", str(args.layers), "--vocab", str(args.vocab),
        "--context", str(args.context), "--batch", str(args.batch),
        "--new-tokens", str(args.new_tokens), "--prompt-tokens", str(args.prompt_tokens),
    ]  # fmt: skip
    environment = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    output = subprocess.run(command, env=environment, capture_output=True, text=True)
    if output.returncode != 0:
        raise SystemExit(f"{args.rust_example} failed:\n{output.stderr}")
    rows = {}
    for line in output.stdout.splitlines():
        record = json.loads(line)
        rows[record["work"]] = record
    return rows


def add_shape_arguments(parser):
    """The model's and the workload's shape (defaults: policy_bench.rs's)."""
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prompt-tokens", type=int, default=16)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rust-example")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    add_shape_arguments(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.prompt_tokens + args.new_tokens > args.context:
        raise SystemExit("--prompt-tokens + --new-tokens must fit in --context")

    rust = rust_rows(args) if args.rust_example else {}
    rows = torch_rows(args)
    if not args.json:
        print(
            f"policy d_model {args.d_model} x {args.layers} layers, vocab {args.vocab}, "
            f"context {args.context}, batch {args.batch}, {args.new_tokens} new tokens, "
            f"{args.threads} threads, median of {args.repeats}; torch {torch.__version__}"
        )
        print(f"{'work':<18} {'burn flex':>12} {'PyTorch':>12} {'flex/torch':>11}")
    for work, seconds, tokens in rows:
        ours = rust.get(work, {}).get("median_s")
        if args.json:
            record = {"work": work, "torch_s": seconds, "tokens": tokens, "flex_s": ours}
            print(json.dumps(record))
            continue
        flex = f"{ours:10.4f} s" if ours is not None else f"{'-':>12}"
        ratio = f"{ours / seconds:10.2f}x" if ours is not None else f"{'-':>11}"
        print(f"{work:<18} {flex} {seconds:10.4f} s {ratio}")
    if not args.json:
        print("(ratio > 1: burn flex takes longer; tokens/s = tokens / median)")


if __name__ == "__main__":
    main()
