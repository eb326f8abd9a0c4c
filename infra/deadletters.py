"""The dead-letter queue of the stack's EventBridge targets: what could not be delivered is kept.

EventBridge retries a target it cannot reach (throttling, a missing or unauthorized target) and
then drops the event — an upload that never started its pipeline, a drift check that never ran.
With a dead-letter queue the event is kept 14 days instead, with why it failed
(``ERROR_CODE``, ``ERROR_MESSAGE``, ``RULE_ARN``, ``TARGET_ARN`` message attributes), and
``StackAlarms.watch_dead_letters`` alarms on the first one.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct


def event_dead_letter_queue(scope: Construct, id: str = "EventDeadLetters") -> sqs.Queue:
    """An SQS-managed-encrypted, TLS-only queue keeping undeliverable events for 14 days.

    SQS-managed keys rather than KMS: EventBridge can send to it without a key policy of its own.
    """
    return sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
