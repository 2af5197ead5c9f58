#!/usr/bin/env python3
"""The peer side of `cargo xtask bench`: one piece of work, timed, printed as one JSON line.

    bench_peer.py train|sample|ctrl|curve [--repeats 5] [--threads 2] [--device cpu|cuda]
                  [--work DIR] [--tokenizer FILE] [shape flags of bench_policy_torch.py]

- `train`: one training step of the small GPT of bench_policy_torch.py (forward, cross-entropy,
  backward, AdamW) on `--batch` windows of `--context` + 1 tokens;
- `sample`: `--batch` replies of `--new-tokens` tokens after a `--prompt-tokens` prompt, with a
  KV cache, temperature 1, never stopping early;
- `ctrl`: the CTRL step of crates/infalign-model/examples/ctrl_bench.rs, written in PyTorch for
  this benchmark: sample m replies to each of the step's prompts (KV cache, left-padded batch,
  stopping at end of turn), decode them with Hugging Face `tokenizers`, score them with
  `vaderSentiment`, calibrate against each prompt's reference rewards, apply normexp(t), compute
  log pi(y|x) under the policy and the frozen reference, RLOO advantages of
  `Phi(u) - beta * KL`, one REINFORCE step with per-tensor gradient-norm clipping and AdamW.
  It reads DIR/work.json and DIR/base.safetensors (written by `ctrl_bench --prepare DIR`) and
  the bundle's tokenizer.json (`--tokenizer`);
- `curve`: the win-rate-versus-KL curve in NumPy (bench_theory_numpy.py): normexp:12, N = 4,
  200 lambdas.

Output: `{"work", "side", "seconds": [...], "median_s", "units", "unit", ...}`, the shape the
Rust examples print, so the harness treats both sides alike. One warm-up run comes first,
untimed.
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def curve_work(args):
    from bench_theory_numpy import curve, grid

    lambdas = np.geomspace(1e-2, 1e3, 200)
    u, w = grid()
    side = f"NumPy {np.__version__}"
    return side, (lambda: curve(lambdas, u, w)), 200, "points", {}


def torch_setup(args):
    import torch

    torch.set_num_threads(args.threads)
    if args.flush_denormals:
        # Subnormal floats to zero, as our side does then too (on Intel CPUs PyTorch's matmuls
        # slow down ~10x on the subnormals a training step makes).
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_peer: --device cuda, but this PyTorch sees no CUDA device")
    name = f"PyTorch {torch.__version__}"
    extra = {}
    if args.device == "cuda":
        extra["gpu"] = torch.cuda.get_device_name(0)
        name += " CUDA"
    return name, extra


def policy_work(args):
    from bench_policy_torch import Policy, sample_work, train_work

    side, extra = torch_setup(args)
    policy = Policy(args.vocab, args.d_model, args.layers, args.context).to(args.device)
    if args.work_name == "sample":
        work, units = sample_work(policy, args, True, args.device)
    else:
        work, units = train_work(policy, args, args.device)
    return side, work, units, "tokens", extra


# --- the CTRL step --------------------------------------------------------------------------


def load_policy(path, device):
    """The policy `infalign safetensors` (or ctrl_bench --prepare) exported, in PyTorch."""
    import torch

    from bench_policy_torch import Policy
    from safetensors_reference import read_safetensors

    weights, metadata = read_safetensors(path)
    config = json.loads(metadata["infalign_policy"])
    policy = Policy(
        config["vocab_size"],
        config["d_model"],
        config["n_layers"],
        config["max_seq_len"],
        config["n_heads"],
        config["d_ff"],
    )
    state = {
        (name + ".weight" if name.endswith("_embedding") else name): torch.from_numpy(
            array.astype(np.float32)
        )
        for name, array in weights.items()
    }
    policy.load_state_dict(state)
    return policy.to(device), config


def attention_mask(pads, queries, keys, device):
    """`[batch, 1, queries, keys]`: a query (the last `queries` of `keys` positions) sees the
    keys up to itself that are not left padding; a padding query sees itself, so no row of
    the softmax is empty."""
    import torch

    pads = torch.tensor(pads, device=device)
    key = torch.arange(keys, device=device)
    query = torch.arange(keys - queries, keys, device=device)
    causal = key[None, :] <= query[:, None]
    real = key[None, :] >= pads[:, None]
    own = key[None, :] == query[:, None]
    return ((causal[None] & real[:, None, :]) | own[None])[:, None]


def generate(policy, prompts, stop, max_new_tokens, generator):
    """Replies to left-padded `prompts` with a KV cache, as infalign's Sampler draws them."""
    import torch

    device = policy.token_embedding.weight.device
    width = max(map(len, prompts))
    pads = [width - len(p) for p in prompts]
    grid = torch.tensor([[0] * pad + p for p, pad in zip(prompts, pads)], device=device)
    pads_t = torch.tensor(pads, device=device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    caches = [[] for _ in policy.blocks]
    with torch.inference_mode():
        # As infalign's Sampler: the prompt pass runs each distinct (pad, prompt) row once and
        # copies its keys and values to the rows that repeat it.
        rows = torch.cat([pads_t[:, None], grid], dim=1)
        distinct, of_row = torch.unique(rows, dim=0, return_inverse=True)
        distinct_pads = distinct[:, 0]
        positions = (torch.arange(width, device=device)[None, :] - distinct_pads[:, None]).clamp(min=0)
        mask = attention_mask(distinct_pads.tolist(), width, width, device)
        logits = policy(distinct[:, 1:], caches=caches, positions=positions, mask=mask)
        logits = logits[:, -1][of_row]
        for cache in caches:
            cache[:] = [cache[0][of_row], cache[1][of_row]]
        replies = [[] for _ in prompts]
        stopped = [False] * len(prompts)
        for step in range(max_new_tokens):
            chosen = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
            for row, token in enumerate(chosen[:, 0].tolist()):
                if not stopped[row]:
                    if token == stop:
                        stopped[row] = True
                    else:
                        replies[row].append(token)
            if all(stopped) or step + 1 == max_new_tokens:
                break
            keys = width + step + 1
            mask = attention_mask(pads, 1, keys, device)
            positions = (lengths + step)[:, None]
            logits = policy(chosen, caches=caches, positions=positions, mask=mask)[:, -1]
    return replies, stopped


def forced_batch(prompts, replies, device):
    """Prompt + reply rows, left-padded, with the reply tokens as the scored targets."""
    import torch

    sequences = [p + r for p, r in zip(prompts, replies)]
    length = max(len(s) - 1 for s in sequences)
    rows = len(sequences)
    inputs = np.zeros((rows, length), dtype=np.int64)
    positions = np.zeros((rows, length), dtype=np.int64)
    targets = np.zeros((rows, length), dtype=np.int64)
    scored = np.zeros((rows, length), dtype=np.float32)
    pads = []
    for row, (sequence, prompt) in enumerate(zip(sequences, prompts)):
        pad = length - (len(sequence) - 1)
        pads.append(pad)
        inputs[row, pad:] = sequence[:-1]
        positions[row, pad:] = np.arange(len(sequence) - 1)
        targets[row, pad:] = sequence[1:]
        scored[row, pad + len(prompt) - 1 :] = 1.0
    tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {
        "inputs": tensor(inputs),
        "positions": tensor(positions),
        "targets": tensor(targets),
        "scored": tensor(scored),
        "mask": attention_mask(pads, length, length, device),
    }


def sequence_logprobs(policy, batch):
    import torch

    logits = policy(batch["inputs"], positions=batch["positions"], mask=batch["mask"])
    picked = torch.log_softmax(logits, -1).gather(-1, batch["targets"][..., None])[..., 0]
    return (picked * batch["scored"]).sum(1)


def ctrl_work(args):
    import torch
    from tokenizers import Tokenizer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    side, extra = torch_setup(args)
    if not args.work or not args.tokenizer:
        raise SystemExit("bench_peer ctrl needs --work DIR (from ctrl_bench --prepare) and --tokenizer")
    work_dir = Path(args.work)
    work = json.loads((work_dir / "work.json").read_text())
    device = args.device
    policy, config = load_policy(work_dir / "base.safetensors", device)
    reference, _ = load_policy(work_dir / "base.safetensors", device)
    reference.requires_grad_(False)
    tokenizer = Tokenizer.from_file(args.tokenizer)
    analyzer = SentimentIntensityAnalyzer()
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=work["learning_rate"], weight_decay=0.0
    )
    tables = [np.asarray(t) for t in work["tables"]]
    m, t, beta = work["samples_per_prompt"], work["normexp_t"], work["beta"]
    max_new = work["max_new_tokens"]
    context = config["max_seq_len"] - max_new
    prompt_ids = [ids[-context:] for ids in work["prompt_ids"]]
    stop = work["end_of_turn"]
    # The same step only if the same model: reproduce the Rust side's log-probabilities of a
    # left-padded batch of base replies first. float32 sums over ~30 tokens in another order
    # differ by ~1e-5 relative; 2e-3 nats absolute is far below any real disagreement (a wrong
    # position, mask or weight shifts them by whole nats).
    check = work["check"]
    batch = forced_batch(check["prompt_ids"], check["response_ids"], device)
    with torch.no_grad():
        ours = sequence_logprobs(reference, batch).double().cpu().numpy()
    gap = float(np.max(np.abs(ours - np.asarray(check["logprobs"]))))
    if not gap <= 2e-3:
        raise SystemExit(
            f"bench_peer ctrl: the PyTorch model disagrees with infalign's on the check rows "
            f"(largest log-probability gap {gap:.3g} nats); not timing a different computation"
        )
    extra["check_max_gap_nats"] = gap
    rng = np.random.default_rng(0)
    generator = torch.Generator(device=device).manual_seed(0)
    lengths = []

    def step():
        chosen = rng.integers(0, len(prompt_ids), size=work["prompts_per_step"])
        rows = np.repeat(chosen, m)
        prompts = [prompt_ids[p] for p in rows]
        replies, stopped = generate(policy, prompts, stop, max_new, generator)
        texts = [tokenizer.decode(r, skip_special_tokens=False).strip() for r in replies]
        raw = np.array([analyzer.polarity_scores(text)["compound"] for text in texts])
        u = np.array(
            [
                (np.searchsorted(tables[p], r, "left") + np.searchsorted(tables[p], r, "right"))
                / (2 * len(tables[p]))
                for p, r in zip(rows, raw)
            ]
        )
        scores = np.exp(-t * (1 - u)) * -np.expm1(-t * u) / -np.expm1(-t)
        replies = [r + [stop] if s else r for r, s in zip(replies, stopped)]
        lengths.append(float(np.mean([len(r) for r in replies])))
        batch = forced_batch(prompts, replies, device)
        with torch.no_grad():
            old = sequence_logprobs(policy, batch)
            ref = sequence_logprobs(reference, batch)
        kl = (old - ref).double().cpu().numpy()
        groups = (scores - beta * kl).reshape(-1, m)
        advantages = groups - (groups.sum(1, keepdims=True) - groups) / (m - 1)
        advantage = torch.tensor(advantages.ravel(), dtype=torch.float32, device=device)
        loss = -(sequence_logprobs(policy, batch) * advantage).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for parameter in policy.parameters():
            torch.nn.utils.clip_grad_norm_([parameter], work["grad_clip"])
        optimizer.step()
        return float(loss.detach())

    extra["mean_reply_tokens"] = lengths
    return side, step, m * work["prompts_per_step"], "replies", extra


