"""Five-field cron expressions (minute hour day-of-month month day-of-week, UTC) for Schedule triggers.

Supports `*`, numbers, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`; day-of-week 0–7 (0 and 7 are
Sunday). As in Vixie cron, when both day fields are restricted a day matches if either matches.
`in_window` answers "is `now` inside a window that started at a cron time at most `duration` ago?".

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class CronError(ValueError):
    """Not a five-field cron expression."""


_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        return _day_matches(self, t)


def _field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        step = 1
        part = item
        if "/" in item:
            part, s = item.split("/", 1)
            if not s.isdigit() or int(s) == 0:
                raise CronError(f"{name}: bad step {s!r}")
            step = int(s)
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            x, y = part.split("-", 1)
            if not (x.isdigit() and y.isdigit()):
                raise CronError(f"{name}: bad range {part!r}")
            a, b = int(x), int(y)
        elif part.isdigit():
            a = b = int(part)
            if step != 1:
                b = hi
        else:
            raise CronError(f"{name}: not a number, range or *: {part!r}")
        if not (lo <= a <= hi and lo <= b <= hi) or a > b:
            raise CronError(f"{name}: {part!r} outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@functools.lru_cache(maxsize=512)
def parse_cron(expr: str) -> Cron:
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(
            f"{expr!r} has {len(fields)} fields; want 5 (minute hour day-of-month month day-of-week)"
        )
    parsed = [_field(f, lo, hi, n) for f, (lo, hi), n in zip(fields, _RANGES, _NAMES, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4])
    return Cron(parsed[0], parsed[1], parsed[2], parsed[3], weekdays, fields[2] == "*", fields[4] == "*")


def in_window(cron: Cron, duration_s: int, now: datetime) -> bool:
    """Whether a window that opened at a matching minute in (now - duration, now] is still open."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    start = latest_start(cron, minute, duration_s // 60 + 1)
    return start is not None and start > now - timedelta(seconds=duration_s)


@functools.lru_cache(maxsize=4096)
def latest_start(cron: Cron, minute: datetime, horizon_minutes: int) -> datetime | None:
    """The latest matching minute at or before `minute`, looking back at most `horizon_minutes` (cached: the
    answer only changes from one minute to the next)."""
    t = minute
    earliest = minute - timedelta(minutes=horizon_minutes)
    while t > earliest:
        if t.month not in cron.months or not _day_matches(cron, t):
            t = t.replace(hour=0, minute=0) - timedelta(minutes=1)  # the previous day's last minute
        elif t.hour not in cron.hours:
            t = t.replace(minute=0) - timedelta(minutes=1)  # the previous hour's last minute
        else:
            m = max((x for x in cron.minutes if x <= t.minute), default=None)
            if m is not None:
                found = t.replace(minute=m)
                return found if found > earliest else None
            t = t.replace(minute=0) - timedelta(minutes=1)
    return None


def _day_matches(cron: Cron, t: datetime) -> bool:
    dom = t.day in cron.days
    dow = (t.isoweekday() % 7) in cron.weekdays
    if cron.any_day and cron.any_weekday:
        return True
    if cron.any_day:
        return dow
    if cron.any_weekday:
        return dom
    return dom or dow
