"""The CTRL reward for TRL's trainers (`RLOOTrainer(..., reward_funcs=[...])`).

TRL calls a reward function as `f(prompts, completions, **columns)`, with every dataset column
as a keyword; give the dataset a column of each prompt's reference rewards (default name
`reference_rewards`) and pass `reward_function(base, "exp:8")`. Keep the objective
KL-regularised: RLOO with its KL in the reward (beta > 0), no division by the group's standard
deviation.
"""

from typing import Any, List

from ._ctrl import BaseReward, CtrlReward, reference_list


def _text(completion: Any) -> str:
    # TRL gives plain strings, or conversations: a list of {"role", "content"} messages.
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise ValueError(f"a completion TRL would not give: {completion!r}")


def reward_function(base: BaseReward, spec: str = "identity", column: str = "reference_rewards"):
    """A TRL reward function: `base` scores the completions' texts; each score is calibrated
    against the row's `column` and transformed by `spec`. The function's `ctrl` attribute is
    the `CtrlReward` (its `last_raw` / `last_calibrated` for logging)."""
    ctrl = CtrlReward(base, spec)

    def ctrl_reward(prompts, completions, **columns) -> List[float]:
        if column not in columns:
            raise ValueError(
                f"the dataset has no column `{column}` of reference rewards "
                f"(columns: {sorted(columns)})"
            )
        references = [
            reference_list(value, f"row {i}, column `{column}`")
            for i, value in enumerate(columns[column])
        ]
        return ctrl([_text(c) for c in completions], references).tolist()

    ctrl_reward.__name__ = f"ctrl_{spec.replace(':', '_')}"
    ctrl_reward.ctrl = ctrl
    return ctrl_reward
