"""The Lambda invoke path's payloads: `RawEvent` (a request's body the worker decodes) is the dict it
stands for, Invoke API bodies are answered as Lambda answers them, and Step Functions' 256 KiB quota
on a task's input after Parameters (both Lambda task forms) is exact."""
import copy
import json
import pickle
import threading

import botocore.exceptions
import pytest
import requests

from localcloud.lambda_runtime import RawEvent

RAW = b'{"a": 1, "b": [1, 2.5, "x"], "c": {"d": null, "e": true}, "s": "\\u00e9\\ud83d\\ude00", "a": 3}'
EXPECTED = json.loads(RAW)  # duplicate "a": the last wins, as json.loads decides


@pytest.mark.parametrize("look", [
    lambda e: json.loads(json.dumps(e)), lambda e: json.loads(json.dumps(e, indent=2, sort_keys=True)),
    dict, lambda e: (lambda **kw: kw)(**e), lambda e: {**e}, copy.copy, copy.deepcopy, lambda e: e.copy(),
    lambda e: pickle.loads(pickle.dumps(e)), lambda e: {k: e[k] for k in e}, lambda e: dict(e.items()),
    lambda e: (lambda d: (d.update(e), d)[1])({}), lambda e: e | {}, lambda e: {} | e,
], ids=["json.dumps", "json.dumps-indent", "dict", "kwargs", "unpack", "copy", "deepcopy", "copy-method",
        "pickle", "iteration", "items", "update", "or", "ror"])
def test_raw_event_is_the_dict_it_stands_for(look):
    got = look(RawEvent(RAW))
    assert got == EXPECTED and dict(got) == EXPECTED and json.dumps(got) == json.dumps(EXPECTED)


def test_raw_event_answers_every_look_as_its_dict():
    e = RawEvent(RAW)
    assert isinstance(e, dict) and e.raw == RAW  # nothing decoded yet
    assert len(RawEvent(RAW)) == len(EXPECTED) == 4 and bool(RawEvent(RAW))
    assert "c" in RawEvent(RAW) and "zz" not in RawEvent(RAW)
    assert RawEvent(RAW).get("a") == 3 and RawEvent(RAW).get("zz", 7) == 7 and RawEvent(RAW)["c"]["e"] is True
    assert list(RawEvent(RAW)) == list(EXPECTED) and list(reversed(RawEvent(RAW))) == list(reversed(EXPECTED))
    assert RawEvent(RAW) == EXPECTED and EXPECTED == RawEvent(RAW) and RawEvent(RAW) == RawEvent(RAW)
    assert not (RawEvent(RAW) != EXPECTED) and RawEvent(RAW) != {} and RawEvent(b"{}") == {}
    assert repr(RawEvent(RAW)) == repr(EXPECTED) and str(RawEvent(RAW)) == str(EXPECTED)
    assert RawEvent(RAW).keys() == EXPECTED.keys() and list(RawEvent(RAW).values()) == list(EXPECTED.values())
    for clone in (copy.deepcopy(RawEvent(RAW)), pickle.loads(pickle.dumps(RawEvent(RAW))), RawEvent(RAW).copy()):
        assert clone == EXPECTED and getattr(clone, "raw", None) is None
    mutated = RawEvent(RAW)
    mutated["new"] = 1
    del mutated["a"]
    assert mutated == {k: v for k, v in EXPECTED.items() if k != "a"} | {"new": 1}
    with pytest.raises(TypeError):
        hash(RawEvent(RAW))
    with pytest.raises(json.JSONDecodeError):  # as moto's decoding of the body would fail
        len(RawEvent(b"{not json"))


