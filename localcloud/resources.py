"""Provisioners: one per CloudFormation resource type, each making the real API calls against moto.

A provisioner is `create(logical_id, props, ctx) -> (physical_id, attributes)`, where `props` are
the resource's properties with intrinsic functions already resolved, the physical id is what `Ref`
returns, and the attributes are what `Fn::GetAtt` reads. Types without a provisioner are reported
by `unsupported_types` (and listed in a warning at start-up), never silently skipped.
"""
from __future__ import annotations

import io
import json
import os
import random
import string
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apigw import RestApi, Route
from .lambda_runtime import FunctionSpec, LambdaRuntime
from .template import ACCOUNT_ID, Template, TemplateError

Provisioner = Callable[[str, dict, "DeployContext"], tuple[str, dict]]
PROVISIONERS: dict[str, Provisioner] = {}
MAX_UPLOAD = 20 * 1024 * 1024  # bigger assets are run from their directory, a stub zip is uploaded


def provisioner(*types: str) -> Callable[[Provisioner], Provisioner]:
    def register(fn: Provisioner) -> Provisioner:
        for t in types:
            PROVISIONERS[t] = fn
        return fn

    return register


def unsupported_types(template: Template) -> dict[str, list[str]]:
    """Resource type -> logical ids the local cloud does not create or emulate."""
    out: dict[str, list[str]] = {}
    for lid, res in template.resources.items():
        if res.get("Type") not in PROVISIONERS:
            out.setdefault(res.get("Type", "?"), []).append(lid)
    return out


@dataclass
class Schedule:
    name: str
    expression: str
    targets: list[dict]  # [{"Arn", "Input"?...}] (EventBridge target shape)
    kind: str  # "rule" | "scheduler"
    arn: str = ""
    enabled: bool = True
    last_fired: float | None = None
    created_at: float = field(default_factory=time.time)  # deploy time: rate() counts from it


