"""Helpers shared by tests: AWS resources shaped exactly as the stack declares them."""
import contextlib


def create_registry_table(client, name: str = "registry") -> str:
    """Create the registry table with the key schema of docs/architecture.md (moto or real)."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "dataset_ref", "AttributeType": "S"},
            {"AttributeName": "version_ref", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-dataset",
                "KeySchema": [
                    {"AttributeName": "dataset_ref", "KeyType": "HASH"},
                    {"AttributeName": "version_ref", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return name


def create_artifact_bucket(client, name: str = "artifacts") -> str:
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def local_up_kwargs(monkeypatch, *flags: str) -> dict:
    """What ``shipyard local up FLAGS`` passes to ``start_local_cloud`` (stopped there)."""
    from infra import cli
    from infra.localstart import LocalStartError

    seen: dict = {}

    def start(*args, **kwargs):
        seen.update(kwargs)
        raise LocalStartError("stopped here")

    monkeypatch.setattr(cli, "start_local_cloud", start)
    assert cli.main(["local", "up", *flags]) == cli.EXIT_ERROR
    return seen


DATASET = {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": "v1", "sha256": "ab" * 32}


@contextlib.contextmanager
def moto_registry(known_models=("iris",)):
    """A Registry over a fresh moto DynamoDB table (the release and approval unit tests)."""
    import boto3
    from moto import mock_aws

    from functions.core.registry import Registry

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_registry_table(client, "registry")
        yield Registry("registry", client=client, known_models=list(known_models))


def candidate_version(reg, model: str = "iris", *, execution_arn: str | None = None) -> int:
    """Allocate a version of `model` and record it as a candidate (an artifact key, no real artifact)."""
    v = reg.allocate_version(model, execution_arn=execution_arn, dataset=DATASET)["version"]
    reg.record_candidate(model, v, artifact_key=f"models/{model}/v{v}/model.onnx", artifact_sha256="cd" * 32,
                         schema={"features": []}, metrics={"accuracy": 0.9})
    return v


class RecordingFirehose:
    """A Firehose client that keeps the capture lines it is given (decoded JSON), for inference tests."""

    def __init__(self):
        self.lines = []

    def put_record(self, DeliveryStreamName, Record):
        import json

        self.lines.append(json.loads(Record["Data"]))
