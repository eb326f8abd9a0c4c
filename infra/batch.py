"""``BatchScoring``: batch scoring of a CSV on a Step Functions Distributed Map (docs/batch.md).

    S3 "Object Created" batch/<model>/….csv ──rule per model──► state machine (standard)
      Prepare ─► Score (Distributed Map: ItemReader CSV of the exact object version, ItemBatcher,
                  EXPRESS children running ScoreBatch, ResultWriter) ─► Summarize ─► Scored
         └─ any state: Catch States.DataLimitExceeded, States.ALL ─► RecordFailure ─► Failed

Three functions over ``functions/batch`` (inference layer: onnxruntime + numpy, no scikit-learn):
Prepare (the version to score with, the input's sha256 and rows, the header check), ScoreBatch
(one batch of rows → ``predictions/<model>/<run>/part-….csv`` and ``errors-….csv``) and Summarize
(``summary.json``, the registry's batch-run item, ``Batch Scored``; also RecordFailure). Each has
its own role with only what it uses.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from functions.core.layout import BATCH_PREFIX, BATCH_RESULTS_PREFIX, METRICS_NAMESPACE
from infra.deadletters import EventDeadLetters
from infra.lambdas import functions_code, shipyard_function
from infra.pipeline import DATA_LIMIT_EXCEEDED, TRANSIENT_ERRORS
from infra.registry import ModelRegistry
from infra.workflow import WorkflowRuns, upload_rule

HANDLERS = {
    "Prepare": "functions.batch.prepare.handler",
    "ScoreBatch": "functions.batch.score.handler",
    "Summarize": "functions.batch.summarize.handler",
}
# A child execution's input (BatchInput + Items) must stay under Step Functions' 256 KiB: the items
# get 192 KiB, the rest is for BatchInput (model, run, columns, at most 500 ragged rows).
MAX_INPUT_BYTES_PER_BATCH = 192 * 1024


def batch_key_pattern(model: str) -> list[dict]:
    """The rule's matcher of ``detail.object.key``: ``batch/<model>/*.csv`` (``*`` also matches ``/``)."""
    return [{"wildcard": f"{BATCH_PREFIX}{model}/*.csv"}]


def batch_log_group_name(stack_name: str) -> str:
    """``/aws/vendedlogs/states/<stack>-batch`` (a vended-logs name: see infra/pipeline.py)."""
    return f"/aws/vendedlogs/states/{stack_name}-batch"


@jsii.implements(sfn.IItemReader)
class VersionedCsvReader:
    """The Map's ItemReader: the CSV at ``$.batch.object`` read as **that object version**
    (``VersionId``, which ``S3CsvItemReader`` cannot set; AWS documents it for ``s3:getObject``:
    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html), the
    header in the first row. An upload over the key while a run reads it changes nothing."""

    def __init__(self, bucket: s3.IBucket, path: str = "$.batch.object") -> None:
        self._bucket = bucket
        self._path = path

    @property
    def bucket(self) -> s3.IBucket:
        return self._bucket

    @property
    def bucket_name_path(self) -> str | None:
        return None

    @property
    def max_items(self) -> None:
        return None

    @property
    def resource(self) -> str:
        return "arn:aws:states:::s3:getObject"

    def render(self, query_language=None) -> dict:
        return {
            "Resource": self.resource,
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            "Parameters": {"Bucket": self._bucket.bucket_name, "Key.$": f"{self._path}.key",
                           "VersionId.$": f"{self._path}.version_id"},
        }

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        # ListBucket without a prefix condition: a missing object is then 404, not 403 (infra/registry.py _grant_read)
        return [iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"],
                                    resources=[self._bucket.arn_for_objects(f"{BATCH_PREFIX}*")]),
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self._bucket.bucket_arn])]

    def validate_item_reader(self) -> list[str]:
        return []


class PrefixResultWriter(sfn.ResultWriterV2):
    """``ResultWriterV2`` whose grant covers its prefix only (CDK's covers the whole bucket): what
    Step Functions needs to write the Map run's results there
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html, IAM policies)."""

    def __init__(self, bucket: s3.IBucket, prefix: str) -> None:
        # COMPACT: each child's output only. The default (NONE) also writes every child's Input — the
        # whole batch of rows — so a 1M-row run's SUCCEEDED_0.json held the input file again, as JSON
        # (~200 MB), and Summarize ran out of memory reading it. A failed child's entry keeps its Input.
        super().__init__(bucket=bucket, prefix=prefix, writer_config=sfn.WriterConfig(
            output_type=sfn.OutputType.JSON, transformation=sfn.Transformation.COMPACT))
        self._scoped = bucket.arn_for_objects(f"{prefix}/*")
        self._bucket_arn = bucket.bucket_arn

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts",
                                             "s3:AbortMultipartUpload"], resources=[self._scoped]),
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self._bucket_arn])]


