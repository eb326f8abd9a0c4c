"""SageMaker training jobs on the local cloud: CreateTrainingJob runs the job's script for real.

moto (5.2.5) records a training job `Completed` at once and runs nothing, has no StopTrainingJob, and
its Step Functions interpreter refuses the ``sagemaker`` integrations. `SEAM` hooks the three:

- **State and runner** (`TrainingJobs`, moto's `FakeTrainingJob` objects updated in place, so
  DescribeTrainingJob and ListTrainingJobs answer with the live status). A job runs as the SageMaker
  training toolkit runs a script-mode entry point in a framework image (github.com/aws/
  sagemaker-training-toolkit: ``trainer.train`` → ``entry_point.run`` → ``process.ProcessRunner``):
  ``sagemaker_submit_directory`` (a ``.tar.gz`` in S3) is extracted into ``code/``, then
  ``<python> <sagemaker_program> --key value …`` runs there with the toolkit's ``SM_*`` variables.
  Each job has a root directory of its own standing in for ``/opt/ml`` (``SAGEMAKER_BASE_DIR``, the
  toolkit's own variable for that): ``SM_MODEL_DIR``, ``SM_OUTPUT_DIR`` (its ``failure`` file),
  ``SM_OUTPUT_DATA_DIR``, ``SM_CHANNEL_<NAME>``, ``SM_INPUT_CONFIG_DIR`` (``hyperparameters.json``…)
  point into it. The worker is a subprocess in its own process group, with the job role's session
  credentials and ``AWS_ENDPOINT_URL``; the instance type's memory is its limit, ``MaxRuntimeInSeconds``
  its time. On success ``SM_MODEL_DIR`` is uploaded as ``<S3OutputPath>/<job>/output/model.tar.gz``.
  Its output goes to CloudWatch Logs, its status changes to EventBridge, as SageMaker's do.
- **Wire**: CreateTrainingJob checked as SageMaker checks it (name, duplicate, role trust, limits);
  StopTrainingJob (moto's SageMaker responses lack it).
- **Step Functions**: ``arn:aws:states:::sagemaker:<action>`` (request-response, for what moto's
  SageMaker serves) and ``createTrainingJob.sync`` (`StateTaskSageMaker`), chained in front of
  moto's task factory so other seams hooking it keep working.
"""
from __future__ import annotations

import copy
import functools
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lambda_runtime import INHERITED_ENV, _descendants, _pss_kb, _status_kb
from .patches import Seam

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
HOST = "algo-1"
# SIGTERM, then this long to save the model before SIGKILL (StopTrainingJob and StoppingCondition:
# "This delays job termination for 120 seconds", SageMaker API reference).
STOP_GRACE_SECONDS = 120.0
POLL_SECONDS = 0.05  # between looks at a running job's memory, time and stop request
# CreateTrainingJob's TrainingJobName constraint (SageMaker API reference).
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Memory (MiB) of the ml.* instance types a job may ask for (EC2 instance specifications; the
# SageMaker instance is the EC2 one). A job's worker is stopped when it uses more.
INSTANCE_MEMORY_MIB = {
    "ml.m4.xlarge": 16384, "ml.m4.2xlarge": 32768, "ml.m4.4xlarge": 65536, "ml.m4.10xlarge": 163840,
    "ml.m4.16xlarge": 262144,
    "ml.m5.large": 8192, "ml.m5.xlarge": 16384, "ml.m5.2xlarge": 32768, "ml.m5.4xlarge": 65536,
    "ml.m5.12xlarge": 196608, "ml.m5.24xlarge": 393216,
    "ml.m6i.large": 8192, "ml.m6i.xlarge": 16384, "ml.m6i.2xlarge": 32768, "ml.m6i.4xlarge": 65536,
    "ml.m6i.8xlarge": 131072, "ml.m6i.12xlarge": 196608, "ml.m6i.16xlarge": 262144, "ml.m6i.24xlarge": 393216,
    "ml.m6i.32xlarge": 524288,
    "ml.c4.xlarge": 7680, "ml.c4.2xlarge": 15360, "ml.c4.4xlarge": 30720, "ml.c4.8xlarge": 61440,
    "ml.c5.xlarge": 8192, "ml.c5.2xlarge": 16384, "ml.c5.4xlarge": 32768, "ml.c5.9xlarge": 73728,
    "ml.c5.18xlarge": 147456,
    "ml.c6i.xlarge": 8192, "ml.c6i.2xlarge": 16384, "ml.c6i.4xlarge": 32768, "ml.c6i.8xlarge": 65536,
    "ml.r5.large": 16384, "ml.r5.xlarge": 32768, "ml.r5.2xlarge": 65536, "ml.r5.4xlarge": 131072,
    "ml.r5.8xlarge": 262144, "ml.r5.12xlarge": 393216, "ml.r5.24xlarge": 786432,
    "ml.g4dn.xlarge": 16384, "ml.g4dn.2xlarge": 32768, "ml.g5.xlarge": 16384, "ml.g5.2xlarge": 32768,
}
# What SageMaker says when the instance ran out of memory (a ClientError-class FailureReason).
OUT_OF_MEMORY = ("OutOfMemoryError: Please use an instance type with more memory, or reduce the size of job "
                 "data processed on an instance.")
_STATUS_MESSAGES = {
    "Starting": "Starting the training job", "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model", "Completed": "Training job completed",
    "Failed": "Training job failed", "Stopping": "Stopping the training job", "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped: it exceeded MaxRuntimeInSeconds",
}
TERMINAL = ("Completed", "Failed", "Stopped")
# The tag Step Functions puts on a job it runs with .sync (beside AWS_STEP_FUNCTIONS_EXECUTION_ARN; as in
# Batch jobs' environment).
MANAGED_TAG = {"Key": "MANAGED_BY_AWS", "Value": "STARTED_BY_STEP_FUNCTIONS"}
# Variables the sklearn framework image sets (its Dockerfile), so scripts print lines as they go.
_IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "UTF-8"}


