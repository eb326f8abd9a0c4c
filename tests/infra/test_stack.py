"""The synthesized template: contract outputs, security properties, cdk-nag and cfn-lint.

Two syntheses: the default cdk.json app (shared by every suite, tests/conftest.py) and one api_key
variant (tests/infra/conftest.py).
"""
from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from functions.core.layout import max_dataset_bytes
from infra.stack import OUTPUT_NAMES

pytestmark = pytest.mark.slow

CONTRACT_OUTPUTS = {"ApiUrl", "DataBucketName", "ArtifactBucketName", "RegistryTableName", "AuditTableName",
                    "PipelineArn", "BatchStateMachineArn",
                    "AlarmTopicArn", "DashboardName"}


# --------------------------------------------------------------------------- outputs


def test_outputs_have_the_exact_contract_names(synth):
    assert set(synth.template_dict["Outputs"]) == CONTRACT_OUTPUTS
    assert CONTRACT_OUTPUTS <= set(OUTPUT_NAMES)


def test_api_url_is_the_prod_stage(synth):
    parts = synth.template_dict["Outputs"]["ApiUrl"]["Value"]["Fn::Join"][1]
    assert parts[0] == "https://" and ".execute-api." in parts and parts[-1] == "/"
    (stage,) = [p["Ref"] for p in parts
                if isinstance(p, dict) and p.get("Ref", "").startswith("InferenceApiDeploymentStage")]
    assert synth.template_dict["Resources"][stage]["Properties"]["StageName"] == "prod"


def test_api_key_variant_adds_only_the_key_id(synth_api_key):
    assert set(synth_api_key.template_dict["Outputs"]) == CONTRACT_OUTPUTS | {"ApiKeyId"}


# --------------------------------------------------------------------------- S3


def _bucket_policies(synth) -> list[dict]:
    return [r["Properties"] for r in synth.resources("AWS::S3::BucketPolicy").values()]


def test_every_bucket_is_encrypted_versioned_private_and_logged(synth):
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # data, artifacts, access logs
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), logical_id
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, logical_id
        assert bucket.get("DeletionPolicy") == "Retain", logical_id
        if "AccessLogs" not in logical_id:
            assert "DestinationBucketName" in props["LoggingConfiguration"], logical_id


def test_every_bucket_requires_tls(synth):
    buckets = set(synth.resources("AWS::S3::Bucket"))
    tls_only = set()
    for policy in _bucket_policies(synth):
        for statement in policy["PolicyDocument"]["Statement"]:
            if (statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
                    and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}):
                tls_only.add(policy["Bucket"]["Ref"])
    assert tls_only == buckets


