#!/usr/bin/env python3
"""A NumPy reference forward pass over a policy exported by `infalign safetensors`.

It shows Python users how the exported tensors fit together, and the test
`crates/infalign-model/tests/safetensors_python.rs` uses it to check that the export means
exactly what the Rust model computes.

    scripts/safetensors_reference.py FILE TOKEN [TOKEN ...]

prints, as JSON, `log p(token[i+1] | token[..=i])` for every position under the exported policy.

The file is read directly (8-byte little-endian header length, JSON header, raw little-endian
tensors), so only NumPy is needed. Layout (PyTorch's conventions): `token_embedding` [V, D]
(tied: also the output projection), `position_embedding` [T, D], per block
`blocks.{i}.attn_norm`, `qkv` (fused q, k, v: [3D, D]), `attn_out`, `mlp_norm`, `mlp_in`,
`mlp_out`, then `final_norm`; linear weights are [out, in]; layer norms have `weight` and `bias`
(epsilon 1e-5); attention is causal with `n_heads` heads scaled by 1/sqrt(head_dim); the MLP uses
the exact (erf) GELU. The policy's shape is JSON under the metadata key `infalign_policy`.
"""

import json
import math
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64}


def read_safetensors(path):
    with open(path, "rb") as handle:
        data = handle.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=dtype).reshape(entry["shape"])
        tensors[name] = array.astype(np.float64)
    return tensors, metadata


def layer_norm(x, w, prefix, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]


def linear(x, w, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def next_token_logprobs(w, config, tokens):
    d, heads = config["d_model"], config["n_heads"]
    head_dim = d // heads
    t = len(tokens)
    x = w["token_embedding"][tokens] + w["position_embedding"][np.arange(t)]
    causal = np.triu(np.ones((t, t), dtype=bool), k=1)
    for layer in range(config["n_layers"]):
        p = f"blocks.{layer}"
        qkv = linear(layer_norm(x, w, p + ".attn_norm"), w, p + ".qkv")
        q, k, v = (qkv[:, i * d : (i + 1) * d].reshape(t, heads, head_dim).transpose(1, 0, 2) for i in range(3))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores[:, causal] = -np.inf
        attended = np.exp(log_softmax(scores)) @ v
        x = x + linear(attended.transpose(1, 0, 2).reshape(t, d), w, p + ".attn_out")
        hidden = gelu(linear(layer_norm(x, w, p + ".mlp_norm"), w, p + ".mlp_in"))
        x = x + linear(hidden, w, p + ".mlp_out")
    logits = layer_norm(x, w, "final_norm") @ w["token_embedding"].T
    logprobs = log_softmax(logits)
    return [float(logprobs[i, tokens[i + 1]]) for i in range(t - 1)]


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    weights, metadata = read_safetensors(argv[1])
    config = json.loads(metadata["infalign_policy"])
    tokens = [int(token) for token in argv[2:]]
    if max(tokens) >= config["vocab_size"] or len(tokens) > config["max_seq_len"]:
        raise SystemExit("tokens out of the vocabulary or longer than the context")
    print(json.dumps(next_token_logprobs(weights, config, tokens)))


if __name__ == "__main__":
    main(sys.argv)
