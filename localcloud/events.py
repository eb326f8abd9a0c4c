"""EventBridge, locally: event patterns, input transformation, delivery to targets, S3 events.

moto stores rules and targets but delivers only to queues, logs and buses. `SEAM.install(bus)` takes over
`Rule.send_to_targets` (reached by PutEvents and by S3's EventBridge notifications) so that rules
match with EventBridge's pattern semantics and deliver to Lambda functions and Step Functions state
machines too — asynchronously, as in AWS — with `Input`, `InputPath` and `InputTransformer`
respected. S3 "Object Created"/"Object Deleted" events are built with AWS's shape (ISO time, the
default bus only).
"""
from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from .patches import Seam

# --------------------------------------------------------------------------- pattern matching

_MISSING = object()


def matches(pattern: dict | str, event: dict) -> bool:
    """Whether `event` matches the EventBridge `pattern` (dict or JSON string)."""
    if isinstance(pattern, str):
        pattern = json.loads(pattern)
    return _match_object(pattern, event)


def _match_object(pattern: dict, obj: Any) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not any(_match_object(p, obj) for p in rule):
                return False
            continue
        value = obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not _match_object(rule, value):
                return False
        elif isinstance(rule, list):
            if not _match_values(rule, value):
                return False
        else:
            raise ValueError(f"event pattern field {key!r} must be an object or a list, got {rule!r}")
    return True


def _match_values(matchers: list, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for m in matchers:
        if isinstance(m, dict) and "exists" in m:
            # exists matches leaves only (an object is not a leaf), as in EventBridge
            present = (value is not _MISSING and not isinstance(value, dict)
                       and not (isinstance(value, list) and not value))
            if bool(m["exists"]) == present:
                return True
            continue
        if value is _MISSING:  # only `exists: false` (above) matches a missing field
            continue
        if any(_match_one(m, v) for v in values):
            return True
    return False


def _match_one(m: Any, v: Any) -> bool:
    if not isinstance(m, dict):
        if m is None:
            return v is None
        if isinstance(m, bool) or isinstance(v, bool):
            return m is v if isinstance(m, bool) and isinstance(v, bool) else False
        if isinstance(m, (int, float)) and isinstance(v, (int, float)):
            return float(m) == float(v)
        return type(m) is type(v) and m == v
    op, arg = next(iter(m.items()))
    if op == "prefix":
        if isinstance(arg, dict):
            return isinstance(v, str) and v.lower().startswith(str(arg.get("equals-ignore-case", "")).lower())
        return isinstance(v, str) and v.startswith(arg)
    if op == "suffix":
        if isinstance(arg, dict):
            return isinstance(v, str) and v.lower().endswith(str(arg.get("equals-ignore-case", "")).lower())
        return isinstance(v, str) and v.endswith(arg)
    if op == "equals-ignore-case":
        return isinstance(v, str) and v.lower() == str(arg).lower()
    if op == "wildcard":
        return isinstance(v, str) and re.fullmatch(
            "".join(".*" if c == "*" else re.escape(c) for c in str(arg)), v, re.S) is not None
    if op == "anything-but":
        if isinstance(arg, dict):
            return not _match_one(arg, v)
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_match_one(x, v) for x in excluded)
    if op == "numeric":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        ops = {"<": v.__lt__, "<=": v.__le__, "=": v.__eq__, ">": v.__gt__, ">=": v.__ge__}
        for i in range(0, len(arg), 2):
            if not ops[arg[i]](arg[i + 1]):
                return False
        return True
    if op == "cidr":
        try:
            return ipaddress.ip_address(v) in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return False
    raise ValueError(f"unsupported event pattern operator {op!r}")


# --------------------------------------------------------------------------- input transformation


