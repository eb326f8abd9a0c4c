"""The real stack with pipeline test models, synthesized once, brought up once on the local cloud.

Retries are short (1 s, backoff 1) so a retried state costs seconds, and the dataset size limit
is 192 KiB so the over-size refusal needs no 100 MiB upload. Everything else is the stack as
``cdk synth`` builds it: the state machine definition, rules, input transformer, functions and
their environment come from the synthesized template.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from tests.pipeline import data

MODELS = {
    # string labels (cat/dog/fish) and a string feature (colour)
    "animals": {"target": "species", "task": "classification",
                "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500},
                "metric": "accuracy", "min_score": 0.6, "max_regression": 0.0, "holdout": 0.2,
                "drift": {"threshold": 0.1, "window": 50}},
    "prices": {"target": "price", "task": "regression", "estimator": "sklearn.linear_model.Ridge",
               "params": {"alpha": 0.5}, "metric": "r2", "min_score": 0.5},
    "strict": {"target": "species", "task": "classification", "min_score": 0.999},
    # used by one test only, so its first run is promoted whatever the other tests did
    "deadline": {"target": "price", "task": "regression", "estimator": "sklearn.linear_model.Ridge",
                 "metric": "r2", "min_score": 0.5},
    # used by the tamper-proof artifacts test only (its production model.onnx is overwritten)
    "sealed": {"target": "price", "task": "regression", "estimator": "sklearn.linear_model.Ridge",
               "metric": "r2", "min_score": 0.5, "max_regression": 0.05},
}
# Data nobody here wrote (tests/realdata.py): Palmer penguins as shipped, scikit-learn's bundled
# sets; every estimator family, both tasks (tests/pipeline/test_real_data.py).
REAL_MODELS = {
    "penguins-rf": ("penguins", "species", "sklearn.ensemble.RandomForestClassifier"),
    "penguins-gb": ("penguins", "species", "sklearn.ensemble.GradientBoostingClassifier"),
    "penguins-hgb": ("penguins", "species", "sklearn.ensemble.HistGradientBoostingClassifier"),
    "mass-rf": ("penguins", "body_mass_g", "sklearn.ensemble.RandomForestRegressor"),
    "mass-gb": ("penguins", "body_mass_g", "sklearn.ensemble.GradientBoostingRegressor"),
    "mass-hgb": ("penguins", "body_mass_g", "sklearn.ensemble.HistGradientBoostingRegressor"),
    "wine-svc": ("wine", "target", "sklearn.svm.SVC"),
    "cancer-nb": ("breast_cancer", "target", "sklearn.naive_bayes.GaussianNB"),
    "cancer-knn": ("breast_cancer", "target", "sklearn.neighbors.KNeighborsClassifier"),
    "diabetes-elastic": ("diabetes", "target", "sklearn.linear_model.ElasticNet"),
    "diabetes-mlp": ("diabetes", "target", "sklearn.neural_network.MLPRegressor"),
    "diabetes-poisson": ("diabetes", "target", "sklearn.ensemble.HistGradientBoostingRegressor"),
    "wine-logistic": ("wine", "target", "sklearn.linear_model.LogisticRegression"),
    "cancer-extra": ("breast_cancer", "target", "sklearn.ensemble.ExtraTreesClassifier"),
}
REAL_PARAMS = {"wine-svc": {"probability": True}, "diabetes-elastic": {"alpha": 0.01},
               "diabetes-poisson": {"loss": "poisson"}, "wine-logistic": {"max_iter": 2000},
               "diabetes-mlp": {"hidden_layer_sizes": [32], "max_iter": 2000}}
for _name, (_data, _target, _estimator) in REAL_MODELS.items():
    MODELS[_name] = {"target": _target, "estimator": _estimator, "params": REAL_PARAMS.get(_name, {}),
                     "task": "regression" if _target == "body_mass_g" or _data == "diabetes" else "classification"}
# The gate beyond the new data's own holdout (tests/pipeline/test_gate.py): iris, real data.
for _name in ("flip", "trusted"):
    MODELS[_name] = {"target": "target", "estimator": "sklearn.linear_model.LogisticRegression",
                     "params": {"max_iter": 1000}, "metric": "accuracy", "min_score": 0.8}
# A model with its own training memory: a second Train function (Train2048), chosen by the
# state machine on the run's spec.compute.memory (tests/pipeline/test_real_data.py).
MODELS["cancer-nb"]["compute"] = {"memory": 2048}
# Progressive release (tests/pipeline/test_release.py): a manual approval, a canary, a shadow with an
# agreement rule; each used by that file only.
_ANIMALS = {"target": "species", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 500}, "metric": "accuracy", "min_score": 0.6, "max_regression": 1.0}
# (approval_timeout 1 h: with it the execution timeout stays 2 h, which test_failures.py counts on)
MODELS["approval"] = {**_ANIMALS, "release": {"approval": "manual", "approval_timeout": "1h"}}
MODELS["canary"] = {**_ANIMALS, "release": {"mode": "canary", "percent": 50, "bake": "30m"}}
MODELS["shadowed"] = {**_ANIMALS, "release": {"mode": "shadow", "bake": "5m", "agreement": 0.8, "min_samples": 5}}
# Model quality on live traffic (tests/pipeline/test_quality_local.py): hourly checks, a day's window,
# few labels; retraining on the dataset plus the labelled traffic. Used by that file only.
MODELS["graded"] = {**_ANIMALS, "max_regression": 1.0,
                    "quality": {"schedule": "rate(1 hour)", "min_labels": 20, "window": "1d", "min_score": 0.7,
                                "retrain": "dataset+labels"}}
MAX_DATASET_BYTES = 192 * 1024  # breast-cancer, the largest real set here, is 122 KB
CONFIG = {"stack_name": "Shipyard", "api": {"auth": "iam"}, "models": MODELS}


@pytest.fixture(scope="session")
def pipeline_assembly(tmp_path_factory) -> Path:
    from aws_cdk import App, Duration

    from infra.config import load_config
    from infra.stack import ShipyardStack, read_cdk_json_context

    context = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}
    outdir = tmp_path_factory.mktemp("cdk.out.pipeline")
    app = App(context=context, outdir=str(outdir), analytics_reporting=False)
    ShipyardStack(app, "Shipyard", config=load_config(CONFIG), build_layers=False,
                  pipeline_options={"retry_interval": Duration.seconds(1), "retry_backoff_rate": 1.0,
                                    "retry_attempts": 2, "max_dataset_bytes": MAX_DATASET_BYTES})
    return Path(app.synth().directory)


class Faults:
    """Errors the local AWS endpoint answers instead of moto (``LocalCloud.intercept``):

    - ``fail_gets(key, n)``: S3 answers `503 SlowDown` to the next `n` GETs of one key;
    - ``fail_gets(key, n, status=403, code="InvalidObjectState", message=…)``: another S3 error instead;
    - ``refuse(action, n)``: a JSON-protocol action (``AWSStepFunctions.StartExecution``) answers
      `400 AccessDeniedException` `n` times.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.plans: dict[str, int] = {}
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.hits: dict[str, int] = {}
        self.refusals: dict[str, int] = {}

    def fail_gets(self, key: str, count: int, status: int = 503, code: str = "SlowDown",
                  message: str = "Please reduce your request rate.") -> None:
        from xml.sax.saxutils import escape

        with self.lock:
            self.plans[key] = count
            self.answers[key] = (status, (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                                          f"<Message>{escape(message)}</Message></Error>").encode())

    def refuse(self, action: str, count: int) -> None:
        with self.lock:
            self.refusals[action] = count

    def __call__(self, req):
        from werkzeug.wrappers import Response

        with self.lock:
            action = req.headers.get("X-Amz-Target", "")
            if self.refusals.get(action, 0) > 0:
                self.refusals[action] -= 1
                self.hits[action] = self.hits.get(action, 0) + 1
                return Response(json.dumps({"__type": "AccessDeniedException",
                                            "message": f"local fault: {action} refused"}),
                                status=400, content_type="application/x-amz-json-1.0")
            for key, left in self.plans.items():
                if req.method == "GET" and req.path.endswith("/" + key) and left > 0:
                    self.plans[key] = left - 1
                    self.hits[key] = self.hits.get(key, 0) + 1
                    status, body = self.answers[key]
                    return Response(body, status=status, content_type="application/xml")
        return None


