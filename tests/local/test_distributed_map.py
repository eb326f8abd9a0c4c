"""Step Functions Distributed Map states on the local cloud (localcloud/distributedmap.py): state
machines created through the Step Functions API on a started LocalCloud, children running real
Python Lambda functions in the local Lambda runtime, items read from the local S3."""
import json
import time
import uuid

import pytest

from localcloud import distributedmap

HANDLERS = '''
import time

def count(event, context):
    return {"n": len(event["Items"]), "batch": event.get("BatchInput"), "first": event["Items"][0],
            "last": event["Items"][-1]}

def maybe_fail(event, context):
    if int(event["value"]) % 3 == 0:
        raise ValueError(f"no multiples of 3: {event['value']}")
    return {"value": event["value"]}

def sleepy(event, context):
    start = time.time()
    time.sleep(0.3)
    return {"start": start, "end": time.time()}
'''

ROLE = "arn:aws:iam::123456789012:role/sfn"


def _fn(handler):
    return {"Type": "AWS::Lambda::Function", "Properties": {
        "Code": {"S3Bucket": {"Fn::Sub": "cdk-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "map.zip"},
        "Handler": f"maphandlers.{handler}", "Runtime": "python3.12", "Timeout": 30, "MemorySize": 512,
        "Role": {"Fn::GetAtt": ["Role", "Arn"]}}}


TEMPLATE = {"Resources": {
    "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
    "Data": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": {"Status": "Enabled"}}},
    "Count": _fn("count"), "MaybeFail": _fn("maybe_fail"), "Sleepy": _fn("sleepy"),
}}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from localcloud import LocalCloud, Template

    assets = tmp_path_factory.mktemp("map-assets")
    (assets / "maphandlers.py").write_text(HANDLERS)
    template = Template.from_dict(json.loads(json.dumps(TEMPLATE)), stack_name="MapTest",
                                  assets={"map.zip": assets})
    c = LocalCloud(template, aws_port=0, api_port=0, clock=False, log=lambda line: None)
    c.start()
    c.bucket = c.physical_ids["Data"]
    yield c
    c.stop()


def _task(cloud, function, **extra):
    arn = cloud.client("lambda").get_function(FunctionName=cloud.physical_ids[function])["Configuration"][
        "FunctionArn"]
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": arn, "Payload.$": "$"}, "ResultSelector": {"out.$": "$.Payload"},
            "OutputPath": "$.out", "End": True, **extra}


def _processor(states, execution_type="EXPRESS"):
    first = next(iter(states))
    return {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
            "StartAt": first, "States": states}


PASS = {"P": {"Type": "Pass", "End": True}}


def _run(cloud, map_state, execution_input, extra_states=None):
    """Create a state machine whose Map state is `map_state`, run it; (definition, description, history)."""
    sfn = cloud.client("stepfunctions")
    states = {"Map": {"Type": "Map", "End": True, **map_state}, **(extra_states or {})}
    definition = json.dumps({"StartAt": "Map", "States": states})
    arn = sfn.create_state_machine(name=f"map-{uuid.uuid4().hex[:8]}", definition=definition,
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]
    deadline = time.time() + 60
    while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.time() < deadline, "the execution did not end"
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=execution)["events"]
    return arn, desc, history


def _put(cloud, key, body):
    cloud.client("s3").put_object(Bucket=cloud.bucket, Key=key, Body=body.encode())


def _read(cloud, key):
    return json.loads(cloud.client("s3").get_object(Bucket=cloud.bucket, Key=key)["Body"].read())


