"""The names the deployed parts agree on (the design contract): S3 key prefixes, the events' source,
the metrics namespace; the defaults of the training memory model, the datasets and the drift check.
The CDK constructs (``infra/``) and the Lambda code both import them from here.
"""

# Data bucket: uploads that start the pipeline, datasets/<model>/<file>.csv
DATASETS_PREFIX = "datasets/"
# what counts as a dataset under datasets/<model>/ (uploads of anything else start no run)
DATASET_SUFFIXES = (".csv", ".csv.gz")
# the most instances one predict request may carry by default (the inference function's MAX_INSTANCES;
# a larger request is a 413): the CLI splits files into requests of at most this many rows
DEFAULT_MAX_INSTANCES = 1000
# Data bucket: trusted evaluation sets, evaluation/<model>/<file>.csv: never trained on, every
# candidate and production are scored on them (docs/pipeline.md, "The gates")
EVALUATION_PREFIX = "evaluation/"
# Data bucket: batch scoring (docs/batch.md): an upload of batch/<model>/<file>.csv starts a run of
# the production model; its output is predictions/<model>/<run>/{part-…, errors-…, summary.json}
BATCH_PREFIX = "batch/"
PREDICTIONS_PREFIX = "predictions/"

# Artifacts bucket (the design contract's "S3 layout")
MODELS_PREFIX = "models/"  # models/<model>/v<N>/{model.onnx, metrics.json, baseline.json}
CAPTURE_PREFIX = "capture/"  # capture/<model>/YYYY/MM/DD/HH/… (Firehose)
CAPTURE_ERROR_PREFIX = "capture-errors/"  # what Firehose failed to deliver
DRIFT_PREFIX = "drift/"  # drift/<model>/<timestamp>.json
QUALITY_PREFIX = "quality/"  # quality/<model>/<checked_at>.json (docs/quality.md)
REPORTS_PREFIX = "reports/"  # reports/<model>/<timestamp>.html (docs/reports.md)
LABELS_PREFIX = "labels/"  # data bucket: labels/<model>/<any>.csv (inference_id + the target column)
BATCH_RESULTS_PREFIX = "batch-results/"  # the batch Map's ResultWriter: <map run id>/manifest.json



def models_prefix(model: str, version: int) -> str:
    """``models/<model>/v<N>/``: where one version's artifacts live."""
    return f"{MODELS_PREFIX}{model}/v{int(version)}/"


# Training memory (docs/pipeline.md, "Memory"; measured by bench/memory.py on a 104 MB CSV): a
# Train function's peak is what its imports take plus a multiple of the CSV's size. The multiple
# is the largest measured of the estimators meant for large data: histogram gradient boosting,
# 4.81 (it copies the matrix to float64); logistic regression 2.68. Forests grow with the rows.
TRAIN_IMPORTS_MB = 256  # measured: 228 MiB (numpy, scikit-learn, skl2onnx, onnxruntime)
TRAIN_PEAK_PER_CSV_BYTE = 5.0
DEFAULT_TRAIN_MEMORY_MB = 3008
MIN_TRAIN_MEMORY_MB, MAX_TRAIN_MEMORY_MB = 1024, 10240  # Lambda's limit is 10240 MB


def max_dataset_bytes(memory_mb: int) -> int:
    """The largest CSV a Train function with ``memory_mb`` of memory trains on."""
    return int((memory_mb - TRAIN_IMPORTS_MB) * 2**20 / TRAIN_PEAK_PER_CSV_BYTE)


# What the pipeline trains on, by default (the TrainingPipeline construct's max_dataset_bytes, min_rows)
DEFAULT_MAX_DATASET_BYTES = max_dataset_bytes(DEFAULT_TRAIN_MEMORY_MB)
DEFAULT_MIN_DATASET_ROWS = 20

