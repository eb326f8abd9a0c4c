"""What an AWS API request asks IAM for: the actions, resources and condition keys AWS authorizes.

`calls_for(req, service, region, account, key_schema)` reads a request to the local endpoint (the
wire format: S3's REST paths, JSON ``X-Amz-Target`` bodies, query-protocol forms, Lambda's REST
paths) and returns one `Call` per authorization AWS makes for it — several for a DynamoDB
transaction (each item's own action on its table), a CopyObject (read the source, write the
target) or a multi-object delete. The action names, resource ARNs and condition keys are those of
the Service Authorization Reference ("Actions, resources, and condition keys for Amazon S3",
"… for Amazon DynamoDB", …). An operation this module does not model is `UNMODELLED`: the local
cloud refuses it for an enforced principal rather than guess (the message says so).

Condition keys supplied, besides the global ones the authorizer adds (``aws:SecureTransport``,
``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``aws:RequestedRegion``, ``aws:CurrentTime``):
``s3:prefix``/``s3:delimiter``/``s3:max-keys`` (listing), ``s3:VersionId``,
``s3:x-amz-server-side-encryption``; ``dynamodb:LeadingKeys`` (the partition-key values an item
operation or a Query touches), ``dynamodb:Attributes`` (top-level attribute names the request
names: key, item, update/condition/projection expressions), ``dynamodb:ReturnValues``,
``dynamodb:Select``; ``cloudwatch:namespace`` (PutMetricData, over the JSON or the query protocol);
``iam:PassedToService`` (the ``iam:PassRole`` of a SageMaker CreateTrainingJob's ``RoleArn``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

UNMODELLED = "unmodelled"


@dataclass(frozen=True)
class Call:
    action: str  # "s3:GetObject"; UNMODELLED for a request this module cannot read
    resource: str  # ARN, or "*"
    context: dict = field(default_factory=dict)  # condition keys of this request


def calls_for(method: str, path: str, query: str, headers, body: bytes, service: str, region: str, account: str,
              key_schema: Callable[[str], str | None] = lambda table: None) -> list[Call]:
    """The authorizations a request needs. ``path`` is the decoded path, ``query`` the raw query
    string; ``key_schema(table)`` names a DynamoDB table's partition key (for ``LeadingKeys``)."""
    if service == "s3":
        return _s3(method, path, query, headers, body)
    target = headers.get("X-Amz-Target", "")
    if target and "json" in (headers.get("Content-Type") or "").lower():
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        op = target.rsplit(".", 1)[-1]
        parse = _JSON.get(service)
        return parse(op, params, region, account, key_schema) if parse else [_generic(service, op)]
    if service == "lambda":
        return _lambda(method, path, query, region, account)
    form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace") if body else query).items()}
    if "Action" in form:
        return _query(service, form, region, account)
    return [Call(UNMODELLED, "*", {"request": f"{service} {method} {path}"})]


def _generic(service: str, op: str) -> Call:
    return Call(f"{service}:{op}", "*")


# --------------------------------------------------------------------------- S3

# sub-resource -> (GET, PUT, DELETE) action on a bucket
_BUCKET_SUB = {
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "notification": ("GetBucketNotification", "PutBucketNotification", None),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
    "location": ("GetBucketLocation", None, None),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls",
                          "PutBucketOwnershipControls"),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
                          "PutBucketPublicAccessBlock"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "replication": ("GetReplicationConfiguration", "PutReplicationConfiguration", "PutReplicationConfiguration"),
    "object-lock": ("GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", None),
    "accelerate": ("GetAccelerateConfiguration", "PutAccelerateConfiguration", None),
    "requestPayment": ("GetBucketRequestPayment", "PutBucketRequestPayment", None),
    "uploads": ("ListBucketMultipartUploads", None, None),
    "versions": ("ListBucketVersions", None, None),
}
_OBJECT_SUB = {
    "tagging": ("GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging"),
    "acl": ("GetObjectAcl", "PutObjectAcl", None),
    "retention": ("GetObjectRetention", "PutObjectRetention", None),
    "legal-hold": ("GetObjectLegalHold", "PutObjectLegalHold", None),
    "attributes": ("GetObjectAttributes", None, None),
}
_VERSIONED = {"GetObject": "GetObjectVersion", "GetObjectTagging": "GetObjectVersionTagging",
              "GetObjectAcl": "GetObjectVersionAcl", "PutObjectTagging": "PutObjectVersionTagging",
              "DeleteObjectTagging": "DeleteObjectVersionTagging", "DeleteObject": "DeleteObjectVersion",
              "GetObjectAttributes": "GetObjectVersionAttributes", "PutObjectAcl": "PutObjectVersionAcl"}


