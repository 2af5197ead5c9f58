#!/usr/bin/env bash
# Harmlessness, attacked with Worst-of-4: CTRL with negexp(t) (t tuned by the theory engine for
# each KL budget) against calibrated identity, raw-reward RL and log, on requests from the
# HH-RLHF harmless split. The reward is 1 - p(offensive) under the alt-profanity-check linear
# model (`linear:`), a harmlessness reward of the models issue.
#
# Run from the repository root after `cargo build --release -p infalign-cli`. HH and the
# linear model are the files of ../shared/data (any copy in the public format works). About
# 35 minutes on two CPU cores.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
SHARED=${SHARED:-../shared/data}
DATA=${DATA:-data}
WORK=${WORK:-runs/harmlessness-won4}
HERE=$(dirname "$0")
REWARD="linear:$SHARED/rewards/profanity_check_linear_model.tsv"
mkdir -p "$WORK"

# The distinct opening requests, split by a hash of their text (about 90 / 5 / 5 %).
"$INFALIGN" data hh-prompts --pairs "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" \
  --out "$DATA" --prefix harmless

"$INFALIGN" calibrate --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 --k 32 \
  --reward "$REWARD" --out "$WORK/calibration.json"

"$INFALIGN" sweep --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/harmless-prompts-test.jsonl" --eval-limit 40 \
  --methods raw,identity,log,negexp --target-kls 0.4,1.0 --procedure won --n 4 \
  --steps 80 --lr 2e-4 --samples 16 --out "$WORK/sweep"

"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE"
