"""Checkpoints of the embedded store's write-ahead log, off the requests' path.

By default SQLite copies the write-ahead log into the database file (a checkpoint) in the
commit that takes the log past 1,000 pages, and that commit's caller waits for the copy
and its fsync. An audit batch's commit writes about ten pages, so about one commit in a
hundred did it: 5 to 8 ms instead of 0.1 ms on one thread, longer with the GIL shared,
and every request of that batch waited. In ``background`` mode a store's write connection
never checkpoints; one thread per process does, ``EVERY_S`` after a commit wakes it, for
each store of the process that has committed since its last pass (and sleeps while none
does). A PASSIVE checkpoint waits for no reader
or writer. A pass that a commit raced leaves that commit's pages, and is run again at
once: SQLite restarts the log from its beginning only at a write that finds it wholly
copied, so a log always left a little behind would grow without end. Writers that never
pause (a tight loop, not a server's traffic) can race every pass; once the log holds
``RESTART_FRAMES`` pages, a RESTART checkpoint holds new commits back for the few
milliseconds the copy takes and starts the log afresh; writers that find one due let it
go first, and one that a long reader keeps waiting is not tried again for a second.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING

from common.core.errors import ServiceError

if TYPE_CHECKING:
    from common.backends.sqlite_store import SQLiteDocumentStore

log = logging.getLogger("ipo.store")

EVERY_S = 0.05
"""How long the thread lets commits gather before a round; an idle process's thread
sleeps until the next commit instead."""
PASSES = 4
"""Passes in a row while commits keep racing one: each has less left to copy."""
RESTART_FRAMES = 4096
"""Pages (16 MiB at SQLite's default page size) past which the log is restarted."""


class Checkpointer:
    """The process's checkpoint thread and the stores it serves (weakly held)."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self._every_s = every_s
        self._lock = threading.Lock()
        self._copying = threading.Lock()
        """Held through each round, and by a fork: a child never starts with SQLite's
        own locks held by a thread it does not have."""
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_in_parent,
            after_in_child=self._after_fork_in_child,
        )
        self._stores: weakref.WeakSet[SQLiteDocumentStore] = weakref.WeakSet()
        self._due = threading.Event()
        """Set by a commit (or a pass left unfinished): a round has something to copy."""
        self._pid = 0
        self.passes = 0
        """Checkpoint passes run by this process."""
        self.rounds = 0
        """Rounds run by this process: none while no store commits."""

    def _before_fork(self) -> None:
        self._copying.acquire()
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()
        self._copying.release()

    def _after_fork_in_child(self) -> None:
        self._lock, self._copying = threading.Lock(), threading.Lock()
        self._due = threading.Event()  # its lock may have been held by a parent's thread

    def wake(self) -> None:
        """A store committed: run a round within ``EVERY_S``."""
        if not self._due.is_set():  # the commits of a busy process pay only this read
            self._due.set()

    def register(self, store: SQLiteDocumentStore) -> None:
        """Serve ``store`` from now on; the first call in a process starts its thread."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child has no thread yet
                self._pid = os.getpid()
                self._stores = weakref.WeakSet()
                threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()
            self._stores.add(store)

    def _run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self._every_s)  # commits arriving meanwhile are copied together
            self._due.clear()  # before the round: a commit during it wakes the next
            try:
                self.rounds += 1
                self._round()
            except Exception:  # the thread must outlive any one store's trouble
                log.exception("write-ahead log checkpoint round failed; the next one retries")

    def _round(self) -> None:
        with self._lock:
            stores = list(self._stores)
        with self._copying:
            for store in stores:
                if store.take_uncopied():
                    self.checkpoint(store)

    def checkpoint(self, store: SQLiteDocumentStore) -> None:
        """Copy ``store``'s log into its database; what a racing commit added is copied by
        another pass, or by the next round if commits keep coming. The first pass of a
        round may restart a long log; the others only copy."""
        try:
            for attempt in range(PASSES):
                self.passes += 1
                if store.checkpoint(restart_past=RESTART_FRAMES if attempt == 0 else None):
                    return
            store.mark_uncopied()
        except (ServiceError, sqlite3.Error) as exc:
            if store.closed:  # nothing more to copy, ever
                with self._lock:
                    self._stores.discard(store)
                return
            store.mark_uncopied()
            log.warning("write-ahead log checkpoint failed; retried next round: %s", exc)


checkpointer = Checkpointer()
