#!/usr/bin/env bash
# The helpfulness comparison again, from the current base (`static/default-model`, f16; the
# first run's base was the f32 model before export), at both KL budgets (0.4 and 1 nat), every
# method under the same controller from the same start (`--kl-control log --start-beta 0.136`,
# identity's theory beta at 1 nat), and a larger evaluation: 200 held-out prompts x 32 replies
# per side (the first run had 40 x 16). About 35 minutes on two CPU cores.
#
# Run from the repository root after `cargo build --release -p infalign-cli` and
# `target/release/infalign data fetch --out data`.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
WORK=${WORK:-runs/helpfulness-bon4-two-budgets}
HERE=$(dirname "$0")
mkdir -p "$WORK"

"$INFALIGN" calibrate --prompts "$DATA/prompts-train.jsonl" --limit 128 --k 32 --reward vader \
  --out "$WORK/calibration.json"
"$INFALIGN" sweep --prompts "$DATA/prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/prompts-test.jsonl" --eval-limit 200 --samples 32 \
  --methods raw,identity,log,exp --target-kls 0.4,1.0 --kl-control log --start-beta 0.136 \
  --procedure bon --n 4 --steps 80 --lr 2e-4 --out "$WORK/sweep"

mkdir -p "$HERE/two-budgets"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/two-budgets"
