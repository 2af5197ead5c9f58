#!/usr/bin/env bash
# Candidate-set CTRL on the helpfulness reward, served with Best-of-4 (issue "show the InfAlign
# effect decisively"). For each of 200 held-out chitchat prompts the base policy
# (static/default-model) answers C = 256 times (the candidates) and K = 128 times more (the
# reference replies), every reply scored with VADER; then every method's exact optimum over the
# candidates at matched KL (0.03, 0.1, 0.2, 0.4 nats), with K = 128 and K = 32, beside the
# one-dimensional theory; then the stochastic RLOO trainer at sample budgets S and group sizes m.
#
# Run from the repository root after `cargo build --release -p infalign-cli`. The collection is
# the slow part (about 77k replies, some 8 minutes on two cores); it resumes where it stopped when rerun.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
DATA=${DATA:-data}
HERE=$(dirname "$0")
WORK=${WORK:-runs/candidates-helpful}
mkdir -p "$WORK"
[ -e "$DATA/prompts-test.jsonl" ] || "$INFALIGN" data fetch --out "$DATA"

"$INFALIGN" candidates collect --prompts "$DATA/prompts-test.jsonl" --limit 200 \
  --reward vader --c 256 --k 128 --out "$WORK/collection.jsonl"
cp "$WORK/collection.jsonl.gz" "$HERE/"   # the gzip'd copy is what is kept
COLLECTION="$HERE/collection.jsonl.gz"

for k in 128 32; do
  "$INFALIGN" candidates exact --data "$COLLECTION" --k "$k" --procedure bon --n 4 \
    --out "$HERE/exact-k$k"
done

"$HERE/../candidates-train.sh" "$COLLECTION" bon "$HERE/train"