def test_a_raw_event_is_decoded_once(monkeypatch):
    calls = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda *a, **kw: calls.append(1) or loads(*a, **kw))
    e = RawEvent(RAW)
    assert e.raw == RAW and not calls
    for _ in range(3):
        assert e == EXPECTED and len(e) == 4 and e["a"] == 3 and json.dumps(e) and dict(e) and copy.deepcopy(e)
    assert len(calls) == 1 and e.raw is None
    calls.clear()
    shared = RawEvent(RAW)
    threads = [threading.Thread(target=lambda: shared.get("a")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and shared == EXPECTED


# --- through the local cloud --------------------------------------------------------------------------------

HANDLERS = '''
import json

def echo(event, context):
    return event

def size(event, context):
    return {"bytes": len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()), "keys": sorted(event)}
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from localcloud import LocalCloud, Template

    root = tmp_path_factory.mktemp("payloads")
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "h.py").write_text(HANDLERS)

    def fn(handler):
        return {"Type": "AWS::Lambda::Function", "Properties": {
            "Code": {"S3Bucket": "assets", "S3Key": "app.zip"}, "Handler": f"app.h.{handler}",
            "Runtime": "python3.12", "Timeout": 30, "MemorySize": 1024, "Role": {"Fn::GetAtt": ["Role", "Arn"]}}}

    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": ["lambda.amazonaws.com"]}}]}}},
        "Echo": fn("echo"), "Size": fn("size")}}
    c = LocalCloud(Template.from_dict(template, stack_name="Payloads", assets={"app.zip": root}),
                   aws_port=0, api_port=0, clock=False, log=lambda line: None)
    c.start()
    yield c
    c.stop()


def _post(cloud, name, body, params=None):
    lam = cloud.client("lambda")
    url = f"{lam.meta.endpoint_url}/2015-03-31/functions/{name}/invocations"
    return requests.post(url, data=body, params=params, timeout=60, headers={
        "Content-Type": "application/json",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/lambda/aws4_request, "
                         "SignedHeaders=host, Signature=0"})


def _bad_request(detail):
    return 400, "InvalidRequestContentException", \
        "Could not parse request body into json: Could not parse payload into json: " + detail


DEEP = "maximum recursion depth exceeded while decoding a JSON {} from a unicode string"
CASES = {  # body -> (status, error type or FunctionError, what comes back)
    "object": (b'{"k": [1, {"n": null}]}', (200, None, {"k": [1, {"n": None}]})),
    "object-whitespace": (b' \n\t{"k": 1} ', (200, None, {"k": 1})),
    "string": (b'"hello"', (200, None, "hello")),
    "array": (b"[1, 2, [3]]", (200, None, [1, 2, [3]])),
    "number": (b"42.5", (200, None, 42.5)),
    "null": (b"null", (200, None, {})),  # Lambda would give the handler None (and answer null)
    "empty": (b"", (200, None, {})),
    "duplicate-keys": (b'{"a": 1, "a": 2}', (200, None, {"a": 2})),
    "nan": (b'{"a": NaN}', (200, None, "NaN")),
    "qualifier-in-a-value": (b'{"note": "the qualifier"}', (200, None, {"note": "the qualifier"})),
    "qualifier-as-a-key": (b'{"qualifier": "v9"}', (200, None, {"qualifier": "v9"})),
    "qualifier-escaped-key": (b'{"\\u0071ualifier": "v9"}', (200, None, {"qualifier": "v9"})),
    "invalid": (b"{not json", _bad_request("Expecting property name enclosed in double quotes: line 1 column 2 "
                                           "(char 1)")),
    "invalid-scalar": (b"nope", _bad_request("Expecting value: line 1 column 1 (char 0)")),
    "extra-data": (b'{"a": 1} {"b": 2}', _bad_request("Extra data: line 1 column 10 (char 9)")),
    "deep-object": (b'{"a":' * 3000 + b"1" + b"}" * 3000,
                    _bad_request(DEEP.format("object"))),
    "deep-array": (b"[" * 3000 + b"]" * 3000,
                   _bad_request(DEEP.format("array"))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invoke_bodies_are_answered_as_lambda_answers_them(cloud, case):
    body, (status, error, expected) = CASES[case]
    r = _post(cloud, cloud.physical_ids["Echo"], body)
    assert r.status_code == status, r.content[:300]
    if status == 200:
        assert r.headers.get("x-amz-function-error") is None
        got = json.loads(r.content)
        assert (got == expected) if case != "nan" else (json.dumps(got) == json.dumps({"a": float("nan")}))
    else:
        assert r.headers["x-amzn-ErrorType"] == error and json.loads(r.content)["message"] == expected
        with pytest.raises(botocore.exceptions.ClientError) as raised:  # what an SDK sees
            cloud.client("lambda").invoke(FunctionName=cloud.physical_ids["Echo"], Payload=body)
        assert raised.value.response["Error"]["Code"] == error


def test_a_body_that_is_not_utf8_is_refused_before_anything_runs(cloud):
    # Lambda: 400 InvalidRequestContentException; moto decodes every request body as UTF-8 before it
    # reaches Lambda's handler, so the local endpoint answers a 500 (as it did before RawEvent)
    r = _post(cloud, cloud.physical_ids["Echo"], b'{"a": "\xff\xfe"}')
    assert r.status_code == 500 and b"UnicodeDecodeError" in r.content


def test_the_qualifier_query_parameter_is_lambdas(cloud):
    lam, name = cloud.client("lambda"), cloud.physical_ids["Echo"]
    out = lam.invoke(FunctionName=name, Qualifier="$LATEST", Payload=b'{"qualifier": "x"}')
    assert out["StatusCode"] == 200 and json.loads(out["Payload"].read()) == {"qualifier": "x"}
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="v9", Payload=b"{}")
    assert _post(cloud, name, b"{}", params={"Qualifier": "v9"}).status_code == 404


def test_a_large_payload_and_result_round_trip_unchanged(cloud):
    lam = cloud.client("lambda")
    event = {"rows": [{"id": i, "name": f"é{i}😀", "v": i / 7, "ok": i % 2 == 0, "n": None} for i in range(50_000)],
             "qualifier": "inside"}
    body = json.dumps(event).encode()
    assert 4 * 2**20 < len(body) < 6 * 2**20
    out = lam.invoke(FunctionName=cloud.physical_ids["Echo"], Payload=body)
    assert "FunctionError" not in out and json.loads(out["Payload"].read()) == event


# --- Step Functions' quota on a task's input after Parameters --------------------------------------------------

def _compact(value):  # how AWS measures a state's data: "256 KiB of data as a UTF-8 encoded string"
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _run(cloud, name, definition, execution_input):
    sfn = cloud.client("stepfunctions")
    arn = sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    text = json.dumps(execution_input, ensure_ascii=False)
    run = sfn.start_execution(stateMachineArn=arn, input=text)["executionArn"]
    cloud.wait_for_executions(arn, timeout=120)
    return sfn.describe_execution(executionArn=run), sfn.get_execution_history(executionArn=run)["events"]


def _function_arn(cloud, logical_id):
    return cloud.client("lambda").get_function(
        FunctionName=cloud.physical_ids[logical_id])["Configuration"]["FunctionArn"]


@pytest.mark.parametrize("form", ["function-arn", "lambda-invoke"])
def test_a_task_input_of_exactly_256_kib_passes_and_one_byte_more_fails(cloud, form):
    size_arn = _function_arn(cloud, "Size")
    data = "é" * 20_000 + "x" * 60_000  # 100,000 bytes; the execution's input stays well under the quota

    def parameters(pad):  # the state's input after Parameters, as AWS measures it (compact UTF-8 JSON)
        payload = {"a": data, "b": data, "pad": "p" * pad}
        return payload if form == "function-arn" else {"FunctionName": size_arn, "Payload": payload}

    pad = 256 * 1024 - _compact(parameters(0))
    assert _compact(parameters(pad)) == 256 * 1024
    outcomes = {}
    for extra in (0, 1):
        payload = {"a.$": "$.d", "b.$": "$.d", "pad": "p" * (pad + extra)}
        task = ({"Resource": size_arn, "Parameters": payload} if form == "function-arn" else
                {"Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": size_arn, "Payload": payload},
                 "ResultSelector": {"bytes.$": "$.Payload.bytes", "keys.$": "$.Payload.keys"}})
        definition = {"StartAt": "Task", "States": {"Task": {
            "Type": "Task", **task,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Pass", "End": True}}}
        outcomes[extra] = _run(cloud, f"quota-{form}-{extra}", definition, {"d": data})
    (at_quota, _), (over, history) = outcomes[0], outcomes[1]
    assert at_quota["status"] == "SUCCEEDED", at_quota
    expected_payload = _compact({"a": data, "b": data, "pad": "p" * pad})
    assert json.loads(at_quota["output"]) == {"bytes": expected_payload, "keys": ["a", "b", "pad"]}
    # over: States.DataLimitExceeded, which States.ALL does not catch (AWS), before the function runs
    assert over["status"] == "FAILED" and over["error"] == "States.DataLimitExceeded", over
    assert "input after Parameters" in over["cause"]
    assert not any(e["type"] in ("LambdaFunctionScheduled", "TaskScheduled") for e in history)


@pytest.mark.parametrize("form", ["function-arn", "lambda-invoke"])
def test_a_large_task_result_round_trips_unchanged(cloud, form):
    echo_arn = _function_arn(cloud, "Echo")
    data = {"rows": [{"id": i, "s": f"é😀{i}", "f": i / 3, "b": True, "n": None} for i in range(2500)],
            "text": "q\"u\\o\nte" * 1000}
    assert 150 * 1024 < _compact(data) < 250 * 1024
    task = ({"Resource": echo_arn, "Parameters": {"data.$": "$.data"}} if form == "function-arn" else
            {"Resource": "arn:aws:states:::lambda:invoke",
             "Parameters": {"FunctionName": echo_arn, "Payload": {"data.$": "$.data"}},
             "ResultSelector": {"data.$": "$.Payload.data"}})
    definition = {"StartAt": "Task", "States": {"Task": {"Type": "Task", **task, "End": True}}}
    execution, history = _run(cloud, f"large-result-{form}", definition, {"data": data})
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"data": data}
    scheduled = [e for e in history if e["type"] in ("LambdaFunctionScheduled", "TaskScheduled")]
    assert len(scheduled) == 1
    details = scheduled[0].get("lambdaFunctionScheduledEventDetails") or scheduled[0]["taskScheduledEventDetails"]
    sent = json.loads(details.get("input") or details.get("parameters"))
    assert (sent if form == "function-arn" else sent["Payload"]) == {"data": data}


def test_an_invoke_body_is_decoded_by_the_worker_only(cloud, monkeypatch):
    """The local cloud passes a JSON object body to the worker as its bytes: nothing in this process
    (moto's Invoke handler looking for a qualifier, its invoke, the runtime) decodes it."""
    decoded = []
    loads = json.loads

    def counting(s, *args, **kwargs):
        if len(s) > 2**20:
            decoded.append(len(s))
        return loads(s, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    event = {"rows": ["r" * 100] * 20_000, "note": "a qualifier in a value"}
    out = cloud.client("lambda").invoke(FunctionName=cloud.physical_ids["Size"], Payload=json.dumps(event).encode())
    monkeypatch.setattr(json, "loads", loads)
    assert json.loads(out["Payload"].read())["bytes"] == _compact(event)
    assert decoded == []
