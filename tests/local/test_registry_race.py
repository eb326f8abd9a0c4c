"""The local AWS endpoint keeps DynamoDB's guarantees when many clients race, as Lambda workers do."""
import threading
import time
import uuid

import boto3
import pytest

from functions.core.registry import AliasConflict, Registry
from localcloud.server import AwsServer
from tests.support import create_registry_table


@pytest.fixture(scope="module")
def endpoint():
    server = AwsServer("127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_twenty_clients_racing_one_alias_move_over_http_leave_exactly_one_winner(endpoint):
    client = lambda: boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")  # noqa: E731
    table = create_registry_table(client(), f"race-{uuid.uuid4().hex[:8]}")
    setup = Registry(table, client=client())
    versions = []
    for _ in range(21):
        v = setup.allocate_version("m")["version"]
        setup.record_candidate("m", v, artifact_key=f"k{v}", artifact_sha256="0" * 64, schema={}, metrics={})
        versions.append(v)
    setup.promote("m", versions[0], reason="start", actor="test")

    barrier, wins, conflicts, errors = threading.Barrier(20, timeout=60), [], [], []

    def race(target):
        registry = Registry(table, client=client())  # one client per worker, like separate processes
        barrier.wait()
        try:
            wins.append(registry.move_alias("m", "production", target, expected=versions[0],
                                            reason="race", actor=f"w{target}"))
        except AliasConflict:
            conflicts.append(target)
        except Exception as err:  # noqa: BLE001 - reported below (a thread's exception is otherwise lost)
            errors.append(repr(err))

    threads = [threading.Thread(target=race, args=(v,), daemon=True) for v in versions[1:]]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "racing clients still running after 180 s"
    assert errors == []
    assert len(wins) == 1 and len(conflicts) == 19
    assert setup.get_alias("m") == wins[0]["to_version"]
    assert [e["reason"] for e in setup.history("m")] == ["start", "race"]
    assert [v["version"] for v in setup.list_versions("m") if v["status"] == "production"] == [wins[0]["to_version"]]
