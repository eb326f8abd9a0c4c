"""`shipyard demo`: the whole loop on the local cloud, step by step, ending in a summary.

upload → train → validate → promote → predictions over HTTP → drifted traffic → scheduled drift
check → alarm → retrain → a second version promoted or rejected → lineage and audit → model quality:
predictions with inference ids → labels that disagree → quality check → quality alarm → retraining on
the dataset plus the labelled traffic.

Every step checks what really happened (registry, S3, HTTP answers, alarm states) and the demo
exits non-zero if any step did not happen. It uses the iris data set that ships with scikit-learn.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.apiclient import json_answer, signed_request
from infra.localstart import start_local_cloud

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL = "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEMO_EMAIL = "you@example.com"
QUALITY_PREDICTIONS = 100  # the quality step's predictions, all labelled (cdk.json: quality.min_labels 50)


class StepFailed(Exception):
    """A demo step did not happen; the message says what was seen instead."""


@dataclass
class Step:
    name: str
    ok: bool = False
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Demo:
    cloud: Any
    out: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    steps: list[Step] = field(default_factory=list)
    state: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ plumbing
    def step(self, name: str, fn: Callable[[], str]) -> bool:
        self.out(f"\n▶ {name}")
        started = time.time()
        record = Step(name)
        try:
            record.detail = fn() or ""
            record.ok = True
        except Exception as err:  # noqa: BLE001 - any failure is reported in the summary
            record.detail = f"{type(err).__name__}: {err}" if not isinstance(err, StepFailed) else str(err)
        record.seconds = time.time() - started
        self.steps.append(record)
        self.out(f"  {'✓' if record.ok else '✗'} {record.detail} ({record.seconds:.1f}s)")
        return record.ok

    @property
    def outputs(self) -> dict:
        return self.cloud.outputs

    def registry(self):
        from functions.core.registry import Registry

        return Registry(self.outputs["RegistryTableName"], client=self.cloud.client("dynamodb"),
                        known_models=[MODEL], audit_table=self.outputs["AuditTableName"])

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, dict, dict]:
        """A SigV4-signed request to the stack's API, as `shipyard predict` makes it."""
        url = self.outputs["ApiUrl"].rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        status, headers, raw = signed_request(method, url, data, "iam", session=self.cloud.session)
        return status, headers, json_answer(raw)

    def wait_for_pipeline(self, count: int, timeout: float = 600) -> list[dict]:
        """Until at least `count` executions of the pipeline exist and all have finished."""
        sfn = self.cloud.client("stepfunctions")
        arn = self.outputs.get("PipelineArn")
        if not arn:
            raise StepFailed("the stack has no PipelineArn output (no pipeline deployed)")
        deadline = time.time() + timeout
        errors_before = len(self.cloud.function_errors)
        while True:
            executions = sfn.list_executions(stateMachineArn=arn)["executions"]
            if len(executions) >= count and all(e["status"] != "RUNNING" for e in executions):
                return executions
            # only the function that starts runs (drift retraining) stands between us and the count
            failed = [e for e in self.cloud.function_errors[errors_before:]
                      if "Retrain" in (e.get("logical_id") or "")]
            if len(executions) < count and failed and all(e["status"] != "RUNNING" for e in executions):
                # what should have started the run failed (a refused call, a crash): say so, do not wait
                first = failed[0]
                raise StepFailed(f"{len(executions)} pipeline execution(s), wanted {count}: "
                                 f"{first.get('function', '?')} failed: {str(first.get('errorMessage', ''))[:300]}")
            if time.time() > deadline:
                raise StepFailed(f"{len(executions)} pipeline execution(s) after {timeout:.0f}s, "
                                 f"wanted {count} finished")
            time.sleep(0.5)

    # ------------------------------------------------------------------ the loop
    def upload(self) -> str:
        # as a user with alarm_email set would be: subscribed to the alarm topic
        self.cloud.client("sns").subscribe(TopicArn=self.outputs["AlarmTopicArn"], Protocol="email",
                                          Endpoint=DEMO_EMAIL)
        data = iris_csv()
        key = f"datasets/{MODEL}/iris.csv"
        put = self.cloud.client("s3").put_object(Bucket=self.outputs["DataBucketName"], Key=key, Body=data)
        self.state["dataset"] = {"key": key, "version_id": put.get("VersionId")}
        return f"s3://{self.outputs['DataBucketName']}/{key} ({len(data)} bytes, S3 version {put.get('VersionId')})"

    def first_version(self) -> str:
        executions = self.wait_for_pipeline(1)
        registry = self.registry()
        production = registry.get_alias(MODEL)
        versions = registry.list_versions(MODEL)
        if production is None:
            last = versions[-1] if versions else {}
            raise StepFailed(f"no production version; executions {[e['status'] for e in executions]}, "
                             f"latest version {last.get('version')} is {last.get('status')}: {last.get('reason')}")
        record = registry.get_version(MODEL, production)
        self.state["v1"] = production
        score = (record.get("metrics") or {}).get("accuracy")
        shown = f"{score:.4f}" if isinstance(score, (int, float)) else "not recorded"
        return f"v{production} trained, validated and promoted (holdout accuracy {shown})"

    def predict(self) -> str:
        rows = [dict(zip(FEATURES, r)) for r in iris_rows()[0][::30].tolist()]
        status, headers, answer = self.api("POST", f"/models/{MODEL}/predict", {"instances": rows})
        if status != 200:
            raise StepFailed(f"predict answered {status}: {answer.get('message')}")
        version = headers.get("X-Model-Version") or headers.get("x-model-version")
        if str(answer.get("version")) != str(self.state.get("v1")) or str(version) != str(self.state.get("v1")):
            raise StepFailed(f"answer came from version {answer.get('version')} (header {version}), "
                             f"production is v{self.state.get('v1')}")
        return f"{len(rows)} predictions from v{answer['version']}: {', '.join(map(str, answer['predictions']))}"

    def drifted_traffic(self) -> str:
        X, _, _ = iris_rows()
        rng = np.random.default_rng(7)
        shifted = X[rng.integers(0, len(X), 600)] * np.array([1.0, 1.0, 1.8, 2.5])  # petals grew
        sent = 0
        for start in range(0, len(shifted), 100):
            batch = [dict(zip(FEATURES, map(float, r))) for r in shifted[start:start + 100]]
            status, _, answer = self.api("POST", f"/models/{MODEL}/predict", {"instances": batch})
            if status != 200:
                raise StepFailed(f"predict answered {status}: {answer.get('message')}")
            sent += len(batch)
        self.cloud.wait_idle()
        s3 = self.cloud.client("s3")
        captured = s3.list_objects_v2(Bucket=self.outputs["ArtifactBucketName"], Prefix=f"capture/{MODEL}/")
        if not captured.get("KeyCount"):
            raise StepFailed("no captured inputs under capture/iris/")
        return f"{sent} drifted instances served; {captured['KeyCount']} capture object(s) in S3"

    def drift_check(self) -> str:
        fired = self.cloud.tick(time.time() + 24 * 3600)  # a day later: every drift schedule is due
        if not fired:
            raise StepFailed("no schedule fired (no drift monitor deployed?)")
        self.cloud.wait_idle()
        s3 = self.cloud.client("s3")
        deadline = time.time() + 120
        while True:
            reports = s3.list_objects_v2(Bucket=self.outputs["ArtifactBucketName"], Prefix=f"drift/{MODEL}/")
            if reports.get("KeyCount"):
                break
            if time.time() > deadline:
                raise StepFailed(f"schedules {fired} fired but no report under drift/{MODEL}/")
            time.sleep(0.5)
        key = sorted(o["Key"] for o in reports["Contents"])[-1]
        report = json.loads(s3.get_object(Bucket=self.outputs["ArtifactBucketName"], Key=key)["Body"].read())
        if not report.get("drift_detected"):
            raise StepFailed(f"report {key} found no drift (drifted share {report.get('drifted_share')}, "
                             f"reason {report.get('reason')})")
        drifted = sorted(n for n, f in report["features"].items() if f.get("drifted"))
        return f"{key}: drifted share {report['drifted_share']:.2f} ({', '.join(drifted)})"

    def alarm(self) -> str:
        deadline = time.time() + 60
        while True:
            self.cloud.evaluate_alarms()
            changes = [c for c in self.cloud.alarm_changes if c["to"] == "ALARM" and "drift" in c["alarm"].lower()]
            if changes:
                break
            if time.time() > deadline:
                raise StepFailed("the drift alarm did not go to ALARM")
            time.sleep(1)
        self.cloud.wait_idle()
        mails = [n for n in self.cloud.notifications if DEMO_EMAIL in json.dumps(n, default=str)]
        if not mails:
            raise StepFailed(f"{changes[0]['alarm']} is in ALARM but no e-mail reached {DEMO_EMAIL}")
        # The demo subscribed DEMO_EMAIL itself (nothing is sent: the local cloud prints e-mail); the
        # stack's alarm topic e-mails a real address only when cdk.json sets alarm_email.
        return (f"{changes[0]['alarm']} → ALARM; the alarm topic would e-mail {DEMO_EMAIL} (subscribed by the "
                "demo; set alarm_email in cdk.json for yours)")

    def retrain(self) -> str:
        executions = self.wait_for_pipeline(2)
        registry = self.registry()
        versions = registry.list_versions(MODEL)
        if len(versions) < 2:
            raise StepFailed(f"{len(executions)} executions but only {len(versions)} version(s)")
        second = versions[-1]
        if second["status"] not in {"production", "rejected"}:
            raise StepFailed(f"v{second['version']} ended {second['status']}: {second.get('reason')}")
        return f"v{second['version']} {second['status']}" + (f" ({second['reason']})" if second.get("reason") else "")

    def lineage(self) -> str:
        registry = self.registry()
        for v in registry.list_versions(MODEL):
            ds = (v.get("lineage") or {}).get("dataset") or {}
            self.out(f"  v{v['version']} {v['status']:<10} dataset {ds.get('key')} (S3 version {ds.get('version_id')}, "
                     f"sha256 {str(ds.get('sha256'))[:12]}…) "
                     f"execution {str(v.get('execution_arn')).rsplit(':', 1)[-1]}")
        history = registry.history(MODEL)
        for e in history:
            self.out(f"  audit #{e['seq']} v{e.get('from_version') or '-'} → v{e['to_version']} "
                     f"by {e['actor']}: {e['reason']}")
        if not history:
            raise StepFailed("the audit log is empty")
        return f"{len(history)} audit event(s)"

    def quality(self) -> str:
        """Predictions → labels that disagree → quality check (as `shipyard quality check`) → degraded →
        the quality alarm → retraining on the newest dataset plus the labelled traffic."""
        X, _, names = iris_rows()
        rng = np.random.default_rng(16)
        picked = X[rng.integers(0, len(X), QUALITY_PREDICTIONS)]
        ids = [f"demo-{i}" for i in range(QUALITY_PREDICTIONS)]
        rows = [dict(zip(FEATURES, map(float, r))) for r in picked]
        # pinned to the production version: the quality check judges production, and the API may still
        # answer from the version it cached before the drift retraining's promotion
        production = self.registry().get_alias(MODEL)
        status, _, answer = self.api("POST", f"/models/{MODEL}/predict?version={production}",
                                     {"instances": rows, "ids": ids})
        if status != 200:
            raise StepFailed(f"predict answered {status}: {answer.get('message')}")
        if answer.get("inference_ids") != ids:
            raise StepFailed(f"the answer carries inference ids {str(answer.get('inference_ids'))[:80]}, not the "
                             "ids sent")
        # ground truth arrives later: it disagrees with 4 of 5 predictions
        wrong = {n: names[(i + 1) % len(names)] for i, n in enumerate(names)}
        labels = [(i, wrong[p] if k % 5 else p) for k, (i, p) in enumerate(zip(ids, answer["predictions"]))]
        body = "inference_id,species\n" + "".join(f"{i},{t}\n" for i, t in labels)
        key = f"labels/{MODEL}/demo-labels.csv"
        self.cloud.client("s3").put_object(Bucket=self.outputs["DataBucketName"], Key=key, Body=body.encode())
        self.cloud.wait_idle()
        self.out(f"  {len(ids)} predictions (ids {ids[0]}…{ids[-1]}) from v{answer['version']}; "
                 f"s3://{self.outputs['DataBucketName']}/{key}: {len(labels)} labels, "
                 f"{sum(1 for k in range(len(labels)) if k % 5)} disagree")
        runs_before = len(self.cloud.client("stepfunctions").list_executions(
            stateMachineArn=self.outputs["PipelineArn"])["executions"])
        report = self.run_quality_check()
        if not report.get("degraded"):
            raise StepFailed(f"the quality check did not find {MODEL} degraded: score {report.get('score')}, "
                             f"reason {report.get('reason')}")
        self.out(f"  {report['report_key']}: {report['metric']} {report['score']:.3f} < min_score "
                 f"{report['min_score']:g} on {report['labels']['matched']} labelled predictions "
                 f"(coverage {report['coverage']:.2f})")
        deadline = time.time() + 60
        while True:
            self.cloud.evaluate_alarms()
            changes = [c for c in self.cloud.alarm_changes
                       if c["to"] == "ALARM" and c["alarm"].endswith(f"{MODEL}-quality")]
            if changes:
                break
            if time.time() > deadline:
                raise StepFailed(f"the quality alarm of {MODEL} did not go to ALARM")
            time.sleep(1)
        self.out(f"  {changes[0]['alarm']} → ALARM")
        executions = self.wait_for_pipeline(runs_before + 1)
        sfn = self.cloud.client("stepfunctions")
        retrains = [d for d in (sfn.describe_execution(executionArn=e["executionArn"]) for e in executions)
                    if (json.loads(d["input"]).get("trigger") or {}).get("source") == "quality"]
        if not retrains:
            raise StepFailed("Quality Degraded started no retraining run")
        trigger = json.loads(retrains[0]["input"])["trigger"]
        dataset = json.loads(retrains[0]["input"])["dataset"]["key"]
        self.wait_for_pipeline(len(executions))
        registry = self.registry()
        made = [v for v in registry.list_versions(MODEL)
                if ((v.get("lineage") or {}).get("dataset") or {}).get("key") == dataset]
        outcome = f"v{made[0]['version']} {made[0]['status']}" if made else "no version"
        self.state["quality"] = {"report": report["report_key"], "dataset": dataset, "outcome": outcome}
        return (f"{MODEL} degraded ({report['metric']} {report['score']:.2f}), {changes[0]['alarm']} → ALARM, "
                f"retrained on {dataset} ({trigger['base_dataset']['key']} + {trigger['labels']['rows']} labelled "
                f"predictions): {outcome}")

    def run_quality_check(self) -> dict:
        """Invoke the stack's quality function now, as `shipyard quality check` does."""
        client = self.cloud.client("lambda")
        names = [f["FunctionName"] for page in client.get_paginator("list_functions").paginate()
                 for f in page["Functions"] if f["FunctionName"].endswith("-quality")]
        if not names:
            raise StepFailed(f"no quality function: give {MODEL} a 'quality' block in cdk.json")
        answer = client.invoke(FunctionName=names[0], Payload=json.dumps({"model": MODEL}).encode())
        report = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError") or not isinstance(report, dict):
            raise StepFailed(f"the quality check failed: {str(report)[:300]}")
        return report

    def run(self) -> bool:
        plan = [
            ("Upload the iris dataset to the data bucket", self.upload),
            ("Pipeline: train → validate → promote", self.first_version),
            ("Predict over HTTP (SigV4-signed)", self.predict),
            ("Send drifted traffic (captured)", self.drifted_traffic),
            ("Scheduled drift check", self.drift_check),
            ("Drift alarm → SNS", self.alarm),
            ("Retrain on drift → second version", self.retrain),
            ("Lineage and audit log", self.lineage),
            ("Model quality: labels → quality alarm → retrain", self.quality),
        ]
        for name, fn in plan:
            if not self.step(name, fn) and name.startswith(("Upload", "Pipeline")):
                break  # nothing after these can happen
        self.summary()
        return len(self.steps) == len(plan) and all(s.ok for s in self.steps)

    def summary(self) -> None:
        self.out("\nSummary")
        width = max(len(s.name) for s in self.steps)
        for s in self.steps:
            self.out(f"  {'ok  ' if s.ok else 'FAIL'}  {s.name:<{width}}  {s.seconds:6.1f}s  {s.detail}")


