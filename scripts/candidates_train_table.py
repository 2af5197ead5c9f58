#!/usr/bin/env python3
"""Tabulate the stochastic candidate-set CTRL runs of a results folder.

Reads every `result.json` of `infalign candidates train` under the folder given (for example
`results/candidates-helpful/train`) and prints a markdown table: method, RLOO group m, samples
per prompt S, steps, the policy's KL, standard and headline (BoN_N or WoN_N) win rates, the
exact optimum's headline win rate at the same KL, and the share of that optimum's gain over 0.5
the trained policy reached; and the signal share, the calibrated KL (per prompt, over the
calibrated rewards' cells) over the policy's KL: the part of the KL the reward can see (the
rest is spread among candidates the reward ties). Standard library only.

    python3 scripts/candidates_train_table.py results/candidates-helpful/train bon
"""

import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[2] not in ("bon", "won"):
        print(__doc__, file=sys.stderr)
        return 2
    folder, procedure = Path(sys.argv[1]), sys.argv[2]
    rows = []
    for path in sorted(folder.glob("*/result.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 2
        config = result["config"]
        scoring = config["scoring"]
        method = scoring if isinstance(scoring, str) else scoring.get("calibrated", scoring)
        if isinstance(method, dict):
            method = f'{method["kind"]}:{method["t"]:.2f}' if "t" in method else method["kind"]
        measured = result["win_rate"][procedure]
        optimum = (result.get("exact_at_same_kl") or {}).get(procedure)
        share = (measured - 0.5) / (optimum - 0.5) if optimum and optimum != 0.5 else None
        rows.append(
            (
                method,
                config["samples_per_prompt"],
                config["samples_per_prompt_total"],
                result["steps"],
                result["kl"],
                result["calibrated_kl_mean"] / result["kl"] if result["kl"] > 0 else None,
                result["win_rate"]["standard"],
                measured,
                optimum,
                share,
            )
        )
    name = f"{procedure}_N win rate"
    print(
        f"| method | m | S | steps | KL | signal share | standard | {name} | "
        "exact optimum at that KL | share of the optimum's gain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method, m, s, steps, kl, signal, standard, measured, optimum, share in sorted(
        rows, key=lambda r: (str(r[0]), r[1], r[2])
    ):
        optimum_text = f"{optimum:.3f}" if optimum is not None else "-"
        share_text = f"{share:.0%}" if share is not None else "-"
        print(
            f"| {method} | {m} | {s} | {steps} | {kl:.3f} | {signal:.0%} | {standard:.3f} | "
            f"{measured:.3f} | "
            f"{optimum_text} | {share_text} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
