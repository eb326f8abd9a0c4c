"""``ModelRegistry``: where datasets, model artifacts and the registry/lineage records live.

Resources
    ``data_bucket``       datasets (``datasets/<model>/<any>.csv``); EventBridge notifications on
    ``artifact_bucket``   model versions (``models/``), captured inputs (``capture/``), drift reports
                          (``drift/``)
    ``access_log_bucket`` S3 server access logs of both buckets
    ``table``             the registry table (keys and GSI of docs/architecture.md)
    ``audit_table``       the audit log of alias moves, a table of its own (append-only: see
                          ``grant_move_aliases`` and docs/architecture.md)

Both data buckets: versioned, SSE-S3 encrypted, public access blocked, TLS required, server
access logs on, retained on stack deletion by default. The table: on-demand, point-in-time
recovery, encrypted with the AWS managed key.

Grants are least privilege and named after what the grantee does (``grant_read_registry``,
``grant_write_registry``, ``grant_read_models`` …) rather than after S3/DynamoDB verbs.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.core.layout import (
    BATCH_PREFIX,
    CAPTURE_ERROR_PREFIX,
    CAPTURE_PREFIX,
    DATASETS_PREFIX,
    EVALUATION_PREFIX,
    MODELS_PREFIX,
    PREDICTIONS_PREFIX,
)
from functions.quality import LABELS_PREFIX  # grant_read_labels

DATASET_INDEX = "by-dataset"


# Exactly what functions/core/registry.py calls: GetItem and Query to read; PutItem, UpdateItem
# and the ConditionCheck of TransactWriteItems (authorized per operation) to write. No deletes:
# versions and the audit log are never removed.
_TABLE_READ = ("dynamodb:GetItem", "dynamodb:Query")
_TABLE_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem")
# Item writes the audit table's own resource policy denies to every principal, whatever its
# identity policy says: events are appended (PutItem), never edited or removed.
AUDIT_DENIED = ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")
# The model partitions: versions, run claims, drift checks (not the ``MODELS`` items, which hold
# the version counters and the aliases).
MODEL_PARTITIONS = "MODEL#*"
# Top-level attributes a training run writes on its version (Registry.record_candidate), plus the
# table's and its index's key attributes, which IAM requires in every dynamodb:Attributes list.
CANDIDATE_ATTRIBUTES = ("pk", "sk", "dataset_ref", "version_ref", "status", "updated_at", "artifact_key",
                        "artifact_sha256", "artifact_version_id", "schema", "metrics", "lineage")


class ModelRegistry(Construct):
    """Data bucket, artifacts bucket and registry table, with their grants."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        noncurrent_version_expiration: Duration | None = None,
    ) -> None:
        """
        :param removal_policy: what happens to buckets and table when they leave the stack
            (default ``RETAIN``: datasets, models and lineage outlive the stack).
        :param noncurrent_version_expiration: expire noncurrent object versions after this long
            (default ``None``: keep every version). Lineage pins datasets by S3 version id, so an
            expiry shorter than you need to reproduce a training run breaks lineage.
        """
        super().__init__(scope, id)

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery cannot use SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(365),
                    noncurrent_version_expiration=Duration.days(30),
                )
            ],
        )

        lifecycle = [
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(7),
                noncurrent_version_expiration=noncurrent_version_expiration,
            )
        ]

        def secure_bucket(bucket_id: str, log_prefix: str, **extra) -> s3.Bucket:
            return s3.Bucket(
                self,
                bucket_id,
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                enforce_ssl=True,
                versioned=True,
                removal_policy=removal_policy,
                server_access_logs_bucket=self.access_log_bucket,
                server_access_logs_prefix=log_prefix,
                lifecycle_rules=lifecycle,
                **extra,
            )

        self.data_bucket = secure_bucket("Data", "data/")
        # EventBridge notifications ("Object Created" events start the pipeline), set with the
        # native AWS::S3::Bucket property rather than event_bridge_enabled=True: the L2 flag
        # deploys Custom::S3BucketNotifications (a Lambda function with s3:PutBucketNotification
        # on "*"), which the local cloud would have to emulate and cdk-nag would flag.
        data_cfn: s3.CfnBucket = self.data_bucket.node.default_child  # type: ignore[assignment]
        data_cfn.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )

        self.artifact_bucket = secure_bucket("Artifacts", "artifacts/")

        def table(id: str, **extra) -> dynamodb.Table:
            """pk/sk strings, on demand, encrypted, point-in-time recovery, kept on RETAIN."""
            return dynamodb.Table(
                self,
                id,
                partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                deletion_protection=removal_policy == RemovalPolicy.RETAIN,
                removal_policy=removal_policy,
                **extra,
            )

        self.table = table("Table")
        self.table.add_global_secondary_index(
            index_name=DATASET_INDEX,
            partition_key=dynamodb.Attribute(name="dataset_ref", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="version_ref", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )

        # The audit log has a table of its own: IAM authorizes items by partition key
        # (dynamodb:LeadingKeys) but not by sort key, so in the registry table "append-only" could
        # only be a convention. Here, only the roles that move aliases may PutItem, and the
        # table's resource policy denies every principal UpdateItem/DeleteItem (and their batch
        # and PartiQL forms). The alias move stays one TransactWriteItems across both tables.
        self.audit_table = table(
            "AuditTable",
            resource_policy=iam.PolicyDocument(statements=[
                iam.PolicyStatement(
                    sid="AuditEventsAreAppendOnly",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=list(AUDIT_DENIED),
                    resources=["*"],  # this table (a resource policy cannot name its own ARN)
                )
            ]),
        )

    # ------------------------------------------------------------------ properties

    @property
    def table_name(self) -> str:
        return self.table.table_name

    @property
    def audit_table_name(self) -> str:
        return self.audit_table.table_name

    @property
    def data_bucket_name(self) -> str:
        return self.data_bucket.bucket_name

    @property
    def artifact_bucket_name(self) -> str:
        return self.artifact_bucket.bucket_name

    @property
    def dataset_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{DATASET_INDEX}"

    def environment(self, models: Iterable[str]) -> dict[str, str]:
        """The environment of a function that reads the registry (``Registry.from_env``) and the
        artifacts: ``REGISTRY_TABLE``, ``AUDIT_TABLE``, ``ARTIFACT_BUCKET`` and ``SHIPYARD_MODELS``
        (the JSON list of *models*, the names configured in cdk.json, known before their first
        version). Naming the audit table grants nothing: see ``grant_read_audit``."""
        return {
            "REGISTRY_TABLE": self.table.table_name,
            "AUDIT_TABLE": self.audit_table.table_name,
            "ARTIFACT_BUCKET": self.artifact_bucket.bucket_name,
            "SHIPYARD_MODELS": json.dumps(list(models)),
        }

    # ------------------------------------------------------------------ registry grants

    def grant_read_registry(self, grantee: iam.IGrantable) -> iam.Grant:
        """Get/Query the registry table and its ``by-dataset`` index (no Scan)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(_TABLE_READ),
            resource_arns=[self.table.table_arn, self.dataset_index_arn],
        )

    def grant_write_registry(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read and write registry items (versions, counters, run claims): the Allocate step. No
        access to the audit table, so no alias move (its transaction puts an audit event)."""
        self.grant_read_registry(grantee)
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(_TABLE_WRITE),
            resource_arns=[self.table.table_arn],
        )

    def grant_update_versions(self, grantee: iam.IGrantable,
                              attributes: Sequence[str] | None = None) -> iam.Grant:
        """Read the registry and ``UpdateItem`` in model partitions only (``dynamodb:LeadingKeys``
        ``MODEL#*``): status changes of versions, never the ``MODELS`` items (counters, aliases),
        no PutItem. *attributes*: the only top-level attributes an update may name
        (``dynamodb:Attributes``; include the key attributes), e.g. ``CANDIDATE_ATTRIBUTES``."""
        self.grant_read_registry(grantee)
        conditions: dict = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [MODEL_PARTITIONS]}}
        if attributes is not None:
            conditions["ForAllValues:StringEquals"] = {"dynamodb:Attributes": list(attributes)}
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:UpdateItem"],
            resource_arns=[self.table.table_arn],
            conditions=conditions,
        )

    def grant_read_audit(self, grantee: iam.IGrantable) -> iam.Grant:
        """Get/Query the audit log (``history``, ``last_event``, ``rollback_path``)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(_TABLE_READ),
            resource_arns=[self.audit_table.table_arn],
        )

    def grant_move_aliases(self, grantee: iam.IGrantable) -> iam.Grant:
        """What ``Registry.move_alias`` (promote, rollback) and the status changes around it need:
        read both tables; on the registry table UpdateItem (the model item's alias, the versions'
        statuses) and ConditionCheckItem; on the audit table **PutItem only** (the code puts
        events on ``attribute_not_exists(sk)``; Update/Delete are denied to everyone by the
        table's resource policy). No PutItem on the registry table. The Record function's grant;
        docs/architecture.md gives the same policy for the CLI's operators."""
        self.grant_read_registry(grantee)
        self.grant_read_audit(grantee)
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
            resource_arns=[self.table.table_arn],
        )
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:PutItem"],
            resource_arns=[self.audit_table.table_arn],
        )

    def grant_write_release_log(self, grantee: iam.IGrantable) -> iam.Grant:
        """Append release log events (``Registry.log_release_event``: ``L#<at>#…`` items of the audit
        table): PutItem on the audit table in model partitions (``MODEL#*``) only. IAM cannot narrow a
        put to a sort key prefix, and the table's resource policy still denies every Update/Delete, so
        events are only ever appended. No registry writes, no alias moves (no transaction on the
        registry table)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:PutItem"],
            resource_arns=[self.audit_table.table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [MODEL_PARTITIONS]}},
        )

    def grant_write_batch_runs(self, grantee: iam.IGrantable) -> iam.Grant:
        """Put the batch scoring runs' items (``B#<run>`` in model partitions): PutItem in ``MODEL#*``
        only (IAM cannot narrow a put to a sort key prefix), no Update/Delete, no alias moves."""
        return self.grant_write_drift_items(grantee)

    def grant_write_drift_items(self, grantee: iam.IGrantable) -> iam.Grant:
        """Put items into model partitions (``MODEL#*``) only: the drift check's records. No
        Update/Delete, no alias moves."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:PutItem"],
            resource_arns=[self.table.table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}},
        )

    # ------------------------------------------------------------------ S3 grants

    @staticmethod
    def _grant_objects(grantee: iam.IGrantable, bucket: s3.IBucket, actions: Sequence[str],
                       prefix: str) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=list(actions), resource_arns=[bucket.arn_for_objects(prefix + "*")]
        )

    @staticmethod
    def _grant_list(grantee: iam.IGrantable, bucket: s3.IBucket, prefix: str, *,
                    versions: bool = False) -> iam.Grant:
        """List under *prefix* only (an ``s3:prefix`` condition): for a grantee that lists and
        never reads objects (see ``_grant_read``)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:ListBucket", "s3:ListBucketVersions"] if versions else ["s3:ListBucket"],
            resource_arns=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [prefix + "*"]}},
        )

    @classmethod
    def _grant_read(cls, grantee: iam.IGrantable, bucket: s3.IBucket, actions: Sequence[str],
                    prefix: str) -> iam.Grant:
        """Read objects under *prefix*, and ``s3:ListBucket`` on the bucket **without** an
        ``s3:prefix`` condition. S3 answers a GetObject/HeadObject of a missing key with 404
        NoSuchKey only to a caller allowed s3:ListBucket, and it evaluates that permission with no
        ``s3:prefix`` in the request context: a prefix-scoped ListBucket makes every missing
        object a 403 AccessDenied, and the functions' "does not exist" messages could never be
        given. The listing shows key names of the bucket, never their contents (reads stay
        limited to *prefix*); the same statement covers listing under *prefix*."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["s3:ListBucket"], resource_arns=[bucket.bucket_arn])
        return cls._grant_objects(grantee, bucket, actions, prefix)

    def grant_read_models(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read model artifacts (``models/*`` of the artifacts bucket), any version."""
        return self._grant_read(grantee, self.artifact_bucket, ["s3:GetObject", "s3:GetObjectVersion"],
                                MODELS_PREFIX)

    def grant_write_models(self, grantee: iam.IGrantable) -> iam.Grant:
        """Write model artifacts under ``models/*`` (and read them back)."""
        self.grant_read_models(grantee)
        return self._grant_objects(grantee, self.artifact_bucket, ["s3:PutObject"], MODELS_PREFIX)

    def grant_read_artifacts(self, grantee: iam.IGrantable, prefix: str = "") -> iam.Grant:
        """Read and list the artifacts bucket under *prefix* (default: everything)."""
        return self._grant_read(grantee, self.artifact_bucket, ["s3:GetObject", "s3:GetObjectVersion"], prefix)

    def grant_write_artifacts(self, grantee: iam.IGrantable, prefix: str) -> iam.Grant:
        """Put objects into the artifacts bucket under *prefix* (e.g. ``drift/``)."""
        return self._grant_objects(grantee, self.artifact_bucket, ["s3:PutObject"], prefix)

    def grant_write_reports(self, grantee: iam.IGrantable) -> iam.Grant:
        """What ``functions.core.report.write_report`` needs (docs/reports.md): read the production
        baseline (``models/``), the newest drift and quality reports (``drift/``, ``quality/``), and put
        ``reports/<model>/<ts>.html``. The drift and quality checks write one after each check."""
        from functions.core.layout import DRIFT_PREFIX, QUALITY_PREFIX, REPORTS_PREFIX

        self.grant_read_models(grantee)
        for prefix in (DRIFT_PREFIX, QUALITY_PREFIX):
            self.grant_read_artifacts(grantee, prefix)
        return self.grant_write_artifacts(grantee, REPORTS_PREFIX)

    def grant_read_capture(self, grantee: iam.IGrantable) -> iam.Grant:
        """List and read captured inference records (``capture/*``): the drift check."""
        return self.grant_read_artifacts(grantee, CAPTURE_PREFIX)

    def grant_read_datasets(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read and list datasets (``datasets/*`` of the data bucket), any version."""
        return self._grant_read(grantee, self.data_bucket, ["s3:GetObject", "s3:GetObjectVersion"],
                                DATASETS_PREFIX)

    def grant_read_evaluation(self, grantee: iam.IGrantable) -> iam.Grant:
        """List and read the trusted evaluation sets (``evaluation/*`` of the data bucket)."""
        return self._grant_read(grantee, self.data_bucket, ["s3:GetObject"], EVALUATION_PREFIX)

    def grant_read_batch_inputs(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read batch scoring inputs (``batch/*`` of the data bucket), any object version."""
        return self._grant_read(grantee, self.data_bucket, ["s3:GetObject", "s3:GetObjectVersion"], BATCH_PREFIX)

    def grant_write_predictions(self, grantee: iam.IGrantable) -> iam.Grant:
        """Put batch scoring output (``predictions/*`` of the data bucket); no reading."""
        return self._grant_objects(grantee, self.data_bucket, ["s3:PutObject"], PREDICTIONS_PREFIX)

    def grant_read_labels(self, grantee: iam.IGrantable) -> iam.Grant:
        """List and read ground-truth labels (``labels/*`` of the data bucket): the quality check."""
        return self._grant_read(grantee, self.data_bucket, ["s3:GetObject"], LABELS_PREFIX)

    def grant_list_datasets(self, grantee: iam.IGrantable) -> iam.Grant:
        """List datasets and their versions (``datasets/*`` of the data bucket), no reading: drift
        retraining finds a model's newest dataset, the pipeline it starts reads it."""
        return self._grant_list(grantee, self.data_bucket, DATASETS_PREFIX, versions=True)

    def grant_capture_delivery(self, grantee: iam.IGrantable) -> iam.Grant:
        """What a Firehose delivery role needs to write ``capture/*`` (and its error prefix)."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            resource_arns=[self.artifact_bucket.bucket_arn],
        )
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resource_arns=[
                self.artifact_bucket.arn_for_objects(CAPTURE_PREFIX + "*"),
                self.artifact_bucket.arn_for_objects(CAPTURE_ERROR_PREFIX + "*"),
            ],
        )