def iris_rows() -> tuple[np.ndarray, list[str], list[str]]:
    from sklearn.datasets import load_iris

    iris = load_iris()
    return iris.data, [str(iris.target_names[t]) for t in iris.target], list(iris.target_names)


def iris_csv() -> bytes:
    X, labels, _ = iris_rows()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*FEATURES, "species"])
    for row, label in zip(X.tolist(), labels):
        writer.writerow([*row, label])
    return buf.getvalue().encode()


def demo_project(cwd: Path | None = None) -> Path:
    """The project the demo runs: the current directory's if its cdk.json declares the demo's model
    (a project from ``shipyard init``), else Shipyard's own checkout (its cdk.json declares it)."""
    from infra.localstart import LocalStartError

    for candidate in (Path.cwd() if cwd is None else cwd, PROJECT_ROOT):
        try:
            context = json.loads((candidate / "cdk.json").read_text()).get("context", {})
        except (OSError, ValueError):
            continue
        if MODEL in ((context.get("shipyard") or {}).get("models") or {}):
            return candidate
    raise LocalStartError(f"the demo trains and serves a model named {MODEL!r}: run it in a project whose cdk.json "
                          f"declares it (`shipyard init DIR` writes one)")


def main(aws_port: int = 0, api_port: int = 0) -> int:
    started = time.time()
    print("Shipyard demo: the whole loop on the local cloud (no Docker, no AWS account)")
    cloud = start_local_cloud(aws_port, api_port, project_dir=str(demo_project()),
                              log=lambda msg: print(f"    {msg}", flush=True))
    try:
        print(f"local cloud up in {time.time() - started:.1f}s — aws: {cloud.aws_url}  api: {cloud.api_url}")
        ok = Demo(cloud).run()
    finally:
        cloud.stop()
    print(f"\n{'demo complete' if ok else 'demo FAILED'} in {time.time() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
