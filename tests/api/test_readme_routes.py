"""README's route table names every route of common/api/openapi.yaml and the function
that answers it, so a reader finds the scheduled jobs there too."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def readme_rows() -> dict[str, str]:
    """``"POST /v1/jobs/warm-cache"`` -> ``"warm_cache"``, from README's route table."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) == 3
            and cells[0].startswith("`")
            and ("/v1/" in cells[0] or "/v2" in cells[0])
        ):
            for route in re.findall(r"`([A-Z]+ /[^`]+)`", cells[0]):
                rows[route] = cells[1].strip("`")
    return rows


def test_every_route_of_the_spec_is_in_the_readme_table() -> None:
    spec = yaml.safe_load((ROOT / "common" / "api" / "openapi.yaml").read_text())
    expected = {
        f"{method.upper()} {path.replace('{experiment_id}', '{id}')}": op["x-ipo-function"]
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
        if isinstance(op, dict) and "x-ipo-function" in op
    }
    rows = readme_rows()
    assert {route: rows.get(route) for route in expected} == expected
