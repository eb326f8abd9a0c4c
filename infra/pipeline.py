"""``TrainingPipeline``: the train → validate → (approve →) release → promote state machine and what starts it.

    S3 "Object Created" datasets/<model>/…(.csv|.csv.gz) ──rule per model──► state machine (standard)
      Allocate ─► Duplicate? ─► [TrainOn ─►] Train | Train<MB> | TrainOnSageMaker ─► Validate ─► Gate ─► NeedsApproval?
         │  └─► AlreadyHandled (same object version seen before)                            └─fail─► Reject
         └─ any state: Catch States.DataLimitExceeded, States.ALL ─► MarkFailed ─► Failed
                                                         └─► PromotedDespiteError (the alias had moved)
      NeedsApproval? ─manual─► AwaitApproval (task token; States.Timeout ─► Reject) ─► Decision? ─► Approved | Reject
                     └─no────► ReleaseMode? ◄─────────────────────────────────────────────────────── Approved
      ReleaseMode? ─all_at_once / no production yet─► Promote
                   └─canary|shadow─► StartRelease ─► Next? ─bake─► Bake ─► CheckRelease ─► Next?
                        Next? ─promote─► FinishRelease, ─rollback─► RollBack, ─superseded─► Superseded,
                              ─decide─► AwaitShadowDecision ─approve─► FinishRelease | reject/timeout ─► RollBack
                        (the release loop: infra/release.py ``ProgressiveRelease``)

Five kinds of function over ``functions/pipeline`` and ``functions/release`` (docs/pipeline.md): Allocate,
Train (training layer, 15 min; one per ``compute.memory`` size, 3008 MB by default), Validate (inference
layer: onnxruntime + numpy), Record (promote, reject, mark failed, ask for and apply a person's
decision + events; publishes the approval message to the alarm topic) and Release (the release loop). Models with
``compute.type: sagemaker`` train in a SageMaker training job instead (``TrainOnSageMaker``,
infra/trainjob.py), the same train step in the scikit-learn image. Each has its own role
with only what it uses (``ModelRegistry.grant_*``), its own log group, X-Ray tracing. The state
machine logs ALL events with execution data to its own log group and traces with X-Ray; every task
has a timeout, the execution too.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.core.layout import (
    DATASET_SUFFIXES,
    DATASETS_PREFIX,
    DEFAULT_MIN_DATASET_ROWS,
    DEFAULT_TRAIN_MEMORY_MB,
    METRICS_NAMESPACE,
)
from functions.core.layout import max_dataset_bytes as layout_max_dataset_bytes
from functions.pipeline.execution import spec_document
from infra.config import ModelSpec
from infra.deadletters import EventDeadLetters
from infra.lambdas import functions_code, shipyard_function
from infra.registry import CANDIDATE_ATTRIBUTES, ModelRegistry
from infra.release import ProgressiveRelease
from infra.trainjob import SageMakerTraining
from infra.workflow import UPLOAD_MAX_EVENT_AGE, UPLOAD_RETRY_ATTEMPTS, WorkflowRuns, upload_rule

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HANDLERS = {
    "Allocate": "functions.pipeline.allocate.handler",
    "Train": "functions.pipeline.train.handler",
    "Validate": "functions.pipeline.validate.handler",
    "Record": "functions.pipeline.record.handler",
}
# Errors retried with backoff: Lambda service trouble and our handlers' TransientError
# (throttling / 5xx from AWS that outlived the SDK's retries). DatasetError is never retried.
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientError",
)

# The keys an upload rule takes for a dataset: ``datasets/<model>/…`` ending in one of these (case as
# written, like the evaluation sets the Validate step lists: functions/pipeline/steps.py). A folder
# placeholder (``datasets/m/``), a README or a ``.CSV`` starts nothing.


def dataset_key_pattern(model: str) -> list[dict]:
    """The upload rule's matchers of ``detail.object.key`` for *model*: one ``wildcard`` per suffix
    (EventBridge cannot AND a ``prefix`` with a ``suffix`` on one field; a wildcard's ``*`` also
    matches ``/``, so sub-folders count, as they did). Model names have no ``*`` or ``\\``
    (infra/config.py MODEL_NAME), so the name needs no escaping."""
    return [{"wildcard": f"{DATASETS_PREFIX}{model}/*{suffix}"} for suffix in DATASET_SUFFIXES]


def state_machine_log_group_name(stack_name: str) -> str:
    """``/aws/vendedlogs/states/<stack>-pipeline``: see ``TrainingPipeline``'s log group."""
    return f"/aws/vendedlogs/states/{stack_name}-pipeline"


