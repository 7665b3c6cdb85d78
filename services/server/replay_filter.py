"""What a snapshot's SQL needs, on its way to psql, to replay on a server other than the one that wrote it.

Two things in a pg_dump's schema part (before the first COPY; table data is never rewritten) are about the
server or the tools, not about the database:

- pg_dump 17+ always writes ``SET transaction_timeout = 0;``; servers before 17 do not know the setting, and
  the single transaction would abort on it.
- Debian's PostgreSQL 15.20 stamps every new column with an attribute option, ``pg_attver=N``, that pg_dump 18
  writes out (``ALTER TABLE ONLY t ALTER COLUMN c SET (pg_attver=N);``); a server that stamps ignores a SET of
  it, every other rejects it ("unrecognized parameter"). So a snapshot taken on 15.20 restores on 16 to 18
  once it is left out.

A line left out becomes an empty line, so psql's line numbers still match the file's.
"""

from __future__ import annotations

import re

#: Attribute options a server sets on its own; a restore leaves them out (``services.diff.compare`` ignores them).
SERVER_STAMPED_OPTIONS = frozenset({"pg_attver"})

_STAMP = b"pg_attver="
_TIMEOUT = b"SET transaction_timeout = 0;"
_COLUMN_OPTIONS = re.compile(rb"(ALTER (?:FOREIGN )?TABLE (?:ONLY )?.+ ALTER COLUMN .+ SET \()(.*)(\);)")


class ReplayFilter:
    """Feed it the snapshot's SQL chunk by chunk; it returns what psql should receive. Until the first COPY
    it holds back an incomplete last line (at most one line), then passes chunks through as they are."""

    def __init__(self, server_major: int) -> None:
        self.drop_timeout = server_major < 17
        self._carry = b""
        self._passthrough = False

    def feed(self, chunk: bytes) -> bytes:
        if self._passthrough:
            return chunk
        data = self._carry + chunk if self._carry else chunk
        at = (b"\n" + data).find(b"\nCOPY ")  # where the first COPY line starts in data, its first line too
        if at >= 0:
            self._passthrough, self._carry = True, b""
            return self._fix(data[:at]) + data[at:]
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return self._fix(data[:cut])

    def flush(self) -> bytes:
        """The held-back last line (a file without a trailing newline, or without any COPY)."""
        rest, self._carry = self._carry, b""
        return self._fix(rest)

    def _fix(self, text: bytes) -> bytes:
        if _STAMP not in text and not (self.drop_timeout and _TIMEOUT in text):
            return text
        lines = text.split(b"\n")
        for i, line in enumerate(lines):
            if self.drop_timeout and line == _TIMEOUT:
                lines[i] = b""
            elif _STAMP in line:
                lines[i] = without_stamps(line)
        return b"\n".join(lines)


def without_stamps(line: bytes) -> bytes:
    """An ``ALTER ... ALTER COLUMN ... SET (...)`` line without the server-stamped options: the line itself
    when it has none, an empty line when they were all it set."""
    m = _COLUMN_OPTIONS.fullmatch(line)
    if not m:
        return line
    options = [o for o in m.group(2).split(b", ")
               if o.split(b"=", 1)[0].decode("ascii", "replace") not in SERVER_STAMPED_OPTIONS]
    return m.group(1) + b", ".join(options) + m.group(3) if options else b""