def _json_path(event: Any, path: str) -> Any:
    if path in ("$", ""):
        return event
    if not path.startswith("$."):
        raise ValueError(f"unsupported JSON path {path!r}")
    cur = event
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path[2:]):
        if part.startswith("["):
            idx = int(part[1:-1])
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def target_input(target: dict, event: dict, rule_name: str = "", rule_arn: str = "") -> Any:
    """What a target receives for `event`: the event, `Input`, `InputPath` or `InputTransformer`."""
    if target.get("Input") is not None:
        raw = target["Input"]
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if target.get("InputPath"):
        return _json_path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer:
        values = {name: _json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
        values.update({
            "aws.events.event": event, "aws.events.event.json": event,
            "aws.events.rule-name": rule_name, "aws.events.rule-arn": rule_arn,
            "aws.events.event.ingestion-time": event.get("time"),
        })
        return render_template(transformer.get("InputTemplate", ""), values)
    return event


def render_template(template: str, values: dict[str, Any]) -> Any:
    """An InputTemplate with its <placeholders> replaced: raw inside JSON strings, JSON outside."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        if c == "<":
            end = template.find(">", i)
            name = template[i + 1:end] if end > 0 else ""
            if name in values:
                v = values[name]
                if in_string:
                    text = v if isinstance(v, str) else json.dumps(v)
                    out.append(json.dumps(text)[1:-1] if v is not None else "")
                else:
                    out.append(v if isinstance(v, str) and not _looks_json(template) else json.dumps(v))
                i = end + 1
                continue
        out.append(c)
        i += 1
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _looks_json(template: str) -> bool:
    t = template.strip()
    return t.startswith("{") or t.startswith("[")


# --------------------------------------------------------------------------- delivery


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventBus:
    """Asynchronous delivery of matched events to targets through the local cloud's endpoint."""

    def __init__(self, endpoint_url: str, region: str, log: Callable[[str], None] = print, workers: int = 8,
                 session: Any = None):
        self.session = session
        self.endpoint_url = endpoint_url
        self.region = region
        self.log = log
        self.failures: list[dict] = []
        self.authorizer: Any = None  # an `authorization.Authorizer`: may the rule's target be reached?
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eventbridge")
        self._pending = 0
        self._cond = threading.Condition()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    def client(self, service: str):
        with self._clients_lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                self._clients[service] = (self.session or boto3.session.Session()).client(
                    service, region_name=self.region, endpoint_url=self.endpoint_url,
                    config=Config(read_timeout=960, retries={"max_attempts": 0}, max_pool_connections=32))
            return self._clients[service]

    # -- asynchronous work with a way to wait for quiet
    def submit(self, fn: Callable, *args: Any) -> None:
        with self._cond:
            self._pending += 1

        def run() -> None:
            try:
                fn(*args)
            except Exception as err:  # noqa: BLE001 - delivery is asynchronous: record, never raise
                self.failures.append({"error": repr(err)})
                self.log(f"[events] delivery failed: {err}")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

        self._pool.submit(run)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        deadline = time.time() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- delivery to one target
    def deliver(self, arn: str, payload: Any, source: str, extra: dict | None = None) -> None:
        """Deliver `payload` to the resource `arn` now (on the calling thread)."""
        parts = arn.split(":")
        service = parts[2] if len(parts) > 2 else ""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        record = {"arn": arn, "source": source, "at": time.time()}
        if service == "lambda":
            resp = self.client("lambda").invoke(FunctionName=arn, Payload=body.encode())
            out = resp["Payload"].read().decode()
            if resp.get("FunctionError"):
                record["error"] = out
                self.failures.append(record)
                self.log(f"[events] {source} -> {parts[-1]}: function error {out[:300]}")
            else:
                record["result"] = out
        elif service == "states":
            name = f"{(extra or {}).get('name_prefix', 'events')}-{uuid.uuid4().hex[:20]}"[:80]
            resp = self.client("stepfunctions").start_execution(stateMachineArn=arn, name=name, input=body)
            record["execution_arn"] = resp["executionArn"]
            self.log(f"[events] {source} -> started {resp['executionArn'].split(':')[-2]}/{name}")
        elif service == "sns":
            self.client("sns").publish(TopicArn=arn, Message=body)
        elif service == "sqs":
            url = self.client("sqs").get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
            self.client("sqs").send_message(QueueUrl=url, MessageBody=body)
        elif service == "events" and parts[5].startswith("event-bus/"):
            ev = payload if isinstance(payload, dict) else json.loads(body)
            self.client("events").put_events(Entries=[{
                "Source": ev["source"], "DetailType": ev["detail-type"], "Detail": json.dumps(ev["detail"]),
                "Resources": ev.get("resources", []), "EventBusName": parts[5].split("/", 1)[1]}])
        else:
            raise ValueError(f"target {arn} is not a kind the local cloud delivers to")

    def deliver_target(self, target: dict, payload: Any, dead_letter_body: Any, source: str,
                       origin: dict[str, str], name_prefix: str) -> None:
        """Deliver to one target; what cannot be delivered goes to the target's dead-letter queue
        (``DeadLetterConfig``), as EventBridge does.

        ``dead_letter_body`` is what the queue receives (a rule's event; a schedule's input) and
        ``origin`` names the sender (``{"RULE_ARN": …}`` or ``{"SCHEDULE_ARN": …}``). Locally a
        delivery is not retried (``RETRY_ATTEMPTS`` 0): a missing or refused target does not heal
        within EventBridge's retry window on a laptop either. A function that runs and raises is not
        a delivery error (EventBridge invokes Lambda asynchronously).
        """
        sender = "scheduler.amazonaws.com" if "SCHEDULE_ARN" in origin else "events.amazonaws.com"
        source_arn = origin.get("SCHEDULE_ARN") or origin.get("RULE_ARN")
        try:
            self._authorize(sender, target["Arn"], _TARGET_ACTIONS.get(target["Arn"].split(":")[2], ""),
                            target.get("RoleArn"), source_arn)
            self.deliver(target["Arn"], payload, source, {"name_prefix": name_prefix})
        except Exception as err:
            dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
            if not dead_letter:
                raise
            code = dead_letter_error_code(err)
            parts = dead_letter.split(":")
            # Scheduler sends to the dead-letter queue with the schedule's role; EventBridge as itself
            refused = self.authorizer.delivery_refusal(
                sender, "sqs:SendMessage", dead_letter, source_arn=source_arn,
                role_arn=target.get("RoleArn") if sender.startswith("scheduler") else None,
            ) if self.authorizer is not None else None
            if refused:
                self.failures.append({"arn": target["Arn"], "source": source, "error": repr(err),
                                      "dead_letter_refused": refused})
                self.log(f"[events] {source} -> {target['Arn'].split(':')[-1]}: {code} ({err}); the event is lost: "
                         f"{refused}")
                return
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
            attributes = {"ERROR_CODE": code, "ERROR_MESSAGE": str(err)[:1000], **origin,
                          "TARGET_ARN": target["Arn"], "RETRY_ATTEMPTS": "0"}
            body = dead_letter_body if isinstance(dead_letter_body, str) else json.dumps(dead_letter_body)
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v})
            self.failures.append({"arn": target["Arn"], "source": source, "error": repr(err),
                                  "dead_letter": dead_letter})
            self.log(f"[events] {source} -> {target['Arn'].split(':')[-1]}: {code} ({err}); the event went to "
                     f"the dead-letter queue {parts[5]}")

    def _authorize(self, sender: str, arn: str, action: str, role_arn: str | None, source_arn: str | None) -> None:
        """Refuse, as AWS would, a delivery the target's role or resource policy does not allow."""
        if self.authorizer is None or not action:
            return
        if role_arn is None and (sender.startswith("scheduler") or action in ("states:StartExecution",
                                                                               "events:PutEvents")):
            refused = f"{sender} needs a RoleArn to call {action} on {arn}" if self.authorizer.enforce else None
        else:
            refused = self.authorizer.delivery_refusal(sender, action, arn, role_arn=role_arn, source_arn=source_arn)
        if refused:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": refused}}, action.split(":")[1])

    def send_to_rule(self, rule: Any, event: dict, original: Callable | None = None) -> None:
        """What EventBridge does with one event and one rule (moto `Rule`)."""
        if getattr(rule, "state", "ENABLED") != "ENABLED":
            return
        pattern = getattr(rule, "event_pattern", None)
        raw = getattr(pattern, "_raw_pattern", None) if pattern is not None else None
        if not raw:
            return  # schedule rules are fired by the clock
        pattern_dict = raw if isinstance(raw, dict) else json.loads(raw)
        if not matches(pattern_dict, event):
            return
        others = []
        for target in list(rule.targets):
            service = target["Arn"].split(":")[2]
            if service in ("lambda", "states", "sns", "events", "sqs"):
                payload = target_input(target, event, rule.name, rule.arn)
                self.submit(self.deliver_target, target, payload, event, f"rule {rule.name}",
                            {"RULE_ARN": rule.arn}, rule.name[:40])
            else:
                others.append(target)
        if others and original is not None:
            saved = rule.targets
            try:
                rule.targets = others
                original(rule, event)
            finally:
                rule.targets = saved