@dataclass
class DeployContext:
    template: Template
    session: Any  # boto3.Session
    endpoint_url: str
    runtime: LambdaRuntime
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID
    log: Callable[[str], None] = print
    apis: dict[str, RestApi] = field(default_factory=dict)  # rest api id -> RestApi
    resource_paths: dict[tuple[str, str], str] = field(default_factory=dict)  # (api id, resource id) -> path
    schedules: list[Schedule] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # logical id -> generated physical name: given (a state directory's), reused; else filled as generated
    names: dict[str, str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _tmp: list[tempfile.TemporaryDirectory] = field(default_factory=list)

    @property
    def stack_name(self) -> str:
        return self.template.stack_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region,
                                                         endpoint_url=self.endpoint_url)
        return self._clients[service]

    def name(self, logical_id: str, max_len: int = 64, lower: bool = False, sep: str = "-") -> str:
        """A generated physical name in CloudFormation's style: <stack>-<logical id>-<random>; the one in
        `names` if there is one (a state directory's: the same names after a restart), and recorded there."""
        if logical_id in self.names:
            return self.names[logical_id]
        rand = "".join(random.choices(string.ascii_uppercase + string.digits, k=12))
        stack = self.stack_name[: max(1, (max_len - 14) // 2)]
        lid = logical_id[: max_len - len(stack) - len(rand) - 2]
        name = f"{stack}{sep}{lid}{sep}{rand}"
        name = name.lower() if lower else name
        self.names[logical_id] = name
        return name

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"


def _json(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _tags(props: dict) -> list[dict]:
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", []) or []]


# --------------------------------------------------------------------------- no-ops


@provisioner("AWS::CDK::Metadata")
def _metadata(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    return lid, {}


@provisioner("AWS::CloudFormation::WaitConditionHandle")
def _wait_handle(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    return f"https://cloudformation-waitcondition-{ctx.region}.s3.amazonaws.com/{lid}", {}


# --------------------------------------------------------------------------- S3


def _s3_notification(config: dict) -> dict:
    out: dict[str, Any] = {}
    if "EventBridgeConfiguration" in config:
        out["EventBridgeConfiguration"] = {}
    for cfn_key, api_key, arn_key in (("LambdaConfigurations", "LambdaFunctionConfigurations", "Function"),
                                      ("LambdaFunctionConfigurations", "LambdaFunctionConfigurations",
                                       "LambdaFunctionArn"),
                                      ("QueueConfigurations", "QueueConfigurations", "Queue"),
                                      ("TopicConfigurations", "TopicConfigurations", "Topic")):
        for c in config.get(cfn_key, []) or []:
            arn = c.get(arn_key) or c.get("LambdaFunctionArn") or c.get("QueueArn") or c.get("TopicArn")
            entry: dict[str, Any] = {"Events": c.get("Events") or [c["Event"]]}
            api_arn = {"LambdaFunctionConfigurations": "LambdaFunctionArn", "QueueConfigurations": "QueueArn",
                       "TopicConfigurations": "TopicArn"}[api_key]
            entry[api_arn] = arn
            if c.get("Filter"):
                key_filter = c["Filter"].get("Key", {})
                rules = c["Filter"].get("S3Key", key_filter).get("Rules", key_filter.get("FilterRules", []))
                entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            out.setdefault(api_key, []).append(entry)
    return out


def _eventbridge(bucket: str, enabled: bool) -> None:
    """moto drops an empty <EventBridgeConfiguration/> sent over HTTP: set it on the bucket directly."""
    if not enabled:
        return
    from moto.s3.models import NotificationConfiguration, s3_backends

    b = s3_backends[ACCOUNT_ID]["aws"].get_bucket(bucket)
    if b.notification_configuration is None:
        b.notification_configuration = NotificationConfiguration(event_bridge={})
    else:
        b.notification_configuration.event_bridge = {}


@provisioner("AWS::S3::Bucket")
def _bucket(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    s3 = ctx.client("s3")
    name = props.get("BucketName") or ctx.name(lid, 63, lower=True)
    if ctx.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": ctx.region})
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={
            "Status": props["VersioningConfiguration"].get("Status", "Enabled")})
    if props.get("BucketEncryption"):
        rules = []
        for r in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
            rule = {k: v for k, v in r.items() if k == "BucketKeyEnabled"}
            if r.get("ServerSideEncryptionByDefault"):
                rule["ApplyServerSideEncryptionByDefault"] = r["ServerSideEncryptionByDefault"]
            rules.append(rule)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    if props.get("OwnershipControls"):
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if props.get("NotificationConfiguration"):
        config = dict(props["NotificationConfiguration"])
        if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") is False:
            config.pop("EventBridgeConfiguration")
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=_s3_notification(config))
        _eventbridge(name, "EventBridgeConfiguration" in config)
    if props.get("LifecycleConfiguration"):
        rules = []
        for r in props["LifecycleConfiguration"].get("Rules", []):
            rule: dict[str, Any] = {"ID": r.get("Id", f"rule{len(rules)}"), "Status": r.get("Status", "Enabled"),
                                    "Filter": {"Prefix": r.get("Prefix", "")}}
            if "ExpirationInDays" in r:
                rule["Expiration"] = {"Days": r["ExpirationInDays"]}
            if "NoncurrentVersionExpiration" in r:
                rule["NoncurrentVersionExpiration"] = {
                    "NoncurrentDays": r["NoncurrentVersionExpiration"].get("NoncurrentDays", 30)}
            if "AbortIncompleteMultipartUpload" in r:
                rule["AbortIncompleteMultipartUpload"] = {
                    "DaysAfterInitiation": r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]}
            rules.append(rule)
        if rules:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        ctx.notes.append(f"{lid}: lifecycle rules are stored, not applied (objects never expire locally)")
    if _tags(props):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)})
    return name, {
        "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
        "DualStackDomainName": f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
        "WebsiteURL": f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
    }


def _is_tls_only(statement: dict) -> bool:
    condition = (statement.get("Condition") or {}).get("Bool", {})
    return statement.get("Effect") == "Deny" and "aws:SecureTransport" in condition


@provisioner("AWS::S3::BucketPolicy")
def _bucket_policy(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    # moto evaluates bucket policies without their conditions, so the TLS-only statement
    # (Deny s3:* when aws:SecureTransport is false) would deny every request; the local endpoint
    # is plain HTTP anyway, so that statement cannot be honoured here: leave it out, say so.
    document = dict(props["PolicyDocument"])
    statements = document.get("Statement") or []
    kept = [st for st in statements if not _is_tls_only(st)]
    if len(kept) != len(statements):
        ctx.notes.append(f"{lid}: TLS-only statement not applied (the local endpoint is plain HTTP)")
    if kept:
        document["Statement"] = kept
        ctx.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=_json(document))
    return lid, {}


