"""A tenant's automatic sync schedule: parsing what the admin typed, and telling a late scheduled run.

Prefect-free except for its schedule models (imported where used), which validate cron strings and time
zones the way the Prefect server will.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
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

    def describe(self) -> str:
        when = f"cron {self.cron!r}" if self.cron else f"every {self.interval_seconds} s"
        return when + (f" ({self.timezone})" if self.timezone else "")


def parse_every(text: str) -> int:
    """`24h`, `30m`, `1d`, `90s`, `1h30m` -> seconds."""
    text = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([smhd])", text)
    if not parts or re.sub(r"(\d+)\s*([smhd])", "", text).strip():
        raise ScheduleError(f"{text!r} is not an interval; write it like 24h, 30m, 1d or 1h30m.")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds < MIN_INTERVAL_SECONDS:
        shortest = MIN_INTERVAL_SECONDS // 60
        raise ScheduleError(f"An interval of {seconds} s is too short; the shortest is {shortest} min.")
    return seconds


def checked(cron: str | None, interval_seconds: int | None, timezone: str | None) -> Schedule:
    """The schedule, checked as the Prefect server will check it; one sentence when it is not valid."""
    from prefect.client.schemas.schedules import CronSchedule

    if (cron is None) == (interval_seconds is None):
        raise ScheduleError("Give exactly one of --every or --cron (or --off).")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"Unknown time zone {timezone!r}; use an IANA name such as Europe/Berlin.") from None
    if cron is not None:
        try:
            CronSchedule(cron=cron, timezone=timezone)
        except ValidationError:
            raise ScheduleError(f'{cron!r} is not a cron schedule; write it like "0 3 * * *".') from None
    return Schedule(cron=cron, interval_seconds=interval_seconds, timezone=timezone)


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
