"""``UploadMonitor``: uploads under ``datasets/`` or ``batch/`` that start no run are reported, not lost.

    S3 "Object Created" datasets/… or batch/… (data bucket) ──rule──► uploads function
        datasets/<model>/….csv|.csv.gz, batch/<model>/….csv  nothing to say (its model's rule starts the run)
        datasets/<no model>/…, batch/<no model>/…            WARNING (key, prefix, models, closest) + UnownedUploads
        datasets/<model>/notes.txt, .CSV         "ignored: not a dataset file (.csv or .csv.gz)" + IgnoredUploads
        batch/<model>/notes.txt, .CSV, .csv.gz   "ignored: not a batch input (.csv)" + IgnoredUploads

The per-model upload rules (infra/pipeline.py, infra/batch.py) match only their own
``datasets/<model>/`` dataset files and ``batch/<model>/`` CSVs, so an upload to ``datasets/penguin/``
or ``batch/penguin/`` for model ``penguins`` would otherwise start nothing and say nothing. This rule
sees every upload under both prefixes (EventBridge cannot match "no other rule matched", and the
function knows the models), so the function also runs, and returns at once, for each upload that
does start a run.

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

from functions.core.layout import METRICS_NAMESPACE
from functions.pipeline.uploads import METRIC_IGNORED_UPLOADS, METRIC_UNOWNED_UPLOADS, ROUTES
from infra.deadletters import EventDeadLetters
from infra.lambdas import shipyard_function

UPLOADS_HANDLER = "functions.pipeline.uploads.handler"
UPLOADS_SERVICE_NAME = "shipyard-uploads"


def uploads_function_name(stack_name: str) -> str:
    """``<stack>-uploads``: the function whose log says what became of an upload (64 characters at most)."""
    return f"{stack_name[:56]}-uploads"


class UploadMonitor(Construct):
    """One rule on every upload under ``datasets/`` or ``batch/`` of the data bucket → the uploads function."""

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
        :param data_bucket: the bucket whose ``datasets/`` and ``batch/`` uploads are watched (EventBridge
            notifications on).
        :param models: the configured model names (who owns ``datasets/<model>/`` and ``batch/<model>/``).
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
            description="Shipyard uploads: report uploads under datasets/ or batch/ that start no run",
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
            description="Every upload under datasets/ or batch/: report those no model owns, those that start no run",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [data_bucket.bucket_name]},
                        "object": {"key": [{"prefix": route.prefix} for route in ROUTES]}},
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
        """Uploads under a ``datasets/<folder>/`` or ``batch/<folder>/`` no model owns (or a CSV directly under
        either prefix), Sum."""
        return self._metric(METRIC_UNOWNED_UPLOADS, period)

    def metric_ignored_uploads(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Uploads in a model's folder that start no run (not a dataset file or batch input), placeholders (Sum)."""
        return self._metric(METRIC_IGNORED_UPLOADS, period)

    # ------------------------------------------------------------------ dashboard

    def dashboard_widgets(self, alarm: cloudwatch.IAlarm | None = None) -> list[cloudwatch.IWidget]:
        """One graph: unowned and ignored uploads (with the alarm's threshold line when there is one)."""
        return [cloudwatch.GraphWidget(
            title="Uploads under datasets/ or batch/ that started no run (unowned: alarm; ignored: not a run's input)",
            left=[self.metric_unowned_uploads(), self.metric_ignored_uploads()],
            left_annotations=[cloudwatch.HorizontalAnnotation(value=1, label="unowned alarm")] if alarm else None,
            width=24,
        )]
