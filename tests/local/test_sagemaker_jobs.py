"""SageMaker training jobs on the local cloud: CreateTrainingJob runs the entry script for real, and
Step Functions' ``createTrainingJob.sync`` waits for it (localcloud/sagemaker.py).

A hand-made cloud assembly: a role trusting sagemaker.amazonaws.com (and one that does not), a data
bucket, a state machine whose Train task is ``arn:aws:states:::sagemaker:createTrainingJob.sync``
with a Catch, and a file asset: the tarball of a tiny entry script that reads its channel and a CSV
from S3 with boto3 and writes a result to S3 and a model to ``SM_MODEL_DIR``.
"""
import io
import json
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

ASSET_KEY = "0123456789abcdef.tar.gz"
ASSETS_BUCKET = "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"

TRAIN = textwrap.dedent('''
    import argparse, csv, io, json, os, sys, time
    import boto3

    p = argparse.ArgumentParser()
    p.add_argument("--mode")
    p.add_argument("--bucket")
    p.add_argument("--rounds", type=int)
    args = p.parse_args()
    print("training starts", args.mode, flush=True)
    if args.mode == "fail":
        raise ValueError("bad data: no target column")
    if args.mode == "reason":  # the script's own words: the toolkit keeps a failure file it finds
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("target column 'y' missing")
        sys.exit(2)
    if args.mode == "sleep":
        time.sleep(120)
    if args.mode == "hog":
        block = bytearray(400 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
        time.sleep(5)
    channel = os.environ["SM_CHANNEL_TRAIN"]
    local_rows = sum(len(list(csv.DictReader(open(os.path.join(channel, n))))) for n in sorted(os.listdir(channel)))
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=args.bucket, Key="input/data.csv")["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    total = sum(float(r["x"]) for r in rows)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"mean": total / len(rows)}, f)
    s3.put_object(Bucket=args.bucket, Key=f"results/{os.environ['TRAINING_JOB_NAME']}.json", Body=json.dumps({
        "rows": len(rows), "local_rows": local_rows, "rounds": args.rounds,
        "hps": json.loads(os.environ["SM_HPS"]), "greeting": os.environ.get("GREETING"),
        "host": os.environ["SM_CURRENT_HOST"], "caller": boto3.client("sts").get_caller_identity()["Arn"],
        "config": json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))}))
    print("training done", flush=True)
''')


def _trust(service):
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


TRAIN_STATE = {
    "Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
    "Parameters": {
        "TrainingJobName.$": "$.name",
        "AlgorithmSpecification": {
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
            "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": "train.py",
                            "sagemaker_submit_directory": "${Submit}",
                            "sagemaker_region": "${AWS::Region}",
                            "mode.$": "$.mode", "bucket": "${Data}", "rounds": "3"},
        "RoleArn": "${JobRole.Arn}",
        "ResourceConfig": {"InstanceCount": 1, "InstanceType.$": "$.instance", "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.max_runtime"},
        "OutputDataConfig": {"S3OutputPath": "s3://${Data}/sagemaker/"},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://${Data}/input/", "S3DataDistributionType": "FullyReplicated"}}}],
        "Environment": {"GREETING": "hello"}},
    "ResultPath": "$.train",
    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
    "End": True}


def _machine(timeout=None):
    train = dict(TRAIN_STATE, **({"TimeoutSeconds": timeout} if timeout else {}))
    definition = {"StartAt": "Train", "States": {"Train": train, "Caught": {"Type": "Pass", "End": True}}}
    return {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]},
        "DefinitionString": {"Fn::Sub": [json.dumps(definition), {
            "Submit": {"Fn::Sub": f"s3://{ASSETS_BUCKET}/{ASSET_KEY}"}}]}}}


