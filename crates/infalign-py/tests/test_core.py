"""The Python bindings against the `infalign` command and against the definitions.

The command comes from INFALIGN_BIN, or the workspace's debug build (CARGO_TARGET_DIR or
target/); `cargo xtask test` builds it before it runs these tests.
"""

import itertools
import json
import math
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import infalign

ROOT = Path(__file__).resolve().parents[3]


def cli():
    given = os.environ.get("INFALIGN_BIN")
    if given:
        return given
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("debug", "release"):
        path = target / profile / "infalign"
        if path.exists():
            return str(path)
    pytest.fail("no `infalign` binary: build it (cargo build -p infalign-cli) or set INFALIGN_BIN")


@pytest.mark.parametrize(
    "spec, lam, n",
    [("identity", 3.0, 4), ("exp:2", 1.5, 4), ("negexp:6", 0.7, 8), ("normexp:12", 40.0, 2),
     ("log", 2.0, 16)],
)
def test_theory_point_is_the_commands(spec, lam, n):
    out = subprocess.run(
        [cli(), "theory", "point", "--transform", spec, "--lambda", str(lam), "--n", str(n),
         "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    want = json.loads(out)
    got = infalign.theory_point(spec, lam, n)
    assert abs(got["kl"] - want["kl"]) <= 1e-12
    assert abs(got["expected_u"] - want["expected_u"]) <= 1e-12
    for key in ("standard", "bon", "won"):
        assert abs(got[key] - want["win_rate"][key]) <= 1e-12, key


def test_a_budget_round_trips_through_lambda():
    lam = infalign.lambda_for_kl("normexp:12", 0.5)
    assert abs(infalign.theory_point("normexp:12", lam, 4)["kl"] - 0.5) < 1e-6
    at = infalign.theory_at_kl("normexp:12", 4, 0.5)
    assert abs(at["lambda"] - lam) <= 1e-12 * lam


def mid_rank(reference, reward):
    below = sum(1 for r in reference if r < reward)
    ties = sum(1 for r in reference if r == reward)
    return float(Fraction(2 * below + ties, 2 * len(reference)))


def test_calibration_is_the_mid_rank_with_ties():
    reference = [0.1, 0.5, 0.5, 0.9, -2.0, 0.5, 3.0]
    rewards = [0.5, -3.0, 3.0, 0.2, 10.0, 0.9]
    got = infalign.calibrate(np.array(reference), rewards)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    for value, reward in zip(got, rewards):
        assert abs(value - mid_rank(reference, reward)) <= 1e-12


def test_transforms_are_the_specs_functions():
    u = np.linspace(0.0, 1.0, 11)
    assert np.allclose(infalign.transform("exp:2", u), np.exp(2 * u), rtol=1e-12, atol=0)
    assert np.allclose(infalign.transform("negexp:3", u), -np.exp(-3 * u), rtol=1e-12, atol=0)
    assert np.array_equal(infalign.transform("identity", u), u)


def brute_force_win_rate(best, n, policy, reference):
    pick = max if best else min
    wins = total = 0.0
    for a in itertools.combinations(policy, n):
        for b in itertools.combinations(reference, n):
            x, y = pick(a), pick(b)
            wins += 1.0 if x > y else 0.5 if x == y else 0.0
            total += 1.0
    return wins / total


def test_win_rates_are_the_exact_u_statistics():
    rng = np.random.default_rng(7)
    policy = np.round(rng.normal(0.3, 1.0, 9), 1)  # rounded: ties occur
    reference = np.round(rng.normal(0.0, 1.0, 8), 1)
    for procedure, best in (("bon", True), ("won", False)):
        for n in (1, 2, 3):
            want = brute_force_win_rate(best, n, list(policy), list(reference))
            got = infalign.win_rate(procedure, policy, reference, n)
            assert abs(got - want) <= 1e-12, (procedure, n)
    standard = brute_force_win_rate(True, 1, list(policy), list(reference))
    assert abs(infalign.win_rate("standard", policy, reference) - standard) <= 1e-12


def test_best_t_beats_its_neighbours():
    best = infalign.best_t("exp", "bon", 4, 0.5)
    assert best["t"] > 0
    for t in (best["t"] * 0.7, best["t"] * 1.3):
        other = infalign.theory_at_kl(f"normexp:{t}", 4, 0.5)["bon"]
        assert other <= best["win_rate"] + 1e-9


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: infalign.calibrate([], [0.5]), "empty"),
        (lambda: infalign.calibrate([0.1, math.nan], [0.5]), "finite"),
        (lambda: infalign.transform("exp:fast", [0.5]), "exp:fast"),
        (lambda: infalign.transform("exp:2", [1.5]), "outside [0, 1]"),
        (lambda: infalign.win_rate("won", [1.0, 2.0], [1.0, 2.0, 3.0], 3), "policy rewards"),
        (lambda: infalign.win_rate("median", [1.0], [1.0]), "median"),
        (lambda: infalign.best_t("cubic", "bon", 4, 0.5), "cubic"),
    ],
)
def test_bad_input_raises_a_value_error_that_names_it(call, message):
    with pytest.raises(ValueError, match=None) as raised:
        call()
    assert message in str(raised.value), str(raised.value)