def test_csv_batches_to_lambda_children_and_the_result_writer_files(cloud):
    rows = [f"{i},name {i},{i * 1.5}" for i in range(10)]
    _put(cloud, "in/data.csv", "id,name,score\n" + "\n".join(rows) + "\n")
    map_state = {
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                       "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                       "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"}},
        "ItemBatcher": {"MaxItemsPerBatch": 4, "BatchInput": {"run.$": "$.run", "fixed": 1}},
        "ItemProcessor": _processor({"Score": _task(cloud, "Count")}),
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                         "Parameters": {"Bucket": cloud.bucket, "Prefix": "results"}},
        "Label": "Scoring", "ResultPath": "$.map"}
    arn, desc, history = _run(cloud, map_state, {"bucket": cloud.bucket, "key": "in/data.csv", "run": "r1"})
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    map_run = output["map"]["MapRunArn"]
    assert map_run.startswith(arn.replace(":stateMachine:", ":mapRun:") + "/Scoring:")
    details = output["map"]["ResultWriterDetails"]
    assert details == {"Bucket": cloud.bucket, "Key": f"results/{map_run.split(':')[-1]}/manifest.json"}
    manifest = _read(cloud, details["Key"])
    assert manifest["DestinationBucket"] == cloud.bucket and manifest["MapRunArn"] == map_run
    assert manifest["ResultFiles"]["FAILED"] == [] and manifest["ResultFiles"]["PENDING"] == []
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    entries = _read(cloud, succeeded["Key"])
    assert succeeded["Key"].endswith("/SUCCEEDED_0.json")
    outs = [json.loads(e["Output"]) for e in entries]
    assert [o["n"] for o in outs] == [4, 4, 2]  # 10 rows, 4 a batch, in order
    assert all(o["batch"] == {"run": "r1", "fixed": 1} for o in outs)
    assert outs[0]["first"] == {"id": "0", "name": "name 0", "score": "0.0"}  # CSV values stay strings
    assert outs[2]["last"] == {"id": "9", "name": "name 9", "score": "13.5"}
    for entry in entries:
        assert entry["Status"] == "SUCCEEDED" and entry["InputDetails"] == {"Included": True}
        assert entry["ExecutionArn"].startswith(arn.replace(":stateMachine:", ":express:") + "/Scoring:")
        assert json.loads(entry["Input"])["BatchInput"] == {"run": "r1", "fixed": 1}
    types = [e["type"] for e in history]
    assert types[types.index("MapStateEntered"):types.index("MapStateExited") + 1] == [
        "MapStateEntered", "MapStateStarted", "MapRunStarted", "MapRunSucceeded", "MapStateSucceeded",
        "MapStateExited"]
    sfn = cloud.client("stepfunctions")
    described = sfn.describe_map_run(mapRunArn=map_run)
    assert described["status"] == "SUCCEEDED"
    assert described["itemCounts"]["succeeded"] == 10 and described["executionCounts"]["succeeded"] == 3
    runs = sfn.list_map_runs(executionArn=desc["executionArn"])["mapRuns"]
    assert [r["mapRunArn"] for r in runs] == [map_run]
    # the stored definition is the one given: ItemBatcher and all
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    assert definition["States"]["Map"]["ItemBatcher"]["MaxItemsPerBatch"] == 4


def test_csv_given_headers_max_items_and_ragged_rows(cloud):
    _put(cloud, "in/given.csv", "a1,b1,extra\na2\n\n   \na3,b3\na4,b4\n")
    map_state = {
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                       "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["A", "B"],
                                        "MaxItemsPath": "$.max"},
                       "Parameters": {"Bucket": cloud.bucket, "Key": "in/given.csv"}},
        "ItemProcessor": _processor(PASS, "STANDARD")}
    _, desc, _ = _run(cloud, map_state, {"max": 4})
    assert desc["status"] == "SUCCEEDED", desc
    # AWS: extra fields dropped, missing ones "", a blank line is no item, a line of spaces is one
    assert json.loads(desc["output"]) == [{"A": "a1", "B": "b1"}, {"A": "a2", "B": ""}, {"A": "   ", "B": ""},
                                          {"A": "a3", "B": "b3"}]


def test_json_array_from_s3_with_item_selector(cloud):
    _put(cloud, "in/items.json", json.dumps([{"v": 10}, {"v": 20}, {"v": 30}]))
    map_state = {
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": cloud.bucket, "Key": "in/items.json"}},
        "ItemSelector": {"value.$": "$$.Map.Item.Value.v", "index.$": "$$.Map.Item.Index", "run.$": "$.run",
                         "tag": "t", "id.$": "States.Format('item-{}', $$.Map.Item.Index)"},
        "ItemProcessor": _processor(PASS)}
    _, desc, _ = _run(cloud, map_state, {"run": "r2"})
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == [
        {"value": v, "index": i, "run": "r2", "tag": "t", "id": f"item-{i}"} for i, v in enumerate((10, 20, 30))]


