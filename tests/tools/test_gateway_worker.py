"""Keep-alive connections spread evenly over the local gateway's processes: the shared
counts, and the running gateway with two processes."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_process import Gateway, running_gateway
from tools import gateway_worker
from tools.gateway_worker import ConnectionShares


def test_a_process_with_two_more_than_the_least_loaded_has_a_surplus() -> None:
    shares = ConnectionShares(3)
    for index, count in enumerate([6, 4, 5]):
        shares.claim(index).record(count)
    assert shares.claim(0).surplus(6)  # 6 against 4: moving one evens it
    assert not shares.claim(2).surplus(5)  # 5 against 4: moving one only swaps the two
    assert not shares.claim(1).surplus(4)
    assert shares.counts() == [6, 4, 5]


def test_one_connection_between_two_processes_stays_where_it_is() -> None:
    shares = ConnectionShares(2)
    shares.claim(1).record(0)
    assert not shares.claim(0).surplus(1)


def test_a_process_that_stopped_recording_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """One that died, or is still loading its models: nothing is moved towards it."""
    shares = ConnectionShares(3)
    assert shares.counts() == [None, None, None]  # nobody has recorded yet
    assert not shares.claim(0).surplus(8)
    now = [1000.0]
    monkeypatch.setattr(gateway_worker.time, "monotonic", lambda: now[0])
    shares.claim(1).record(0)
    now[0] += gateway_worker.STALE_S + 1  # process 1 goes quiet
    shares.claim(2).record(3)
    assert shares.counts() == [None, None, 3]
    assert not shares.claim(0).surplus(4)  # 4 against 3; the silent 0 is not counted
    assert shares.claim(0).surplus(5)


def test_one_connection_is_moved_at_a_time_across_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(gateway_worker.time, "monotonic", lambda: now[0])
    shares = ConnectionShares(3)
    assert shares.claim(0).claim_move()
    assert not shares.claim(2).claim_move()  # another process, within the same 50 ms
    now[0] += gateway_worker.SHED_EVERY_S + 0.001
    assert shares.claim(2).claim_move()


def test_counts_are_shared_with_a_forked_process() -> None:
    shares = ConnectionShares(2)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        shares.claim(1).record(7)
        os._exit(0)
    os.waitpid(child, 0)
    assert shares.counts() == [None, 7]


def test_fewer_than_two_processes_share_nothing() -> None:
    with pytest.raises(ValueError, match="two or more"):
        ConnectionShares(1)
    with pytest.raises(ValueError, match="no slot 2"):
        ConnectionShares(2).claim(2)


def established(gateway: Gateway, port: int) -> list[int]:
    """Connections each serving process holds on ``port``, from /proc."""
    open_on_port = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "01":  # ESTABLISHED
            open_on_port.add(fields[9])
    counts = []
    for pid in gateway.serving_pids():
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts.append(len(inodes & open_on_port))
    return counts


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gateway"), models="risk", workers=2) as started:
        yield started


@pytest.mark.gateway
def test_eight_keep_alive_clients_end_four_and_four(two_processes: Gateway) -> None:
    port = int(two_processes.base.rsplit(":", 1)[1])
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]
    for client in clients:
        client.connect()
    deadline = time.monotonic() + 10
    while sum(first_split := established(two_processes, port)) < 8:  # accepted yet?
        assert time.monotonic() < deadline, first_split
        time.sleep(0.05)
    closed_by_server = 0
    deadline = time.monotonic() + 20  # each move lands on the other process half the time
    while True:
        for client in clients:
            client.request("GET", "/healthz")
            response = client.getresponse()
            assert response.status == 200
            response.read()
            if response.getheader("Connection") == "close":
                closed_by_server += 1
                client.close()  # the next request opens a new connection
        final = established(two_processes, port)
        if sorted(final) == [4, 4] or time.monotonic() > deadline:
            break
    for client in clients:
        client.close()
    assert sorted(final) == [4, 4], (first_split, final, closed_by_server)
    if sorted(first_split) == [4, 4]:
        assert closed_by_server == 0  # even from the start: nothing is moved
    else:
        assert closed_by_server >= abs(first_split[0] - first_split[1]) // 2
