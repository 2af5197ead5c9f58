#!/usr/bin/env bash
# The language-model experiment redesigned from what the candidate-set runs taught
# (results/candidates-*): the frontier of each method over a fixed beta grid (no KL controller),
# RLOO groups of m = 16, reference tables of K = 128, and many samples per prompt (few prompts,
# many replies each: 32 training prompts, so 200 steps of 8 prompts x 16 replies give each
# prompt 800 samples), evaluated on 48 held-out prompts x 128 replies per side with the
# calibrated KL (pooled and per prompt) and the per-reply data. Helpfulness under BoN_4.
# The beta grid (0.1-0.4) spans calibrated KLs of about 0.05-1 nats, where the theory puts
# exp's advantage over identity (results/lm-redesign/small showed 0.05 overshoots it).
#
# On the 2-core development machine (CPU flex, the fused log-probability) a run takes about
# 8 minutes (2 s per step of 128 rollouts, 1-2 min of evaluation): some 100 minutes for all 12.
# Every run resumes where it stopped (`infalign sweep` skips finished runs and evaluations,
# `infalign ctrl --resume`).
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
  --eval-prompts "$DATA/prompts-test.jsonl" --eval-limit 48 --samples 128 \
  --methods identity,normexp:9.3,raw --betas 0.1,0.15,0.25,0.4 \
  --procedure bon --n 4 --m 16 --steps 200 --out "$WORK/sweep"

mkdir -p "$HERE/sweep"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/sweep"
