"""How a snapshot's numbers and times read to a person: sizes, ages (in words, and compact for a list
column), and when a compact age next changes.

Pure formatting, no I/O and no storage: the CLI, the widgets and the engine's log lines all read a snapshot
the same way through here. humanize is imported on first use, because a snapshot only needs it at its end.
"""

from __future__ import annotations

import datetime as dt

_DAY = 86_400


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def how_many(n: int, noun: str) -> str:
    """``n`` things, in words: "1 table", "4,300 rows"."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    import humanize
    return humanize.naturalsize(n, binary=False)


def age_text(ts: dt.datetime, now: dt.datetime | None = None) -> str:
    import humanize
    return humanize.naturaltime((now or utcnow()) - ts)


def compact_age(ts: dt.datetime, now: dt.datetime) -> str:
    """The age in one short word for a list column: ``42s``, ``8m``, ``5h``, ``3d``, ``7mo``, ``1y11mo``
    (a month is a twelfth of a year). A timestamp ahead of the clock reads ``now``."""
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return "now"
    for below, per, unit in ((60, 1, "s"), (3600, 60, "m"), (_DAY, 3600, "h"), (31 * _DAY, _DAY, "d")):
        if seconds < below:
            return f"{seconds // per}{unit}"
    months = seconds // _DAY * 12 // 365
    if months < 12:
        return f"{max(months, 1)}mo"
    years, months = divmod(months, 12)
    return f"{years}y{months}mo" if months else f"{years}y"


def compact_age_changes_at(ts: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When ``compact_age(ts, ...)`` can next read differently from what it reads at ``now``: the next
    whole second, minute or hour of age under a day, the next whole day from then on."""
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return now + dt.timedelta(seconds=1)
    unit = 1 if seconds < 60 else 60 if seconds < 3600 else 3600 if seconds < _DAY else _DAY
    return ts + dt.timedelta(seconds=(seconds // unit + 1) * unit)