def _s3(method: str, path: str, query: str, headers, body: bytes) -> list[Call]:
    q = parse_qs(query, keep_blank_values=True)
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return [Call("s3:ListAllMyBuckets", "*")]
    ctx: dict = {}
    version = (q.get("versionId") or [None])[0]
    if version:
        ctx["s3:VersionId"] = version
    sse = headers.get("x-amz-server-side-encryption")
    if sse:
        ctx["s3:x-amz-server-side-encryption"] = sse
    index = {"GET": 0, "HEAD": 0, "PUT": 1, "DELETE": 2}.get(method)
    if not key:
        arn = f"arn:aws:s3:::{bucket}"
        if method == "POST" and "delete" in q:  # DeleteObjects: each object is a DeleteObject(Version)
            calls = []
            for obj in re.findall(rb"<Object>(.*?)</Object>", body or b"", re.S):
                key = re.search(rb"<Key>(.*?)</Key>", obj, re.S)
                versioned = re.search(rb"<VersionId>", obj) is not None
                if key:
                    calls.append(Call("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject",
                                      f"{arn}/{_xml_text(key.group(1))}"))
            return calls or [Call("s3:DeleteObject", f"{arn}/*")]
        if method in ("GET", "HEAD"):  # listing keys (ListObjects, ListObjectVersions, ListMultipartUploads)
            for name, ckey in (("prefix", "s3:prefix"), ("delimiter", "s3:delimiter"), ("max-keys", "s3:max-keys")):
                if name in q:
                    ctx[ckey] = q[name][0]
        for sub, actions in _BUCKET_SUB.items():
            if sub in q and index is not None and actions[index]:
                return [Call(f"s3:{actions[index]}", arn, ctx)]
        if method in ("GET", "HEAD"):
            return [Call("s3:ListBucket", arn, ctx)]
        if method == "PUT":
            return [Call("s3:CreateBucket", arn, ctx)]
        if method == "DELETE":
            return [Call("s3:DeleteBucket", arn, ctx)]
        return [Call(UNMODELLED, arn, {"request": f"s3 {method} {path}?{query}"})]
    arn = f"arn:aws:s3:::{bucket}/{key}"
    if "uploadId" in q or "uploads" in q:
        return [Call("s3:AbortMultipartUpload" if method == "DELETE" else
                     "s3:ListMultipartUploadParts" if method == "GET" else "s3:PutObject", arn, ctx)]
    action = None
    for sub, actions in _OBJECT_SUB.items():
        if sub in q and index is not None:
            action = actions[index]
            break
    else:
        if method in ("GET", "HEAD") or (method == "POST" and "select" in q):
            action = "GetObject"
        elif method == "PUT":
            action = "PutObject"
        elif method == "DELETE":
            action = "DeleteObject"
        elif method == "POST" and "restore" in q:
            action = "RestoreObject"
    if action is None:
        return [Call(UNMODELLED, arn, {"request": f"s3 {method} {path}?{query}"})]
    if version and action in _VERSIONED:
        action = _VERSIONED[action]
    calls = [Call(f"s3:{action}", arn, ctx)]
    source = headers.get("x-amz-copy-source")
    if method == "PUT" and source and action == "PutObject":  # CopyObject / UploadPartCopy read the source
        parsed = urlparse(source)
        src_path = unquote(parsed.path).lstrip("/")
        src_version = (parse_qs(parsed.query).get("versionId") or [None])[0]
        calls.insert(0, Call("s3:GetObjectVersion" if src_version else "s3:GetObject", f"arn:aws:s3:::{src_path}"))
    return calls


