#!/usr/bin/env bash
# The harmlessness comparison a third time, with what the first two runs lacked: both KL budgets
# (0.4 and 1 nat, so the sweep can compare the methods at matched KL along their curves), every
# method under the same controller from the same start (`--kl-control log --start-beta 0.136`,
# identity's theory beta at 1 nat; negexp's own theory beta, 2.4e-5, is what ran away in
# `run.sh`), and a larger evaluation: 100 held-out requests x 32 replies per side (the second run
# had 40 x 16). All runs from the current base (`static/default-model`, f16). About 30 minutes on
# two CPU cores.
#
# Run from the repository root after `cargo build --release -p infalign-cli`.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
SHARED=${SHARED:-../shared/data}
DATA=${DATA:-data}
WORK=${WORK:-runs/harmlessness-won4-two-budgets}
HERE=$(dirname "$0")
REWARD="linear:$SHARED/rewards/profanity_check_linear_model.tsv"
mkdir -p "$WORK"

"$INFALIGN" data hh-prompts --pairs "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" \
  --out "$DATA" --prefix harmless
"$INFALIGN" calibrate --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 --k 32 \
  --reward "$REWARD" --out "$WORK/calibration.json"
"$INFALIGN" sweep --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/harmless-prompts-test.jsonl" --eval-limit 100 --samples 32 \
  --methods raw,identity,log,negexp --target-kls 0.4,1.0 --kl-control log --start-beta 0.136 \
  --procedure won --n 4 --steps 80 --lr 2e-4 --out "$WORK/sweep"

mkdir -p "$HERE/two-budgets"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/two-budgets"
