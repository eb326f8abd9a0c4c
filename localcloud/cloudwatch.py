"""CloudWatch, locally: metrics from PutMetricData and EMF log lines, metric alarms evaluated → SNS.

moto stores metric data and alarms but never evaluates an alarm. `CloudWatch` (the state: metric
data in moto's backend, alarm states, the changes seen) evaluates every single-metric alarm as
CloudWatch does — statistic (``Sum``, ``Average``, ``Minimum``, ``Maximum``, ``SampleCount``,
``pNN``), period, evaluation periods, datapoints to alarm, comparison, missing-data treatment — and
publishes a state change to its SNS actions. The wire formats are plain functions: an EMF document
(a function's log line) → PutMetricData data (`emf_metric_data`), an alarm's state change → the
JSON message CloudWatch sends to SNS (`alarm_message`).

Before each evaluation the metrics AWS publishes by itself are added: ``AWS/States`` executions
finished since the last look, ``AWS/SQS`` ``ApproximateNumberOfMessagesVisible`` of every queue.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from .actions import kms_key_arn
from .patches import Seam
from .template import ACCOUNT_ID

_EXECUTION_METRICS = {"SUCCEEDED": "ExecutionsSucceeded", "FAILED": "ExecutionsFailed",
                      "TIMED_OUT": "ExecutionsTimedOut", "ABORTED": "ExecutionsAborted"}


# --------------------------------------------------------------------------- wire formats

def emf_metric_data(doc: dict) -> Iterator[tuple[str, list[dict]]]:
    """(namespace, PutMetricData data) for each metric directive of an Embedded Metric Format document
    that has values; raises KeyError, TypeError or ValueError on a malformed one."""
    meta = doc["_aws"]
    ts = datetime.fromtimestamp(meta.get("Timestamp", time.time() * 1000) / 1000, UTC).replace(tzinfo=None)
    for directive in meta.get("CloudWatchMetrics", []):
        dim_sets = directive.get("Dimensions") or [[]]
        data = []
        for metric in directive.get("Metrics", []):
            value = doc.get(metric["Name"])
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            for dims in dim_sets:
                data.append({"MetricName": metric["Name"], "Values": [float(v) for v in values],
                             "Unit": metric.get("Unit", "None"), "Timestamp": ts,
                             "Dimensions": [{"Name": d, "Value": str(doc[d])} for d in dims if d in doc]})
        if data:
            yield directive["Namespace"], data


def alarm_message(alarm: Any, old: str, new: str, reason: str, region: str) -> dict:
    """The message CloudWatch publishes to an alarm's SNS actions on a state change."""
    return {
        "AlarmName": alarm.name, "AlarmDescription": alarm.description, "AWSAccountId": ACCOUNT_ID,
        "NewStateValue": new, "OldStateValue": old, "NewStateReason": reason,
        "StateChangeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": region, "AlarmArn": alarm.alarm_arn,
        "Trigger": {"MetricName": alarm.metric_name, "Namespace": alarm.namespace,
                    "Statistic": (alarm.statistic or "").upper(), "Period": alarm.period,
                    "EvaluationPeriods": alarm.evaluation_periods, "ComparisonOperator": alarm.comparison_operator,
                    "Threshold": alarm.threshold, "TreatMissingData": alarm.treat_missing_data or "missing",
                    "Dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions]},
    }


# --------------------------------------------------------------------------- alarm arithmetic

def statistic(window: list, stat: str | None, extended: str | None, aggregated_cls: type) -> float | None:
    """``stat`` (or the percentile ``extended``) of one period's data points; None when it has none."""
    if not window:
        return None
    values: list[float] = []
    total = count = 0.0
    lo, hi = float("inf"), float("-inf")
    for d in window:
        if isinstance(d, aggregated_cls):
            total += d.sum
            count += d.sample_count
            lo, hi = min(lo, d.min), max(hi, d.max)
        else:
            values.append(float(d.value))
            total += float(d.value)
            count += 1
            lo, hi = min(lo, float(d.value)), max(hi, float(d.value))
    if extended and extended.startswith("p"):
        if not values:
            return hi
        values.sort()
        q = float(extended[1:]) / 100
        # nearest rank: the smallest value with at least q of the values at or below it
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values) - 1e-9) - 1))]
    return {"Sum": total, "SampleCount": count, "Average": total / count if count else None,
            "Minimum": lo, "Maximum": hi}.get(stat or "Average")


def compare(v: float, op: str, threshold: float) -> bool:
    return {"GreaterThanThreshold": v > threshold, "GreaterThanOrEqualToThreshold": v >= threshold,
            "LessThanThreshold": v < threshold, "LessThanOrEqualToThreshold": v <= threshold}.get(op, False)


