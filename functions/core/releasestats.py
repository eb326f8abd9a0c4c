"""A running release's numbers, read from CloudWatch (docs/release.md): what ``shipyard release
status`` prints and what the release loop may decide on.

The inference function publishes, per served request, ``VersionPredictions`` / ``VersionErrors`` /
``VersionLatency`` with dimensions exactly ``Model``, ``Version`` for the version that answered,
and, while a shadow release runs, ``ShadowPredictions`` / ``ShadowAgreement`` /
``ShadowDifference`` / ``ShadowErrors`` / ``ShadowLatency`` for the candidate (dimensions
``Model``, ``Version``=the candidate). ``release_numbers`` reads them with GetMetricStatistics
over the release's window (``started_at`` floored to the minute, to ``end``), in ONE period (the
window rounded up to a multiple of 60 s), so a percentile is the percentile of the whole window.

Where data is absent the number says so: counts are 0, rates, means and percentiles are None.
CloudWatch answers percentiles (``ExtendedStatistics``); a CloudWatch that does not (moto, the
local cloud) gives None for them, and ``mean``/``max`` are still there.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.core.layout import (
    METRIC_SHADOW_AGREEMENT,
    METRIC_SHADOW_DIFFERENCE,
    METRIC_SHADOW_ERRORS,
    METRIC_SHADOW_LATENCY,
    METRIC_SHADOW_PREDICTIONS,
    METRIC_VERSION_ERRORS,
    METRIC_VERSION_LATENCY,
    METRIC_VERSION_PREDICTIONS,
    METRICS_NAMESPACE,
    VERSION_DIMENSION,
)

# GetMetricStatistics answers at most 1,440 datapoints per call and a period is a multiple of 60 s;
# one period for the whole window keeps percentiles exact. Past this many seconds, CloudWatch
# keeps only coarser data anyway (15 days: 5-minute, 63 days: 1-hour), so the window is capped.
MAX_WINDOW_SECONDS = 63 * 24 * 3600
BASIC = ("Sum", "SampleCount", "Average", "Maximum")


def parse_time(value: Any) -> datetime:
    """An ISO-8601 timestamp (``Z`` or an offset; naive means UTC) or a datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def window(release: dict, end: datetime | None = None) -> tuple[datetime, datetime, int]:
    """(start, end, period): the release's start floored to the minute, ``end`` (now by default),
    and one period covering them, a multiple of 60 s."""
    start = parse_time(release["started_at"]).replace(second=0, microsecond=0)
    end = parse_time(end) if end is not None else datetime.now(UTC)
    if end <= start:
        end = start + timedelta(seconds=60)
    seconds = min((end - start).total_seconds(), MAX_WINDOW_SECONDS)
    period = max(60, int(math.ceil(seconds / 60.0)) * 60)
    return start, start + timedelta(seconds=period), period


class _Reader:
    def __init__(self, cloudwatch: Any, model: str, start: datetime, end: datetime, period: int):
        self.cw, self.model, self.start, self.end, self.period = cloudwatch, model, start, end, period

    def stats(self, metric: str, version: Any, percentiles: tuple[str, ...] = ()) -> dict:
        """Sum, SampleCount, Average, Maximum (and the percentiles asked for) of ``metric`` for one
        version over the window; the several datapoints a CloudWatch might answer are combined."""
        kwargs: dict[str, Any] = {
            "Namespace": METRICS_NAMESPACE, "MetricName": metric,
            "Dimensions": [{"Name": "Model", "Value": self.model},
                           {"Name": VERSION_DIMENSION, "Value": str(int(version))}],
            "StartTime": self.start, "EndTime": self.end, "Period": self.period, "Statistics": list(BASIC),
        }
        if percentiles:
            kwargs["ExtendedStatistics"] = list(percentiles)
        points = self.cw.get_metric_statistics(**kwargs).get("Datapoints") or []
        count = sum(float(p.get("SampleCount") or 0) for p in points)
        total = sum(float(p.get("Sum") or 0) for p in points)
        out: dict[str, Any] = {
            "sum": total, "count": count, "mean": (total / count) if count else None,
            "max": max((float(p["Maximum"]) for p in points if p.get("Maximum") is not None), default=None),
        }
        for q in percentiles:
            # One period: one datapoint, its percentile. Several (a CloudWatch that splits the
            # window): the largest, an upper bound, never an underestimate.
            vals = [float(p["ExtendedStatistics"][q]) for p in points
                    if isinstance(p.get("ExtendedStatistics"), dict) and q in p["ExtendedStatistics"]]
            out[q] = (vals[0] if len(vals) == 1 else max(vals)) if vals and count else None
        return out


