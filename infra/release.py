"""``ProgressiveRelease``: the canary and shadow release loop of the training pipeline (docs/release.md).

    StartRelease ─► Next? ─bake─► Bake (Wait $.release.wait) ─► CheckRelease ─► Next?
                        ├─promote──► FinishRelease ─┐
                        ├─rollback─► RollBack ──────┼─► ReleaseOutcome? ─► Released | RolledBack | Superseded
                        ├─decide───► AwaitShadowDecision ─► ShadowDecision? ─approve─► FinishRelease
                        │                 (reject, States.Timeout) ─► RollBack
                        └─superseded─► Superseded
       every task: Retry on transient errors; Catch States.DataLimitExceeded, States.ALL ─► the pipeline's MarkFailed

One ``Release`` function over ``functions/release`` (``handler.py``; the steps in ``loop.py``). Its
role may move the registry's aliases (``ModelRegistry.grant_move_aliases``: promote at the end of a
bake, end a release), put events on the default bus, and create, read and delete CloudWatch alarms
named ``<stack>-*`` only (the release's two per-version alarms, ``<stack>-<model>-v<N>-errors`` and
``…-latency``, which notify the alarm topic). Reading the shadow's numbers (GetMetricStatistics,
which has no resource-level permission) is granted only when a model's shadow release decides by an
agreement rule (``metrics_reader``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.lambdas import shipyard_function
from infra.monitoring import alarm_name_prefix
from infra.registry import ModelRegistry

HANDLER = "functions.release.handler.handler"
ALARM_ACTIONS = ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms")


class ProgressiveRelease(Construct):
    """The Release function and the states of the release loop (``loop``), composed by ``TrainingPipeline``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        environment: Mapping[str, str] | None = None,
        alarm_topic: sns.ITopic | None = None,
        metrics_reader: bool = False,
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        code: lambda_.Code | None = None,
        timeout: Duration = Duration.seconds(60),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param registry: the registry whose releases and aliases the loop moves.
        :param environment: the function's environment besides the release's own keys (default: the
            registry's, ``ModelRegistry.environment``).
        :param alarm_topic: where the per-version alarms notify (default: none; ``use_alarm_topic``).
        :param metrics_reader: grant ``cloudwatch:GetMetricStatistics`` (the shadow's numbers; default
            ``False``: only a shadow release with an agreement rule reads them).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: the function's layers (Powertools; the inference layer has it).
        :param code: override the function's code (default: the ``functions/`` package).
        :param timeout: the function's timeout (default 60 s).
        :param log_retention: retention of the function's log group (default one month).
        :param log_removal_policy: what happens to the log group when removed (default retain).
        """
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.registry = registry
        self.timeout = timeout
        self.alarm_prefix = alarm_name_prefix(self)
        # Every alarm the function may touch: the stack's own (the alarm topic admits only those).
        self.alarm_arn_pattern = stack.format_arn(service="cloudwatch", resource="alarm",
                                                  resource_name=f"{self.alarm_prefix}*",
                                                  arn_format=ArnFormat.COLON_RESOURCE_NAME)
        env = {**(environment if environment is not None else registry.environment()),
               "EVENT_BUS_NAME": "default", "ALARM_PREFIX": self.alarm_prefix, "ALARM_TOPIC_ARN": "",
               "POWERTOOLS_SERVICE_NAME": "shipyard-release"}
        made = shipyard_function(
            self, "Release", description="Shipyard release: start, check, promote or roll back a canary/shadow release",
            handler=HANDLER, environment=env, architecture=architecture, layers=layers, code=code, memory_size=256,
            timeout=timeout, log_retention=log_retention, log_removal_policy=log_removal_policy)
        self.function, self.role, self.log_group = made.function, made.role, made.log_group

        registry.grant_move_aliases(self.function)  # start/end a release, promote at the end of a bake
        events.EventBus.from_event_bus_name(self, "DefaultBus", "default").grant_put_events_to(self.function)
        self.grant_alarms(self.function)
        Validations.of(self.role).acknowledge(Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:"
               f"{self.alarm_prefix}*]",
            reason="The release loop creates, reads and deletes each release's per-version alarms "
                   "(<stack>-<model>-v<N>-errors|latency, N known at run time): only the stack's own alarms."))
        if metrics_reader:
            self.grant_read_metrics(self.function)
        if alarm_topic is not None:
            self.use_alarm_topic(alarm_topic)

    # ------------------------------------------------------------------ grants

    def grant_alarms(self, grantee: iam.IGrantable) -> iam.Grant:
        """Create, read and delete the stack's alarms (``<stack>-*``), nothing else."""
        return iam.Grant.add_to_principal(grantee=grantee, actions=list(ALARM_ACTIONS),
                                          resource_arns=[self.alarm_arn_pattern])

    def grant_delete_alarms(self, grantee: iam.IGrantable) -> iam.Grant:
        """Delete the stack's alarms (``<stack>-*``) only: MarkFailed removes a failed release's two alarms.
        A grantee that is a Lambda function also gets ``ALARM_PREFIX``."""
        if isinstance(grantee, lambda_.Function):
            grantee.add_environment("ALARM_PREFIX", self.alarm_prefix)
            if grantee.role is not None:
                Validations.of(grantee.role).acknowledge(Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:"
                       f"<AWS::AccountId>:alarm:{self.alarm_prefix}*]",
                    reason="MarkFailed deletes a failed release's per-version alarms (<stack>-<model>-v<N>-errors|"
                           "latency, N known at run time): cloudwatch:DeleteAlarms on the stack's own alarms only."))
        return iam.Grant.add_to_principal(grantee=grantee, actions=["cloudwatch:DeleteAlarms"],
                                          resource_arns=[self.alarm_arn_pattern])

    def grant_read_metrics(self, grantee: iam.IGrantable) -> iam.Grant:
        """``cloudwatch:GetMetricStatistics``: no resource-level permission exists, so Resource ``*``."""
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=["cloudwatch:GetMetricStatistics"],
                                           resource_arns=["*"])
        if isinstance(grantee, lambda_.Function) and grantee.role is not None:
            Validations.of(grantee.role).acknowledge(Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="cloudwatch:GetMetricStatistics (a shadow release's numbers) supports no resource-level "
                       "permissions, so AWS requires Resource '*'; read-only."))
        return grant

    def use_alarm_topic(self, topic: sns.ITopic) -> None:
        """The per-version alarms notify ``topic`` (set on alarms created from now on). The function does
        not publish itself: a metric alarm's SNS action needs no permission of the alarm's creator."""
        self.function.add_environment("ALARM_TOPIC_ARN", topic.topic_arn)

    # ------------------------------------------------------------------ states

    def loop(
        self,
        scope: Construct,
        *,
        await_decision: sfn.TaskStateBase,
        on_error: sfn.IChainable,
        retry: Mapping,
        version: str,
        catch: Callable[[sfn.TaskStateBase], None],
    ) -> sfn.IChainable:
        """The release loop, starting with StartRelease: *await_decision* is the pipeline's callback task
        for a shadow without an agreement rule (its result at ``$.decision``); *catch* adds the pipeline's
        Catch (→ MarkFailed) to a task; *on_error* is where a ``Next?`` that names no step goes."""

        def task(name: str, action: str, result_path: str) -> tasks.LambdaInvoke:
            payload = {"input": sfn.JsonPath.entire_payload,
                       "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                       "action": action, "version": version}
            t = tasks.LambdaInvoke(
                scope, f"{name}State", state_name=name, lambda_function=self.function,
                payload=sfn.TaskInput.from_object(payload), payload_response_only=True,
                retry_on_service_exceptions=False, result_path=result_path,
                task_timeout=sfn.Timeout.duration(self.timeout.plus(Duration.seconds(30))))
            t.add_retry(**retry)
            catch(t)
            return t

        start = task("StartRelease", "start", "$.release")
        check = task("CheckRelease", "check", "$.release")
        finish = task("FinishRelease", "finish", "$.outcome")
        rollback = task("RollBack", "rollback", "$.outcome")
        bake = sfn.Wait(scope, "Bake", comment="bake: at most a minute between checks of the release's alarms",
                        time=sfn.WaitTime.seconds_path("$.release.wait"))
        superseded = sfn.Succeed(scope, "Superseded",
                                 comment="a promotion, rollback or newer release ended this release")
        outcome = (sfn.Choice(scope, "ReleaseOutcome?")
                   .when(sfn.Condition.boolean_equals("$.outcome.superseded", True), superseded)
                   .when(sfn.Condition.boolean_equals("$.outcome.promoted", True),
                         sfn.Succeed(scope, "Released", comment="the released version serves all traffic"))
                   .otherwise(sfn.Succeed(scope, "RolledBack", comment="the release ended; production untouched")))
        finish.next(outcome)
        rollback.next(outcome)
        await_decision.add_catch(rollback, errors=["States.Timeout"], result_path="$.approval_error")
        catch(await_decision)
        await_decision.next(sfn.Choice(scope, "ShadowDecision?")
                            .when(sfn.Condition.string_equals("$.decision.decision", "approve"), finish)
                            .otherwise(rollback))
        step = "$.release.next"
        choose = (sfn.Choice(scope, "Next?", comment="CheckRelease's answer")
                  .when(sfn.Condition.string_equals(step, "bake"), bake)
                  .when(sfn.Condition.string_equals(step, "promote"), finish)
                  .when(sfn.Condition.string_equals(step, "rollback"), rollback)
                  .when(sfn.Condition.string_equals(step, "decide"), await_decision)
                  .when(sfn.Condition.string_equals(step, "superseded"), superseded)
                  .otherwise(on_error))
        bake.next(check)
        check.next(choose)
        start.next(choose)
        self.states = {"StartRelease": start, "CheckRelease": check, "FinishRelease": finish, "RollBack": rollback}
        return start
