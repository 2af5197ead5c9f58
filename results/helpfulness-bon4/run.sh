#!/usr/bin/env bash
# Helpfulness (VADER reward), served with Best-of-4: CTRL with exp(t) (t tuned by the theory
# engine for each KL budget) against calibrated identity, raw-reward RL and log (the
# Best-of-N distillation target), all at the same KL budgets, evaluated on held-out prompts.
#
# Run from the repository root after `cargo build --release -p infalign-cli` and
# `target/release/infalign data fetch --out data`. Work files (checkpoints, bundles) go to
# $WORK; the small outputs are copied next to this script. About 35 minutes on two CPU cores.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
WORK=${WORK:-runs/helpfulness-bon4}
HERE=$(dirname "$0")
mkdir -p "$WORK"

# What K buys: the same 64 training prompts calibrated with 8 to 64 reference replies each.
for k in 8 16 32 64; do
  "$INFALIGN" calibrate --prompts "$DATA/prompts-train.jsonl" --limit 64 --k "$k" \
    --reward vader --out "$WORK/k-study/calibration-k$k.json"
done

# The training table: 128 prompts, K = 32.
"$INFALIGN" calibrate --prompts "$DATA/prompts-train.jsonl" --limit 128 --k 32 --reward vader \
  --out "$WORK/calibration.json"

# Four methods at two KL budgets (the adaptive controller holds each run near its budget), 80
# steps of 8 prompts x 4 replies each; evaluation on 40 test prompts x 16 replies per side.
"$INFALIGN" sweep --prompts "$DATA/prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/prompts-test.jsonl" --eval-limit 40 \
  --methods raw,identity,log,exp --target-kls 0.4,1.0 --procedure bon --n 4 \
  --steps 80 --lr 2e-4 --samples 16 --out "$WORK/sweep"

"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE"
