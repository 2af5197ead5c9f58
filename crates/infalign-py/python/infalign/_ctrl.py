"""The CTRL reward shared by the engine adapters: score with a base reward, calibrate each score
against its prompt's reference rewards, transform the calibrated value, and keep (and log) the
raw and calibrated values of the last batch."""

import json
import logging
import math
from typing import Callable, List, Sequence

import numpy as np

from ._core import calibrate, transform

LOG = logging.getLogger("infalign")

BaseReward = Callable[[List[str]], Sequence[float]]


class CtrlReward:
    """`CtrlReward(base, spec)(texts, references)`: the transformed calibrated rewards, one per
    text; `references[i]` holds the reference rewards of text i's prompt (K of them, computed by
    the same base reward on the base policy's replies).

    `spec` is a transform as the `infalign` command spells it (`exp:8` for Best-of-N,
    `negexp:8` for Worst-of-N, `identity` for calibration alone). After each call, `last_raw`,
    `last_calibrated` and `last_scores` hold the batch's values, and one INFO line on the
    `infalign` logger gives their means.
    """

    def __init__(self, base: BaseReward, spec: str = "identity"):
        transform(spec, [0.5])  # a bad spec fails here, with the core's message
        self.base = base
        self.spec = spec
        self.last_raw = np.zeros(0)
        self.last_calibrated = np.zeros(0)
        self.last_scores = np.zeros(0)

    def __call__(self, texts: Sequence[str], references: Sequence[Sequence[float]]) -> np.ndarray:
        texts = list(texts)
        if len(references) != len(texts):
            raise ValueError(
                f"{len(texts)} texts but {len(references)} lists of reference rewards"
            )
        raw = np.asarray(self.base(texts), dtype=np.float64)
        if raw.shape != (len(texts),):
            raise ValueError(
                f"the base reward gave {raw.shape} values for {len(texts)} texts"
            )
        calibrated = np.array(
            [calibrate(reference, [value])[0] for reference, value in zip(references, raw)]
        )
        scores = transform(self.spec, calibrated)
        self.last_raw, self.last_calibrated, self.last_scores = raw, calibrated, scores
        if len(texts):
            LOG.info(
                "ctrl reward %s: raw %.4f, calibrated %.4f, score %.4f (means of %d)",
                self.spec, raw.mean(), calibrated.mean(), scores.mean(), len(texts),
            )
        return scores


def reference_list(value, where: str) -> List[float]:
    """One prompt's reference rewards from a dataset column or an extra-info field: a list of
    numbers (or a JSON string of one)."""
    if isinstance(value, str):
        value = json.loads(value)
    try:
        rewards = [float(v) for v in value]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: expected a list of reference rewards, got {value!r}") from error
    if not rewards or not all(math.isfinite(v) for v in rewards):
        raise ValueError(f"{where}: the reference rewards must be finite and not empty")
    return rewards
