"""The SageMaker training job's entry point: the same train step as the Train function, in a job.

Run as a script by the SageMaker training toolkit of the scikit-learn image (``sagemaker_program``
``functions/pipeline/trainjob.py`` in the bundle ``sagemaker_submit_directory`` names; infra/trainjob.py
builds both). The toolkit contract (aws/sagemaker-training-toolkit):

- hyperparameters arrive JSON-decoded in ``SM_HPS`` (and as ``--key value`` arguments, where an object
  is flattened to ``k=v,…``: so ``SM_HPS`` first): ``model`` (JSON-quoted by the pipeline, so no model
  name is decoded into something else), ``version``, ``execution_arn``, ``training_job_name``,
  ``instance_type`` and ``spec``/``dataset`` as JSON (the execution input's);
- a failure exits non-zero after writing a short ``<Error>: <message>`` to ``<SM_OUTPUT_DIR>/failure``
  (``/opt/ml/output/failure``): SageMaker returns its first 1024 characters as the job's
  ``FailureReason`` (docs: "How Amazon SageMaker AI Signals Algorithm Success and Failure"), and the
  toolkit leaves a failure file that exists alone (``files.write_failure_file``). The pipeline's
  MarkFailed turns it into the version's reason (``steps.training_job_failure``).

Dependencies: when the bundle carries a wheelhouse (``wheelhouse/``: layers/training.txt's wheels for
the image's CPython 3.12 x86_64, built at synth), they are installed with ``pip --no-index
--require-hashes`` into a directory of their own, put first on ``sys.path``: the job imports exactly
the locked versions the Train function's layer holds, not the image's. Without one (the local cloud,
``shipyard:build_layers=false``) it uses what is installed. Until then only the standard library is
imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __name__ == "__main__":
    # Run as a script: the bundle's root (which holds functions/) goes on sys.path, this directory
    # (whose module names, e.g. `errors`, could shadow a library's) comes off it.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parents[1]))

BUNDLE_ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = "wheelhouse"
WHEELHOUSE_LOCK = "training.txt"  # not requirements.txt: the toolkit would pip-install that from PyPI
DEFAULT_OUTPUT_DIR = "/opt/ml/output"
FAILURE_CHARS = 1000  # SageMaker keeps the first 1024 characters of the failure file


class JobInputError(ValueError):
    """The job's hyperparameters are not what the pipeline passes (infra/trainjob.py)."""


def hyperparameters(argv: list[str] | None = None, environ: dict | None = None) -> dict:
    """The job's hyperparameters: ``SM_HPS`` (the toolkit's JSON), else ``--key value`` arguments;
    string values that hold JSON (``spec``, ``dataset``) are decoded."""
    environ = os.environ if environ is None else environ
    raw = environ.get("SM_HPS")
    if raw:
        hps = json.loads(raw)
    else:
        args = list(sys.argv[1:] if argv is None else argv)
        hps = {}
        while args:
            key = args.pop(0)
            if not key.startswith("--") or not args:
                raise JobInputError(f"expected --key value arguments, got {key!r}")
            hps[key[2:]] = args.pop(0)
    return {key: _decoded(key, value) for key, value in hps.items()}


# Hyperparameters that hold JSON objects. Every other value is taken as the toolkit gives it: decoding
# again would turn a model named "null" or "true" into None or True.
JSON_OBJECTS = ("spec", "dataset")