class TrainingJobError(Exception):
    """A CreateTrainingJob/StopTrainingJob SageMaker refuses: ``code`` is its error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class _JobFailed(Exception):
    """The job ends `Failed` with this FailureReason."""


def _now():
    from moto.core.utils import utcnow

    return utcnow()


def _tree_mb(pid: int) -> float:
    """A process tree's memory as the Lambda workers count it (lambda_runtime): the root's peak
    resident memory, or the proportional resident memory of it and all its descendants if larger."""
    own = _status_kb(pid, "VmHWM")
    children = _descendants(pid)
    if not children:
        return own / 1024
    return max(own, sum(_pss_kb(p) for p in [pid, *children])) / 1024


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def job_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:training-job/{name}"


def _s3_url(url: str) -> tuple[str, str]:
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"expected an s3:// URL, got {url!r}")
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key


@dataclass
class _Run:
    """One job's runner: its root directory, worker process and stop request."""
    name: str
    job: Any  # moto's FakeTrainingJob, updated in place
    root: Path
    credentials: dict[str, str]
    memory_mb: int
    stop_reason: str | None = None  # "Stopped" (StopTrainingJob) or "MaxRuntimeExceeded"
    stop_requested: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen | None = None
    peak_mb: float = 0.0
    log_stream: str = ""
    thread: threading.Thread | None = None


