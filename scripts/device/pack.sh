#!/usr/bin/env bash
# Pack what the GPU machine needs for scripts/device/lm-experiment.sh and
# scripts/device/gpu-bench.sh, into folders git ignores:
#   .device/bin.tar.xz    the release binaries, x86-64, stripped: infalign, and the benchmark's
#                         policy_bench, ctrl_bench and xtask
#   .device/wheels/       the peer's one Python package that machine lacks (vaderSentiment)
#   .device/data/         the prompt files (chitchat train and test)
#   .gl/                  the Vulkan loader packages (the device README's recipe)
# Then, in a session lent a device machine (one call, carrying .device and .gl):
#   run: command "bash scripts/device/lm-experiment.sh", carry [".device", ".gl"], timeout_s 600
# and the results come back in $OUT (lm-experiment.tar.gz, log.txt, card.txt).
# Test here first: `bash scripts/device/pack.sh && DEVICE=cpu SCALE=dry OUT=/tmp/dry bash
# scripts/device/lm-experiment.sh` runs the same flow on the CPU at a toy size.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -p infalign-cli
cargo build --release -p infalign-model --example policy_bench --example ctrl_bench
cargo build --release -p xtask
mkdir -p .device/data .device/wheels /tmp/infalign-pack
rm -rf .device/bench .device/infalign.xz
strip -o /tmp/infalign-pack/infalign "$TARGET/release/infalign"
strip -o /tmp/infalign-pack/policy_bench "$TARGET/release/examples/policy_bench"
strip -o /tmp/infalign-pack/ctrl_bench "$TARGET/release/examples/ctrl_bench"
strip -o /tmp/infalign-pack/xtask "$TARGET/release/xtask"
# One archive with a dictionary larger than the binaries: they share most of their code (burn,
# wgpu), so together they compress to about what two of them do alone (31 MB against 54); the
# call's whole working tree must stay under 64 MiB.
tar cf - -C /tmp/infalign-pack . | xz -T1 --lzma2=preset=9e,dict=384MiB >.device/bin.tar.xz
ls .device/wheels/vaderSentiment-*.whl >/dev/null 2>&1 ||
  python3 -m pip download -q --no-deps --only-binary=:all: -d .device/wheels vaderSentiment==3.3.2
[ -e data/prompts-train.jsonl ] || "$TARGET/release/infalign" data fetch --out data
cp data/prompts-train.jsonl data/prompts-test.jsonl .device/data/
if ! ls .gl/*.deb >/dev/null 2>&1; then
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .device .gl
