"""``SageMakerTraining``: the pipeline's Train step as a SageMaker training job (``compute.type: sagemaker``).

One Step Functions state, ``TrainOnSageMaker``, runs every sagemaker model's job through the
``createTrainingJob.sync`` integration (IntegrationPattern.RUN_JOB: Step Functions waits for the job
and fails the state with its DescribeTrainingJob output as the Cause when it fails). The job is the
SageMaker scikit-learn framework image (``infra/sagemaker_catalog.py``) running
``functions/pipeline/trainjob.py`` from a code bundle: a deterministic ``.tar.gz`` file asset built at
synth holding ``functions/`` and, when layers are built, a wheelhouse of layers/training.txt for the
image's CPython 3.12 x86_64. No Docker at build or deploy time. docs/scale.md argues it.

Why a ``CustomState`` and not ``tasks.SageMakerCreateTrainingJob`` (same integration, same
parameters): that class renders ``ResourceConfig.VolumeSizeInGB`` and
``StoppingCondition.MaxRuntimeInSeconds`` as constants, while one state serves models with their own
volume and runtime (read here from ``$.spec.compute``); and with a job name from the input it grants
create/describe/stop/AddTags on ``training-job/*`` and ListTags on ``*``, where this stack's jobs all
start with its own prefix.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Annotations, ArnFormat, Aws, CfnMapping, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import ModelSpec
from infra.registry import CANDIDATE_ATTRIBUTES, ModelRegistry
from infra.sagemaker_catalog import (
    IMAGE_ARCHITECTURE,
    IMAGE_PYTHON,
    IMAGE_REGISTRIES,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    MAX_ENVIRONMENT_CHARS,
    MAX_HYPERPARAMETER_CHARS,
    spec_hyperparameter_chars,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = PROJECT_ROOT / "layers" / "build" / "trainjob"
ENTRY_POINT = "functions/pipeline/trainjob.py"
WHEELHOUSE = "wheelhouse"
WHEELHOUSE_LOCK = "training.txt"  # the job's name for it (functions/pipeline/trainjob.py)
# Where the jobs' own output (model.tar.gz of /opt/ml/model, empty: artifacts go to models/) lands.
OUTPUT_PREFIX = "training-jobs/"
# SageMaker's log group for every training job of the account and region (streams <job>/algo-1-…).
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
# The rule Step Functions manages to learn when a job ends (`.sync`): Step Functions docs, "IAM
# policies for Amazon SageMaker AI" (createTrainingJob, Run a Job).
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"


def job_name_prefix(stack_name: str) -> str:
    """``<stack, lower-case, at most 12>-<6 hex of the full name>-``: this stack's training jobs start with
    it (Allocate names them, IAM is scoped to it). Lower case because SageMaker lower-cases names in ARNs."""
    head = "".join(c if c.isalnum() else "-" for c in stack_name.lower())[:12].strip("-") or "shipyard"
    return f"{head}-{hashlib.sha256(stack_name.encode()).hexdigest()[:6]}-"


# ---------------------------------------------------------------------------- the code bundle


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))


def bundle_bytes(root: Path = PROJECT_ROOT, wheelhouse: Path | None = None) -> bytes:
    """The ``.tar.gz`` ``sagemaker_submit_directory`` names: ``functions/**.py`` and the wheelhouse's
    files, sorted, with fixed owners, modes and times (gzip header time 0): the same inputs give the
    same bytes, hence the same asset hash and no re-upload."""
    files: list[tuple[str, Path]] = [(p.relative_to(root).as_posix(), p)
                                     for p in (root / "functions").rglob("*.py") if "__pycache__" not in p.parts]
    if wheelhouse is not None:
        files += [(f"{WHEELHOUSE}/{p.name}", p) for p in wheelhouse.iterdir() if p.is_file()]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in sorted(files):
            _tar_add(archive, name, path.read_bytes())
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_bundle(data: bytes, directory: Path = BUNDLE_DIR) -> Path:
    """The bundle as a file named by its sha256 (an Asset uploads a file as is)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"code-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{id(data)}")
        tmp.write_bytes(data)
        tmp.replace(path)
    else:
        os.utime(path)  # in use again: not one of the "older" below
    # Older bundles (~100 MB each with a wheelhouse) go once no synth of the last hour can still be staging them.
    for old in directory.glob("code-*.tar.gz"):
        try:
            if old != path and time.time() - old.stat().st_mtime > 3600:
                old.unlink()
        except OSError:
            pass
    return path


def build_wheelhouse(python: str = IMAGE_PYTHON, architecture: str = IMAGE_ARCHITECTURE,
                     cache_dir: Path | None = None) -> Path:
    """layers/training.txt's wheels for the image's platform, hash-checked by pip (``pip download
    --require-hashes``, the layer builder's platform arguments), cached by the lock's contents."""
    from layers import builder

    lock = builder.requirements_file("training")
    key = builder.cache_key("wheelhouse-training", architecture, python, lock.read_bytes())[:24]
    dest = (cache_dir or builder.default_cache_dir()) / f"wheelhouse-{key}"
    if (dest / WHEELHOUSE_LOCK).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=dest.parent))
    command = [sys.executable, "-m", "pip", "download", "--dest", str(tmp),
               *builder.platform_args(architecture, python), "--require-hashes", "--no-deps", "-r", str(lock),
               "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise builder.LayerBuildError(f"pip could not download the training wheelhouse ({architecture}, "
                                      f"CPython {python}):\n{tail}")
    shutil.copy2(lock, tmp / WHEELHOUSE_LOCK)  # written last: it says the wheelhouse is complete
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


# ---------------------------------------------------------------------------- the construct


class SageMakerTraining(Construct):
    """The job role, the code asset and the ``TrainOnSageMaker`` state for the models that train on SageMaker.

    Grants: the job role gets what the Train function's role gets (read datasets, write models, update
    its version's candidate record) plus its code, its output prefix, its logs and metrics; the state
    machine's role (``grant_run``) may create/describe/stop/tag this stack's jobs only and pass this role
    only to SageMaker.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        models: Mapping[str, ModelSpec],
        environment: Mapping[str, str],
        wheelhouse: bool = True,
        code_root: Path = PROJECT_ROOT,
    ) -> None:
        """
        :param registry: buckets and table the job reads and writes.
        :param models: the models with ``compute.type: sagemaker`` (their spec must fit a hyperparameter).
        :param environment: the job's environment (registry table, artifact bucket, limits, code version);
            each value at most 512 characters (SageMaker's limit).
        :param wheelhouse: download layers/training.txt's wheels into the bundle (default). ``False``
            (``shipyard:build_layers=false``, the local cloud): no wheelhouse, the job uses the packages of
            the image it runs in (a synth warning says so: never deploy it).
        :param code_root: the directory holding ``functions/`` (default: this project).
        """
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.models = dict(models)
        self.prefix = job_name_prefix(stack.stack_name)
        for name, spec in self.models.items():
            _check_hyperparameter(name, spec)
        for key, value in environment.items():
            if len(value) > MAX_ENVIRONMENT_CHARS:
                raise ValueError(f"training job environment {key} is {len(value)} characters, more than "
                                 f"SageMaker's {MAX_ENVIRONMENT_CHARS}: {value[:80]}…")
        self.environment = dict(environment)

        house = build_wheelhouse() if wheelhouse else None
        if house is None:
            Annotations.of(self).add_warning_v2(
                "shipyard:trainjob:no-wheelhouse",
                "the SageMaker training bundle has no wheelhouse (shipyard:build_layers=false): the job would "
                "run on the image's scikit-learn/numpy, not layers/training.txt's; fine locally, never deploy it")
        self.has_wheelhouse = house is not None
        self.bundle = write_bundle(bundle_bytes(code_root, house))
        self.code = s3_assets.Asset(self, "Code", path=str(self.bundle))

        self.image_registries = CfnMapping(self, "Image", mapping={
            region: {"account": account} for region, account in IMAGE_REGISTRIES.items()})
        account = self.image_registries.find_in_map(Aws.REGION, "account")
        self.image_uri = Fn.join("", [account, ".dkr.ecr.", Aws.REGION, ".", Aws.URL_SUFFIX,
                                      f"/{IMAGE_REPOSITORY}:{IMAGE_TAG}"])

        self.job_arn_pattern = stack.format_arn(service="sagemaker", resource="training-job",
                                                resource_name=f"{self.prefix}*")
        self.role = iam.Role(
            self, "JobRole", description="Shipyard pipeline: the SageMaker training job (train, convert, register)",
            # Confused-deputy guard (SageMaker docs, "Cross-service confused deputy prevention", training
            # jobs): only this account's jobs with this stack's prefix may assume it.
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com").with_conditions({
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": self.job_arn_pattern}}),
        )
        # What the Train function's role gets (infra/pipeline.py), nothing more on the registry.
        registry.grant_read_datasets(self.role)
        registry.grant_write_models(self.role)
        registry.grant_update_versions(self.role, attributes=CANDIDATE_ATTRIBUTES)
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[self.code.bucket.arn_for_objects(self.code.s3_object_key)]))
        self.output_uri = f"s3://{registry.artifact_bucket.bucket_name}/{OUTPUT_PREFIX}"
        registry.grant_write_artifacts(self.role, OUTPUT_PREFIX)
        logs_arn = stack.format_arn(service="logs", resource="log-group", resource_name=LOG_GROUP,
                                    arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup"], resources=[logs_arn]))
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"{logs_arn}:log-stream:{self.prefix}*"]))
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}))
        # The framework image lives in AWS's registry account of the region.
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            resources=[Fn.join("", ["arn:", Aws.PARTITION, ":ecr:", Aws.REGION, ":", account,
                                    f":repository/{IMAGE_REPOSITORY}"])]))

    # ------------------------------------------------------------------ state and grants

    def state(self, scope: Construct, id: str = "TrainOnSageMaker", *, result_path: str = "$.train") -> sfn.CustomState:
        """The ``createTrainingJob.sync`` task (state name ``id``) of a run (``$.run.training_job_name`` from Allocate,
        instance/volume/runtime from ``$.spec.compute``); its result is the job's name and status."""
        hyperparameters = {
            # Script mode of the framework image's training toolkit: run this entry point from this bundle.
            "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": self.code.s3_object_url,
            "sagemaker_region": Aws.REGION,
            # JSON-quoted as the SDK quotes values: the toolkit decodes each one, and a bare model name
            # such as "null" would decode to something else.
            "model.$": "States.JsonToString($.model)",
            "version.$": "States.Format('{}', $.run.version)",
            "execution_arn.$": "$$.Execution.Id",
            "training_job_name.$": "$.run.training_job_name",
            "instance_type.$": "$.spec.compute.instance_type",
            "spec.$": "States.JsonToString($.spec)",
            "dataset.$": "States.JsonToString($.dataset)",
        }
        state_json = {
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                "TrainingJobName.$": "$.run.training_job_name",
                "RoleArn": self.role.role_arn,
                "AlgorithmSpecification": {"TrainingImage": self.image_uri, "TrainingInputMode": "File"},
                "HyperParameters": hyperparameters,
                "Environment": self.environment,
                "OutputDataConfig": {"S3OutputPath": self.output_uri},
                "ResourceConfig": {"InstanceCount": 1, "InstanceType.$": "$.spec.compute.instance_type",
                                   "VolumeSizeInGB.$": "$.spec.compute.volume_gb"},
                "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.spec.compute.max_runtime"},
                "Tags": [{"Key": "shipyard:stack", "Value": Stack.of(self).stack_name},
                         {"Key": "shipyard:model", "Value.$": "$.model"}],
            },
            "ResultSelector": {"training_job_name.$": "$.TrainingJobName", "status.$": "$.TrainingJobStatus"},
            "ResultPath": result_path,
        }
        return sfn.CustomState(scope, id, state_json=state_json)

    def grant_run(self, grantee: iam.IGrantable) -> None:
        """What a state machine running the state needs: this stack's jobs, this role, the `.sync` rule."""
        stack = Stack.of(self)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                     "sagemaker:AddTags", "sagemaker:ListTags"],
            resources=[self.job_arn_pattern]))
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)]))


def _check_hyperparameter(name: str, spec: ModelSpec) -> None:
    """The run's spec travels to the job as one hyperparameter: at most 2500 characters (load_config
    refuses a longer one already; a ModelSpec made by hand is checked here)."""
    chars = spec_hyperparameter_chars(spec)
    if chars > MAX_HYPERPARAMETER_CHARS:
        raise ValueError(
            f"model '{name}': its spec is {chars:,} characters as JSON, more than the {MAX_HYPERPARAMETER_CHARS:,} "
            "a SageMaker hyperparameter may hold, so it cannot train on SageMaker (compute.type sagemaker); "
            "shorten params (e.g. long lists) or train on Lambda")