def _xml_text(raw: bytes) -> str:
    return (raw.decode("utf-8", "replace").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


# --------------------------------------------------------------------------- DynamoDB

_WORDS = {"and", "or", "not", "between", "in", "set", "remove", "add", "delete", "if_not_exists",
          "list_append", "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with",
          "contains", "size"}
_NAME = re.compile(r"(?<![:\w#.\[])(#?[A-Za-z_][\w]*)")


def _expression_attributes(expr: str | None, names: dict) -> set[str]:
    """Top-level attribute names an expression refers to (``#n`` resolved, ``:v`` values skipped)."""
    if not expr:
        return set()
    found = set()
    for token in _NAME.findall(re.sub(r":\w+", " ", expr)):
        if token.startswith("#"):
            found.add(names.get(token, token))
        elif token.lower() not in _WORDS:
            found.add(token)
    return found


def _key_value(value: dict) -> str:
    return next(iter(value.values())) if isinstance(value, dict) and value else str(value)


def _leading_from_query(params: dict, pk: str | None) -> list[str]:
    expr = params.get("KeyConditionExpression") or ""
    names, values = params.get("ExpressionAttributeNames") or {}, params.get("ExpressionAttributeValues") or {}
    for lhs, rhs in re.findall(r"(#?[\w.]+)\s*=\s*(:\w+)", expr):
        if names.get(lhs, lhs) == pk and rhs in values:
            return [str(_key_value(values[rhs]))]
    conditions = params.get("KeyConditions") or {}
    if pk in conditions:
        return [str(_key_value(v)) for v in conditions[pk].get("AttributeValueList", [])]
    return []


def _dynamodb_item_call(action: str, params: dict, region: str, account: str,
                        key_schema: Callable[[str], str | None]) -> Call:
    table = params.get("TableName", "")
    arn = f"arn:aws:dynamodb:{region}:{account}:table/{table}"
    pk = key_schema(table)
    names = params.get("ExpressionAttributeNames") or {}
    ctx: dict = {}
    key = params.get("Key") or params.get("Item") or {}
    attrs = set(key)
    if pk and pk in key:
        ctx["dynamodb:LeadingKeys"] = [str(_key_value(key[pk]))]
    if action == "Query":
        if params.get("IndexName"):
            arn += f"/index/{params['IndexName']}"
        ctx["dynamodb:LeadingKeys"] = _leading_from_query(params, pk)
    for name in ("UpdateExpression", "ConditionExpression", "ProjectionExpression", "KeyConditionExpression",
                 "FilterExpression"):
        attrs |= _expression_attributes(params.get(name), names)
    attrs |= set(params.get("AttributesToGet") or [])
    attrs |= set(params.get("AttributeUpdates") or {})
    if attrs:
        ctx["dynamodb:Attributes"] = sorted(attrs)
    for name, ckey in (("ReturnValues", "dynamodb:ReturnValues"), ("Select", "dynamodb:Select")):
        if params.get(name):
            ctx[ckey] = params[name]
    return Call(f"dynamodb:{action}", arn, ctx)


_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
             "Get": "GetItem"}


def _dynamodb(op: str, params: dict, region: str, account: str, key_schema) -> list[Call]:
    if op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"):
        return [_dynamodb_item_call(op, params, region, account, key_schema)]
    if op in ("TransactWriteItems", "TransactGetItems"):  # each item is authorized as its own action
        calls = []
        for entry in params.get("TransactItems") or []:
            for kind, item in entry.items():
                calls.append(_dynamodb_item_call(_TRANSACT.get(kind, kind), item, region, account, key_schema))
        return calls
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [Call(f"dynamodb:{op}", f"arn:aws:dynamodb:{region}:{account}:table/{table}")
                for table in (params.get("RequestItems") or {})]
    table = params.get("TableName") or (params.get("ResourceArn") or "").rsplit("/", 1)[-1]
    resource = params.get("ResourceArn") or (f"arn:aws:dynamodb:{region}:{account}:table/{table}" if table else "*")
    return [Call(f"dynamodb:{op}", resource)]


# --------------------------------------------------------------------------- other JSON services

