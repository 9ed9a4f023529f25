"""The compliance report of a real scan in headless Chromium at 1,280 px, served as the
local gateway serves it (with its Content-Security-Policy): nothing runs past the right
edge, every entry shows, not applicable looks unlike pass, and a screenshot is kept."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from common.services import reset_services, use_services
from tests.support.browser import find_chromium
from tests.support.compliance_pages import risk_and_sentiment_scan
from tests.support.fixtures import Stack
from tools.gateway import create_app

WIDTH = 1280
ORIGIN = "http://reports.test"
"""Requests to this origin are answered by the gateway in process; nothing leaves it."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable, reason = find_chromium()
    if executable is None:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, dict[str, Any]]:
    return risk_and_sentiment_scan(tmp_path_factory.mktemp("browser-report"))


@pytest.fixture
def report(browser: Browser, scanned: tuple[Stack, dict[str, Any]]) -> Iterator[Page]:
    """The scan's report opened through the gateway; no console error or page error."""
    use_services(scanned[0].services)
    client = create_app().test_client()
    served: list[int] = []

    def through_gateway(route: Route) -> None:
        response = client.get(route.request.url.removeprefix(ORIGIN))
        served.append(response.status_code)
        route.fulfill(
            status=response.status_code, headers=dict(response.headers), body=response.data
        )

    page = browser.new_page(viewport={"width": WIDTH, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.route(f"{ORIGIN}/**", through_gateway)
    try:
        page.goto(f"{ORIGIN}/reports/compliance/{scanned[1]['scan_id']}.html")
        assert served == [200]
        yield page
        assert problems == []
    finally:
        page.close()
        reset_services()


@pytest.mark.timeout(60)
def test_the_report_fits_1280_px_and_shows_every_entry(
    report: Page, scanned: tuple[Stack, dict[str, Any]], tmp_path: Path
) -> None:
    started = time.monotonic()
    result = scanned[1]
    assert report.evaluate("document.documentElement.scrollWidth") <= WIDTH
    entries = report.locator("li.entry")
    assert entries.count() == sum(len(r["details"]) for r in result["results"])
    for entry in entries.all():
        assert entry.is_visible()
        box = entry.bounding_box()
        assert box is not None
        assert box["width"] > 0
        assert box["x"] + box["width"] <= WIDTH
    for details in result["results"][5]["details"]:  # SEC_001: full 64-character digests
        digest = details["actual_sha256"]
        assert len(digest) == 64
        assert report.locator("li.entry", has_text=digest).is_visible()

    not_applicable = report.locator("tr.rule", has_text="FAIRNESS_001").locator("li.entry.na")
    assert not_applicable.locator(".status").inner_text() == "not applicable"
    assert "no group attribute" in not_applicable.inner_text()
    looks = "e => getComputedStyle(e).backgroundColor + ' ' + getComputedStyle(e).borderStyle"
    na_look = not_applicable.locator(".status").evaluate(looks)
    passing = report.locator("tr.rule", has_text="FAIRNESS_001").locator("li.entry.pass")
    assert passing.locator(".status").inner_text() == "pass"
    assert na_look != passing.locator(".status").evaluate(looks)

    shot = tmp_path / "compliance-report.png"
    report.screenshot(path=shot, full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">I", data[16:20])[0] == WIDTH
    assert time.monotonic() - started < 30