# The end statuses whose execution may not have recorded its outcome (no Catch ran): the `execution_ended` rule's.
EXECUTION_ENDED_STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")

# A result or state over Step Functions' 256 KiB payload quota. AWS documents it as a terminal error
# that a States.ALL catcher does not catch: every Catch names it first.
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"


def code_version(root: Path = PROJECT_ROOT) -> str:
    """A short digest of the ``functions/`` sources: recorded in every version's lineage."""
    digest = hashlib.sha256()
    for path in sorted((root / "functions").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def train_memory(models: Mapping[str, ModelSpec]) -> int:
    """The largest ``compute.memory`` of the models (3008 MB by default): the ``Train`` function's."""
    return max(train_memories(models))


def train_memories(models: Mapping[str, ModelSpec]) -> list[int]:
    """The distinct ``compute.memory`` sizes of the Lambda-trained models, largest first: one Train function
    each (3008 MB when there is none: an input without ``compute`` still trains on Lambda)."""
    return sorted({m.compute.memory for m in models.values() if not m.compute.is_sagemaker}
                  or {DEFAULT_TRAIN_MEMORY_MB}, reverse=True)


def sagemaker_models(models: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    """The models with ``compute.type: sagemaker``: they train in a SageMaker job (infra/trainjob.py)."""
    return {name: m for name, m in models.items() if m.compute.is_sagemaker}


def run_wait_seconds(spec: ModelSpec) -> int:
    """The longest a run of *spec* waits on something outside the state machine: its SageMaker job
    (``compute.max_runtime``), a person's approval (``release.approval_timeout``: before the release,
    or after a shadow's bake without an agreement rule) and the bake (``release.bake``, with ~10 s of
    checking per minute baked). 0: nothing beyond the pipeline's own steps."""
    seconds = spec.compute.max_runtime if spec.compute.is_sagemaker else 0
    release = spec.release
    if release.approval == "manual" and release.mode != "shadow":
        seconds += release.approval_timeout
    if release.mode in ("canary", "shadow"):
        seconds += release.bake + (release.bake // 60 + 1) * 10
        if release.mode == "shadow" and release.agreement is None:
            seconds += release.approval_timeout
    return int(seconds)


def train_function_id(memory: int, largest: int) -> str:
    """``Train`` for the largest size (what a stack of one size has), ``Train<MB>`` for the others."""
    return "Train" if memory == largest else f"Train{memory}"


class TrainingPipeline(WorkflowRuns, Construct):
    """One standard state machine for all models, one EventBridge rule per model."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        models: Mapping[str, ModelSpec],
        architecture: str = "arm64",
        inference_layers: Sequence[lambda_.ILayerVersion] = (),
        training_layers: Sequence[lambda_.ILayerVersion] = (),
        train_memory_size: int | None = None,
        train_timeout: Duration = Duration.minutes(15),
        validate_memory_size: int = 1769,
        validate_timeout: Duration = Duration.minutes(5),
        step_timeout: Duration = Duration.seconds(60),
        execution_timeout: Duration = Duration.hours(2),
        retry_interval: Duration = Duration.seconds(5),
        retry_attempts: int = 4,
        retry_backoff_rate: float = 2.0,
        max_dataset_bytes: int | None = None,
        min_rows: int = DEFAULT_MIN_DATASET_ROWS,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        train_reserved_concurrency: int | None = None,
        wheelhouse: bool = True,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        """
        :param registry: buckets and table the steps read and write.
        :param models: configured models (one rule each; their spec travels in the input).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param inference_layers: layers of Allocate, Validate, Record (onnxruntime, numpy, Powertools).
        :param training_layers: layers of Train (scikit-learn, skl2onnx, onnxruntime, Powertools).
        :param train_memory_size: one Train function of this many MB for every model (default: one
            Train function per distinct ``compute.memory`` of the models, 3008 MB unless configured,
            the state machine choosing by the run's ``spec.compute.memory``; more memory is more CPU).
        :param train_timeout: Train timeout (default and Lambda maximum 15 minutes).
        :param validate_memory_size: Validate memory in MB (default 1769, one full vCPU).
        :param validate_timeout: Validate timeout (default 5 minutes).
        :param step_timeout: Allocate/Record timeout (default 60 s).
        :param execution_timeout: whole execution (default 2 h).
        :param retry_interval: first retry delay after a transient error (default 5 s).
        :param retry_attempts: retries per state after transient errors (default 4).
        :param retry_backoff_rate: delay multiplier per retry (default 2).
        :param max_dataset_bytes: largest dataset a Train function takes (default: what its memory
            allows, ``functions.core.layout.max_dataset_bytes``; 550 MiB at 3008 MB); larger → failed.
        :param min_rows: fewest data rows trained on (default 20).
        :param train_reserved_concurrency: reserved concurrency of each Train function, its cap
            (default ``None``: none; cdk.json ``concurrency.training`` sets it, docs/configuration.md).
        :param wheelhouse: put layers/training.txt's wheels in the SageMaker training bundle (default; needs
            pip and the network at synth, cached). ``False`` (``shipyard:build_layers=false``): none, the job
            uses its image's packages (local cloud only). Only with ``compute.type: sagemaker`` models.
        :param log_retention: retention of the functions' and the state machine's log groups.
        :param log_removal_policy: what happens to those log groups when removed.
        :param code: override the functions' code (default: the ``functions/`` package).
        :param dead_letter_queue: where upload events the state machine could not be started for
            go after the rule's retries (default: ``EventDeadLetters`` of this construct). A queue given
            here gets no policy statements from this construct: ``EventDeadLetters.allow_rules_in``.
        :param alarm_topic: where a manual approval's message and the release alarms go (default: none;
            ``use_alarm_topic`` sets it once the topic exists).
        """
        super().__init__(scope, id)
        self.registry = registry
        self.models = dict(models)
        memories = [train_memory_size] if train_memory_size is not None else train_memories(self.models)
        largest = memories[0]
        self.train_memory_size = largest
        self.max_dataset_bytes = max_dataset_bytes or layout_max_dataset_bytes(largest)
        code = code or functions_code()
        self.code_version = code_version()
        on_sagemaker = sagemaker_models(self.models)
        longest = max((run_wait_seconds(m) for m in self.models.values()), default=0)
        if longest:
            # The execution must outlast the longest job, approval and bake it waits for (an hour left
            # for the other states).
            execution_timeout = Duration.seconds(max(int(execution_timeout.to_seconds()), longest + 3600))
        env = {
            **registry.environment(self.models),
            "DATA_BUCKET": registry.data_bucket.bucket_name,  # Validate reads evaluation/<model>/ there
            "MAX_DATASET_BYTES": str(int(self.max_dataset_bytes)),
            "MIN_ROWS": str(int(min_rows)),
            "CODE_VERSION": self.code_version,
            "EVENT_BUS_NAME": "default",
            # Allocate marks failed the versions left `training` longer than an execution may run.
            "EXECUTION_TIMEOUT_SECONDS": str(int(execution_timeout.to_seconds())),
            "POWERTOOLS_SERVICE_NAME": "shipyard-pipeline",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }

        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}

        def function(name: str, description: str, memory: int, timeout: Duration,
                     layers: Sequence[lambda_.ILayerVersion], handler: str | None = None,
                     environment: Mapping[str, str] | None = None) -> lambda_.Function:
            made = shipyard_function(
                self, name, description=f"Shipyard pipeline: {description}", handler=handler or HANDLERS[name],
                environment=environment or env, architecture=architecture, layers=layers, code=code,
                memory_size=memory, timeout=timeout, log_retention=log_retention,
                log_removal_policy=log_removal_policy)
            self.roles[name], self.log_groups[name] = made.role, made.log_group
            return made.function

        self.sagemaker: SageMakerTraining | None = None
        if on_sagemaker:
            job_limit = max_dataset_bytes or max(m.compute.max_dataset_bytes for m in on_sagemaker.values())
            self.sagemaker = SageMakerTraining(
                self, "SageMaker", registry=registry, models=on_sagemaker, wheelhouse=wheelhouse,
                environment={**registry.environment(on_sagemaker), "MAX_DATASET_BYTES": str(int(job_limit)),
                             "MIN_ROWS": str(int(min_rows)), "CODE_VERSION": self.code_version})
        self.allocate_function = function(
            "Allocate", "claim the dataset version, allocate the model version", 256, step_timeout, inference_layers,
            # Allocate names a sagemaker run's training job with the stack's prefix (its IAM is scoped to it).
            environment={**env, "TRAINING_JOB_PREFIX": self.sagemaker.prefix} if self.sagemaker else None)
        # One Train function per memory size the models ask for (compute.memory), each with the
        # dataset limit its memory allows; "Train" is the largest.
        self.train_functions: dict[int, lambda_.Function] = {}
        for memory in memories:
            limit = max_dataset_bytes or layout_max_dataset_bytes(memory)
            self.train_functions[memory] = function(
                train_function_id(memory, largest),
                "train, convert to ONNX, check parity, register the candidate"
                + (f" ({memory} MB models)" if len(memories) > 1 else ""),
                memory, train_timeout, training_layers, handler=HANDLERS["Train"],
                environment={**env, "MAX_DATASET_BYTES": str(int(limit))})
        self.train_function = self.train_functions[largest]
        self.validate_function = function("Validate", "score candidate and production on the holdout, gate",
                                          validate_memory_size, validate_timeout, inference_layers)
        self.record_function = function("Record", "promote, reject or mark failed, and emit the event",
                                         256, step_timeout, inference_layers)

        # Least privilege: what each step touches, nothing more. Only Record moves aliases, so only
        # Record may append audit events; nobody may edit one (infra/registry.py).
        registry.grant_write_registry(self.allocate_function)  # counter, version, run claim
        for fn in self.train_functions.values():
            registry.grant_read_datasets(fn)
            registry.grant_write_models(fn)
            # Its version's candidate record only: UpdateItem in model partitions, naming only
            # the attributes record_candidate writes. Train parses untrusted CSVs, so it gets
            # no PutItem, no MODELS items (counters, aliases) and no audit table.
            registry.grant_update_versions(fn, attributes=CANDIDATE_ATTRIBUTES)
        registry.grant_read_models(self.validate_function)
        registry.grant_read_evaluation(self.validate_function)  # the trusted evaluation sets
        registry.grant_update_versions(self.validate_function)  # records both scores on the candidate
        registry.grant_move_aliases(self.record_function)  # promote, reject, mark failed
        # A manual approval's item (T#<version> in the model's partition, holding the task token):
        # PutItem in MODEL#* partitions only.
        registry.grant_write_drift_items(self.record_function)
        # The release loop: one Release function (infra/release.py).
        self.release = ProgressiveRelease(
            self, "Release", registry=registry, environment=registry.environment(self.models),
            metrics_reader=any(m.release.mode == "shadow" and m.release.agreement is not None
                               for m in self.models.values()),
            architecture=architecture, layers=inference_layers, code=code, timeout=step_timeout,
            log_retention=log_retention, log_removal_policy=log_removal_policy)
        self.roles["Release"], self.log_groups["Release"] = self.release.role, self.release.log_group
        self.release.grant_delete_alarms(self.record_function)  # MarkFailed removes a failed release's alarms
        if train_reserved_concurrency is not None:
            # A cap per Train function (reserved concurrency also reserves it from the account's pool).
            for fn in self.train_functions.values():
                fn.node.default_child.reserved_concurrent_executions = int(train_reserved_concurrency)
        default_bus = events.EventBus.from_event_bus_name(self, "DefaultBus", "default")
        default_bus.grant_put_events_to(self.record_function)
        default_bus.grant_put_events_to(self.allocate_function)  # `Pipeline Failed` of the stale versions it sweeps

        # ------------------------------------------------------------ state machine
        retry = dict(errors=list(TRANSIENT_ERRORS), interval=retry_interval, max_attempts=retry_attempts,
                     backoff_rate=retry_backoff_rate)

        def task(name: str, fn: lambda_.IFunction, timeout: Duration, result_path: str, **extra) -> tasks.LambdaInvoke:
            payload = {"input": sfn.JsonPath.entire_payload,
                       "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"), **extra}
            t = tasks.LambdaInvoke(
                self, f"{name}State", state_name=name, lambda_function=fn, payload=sfn.TaskInput.from_object(payload),
                payload_response_only=True, retry_on_service_exceptions=False, result_path=result_path,
                task_timeout=sfn.Timeout.duration(timeout.plus(Duration.seconds(30))),
            )
            t.add_retry(**retry)
            return t

        version = sfn.JsonPath.number_at("$.run.version")
        failed = sfn.Fail(self, "Failed", error="PipelineFailed", cause_path="$.failure.reason")
        could_not_record = sfn.Fail(self, "FailedUnrecorded", error="PipelineFailed",
                                    cause="the failure could not be recorded; see the execution's history")
        mark_failed = task("MarkFailed", self.record_function, step_timeout, "$.failure", action="mark_failed")
        # States.ALL does not catch States.DataLimitExceeded (AWS: a terminal error unless named): name it.
        mark_failed.add_catch(could_not_record, errors=[DATA_LIMIT_EXCEEDED], result_path="$.recordError")
        mark_failed.add_catch(could_not_record, errors=["States.ALL"], result_path="$.recordError")
        # A step failed after Promote had moved the alias (e.g. Promote timed out after its write):
        # the version serves, MarkFailed sent `Model Promoted` (with after_error), so the run succeeds.
        mark_failed.next(
            sfn.Choice(self, "StillPromoted?")
            .when(sfn.Condition.and_(sfn.Condition.is_present("$.failure.promoted"),
                                     sfn.Condition.boolean_equals("$.failure.promoted", True)),
                  sfn.Succeed(self, "PromotedDespiteError",
                              comment="production moved to this run's version before a later error"))
            .otherwise(failed))

        allocate = task("Allocate", self.allocate_function, step_timeout, "$.run")
        trains = {memory: task(train_function_id(memory, largest), fn, train_timeout, "$.train", version=version)
                  for memory, fn in self.train_functions.items()}
        validate = task("Validate", self.validate_function, validate_timeout, "$.validation", version=version)
        promote = task("Promote", self.record_function, step_timeout, "$.outcome", action="promote",
                       version=version, validation=sfn.JsonPath.object_at("$.validation"))
        reject = task("Reject", self.record_function, step_timeout, "$.outcome", action="reject",
                      version=version, validation=sfn.JsonPath.object_at("$.validation"))
        # A failed or stopped job fails its `.sync` state (States.TaskFailed, the DescribeTrainingJob
        # document as the Cause): MarkFailed records its FailureReason (steps.training_job_failure).
        on_job = self.sagemaker.state(self) if self.sagemaker else None
        def catch(t: sfn.TaskStateBase) -> None:
            t.add_catch(mark_failed, errors=[DATA_LIMIT_EXCEEDED], result_path="$.error")
            t.add_catch(mark_failed, errors=["States.ALL"], result_path="$.error")

        for t in (allocate, *trains.values(), *([on_job] if on_job else []), validate, promote, reject):
            catch(t)

        def await_decision(name: str) -> tasks.LambdaInvoke:
            """A callback task: Record asks for a decision and returns; the task ends when someone sends
            the decision with the token (SendTaskSuccess), or times out after spec.release.approval_timeout."""
            t = tasks.LambdaInvoke(
                self, f"{name}State", state_name=name, lambda_function=self.record_function,
                integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
                payload=sfn.TaskInput.from_object({
                    "input": sfn.JsonPath.entire_payload, "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "task_token": sfn.JsonPath.task_token, "action": "await_approval", "version": version}),
                retry_on_service_exceptions=False, result_path="$.decision",
                task_timeout=sfn.Timeout.at("$.spec.release.approval_timeout"))
            t.add_retry(**retry)
            return t

        after_gate = self._after_gate(
            promote=promote.next(sfn.Succeed(self, "Promoted")), reject=reject.next(sfn.Succeed(self, "Rejected")),
            mark_failed=mark_failed, catch=catch, await_decision=await_decision,
            approved=task("Approved", self.record_function, step_timeout, "$.approval", action="approved",
                          version=version),
            retry=retry, version=version)

        definition = allocate.next(
            sfn.Choice(self, "Duplicate?")
            .when(sfn.Condition.boolean_equals("$.run.duplicate", True),
                  sfn.Succeed(self, "AlreadyHandled", comment="this dataset object version already started a run"))
            .otherwise(self._train_on(trains, largest, on_job, validate.next(
                sfn.Choice(self, "Gate")
                .when(sfn.Condition.boolean_equals("$.validation.promote", True), after_gate)
                .otherwise(reject)
            )))
        )
        # A name under /aws/vendedlogs/: Step Functions delivers its logs as vended logs, and for a
        # log group outside that prefix CloudWatch Logs adds the group to the account's shared
        # resource policy (5,120 characters per policy, 10 policies per region): in a busy account
        # that fills up and the deploy fails. Under the prefix no resource policy is written. The
        # name is fixed, so a log group retained from a deleted stack of the same name must be
        # deleted (or imported) before that stack is created again (docs/pipeline.md).
        self.log_group = logs.LogGroup(self, "StateMachineLogs", retention=log_retention,
                                       log_group_name=state_machine_log_group_name(Stack.of(self).stack_name),
                                       removal_policy=log_removal_policy)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            comment="Shipyard: dataset upload -> train -> validate -> promote or reject (docs/pipeline.md)",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=execution_timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        if self.sagemaker is not None:
            self.sagemaker.grant_run(self.state_machine)
        Validations.of(self.state_machine.role).acknowledge(Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{Stack.of(self).get_logical_id(self.release.function.node.default_child)}"
               ".Arn>:*]",
            reason="CDK's LambdaInvoke grant covers the function and its qualified ARNs (<arn>:*, versions and "
                   "aliases) so lambda:InvokeFunction is limited to the Release function."))
        if alarm_topic is not None:
            self.use_alarm_topic(alarm_topic)

        # ------------------------------------------------------------ one rule per model
        self.rules: dict[str, events.Rule] = {}
        # Without a queue given, one of its own (admitting its rules once they exist, below).
        self.dead_letters = EventDeadLetters(self, "DeadLetters") if dead_letter_queue is None else None
        self.dead_letter_queue = dead_letter_queue or self.dead_letters.target_queue
        for name, spec in self.models.items():
            rule = upload_rule(
                self, f"Upload-{name}", description=f"Dataset uploads for model {name} start the Shipyard pipeline",
                bucket_name=registry.data_bucket.bucket_name, key_pattern=dataset_key_pattern(name),
                state_machine=self.state_machine, dead_letter_queue=self.dead_letter_queue,
                input={
                    "model": name,
                    "spec": spec_document(spec),
                    "dataset": {
                        "bucket": events.EventField.from_path("$.detail.bucket.name"),
                        "key": events.EventField.from_path("$.detail.object.key"),
                        "version_id": events.EventField.from_path("$.detail.object.version-id"),
                        "size": events.EventField.from_path("$.detail.object.size"),
                        "etag": events.EventField.from_path("$.detail.object.etag"),
                    },
                    "trigger": {"source": "s3", "event_id": events.EventField.event_id,
                                "time": events.EventField.time},
                })
            self.rules[name] = rule
        self.execution_ended_rule = self._execution_ended_rule()
        if self.dead_letters is not None:
            self.dead_letters.allow_rules_in(self)

    def _execution_ended_rule(self) -> events.Rule:
        """Step Functions' `Execution Status Change` of this state machine's executions that ended ABORTED,
        TIMED_OUT or FAILED → Record (``action: execution_ended``): a run stopped by an operator, past the
        execution timeout, or failed where no Catch reached records no outcome itself, so its version (a
        canary still serving, an approval nobody can decide) is closed here (docs/release.md). The upload
        rules' retries, event age and dead-letter queue; the Lambda permission admits this rule only."""
        rule = events.Rule(
            self, "ExecutionEnded",
            description="Pipeline executions that ended ABORTED, TIMED_OUT or FAILED: Record closes what they "
                        "left open",
            event_pattern=events.EventPattern(
                source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                detail={"status": list(EXECUTION_ENDED_STATUSES),
                        "stateMachineArn": [self.state_machine.state_machine_arn]}))
        detail = "$.detail."
        rule.add_target(targets.LambdaFunction(
            self.record_function,
            event=events.RuleTargetInput.from_object({
                "action": "execution_ended",
                "execution_arn": events.EventField.from_path(detail + "executionArn"),
                "status": events.EventField.from_path(detail + "status"),
                "input": events.EventField.from_path(detail + "input"),  # the execution input, a JSON string
                "error": events.EventField.from_path(detail + "error"),
                "cause": events.EventField.from_path(detail + "cause"),
                "stop_date": events.EventField.from_path(detail + "stopDate"),  # epoch milliseconds
            }),
            retry_attempts=UPLOAD_RETRY_ATTEMPTS, max_event_age=UPLOAD_MAX_EVENT_AGE,
            dead_letter_queue=self.dead_letter_queue))
        return rule

    def use_alarm_topic(self, topic: sns.ITopic) -> None:
        """A manual approval's message goes to ``topic`` (Record may publish there, nowhere else), and
        the release alarms notify it."""
        self.alarm_topic = topic
        self.record_function.add_environment("ALARM_TOPIC_ARN", topic.topic_arn)
        # sns:Publish on this topic, and the two key actions publishing to an encrypted topic needs
        # (named: Topic.grant_publish would grant kms:GenerateDataKey*).
        iam.Grant.add_to_principal(grantee=self.record_function, actions=["sns:Publish"],
                                   resource_arns=[topic.topic_arn])
        key = getattr(topic, "master_key", None)
        if key is not None:
            key.grant(self.record_function, "kms:GenerateDataKey", "kms:Decrypt")
        self.release.use_alarm_topic(topic)

    def _after_gate(self, *, promote: sfn.IChainable, reject: sfn.IChainable, mark_failed: sfn.IChainable,
                    catch: Callable[[sfn.TaskStateBase], None], await_decision: Callable[[str], sfn.TaskStateBase],
                    approved: sfn.TaskStateBase, retry: Mapping, version: str) -> sfn.IChainable:
        """The states after the gate passed (docs/pipeline.md): a person's approval when
        ``spec.release.approval`` is ``manual`` (not for a shadow, decided after its bake), then
        ``all_at_once`` → *promote*, ``canary``/``shadow`` → the release loop (infra/release.py). A run
        without ``spec.release`` (an older CLI) promotes at once, as before, and so does a model's first
        version (no production version: no traffic to share or copy)."""
        release = "$.spec.release"
        mode = f"{release}.mode"
        production = "$.validation.production_version"
        loop = self.release.loop(self, await_decision=await_decision("AwaitShadowDecision"), on_error=mark_failed,
                                 retry=retry, version=version, catch=catch)
        release_mode = (sfn.Choice(self, "ReleaseMode?", comment="spec.release.mode: all_at_once, canary or shadow")
                        .when(sfn.Condition.and_(sfn.Condition.is_present(mode),
                                                 sfn.Condition.or_(sfn.Condition.string_equals(mode, "canary"),
                                                                   sfn.Condition.string_equals(mode, "shadow")),
                                                 # a first version has no production to share traffic with
                                                 sfn.Condition.is_present(production),
                                                 sfn.Condition.is_not_null(production)),
                              loop)
                        .otherwise(promote))
        ask = await_decision("AwaitApproval")
        ask.add_catch(reject, errors=["States.Timeout"], result_path="$.approval_error")
        catch(ask)
        catch(approved)
        ask.next(sfn.Choice(self, "Decision?")
                 .when(sfn.Condition.string_equals("$.decision.decision", "approve"), approved.next(release_mode))
                 .otherwise(reject))
        approval = f"{release}.approval"
        return (sfn.Choice(self, "NeedsApproval?", comment="spec.release.approval manual (a shadow is decided "
                                                           "after its bake)")
                .when(sfn.Condition.and_(sfn.Condition.is_present(approval),
                                         sfn.Condition.string_equals(approval, "manual"),
                                         sfn.Condition.not_(sfn.Condition.string_equals(mode, "shadow"))), ask)
                .otherwise(release_mode))

    def _train_on(self, trains: Mapping[int, tasks.LambdaInvoke], largest: int, on_job: sfn.CustomState | None,
                  then: sfn.IChainable) -> sfn.IChainable:
        """The Train state, or a Choice: a run whose ``spec.compute.type`` is ``sagemaker`` goes to the
        training job, the others by ``spec.compute.memory`` (an input without it, e.g. started by an older
        CLI, goes to the largest Train function)."""
        for t in (*trains.values(), *([on_job] if on_job else [])):
            t.next(then)
        if len(trains) == 1 and on_job is None:
            return trains[largest]
        choice = sfn.Choice(self, "TrainOn", comment="the model's compute: a SageMaker job or the Train function "
                            "with its compute.memory")
        if on_job is not None:
            kind = "$.spec.compute.type"
            choice.when(sfn.Condition.and_(sfn.Condition.is_present(kind),
                                           sfn.Condition.string_equals(kind, "sagemaker")), on_job)
        memory = "$.spec.compute.memory"
        for size, t in trains.items():
            if size != largest:
                choice.when(sfn.Condition.and_(sfn.Condition.is_present(memory),
                                               sfn.Condition.number_equals(memory, size)), t)
        return choice.otherwise(trains[largest])

    # ------------------------------------------------------------------ metrics and widgets

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        """Widgets for the pipeline (one dashboard row)."""
        return [
            self.runs_widget("Pipeline executions"),
            cloudwatch.GraphWidget(
                title="Train duration p99 (ms) and errors",
                left=[fn.metric_duration(statistic="p99", period=Duration.minutes(5))
                      for fn in self.train_functions.values()],
                right=[fn.metric_errors(period=Duration.minutes(5)) for fn in self.train_functions.values()],
                width=12,
            ),
        ]