class TrainingJobs:
    """The local cloud's training jobs: checks at creation, a runner thread and worker per job, stops."""

    def __init__(self, endpoint_url: str, region: str, authorizer: Any = None,
                 say: Callable[[str], None] = print, verbose: bool = False):
        self.endpoint_url, self.region = endpoint_url, region
        self.authorizer = authorizer  # an `authorization.Authorizer`: trust check and role sessions
        self.say, self.verbose = say, verbose
        self.memory_mib = dict(INSTANCE_MEMORY_MIB)  # a laptop's tests may lower an instance's memory
        self.stop_grace = STOP_GRACE_SECONDS
        self.runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self.creating = threading.Lock()  # check-then-create of one name at a time (a retry racing its first try)
        self._dir = Path(tempfile.mkdtemp(prefix="localcloud-sagemaker-"))
        self._logs: dict[str, list[dict]] = {}
        self._logs_lock = threading.Lock()
        self._closing = False  # the cloud stops: running jobs end without upload or console report

    # ------------------------------------------------------------------ creation
    def check(self, backend: Any, params: dict) -> None:
        """What CreateTrainingJob (``params``: its request) refuses before a job exists (`TrainingJobError`,
        AWS's code)."""
        name = params.get("TrainingJobName") or ""
        if len(name) > 63:
            raise TrainingJobError("ValidationException", f"1 validation error detected: Value '{name}' at "
                                   "'trainingJobName' failed to satisfy constraint: Member must have length "
                                   "less than or equal to 63")
        if not JOB_NAME.match(name):
            raise TrainingJobError("ValidationException", f"1 validation error detected: Value '{name}' at "
                                   "'trainingJobName' failed to satisfy constraint: Member must satisfy regular "
                                   f"expression pattern: {JOB_NAME.pattern[1:-1]}")
        if name in backend.training_jobs:
            arn = backend.training_jobs[name].arn
            raise TrainingJobError("ResourceInUse", "Training job names must be unique within an AWS account and "
                                   f"region, and a training job with this name already exists ({arn})")
        # CreateTrainingJob's map constraints (API reference): at most 100 entries; HyperParameters keys up
        # to 256 and values up to 2500 characters, Environment keys and values up to 512
        for what, values, key_max, value_max in (("hyperParameters", params.get("HyperParameters"), 256, 2500),
                                                 ("environment", params.get("Environment"), 512, 512)):
            if len(values or {}) > 100:
                raise TrainingJobError("ValidationException", f"1 validation error detected: Value at '{what}' "
                                       "failed to satisfy constraint: Member must have length less than or equal "
                                       "to 100")
            for key, value in (values or {}).items():
                if not isinstance(value, str):
                    raise TrainingJobError("ValidationException", f"{what}: every value must be a string; "
                                           f"{key!r} is {json.dumps(value)} (quote it, e.g. States.Format)")
                if len(key) > key_max or len(value) > value_max:
                    raise TrainingJobError("ValidationException", f"1 validation error detected: Value at "
                                           f"'{what}' failed to satisfy constraint: Map keys must have length "
                                           f"less than or equal to {key_max}, map values length less than or "
                                           f"equal to {value_max} ({key!r}: {len(key)} and {len(value)} "
                                           "characters)")
        instance = (params.get("ResourceConfig") or {}).get("InstanceType")
        if instance not in self.memory_mib:
            raise TrainingJobError("ValidationException", f"1 validation error detected: Value '{instance}' at "
                                   "'resourceConfig.instanceType' failed to satisfy constraint: Member must "
                                   "satisfy enum value set (the local cloud knows: "
                                   f"{', '.join(sorted(self.memory_mib))})")
        role = params.get("RoleArn") or ""
        auth = self.authorizer
        source = job_arn(backend.account_id, backend.region_name, name)  # SageMaker's aws:SourceArn
        if auth is not None and auth.enforce and not auth.trust_decision(role, "sagemaker.amazonaws.com",
                                                                         source).allowed:
            raise TrainingJobError("ValidationException", f"Could not assume role {role}. Please ensure that the "
                                   "role exists and allows principal 'sagemaker.amazonaws.com' to assume the role.")

    @staticmethod
    def born(job: Any) -> None:
        """A job as moto makes it (`FakeTrainingJob.__init__`), made `InProgress`/`Starting` before anyone
        can read it: moto's would be `Completed` already, with a made-up metric."""
        now = _now()
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.creation_time = job.last_modified_time = now
        job.training_start_time = job.training_end_time = None
        job.model_artifacts = None  # set once uploaded
        job.final_metric_data_list = None  # moto's made-up metric
        job.failure_reason = None
        job.secondary_status_transitions = [{"Status": "Starting", "StartTime": now,
                                             "StatusMessage": _STATUS_MESSAGES["Starting"]}]

    def launch(self, job: Any) -> None:
        """A job just created: run by a thread of its own."""
        self._emit(job)
        creds = {}
        if self.authorizer is not None:  # SageMaker calls AWS as a session of the job's role
            creds = self.authorizer.credentials_for(job.role_arn, "SageMaker", "sagemaker.amazonaws.com",
                                                    source_arn=job.arn) or {}
        root = self._dir / job.training_job_name
        run = _Run(job.training_job_name, job, root, creds,
                   self.memory_mib[job.resource_config["InstanceType"]],
                   log_stream=f"{job.training_job_name}/{HOST}-{int(time.time())}")
        with self._lock:
            self.runs[run.name] = run
        run.thread = threading.Thread(target=self._run, args=(run,), daemon=True, name=f"sagemaker-{run.name}")
        run.thread.start()

    # ------------------------------------------------------------------ stopping and waiting
    def stop(self, backend: Any, name: str) -> None:
        """StopTrainingJob: `Stopping`, SIGTERM to the worker, then `Stopped` (with the model uploaded)."""
        job = backend.training_jobs.get(name)
        if job is None:
            raise TrainingJobError("ValidationException", f"Requested resource not found: training job {name}")
        run = self.runs.get(name)
        if job.training_job_status != "InProgress" or run is None:
            raise TrainingJobError("ValidationException", f"The training job {name} is in status "
                                   f"{job.training_job_status}: only an InProgress job can be stopped.")
        self._request_stop(run, "Stopped")

    def _request_stop(self, run: _Run, reason: str) -> None:
        with self._lock:
            if run.stop_reason is not None:
                return
            run.stop_reason = reason
        self._transition(run, "Stopping", primary="Stopping")
        run.stop_requested.set()

    def wait(self, name: str, timeout: float = 60.0) -> str:
        """Until the job is terminal; its status."""
        run = self.runs[name]
        if not run.done.wait(timeout):
            raise TimeoutError(f"training job {name} still {run.job.training_job_status} after {timeout}s")
        return run.job.training_job_status

    def shutdown(self) -> None:
        """The cloud stops: every worker is killed (with what it started), the job directories removed."""
        self._closing = True
        for run in list(self.runs.values()):
            run.stop_requested.set()
            if run.proc is not None and run.proc.returncode is None:
                _kill_group(run.proc.pid, signal.SIGKILL)
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join(5)
        self._flush_logs()
        shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ the job's course
    def _transition(self, run: _Run, secondary: str, primary: str | None = None, message: str | None = None) -> None:
        job, now = run.job, _now()
        with self._lock:  # the runner and a StopTrainingJob request: one transition at a time
            for t in job.secondary_status_transitions:
                t.setdefault("EndTime", now)
            job.secondary_status_transitions.append({"Status": secondary, "StartTime": now,
                                                     "StatusMessage": message or _STATUS_MESSAGES[secondary]})
            job.secondary_status = secondary
            if primary:
                job.training_job_status = primary
            job.last_modified_time = now
            if primary in TERMINAL:
                job.secondary_status_transitions[-1]["EndTime"] = now
        self._emit(job)

    def _run(self, run: _Run) -> None:
        job = run.job
        try:
            outcome = self._course(run)
        except _JobFailed as failed:
            outcome = ("Failed", str(failed))
        except Exception as err:  # noqa: BLE001 - a local cloud bug ends the job, never the thread silently
            outcome = ("Failed", f"InternalServerError: local cloud: {type(err).__name__}: {err}")
        status, detail = outcome
        end = _now()
        job.training_end_time = end
        start = job.training_start_time or end
        seconds = max(1, math.ceil((end - start).total_seconds()))
        job.training_time_in_seconds = seconds
        job.billable_time_in_seconds = seconds * int(job.resource_config.get("InstanceCount", 1))
        if status == "Failed":
            job.failure_reason = detail[:1024]
            self._log(run, ["Reporting training FAILURE", detail])
            self._transition(run, "Failed", primary="Failed")
            if not self._closing:
                self.say(f"[sagemaker] training job {run.name} failed: {detail.splitlines()[0] if detail else ''}")
        else:
            self._transition(run, detail, primary=status)
        self._flush_logs()
        shutil.rmtree(run.root, ignore_errors=True)
        run.done.set()

    def _course(self, run: _Run) -> tuple[str, str]:
        """Downloading → Training → Uploading; returns (status, secondary status)."""
        job = run.job
        hps = dict(job.hyper_parameters or {})
        program, submit = hps.get("sagemaker_program"), hps.get("sagemaker_submit_directory")
        if not program or not submit:
            raise _JobFailed("ClientError: the local cloud runs script-mode training jobs only: HyperParameters "
                             "must name sagemaker_program (the entry script) and sagemaker_submit_directory "
                             "(s3://…/code.tar.gz)")
        base = run.root / "opt" / "ml"
        dirs = {"code": base / "code", "model": base / "model", "input": base / "input",
                "config": base / "input" / "config", "data": base / "input" / "data", "output": base / "output",
                "output_data": base / "output" / "data", "intermediate": base / "output" / "intermediate"}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self._transition(run, "Downloading")
        job.training_start_time = _now()
        s3 = self._s3(run)
        self._download_code(s3, submit, dirs["code"])
        channels = self._download_channels(s3, run, dirs["data"])
        if run.stop_requested.is_set():
            return "Stopped", run.stop_reason or "Stopped"
        env, cmd = self._environment(run, dirs, channels, program)
        self._transition(run, "Training")
        code = self._train(run, cmd, env, dirs["code"])
        if self._closing:
            return "Stopped", "Stopped"
        if run.stop_reason is None and run.peak_mb > run.memory_mb:
            self._log(run, [f"local cloud: the job used {run.peak_mb:.0f} MiB, more than the "
                            f"{run.memory_mb} MiB of a {job.resource_config['InstanceType']}"])
            raise _JobFailed(OUT_OF_MEMORY)
        if run.stop_reason is None and code != 0:
            raise _JobFailed(self._failure_reason(dirs["output"], cmd, code))
        self._transition(run, "Uploading")
        self._upload(s3, run, dirs)
        if run.stop_reason is not None:
            return "Stopped", run.stop_reason
        return "Completed", "Completed"

    def _s3(self, run: _Run):
        import boto3

        creds = run.credentials or {}
        session = boto3.Session(aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID", "testing"),
                                aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY", "testing"),
                                aws_session_token=creds.get("AWS_SESSION_TOKEN"), region_name=self.region)
        return session.client("s3", endpoint_url=self.endpoint_url)

    def _download_code(self, s3: Any, url: str, code_dir: Path) -> None:
        """The toolkit's ``files.download_and_extract``: the submit directory's tarball into code/."""
        from botocore.exceptions import ClientError

        try:
            bucket, key = _s3_url(url)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                tar.extractall(code_dir, filter="data")
        except (ClientError, ValueError, tarfile.TarError, OSError) as err:
            # The toolkit fails outside the user script: "Framework Error" (trainer.train)
            raise _JobFailed(f"AlgorithmError: Framework Error: \n{type(err).__name__}: {err}\n"
                             f"sagemaker_submit_directory {url} could not be downloaded and extracted, "
                             "exit code: 1") from err

    def _download_channels(self, s3: Any, run: _Run, data_dir: Path) -> dict[str, dict]:
        """File mode: every object under each channel's S3Prefix into input/data/<channel>/."""
        from botocore.exceptions import ClientError

        channels: dict[str, dict] = {}
        for channel in run.job.input_data_config or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source or source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise _JobFailed(f"ClientError: channel {name}: the local cloud reads S3DataSource channels of "
                                 "S3DataType S3Prefix only (no manifest files, EFS or FSx)")
            url = source["S3Uri"]
            bucket, prefix = _s3_url(url)
            target = data_dir / name
            target.mkdir(parents=True, exist_ok=True)
            base = prefix[: prefix.rfind("/") + 1]  # keys keep their path below the prefix's "directory"
            found = 0
            try:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    for obj in page.get("Contents", []):
                        if obj["Key"].endswith("/"):
                            continue
                        dest = target / obj["Key"][len(base):]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        s3.download_file(bucket, obj["Key"], str(dest))
                        found += 1
            except ClientError as err:
                raise _JobFailed(f"ClientError: Data download failed:{err}") from err
            if not found:
                raise _JobFailed(f'ClientError: No S3 objects found under S3 URL "{url}" given in input data '
                                 f"source. Please ensure that the bucket exists in the selected region "
                                 f"({self.region}), that objects exist under that S3 prefix, and that the role "
                                 f'"{run.job.role_arn}" has "s3:ListBucket" permissions on bucket "{bucket}".')
            channels[name] = {k: v for k, v in (("ContentType", channel.get("ContentType")),
                                                ("TrainingInputMode", channel.get("InputMode") or "File"),
                                                ("S3DistributionType", source.get("S3DataDistributionType",
                                                                                  "FullyReplicated")),
                                                ("RecordWrapperType", channel.get("RecordWrapperType", "None")))
                              if v is not None}
            channels[name]["_dir"] = str(target)
        return channels

    def _environment(self, run: _Run, dirs: dict[str, Path], channels: dict[str, dict],
                     program: str) -> tuple[dict[str, str], list[str]]:
        """The worker's environment and command, as the toolkit builds them (environment.to_env_vars,
        mapping.to_cmd_args), with the config files it reads written under input/config."""
        job = run.job
        raw = dict(job.hyper_parameters or {})
        (dirs["config"] / "hyperparameters.json").write_text(json.dumps(raw))
        inputs = {name: {k: v for k, v in c.items() if k != "_dir"} for name, c in channels.items()}
        (dirs["config"] / "inputdataconfig.json").write_text(json.dumps(inputs))
        instance = job.resource_config["InstanceType"]
        resource = {"current_host": HOST, "current_instance_type": instance,
                    "current_group_name": "homogeneousCluster", "hosts": [HOST],
                    "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance,
                                         "hosts": [HOST]}], "network_interface_name": "eth0"}
        (dirs["config"] / "resourceconfig.json").write_text(json.dumps(resource))
        hps: dict[str, Any] = {}
        framework: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                decoded = json.loads(value)  # the SDK JSON-encodes hyperparameters; the toolkit decodes
            except (ValueError, TypeError):
                decoded = value
            (framework if key.startswith("sagemaker_") else hps)[key] = decoded
        channel_dirs = {name: c["_dir"] for name, c in channels.items()}
        values: dict[str, Any] = {
            "hosts": [HOST], "network_interface_name": "eth0", "hps": hps, "user_entry_point": program,
            "framework_params": {}, "resource_config": resource, "input_data_config": inputs,
            "output_data_dir": str(dirs["output_data"]), "channels": sorted(channel_dirs),
            "current_host": HOST, "current_instance_type": instance,
            "current_instance_group": "homogeneousCluster", "current_instance_group_hosts": [HOST],
            "instance_groups": ["homogeneousCluster"], "distribution_instance_groups": [], "is_hetero": False,
            "module_name": program[:-3] if program.endswith(".py") else program, "log_level": 20,
            "framework_module": None, "input_dir": str(dirs["input"]), "input_config_dir": str(dirs["config"]),
            "output_dir": str(dirs["output"]), "num_cpus": os.cpu_count() or 1, "num_gpus": 0,
            "num_neurons": 0, "model_dir": str(dirs["model"]), "module_dir": framework["sagemaker_submit_directory"],
            "output_intermediate_dir": str(dirs["intermediate"]),
        }
        args = _cmd_args(hps)
        values["user_args"] = args
        values["training_env"] = {
            **{k: values[k] for k in ("hosts", "network_interface_name", "current_host", "current_instance_type",
                                      "input_dir", "input_config_dir", "output_dir", "output_data_dir",
                                      "output_intermediate_dir", "model_dir", "module_dir", "module_name",
                                      "user_entry_point", "resource_config", "input_data_config", "log_level",
                                      "num_cpus", "num_gpus", "framework_module")},
            "hyperparameters": hps, "additional_framework_parameters": {}, "channel_input_dirs": channel_dirs,
            "job_name": run.name, "is_master": True, "master_hostname": HOST,
        }
        for name, path in channel_dirs.items():
            values[f"channel_{name}"] = path
        for key, value in hps.items():
            values[f"hp_{key}"] = value
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(_IMAGE_ENV)
        env.update({k: str(v) for k, v in (getattr(job, "environment", None) or {}).items()})
        env.update({
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "TRAINING_JOB_NAME": run.name, "TRAINING_JOB_ARN": job.arn,
            "SAGEMAKER_BASE_DIR": str(dirs["code"].parent), "CURRENT_HOST": HOST,
            "SAGEMAKER_PROGRAM": program, "SAGEMAKER_SUBMIT_DIRECTORY": framework["sagemaker_submit_directory"],
            "SAGEMAKER_REGION": str(framework.get("sagemaker_region", self.region)),
        })
        env.pop("AWS_SESSION_TOKEN", None)
        env.update(run.credentials)
        env.update({f"SM_{k.upper()}": _env_value(v) for k, v in values.items()})
        return env, [sys.executable, program, *args]

    def _train(self, run: _Run, cmd: list[str], env: dict[str, str], code_dir: Path) -> int:
        """The worker, watched for memory, MaxRuntimeInSeconds and a stop request; its exit code."""
        job = run.job
        self._log(run, ["Invoking script with the following command:", "", " ".join(cmd), ""])
        run.proc = proc = subprocess.Popen(cmd, cwd=code_dir, env=env, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        reader = threading.Thread(target=self._read_output, args=(run, proc), daemon=True,
                                  name=f"sagemaker-log-{run.name}")
        reader.start()
        max_runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds") or 86400)
        deadline = time.time() + max_runtime - (_now() - job.training_start_time).total_seconds()
        termed_at: float | None = None
        last_flush = time.time()
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                run.peak_mb = max(run.peak_mb, usage.ru_maxrss / 1024)  # Linux: kB
                break
            run.peak_mb = max(run.peak_mb, _tree_mb(proc.pid))
            if run.peak_mb > run.memory_mb and run.stop_reason is None:
                _kill_group(proc.pid, signal.SIGKILL)  # the kernel's OOM killer does not wait
            if time.time() > deadline and run.stop_reason is None:
                self._request_stop(run, "MaxRuntimeExceeded")
            if run.stop_requested.is_set() and termed_at is None:
                _kill_group(proc.pid, signal.SIGTERM)
                termed_at = time.time()
            if termed_at is not None and time.time() - termed_at > self.stop_grace:
                _kill_group(proc.pid, signal.SIGKILL)
            if time.time() - last_flush > 0.25:
                self._flush_logs()
                last_flush = time.time()
            if termed_at is None:
                run.stop_requested.wait(POLL_SECONDS)  # a stop request wakes it at once
            else:
                time.sleep(POLL_SECONDS)
        _kill_group(proc.pid, signal.SIGKILL)  # what the script left running ends with the job
        reader.join(5)
        return proc.returncode

    def _read_output(self, run: _Run, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log(run, [line])
            if self.verbose:
                self.say(f"[sagemaker {run.name}] {line}")

    @staticmethod
    def _failure_reason(output_dir: Path, cmd: list[str], code: int) -> str:
        """FailureReason of a script that exited non-zero: the toolkit writes ExecuteUserScriptError to
        output/failure unless the script wrote it first (files.write_failure_file, "only if it does not
        exist"); SageMaker reports "AlgorithmError: " + the file's first 1024 characters + the exit code."""
        failure = output_dir / "failure"
        if failure.exists():
            text = failure.read_text(errors="replace")
        else:
            text = f'ExecuteUserScriptError:\nExitCode {code}\nErrorMessage ""\nCommand "{" ".join(cmd)}"'
            failure.write_text(text)
        return f"AlgorithmError: {text[:1024]}, exit code: 1"

    def _upload(self, s3: Any, run: _Run, dirs: dict[str, Path]) -> None:
        """model/ as <S3OutputPath>/<job>/output/model.tar.gz (and output/data as output.tar.gz)."""
        from botocore.exceptions import ClientError

        job = run.job
        out = job.output_data_config["S3OutputPath"].rstrip("/")
        bucket, prefix = _s3_url(f"{out}/{run.name}/output")
        try:
            s3.put_object(Bucket=bucket, Key=f"{prefix}/model.tar.gz", Body=_targz(dirs["model"]))
            if any(dirs["output_data"].iterdir()):
                s3.put_object(Bucket=bucket, Key=f"{prefix}/output.tar.gz", Body=_targz(dirs["output_data"]))
        except ClientError as err:
            raise _JobFailed(f"ClientError: Artifact upload failed:{err}") from err
        job.model_artifacts = {"S3ModelArtifacts": f"s3://{bucket}/{prefix}/model.tar.gz"}

    # ------------------------------------------------------------------ events
    def _emit(self, job: Any) -> None:
        """SageMaker's "SageMaker Training Job State Change" event (source ``aws.sagemaker``, the job's
        description as detail) to the default bus's rules, at each status change."""
        if self._closing:
            return  # the cloud stops: its event bus is stopped already
        from moto.events.models import events_backends

        from .events import iso_now

        account = job.arn.split(":")[4]
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "SageMaker Training Job State Change",
                 "source": "aws.sagemaker", "account": account, "time": iso_now(), "region": self.region,
                 "resources": [job.arn], "detail": _json_ready(job.response_object)}
        try:
            bus = events_backends[account][self.region].event_buses.get("default")
            for rule in list(bus.rules.values()) if bus else []:
                rule.send_to_targets(copy.deepcopy(event))  # the events seam matches and delivers
        except Exception as err:  # noqa: BLE001 - asynchronous in AWS: never fails a job
            self.say(f"[sagemaker] state change event of {job.training_job_name} not sent: {err!r}")

    # ------------------------------------------------------------------ logs: /aws/sagemaker/TrainingJobs
    def _log(self, run: _Run, lines: list[str]) -> None:
        now = int(time.time() * 1000)
        with self._logs_lock:
            self._logs.setdefault(run.log_stream, []).extend({"timestamp": now, "message": line or " "}
                                                             for line in lines)

    def _flush_logs(self) -> None:
        from moto.logs.models import logs_backends

        with self._logs_lock:
            batches, self._logs = self._logs, {}
        if not batches:
            return
        from .template import ACCOUNT_ID

        backend = logs_backends[ACCOUNT_ID][self.region]
        for stream, events in batches.items():
            try:
                if LOG_GROUP not in backend.groups:
                    backend.create_log_group(LOG_GROUP, {})
                if stream not in backend.groups[LOG_GROUP].streams:
                    backend.create_log_stream(LOG_GROUP, stream)
                backend.put_log_events(LOG_GROUP, stream, events)
            except Exception:  # noqa: BLE001 - a log sink never fails a job
                continue


def _env_value(value: Any) -> str:
    """mapping.to_env_vars: strings as they are, None empty, anything else compact sorted JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _cmd_args(hps: dict[str, Any]) -> list[str]:
    """mapping.to_cmd_args: sorted ``--key value`` (``-k`` for one letter), a dict as ``k=v,…``."""
    args = []
    for key in sorted(hps):
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        value = hps[key]
        args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())) if isinstance(value, dict)
                    else "" if value is None else str(value))
    return args


def _targz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- Step Functions
def _json_ready(value: Any) -> Any:
    """A boto3 answer as Step Functions passes it on: timestamps as epoch milliseconds."""
    import datetime as dt

    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return value


@functools.cache
def _operation_parameters() -> dict[str, set[str]]:
    """SageMaker's operations and their request members (botocore's model, loaded once)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return {op: set(model.operation_model(op).input_shape.members) for op in model.operation_names
            if model.operation_model(op).input_shape is not None}


