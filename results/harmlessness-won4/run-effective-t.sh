#!/usr/bin/env bash
# A follow-up to `run-two-budgets.sh` (run it first): negexp with the t the theory picks for the
# KL that training actually moves the calibrated reward's distribution by, rather than for the
# policy's KL budget. In the two-budget run, identity's measured WoN_4 win rate at 1.1 nats of
# policy KL (0.62) is what the theory gives identity at about 0.05 nats of KL between the
# calibrated-reward distributions, and the theory's best negexp t for WoN_4 there is 7.2
# (`infalign theory --n 4 --kl 0.05`), not the 16 it picks for 1 nat. The sweep reuses the four
# finished methods and trains and evaluates normnegexp:7.2 (written negexp:7.2 before transform specs had one meaning) at both budgets with the same settings.
# About 12 minutes on two CPU cores.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
WORK=${WORK:-runs/harmlessness-won4-two-budgets}
HERE=$(dirname "$0")

"$INFALIGN" sweep --prompts "$DATA/harmless-prompts-train.jsonl" --limit 128 \
  --calibration "$WORK/calibration.json" \
  --eval-prompts "$DATA/harmless-prompts-test.jsonl" --eval-limit 100 --samples 32 \
  --methods raw,identity,log,negexp,normnegexp:7.2 --target-kls 0.4,1.0 --kl-control log \
  --start-beta 0.136 --procedure won --n 4 --steps 80 --lr 2e-4 --out "$WORK/sweep"

"$(dirname "$HERE")/collect.sh" "$WORK" "$HERE/two-budgets"
