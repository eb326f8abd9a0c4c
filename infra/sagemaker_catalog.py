"""What Shipyard knows about SageMaker training, in one place: the CPU instance types a model may
train on (with their memory, hence the largest dataset each takes), the limits of a training job,
and the framework image the job runs in (registry account per region, tag).

Standard library only: ``infra/config.py`` validates ``compute`` with it at synth without
importing aws_cdk, and ``infra/trainjob.py`` builds the job from it. docs/scale.md argues the
choices ("Training on SageMaker").
"""
from __future__ import annotations

import json
from typing import Any

from functions.core.layout import max_dataset_bytes
from functions.pipeline.execution import spec_document

# CPU instance types SageMaker training offers, GiB of memory each (Amazon SageMaker pricing page,
# "Training" tab; EC2 instance type specs). x86_64 only: the scikit-learn image below is built for
# x86_64 (its Dockerfile installs the x86_64 AWS CLI), so no Graviton types.
INSTANCE_MEMORY_GIB: dict[str, int] = {
    "ml.m5.large": 8, "ml.m5.xlarge": 16, "ml.m5.2xlarge": 32, "ml.m5.4xlarge": 64,
    "ml.m5.12xlarge": 192, "ml.m5.24xlarge": 384,
    "ml.c5.xlarge": 8, "ml.c5.2xlarge": 16, "ml.c5.4xlarge": 32, "ml.c5.9xlarge": 72,
    "ml.c5.18xlarge": 144,
    "ml.r5.large": 16, "ml.r5.xlarge": 32, "ml.r5.2xlarge": 64, "ml.r5.4xlarge": 128,
    "ml.r5.12xlarge": 384, "ml.r5.24xlarge": 768,
}
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
# Memory the job's own processes take before training does: the OS, the training toolkit that
# starts the script, the pip install of the wheelhouse (measured ~0.3 GB; 1 GiB leaves headroom).
INSTANCE_RESERVED_MB = 1024

DEFAULT_VOLUME_GB = 30
MIN_VOLUME_GB, MAX_VOLUME_GB = 1, 16384  # CreateTrainingJob ResourceConfig.VolumeSizeInGB
DEFAULT_MAX_RUNTIME_SECONDS = 3600
# StoppingCondition.MaxRuntimeInSeconds: at most 28 days (SageMaker API reference, StoppingCondition).
MAX_RUNTIME_SECONDS = 28 * 24 * 3600

# HyperParameters: each value at most 2500 characters (API reference, CreateTrainingJob).
MAX_HYPERPARAMETER_CHARS = 2500
# Environment: each value at most 512 characters (API reference, CreateTrainingJob).
MAX_ENVIRONMENT_CHARS = 512

# The SageMaker scikit-learn framework image, Python 3.12 build (aws/sagemaker-scikit-learn-container
# docker/1.4-2-py312: Ubuntu 24.04, python3.12, sagemaker-training toolkit). Registry accounts
# per region as in sagemaker-python-sdk's image_uri_config/sklearn.json ("training", "1.4-2-py312");
# the tag is the SDK's `<version>-<processor>-<py_version>`. Its Python must match the one the
# training layer is locked for (layers/training.txt: CPython 3.12 wheels), so the job installs
# exactly the hashes the Train function runs.
IMAGE_REPOSITORY = "sagemaker-scikit-learn"
IMAGE_TAG = "1.4-2-py312-cpu-py3"
IMAGE_PYTHON = "3.12"
IMAGE_ARCHITECTURE = "x86_64"
IMAGE_REGISTRIES: dict[str, str] = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "cn-north-1": "450853457545", "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770", "eu-central-2": "680994064768", "eu-north-1": "662702820516",
    "eu-south-1": "978288397137", "eu-south-2": "104374241257", "eu-west-1": "141502667606",
    "eu-west-2": "764974769150", "eu-west-3": "659782779980", "il-central-1": "898809789911",
    "me-central-1": "272398656194", "me-south-1": "801668240914", "sa-east-1": "737474898029",
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902", "us-west-1": "746614075791", "us-west-2": "246618743249",
}


def image_uri(region: str, account: str | None = None, url_suffix: str = "amazonaws.com") -> str:
    """``<account>.dkr.ecr.<region>.<suffix>/sagemaker-scikit-learn:<tag>`` (China: ``amazonaws.com.cn``)."""
    account = account or IMAGE_REGISTRIES[region]
    return f"{account}.dkr.ecr.{region}.{url_suffix}/{IMAGE_REPOSITORY}:{IMAGE_TAG}"


def instance_memory_mb(instance_type: str) -> int:
    return INSTANCE_MEMORY_GIB[instance_type] * 1024


def instance_max_dataset_bytes(instance_type: str) -> int:
    """The largest CSV a job on ``instance_type`` trains on: the Train function's memory model
    (``functions.core.layout.max_dataset_bytes``) over the instance's memory less what the OS and
    the toolkit take."""
    return max_dataset_bytes(instance_memory_mb(instance_type) - INSTANCE_RESERVED_MB)


def spec_hyperparameter_chars(spec: Any) -> int:
    """Characters of a model's spec as the job gets it: ``States.JsonToString($.spec)``, compact JSON."""
    return len(json.dumps(spec_document(spec), separators=(",", ":"), ensure_ascii=False))
