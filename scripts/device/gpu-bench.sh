#!/usr/bin/env bash
# The benchmark on a GPU machine without Rust, in one device call of under ten minutes:
#   1. `xtask bench --device gpu`: burn wgpu (Vulkan) against PyTorch on CUDA, the same works as on
#      the CPU (train step, sampling, CTRL step), from the release binaries pack.sh carried;
#   2. a CTRL training run on burn wgpu: calibrate 16 prompts against K = 32 reference replies,
#      then 40 steps of ctrl (exp:8 of the calibrated VADER reward, BoN_4, m = 8), timed.
# Writes to $OUT: card.txt (nvidia-smi and our backend's adapter), bench.md and bench.json (the
# table), ctrl.txt (the run's log and timings), log.txt (everything).
# Packed by scripts/device/pack.sh; in a session lent a device machine:
#   run: command "bash scripts/device/gpu-bench.sh", carry [".device", ".gl"], timeout_s 600
# Dry run here (same flow on the CPU, toy sizes):
#   bash scripts/device/pack.sh && DEVICE=cpu SCALE=dry OUT=/tmp/gpu-dry bash scripts/device/gpu-bench.sh
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
BIN=$BIN_DIR
# The peer's Python: the machine's own (PyTorch, tokenizers, NumPy), plus the carried VADER wheel.
PYTHON=${PYTHON:-python3}
if [ -d .device/wheels ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
if [ "$SCALE" = dry ]; then
  ROUNDS=1; REPEATS=1; PROMPTS=2; K=4; STEPS=2; PER_STEP=2; M=2
else
  ROUNDS=3; REPEATS=5; PROMPTS=16; K=32; STEPS=40; PER_STEP=8; M=8
fi
BENCH_DEVICE=gpu
[ "$DEVICE" = cpu ] && BENCH_DEVICE=cpu
stage 330 "$BIN/xtask" bench --device "$BENCH_DEVICE" --prebuilt "$BIN" --python "$PYTHON" \
  --works train,sample,ctrl --rounds "$ROUNDS" --repeats "$REPEATS" --out "$OUT/bench.json" \
  | tee "$OUT/bench.md"
WORK=/tmp/gpu-ctrl
rm -rf "$WORK" && mkdir -p "$WORK"
{
  stage 90 "$BIN/infalign" calibrate --prompts .device/data/prompts-train.jsonl --limit "$PROMPTS" \
    --k "$K" --reward vader --device "$DEVICE" --out "$WORK/calibration.json"
  SECONDS=0
  stage 150 "$BIN/infalign" ctrl --prompts .device/data/prompts-train.jsonl --limit "$PROMPTS" \
    --calibration "$WORK/calibration.json" --reward vader --transform exp:8 --procedure bon --n 4 \
    --beta 0.1 --m "$M" --prompts-per-step "$PER_STEP" --steps "$STEPS" --device "$DEVICE" \
    --checkpoint-every 1000 --out "$WORK/run"
  echo "ctrl: $STEPS steps of $PER_STEP prompts x $M replies on $DEVICE in $SECONDS s"
} 2>&1 | tee "$OUT/ctrl.txt"
ls -la "$OUT"
