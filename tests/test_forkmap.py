"""``services.forkmap``: a map shared with a real forked child gives exactly the serial map's result, in
order, whatever the child does: works, dies in the middle of a chunk, or cannot send some results."""

from __future__ import annotations

import os
import time

import pytest

from services import forkmap

PARENT = os.getpid()


def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def pack(result: tuple[int, int]) -> list:
    return list(result)


def unpack(_x: int, packed: list) -> tuple[int, int]:
    return packed[0], packed[1]


def wait_a_little() -> None:
    time.sleep(0.3)  # the child starts on the first chunks meanwhile


@pytest.fixture
def children(monkeypatch) -> list[int]:
    """The pids of the children forked (real forks, only counted)."""
    pids: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(forkmap.os, "fork", fork)
    return pids


def reaped(pid: int) -> bool:
    """Neither running nor a zombie: waited for already."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("n", [1, 7, 199, 200, 201, 4999])
def test_the_result_is_the_serial_maps_and_both_processes_share_the_work(n, children):
    calls = []
    out = forkmap.forked_map(list(range(n)), square, pack, unpack, lambda: calls.append(os.getpid())
                             or wait_a_little())
    assert [v for v, _ in out] == [x * x for x in range(n)]
    assert calls == [PARENT]  # meanwhile ran once, here
    # While this process waited, the child took chunks (chunk 0 first) and its results came back.
    assert out[0][1] == children[0]
    assert len(children) == 1 and reaped(children[0])


def test_both_processes_take_chunks_until_none_is_left(children):
    def slow(x: int) -> tuple[int, int]:
        time.sleep(0.001)  # 2 s of work: the child cannot be done with it while this process waits
        return square(x)

    out = forkmap.forked_map(list(range(2000)), slow, pack, unpack, wait_a_little)
    assert [v for v, _ in out] == [x * x for x in range(2000)]
    mine = sum(pid == PARENT for _, pid in out)
    assert 0 < mine < 2000 and {pid for _, pid in out} == {PARENT, children[0]}


def test_nothing_to_map_forks_nothing(children):
    calls = []
    assert forkmap.forked_map([], square, pack, unpack, lambda: calls.append(1)) == []
    assert calls == [1] and children == []


def test_a_child_that_dies_in_the_middle_of_a_chunk_costs_nothing_but_time(children):
    def dies_at_3(x: int) -> tuple[int, int]:
        if x == 3 and os.getpid() != PARENT:
            os._exit(5)  # as a crash would: nothing sent, chunk 0 taken from the queue
        return square(x)

    items = list(range(1000))  # chunks of 5: 3 is in chunk 0, which the child takes first
    out = forkmap.forked_map(items, dies_at_3, pack, unpack, wait_a_little)
    assert [v for v, _ in out] == [x * x for x in items]
    assert all(pid == PARENT for _, pid in out)  # the child answered nothing: all read here
    assert reaped(children[0])


def test_results_the_child_cannot_send_are_computed_here():
    def pack_odd_only(result: tuple[int, int]) -> list | None:
        return None if result[0] % 2 == 0 else list(result)

    out = forkmap.forked_map(list(range(400)), square, pack_odd_only, unpack, wait_a_little)
    assert [v for v, _ in out] == [x * x for x in range(400)]
    assert all(pid == PARENT for v, pid in out if v % 2 == 0)
    assert any(pid != PARENT for v, pid in out if v % 2)


def test_a_failure_here_stops_the_child_and_reaps_it(children):
    def slow(x: int) -> tuple[int, int]:
        time.sleep(0.002)  # 20,000 items: 40 s for the child alone, if it were left to finish
        return square(x)

    def fails() -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        forkmap.forked_map(list(range(20_000)), slow, pack, unpack, fails)
    assert time.monotonic() - started < 20  # not waited for: killed
    assert reaped(children[0])
