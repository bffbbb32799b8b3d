"""A tenant's automatic sync schedule: parsing what the admin typed, and telling a late scheduled run.

Prefect-free except for its schedule models (imported where used), which validate cron strings and time
zones the way the Prefect server will.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from domain.errors import ExplainedError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_SECONDS = 300  # a sync reads the whole source: more often than every 5 minutes is a mistake


class ScheduleError(ExplainedError):
    """What the admin typed is not a schedule the Prefect server would accept."""


@dataclass(frozen=True)
class Schedule:
    """Either a cron string or an interval in seconds, with an optional IANA time zone."""

    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        """As the doors print it (CLI JSON, the admin API)."""
        return {"cron": self.cron, "interval_seconds": self.interval_seconds, "timezone": self.timezone}

    def describe(self) -> str:
        when = f"cron {self.cron!r}" if self.cron else f"every {self.interval_seconds} s"
        return when + (f" ({self.timezone})" if self.timezone else "")


def duration_seconds(text: str, what: str = "an interval") -> int:
    """`24h`, `30m`, `30d`, `90s`, `1h30m` -> seconds (no minimum)."""
    text = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([smhd])", text)
    if not parts or re.sub(r"(\d+)\s*([smhd])", "", text).strip():
        raise ScheduleError(f"{text!r} is not {what}; write it like 24h, 30m, 30d or 1h30m.")
    return sum(int(n) * _UNITS[unit] for n, unit in parts)


def parse_every(text: str) -> int:
    """`24h`, `30m`, `1d`, `90s`, `1h30m` -> seconds, at least the shortest interval."""
    seconds = duration_seconds(text)
    if seconds < MIN_INTERVAL_SECONDS:
        shortest = MIN_INTERVAL_SECONDS // 60
        raise ScheduleError(f"An interval of {seconds} s is too short; the shortest is {shortest} min.")
    return seconds


def checked(cron: str | None, interval_seconds: int | None, timezone: str | None) -> Schedule:
    """The schedule, checked as the Prefect server will check it; one sentence when it is not valid."""
    if (cron is None) == (interval_seconds is None):
        raise ScheduleError("Give exactly one of --every or --cron (or --off).")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"Unknown time zone {timezone!r}; use an IANA name such as Europe/Berlin.") from None
    if cron is not None:
        fields = cron.split()
        if len(fields) == 6:
            raise ScheduleError(
                f"{cron!r} has six fields, and Prefect would read the first as seconds; write five "
                '(minute hour day-of-month month day-of-week), like "0 3 * * *".'
            )
        if len(fields) != 5:
            raise ScheduleError(
                f'{cron!r} is not five fields (minute hour day-of-month month day-of-week); write it like "0 3 * * *".'
            )
        cron = " ".join(fields)
        from prefect.client.schemas.schedules import CronSchedule  # Prefect's own check, only for a cron string

        try:
            CronSchedule(cron=cron, timezone=timezone)
        except ValidationError:
            raise ScheduleError(f'{cron!r} is not a cron schedule; write it like "0 3 * * *".') from None
        gap = shortest_cron_gap(cron)
        if gap < MIN_INTERVAL_SECONDS:  # the same minimum as for an interval
            shortest = MIN_INTERVAL_SECONDS // 60
            raise ScheduleError(
                f"Cron {cron!r} runs as often as every {gap} s; the shortest interval is {shortest} min."
            )
    return Schedule(cron=cron, interval_seconds=interval_seconds, timezone=timezone)


_DAY_MINUTES = 24 * 60


def shortest_cron_gap(cron: str) -> int:
    """The shortest time in seconds between two consecutive fire times of a valid five-field cron string;
    a day when it fires at most once a day.

    A cron string fires at the same times of day on every day its day fields allow, so the gaps are those
    between its times of day, and the one across midnight (the day's last time to the next day's first)
    when two consecutive days both fire. Computed from the expanded fields rather than by stepping through
    fire times: every 5 minutes for a year is 105,000 steps. Wall-clock time: a daylight-saving change
    can shorten one gap a year (the tenant's lock still keeps two runs from overlapping).
    """
    from prefect._vendor.croniter import croniter

    minute_field, hour_field = croniter(cron).expanded[:2]
    minutes = range(60) if minute_field == ["*"] else minute_field
    hours = range(24) if hour_field == ["*"] else hour_field
    times = sorted({int(h) * 60 + int(m) for h in hours for m in minutes})
    gaps = [later - earlier for earlier, later in pairwise(times)]
    across_midnight = _DAY_MINUTES - times[-1] + times[0]
    if across_midnight < min(gaps, default=_DAY_MINUTES) and _fires_on_consecutive_days(cron):
        gaps.append(across_midnight)
    return 60 * min(gaps, default=_DAY_MINUTES)


def _fires_on_consecutive_days(cron: str) -> bool:
    """Whether the day fields of `cron` ever allow two days in a row, looked up over 28 years: the
    Gregorian calendar's cycle of weekdays and leap days, so "the 13th or a Friday" and "Feb 29" count."""
    from prefect._vendor.croniter import CroniterBadDateError, croniter

    days = croniter("0 0 " + " ".join(cron.split()[2:]), datetime(2028, 1, 1))
    end = datetime(2028 + 28, 1, 1)
    try:
        previous = days.get_next(datetime)
        while previous < end:
            day = days.get_next(datetime)
            if day - previous == timedelta(days=1):
                return True
            previous = day
    except CroniterBadDateError:  # day fields no date meets (Feb 30): it never fires at all
        return False
    return False


def period_seconds(schedule: Schedule, around: datetime) -> float:
    """How long one period of the schedule lasts at `around` (cron: between its next two fire times)."""
    if schedule.interval_seconds is not None:
        return float(schedule.interval_seconds)
    # Prefect's own (vendored) croniter, so a period is computed exactly as the server schedules runs.
    from prefect._vendor.croniter import croniter

    if schedule.cron is None:
        raise ScheduleError("A schedule needs a cron string or an interval.")
    local = around.astimezone(ZoneInfo(schedule.timezone or "UTC"))
    it = croniter(schedule.cron, local)
    first, second = it.get_next(datetime), it.get_next(datetime)
    return float((second - first).total_seconds())


def is_late(scheduled_start: datetime, now: datetime, schedule: Schedule) -> bool:
    """A scheduled run that starts more than one period after its slot is skipped: the next one is due anyway.

    After an outage Prefect's queue holds every missed run; running them all would sync the same
    tenant again and again. The newest one (within one period) runs, the rest are skipped.
    """
    return now - scheduled_start > timedelta(seconds=period_seconds(schedule, scheduled_start))


def late_reason(scheduled_start: datetime, now: datetime, schedule: Schedule) -> str | None:
    """The sentence for a skipped late run, or None when the run is on time."""
    if not is_late(scheduled_start, now, schedule):
        return None
    return (
        f"scheduled for {scheduled_start.isoformat(timespec='seconds')}, more than one period ({schedule.describe()}) "
        "ago; skipped so that runs missed during an outage do not pile up (the next scheduled run syncs)"
    )
