"""cdk-nag (AwsSolutions) for Shipyard, and every acknowledged finding with its reason.

cdk-nag 3.x is a CDK *validation plugin*: ``Validations.of(app).add_plugins(AwsSolutionsChecks(app))``
runs the rules over the construct tree when the app synthesizes; errors fail ``cdk synth``
(non-zero exit) and every finding, acknowledged or not, lands in ``validation-report.json`` in
the cloud assembly. Findings are acknowledged with CDK's ``Validations.of(construct).acknowledge``,
one finding id at a time (``Rule[Finding]`` for rules with several findings per resource), on
the narrowest construct that owns the finding.

Policy: fix rather than acknowledge. What is left below is inherent to the design (prefix-scoped
S3 access, X-Ray, the API Gateway account logging role, SigV4 instead of Cognito) and each
acknowledgment says why.
"""
from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.deadletters import EventDeadLetters

PACK = "AwsSolutions"


def _ack(construct: IConstruct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def _arn_token(stack: Stack, construct) -> str:
    """How cdk-nag spells ``Fn::GetAtt <resource>.Arn`` in an IAM5 finding id."""
    return f"<{stack.get_logical_id(construct.node.default_child)}.Arn>"


def acknowledge_findings(stack) -> None:
    """Acknowledge the findings inherent to ``ShipyardStack`` (see the module docstring)."""
    registry = stack.registry
    inference = stack.inference
    artifacts = _arn_token(stack, registry.artifact_bucket)
    auth = inference.auth

    # -- Every function (infra/lambdas.py makes them all alike) ----------------------------
    for fn in stack.node.find_all():
        if not isinstance(fn, lambda_.Function):
            continue
        _ack(
            fn.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
            "resource-level permissions, so AWS requires Resource '*'. These are the only actions on '*' "
            "(tests/infra/test_stack.py::test_no_wildcard_actions_or_resources checks it).",
        )
        _ack(
            fn,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: the dependency layers (onnxruntime, numpy, scikit-learn, "
            "Powertools) are built for CPython 3.12 wheels (infra/layers.py); move runtime and layers together.",
        )

    # -- The EventBridge targets' dead-letter queues (infra/deadletters.py) ---------------
    for dead_letters in stack.node.find_all():
        if isinstance(dead_letters, EventDeadLetters):
            _ack(
                dead_letters.queue,
                "AwsSolutions-SQS3",
                "This queue *is* a dead-letter queue: the DeadLetterConfig of EventBridge targets "
                "(uploads, drift schedules, retraining). SQS3 only recognizes queues named in another "
                "queue's redrive policy; a DLQ of a DLQ would only move the same messages once more.",
            )

    # -- Inference function -------------------------------------------------------------
    _ack(
        inference.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/models/*]",
        "The function loads whichever model version the registry alias names "
        "(models/<model>/v<N>/model.onnx), so it reads the models/ prefix; only "
        "s3:GetObject/GetObjectVersion, and nothing outside models/.",
    )

    # -- Capture (Firehose → S3) -------------------------------------------------------
    if inference.capture_role is not None:
        _ack(
            inference.capture_role,
            f"AwsSolutions-IAM5[Resource::{artifacts}/capture/*]",
            "Firehose writes objects with generated keys under capture/<model>/YYYY/MM/DD/HH/, "
            "so its role needs s3:PutObject/AbortMultipartUpload on the capture/ prefix (only).",
        )
        _ack(
            inference.capture_role,
            f"AwsSolutions-IAM5[Resource::{artifacts}/capture-errors/*]",
            "Firehose writes records it failed to deliver under capture-errors/<model>/ with "
            "generated keys; PutObject/AbortMultipartUpload on that prefix only.",
        )

    # -- Training pipeline (infra/pipeline.py) ------------------------------------------------
    pipeline = stack.pipeline
    data = _arn_token(stack, registry.data_bucket)
    for train in pipeline.train_functions.values():  # one per compute.memory size
        _ack(
            train.role,
            f"AwsSolutions-IAM5[Resource::{artifacts}/models/*]",
            "The train step writes the artifacts of the version it allocated (models/<model>/v<N>/…), "
            "a key known only at run time; s3:PutObject/GetObject on the models/ prefix only.",
        )
        _ack(
            train.role,
            f"AwsSolutions-IAM5[Resource::{data}/datasets/*]",
            "The train step reads whichever dataset upload started the run (datasets/<model>/<any>.csv, "
            "a pinned S3 version); Get/GetObjectVersion on the datasets/ prefix of the data bucket only.",
        )
    _ack(
        pipeline.roles["Validate"],
        f"AwsSolutions-IAM5[Resource::{data}/evaluation/*]",
        "The validate step reads every trusted evaluation set of the model it validates "
        "(evaluation/<model>/<any>.csv, names chosen by the team); GetObject on the evaluation/ prefix "
        "of the data bucket only.",
    )
    _ack(
        pipeline.roles["Validate"],
        f"AwsSolutions-IAM5[Resource::{artifacts}/models/*]",
        "The validate step reads the candidate's and the production version's artifacts "
        "(models/<model>/v<N>/…, versions known at run time); read-only, models/ prefix only.",
    )
    sm_role = pipeline.state_machine.role
    _ack(
        sm_role,
        "AwsSolutions-IAM5[Resource::*]",
        "The state machine logs ALL events to CloudWatch Logs and traces with X-Ray: the log "
        "delivery actions (logs:CreateLogDelivery & co.) and xray:Put* support no resource-level "
        "permissions, so AWS requires Resource '*' for exactly those actions.",
    )
    for fn in (pipeline.allocate_function, *pipeline.train_functions.values(), pipeline.validate_function,
               pipeline.record_function):
        _ack(
            sm_role,
            f"AwsSolutions-IAM5[Resource::{_arn_token(stack, fn)}:*]",
            "CDK's LambdaInvoke grant covers the function and its qualified ARNs (<arn>:*, versions "
            "and aliases) so lambda:InvokeFunction is limited to this one pipeline function.",
        )
    if pipeline.sagemaker is not None:  # compute.type sagemaker (infra/trainjob.py)
        _acknowledge_training_jobs(stack, pipeline.sagemaker, sm_role, artifacts, data)

    # -- Batch scoring (infra/batch.py) --------------------------------------------------------
    batch = getattr(stack, "batch", None)
    if batch is not None:
        batch_sm = batch.state_machine.role
        for role, resource, reason in (
            (batch.roles["Prepare"], f"{data}/batch/*", "Prepare reads whichever CSV was uploaded under "
             "batch/<model>/ (its exact object version, to hash it); Get/GetObjectVersion on batch/ only."),
            (batch_sm, f"{data}/batch/*", "The Distributed Map's ItemReader reads the uploaded CSV "
             "(batch/<model>/<any>.csv, that object version); Get/GetObjectVersion on batch/ only."),
            (batch.roles["ScoreBatch"], f"{artifacts}/models/*", "ScoreBatch loads the version it scores "
             "with (models/<model>/v<N>/model.onnx, N known at run time); read-only, models/ only."),
            (batch.roles["ScoreBatch"], f"{data}/predictions/*", "ScoreBatch writes predictions/<model>/<run>/"
             "part-… and errors-… (run known at run time); s3:PutObject on predictions/ only, no read."),
            (batch.roles["Summarize"], f"{data}/predictions/*", "Summarize writes predictions/<model>/<run>/"
             "summary.json; s3:PutObject on predictions/ only, no read."),
            (batch.roles["Summarize"], f"{artifacts}/batch-results/*", "Summarize reads the Map run's "
             "ResultWriter manifest and result files (batch-results/<map run id>/…); read-only."),
            (batch_sm, f"{artifacts}/batch-results/*",
             "The Map's ResultWriter writes batch-results/<map run id>/… (keys Step Functions makes); "
             "Put/Get/multipart on that prefix only."),
            (batch_sm, "*", "The state machine logs ALL events to CloudWatch Logs and traces with X-Ray: "
             "the log delivery actions and xray:Put* support no resource-level permissions."),
        ):
            _ack(role, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
        for fn in (batch.prepare_function, batch.score_function, batch.summarize_function):
            _ack(batch_sm, f"AwsSolutions-IAM5[Resource::{_arn_token(stack, fn)}:*]",
                 "CDK's LambdaInvoke grant covers the function and its qualified ARNs (<arn>:*), so "
                 "lambda:InvokeFunction is limited to this one batch function.")
        for node in batch.state_machine.node.children:
            if node.node.id == "DistributedMapPolicy":
                for suffix in (":*", "/*:*"):
                    _ack(node, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                         "<AWS::AccountId>:execution:{\"Fn::Select\":[6,{\"Fn::Split\":[\":\",{\"Ref\":\""
                         f"{stack.get_logical_id(batch.state_machine.node.default_child)}\"}}]}}]}}{suffix}]",
                         "A Distributed Map starts and redrives its child executions, named by Step Functions "
                         "at run time under this state machine's executions (CDK's DistributedMapPolicy).")

    # -- Drift monitoring (infra/monitoring.py) -------------------------------------------------
    drift = stack.drift
    _ack(
        drift.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/capture/*]",
        "The drift check reads the newest captured inputs of the model it checks, objects Firehose "
        "names at delivery time (capture/<model>/YYYY/MM/DD/HH/<generated>); Get/GetObjectVersion "
        "on the capture/ prefix only. Its s3:ListBucket (on the bucket, no s3:prefix condition, so a "
        "missing object answers 404 rather than 403: infra/registry.py _grant_read) is not a finding.",
    )
    _ack(
        drift.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/models/*]",
        "The drift check reads the baseline of whichever version is production "
        "(models/<model>/v<N>/baseline.json, N known at run time); read-only, models/ prefix only.",
    )
    _ack(
        drift.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/drift/*]",
        "Each check writes a new report drift/<model>/<timestamp>.json, a key known only at run "
        "time; s3:PutObject on the drift/ prefix only (no read, no delete).",
    )
    _ack(
        drift.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/reports/*]",
        "After each check the drift function writes the model's HTML report reports/<model>/<timestamp>.html "
        "(docs/reports.md), a key known only at run time; s3:PutObject on the reports/ prefix only.",
    )
    _ack(
        drift.role,
        f"AwsSolutions-IAM5[Resource::{artifacts}/quality/*]",
        "The HTML report shows the newest quality check, quality/<model>/<checked_at>.json, found by "
        "listing at run time; Get/GetObjectVersion on the quality/ prefix only (read-only).",
    )

    # -- Model quality (infra/quality.py): the construct names its own prefix-scoped findings ----
    if getattr(stack, "quality", None) is not None:
        stack.quality.acknowledge_nag_findings()

    # -- REST API --------------------------------------------------------------------------
    api = inference.api
    cloudwatch_role = api.node.try_find_child("CloudWatchRole")
    if cloudwatch_role is not None:
        _ack(
            cloudwatch_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The regional API Gateway account role (needed for the access and execution logs "
            "cdk-nag requires) must write to log groups API Gateway creates per API and stage; "
            "AWS's managed policy for exactly that is the documented way. Turn off with "
            "api.cloudwatch_role=false when the account already has one.",
        )
    _ack(
        api,
        "AwsSolutions-APIG3",
        "No WAF web ACL by default: every method requires SigV4 (iam) or an API key with a "
        "throttled usage plan, the stage is throttled, and the request body is schema-validated; "
        "a web ACL (about USD 5+/month) is left to teams that expose the API more widely.",
    )
    if auth == "iam":
        _ack(
            api,
            "AwsSolutions-COG4",
            "Callers authenticate with SigV4 (AuthorizationType AWS_IAM, DESIGN.md api.auth=iam): "
            "CI, services and the shipyard CLI use IAM credentials, not Cognito user pools.",
        )
    elif auth == "api_key":
        _ack(
            api,
            "AwsSolutions-COG4",
            "api.auth=api_key is set explicitly in cdk.json: callers present an API key bound to a "
            "throttled usage plan instead of Cognito tokens.",
        )
        _ack(
            api,
            "AwsSolutions-APIG4",
            "api.auth=api_key is set explicitly in cdk.json: every method requires an API key "
            "(ApiKeyRequired) bound to a throttled usage plan, instead of an authorizer.",
        )
    else:  # "none": refused unless set explicitly (infra/config.py)
        for rule in ("AwsSolutions-COG4", "AwsSolutions-APIG4"):
            _ack(
                api,
                rule,
                "api.auth=none is set explicitly in cdk.json (local runs and demos only, see "
                "docs/configuration.md): the API is deliberately unauthenticated.",
            )


def _acknowledge_training_jobs(stack, jobs, sm_role, artifacts: str, data: str) -> None:
    """The SageMaker training job's role and what the state machine needs to run it."""
    prefix = jobs.prefix
    logs = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs"
    _ack(jobs.role, f"AwsSolutions-IAM5[Resource::{artifacts}/models/*]",
         "The training job writes the artifacts of the version Allocate gave it (models/<model>/v<N>/…), a key "
         "known only at run time; s3:PutObject/GetObject on the models/ prefix only, as the Train function.")
    _ack(jobs.role, f"AwsSolutions-IAM5[Resource::{data}/datasets/*]",
         "The training job reads whichever dataset upload started the run (datasets/<model>/<any>.csv, a pinned "
         "S3 version); Get/GetObjectVersion on the datasets/ prefix of the data bucket only, as the Train function.")
    _ack(jobs.role, f"AwsSolutions-IAM5[Resource::{artifacts}/training-jobs/*]",
         "SageMaker writes each job's output (model.tar.gz of /opt/ml/model, empty: the artifacts go to models/) "
         "under training-jobs/<job name>/; s3:PutObject on that prefix only.")
    _ack(jobs.role, f"AwsSolutions-IAM5[Resource::{logs}:log-stream:{prefix}*]",
         "SageMaker names each job's log streams <job name>/algo-1-<time> in the account's "
         "/aws/sagemaker/TrainingJobs group; the role writes streams of this stack's jobs (name prefix) only.")
    _ack(jobs.role, "AwsSolutions-IAM5[Resource::*]",
         "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions (AWS "
         "requires Resource '*'); PutMetricData is conditioned on the /aws/sagemaker/TrainingJobs namespace.")
    _ack(sm_role, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
         f"training-job/{prefix}*]",
         "Allocate names each run's training job <stack prefix><model>-v<N>-<hash> at run time; create, describe, "
         "stop and tag are allowed on this stack's prefix only (not training-job/*, which CDK's "
         "SageMakerCreateTrainingJob would grant).")


def apply_nag(app: App, stack) -> AwsSolutionsChecks:
    """Run AwsSolutions on *app* at synth time, with Shipyard's acknowledgments."""
    acknowledge_findings(stack)
    # Also copy each acknowledgment (id + reason) into the resource's template Metadata
    # (``cdk_nag.rules_to_suppress``), so the deployed template carries its audit trail.
    checks = AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    Validations.of(app).add_plugins(checks)
    return checks


def nag_findings(scope: IConstruct) -> list[dict]:
    """Unacknowledged AwsSolutions findings in *scope* (errors and warnings), for tests/tools."""
    report = AwsSolutionsChecks().validate_scope(scope)
    return [
        {
            "rule": violation.rule_name,
            "severity": violation.severity,
            "description": violation.description,
            "paths": [resource.construct_path for resource in violation.violating_resources],
        }
        for violation in report.violations
    ]
