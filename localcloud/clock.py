"""The local cloud's time: `LocalClock` (real time plus an offset a test moves forward) and the
schedule expressions read against it: `rate(…)`, `cron(…)` (EventBridge's six fields) and `at(…)`, in UTC.

A canary bake of 30 minutes or an approval that times out after a day are Step Functions Wait
states and task timeouts; `LocalClock.advance` lets a test pass them in milliseconds, and what
waits on the clock (`wait_until`, a `ClockEvent`) wakes up to look at the new time.
"""
from __future__ import annotations

import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta


class LocalClock:
    """Real time plus an offset that only moves forward: `now()` never goes back, so a deadline
    once passed stays passed. Thread-safe; waiters block on one condition variable."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._changed = threading.Condition()  # notified on advance() and wake(): waiters look again
        self._waiters = 0

    @property
    def offset(self) -> float:
        """Seconds the clock is ahead of real time."""
        return self._offset

    @property
    def waiters(self) -> int:
        """How many threads are in `wait_until` now (a test sees a Wait state let go of its thread)."""
        return self._waiters

    def now(self) -> float:
        """The local cloud's time, in epoch seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock `seconds` ahead and wake every waiter; returns the new `now()`. Time
        does not go back: a negative (or not finite) `seconds` is a ValueError."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"the local clock only moves forward by a finite number of seconds, not {seconds!r}")
        with self._changed:
            self._offset += seconds
            self._changed.notify_all()
        return self.now()

    def wake(self) -> None:
        """Make every waiter look again at the time and its interrupt (after setting a plain Event)."""
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, deadline: float, *, interrupt: threading.Event | None = None) -> bool:
        """Block until `now() >= deadline` (True) or `interrupt` is set (False; looked at first).

        Sleeps in real time for what remains, and looks again whenever the clock is advanced or
        woken. A `ClockEvent` wakes the clock when set, so it interrupts at once; a plain Event is
        looked at every `PLAIN_INTERRUPT_CHECK_SECONDS` too (nothing tells the clock it was set)."""
        plain = interrupt is not None and not isinstance(interrupt, ClockEvent)
        with self._changed:
            self._waiters += 1
            try:
                while True:
                    if interrupt is not None and interrupt.is_set():
                        return False
                    remaining = deadline - self.now()
                    if remaining <= 0:
                        return True
                    if plain:
                        remaining = min(remaining, PLAIN_INTERRUPT_CHECK_SECONDS)
                    self._changed.wait(min(remaining, threading.TIMEOUT_MAX))
            finally:
                self._waiters -= 1

    def event(self) -> ClockEvent:
        """A `threading.Event` whose `wait(timeout)` counts the timeout on this clock."""
        return ClockEvent(self)


PLAIN_INTERRUPT_CHECK_SECONDS = 0.05  # how late LocalClock.wait_until may notice a plain Event set


class ClockEvent(threading.Event):
    """A `threading.Event` on the local clock: `wait(timeout)` ends when the clock passes the
    timeout (an `advance` past it ends it at once), and `set()` wakes the clock's waiters, so a
    `LocalClock.wait_until` it interrupts returns at once."""

    def __init__(self, clock: LocalClock) -> None:
        super().__init__()
        self.clock = clock

    def set(self) -> None:
        super().set()
        self.clock.wake()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        self.clock.wait_until(self.clock.now() + timeout, interrupt=self)
        return self.is_set()

_RATE = re.compile(r"^rate\((\d+) ([a-z]+)\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i + 1 for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
MAX_SCAN_MINUTES = 366 * 24 * 60


def next_fire(expression: str, since: float, until: float) -> float | None:
    """The first time after `since` (epoch seconds) at which the schedule fires, if it is <= `until`."""
    expression = expression.strip()
    step = rate_seconds(expression)
    if step is not None:
        t = since + step
        return t if t <= until else None
    m = re.fullmatch(r"at\((.+)\)", expression)
    if m:
        t = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp()
        return t if since < t <= until else None
    m = re.fullmatch(r"cron\((.+)\)", expression)
    if not m:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ValueError("cron expression needs 6 fields (minutes hours day-of-month month day-of-week year): "
                         f"{expression!r}")
    start = datetime.fromtimestamp(since, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = datetime.fromtimestamp(until, UTC)
    t = start
    for _ in range(MAX_SCAN_MINUTES):
        if t > end:
            return None
        if _cron_matches(fields, t):
            return t.timestamp()
        t += timedelta(minutes=1)
    return None


def rate_seconds(expression: str) -> int | None:
    """The interval of a ``rate(N minute(s)|hour(s)|day(s))`` expression in seconds; ``None`` for
    anything else (``cron()``, ``at()``). Lenient (``rate(1 minutes)`` is 60): the local cloud runs
    what the template holds; checking an expression is the app's business at synth."""
    rate = _RATE.match(expression)
    if not rate:
        return None
    unit = rate.group(2)
    unit_seconds = _RATE_UNIT_SECONDS.get(unit[:-1] if unit.endswith("s") else unit)
    return None if unit_seconds is None else int(rate.group(1)) * unit_seconds


def _field(spec: str, value: int, lo: int, hi: int, names: dict[str, int] | None = None) -> bool:
    if spec in ("*", "?"):
        return True
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/")
            step = int(s)
        if part in ("*", ""):
            a, b = lo, hi
        elif "-" in part:
            x, y = part.split("-")
            a, b = _num(x, names), _num(y, names)
        else:
            a = _num(part.rstrip("L#0123456789") or part, names) if not part.isdigit() else int(part)
            b = hi if step != 1 or "/" in spec else a
        if a <= value <= b and (value - a) % step == 0:
            return True
    return False


def _num(x: str, names: dict[str, int] | None) -> int:
    return names[x.upper()] if names and x.upper() in names else int(x)


def _cron_matches(f: list[str], t: datetime) -> bool:
    dow = (t.isoweekday() % 7) + 1  # SUN=1 … SAT=7
    return (_field(f[0], t.minute, 0, 59) and _field(f[1], t.hour, 0, 23) and _field(f[2], t.day, 1, 31)
            and _field(f[3], t.month, 1, 12, _MONTHS) and _field(f[4], dow, 1, 7, _DAYS)
            and _field(f[5], t.year, 1970, 2199))
