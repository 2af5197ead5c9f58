#!/usr/bin/env bash
# A small first pass of the redesigned language-model experiment that fits a CPU session:
# 16 training prompts, K = 64, m = 16 replies per prompt draw, 4 prompts per step, 125 steps
# (500 samples per prompt, the sample budget at which the candidate-set runs showed the effect),
# a fixed beta grid (0.05, 0.15, 0.3; no controller), identity against normexp:9.3 (exp tuned for BoN_4
# near 0.1 nats), evaluated on the same 16 prompts (the question is whether training reached
# the tilt the theory compares) with 64 replies per side, per-reply data kept.
# About 30 minutes on two CPU cores (runs already finished are kept). Run from the repository root after
# `cargo build --release -p infalign-cli`.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
WORK=${WORK:-runs/lm-redesign-small}
HERE=$(dirname "$0")
mkdir -p "$WORK"
[ -e "$DATA/prompts-train.jsonl" ] || "$INFALIGN" data fetch --out "$DATA"

"$INFALIGN" calibrate --prompts "$DATA/prompts-train.jsonl" --limit 16 --k 64 \
  --reward vader --out "$WORK/calibration.json"
"$INFALIGN" sweep --prompts "$DATA/prompts-train.jsonl" --limit 16 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/prompts-train.jsonl" --eval-limit 16 --samples 64 \
  --methods identity,normexp:9.3 --betas 0.05,0.15,0.3 \
  --procedure bon --n 4 --m 16 --prompts-per-step 4 --steps 125 --out "$WORK/sweep"

mkdir -p "$HERE/small"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/small"