class BatchScoring(WorkflowRuns, Construct):
    """One standard state machine for all models, one upload rule per model."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        models: Iterable[str],
        architecture: str = "arm64",
        layers: Sequence[lambda_.ILayerVersion] = (),
        score_memory_size: int = 1769,
        score_timeout: Duration = Duration.minutes(5),
        prepare_timeout: Duration = Duration.minutes(15),
        summarize_timeout: Duration = Duration.minutes(5),
        max_concurrency: int = 10,
        tolerated_failure_percentage: float = 5,
        max_items_per_batch: int = 5000,
        execution_timeout: Duration = Duration.hours(12),
        retry_interval: Duration = Duration.seconds(2),
        retry_attempts: int = 4,
        retry_backoff_rate: float = 2.0,
        max_ragged_rows: int = 500,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        code: lambda_.Code | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        """
        :param registry: the buckets and table (inputs under ``batch/``, output under ``predictions/``).
        :param models: configured model names (one upload rule each).
        :param architecture: ``arm64`` (default) or ``x86_64``; must match the layers.
        :param layers: the functions' layers (onnxruntime, numpy, Powertools: the inference layer).
        :param score_memory_size: ScoreBatch memory in MB (default 1769, one full vCPU).
        :param score_timeout: ScoreBatch timeout (default 5 minutes).
        :param prepare_timeout: Prepare timeout: it reads the whole input once (default 15 minutes).
        :param summarize_timeout: Summarize/RecordFailure timeout (default 5 minutes).
        :param max_concurrency: child executions at once (default 10).
        :param tolerated_failure_percentage: batches that may fail entirely (after retries) and be
            reported rather than fail the run (default 5 %). Bad rows never fail a batch.
        :param max_items_per_batch: rows per batch at most (default 5000); a batch is also cut at
            192 KiB of rows (``MAX_INPUT_BYTES_PER_BATCH``).
        :param execution_timeout: the whole run (default 12 h).
        :param retry_interval: first retry delay after a transient error (default 2 s).
        :param retry_attempts: retries after transient errors (default 4).
        :param retry_backoff_rate: delay multiplier per retry (default 2).
        :param max_ragged_rows: rows whose field count is not the header's that a run accepts (each
            refused); more fails the run (default 500).
        :param log_retention: retention of the functions' and the state machine's log groups.
        :param log_removal_policy: what happens to those log groups when removed.
        :param code: the functions' code (default: the ``functions/`` package).
        :param dead_letter_queue: where upload events that could not start a run go (default: an
            ``EventDeadLetters`` of this construct).
        """
        super().__init__(scope, id)
        self.registry = registry
        self.models = list(models)
        code = code or functions_code()
        env = {
            **registry.environment(self.models),
            "DATA_BUCKET": registry.data_bucket.bucket_name,
            "EVENT_BUS_NAME": "default",
            "MAX_RAGGED_ROWS": str(int(max_ragged_rows)),
            "POWERTOOLS_SERVICE_NAME": "shipyard-batch",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        self.roles: dict[str, iam.Role] = {}

        def function(name: str, description: str, memory: int, timeout: Duration) -> lambda_.Function:
            made = shipyard_function(
                self, name, description=f"Shipyard batch scoring: {description}", handler=HANDLERS[name],
                environment=env, architecture=architecture, layers=layers, code=code, memory_size=memory,
                timeout=timeout, log_retention=log_retention, log_removal_policy=log_removal_policy)
            self.roles[name] = made.role
            return made.function

        self.prepare_function = function("Prepare", "resolve the version, hash and check the input CSV",
                                         512, prepare_timeout)
        self.score_function = function("ScoreBatch", "score one batch of rows with the ONNX model",
                                       score_memory_size, score_timeout)
        self.summarize_function = function("Summarize", "summary, lineage and the Batch Scored event",
                                           512, summarize_timeout)

        # Least privilege: Prepare reads the input and the registry; ScoreBatch reads models/ and the
        # version record and writes predictions/ only; Summarize reads the Map's results, writes
        # predictions/<m>/<run>/summary.json, the batch-run item and the event.
        registry.grant_read_registry(self.prepare_function)
        registry.grant_read_batch_inputs(self.prepare_function)
        registry.grant_read_registry(self.score_function)
        registry.grant_read_models(self.score_function)
        registry.grant_write_predictions(self.score_function)
        registry.grant_read_artifacts(self.summarize_function, BATCH_RESULTS_PREFIX)
        registry.grant_write_predictions(self.summarize_function)
        registry.grant_write_batch_runs(self.summarize_function)
        events.EventBus.from_event_bus_name(self, "DefaultBus", "default").grant_put_events_to(
            self.summarize_function)

        # ------------------------------------------------------------ state machine
        retry = dict(errors=list(TRANSIENT_ERRORS), interval=retry_interval, max_attempts=retry_attempts,
                     backoff_rate=retry_backoff_rate)

        def invoke(name: str, fn: lambda_.IFunction, timeout: Duration, payload: sfn.TaskInput | None,
                   result_path: str | None) -> tasks.LambdaInvoke:
            t = tasks.LambdaInvoke(
                self, f"{name}State", state_name=name, lambda_function=fn, payload=payload,
                payload_response_only=True, retry_on_service_exceptions=False, result_path=result_path,
                task_timeout=sfn.Timeout.duration(timeout.plus(Duration.seconds(30))))
            t.add_retry(**retry)
            return t

        run = sfn.JsonPath.string_at("$$.Execution.Name")  # the run id: unique per state machine
        execution_arn = sfn.JsonPath.string_at("$$.Execution.Id")
        failed = sfn.Fail(self, "Failed", error="BatchFailed", cause_path="$.failure.reason")
        # The failure recorder gets the whole state: $.batch is there when Prepare had finished.
        record_failure = invoke("RecordFailure", self.summarize_function, summarize_timeout, sfn.TaskInput.from_object({
            "action": "fail", "input": sfn.JsonPath.entire_payload, "run_id": run, "execution_arn": execution_arn,
        }), "$.failure")
        record_failure.next(failed)

        # {"input": <state>, …}: the handlers' step decorator merges it (functions/pipeline/runtime.py)
        prepare = invoke("Prepare", self.prepare_function, prepare_timeout, sfn.TaskInput.from_object({
            "input": sfn.JsonPath.entire_payload, "run_id": run, "execution_arn": execution_arn,
        }), "$.batch")

        # no payload: the child's whole input, {"BatchInput": …, "Items": […]}
        score = invoke("ScoreBatch", self.score_function, score_timeout, None, None)
        self.map = sfn.DistributedMap(
            self, "Score", state_name="Score",
            item_reader=VersionedCsvReader(registry.data_bucket),
            # each row with its 0-based index: the line of a refused row (index + 2) and the part's name
            item_selector={"index.$": "$$.Map.Item.Index", "row.$": "$$.Map.Item.Value"},
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=max_items_per_batch, max_input_bytes_per_batch=MAX_INPUT_BYTES_PER_BATCH,
                batch_input={"model.$": "$.batch.model", "version.$": "$.batch.version", "run.$": "$.batch.run",
                             "columns.$": "$.batch.columns", "ragged.$": "$.batch.ragged",
                             "output_prefix.$": "$.batch.output_prefix"}),
            map_execution_type=sfn.StateMachineType.EXPRESS,
            max_concurrency=max_concurrency,
            tolerated_failure_percentage=tolerated_failure_percentage,
            result_writer_v2=PrefixResultWriter(registry.artifact_bucket, BATCH_RESULTS_PREFIX.rstrip("/")),
            result_path="$.map",
        )
        self.map.item_processor(score)

        summarize = invoke("Summarize", self.summarize_function, summarize_timeout, sfn.TaskInput.from_object({
            "action": "summarize", "batch": sfn.JsonPath.object_at("$.batch"), "map": sfn.JsonPath.object_at("$.map"),
            "execution_arn": execution_arn,
        }), "$.summary")
        for state in (prepare, self.map, summarize):
            # States.ALL does not catch States.DataLimitExceeded (a terminal error unless named)
            state.add_catch(record_failure, errors=[DATA_LIMIT_EXCEEDED], result_path="$.error")
            state.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")

        definition = prepare.next(self.map).next(summarize).next(sfn.Succeed(self, "Scored"))
        self.log_group = logs.LogGroup(self, "StateMachineLogs", retention=log_retention,
                                       log_group_name=batch_log_group_name(Stack.of(self).stack_name),
                                       removal_policy=log_removal_policy)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            comment="Shipyard batch scoring: batch/<model>/<file>.csv -> predictions/<model>/<run>/ (docs/batch.md)",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=execution_timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )

        # ------------------------------------------------------------ one rule per model
        self.dead_letters = EventDeadLetters(self, "DeadLetters") if dead_letter_queue is None else None
        self.dead_letter_queue = dead_letter_queue or self.dead_letters.target_queue
        self.rules: dict[str, events.Rule] = {}
        for name in self.models:
            rule = upload_rule(
                self, f"Upload-{name}",
                description=f"CSV uploads under batch/{name}/ start a Shipyard batch scoring run",
                bucket_name=registry.data_bucket.bucket_name, key_pattern=batch_key_pattern(name),
                state_machine=self.state_machine, dead_letter_queue=self.dead_letter_queue,
                input={
                    "model": name,
                    "object": {
                        "bucket": events.EventField.from_path("$.detail.bucket.name"),
                        "key": events.EventField.from_path("$.detail.object.key"),
                        "version_id": events.EventField.from_path("$.detail.object.version-id"),
                        "size": events.EventField.from_path("$.detail.object.size"),
                    },
                    "version": "",  # production (the object's shipyard-version metadata may pin one)
                    "trigger": {"source": "s3", "event_id": events.EventField.event_id,
                                "time": events.EventField.time},
                })
            self.rules[name] = rule
        if self.dead_letters is not None:
            self.dead_letters.allow_rules_in(self)

    # ------------------------------------------------------------------ grants, metrics, widgets

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        """One dashboard row: runs, and ScoreBatch's duration and errors."""
        return [
            self.runs_widget("Batch scoring runs"),
            cloudwatch.GraphWidget(title="ScoreBatch duration p99 (ms) and errors",
                                   left=[self.score_function.metric_duration(statistic="p99",
                                                                             period=Duration.minutes(5))],
                                   right=[self.score_function.metric_errors(period=Duration.minutes(5))], width=12),
        ]
