"""Workers that die, race and run side by side: every row is counted and written once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common.batch.jobs import BatchJobs
from common.batch.leases import Leases
from common.batch.runner import Runner
from common.batch.spec import SHARDS
from tests.batch.conftest import SUBMITTER, companies, put_input, read_outputs, submit
from tests.support.fixtures import Stack, embedded_stack, register_risk


def _later(stack: Stack) -> Leases:
    """Leases as a worker sees them once every lease given until now has expired."""
    lease_s = stack.settings.batch_lease_s
    return Leases(
        stack.services.backends.documents, lease_s=lease_s, clock=lambda: time.time() + lease_s + 1
    )


def _job(stack: Stack, name: str, rows: int) -> str:
    put_input(stack.services.backends.artifacts, f"batch/{name}/in.jsonl", companies(rows))
    job = submit(
        stack,
        input_uri=f"batch/{name}/in.jsonl",
        output_prefix=f"batch/{name}/out/",
        key_field="ticker",
    )
    return str(job["job_id"])


def _written_once(stack: Stack, name: str, rows: int) -> None:
    lines = read_outputs(stack.services.backends.artifacts, f"batch/{name}/out/", "predictions")
    assert Counter(line["key"] for line in lines) == Counter(f"T{i:05d}" for i in range(rows))


def test_a_killed_worker_s_shards_are_taken_over_and_counted_once(batch_stack: Stack) -> None:
    job_id = _job(batch_stack, "killed", 12)
    dead = Runner(batch_stack.services, owner="dead")
    wrote = dead.leases.claim(job_id, "dead")  # outputs written, then killed before commit
    assert wrote is not None
    assert dead.process(wrote) is not None
    dead.leases.claim(job_id, "dead")  # killed before writing anything

    survivor = Runner(batch_stack.services, owner="survivor", leases=_later(batch_stack))
    assert survivor.work(job_id, budget_s=60) == (3, 12)

    done = BatchJobs(batch_stack.services).get(job_id, SUBMITTER)
    assert (done["state"], done["rows_done"], done["predicted"], done["shards_done"]) == (
        "succeeded",
        12,
        12,
        3,
    )
    _written_once(batch_stack, "killed", 12)
    shards = batch_stack.services.backends.documents.query(SHARDS)
    taken = sorted(
        (d.data["index"], d.data["attempts"]) for d in shards if d.data["job_id"] == job_id
    )
    assert taken == [(0, 2), (1, 2), (2, 1)]


def test_two_workers_finishing_one_shard_count_it_once(batch_stack: Stack) -> None:
    job_id = _job(batch_stack, "race", 4)
    first = Runner(batch_stack.services, owner="first")
    lease_a = first.leases.claim(job_id, "first")
    second = Runner(batch_stack.services, owner="second", leases=_later(batch_stack))
    lease_b = second.leases.claim(job_id, "second")  # took the lease over as it expired
    assert lease_a is not None
    assert lease_b is not None
    assert lease_a.index == lease_b.index

    outcome_b = second.process(lease_b)
    outcome_a = first.process(lease_a)  # finds the outputs stored and keeps them
    assert outcome_a == outcome_b is not None
    assert [second.leases.commit(lease_b, outcome_b), first.leases.commit(lease_a, outcome_a)] == [
        True,
        False,
    ]
    done = BatchJobs(batch_stack.services).get(job_id, SUBMITTER)
    assert (done["state"], done["rows_done"]) == ("succeeded", 4)
    _written_once(batch_stack, "race", 4)


def test_threads_racing_on_one_store_share_the_shards(batch_stack: Stack) -> None:
    job_id = _job(batch_stack, "threads", 40)
    start = threading.Barrier(3)
    got: dict[str, tuple[int, int]] = {}

    def work(name: str) -> None:
        runner = Runner(batch_stack.services, owner=name)
        start.wait()
        got[name] = runner.work(job_id, budget_s=60)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(shards for shards, _ in got.values()) == 10
    assert sum(rows for _, rows in got.values()) == 40
    done = BatchJobs(batch_stack.services).get(job_id, SUBMITTER)
    assert (done["state"], done["rows_done"], done["shards_done"]) == ("succeeded", 40, 10)
    _written_once(batch_stack, "threads", 40)


def _process_worker(environ: dict[str, str], job_id: str, ready: Any) -> None:
    """One worker process: its own store connections, as a function instance has."""
    stack = embedded_stack(Path(environ["IPO_DATA_DIR"]).parent, **environ)
    ready.wait()
    Runner(stack.services).work(job_id, budget_s=120)
    stack.services.close()


def test_processes_racing_on_one_sqlite_file_and_folder_share_the_shards(
    tmp_path: Path,
) -> None:
    stack = embedded_stack(tmp_path, IPO_BATCH_SHARD_ROWS="4", IPO_BATCH_SUBMIT_BUDGET_S="0")
    register_risk(stack.lifecycle)
    job_id = _job(stack, "procs", 100)
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(2)
    workers = [
        spawn.Process(target=_process_worker, args=(stack.environ, job_id, ready)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=110)
    assert [w.exitcode for w in workers] == [0, 0]
    done = BatchJobs(stack.services).get(job_id, SUBMITTER)
    assert (done["state"], done["rows_done"], done["shards_done"]) == ("succeeded", 100, 25)
    _written_once(stack, "procs", 100)
    committers = {
        d.data["committed_by"]
        for d in stack.services.backends.documents.query(SHARDS)
        if d.data["job_id"] == job_id
    }
    assert len(committers) == 2  # both processes committed shards
    stack.services.close()


def _stored_then_hang(environ: dict[str, str], job_id: str, stored: Any) -> None:
    """A worker that stores one shard's outputs and is killed before it commits."""
    stack = embedded_stack(Path(environ["IPO_DATA_DIR"]).parent, **environ)
    runner = Runner(stack.services, owner="doomed")
    lease = runner.leases.claim(job_id, runner.owner)
    assert lease is not None
    runner.process(lease)
    stored.set()
    time.sleep(600)


def test_a_worker_process_killed_before_committing_is_taken_over(tmp_path: Path) -> None:
    stack = embedded_stack(tmp_path, IPO_BATCH_SHARD_ROWS="4", IPO_BATCH_SUBMIT_BUDGET_S="0")
    register_risk(stack.lifecycle)
    job_id = _job(stack, "sigkill", 10)
    spawn = multiprocessing.get_context("spawn")
    stored = spawn.Event()
    doomed = spawn.Process(target=_stored_then_hang, args=(stack.environ, job_id, stored))
    doomed.start()
    assert stored.wait(timeout=60)
    os.kill(doomed.pid or 0, signal.SIGKILL)
    doomed.join(timeout=30)
    assert doomed.exitcode == -signal.SIGKILL

    survivor = Runner(stack.services, owner="survivor", leases=_later(stack))
    assert survivor.work(job_id, budget_s=60) == (3, 10)
    done = BatchJobs(stack.services).get(job_id, SUBMITTER)
    assert (done["state"], done["rows_done"], done["predicted"]) == ("succeeded", 10, 10)
    _written_once(stack, "sigkill", 10)
    stack.services.close()
