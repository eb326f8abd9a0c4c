"""A small hand-written template (bucket, functions, rule, state machine, REST API, schedules, alarm)
brought up once per session, to test each seam of the local cloud through its real entry points."""
import json
import textwrap
from pathlib import Path

import pytest

HANDLERS = textwrap.dedent('''
    import json, os, time
    import boto3

    CALLS = {"n": 0}

    class TransientError(Exception):
        pass

    def _table():
        return boto3.resource("dynamodb").Table(os.environ["TABLE"])

    def record(event, context):
        CALLS["n"] += 1
        _table().put_item(Item={"pk": event.get("pk", "record"), "sk": str(time.time()),
                                "event": json.dumps(event), "calls": CALLS["n"]})
        return {"recorded": event, "calls": CALLS["n"], "function": context.function_name}

    def flaky(event, context):
        CALLS["n"] += 1
        if event.get("mode") == "bad":
            raise ValueError("bad input: mode=bad")
        if event.get("mode") == "exit":  # the runtime process dies mid-invocation
            os._exit(3)
        if event.get("mode") == "hog":  # more than the function's 128 MB
            return {"size": len(b"x" * (300 * 2**20))}
        if event.get("mode") == "big":  # a result over Step Functions' 256 KiB
            return {"big": "x" * 300_000}
        if CALLS["n"] % 2 == 1:
            raise TransientError("try again")
        return {"ok": True, "calls": CALLS["n"], "input": event}

    def api(event, context):
        if event["path"].endswith("/boom"):
            raise RuntimeError("kaput")
        return {"statusCode": 200, "headers": {"X-Echo": "yes"},
                "body": json.dumps({k: event[k] for k in ("resource", "path", "httpMethod", "pathParameters",
                                                          "queryStringParameters", "multiValueQueryStringParameters",
                                                          "body", "isBase64Encoded")}
                                   | {"stage": event["requestContext"]["stage"],
                                      "accessKey": event["requestContext"]["identity"]["accessKey"],
                                      "apiKey": event["requestContext"]["identity"]["apiKey"]})}

    def slow(event, context):
        time.sleep(10)

    def emf(event, context):
        print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": "Test", "Dimensions": [["model"]], "Metrics": [{"Name": "Drift", "Unit": "Count"}]}]},
            "model": "iris", "Drift": event.get("drift", 1)}))
        return {"env": os.environ.get("TABLE"), "other": os.environ.get("ONLY_IN_EMF")}
''')


def _fn(handler, timeout=10, env=None):
    variables = {"TABLE": {"Ref": "Table"}}
    variables.update(env or {})
    return {"Type": "AWS::Lambda::Function", "Properties": {
        "Code": {"S3Bucket": {"Fn::Sub": "cdk-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "app.zip"},
        "Handler": f"app.handlers.{handler}", "Runtime": "python3.12", "Timeout": timeout,
        "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Environment": {"Variables": variables}},
        "DependsOn": ["RolePolicy"]}


def _method(resource, verb, function="Api", auth="NONE", api_key=False):
    return {"Type": "AWS::ApiGateway::Method", "Properties": {
        "RestApiId": {"Ref": "RestApi"}, "ResourceId": resource, "HttpMethod": verb, "AuthorizationType": auth,
        "ApiKeyRequired": api_key,
        "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": {"Fn::Sub":
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${" + function
            + ".Arn}/invocations"}}}}


DEFINITION = json.dumps({
    "StartAt": "Flaky",
    "States": {
        "Flaky": {"Type": "Task", "Resource": "${FlakyArn}",
                  "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 3,
                             "BackoffRate": 1}],
                  "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.error", "Next": "Caught"}],
                  "Next": "Done"},
        "Caught": {"Type": "Pass", "Result": "caught", "ResultPath": "$.outcome", "End": True},
        "Done": {"Type": "Pass", "End": True},
    },
})