def _states(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    arn = (params.get("stateMachineArn") or params.get("executionArn") or params.get("activityArn")
           or params.get("resourceArn") or "*")
    return [Call(f"states:{op}", arn)]


def _events(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    if op == "PutEvents":
        buses = {e.get("EventBusName") or "default" for e in params.get("Entries") or []} or {"default"}
        entries = params.get("Entries") or []
        ctx = {"events:source": [e.get("Source", "") for e in entries],
               "events:detail-type": [e.get("DetailType", "") for e in entries]}
        return [Call("events:PutEvents",
                     b if b.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{b}", ctx)
                for b in sorted(buses)]
    name = params.get("Name") or params.get("Rule")
    return [Call(f"events:{op}", f"arn:aws:events:{region}:{account}:rule/{name}" if name else "*")]


def _firehose(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    name = params.get("DeliveryStreamName")
    return [Call(f"firehose:{op}", f"arn:aws:firehose:{region}:{account}:deliverystream/{name}" if name else "*")]


def _sqs(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    url = params.get("QueueUrl") or ""
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else params.get("QueueName")
    return [Call(f"sqs:{op}", f"arn:aws:sqs:{region}:{account}:{name}" if name else "*")]


def kms_key_arn(key: str, region: str, account: str) -> str:
    """The ARN a KeyId names: a key id, an ``alias/…`` or an ARN already."""
    if key == "*" or key.startswith("arn:"):
        return key
    return f"arn:aws:kms:{region}:{account}:{key if key.startswith('alias/') else 'key/' + key}"


def _kms(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    return [Call(f"kms:{op}", kms_key_arn(params.get("KeyId") or "*", region, account))]


def _logs(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    group, stream = params.get("logGroupName"), params.get("logStreamName")
    if not group:
        return [Call(f"logs:{op}", "*")]
    arn = f"arn:aws:logs:{region}:{account}:log-group:{group}"
    return [Call(f"logs:{op}", f"{arn}:log-stream:{stream}" if stream else f"{arn}:*")]


def _sagemaker(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    name = params.get("TrainingJobName")
    calls = [Call(f"sagemaker:{op}", f"arn:aws:sagemaker:{region}:{account}:training-job/{name}" if name else "*")]
    if op == "CreateTrainingJob" and params.get("RoleArn"):  # handing SageMaker a role is passing it
        calls.append(Call("iam:PassRole", params["RoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    return calls


def _json_generic(service: str):
    return lambda op, params, region, account, _ks: [_generic(service, op)]


# CloudWatch operations authorized on each alarm's ARN (AWS's service authorization reference: resource
# type `alarm`), and the parameter naming them; every other operation is authorized on "*".
_ALARM_OPERATIONS = {"PutMetricAlarm": "AlarmName", "DeleteAlarms": "AlarmNames", "DescribeAlarms": "AlarmNames",
                     "SetAlarmState": "AlarmName", "EnableAlarmActions": "AlarmNames",
                     "DisableAlarmActions": "AlarmNames", "DescribeAlarmHistory": "AlarmName"}


def _cloudwatch(op: str, params: dict, region: str, account: str, _ks) -> list[Call]:
    names = params.get(_ALARM_OPERATIONS.get(op, "")) if isinstance(params, dict) else None
    if names:
        names = [names] if isinstance(names, str) else [n for n in names if isinstance(n, str)]
        return [Call(f"cloudwatch:{op}", f"arn:aws:cloudwatch:{region}:{account}:alarm:{n}") for n in names]
    # the JSON protocol (what boto3 sends CloudWatch now) names the namespace as the query form does
    namespace = params.get("Namespace")
    return [_cloudwatch_call(op, namespace if isinstance(namespace, str) else None)]


def _cloudwatch_call(op: str, namespace: str | None) -> Call:
    return Call(f"cloudwatch:{op}", "*", {"cloudwatch:namespace": namespace} if namespace is not None else {})


_JSON = {"dynamodb": _dynamodb, "states": _states, "events": _events, "firehose": _firehose, "sqs": _sqs,
         "kms": _kms, "logs": _logs, "monitoring": _cloudwatch, "xray": _json_generic("xray"), "sagemaker": _sagemaker}


# --------------------------------------------------------------------------- query protocol and Lambda

def _query(service: str, form: dict, region: str, account: str) -> list[Call]:
    op = form["Action"]
    if service == "sns":
        arn = form.get("TopicArn") or form.get("TargetArn") or form.get("ResourceArn") or "*"
        return [Call(f"sns:{op}", arn)]
    if service == "sts":
        return [Call(f"sts:{op}", form.get("RoleArn") or "*")]
    if service == "monitoring":
        names = [v for k, v in sorted(form.items()) if k == _ALARM_OPERATIONS.get(op)
                 or k.startswith(f"{_ALARM_OPERATIONS.get(op)}.member.")] if op in _ALARM_OPERATIONS else []
        if names:
            return [Call(f"cloudwatch:{op}", f"arn:aws:cloudwatch:{region}:{account}:alarm:{n}") for n in names]
        return [_cloudwatch_call(op, form.get("Namespace"))]
    if service == "iam":
        name = form.get("RoleName") or form.get("UserName")
        kind = "role" if "RoleName" in form else "user"
        return [Call(f"iam:{op}", f"arn:aws:iam::{account}:{kind}/{name}" if name else "*")]
    return [_generic(service, op)]


_LAMBDA_PATH = re.compile(r"^/[\d-]+/functions(?:/(?P<function>[^/]+)(?P<sub>/[^/]+)?(?P<item>/[^/]+)?)?/?$")
_LAMBDA_TAGS = re.compile(r"^/[\d-]+/tags/(?P<arn>arn:.+)$")
# (the path after the function, method) -> the action of the Lambda API operation
_LAMBDA_ACTIONS = {
    ("", "GET"): "GetFunction", ("", "DELETE"): "DeleteFunction",
    ("/invocations", "POST"): "InvokeFunction", ("/invoke-async", "POST"): "InvokeFunction",
    ("/configuration", "GET"): "GetFunctionConfiguration", ("/configuration", "PUT"): "UpdateFunctionConfiguration",
    ("/code", "PUT"): "UpdateFunctionCode",
    ("/policy", "GET"): "GetPolicy", ("/policy", "POST"): "AddPermission", ("/policy/", "DELETE"): "RemovePermission",
    ("/versions", "GET"): "ListVersionsByFunction", ("/versions", "POST"): "PublishVersion",
    ("/aliases", "GET"): "ListAliases", ("/aliases", "POST"): "CreateAlias", ("/aliases/", "GET"): "GetAlias",
    ("/aliases/", "PUT"): "UpdateAlias", ("/aliases/", "DELETE"): "DeleteAlias",
    ("/concurrency", "GET"): "GetFunctionConcurrency", ("/concurrency", "PUT"): "PutFunctionConcurrency",
    ("/concurrency", "DELETE"): "DeleteFunctionConcurrency",
}
_LAMBDA_TAG_ACTIONS = {"GET": "ListTags", "POST": "TagResource", "DELETE": "UntagResource"}


def _lambda(method: str, path: str, query: str, region: str, account: str) -> list[Call]:
    if m := _LAMBDA_TAGS.match(path):
        action = _LAMBDA_TAG_ACTIONS.get(method)
        return [Call(f"lambda:{action}", m["arn"])] if action else [
            Call(UNMODELLED, "*", {"request": f"lambda {method} {path}"})]
    m = _LAMBDA_PATH.match(path)
    if m and m["function"] is None and method == "GET":
        return [Call("lambda:ListFunctions", "*")]
    action = None
    if m and m["function"]:
        action = _LAMBDA_ACTIONS.get((f"{m['sub'] or ''}{'/' if m['item'] else ''}", method))
    if action is None:
        return [Call(UNMODELLED, "*", {"request": f"lambda {method} {path}"})]
    # a name, name:qualifier, or a (partial) ARN with or without its qualifier; or ?Qualifier=
    function = m["function"]
    name, _, qualifier = (function.split(":function:", 1)[1] if ":function:" in function else function).partition(":")
    qualifier = qualifier or (parse_qs(query).get("Qualifier") or [""])[0]
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")
    return [Call(f"lambda:{action}", arn)]
