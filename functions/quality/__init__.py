"""Model quality on live traffic (docs/quality.md): the check (``check``), its scheduled function
(``handler``) and retraining on ``Quality Degraded`` (``retrain``).

The names below are what the check, the construct (infra/quality.py), the CLI and the reports agree
on. Dependency-free, so the CLI and the CDK app import them without numpy.
"""

from functions.core.layout import LABELS_PREFIX, QUALITY_PREFIX, REPORTS_PREFIX  # noqa: F401 (this package's names)

QUALITY_DEGRADED = "Quality Degraded"
ID_COLUMN = "inference_id"
RETRAIN_MODES = ("dataset", "dataset+labels")
WITH_LABELS_SUFFIX = "-with-labels.csv"  # datasets/<model>/retrain-<ts>-with-labels.csv

# CloudWatch metrics (namespace Shipyard). Dimensions [Model] (the production version's) and
# [Model, Version] (every version with at least min_labels labelled predictions).
METRIC_MODEL_QUALITY = "ModelQuality"    # the model's metric on labelled traffic (only with >= min_labels)
METRIC_LABELLED_COUNT = "LabelledCount"  # labelled predictions joined in the window
METRIC_LABEL_COVERAGE = "LabelCoverage"  # labelled / captured predictions in the window (0..1)

QUALITY_SK_PREFIX = "Q#"  # registry: pk MODEL#<model>, sk Q#<checked_at>#<8 hex>


def quality_function_name(stack_name: str) -> str:
    """The quality function's physical name, ``<stack>-quality``: how ``shipyard quality check`` finds it."""
    return f"{stack_name[:56]}-quality"