def test_data_bucket_sends_eventbridge_events_without_a_custom_resource(synth):
    synth.template.has_resource_properties(
        "AWS::S3::Bucket",
        {"NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}},
    )
    types = {r["Type"] for r in synth.template_dict["Resources"].values()}
    assert not any(t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource" for t in types), types


# --------------------------------------------------------------------------- registry table


def test_registry_table_keys_billing_pitr_encryption(synth):
    synth.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by-dataset",
                    "KeySchema": [
                        {"AttributeName": "dataset_ref", "KeyType": "HASH"},
                        {"AttributeName": "version_ref", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    )
    synth.template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


# --------------------------------------------------------------------------- function


def _function(synth) -> dict:
    (function,) = [f for f in synth.resources("AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "functions.inference.handler.handler"]
    return function["Properties"]


def test_inference_function_runtime_tracing_logs(synth):
    props = _function(synth)
    assert props["Handler"] == "functions.inference.handler.handler"
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 1024 and props["Timeout"] <= 29
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "Ref" in props["LoggingConfig"]["LogGroup"]
    for group in synth.resources("AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] > 0


def test_inference_function_environment(synth):
    env = _function(synth)["Environment"]["Variables"]
    assert set(env) == {
        "REGISTRY_TABLE", "AUDIT_TABLE", "ARTIFACT_BUCKET", "SHIPYARD_MODELS", "ALIAS_TTL_SECONDS",
        "ALIAS_MISS_TTL_SECONDS",
        "MAX_INSTANCES", "CAPTURE_STREAMS", "CAPTURE_SAMPLE_RATE", "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    table = next(iter(synth.resources("AWS::DynamoDB::Table")))
    assert env["REGISTRY_TABLE"] == {"Ref": table}
    assert env["ARTIFACT_BUCKET"]["Ref"].startswith("RegistryArtifacts")
    assert json.loads(env["SHIPYARD_MODELS"]) == ["iris"]
    assert (env["ALIAS_TTL_SECONDS"], env["MAX_INSTANCES"], env["CAPTURE_SAMPLE_RATE"]) == ("60", "1000", "1.0")
    assert env["ALIAS_MISS_TTL_SECONDS"] == "2"
    assert env["POWERTOOLS_SERVICE_NAME"] == "shipyard-inference"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Shipyard"
    (stream,) = synth.resources("AWS::KinesisFirehose::DeliveryStream")
    joined = env["CAPTURE_STREAMS"]["Fn::Join"][1]
    assert joined == ['{"iris":"', {"Ref": stream}, '"}']


def test_x86_and_models_follow_config(synth_api_key):
    props = _function(synth_api_key)
    assert props["Architectures"] == ["x86_64"]
    assert json.loads(props["Environment"]["Variables"]["SHIPYARD_MODELS"]) == ["iris", "house-prices"]
    assert len(synth_api_key.resources("AWS::KinesisFirehose::DeliveryStream")) == 2
    synth_api_key.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ml-team@example.com"})


def test_function_asset_holds_only_the_functions_package(synth):
    key = _function(synth)["Code"]["S3Key"]
    asset = synth.outdir / f"asset.{key.removesuffix('.zip')}"
    assert asset.is_dir(), asset
    files = [p.relative_to(asset).as_posix() for p in asset.rglob("*")]
    assert files and all(f == "functions" or f.startswith("functions/") for f in files), files
    assert "functions/inference/handler.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


# --------------------------------------------------------------------------- capture


def test_capture_stream_per_model_into_capture_prefix(synth):
    (stream,) = synth.resources("AWS::KinesisFirehose::DeliveryStream").values()
    props = stream["Properties"]
    assert props["DeliveryStreamType"] == "DirectPut"
    assert props["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    dest = props["ExtendedS3DestinationConfiguration"]
    assert dest["Prefix"] == "capture/iris/"
    assert dest["ErrorOutputPrefix"] == "capture-errors/iris/"
    assert dest["BucketARN"]["Fn::GetAtt"][0].startswith("RegistryArtifacts")
    assert set(dest["BufferingHints"]) == {"IntervalInSeconds", "SizeInMBs"}


# --------------------------------------------------------------------------- IAM


def _statements(synth):
    for logical_id, resource in synth.template_dict["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            docs = [resource["Properties"]["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
        else:
            continue
        for doc in docs:
            for statement in doc["Statement"]:
                yield logical_id, statement


LOG_DELIVERY_ACTIONS = {"logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                        "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy", "logs:UpdateLogDelivery"}


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("which", ["synth", "synth_api_key"])
def test_no_wildcard_actions_or_resources(which, request):
    synth = request.getfixturevalue(which)
    for logical_id, statement in _statements(synth):
        actions = _as_list(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (logical_id, actions)
        if "*" in _as_list(statement.get("Resource")):
            # documented in infra/nag.py: X-Ray and CloudWatch Logs delivery (the state machine's
            # logging) have no resource-level permissions; nor has states:SendTaskSuccess (infra/approval.py)
            assert all(a.startswith("xray:") or a in LOG_DELIVERY_ACTIONS
                       or (a == "states:SendTaskSuccess" and "Approval" in logical_id)
                       for a in actions), (logical_id, statement)


def test_function_grants_are_least_privilege(synth):
    function_role = _function(synth)["Role"]["Fn::GetAtt"][0]
    actions = set()
    for logical_id, statement in _statements(synth):
        resource = synth.template_dict["Resources"][logical_id]
        if {"Ref": function_role} in resource["Properties"].get("Roles", []):
            actions |= set(_as_list(statement["Action"]))
    assert actions == {
        "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
        "dynamodb:GetItem", "dynamodb:Query", "s3:GetObject", "s3:GetObjectVersion", "firehose:PutRecord",
        "s3:ListBucket",  # on the bucket, no s3:prefix: a missing model.onnx is a 404, not a 403
    }
    synth.template.has_resource_properties("AWS::IAM::Policy", {
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": {"Fn::Join": ["", [Match.any_value(), "/models/*"]]},
        })])},
    })


# --------------------------------------------------------------------------- API


def _is_decision(method: dict) -> bool:
    """POST …/versions/{version}/approve or /reject (infra/approval.py): always AWS_IAM."""
    return "ApprovalFunction" in json.dumps(method["Properties"]["Integration"]["Uri"])


def test_methods_use_iam_auth_by_default(synth):
    methods = synth.resources("AWS::ApiGateway::Method")
    routes = set()
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert not props.get("ApiKeyRequired", False)
        assert props["Integration"]["Type"] == "AWS_PROXY"
        routes.add(props["HttpMethod"])
    # GET /models, GET /models/{name}, POST …/predict, GET …/versions/{version}, POST …/approve and …/reject
    assert len(methods) == 6
    paths = {r["Properties"]["PathPart"] for r in synth.resources("AWS::ApiGateway::Resource").values()}
    assert paths == {"models", "{name}", "predict", "versions", "{version}", "approve", "reject"}


def test_api_key_mode_requires_keys_and_throttles_usage_plan(synth_api_key):
    for method in synth_api_key.resources("AWS::ApiGateway::Method").values():
        if _is_decision(method):
            continue  # tests/infra/test_approval_infra.py: AWS_IAM in every mode
        assert method["Properties"]["ApiKeyRequired"] is True
        assert method["Properties"]["AuthorizationType"] == "NONE"
    synth_api_key.template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan", {"Throttle": {"RateLimit": 10, "BurstLimit": 20}})
    synth_api_key.template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    synth_api_key.template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)


def test_auth_none_only_opens_the_api_when_set_and_stays_nag_clean():
    """Built, not synthesized (keeps the infra tests at two syntheses)."""
    from aws_cdk import aws_apigateway as apigw

    from infra.nag import nag_findings
    from infra.stack import build_app

    app, stack = build_app({"api": {"auth": "none"}, "models": {"iris": {"target": "species"}}},
                           build_layers=False)
    methods = [c for c in stack.node.find_all() if isinstance(c, apigw.CfnMethod)]
    decisions = [m for m in methods if ("/approve/" in m.node.path or "/reject/" in m.node.path)]
    assert [m.authorization_type for m in methods if m not in decisions] == ["NONE"] * 4
    assert [m.authorization_type for m in decisions] == ["AWS_IAM"] * 2  # whatever api.auth is
    assert not any(m.api_key_required for m in methods)
    assert nag_findings(app) == []


def test_stage_logging_tracing_throttling(synth):
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    access_format = json.loads(props["AccessLogSetting"]["Format"])  # JSON access logs
    assert {"requestId", "status", "caller", "user"} <= set(access_format)
    (settings,) = props["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)


def test_predict_body_is_validated(synth):
    synth.template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True})
    (model,) = synth.resources("AWS::ApiGateway::Model").values()
    schema = model["Properties"]["Schema"]
    assert schema["required"] == ["instances"]
    assert schema["properties"]["instances"] == {"type": "array", "minItems": 1}
    (predict,) = [m for m in synth.resources("AWS::ApiGateway::Method").values()
                  if m["Properties"]["HttpMethod"] == "POST" and not _is_decision(m)]
    assert "RequestValidatorId" in predict["Properties"]
    assert "application/json" in predict["Properties"]["RequestModels"]


def test_gateway_errors_are_json_messages(synth):
    responses = {r["Properties"]["ResponseType"]: r["Properties"]
                 for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()}
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY"} <= set(responses)
    for props in responses.values():
        template = props["ResponseTemplates"]["application/json"]
        assert template.startswith('{"message": $context.error.messageString')


# --------------------------------------------------------------------------- alarms, dashboard


def test_alarm_topic_encrypted_and_tls_only(synth):
    (topic,) = synth.resources("AWS::SNS::Topic").values()
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    assert synth.template_dict["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    (policy,) = synth.resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    key_statements = synth.template_dict["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    (publishers,) = [s for s in key_statements if s.get("Sid") == "AllowAlarmPublishers"]
    assert publishers["Principal"] == {"Service": "cloudwatch.amazonaws.com"}  # only alarms publish
    assert publishers["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert set(publishers["Condition"]) == {"StringEquals", "ArnLike"}  # tests/infra/test_delivery_findings.py


def test_every_event_target_has_the_dead_letter_queue_and_it_alarms(synth):
    (queue_id,) = synth.resources("AWS::SQS::Queue")
    queue = synth.template_dict["Resources"][queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 14 * 86400
    targets = [t for r in synth.resources("AWS::Events::Rule").values() for t in r["Properties"]["Targets"]]
    assert len(targets) >= 3  # uploads, drift schedules, retraining
    for target in targets:
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}, target["Id"]
    (policy,) = synth.resources("AWS::SQS::QueuePolicy").values()
    deny, allow = policy["Properties"]["PolicyDocument"]["Statement"]  # one statement for every rule
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    rules = sorted(synth.resources("AWS::Events::Rule"))
    assert sorted(a["Fn::GetAtt"][0] for a in allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == rules
    (alarm,) = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("Namespace") == "AWS/SQS"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert alarm["AlarmActions"] == [{"Ref": next(iter(synth.resources("AWS::SNS::Topic")))}]


def test_dead_letters_admit_any_number_of_rules_in_one_statement():
    # SQS allows 20 statements per queue policy; CDK's own wiring adds one per rule (3 per model).
    from aws_cdk import App, Duration, Stack
    from aws_cdk import aws_events as events
    from aws_cdk import aws_events_targets as targets
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Template

    from infra.deadletters import EventDeadLetters

    stack = Stack(App(), "Many")
    dead_letters = EventDeadLetters(stack, "DeadLetters")
    sink = sqs.Queue(stack, "Sink")
    for i in range(40):
        events.Rule(stack, f"Rule{i}", schedule=events.Schedule.rate(Duration.hours(1)),
                    targets=[targets.SqsQueue(sink, dead_letter_queue=dead_letters.target_queue)])
    assert len(dead_letters.allow_rules_in(stack)) == 40
    template = Template.from_stack(stack).to_json()
    queue_id = stack.get_logical_id(dead_letters.queue.node.default_child)
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy"
                 and r["Properties"]["Queues"] == [{"Ref": queue_id}]]
    deny, allow = policy["Properties"]["PolicyDocument"]["Statement"]
    assert len(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == 40


def test_dashboard_has_api_widgets(synth):
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "Shipyard"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("Latency", "5XXError", "Errors", "Throttles"):
        assert metric in body


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize("which", ["synth", "synth_api_key"])
def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(which, request):
    synth = request.getfixturevalue(which)
    assert synth.nag == []
    failing = [p for p in synth.report.get("pluginReports", []) if p.get("conclusion") == "failure"]
    assert failing == []


def test_every_acknowledgment_has_a_specific_reason(synth):
    from aws_cdk import Validations

    reasons = {}
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                reasons.update(entry.data)
    assert reasons, "expected the acknowledgments of infra/nag.py"
    # one id per rule and resource pattern; a guard against sprawl (batch scoring adds 8: infra/nag.py;
    # model quality 2: labels/* and datasets/<model>/retrain-*, infra/quality.py)
    assert len(reasons) <= 30
    for rule, reason in reasons.items():
        assert "AwsSolutions-" in rule
        assert len(reason) > 60, (rule, reason)
    in_template = {
        rule["id"]
        for resource in synth.template_dict["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    }
    assert {rule.removeprefix("Annotation::") for rule in reasons} == in_template


def test_cfn_lint_has_no_errors(synth):
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(synth.template_dict), config=ManualArgs(regions=["us-east-1"]))
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []


# --------------------------------------------------------------------------- pipeline


def _pipeline_function(synth, handler: str) -> tuple[str, dict]:
    (found,) = [(lid, f["Properties"]) for lid, f in synth.resources("AWS::Lambda::Function").items()
                if f["Properties"]["Handler"] == handler]
    return found


def _role_actions(synth, role_logical_id: str) -> dict[str, list]:
    """action -> resources granted to one role (through its policies)."""
    out: dict[str, list] = {}
    for logical_id, statement in _statements(synth):
        resource = synth.template_dict["Resources"][logical_id]
        if {"Ref": role_logical_id} in resource["Properties"].get("Roles", []):
            for action in _as_list(statement["Action"]):
                out.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return out


def test_pipeline_state_machine_logs_traces_and_times_out(synth):
    ((lid, sm),) = ((k, v) for k, v in synth.resources("AWS::StepFunctions::StateMachine").items()
                    if k.startswith("Pipeline"))
    props = sm["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is True
    group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synth.template_dict["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
    definition = "".join(p if isinstance(p, str) else "<ref>" for p in props["DefinitionString"]["Fn::Join"][1])
    doc = json.loads(definition.replace('"<ref>"', '"arn"').replace("<ref>", "arn"))
    assert doc["TimeoutSeconds"] == 7200
    states = doc["States"]
    assert set(states) >= {"Allocate", "Duplicate?", "AlreadyHandled", "Train", "Validate", "Gate", "Promote",
                           "Reject", "MarkFailed", "Failed"}
    for name in ("Allocate", "Train", "Validate", "Promote", "Reject"):
        state = states[name]
        assert state["TimeoutSeconds"] > 0
        (retry,) = state["Retry"]
        assert set(retry["ErrorEquals"]) == {"Lambda.ServiceException", "Lambda.AWSLambdaException",
                                             "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
                                             "TransientError"}
        assert retry["BackoffRate"] > 1 and "DatasetError" not in retry["ErrorEquals"]
        # States.ALL does not catch States.DataLimitExceeded in AWS: it is named first
        assert state["Catch"] == [{"ErrorEquals": ["States.DataLimitExceeded"], "ResultPath": "$.error",
                                   "Next": "MarkFailed"},
                                  {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}]
        assert state["Parameters"]["execution_arn.$"] == "$$.Execution.Id"
    assert states["Train"]["TimeoutSeconds"] == 15 * 60 + 30


def test_pipeline_rule_per_model_carries_the_spec(synth_api_key):
    rules = [r["Properties"] for lid, r in synth_api_key.resources("AWS::Events::Rule").items()
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
             and not lid.startswith(("Uploads", "Batch"))]  # the uploads rule starts nothing; Batch: batch/
    patterns = sorted(r["EventPattern"]["detail"]["object"]["key"][0]["wildcard"] for r in rules)
    assert patterns == ["datasets/house-prices/*.csv", "datasets/iris/*.csv"]  # and *.csv.gz
    for rule in rules:
        assert rule["EventPattern"]["detail-type"] == ["Object Created"]
        (target,) = rule["Targets"]
        assert target["Arn"]["Ref"].startswith("PipelineStateMachine")
        transformer = target["InputTransformer"]
        assert transformer["InputPathsMap"]["detail-object-version-id"] == "$.detail.object.version-id"
        template = transformer["InputTemplate"]
        assert '"version_id":<detail-object-version-id>' in template and '"spec":{"target":' in template
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    (house,) = [r for r in rules if "house-prices" in r["EventPattern"]["detail"]["object"]["key"][0]["wildcard"]]
    template = house["Targets"][0]["InputTransformer"]["InputTemplate"]
    assert '"task":"regression","estimator":"sklearn.linear_model.Ridge"' in template


def test_pipeline_functions_sizes_layers_and_least_privilege(synth):
    _, train = _pipeline_function(synth, "functions.pipeline.train.handler")
    assert train["MemorySize"] == 3008 and train["Timeout"] == 900
    assert train["TracingConfig"] == {"Mode": "Active"} and train["Runtime"] == "python3.12"
    assert len(train["Layers"]) == 1 and "LayersTraining" in json.dumps(train["Layers"])
    for handler in ("allocate", "validate", "record"):
        _, props = _pipeline_function(synth, f"functions.pipeline.{handler}.handler")
        assert "LayersInference" in json.dumps(props["Layers"]), handler
        # what 3008 MB of memory takes (docs/pipeline.md, "Memory")
        assert props["Environment"]["Variables"]["MAX_DATASET_BYTES"] == str(max_dataset_bytes(3008))
        assert props["Environment"]["Variables"]["EXECUTION_TIMEOUT_SECONDS"] == "7200"  # the stale-version sweep
    roles = {h: _pipeline_function(synth, f"functions.pipeline.{h}.handler")[1]["Role"]["Fn::GetAtt"][0]
             for h in ("allocate", "train", "validate", "record")}
    actions = {h: _role_actions(synth, role) for h, role in roles.items()}
    assert "s3:PutObject" in actions["train"] and "s3:GetObjectVersion" in actions["train"]
    assert "/datasets/*" in json.dumps(actions["train"]["s3:GetObjectVersion"])
    assert "s3:PutObject" not in actions["validate"] and "s3:GetObject" in actions["validate"]
    for h in ("train", "validate"):
        assert not any(a.startswith("events:") for a in actions[h]), h
        assert not any(a.startswith("s3:") for a in actions["allocate"])
    assert "events:PutEvents" in actions["record"] and not any(a.startswith("s3:") for a in actions["record"])
    # Allocate sends `Pipeline Failed` for the stale `training` versions it marks failed
    for h in ("record", "allocate"):
        assert [a for a in actions[h] if a.startswith("events:")] == ["events:PutEvents"], h
        assert "event-bus/default" in json.dumps(actions[h]["events:PutEvents"]), h
    assert actions["allocate"]["events:PutEvents"] == actions["record"]["events:PutEvents"]


def test_pipeline_defaults_are_the_dataset_loaders():
    # Both come from functions/core/layout.py (numpy-free, so the CDK app can import it).
    import inspect

    from functions.core import dataset
    from infra import pipeline

    props = inspect.signature(pipeline.TrainingPipeline.__init__).parameters
    loader = inspect.signature(dataset.load_csv).parameters
    assert props["max_dataset_bytes"].default is None  # what the Train function's memory allows
    assert loader["max_bytes"].default == max_dataset_bytes(pipeline.train_memory({}))
    assert props["min_rows"].default == loader["min_rows"].default


def test_pipeline_output_and_dashboard(synth):
    assert synth.template_dict["Outputs"]["PipelineArn"]["Value"]["Ref"].startswith("PipelineStateMachine")
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "ExecutionsFailed" in body and "ExecutionsStarted" in body


def _definition(synth) -> dict:
    ((_, sm),) = ((k, v) for k, v in synth.resources("AWS::StepFunctions::StateMachine").items()
                    if k.startswith("Pipeline"))
    joined = sm["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "<ref>" for p in joined)
    return json.loads(text.replace('"<ref>"', '"arn"').replace("<ref>", "arn"))


def test_each_training_memory_has_its_train_function_and_the_state_machine_chooses(synth_api_key):
    """iris trains with the default 3008 MB, house-prices with compute.memory 6144: two Train
    functions, each with the dataset limit its memory allows; the state machine picks by the
    run's spec.compute.memory, and the rule of each model carries it."""
    functions = {f["Properties"]["MemorySize"]: f["Properties"]
                 for f in synth_api_key.resources("AWS::Lambda::Function").values()
                 if f["Properties"]["Handler"] == "functions.pipeline.train.handler"}
    assert sorted(functions) == [3008, 6144]
    for memory, props in functions.items():
        assert props["Environment"]["Variables"]["MAX_DATASET_BYTES"] == str(max_dataset_bytes(memory))
        assert "LayersTraining" in json.dumps(props["Layers"])
    states = _definition(synth_api_key)["States"]
    assert states["Duplicate?"]["Default"] == "TrainOn" and states["TrainOn"]["Default"] == "Train"
    (rule,) = states["TrainOn"]["Choices"]
    assert rule["Next"] == "Train3008"
    assert {"Variable": "$.spec.compute.memory", "NumericEquals": 3008} in rule["And"]
    for name in ("Train", "Train3008"):
        assert states[name]["Next"] == "Validate"
        assert states[name]["Catch"] == states["Validate"]["Catch"]
        assert states[name]["Retry"] == states["Validate"]["Retry"]
    templates = [r["Properties"]["Targets"][0]["InputTransformer"]["InputTemplate"]
                 for lid, r in synth_api_key.resources("AWS::Events::Rule").items()
                 if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
                 and not lid.startswith(("Uploads", "Batch"))]
    assert sorted('"compute":{"type":"lambda","memory":6144}' in t for t in templates) == [False, True]
    assert sorted('"compute":{"type":"lambda","memory":3008}' in t for t in templates) == [False, True]


def test_one_memory_size_keeps_one_train_state(synth):
    states = _definition(synth)["States"]
    assert "TrainOn" not in states and states["Duplicate?"]["Default"] == "Train"
