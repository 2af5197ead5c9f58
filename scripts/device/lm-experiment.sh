#!/usr/bin/env bash
# The redesigned language-model experiment (results/lm-redesign) sized for one NVIDIA H200 and
# ten minutes: a fixed beta per method (raw, identity, normexp tuned for BoN_4 near 0.1 nats),
# RLOO groups of m = 16 with 32 prompts per step (512 rollouts a step; 200 steps, about 1e5
# rollouts per run), reference tables of K = 128, evaluation 48 prompts x 128 replies with the
# per-reply data (and samples.json, which the sweep's paired comparison reads). Runs on burn wgpu over Vulkan (DEVICE=wgpu), or on the CPU for a dry run
# (DEVICE=cpu SCALE=dry: the same commands at a toy size). Each stage has a time limit; what
# finished is packed into $OUT/lm-experiment.tar.gz with the log and the card's name.
# Packed by scripts/device/pack.sh.
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
BIN=$BIN_DIR/infalign
if [ "$SCALE" = dry ]; then
  PROMPTS=4; K=8; STEPS=2; PER_STEP=2; M=2; EVAL=3; SAMPLES=4; BETAS=0.1
else
  PROMPTS=32; K=128; STEPS=200; PER_STEP=32; M=16; EVAL=48; SAMPLES=128; BETAS=0.1,0.25
fi
WORK=/tmp/lm-experiment
mkdir -p "$WORK"
stage 120 "$BIN" calibrate --prompts .device/data/prompts-train.jsonl --limit "$PROMPTS" --k "$K" \
  --reward vader --device "$DEVICE" --out "$WORK/calibration.json"
stage 420 "$BIN" sweep --prompts .device/data/prompts-train.jsonl --limit "$PROMPTS" \
  --calibration "$WORK/calibration.json" \
  --eval-prompts .device/data/prompts-test.jsonl --eval-limit "$EVAL" --samples "$SAMPLES" \
  --methods raw,identity,normexp:9.3 --betas "$BETAS" --procedure bon --n 4 \
  --m "$M" --prompts-per-step "$PER_STEP" --steps "$STEPS" --device "$DEVICE" --out "$WORK/sweep"
echo "== $(date +%T) packing"
tar czf "$OUT/lm-experiment.tar.gz" -C "$WORK" \
  --exclude='*.bpk' --exclude='checkpoint' . 2>/dev/null
ls -la "$OUT"