def _decoded(key: str, value):
    """``spec``/``dataset`` as objects, and a JSON-quoted string (the pipeline quotes ``model``, as the SDK
    quotes every value) unquoted, when they arrive as text (``--key value``, or no toolkit)."""
    if isinstance(value, str) and (key in JSON_OBJECTS or value.startswith('"')):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def job_event(hps: dict) -> dict:
    """The train step's input (``steps.train``): the execution input's model, spec, dataset, version."""
    missing = [k for k in ("model", "version", "spec", "dataset") if k not in hps]
    if missing:
        raise JobInputError(f"the training job lacks hyperparameters {missing}; expected model, version, spec "
                            f"and dataset (the pipeline's SageMaker state passes them), got {sorted(hps)}")
    for key in ("spec", "dataset"):
        if not isinstance(hps[key], dict):
            raise JobInputError(f"hyperparameter {key!r} must be a JSON object, got {str(hps[key])[:200]!r}")
    return {"model": str(hps["model"]), "version": int(hps["version"]), "spec": hps["spec"],
            "dataset": hps["dataset"]}


def install_wheelhouse(root: Path = BUNDLE_ROOT, target: Path | None = None) -> Path | None:
    """Install the bundle's wheelhouse (hash-checked, offline) into ``target`` and put it first on
    ``sys.path``; None when the bundle has no wheelhouse."""
    wheelhouse = root / WHEELHOUSE
    lock = wheelhouse / WHEELHOUSE_LOCK
    if not lock.is_file():
        return None
    target = target or Path(tempfile.mkdtemp(prefix="shipyard-site-"))
    started = time.monotonic()
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse),
               "--require-hashes", "--no-deps", "--target", str(target), "-r", str(lock),
               "--disable-pip-version-check", "--no-input", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise RuntimeError(f"pip could not install the bundle's wheelhouse ({lock}): {tail}")
    sys.path.insert(0, str(target))
    print(f"installed the wheelhouse into {target} in {time.monotonic() - started:.1f}s", flush=True)
    return target


def train(hps: dict) -> dict:
    """``steps.train`` with the job's clients and environment; the result as the Lambda returns it."""
    from botocore.config import Config

    from functions.core import clients
    from functions.core.layout import DEFAULT_MAX_DATASET_BYTES, DEFAULT_MIN_DATASET_ROWS
    from functions.pipeline import steps

    event = job_event(hps)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60)
    compute = {"type": "sagemaker",
               "training_job_name": hps.get("training_job_name") or os.environ.get("TRAINING_JOB_NAME"),
               "instance_type": hps.get("instance_type") or os.environ.get("SM_CURRENT_INSTANCE_TYPE")}
    return steps.train(event, clients.registry(config=config), clients.client("s3", config=config),
                       artifact_bucket=os.environ["ARTIFACT_BUCKET"],
                       max_bytes=int(os.environ.get("MAX_DATASET_BYTES") or DEFAULT_MAX_DATASET_BYTES),
                       min_rows=int(os.environ.get("MIN_ROWS") or DEFAULT_MIN_DATASET_ROWS),
                       code_version=os.environ.get("CODE_VERSION", ""),
                       execution_arn=hps.get("execution_arn"),
                       compute={k: v for k, v in compute.items() if v})


def failure_text(err: BaseException, job: str | None = None) -> str:
    """``<Error>: <message>``, short enough for FailureReason; the full text is in the job's log."""
    message = str(err).strip()
    name = type(err).__name__
    where = f"the training job's log (/aws/sagemaker/TrainingJobs, {job}/…)" if job else "the training job's log"
    text = f"{name}: {message}" if message else name
    if len(text) > FAILURE_CHARS:
        note = f" … [cut: {len(text):,} characters in all; the full text is in {where}]"
        text = text[:FAILURE_CHARS - len(note)] + note
    return text


def write_failure(text: str, output_dir: str | None = None) -> Path:
    path = Path(output_dir or os.environ.get("SM_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR) / "failure"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    hps: dict = {}
    try:
        hps = hyperparameters(argv)
        install_wheelhouse()
        result = train(hps)
    except BaseException as err:  # noqa: BLE001 - every failure ends the job with its reason
        traceback.print_exc()
        text = failure_text(err, hps.get("training_job_name") or os.environ.get("TRAINING_JOB_NAME"))
        write_failure(text)
        print(f"training failed: {text}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"shipyard_train_result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