# --------------------------------------------------------------------------- state

class CloudWatch:
    """Metrics and alarms of one local cloud in ``region``; ``client(service)`` reaches its endpoint."""

    def __init__(self, region: str, client: Callable[[str], Any], say: Callable[[str], None],
                 debug: Callable[[str], None]):
        self.region = region
        self._client, self._say, self._debug = client, say, debug
        self.alarm_changes: list[dict] = []
        self.action_failures: list[dict] = []  # alarm actions refused (CloudWatch's history text)
        self.authorizer: Any = None  # an `authorization.Authorizer`: may CloudWatch publish to the topic?
        self._seen_executions: set[str] = set()
        self._metrics_lock = threading.Lock()
        self._alarms_lock = threading.Lock()

    def _backend(self) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[ACCOUNT_ID][self.region]

    def put_metrics(self, namespace: str, data: list[dict]) -> None:
        """Store metric data as PutMetricData would (in-process, no HTTP)."""
        for d in data:
            d.setdefault("Timestamp", datetime.now(UTC).replace(tzinfo=None))  # moto: naive UTC
        with self._metrics_lock:
            self._backend().put_metric_data(namespace, data)

    def put_emf(self, doc: dict) -> None:
        """The metrics of an EMF document (raises KeyError, TypeError or ValueError on a malformed one)."""
        for namespace, data in emf_metric_data(doc):
            self.put_metrics(namespace, data)

    def alarms(self) -> list:
        return list(self._backend().alarms.values())

    def evaluate_alarms(self, now: float | None = None) -> list[dict]:
        """Evaluate every metric alarm against the metrics published so far; notify on state changes."""
        with self._alarms_lock:  # the clock thread and callers: a state change notifies once
            return self._evaluate_alarms(now)

    def _evaluate_alarms(self, now: float | None) -> list[dict]:
        from moto.cloudwatch.models import MetricAggregatedDatum

        end = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        self._publish_execution_metrics()
        self._publish_queue_metrics(end)
        backend = self._backend()
        changes = []
        with self._metrics_lock:
            data = list(backend.metric_data)
        for alarm in self.alarms():
            if not alarm.metric_name:
                continue
            want_dims = {(d.name, d.value) for d in alarm.dimensions}
            period = timedelta(seconds=int(alarm.period or 60))
            n = int(alarm.evaluation_periods or 1)
            m = int(alarm.datapoints_to_alarm or n)
            windows: list[list] = [[] for _ in range(n)]
            for d in data:
                if d.namespace != alarm.namespace or d.name != alarm.metric_name:
                    continue
                if {(x.name, x.value) for x in d.dimensions} != want_dims:
                    continue
                ts = d.timestamp if d.timestamp.tzinfo else d.timestamp.replace(tzinfo=UTC)
                age = end - ts
                if age < timedelta(0):
                    age = timedelta(0)
                idx = int(age / period)
                if idx < n:
                    windows[idx].append(d)
            values = [statistic(w, alarm.statistic, alarm.extended_statistic, MetricAggregatedDatum) for w in windows]
            treat = alarm.treat_missing_data or "missing"
            breaches = []
            for v in values:
                if v is None:
                    breaches.append({"breaching": True, "notBreaching": False}.get(treat))
                else:
                    breaches.append(compare(v, alarm.comparison_operator, float(alarm.threshold)))
            evaluated = [b for b in breaches if b is not None]
            if not evaluated:
                new = alarm.state_value if treat == "ignore" else "INSUFFICIENT_DATA"
            else:
                new = "ALARM" if sum(evaluated) >= m else "OK"
            if new == alarm.state_value:
                continue
            shown = [v for v in values if v is not None]
            reason = (f"Threshold Crossed: {len(evaluated)} datapoint(s) evaluated, {sum(evaluated)} breaching "
                      f"[{', '.join(f'{v:g}' for v in shown)}] {alarm.comparison_operator} {alarm.threshold:g}")
            old = alarm.state_value
            alarm.update_state(reason, json.dumps({"version": "1.0", "recentDatapoints": shown}), new)
            change = {"alarm": alarm.name, "from": old, "to": new, "reason": reason, "at": time.time()}
            changes.append(change)
            self.alarm_changes.append(change)
            self._say(f"[alarm] {alarm.name}: {old} -> {new} ({reason})")
            actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions,
                       "INSUFFICIENT_DATA": alarm.insufficient_data_actions}[new]
            if alarm.actions_enabled:
                for arn in actions or []:
                    self._alarm_action(arn, alarm, old, new, reason)
        return changes

    def _alarm_action(self, arn: str, alarm: Any, old: str, new: str, reason: str) -> None:
        if ":sns:" not in arn:
            self._say(f"[alarm] action {arn} of {alarm.name} is not emulated")
            return
        refused = self._refused(arn, alarm)
        if refused:
            # CloudWatch records the failed action in the alarm's history and notifies nobody
            failure = {"alarm": alarm.name, "action": arn, "at": time.time(),
                       "history": f"Failed to execute action {arn}. Received error: \"{refused}\""}
            self.action_failures.append(failure)
            self._say(f"[alarm] {alarm.name}: {failure['history']}")
            return
        self._client("sns").publish(TopicArn=arn, Subject=f'{new}: "{alarm.name}" in {self.region}'[:100],
                                    Message=json.dumps(alarm_message(alarm, old, new, reason, self.region)))

    def _refused(self, topic_arn: str, alarm: Any) -> str | None:
        """CloudWatch's error when the topic's policy (or its KMS key's policy) does not let
        ``cloudwatch.amazonaws.com`` publish for this alarm; None when it may."""
        authorizer = self.authorizer
        if authorizer is None or not authorizer.enforce:
            return None
        service, source = "cloudwatch.amazonaws.com", {"source_arn": alarm.alarm_arn, "source_account": ACCOUNT_ID}
        if not authorizer.service_may(service, "sns:Publish", topic_arn, **source).allowed:
            return f"CloudWatch Alarms is not authorized to perform: SNS:Publish on resource:{topic_arn}"
        from moto.sns.models import sns_backends

        topic = sns_backends[ACCOUNT_ID][self.region].topics.get(topic_arn)
        key = getattr(topic, "kms_master_key_id", None) if topic is not None else None
        if key:
            key_arn = kms_key_arn(key, self.region, ACCOUNT_ID)
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                if not authorizer.service_may(service, action, key_arn, **source).allowed:
                    return "CloudWatch Alarms does not have authorization to access the SNS topic encryption key."
        return None

    def _publish_execution_metrics(self) -> None:
        """AWS/States metrics for executions that finished since the last look."""
        try:
            sfn = self._client("stepfunctions")
            for sm in sfn.list_state_machines()["stateMachines"]:
                for e in sfn.list_executions(stateMachineArn=sm["stateMachineArn"])["executions"]:
                    if e["status"] == "RUNNING" or e["executionArn"] in self._seen_executions:
                        continue
                    self._seen_executions.add(e["executionArn"])
                    name = _EXECUTION_METRICS.get(e["status"])
                    if name:
                        self.put_metrics("AWS/States", [{"MetricName": name, "Value": 1.0, "Unit": "Count",
                                                         "Dimensions": [{"Name": "StateMachineArn",
                                                                         "Value": sm["stateMachineArn"]}]}])
        except Exception as err:  # noqa: BLE001
            self._debug(f"[clock] execution metrics: {err!r}")

    def _publish_queue_metrics(self, at: datetime) -> None:
        """AWS/SQS ApproximateNumberOfMessagesVisible of every queue now, stamped with the
        evaluation time ``at`` (as SQS reports each minute)."""
        try:
            sqs = self._client("sqs")
            for url in sqs.list_queues().get("QueueUrls", []):
                n = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                self.put_metrics("AWS/SQS", [{
                    "MetricName": "ApproximateNumberOfMessagesVisible", "Unit": "Count",
                    "Timestamp": at.astimezone(UTC).replace(tzinfo=None),  # moto: naive UTC
                    "Value": float(n["Attributes"]["ApproximateNumberOfMessages"]),
                    "Dimensions": [{"Name": "QueueName", "Value": url.rsplit("/", 1)[-1]}]}])
        except Exception as err:  # noqa: BLE001
            self._debug(f"[clock] queue metrics: {err!r}")


# --------------------------------------------------------------------------- GetMetricStatistics percentiles

def _patch(seam: Seam) -> None:
    """moto's GetMetricStatistics ignores ``ExtendedStatistics`` (its datapoints carry none): add them,
    with the percentile the alarms use (`statistic`), over each period's values."""
    from moto.cloudwatch.models import MetricAggregatedDatum
    from moto.cloudwatch.responses import CloudWatchResponse

    def get_metric_statistics(self: Any) -> Any:
        result = seam["get_metric_statistics"](self)
        wanted = [p for p in self._get_param("ExtendedStatistics") or [] if isinstance(p, str) and p.startswith("p")]
        if wanted:
            for point in result.result["Datapoints"]:
                point.extended_statistics = {
                    p: statistic(point.metric_data, None, p, MetricAggregatedDatum) for p in wanted}
        return result

    seam.replace(CloudWatchResponse, "get_metric_statistics", get_metric_statistics)


SEAM = Seam(_patch)
