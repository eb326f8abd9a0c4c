"""The names the deployed parts agree on (DESIGN.md): S3 key prefixes, the events' source, the
metrics namespace. The CDK constructs (``infra/``) and the Lambda code both import them from here.
"""

# Data bucket: uploads that start the pipeline, datasets/<model>/<file>.csv
DATASETS_PREFIX = "datasets/"

# Artifacts bucket (DESIGN.md "S3 layout")
MODELS_PREFIX = "models/"  # models/<model>/v<N>/{model.onnx, metrics.json, baseline.json}
CAPTURE_PREFIX = "capture/"  # capture/<model>/YYYY/MM/DD/HH/… (Firehose)
CAPTURE_ERROR_PREFIX = "capture-errors/"  # what Firehose failed to deliver
DRIFT_PREFIX = "drift/"  # drift/<model>/<timestamp>.json

# EventBridge source of `Model Promoted`, `Model Rejected`, `Pipeline Failed`, `Drift Detected`
EVENT_SOURCE = "shipyard"
# CloudWatch namespace of every metric Shipyard publishes
METRICS_NAMESPACE = "Shipyard"
