"""`shipyard demo` runs the whole loop and says so; a step that cannot happen makes it fail."""
import os
import subprocess
import sys
from pathlib import Path

from infra.demo import Demo

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["Upload", "Pipeline", "Predict", "Send drifted traffic", "Scheduled drift check", "Drift alarm",
         "Retrain", "Lineage", "Model quality"]


def test_demo_runs_the_whole_loop_and_exits_zero():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "infra.cli", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.split("\nSummary\n", 1)[1].splitlines()
    rows = [line for line in summary if line.startswith("  ok") or line.startswith("  FAIL")]
    assert len(rows) == len(STEPS) and all(r.startswith("  ok") for r in rows), summary
    for step, row in zip(STEPS, rows):
        assert step in row
    assert "v2 production" in proc.stdout or "v2 rejected" in proc.stdout
    # the quality step: labels that disagree → degraded → its alarm → retraining on dataset + labels
    quality = rows[STEPS.index("Model quality")]
    assert "iris degraded (accuracy" in quality and "Shipyard-iris-quality → ALARM" in quality, quality
    assert "-with-labels.csv (datasets/iris/iris.csv + 100 labelled predictions)" in quality, quality
    assert "demo complete" in proc.stdout


class _WithoutPipeline:
    """The seams' hand-written stack, seen as a Shipyard stack that has no pipeline."""

    def __init__(self, cloud):
        self._cloud = cloud
        topic = cloud.client("sns").create_topic(Name="demo-alarms")["TopicArn"]
        self.outputs = {k: v for k, v in cloud.outputs.items() if k != "PipelineArn"} | {
            "DataBucketName": cloud.outputs["BucketName"], "AlarmTopicArn": topic}

    def __getattr__(self, name):
        return getattr(self._cloud, name)


def test_demo_fails_when_the_stack_cannot_train(cloud):
    lines = []
    ok = Demo(_WithoutPipeline(cloud), out=lines.append).run()
    assert not ok
    assert any(line.startswith("  ok") and "Upload" in line for line in lines), lines
    assert any(line.startswith("  FAIL") and "Pipeline" in line and "no PipelineArn" in line for line in lines), lines


class _AlarmedCloud:
    """Just what the alarm step reads: one drift alarm change and the e-mail SNS printed for it."""

    outputs: dict = {}
    alarm_changes = [{"alarm": "DriftAlarm", "from": "OK", "to": "ALARM"}]
    notifications = [{"endpoint": "you@example.com", "message": "{}"}]

    def evaluate_alarms(self):
        return []

    def wait_idle(self, timeout=120.0):
        return True


def test_the_alarm_step_says_the_e_mail_goes_out_only_to_a_configured_address():
    detail = Demo(_AlarmedCloud(), out=lambda line: None).alarm()
    assert "would e-mail you@example.com" in detail and "alarm_email" in detail, detail
    assert "e-mail to you@example.com" not in detail
