"""InfAlign's core for Python: calibrate rewards against reference samples, transform them for
Best-of-N or Worst-of-N, and the theory and estimators to check the result against.

The functions run in Rust (infalign-core), the same code as the `infalign` command; the spec
strings of transforms are the command's (`identity`, `log`, `exp:T`, `negexp:T`, `normexp:T`,
`normnegexp:T`, ...). Bad input raises ValueError with the core's message.

Adapters for the engines people train with: `infalign.trl.reward_function` (TRL's reward
functions), `infalign.verl.compute_score_function` (verl's custom reward) and
`infalign.openrlhf.reward_function` / `serve` (OpenRLHF's reward file or remote endpoint).
"""

from ._core import (
    __version__,
    best_t,
    bootstrap_mean,
    calibrate,
    calibrated_kl,
    lambda_for_kl,
    optimal_transform,
    theory_at_kl,
    theory_point,
    transform,
    win_rate,
)

__all__ = [
    "__version__",
    "best_t",
    "bootstrap_mean",
    "calibrate",
    "calibrated_kl",
    "lambda_for_kl",
    "optimal_transform",
    "theory_at_kl",
    "theory_point",
    "transform",
    "win_rate",
]
