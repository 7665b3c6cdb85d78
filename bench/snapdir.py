"""A directory of many valid snapshots, made in seconds from one real tiny snapshot.

Taking 10,000 real snapshots would take an hour and measure nothing new; what ``list`` and the TUI pay
for is per-file work (stat, metadata parse, quick header/trailer check). So each copy is the real tiny
dump (same bytes, so its size and sha256 stay right) with metadata rewritten to agree with its new name:
``label``, ``timestamp`` and ``filename`` must match ``{YYYYmmddHHMMSS}_{label}.sql`` (see
``services.snapshots.store.check_meta``). Labels, purposes, ages and protection vary as in a long-lived project.
Files are written without fsync: durability is not what is measured.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from services.snapshots.listing import format_ts
from services.snapshots.meta import meta_text
from services.snapshots.store import META_SUFFIX, TS_FORMAT, load_meta

LABELS = ["before-migration", "nightly", "pre-rollback", "release-2.4.1", "add-rls-to-todos", "manual",
          "hotfix-billing", "weekly", "before-bulk-update", "emergency-backup"]
PURPOSES = ["", "add RLS to todos", "before the 2.4 release", "bulk price update",
            "Taken automatically by dbsage-tui restore.", "nightly cron"]


def make_snapshot_dir(template: Path, directory: Path, count: int,
                      newest: dt.datetime | None = None) -> Path:
    """Fill ``directory`` with ``count`` snapshots copied from ``template`` (a real ``.sql`` whose
    ``.meta.yaml`` sits beside it), one every 37 minutes going back from ``newest``."""
    body = template.read_bytes()
    meta = load_meta(template.with_name(template.name + META_SUFFIX))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / ".gitignore").write_text("*\n")
    newest = (newest or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    for i in range(count):
        ts = newest - dt.timedelta(minutes=37 * i)
        label = LABELS[i % len(LABELS)]
        name = f"{ts.strftime(TS_FORMAT)}_{label}.sql"
        m = dict(meta)
        m.update(label=label, timestamp=format_ts(ts), filename=name, purpose=PURPOSES[i % len(PURPOSES)],
                 protected=(i % 50 == 7),
                 restore_instructions=str(meta.get("restore_instructions", "")).replace(template.name, name))
        _write(directory / name, body)
        _write(directory / (name + META_SUFFIX), meta_text(m).encode())  # as ``write_meta`` writes it
    return directory


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
