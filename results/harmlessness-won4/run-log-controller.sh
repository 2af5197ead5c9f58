#!/usr/bin/env bash
# The harmlessness comparison again, with the negexp run's KL held by the log-space controller
# (`--kl-control log`) from a non-degenerate starting beta (identity's theory beta at 1 nat,
# 0.136), instead of the Ziegler controller from negexp's own theory beta (2.4e-5), which ran
# away to 24 nats in `run.sh`. The baselines are rerun with exactly `run.sh`'s settings (at the
# 1-nat budget only), then the sweep compares all four at matched KL. About 12 minutes on two
# CPU cores.
#
# Run from the repository root after `cargo build --release -p infalign-cli`.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
SHARED=${SHARED:-../shared/data}
DATA=${DATA:-data}
WORK=${WORK:-runs/harmlessness-won4-log}
HERE=$(dirname "$0")
REWARD="linear:$SHARED/rewards/profanity_check_linear_model.tsv"
mkdir -p "$WORK"

"$INFALIGN" data hh-prompts --pairs "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" \
  --out "$DATA" --prefix harmless
"$INFALIGN" calibrate --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 --k 32 \
  --reward "$REWARD" --out "$WORK/calibration.json"

# negexp (t tuned by the theory engine for WoN_4 at 1 nat) with the sweep's own ctrl and eval
# settings, plus the controller and its start, in the directory the sweep uses for it.
RUN="$WORK/sweep/runs/negexp-kl1"
"$INFALIGN" ctrl --bundle static/default-model --prompts "$DATA/harmless-prompts-train.jsonl" \
  --limit 128 --calibration "$WORK/calibration.json" --transform negexp --procedure won --n 4 \
  --m 4 --prompts-per-step 8 --steps 80 --lr 2e-4 --max-new-tokens 32 --seed 0 --device cpu \
  --target-kl 1.0 --kl-control log --beta 0.136 --out "$RUN"
"$INFALIGN" eval --bundle "$RUN/bundle" --prompts "$DATA/harmless-prompts-test.jsonl" --limit 40 \
  --samples 16 --n 4 --max-new-tokens 32 --seed 0 --label "negexp, KL 1 nats (log controller)" \
  --device cpu --out "$RUN/eval"

# The baselines exactly as in run.sh (at the 1-nat budget), then all four at matched KL: the
# sweep trains and evaluates raw, identity and log, finds negexp done, and compares.
"$INFALIGN" sweep --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/harmless-prompts-test.jsonl" --eval-limit 40 \
  --methods raw,identity,log,negexp --target-kls 1.0 --procedure won --n 4 \
  --steps 80 --lr 2e-4 --samples 16 --out "$WORK/sweep"

mkdir -p "$HERE/log-controller"
"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/log-controller"
