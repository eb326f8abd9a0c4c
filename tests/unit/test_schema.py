"""FeatureSchema: round trip, type inference for training, request validation into ONNX feeds."""
import math
from decimal import Decimal

import numpy as np
import pytest

from functions.core.schema import FAST_MIN_INSTANCES, Feature, FeatureSchema, SchemaError

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
    ([{"sepal_length": 1, "colour": "red", "petal": 2}],
     r"instance 0: unknown features \['petal'\]; expected exactly \['sepal_length', 'colour'\]"),
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


# ---- to_feeds: the column-wise fast path agrees with the instance-by-instance one -----------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_hostile = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10 ** 400), 10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e38, 3.4028234663852886e38, 3.4028235e38, 3.5e38, -3.5e38, 1e-45, 2 ** 63,
                     2 ** 70, np.float64(1.5), np.int64(3), "", "red", "5.1", "\ud800", "a\udfffb", "é"]),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)
_number = st.one_of(st.none(), st.integers(-(10 ** 6), 10 ** 6), st.floats(-1e30, 1e30, allow_nan=False))
_string = st.none() | st.text(max_size=6)


def _valid(schema):
    kinds = [_number if f.type == "number" else _string for f in schema.features]
    record = st.tuples(*kinds).map(lambda vs: dict(zip(schema.names, vs)))
    array = st.tuples(*kinds).map(list)
    size = {"min_size": FAST_MIN_INSTANCES, "max_size": 40}
    return st.lists(record, **size) | st.lists(array, **size)


@st.composite
def _near(draw, schema):
    """A valid batch (large enough for the fast path) with a few instances, cells, keys or shapes
    spoiled, or a small batch of anything."""
    cell = _number | _string | _hostile
    record = st.fixed_dictionaries({n: cell for n in schema.names},
                                   optional={"petal": cell, "colour ": cell})
    partial = st.dictionaries(st.sampled_from(schema.names + ["petal"]), cell, max_size=3)
    array = st.lists(cell, min_size=len(schema.names) - 1, max_size=len(schema.names) + 1)
    spoiled = st.one_of(record, record, array, array, partial, _hostile)
    if draw(st.integers(0, 4)) == 0:
        return draw(st.lists(spoiled, min_size=1, max_size=8))
    instances = draw(_valid(schema))
    for _ in range(draw(st.integers(0, 3))):
        instances[draw(st.integers(0, len(instances) - 1))] = draw(spoiled)
    return instances


def _outcome(fn, instances):
    try:
        feeds = fn(instances)
    except SchemaError as exc:
        return ("error", str(exc))
    return ("feeds", {k: (v.dtype, v.shape, [repr(x) for x in v.ravel().tolist()]) for k, v in feeds.items()})


def _agree(schema, instances):
    slow = _outcome(schema._slow_feeds, instances)
    assert _outcome(schema.to_feeds, instances) == slow
    fast = schema._fast_feeds(instances)
    if fast is not None:  # whatever the fast path accepts, the slow path accepts identically
        assert slow == _outcome(lambda _: fast, instances)
    return fast


_SCHEMAS = [FeatureSchema.from_dict(SCHEMA),
            FeatureSchema("y", "regression", (Feature("a", "string", ("x",)), Feature("b", "number"),
                                              Feature("c", "number"), Feature("d", "string", ("x",))))]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(_SCHEMAS), st.data())
def test_fast_path_takes_valid_input_and_agrees_with_the_slow_path(schema, data):
    instances = data.draw(_valid(schema))
    assert _agree(schema, instances) is not None  # plainly valid input never needs the slow path


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(_SCHEMAS), st.data())
def test_fast_and_slow_paths_agree_on_spoiled_input(schema, data):
    _agree(schema, data.draw(_near(schema)))


@pytest.mark.parametrize("spoil, words", [
    (lambda rows: rows.__setitem__(700, [float("nan"), "red"]),
     "instance 700: feature 'sepal_length' must be a finite"),
    (lambda rows: rows.__setitem__(999, [None, "\ud800"]), "instance 999: feature 'colour' is not valid Unicode"),
    (lambda rows: rows.__setitem__(3, [1e39, "red"]), "instance 3: feature 'sepal_length' is out of range"),
    (lambda rows: rows.__setitem__(5, {"sepal_length": 1, "petal": "red"}), "instance 5: unknown features"),
    (lambda rows: rows[10].__setitem__(0, True), "instance 10: feature 'sepal_length' must be a number"),
])
def test_large_batches_report_the_first_offending_instance(schema, spoil, words):
    rows = [[float(i), "red" if i % 2 else None] for i in range(1000)]
    spoil(rows)
    with pytest.raises(SchemaError, match=words):
        schema.to_feeds(rows)


def test_nulls_beside_a_nan_literal_are_still_caught(schema):
    # null -> NaN is imputed; a NaN that was not a null is an error, even among nulls.
    with pytest.raises(SchemaError, match="instance 2: feature 'sepal_length' must be a finite number"):
        schema.to_feeds([[None, "a"], [None, "b"], [float("nan"), "c"]])
    with pytest.raises(SchemaError, match="instance 9: feature 'sepal_length' must be a finite number"):
        schema.to_feeds([[None, "a"]] * 9 + [[float("nan"), "c"]])
    feeds = schema.to_feeds([[None, "a"], [None, None]] * 5)
    assert feeds["sepal_length"].shape == (10, 1) and np.isnan(feeds["sepal_length"]).all()
    assert feeds["colour"].ravel().tolist() == ["a", ""] * 5