def main():
    from bench_policy_torch import add_shape_arguments, timings_with_cpu

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work_name", choices=["train", "sample", "ctrl", "curve"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--flush-denormals", action="store_true")
    parser.add_argument("--work", help="ctrl: the directory ctrl_bench --prepare wrote")
    parser.add_argument("--tokenizer", help="ctrl: the bundle's tokenizer.json")
    add_shape_arguments(parser)
    args = parser.parse_args()

    make = {"curve": curve_work, "train": policy_work, "sample": policy_work, "ctrl": ctrl_work}
    side, work, units, unit, extra = make[args.work_name](args)
    # NumPy's curve runs on the CPU whatever --device says: nothing to wait for.
    device = "cpu" if args.work_name == "curve" else args.device
    seconds, cpu_s = timings_with_cpu(args.repeats, work, device)
    if "mean_reply_tokens" in extra:
        extra["mean_reply_tokens"] = extra["mean_reply_tokens"][1:]  # drop the warm-up step's
    names = {"train": "train step", "sample": "sample (KV cache)", "ctrl": "ctrl step",
             "curve": "win-rate curve"}  # fmt: skip
    record = {
        "work": names[args.work_name],
        "side": side,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "units": units,
        "unit": unit,
        "threads": args.threads,
        "cpu_s": cpu_s,
        **extra,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
