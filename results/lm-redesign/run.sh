#!/usr/bin/env bash
# The language-model experiment redesigned from what the candidate-set runs taught
# (results/candidates-*): the frontier of each method over a fixed beta grid (no KL controller),
# RLOO groups of m = 16, reference tables of K = 128, and many samples per prompt (few prompts,
# many replies each: 32 training prompts, so 200 steps of 8 prompts x 16 replies give each
# prompt 800 samples), evaluated on 48 held-out prompts x 64 replies per side with the calibrated
# KL and the per-reply data. Helpfulness under BoN_4.
#
# NOT RUN YET: on the 2-core development machine one such run takes about an hour of CPU
# (12 runs: some 12 hours); it is sized for a GPU session or a long unattended one. Every run
# resumes where it stopped (`infalign sweep` skips finished runs, `infalign ctrl --resume`).
#
# Run from the repository root after `cargo build --release -p infalign-cli`.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
WORK=${WORK:-runs/lm-redesign}
HERE=$(dirname "$0")
mkdir -p "$WORK"
[ -e "$DATA/prompts-train.jsonl" ] || "$INFALIGN" data fetch --out "$DATA"

"$INFALIGN" calibrate --prompts "$DATA/prompts-train.jsonl" --limit 32 --k 128 \
  --reward vader --out "$WORK/calibration.json"
"$INFALIGN" sweep --prompts "$DATA/prompts-train.jsonl" --limit 32 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/prompts-test.jsonl" --eval-limit 48 --samples 64 \
  --methods raw,identity,normexp:9.3 --betas 0.02,0.05,0.15,0.4 \
  --procedure bon --n 4 --m 16 --steps 200 --out "$WORK/sweep"

mkdir -p "$HERE/sweep"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/sweep"
