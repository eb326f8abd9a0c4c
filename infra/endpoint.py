"""``InferenceApi``: the REST API, the inference function behind it and the capture streams.

    client ──SigV4/API key──► API Gateway (REST, stage ``prod``) ──proxy──► inference function
                                                                              │ PutRecord
                                                     artifacts bucket ◄── Firehose (one per model)
                                                     capture/<model>/YYYY/MM/DD/HH/…

The function gets only what it uses: read the registry table, read ``models/*`` of the
artifacts bucket, put records to its own capture streams, write its own log group, X-Ray.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.core.layout import (
    CAPTURE_ERROR_PREFIX,
    CAPTURE_PREFIX,
    DEFAULT_MAX_INSTANCES,
    INFERENCE_SERVICE_NAME,
    METRIC_ARTIFACT_INTEGRITY_FAILURES,
    METRICS_NAMESPACE,
)
from infra.config import AUTH_MODES
from infra.lambdas import shipyard_function
from infra.registry import ModelRegistry

HANDLER = "functions.inference.handler.handler"
STAGE_NAME = "prod"

_ACCESS_LOG_FORMAT = {
    "requestId": apigw.AccessLogField.context_request_id(),
    "extendedRequestId": apigw.AccessLogField.context_extended_request_id(),
    "requestTime": apigw.AccessLogField.context_request_time(),
    "ip": apigw.AccessLogField.context_identity_source_ip(),
    "caller": apigw.AccessLogField.context_identity_caller(),
    "user": apigw.AccessLogField.context_identity_user(),
    "apiKeyId": apigw.AccessLogField.context_identity_api_key_id(),
    "httpMethod": apigw.AccessLogField.context_http_method(),
    "resourcePath": apigw.AccessLogField.context_resource_path(),
    "path": apigw.AccessLogField.context_path(),
    "protocol": apigw.AccessLogField.context_protocol(),
    "status": apigw.AccessLogField.context_status(),
    "responseLength": apigw.AccessLogField.context_response_length(),
    "responseLatency": apigw.AccessLogField.context_response_latency(),
    "integrationLatency": apigw.AccessLogField.context_integration_latency(),
    "errorMessage": apigw.AccessLogField.context_error_message(),
    "xrayTraceId": apigw.AccessLogField.context_xray_trace_id(),
}


def capture_log_stream_name(model: str) -> str:
    """The log stream of *model*'s capture delivery stream errors (in ``capture_log_group``)."""
    return f"S3Delivery-{model}"


