"""``ipoctl predict --protocol v2``: the instances go out as named tensors and the answer
prints what ``/v1/predict`` answers for them, one line per output."""

from __future__ import annotations

import json

from tests.support import cli
from tests.support.fixtures import Stack


def test_predict_v2_sends_tensors_and_prints_each_output(stack: Stack) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    instances = json.dumps([example, {**example, "market_volatility": 12.0}])
    token = stack.token()
    v1 = json.loads(
        cli.ipoctl(token, "--json", "predict", "risk", "--instances", "-", stdin=instances)
    )
    shown = cli.ipoctl(
        token, "predict", "risk", "--protocol", "v2", "--instances", "-", stdin=instances
    )
    lines = {line.split()[0]: line.split()[1:] for line in shown.splitlines() if line.strip()}
    assert lines["model"] == ["risk"]
    assert lines["version"] == ["1.0.0"]
    assert lines["variant"] == ["production"]
    assert lines["OUTPUT"] == ["#0", "#1"]
    assert lines["risk_class"] == [p["risk_class"] for p in v1["predictions"]]
    assert lines["probabilities.high"] == [
        str(p["probabilities"]["high"]) for p in v1["predictions"]
    ]
    answer = json.loads(
        cli.ipoctl(
            token,
            "--json",
            "predict",
            "risk",
            "--protocol",
            "v2",
            "--instances",
            "-",
            stdin=instances,
        )
    )
    (score,) = [o for o in answer["outputs"] if o["name"] == "risk_score"]
    assert (score["datatype"], score["shape"]) == ("FP64", [2])
    assert score["data"] == [p["risk_score"] for p in v1["predictions"]]