def test_items_path_and_the_bytes_limit_of_a_batch(cloud):
    things = [{"k": "x" * (i % 7 * 3)} for i in range(40)]
    map_state = {"ItemsPath": "$.things",
                 "ItemBatcher": {"MaxItemsPerBatchPath": "$.per", "MaxInputBytesPerBatch": 90},
                 "ItemProcessor": _processor(PASS)}
    _, desc, history = _run(cloud, map_state, {"things": things, "per": 5})
    assert desc["status"] == "SUCCEEDED", desc
    batches = json.loads(desc["output"])
    assert [item for b in batches for item in b["Items"]] == things  # every item once, in order
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 90 for b in batches)
    assert all(len(b["Items"]) <= 5 for b in batches)
    assert any(len(b["Items"]) < 5 for b in batches[:-1])  # the bytes limit cut some batches short
    started = next(e for e in history if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"]["length"] == 40


def test_max_concurrency_bounds_the_children_running_at_once(cloud):
    map_state = {"MaxConcurrency": 2, "ItemProcessor": _processor({"S": _task(cloud, "Sleepy")})}
    _, desc, _ = _run(cloud, map_state, list(range(6)))
    assert desc["status"] == "SUCCEEDED", desc
    spans = json.loads(desc["output"])
    peak = max(sum(1 for s in spans if s["start"] <= t["start"] < s["end"]) for t in spans)
    assert peak == 2


def test_tolerated_failures_under_and_over_the_threshold(cloud):
    items = [{"value": i} for i in range(10)]  # 0, 3, 6, 9 fail: 40 %
    processor = _processor({"F": _task(cloud, "MaybeFail")})
    _, desc, _ = _run(cloud, {"ToleratedFailurePercentage": 50, "ItemProcessor": processor}, items)
    assert desc["status"] == "SUCCEEDED", desc
    out = json.loads(desc["output"])
    assert [o["value"] for o in out if "value" in o] == [1, 2, 4, 5, 7, 8]
    failed = [o for o in out if "Status" in o]  # a failed child's result is left whole (AWS)
    assert [json.loads(f["Input"])["value"] for f in failed] == [0, 3, 6, 9]
    assert all(f["Status"] == "FAILED" and f["Error"] == "ValueError" for f in failed)

    _, desc, history = _run(cloud, {"ToleratedFailureCount": 2, "ItemProcessor": processor}, items)
    assert desc["status"] == "FAILED"
    assert desc["error"] == "States.ExceedToleratedFailureThreshold"
    types = [e["type"] for e in history]
    assert types.index("MapRunFailed") < types.index("MapStateFailed")


def test_a_catch_on_the_map_and_a_missing_object(cloud):
    map_state = {
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "CSV"},
                       "Parameters": {"Bucket": cloud.bucket, "Key": "in/missing.csv"}},
        "ItemProcessor": _processor(PASS),
        "Catch": [{"ErrorEquals": ["States.ItemReaderFailed"], "ResultPath": "$.error", "Next": "Caught"}]}
    _, desc, history = _run(cloud, map_state, {"keep": 1}, {"Caught": {"Type": "Pass", "End": True}})
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert output["keep"] == 1 and output["error"]["Error"] == "States.ItemReaderFailed"
    assert "does not exist" in output["error"]["Cause"]
    failed = next(e for e in history if e["type"] == "MapRunFailed")["mapRunFailedEventDetails"]
    assert failed["error"] == "States.ItemReaderFailed"
    # uncaught: the execution fails with the reader's error
    map_state.pop("Catch")
    _, desc, _ = _run(cloud, map_state, {})
    assert desc["status"] == "FAILED" and desc["error"] == "States.ItemReaderFailed"


