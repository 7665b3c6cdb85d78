"""A map over many items shared with one forked child, for the CPU-bound Python work dbsage-tui does
before it has threads: listing a large directory (reading and checking 10,000 metadata files the first
time, most of a second on one core; 20,000 stat calls each time).

The items are cut into chunks whose numbers wait in a pipe; this process and the child each take the next
number (a one-byte read from a pipe is atomic, so every chunk goes to exactly one of them) until none is
left. So the work splits by how fast each side actually runs, not by a fixed share: on a busy machine one
core can be half as fast as the other. And work that only this process can do (``meanwhile``: the TUI's
imports) overlaps the child's share instead of being added to it.

The child sends its results back as ``marshal`` data (built-in types only) through a second pipe. Anything
amiss with it (an exit before it answered, data that does not load) and this process computes the chunks
the child took itself: the result is the same list whatever happens to the child.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Chunks per map: one byte each in the pipe (at most 256), small enough that the side that takes the last
#: one finishes at most a chunk's work after the other (10,000 items: 50 per chunk, a few milliseconds).
CHUNKS = 200


def forked_map(items: Sequence[T], fn: Callable[[T], R], pack: Callable[[R], Any],
               unpack: Callable[[T, Any], R], meanwhile: Callable[[], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed by this process and a forked child together.

    ``pack(result)`` turns a result the child computed into marshal-able data, or None to have this process
    compute that item again itself (a result that cannot travel); ``unpack(item, data)`` rebuilds it here.
    ``meanwhile`` runs in this process right after the fork, before it joins in. Only for a process
    with one thread (a fork copies no other thread, nor the locks they hold): the caller checks."""
    if not items:
        if meanwhile is not None:
            meanwhile()
        return []
    size = -(-len(items) // CHUNKS)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    queue_r, queue_w = os.pipe()
    os.write(queue_w, bytes(range(len(chunks))))  # fewer bytes than PIPE_BUF: written at once
    os.close(queue_w)  # so that an empty queue reads as EOF in both processes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here, whatever happens
        code = 1
        try:
            os.close(r)
            done = []
            while taken := os.read(queue_r, 1):
                k = taken[0]
                done.append((k, [pack(fn(x)) for x in chunks[k]]))
            data = marshal.dumps(done)
            with os.fdopen(w, "wb") as fh:
                fh.write(len(data).to_bytes(8, "big") + data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    results: list[list[R] | None] = [None] * len(chunks)
    reader = os.fdopen(r, "rb")
    try:
        if meanwhile is not None:
            meanwhile()
        while taken := os.read(queue_r, 1):
            k = taken[0]
            results[k] = [fn(x) for x in chunks[k]]
        data = reader.read()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # its work is not wanted any more: do not wait for it
        raise
    finally:
        os.close(queue_r)
        reader.close()  # before waiting: a child still writing gets EPIPE instead of blocking forever
        _, status = os.waitpid(pid, 0)
    for k, packed in _answer(data, status):
        if 0 <= k < len(chunks) and results[k] is None and len(packed) == len(chunks[k]):
            results[k] = [fn(x) if p is None else unpack(x, p) for x, p in zip(chunks[k], packed, strict=True)]
    out: list[R] = []
    for chunk, done in zip(chunks, results, strict=True):
        out += [fn(x) for x in chunk] if done is None else done  # None: the child took it but did not answer
    return out


def _answer(data: bytes, status: int) -> list[tuple[int, list]]:
    """The child's (chunk number, packed results) pairs; none if it did not exit 0 with all its data."""
    if status != 0 or len(data) < 8 or int.from_bytes(data[:8], "big") != len(data) - 8:
        return []
    try:
        done = marshal.loads(data[8:])
    except (ValueError, EOFError, TypeError):
        return []
    if not isinstance(done, list) or not all(isinstance(d, tuple) and len(d) == 2 and isinstance(d[0], int)
                                             and isinstance(d[1], list) for d in done):
        return []
    return done