def eval_scored(tmp_path, policy, reference, n):
    """`infalign eval --scored` of one prompt's rewards; its eval.json and per-reply rows."""
    import gzip

    scored = tmp_path / "scored.jsonl"
    scored.write_text(json.dumps({"prompt": "p", "policy_rewards": list(policy),
                                  "reference_rewards": list(reference),
                                  "log_ratios": [0.0] * len(policy)}) + "\n")
    out = tmp_path / "eval"
    subprocess.run([cli(), "eval", "--scored", str(scored), "--n", str(n), "--resamples", "50",
                    "--out", str(out)], check=True, capture_output=True)
    report = json.loads((out / "eval.json").read_text())["report"]
    rows = gzip.decompress((out / "replies.csv.gz").read_bytes()).decode().splitlines()
    return report, [row.split(",") for row in rows[1:]]


def test_calibration_and_win_rates_are_the_commands(tmp_path):
    rng = np.random.default_rng(11)
    policy = np.round(rng.normal(0.4, 1.0, 12), 1)
    reference = np.round(rng.normal(0.0, 1.0, 10), 1)
    report, rows = eval_scored(tmp_path, policy, reference, 3)
    # The per-reply file's calibrated reward of each policy reply is the binding's.
    cli_calibrated = [float(r[4]) for r in rows if r[1] == "policy"]
    ours = infalign.calibrate(reference, policy)
    assert max(abs(a - b) for a, b in zip(cli_calibrated, ours)) <= 1e-12
    # One prompt: the report's estimates are that prompt's exact win rates.
    assert abs(report["standard"]["estimate"] - infalign.win_rate("standard", policy, reference)) <= 1e-12
    for entry in report["procedures"]:
        got = infalign.win_rate(entry["procedure"], policy, reference, entry["n"])
        assert abs(entry["win_rate"]["estimate"] - got) <= 1e-12, entry


def test_bootstrap_and_calibrated_kl():
    values = [0.2, 0.4, 0.9, 0.1, 0.5]
    interval = infalign.bootstrap_mean(values, seed=3)
    assert abs(interval["estimate"] - np.mean(values)) <= 1e-12
    assert interval["lower"] <= interval["estimate"] <= interval["upper"]
    assert infalign.bootstrap_mean(values, seed=3) == interval  # seeded
    rng = np.random.default_rng(5)
    reference = [list(rng.normal(0, 1, 16)) for _ in range(40)]
    same = [list(rng.normal(0, 1, 8)) for _ in range(40)]
    shifted = [list(rng.normal(1.5, 1, 8)) for _ in range(40)]
    near_zero = infalign.calibrated_kl(same, reference)["estimate"]
    moved = infalign.calibrated_kl(shifted, reference)["estimate"]
    assert abs(near_zero) < 0.1 and moved > 0.5, (near_zero, moved)
    with pytest.raises(ValueError):
        infalign.calibrated_kl(same, reference[:3])


def test_the_optimal_transform_beats_the_tuned_exponential():
    optimal = infalign.optimal_transform("bon", 4, 5.0)
    assert optimal["kl"] > 0
    tuned = infalign.best_t("exp", "bon", 4, optimal["kl"])
    assert optimal["win_rate"] >= tuned["win_rate"] - 1e-6
    with pytest.raises(ValueError, match="median"):
        infalign.optimal_transform("median", 4, 5.0)
