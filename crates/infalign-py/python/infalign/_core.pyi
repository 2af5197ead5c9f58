"""Type stubs of infalign's Rust extension (see the package docstring)."""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

__version__: str

class Evaluation(TypedDict):
    """A tilted policy p(u) ∝ exp(lambda T(u)) of the base policy's calibrated reward."""

    #: lambda = 1 / beta
    # (the key is "lambda"; TypedDict cannot name it here)
    n: int
    kl: float
    expected_u: float
    standard: float
    bon: float
    won: float

def calibrate(
    reference: npt.ArrayLike, rewards: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Each reward's mid-rank quantile among the reference rewards: (below + ties / 2) / K.

    Raises ValueError for an empty reference or a non-finite reward."""

def transform(spec: str, calibrated: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The transform named by `spec` (as the CLI spells it) applied to calibrated rewards in
    [0, 1]; exp:T is e^(T u), negexp:T is -e^(-T u)."""

def theory_point(spec: str, lam: float, n: int) -> Evaluation:
    """KL (nats), E[U] and the standard / BoN_n / WoN_n win rates of the tilted policy of the
    transform at lambda (a dict; also has the key "lambda")."""

def theory_at_kl(spec: str, n: int, budget: float) -> Evaluation:
    """theory_point at the lambda that spends `budget` nats of KL."""

def lambda_for_kl(spec: str, budget: float) -> float:
    """The lambda (1 / beta) at which the transform's tilted policy spends `budget` nats."""

def best_t(family: str, procedure: str, n: int, budget: float) -> Evaluation:
    """The best steepness t of the `exp` or `negexp` family for `bon` or `won` at N and a KL
    budget; the dict also has "t" and "win_rate" (the procedure's)."""

def win_rate(
    procedure: str, policy: npt.ArrayLike, reference: npt.ArrayLike, n: int = 1
) -> float:
    """The win rate of the policy's rewards against the reference's by the exact U-statistic:
    "standard", or "bon" / "won" (the best or worst of n replies on each side)."""

class Interval(TypedDict):
    """A mean with its bootstrap interval over prompts."""

    estimate: float
    lower: float
    upper: float
    level: float
    std_error: float

def bootstrap_mean(
    per_prompt: npt.ArrayLike, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of per-prompt values with a seeded bootstrap interval over prompts."""

def calibrated_kl(
    policy: list[list[float]],
    reference: list[list[float]],
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """KL(calibrated policy rewards || uniform), bias-corrected, with its interval; one list of
    rewards per prompt on each side, the same K reference rewards per prompt."""

def optimal_transform(procedure: str, n: int, lam: float) -> dict[str, float]:
    """The optimal transform's tilted policy for `bon` or `won` at N and lambda:
    {"kl", "expected_u", "win_rate", "lambda", "n"}."""
