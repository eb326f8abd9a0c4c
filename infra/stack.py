"""``ShipyardStack``: composes the constructs and declares the stack outputs (README.md "Deploy").

``build_app`` is the one way to build the CDK app: ``app.py``, the tests and the local cloud
all use it, so they synthesize exactly the same template.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, App, ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.approval import ReleaseApproval
from infra.batch import BatchScoring
from infra.config import ShipyardConfig, load_config
from infra.deadletters import EventDeadLetters
from infra.endpoint import InferenceApi
from infra.layers import DependencyLayers
from infra.monitoring import DriftMonitor, StackAlarms, alarm_name_prefix, check_alarm_names
from infra.pipeline import TrainingPipeline
from infra.registry import ModelRegistry
from infra.uploads import UploadMonitor

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CDK_JSON = PROJECT_ROOT / "cdk.json"

OUTPUT_NAMES = (
    "ApiUrl",
    "DataBucketName",
    "ArtifactBucketName",
    "RegistryTableName",
    "AuditTableName",
    "PipelineArn",
    "AlarmTopicArn",
    "DashboardName",
    "BatchStateMachineArn",
)


class ShipyardStack(Stack):
    """Registry + inference API + alarm topic + dashboard, configured by ``ShipyardConfig``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ShipyardConfig,
        layers: Sequence[lambda_.ILayerVersion] | None = None,
        build_layers: bool = True,
        pipeline_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        :param config: the validated ``context.shipyard``.
        :param layers: layers for every function instead of ``DependencyLayers`` (default ``None``:
            the inference layer for the serving-side functions, the training layer for Train).
        :param build_layers: let ``DependencyLayers`` build missing layers (default). ``False``
            uses an existing build or an empty placeholder (tests, local cloud: never deploy that).
        :param pipeline_options: extra ``TrainingPipeline`` props (e.g. short retry intervals in tests).
        """
        kwargs.setdefault("stack_name", config.stack_name)
        kwargs.setdefault(
            "description", f"Shipyard serverless MLOps: {', '.join(config.model_names) or 'no models'}"
        )
        super().__init__(scope, id, **kwargs)
        self.config = config

        self.registry = ModelRegistry(self, "Registry")

        self.layers = None
        training_layers: Sequence[lambda_.ILayerVersion] = layers or []
        if layers is None:
            self.layers = DependencyLayers(self, "Layers", architecture=config.architecture, build=build_layers)
            layers = [self.layers.inference]
            training_layers = [self.layers.training]

        self.inference = InferenceApi(
            self,
            "Inference",
            registry=self.registry,
            models=config.model_names,
            auth=config.api.auth,
            architecture=config.architecture,
            layers=layers,
            rate_limit=config.api.rate_limit,
            burst_limit=config.api.burst_limit,
            cloudwatch_role=config.api.cloudwatch_role,
            reserved_concurrency=config.concurrency.inference,
        )

        # One dead-letter queue for every EventBridge target of the stack (uploads, schedules, retraining).
        self.dead_letters = EventDeadLetters(self, "EventDeadLetters")

        self.pipeline = TrainingPipeline(
            self,
            "Pipeline",
            registry=self.registry,
            models=config.models,
            architecture=config.architecture,
            inference_layers=layers,
            training_layers=training_layers,
            dead_letter_queue=self.dead_letters.target_queue,
            train_reserved_concurrency=config.concurrency.training,
            wheelhouse=build_layers,  # the SageMaker training bundle's wheels, like the layers
            **dict(pipeline_options or {}),
        )

        # Manual approval: POST /models/{name}/versions/{version}/approve|reject, always AWS_IAM (infra/approval.py).
        self.approval = ReleaseApproval(
            self,
            "Approval",
            registry=self.registry,
            api=self.inference,
            state_machine=self.pipeline.state_machine,
            models=config.model_names,
            architecture=config.architecture,
            layers=layers,  # Powertools: the inference layer has it
        )

        # Batch scoring: batch/<model>/<file>.csv -> predictions/<model>/<run>/ (docs/batch.md).
        self.batch = BatchScoring(
            self,
            "Batch",
            registry=self.registry,
            models=config.model_names,
            architecture=config.architecture,
            layers=layers,  # onnxruntime + numpy + Powertools: the inference layer
            dead_letter_queue=self.dead_letters.target_queue,
        )

        # Every upload under datasets/ that starts no run is reported (UnownedUploads, IgnoredUploads).
        self.uploads = UploadMonitor(
            self,
            "Uploads",
            data_bucket=self.registry.data_bucket,
            models=config.model_names,
            architecture=config.architecture,
            layers=layers,  # Powertools: the inference layer has it
            dead_letter_queue=self.dead_letters.target_queue,
        )

        # ------------------------------------------------------------ alarm topic
        # Every alarm of the stack is named "<stack>-…" (infra/monitoring.py alarm_name_prefix; a
        # validation below fails the synth otherwise), so one ARN pattern names them all: CloudWatch
        # may publish (and use the key) only on behalf of those alarms, in this account.
        self.alarm_source_arn = self.format_arn(
            service="cloudwatch", resource="alarm", resource_name=f"{alarm_name_prefix(self)}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME)
        alarm_publisher_conditions = {
            "StringEquals": {"aws:SourceAccount": self.account},
            "ArnLike": {"aws:SourceArn": self.alarm_source_arn},
        }
        # CloudWatch alarms (and EventBridge rules) cannot publish to a topic encrypted with the
        # AWS managed SNS key, so the topic has its own customer managed key that lets them.
        self.alarm_key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{config.stack_name}: encrypts the alarm topic",
            enable_key_rotation=True,
        )
        self.alarm_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishers",
                # CloudWatch alarms are the topic's only service publisher (no rule targets it:
                # tests/infra/test_delivery_findings.py checks it), and only this stack's alarms.
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" is this key
                conditions=alarm_publisher_conditions,
            )
        )
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{config.stack_name} alarms",
            master_key=self.alarm_key,
            enforce_ssl=True,
        )
        # enforce_ssl makes CDK write a topic policy whose only statement is the TLS Deny; a topic
        # policy replaces SNS's default one, so without this statement nothing allows CloudWatch to
        # publish and every alarm notification is dropped (in AWS; moto does not evaluate it).
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions=alarm_publisher_conditions,
            )
        )
        # A manual approval's message and the release alarms (the topic is made after the pipeline).
        self.pipeline.use_alarm_topic(self.alarm_topic)
        if config.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        else:
            Annotations.of(self.alarm_topic).add_warning_v2(
                "shipyard:alarm-topic-without-subscriber",
                "alarm_email is not set: the alarm topic has no subscriber, so the alarms notify nobody. "
                "Set \"alarm_email\" in cdk.json (context.shipyard), or subscribe after the deploy: "
                "aws sns subscribe --topic-arn <AlarmTopicArn output> --protocol email "
                "--notification-endpoint you@example.com (docs/monitoring.md#who-gets-the-alarms)")

        # ------------------------------------------------------------ drift monitoring
        self.drift = DriftMonitor(
            self,
            "Drift",
            registry=self.registry,
            models=config.models,
            alarm_topic=self.alarm_topic,
            state_machine=self.pipeline.state_machine,
            architecture=config.architecture,
            layers=layers,  # numpy + Powertools: the inference layer has both
            dead_letter_queue=self.dead_letters.target_queue,
        )

        # ------------------------------------------------------------ model quality (docs/quality.md)
        # Only models with a "quality" block are checked; none: no quality resources at all.
        self.quality = None
        if any(spec.quality is not None for spec in config.models.values()):
            from infra.quality import QualityMonitor

            self.quality = QualityMonitor(
                self, "Quality", registry=self.registry, models=config.models, alarm_topic=self.alarm_topic,
                state_machine=self.pipeline.state_machine, architecture=config.architecture, layers=layers,
                dead_letter_queue=self.dead_letters.target_queue)

        # ------------------------------------------------------------ dashboard
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.stack_name,
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {config.stack_name}\nModels: {', '.join(config.model_names) or '(none)'}",
                width=24,
                height=1,
            )
        )
        self.dashboard.add_widgets(*self.inference.dashboard_widgets())
        self.dashboard.add_widgets(*self.pipeline.dashboard_widgets())
        self.dashboard.add_widgets(*self.batch.dashboard_widgets())

        # ------------------------------------------------------------ alarms for the whole stack
        # Last, so every function of the stack exists: each gets an errors and a throttles alarm.
        self.alarms = StackAlarms(self, "Alarms", alarm_topic=self.alarm_topic)
        self.alarms.watch_api(self.inference)
        self.alarms.watch_pipeline(self.pipeline.state_machine)
        self.alarms.watch_batch(self.batch.state_machine)
        self.alarms.watch_capture(self.inference)
        self.alarms.show(*self.drift.alarms.values())
        self.alarms.watch_dead_letters(self.dead_letters.queue)
        uploads_alarm = self.alarms.watch_uploads(self.uploads) if config.uploads.alarm_unowned else None
        self.dashboard.add_widgets(*self.uploads.dashboard_widgets(uploads_alarm))
        self.dead_letters.allow_rules_in(self)  # every rule exists by now
        self.alarms.watch_functions_in(self)
        for row in self.drift.dashboard_widgets():
            self.dashboard.add_widgets(*row)
        if self.quality is not None:
            self.alarms.show(*self.quality.alarms.values())
            for row in self.quality.dashboard_widgets():
                self.dashboard.add_widgets(*row)
        for row in self.alarms.dashboard_widgets():
            self.dashboard.add_widgets(*row)
        # Every alarm must match the topic's aws:SourceArn pattern, or its notifications are refused.
        self.node.add_validation(check_alarm_names(self))

        # ------------------------------------------------------------ outputs (exact names)
        CfnOutput(self, "ApiUrl", value=self.inference.url, description="Inference API base URL")
        CfnOutput(self, "DataBucketName", value=self.registry.data_bucket.bucket_name,
                  description="Upload datasets to datasets/<model>/<name>.csv here")
        CfnOutput(self, "ArtifactBucketName", value=self.registry.artifact_bucket.bucket_name,
                  description="Model artifacts, captured inputs and drift reports")
        CfnOutput(self, "RegistryTableName", value=self.registry.table.table_name,
                  description="Model registry and lineage table")
        CfnOutput(self, "AuditTableName", value=self.registry.audit_table.table_name,
                  description="Audit log of alias moves (append-only)")
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn,
                  description="SNS topic every Shipyard alarm notifies")
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name,
                  description="CloudWatch dashboard")
        CfnOutput(self, "BatchStateMachineArn", value=self.batch.state_machine_arn,
                  description="Batch scoring state machine (upload to batch/<model>/ or shipyard batch MODEL FILE)")
        CfnOutput(self, "PipelineArn", value=self.pipeline.state_machine_arn,
                  description="Training pipeline state machine (shipyard train MODEL starts it by hand)")
        if self.inference.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.inference.api_key.key_id,
                      description="aws apigateway get-api-key --include-value --api-key <id>")


def project_cdk_json() -> Path:
    """The ``cdk.json`` of the project being synthesized: the current directory's, else Shipyard's."""
    here = Path.cwd() / "cdk.json"
    return here if here.exists() else CDK_JSON


def read_cdk_json_context(path: Path = CDK_JSON) -> dict:
    """The ``context`` object of ``cdk.json`` (feature flags and ``shipyard``)."""
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh).get("context", {}))


def shipyard_context(app: App) -> Mapping | None:
    """``context.shipyard`` as the app sees it (CLI ``-c`` may pass it as a JSON string)."""
    raw = app.node.try_get_context("shipyard")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            from infra.config import ConfigError

            raise ConfigError("shipyard", f"context value is not valid JSON ({exc.msg} at char {exc.pos})") from None
    return raw


def build_app(
    config_dict: Mapping | None = None,
    outdir: str | os.PathLike | None = None,
    *,
    nag: bool = True,
    layers: Sequence[lambda_.ILayerVersion] | None = None,
    build_layers: bool | None = None,
    cdk_json: str | os.PathLike | None = None,
) -> tuple[App, ShipyardStack]:
    """Build (not synthesize) the app.

    The context of ``cdk.json`` (feature flags and ``shipyard``) is the app's default
    context, so ``python app.py`` works without the CDK CLI; context the CLI passes (``-c``)
    wins over it, and *config_dict*, when given, wins over both.

    :param config_dict: ``context.shipyard`` to use instead of cdk.json's / the CLI's.
    :param outdir: cloud assembly directory (default: ``CDK_OUTDIR`` under the CLI, else a
        temporary directory — ``app.py`` passes ``cdk.out``).
    :param nag: attach cdk-nag AwsSolutions (with Shipyard's acknowledgments).
    :param layers: layers for the inference function instead of ``DependencyLayers``.
    :param build_layers: let ``DependencyLayers`` build missing layers. ``None`` (default):
        context ``shipyard:build_layers`` (``-c shipyard:build_layers=false``), default true.
    :param cdk_json: the project's ``cdk.json`` (default: the one in the current directory, where
        the CDK CLI runs the app; else Shipyard's own).
    :raises ConfigError: the ``shipyard`` configuration is invalid.
    """
    path = Path(cdk_json) if cdk_json else project_cdk_json()
    # Shipyard's feature flags are the defaults the stack is written against; the project's
    # cdk.json context (its models, its own flags) goes on top. Shipyard's own project (app.py)
    # passes the same file: read once.
    defaults = read_cdk_json_context(CDK_JSON) if CDK_JSON.exists() else {}
    context = {k: v for k, v in defaults.items() if k != "shipyard"}
    if path.exists():
        same_file = path.resolve() == CDK_JSON.resolve()
        context.update(defaults if same_file else read_cdk_json_context(path))
    kwargs: dict[str, Any] = {"context": context, "analytics_reporting": False}
    if config_dict is not None:
        kwargs["post_cli_context"] = {"shipyard": dict(config_dict)}
    if outdir is not None:
        kwargs["outdir"] = str(outdir)
    app = App(**kwargs)
    config = load_config(shipyard_context(app))
    if build_layers is None:
        flag = app.node.try_get_context("shipyard:build_layers")
        build_layers = str(flag).lower() not in ("false", "0", "no") if flag is not None else True
    stack = ShipyardStack(app, config.stack_name, config=config, layers=layers, build_layers=build_layers)
    if nag:
        from infra.nag import apply_nag

        apply_nag(app, stack)
    return app, stack
