"""`LocalCloud`: a synthesized stack running in this process on moto, without Docker or an AWS account.

    with LocalCloud("cdk.out", aws_port=5000, api_port=3000) as cloud:
        cloud.outputs["ApiUrl"]          # stack outputs (also via `aws cloudformation describe-stacks`)
        cloud.client("s3").put_object(…) # S3 → EventBridge → Step Functions / Lambda, asynchronously
        cloud.wait_idle()                # until event deliveries are done
        cloud.tick(now=time.time() + 3600)   # fire schedules that are due by then
        cloud.advance(1800)              # the local clock 30 minutes on: Wait states, task timeouts, schedules
        cloud.evaluate_alarms()          # alarms against published metrics → SNS → console

See docs/local.md for what is emulated and how it differs from AWS.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import assets, distributedmap, functionlogs, lambda_runtime, sns, sts
from . import cloudwatch as cloudwatch_mod
from . import events as events_mod
from . import sagemaker as sagemaker_mod
from . import stepfunctions as stepfunctions_mod
from .apigw import LocalApiServer
from .authorization import AccessDenied, Authorizer
from .clock import LocalClock, next_fire
from .cloudwatch import CloudWatch
from .events import EventBus, target_input
from .lambda_runtime import FunctionSpec, Invocation, LambdaRuntime
from .resources import PROVISIONERS, DeployContext, Schedule, unsupported_types
from .state import Saved, StateDir
from .template import ACCOUNT_ID, Resolver, Template, TemplateError, creation_order

# The local clock's control path on the AWS endpoint (`LocalCloud._clock_control`): not an AWS API.
CLOCK_PATH = "/_localcloud/clock"
_active_lock = threading.Lock()
_active: LocalCloud | None = None

# Where a running local cloud hooks into moto, in the order they are installed (and uninstalled).
_SEAMS = (lambda_runtime.SEAM, events_mod.SEAM, stepfunctions_mod.SEAM, stepfunctions_mod.STATUS_EVENTS,
          distributedmap.SEAM, sns.SEAM, sts.SEAM, sagemaker_mod.SEAM, cloudwatch_mod.SEAM)


_WAIT_CONDITION_WARNING = ".*WaitConditionHandle.*"


def _ignore_wait_condition_warning() -> None:
    """moto warns that the outputs stack's WaitConditionHandle is not implemented; silence it, adding the
    filter only when it is not there yet (each start used to add it again, moving it ahead of others)."""
    if not any(f[0] == "ignore" and f[1] is not None and f[1].pattern == _WAIT_CONDITION_WARNING
               for f in warnings.filters):
        warnings.filterwarnings("ignore", message=_WAIT_CONDITION_WARNING)


class DeployError(Exception):
    """A resource of the template could not be created locally (names the resource and the cause)."""


class _Placeholder(dict):
    """Attributes of a resource the local cloud does not emulate (listed in the start-up warning)."""

    def __init__(self, lid: str):
        super().__init__()
        self.lid = lid

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return f"{self.lid}.{key}(not-emulated)"


def synthesize(project_dir: str | Path = ".", outdir: str | Path | None = None,
               timeout: float = 600, context: dict[str, Any] | None = None) -> Path:
    """Run the CDK app named in `<project_dir>/cdk.json` ("app") into `outdir`; returns the cloud assembly.

    `context` reaches the app as the CDK CLI passes `-c` values (`CDK_CONTEXT_JSON`), on top of
    cdk.json: what the caller knows of its app (Shipyard's CLI asks for no layers this way).
    """
    project_dir = Path(project_dir).resolve()
    cdk_json = project_dir / "cdk.json"
    try:
        app_cmd = json.loads(cdk_json.read_text())["app"]
    except (OSError, KeyError, ValueError) as err:
        raise TemplateError(f"cannot read the app command from {cdk_json}: {err}") from err
    try:
        words = shlex.split(app_cmd)
    except ValueError:
        words = []
    for word in words:  # `python3 app.py` in a directory without app.py: say what a project needs
        if word.endswith(".py") and not (project_dir / word).exists():
            raise TemplateError(
                f"cdk.json's app is `{app_cmd}`, but {project_dir / word} does not exist: the app cdk.json "
                "names must be next to it")
    out = Path(outdir) if outdir else Path(tempfile.mkdtemp(prefix="localcloud-cdk-out-"))
    env = dict(os.environ, CDK_OUTDIR=str(out), CDK_DEFAULT_ACCOUNT=ACCOUNT_ID,
               CDK_CONTEXT_JSON=json.dumps(context or {}),
               CDK_DEFAULT_REGION=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")))
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(app_cmd, shell=True, cwd=project_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0 or not (out / "manifest.json").exists():
        output = proc.stderr[-4000:] or proc.stdout[-4000:]
        raise TemplateError(f"`{app_cmd}` failed (exit {proc.returncode}):\n{output}")
    return out


class LocalCloud:
    """The template's resources on a moto server in this process, with Lambda, events, schedules, alarms, API."""

    def __init__(self, template: Template | dict | str | Path | None = None, *, project_dir: str | Path | None = None,
                 stack_name: str | None = None, aws_port: int = 5000, api_port: int = 3000,
                 host: str = "127.0.0.1", region: str | None = None, verbose: bool = False,
                 clock: bool = True, clock_interval: float = 1.0, alarm_interval: float = 10.0,
                 log: Callable[[str], None] | None = None, context: dict[str, Any] | None = None,
                 iam: bool = True, state_dir: str | Path | None = None, state_interval: float = 30.0):
        """`template`: a `Template`, a template dict, or a cdk.out directory; else `project_dir`'s app is
        synthesized, with `context` (see `synthesize`). `iam`: enforce IAM for the functions' roles and
        check service deliveries against resource policies (False: everything runs with full rights).
        `state_dir`: keep names and data across restarts there (saved at stop and every `state_interval`
        seconds while something changed; see `localcloud/state.py`); None: every start is empty."""
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.host = host
        self._aws_port, self._api_port = aws_port, api_port
        self._template_arg, self._project_dir, self._stack_name = template, project_dir, stack_name
        self._context = context
        self.template: Template | None = None
        self.verbose = verbose
        self._log = log or print
        self._clock_enabled, self._clock_interval, self._alarm_interval = clock, clock_interval, alarm_interval
        self.outputs: dict[str, str] = {}
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.function_errors: list[dict] = []  # invocations that failed (errorType, errorMessage, logs)
        self.error_logs: list[dict] = []  # ERROR/CRITICAL log lines and tracebacks functions printed
        self.notifications: list[dict] = []  # SNS messages to email subscriptions (printed)
        self.cloudwatch = CloudWatch(self.region, client=lambda service: self.client(service),
                                     say=lambda msg: self.say(msg), debug=lambda msg: self.debug(msg))
        self.schedules: list[Schedule] = []
        self.startup_seconds: float | None = None
        self.physical_ids: dict[str, str] = {}
        self._server = None
        self._api: LocalApiServer | None = None
        self.runtime: LambdaRuntime | None = None
        self.training_jobs: sagemaker_mod.TrainingJobs | None = None  # SageMaker training jobs
        # Distributed Map children at once (None: the Lambda runtime's per-function worker cap)
        self.map_concurrency: int | None = distributedmap.concurrency_from_env()
        self.bus: EventBus | None = None
        self._ctx: DeployContext | None = None
        self._stop = threading.Event()
        self._clock_thread: threading.Thread | None = None
        self._session = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._saved_process_state: dict[str, Any] | None = None
        self._tick_lock = threading.Lock()
        # the local cloud's time: Step Functions waits and task timeouts, schedules (`advance` moves it)
        self.clock = LocalClock()
        # directories this cloud made (a synthesized cdk.out) or was handed to own: removed by stop()
        self.temporary_dirs: list[Path] = []
        self.iam = Authorizer(ACCOUNT_ID, self.region, enforce=iam)
        self.cloudwatch.authorizer = self.iam
        self.state: StateDir | None = StateDir(state_dir, state_interval) if state_dir else None
        self._state_ready = False  # restored (or fresh) and saved once: stop() saves it again
        self._state_unhook: Callable[[], None] | None = None
        # function log lines -> CloudWatch Logs /aws/lambda/<name>, a stream per worker
        self.function_logs = functionlogs.FunctionLogs(ACCOUNT_ID, self.region)

    # ------------------------------------------------------------------ logging
    def say(self, msg: str) -> None:
        self._log(msg)

    def debug(self, msg: str) -> None:
        if self.verbose:
            self._log(msg)

    # ------------------------------------------------------------------ addresses and clients
    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self._aws_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self._api_port}"

    @property
    def aws_port(self) -> int:
        return self._aws_port

    @property
    def api_port(self) -> int:
        return self._api_port

    @property
    def session(self):
        with self._clients_lock:
            if self._session is None:
                import boto3

                self._session = boto3.Session(
                    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                    aws_session_token=(os.environ.get("AWS_SESSION_TOKEN")
                                       if os.environ.get("AWS_ACCESS_KEY_ID") else None),
                    region_name=self.region)
            return self._session

    def client(self, service: str, **kwargs: Any):
        """A boto3 client for the local cloud: one per service, shared (boto3 clients are thread-safe,
        sessions are not, so clients are made under a lock); with ``kwargs`` (a ``config=``) a new one."""
        session = self.session
        with self._clients_lock:
            if kwargs:
                return session.client(service, endpoint_url=self.aws_url, region_name=self.region, **kwargs)
            if service not in self._clients:
                self._clients[service] = session.client(service, endpoint_url=self.aws_url, region_name=self.region)
            return self._clients[service]

    def environment(self) -> dict[str, str]:
        """Environment variables that point the AWS CLI, boto3 (and tools built on them) at this cloud."""
        creds = self.session.get_credentials()
        return {"AWS_ENDPOINT_URL": self.aws_url, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _load_template(self) -> Template:
        arg = self._template_arg
        if isinstance(arg, Template):
            return arg
        if isinstance(arg, dict):
            return Template.from_dict(arg, stack_name=self._stack_name or "Stack")
        if arg is not None:
            return Template.load(arg, self._stack_name)
        out = synthesize(self._project_dir or ".", context=self._context)
        self.temporary_dirs.append(out)
        return Template.load(out, self._stack_name)

    def start(self) -> LocalCloud:
        global _active
        started = time.time()
        with _active_lock:
            if _active is not None and _active is not self:
                raise RuntimeError("another LocalCloud is running in this process (moto's state is process-wide)")
            _active = self
        try:
            self.template = self._load_template()
            saved = self.state.load(self.template, self.region) if self.state else None  # errors first
            self._start_moto()
            self._install_seams()
            self._bind_api()
            self._deploy()
            if self.state:
                self._restore_state(saved)
            self._start_api()
            if self._clock_enabled:
                self._clock_thread = threading.Thread(target=self._clock_loop, daemon=True, name="local-clock")
                self._clock_thread.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.time() - started, 2)
        return self

    def stop(self) -> None:
        global _active
        self._stop.set()
        if self._clock_thread:
            self._clock_thread.join(5)
        if self._api:
            self._api.stop()
            self._api = None
        if self.state:
            self.state.stop_saver()
        if self.bus:
            self.bus.wait_idle(10)
        self.function_logs.flush()  # the lines still buffered are in CloudWatch Logs, and in the save
        self._save_state()  # before the workers stop: a running execution is kept as running (-> ABORTED)
        if self.bus:
            self.bus.stop()
        if self.runtime:
            self.runtime.stop()
        if self.training_jobs:
            self.training_jobs.shutdown()
        self.function_logs.stop()  # what the stopped workers printed last; its flusher ends
        for seam in reversed(_SEAMS):  # last in, first out: seams chained on one moto function unwind
            seam.uninstall()
        if self._server:
            try:
                self._server.stop()
            except Exception:
                pass
            self._server = None
        self._restore_process_state()
        if self._ctx:
            for tmp in self._ctx._tmp:
                tmp.cleanup()
            self._ctx._tmp.clear()
        for directory in self.temporary_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.temporary_dirs.clear()
        with _active_lock:
            if _active is self:
                _active = None

    def _start_moto(self) -> None:
        from moto.core.config import default_user_config
        from moto.moto_api._internal.models import moto_api_backend

        from .server import AwsServer

        if self._saved_process_state is None:  # what stop() puts back
            sfn_config = default_user_config.get("stepfunctions")
            self._saved_process_state = {
                "MOTO_PORT": os.environ.get("MOTO_PORT"),
                "stepfunctions": None if sfn_config is None else dict(sfn_config),
            }
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
        moto_api_backend.reset()
        self._server = AwsServer(self.host, self._aws_port)
        self._aws_port = self._server.port
        # moto's Step Functions interpreter calls Lambda & co. through this port
        os.environ["MOTO_PORT"] = str(self._aws_port)
        self._server.intercept(self._clock_control)
        self._server.start()

    def _clock_control(self, req: Any) -> Any:
        """``CLOCK_PATH`` on the AWS endpoint: GET the local clock, POST ``{"advance": seconds}`` to move
        it (``shipyard local clock``: a 30-minute bake without waiting 30 minutes). Not an AWS API."""
        if req.path != CLOCK_PATH:
            return None
        from werkzeug.wrappers import Response

        def answer(status: int, body: dict) -> Response:
            return Response(json.dumps(body), status=status, content_type="application/json")

        fired: list[str] = []
        if req.method == "POST":
            try:
                seconds = float((json.loads(req.get_data() or b"{}") or {}).get("advance"))
                fired = self.advance(seconds)
            except (TypeError, ValueError, AttributeError) as err:
                return answer(400, {"message": f'expected {{"advance": <seconds, >= 0>}}: {err}'})
            self.say(f"[clock] advanced {seconds:g} s" + (f"; fired {', '.join(fired)}" if fired else ""))
        elif req.method != "GET":
            return answer(405, {"message": f"GET or POST {CLOCK_PATH}"})
        return answer(200, {"now": datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="seconds"),
                            "offset_seconds": round(self.clock.offset, 3), "fired": fired})

    def _restore_state(self, saved: Saved | None) -> None:
        """Put the state directory's data back (or, on a first start, save its names), then keep saving."""
        from . import state as state_mod

        assert self.state is not None
        if saved is not None:
            counts = state_mod.restore(self, saved)
            self.state.restored = counts
            self.say(f"state restored from {self.state.path}: " + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                                           for k, v in counts.items()))
        self.state.save(self)  # the names, from the first start on
        self._state_ready = True
        self._state_unhook = self._server.intercept(self.state.mark_dirty)
        self.state.start_saver(self)

    def _save_state(self) -> None:
        if not (self.state and self._state_ready):
            return  # no state directory, or a start that failed: the file keeps what it had
        self._state_ready = False
        if self._state_unhook:
            self._state_unhook()
            self._state_unhook = None
        try:
            seconds = self.state.save(self)
            self.debug(f"[state] saved to {self.state.file} in {seconds:.2f}s")
        except Exception as err:  # noqa: BLE001 - stopping goes on; the file keeps the last good save
            self.say(f"[state] could not save {self.state.file}: {err!r} (it keeps the last save)")

    def _restore_process_state(self) -> None:
        """MOTO_PORT and moto's Step Functions config as they were before start()."""
        saved, self._saved_process_state = self._saved_process_state, None
        if saved is None:
            return
        from moto.core.config import default_user_config

        if saved["MOTO_PORT"] is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved["MOTO_PORT"]
        if saved["stepfunctions"] is None:
            default_user_config.pop("stepfunctions", None)
        else:
            default_user_config["stepfunctions"] = saved["stepfunctions"]

    def _install_seams(self) -> None:
        self.runtime = LambdaRuntime(self.aws_url, self.region, on_log=self._on_function_log,
                                     on_invoked=self._on_function_invoked)
        self.runtime.credentials = self.iam.credentials_for
        lambda_runtime.SEAM.install(self.runtime)
        self._server.authorizer = self.iam
        self.bus = EventBus(self.aws_url, self.region, log=self.say, session=self.session)
        self.bus.authorizer = self.iam
        events_mod.SEAM.install(self.bus)
        stepfunctions_mod.SEAM.install(self.clock)
        stepfunctions_mod.STATUS_EVENTS.install(self.bus)  # Step Functions Execution Status Change events
        # Distributed Map children run at most as many at once as a function has workers
        distributedmap.SEAM.install(self.map_concurrency or self.runtime.concurrency)
        sns.SEAM.install(self)
        sts.SEAM.install()
        self.training_jobs = sagemaker_mod.TrainingJobs(self.aws_url, self.region, authorizer=self.iam,
                                                        say=self.say, verbose=self.verbose)
        sagemaker_mod.SEAM.install(self.training_jobs)
        cloudwatch_mod.SEAM.install()

    # ------------------------------------------------------------------ deployment
    def _deploy(self) -> None:
        tpl = self.template
        assert tpl is not None
        ctx = DeployContext(template=tpl, session=self.session, endpoint_url=self.aws_url, runtime=self.runtime,
                            region=self.region, log=self.say, names=self.state.names if self.state else {})
        self._ctx = ctx
        resolver = Resolver(tpl, region=self.region)
        missing = unsupported_types(tpl)
        if missing:
            listing = "; ".join(f"{t} ({', '.join(ids)})" for t, ids in sorted(missing.items()))
            msg = f"WARNING: not emulated locally, skipped: {listing}"
            self.warnings.append(msg)
            self.say(msg)
        from botocore.exceptions import ClientError, ParamValidationError

        try:  # where `cdk deploy` publishes them: a training job reads its code from there
            published = assets.publish(tpl, ctx.client("s3"), ACCOUNT_ID, self.region)
        except (ClientError, OSError) as err:
            raise DeployError(f"file assets: {err}") from err
        self.debug(f"[deploy] file assets published: {', '.join(published) or 'none'}")
        for lid in creation_order(tpl.resources):
            res = tpl.resources[lid]
            rtype = res.get("Type", "?")
            if res.get("Condition") and not resolver.condition(res["Condition"]):
                continue
            if rtype not in PROVISIONERS:
                resolver.physical_ids[lid] = lid
                resolver.attributes[lid] = _Placeholder(lid)
                continue
            try:
                props = resolver.resolve(res.get("Properties", {}) or {}, where=lid)
                physical, attrs = PROVISIONERS[rtype](lid, props, ctx)
            except (TemplateError, ClientError, ParamValidationError, KeyError, ValueError, TypeError,
                    AccessDenied) as err:
                detail = err if not isinstance(err, KeyError) else f"missing property {err}"
                raise DeployError(f"{lid} ({rtype}): {detail}") from err
            resolver.physical_ids[lid] = physical
            resolver.attributes[lid] = attrs
            self.debug(f"[deploy] {lid} ({rtype}) -> {physical}")
        self.physical_ids = dict(resolver.physical_ids)
        self.schedules = ctx.schedules
        self.notes = ctx.notes
        for a in self.cloudwatch.alarms():
            if a.metric_data_queries and not a.metric_name:
                self.notes.append(f"alarm {a.name}: metric math alarms are not evaluated locally")
        # outputs
        outputs: dict[str, dict] = {}
        for key, spec in (tpl.body.get("Outputs") or {}).items():
            if spec.get("Condition") and not resolver.condition(spec["Condition"]):
                continue
            value = resolver.resolve(spec["Value"], where=f"Outputs.{key}")
            value = self._localize(value if isinstance(value, str) else json.dumps(value))
            self.outputs[key] = value
            outputs[key] = {"Value": value, **({"Description": spec["Description"]} if spec.get("Description") else {})}
        body = {"Resources": {"LocalCloud": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
        if outputs:
            body["Outputs"] = outputs
        _ignore_wait_condition_warning()
        self.client("cloudformation").create_stack(StackName=tpl.stack_name, TemplateBody=json.dumps(body))

    def _localize(self, value: str) -> str:
        """Execute-API URLs of the template's REST APIs point at the local API server."""
        def repl(m: re.Match) -> str:
            return self.api_url if self._ctx and m.group(1) in self._ctx.apis else m.group(0)

        return re.sub(r"https://([a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com", repl, value)

    def _bind_api(self) -> None:
        self._api = LocalApiServer([], self._invoke_for_api, port=self._api_port, host=self.host,
                                   region=self.region, secrets=self._secret_for, api_keys=self._api_keys,
                                   log=self.debug, authorizer=self.iam)
        self._api_port = self._api.port

    def _start_api(self) -> None:
        assert self._ctx is not None and self._api is not None
        apis = list(self._ctx.apis.values())
        for api in apis:
            if not api.stages:
                api.stages.append("prod")
        self._api.apis = apis
        self._api.start()

    def _invoke_for_api(self, function_arn: str, event: dict) -> tuple[bytes, bool]:
        ctx = event.get("requestContext") or {}
        source = (f"arn:aws:execute-api:{self.region}:{ACCOUNT_ID}:{ctx.get('apiId')}/{ctx.get('stage')}/"
                  f"{event.get('httpMethod')}{event.get('path', '')}")
        refused = self.iam.delivery_refusal("apigateway.amazonaws.com", "lambda:InvokeFunction", function_arn,
                                            source_arn=source)
        if refused:  # API Gateway: "Execution failed due to configuration error: Invalid permissions on Lambda"
            self.say(f"[api] {source}: invalid permissions on Lambda function: {refused}")
            return json.dumps({"errorMessage": "Invalid permissions on Lambda function"}).encode(), True
        # The bus's client: no SDK retries and a read timeout past Lambda's 900 s, as deliveries need.
        resp = self.bus.client("lambda").invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        return resp["Payload"].read(), bool(resp.get("FunctionError"))

    def _secret_for(self, access_key: str) -> str | None:
        creds = self.session.get_credentials()
        if access_key == creds.access_key:
            return creds.secret_key
        try:
            from moto.iam.models import iam_backends

            key = iam_backends[ACCOUNT_ID]["aws"].access_keys.get(access_key)
            return key.secret_access_key if key else None
        except Exception:
            return None

    def _api_keys(self) -> dict[str, str]:
        items = self.client("apigateway").get_api_keys(includeValues=True).get("items", [])
        return {k["value"]: k["id"] for k in items if k.get("enabled", True) and k.get("value")}

    # ------------------------------------------------------------------ functions: logs, metrics, errors
    def _on_function_log(self, spec: FunctionSpec, line: str) -> None:
        self.function_logs.line(spec.name, line)  # CloudWatch Logs, as Lambda delivers them
        if self.verbose:
            self._log(f"[{spec.logical_id or spec.name}] {line}")
        elif _is_error_line(line):  # errors a function logs (and handles) are shown even when not verbose
            self.error_logs.append({"function": spec.name, "logical_id": spec.logical_id, "line": line})
            self._log(f"[{spec.logical_id or spec.name}] {line}")
        if line.startswith("{") and '"_aws"' in line:
            try:
                self.cloudwatch.put_emf(json.loads(line))
            except (ValueError, KeyError, TypeError):
                pass

    def _on_function_invoked(self, spec: FunctionSpec, inv: Invocation) -> None:
        self.function_logs.invoked(spec.name, inv.request_id, inv.duration_ms, spec.memory, inv.error)
        dims = [{"Name": "FunctionName", "Value": spec.name}]
        self.put_metrics("AWS/Lambda", [
            {"MetricName": "Invocations", "Value": 1.0, "Unit": "Count", "Dimensions": dims},
            {"MetricName": "Errors", "Value": 1.0 if inv.failed else 0.0, "Unit": "Count", "Dimensions": dims},
            {"MetricName": "Duration", "Value": float(inv.duration_ms), "Unit": "Milliseconds", "Dimensions": dims},
        ])
        if inv.failed:
            err = dict(inv.error or {})
            record = {"function": spec.name, "logical_id": spec.logical_id, "errorType": err.get("errorType"),
                      "errorMessage": err.get("errorMessage"), "logs": inv.logs, "at": time.time()}
            self.function_errors.append(record)
            self.say(f"[lambda] {spec.logical_id or spec.name} failed: {record['errorType']}: {record['errorMessage']}")

    def intercept(self, fn):
        """Fault injection on the AWS endpoint: ``fn(request)`` (a werkzeug Request) returns a
        werkzeug Response to answer instead of moto, or None to pass. Returns a remover."""
        if self._server is None:
            raise RuntimeError("the local cloud is not started")
        return self._server.intercept(fn)

    def put_metrics(self, namespace: str, data: list[dict]) -> None:
        """Store metric data as PutMetricData would (in-process, no HTTP)."""
        self.cloudwatch.put_metrics(namespace, data)

    @property
    def alarm_changes(self) -> list[dict]:
        """Every alarm state change so far (alarm, from, to, reason, at)."""
        return self.cloudwatch.alarm_changes

    # ------------------------------------------------------------------ waiting
    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Until event deliveries (and the work they started synchronously) are done."""
        return self.bus.wait_idle(timeout) if self.bus else True

    def wait_for_executions(self, state_machine_arn: str | None = None, timeout: float = 120.0) -> list[dict]:
        """Until every Step Functions execution (of one state machine, or all) has finished; returns them."""
        sfn = self.client("stepfunctions")
        deadline = time.time() + timeout
        self.wait_idle(timeout)
        arns = [state_machine_arn] if state_machine_arn else [
            m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
        while True:
            execs = [e for arn in arns for e in sfn.list_executions(stateMachineArn=arn)["executions"]]
            if all(e["status"] != "RUNNING" for e in execs):
                return execs
            if time.time() > deadline:
                raise TimeoutError(f"executions still running after {timeout}s: "
                                   + ", ".join(e["name"] for e in execs if e["status"] == "RUNNING"))
            time.sleep(0.2)

    # ------------------------------------------------------------------ clock: schedules and alarms
    def _clock_loop(self) -> None:
        last_alarms = time.time()
        while not self._stop.wait(self._clock_interval):
            try:
                self.tick()
                if time.time() - last_alarms >= self._alarm_interval:
                    last_alarms = time.time()
                    self.evaluate_alarms()
            except Exception as err:  # noqa: BLE001 - the clock keeps going
                self.say(f"[clock] {err!r}")

    def tick(self, now: float | None = None) -> list[str]:
        """Fire every enabled schedule that is due at `now` (default: the local clock's time); returns their names."""
        with self._tick_lock:  # the clock thread and callers: a due schedule fires once
            return self._tick(self.clock.now() if now is None else now)

    def advance(self, seconds: float) -> list[str]:
        """Move the local clock `seconds` ahead (never back: negative is a ValueError): Wait states and
        task timeouts that end by then end, and the schedules due by then fire; returns their names (`tick`).
        Alarms are still evaluated on real time (metrics carry real timestamps)."""
        self.clock.advance(seconds)
        return self.tick()

    def _tick(self, now: float) -> list[str]:
        fired = []
        for s in self.schedules:
            if not s.enabled:
                continue
            since = s.last_fired if s.last_fired is not None else s.created_at
            due = next_fire(s.expression, since, now)
            if due is not None and due <= now:
                s.last_fired = now
                self.fire_schedule(s.name)
                fired.append(s.name)
        return fired

    def fire_schedule(self, name: str) -> None:
        """Deliver a schedule's targets now, as if it was due."""
        s = next((x for x in self.schedules if x.name == name), None)
        if s is None:
            raise KeyError(f"no schedule named {name!r} (have: {', '.join(x.name for x in self.schedules)})")
        self.debug(f"[clock] schedule {name} fires")
        event = {"version": "0", "id": os.urandom(16).hex(), "detail-type": "Scheduled Event",
                 "source": "aws.events", "account": ACCOUNT_ID, "time": _iso(self.clock.now()),
                 "region": self.region, "resources": [s.arn], "detail": {}}
        scheduler = s.kind == "scheduler"  # Scheduler's dead letters hold the target's input, name the schedule
        for t in s.targets:
            payload = target_input(t, event, s.name, s.arn)  # a Scheduler target always has its Input
            self.bus.submit(self.bus.deliver_target, t, payload, payload if scheduler else event,
                            f"schedule {s.name}", {"SCHEDULE_ARN" if scheduler else "RULE_ARN": s.arn}, s.name[:40])

    def evaluate_alarms(self, now: float | None = None) -> list[dict]:
        """Evaluate every metric alarm against the metrics published so far; notify on state changes."""
        return self.cloudwatch.evaluate_alarms(now)


def _iso(epoch_seconds: float) -> str:
    """An event's `time` (EventBridge's format, as `events.iso_now`) for a moment of the local clock."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_error_line(line: str) -> bool:
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            return False
        level = str(doc.get("level", doc.get("levelname", ""))).upper() if isinstance(doc, dict) else ""
        return level in ("ERROR", "CRITICAL")
    return line.startswith(("[ERROR]", "ERROR", "CRITICAL", "Traceback"))