# the action EventBridge (or Scheduler) performs on each kind of target
_TARGET_ACTIONS = {"lambda": "lambda:InvokeFunction", "states": "states:StartExecution", "sns": "sns:Publish",
                   "sqs": "sqs:SendMessage", "events": "events:PutEvents"}


def dead_letter_error_code(err: Exception) -> str:
    """EventBridge's ``ERROR_CODE`` for a failed delivery (its documented codes, not SDK names)."""
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__)
    if "AccessDenied" in code or "NotAuthorized" in code or "Unauthorized" in code:
        return "NO_PERMISSIONS"
    if "NotFound" in code or "DoesNotExist" in code or "NoSuch" in code:
        return "NO_RESOURCE"
    if "Throttl" in code or "TooManyRequests" in code or "SlowDown" in code:
        return "THROTTLING"
    if "AlreadyExists" in code:
        return "RESOURCE_ALREADY_EXISTS"
    if "Invalid" in code or "Validation" in code:
        return "INVALID_PARAMETER"
    if "Connect" in code or "Timeout" in code:
        return "CONNECTION_FAILURE" if "Connect" in code else "TIMEOUT"
    return "SDK_CLIENT_ERROR"


def normalize_event(event: dict) -> dict:
    event = dict(event)
    t = event.get("time")
    if isinstance(t, (int, float)):
        event["time"] = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event.pop("ingestion-time", None)
    return event


