#!/usr/bin/env python3
"""Beside every run of a sweep (its comparison.json), the theory's win rates for the run's
transform at the run's per-prompt calibrated KL (the one-dimensional tilt: infinitely many
replies, no ties), as a markdown table.

    python3 results/lm-redesign/theory_beside.py results/lm-redesign/sweep/comparison.json

Needs the project's Python package (`pip install ./crates/infalign-py`). Raw-reward runs have
no calibrated transform and get no theory.
"""

import json
import sys

import infalign


def rate(report, procedure, n):
    for entry in report["procedures"]:
        if entry["procedure"] == procedure and entry["n"] == n:
            return entry["win_rate"]
    return None


def cell(ci):
    return "%.3f [%.3f, %.3f]" % (ci["estimate"], ci["lower"], ci["upper"]) if ci else "-"


def main(path):
    with open(path) as handle:
        sweep = json.load(handle)
    n = sweep["n"]
    print("| run | KL (k1) | calibrated KL, per prompt | signal share | standard | theory | "
          "BoN_%d | theory | WoN_%d | theory |" % (n, n))
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in sweep["runs"]:
        report = run["report"]
        per_prompt = report.get("calibrated_kl_per_prompt")
        kl = report["kl"]["estimate"]
        theory = None
        if run["method"] != "raw" and per_prompt and per_prompt["estimate"] > 0:
            theory = infalign.theory_at_kl(run["method"], n, per_prompt["estimate"])
        knob = run["knob"]
        name = "%s, %s" % (run["method"], "beta %g" % knob["beta"] if "beta" in knob
                           else "KL budget %g" % knob["target_kl"])
        share = "%.0f %%" % (100 * per_prompt["estimate"] / kl) if per_prompt else "-"
        cells = [name, "%.3f" % kl, cell(per_prompt), share]
        for measure, key in (("standard", "standard"), (("bon", n), "bon"), (("won", n), "won")):
            ci = report["standard"] if measure == "standard" else rate(report, *measure)
            cells += [cell(ci), "%.3f" % theory[key] if theory else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: theory_beside.py SWEEP/comparison.json")
    main(sys.argv[1])
