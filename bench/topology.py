"""Where the database server runs: on the clients' cores (the pairs' default) or on a core of its own.

The benchmark's server shares the machine with the tools, the worst case for a tool that does work of its
own beside pg_dump: on 2 cores the raw dump alone keeps both 74-83% busy (the server backend, pg_dump and
the kernel writing the file), so every CPU second we add becomes wall time. A hosted database (Supabase,
RDS) runs on other hardware. ``server_apart`` models that on one machine: the server's processes on the
first CPU, both sides' clients on the others (the raw tool and ours alike), for the length of a pair.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def postmaster_pid(datadir: Path) -> int:
    """The first line of the running server's ``postmaster.pid``."""
    return int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])


def server_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer, I/O workers, ...)."""
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            pids.append(int(entry))
    return pids


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, cpus)


@contextlib.contextmanager
def server_apart(postmaster: int) -> Iterator[set[int] | None]:
    """Pin the server to the first CPU we may use and yield the others, for the clients; new backends
    inherit the postmaster's mask. Yields None (nothing pinned) on a machine with a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield None
        return
    _pin(server_pids(postmaster), {cpus[0]})
    try:
        yield set(cpus[1:])
    finally:
        _pin(server_pids(postmaster), set(cpus))
