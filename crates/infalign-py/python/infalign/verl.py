"""The CTRL reward for verl (`custom_reward_function.path` / `.name`).

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` per sample; put
each prompt's reference rewards in `extra_info["reference_rewards"]` and point verl at a module
that defines `compute_score = infalign.verl.compute_score_function(base, "exp:8")`. Keep the
objective KL-regularised: `rloo` with `use_kl_in_reward=True`.
"""

from ._ctrl import BaseReward, CtrlReward, reference_list


def compute_score_function(base: BaseReward, spec: str = "identity", key: str = "reference_rewards"):
    """A verl `compute_score`: `base` scores `solution_str`; the score is calibrated against
    `extra_info[key]` and transformed by `spec`. Its `ctrl` attribute is the `CtrlReward`."""
    ctrl = CtrlReward(base, spec)

    def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
        if not isinstance(extra_info, dict) or key not in extra_info:
            raise ValueError(f"extra_info has no `{key}` (the prompt's reference rewards)")
        references = [reference_list(extra_info[key], f"extra_info[{key!r}]")]
        return float(ctrl([solution_str], references)[0])

    compute_score.ctrl = ctrl
    return compute_score
