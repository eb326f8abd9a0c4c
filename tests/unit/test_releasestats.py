"""functions/core/releasestats.py: a release's numbers from CloudWatch (moto's, and a CloudWatch
that answers percentiles)."""
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from functions.core import releasestats
from functions.core.releasestats import release_numbers

START = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def release(mode="canary", version=4, production=3, started_at=START):
    return {"id": "r1", "mode": mode, "version": version, "production": production,
            "percent": 10 if mode == "canary" else None, "bake": 1800,
            "started_at": started_at.isoformat().replace("+00:00", "Z"), "execution_arn": "arn:x"}


@pytest.fixture
def cw():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def put(cw, metric, version, values, at=START + timedelta(minutes=2), model="iris"):
    cw.put_metric_data(Namespace="Shipyard", MetricData=[{
        "MetricName": metric, "Values": [float(v) for v in values], "Timestamp": at,
        "Dimensions": [{"Name": "Model", "Value": model}, {"Name": "Version", "Value": str(version)}]}])


def test_window_is_one_period_of_whole_minutes_from_the_start_minute():
    start, end, period = releasestats.window(release(), end=START + timedelta(minutes=7, seconds=1))
    assert start == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert period == 480 and end - start == timedelta(seconds=480)
    # a window that has not begun yet is one minute, never a zero or negative period
    assert releasestats.window(release(), end=START - timedelta(hours=1))[2] == 60


def test_canary_numbers_per_version(cw):
    put(cw, "VersionPredictions", 3, [5, 5, 10])
    put(cw, "VersionLatency", 3, [2.0, 4.0, 6.0])
    put(cw, "VersionPredictions", 4, [1])
    put(cw, "VersionLatency", 4, [8.0])
    put(cw, "VersionErrors", 4, [1, 1, 1])
    put(cw, "VersionPredictions", 4, [100], model="other")  # another model's traffic is not counted
    put(cw, "VersionPredictions", 4, [100], at=START - timedelta(minutes=5))  # before the release
    n = release_numbers(cw, "iris", release(), end=START + timedelta(minutes=10))
    assert n["mode"] == "canary" and n["shadow"] is None and n["period"] == 660
    p, c = n["production"], n["candidate"]
    assert (p["version"], p["requests"], p["predictions"], p["errors"], p["error_rate"]) == (3, 3, 20, 0, 0.0)
    assert p["latency"]["mean"] == pytest.approx(4.0) and p["latency"]["max"] == 6.0
    assert (c["version"], c["requests"], c["predictions"], c["errors"]) == (4, 4, 1, 3)
    assert c["error_rate"] == pytest.approx(0.75)
    # moto answers no percentiles: said as None, not guessed
    assert p["latency"]["p99"] is None and p["latency"]["p50"] is None


def test_no_data_is_zero_counts_and_none_rates(cw):
    n = release_numbers(cw, "iris", release(mode="shadow"), end=START + timedelta(minutes=3))
    assert n["production"]["requests"] == 0 and n["production"]["error_rate"] is None
    assert n["production"]["latency"] == {"p50": None, "p99": None, "mean": None, "max": None}
    s = n["shadow"]
    assert s["samples"] == 0 and s["agreement"] is None and s["difference"] is None and s["errors"] == 0
    assert s["latency_p99"] is None


def test_shadow_numbers(cw):
    put(cw, "ShadowPredictions", 4, [2, 2])
    put(cw, "ShadowAgreement", 4, [1, 1, 0, 1])
    put(cw, "ShadowDifference", 4, [0.0, 1.0, 2.0, 5.0])
    put(cw, "ShadowLatency", 4, [1.5, 2.5])
    put(cw, "ShadowErrors", 4, [1])
    s = release_numbers(cw, "iris", release(mode="shadow"), end=START + timedelta(minutes=3))["shadow"]
    assert s["samples"] == 4 and s["agreement"] == pytest.approx(0.75) and s["agreement_samples"] == 4
    assert s["difference"]["mean"] == pytest.approx(2.0) and s["difference"]["max"] == 5.0
    assert s["errors"] == 1 and s["requests"] == 3 and s["latency_mean"] == pytest.approx(2.0)


class PercentileCloudWatch:
    """A CloudWatch answering ExtendedStatistics, as AWS does; records what was asked."""

    def __init__(self):
        self.calls = []

    def get_metric_statistics(self, **kw):
        self.calls.append(kw)
        ext = {q: {"p50": 3.0, "p90": 7.0, "p99": 9.5}[q] for q in kw.get("ExtendedStatistics", [])}
        point = {"Sum": 10.0, "SampleCount": 4.0, "Average": 2.5, "Maximum": 9.9}
        if ext:
            point["ExtendedStatistics"] = ext
        return {"Datapoints": [point]}


def test_percentiles_when_cloudwatch_answers_them_and_the_request_shape():
    fake = PercentileCloudWatch()
    n = release_numbers(fake, "iris", release(mode="shadow"), end=START + timedelta(minutes=30))
    assert n["production"]["latency"]["p99"] == 9.5 and n["production"]["latency"]["p50"] == 3.0
    assert n["shadow"]["difference"]["p90"] == 7.0 and n["shadow"]["latency_p99"] == 9.5
    for call in fake.calls:
        assert call["Namespace"] == "Shipyard" and call["Period"] % 60 == 0
        assert [d["Name"] for d in call["Dimensions"]] == ["Model", "Version"]
        assert call["StartTime"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    asked = {(c["MetricName"], c["Dimensions"][1]["Value"]) for c in fake.calls}
    assert ("VersionLatency", "3") in asked and ("VersionLatency", "4") in asked
    assert ("ShadowDifference", "4") in asked and ("ShadowDifference", "3") not in asked