def _state_task_class():
    """`StateTaskSageMaker`, built on first use (moto's Step Functions parser is a heavy import)."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    # Error codes the Java SDK models as exceptions of their own; any other is AmazonSageMakerException
    # (what Step Functions names a SageMaker error: "SageMaker.AmazonSageMakerException").
    modelled = {"ResourceInUse", "ResourceLimitExceeded", "ResourceNotFound", "ConflictException"}

    class StateTaskSageMaker(StateTaskServiceCallback):
        """Step Functions' optimized SageMaker integration: request-response, and Run a Job (.sync)
        for createTrainingJob (docs: "Create and manage Amazon SageMaker AI jobs with Step Functions")."""

        def __init__(self) -> None:
            # moto's .sync loop needs a task token's callback endpoint (it interrupts it at the end,
            # None otherwise), so it is made as for Batch; the waitForTaskToken pattern itself is
            # refused below, as AWS does for SageMaker.
            super().__init__(supported_integration_patterns={ResourceCondition.Sync,
                                                             ResourceCondition.WaitForTaskToken})

        def _assert_integration_pattern_is_supported(self):
            if self.resource.condition != ResourceCondition.Sync:
                raise RuntimeError(f"Unsupported {self.resource.condition} callback procedure in resource "
                                   f"{self.resource.resource_arn}: SageMaker supports .sync only")

        def _get_supported_parameters(self) -> set[str] | None:
            action = self.resource.api_action
            return _operation_parameters().get(action[:1].upper() + action[1:])

        def _before_eval_execution(self, env, resource_runtime_part, raw_parameters, state_credentials):
            super()._before_eval_execution(env, resource_runtime_part, raw_parameters, state_credentials)
            if self.resource.condition == ResourceCondition.Sync:
                # Step Functions tags the jobs it runs (why the .sync policy needs sagemaker:AddTags); the
                # history's TaskScheduled keeps the parameters as the state wrote them
                execution = env.states.context_object.context_object_data["Execution"]["Id"]
                raw_parameters["Tags"] = [*(raw_parameters.get("Tags") or []), dict(MANAGED_TAG),
                                          {"Key": "AWS_STEP_FUNCTIONS_EXECUTION_ARN", "Value": execution}]

        def _from_error(self, env, ex: Exception) -> FailureEvent:
            if isinstance(ex, ClientError):
                code = ex.response["Error"]["Code"]
                name = f"SageMaker.{code if code.endswith('Exception') else code + 'Exception'}" \
                    if code in modelled else "SageMaker.AmazonSageMakerException"
                meta = ex.response.get("ResponseMetadata", {})
                cause = (f"{ex.response['Error'].get('Message', '')} (Service: AmazonSageMaker; Status Code: "
                         f"{meta.get('HTTPStatusCode')}; Error Code: {code}; Request ID: {meta.get('RequestId')}; "
                         "Proxy: null)")
                return FailureEvent(env=env, error_name=CustomErrorName(name), event_type=HistoryEventType.TaskFailed,
                                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                                        error=name, cause=cause, resource=self._get_sfn_resource(),
                                        resourceType=self._get_sfn_resource_type())))
            return super()._from_error(env=env, ex=ex)

        def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
            client = boto_client_for(region=resource_runtime_part.region, service="sagemaker",
                                     state_credentials=state_credentials)
            response = getattr(client, self._get_boto_service_action())(**normalised_parameters)
            response.pop("ResponseMetadata", None)
            env.stack.append(_json_ready(response))

        def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
            if self.resource.api_action.lower() != "createtrainingjob":
                return super()._build_sync_resolver(env, resource_runtime_part, normalised_parameters,
                                                    state_credentials)
            client = boto_client_for(region=resource_runtime_part.region, service="sagemaker",
                                     state_credentials=state_credentials)
            env.stack.pop()  # CreateTrainingJob's answer: the .sync output is the job's description
            name = normalised_parameters["TrainingJobName"]

            def resolve() -> dict | None:
                described = client.describe_training_job(TrainingJobName=name)
                described.pop("ResponseMetadata", None)
                status = described.get("TrainingJobStatus")
                if status == "Completed":
                    return _json_ready(described)
                if status in ("Failed", "Stopped"):  # the task fails; a Catch sees the description as Cause
                    raise FailureEventException(FailureEvent(
                        env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(_json_ready(described))))))
                return None

            resolve.stop = lambda: client.stop_training_job(TrainingJobName=name)  # type: ignore[attr-defined]
            return resolve

        def _eval_sync(self, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint):
            try:
                return super()._eval_sync(env, sync_resolver, timeout_seconds, callback_endpoint,
                                          heartbeat_endpoint)
            finally:
                # The execution was stopped, or the task timed out, while the job ran: Step Functions
                # stops the job (the .sync pattern's policy needs sagemaker:StopTrainingJob for this).
                stop = getattr(sync_resolver, "stop", None)
                if stop is not None and not env.is_running():
                    try:
                        stop()
                    except ClientError:
                        pass  # it ended meanwhile

    return StateTaskSageMaker


# --------------------------------------------------------------------------- moto hooks
def _patch(seam: Seam) -> None:
    from moto.core.responses import ActionResult
    from moto.sagemaker import exceptions as sm_errors
    from moto.sagemaker.models import FakeTrainingJob
    from moto.sagemaker.responses import SageMakerResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    def _moto_error(err: TrainingJobError) -> Exception:
        if err.code == "ResourceInUse":
            return sm_errors.ResourceInUseException(str(err))
        return sm_errors.ValidationError(str(err))

    def create_training_job(self):
        jobs: TrainingJobs | None = seam.current
        if jobs is None:
            return seam["create_training_job"](self)
        params = {k: self._get_param(k) for k in ("TrainingJobName", "HyperParameters", "Environment",
                                                   "ResourceConfig", "RoleArn", "AlgorithmSpecification")}
        backend = self.sagemaker_backend
        with jobs.creating:
            try:
                jobs.check(backend, params)
            except TrainingJobError as err:
                raise _moto_error(err) from None
            spec = copy.deepcopy(params["AlgorithmSpecification"] or {})
            result = seam["create_training_job"](self)
            job = backend.training_jobs[params["TrainingJobName"]]
        job.algorithm_specification = spec  # without the metric moto adds
        job.environment = dict(params["Environment"] or {})  # moto drops it; DescribeTrainingJob returns it
        jobs.launch(job)
        return result

    def job_init(self, *args, **kwargs):
        seam["__init__"](self, *args, **kwargs)
        if seam.current is not None:
            TrainingJobs.born(self)

    def stop_training_job(self):
        jobs: TrainingJobs | None = seam.current
        if jobs is None:
            raise NotImplementedError("StopTrainingJob needs a running local cloud")
        try:
            jobs.stop(self.sagemaker_backend, self._get_param("TrainingJobName"))
        except TrainingJobError as err:
            raise _moto_error(err) from None
        return ActionResult({})

    task_class = None

    def state_task_service_for(service_name: str):
        nonlocal task_class
        if service_name == "sagemaker" and seam.current is not None:
            task_class = task_class or _state_task_class()
            return task_class()
        return seam["state_task_service_for"](service_name)  # moto's, or another seam's in front of it

    seam.replace(FakeTrainingJob, "__init__", job_init)
    seam.replace(SageMakerResponse, "create_training_job", create_training_job)
    seam.replace(SageMakerResponse, "stop_training_job", stop_training_job)
    seam.replace(state_task_factory, "state_task_service_for", state_task_service_for)


SEAM = Seam(_patch)
