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
    """The age in words, as ``compact_age`` counts it (whole units, never rounded up): ``7 minutes ago``,
    ``1 year, 11 months ago``; the list's ``59m`` is never the preview's ``an hour ago``."""
    parts = _age_parts(ts, now or utcnow())
    if not parts or parts[0][0] == 0:
        return "now"
    return ", ".join(how_many(n, unit) for n, unit in parts) + " ago"


def compact_age(ts: dt.datetime, now: dt.datetime) -> str:
    """The age in one short word for a list column: ``42s``, ``8m``, ``5h``, ``3d``, ``7mo``, ``1y11mo``
    (a month is a twelfth of a year). A timestamp ahead of the clock reads ``now``."""
    parts = _age_parts(ts, now)
    return "".join(f"{n}{_SHORT[unit]}" for n, unit in parts) if parts else "now"


_SHORT = {"second": "s", "minute": "m", "hour": "h", "day": "d", "month": "mo", "year": "y"}


def _age_parts(ts: dt.datetime, now: dt.datetime) -> list[tuple[int, str]]:
    """(count, unit) of the age: one unit under a year, years and months (if any) from then on; none
    for a timestamp ahead of the clock."""
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return []
    for below, per, unit in ((60, 1, "second"), (3600, 60, "minute"), (_DAY, 3600, "hour"), (31 * _DAY, _DAY, "day")):
        if seconds < below:
            return [(seconds // per, unit)]
    months = seconds // _DAY * 12 // 365
    if months < 12:
        return [(max(months, 1), "month")]
    years, months = divmod(months, 12)
    return [(years, "year"), *([(months, "month")] if months else [])]


def compact_age_changes_at(ts: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When ``compact_age(ts, ...)`` can next read differently from what it reads at ``now``: the next
    whole second, minute or hour of age under a day, the next whole day from then on."""
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return now + dt.timedelta(seconds=1)
    unit = 1 if seconds < 60 else 60 if seconds < 3600 else 3600 if seconds < _DAY else _DAY
    return ts + dt.timedelta(seconds=(seconds // unit + 1) * unit)
