"""Start-up objects out of the garbage collector's reach, once per serving process.

A function process holds about 63,000 objects after its first answer (the modules, the
settings, the loaded model, the spec), and every full collection walks all of them while
each request in flight waits: 25 ms on a quiet two-core machine, several times that on a
busy one. After its first request answered below 400, when the model it serves is
loaded, a process collects once and moves every object still alive into the permanent
generation (``gc.freeze``), so later full collections walk only what requests left
behind. The collection runs when the answer's body has been sent (``call_on_close``), so
that request does not wait for it. The local gateway freezes the same way before it
accepts a connection (``scripts/serve.py``).
"""

from __future__ import annotations

import gc
import os

from flask import Response

_frozen_in = 0
"""The process id that has frozen its start-up objects; a forked child has not."""


def freeze_after(response: Response, status: int) -> None:
    """Freeze this process's start-up objects once ``response`` is sent, if this is its
    first answer below 400."""
    global _frozen_in
    if status >= 400 or _frozen_in == os.getpid():
        return
    _frozen_in = os.getpid()
    response.call_on_close(_freeze)


def _freeze() -> None:
    gc.collect()
    gc.freeze()
