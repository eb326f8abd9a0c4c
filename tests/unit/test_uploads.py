"""The uploads function (functions/pipeline/uploads.py): which uploads under ``datasets/`` and
``batch/`` it reports, what it says, and the metric it emits (issue 13, item 3; batch scoring)."""
from __future__ import annotations

import io
import json
import logging

import pytest

from functions.pipeline import uploads
from functions.pipeline.uploads import classify, closest_model
from tests.lambda_context import LambdaContext

MODELS = ["animals", "penguins", "iris", "house-prices"]


@pytest.mark.parametrize("key", [
    "datasets/iris/data.csv", "datasets/iris/data.csv.gz", "datasets/iris/2024/05/part.csv",
    "datasets/house-prices/x.csv",
])
def test_dataset_files_of_a_model_are_left_to_its_upload_rule(key):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level) == ("dataset", None, logging.DEBUG)
    assert verdict.model == key.split("/")[1]


def test_a_typo_in_the_model_folder_is_unowned_and_names_the_closest_model():
    verdict = classify("datasets/penguin/2024.csv", MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level) == ("unowned", "UnownedUploads", logging.WARNING)
    assert (verdict.prefix, verdict.model, verdict.closest) == ("datasets/penguin/", None, "penguins")
    message = verdict.message
    assert message.startswith("unowned upload: datasets/penguin/2024.csv is under datasets/penguin/, which no "
                              "model owns, so it started no pipeline run.")
    assert "Did you mean datasets/penguins/ (model 'penguins')?" in message
    assert message.endswith("configured models: animals, penguins, iris, house-prices")


@pytest.mark.parametrize(("key", "closest"), [
    ("datasets/animal/x.csv", "animals"),
    ("datasets/Iris/x.csv", "iris"),            # case: S3 keys are case-sensitive, model names lower case
    ("datasets/house_prices/x.csv", "house-prices"),
    ("datasets/churn/x.csv", None),             # nothing close: no guess
    ("datasets/penguin/notes.txt", "penguins"),  # the folder is the mistake, whatever the file
    ("datasets/penguin/sub/x.csv.gz", "penguins"),
])
def test_every_upload_under_a_folder_no_model_owns_is_unowned(key, closest):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.closest) == ("unowned", "UnownedUploads", closest)
    assert ("Did you mean" in verdict.message) is (closest is not None)
    assert verdict.prefix == "/".join(key.split("/")[:2]) + "/"


def test_a_csv_directly_under_datasets_is_unowned_with_the_folder_it_belongs_in():
    verdict = classify("datasets/iris.csv", MODELS)
    assert (verdict.verdict, verdict.metric, verdict.prefix, verdict.closest) == (
        "unowned", "UnownedUploads", "datasets/", "iris")
    assert "in no model's folder" in verdict.message
    assert "Did you mean datasets/iris/iris.csv (model 'iris')?" in verdict.message


@pytest.mark.parametrize(("key", "level", "hint"), [
    ("datasets/iris/notes.txt", logging.INFO, "only keys ending .csv or .csv.gz are datasets"),
    ("datasets/iris/data.csv.bak", logging.INFO, "only keys ending .csv or .csv.gz are datasets"),
    ("datasets/iris/data.CSV", logging.WARNING, "the suffix is case-sensitive: rename it to data.csv"),
    ("datasets/iris/2024/data.Csv.GZ", logging.WARNING, "the suffix is case-sensitive: rename it to data.csv.gz"),
    ("datasets/iris/", logging.INFO, "a folder placeholder"),
])
def test_a_file_in_a_model_folder_that_is_not_a_dataset_is_ignored_and_said_so(key, level, hint):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level, verdict.model) == (
        "ignored", "IgnoredUploads", level, "iris")
    assert verdict.message.startswith(f"ignored: not a dataset file (.csv or .csv.gz): {key} ")
    assert verdict.message.endswith(f"({hint})")


@pytest.mark.parametrize("prefix", ["datasets/", "batch/"])
@pytest.mark.parametrize(("name", "level"), [
    ("", logging.INFO),                  # the console's folder for the prefix itself
    ("README.md", logging.INFO),         # notes beside the model folders: no data lost
    ("penguin/", logging.WARNING),       # a folder for a model that does not exist: said, not alarmed
])
def test_placeholders_and_notes_outside_model_folders_are_ignored_not_unowned(prefix, name, level):
    verdict = classify(prefix + name, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level) == ("ignored", "IgnoredUploads", level)
    if name == "penguin/":
        assert "which no model owns" in verdict.message and f"{prefix}penguins/" in verdict.message