TEMPLATE = {
    "Conditions": {"IsUsEast1": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}},
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                               "IgnorePublicAcls": True, "RestrictPublicBuckets": True}}},
        "BucketNotifications": {"Type": "Custom::S3BucketNotifications", "Properties": {
            "ServiceToken": {"Fn::GetAtt": ["NotificationsHandler", "Arn"]}, "BucketName": {"Ref": "Bucket"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {}}, "Managed": True}},
        "NotificationsHandler": {"Type": "AWS::Lambda::Function", "Properties": {
            "Code": {"ZipFile": "def handler(event, context):\n    raise Exception('not run locally')\n"},
            "Handler": "index.handler", "Runtime": "python3.12", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": [
                    "lambda.amazonaws.com", "states.amazonaws.com", "events.amazonaws.com",
                    "scheduler.amazonaws.com"]}}]},
            "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                                     ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}]}},
        "RolePolicy": {"Type": "AWS::IAM::Policy", "Properties": {
            "PolicyName": "RolePolicy", "Roles": [{"Ref": "Role"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}},
                # what the rule and schedule targets need (the role is theirs too)
                {"Effect": "Allow", "Action": ["states:StartExecution", "lambda:InvokeFunction"],
                 "Resource": "*"}]}}},
        # as in AWS, EventBridge and API Gateway invoke a function only if its policy lets them
        "RecordFromEvents": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": "Record"}, "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com"}},
        "ApiFromApiGateway": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": "Api"}, "Action": "lambda:InvokeFunction",
            "Principal": "apigateway.amazonaws.com"}},
        "Record": _fn("record"),
        "Flaky": _fn("flaky"),
        "Api": _fn("api"),
        "Slow": _fn("slow", timeout=1),
        "Emf": _fn("emf", env={"ONLY_IN_EMF": {"Fn::If": ["IsUsEast1", "east", "elsewhere"]}}),
        "Pipeline": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
            "DefinitionString": {"Fn::Sub": [DEFINITION, {"FlakyArn": {"Fn::GetAtt": ["Flaky", "Arn"]}}]}}},
        "UploadRule": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                             "detail": {"bucket": {"name": [{"Ref": "Bucket"}]},
                                        "object": {"key": [{"prefix": "incoming/"}]}}},
            "State": "ENABLED",
            "Targets": [
                {"Id": "Record", "Arn": {"Fn::GetAtt": ["Record", "Arn"]},
                 "InputTransformer": {"InputPathsMap": {"key": "$.detail.object.key", "bucket": "$.detail.bucket.name"},
                                      "InputTemplate": "{\"pk\": \"upload\", \"key\": <key>, \"where\": \"s3://<bucket>/<key>\"}"}},
                {"Id": "Pipeline", "Arn": {"Ref": "Pipeline"}, "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                 "InputPath": "$.detail.object"}]}},
        "CustomRule": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["shipyard"], "detail-type": ["Drift Detected"],
                             "detail": {"share": [{"numeric": [">", 0.5]}], "model": [{"anything-but": "ignored"}]}},
            "Targets": [{"Id": "Record", "Arn": {"Fn::GetAtt": ["Record", "Arn"]},
                         "Input": "{\"pk\": \"drift\"}"}]}},
        "HourlyRule": {"Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "rate(1 hour)",
            "Targets": [{"Id": "Record", "Arn": {"Fn::GetAtt": ["Record", "Arn"]},
                         "Input": "{\"pk\": \"hourly\"}"}]}},
        "Every5": {"Type": "AWS::Scheduler::Schedule", "Properties": {
            "ScheduleExpression": "rate(5 minutes)", "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": {"Fn::GetAtt": ["Record", "Arn"]}, "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                       "Input": "{\"pk\": \"every5\"}"}}},
        "RestApi": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "test-api"}},
        "Items": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "items"}},
        "Item": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Ref": "Items"}, "PathPart": "{id}"}},
        "Boom": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "boom"}},
        "ItemsGet": _method({"Ref": "Items"}, "GET", auth="AWS_IAM"),
        "ItemsPost": _method({"Ref": "Items"}, "POST", api_key=True),
        "ItemGet": _method({"Ref": "Item"}, "GET"),
        "BoomGet": _method({"Ref": "Boom"}, "GET"),
        "Deployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "RestApi"}},
                       "DependsOn": ["ItemsGet", "ItemsPost", "ItemGet", "BoomGet"]},
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "DeploymentId": {"Ref": "Deployment"}, "StageName": "prod"}},
        "Key": {"Type": "AWS::ApiGateway::ApiKey",
                "Properties": {"Enabled": True, "Value": "test-key-0123456789abcdef"}},
        "Plan": {"Type": "AWS::ApiGateway::UsagePlan", "Properties": {
            "ApiStages": [{"ApiId": {"Ref": "RestApi"}, "Stage": {"Ref": "Stage"}}],
            "Throttle": {"RateLimit": 10, "BurstLimit": 20}}},
        "PlanKey": {"Type": "AWS::ApiGateway::UsagePlanKey", "Properties": {
            "UsagePlanId": {"Ref": "Plan"}, "KeyId": {"Ref": "Key"}, "KeyType": "API_KEY"}},
        "Topic": {"Type": "AWS::SNS::Topic"},
        "TopicPolicy": {"Type": "AWS::SNS::TopicPolicy", "Properties": {
            "Topics": [{"Ref": "Topic"}], "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                 "Resource": {"Ref": "Topic"}}]}}},
        "Email": {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "ops@example.com"}},
        "DriftAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "Test", "MetricName": "Drift", "Dimensions": [{"Name": "model", "Value": "iris"}],
            "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 3,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "Topic"}]}},
        "Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {"DashboardBody": "{\"widgets\": []}"}},
        "Unknown": {"Type": "AWS::Foo::Bar", "Properties": {}},
        "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v2:deflate64:xyz"}},
    },
    "Outputs": {
        "ApiUrl": {"Value": {"Fn::Join": ["", ["https://", {"Ref": "RestApi"}, ".execute-api.", {"Ref": "AWS::Region"},
                                               ".", {"Ref": "AWS::URLSuffix"}, "/", {"Ref": "Stage"}, "/"]]}},
        "BucketName": {"Value": {"Ref": "Bucket"}},
        "TableName": {"Value": {"Ref": "Table"}},
        "PipelineArn": {"Value": {"Ref": "Pipeline"}},
        "FirstAz": {"Value": {"Fn::Select": [0, {"Fn::GetAZs": ""}]}},
    },
}


@pytest.fixture(scope="session")
def asset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("asset")
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "handlers.py").write_text(HANDLERS)
    return root


@pytest.fixture(scope="module")
def cloud(asset_dir):
    from localcloud import LocalCloud, Template

    template = Template.from_dict(json.loads(json.dumps(TEMPLATE)), stack_name="LocalTest",
                                  assets={"app.zip": asset_dir})
    lines = []
    c = LocalCloud(template, aws_port=0, api_port=0, clock=False, log=lines.append)
    c.log_lines = lines
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def shipyard_assembly(synth) -> Path:
    """The real app (cdk.json config): the session's one synthesis; layers not built (not needed locally)."""
    return synth.outdir
