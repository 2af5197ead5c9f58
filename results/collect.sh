#!/usr/bin/env bash
# Copy an experiment's small outputs from its work directory ($1) into results ($2): the
# calibration summaries, the sweep's comparison and plots, and per run its settings, training
# metrics, evaluation and per-reply rewards (not the weights: `infalign export` bundles the ones worth keeping).
set -euo pipefail
WORK=$1
OUT=$2
for summary in "$WORK"/calibration.summary.json "$WORK"/k-study/*.summary.json; do
  [ -e "$summary" ] && cp "$summary" "$OUT/"
done
cp "$WORK"/sweep/comparison.md "$WORK"/sweep/comparison.json "$WORK"/sweep/*.svg "$OUT/"
for run in "$WORK"/sweep/runs/*/; do
  name=$(basename "$run")
  mkdir -p "$OUT/runs/$name"
  cp "$run"/config.json "$run"/metrics.jsonl "$run"/eval/eval.json "$run"/eval/eval.md \
    "$OUT/runs/$name/"
  [ -e "$run/calibration-settings.json" ] && cp "$run/calibration-settings.json" "$OUT/runs/$name/"
  # The per-reply data every figure of eval.json is recomputed from (scripts/recompute_results.py).
  [ -e "$run/eval/replies.csv.gz" ] && cp "$run/eval/replies.csv.gz" "$OUT/runs/$name/"
done
echo "collected $WORK into $OUT"