def test_without_models_every_upload_is_unowned_and_the_message_says_why():
    verdict = classify("datasets/iris/data.csv", [])
    assert verdict.verdict == "unowned"
    assert verdict.message.endswith("configured models: none (context.shipyard.models in cdk.json is empty)")


# --------------------------------------------------------------------------- batch/ (batch scoring)


@pytest.mark.parametrize("key", ["batch/penguins/nightly.csv", "batch/penguins/2024/05/nightly.csv",
                                 "batch/house-prices/x.csv"])
def test_batch_inputs_of_a_model_are_left_to_its_batch_rule(key):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level) == ("batch", None, logging.DEBUG)
    assert (verdict.model, verdict.prefix) == (key.split("/")[1], f"batch/{key.split('/')[1]}/")
    assert verdict.message.endswith("starts the batch scoring run")


def test_a_typo_in_the_batch_folder_is_unowned_and_names_the_closest_model():
    verdict = classify("batch/penguin/nightly.csv", MODELS)  # found by hand: the model is `penguins`
    assert (verdict.verdict, verdict.metric, verdict.level) == ("unowned", "UnownedUploads", logging.WARNING)
    assert (verdict.prefix, verdict.model, verdict.closest) == ("batch/penguin/", None, "penguins")
    assert verdict.message == (
        "unowned upload: batch/penguin/nightly.csv is under batch/penguin/, which no model owns, so it started no "
        "batch scoring run. Did you mean batch/penguins/ (model 'penguins')? Expected batch/<model>/<name>.csv, "
        "or add the model to cdk.json and deploy; configured models: animals, penguins, iris, house-prices")


@pytest.mark.parametrize(("key", "closest"), [
    ("batch/Iris/x.csv", "iris"),
    ("batch/churn/x.csv", None),                 # nothing close: no guess
    ("batch/penguin/nightly.CSV", "penguins"),   # the folder is the mistake, whatever the file
    ("batch/penguin/sub/x.csv.gz", "penguins"),
])
def test_every_upload_under_a_batch_folder_no_model_owns_is_unowned(key, closest):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level, verdict.closest) == (
        "unowned", "UnownedUploads", logging.WARNING, closest)
    assert ("Did you mean" in verdict.message) is (closest is not None)
    assert "started no batch scoring run" in verdict.message and "pipeline" not in verdict.message


@pytest.mark.parametrize(("key", "level", "hint"), [
    ("batch/penguins/nightly.CSV", logging.WARNING, "the suffix is case-sensitive: rename it to nightly.csv"),
    ("batch/penguins/nightly.csv.gz", logging.WARNING,
     "batch scoring reads plain CSV only, a gzip file is not read: upload it uncompressed as nightly.csv"),
    ("batch/penguins/2024/n.CSV.GZ", logging.WARNING,
     "batch scoring reads plain CSV only, a gzip file is not read: upload it uncompressed as n.csv"),
    ("batch/penguins/notes.txt", logging.INFO, "only keys ending .csv are batch inputs"),
    ("batch/penguins/", logging.INFO, "a folder placeholder"),
])
def test_a_file_in_a_model_batch_folder_that_is_not_a_batch_input_is_ignored_and_said_so(key, level, hint):
    verdict = classify(key, MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level, verdict.model) == (
        "ignored", "IgnoredUploads", level, "penguins")
    assert verdict.message == (f"ignored: not a batch input (.csv): {key} is under model 'penguins''s prefix "
                               f"batch/penguins/ but started no batch scoring run ({hint})")


def test_a_csv_directly_under_batch_is_unowned_with_the_folder_it_belongs_in():
    verdict = classify("batch/iris.csv", MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level, verdict.prefix, verdict.closest) == (
        "unowned", "UnownedUploads", logging.WARNING, "batch/", "iris")
    assert "is directly under batch/, in no model's folder, so it started no batch scoring run." in verdict.message
    assert "Did you mean batch/iris/iris.csv (model 'iris')?" in verdict.message
    nameless = classify("batch/nightly.csv", MODELS)
    assert (nameless.verdict, nameless.closest) == ("unowned", None) and "Did you mean" not in nameless.message


def test_a_key_under_neither_prefix_is_said_not_counted():
    verdict = classify("evaluation/iris/x.csv", MODELS)
    assert (verdict.verdict, verdict.metric, verdict.level) == ("ignored", None, logging.INFO)
    assert "under none of datasets/, batch/" in verdict.message


