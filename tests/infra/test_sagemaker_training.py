"""compute.type sagemaker at synth: the config, the TrainOnSageMaker state (createTrainingJob.sync, its
parameters from the run's spec), the TrainOn routing, the job role (what the Train role has, plus its
code, output, logs and metrics), the state machine's grants (this stack's jobs, PassRole to SageMaker
only), the code bundle asset, and cdk-nag / cfn-lint clean with a sagemaker model."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from infra.config import ConfigError, load_config
from infra.sagemaker_catalog import INSTANCE_MEMORY_GIB, instance_max_dataset_bytes
from tests.infra.test_least_privilege import _listify, _role_statements

CONFIG = {"stack_name": "Shipyard", "api": {"auth": "iam"}, "models": {
    "iris": {"target": "species"},
    "big": {"target": "species", "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "compute": {"type": "sagemaker", "instance_type": "ml.r5.xlarge", "volume_gb": 50, "max_runtime": "3h"}},
    "small_sm": {"target": "price", "task": "regression", "compute": {"type": "sagemaker"}},
}}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from tests.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("cdk.out.sagemaker"), CONFIG)


def _definition(synth) -> dict:
    [sm] = [v for k, v in synth.resources("AWS::StepFunctions::StateMachine").items() if k.startswith("Pipeline")]
    parts = sm["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "<token>" for p in parts))


def _logical(synth, type_: str, prefix: str) -> str:
    [lid] = [k for k in synth.resources(type_) if k.startswith(prefix)]
    return lid


# ---------------------------------------------------------------------------- config


def test_sagemaker_compute_defaults_and_its_dataset_limit():
    compute = load_config({"models": {"m": {"target": "y", "compute": {"type": "sagemaker"}}}}).models["m"].compute
    assert (compute.type, compute.instance_type, compute.volume_gb, compute.max_runtime) == \
        ("sagemaker", "ml.m5.xlarge", 30, 3600)
    # 16 GiB less 1 GiB for the OS and toolkit, through the Train function's memory model: ~3 GiB
    assert compute.max_dataset_bytes == instance_max_dataset_bytes("ml.m5.xlarge") == int((15 * 1024 - 256) * 2**20 / 5)
    assert compute.document() == {"type": "sagemaker", "instance_type": "ml.m5.xlarge", "volume_gb": 30,
                                  "max_runtime": 3600}
    # every type states its limit, growing with its memory
    limits = {t: instance_max_dataset_bytes(t) for t in INSTANCE_MEMORY_GIB}
    assert limits["ml.r5.24xlarge"] > limits["ml.m5.xlarge"] > limits["ml.m5.large"] > 0


@pytest.mark.parametrize("runtime, seconds", [(7200, 7200), ("2h", 7200), ("90m", 5400), ("28d", 28 * 86400)])
def test_max_runtime_takes_seconds_or_a_duration(runtime, seconds):
    raw = {"models": {"m": {"target": "y", "compute": {"type": "sagemaker", "max_runtime": runtime}}}}
    assert load_config(raw).models["m"].compute.max_runtime == seconds


@pytest.mark.parametrize("compute, key, words", [
    ({"type": "sagemaker", "instance_type": "ml.p3.2xlarge"}, "compute.instance_type",
     "not a SageMaker CPU training instance type Shipyard knows"),
    ({"type": "sagemaker", "instance_type": "ml.m5.xlarg"}, "compute.instance_type", "did you mean 'ml.m5.xlarge'"),
    ({"type": "sagemaker", "volume_gb": 0}, "compute.volume_gb", "from 1 to 16384"),
    ({"type": "sagemaker", "volume_gb": 20000}, "compute.volume_gb", "got 20000"),
    ({"type": "sagemaker", "max_runtime": "29d"}, "compute.max_runtime", "more than SageMaker's limit of 28 days"),
    ({"type": "sagemaker", "max_runtime": "2 hours"}, "compute.max_runtime", "'90m', '2h' or '1d'"),
    ({"type": "sagemaker", "max_runtime": 0}, "compute.max_runtime", "seconds >= 1"),
    ({"type": "sagemaker", "memory": 4096}, "compute.memory", "a SageMaker job's memory is its instance's"),
    ({"type": "sagemaker", "instance": "ml.m5.xlarge"}, "compute.instance", "did you mean 'instance_type'"),
    ({"volume_gb": 50}, "compute.volume_gb", "compute.type 'sagemaker' only"),
])
def test_bad_sagemaker_compute_names_the_model_and_key(compute, key, words):
    with pytest.raises(ConfigError) as info:
        load_config({"models": {"m": {"target": "y", "compute": compute}}})
    assert (info.value.model, info.value.key) == ("m", key) and words in str(info.value), str(info.value)


def test_the_instance_error_lists_each_type_with_its_dataset_limit():
    with pytest.raises(ConfigError) as info:
        load_config({"models": {"m": {"target": "y", "compute": {"type": "sagemaker", "instance_type": "x"}}}})
    assert "ml.m5.xlarge (16 GiB: datasets up to 2.9 GiB)" in str(info.value)
    assert "ml.r5.24xlarge (768 GiB: datasets up to 153.3 GiB)" in str(info.value)


def test_a_spec_too_long_for_a_hyperparameter_is_refused():
    from infra.trainjob import _check_hyperparameter

    config = {"models": {"m": {"target": "y", "compute": {"type": "sagemaker"},
                               "estimator": "sklearn.neural_network.MLPClassifier",
                               "params": {"hidden_layer_sizes": list(range(1, 700))}}}}
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert (info.value.model, info.value.key) == ("m", "params")
    assert "characters as JSON, more than the 2,500 a SageMaker hyperparameter holds" in str(info.value)
    # the same spec on Lambda is fine; a ModelSpec made by hand is refused by the construct too
    config["models"]["m"]["compute"] = {"type": "lambda"}
    spec = load_config(config).models["m"]
    long = type(spec)(**{**spec.__dict__, "compute": type(spec.compute)(type="sagemaker")})
    with pytest.raises(ValueError, match=r"model 'm': its spec is [\d,]+ characters as JSON"):
        _check_hyperparameter("m", long)


# ---------------------------------------------------------------------------- the state and routing


def test_sagemaker_runs_go_to_one_sync_training_job_state(synth):
    states = _definition(synth)["States"]
    job = states["TrainOnSageMaker"]
    assert job["Type"] == "Task" and job["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
    p = job["Parameters"]
    assert p["TrainingJobName.$"] == "$.run.training_job_name"
    assert p["ResourceConfig"] == {"InstanceCount": 1, "InstanceType.$": "$.spec.compute.instance_type",
                                   "VolumeSizeInGB.$": "$.spec.compute.volume_gb"}
    assert p["StoppingCondition"] == {"MaxRuntimeInSeconds.$": "$.spec.compute.max_runtime"}
    assert p["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    image = p["AlgorithmSpecification"]["TrainingImage"]
    assert image == "<token>.dkr.ecr.<token>.<token>/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    [mapping] = synth.template_dict["Mappings"].values()  # the registry account per region, looked up there
    assert mapping["us-east-1"] == {"account": "683313688378"} and mapping["eu-west-1"] == {"account": "141502667606"}
    hps = p["HyperParameters"]
    assert hps["sagemaker_program"] == "functions/pipeline/trainjob.py"
    assert hps["model.$"] == "States.JsonToString($.model)"
    assert hps["spec.$"] == "States.JsonToString($.spec)" and hps["dataset.$"] == "States.JsonToString($.dataset)"
    assert hps["version.$"] == "States.Format('{}', $.run.version)" and hps["execution_arn.$"] == "$$.Execution.Id"
    env = p["Environment"]
    assert json.loads(env["SHIPYARD_MODELS"]) == ["big", "small_sm"] and env["MIN_ROWS"] == "20"
    # the job's limit is the largest its models' instances allow (each run's spec caps it to its own)
    assert int(env["MAX_DATASET_BYTES"]) == instance_max_dataset_bytes("ml.r5.xlarge")
    assert p["OutputDataConfig"]["S3OutputPath"].startswith("s3://") and \
        p["OutputDataConfig"]["S3OutputPath"].endswith("/training-jobs/")
    assert job["ResultPath"] == "$.train" and job["Next"] == "Validate"
    assert [c["ErrorEquals"] for c in job["Catch"]] == [["States.DataLimitExceeded"], ["States.ALL"]]
    assert all(c["Next"] == "MarkFailed" for c in job["Catch"])
    # the execution outlasts the longest job (3 h) by an hour
    assert _definition(synth)["TimeoutSeconds"] == 4 * 3600


def test_train_on_routes_by_compute_type_and_a_plain_input_goes_to_lambda(synth):
    choice = _definition(synth)["States"]["TrainOn"]
    [rule] = choice["Choices"]
    assert rule["Next"] == "TrainOnSageMaker"
    assert {"Variable": "$.spec.compute.type", "StringEquals": "sagemaker"} in rule["And"]
    assert {"Variable": "$.spec.compute.type", "IsPresent": True} in rule["And"]
    assert choice["Default"] == "Train"  # one Lambda size (iris' 3008 MB); sagemaker models make no Train function
    assert len([k for k in synth.resources("AWS::Lambda::Function") if k.startswith("PipelineTrain")]) == 1


def test_the_rule_of_a_sagemaker_model_carries_its_compute(synth):
    rules = {k: v for k, v in synth.resources("AWS::Events::Rule").items() if k.startswith("PipelineUploadbig")}
    [rule] = rules.values()
    text = json.dumps(rule["Properties"]["Targets"][0]["InputTransformer"])
    assert '\\"compute\\":{\\"type\\":\\"sagemaker\\",\\"instance_type\\":\\"ml.r5.xlarge\\",\\"volume_gb\\":50,' \
           '\\"max_runtime\\":10800}' in text


def test_allocate_names_jobs_with_the_stack_prefix(synth):
    from infra.trainjob import job_name_prefix

    [allocate] = [v for k, v in synth.resources("AWS::Lambda::Function").items() if k.startswith("PipelineAllocate")]
    prefix = allocate["Properties"]["Environment"]["Variables"]["TRAINING_JOB_PREFIX"]
    assert prefix == job_name_prefix("Shipyard") and prefix.startswith("shipyard-") and len(prefix) <= 20
    assert job_name_prefix("Shipyard") != job_name_prefix("Shipyard-dev") == job_name_prefix("Shipyard-dev")


# ---------------------------------------------------------------------------- least privilege


def _statements_of_role(synth, prefix: str) -> list[dict]:
    return _role_statements(synth)[_logical(synth, "AWS::IAM::Role", prefix)]


def test_the_job_role_is_trusted_by_sagemaker_for_this_stacks_jobs_only(synth):
    role = synth.template_dict["Resources"][_logical(synth, "AWS::IAM::Role", "PipelineSageMakerJobRole")]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "training-job/shipyard-" in json.dumps(trust["Condition"]["ArnLike"]["aws:SourceArn"])


def test_the_job_role_gets_what_the_train_role_gets_plus_its_own_needs(synth):
    train = _statements_of_role(synth, "PipelineTrainRole")
    job = _statements_of_role(synth, "PipelineSageMakerJobRole")

    def pairs(statements):  # (action, resource, condition) triples: CDK merges statements differently per role
        return {(a, json.dumps(r, sort_keys=True), json.dumps(st.get("Condition"), sort_keys=True))
                for st in statements for a in _listify(st["Action"]) for r in _listify(st["Resource"])}

    registry = {p for p in pairs(train) if p[0].startswith("dynamodb:") or "Registry" in p[1]}
    assert registry and registry <= pairs(job)  # everything the Train function may do on the registry
    extra = pairs(job) - pairs(train)
    actions = sorted({a for a, _, _ in extra})
    assert actions == sorted(["s3:GetObject", "s3:PutObject", "logs:CreateLogGroup", "logs:CreateLogStream",
                              "logs:PutLogEvents", "logs:DescribeLogStreams", "cloudwatch:PutMetricData",
                              "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability",
                              "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"])
    job_only = [{"Action": a, "Resource": json.loads(r), "Condition": json.loads(c)} for a, r, c in extra]
    by_action = {a: s for s in job_only for a in _listify(s["Action"])}
    assert "training-jobs/*" in json.dumps(by_action["s3:PutObject"]["Resource"])
    assert by_action["logs:PutLogEvents"]["Condition"] is None
    assert "log-stream:shipyard-" in json.dumps(by_action["logs:PutLogEvents"]["Resource"])
    assert by_action["cloudwatch:PutMetricData"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    assert "repository/sagemaker-scikit-learn" in json.dumps(by_action["ecr:BatchGetImage"]["Resource"])
    # the code: its one object, nothing else of the assets bucket
    code = by_action["s3:GetObject"]["Resource"]
    assert ".gz" in json.dumps(code) and "*" not in json.dumps(code)
    # no alias moves, no audit table, no PutItem: as the Train function
    dyn = {a for s in job for a in _listify(s["Action"]) if a.startswith("dynamodb:")}
    assert dyn == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}


def test_the_state_machine_may_run_this_stacks_jobs_and_pass_this_role_only(synth):
    statements = _statements_of_role(synth, "PipelineStateMachineRole")
    sagemaker = [s for s in statements if any(a.startswith("sagemaker:") for a in _listify(s["Action"]))]
    assert len(sagemaker) == 1
    assert set(_listify(sagemaker[0]["Action"])) == {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                                                     "sagemaker:StopTrainingJob", "sagemaker:AddTags",
                                                     "sagemaker:ListTags"}
    assert json.dumps(sagemaker[0]["Resource"]).endswith(':training-job/shipyard-' + json.dumps(
        sagemaker[0]["Resource"]).split("training-job/shipyard-")[1])
    assert "training-job/*" not in json.dumps(sagemaker[0]["Resource"])
    [passrole] = [s for s in statements if "iam:PassRole" in _listify(s["Action"])]
    assert passrole["Resource"] == {"Fn::GetAtt": [_logical(synth, "AWS::IAM::Role", "PipelineSageMakerJobRole"),
                                                   "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    [rule] = [s for s in statements if "events:PutRule" in _listify(s["Action"])]
    assert "rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule" in json.dumps(rule["Resource"])


# ---------------------------------------------------------------------------- the code asset


def test_the_code_bundle_is_a_deterministic_file_asset_of_functions(synth):
    from infra.trainjob import bundle_bytes

    job = synth.stack.pipeline.sagemaker
    data = job.bundle.read_bytes()
    assert bundle_bytes() == bundle_bytes()  # same sources, same bytes
    assert gzip.decompress(data)[:0] == b"" and data[4:8] == b"\0\0\0\0"  # gzip header time 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "functions/pipeline/trainjob.py" in names
    assert all(n.startswith("functions/") and n.endswith(".py") for n in names)  # no wheelhouse: build_layers off
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}
    assets = json.loads(next(synth.outdir.glob("*.assets.json")).read_text())["files"]
    digest = hashlib.sha256(data).hexdigest()
    [entry] = [a for a in assets.values() if a["source"].get("packaging") == "file"
               and (synth.outdir / a["source"]["path"]).read_bytes() == data]
    assert entry["destinations"]  # published as a file asset, as is
    assert digest  # the bundle's name carries its digest
    assert job.bundle.name.startswith(f"code-{digest[:16]}")


# ---------------------------------------------------------------------------- scanners


def test_nag_is_clean_with_a_sagemaker_model(synth):
    assert synth.nag == [], json.dumps(synth.nag, indent=1)[:3000]


def test_cfn_lint_is_clean_with_a_sagemaker_model(synth):
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(synth.template_dict), config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches if m.rule.id.startswith("E")] == []


@pytest.mark.slow
def test_checkov_is_clean_with_a_sagemaker_model_except_the_reasoned_skips(synth):
    from tests.infra.test_checkov import _failures, _skipped

    [template] = synth.outdir.glob("*.template.json")
    unexplained = [f for f in _failures(template) if not _skipped(*f)]
    assert not unexplained, f"checkov failures without a reason in SKIPS: {unexplained}"


def test_the_definition_with_the_sagemaker_state_passes_asl_validator(synth, tmp_path):
    from tests.infra.test_asl import _output, definitions, validate

    found = {lid: d for lid, d in definitions(synth.template_dict).items() if "TrainOnSageMaker" in d["States"]}
    [(lid, definition)] = found.items()
    result = validate(definition, tmp_path / f"{lid}.json")
    assert result.returncode == 0 and "is valid" in result.stdout, _output(result)


def test_the_state_is_what_cdks_sagemaker_task_renders_but_for_the_per_run_sizes(synth):
    """TrainOnSageMaker is a CustomState (infra/trainjob.py says why); it must stay the integration
    tasks.SageMakerCreateTrainingJob renders with IntegrationPattern.RUN_JOB: the same resource and
    parameter names, with VolumeSizeInGB and MaxRuntimeInSeconds taken from the run instead of fixed."""
    from aws_cdk import App, Duration, Size, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks

    stack = Stack(App(), "Scratch")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    task = tasks.SageMakerCreateTrainingJob(
        stack, "Job", integration_pattern=sfn.IntegrationPattern.RUN_JOB, role=role,
        training_job_name=sfn.JsonPath.string_at("$.run.training_job_name"),
        algorithm_specification=tasks.AlgorithmSpecification(
            training_image=tasks.DockerImage.from_registry("image:tag"), training_input_mode=tasks.InputMode.FILE),
        hyperparameters={"sagemaker_program": "p"}, environment={"A": "b"},
        output_data_config=tasks.OutputDataConfig(s3_output_location=tasks.S3Location.from_json_expression("$.o")),
        resource_config=tasks.ResourceConfig(
            instance_count=1, instance_type=ec2.InstanceType(sfn.JsonPath.string_at("$.spec.compute.instance_type")),
            volume_size=Size.gibibytes(30)),
        stopping_condition=tasks.StoppingCondition(max_runtime=Duration.hours(1)),
        tags={"k": "v"})
    cdk = stack.resolve(task.to_state_json())
    ours = _definition(synth)["States"]["TrainOnSageMaker"]
    assert ours["Resource"].rsplit(":::", 1)[1] == cdk["Resource"]["Fn::Join"][1][-1].rsplit(":::", 1)[1] \
        == "sagemaker:createTrainingJob.sync"
    mine, theirs = ours["Parameters"], cdk["Parameters"]
    assert set(mine) == set(theirs)
    assert mine["AlgorithmSpecification"].keys() == theirs["AlgorithmSpecification"].keys()
    assert mine["OutputDataConfig"].keys() == {"S3OutputPath"} and set(theirs["OutputDataConfig"]) == {"S3OutputPath.$"}
    assert set(theirs["ResourceConfig"]) == {"InstanceCount", "InstanceType.$", "VolumeSizeInGB"}
    assert set(mine["ResourceConfig"]) == {"InstanceCount", "InstanceType.$", "VolumeSizeInGB.$"}
    assert set(theirs["StoppingCondition"]) == {"MaxRuntimeInSeconds"}
    assert set(mine["StoppingCondition"]) == {"MaxRuntimeInSeconds.$"}
    assert mine["TrainingJobName.$"] == theirs["TrainingJobName.$"]
