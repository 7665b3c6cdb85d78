"""How a snapshot's numbers and times read to a person: sizes, ages, and when an age text next changes.

Pure formatting, no I/O and no storage: the CLI, the widgets and the engine's log lines all read a snapshot
the same way through here. humanize is imported on first use, because a snapshot only needs it at its end.
"""

from __future__ import annotations

import datetime as dt

_DAY = 86_400
#: An age text of less than a day -> the age (whole seconds) at which it stops being the text: see
#: ``age_changes_at``.
_AGE_TEXT_ENDS: dict[str, int] = {}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    import humanize
    return humanize.naturalsize(n, binary=False)


def age_text(ts: dt.datetime, now: dt.datetime | None = None) -> str:
    import humanize
    return humanize.naturaltime((now or utcnow()) - ts)


def age_changes_at(ts: dt.datetime, now: dt.datetime, text: str | None = None) -> dt.datetime:
    """When ``age_text(ts, ...)`` will next read differently from what it reads at ``now``: a list that
    shows ages re-renders one then, and only then.

    Asked of ``age_text`` itself rather than assumed: humanize rounds minutes and hours to the nearest
    (half to even), and its rules have changed between releases. Under a day the text depends on the whole
    seconds of age alone, and each text holds for one stretch of ages, so where a text ends is searched for
    once and remembered; from a day on the text counts whole days (months and years are derived from days).
    ``text``: what ``age_text(ts, now)`` gave, if the caller has it (saves computing it again)."""
    age = (now - ts).total_seconds()
    if age < 0:  # a timestamp ahead of this clock ("in 5 minutes"): look again in a second
        return now + dt.timedelta(seconds=1)
    seconds = int(age)
    if seconds >= _DAY:
        return ts + dt.timedelta(days=seconds // _DAY + 1)
    current = age_text(ts, now) if text is None else text
    end = _AGE_TEXT_ENDS.get(current)
    if end is None or end <= seconds:
        end = _AGE_TEXT_ENDS[current] = _text_end(ts, seconds, current)
    return ts + dt.timedelta(seconds=end)


def _text_end(ts: dt.datetime, seconds: int, current: str) -> int:
    """The first age (whole seconds, at most a day) after ``seconds`` at which the age text of ``ts`` is no
    longer ``current``: a binary search, since each text holds for one stretch of ages."""
    def text_at(s: int) -> str:
        return age_text(ts, ts + dt.timedelta(seconds=s))

    lo, hi = seconds, _DAY
    if text_at(hi) == current:  # "23 hours ago" rounds up to "a day ago": from a day on, days count
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if text_at(mid) == current else (lo, mid)
    return hi