@contextlib.contextmanager
def started_cloud(assembly: Path):
    """A local cloud of *assembly* whose ``shipyard`` events land in a queue the tests read
    (``events_of``), its log lines kept in ``log_lines``."""
    from localcloud import LocalCloud, Template

    lines: list[str] = []
    c = LocalCloud(Template.load(assembly), aws_port=0, api_port=0, clock=False, log=lines.append)
    c.log_lines = lines
    c.start()
    try:
        sqs, events = c.client("sqs"), c.client("events")
        queue_url = sqs.create_queue(QueueName="shipyard-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule_arn = events.put_rule(Name="shipyard-events", EventPattern=json.dumps({"source": ["shipyard"]}))["RuleArn"]
        # as in AWS, EventBridge delivers to a queue only if the queue's policy lets it
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]}
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
        events.put_targets(Rule="shipyard-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
        c.event_queue, c.seen_events = queue_url, []
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cloud(pipeline_assembly):
    with started_cloud(pipeline_assembly) as c:
        faults = Faults()
        c.intercept(faults)
        c.faults = faults
        yield c


class Run:
    """One dataset upload and the pipeline execution it started."""

    def __init__(self, cloud, model: str, body: bytes, name: str = "data.csv"):
        self.cloud, self.model, self.body = cloud, model, body
        self.key = f"datasets/{model}/{name}"
        self.bucket = cloud.outputs["DataBucketName"]
        self.version_id = cloud.client("s3").put_object(Bucket=self.bucket, Key=self.key, Body=body)["VersionId"]
        self.sha256 = hashlib.sha256(body).hexdigest()

    def executions(self, timeout: float = 240) -> list[dict]:
        sfn = self.cloud.client("stepfunctions")
        arn = self.cloud.outputs["PipelineArn"]
        deadline = time.time() + timeout
        while True:
            self.cloud.wait_for_executions(arn, timeout=timeout)
            found = []
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
                d = sfn.describe_execution(executionArn=e["executionArn"])
                if json.loads(d["input"]).get("dataset", {}).get("version_id") == self.version_id:
                    found.append(d)
            if found or time.time() > deadline:
                return found
            time.sleep(0.3)

    def execution(self) -> dict:
        found = self.executions()
        assert len(found) == 1, found
        return found[0]


def events_of(cloud, detail_type: str | None = None) -> list[dict]:
    sqs = cloud.client("sqs")
    cloud.wait_idle()
    while True:
        msgs = sqs.receive_message(QueueUrl=cloud.event_queue, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            cloud.seen_events.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=cloud.event_queue, ReceiptHandle=m["ReceiptHandle"])
    return [e for e in cloud.seen_events if detail_type is None or e["detail-type"] == detail_type]


@pytest.fixture
def run(cloud):
    return lambda model, body, name="data.csv": Run(cloud, model, body, name)


@pytest.fixture
def registry(cloud):
    from functions.core.registry import Registry

    return Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"), known_models=list(MODELS),
                    audit_table=cloud.outputs["AuditTableName"])


__all__ = ["data", "events_of", "MODELS"]