def test_closest_model():
    assert closest_model("penguin", MODELS) == "penguins"
    assert closest_model("IRIS", MODELS) == "iris"
    assert closest_model("xyz", MODELS) is None
    assert closest_model("", MODELS) is None


@pytest.mark.parametrize("event", [None, {}, {"detail": {"bucket": {"name": "b"}}},
                                   {"detail": {"bucket": {}, "object": {"key": "datasets/x.csv"}}}])
def test_a_malformed_event_is_refused_with_what_was_expected(event):
    with pytest.raises(uploads.UploadEventError, match="expected an S3 Object Created event"):
        uploads.parse_event(event)


def _event(key: str, bucket: str = "shipyard-data") -> dict:
    return {"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}}}


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture
def output(monkeypatch, capsys):
    """Everything the handler prints: its log lines (Powertools' handler writes to the stream it
    was given at import) and its EMF lines (print), as one text."""
    logs = io.StringIO()
    monkeypatch.setattr(uploads.logger.registered_handler, "stream", logs)
    return lambda: logs.getvalue() + capsys.readouterr().out


def test_handler_logs_the_warning_and_emits_unowned_uploads(monkeypatch, output):
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
    answer = uploads.handler(_event("datasets/animal/x.csv"), LambdaContext())
    assert answer["verdict"] == "unowned" and answer["closest"] == "animals" and answer["bucket"] == "shipyard-data"
    lines = _lines(output())
    (log,) = [line for line in lines if "message" in line]
    assert log["level"] == "WARNING"
    assert log["message"].startswith("unowned upload: datasets/animal/x.csv is under datasets/animal/")
    assert (log["key"], log["prefix"], log["closest_model"], log["models"]) == (
        "datasets/animal/x.csv", "datasets/animal/", "animals", MODELS)
    (emf,) = [line for line in lines if "_aws" in line]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Shipyard"
    assert directive["Dimensions"] == [["Bucket"]]  # no service dimension: the alarm addresses Bucket only
    assert directive["Metrics"] == [{"Name": "UnownedUploads", "Unit": "Count"}]
    assert emf["Bucket"] == "shipyard-data" and emf["UnownedUploads"] == [1.0]


def test_handler_says_ignored_and_emits_ignored_uploads(monkeypatch, output):
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
    uploads.handler(_event("datasets/iris/notes.txt"), LambdaContext())
    lines = _lines(output())
    (log,) = [line for line in lines if "message" in line]
    assert log["level"] == "INFO" and log["message"].startswith("ignored: not a dataset file (.csv or .csv.gz)")
    (emf,) = [line for line in lines if "_aws" in line]
    assert emf["IgnoredUploads"] == [1.0] and "UnownedUploads" not in emf


def test_handler_is_quiet_about_a_dataset(monkeypatch, output):
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
    monkeypatch.delenv("POWERTOOLS_LOG_LEVEL", raising=False)
    assert uploads.handler(_event("datasets/iris/data.csv"), LambdaContext())["verdict"] == "dataset"
    assert not [line for line in _lines(output()) if "_aws" in line or "message" in line]


def test_handler_refuses_a_bad_models_list(monkeypatch):
    monkeypatch.setenv("SHIPYARD_MODELS", "iris")
    with pytest.raises(uploads.UploadEventError, match="SHIPYARD_MODELS must be a JSON list"):
        uploads.handler(_event("datasets/iris/data.csv"), LambdaContext())


def test_handler_warns_about_an_unowned_batch_upload_and_emits_unowned_uploads(monkeypatch, output):
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
    answer = uploads.handler(_event("batch/penguin/nightly.csv"), LambdaContext())
    assert (answer["verdict"], answer["closest"], answer["prefix"]) == ("unowned", "penguins", "batch/penguin/")
    lines = _lines(output())
    (log,) = [line for line in lines if "message" in line]
    assert log["level"] == "WARNING" and log["verdict"] == "unowned"
    assert "started no batch scoring run. Did you mean batch/penguins/ (model 'penguins')?" in log["message"]
    (emf,) = [line for line in lines if "_aws" in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Bucket"]]
    assert emf["UnownedUploads"] == [1.0] and emf["Bucket"] == "shipyard-data"


def test_handler_is_quiet_about_a_batch_input(monkeypatch, output):
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
    monkeypatch.delenv("POWERTOOLS_LOG_LEVEL", raising=False)
    assert uploads.handler(_event("batch/penguins/nightly.csv"), LambdaContext())["verdict"] == "batch"
    assert not [line for line in _lines(output()) if "_aws" in line or "message" in line]
