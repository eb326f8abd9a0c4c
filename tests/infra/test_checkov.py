"""checkov on the synthesized template, offline, beside cdk-nag (tests/infra/test_stack.py).

checkov is pinned in pyproject's ``scan`` extra and lives in a virtualenv of its own
(``.venv-checkov``, ``make checkov``): checkov 3.3.30 pins boto3/botocore 1.35, which would
downgrade the project's boto3. It runs with ``--skip-download`` and ``BC_SKIP_MAPPING=TRUE`` so it
calls no vendor API. Every failure must be in ``SKIPS`` with its reason (and, where only some
resources are exempt, their logical-id prefixes); every skip must still be needed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# check id -> (reason, logical-id prefixes it applies to, or None for every resource)
SKIPS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "CKV_AWS_18": (
        "The access-log bucket is the destination of the other buckets' server access logs; "
        "logging it too would need another bucket to log that one, without end.", ("RegistryAccessLogs",)),
    "CKV_AWS_119": (
        "Both tables are encrypted at rest with the AWS managed key (docs/architecture.md); a customer "
        "managed key adds cost and a key policy to maintain, and protects against nothing IAM does not.", None),
    "CKV_AWS_158": (
        "Log groups use CloudWatch Logs' default server-side encryption; a customer managed key would "
        "need a key policy for the logs service per region, for logs that hold no secrets.", None),
    "CKV_AWS_116": (
        "A Lambda DLQ only catches asynchronous invocations. API Gateway and Step Functions invoke "
        "synchronously (the state machine retries and catches); EventBridge targets (drift, retrain) "
        "have their own dead-letter queue (infra/deadletters.py).", None),
    "CKV_AWS_117": (
        "No VPC: the functions only call AWS APIs over TLS with IAM; a VPC would need NAT or "
        "interface endpoints (cost) and reach no private resource.", None),
    "CKV_AWS_173": (
        "Environment variables hold resource names and settings only, no secrets; Lambda encrypts "
        "them at rest with the AWS managed key.", None),
    "CKV_AWS_120": (
        "No API Gateway cache: predictions are POSTs whose answer depends on the body, and a cache "
        "cluster is billed per hour.", None),
    "CKV_AWS_27": (
        "The dead-letter queue is encrypted with SQS managed SSE (SqsManagedSseEnabled); this checkov "
        "version only recognizes KmsMasterKeyId.", ("EventDeadLetters",)),
    "CKV_AWS_115": (
        "Reserved concurrency is taken from the account's pool (1000 by default, 100 always unreserved), "
        "so Shipyard reserves it where it matters: the inference function and each Train function "
        "(concurrency.* in cdk.json). The short steps (Allocate, Validate, Record) and drift functions "
        "run once per execution or schedule, and the uploads function once per upload for milliseconds (a cap "
        "would throttle a bulk upload's reports). Batch scoring: Prepare and Summarize run once per run, and "
        "ScoreBatch's concurrency is capped by the Distributed Map's MaxConcurrency (infra/batch.py). The "
        "approval function answers a person's approve/reject, a handful of calls per release; the release "
        "function runs once a minute per running release. The quality functions run once per schedule "
        "(a day by default) and once per Quality Degraded event.",
        ("PipelineAllocate", "PipelineValidate", "PipelineRecord", "DriftFunction", "DriftRetrain",
         "UploadsFunction", "BatchPrepare", "BatchScoreBatch", "BatchSummarize", "ApprovalFunction",
         "PipelineRelease", "QualityFunction", "QualityRetrain")),
}


def _checkov() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv-checkov" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("checkov is not installed: run `make checkov` (or set CHECKOV to its path)")


def _failures(template: Path) -> list[tuple[str, str]]:
    result = subprocess.run(
        [_checkov(), "-f", str(template), "--framework", "cloudformation", "--skip-download",
         "--output", "json", "--compact", "--quiet"],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report.get("summary", {}).get("parsing_errors", 0) == 0, report.get("summary")
    failed = report.get("results", {}).get("failed_checks", [])
    return [(f["check_id"], f["resource"].split(".", 1)[1]) for f in failed]


def _skipped(check_id: str, logical_id: str) -> bool:
    if check_id not in SKIPS:
        return False
    prefixes = SKIPS[check_id][1]
    return prefixes is None or logical_id.startswith(prefixes)


def test_every_skip_has_a_reason():
    for check_id, (reason, _) in SKIPS.items():
        assert len(reason) > 40, check_id


def test_checkov_passes_the_template_except_the_reasoned_skips(synth):
    templates = list(synth.outdir.glob("*.template.json"))
    assert len(templates) == 1, templates
    failures = _failures(templates[0])
    unexplained = [f for f in failures if not _skipped(*f)]
    assert not unexplained, f"checkov failures without a reason in SKIPS: {unexplained}"
    stale = set(SKIPS) - {check_id for check_id, _ in failures}
    assert not stale, f"skips no longer needed (remove them): {sorted(stale)}"
