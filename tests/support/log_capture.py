"""The platform's log lines as a test reads them: the JSON text and the parsed objects."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from common.core.logs import JsonFormatter


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.text: list[str] = []
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.text.append(text)
        self.lines.append(json.loads(text))


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every line the ``ipo`` loggers write at INFO and above while the test runs."""
    handler = Lines()
    logger = logging.getLogger("ipo")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
