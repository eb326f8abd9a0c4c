"""FeatureSchema: round trip, type inference for training, request validation into ONNX feeds."""
import math
from decimal import Decimal

import numpy as np
import pytest

from functions.core.schema import Feature, FeatureSchema, SchemaError

SCHEMA = {
    "target": "species",
    "task": "classification",
    "features": [
        {"name": "sepal_length", "type": "number"},
        {"name": "colour", "type": "string", "categories": ["blue", "red"]},
    ],
    "classes": ["setosa", "versicolor", "virginica"],
}


@pytest.fixture
def schema():
    return FeatureSchema.from_dict(SCHEMA)


def test_dict_round_trip(schema):
    assert schema.to_dict() == SCHEMA
    assert schema.names == ["sepal_length", "colour"]
    assert schema.is_classifier


def test_regression_schema_has_no_classes():
    s = FeatureSchema("y", "regression", (Feature("a", "number"),))
    assert "classes" not in s.to_dict()


def test_dynamodb_decimals_become_plain_classes():
    s = FeatureSchema.from_dict({**SCHEMA, "classes": [Decimal(0), Decimal(1)]})
    assert s.classes == (0, 1) and all(type(c) is int for c in s.classes)


@pytest.mark.parametrize("bad, words", [
    ({"task": "classification", "features": []}, "target"),
    ({**SCHEMA, "task": "clustering"}, "task must be one of"),
    ({**SCHEMA, "features": [{"name": "a", "type": "number"}, {"name": "a", "type": "number"}]}, "duplicate"),
    ({**SCHEMA, "features": [{"name": "a", "type": "date"}]}, "'number' or 'string'"),
    ({**SCHEMA, "features": [{"name": "species", "type": "number"}]}, "cannot also be a feature"),
])
def test_invalid_schema_dicts(bad, words):
    with pytest.raises(SchemaError, match=words):
        FeatureSchema.from_dict(bad)


def test_from_rows_infers_numbers_strings_and_classes():
    columns = ["a", "b", "c", "label"]
    rows = [
        ["1.5", "x", 3, "no"],
        ["", "y", 4.5, "yes"],       # "" is missing, not a string
        ["2", "x", None, "no"],
        ["-1e3", "1", float("nan"), "yes"],  # "1" in a string column stays a category
    ]
    s = FeatureSchema.from_rows(columns, rows, "label", "classification")
    assert s.to_dict() == {
        "target": "label",
        "task": "classification",
        "features": [
            {"name": "a", "type": "number"},
            {"name": "b", "type": "string", "categories": ["1", "x", "y"]},
            {"name": "c", "type": "number"},
        ],
        "classes": ["no", "yes"],
    }


def test_from_rows_integer_labels_stay_integers():
    s = FeatureSchema.from_rows(["a", "t"], [["1", "0"], ["2", "1"], ["3", "1"]], "t", "classification")
    assert s.classes == (0, 1)


def test_from_rows_booleans_and_infinity_are_not_numbers():
    s = FeatureSchema.from_rows(["a", "b", "t"], [[True, "inf", 1.0], [False, "1", 2.0]], "t", "regression")
    assert [f.type for f in s.features] == ["string", "string"]


@pytest.mark.parametrize("columns, rows, target, task, words", [
    (["a", "b"], [[1, 2]], "c", "regression", "target column 'c' not found"),
    (["a", "b"], [], "b", "regression", "empty table"),
    (["a", "b"], [[1, 2, 3]], "b", "regression", "row 0 has 3 cells, expected 2"),
    (["a", "b"], [[1, "x"], [2, "x"]], "b", "classification", "at least 2 classes"),
])
def test_from_rows_errors(columns, rows, target, task, words):
    with pytest.raises(SchemaError, match=words):
        FeatureSchema.from_rows(columns, rows, target, task)


# ---- to_feeds -----------------------------------------------------------------------------


def test_records_and_arrays_give_identical_feeds(schema):
    records = [{"sepal_length": 5.1, "colour": "red"}, {"colour": "blue", "sepal_length": 7}]
    arrays = [[5.1, "red"], [7, "blue"]]
    a, b = schema.to_feeds(records), schema.to_feeds(arrays)
    assert a.keys() == b.keys() == {"sepal_length", "colour"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["sepal_length"].dtype == np.float32 and a["sepal_length"].shape == (2, 1)
    assert a["colour"].dtype == object and a["colour"].tolist() == [["red"], ["blue"]]


def test_mixed_records_and_arrays(schema):
    feeds = schema.to_feeds([{"sepal_length": 1, "colour": "red"}, [2, "blue"]])
    assert feeds["sepal_length"].ravel().tolist() == [1.0, 2.0]


def test_null_is_missing_and_unknown_category_is_accepted(schema):
    feeds = schema.to_feeds([{"sepal_length": None, "colour": None}, [1.0, "purple"]])
    assert math.isnan(feeds["sepal_length"][0, 0])
    assert feeds["colour"].ravel().tolist() == ["", "purple"]


@pytest.mark.parametrize("instances, words", [
    ({"sepal_length": 1}, "'instances' must be a list of records or arrays, got object"),
    ("abc", "must be a list of records or arrays, got string"),
    (None, "got null"),
    ([], "'instances' is empty"),
    ([{"sepal_length": 1, "colour": "red", "petal": 2}], r"instance 0: unknown features \['petal'\]; expected exactly \['sepal_length', 'colour'\]"),
    ([{"sepal_length": 1}], r"instance 0: missing features \['colour'\]"),
    ([{"sepal_length": 1, "petal": 2}], r"unknown features \['petal'\] and missing features \['colour'\]"),
    ([[1, "red"], [1.0]], r"instance 1: array has 1 values, expected 2 in this order: \['sepal_length', 'colour'\]"),
    ([[1, "red", 3]], "array has 3 values, expected 2"),
    ([7], "instance 0: expected a record .* or an array in schema order .*, got number"),
    ([[True, "red"]], "instance 0: feature 'sepal_length' must be a number \\(or null\\), got boolean True"),
    ([["5.1", "red"]], "feature 'sepal_length' must be a number \\(or null\\), got string '5.1'"),
    ([[[5.1], "red"]], "must be a number .*got array"),
    ([[5.1, 3]], "feature 'colour' must be a string \\(or null\\), got number 3"),
    ([[5.1, False]], "feature 'colour' must be a string .*got boolean"),
    ([[float("nan"), "red"]], "feature 'sepal_length' must be a finite number, got nan"),
    ([[float("inf"), "red"]], "must be a finite number, got inf"),
    ([[-float("inf"), "red"]], "must be a finite number, got -inf"),
    ([[10 ** 400, "red"]], "must be a finite number, got <a very large integer>"),
    ([[1.0, "\ud800"]], "feature 'colour' is not valid Unicode text"),
    ([[1e39, "red"]], "out of range \\(1e\\+39\\); expected a magnitude of at most 3.403e\\+38"),
])
def test_invalid_instances_say_what_and_what_was_expected(schema, instances, words):
    with pytest.raises(SchemaError, match=words):
        schema.to_feeds(instances)


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)
