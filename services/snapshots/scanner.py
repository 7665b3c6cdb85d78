"""Streaming analysis of a plain-format pg_dump file, one chunk at a time, never holding the dump.

It finds the header, the "dump complete" trailer and the COPY data blocks (counting their rows), so that
the dump writer, the validator and the diff all agree on what a complete snapshot looks like. The work per
chunk is a few ``bytes.find``/``bytes.count`` calls inside COPY data, where nearly all the bytes are; only
the DDL between COPY blocks is split into lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

HEADER = b"--\n-- PostgreSQL database dump\n--\n"
TRAILER = b"-- PostgreSQL database dump complete"
#: First and last lines of what dbsage-tui appends after pg_dump's trailer (``services.server.dependents``).
APPENDIX_BEGIN = b"-- dbsage-tui appendix:"
APPENDIX_END = b"-- dbsage-tui appendix complete"
#: The comment pg_dump writes before each TOC entry: ``-- Name: items; Type: TABLE; Schema: public; Owner: app``
#: (``-- Data for Name: ...`` before a table's COPY block).
TOC_RE = re.compile(r"^-- (?:Data for |Statistics for )?Name: (?P<name>.*?); Type: (?P<type>[A-Z ]+); "
                    r"Schema: (?P<schema>.*?);")
_COPY_END = b"\\.\n"
_NL_COPY_END = b"\n" + _COPY_END
_TAIL_KEEP = 4096


def find_copy_end(data: bytes, pos: int) -> tuple[int, bool]:
    """Where ``\\n\\\\.\\n`` (the end of COPY data) starts in ``data[pos:]``, or -1; and whether backslashes
    were too many for this to pay. The marker is the only line of COPY data that starts with a backslash
    and a dot, and backslashes are rare in most data (``\\N``, escapes), so hopping between them with a
    one-byte ``find`` (memchr) beats a four-byte search; past about one backslash per KiB it does not, and
    the caller takes the four-byte search for the rest of the table."""
    budget = max(64, (len(data) - pos) >> 10)
    j = data.find(b"\\", pos + 1)
    while j >= 0:
        if data[j - 1] == 10 and data.startswith(b".\n", j + 1):
            return j - 1, False
        budget -= 1
        if not budget:
            return data.find(_NL_COPY_END, j), True
        j = data.find(b"\\", j + 1)
    return -1, False


#: One part of a qualified name: a double-quoted identifier (``""`` is one ``"``) or a bare word.
_NAME_PART = re.compile(r'"((?:[^"]|"")*)"?|([^. (\t"]*)')


def parse_qualified_name(text: str) -> tuple[list[str], str]:
    """Split ``schema."Table"`` (pg_dump's quoting) into unquoted parts; returns (parts, rest of text)."""
    parts, i = [], 0
    while True:
        m = _NAME_PART.match(text, i)
        parts.append(m[2] if m[1] is None else m[1].replace('""', '"'))
        i = m.end()
        if not text.startswith(".", i):
            return parts, text[i:]
        i += 1


@dataclass
class ScanResult:
    has_header: bool = False
    has_trailer: bool = False
    dumped_from: str | None = None
    dumped_by: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    #: Every COPY block in file order: (table, rows). A restore matches psql's ``COPY n`` tags against it.
    copies: list[tuple[str, int]] = field(default_factory=list)
    bytes_scanned: int = 0
    in_copy_at_end: bool = False

    @property
    def complete(self) -> bool:
        return self.has_header and self.has_trailer and not self.in_copy_at_end


class DumpScanner:
    """Feed it the dump's bytes in order; ``finish()`` returns what it saw. ``on_line`` receives each line
    that is not COPY data (bytes, no newline): the diff sees the DDL while COPY data passes by. ``rewrite``
    may return a replacement for such a line, or None to keep it (COPY data is never rewritten); they
    collect in ``edits`` as (offset, end, replacement) into the bytes fed, and bytes before ``settled`` can
    no longer be edited. ``count_rows=False`` finds the COPY blocks without counting their rows (all 0): the
    count is most of a scan's cost, and a restore of a file matching its metadata's sha256 has them there."""

    def __init__(self, on_line: Callable[[bytes], None] | None = None,
                 rewrite: Callable[[bytes], bytes | None] | None = None, count_rows: bool = True) -> None:
        self.count_rows = count_rows
        self.result = ScanResult()
        self.edits: list[tuple[int, int, bytes]] = []
        self._rewrite = rewrite
        self._base = 0  # offset of the ``data`` being processed, for edits
        self._saw_trailer = False
        self._in_appendix = False
        self._carry = b""
        self._in_copy: str | None = None
        self._rows = 0
        self._dense = False  # this table's data has too many backslashes for find_copy_end
        self._head = b""
        self._tail = b""
        self._on_line = on_line

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if len(self._head) < len(HEADER):
            self._head += chunk[: len(HEADER) - len(self._head)]
        self.result.bytes_scanned += len(chunk)
        self._tail = chunk[-_TAIL_KEEP:] if len(chunk) >= _TAIL_KEEP else (self._tail + chunk)[-_TAIL_KEEP:]
        pos = 0
        if self._carry:
            # Complete the line cut at the previous chunk's end on its own, so the big chunk is never
            # concatenated (copied) just to join a few bytes.
            nl = chunk.find(b"\n")
            if nl < 0:
                self._carry += chunk
                return
            self._base = self.result.bytes_scanned - len(chunk) - len(self._carry)
            self._carry = self._process(self._carry + chunk[: nl + 1], 0)
            pos = nl + 1
        self._base = self.result.bytes_scanned - len(chunk)
        self._carry = self._process(chunk, pos)

    @property
    def settled(self) -> int:
        """Bytes fed that no edit can touch any more: all but an incomplete statement line."""
        return self.result.bytes_scanned - (len(self._carry) if self._in_copy is None else 0)

    def _process(self, data: bytes, pos: int) -> bytes:
        """Consume whole lines of ``data`` from ``pos``; return the incomplete last line."""
        n = len(data)
        while pos < n:
            if self._in_copy is not None:
                if data.startswith(_COPY_END, pos):
                    self._end_copy()
                    pos += len(_COPY_END)
                    continue
                if self._dense:
                    idx = data.find(_NL_COPY_END, pos)
                else:
                    idx, self._dense = find_copy_end(data, pos)
                end = idx if idx >= 0 else data.rfind(b"\n", pos)  # the data's end, else its last whole row
                if self.count_rows:
                    self._rows += data.count(b"\n", pos, end + 1)
                if idx < 0:
                    pos = max(pos, end + 1)
                    break
                pos = idx + len(_NL_COPY_END)
                self._end_copy()
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            self._statement_line(data[pos:nl])
            if self._rewrite is not None and (new := self._rewrite(data[pos:nl])) is not None:
                self.edits.append((self._base + pos, self._base + nl, new))
            pos = nl + 1
        return data[pos:]

    def _statement_line(self, line: bytes) -> None:
        if self._on_line is not None:
            self._on_line(line)
        if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            parts, _ = parse_qualified_name(line[5:].decode("utf-8", "replace"))
            self._in_copy = ".".join(parts[-2:])  # the ``schema.table`` key of metadata row_counts
            self._rows = 0
            self._dense = False
        elif line == TRAILER:
            self._saw_trailer = True
        elif line.startswith(APPENDIX_BEGIN):
            self._in_appendix = self._saw_trailer
        elif line.startswith(b"-- Dumped from database version "):
            self.result.dumped_from = line.split(b"version ", 1)[1].decode(errors="replace").strip()
        elif line.startswith(b"-- Dumped by pg_dump version "):
            self.result.dumped_by = line.split(b"version ", 1)[1].decode(errors="replace").strip()

    def _end_copy(self) -> None:
        assert self._in_copy is not None
        self.result.row_counts[self._in_copy] = self.result.row_counts.get(self._in_copy, 0) + self._rows
        self.result.copies.append((self._in_copy, self._rows))
        self._in_copy = None
        self._rows = 0

    def finish(self) -> ScanResult:
        if self._carry and self._in_copy is None:
            self._statement_line(self._carry)
            self._carry = b""
        res = self.result
        res.has_header = self._head.startswith(HEADER)
        res.has_trailer = self._saw_trailer and trailer_ok(self._tail) and (
            self._in_appendix or APPENDIX_END not in self._tail)
        res.in_copy_at_end = self._in_copy is not None
        return res


def trailer_ok(tail: bytes) -> bool:
    """The file ends as a complete snapshot does: pg_dump's dump-complete comment, or after it the end
    of dbsage-tui's appendix, followed by nothing but blank lines, comment dashes or psql's
    ``\\unrestrict KEY`` (PostgreSQL 17.6+/18). (That pg_dump's trailer precedes an appendix is
    checked by ``DumpScanner``, which reads it all.)"""
    mark = APPENDIX_END if APPENDIX_END in tail else TRAILER
    if (idx := tail.rfind(mark)) < 0:
        return False
    after = tail[idx + len(mark):].split(b"\n")[1:]
    return all(not ln.strip() or ln.strip() == b"--" or ln.startswith(b"\\unrestrict ") for ln in after)
