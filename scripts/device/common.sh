# Sourced by the scripts run on the GPU machine (lm-experiment.sh, gpu-bench.sh): the settings
# they share (OUT, DEVICE, SCALE), the log, the Vulkan loaders, the card's name, the binaries
# pack.sh archived (unpacked into $BIN_DIR), and `stage SECONDS COMMAND...` (a step with a time
# limit that reports how it ended and lets the script go on).
set -uo pipefail
OUT=${OUT:?set OUT to the folder the results go to}
DEVICE=${DEVICE:-wgpu}
SCALE=${SCALE:-full}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
if ls .gl/*.deb >/dev/null 2>&1 && [ "$DEVICE" != cpu ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -e "$icd" ] && export VK_DRIVER_FILES=$icd
fi
BIN_DIR=/tmp/infalign-device
rm -rf "$BIN_DIR" && mkdir -p "$BIN_DIR" && tar xJf .device/bin.tar.xz -C "$BIN_DIR" ||
  { echo "unpacking .device/bin.tar.xz failed (run scripts/device/pack.sh first)"; exit 1; }
(nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU; device $DEVICE") | tee "$OUT/card.txt"
"$BIN_DIR/infalign" backend --device "$DEVICE" | tee -a "$OUT/card.txt"
stage() {
  local seconds=$1; shift
  echo "== $(date +%T) $* (limit ${seconds}s)"
  timeout "$seconds" "$@" || echo "== stage ended with status $?"
}
