"""The batch scoring construct (infra/batch.py) as synthesized: the upload rule, the Distributed Map,
least-privilege roles, the failed-run alarm and the output. cdk-nag, cfn-lint, checkov and
asl-validator run over the same session synth in test_stack.py, test_checkov.py and test_asl.py."""
from __future__ import annotations

import json

from tests.infra.test_asl import definitions


def _batch_machine(synth) -> dict:
    found = {lid: d for lid, d in definitions(synth.template_dict).items() if lid.startswith("Batch")}
    assert len(found) == 1, sorted(found)
    return next(iter(found.values()))


def _policy_of(synth, role_prefix: str) -> list[dict]:
    return [s for lid, p in synth.resources("AWS::IAM::Policy").items() if lid.startswith(role_prefix)
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _text(value) -> str:
    return json.dumps(value)


def test_upload_rule_per_model_matches_batch_csvs_only(synth):
    rules = {lid: r for lid, r in synth.resources("AWS::Events::Rule").items() if lid.startswith("BatchUpload")}
    models = synth.stack.config.model_names
    assert len(rules) == len(models) >= 1
    for rule in rules.values():
        pattern = rule["Properties"]["EventPattern"]
        assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
        (key,) = pattern["detail"]["object"]["key"]
        model = key["wildcard"].split("/")[1]
        assert model in models and key == {"wildcard": f"batch/{model}/*.csv"}
        (target,) = rule["Properties"]["Targets"]
        assert target["DeadLetterConfig"]["Arn"]  # undeliverable events are kept
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 8
        assert "object.version-id" in _text(target["InputTransformer"])


def test_map_reads_the_exact_object_version_in_batches_and_writes_results(synth):
    machine = _batch_machine(synth)
    assert machine["StartAt"] == "Prepare"
    assert machine["States"]["Prepare"]["Next"] == "Score"
    score = machine["States"]["Score"]
    assert score["Type"] == "Map" and score["Next"] == "Summarize"
    reader = score["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}
    assert reader["Parameters"]["Key.$"] == "$.batch.object.key"
    assert reader["Parameters"]["VersionId.$"] == "$.batch.object.version_id"
    batcher = score["ItemBatcher"]
    assert batcher["MaxInputBytesPerBatch"] <= 256 * 1024 - 32 * 1024  # room for BatchInput
    assert batcher["MaxItemsPerBatch"] >= 1000
    assert set(batcher["BatchInput"]) >= {"model.$", "version.$", "run.$", "columns.$", "ragged.$", "output_prefix.$"}
    assert score["ItemSelector"] == {"index.$": "$$.Map.Item.Index", "row.$": "$$.Map.Item.Value"}
    assert score["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    child = score["ItemProcessor"]["States"]["ScoreBatch"]
    assert "TransientError" in child["Retry"][0]["ErrorEquals"] and child["End"] is True
    assert 0 < score["ToleratedFailurePercentage"] <= 10 and score["MaxConcurrency"] >= 1
    assert score["ResultWriter"]["Parameters"]["Prefix"] == "batch-results"
    # every step's failure is recorded, the data limit named first (States.ALL does not catch it)
    for name in ("Prepare", "Score", "Summarize"):
        catches = machine["States"][name]["Catch"]
        assert [c["ErrorEquals"] for c in catches] == [["States.DataLimitExceeded"], ["States.ALL"]]
        assert {c["Next"] for c in catches} == {"RecordFailure"}
    assert machine["States"]["RecordFailure"]["Next"] == "Failed"
    assert machine["States"]["Failed"] == {"Type": "Fail", "Error": "BatchFailed", "CausePath": "$.failure.reason"}


def test_score_batch_reads_only_models_and_writes_only_predictions(synth):
    statements = _policy_of(synth, "BatchScoreBatchRole")
    s3 = [s for s in statements if any(a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                        else s["Action"]))]
    writes = [s for s in s3 if "s3:PutObject" in _text(s["Action"])]
    reads = [s for s in s3 if "s3:GetObject" in _text(s["Action"])]
    assert len(writes) == 1 and _text(writes[0]["Resource"]).endswith('"/predictions/*"]]}')
    assert "RegistryData" in _text(writes[0]["Resource"])
    assert len(reads) == 1 and _text(reads[0]["Resource"]).endswith('"/models/*"]]}')
    assert "RegistryArtifacts" in _text(reads[0]["Resource"])
    text = _text(statements)
    for never in ("dynamodb:PutItem", "dynamodb:UpdateItem", "events:PutEvents", "s3:DeleteObject", "AuditTable"):
        assert never not in text


def test_prepare_and_summarize_have_only_what_they_use(synth):
    prepare = _text(_policy_of(synth, "BatchPrepareRole"))
    assert "/batch/*" in prepare and "s3:PutObject" not in prepare and "dynamodb:PutItem" not in prepare
    summarize = _policy_of(synth, "BatchSummarizeRole")
    put_items = [s for s in summarize if s["Action"] == "dynamodb:PutItem"]
    assert len(put_items) == 1
    assert put_items[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}}
    text = _text(summarize)
    assert "/batch-results/*" in text and "/predictions/*" in text and "/batch/*" not in text
    assert "dynamodb:UpdateItem" not in text and "AuditTable" not in text
    machine_role = _text(_policy_of(synth, "BatchStateMachineRole"))
    # the ResultWriter may write its own prefix only (CDK's default is the whole bucket)
    assert "/batch-results/*" in machine_role and '"/*"]]}' not in machine_role


def test_failed_run_alarm_notifies_the_alarm_topic_and_output_exists(synth):
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()}
    alarm = alarms["Shipyard-batch-failed"]
    assert alarm["MetricName"] == "ExecutionsFailed" and alarm["Threshold"] == 1
    assert "BatchStateMachine" in _text(alarm["Dimensions"])
    assert "AlarmTopic" in _text(alarm["AlarmActions"])
    assert "BatchStateMachineArn" in synth.template_dict["Outputs"]
    assert "Batch scoring runs" in _text(synth.resources("AWS::CloudWatch::Dashboard"))
