"""``UploadMonitor``: uploads under ``datasets/`` that start no pipeline run are reported, not lost.

    S3 "Object Created" datasets/… (data bucket) ──rule──► uploads function (functions/pipeline/uploads.py)
        datasets/<model>/….csv|.csv.gz    nothing to say (its model's upload rule starts the run)
        datasets/<no model>/…             WARNING (key, prefix, models, closest name) + UnownedUploads
        datasets/<model>/notes.txt, .CSV  "ignored: not a dataset file (.csv or .csv.gz)" + IgnoredUploads

The per-model upload rules (infra/pipeline.py) match only their own ``datasets/<model>/`` dataset
files, so an upload to ``datasets/penguin/`` for model ``penguins`` would otherwise start nothing
and say nothing. This rule sees every upload under ``datasets/`` (EventBridge cannot match "no
other rule matched", and the function knows the models), so the function also runs, and returns at
once, for each dataset upload.

The function calls no AWS API: its role may only write its own log group (and X-Ray, which active
tracing adds); the metrics are EMF lines in that log. Its rule's target has the stack's dead-letter
queue; CDK's ``LambdaFunction`` target adds the Lambda permission for this rule. The alarm on
``UnownedUploads`` is ``StackAlarms.watch_uploads`` (cdk.json ``uploads.alarm_unowned``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.core.layout import DATASETS_PREFIX, METRICS_NAMESPACE
from functions.pipeline.uploads import METRIC_IGNORED_UPLOADS, METRIC_UNOWNED_UPLOADS
from infra.deadletters import EventDeadLetters
from infra.lambdas import shipyard_function

UPLOADS_HANDLER = "functions.pipeline.uploads.handler"
UPLOADS_SERVICE_NAME = "shipyard-uploads"


def uploads_function_name(stack_name: str) -> str:
    """``<stack>-uploads``: the function whose log says what became of an upload (64 characters at most)."""
    return f"{stack_name[:56]}-uploads"


class UploadMonitor(Construct):
    """One rule on every upload under ``datasets/`` of the data bucket → the uploads function."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data_bucket: s3.IBucket,
        models: Sequence[str],
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        function_name: str | None = None,
        memory_size: int = 256,
        timeout: Duration = Duration.seconds(30),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        """
        :param data_bucket: the bucket whose ``datasets/`` uploads are watched (EventBridge notifications on).
        :param models: the configured model names (who owns ``datasets/<model>/``).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: a layer with Powertools (the inference layer has it).
        :param function_name: physical name (default ``<stack>-uploads``).
        :param memory_size: MB (default 256). :param timeout: default 30 s.
        :param log_retention: retention of the function's log group.
        :param log_removal_policy: what happens to that log group when removed.
        :param code: override the function code (default: the ``functions/`` package).
        :param dead_letter_queue: where upload events that could not be delivered go after the
            target's retries (default: ``EventDeadLetters`` of this construct). A queue given here
            gets no policy statements from this construct: ``EventDeadLetters.allow_rules_in``.
        """
        super().__init__(scope, id)
        self.data_bucket = data_bucket
        self.models = list(models)
        made = shipyard_function(
            self,
            "Function",
            function_name=function_name or uploads_function_name(Stack.of(self).stack_name),
            description="Shipyard uploads: report uploads under datasets/ that start no pipeline run",
            handler=UPLOADS_HANDLER,
            environment={
                "SHIPYARD_MODELS": json.dumps(self.models),
                "POWERTOOLS_SERVICE_NAME": UPLOADS_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            architecture=architecture,
            layers=layers,
            code=code,
            memory_size=memory_size,
            timeout=timeout,
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
        )
        # No grant: the function reads nothing and writes only its log group (shipyard_function).
        self.function, self.role, self.log_group = made.function, made.role, made.log_group

        self.dead_letters = EventDeadLetters(self, "DeadLetters") if dead_letter_queue is None else None
        self.dead_letter_queue = dead_letter_queue or self.dead_letters.target_queue
        self.rule = events.Rule(
            self,
            "Rule",
            description="Every upload under datasets/: report those no model owns and those that are not datasets",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [data_bucket.bucket_name]},
                        "object": {"key": [{"prefix": DATASETS_PREFIX}]}},
            ),
            targets=[targets.LambdaFunction(self.function, retry_attempts=8, max_event_age=Duration.hours(2),
                                            dead_letter_queue=self.dead_letter_queue)],
        )
        if self.dead_letters is not None:
            self.dead_letters.allow_rules_in(self)

    # ------------------------------------------------------------------ metrics

    def _metric(self, name: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, statistic="Sum", period=period,
                                 dimensions_map={"Bucket": self.data_bucket.bucket_name})

    def metric_unowned_uploads(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Uploads under a ``datasets/<folder>/`` no model owns (or a CSV directly under ``datasets/``), Sum."""
        return self._metric(METRIC_UNOWNED_UPLOADS, period)

    def metric_ignored_uploads(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Uploads in a model's folder that are not dataset files, and folder placeholders (Sum)."""
        return self._metric(METRIC_IGNORED_UPLOADS, period)

    # ------------------------------------------------------------------ dashboard

    def dashboard_widgets(self, alarm: cloudwatch.IAlarm | None = None) -> list[cloudwatch.IWidget]:
        """One graph: unowned and ignored uploads (with the alarm's threshold line when there is one)."""
        return [cloudwatch.GraphWidget(
            title="Uploads under datasets/ that started no run (unowned: alarm; ignored: not a .csv/.csv.gz)",
            left=[self.metric_unowned_uploads(), self.metric_ignored_uploads()],
            left_annotations=[cloudwatch.HorizontalAnnotation(value=1, label="unowned alarm")] if alarm else None,
            width=24,
        )]
