#!/usr/bin/env bash
# The stochastic RLOO trainer on a candidate collection ($1), evaluated under procedure $2
# (bon or won) with N = 4, into $3: identity against the procedure's transform (normexp for
# BoN, normnegexp for WoN, t tuned by the theory at 0.1 nats) at a fixed beta per method (the
# exact optimum's beta for 0.1 nats with K = 128, read from exact-k128/exact.json), for sample
# budgets S = 80, 500, 2000 per prompt and RLOO groups m = 4, 16. Each run resumes if stopped
# (its checkpoint and per-step metrics stay in the work folder, runs/ by default); its settings,
# result and final policy are copied into $3.
set -euo pipefail
INFALIGN=${INFALIGN:-target/release/infalign}
COLLECTION=$1
PROCEDURE=$2
OUT=$3
EXACT="$(dirname "$OUT")/exact-k128/exact.json"
WORK=${WORK:-runs/$(basename "$(dirname "$OUT")")-train}
family=$([ "$PROCEDURE" = bon ] && echo exp || echo negexp)
# The table's rows at 0.1 nats: what each method trained on and the beta that met the budget.
read -r -a rows <<<"$(python3 - "$EXACT" "$family" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
picked = {}
for row in report["rows"]:
    if abs(row["budget"] - 0.1) < 1e-12 and row["method"] in ("identity", sys.argv[2]):
        picked[row["method"]] = f'{row["scoring"]}={row["beta"]!r}'
print(picked["identity"], picked[sys.argv[2]])
PY
)"
for row in "${rows[@]}"; do
  scoring=${row%%=*}
  beta=${row#*=}
  for m in 4 16; do
    for s in 80 500 2000; do
      name="$(echo "$scoring" | tr ':' '-')-m$m-s$s"
      "$INFALIGN" candidates train --data "$COLLECTION" --k 128 --method "$scoring" \
        --beta "$beta" --m "$m" --s "$s" --procedure "$PROCEDURE" --n 4 --out "$WORK/$name"
      mkdir -p "$OUT/$name"
      cp "$WORK/$name"/{config.json,result.json,policy.csv.gz} "$OUT/$name/"
    done
  done
done
