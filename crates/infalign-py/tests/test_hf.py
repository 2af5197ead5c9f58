"""The Hugging Face export, without PyTorch: a GPT-2 forward pass written in GPT-2's own
conventions (Conv1D weights `[in, out]`, its tensor names) over the exported checkpoint must give
the log-probabilities of our reference forward pass (`scripts/safetensors_reference.py`, which a
Rust test holds to the model). `scripts/hf_export_check.py` does the same with `transformers`."""

import json
import math
import subprocess
import sys

import numpy as np

from infalign.hf import export, read_safetensors
from test_core import ROOT, cli


def gpt2_logprobs(w, config, tokens):
    d, heads = config["n_embd"], config["n_head"]
    t = len(tokens)
    norm = lambda x, p: (x - x.mean(-1, keepdims=True)) / np.sqrt(  # noqa: E731
        x.var(-1, keepdims=True) + config["layer_norm_epsilon"]) * w[p + ".weight"] + w[p + ".bias"]
    conv = lambda x, p: x @ w[p + ".weight"] + w[p + ".bias"]  # noqa: E731
    erf = np.vectorize(math.erf)
    x = w["transformer.wte.weight"][tokens] + w["transformer.wpe.weight"][np.arange(t)]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(config["n_layer"]):
        p = f"transformer.h.{layer}"
        q, k, v = np.split(conv(norm(x, p + ".ln_1"), p + ".attn.c_attn"), 3, axis=-1)
        split = lambda m: m.reshape(t, heads, d // heads).transpose(1, 0, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d // heads) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        x = x + conv(attended.transpose(1, 0, 2).reshape(t, d), p + ".attn.c_proj")
        h = conv(norm(x, p + ".ln_2"), p + ".mlp.c_fc")
        x = x + conv(0.5 * h * (1 + erf(h / math.sqrt(2))), p + ".mlp.c_proj")
    logits = norm(x, "transformer.ln_f") @ w["transformer.wte.weight"].T
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return [logp[i, tokens[i + 1]] for i in range(t - 1)]


def test_the_export_is_gpt2_with_our_weights(tmp_path):
    policy = tmp_path / "base.safetensors"
    subprocess.run([cli(), "safetensors", "--bundle", str(ROOT / "static/default-model"),
                    "--out", str(policy)], check=True, capture_output=True)
    out = export(policy, ROOT / "static/default-model/tokenizer.json", tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"]
    assert config["activation_function"] == "gelu" and config["tie_word_embeddings"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).exists()
    weights, _ = read_safetensors(out / "model.safetensors")
    assert weights["transformer.h.0.attn.c_attn.weight"].shape == (
        config["n_embd"], 3 * config["n_embd"])
    weights = {name: array.astype(np.float64) for name, array in weights.items()}
    tokens = [5, 300, 17, 4000, 42, 42, 9, 1234]
    ours = json.loads(subprocess.run(
        [sys.executable, str(ROOT / "scripts/safetensors_reference.py"), str(policy),
         *map(str, tokens)], check=True, capture_output=True, text=True).stdout)
    theirs = gpt2_logprobs(weights, config, tokens)
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-9


def test_an_export_without_our_metadata_is_refused(tmp_path):
    from infalign.hf import write_safetensors

    path = tmp_path / "other.safetensors"
    write_safetensors(path, {"x": np.zeros(2, dtype=np.float32)})
    try:
        export(path, ROOT / "static/default-model/tokenizer.json", tmp_path / "hf")
    except ValueError as error:
        assert "infalign_policy" in str(error)
    else:
        raise AssertionError("an export without metadata was accepted")