def test_failed_children_go_to_the_failed_file_and_writer_config_shapes_the_output(cloud):
    items = [{"value": i} for i in range(6)]  # 0 and 3 fail
    map_state = {"ToleratedFailureCount": 2, "ItemProcessor": _processor({"F": _task(cloud, "MaybeFail")}, "STANDARD"),
                 "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                                  "Parameters": {"Bucket": cloud.bucket, "Prefix": "fails/"}}}
    _, desc, _ = _run(cloud, map_state, items)
    assert desc["status"] == "SUCCEEDED", desc
    manifest = _read(cloud, json.loads(desc["output"])["ResultWriterDetails"]["Key"])
    [failed_file], [succeeded_file] = manifest["ResultFiles"]["FAILED"], manifest["ResultFiles"]["SUCCEEDED"]
    failed = _read(cloud, failed_file["Key"])
    assert failed_file["Key"].endswith("/FAILED_0.json") and "//" not in failed_file["Key"]
    assert [json.loads(f["Input"]) for f in failed] == [{"value": 0}, {"value": 3}]
    assert {f["Status"] for f in failed} == {"FAILED"} and {f["Error"] for f in failed} == {"ValueError"}
    assert "no multiples of 3" in failed[0]["Cause"] and ":execution:" in failed[0]["ExecutionArn"]
    assert len(_read(cloud, succeeded_file["Key"])) == 4

    # WriterConfig alone: the output, FLATTENed (each child returned a list)
    map_state = {"ItemBatcher": {"MaxItemsPerBatch": 2},
                 "ItemProcessor": _processor({"P": {"Type": "Pass", "InputPath": "$.Items", "End": True}}),
                 "ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}}}
    _, desc, _ = _run(cloud, map_state, list(range(5)))
    assert json.loads(desc["output"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("case", ["duplicate headers", "not an array", "MaxItems not an integer"])
def test_reader_errors_as_aws_reports_them(cloud, case):
    _put(cloud, "in/dup.csv", "a,b\n1,2\n")
    _put(cloud, "in/object.json", json.dumps({"Hello": "world"}))
    reader = {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": cloud.bucket}}
    if case == "duplicate headers":
        reader.update(ReaderConfig={"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["H", "H"]})
        reader["Parameters"]["Key"] = "in/dup.csv"
        expected = ("States.ItemReaderFailed", "CSV headers cannot contain duplicates.")
    elif case == "not an array":
        reader.update(ReaderConfig={"InputType": "JSON"})
        reader["Parameters"]["Key"] = "in/object.json"
        expected = ("States.ItemReaderFailed", "Attempting to map over non-iterable node.")
    else:
        reader.update(ReaderConfig={"InputType": "CSV", "MaxItemsPath": "$.max"})
        reader["Parameters"]["Key"] = "in/dup.csv"
        expected = ("States.Runtime", "An error occurred while executing the state 'Map' (entered at the event id "
                                      "#2). The MaxItemsPath field refers to value \"1.5\" which is not a valid "
                                      "integer: $.max")
    # States.ALL does not catch States.Runtime (AWS): that case fails the execution all the same
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
    _, desc, _ = _run(cloud, {"ItemReader": reader, "ItemProcessor": _processor(PASS)}, {"max": 1.5})
    assert (desc["status"], desc.get("error"), desc.get("cause")) == ("FAILED", *expected)
    _, desc, _ = _run(cloud, {"ItemReader": reader, "ItemProcessor": _processor(PASS), "Catch": catch}, {"max": 1.5},
                      {"Caught": {"Type": "Pass", "End": True}})
    assert desc["status"] == ("FAILED" if expected[0] == "States.Runtime" else "SUCCEEDED")


def test_stopping_the_execution_stops_the_map_run(cloud):
    sfn = cloud.client("stepfunctions")
    states = {"Map": {"Type": "Map", "End": True, "MaxConcurrency": 1,
                      "ItemProcessor": _processor({"S": _task(cloud, "Sleepy")}, "STANDARD")}}
    arn = sfn.create_state_machine(name=f"map-{uuid.uuid4().hex[:8]}", roleArn=ROLE,
                                   definition=json.dumps({"StartAt": "Map", "States": states}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(list(range(20))))["executionArn"]
    time.sleep(1.0)
    sfn.stop_execution(executionArn=execution)
    deadline = time.time() + 10
    while True:
        [run] = sfn.list_map_runs(executionArn=execution)["mapRuns"]
        described = sfn.describe_map_run(mapRunArn=run["mapRunArn"])
        if described["status"] != "RUNNING" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert sfn.describe_execution(executionArn=execution)["status"] == "ABORTED"
    assert described["status"] == "ABORTED"
    assert described["executionCounts"]["total"] < 20  # no child was started after the stop


def test_an_object_version_and_json_lines(cloud):
    s3 = cloud.client("s3")
    first = s3.put_object(Bucket=cloud.bucket, Key="in/rows.jsonl", Body=b'{"v": 1}\n\n{"v": 2}\n')["VersionId"]
    s3.put_object(Bucket=cloud.bucket, Key="in/rows.jsonl", Body=b'{"v": 3}\n')
    map_state = {"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                                "Parameters": {"Bucket": cloud.bucket, "Key": "in/rows.jsonl", "VersionId.$": "$.v"}},
                 "ItemProcessor": _processor(PASS)}
    _, desc, _ = _run(cloud, map_state, {"v": first})
    assert json.loads(desc["output"]) == [{"v": 1}, {"v": 2}]  # that version, not the latest


def test_the_local_cap_bounds_an_unlimited_map(cloud, monkeypatch):
    monkeypatch.setattr(distributedmap.SEAM, "current", 3)  # cloud.map_concurrency / LOCALCLOUD_MAP_CONCURRENCY
    map_state = {"MaxConcurrency": 0, "ItemProcessor": _processor({"S": _task(cloud, "Sleepy")})}
    _, desc, _ = _run(cloud, map_state, list(range(9)))
    spans = json.loads(desc["output"])
    assert max(sum(1 for s in spans if s["start"] <= t["start"] < s["end"]) for t in spans) == 3
