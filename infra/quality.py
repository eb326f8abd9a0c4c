"""Model quality monitoring: live metric on labelled traffic (docs/quality.md).

``QualityMonitor``
    per model with a ``quality`` block:
        EventBridge schedule (``quality.schedule``) ──{"model": m}──► quality function
        quality function: capture/<m>/… (artifacts) ⋈ labels/<m>/*.csv (data) by inference id
            ──► quality/<m>/<timestamp>.json, registry item (Q#…), metrics, "Quality Degraded"
        alarm  ModelQuality < min_score (> for rmse/mae) ──► alarm topic (missing data: not breaching,
               and ModelQuality is published only with at least min_labels labels)
        when ``quality.retrain``: rule on "Quality Degraded" for m ──► quality retrain function
               ──► StartExecution on the newest dataset (``dataset``), or on it plus the labelled
                   traffic written to datasets/<m>/retrain-<ts>-with-labels.csv (``dataset+labels``)

Made like ``DriftMonitor`` (infra/monitoring.py): ``threshold_alarm``, ``schedule_period``,
``alarm_name_prefix``, ``shipyard_function``, ``EventDeadLetters``; least-privilege grants from
``ModelRegistry``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.core.layout import DATASETS_PREFIX, EVENT_SOURCE, METRICS_NAMESPACE, VERSION_DIMENSION
from functions.pipeline.execution import spec_document
from functions.quality import (
    METRIC_LABEL_COVERAGE,
    METRIC_LABELLED_COUNT,
    METRIC_MODEL_QUALITY,
    QUALITY_DEGRADED,
    QUALITY_PREFIX,
    quality_function_name,
)
from functions.quality.check import DEFAULT_LATE_LOOKBACK_SECONDS, settings_document
from infra.config import ModelSpec
from infra.deadletters import EventDeadLetters
from infra.lambdas import shipyard_function
from infra.monitoring import alarm_name_prefix, schedule_period, threshold_alarm
from infra.registry import ModelRegistry

QUALITY_HANDLER = "functions.quality.handler.handler"
RETRAIN_HANDLER = "functions.quality.retrain.handler"
_LOWER_IS_BETTER = ("rmse", "mae")


def quality_alarm_name(prefix: str, model: str) -> str:
    """``<stack>-<model>-quality``."""
    return f"{prefix}{model}-quality"


def floor_warning(model: str, metric: str, floor: float) -> str | None:
    """What synth says when the quality alarm of a higher-is-better metric can never fire: a floor at or
    below the metric's least value (found by hand: a model without min_score, default 0, had an alarm
    that no score reaches). r2 has none (it can be negative), nor do the error metrics (their case is
    the ceiling warning above)."""
    if metric in _LOWER_IS_BETTER or metric == "r2" or floor > 0:
        return None
    return (f"model {model}: its quality min_score is {floor:g} (the model's min_score, default 0) and {metric} is "
            "never below it: the quality alarm cannot fire and no Quality Degraded is sent; set quality.min_score "
            "(e.g. 0.9)")


class QualityMonitor(Construct):
    """Scheduled quality checks of the models that configure ``quality``, their alarms, retraining."""

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
        late_lookback: Duration = Duration.seconds(DEFAULT_LATE_LOOKBACK_SECONDS),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        """
        :param registry: the registry, buckets and their grants (captures, labels, reports, items).
        :param models: model name -> spec; only specs with ``quality`` are checked.
        :param alarm_topic: SNS topic of the quality alarms (``None``: alarms without actions).
        :param state_machine: the training pipeline; models with ``quality.retrain`` get a rule that
            starts it on ``Quality Degraded``. ``None``: no retrain rules (a warning names the models).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: layers with numpy and Powertools (the inference layer has both).
        :param function_name: physical name of the quality function (default ``<stack>-quality``,
            which ``shipyard quality check`` looks for).
        :param memory_size: quality function memory in MB (default 1024).
        :param timeout: quality function timeout (default 5 minutes).
        :param late_lookback: how much capture before the window is read to tell a late label from an
            unmatched one (``QUALITY_LATE_LOOKBACK``, default 7 days).
        :param log_retention: retention of the functions' log groups.
        :param log_removal_policy: what happens to those log groups when removed.
        :param code: override the function code (default: the ``functions/`` package).
        :param dead_letter_queue: where undeliverable schedule and retrain events go (default: an
            ``EventDeadLetters`` of this construct).
        """
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.registry = registry
        self.models = {m: s for m, s in models.items() if s.quality is not None}
        self.alarm_topic = alarm_topic
        self.state_machine = state_machine
        settings = json.dumps({m: settings_document(s) for m, s in self.models.items()})

        made = shipyard_function(
            self,
            "Function",
            function_name=function_name or quality_function_name(stack.stack_name),
            description="Shipyard model quality check: captured predictions joined with labels by inference id",
            handler=QUALITY_HANDLER,
            architecture=architecture,
            code=code,
            layers=layers,
            memory_size=memory_size,
            timeout=timeout,
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
            environment={
                **registry.environment(list(models)),
                "DATA_BUCKET": registry.data_bucket.bucket_name,
                "QUALITY_MODELS": settings,
                "QUALITY_LATE_LOOKBACK": str(int(late_lookback.to_seconds())),
                "EVENT_BUS_NAME": "default",
                "POWERTOOLS_SERVICE_NAME": "shipyard-quality",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        registry.grant_read_registry(self.function)            # production alias
        registry.grant_read_capture(self.function)             # capture/<m>/… (predictions, ids)
        registry.grant_read_labels(self.function)              # labels/<m>/*.csv (data bucket)
        registry.grant_write_artifacts(self.function, QUALITY_PREFIX)  # quality/<m>/<timestamp>.json
        registry.grant_write_reports(self.function)  # reports/<m>/<timestamp>.html after each check
        registry.grant_write_drift_items(self.function)        # Q#… items: PutItem in model partitions only
        self.event_bus = events.EventBus.from_event_bus_name(self, "DefaultBus", "default")
        self.event_bus.grant_put_events_to(self.function)

        self.dead_letters = EventDeadLetters(self, "DeadLetters") if dead_letter_queue is None else None
        self.dead_letter_queue = dead_letter_queue or self.dead_letters.target_queue
        self.schedules: dict[str, events.Rule] = {}
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for model, spec in self.models.items():
            q = spec.quality
            self.schedules[model] = events.Rule(
                self, f"Schedule-{model}", description=f"Model quality check of {model}",
                schedule=events.Schedule.expression(q.schedule),
                targets=[targets.LambdaFunction(
                    self.function, event=events.RuleTargetInput.from_object({"model": model}), retry_attempts=2,
                    max_event_age=Duration.hours(1), dead_letter_queue=self.dead_letter_queue)],
            )
            floor = spec.quality_min_score
            lower_better = spec.metric in _LOWER_IS_BETTER
            if lower_better and floor <= 0:
                Annotations.of(self).add_warning_v2(
                    "shipyard:quality-without-ceiling",
                    f"model {model}: {spec.metric} is an error (lower is better) and its min_score is {floor:g}, "
                    "which sets no ceiling (as in the gate): no quality alarm; set quality.min_score")
                continue
            if (warning := floor_warning(model, spec.metric, floor)) is not None:
                Annotations.of(self).add_warning_v2("shipyard:quality-without-floor", warning)
            self.alarms[model] = threshold_alarm(
                self, f"Alarm-{model}",
                self.metric_model_quality(model, spec.metric, period=schedule_period(q.schedule)),
                alarm_name=quality_alarm_name(alarm_name_prefix(self), model),
                description=(
                    f"Model {model}: its {spec.metric} on labelled live traffic is "
                    f"{'above' if lower_better else 'below'} {floor:g} (at least {q.min_labels} labels; reports: "
                    f"s3://<artifacts>/quality/{model}/). Too few labels publish no datapoint: not breaching."),
                threshold=floor,
                alarm_topic=alarm_topic,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                comparison_operator=(cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD if lower_better
                                     else cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD),
            )

        # ------------------------------------------------------------ retraining
        self.retrain_rules: dict[str, events.Rule] = {}
        self.retrain_function: lambda_.Function | None = None
        wanted = [m for m, s in self.models.items() if s.quality.retrain]
        if wanted and state_machine is None:
            Annotations.of(self).add_warning_v2(
                "shipyard:quality-retrain-without-pipeline",
                f"quality.retrain is set for {', '.join(wanted)} but no pipeline state machine was given: "
                "no retrain rule is created")
        if wanted and state_machine is not None:
            made = shipyard_function(
                self, "Retrain",
                description="Shipyard retrain on degraded quality: starts the pipeline (dataset, or dataset + labels)",
                handler=RETRAIN_HANDLER, architecture=architecture, code=code, layers=layers,
                memory_size=1024, timeout=Duration.minutes(5),
                log_retention=log_retention, log_removal_policy=log_removal_policy,
                environment={
                    "DATA_BUCKET": registry.data_bucket.bucket_name,
                    "ARTIFACT_BUCKET": registry.artifact_bucket.bucket_name,
                    "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                    "RETRAIN_SPECS": json.dumps({m: spec_document(self.models[m]) for m in wanted}),
                    "QUALITY_MODELS": settings,
                    "QUALITY_LATE_LOOKBACK": str(int(late_lookback.to_seconds())),
                    "POWERTOOLS_SERVICE_NAME": "shipyard-quality-retrain",
                },
            )
            self.retrain_function, self.retrain_role, self.retrain_log_group = (
                made.function, made.role, made.log_group)
            registry.grant_list_datasets(self.retrain_function)  # the newest dataset (key + version id)
            with_labels = [m for m in wanted if self.models[m].quality.retrain == "dataset+labels"]
            if with_labels:
                registry.grant_read_datasets(self.retrain_function)  # the base dataset's rows
                registry.grant_read_capture(self.retrain_function)   # the labelled instances
                registry.grant_read_labels(self.retrain_function)
                # datasets/<m>/retrain-*: the combined dataset only, of those models only
                iam.Grant.add_to_principal(
                    grantee=self.retrain_function, actions=["s3:PutObject"],
                    resource_arns=[registry.data_bucket.arn_for_objects(f"{DATASETS_PREFIX}{m}/retrain-*")
                                   for m in with_labels])
            state_machine.grant_start_execution(self.retrain_function)
            for model in wanted:
                self.retrain_rules[model] = events.Rule(
                    self, f"Retrain-{model}",
                    description=f"Quality Degraded for model {model}: retrain ({self.models[model].quality.retrain})",
                    event_pattern=events.EventPattern(
                        source=[EVENT_SOURCE], detail_type=[QUALITY_DEGRADED], detail={"model": [model]}),
                    targets=[targets.LambdaFunction(self.retrain_function, retry_attempts=2,
                                                    max_event_age=Duration.hours(1),
                                                    dead_letter_queue=self.dead_letter_queue)],
                )
        if self.dead_letters is not None:
            self.dead_letters.allow_rules_in(self)

    # ------------------------------------------------------------------ cdk-nag

    def acknowledge_nag_findings(self) -> None:
        """Acknowledge the prefix-scoped S3 findings (AwsSolutions-IAM5) of this construct's roles, each with
        its reason (called by infra/nag.py ``acknowledge_findings``)."""
        from aws_cdk import Acknowledgment, Validations

        stack = Stack.of(self)

        def arn(bucket) -> str:
            return f"<{stack.get_logical_id(bucket.node.default_child)}.Arn>"

        artifacts, data = arn(self.registry.artifact_bucket), arn(self.registry.data_bucket)

        def ack(role, resource: str, reason: str) -> None:
            Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]",
                                                            reason=reason))

        capture = ("The quality check joins captured predictions, objects Firehose names at delivery time "
                   "(capture/<model>/YYYY/MM/DD/HH/<generated>); Get/GetObjectVersion on capture/ only.")
        labels = ("Ground truth is any CSV a team uploads under labels/<model>/ (names chosen at run time); "
                  "s3:GetObject on the labels/ prefix of the data bucket only (read-only).")
        ack(self.role, f"{artifacts}/capture/*", capture)
        ack(self.role, f"{data}/labels/*", labels)
        ack(self.role, f"{artifacts}/quality/*", "Each check writes quality/<model>/<checked_at>.json, a key known "
            "only at run time, and the HTML report reads the newest one; Get/Put on the quality/ prefix only.")
        ack(self.role, f"{artifacts}/reports/*", "After each check the HTML report reports/<model>/<timestamp>.html "
            "(docs/reports.md), a key known only at run time; s3:PutObject on the reports/ prefix only.")
        ack(self.role, f"{artifacts}/models/*", "The HTML report shows the production version's baseline "
            "(models/<model>/v<N>/baseline.json, N known at run time); read-only, models/ prefix only.")
        ack(self.role, f"{artifacts}/drift/*", "The HTML report shows the newest drift report "
            "(drift/<model>/<timestamp>.json, found by listing); read-only, drift/ prefix only.")
        if self.retrain_function is None:
            return
        role = self.retrain_role
        ack(role, f"{data}/datasets/*", "Retraining with labels reads the model's newest dataset (any name and "
            "object version under datasets/<model>/, known at run time); read-only, datasets/ prefix only.")
        ack(role, f"{artifacts}/capture/*", capture)
        ack(role, f"{data}/labels/*", labels)
        for model, spec in self.models.items():
            if spec.quality.retrain == "dataset+labels":
                ack(role, f"{data}/datasets/{model}/retrain-*", "The combined dataset "
                    f"datasets/{model}/retrain-<timestamp>-with-labels.csv is named at run time; s3:PutObject on "
                    "that name pattern of that model only.")

    # ------------------------------------------------------------------ grants

    def grant_run_check(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let *grantee* run a check now (invoke the quality function), as ``shipyard quality check`` does."""
        return self.function.grant_invoke(grantee)

    # ------------------------------------------------------------------ metrics

    @staticmethod
    def _metric(name: str, model: str, statistic: str, period: Duration, **dims: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name,
                                 dimensions_map={"Model": model, **dims}, statistic=statistic, period=period)

    def metric_model_quality(self, model: str, metric: str = "accuracy", period: Duration = Duration.days(1),
                             version: str | None = None) -> cloudwatch.Metric:
        """The production version's metric on labelled traffic (its worst in the period: Minimum, Maximum for
        rmse/mae); with *version*, that version's. Published only with at least ``min_labels`` labels."""
        dims = {VERSION_DIMENSION: str(version)} if version is not None else {}
        stat = "Maximum" if metric in _LOWER_IS_BETTER else "Minimum"
        return self._metric(METRIC_MODEL_QUALITY, model, stat, period, **dims)

    def metric_labelled_count(self, model: str, period: Duration = Duration.days(1)) -> cloudwatch.Metric:
        """Labelled predictions joined in the last check's window (Maximum)."""
        return self._metric(METRIC_LABELLED_COUNT, model, "Maximum", period)

    def metric_label_coverage(self, model: str, period: Duration = Duration.days(1)) -> cloudwatch.Metric:
        """Labelled share of the window's captured predictions (Minimum)."""
        return self._metric(METRIC_LABEL_COVERAGE, model, "Minimum", period)

    # ------------------------------------------------------------------ dashboard

    def dashboard_widgets(self) -> list[list[cloudwatch.IWidget]]:
        """One row per model: its live metric vs min_score, labelled count and coverage."""
        rows = []
        for model, spec in self.models.items():
            period = schedule_period(spec.quality.schedule)
            floor = spec.quality_min_score
            rows.append([
                cloudwatch.GraphWidget(
                    title=f"{model}: {spec.metric} on labelled traffic (min_score {floor:g})",
                    left=[self.metric_model_quality(model, spec.metric, period)],
                    left_annotations=[cloudwatch.HorizontalAnnotation(value=floor, label="min_score")],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: labelled predictions and label coverage ({spec.quality.schedule})",
                    left=[self.metric_labelled_count(model, period)],
                    right=[self.metric_label_coverage(model, period)],
                    right_y_axis=cloudwatch.YAxisProps(min=0, max=1),
                    width=12,
                ),
            ])
        return rows
