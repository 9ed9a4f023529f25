"""scripts/simulate_experiment.py: what its user reads after a run, and its options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = "scripts/simulate_experiment.py"


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def arm_rows(stdout: str) -> list[list[str]]:
    """The rows of the arms table: METRIC UNIT VARIANT USERS OUTCOMES MEAN [LOW, HIGH]."""
    lines = stdout.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("METRIC  ") and "USERS" in line
    )
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.mark.parametrize(("users", "mean"), [("150", "3"), ("60", "1")])
def test_repeat_users_are_counted_as_users_with_their_outcomes(users: str, mean: str) -> None:
    done = simulate("--users", users, "--requests-per-user", mean, "--seed", "5")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    said = next(line for line in out.splitlines() if " users make " in line)
    total = int(said.split()[3])
    assert said == f"{users} users make {total} predictions (1 + Poisson({int(mean) - 1}) each)"
    head = next(line for line in out.splitlines() if line.startswith("experiment "))
    assert head.split()[3:5] == ["sentiment", "(active,"]
    assert "outcomes taken until" in head
    rows = arm_rows(out)
    assert [row[:3] for row in rows] == [
        ["label_correct", "user", "control"],
        ["label_correct", "user", "candidate"],
        ["polarity_error", "user", "control"],
        ["polarity_error", "user", "candidate"],
    ]
    for metric in (rows[:2], rows[2:]):
        assert sum(int(row[3]) for row in metric) == int(users)
        assert sum(int(row[4]) for row in metric) == total
    if mean == "1":
        assert all(row[3] == row[4] for row in rows)
        assert total == int(users)
    else:
        assert all(int(row[3]) < int(row[4]) for row in rows)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "DIFFERENCE  CI_HOLM" in line)
    assert lines[header].split()[:5] == ["METRIC", "VARIANT", "DIFFERENCE", "CI_HOLM", "LEVEL"]
    for line in lines[header + 1 : header + 3]:
        metric, variant, difference, low, high, level = line.split()[:6]
        assert variant == "candidate"
        assert float(low.strip("[,")) <= float(difference) <= float(high.strip("]"))
        assert level in ("95%", "97.5%")
    srm = out.splitlines()[-2:]
    assert srm[0].startswith("sample-ratio check on users: p = ")
    users_seen = [int(n.rstrip(",;")) for n in srm[1].split()[2:6:2]]
    requests_seen = [int(n.rstrip(",;")) for n in srm[1].split()[7::2]]
    assert (sum(users_seen), sum(requests_seen)) == (int(users), total)


def test_help_describes_every_option_and_a_mean_below_one_is_refused() -> None:
    done = simulate("--help")
    assert done.returncode == 0
    usage = " ".join(done.stdout.split())
    assert "--users N simulated users, each assigned to one variant (default: 2000)" in usage
    assert "--requests-per-user MEAN mean predictions per user, 1..100" in usage
    assert "1 + Poisson(MEAN - 1)" in usage
    assert "--seed SEED seed of the versions built" in usage
    refused = simulate("--requests-per-user", "0.5")
    assert refused.returncode == 2
    assert "0.5 is not between 1 and 100" in refused.stderr
