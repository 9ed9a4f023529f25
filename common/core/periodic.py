"""Merging what an instance holds in memory at most once an interval, on a request.

Cloud Functions gives an instance CPU only while it serves, so tallies are merged by the
request that finds the interval up; one request at a time, and a store fault keeps them
for the next interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from common.core.errors import ServiceError


class Interval:
    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last = clock()
        self._running = False
        self._lock = threading.Lock()

    def restart(self) -> None:
        """A merge begins now: the next is due one interval later."""
        self._last = self._clock()

    def run_if_due(self, merge: Callable[[], None], log: logging.Logger, what: str) -> None:
        """Run ``merge`` when the interval is up and no other caller is running it; a
        ServiceError is logged as ``<what> not saved`` and the tallies stay in memory."""
        with self._lock:
            if self._running or self._clock() - self._last < self.every_s:
                return
            self._running = True
        try:
            merge()
        except ServiceError as exc:
            log.warning("%s not saved: %s", what, exc.message)
        finally:
            with self._lock:
                self._running = False
