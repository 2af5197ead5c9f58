"""A policy exported by `infalign safetensors` as a Hugging Face `transformers` checkpoint.

Our policy is GPT-2's architecture exactly: learned absolute positions, pre-norm blocks with
LayerNorm (epsilon 1e-5), one fused q/k/v projection with bias split q, k, v and then into heads,
causal attention scaled by 1/sqrt(head_dim), an MLP with the exact (erf) GELU
(`activation_function = "gelu"`, not GPT-2's default tanh form), a final LayerNorm, and the token
embedding tied as the output projection. So the checkpoint is a `GPT2LMHeadModel`: the tensors
renamed, and the linear weights transposed to GPT-2's `Conv1D` layout (`[in, out]`).

    python -m infalign.hf POLICY.safetensors TOKENIZER.json OUT_DIR

writes `OUT_DIR/config.json`, `model.safetensors`, `tokenizer.json` and
`tokenizer_config.json`; `AutoModelForCausalLM.from_pretrained(OUT_DIR)` loads it. Only NumPy is
needed to export (the file format is read and written directly).
"""

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16"}

#: The end-of-turn token: our tokenizer's only added token, and the end of every reply.
END_OF_TURN = "<|end_of_turn|>"


def read_safetensors(path):
    """The tensors (NumPy arrays, as stored) and the metadata of a SafeTensors file."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a SafeTensors file")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError as error:
        raise ValueError(f"{path}: the SafeTensors header is not JSON ({error})") from error
    body = data[8 + length :]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}; F32, F64 or F16")
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Write NumPy arrays as SafeTensors (little-endian, C order, names sorted)."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the body starts 8-byte aligned
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for chunk in chunks:
            out.write(chunk)


def gpt2_tensors(tensors, config):
    """Our tensors under GPT-2's names and layouts."""
    def need(name):
        if name not in tensors:
            raise ValueError(f"the export has no tensor `{name}`")
        return tensors[name]

    out = {
        "transformer.wte.weight": need("token_embedding"),
        "transformer.wpe.weight": need("position_embedding"),
        "transformer.ln_f.weight": need("final_norm.weight"),
        "transformer.ln_f.bias": need("final_norm.bias"),
    }
    pairs = [("attn_norm", "ln_1", False), ("qkv", "attn.c_attn", True),
             ("attn_out", "attn.c_proj", True), ("mlp_norm", "ln_2", False),
             ("mlp_in", "mlp.c_fc", True), ("mlp_out", "mlp.c_proj", True)]
    for layer in range(config["n_layers"]):
        for ours, theirs, linear in pairs:
            weight = need(f"blocks.{layer}.{ours}.weight")
            # GPT-2's Conv1D keeps [in, out]; our export has PyTorch Linear's [out, in].
            out[f"transformer.h.{layer}.{theirs}.weight"] = weight.T if linear else weight
            out[f"transformer.h.{layer}.{theirs}.bias"] = need(f"blocks.{layer}.{ours}.bias")
    return out


def gpt2_config(config, end_of_turn_id):
    """`config.json` of the GPT-2 model with our policy's shape."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config["vocab_size"],
        "n_positions": config["max_seq_len"],
        "n_embd": config["d_model"],
        "n_layer": config["n_layers"],
        "n_head": config["n_heads"],
        "n_inner": config["d_ff"],
        "activation_function": "gelu",
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": True,
        "bos_token_id": end_of_turn_id,
        "eos_token_id": end_of_turn_id,
        "torch_dtype": "float32",
    }


def export(policy_path, tokenizer_path, out_dir):
    """Write the Hugging Face checkpoint of an `infalign safetensors` export to `out_dir`."""
    tensors, metadata = read_safetensors(policy_path)
    if "infalign_policy" not in metadata:
        raise ValueError(f"{policy_path}: no `infalign_policy` metadata; write it with "
                         "`infalign safetensors`")
    config = json.loads(metadata["infalign_policy"])
    tokenizer = json.loads(Path(tokenizer_path).read_text())
    ids = [t["id"] for t in tokenizer.get("added_tokens", []) if t.get("content") == END_OF_TURN]
    if not ids:
        raise ValueError(f"{tokenizer_path}: no {END_OF_TURN} token; not our tokenizer?")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", gpt2_tensors(tensors, config), {"format": "pt"})
    (out / "config.json").write_text(json.dumps(gpt2_config(config, ids[0]), indent=2))
    shutil.copyfile(tokenizer_path, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": END_OF_TURN,
        "bos_token": END_OF_TURN,
        "model_max_length": config["max_seq_len"],
    }, indent=2))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit("usage: python -m infalign.hf POLICY.safetensors TOKENIZER.json OUT_DIR")
    try:
        out = export(*argv)
    except (OSError, ValueError) as error:
        raise SystemExit(f"infalign.hf: {error}")
    print(f"infalign.hf: wrote {out} (config.json, model.safetensors, tokenizer files)")


if __name__ == "__main__":
    main()