# Drift check defaults (``drift`` in cdk.json, docs/drift.md): the DriftConfig defaults of
# infra/config.py, the DriftMonitor construct's and the baseline/check code's alike.
DEFAULT_DRIFT_THRESHOLD = 0.1  # deciding statistic (Wasserstein/std, Jensen-Shannon) above which a feature drifted
DEFAULT_DRIFT_SHARE = 0.5  # share of evaluated features that must drift for the model to have drifted
DEFAULT_DRIFT_WINDOW = 500  # newest captured rows checked; also the baseline's calibration chunk
DEFAULT_DRIFT_MIN_ROWS = 500  # windows with fewer rows are skipped (no decision)
DEFAULT_DRIFT_LOOKBACK_DAYS = 7  # UTC days of capture a window may reach back

# EventBridge source and detail types of Shipyard's events
EVENT_SOURCE = "shipyard"
MODEL_PROMOTED, MODEL_REJECTED, PIPELINE_FAILED = "Model Promoted", "Model Rejected", "Pipeline Failed"
DRIFT_DETECTED = "Drift Detected"
BATCH_SCORED = "Batch Scored"
# Progressive release (docs/release.md)
MODEL_AWAITING_APPROVAL, RELEASE_STARTED, RELEASE_ROLLED_BACK = (
    "Model Awaiting Approval", "Release Started", "Release Rolled Back")

# CloudWatch namespace of every metric Shipyard publishes, and the drift check's metric names.
# Dimensions: ``Model`` (+ ``Feature`` for DriftScore and DriftThreshold).
METRICS_NAMESPACE = "Shipyard"
METRIC_DRIFT_SCORE = "DriftScore"          # per feature: the deciding statistic's value
METRIC_DRIFT_THRESHOLD = "DriftThreshold"  # per feature: the threshold it was compared with
METRIC_DRIFTED_SHARE = "DriftedShare"      # share of evaluated features that drifted (checked windows)
METRIC_DRIFT_DETECTED = "DriftDetected"    # 1 when drifted_share >= share, else 0 (checked windows)
METRIC_ROWS_CHECKED = "RowsChecked"        # rows in the window (every check, skipped ones too)
METRIC_CHECKS_SKIPPED = "DriftChecksSkipped"  # 1 when the check made no decision
# Inference: a model artifact whose bytes did not have the recorded sha256 (dimension: service only)
METRIC_ARTIFACT_INTEGRITY_FAILURES = "ArtifactIntegrityFailures"
# Per-version serving metrics (docs/release.md), dimensions exactly [Model, Version] (Version: "3").
VERSION_DIMENSION = "Version"
METRIC_VERSION_PREDICTIONS = "VersionPredictions"  # instances answered by that version
METRIC_VERSION_ERRORS = "VersionErrors"            # requests that version failed on the server side (5xx)
METRIC_VERSION_LATENCY = "VersionLatency"          # ms per request spent in that version (load + score)


def release_alarm_names(prefix: str, model: str, version: int) -> list[str]:
    """A release's two per-version alarms: ``<stack>-<model>-v<N>-errors`` and ``…-latency`` (made by the
    release loop, deleted when the release ends: functions/release/loop.py, and by MarkFailed)."""
    return [f"{prefix}{model}-v{int(version)}-errors", f"{prefix}{model}-v{int(version)}-latency"]


# A shadow candidate, dimensions [Model, Version] with the candidate's version:
METRIC_SHADOW_PREDICTIONS = "ShadowPredictions"    # instances the shadow scored
METRIC_SHADOW_AGREEMENT = "ShadowAgreement"        # per instance 1 if it agreed with production, else 0
METRIC_SHADOW_DIFFERENCE = "ShadowDifference"      # regression: |shadow - production| per instance
METRIC_SHADOW_ERRORS = "ShadowErrors"              # requests the shadow failed (never the caller's)
METRIC_SHADOW_LATENCY = "ShadowLatency"            # ms the shadow added to a request
INFERENCE_SERVICE_NAME = "shipyard-inference"  # the inference function's POWERTOOLS_SERVICE_NAME
