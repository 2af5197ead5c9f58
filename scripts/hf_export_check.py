#!/usr/bin/env python3
"""Check the Hugging Face export (`python -m infalign.hf`) with `transformers` itself.

    scripts/hf_export_check.py POLICY.safetensors TOKENIZER.json

exports the policy, loads it with `AutoModelForCausalLM.from_pretrained` and the tokenizer with
`AutoTokenizer.from_pretrained`, and compares, on a few token sequences, every next-token
log-probability with the NumPy reference forward pass (`scripts/safetensors_reference.py`,
which `crates/infalign-model/tests/safetensors_python.rs` holds to the Rust model). Needs torch
and transformers (not part of CI: PyTorch is gigabytes); prints the largest gap and fails above
1e-5.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    policy, tokenizer_file = sys.argv[1], sys.argv[2]
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infalign.hf import export

    with tempfile.TemporaryDirectory() as out:
        export(policy, tokenizer_file, out)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64).eval()
        tokenizer = AutoTokenizer.from_pretrained(out)
        texts = ["How are you today?", "Tell me something nice about the weather.",
                 "I lost my keys again<|end_of_turn|>"]
        worst = 0.0
        for text in texts:
            tokens = tokenizer(text)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([tokens])).logits[0]
            theirs = torch.log_softmax(logits, dim=-1)[:-1].gather(
                1, torch.tensor(tokens[1:]).unsqueeze(1)).squeeze(1).tolist()
            ours = json.loads(subprocess.run(
                [sys.executable, str(HERE / "safetensors_reference.py"), policy,
                 *map(str, tokens)], check=True, capture_output=True, text=True).stdout)
            gap = max(abs(a - b) for a, b in zip(theirs, ours))
            worst = max(worst, gap)
            print(f"{len(tokens):3d} tokens: largest gap {gap:.2e} nats")
        print(f"transformers {transformers.__version__}, torch {torch.__version__}: "
              f"largest gap {worst:.2e} nats over {len(texts)} sequences")
        if worst > 1e-5:
            raise SystemExit("the export does not match the reference")


if __name__ == "__main__":
    main()