def s3_event(account_id: str, region: str, bucket: str, key: Any, event_name: str) -> dict:
    """The EventBridge event S3 sends for an object (shape of the S3 user guide)."""
    kind = event_name.split(":")[1] if ":" in event_name else event_name
    detail_type = {"ObjectCreated": "Object Created", "ObjectRemoved": "Object Deleted",
                   "ObjectRestore": "Object Restore Completed", "ObjectTagging": "Object Tags Added",
                   "ObjectAcl": "Object ACL Updated"}.get(kind, kind)
    reason = {"Put": "PutObject", "Post": "POST Object", "Copy": "CopyObject",
              "CompleteMultipartUpload": "CompleteMultipartUpload", "Delete": "DeleteObject",
              "DeleteMarkerCreated": "DeleteObject"}.get(event_name.split(":")[-1], event_name.split(":")[-1])
    obj: dict[str, Any] = {"key": key.name, "size": key.size, "etag": key.etag.replace('"', ""),
                           "sequencer": f"{int(time.time() * 1e6):X}"}
    if getattr(key, "version_id", None) and key.version_id != "null":
        obj["version-id"] = key.version_id
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.s3",
        "account": account_id, "time": iso_now(), "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj,
                   "request-id": uuid.uuid4().hex[:16].upper(), "requester": account_id,
                   "source-ip-address": "127.0.0.1", "reason": reason},
    }


def put_service_event(account_id: str, region: str, event: dict) -> None:
    """An AWS service's event (S3's, Step Functions' status changes) on the account's default bus, as AWS
    sends it: to every rule there (no PutEvents, no caller to authorize), delivered as the bus delivers."""
    from moto.events import models as events_models

    backend = events_models.events_backends[account_id][region]
    default = backend.event_buses.get("default")
    for rule in list(default.rules.values()) if default else []:
        rule.send_to_targets(copy.deepcopy(event))


# --------------------------------------------------------------------------- the moto seams

def _patch(seam: Seam) -> None:
    """Deliver moto's rule matches and S3's EventBridge events through ``seam.current`` (an `EventBus`)."""
    from moto.events import models as events_models
    from moto.s3 import notifications

    def send_to_targets(self, original_event: dict, transform_input: bool = True) -> None:
        bus = seam.current
        if bus is None:
            return seam["send_to_targets"](self, original_event, transform_input)
        bus.send_to_rule(self, normalize_event(original_event), seam["send_to_targets"])

    def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        bus = seam.current
        if bus is None:
            return seam["_send_event_bridge_message"](account_id, bucket, event_name, key)
        try:
            event = s3_event(account_id, bucket.region_name, bucket.name, key,
                             str(getattr(event_name, "value", event_name)))
            put_service_event(account_id, bucket.region_name, event)
        except Exception as err:  # noqa: BLE001 - asynchronous in AWS: never fails the upload
            bus.log(f"[events] S3 event for s3://{bucket.name}/{key.name} not sent: {err}")

    seam.replace(events_models.Rule, "send_to_targets", send_to_targets)
    seam.replace(notifications, "_send_event_bridge_message", _send_event_bridge_message)


SEAM = Seam(_patch)
