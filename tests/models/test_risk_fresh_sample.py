"""The risk model's synthetic companies are drawn as docs/models/risk.md describes them:
one draw per company for every input."""

from __future__ import annotations

import numpy as np

from common.models.risk import FEATURES, SECTORS
from tests.support.fixtures import SEED
from tools.training import synthetic


def test_every_input_varies_within_each_sector() -> None:
    data = synthetic.generate(2000, SEED)
    for index, sector in enumerate(SECTORS):
        rows = data.X[data.X[:, 0] == index]
        for column, name in enumerate(FEATURES[1:], start=1):
            distinct = len(np.unique(rows[:, column]))
            assert distinct > len(rows) // 2, f"{name} takes {distinct} values in {sector}"
