"""IAM on the local cloud: each function calls as its own role, and the endpoint says no where AWS would.

Who is enforced: every principal whose credentials the local cloud issued — a Lambda function's
session (`credentials_for`: an STS ``AssumeRole`` of the function's role, session name = the
function's name, as Lambda does), any ``aws sts assume-role`` session, an IAM user's access key
created in the local cloud. Any other key (``testing``, the process's own) is the account's
administrator, as before: the tools a developer drives the local cloud with are not limited.

For an enforced request `Authorizer.check` reads what the request asks for (`actions.calls_for`:
action, resource ARN, condition keys), gathers the principal's identity policies (a role's inline
and attached managed policies; a user's, with its groups') and the resource's own policy (bucket,
topic, queue, function, table policy; a KMS key policy; for ``sts:AssumeRole`` the role's trust
policy, which must allow as a key policy must), and decides with `policy.evaluate`
(AWS's evaluation logic: explicit deny, then an allow from either side in one account; KMS needs
its key policy). A refusal is AWS's error for that protocol (S3's ``AccessDenied`` XML, JSON
``AccessDeniedException``, SNS's ``AuthorizationError``, …) with AWS's message
(``User: <arn> is not authorized to perform: <action> on resource: <arn> because …``), and is
kept in `denials`. `amend` makes a missing S3 object a 403 for a caller without ``s3:ListBucket``
on the bucket, as S3 does. moto's own evaluator (``moto.iam.access_control``) is not used: it
ignores ``Resource`` and ``Condition`` and every resource-based policy.

Service-to-service deliveries are checked with `service_may` (a service principal against the
resource's policy, with ``aws:SourceArn``/``aws:SourceAccount``) and `role_may` (a role a service
assumes for a target: its trust policy, then its identity policies).

The policies are read from moto's backends (models, read only): ``iam_backends`` (roles, users,
groups), ``sts_backends`` (assumed-role sessions), and the resource policies of ``s3_backends``,
``sns_backends``, ``sqs_backends``, ``kms_backends``, ``lambda_backends``, ``dynamodb_backends``.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from .actions import UNMODELLED, Call, calls_for
from .policy import Decision, Principal, evaluate, principal_for_session, service_principal

ADMIN = None  # the principal of credentials the local cloud did not issue: not enforced


class AccessDenied(Exception):
    """A delivery or a start-up step IAM refuses (the message is AWS's)."""


@dataclass(frozen=True)
class Denial:
    principal: str
    action: str
    resource: str
    message: str


class Authorizer:
    def __init__(self, account: str, region: str, *, enforce: bool = True) -> None:
        self.account, self.region, self.enforce = account, region, enforce
        self.denials: list[Denial] = []
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, str], dict[str, str]] = {}

    # ------------------------------------------------------------------ moto's state (read only)
    def _iam(self):
        from moto.iam.models import iam_backends

        return iam_backends[self.account]["aws"]

    def principal(self, access_key: str | None, token: str | None = None) -> Principal | None:
        """The enforced principal of an access key, or ``ADMIN`` (None) for a key the cloud did not issue.
        Raises `AccessDenied` for a session key presented with another session's token or none (AWS
        refuses temporary credentials without their token: ``InvalidClientTokenId``)."""
        # moto issues session keys as ASIA…, IAM user keys as AKIA…: any other key (``testing``, the
        # common case on every request) was not issued here, without a look at every session and user
        if not access_key or not access_key.startswith(("ASIA", "AKIA")):
            return ADMIN
        if access_key.startswith("ASIA"):
            from moto.sts.models import sts_backends

            for session in list(sts_backends[self.account]["aws"].assumed_roles):
                if session.access_key_id == access_key:
                    if token != session.session_token:
                        raise AccessDenied("The security token included in the request is invalid.")
                    return principal_for_session(session.arn)
            return ADMIN
        for user in list(self._iam().users.values()):
            if any(k.access_key_id == access_key for k in user.access_keys):
                return principal_for_session(user.arn)
        return ADMIN

    def _role(self, arn: str) -> Any:
        """moto's role of ``arn`` (None when there is none), by its name: a session's role ARN has no
        path (`principal_for_session`), and a role name is unique in an account whatever its path."""
        if f":{self.account}:role/" not in arn:
            return None
        name = arn.rsplit("/", 1)[-1]
        return next((r for r in list(self._iam().roles.values()) if r.name == name), None)

    def identity_policies(self, principal: Principal) -> list[str]:
        iam = self._iam()
        docs: list[str] = []
        if principal.role_arn:
            role = self._role(principal.role_arn)
            if role is None:
                return docs
            docs += list(role.policies.values())
            docs += [_managed_document(p) for p in role.managed_policies.values()]
            return docs
        name = principal.arn.rsplit("/", 1)[-1]
        user = iam.users.get(name)
        if user is None:
            return docs
        docs += list(user.policies.values())
        docs += [_managed_document(p) for p in user.managed_policies.values()]
        for group in iam.groups.values():
            if user in group.users:
                docs += list(group.policies.values())
                docs += [_managed_document(p) for p in group.managed_policies.values()]
        return docs

    def resource_policy(self, arn: str) -> tuple[str | dict | None, bool]:
        """(the policy of the resource ``arn`` names, whether it is a KMS key policy)."""
        try:
            return self._resource_policy(arn)
        except Exception:  # noqa: BLE001 - no such resource: no resource policy (the call will 404)
            return None, False

    def _resource_policy(self, arn: str) -> tuple[str | dict | None, bool]:
        parts = arn.split(":", 5)
        if len(parts) < 6:
            return None, False
        service, region, resource = parts[2], parts[3], parts[5]
        if service == "s3":
            from moto.s3.models import s3_backends

            bucket = s3_backends[self.account]["aws"].buckets.get(resource.split("/", 1)[0])
            return (bucket.policy.decode() if bucket is not None and bucket.policy else None), False
        if service == "sns":
            from moto.sns.models import sns_backends

            topic = sns_backends[self.account][region].topics.get(arn)
            return (topic.policy if topic is not None else None), False
        if service == "sqs":
            from moto.sqs.models import sqs_backends

            queue = sqs_backends[self.account][region].queues.get(resource)
            return (queue.policy if queue is not None else None), False
        if service == "kms":
            from moto.kms.models import kms_backends

            backend = kms_backends[self.account][region]
            key_id = backend.any_id_to_key_id(resource.split("/", 1)[-1] if resource.startswith("key/") else resource)
            return backend.keys[key_id].policy, True
        if service == "lambda":
            from moto.awslambda.models import lambda_backends

            fn = lambda_backends[self.account][region].get_function(resource.split(":")[1])
            statements = fn.policy.statements
            return ({"Version": "2012-10-17", "Statement": statements} if statements else None), False
        if service == "dynamodb":
            from moto.dynamodb.models import dynamodb_backends

            table_arn = arn.split("/index/")[0]
            found = dynamodb_backends[self.account][region].resource_policies.get(table_arn)
            return (found.policy_doc if found is not None else None), False
        return None, False

    def _bucket_exists(self, name: str) -> bool:
        from moto.s3.models import s3_backends

        return name in s3_backends[self.account]["aws"].buckets

    def key_schema(self, table: str) -> str | None:
        """The partition key attribute of a DynamoDB table (for ``dynamodb:LeadingKeys``), read at each
        call: a table deleted and created again under its name may have another key (a dict look-up)."""
        try:
            from moto.dynamodb.models import dynamodb_backends

            return dynamodb_backends[self.account][self.region].get_table(table).hash_key_attr
        except Exception:  # noqa: BLE001 - no such table: the call itself will say so
            return None

    # ------------------------------------------------------------------ decisions
    def _context(self, principal: Principal, call: Call) -> dict:
        ctx = {
            # The local endpoint is plain HTTP, but every SDK call in AWS is TLS: decide as AWS would.
            "aws:SecureTransport": "true",
            "aws:PrincipalArn": principal.role_arn or principal.arn,
            "aws:PrincipalAccount": principal.account,
            "aws:RequestedRegion": self.region,
            "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        ctx.update(call.context)
        return ctx

    def decide(self, principal: Principal, call: Call) -> Decision:
        if call.action == "sts:GetCallerIdentity":  # never needs a permission
            return Decision(True, "")
        if call.action == UNMODELLED:
            return Decision(False, f"because the local cloud cannot tell which IAM action "
                                   f"{call.context.get('request', 'this request')} needs (run with --iam=off)")
        if call.action == "sts:AssumeRole":
            # the role's trust policy decides as a key policy does: it must allow, naming the caller
            # (enough in one account) or its account (then an identity policy must allow too)
            role = self._role(call.resource)
            doc, is_key = (role.assume_role_policy_document if role is not None else None), True
        else:
            doc, is_key = self.resource_policy(call.resource)
        return evaluate(principal, call.action, call.resource, identity_policies=self.identity_policies(principal),
                        resource_policy=doc, key_policy=is_key, context=self._context(principal, call))

    def allowed(self, principal: Principal, action: str, resource: str, context: dict | None = None) -> Decision:
        return self.decide(principal, Call(action, resource, dict(context or {})))

    def service_may(self, service: str, action: str, resource: str, *, source_arn: str | None = None,
                    source_account: str | None = None) -> Decision:
        """May AWS service ``service`` (``cloudwatch.amazonaws.com``) do ``action`` on ``resource`` on
        behalf of ``source_arn``? Decided by the resource's policy alone (a KMS key: its key policy)."""
        principal = service_principal(service)
        ctx: dict[str, Any] = {"aws:SecureTransport": "true"}
        if source_arn:
            ctx["aws:SourceArn"] = source_arn
        if source_account or source_arn:
            ctx["aws:SourceAccount"] = source_account or self.account
        doc, is_key = self.resource_policy(resource)
        return evaluate(principal, action, resource, resource_policy=doc, key_policy=is_key, context=ctx,
                        resource_account=self.account)

    def delivery_refusal(self, service: str, action: str, resource: str, *, role_arn: str | None = None,
                         source_arn: str | None = None) -> str | None:
        """AWS's message when ``service`` may not deliver (``action`` on ``resource``) — through the
        target's role when it has one, else by the resource's policy; None when it may (or IAM is off)."""
        if not self.enforce:
            return None
        if role_arn:
            session = principal_for_session(
                f"arn:aws:sts::{self.account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/{service.split('.')[0]}")
            trust = self.trust_decision(role_arn, service)
            if not trust.allowed:
                return self.record(service_principal(service), "sts:AssumeRole", role_arn, trust)
            decision = self.allowed(session, action, resource)
            return None if decision.allowed else self.record(session, action, resource, decision)
        decision = self.service_may(service, action, resource, source_arn=source_arn)
        return None if decision.allowed else self.record(service_principal(service), action, resource, decision)

    def trust_decision(self, role_arn: str, service: str, source_arn: str | None = None) -> Decision:
        """May ``service`` assume ``role_arn``; ``source_arn``: the resource it assumes it for (a training
        job: SageMaker passes ``aws:SourceArn``/``aws:SourceAccount``, which trust policies may require)."""
        role = self._role(role_arn)
        if role is None:
            return Decision(False, f"because the role {role_arn} does not exist")
        context = {"aws:SecureTransport": "true"}
        if source_arn:
            context.update({"aws:SourceArn": source_arn, "aws:SourceAccount": self.account})
        return evaluate(service_principal(service), "sts:AssumeRole", role_arn,
                        resource_policy=role.assume_role_policy_document, resource_account=self.account,
                        context=context)

    def record(self, principal: Principal, action: str, resource: str, decision: Decision) -> str:
        message = decision.message(principal, action, resource)
        with self._lock:
            self.denials.append(Denial(principal.arn, action, resource, message))
        return message

    # ------------------------------------------------------------------ function credentials
    def credentials_for(self, role_arn: str, session_name: str, service: str = "lambda.amazonaws.com",
                        source_arn: str | None = None) -> dict[str, str] | None:
        """Credentials of a session of ``role_arn`` for ``service`` (None when the role is not one of
        this cloud's). Raises `AccessDenied` when enforcing and the role's trust policy does not let
        ``service`` assume it — AWS refuses to create such a function."""
        if not role_arn or ":role/" not in role_arn:
            return None
        if self.enforce:
            trust = self.trust_decision(role_arn, service, source_arn)
            if not trust.allowed:
                raise AccessDenied(f"The role defined for the function cannot be assumed by Lambda "
                                   f"({role_arn}: {service} may not sts:AssumeRole {trust.reason})")
        with self._lock:
            issued = self._issued.get((role_arn, session_name))
            if issued is None:
                from moto.sts.models import sts_backends

                session = sts_backends[self.account]["aws"].assume_role(
                    region_name=self.region, role_session_name=session_name[:64], role_arn=role_arn,
                    policy=None, duration=43200, external_id=None)
                issued = {"AWS_ACCESS_KEY_ID": session.access_key_id,
                          "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
                          "AWS_SESSION_TOKEN": session.session_token}
                self._issued[(role_arn, session_name)] = issued
            return dict(issued)

    # ------------------------------------------------------------------ the AWS endpoint
    def check(self, req: Request, service: str, region: str) -> Response | None:
        """AWS's error for a request its principal may not make (None: let moto serve it)."""
        if not self.enforce:
            return None
        access_key, token = _credentials(req)
        try:
            principal = self.principal(access_key, token)
        except AccessDenied as err:
            return _error(req, service, "InvalidClientTokenId", str(err), status=403)
        if principal is ADMIN:
            return None
        bucket, _, key = req.path.lstrip("/").partition("/")
        creating = req.method == "PUT" and not key.strip("/")  # CreateBucket is authorized
        if service == "s3" and bucket and not creating and not self._bucket_exists(bucket):
            return None  # S3 answers NoSuchBucket (404) before it authorizes anything in a bucket
        body = req.get_data()
        calls = calls_for(req.method, req.path, req.query_string.decode("utf-8", "replace"), req.headers, body,
                          service, region, self.account, self.key_schema)
        for call in calls:
            decision = self.decide(principal, call)
            if not decision.allowed:
                return _error(req, service, None, self.record(principal, call.action, call.resource, decision))
        return None

    def amend(self, req: Request, resp: Response, service: str) -> Response:
        """S3 answers a missing object with 403 to a caller that may not list the bucket (it must not
        learn whether the key exists), 404 only with ``s3:ListBucket``."""
        if not self.enforce or service != "s3" or resp.status_code != 404 or req.method not in ("GET", "HEAD"):
            return resp
        bucket, _, key = req.path.lstrip("/").partition("/")
        if not key or not self._bucket_exists(bucket):  # no bucket: 404 NoSuchBucket for everyone (HEAD has no body)
            return resp
        access_key, token = _credentials(req)
        try:
            principal = self.principal(access_key, token)
        except AccessDenied:
            return resp
        if principal is ADMIN:
            return resp
        bucket_arn = f"arn:aws:s3:::{bucket}"
        decision = self.allowed(principal, "s3:ListBucket", bucket_arn)
        if decision.allowed:
            return resp
        return _error(req, "s3", None, self.record(principal, "s3:ListBucket", bucket_arn, decision))


def _managed_document(policy: Any) -> str:
    return next(v.document for v in policy.versions if v.is_default)


def _credentials(req: Request) -> tuple[str | None, str | None]:
    auth = req.headers.get("Authorization", "")
    if "Credential=" in auth:
        key = auth.split("Credential=", 1)[1].split("/", 1)[0].strip()
        return key, req.headers.get("X-Amz-Security-Token")
    cred = req.args.get("X-Amz-Credential")
    if cred:
        return cred.split("/", 1)[0], req.args.get("X-Amz-Security-Token")
    return None, None


# protocol of each service's errors: (status, code) for AccessDenied
_JSON_TYPES = {"dynamodb": "com.amazonaws.dynamodb.v20120810#AccessDeniedException"}
_QUERY_CODES = {"sns": "AuthorizationError"}
_QUERY_NS = {"sns": "http://sns.amazonaws.com/doc/2010-03-31/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
             "iam": "https://iam.amazonaws.com/doc/2010-05-08/", "monitoring": "http://monitoring.amazonaws.com/doc/2010-08-01/"}


def _error(req: Request, service: str, code: str | None, message: str, status: int | None = None) -> Response:
    """AWS's access-denied answer in ``service``'s wire format."""
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id, "x-amz-request-id": request_id}
    if service == "s3":
        code = code or "AccessDenied"
        body = "" if req.method == "HEAD" else (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message>'
            f"<RequestId>{request_id}</RequestId><HostId>localcloud</HostId></Error>")
        return Response(body, status=status or 403, headers=headers, content_type="application/xml")
    if req.headers.get("X-Amz-Target") and "json" in (req.headers.get("Content-Type") or "").lower():
        code = code or _JSON_TYPES.get(service, "AccessDeniedException")
        payload = {"__type": code, "message": message, "Message": message}
        if service == "sqs":
            headers["x-amzn-query-error"] = "AccessDenied;Sender"
        return Response(json.dumps(payload), status=status or 400, headers=headers,
                        content_type="application/x-amz-json-1.0")
    if service == "lambda":
        headers["x-amzn-ErrorType"] = code or "AccessDeniedException"
        return Response(json.dumps({"Type": "User", "Message": message}), status=status or 403, headers=headers,
                        content_type="application/json")
    code = code or _QUERY_CODES.get(service, "AccessDenied")
    ns = _QUERY_NS.get(service, "")
    body = (f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return Response(body, status=status or 403, headers=headers, content_type="text/xml")
