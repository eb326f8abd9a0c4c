"""``ReleaseApproval``: the approve/reject routes of the API and the function that ends a manual approval.

    approver ──SigV4 (always AWS_IAM)──► POST /models/{name}/versions/{version}/approve|reject
                                              │ proxy
                                              ▼
                      Approval function ── Registry.decide (first decision wins) ──► registry table
                                       ── states:SendTaskSuccess (the run's task token) ──► pipeline run
                                       ── release log event (approved/rejected, caller's ARN) ──► audit table

Both methods are ``AWS_IAM`` whatever ``api.auth`` is (``api_key``/``none`` apply to the
predict and read routes only): API Gateway verifies the caller's signature and identity policy
(``execute-api:Invoke`` on the method ARN) and passes the verified ``userArn``, which is what the
registry and the release log record. ``grant_approve`` is the policy an approver needs; a grant
for predict callers must not cover these routes (docs/api.md, "Approving a release").

The function's role: read the registry (GetItem/Query); UpdateItem in model partitions only, naming
only the attributes ``Registry.decide`` writes (``APPROVAL_ATTRIBUTES``); PutItem on the audit
table in model partitions only (the release log); ``states:SendTaskSuccess``, which has no
resource-level permission (a task token names its run, not IAM), hence ``*`` (infra/nag.py style
acknowledgement below).
"""
from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.endpoint import STAGE_NAME, InferenceApi
from infra.lambdas import shipyard_function
from infra.registry import ModelRegistry

HANDLER = "functions.approval.handler.handler"
SERVICE_NAME = "shipyard-approval"
DECISION_ROUTES = ("approve", "reject")
# What Registry.decide's UpdateItem names: the attributes it sets (decision, decided_by, decision_reason,
# decided_at; delivered_at by Registry.mark_delivered) and the one its condition reads (task_token:
# dynamodb:Attributes counts condition expressions too), plus the table's and its index's key
# attributes, which IAM requires in every dynamodb:Attributes list. No other attribute can be changed.
APPROVAL_ATTRIBUTES = ("pk", "sk", "dataset_ref", "version_ref", "decision", "decided_by", "decision_reason",
                       "decided_at", "task_token", "delivered_at")
TASK_RESPONSE_ACTIONS = ("states:SendTaskSuccess",)


class ReleaseApproval(Construct):
    """``POST …/versions/{version}/approve`` and ``…/reject`` on the inference API, served by the
    Approval function; ``grant_approve`` lets a principal decide."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        api: InferenceApi,
        state_machine: sfn.IStateMachine,
        models: Sequence[str],
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
    ) -> None:
        """
        :param registry: the registry (approval items) and audit table (release log).
        :param api: the inference API the routes are added to (under ``/models/{name}/versions/{version}``).
        :param state_machine: the pipeline whose runs wait on a task token (``PIPELINE_ARN`` of the
            function, for its logs; ``SendTaskSuccess`` itself cannot be scoped to it).
        :param models: model names configured in cdk.json (``SHIPYARD_MODELS``).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: the layers with Powertools (the inference layer).
        """
        super().__init__(scope, id)
        self.api = api
        self.state_machine = state_machine
        made = shipyard_function(
            self,
            "Function",
            description="Shipyard approval: ends a manual approval of a release (approve/reject, audited)",
            handler=HANDLER,
            architecture=architecture,
            layers=layers,
            code=code,
            memory_size=256,
            timeout=Duration.seconds(29),  # the API Gateway integration limit
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
            environment={
                **registry.environment(models),
                "PIPELINE_ARN": state_machine.state_machine_arn,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            },
        )
        self.function, self.role, self.log_group = made.function, made.role, made.log_group

        # -- least privilege (module docstring)
        registry.grant_update_versions(self.function, attributes=APPROVAL_ATTRIBUTES)  # + GetItem/Query
        registry.grant_write_release_log(self.function)
        iam.Grant.add_to_principal(grantee=self.function, actions=list(TASK_RESPONSE_ACTIONS), resource_arns=["*"])
        Validations.of(self.role).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="X-Ray (xray:PutTraceSegments/PutTelemetryRecords) and states:SendTaskSuccess support no "
                   "resource-level permissions, so AWS requires Resource '*'. SendTaskSuccess is authorized by "
                   "the opaque task token, which only the pipeline's AwaitApproval step writes to the registry; "
                   "the function sends only the token of the version the verified approver named."))

        # -- the routes: always AWS_IAM, never an API key
        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False)
        self.methods: dict[str, apigw.Method] = {}
        for word in DECISION_ROUTES:
            self.methods[word] = api.version_resource.add_resource(word).add_method(
                "POST", integration, authorization_type=apigw.AuthorizationType.IAM, api_key_required=False)

    def method_arns(self, model: str | None = None) -> list[str]:
        """The execute-api ARNs of the approve and reject methods, of *model* (default: every model)."""
        name = model or "*"
        return [self.api.api.arn_for_execute_api("POST", f"/models/{name}/versions/*/{word}", STAGE_NAME)
                for word in DECISION_ROUTES]

    def grant_approve(self, grantee: iam.IGrantable, model: str | None = None) -> iam.Grant:
        """Let *grantee* approve and reject releases (of *model*, default every model):
        ``execute-api:Invoke`` on exactly the two methods' ARNs of the ``prod`` stage."""
        return iam.Grant.add_to_principal(grantee=grantee, actions=["execute-api:Invoke"],
                                          resource_arns=self.method_arns(model))
