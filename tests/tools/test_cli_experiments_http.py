"""ipoctl's experiment commands against the real experiment functions, in process.

tests/tools/test_cli.py renders answers written by hand; here the answers are the ones the
functions give (functions-framework test clients), so a change of their JSON that the
tables no longer show fails here.
"""

from __future__ import annotations

import json

from tests.functions.test_experiments_api import DESIGN, predict_as, start
from tests.support import cli as in_process
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


def ipoctl(stack: Stack, *argv: str, stdin: str = "") -> str:
    token = stack.token(("experiment:read", "experiment:write"))
    return in_process.ipoctl(token, *argv, stdin=stdin)


def test_results_count_users_and_outcomes_and_quote_the_holm_interval(stack: Stack) -> None:
    experiment = start(stack)
    eid = experiment["experiment_id"]
    users = [f"user-{i}" for i in range(12)]
    for round_ in range(2):
        for i, user in enumerate(users):
            if round_ == 1 and i % 3 == 0:
                continue  # a third of the users come once, the others twice
            served = predict_as(stack, user)
            value = f"first_day_return={0.1 * (i % 4) - 0.15:g}"
            ipoctl(
                stack,
                "experiment",
                "outcome",
                eid,
                "--exposure-id",
                served["exposure_id"],
                "--value",
                value,
            )
    out = ipoctl(stack, "experiment", "results", eid)
    head, arms, comparisons, srm = out.rstrip("\n").split("\n\n")
    assert head.startswith(f"experiment {eid} on risk (active, outcomes taken until ")
    rows = [line.split() for line in arms.splitlines()]
    assert rows[0] == ["METRIC", "UNIT", "VARIANT", "USERS", "OUTCOMES", "MEAN", "95%", "CI"]
    assert [row[:3] for row in rows[1:]] == [
        ["first_day_return", "user", "control"],
        ["first_day_return", "user", "candidate"],
    ]
    assert sum(int(row[3]) for row in rows[1:]) == 12
    assert sum(int(row[4]) for row in rows[1:]) == 20
    header, row = comparisons.splitlines()
    assert header.split()[:5] == ["METRIC", "VARIANT", "DIFFERENCE", "CI_HOLM", "LEVEL"]
    cells = row.split()
    assert cells[:2] == ["first_day_return", "candidate"]
    assert float(cells[3].strip("[,")) <= float(cells[2]) <= float(cells[4].strip("]"))
    assert cells[5] == "95%"  # one comparison: Holm judges it at 1 - alpha
    assert cells[-3:] == ["not", "enough", "data"]  # fewer than 100 users per arm
    first, counts = srm.splitlines()
    assert first.startswith("sample-ratio check on users: p = ")
    numbers = [int(word.strip(",;")) for word in counts.split() if word.strip(",;").isdigit()]
    assert (sum(numbers[:2]), sum(numbers[2:])) == (12, 20)

    raw = json.loads(ipoctl(stack, "--json", "experiment", "results", eid))
    cmp = raw["results"]["comparisons"]["candidate"]["first_day_return"]
    assert abs(float(cells[3].strip("[,")) - cmp["ci_holm"]["low"]) <= 5e-5
    assert abs(float(cells[4].strip("]")) - cmp["ci_holm"]["high"]) <= 5e-5
    assert cmp["ci_holm_level"] == 0.95


def test_show_create_and_stop_give_the_window_and_the_units(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    created = ipoctl(stack, "experiment", "create", "--design", "-", stdin=json.dumps(DESIGN))
    block = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("  ") for line in created.splitlines())
    )
    eid = block["experiment"]
    assert block["metrics"] == "first_day_return (continuous, increase, unit user)"
    assert (block["status"], block["stopped"], block["outcome window"]) == (
        "active",
        "-",
        "28 days",
    )
    stopped = ipoctl(stack, "experiment", "stop", eid)
    shown = ipoctl(stack, "experiment", "show", eid)
    assert stopped == shown
    after = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("  ") for line in shown.splitlines())
    )
    assert after["status"] == "stopped"
    assert after["stopped"] != "-"
    assert after["closes"] < block["closes"]  # 28 days after the stop, not after the end
