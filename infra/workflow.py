"""What the pipeline and batch scoring share as state machines started by uploads: the rule that
starts one from an S3 "Object Created" event (retries, event age, dead-letter queue), and a
construct's start grant and run metrics (``WorkflowRuns``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# EventBridge retries a start the state machine refused (throttling) for up to this long, then
# sends the event to the dead-letter queue.
UPLOAD_RETRY_ATTEMPTS = 8
UPLOAD_MAX_EVENT_AGE = Duration.hours(2)


def upload_rule(scope: Construct, id: str, *, description: str, bucket_name: str, key_pattern: list[dict],
                state_machine: sfn.IStateMachine, input: Mapping[str, Any],
                dead_letter_queue: sqs.IQueue) -> events.Rule:
    """A rule starting *state_machine* with *input* for each object created in *bucket_name* whose
    key matches *key_pattern* (EventBridge matchers of ``detail.object.key``)."""
    rule = events.Rule(
        scope, id, description=description,
        event_pattern=events.EventPattern(
            source=["aws.s3"], detail_type=["Object Created"],
            detail={"bucket": {"name": [bucket_name]}, "object": {"key": key_pattern}},
        ),
    )
    rule.add_target(targets.SfnStateMachine(
        state_machine, input=events.RuleTargetInput.from_object(dict(input)),
        retry_attempts=UPLOAD_RETRY_ATTEMPTS, max_event_age=UPLOAD_MAX_EVENT_AGE,
        dead_letter_queue=dead_letter_queue,
    ))
    return rule


class WorkflowRuns:
    """The start grant and run metrics of a construct's ``state_machine``."""

    state_machine: sfn.StateMachine

    @property
    def state_machine_arn(self) -> str:
        return self.state_machine.state_machine_arn

    def grant_start(self, grantee: iam.IGrantable) -> iam.Grant:
        """Start runs by hand (``shipyard train`` and drift retraining; ``shipyard batch``)."""
        return self.state_machine.grant_start_execution(grantee)

    def metric_failed(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        return self.state_machine.metric_failed(period=period, statistic="Sum")

    def metric_succeeded(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        return self.state_machine.metric_succeeded(period=period, statistic="Sum")

    def metric_started(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        return self.state_machine.metric_started(period=period, statistic="Sum")

    def runs_widget(self, title: str) -> cloudwatch.GraphWidget:
        """Started, succeeded and failed runs, half a dashboard row."""
        return cloudwatch.GraphWidget(title=title, left=[self.metric_started(), self.metric_succeeded(),
                                                         self.metric_failed()], width=12)