@provisioner("Custom::S3BucketNotifications")
def _bucket_notifications(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    """CDK's notifications custom resource: applied directly (EventBridge on, Lambda/SQS/SNS targets)."""
    s3 = ctx.client("s3")
    bucket = props["BucketName"]
    config = _s3_notification(props.get("NotificationConfiguration", {}) or {})
    if props.get("Managed") in (False, "false"):  # imported bucket: merge with what is there
        existing = s3.get_bucket_notification_configuration(Bucket=bucket)
        existing.pop("ResponseMetadata", None)
        existing.update(config)
        config = existing
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    _eventbridge(bucket, "EventBridgeConfiguration" in config)
    return f"{bucket}-notifications", {}


# --------------------------------------------------------------------------- DynamoDB


@provisioner("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")
def _table(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ddb = ctx.client("dynamodb")
    name = props.get("TableName") or ctx.name(lid, 255)
    args: dict[str, Any] = {"TableName": name, "AttributeDefinitions": props["AttributeDefinitions"],
                            "KeySchema": props["KeySchema"]}
    billing = props.get("BillingMode") or ("PAY_PER_REQUEST" if "ProvisionedThroughput" not in props else "PROVISIONED")
    args["BillingMode"] = billing
    if billing == "PROVISIONED":
        args["ProvisionedThroughput"] = props.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5,
                                                                                 "WriteCapacityUnits": 5}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            idx = []
            for i in props[key]:
                i = {k: v for k, v in i.items()
                     if k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")}
                if billing == "PROVISIONED" and key == "GlobalSecondaryIndexes":
                    i.setdefault("ProvisionedThroughput", args["ProvisionedThroughput"])
                idx.append(i)
            args[key] = idx
    if props.get("StreamSpecification", {}).get("StreamViewType"):
        args["StreamSpecification"] = {"StreamEnabled": True,
                                       "StreamViewType": props["StreamSpecification"]["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse and sse.get("SSEEnabled"):
        args["SSESpecification"] = {"Enabled": True, **({"SSEType": sse["SSEType"]} if sse.get("SSEType") else {}),
                                    **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if sse.get("KMSMasterKeyId") else {})}
    if _tags(props):
        args["Tags"] = _tags(props)
    if props.get("DeletionProtectionEnabled"):
        args["DeletionProtectionEnabled"] = True
    desc = ddb.create_table(**args)["TableDescription"]
    policy = (props.get("ResourcePolicy") or {}).get("PolicyDocument")
    if policy:  # evaluated by the local cloud's IAM (authorization.py) for the functions' calls
        ddb.put_resource_policy(ResourceArn=desc["TableArn"], Policy=_json(policy))
    pitr = props.get("PointInTimeRecoverySpecification", {})
    if pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
        ctx.notes.append(f"{lid}: TTL is recorded, items do not expire locally")
    return name, {"Arn": desc["TableArn"], "StreamArn": desc.get("LatestStreamArn", "")}


# --------------------------------------------------------------------------- IAM and KMS


@provisioner("AWS::IAM::Role")
def _role(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    iam = ctx.client("iam")
    name = props.get("RoleName") or ctx.name(lid, 64)
    args: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": _json(props["AssumeRolePolicyDocument"]),
                            "Path": props.get("Path", "/")}
    if props.get("Description"):
        args["Description"] = props["Description"]
    if _tags(props):
        args["Tags"] = _tags(props)
    role = iam.create_role(**args)["Role"]
    for arn in props.get("ManagedPolicyArns", []) or []:
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        except iam.exceptions.NoSuchEntityException:
            pass  # AWS managed policies are not loaded into the local IAM (IAM is not enforced locally)
    for p in props.get("Policies", []) or []:
        iam.put_role_policy(RoleName=name, PolicyName=p["PolicyName"], PolicyDocument=_json(p["PolicyDocument"]))
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


@provisioner("AWS::IAM::Policy")
def _policy(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    iam = ctx.client("iam")
    doc = _json(props["PolicyDocument"])
    for role in props.get("Roles", []) or []:
        iam.put_role_policy(RoleName=role.split("/")[-1], PolicyName=props["PolicyName"], PolicyDocument=doc)
    for user in props.get("Users", []) or []:
        iam.put_user_policy(UserName=user, PolicyName=props["PolicyName"], PolicyDocument=doc)
    for group in props.get("Groups", []) or []:
        iam.put_group_policy(GroupName=group, PolicyName=props["PolicyName"], PolicyDocument=doc)
    return props["PolicyName"], {"Id": props["PolicyName"]}


@provisioner("AWS::IAM::ManagedPolicy")
def _managed_policy(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    iam = ctx.client("iam")
    name = props.get("ManagedPolicyName") or ctx.name(lid, 128)
    arn = iam.create_policy(PolicyName=name, Path=props.get("Path", "/"),
                            PolicyDocument=_json(props["PolicyDocument"]))["Policy"]["Arn"]
    for role in props.get("Roles", []) or []:
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    return arn, {"PolicyArn": arn}


@provisioner("AWS::KMS::Key")
def _kms_key(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    kms = ctx.client("kms")
    args: dict[str, Any] = {"Description": props.get("Description", "")}
    if props.get("KeyPolicy"):
        args["Policy"] = _json(props["KeyPolicy"])
    for k in ("KeySpec", "KeyUsage"):
        if props.get(k):
            args[k] = props[k]
    meta = kms.create_key(**args)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=meta["KeyId"])
    return meta["KeyId"], {"Arn": meta["Arn"], "KeyId": meta["KeyId"]}


@provisioner("AWS::KMS::Alias")
def _kms_alias(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ctx.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    return props["AliasName"], {}


# --------------------------------------------------------------------------- Lambda


def _zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if path.is_file():
            zf.write(path, path.name)
        else:
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for f in files:
                    full = Path(root) / f
                    zf.write(full, full.relative_to(path).as_posix())
    return buf.getvalue()


def _stub_zip(note: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("LOCAL_CLOUD.txt", note)
    return buf.getvalue()


def _asset_dir(lid: str, props: dict, ctx: DeployContext, what: str) -> Path:
    code = props.get("Code") or props.get("Content") or {}
    if "ZipFile" in code:
        tmp = tempfile.TemporaryDirectory(prefix=f"inline-{lid}-")
        ctx._tmp.append(tmp)
        runtime = props.get("Runtime", "python")
        fname = "index.js" if runtime.startswith("nodejs") else "index.py"
        Path(tmp.name, fname).write_text(code["ZipFile"])
        return Path(tmp.name)
    path = ctx.template.asset_path(lid, code)
    if path is None:
        raise TemplateError(f"{lid}: {what} code {json.dumps(code)} is not an asset of this cloud assembly "
                            f"(no entry in the *.assets.json manifest and no aws:asset:path metadata)")
    if path.suffix == ".zip" and path.is_file():  # a pre-built zip asset: run it extracted
        tmp = tempfile.TemporaryDirectory(prefix=f"asset-{lid}-")
        ctx._tmp.append(tmp)
        zipfile.ZipFile(path).extractall(tmp.name)
        return Path(tmp.name)
    return path


@provisioner("AWS::Lambda::Function")
def _function(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    lam = ctx.client("lambda")
    name = props.get("FunctionName") or ctx.name(lid, 64)
    runtime = props.get("Runtime", "")
    if props.get("PackageType") == "Image":
        raise TemplateError(f"{lid}: container image functions are not supported by the local cloud")
    asset = _asset_dir(lid, props, ctx, "function")
    data = _zip_dir(asset)
    if len(data) > MAX_UPLOAD:
        data = _stub_zip(f"asset too large to upload locally; runs from {asset}")
    env = (props.get("Environment") or {}).get("Variables", {}) or {}
    env = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in env.items()}
    args: dict[str, Any] = {
        "FunctionName": name, "Runtime": runtime or "python3.12", "Role": props["Role"],
        "Handler": props.get("Handler", "index.handler"), "Code": {"ZipFile": data},
        "Timeout": int(props.get("Timeout", 3)), "MemorySize": int(props.get("MemorySize", 128)),
        "Environment": {"Variables": env}, "Description": props.get("Description", ""),
    }
    if props.get("Architectures"):
        args["Architectures"] = props["Architectures"]
    if props.get("Layers"):
        # Layers are accepted and recorded; locally the interpreter already has the dependencies.
        args["Layers"] = props["Layers"]
    if _tags(props):
        args["Tags"] = {t["Key"]: t["Value"] for t in _tags(props)}
    try:
        fn = lam.create_function(**args)
    except lam.exceptions.InvalidParameterValueException:
        args.pop("Layers", None)
        fn = lam.create_function(**args)
    if props.get("ReservedConcurrentExecutions") is not None:
        lam.put_function_concurrency(FunctionName=name,
                                     ReservedConcurrentExecutions=int(props["ReservedConcurrentExecutions"]))
    if not runtime.startswith("python"):
        ctx.notes.append(f"{lid}: runtime {runtime or '?'} is not executed locally (Python runtimes only)")
    spec = FunctionSpec(name=name, handler=args["Handler"], asset_dir=asset, environment=env,
                        timeout=float(args["Timeout"]), memory=args["MemorySize"], arn=fn["FunctionArn"],
                        logical_id=lid, role_arn=props["Role"])
    ctx.runtime.register(spec)
    log_group = (props.get("LoggingConfig") or {}).get("LogGroup")
    if log_group:
        ctx.notes.append(f"{lid}: logs go to /aws/lambda/{name} locally, not to {log_group}")
    return name, {"Arn": fn["FunctionArn"]}


@provisioner("AWS::Lambda::LayerVersion")
def _layer(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    """Recorded only: locally every function runs on this interpreter, which has the dependencies."""
    name = props.get("LayerName") or ctx.name(lid, 64)
    resp = ctx.client("lambda").publish_layer_version(
        LayerName=name, Description=props.get("Description", ""),
        Content={"ZipFile": _stub_zip("layer contents are not needed locally")},
        CompatibleRuntimes=props.get("CompatibleRuntimes", []) or [])
    return resp["LayerVersionArn"], {"LayerVersionArn": resp["LayerVersionArn"]}


@provisioner("AWS::Lambda::Permission")
def _permission(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    args = {"FunctionName": props["FunctionName"], "StatementId": lid, "Action": props["Action"],
            "Principal": props["Principal"]}
    for k in ("SourceArn", "SourceAccount"):
        if props.get(k):
            args[k] = props[k]
    try:
        ctx.client("lambda").add_permission(**args)
    except Exception as err:  # resource policies are not enforced locally anyway
        ctx.notes.append(f"{lid}: permission not recorded ({err})")
    return lid, {}


@provisioner("AWS::Lambda::EventInvokeConfig")
def _invoke_config(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ctx.notes.append(f"{lid}: async invoke config (retries/destinations) is recorded, not applied")
    return lid, {}


# --------------------------------------------------------------------------- logs, SNS, SQS, Firehose


@provisioner("AWS::Logs::LogGroup")
def _log_group(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    logs = ctx.client("logs")
    name = props.get("LogGroupName") or ctx.name(lid, 512)
    logs.create_log_group(logGroupName=name)
    if props.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")}


@provisioner("AWS::Logs::LogStream")
def _log_stream(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("LogStreamName") or ctx.name(lid, 512)
    ctx.client("logs").create_log_stream(logGroupName=props["LogGroupName"], logStreamName=name)
    return name, {}


@provisioner("AWS::SNS::Topic")
def _topic(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    sns = ctx.client("sns")
    name = props.get("TopicName") or ctx.name(lid, 256)
    attrs = {k: str(props[k]) for k in ("DisplayName", "KmsMasterKeyId", "FifoTopic") if k in props}
    arn = sns.create_topic(Name=name, Attributes=attrs, **({"Tags": _tags(props)} if _tags(props) else {}))["TopicArn"]
    for sub in props.get("Subscription", []) or []:
        sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
    return arn, {"TopicArn": arn, "TopicName": name}


@provisioner("AWS::SNS::TopicPolicy")
def _topic_policy(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    for topic in props.get("Topics", []):
        ctx.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                               AttributeValue=_json(props["PolicyDocument"]))
    return lid, {}


@provisioner("AWS::SNS::Subscription")
def _subscription(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    attrs = {}
    for k in ("FilterPolicy", "RawMessageDelivery", "FilterPolicyScope"):
        if props.get(k) is not None:
            attrs[k] = _json(props[k]) if k == "FilterPolicy" else str(props[k]).lower()
    arn = ctx.client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                                      Endpoint=props["Endpoint"], Attributes=attrs,
                                      ReturnSubscriptionArn=True)["SubscriptionArn"]
    return arn, {"Arn": arn}


@provisioner("AWS::SQS::Queue")
def _queue(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("QueueName") or ctx.name(lid, 80)
    attrs = {k: str(v) if not isinstance(v, dict) else json.dumps(v) for k, v in props.items()
             if k in ("DelaySeconds", "MessageRetentionPeriod", "VisibilityTimeout", "FifoQueue", "RedrivePolicy",
                      "KmsMasterKeyId", "SqsManagedSseEnabled")}
    url = ctx.client("sqs").create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return url, {"Arn": ctx.arn("sqs", name), "QueueName": name, "QueueUrl": url}


@provisioner("AWS::SQS::QueuePolicy")
def _queue_policy(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    for q in props.get("Queues", []):
        ctx.client("sqs").set_queue_attributes(QueueUrl=q, Attributes={"Policy": _json(props["PolicyDocument"])})
    return lid, {}


@provisioner("AWS::KinesisFirehose::DeliveryStream")
def _firehose(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    fh = ctx.client("firehose")
    name = props.get("DeliveryStreamName") or ctx.name(lid, 64)
    args: dict[str, Any] = {"DeliveryStreamName": name,
                            "DeliveryStreamType": props.get("DeliveryStreamType", "DirectPut")}
    dest = props.get("ExtendedS3DestinationConfiguration") or props.get("S3DestinationConfiguration")
    if not dest:
        raise TemplateError(f"{lid}: only S3 destinations are emulated for Firehose delivery streams")
    dest = {k: v for k, v in dest.items() if k in (
        "RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix", "BufferingHints", "CompressionFormat",
        "EncryptionConfiguration", "CloudWatchLoggingOptions")}
    args["ExtendedS3DestinationConfiguration"] = dest
    if props.get("DeliveryStreamEncryptionConfigurationInput"):
        ctx.notes.append(f"{lid}: stream encryption is recorded only")
    fh.create_delivery_stream(**args)
    if dest.get("BufferingHints") or dest.get("CompressionFormat", "UNCOMPRESSED") != "UNCOMPRESSED":
        ctx.notes.append(f"{lid}: records land in S3 at once, one object per put, uncompressed "
                         "(buffering hints and compression are not emulated)")
    return name, {"Arn": ctx.arn("firehose", f"deliverystream/{name}")}


# --------------------------------------------------------------------------- events, schedules, state machines


@provisioner("AWS::Events::EventBus")
def _bus(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    arn = ctx.client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    return props["Name"], {"Arn": arn, "Name": props["Name"]}


def _target(t: dict) -> dict:
    out = {k: t[k] for k in ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer", "RetryPolicy",
                             "DeadLetterConfig", "SqsParameters") if k in t}
    if isinstance(out.get("Input"), (dict, list)):
        out["Input"] = json.dumps(out["Input"])
    return out


@provisioner("AWS::Events::Rule")
def _rule(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ev = ctx.client("events")
    name = props.get("Name") or ctx.name(lid, 64)
    args: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    if props.get("EventPattern"):
        args["EventPattern"] = _json(props["EventPattern"])
    if props.get("ScheduleExpression"):
        args["ScheduleExpression"] = props["ScheduleExpression"]
    if props.get("EventBusName"):
        args["EventBusName"] = props["EventBusName"].split("/")[-1]
    if props.get("Description"):
        args["Description"] = props["Description"]
    arn = ev.put_rule(**args)["RuleArn"]
    targets = [_target(t) for t in props.get("Targets", []) or []]
    if targets:
        ev.put_targets(Rule=name, Targets=targets, **({"EventBusName": args["EventBusName"]}
                                                       if "EventBusName" in args else {}))
    if props.get("ScheduleExpression"):
        ctx.schedules.append(Schedule(name=name, expression=props["ScheduleExpression"], targets=targets,
                                      kind="rule", arn=arn, enabled=args["State"] == "ENABLED"))
    return name, {"Arn": arn}


@provisioner("AWS::Scheduler::ScheduleGroup")
def _schedule_group(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("Name") or ctx.name(lid, 64)
    arn = ctx.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    return name, {"Arn": arn}


@provisioner("AWS::Scheduler::Schedule")
def _schedule(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("Name") or ctx.name(lid, 64)
    target = dict(props["Target"])
    args: dict[str, Any] = {"Name": name, "ScheduleExpression": props["ScheduleExpression"],
                            "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
                            "Target": {k: v for k, v in target.items()
                                       if k in ("Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig")},
                            "State": props.get("State", "ENABLED")}
    if props.get("GroupName"):
        args["GroupName"] = props["GroupName"]
    if props.get("ScheduleExpressionTimezone"):
        args["ScheduleExpressionTimezone"] = props["ScheduleExpressionTimezone"]
    arn = ctx.client("scheduler").create_schedule(**args)["ScheduleArn"]
    if ":aws-sdk:" in target["Arn"] or target["Arn"].startswith("arn:aws:scheduler:::"):
        ctx.notes.append(f"{lid}: universal target {target['Arn']} is not emulated")
    ctx.schedules.append(Schedule(name=name, expression=props["ScheduleExpression"],
                                  targets=[{"Id": "scheduler", "Arn": target["Arn"], "RoleArn": target.get("RoleArn"),
                                            "Input": target.get("Input") or "{}",
                                            **({"DeadLetterConfig": target["DeadLetterConfig"]}
                                               if target.get("DeadLetterConfig") else {})}],
                                  kind="scheduler", arn=arn, enabled=args["State"] == "ENABLED"))
    return name, {"Arn": arn}


@provisioner("AWS::StepFunctions::StateMachine")
def _state_machine(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    sfn = ctx.client("stepfunctions")
    name = props.get("StateMachineName") or ctx.name(lid, 80)
    if props.get("DefinitionString") is not None:
        definition = props["DefinitionString"]
    elif props.get("Definition") is not None:
        definition = json.dumps(props["Definition"])
    else:
        raise TemplateError(f"{lid}: DefinitionS3Location is not supported locally")
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    args: dict[str, Any] = {"name": name, "definition": definition, "roleArn": props["RoleArn"],
                            "type": props.get("StateMachineType", "STANDARD")}
    if _tags(props):
        args["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags(props)]
    arn = sfn.create_state_machine(**args)["stateMachineArn"]
    return arn, {"Arn": arn, "Name": name}


# --------------------------------------------------------------------------- CloudWatch


@provisioner("AWS::CloudWatch::Alarm")
def _alarm(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("AlarmName") or ctx.name(lid, 255)
    args: dict[str, Any] = {"AlarmName": name}
    for k in ("AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "InsufficientDataActions",
              "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
              "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
              "EvaluateLowSampleCountPercentile", "Metrics", "ThresholdMetricId"):
        if props.get(k) is not None:
            args[k] = props[k]
    for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if k in args:
            args[k] = int(args[k])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    if "ActionsEnabled" in args:
        args["ActionsEnabled"] = args["ActionsEnabled"] in (True, "true")
    ctx.client("cloudwatch").put_metric_alarm(**args)
    return name, {"Arn": ctx.arn("cloudwatch", f"alarm:{name}")}


@provisioner("AWS::CloudWatch::Dashboard")
def _dashboard(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("DashboardName") or ctx.name(lid, 255)
    ctx.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=_json(props["DashboardBody"]))
    return name, {}


# --------------------------------------------------------------------------- API Gateway (REST)


@provisioner("AWS::ApiGateway::RestApi")
def _rest_api(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    apigw = ctx.client("apigateway")
    args: dict[str, Any] = {"name": props.get("Name") or lid}
    if props.get("Description"):
        args["description"] = props["Description"]
    if props.get("BinaryMediaTypes"):
        args["binaryMediaTypes"] = props["BinaryMediaTypes"]
    if props.get("EndpointConfiguration", {}).get("Types"):
        args["endpointConfiguration"] = {"types": props["EndpointConfiguration"]["Types"]}
    if props.get("Policy"):
        args["policy"] = _json(props["Policy"])
    if props.get("ApiKeySourceType"):
        args["apiKeySource"] = props["ApiKeySourceType"]
    if props.get("Body") or props.get("BodyS3Location"):
        raise TemplateError(f"{lid}: OpenAPI-defined REST APIs (Body) are not supported locally")
    api = apigw.create_rest_api(**args)
    root = next(r["id"] for r in apigw.get_resources(restApiId=api["id"])["items"] if r["path"] == "/")
    ctx.apis[api["id"]] = RestApi(api_id=api["id"], name=args["name"],
                                  binary_media_types=list(props.get("BinaryMediaTypes", []) or []))
    ctx.resource_paths[(api["id"], root)] = "/"
    return api["id"], {"RootResourceId": root, "RestApiId": api["id"]}


@provisioner("AWS::ApiGateway::Resource")
def _api_resource(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    api_id, parent = props["RestApiId"], props["ParentId"]
    res = ctx.client("apigateway").create_resource(restApiId=api_id, parentId=parent, pathPart=props["PathPart"])
    parent_path = ctx.resource_paths.get((api_id, parent), "/")
    ctx.resource_paths[(api_id, res["id"])] = parent_path.rstrip("/") + "/" + props["PathPart"]
    return res["id"], {"ResourceId": res["id"]}


def _function_arn_from_uri(uri: str) -> str:
    # arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function arn>/invocations
    if "/functions/" in uri:
        return uri.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]
    return ""


@provisioner("AWS::ApiGateway::Method")
def _method(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    apigw = ctx.client("apigateway")
    api_id, resource_id, verb = props["RestApiId"], props["ResourceId"], props["HttpMethod"].upper()
    auth = props.get("AuthorizationType", "NONE")
    args: dict[str, Any] = {"restApiId": api_id, "resourceId": resource_id, "httpMethod": verb,
                            "authorizationType": auth, "apiKeyRequired": bool(props.get("ApiKeyRequired"))}
    if props.get("RequestParameters"):
        args["requestParameters"] = {k: bool(v) for k, v in props["RequestParameters"].items()}
    if props.get("RequestValidatorId"):
        args["requestValidatorId"] = props["RequestValidatorId"]
    if props.get("RequestModels"):
        args["requestModels"] = props["RequestModels"]
    if props.get("AuthorizerId"):
        args["authorizerId"] = props["AuthorizerId"]
    apigw.put_method(**args)
    integ = props.get("Integration") or {}
    route = Route(api_id=api_id, path=ctx.resource_paths.get((api_id, resource_id), "?"), method=verb,
                  resource_id=resource_id, authorization=auth, api_key_required=args["apiKeyRequired"],
                  integration=integ.get("Type", "MOCK"))
    if integ:
        iargs: dict[str, Any] = {"restApiId": api_id, "resourceId": resource_id, "httpMethod": verb,
                                 "type": integ["Type"]}
        if integ.get("IntegrationHttpMethod"):
            iargs["integrationHttpMethod"] = integ["IntegrationHttpMethod"]
        if integ.get("Uri"):
            iargs["uri"] = integ["Uri"]
        if integ.get("RequestTemplates"):
            iargs["requestTemplates"] = integ["RequestTemplates"]
        apigw.put_integration(**iargs)
        if integ["Type"] == "AWS_PROXY":
            route.function_arn = _function_arn_from_uri(integ.get("Uri", ""))
            if not route.function_arn:
                raise TemplateError(f"{lid}: AWS_PROXY integration URI {integ.get('Uri')!r} is not a Lambda function")
        elif integ["Type"] == "MOCK":
            responses = integ.get("IntegrationResponses") or [{}]
            first = responses[0]
            route.mock_status = int(first.get("StatusCode", 200))
            route.mock_headers = {k.rsplit(".", 1)[-1]: str(v).strip("'")
                                  for k, v in (first.get("ResponseParameters") or {}).items()}
        else:
            ctx.notes.append(f"{lid}: {verb} {route.path} has a {integ['Type']} integration, not emulated locally")
    ctx.apis[api_id].routes.append(route)
    return f"{api_id}-{resource_id}-{verb}", {}


@provisioner("AWS::ApiGateway::Deployment")
def _deployment(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    args: dict[str, Any] = {"restApiId": props["RestApiId"]}
    if props.get("Description"):
        args["description"] = props["Description"]
    if props.get("StageName"):
        args["stageName"] = props["StageName"]
        ctx.apis[props["RestApiId"]].stages.append(props["StageName"])
    dep = ctx.client("apigateway").create_deployment(**args)
    return dep["id"], {"DeploymentId": dep["id"]}


@provisioner("AWS::ApiGateway::Stage")
def _stage(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    args: dict[str, Any] = {"restApiId": props["RestApiId"], "stageName": props["StageName"],
                            "deploymentId": props["DeploymentId"]}
    if props.get("Variables"):
        args["variables"] = props["Variables"]
    if props.get("TracingEnabled") is not None:
        args["tracingEnabled"] = bool(props["TracingEnabled"])
    ctx.client("apigateway").create_stage(**args)
    if props.get("MethodSettings"):
        ctx.notes.append(f"{lid}: stage method settings (throttling, logging) are recorded, not enforced")
    ctx.apis[props["RestApiId"]].stages.append(props["StageName"])
    return props["StageName"], {}


@provisioner("AWS::ApiGateway::Account")
def _api_account(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    return lid, {}  # the account's CloudWatch role: nothing to do locally


@provisioner("AWS::ApiGateway::ApiKey")
def _api_key(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    args: dict[str, Any] = {"name": props.get("Name") or ctx.name(lid, 128),
                            "enabled": props.get("Enabled", True) in (True, "true")}
    if props.get("Value"):
        args["value"] = props["Value"]
    if props.get("Description"):
        args["description"] = props["Description"]
    key = ctx.client("apigateway").create_api_key(**args)
    return key["id"], {"APIKeyId": key["id"]}


@provisioner("AWS::ApiGateway::UsagePlan")
def _usage_plan(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    args: dict[str, Any] = {"name": props.get("UsagePlanName") or ctx.name(lid, 128)}
    if props.get("ApiStages"):
        args["apiStages"] = [{"apiId": s["ApiId"], "stage": s["Stage"]} for s in props["ApiStages"]]
    if props.get("Throttle"):
        args["throttle"] = {"burstLimit": int(props["Throttle"].get("BurstLimit", 0)),
                            "rateLimit": float(props["Throttle"].get("RateLimit", 0))}
    if props.get("Quota"):
        args["quota"] = {"limit": int(props["Quota"]["Limit"]), "period": props["Quota"]["Period"]}
    plan = ctx.client("apigateway").create_usage_plan(**args)
    ctx.notes.append(f"{lid}: usage plan throttling and quotas are not enforced locally")
    return plan["id"], {"Id": plan["id"]}


@provisioner("AWS::ApiGateway::UsagePlanKey")
def _usage_plan_key(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ctx.client("apigateway").create_usage_plan_key(usagePlanId=props["UsagePlanId"], keyId=props["KeyId"],
                                                   keyType=props.get("KeyType", "API_KEY"))
    return f"{props['UsagePlanId']}-{props['KeyId']}", {}


@provisioner("AWS::ApiGateway::RequestValidator")
def _validator(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    v = ctx.client("apigateway").create_request_validator(
        restApiId=props["RestApiId"], name=props.get("Name", lid),
        validateRequestBody=bool(props.get("ValidateRequestBody")),
        validateRequestParameters=bool(props.get("ValidateRequestParameters")))
    ctx.notes.append(f"{lid}: request validation is not performed locally (the function sees every request)")
    return v["id"], {"RequestValidatorId": v["id"]}


@provisioner("AWS::ApiGateway::Model")
def _model(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    name = props.get("Name") or lid
    ctx.client("apigateway").create_model(restApiId=props["RestApiId"], name=name,
                                          contentType=props.get("ContentType", "application/json"),
                                          schema=_json(props.get("Schema", {})))
    return name, {}


@provisioner("AWS::ApiGateway::GatewayResponse")
def _gateway_response(lid: str, props: dict, ctx: DeployContext) -> tuple[str, dict]:
    ctx.notes.append(f"{lid}: gateway response {props.get('ResponseType')} is recorded; local error bodies are "
                     "API Gateway's defaults")
    return lid, {}