def _template():
    data_arn = {"Fn::GetAtt": ["Data", "Arn"]}
    assets_arn = {"Fn::Sub": "arn:aws:s3:::" + ASSETS_BUCKET}
    return {"Resources": {
        "Data": {"Type": "AWS::S3::Bucket"},
        "JobRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": _trust("sagemaker.amazonaws.com"),
            "Policies": [{"PolicyName": "job", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": [{"Fn::Join": ["", [data_arn, "/*"]]}, {"Fn::Join": ["", [assets_arn, "/*"]]}]},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": [data_arn, assets_arn]}]}}]}},
        "ScopedRole": {"Type": "AWS::IAM::Role", "Properties": {  # confused-deputy conditions, as Shipyard's
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                              "ArnLike": {"aws:SourceArn": {"Fn::Sub": "arn:aws:sagemaker:${AWS::Region}:"
                                                                       "${AWS::AccountId}:training-job/scoped-*"}}}}]}}},
        "LambdaRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": _trust("lambda.amazonaws.com")}},
        "MachineRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": _trust("states.amazonaws.com")}},
        "Failures": {"Type": "AWS::SQS::Queue"},
        "FailuresPolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "Failures"}], "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
                 "Resource": {"Fn::GetAtt": ["Failures", "Arn"]}}]}}},
        "FailedJobs": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Training Job State Change"],
                             "detail": {"TrainingJobStatus": ["Failed"]}},
            "Targets": [{"Id": "q", "Arn": {"Fn::GetAtt": ["Failures", "Arn"]}}]}},
        "Machine": _machine(),
        "TimedMachine": _machine(timeout=2),
    }, "Outputs": {
        "Bucket": {"Value": {"Ref": "Data"}}, "Machine": {"Value": {"Ref": "Machine"}},
        "TimedMachine": {"Value": {"Ref": "TimedMachine"}}, "Failures": {"Value": {"Ref": "Failures"}},
        "JobRoleArn": {"Value": {"Fn::GetAtt": ["JobRole", "Arn"]}},
        "LambdaRoleArn": {"Value": {"Fn::GetAtt": ["LambdaRole", "Arn"]}},
        "ScopedRoleArn": {"Value": {"Fn::GetAtt": ["ScopedRole", "Arn"]}}}}


@pytest.fixture(scope="module")
def assembly(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sagemaker-cdk-out")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = TRAIN.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (out / ASSET_KEY).write_bytes(buf.getvalue())
    (out / "Jobs.template.json").write_text(json.dumps(_template()))
    (out / "Jobs.assets.json").write_text(json.dumps({"version": "36.0.0", "files": {"0123456789abcdef": {
        "source": {"path": ASSET_KEY, "packaging": "file"},
        "destinations": {"current_account-current_region": {
            "bucketName": ASSETS_BUCKET, "objectKey": ASSET_KEY}}}}, "dockerImages": {}}))
    (out / "manifest.json").write_text(json.dumps({"version": "36.0.0", "artifacts": {
        "Jobs.assets": {"type": "cdk:asset-manifest", "properties": {"file": "Jobs.assets.json"}},
        "Jobs": {"type": "aws:cloudformation:stack", "dependencies": ["Jobs.assets"],
                 "properties": {"templateFile": "Jobs.template.json"}}}}))
    return out


@pytest.fixture(scope="module")
def cloud(assembly):
    from localcloud import LocalCloud, Template

    c = LocalCloud(Template.load(assembly), aws_port=0, api_port=0, clock=False, log=lambda m: None)
    c.start()
    c.training_jobs.stop_grace = 5.0  # SageMaker waits 120 s after SIGTERM; the scripts here die at once
    s3 = c.client("s3")
    s3.put_object(Bucket=c.outputs["Bucket"], Key="input/data.csv", Body=b"x,y\n1,0\n2,1\n6,1\n")
    yield c
    c.stop()


def _job(cloud, name, mode, instance="ml.m5.large", max_runtime=60, role=None):
    """CreateTrainingJob as the state machine would ask for it."""
    bucket = cloud.outputs["Bucket"]
    return cloud.client("sagemaker").create_training_job(
        TrainingJobName=name, RoleArn=role or cloud.outputs["JobRoleArn"],
        AlgorithmSpecification={"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/"
                                                 "sagemaker-scikit-learn:1.4-2-cpu-py3", "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": "train.py", "mode": mode, "bucket": bucket,
                         "sagemaker_submit_directory": f"s3://cdk-hnb659fds-assets-123456789012-{cloud.region}/"
                                                       f"{ASSET_KEY}"},
        ResourceConfig={"InstanceCount": 1, "InstanceType": instance, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime},
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/input/data.csv"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/sagemaker"})


def _execute(cloud, name, mode, instance="ml.m5.large", max_runtime=60, machine="Machine"):
    sfn = cloud.client("stepfunctions")
    return sfn.start_execution(stateMachineArn=cloud.outputs[machine], name=f"run-{name}", input=json.dumps(
        {"name": name, "mode": mode, "instance": instance, "max_runtime": max_runtime}))["executionArn"]


def _finished(cloud, arn, timeout=60):
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.time() < deadline, f"{arn} still running"
        time.sleep(0.2)
    return desc


def _until(cloud, name, secondary, timeout=30):
    sm = cloud.client("sagemaker")
    deadline = time.time() + timeout
    while True:
        try:
            desc = sm.describe_training_job(TrainingJobName=name)
        except ClientError:  # the state machine has not created it yet
            desc = {"SecondaryStatus": None}
        if desc["SecondaryStatus"] == secondary:
            return desc
        assert time.time() < deadline, f"{name}: {desc['SecondaryStatus']}, never {secondary}"
        time.sleep(0.1)


def _log_text(cloud, name):
    logs = cloud.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams] == [f"{name}/algo-1"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"])["events"]
    return "\n".join(e["message"] for e in events)


def test_code_asset_is_published_to_the_bootstrap_bucket(cloud, assembly):
    obj = cloud.client("s3").get_object(Bucket=f"cdk-hnb659fds-assets-123456789012-{cloud.region}", Key=ASSET_KEY)
    assert obj["Body"].read() == (assembly / ASSET_KEY).read_bytes()


def test_state_machine_trains_and_returns_the_description(cloud):
    out = _finished(cloud, _execute(cloud, "ok-1", "ok"))
    assert out["status"] == "SUCCEEDED", out
    train = json.loads(out["output"]).get("train") or pytest.fail(out["output"])
    bucket = cloud.outputs["Bucket"]
    assert train["TrainingJobStatus"] == "Completed" and train["SecondaryStatus"] == "Completed"
    assert train["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/sagemaker/ok-1/output/model.tar.gz"
    assert isinstance(train["TrainingStartTime"], int) and train["BillableTimeInSeconds"] >= 1
    assert train["HyperParameters"]["mode"] == "ok" and train["Environment"] == {"GREETING": "hello"}
    s3 = cloud.client("s3")
    model = s3.get_object(Bucket=bucket, Key="sagemaker/ok-1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert json.load(tar.extractfile("model.json")) == {"mean": 3.0}
    result = json.loads(s3.get_object(Bucket=bucket, Key="results/ok-1.json")["Body"].read())
    assert result["rows"] == 3 and result["local_rows"] == 3  # from S3 with boto3, and from the channel
    assert result["rounds"] == 3 and result["hps"] == {"bucket": bucket, "mode": "ok", "rounds": 3}
    assert result["greeting"] == "hello" and result["host"] == "algo-1"
    assert result["caller"].endswith(":assumed-role/" + cloud.outputs["JobRoleArn"].split("/")[-1] + "/SageMaker")
    assert result["config"]["sagemaker_program"] == "train.py"  # hyperparameters.json as SageMaker writes it
    desc = cloud.client("sagemaker").describe_training_job(TrainingJobName="ok-1")
    assert [t["Status"] for t in desc["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert desc["TrainingEndTime"] >= desc["TrainingStartTime"] and "FailureReason" not in desc
    assert "MetricDefinitions" not in desc["AlgorithmSpecification"]
    tags = cloud.client("sagemaker").list_tags(ResourceArn=desc["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"MANAGED_BY_AWS": "STARTED_BY_STEP_FUNCTIONS",
                                                   "AWS_STEP_FUNCTIONS_EXECUTION_ARN": out["executionArn"]}
    logs = _log_text(cloud, "ok-1")
    assert "training starts ok" in logs and "training done" in logs


def test_failing_script_fails_the_task_and_the_catch_sees_the_reason(cloud):
    out = _finished(cloud, _execute(cloud, "fail-1", "fail"))
    assert out["status"] == "SUCCEEDED"  # caught
    error = json.loads(out["output"])["error"]
    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"].startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""')
    assert cause["FailureReason"].endswith(" train.py --bucket " + cloud.outputs["Bucket"]
                                           + ' --mode fail --rounds 3", exit code: 1')
    assert "ValueError: bad data: no target column" in _log_text(cloud, "fail-1")
    # SageMaker's state change event reached the rule on its status
    cloud.wait_idle()
    sqs = cloud.client("sqs")
    events = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=cloud.outputs["Failures"],
                                                                 MaxNumberOfMessages=10)["Messages"]]
    [event] = [e for e in events if e["detail"]["TrainingJobName"] == "fail-1"]
    assert event["source"] == "aws.sagemaker" and event["resources"] == [cause["TrainingJobArn"]]
    assert event["detail"]["FailureReason"] == cause["FailureReason"]


def test_the_scripts_own_failure_file_is_the_reason(cloud):
    _job(cloud, "reason-1", "reason")
    assert cloud.training_jobs.wait("reason-1", 30) == "Failed"
    desc = cloud.client("sagemaker").describe_training_job(TrainingJobName="reason-1")
    assert desc["FailureReason"] == "AlgorithmError: target column 'y' missing, exit code: 1"
    assert "ModelArtifacts" not in desc


def test_max_runtime_stops_the_job(cloud):
    _job(cloud, "slow-1", "sleep", max_runtime=2)
    assert cloud.training_jobs.wait("slow-1", 30) == "Stopped"
    desc = cloud.client("sagemaker").describe_training_job(TrainingJobName="slow-1")
    assert desc["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert [t["Status"] for t in desc["SecondaryStatusTransitions"]][-3:] == [
        "Stopping", "Uploading", "MaxRuntimeExceeded"]
    assert desc["ModelArtifacts"]["S3ModelArtifacts"].endswith("/slow-1/output/model.tar.gz")  # saved on stop
    assert 2 <= desc["BillableTimeInSeconds"] < 15


def test_memory_over_the_instances_fails_the_job(cloud):
    cloud.training_jobs.memory_mib["ml.c5.xlarge"] = 200  # this test's instance: 200 MiB
    _job(cloud, "hog-1", "hog", instance="ml.c5.xlarge")
    assert cloud.training_jobs.wait("hog-1", 30) == "Failed"
    desc = cloud.client("sagemaker").describe_training_job(TrainingJobName="hog-1")
    assert desc["FailureReason"].startswith("OutOfMemoryError: Please use an instance type with more memory")
    assert "more than the 200 MiB of a ml.c5.xlarge" in _log_text(cloud, "hog-1")
    assert desc["BillableTimeInSeconds"] < 5  # killed when it passed the limit, not after its sleep


def test_stop_training_job(cloud):
    sm = cloud.client("sagemaker")
    _job(cloud, "stop-1", "sleep")
    _until(cloud, "stop-1", "Training")
    time.sleep(0.5)
    sm.stop_training_job(TrainingJobName="stop-1")
    assert sm.describe_training_job(TrainingJobName="stop-1")["TrainingJobStatus"] in ("Stopping", "Stopped")
    assert cloud.training_jobs.wait("stop-1", 30) == "Stopped"
    desc = sm.describe_training_job(TrainingJobName="stop-1")
    assert desc["SecondaryStatus"] == "Stopped"
    with pytest.raises(ClientError, match="only an InProgress job can be stopped"):
        sm.stop_training_job(TrainingJobName="stop-1")


def test_stopping_the_execution_stops_the_job(cloud):
    arn = _execute(cloud, "stop-2", "sleep")
    _until(cloud, "stop-2", "Training")
    cloud.client("stepfunctions").stop_execution(executionArn=arn, error="Halt", cause="test")
    assert _finished(cloud, arn)["status"] == "ABORTED"
    assert cloud.training_jobs.wait("stop-2", 30) == "Stopped"


def test_role_that_does_not_trust_sagemaker_is_refused(cloud):
    role = cloud.outputs["LambdaRoleArn"]
    with pytest.raises(ClientError) as err:
        _job(cloud, "untrusted-1", "ok", role=role)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == (
        f"Could not assume role {role}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role.")
    assert "untrusted-1" not in cloud.training_jobs.runs


def test_trust_conditions_see_the_job_as_source(cloud):
    """SageMaker assumes the role with aws:SourceArn = the job's ARN and aws:SourceAccount."""
    role = cloud.outputs["ScopedRoleArn"]
    with pytest.raises(ClientError, match="Could not assume role"):
        _job(cloud, "other-1", "ok", role=role)
    _job(cloud, "scoped-1", "ok", role=role)  # the role has no S3 rights: it cannot read the code
    assert cloud.training_jobs.wait("scoped-1", 30) == "Failed"
    reason = cloud.client("sagemaker").describe_training_job(TrainingJobName="scoped-1")["FailureReason"]
    assert reason.startswith("AlgorithmError: Framework Error:") and "AccessDenied" in reason


def test_duplicate_and_invalid_names(cloud):
    _job(cloud, "dup-1", "ok")
    with pytest.raises(ClientError) as err:
        _job(cloud, "dup-1", "ok")
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    assert "a training job with this name already exists" in err.value.response["Error"]["Message"]
    for bad in ("under_score", "x" * 64, "-lead"):
        with pytest.raises(ClientError) as err:
            _job(cloud, bad, "ok")
        assert err.value.response["Error"]["Code"] == "ValidationException", bad
    from botocore.config import Config

    sm = cloud.client("sagemaker", config=Config(parameter_validation=False))  # as Step Functions sends it
    base = sm.describe_training_job(TrainingJobName="dup-1")
    request = {k: base[k] for k in ("AlgorithmSpecification", "RoleArn", "ResourceConfig", "StoppingCondition",
                                    "OutputDataConfig")}
    hps = base["HyperParameters"]
    for bad, words in (({**hps, "spec": "x" * 2501}, "map values length less than or equal to 2500"),
                       ({**hps, "rounds": 3}, "'rounds' is 3")):
        with pytest.raises(ClientError, match=words):
            sm.create_training_job(TrainingJobName="limits-1", HyperParameters=bad, **request)
    assert cloud.training_jobs.wait("dup-1", 30) == "Completed"
    # through the state machine: the Catch sees Step Functions' name for SageMaker's error
    out = json.loads(_finished(cloud, _execute(cloud, "dup-1", "ok"))["output"])
    assert out["error"]["Error"] == "SageMaker.ResourceInUseException"
    assert "Error Code: ResourceInUse" in out["error"]["Cause"]


def test_task_timeout_stops_the_job(cloud):
    out = _finished(cloud, _execute(cloud, "timed-1", "sleep", machine="TimedMachine"))
    assert json.loads(out["output"])["error"]["Error"] == "States.Timeout"
    assert cloud.training_jobs.wait("timed-1", 30) == "Stopped"


def test_job_requests_are_authorized_for_the_local_clouds_sessions(cloud):
    """A session of a role without SageMaker permissions is refused, naming the training job's ARN."""
    import boto3

    creds = cloud.iam.credentials_for(cloud.outputs["JobRoleArn"], "probe", "sagemaker.amazonaws.com")
    sm = boto3.client("sagemaker", endpoint_url=cloud.aws_url, region_name=cloud.region,
                      aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                      aws_session_token=creds["AWS_SESSION_TOKEN"])
    with pytest.raises(ClientError) as err:
        sm.describe_training_job(TrainingJobName="ok-1")
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert ("not authorized to perform: sagemaker:DescribeTrainingJob on resource: "
            f"arn:aws:sagemaker:{cloud.region}:123456789012:training-job/ok-1") in str(err.value)
    listed = {j["TrainingJobName"]: j["TrainingJobStatus"]
              for j in cloud.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]}
    assert listed["ok-1"] == "Completed" and listed["fail-1"] == "Failed" and listed["slow-1"] == "Stopped"
