"""Helpers shared by tests: AWS resources shaped exactly as the stack declares them."""


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
