"""Schedule expressions: `rate(…)`, `cron(…)` (EventBridge's six fields) and `at(…)`, in UTC."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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