def _version_numbers(r: _Reader, version: Any) -> dict:
    preds = r.stats(METRIC_VERSION_PREDICTIONS, version)
    errs = r.stats(METRIC_VERSION_ERRORS, version)
    lat = r.stats(METRIC_VERSION_LATENCY, version, ("p50", "p99"))
    served = int(lat["count"])  # one latency value per request the version answered
    errors = int(errs["sum"])
    requests = served + errors
    return {
        "version": int(version), "requests": requests, "predictions": int(preds["sum"]), "errors": errors,
        "error_rate": (errors / requests) if requests else None,
        "latency": {"p50": lat["p50"], "p99": lat["p99"], "mean": lat["mean"], "max": lat["max"]},
    }


def _shadow_numbers(r: _Reader, version: Any) -> dict:
    preds = r.stats(METRIC_SHADOW_PREDICTIONS, version)
    agree = r.stats(METRIC_SHADOW_AGREEMENT, version)
    diff = r.stats(METRIC_SHADOW_DIFFERENCE, version, ("p50", "p90", "p99"))
    errs = r.stats(METRIC_SHADOW_ERRORS, version)
    lat = r.stats(METRIC_SHADOW_LATENCY, version, ("p50", "p99"))
    return {
        "version": int(version), "requests": int(lat["count"]) + int(errs["sum"]),
        "samples": int(preds["sum"]),
        "agreement": agree["mean"] if agree["count"] else None,
        "agreement_samples": int(agree["count"]),
        "difference": ({"mean": diff["mean"], "p50": diff["p50"], "p90": diff["p90"], "p99": diff["p99"],
                        "max": diff["max"], "samples": int(diff["count"])} if diff["count"] else None),
        "errors": int(errs["sum"]),
        "latency_p50": lat["p50"], "latency_p99": lat["p99"], "latency_mean": lat["mean"], "latency_max": lat["max"],
    }


def release_numbers(cloudwatch: Any, model: str, release: dict, *, end: datetime | None = None) -> dict:
    """The numbers of ``release`` (the registry's running release of ``model``) from its start to
    ``end`` (now by default): ``{"model", "release_id", "mode", "start", "end", "period",
    "production": {...}, "candidate": {...}, "shadow": {...} | None}``.

    ``production`` and ``candidate``: ``{"version", "requests", "predictions", "errors",
    "error_rate", "latency": {"p50", "p99", "mean", "max"}}`` from the Version* metrics: the
    requests each version ANSWERED (in a shadow release the candidate answers only pinned requests).
    ``shadow`` (shadow releases): the candidate's scoring of production's traffic, ``{"samples"
    (instances), "agreement" (share of instances that agreed, None without data or, for a
    regression release without a tolerance, never measured), "difference" ({"mean", "p50", "p90",
    "p99", "max", "samples"}, regression; None without data), "errors", "latency_p99", ...}``.
    """
    start, stop, period = window(release, end)
    r = _Reader(cloudwatch, model, start, stop, period)
    candidate = release["version"]
    production = release.get("production")
    out: dict[str, Any] = {
        "model": model, "release_id": release.get("id"), "mode": release.get("mode"),
        "start": start.isoformat(), "end": stop.isoformat(), "period": period,
        "production": _version_numbers(r, production) if production is not None else None,
        "candidate": _version_numbers(r, candidate),
        "shadow": _shadow_numbers(r, candidate) if release.get("mode") == "shadow" else None,
    }
    return out