class InferenceApi(Construct):
    """REST API → one inference function, with per-model capture to S3 through Firehose."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        models: Sequence[str],
        auth: str = "iam",
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        memory_size: int = 1024,
        timeout: Duration = Duration.seconds(29),
        rate_limit: float = 100,
        burst_limit: int = 200,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        alias_ttl_seconds: int = 60,
        alias_miss_ttl_seconds: float = 2,
        capture: bool = True,
        capture_sample_rate: float = 1.0,
        capture_buffer_interval: Duration = Duration.seconds(60),
        capture_buffer_size_mib: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        cloudwatch_role: bool = True,
        code: lambda_.Code | None = None,
        reserved_concurrency: int | None = None,
        capture_error_logging: bool = True,
    ) -> None:
        """
        :param registry: where the function reads models and the registry.
        :param models: model names configured in cdk.json (``SHIPYARD_MODELS``, one capture
            stream each).
        :param auth: ``iam`` (SigV4, default), ``api_key`` (API key + usage plan) or ``none``.
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: dependency layers (onnxruntime, numpy, Powertools).
        :param memory_size: function memory in MB (default 1024).
        :param timeout: function timeout, at most 29 s (the API Gateway integration limit).
        :param rate_limit: stage (and, for ``api_key``, usage plan) requests per second.
        :param burst_limit: stage (and usage plan) burst.
        :param max_instances: most instances in one predict request (``MAX_INSTANCES``).
        :param alias_ttl_seconds: alias lookup cache lifetime (``ALIAS_TTL_SECONDS``).
        :param alias_miss_ttl_seconds: how long a lookup that found no production version (or no
            such model) is cached (``ALIAS_MISS_TTL_SECONDS``, at most ``alias_ttl_seconds``).
        :param capture: create the capture streams (``CAPTURE_STREAMS``); off → ``{}``.
        :param capture_sample_rate: share of requests captured (``CAPTURE_SAMPLE_RATE``).
        :param capture_buffer_interval: Firehose buffering interval (default 60 s).
        :param capture_buffer_size_mib: Firehose buffering size (default 5 MiB).
        :param log_retention: retention of the function's and the API's log groups.
        :param log_removal_policy: what happens to those log groups when removed.
        :param cloudwatch_role: create the regional API Gateway account CloudWatch Logs role
            (API access/execution logs need it once per account and region).
        :param code: override the function code (default: the ``functions/`` package).
        :param reserved_concurrency: reserved concurrency of the inference function (default
            ``None``: none; cdk.json ``concurrency.inference`` sets it, docs/configuration.md).
        Calls need ``execute-api:Invoke`` (``iam``): a grant for predict callers must name these
        routes (``…/GET/models``, ``…/POST/models/*/predict`` …), never ``…/*/*`` or ``…/POST/*``, which
        would also cover the approve/reject methods of ``infra/approval.py`` (docs/api.md).
        :param capture_error_logging: Firehose error logging of the capture streams
            (``CloudWatchLoggingOptions``) into ``capture_log_group``, a log group of their own with
            one ``AWS::Logs::LogStream`` per model (``S3Delivery-<model>``); the delivery role gets
            ``logs:PutLogEvents`` on those streams only (default ``True``).
        """
        super().__init__(scope, id)
        if auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}, got {auth!r}")
        if timeout.to_seconds() > 29:
            raise ValueError("timeout must be at most 29 seconds (API Gateway integration limit)")
        if not 0 <= capture_sample_rate <= 1:
            raise ValueError("capture_sample_rate must be within 0..1")
        self.auth = auth
        self.models = list(models)
        stack = Stack.of(self)

        # ------------------------------------------------------------ capture streams
        self.capture_streams: dict[str, firehose.CfnDeliveryStream] = {}
        self.capture_role: iam.Role | None = None
        self.capture_log_group: logs.LogGroup | None = None
        if capture and self.models:
            self.capture_role = iam.Role(
                self,
                "CaptureDeliveryRole",
                description="Firehose delivery of captured inference records to capture/ of the artifacts bucket",
                assumed_by=iam.ServicePrincipal(
                    "firehose.amazonaws.com",
                    conditions={"StringEquals": {"sts:ExternalId": stack.account}},
                ),
            )
            registry.grant_capture_delivery(self.capture_role)
            # Error logging: without it a failed delivery (S3 access, a bucket policy change) is
            # invisible but for the alarm (StackAlarms.watch_capture), and the drift check then
            # skips for lack of rows. One log group of its own (the stack's retention), one stream
            # per model, which must exist before Firehose writes to it (Firehose does not create
            # it); the role may only PutLogEvents to those streams.
            self.capture_log_streams: dict[str, logs.LogStream] = {}
            if capture_error_logging:
                self.capture_log_group = logs.LogGroup(
                    self, "CaptureDeliveryLogs", retention=log_retention, removal_policy=log_removal_policy)
                for model in self.models:
                    self.capture_log_streams[model] = logs.LogStream(
                        self, f"CaptureDeliveryLogStream-{model}", log_group=self.capture_log_group,
                        log_stream_name=capture_log_stream_name(model), removal_policy=log_removal_policy)
                iam.Grant.add_to_principal(
                    grantee=self.capture_role,
                    actions=["logs:PutLogEvents"],
                    resource_arns=[stack.format_arn(
                        service="logs", resource="log-group", arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        resource_name=f"{self.capture_log_group.log_group_name}:log-stream:"
                                      f"{capture_log_stream_name(m)}")
                        for m in self.models],
                )
            for model in self.models:
                stream = firehose.CfnDeliveryStream(
                    self,
                    f"Capture-{model}",
                    delivery_stream_type="DirectPut",
                    delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                        key_type="AWS_OWNED_CMK"
                    ),
                    extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                        bucket_arn=registry.artifact_bucket.bucket_arn,
                        role_arn=self.capture_role.role_arn,
                        # No expressions: Firehose appends YYYY/MM/DD/HH/ (UTC) to both prefixes.
                        prefix=f"{CAPTURE_PREFIX}{model}/",
                        error_output_prefix=f"{CAPTURE_ERROR_PREFIX}{model}/",
                        buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                            interval_in_seconds=int(capture_buffer_interval.to_seconds()),
                            size_in_m_bs=capture_buffer_size_mib,
                        ),
                        # Plain JSON lines: the drift check (and the local cloud) read them as is;
                        # the bucket encrypts them at rest (SSE-S3).
                        compression_format="UNCOMPRESSED",
                        cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                            enabled=True,
                            log_group_name=self.capture_log_group.log_group_name,
                            log_stream_name=capture_log_stream_name(model),
                        ) if self.capture_log_group is not None else None,
                    ),
                )
                if model in self.capture_log_streams:
                    stream.node.add_dependency(self.capture_log_streams[model])
                # Firehose checks its role's access when the stream is created: wait for the policy.
                stream.node.add_dependency(self.capture_role.node.find_child("DefaultPolicy"))
                self.capture_streams[model] = stream

        # ------------------------------------------------------------ function
        made = shipyard_function(
            self,
            "Function",
            description="Shipyard inference: serves model versions from the registry over ONNX",
            handler=HANDLER,
            architecture=architecture,
            layers=layers,
            code=code,
            memory_size=memory_size,
            timeout=timeout,
            log_retention=log_retention,
            log_removal_policy=log_removal_policy,
            environment={
                **registry.environment(self.models),
                "ALIAS_TTL_SECONDS": str(alias_ttl_seconds),
                "ALIAS_MISS_TTL_SECONDS": str(alias_miss_ttl_seconds),
                "MAX_INSTANCES": str(max_instances),
                "CAPTURE_STREAMS": stack.to_json_string(self.capture_stream_names) if self.capture_streams else "{}",
                "CAPTURE_SAMPLE_RATE": str(capture_sample_rate),
                "POWERTOOLS_SERVICE_NAME": INFERENCE_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        if reserved_concurrency is not None:
            # Kept for serving: a burst of training runs cannot take the account's concurrency.
            self.function.node.default_child.reserved_concurrent_executions = int(reserved_concurrency)
        registry.grant_read_registry(self.function)
        registry.grant_read_models(self.function)
        if self.capture_streams:
            iam.Grant.add_to_principal(
                grantee=self.function,
                actions=["firehose:PutRecord"],  # functions/core/capture.py sends one record per request
                resource_arns=[stream.attr_arn for stream in self.capture_streams.values()],
            )

        # ------------------------------------------------------------ REST API
        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=log_removal_policy
        )
        if auth == "iam":
            method_options = apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM)
        elif auth == "api_key":
            method_options = apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.NONE, api_key_required=True
            )
        else:
            method_options = apigw.MethodOptions(authorization_type=apigw.AuthorizationType.NONE)

        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{stack.stack_name}-inference",
            description="Shipyard model inference API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=cloudwatch_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            api_key_source_type=apigw.ApiKeySourceType.HEADER if auth == "api_key" else None,
            default_method_options=method_options,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # never log request bodies (features may be personal data)
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FORMAT)),
            ),
        )

        # The stack declares the contract's outputs (ApiUrl); drop RestApi's own Endpoint output.
        self.api.node.try_remove_child("Endpoint")

        # Errors are JSON {"message": …} (docs/api.md), including API Gateway's own.
        error_template = {"application/json": '{"message": $context.error.messageString}'}
        for name, response_type in (
            ("Default4XX", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5XX", apigw.ResponseType.DEFAULT_5_XX),
        ):
            self.api.add_gateway_response(name, type=response_type, templates=error_template)
        self.api.add_gateway_response(
            "BadRequestBody",
            type=apigw.ResponseType.BAD_REQUEST_BODY,
            templates={
                "application/json": '{"message": $context.error.messageString, "expected": '
                '"a JSON object {\\"instances\\": [...]} with at least one instance"}'
            },
        )

        self.predict_validator = self.api.add_request_validator(
            "PredictValidator", validate_request_body=True, validate_request_parameters=True
        )
        self.predict_model = self.api.add_model(
            "PredictRequest",
            content_type="application/json",
            description='Predict request body: {"instances": [...]} with at least one instance',
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                title="PredictRequest",
                type=apigw.JsonSchemaType.OBJECT,
                required=["instances"],
                properties={
                    "instances": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1),
                },
            ),
        )

        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False)
        models_resource = self.api.root.add_resource("models")
        models_resource.add_method("GET", integration)
        model_resource = models_resource.add_resource("{name}")
        model_resource.add_method("GET", integration)
        predict = model_resource.add_resource("predict")
        predict.add_method(
            "POST",
            integration,
            request_validator=self.predict_validator,
            request_models={"application/json": self.predict_model},
            request_parameters={"method.request.querystring.version": False},
        )
        version = model_resource.add_resource("versions").add_resource("{version}")
        version.add_method("GET", integration)
        # /models/{name}/versions/{version}: ReleaseApproval (infra/approval.py) adds approve/reject here
        self.version_resource = version

        self.api_key: apigw.IApiKey | None = None
        self.usage_plan: apigw.UsagePlan | None = None
        if auth == "api_key":
            self.usage_plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Shipyard inference API clients",
                throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            self.api_key = self.api.add_api_key("ApiKey", description="Shipyard inference API key")
            self.usage_plan.add_api_key(self.api_key)

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """Invoke URL of the ``prod`` stage, ending in ``/``."""
        return self.api.url

    @property
    def capture_stream_names(self) -> dict[str, str]:
        """Model -> its capture stream's name (``CAPTURE_STREAMS`` of the function)."""
        return {model: stream.ref for model, stream in self.capture_streams.items()}

    # ------------------------------------------------------------------ metrics

    def metric_latency_p99(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """API Gateway end-to-end latency, p99 (ms)."""
        return self.api.metric_latency(statistic="p99", period=period)

    def metric_server_errors(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """API Gateway 5XX responses (sum)."""
        return self.api.metric_server_error(statistic="Sum", period=period)

    def metric_client_errors(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """API Gateway 4XX responses (sum)."""
        return self.api.metric_client_error(statistic="Sum", period=period)

    def metric_requests(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """API Gateway requests (sum)."""
        return self.api.metric_count(statistic="Sum", period=period)

    def metric_artifact_integrity_failures(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Model artifacts refused by the inference function because their bytes did not have the
        sha256 the registry recorded (sum; each one answered 503)."""
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=METRIC_ARTIFACT_INTEGRITY_FAILURES,
                                 dimensions_map={"service": INFERENCE_SERVICE_NAME}, statistic="Sum", period=period)

    def metric_capture_delivery_success(self, model: str,
                                        period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """``AWS/Firehose DeliveryToS3.Success`` of *model*'s capture stream, Average: successful S3
        puts over all S3 puts (1 when every delivery in the period succeeded; no data without traffic)."""
        return cloudwatch.Metric(namespace="AWS/Firehose", metric_name="DeliveryToS3.Success",
                                 dimensions_map={"DeliveryStreamName": self.capture_streams[model].ref},
                                 statistic="Average", period=period)

    def metric_function_errors(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Inference function invocation errors (sum)."""
        return self.function.metric_errors(statistic="Sum", period=period)

    def metric_function_throttles(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Inference function throttles (sum)."""
        return self.function.metric_throttles(statistic="Sum", period=period)

    def metric_function_duration_p99(self, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Inference function duration, p99 (ms)."""
        return self.function.metric_duration(statistic="p99", period=period)

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        """Widgets for the API and the inference function (one dashboard row)."""
        return [
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[self.metric_requests()],
                right=[self.metric_client_errors(), self.metric_server_errors()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="API latency p99 (ms)",
                left=[self.metric_latency_p99(), self.metric_function_duration_p99()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Inference function errors and throttles",
                left=[self.metric_function_errors(), self.metric_function_throttles()],
                width=8,
            ),
        ]
