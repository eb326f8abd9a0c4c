"""How every Shipyard Lambda function is made: the ``functions/`` asset, Python 3.12, X-Ray,
JSON logs into its own log group, and a role of its own that grants add to (least privilege)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The Lambda asset is the project root filtered down to the ``functions`` package, so the
# import path is ``functions.…`` both locally and in Lambda (docs/architecture.md).
FUNCTIONS_ASSET_EXCLUDE = [
    "*",
    ".*",
    "!functions",
    "!functions/**",
    "**/__pycache__",
    "**/*.pyc",
    "**/.*",
]


def functions_code(root: Path | str = PROJECT_ROOT) -> lambda_.Code:
    """The ``functions/`` package as a Lambda code asset (shared by every Shipyard function)."""
    return lambda_.Code.from_asset(str(root), exclude=FUNCTIONS_ASSET_EXCLUDE, ignore_mode=IgnoreMode.GLOB)


def lambda_architecture(name: str) -> lambda_.Architecture:
    return {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}[name]


@dataclass
class ShipyardFunction:
    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup


def shipyard_function(
    scope: Construct,
    id: str,
    *,
    description: str,
    handler: str,
    environment: Mapping[str, str],
    architecture: str = "arm64",
    layers: Sequence[lambda_.ILayerVersion] = (),
    code: lambda_.Code | None = None,
    memory_size: int = 256,
    timeout: Duration = Duration.seconds(60),
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    function_name: str | None = None,
) -> ShipyardFunction:
    """A function ``id`` with its log group ``<id>Logs`` and role ``<id>Role`` in ``scope``.

    The log group is explicit (no ``log_retention`` custom resource); the role starts with only
    the right to write that log group (and X-Ray, which tracing adds): callers grant the rest.
    """
    log_group = logs.LogGroup(scope, f"{id}Logs", retention=log_retention, removal_policy=log_removal_policy)
    role = iam.Role(scope, f"{id}Role", description=description,
                    assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        id,
        function_name=function_name,
        description=description,
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_architecture(architecture),
        handler=handler,
        code=code or functions_code(),
        layers=list(layers),
        memory_size=memory_size,
        timeout=timeout,
        tracing=lambda_.Tracing.ACTIVE,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        environment=dict(environment),
    )
    return ShipyardFunction(function, role, log_group)
