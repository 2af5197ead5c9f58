#!/usr/bin/env python3
"""CTRL inside TRL: a few RLOO steps of our base policy with the calibrated, transformed VADER
reward, then the evaluation back in `infalign`.

    python scripts/engines/trl_run.py --infalign BIN --out DIR [--steps 4] [--spec exp:8]

1. `infalign calibrate`: K reference replies per training prompt from the default model, scored
   by VADER (the reference rewards, the column the adapter reads);
2. the default model as a Hugging Face checkpoint (`infalign safetensors` + `infalign.hf`): no
   download, and the policy TRL trains is the base policy the rewards are calibrated against;
3. `trl.RLOOTrainer` on the CPU with `infalign.trl.reward_function(vader, SPEC)` (RLOO puts the
   KL in the reward: beta > 0, no division by the group's standard deviation), logging the raw
   and calibrated rewards of every batch;
4. rollouts of the trained and the base policy on the same prompts (M each, scored by VADER, with
   log pi - log pi_ref of the policy's replies) written as JSON Lines, and `infalign eval
   --scored` on them: the same eval.json / eval.md as for our own runs.

Needs torch, transformers, trl, datasets and vaderSentiment in the Python that runs it, and the
`infalign` package (`pip install --no-build-isolation ./crates/infalign-py`).
"""

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def chat_prompt(message):
    # How the policy sees a user's message (infalign_model::tokenizer::chat_prompt).
    return f"\n\nHuman: {' '.join(message.split())}<|end_of_turn|>\n\nAssistant:"


def run(command):
    print("$", " ".join(map(str, command)), flush=True)
    subprocess.run(list(map(str, command)), check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infalign", required=True, help="the infalign binary")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--prompts", default=ROOT / "data/prompts-train.jsonl")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--spec", default="exp:8")
    parser.add_argument("--samples", type=int, default=8, help="replies per side to evaluate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    import infalign.hf
    import infalign.trl

    torch.manual_seed(0)
    bundle = ROOT / "static/default-model"
    run([args.infalign, "calibrate", "--prompts", args.prompts, "--limit", args.limit,
         "--k", args.k, "--reward", "vader", "--device", "cpu", "--out", out / "calibration.json"])
    calibration = json.loads((out / "calibration.json").read_text())
    messages = [entry["prompt"] for entry in calibration["prompts"]]
    references = [entry["reference"]["rewards"] for entry in calibration["prompts"]]
    run([args.infalign, "safetensors", "--bundle", bundle, "--out", out / "base.safetensors"])
    hf_dir = infalign.hf.export(out / "base.safetensors", bundle / "tokenizer.json", out / "hf-base")

    analyzer = SentimentIntensityAnalyzer()

    def vader(texts):
        return [analyzer.polarity_scores(t.replace("<|end_of_turn|>", "").strip())["compound"]
                for t in texts]

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    dataset = Dataset.from_dict({"prompt": [chat_prompt(m) for m in messages],
                                 "reference_rewards": references})
    reward = infalign.trl.reward_function(vader, args.spec)
    config = trl.RLOOConfig(
        output_dir=str(out / "trl"), max_steps=args.steps, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=32, beta=0.05, learning_rate=1e-4,
        logging_steps=1, use_cpu=True, report_to=[], save_strategy="no", seed=0,
    )
    trainer = trl.RLOOTrainer(model=str(hf_dir), reward_funcs=[reward], args=config,
                              train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trained_dir = out / "hf-trained"
    trainer.save_model(str(trained_dir))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    (out / "trl-log.json").write_text(json.dumps(trainer.state.log_history, indent=1))

    # Rollouts of both policies, scored, with the policy replies' log ratios.
    policy = AutoModelForCausalLM.from_pretrained(trained_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(hf_dir).eval()

    def sample(model, prompt, m):
        encoded = tokenizer([prompt] * m, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**encoded, do_sample=True, max_new_tokens=32,
                                       eos_token_id=tokenizer.eos_token_id,
                                       pad_token_id=tokenizer.eos_token_id, top_k=0)
        return encoded["input_ids"].shape[1], generated

    def sequence_logprobs(model, ids, prompt_len):
        with torch.no_grad():
            logits = model(ids).logits[:, :-1].double()
        logp = torch.log_softmax(logits, -1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
        reply = ids[:, prompt_len:]
        # Count the reply up to and including its first end of turn.
        mask = torch.ones_like(reply, dtype=torch.bool)
        ended = (reply == tokenizer.eos_token_id).int().cumsum(1)
        mask &= (ended - (reply == tokenizer.eos_token_id).int()) == 0
        return (logp[:, prompt_len - 1:] * mask).sum(1).tolist()

    lines = []
    for message in messages:
        prompt = chat_prompt(message)
        prompt_len, ours = sample(policy, prompt, args.samples)
        _, theirs = sample(base, prompt, args.samples)
        decode = lambda ids: [tokenizer.decode(row[prompt_len:]) for row in ids]  # noqa: E731
        ratios = [a - b for a, b in zip(sequence_logprobs(policy, ours, prompt_len),
                                        sequence_logprobs(base, ours, prompt_len))]
        lines.append(json.dumps({"prompt": message, "policy_rewards": vader(decode(ours)),
                                 "reference_rewards": vader(decode(theirs)),
                                 "log_ratios": ratios}))
    (out / "rollouts.jsonl").write_text("\n".join(lines) + "\n")
    run([args.infalign, "eval", "--scored", out / "rollouts.jsonl", "--n", "4",
         "--label", f"TRL RLOO {args.spec}", "--out", out / "eval"])
    summary = {"transformers": transformers.__version__, "trl": trl.__version__,
               "torch": torch.__version__, "steps": args.steps, "spec": args.spec,
               "train_log": logs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
