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
