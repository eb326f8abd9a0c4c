"""Drift monitoring and the stack's alarms and dashboard.

``DriftMonitor``
    per model:  EventBridge schedule (``drift.schedule``) ──{"model": m}──► drift function
                drift function ──► drift/<m>/<timestamp>.json, registry item, metrics, "Drift Detected"
                alarm  DriftedShare >= drift.share  ──► alarm topic
                when ``drift.retrain``: rule on "Drift Detected" for m ──► retrain function
                                         ──► StartExecution of the pipeline on m's newest dataset

``StackAlarms``
    API 5XX rate and p99 latency, errors and throttles of every Lambda function, failed and timed
    out pipeline executions, failed capture deliveries (Firehose), uploads no model owns ──► alarm topic; dashboard
    widgets (alarm states, functions).

Both follow the Construct Library style: optional props with defaults, ``metric_*`` helpers,
the alarms they create exposed as attributes, least-privilege grants. Both make their alarms with
``threshold_alarm`` (metric >= threshold, to the alarm topic) named ``alarm_name_prefix`` + …
(the alarm topic's policy admits only those); neither needs the other.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Annotations, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct, IValidation

from functions.core.layout import (
    DEFAULT_DRIFT_LOOKBACK_DAYS,
    DEFAULT_DRIFT_MIN_ROWS,
    DRIFT_DETECTED,
    DRIFT_PREFIX,
    EVENT_SOURCE,
    METRIC_CHECKS_SKIPPED,
    METRIC_DRIFT_DETECTED,
    METRIC_DRIFT_SCORE,
    METRIC_DRIFTED_SHARE,
    METRIC_ROWS_CHECKED,
    METRICS_NAMESPACE,
    REPORTS_PREFIX,
)
from functions.drift import drift_function_name
from functions.pipeline.execution import spec_document
from infra.config import ModelSpec, rate_seconds
from infra.deadletters import EventDeadLetters
from infra.lambdas import shipyard_function
from infra.registry import ModelRegistry

DRIFT_HANDLER = "functions.drift.handler.handler"
RETRAIN_HANDLER = "functions.drift.retrain.handler"


def schedule_period(expression: str) -> Duration:
    """Alarm period for a check schedule: its interval for ``rate()`` (1 minute .. 1 day), else 1 hour.

    The drift alarm treats missing data as *ignore*, so between checks it keeps the last state;
    the period only needs to hold one check.
    """
    seconds = rate_seconds(expression)
    if seconds is None:
        return Duration.hours(1)
    return Duration.seconds(min(max(seconds, 60), 86400))


_GREATER_OR_EQUAL = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


def alarm_name_prefix(scope: IConstruct) -> str:
    """``<stack name>-``: how every Shipyard alarm's name starts. The alarm topic's policy (and its
    key's) admits CloudWatch only for alarms whose ARN matches ``…:alarm:<stack name>-*``."""
    return f"{Stack.of(scope).stack_name}-"


@jsii.implements(IValidation)
class _AlarmNamesValidation:
    def __init__(self, scope: IConstruct) -> None:
        self._scope = scope

    def validate(self) -> list[str]:
        prefix = alarm_name_prefix(self._scope)
        bad = []
        for node in self._scope.node.find_all():
            if isinstance(node, cloudwatch.CfnAlarm):
                name = node.alarm_name
                if not isinstance(name, str) or Token.is_unresolved(name) or not name.startswith(prefix):
                    bad.append(f"{node.node.path} ({name!r})")
        if not bad:
            return []
        return [f"alarm names must start with {prefix!r} (the alarm topic admits only alarms whose ARN "
                f"matches alarm:{prefix}*, others could not notify it): {', '.join(bad)}"]


def check_alarm_names(scope: IConstruct) -> IValidation:
    """A validation (``node.add_validation``) that fails the synth when an alarm under *scope* is not
    named ``alarm_name_prefix(scope)…``."""
    return _AlarmNamesValidation(scope)


def threshold_alarm(
    scope: Construct,
    id: str,
    metric: cloudwatch.IMetric,
    *,
    alarm_name: str,
    description: str,
    threshold: float,
    alarm_topic: sns.ITopic | None,
    evaluation_periods: int = 1,
    datapoints: int = 1,
    treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    comparison_operator: cloudwatch.ComparisonOperator = _GREATER_OR_EQUAL,
) -> cloudwatch.Alarm:
    """How every Shipyard alarm is made: *metric* >= *threshold* (or *comparison_operator*) in
    *datapoints* of *evaluation_periods*, notifying *alarm_topic* (``None``: no action)."""
    alarm = metric.create_alarm(
        scope, id,
        alarm_name=alarm_name,
        alarm_description=description,
        threshold=threshold,
        comparison_operator=comparison_operator,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints,
        treat_missing_data=treat_missing_data,
    )
    if alarm_topic is not None:
        alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
    return alarm


class DriftMonitor(Construct):
    """Scheduled drift checks per model, their alarms, and retraining on drift."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        models: Mapping[str, ModelSpec],
        alarm_topic: sns.ITopic | None = None,
        state_machine: sfn.IStateMachine | None = None,
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        function_name: str | None = None,
        memory_size: int = 1024,
        timeout: Duration = Duration.minutes(5),
        min_rows: int = DEFAULT_DRIFT_MIN_ROWS,
        lookback_days: int = DEFAULT_DRIFT_LOOKBACK_DAYS,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        """
        :param registry: where the check reads the registry, baselines and captured inputs, and
            writes reports (``drift/``) and drift items.
        :param models: model name -> its spec; ``spec.drift`` sets schedule, share, window, retrain
            (the rest of the spec is what a retraining run carries, as the upload rule does).
        :param alarm_topic: SNS topic of the drift alarms (``None``: alarms without actions).
        :param state_machine: the training pipeline; models with ``retrain`` get a rule that starts
            it on drift. ``None``: no retrain rules (a warning names the models that asked).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: dependency layers with numpy and Powertools (the inference layer has both).
        :param function_name: physical name of the drift function (default ``<stack>-drift``,
            which ``shipyard drift check`` looks for).
        :param memory_size: drift function memory in MB (default 1024).
        :param timeout: drift function timeout (default 5 minutes).
        :param min_rows: windows with fewer captured rows are skipped (``DRIFT_MIN_ROWS``).
        :param lookback_days: how many UTC days of capture a window may reach back (``DRIFT_LOOKBACK_DAYS``).
        :param log_retention: retention of the functions' log groups.
        :param log_removal_policy: what happens to those log groups when removed.
        :param code: override the function code (default: the ``functions/`` package).
        :param dead_letter_queue: where schedule and retrain events that could not be delivered go
            after the targets' retries (default: ``EventDeadLetters`` of this construct). A queue given
            here gets no policy statements from this construct: ``EventDeadLetters.allow_rules_in``.
        """
        super().__init__(scope, id)
        if min_rows < 1 or lookback_days < 0:
            raise ValueError("min_rows must be >= 1 and lookback_days >= 0")
        stack = Stack.of(self)
        self.registry = registry
        self.models = dict(models)
        self.alarm_topic = alarm_topic
        self.state_machine = state_machine

        # ------------------------------------------------------------ drift function
        made = shipyard_function(
            self,
            "Function",
            function_name=function_name or drift_function_name(stack.stack_name),
            description="Shipyard drift check: captured inputs of a model against its training baseline",
            handler=DRIFT_HANDLER,
            architecture=architecture,
            code=code,
            layers=layers,
            memory_size=memory_size,
            timeout=timeout,
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
            environment={
                **registry.environment(self.models),
                "DRIFT_MODELS": json.dumps({
                    m: {"window": s.drift.window, "share": s.drift.share, "threshold": s.drift.threshold,
                        "retrain": s.drift.retrain}
                    for m, s in self.models.items()}),
                "DRIFT_MIN_ROWS": str(min_rows),
                "DRIFT_LOOKBACK_DAYS": str(lookback_days),
                "EVENT_BUS_NAME": "default",
                "POWERTOOLS_SERVICE_NAME": "shipyard-drift",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        registry.grant_read_registry(self.function)
        registry.grant_read_models(self.function)      # models/<m>/v<N>/baseline.json
        registry.grant_read_capture(self.function)     # list + read capture/<m>/…
        registry.grant_write_artifacts(self.function, DRIFT_PREFIX)  # drift/<m>/<timestamp>.json
        registry.grant_write_drift_items(self.function)  # PutItem only, model partitions only
        # The HTML report written after each check (functions/core/report.py, docs/reports.md): it reads
        # the newest quality check and writes reports/<m>/<timestamp>.html.
        registry.grant_write_reports(self.function)
        self.registry_bucket_name = registry.artifact_bucket.bucket_name
        self.event_bus = events.EventBus.from_event_bus_name(self, "DefaultBus", "default")
        self.event_bus.grant_put_events_to(self.function)

        # ------------------------------------------------------------ per model
        # Without a queue given, one of its own (admitting its rules once they exist, below).
        self.dead_letters = EventDeadLetters(self, "DeadLetters") if dead_letter_queue is None else None
        self.dead_letter_queue = dead_letter_queue or self.dead_letters.target_queue
        self.schedules: dict[str, events.Rule] = {}
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for model, model_spec in self.models.items():
            spec = model_spec.drift
            self.schedules[model] = events.Rule(
                self,
                f"Schedule-{model}",
                description=f"Drift check of model {model}",
                schedule=events.Schedule.expression(spec.schedule),
                targets=[targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object({"model": model}),
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                    dead_letter_queue=self.dead_letter_queue,
                )],
            )
            self.alarms[model] = threshold_alarm(
                self,
                f"Alarm-{model}",
                self.metric_drifted_share(model, period=schedule_period(spec.schedule)),
                alarm_name=f"{alarm_name_prefix(self)}{model}-drift",
                description=(
                    f"Model {model}: at least {spec.share:g} of its features drifted in the last drift "
                    f"check (reports: s3://<artifacts>/drift/{model}/). Missing data keeps the state."),
                threshold=spec.share,
                alarm_topic=alarm_topic,
                treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
            )

        # ------------------------------------------------------------ retraining
        self.retrain_rules: dict[str, events.Rule] = {}
        self.retrain_function: lambda_.Function | None = None
        wanted = [m for m, spec in self.models.items() if spec.drift.retrain]
        if wanted and state_machine is None:
            Annotations.of(self).add_warning_v2(
                "shipyard:drift-retrain-without-pipeline",
                f"drift.retrain is true for {', '.join(wanted)} but no pipeline state machine was given: "
                "no retrain rule is created")
        if wanted and state_machine is not None:
            made = shipyard_function(
                self,
                "Retrain",
                description="Shipyard retrain on drift: starts the pipeline on the model's newest dataset",
                handler=RETRAIN_HANDLER,
                architecture=architecture,
                code=code,
                layers=layers,
                memory_size=256,
                timeout=Duration.seconds(60),
                log_retention=log_retention,
                log_removal_policy=log_removal_policy,
                environment={
                    "DATA_BUCKET": registry.data_bucket.bucket_name,
                    "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                    "RETRAIN_SPECS": json.dumps({m: spec_document(self.models[m]) for m in wanted}),
                    "POWERTOOLS_SERVICE_NAME": "shipyard-retrain",
                },
            )
            self.retrain_function, self.retrain_role, self.retrain_log_group = (
                made.function, made.role, made.log_group)
            # Only listing: the newest current version under datasets/ (the pipeline reads the bytes).
            registry.grant_list_datasets(self.retrain_function)
            state_machine.grant_start_execution(self.retrain_function)
            for model in wanted:
                self.retrain_rules[model] = events.Rule(
                    self,
                    f"Retrain-{model}",
                    description=f"Drift Detected for model {model}: retrain on its newest dataset",
                    event_pattern=events.EventPattern(
                        source=[EVENT_SOURCE], detail_type=[DRIFT_DETECTED], detail={"model": [model]}),
                    targets=[targets.LambdaFunction(self.retrain_function, retry_attempts=2,
                                                    max_event_age=Duration.hours(1),
                                                    dead_letter_queue=self.dead_letter_queue)],
                )
        if self.dead_letters is not None:
            self.dead_letters.allow_rules_in(self)

    # ------------------------------------------------------------------ grants

    def grant_run_check(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let *grantee* run a check now (invoke the drift function), as ``shipyard drift check`` does."""
        return self.function.grant_invoke(grantee)

    # ------------------------------------------------------------------ metrics

    @staticmethod
    def _metric(name: str, model: str, statistic: str, period: Duration, **dims: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, dimensions_map={"Model": model, **dims},
                                 statistic=statistic, period=period)

    def metric_drifted_share(self, model: str, period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """Share of the model's features that drifted (Maximum); checks that were skipped publish none."""
        return self._metric(METRIC_DRIFTED_SHARE, model, "Maximum", period)

    def metric_drift_detected(self, model: str, period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """1 for a check that found drift, 0 for one that did not (Maximum)."""
        return self._metric(METRIC_DRIFT_DETECTED, model, "Maximum", period)

    def metric_rows_checked(self, model: str, period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """Captured rows in the checked window (Sum over the period)."""
        return self._metric(METRIC_ROWS_CHECKED, model, "Sum", period)

    def metric_checks_skipped(self, model: str, period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """Checks that made no decision (too few rows, no production version) (Sum)."""
        return self._metric(METRIC_CHECKS_SKIPPED, model, "Sum", period)

    def metric_feature_drift(self, model: str, feature: str,
                             period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """One feature's deciding statistic (Wasserstein/std or Jensen-Shannon distance), Maximum."""
        return self._metric(METRIC_DRIFT_SCORE, model, "Maximum", period, Feature=feature)

    def metric_function_errors(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        return self.function.metric_errors(statistic="Sum", period=period)

    # ------------------------------------------------------------------ dashboard

    def report_link_widget(self, model: str) -> cloudwatch.TextWidget:
        """A markdown link to the model's HTML reports (``reports/<model>/``) in the S3 console."""
        url = (f"https://console.aws.amazon.com/s3/buckets/{self.registry_bucket_name}"
               f"?prefix={REPORTS_PREFIX}{model}/")
        return cloudwatch.TextWidget(
            markdown=(f"**{model}**: [HTML reports]({url}) (versions, drift per feature with distributions, "
                      f"quality over time; `shipyard report {model} --open` makes a fresh one)"),
            width=24, height=1)

    def dashboard_widgets(self) -> list[list[cloudwatch.IWidget]]:
        """Two dashboard rows per model: drifted share vs its alarm, every feature's score, rows checked;
        then a link to the model's HTML reports."""
        rows = []
        for model, model_spec in self.models.items():
            spec = model_spec.drift
            period = schedule_period(spec.schedule)
            features = cloudwatch.MathExpression(
                expression=(f"SEARCH('{{{METRICS_NAMESPACE},Feature,Model}} MetricName=\"{METRIC_DRIFT_SCORE}\" "
                            f"Model=\"{model}\"', 'Maximum', {int(period.to_seconds())})"),
                using_metrics={},
                label="",
                period=period,
            )
            rows.append([
                cloudwatch.GraphWidget(
                    title=f"{model}: drifted share (alarm at {spec.share:g})",
                    left=[self.metric_drifted_share(model, period)],
                    left_annotations=[cloudwatch.HorizontalAnnotation(value=spec.share, label="drift.share")],
                    left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: drift score per feature (Wasserstein/std, Jensen-Shannon)",
                    left=[features],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: rows checked, skipped checks ({spec.schedule})",
                    left=[self.metric_rows_checked(model, period)],
                    right=[self.metric_checks_skipped(model, period)],
                    width=8,
                ),
            ])
            rows.append([self.report_link_widget(model)])
        return rows


class StackAlarms(Construct):
    """Operational alarms of the stack, all to one SNS topic, and their dashboard widgets."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        alarm_topic: sns.ITopic | None = None,
        api_5xx_rate: float = 0.05,
        api_p99_latency: Duration = Duration.seconds(5),
        period: Duration = Duration.minutes(5),
        evaluation_periods: int = 3,
        datapoints_to_alarm: int = 2,
    ) -> None:
        """
        :param alarm_topic: where every alarm notifies (``None``: alarms without actions).
        :param api_5xx_rate: alarm when this share of API requests (or more) answers 5XX (default 5 %).
        :param api_p99_latency: alarm when the API's p99 latency reaches this (default 5 s).
        :param period: period of the API and function alarms (default 5 minutes).
        :param evaluation_periods: periods looked at by the API alarms (default 3) ...
        :param datapoints_to_alarm: ... of which this many must breach (default 2). Function errors,
            throttles and failed executions alarm on any single one.
        """
        super().__init__(scope, id)
        if not 0 < api_5xx_rate <= 1:
            raise ValueError("api_5xx_rate must be within (0, 1]")
        self.alarm_topic = alarm_topic
        self.api_5xx_rate = api_5xx_rate
        self.api_p99_latency = api_p99_latency
        self.period = period
        self.evaluation_periods = evaluation_periods
        self.datapoints_to_alarm = datapoints_to_alarm
        self.alarms: list[cloudwatch.Alarm] = []
        self.function_alarms: dict[str, tuple[cloudwatch.Alarm, cloudwatch.Alarm]] = {}
        self.pipeline_alarms: list[cloudwatch.Alarm] = []
        self.dead_letter_alarms: list[cloudwatch.Alarm] = []
        self._functions: list[tuple[str, lambda_.IFunction]] = []
        self._prefix = alarm_name_prefix(self)

    def _alarm(self, metric: cloudwatch.IMetric, name: str, description: str, threshold: float, *,
               evaluation_periods: int = 1, datapoints: int = 1, **extra) -> cloudwatch.Alarm:
        alarm = threshold_alarm(self, name, metric, alarm_name=f"{self._prefix}{name}", description=description,
                                threshold=threshold, alarm_topic=self.alarm_topic,
                                evaluation_periods=evaluation_periods, datapoints=datapoints, **extra)
        self.alarms.append(alarm)
        return alarm

    # ------------------------------------------------------------------ what to watch

    def show(self, *alarms: cloudwatch.IAlarm) -> None:
        """Show alarms made elsewhere (e.g. ``DriftMonitor.alarms``) in the alarm status widget."""
        self.alarms.extend(alarms)

    def watch_api(self, inference) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """5XX rate (API Gateway's 5XXError Average is the share of requests) and p99 latency; and
        (``artifact_integrity_alarm``) any model artifact that failed its sha256 check."""
        rate = self._alarm(
            inference.api.metric_server_error(statistic="Average", period=self.period), "api-5xx-rate",
            f"Inference API: {self.api_5xx_rate:.0%} or more of requests answered 5XX in "
            f"{self.datapoints_to_alarm} of {self.evaluation_periods} periods of {self.period.to_minutes():g} min",
            self.api_5xx_rate, evaluation_periods=self.evaluation_periods, datapoints=self.datapoints_to_alarm)
        latency = self._alarm(
            inference.metric_latency_p99(self.period), "api-p99-latency",
            f"Inference API: p99 latency reached {self.api_p99_latency.to_milliseconds():g} ms in "
            f"{self.datapoints_to_alarm} of {self.evaluation_periods} periods of {self.period.to_minutes():g} min",
            self.api_p99_latency.to_milliseconds(), evaluation_periods=self.evaluation_periods,
            datapoints=self.datapoints_to_alarm)
        self.api_alarms = (rate, latency)
        # Any refused artifact: someone or something changed what the registry recorded.
        self.artifact_integrity_alarm = self._alarm(
            inference.metric_artifact_integrity_failures(self.period), "artifact-integrity",
            "Inference API: a model artifact failed its sha256 check against the registry and was "
            "not served (503): the version record or the object version it names was changed", 1)
        return rate, latency

    def watch_capture(self, inference) -> dict[str, cloudwatch.Alarm]:
        """Per capture stream: ``AWS/Firehose DeliveryToS3.Success`` (Average) < 1 in a period.

        The metric Firehose documents for S3 delivery health: successful S3 puts over all puts, so
        any failed delivery (the role, the bucket, its policy) takes the Average below 1. Without
        traffic there is no data, which is not breaching. (``DeliveryToS3.Records`` would only say
        how much arrived; a sum of failures is not published.) Failed puts are logged to
        ``capture_log_group``; Firehose retries an S3 delivery for up to 24 hours, then drops the records
        (``capture-errors/<model>/``, the error output prefix, is for records that failed processing,
        not for puts S3 refused: those cannot be written to the same bucket either)."""
        self.capture_alarms: dict[str, cloudwatch.Alarm] = {}
        for model in inference.capture_streams:
            self.capture_alarms[model] = self._alarm(
                inference.metric_capture_delivery_success(model, self.period), f"capture-{model}-delivery",
                f"Capture of model {model}: Firehose failed to deliver captured requests to S3 (DeliveryToS3.Success "
                f"below 1 in {self.period.to_minutes():g} min); the reason is in the capture delivery log group, "
                "and without captured rows the drift check skips", 1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD)
        return self.capture_alarms

    def watch_function(self, function: lambda_.IFunction, name: str) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """Errors >= 1 and throttles >= 1 in a period."""
        errors = self._alarm(function.metric_errors(statistic="Sum", period=self.period), f"{name}-errors",
                             f"Lambda function {name}: invocations failed", 1)
        throttles = self._alarm(function.metric_throttles(statistic="Sum", period=self.period),
                                f"{name}-throttles", f"Lambda function {name}: invocations throttled", 1)
        self.function_alarms[name] = (errors, throttles)
        self._functions.append((name, function))
        return errors, throttles

    def watch_functions_in(self, scope: IConstruct) -> list[str]:
        """Watch every ``lambda_.Function`` under *scope* not watched yet (call it last in the stack)."""
        root = Stack.of(self)
        added = []
        watched = {id(f) for _, f in self._functions}
        for node in scope.node.find_all():
            if isinstance(node, lambda_.Function) and id(node) not in watched:
                path = node.node.path
                if path.startswith(root.node.id + "/"):
                    path = path.split("/", 1)[-1]
                name = re.sub(r"[^A-Za-z0-9-]+", "-", path.replace("/", "-")).strip("-")[:120]
                self.watch_function(node, name)
                added.append(name)
        return added

    def watch_pipeline(self, state_machine: sfn.IStateMachine, *, name: str = "pipeline",
                       ) -> list[cloudwatch.Alarm]:
        """Failed executions >= 1 and timed-out executions >= 1 in a period."""
        failed = self._alarm(
            state_machine.metric_failed(statistic="Sum", period=self.period), f"{name}-failed",
            "Training pipeline: an execution failed (the version records why: `shipyard lineage MODEL`)", 1)
        timed_out = self._alarm(state_machine.metric_timed_out(statistic="Sum", period=self.period),
                                f"{name}-timed-out", "Training pipeline: an execution timed out (no version "
                                "outcome was recorded by the pipeline itself)", 1)
        self.pipeline_alarms += [failed, timed_out]
        return [failed, timed_out]

    def watch_batch(self, state_machine: sfn.IStateMachine, *, name: str = "batch-failed") -> cloudwatch.Alarm:
        """Failed batch scoring runs >= 1 in a period (``<stack>-batch-failed``)."""
        self.batch_alarm = self._alarm(
            state_machine.metric_failed(statistic="Sum", period=self.period), name,
            "Batch scoring: a run failed (no production version, a bad header, too many failed batches…); "
            "its registry item and the Batch Scored event say why (docs/batch.md)", 1)
        return self.batch_alarm

    def watch_uploads(self, uploads, name: str = "unowned-uploads") -> cloudwatch.Alarm:
        """Any upload under a ``datasets/<folder>/`` or ``batch/<folder>/`` no model owns (``UploadMonitor``'s
        ``UnownedUploads`` >= 1 in a period): a typo in the folder that silently lost a training or
        batch scoring run."""
        self.uploads_alarm = self._alarm(
            uploads.metric_unowned_uploads(self.period), name,
            "An upload under datasets/ or batch/ is in a folder no model owns (a typo such as datasets/penguin/ for "
            "model penguins?), so it started no pipeline or batch scoring run; the uploads function's log names the "
            "key, the configured models and the closest one (docs/datasets.md)", 1)
        return self.uploads_alarm

    def watch_dead_letters(self, queue: sqs.IQueue, name: str = "event-dead-letters") -> cloudwatch.Alarm:
        """Any message in the dead-letter queue of the EventBridge targets (an event was dropped)."""
        alarm = self._alarm(
            queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=self.period), name,
            "EventBridge could not deliver an event (an upload, a drift schedule or a retraining): it is "
            "kept in the dead-letter queue with ERROR_CODE/ERROR_MESSAGE attributes (docs/monitoring.md)", 1)
        self.dead_letter_alarms.append(alarm)
        return alarm

    # ------------------------------------------------------------------ dashboard

    def dashboard_widgets(self) -> list[list[cloudwatch.IWidget]]:
        """Rows: alarm states; errors and throttles of every watched function (the pipeline's
        executions have their own row, ``TrainingPipeline.dashboard_widgets``)."""
        rows: list[list[cloudwatch.IWidget]] = [[cloudwatch.AlarmStatusWidget(
            title="Alarms", alarms=list(self.alarms), width=24,
            height=max(2, 1 + (len(self.alarms) + 3) // 4))]]
        if self._functions:
            rows.append([
                cloudwatch.GraphWidget(
                    title="Lambda errors", width=12,
                    left=[f.metric_errors(statistic="Sum", period=self.period, label=n) for n, f in self._functions]),
                cloudwatch.GraphWidget(
                    title="Lambda throttles", width=12,
                    left=[f.metric_throttles(statistic="Sum", period=self.period, label=n)
                          for n, f in self._functions]),
            ])
        return rows
