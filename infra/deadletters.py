"""``EventDeadLetters``: the dead-letter queue of EventBridge targets — what could not be
delivered is kept.

EventBridge retries a target it cannot reach (throttling, a missing or unauthorized target) and
then drops the event: an upload that never started its pipeline, a drift check that never ran.
With a dead-letter queue the event is kept 14 days instead, with why it failed (``ERROR_CODE``,
``ERROR_MESSAGE``, ``RULE_ARN``, ``TARGET_ARN`` message attributes), and
``StackAlarms.watch_dead_letters`` alarms on the first one.

One policy statement for all rules: CDK adds a statement per rule to a queue given as a target's
``dead_letter_queue``, and SQS allows at most 20 per policy (3 rules per model would cap a stack
at 6 models). Targets therefore get ``target_queue`` (the same queue, imported: CDK adds nothing
to it) and ``allow_rules_in(scope)`` admits every rule under ``scope`` in one statement.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class EventDeadLetters(Construct):
    """An SQS-managed-encrypted, TLS-only queue keeping undeliverable events (default 14 days).

    SQS-managed keys rather than KMS: EventBridge can send to it without a key policy of its own.
    """

    def __init__(self, scope: Construct, id: str, *, retention: Duration = Duration.days(14)) -> None:
        super().__init__(scope, id)
        self.queue = sqs.Queue(self, "Queue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                               retention_period=retention)
        #: What to pass as a target's ``dead_letter_queue``.
        self.target_queue: sqs.IQueue = sqs.Queue.from_queue_arn(self, "ForTargets", self.queue.queue_arn)

    def allow_rules_in(self, scope: Construct) -> list[events.Rule]:
        """Let every EventBridge rule under ``scope`` send to the queue (one statement; call it
        once every rule exists). Returns the rules admitted."""
        rules = [node for node in scope.node.find_all() if isinstance(node, events.Rule)]
        if rules:
            self.queue.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowEventRules",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": [rule.rule_arn for rule in rules]}},
            ))
        return rules
