"""What a snapshot's SQL needs, on its way to psql, to replay on a server other than the one that wrote it.

A few things in a pg_dump's SQL outside its table data (which is never rewritten) are about the server or
the tools, not about the database:

- pg_dump 17+ always writes ``SET transaction_timeout = 0;``; servers before 17 do not know the setting, and
  the single transaction would abort on it.
- PostgreSQL 18's snapshots carry the planner's statistics (``pg_restore_relation_stats`` and
  ``pg_restore_attribute_stats`` calls, after the data); servers before 18 have no such functions, so each
  statistics entry is commented out, up to the next entry of another kind (the statistics are then made
  afresh by the ANALYZE after the restore).
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
_STATISTICS = b"-- Statistics for Name: "
_STATISTICS_AFTER_NEWLINE = b"\n" + _STATISTICS
#: Lines that end a statistics entry: the next entry of another kind, the trailer, our appendix.
_NOT_STATISTICS = (b"-- Name: ", b"-- Data for Name: ", b"-- PostgreSQL database dump complete",
                   b"-- dbsage-tui appendix")
_COLUMN_OPTIONS = re.compile(rb"(ALTER (?:FOREIGN )?TABLE (?:ONLY )?.+ ALTER COLUMN .+ SET \()(.*)(\);)")


class ReplayFilter:
    """Feed it the snapshot's SQL chunk by chunk; it returns what psql should receive. Until the first COPY
    it holds back an incomplete last line (at most one line), then passes chunks through as they are (for
    a server before 18, until the first statistics entry, where it reads lines again)."""

    def __init__(self, server_major: int) -> None:
        self.drop_timeout = server_major < 17
        self.drop_statistics = server_major < 18
        self._carry = b""
        self._passthrough = False
        self._in_statistics = False
        self._rest_of_header = False  # the next line is what is left of a header passed in part
        self._tail = b""  # the end of the last chunk passed through: an entry's header may straddle two

    def feed(self, chunk: bytes) -> bytes:
        if self._passthrough:
            return self._until_statistics(chunk) if self.drop_statistics else chunk
        data = self._carry + chunk if self._carry else chunk
        at = (b"\n" + data).find(b"\nCOPY ")  # where the first COPY line starts in data, its first line too
        if at >= 0:
            self._passthrough, self._carry, self._tail = True, b"", b""
            return self._fix(data[:at]) + self.feed(data[at:])
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return self._fix(data[:cut])

    def _until_statistics(self, chunk: bytes) -> bytes:
        """Table data passes as it is; from the first statistics entry on, lines are read again. Its header
        line is a comment whatever part of it was passed already."""
        at = (self._tail + chunk[:len(_STATISTICS_AFTER_NEWLINE)]).find(_STATISTICS_AFTER_NEWLINE)
        if at >= 0:  # where the header line starts in this chunk (before it, if it began in the last one)
            at += 1 - len(self._tail)
        elif (at := chunk.find(_STATISTICS_AFTER_NEWLINE)) >= 0:
            at += 1
        else:
            keep = len(_STATISTICS_AFTER_NEWLINE)
            self._tail = chunk[-keep:] if len(chunk) >= keep else (self._tail + chunk)[-keep:]
            return chunk
        self._passthrough, self._in_statistics, self._rest_of_header = False, True, at < 0
        return chunk[:max(at, 0)] + self.feed(chunk[max(at, 0):])

    def flush(self) -> bytes:
        """The held-back last line (a file without a trailing newline, or without any COPY)."""
        rest, self._carry = self._carry, b""
        return self._fix(rest)

    def _fix(self, text: bytes) -> bytes:
        if not text:
            return text
        if _STAMP not in text and not (self.drop_timeout and _TIMEOUT in text) and \
                not (self.drop_statistics and (self._in_statistics or _STATISTICS in text)):
            return text
        lines = text.split(b"\n")
        for i, line in enumerate(lines):
            if self._rest_of_header:
                self._rest_of_header = False
            elif self.drop_statistics and line.startswith(_STATISTICS):
                self._in_statistics = True
            elif self._in_statistics:
                if line.startswith(_NOT_STATISTICS):
                    self._in_statistics = False
                elif line and not line.startswith(b"--"):
                    lines[i] = b"-- " + line
            elif self.drop_timeout and line == _TIMEOUT:
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
