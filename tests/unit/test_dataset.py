"""functions.core.dataset: CSV validation and typing, the holdout split, training views."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.core.dataset import (
    FLOAT32_MAX,
    Dataset,
    DatasetError,
    feature_columns,
    holdout_split,
    load_csv,
)


def make_csv(header, rows, newline="\n") -> bytes:
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    return (newline.join(lines) + newline).encode("utf-8")


def numeric_rows(n=30):
    return [[i, round(i * 0.25, 2), i % 2] for i in range(n)]


def load(data, target="y", task="classification", **kw) -> Dataset:
    return load_csv(data, target=target, task=task, **kw)


def error(data, target="y", task="classification", **kw) -> str:
    with pytest.raises(DatasetError) as exc:
        load(data, target=target, task=task, **kw)
    return str(exc.value)


# ---- happy paths ------------------------------------------------------------------------------


def test_numeric_only_with_integer_labels():
    data = make_csv(["a", "b", "y"], numeric_rows())
    d = load(data)
    assert d.rows == 30 and d.n_columns == 3
    assert d.schema == {
        "target": "y",
        "task": "classification",
        "features": [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}],
        "classes": [0, 1],
    }
    assert list(d.columns) == ["a", "b"]
    assert d.columns["a"].dtype == np.float64 and d.columns["a"][5] == 5.0
    assert d.target.dtype == np.int64 and d.target.tolist()[:3] == [0, 1, 0]
    assert d.missing == {"a": 0, "b": 0}
    assert d.sha256 == hashlib.sha256(data).hexdigest()
    assert d.feature_names == ["a", "b"]


def test_mixed_string_and_numeric_with_string_labels_and_missing_cells():
    colours = ["red", "blue", "green"]
    rows = []
    for i in range(30):
        num = "" if i % 7 == 0 else ("NaN" if i % 11 == 0 else i / 2)
        colour = "" if i % 5 == 0 else colours[i % 3]
        rows.append([num, colour, ["setosa", "virginica", "versicolor"][i % 3]])
    d = load(make_csv(["x", "colour", "species"], rows), target="species")
    feats = d.schema["features"]
    assert feats == [
        {"name": "x", "type": "number"},
        {"name": "colour", "type": "string", "categories": ["blue", "green", "red"]},
    ]
    assert d.schema["classes"] == ["setosa", "versicolor", "virginica"]
    assert d.target.dtype == object and set(d.target) == {"setosa", "versicolor", "virginica"}
    x = d.columns["x"]
    assert math.isnan(x[0]) and math.isnan(x[11]) and x[1] == 0.5
    assert d.missing["x"] == sum(1 for i in range(30) if i % 7 == 0 or i % 11 == 0)
    colour = d.columns["colour"]
    assert colour.dtype == object and colour[0] is None and colour[1] == "blue"
    assert d.missing["colour"] == 6


def test_regression_target_is_float():
    rows = [[i, i * 2.5 + 0.1] for i in range(25)]
    d = load(make_csv(["x", "price"], rows), target="price", task="regression")
    assert d.target.dtype == np.float64 and d.target[2] == pytest.approx(5.1)
    assert "classes" not in d.schema and d.schema["task"] == "regression"


def test_integer_looking_labels_with_signs_and_spaces_stay_int64():
    rows = [[i, [" -1", "+2", "3 "][i % 3]] for i in range(21)]
    d = load(make_csv(["x", "y"], rows))
    assert d.target.dtype == np.int64 and d.schema["classes"] == [-1, 2, 3]


def test_float_labels_are_kept_as_strings():
    rows = [[i, ["0.0", "1.0"][i % 2]] for i in range(20)]
    d = load(make_csv(["x", "y"], rows))
    assert d.target.dtype == object and d.schema["classes"] == ["0.0", "1.0"]


def test_utf8_bom_and_crlf_line_endings():
    data = b"\xef\xbb\xbf" + make_csv(["a", "b", "y"], numeric_rows(), newline="\r\n")
    d = load(data)
    assert list(d.columns) == ["a", "b"] and d.rows == 30
    assert d.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes as uploaded, BOM included


def test_quoted_fields_with_commas_quotes_and_newlines():
    lines = ['name,"note, free text",y']
    for i in range(20):
        lines.append(f'{i},"a, ""quoted"" value {i % 2}",{i % 2}')
    lines.append('20,"two\nlines",1')
    d = load("\n".join(lines).encode())
    assert list(d.columns) == ["name", "note, free text"]
    assert d.columns["note, free text"][0] == 'a, "quoted" value 0'
    assert d.columns["note, free text"][20] == "two\nlines"
    assert d.rows == 21


def test_blank_lines_are_skipped_and_header_names_are_stripped():
    data = b" a , y \n" + b"\n".join(f"{i},{i % 2}".encode() for i in range(20)) + b"\n\n\n"
    d = load(data)
    assert list(d.columns) == ["a"] and d.rows == 20


def test_cell_whitespace_rules():
    rows = [[f" {i} ", ["x", " x"][i % 2], i % 2] for i in range(20)]
    d = load(make_csv(["n", "s", "y"], rows))
    assert d.schema["features"][0]["type"] == "number" and d.columns["n"][3] == 3.0
    # String values are kept verbatim: what is served must match what was trained on.
    assert d.schema["features"][1]["categories"] == [" x", "x"]


def test_mostly_text_column_is_a_string_column_even_with_numbers():
    rows = [[("12" if i % 2 else f"code{i}"), i % 2] for i in range(20)]
    d = load(make_csv(["c", "y"], rows))
    assert d.schema["features"][0]["type"] == "string"
    assert "12" in d.schema["features"][0]["categories"]


def test_inf_is_just_a_category_in_a_string_column():
    rows = [[["inf", "low", "high"][i % 3], i % 2] for i in range(21)]
    d = load(make_csv(["c", "y"], rows))
    assert d.schema["features"][0]["categories"] == ["high", "inf", "low"]


def test_memoryview_and_bytearray_are_accepted():
    data = make_csv(["a", "b", "y"], numeric_rows())
    assert load(bytearray(data)).rows == 30
    assert load(memoryview(data)).rows == 30


def test_str_input_is_a_type_error():
    with pytest.raises(TypeError, match="bytes"):
        load_csv("a,y\n", target="y", task="classification")


# ---- error paths ------------------------------------------------------------------------------


def test_too_large_names_size_and_limit():
    data = make_csv(["a", "b", "y"], numeric_rows())
    msg = error(data, max_bytes=100)
    assert f"{len(data):,} bytes" in msg and "limit is 100 bytes" in msg


def test_default_limit_is_what_the_default_train_memory_takes():
    from functions.core.layout import max_dataset_bytes

    limit = max_dataset_bytes(3008)  # 550 MiB (docs/pipeline.md, "Memory")
    # calloc'd zeros: the pages are never touched (the size is checked before anything is read)
    msg = error(memoryview(np.zeros(limit + 1, dtype=np.uint8)))
    assert f"{limit + 1:,} bytes" in msg and f"the limit is {limit:,} bytes (550.4 MiB)" in msg


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n", b"  \r\n "])
def test_empty_file(data):
    msg = error(data)
    assert "empty" in msg and "header" in msg


def test_no_header_blank_first_line():
    msg = error(b"\na,y\n1,0\n")
    assert "no header" in msg and "line 1" in msg


def test_no_header_numbers_on_first_line():
    msg = error(make_csv(["1", "2.5", "0"], numeric_rows()))
    assert "no header" in msg and "line 1" in msg and "column names" in msg


def test_not_utf8():
    data = "a,colour,y\n1,rouge café,0\n".encode("latin-1")
    msg = error(data)
    assert "not UTF-8" in msg and "line 2" in msg and "UTF-8 CSV" in msg


def test_duplicate_column_names():
    msg = error(make_csv(["a", "b", "a", "y"], [[1, 2, 3, 0]] * 20))
    assert "duplicate column names" in msg and "['a']" in msg


def test_blank_column_name():
    msg = error(make_csv(["a", " ", "y"], [[1, 2, 0]] * 20))
    assert "blank column name" in msg and "position 2" in msg


def test_wrong_number_of_fields_names_the_line():
    rows = numeric_rows()
    lines = make_csv(["a", "b", "y"], rows).decode().splitlines()
    lines[5] = "1,2,3,4"  # line 6 of the file
    msg = error("\n".join(lines).encode())
    assert "line 6 has 4 fields, expected 3" in msg and "a, b, y" in msg


def test_wrong_number_of_fields_after_a_multiline_field_counts_physical_lines():
    lines = ["a,b,y", '1,"x\ny",0'] + ["2,z,1"] * 20 + ["3,w"]
    msg = error("\n".join(lines).encode())
    assert "line 24 has 2 fields" in msg


def test_missing_target_lists_columns():
    msg = error(make_csv(["a", "b", "label"], numeric_rows()))
    assert "target column 'y' not found" in msg and "['a', 'b', 'label']" in msg


def test_missing_target_suggests_case_mismatch():
    msg = error(make_csv(["a", "b", "Y"], numeric_rows()))
    assert "did you mean 'Y'" in msg


def test_no_feature_columns():
    msg = error(make_csv(["y"], [[i % 2] for i in range(30)]))
    assert "no feature columns" in msg and "'y'" in msg


def test_rows_without_a_target_are_dropped_and_counted():
    """Real files have a few unlabelled rows (Palmer penguins: 2 of 344): left out, in lineage."""
    rows = numeric_rows(40)
    rows[3][2] = ""
    rows[8][2] = "NA"
    d = load(make_csv(["a", "b", "y"], rows), target="y")
    assert d.rows == 38 and d.dropped == {"rows": 2, "lines": [5, 10]}
    assert len(d.target) == 38 and all(len(c) == 38 for c in d.columns.values())
    assert "NA" not in d.schema["classes"] and "" not in d.schema["classes"]


def test_target_with_many_missing_values_names_lines():
    rows = numeric_rows()
    for i in (3, 8, 9, 20):  # 4 of 30: more than 10 %
        rows[i][2] = "nan" if i == 8 else ""
    msg = error(make_csv(["a", "b", "y"], rows))
    assert "target column 'y' has 4 missing values" in msg and "lines 5, 10, 11, 22" in msg
    assert "up to 10% of the rows may lack one" in msg


def test_too_few_rows_says_count_and_minimum():
    msg = error(make_csv(["a", "b", "y"], numeric_rows(7)))
    assert "7 data rows" in msg and "at least 20" in msg
    msg = error(make_csv(["a", "b", "y"], numeric_rows(7)), min_rows=50)
    assert "at least 50" in msg


def test_single_class_is_named():
    rows = [[i, "yes"] for i in range(25)]
    msg = error(make_csv(["a", "y"], rows))
    assert "at least 2 classes" in msg and "'yes'" in msg and "'y'" in msg


def test_regression_target_not_numeric():
    rows = [[i, i * 1.5] for i in range(25)]
    rows[4][1] = "expensive"
    msg = error(make_csv(["a", "price"], rows), target="price", task="regression")
    assert "regression target 'price' must be numeric" in msg and "line 6" in msg and "'expensive'" in msg


def test_regression_target_infinite():
    rows = [[i, i * 1.5] for i in range(25)]
    rows[0][1] = "inf"
    msg = error(make_csv(["a", "price"], rows), target="price", task="regression")
    assert "line 2" in msg and "'inf'" in msg


def test_regression_target_constant():
    rows = [[i, 3] for i in range(25)]
    msg = error(make_csv(["a", "price"], rows), target="price", task="regression")
    assert "constant" in msg and "'price'" in msg


def test_unparsable_value_in_numeric_column_names_column_line_and_value():
    rows = numeric_rows()
    rows[12][1] = "abc"
    msg = error(make_csv(["a", "b", "y"], rows))
    assert "column 'b' is numeric (29 of 30 values are numbers)" in msg
    assert "line 14" in msg and "'abc'" in msg and "expected a number" in msg


def test_numeric_share_threshold_is_ninety_percent():
    # 18 numbers + 2 words = 90 %: an error. 17 numbers + 3 words = 85 %: a string column.
    rows = [[i if i >= 2 else f"w{i}", i % 2] for i in range(20)]
    assert "column 'c' is numeric" in error(make_csv(["c", "y"], rows))
    rows = [[i if i >= 3 else f"w{i}", i % 2] for i in range(20)]
    assert load(make_csv(["c", "y"], rows)).schema["features"][0]["type"] == "string"


@pytest.mark.parametrize("literal", ["inf", "-Infinity", "+INF"])
def test_infinite_literal_in_numeric_column(literal):
    rows = numeric_rows()
    rows[0][0] = literal
    msg = error(make_csv(["a", "b", "y"], rows))
    assert "column 'a'" in msg and "line 2" in msg and "infinite value" in msg and repr(literal) in msg


def test_overflowing_number_in_numeric_column():
    rows = numeric_rows()
    rows[2][0] = "1e999"
    msg = error(make_csv(["a", "b", "y"], rows))
    assert "column 'a'" in msg and "line 4" in msg and "too large" in msg


def test_number_beyond_float32_range():
    rows = numeric_rows()
    rows[2][0] = "1e300"
    msg = error(make_csv(["a", "b", "y"], rows))
    assert "column 'a'" in msg and "line 4" in msg and "out of range" in msg and "float32" in msg
    rows[2][0] = str(FLOAT32_MAX)
    assert load(make_csv(["a", "b", "y"], rows)).columns["a"][2] == FLOAT32_MAX


@pytest.mark.parametrize("token", ["", "nan", "NaN", "NAN", "  "])
def test_missing_tokens_in_numeric_column(token):
    rows = numeric_rows()
    rows[4][0] = token
    d = load(make_csv(["a", "b", "y"], rows))
    assert math.isnan(d.columns["a"][4]) and d.missing["a"] == 1


def test_underscored_numbers_are_not_numbers():
    rows = [[f"1_{i:03d}", i % 2] for i in range(20)]
    assert load(make_csv(["a", "y"], rows)).schema["features"][0]["type"] == "string"


def test_empty_feature_column():
    rows = [[i, "", i % 2] for i in range(20)]
    msg = error(make_csv(["a", "empty", "y"], rows))
    assert "column 'empty' has no values" in msg


def test_too_many_categories():
    rows = [[f"id-{i}", i, i % 2] for i in range(30)]
    msg = error(make_csv(["id", "a", "y"], rows), max_categories=10)
    assert "column 'id'" in msg and "30 distinct values" in msg and "limit of 10" in msg
    assert load(make_csv(["id", "a", "y"], rows), max_categories=None).rows == 30


def test_bad_task_and_target_arguments():
    data = make_csv(["a", "b", "y"], numeric_rows())
    assert "task must be one of" in error(data, task="clustering")
    assert "target must be a column name" in error(data, target="")


def test_nul_byte_is_reported():
    data = make_csv(["a", "b", "y"], numeric_rows()).replace(b"3,0.75", b"3\x00,0.75")
    msg = error(data)
    assert "line 5" in msg


def test_unreadable_csv_field_too_long():
    msg = error(b"a,y\n" + b"x" * 200_000 + b",1\n")
    assert msg.startswith("line 2: the CSV cannot be read") and "field limit" in msg


def test_validation_order_header_before_rows():
    # A bad header is reported even when there are also too few rows.
    assert "duplicate" in error(b"a,a,y\n1,2,0\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(alphabet=",\"\n\r ay01x.-e\ufeff", max_size=200).map(str.encode))
def test_arbitrary_bytes_fail_only_with_dataset_error(data):
    try:
        d = load_csv(data, target="y", task="classification", min_rows=1)
    except DatasetError as exc:
        assert str(exc)
    else:
        assert d.rows >= 1 and len(d.target) == d.rows


# ---- real-world files: missing markers, delimiters, gzip, pandas index -------------------------

# The rows of the Palmer penguins table as its package ships them: `NA` for missing values, in
# numeric and in string columns (row 4 has no measurement at all).
PENGUINS_HEAD = """species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year
Adelie,Torgersen,39.1,18.7,181,3750,male,2007
Adelie,Torgersen,39.5,17.4,186,3800,female,2007
Adelie,Torgersen,40.3,18,195,3250,female,2007
Adelie,Torgersen,NA,NA,NA,NA,NA,2007
Adelie,Torgersen,36.7,19.3,193,3450,female,2007
Adelie,Torgersen,39.3,20.6,190,3650,male,2007
Adelie,Torgersen,38.9,17.8,181,3625,female,2007
Adelie,Torgersen,39.2,19.6,195,4675,male,2007
Adelie,Torgersen,34.1,18.1,193,3475,NA,2007
Adelie,Torgersen,42,20.2,190,4250,NA,2007
"""
PENGUINS_TAIL = "".join(
    f"{['Gentoo', 'Chinstrap'][i % 2]},Biscoe,{45 + i / 10},{15 + i / 20},{210 + i},{5000 + 10 * i},"
    f"{['male', 'female'][i % 2]},2008\n" for i in range(20)
)


def test_penguins_as_shipped_with_na_markers():
    d = load((PENGUINS_HEAD + PENGUINS_TAIL).encode(), target="species")
    types = {f["name"]: f["type"] for f in d.schema["features"]}
    assert types == {"island": "string", "bill_length_mm": "number", "bill_depth_mm": "number",
                     "flipper_length_mm": "number", "body_mass_g": "number", "sex": "string", "year": "number"}
    assert math.isnan(d.columns["bill_length_mm"][3]) and d.columns["bill_length_mm"][0] == 39.1
    assert d.columns["sex"][3] is None and d.columns["sex"][8] is None
    assert d.schema["features"][5]["categories"] == ["female", "male"]  # "NA" is not a category
    assert d.missing["bill_length_mm"] == 1 and d.missing["sex"] == 3
    assert d.schema["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_penguins_missing_target_row_is_left_out():
    d = load((PENGUINS_HEAD + PENGUINS_TAIL).encode(), target="body_mass_g", task="regression")
    assert d.dropped["lines"] == [5] and d.target.dtype == np.float64 and not np.isnan(d.target).any()


def test_the_real_penguins_file():
    realdata = pytest.importorskip("palmerpenguins")
    from pathlib import Path

    data = (Path(realdata.__file__).parent / "data" / "penguins.csv").read_bytes()
    d = load(data, target="species")
    assert d.rows == 344 and d.missing["sex"] == 11 and d.missing["body_mass_g"] == 2
    r = load(data, target="body_mass_g", task="regression")
    assert r.rows == 342 and r.dropped == {"rows": 2, "lines": [5, 273]} and r.missing["sex"] == 9
    assert d.schema["features"][0] == {"name": "island", "type": "string",
                                       "categories": ["Biscoe", "Dream", "Torgersen"]}


PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
             "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


@pytest.mark.parametrize("token", PANDAS_NA + [" NA ", "NAN", "+nan", "\tnull"])
def test_pandas_missing_markers_in_numeric_and_string_columns(token):
    rows = [[i, ["red", "blue"][i % 2], i % 2] for i in range(30)]
    rows[4][0] = token
    rows[6][1] = token
    d = load(make_csv(["a", "colour", "y"], rows))
    assert d.schema["features"][0]["type"] == "number" and math.isnan(d.columns["a"][4])
    assert d.columns["colour"][6] is None and d.schema["features"][1]["categories"] == ["blue", "red"]
    assert d.missing == {"a": 1, "colour": 1}


def test_pandas_missing_markers_list_is_pandas_default():
    from functions.core.dataset import NA_VALUES

    assert NA_VALUES == set(PANDAS_NA)
    try:
        from pandas._libs.parsers import STR_NA_VALUES
    except ImportError:  # pandas is not a dependency of the functions
        return
    assert NA_VALUES == set(STR_NA_VALUES)


@pytest.mark.parametrize("word", ["na", "Null", "none", "?", "missing"])
def test_other_words_are_values_not_missing_markers(word):
    rows = numeric_rows()
    rows[4][0] = word  # case-sensitive, as pandas: a numeric column with a bad value
    assert f"line 6 has a value that is not a number: {word!r}" in error(make_csv(["a", "b", "y"], rows))


@pytest.mark.parametrize("token", ["NA", "null", "N/A", "None"])
def test_missing_marker_in_target(token):
    rows = numeric_rows()
    rows[3][2] = token
    assert load(make_csv(["a", "b", "y"], rows)).dropped == {"rows": 1, "lines": [5]}
    rows = numeric_rows(5) + numeric_rows(25)
    for i in range(4):  # 4 of 30: too many to leave out
        rows[i][2] = token
    assert "target column 'y' has 4 missing values (lines 2, 3, 4, 5)" in error(make_csv(["a", "b", "y"], rows))


def test_string_column_after_numbers_keeps_the_numbers_text():
    # Text first met on row 11: the first rows' numbers are read again as the strings they are.
    rows = [[f" {i}.0", i, i % 2] for i in range(10)] + [["NA", 1, 0]] + [[f"w{i % 3}", i, i % 2] for i in range(20)]
    d = load(make_csv(["c", "n", "y"], rows))
    c = d.columns["c"]
    assert d.schema["features"][0]["type"] == "string"
    assert c[0] == " 0.0" and c[9] == " 9.0" and c[10] is None and c[11] == "w0"
    categories = d.schema["features"][0]["categories"]
    assert categories[:2] == [" 0.0", " 1.0"] and len(categories) == 13


def test_string_cells_share_one_str_per_distinct_value():
    rows = [[["red", "blue"][i % 2], i, i % 2] for i in range(40)]
    d = load(make_csv(["colour", "n", "y"], rows))
    c = d.columns["colour"]
    assert c.dtype == object and all(c[i] is c[i % 2] for i in range(40))


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_files(delimiter):
    rows = [[f"{i},5" if delimiter == ";" else i, ["a b", "c,d"][i % 2], "NA" if i == 3 else i / 4, i % 2]
            for i in range(30)]
    data = "\n".join(delimiter.join(map(str, r)) for r in [["x", "s", "z", "y"]] + rows).encode()
    d = load(data)
    assert list(d.columns) == ["x", "s", "z"] and d.rows == 30
    assert d.columns["s"][1] == "c,d" and math.isnan(d.columns["z"][3])


def test_semicolon_file_with_one_column_header_is_read_not_refused():
    # Before: "target column 'y' not found; the columns are ['a;b;y']".
    d = load(b"a;b;y\n" + b"".join(b"%d;%d;%d\n" % (i, i * 2, i % 2) for i in range(20)))
    assert list(d.columns) == ["a", "b"]


def test_semicolon_file_wrong_width_names_the_delimiter():
    lines = ["a;b;y"] + [f"{i};{i};{i % 2}" for i in range(20)]
    lines[6] = "1;2"
    msg = error("\n".join(lines).encode())
    assert "line 7 has 2 fields, expected 3" in msg and "semicolon" in msg


def test_comma_wins_when_the_header_splits_both_ways():
    # "a|b" is one name: pipes inside names of a comma file.
    d = load(b"a|b,c,y\n" + b"".join(b"%d|x,%d,%d\n" % (i, i, i % 2) for i in range(20)))
    assert list(d.columns) == ["a|b", "c"] and d.columns["a|b"][0] == "0|x"


def test_ambiguous_delimiter_is_named():
    data = b"a;b|c\n" + b"".join(b"%d;%d|%d\n" % (i, i, i % 2) for i in range(20))
    msg = error(data, target="c")
    assert "cannot tell the delimiter" in msg and "a semicolon (';')" in msg and "a pipe ('|')" in msg


def test_gzip_upload():
    import gzip

    plain = make_csv(["a", "colour", "y"], [[i, ["r", "NA"][i % 2], i % 2] for i in range(30)])
    data = gzip.compress(plain)
    d = load(data)
    assert d.rows == 30 and d.columns["colour"][1] is None
    assert d.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes as uploaded: the .gz file
    assert load(gzip.compress(plain[:40]) + gzip.compress(plain[40:])).rows == 30  # two members
    assert load(data + b"\0" * 8).rows == 30  # zero padding


def test_gzip_bomb_is_refused_without_inflating_it():
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b"a,y\n" + b"0" * (50 * 2**20)) + compressor.flush()
    assert len(bomb) < 100_000
    msg = error(bomb, max_bytes=10 * 2**20)
    assert msg.startswith("dataset is too large once decompressed")
    assert "more than 10,485,760 bytes (10.0 MiB)" in msg


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "trailing"])
def test_damaged_gzip(damage):
    import gzip

    data = gzip.compress(make_csv(["a", "b", "y"], numeric_rows()))
    if damage == "truncated":
        msg = error(data[: len(data) // 2])
        assert "truncated" in msg
    elif damage == "corrupt":
        msg = error(data[:12] + b"\xff" * 20 + data[32:])
        assert "cannot be decompressed" in msg
    else:
        msg = error(data + b"junk")
        assert "not the start of another gzip member" in msg


@pytest.mark.parametrize("first", ["", "Unnamed: 0"])
def test_pandas_index_column_gets_a_hint(first):
    rows = [[i] + r for i, r in enumerate(numeric_rows())]
    msg = error(make_csv([first, "a", "b", "y"], rows))
    assert "position 1" in msg and "looks like an index column written by pandas" in msg
    assert "index=False" in msg


def test_line_numbers_survive_chunking(monkeypatch):
    import functions.core.dataset as module

    monkeypatch.setattr(module, "_CHUNK_ROWS", 3)
    lines = ["a,b,y"] + [f"{i},{i},{i % 2}" for i in range(40)]
    lines[30] = '1,"7\n",0'  # a record of two lines: the ones after it start a line later
    lines[35] = "1,x,0"
    msg = error("\n".join(lines).encode())
    assert "column 'b' is numeric (39 of 40 values are numbers) but line 37 has a value that is not a number" in msg



@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(["1", "2.5", "NA", "", "null", "a", "b;c", '"x|y"', "y", "\t", "-nan"]),
                         min_size=1, max_size=4), min_size=1, max_size=30),
       st.sampled_from([",", ";", "\t", "|"]), st.booleans())
def test_any_delimited_or_gzipped_text_fails_only_with_dataset_error(rows, delimiter, packed):
    import gzip

    data = "\n".join(delimiter.join(r) for r in [["a", "y"]] + rows).encode()
    try:
        d = load_csv(gzip.compress(data) if packed else data, target="y", task="classification", min_rows=1)
    except DatasetError as exc:
        assert str(exc)
    else:
        assert d.rows >= 1 and len(d.target) == d.rows and all(len(c) == d.rows for c in d.columns.values())


def test_load_csv_memory_is_about_the_typed_columns():
    # Before: 14x the CSV's size in Python objects (lists of rows, tuples of cells, a decoded
    # copy). Now: the typed columns (8 bytes a cell, ~1x) and one chunk of rows at a time.
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 40_000
    x = np.char.mod("%.6g", rng.normal(size=(n, 8))).astype(object)
    x[rng.random(size=(n, 8)) < 0.01] = "NA"
    colour = np.array(["red", "green", "blue", ""], dtype=object)[rng.integers(0, 4, size=n)]
    label = np.array(["a", "b"], dtype=object)[rng.integers(0, 2, size=n)]
    table = np.column_stack([x, colour, label]).tolist()
    data = ("x0,x1,x2,x3,x4,x5,x6,x7,colour,y\n" + "\n".join(",".join(r) for r in table) + "\n").encode()
    del table, x
    tracemalloc.start()
    try:
        d = load(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.rows == n and d.columns["colour"][d.columns["colour"] != None].size > 0  # noqa: E711
    assert peak <= 1.5 * len(data) + 12 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {len(data) / 2**20:.1f} MiB CSV"

# ---- holdout split ----------------------------------------------------------------------------


def test_split_is_deterministic_and_seed_dependent():
    a = holdout_split(100, 0.2, 7)
    b = holdout_split(100, 0.2, 7)
    c = holdout_split(100, 0.2, 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(a[1]) == 20 and len(a[0]) == 80
    assert a[0].dtype == np.int64 and np.all(np.diff(a[1]) > 0)


def test_split_pinned_values():
    # The split is part of a version's lineage (seed recorded): it must not change across releases.
    train, test = holdout_split(10, 0.3, 42)
    assert test.tolist() == sorted(np.random.Generator(np.random.PCG64(42)).permutation(10)[:3].tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(10))


def test_split_always_leaves_a_row_on_each_side():
    train, test = holdout_split(2, 0.01, 0)
    assert len(train) == 1 and len(test) == 1
    train, test = holdout_split(5, 0.99, 0)
    assert len(train) == 1 and len(test) == 4


def test_stratified_split_keeps_class_proportions():
    y = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10, dtype=object)
    train, test = holdout_split(100, 0.2, 3, stratify=y)
    assert len(test) == 20
    assert sorted(y[test].tolist()) == ["a"] * 12 + ["b"] * 6 + ["c"] * 2
    same = holdout_split(100, 0.2, 3, stratify=y)
    assert np.array_equal(test, same[1])


def test_stratified_split_rare_classes():
    y = np.array([0] * 30 + [1] * 2 + [2], dtype=np.int64)
    train, test = holdout_split(33, 0.1, 0, stratify=y)
    assert set(y[train]) == {0, 1, 2}  # every class in train
    assert 1 in set(y[test])  # a class with 2 rows is also held out
    assert 2 not in set(y[test])  # the single row of class 2 stays in train


def test_stratified_split_more_classes_than_holdout_size():
    y = np.repeat(np.arange(10), 2)
    train, test = holdout_split(20, 0.05, 0, stratify=y)
    assert sorted(y[test].tolist()) == list(range(10))  # guarantee wins over fraction
    assert sorted(y[train].tolist()) == list(range(10))


def test_split_errors():
    with pytest.raises(DatasetError, match="at least 2 rows"):
        holdout_split(1, 0.2, 0)
    for bad in (0, 1, 1.5, -0.1, float("nan"), "0.2", True):
        with pytest.raises(DatasetError, match="strictly between 0 and 1"):
            holdout_split(10, bad, 0)
    with pytest.raises(DatasetError, match="non-negative integer"):
        holdout_split(10, 0.2, -1)
    with pytest.raises(DatasetError, match="3 labels for 10 rows"):
        holdout_split(10, 0.2, 0, stratify=[0, 1, 0])
    with pytest.raises(DatasetError, match="each of the 3 classes has a single row"):
        holdout_split(3, 0.5, 0, stratify=["a", "b", "c"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=2, max_size=80),
    st.floats(0.01, 0.99),
    st.integers(0, 2**32),
)
def test_stratified_split_properties(labels, fraction, seed):
    y = np.array(labels)
    counts = {c: labels.count(c) for c in set(labels)}
    if all(v == 1 for v in counts.values()):
        with pytest.raises(DatasetError):
            holdout_split(len(y), fraction, seed, stratify=y)
        return
    train, test = holdout_split(len(y), fraction, seed, stratify=y)
    assert len(train) >= 1 and len(test) >= 1
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(len(y)))
    assert set(y[train].tolist()) == set(labels)
    assert {c for c, n in counts.items() if n >= 2} <= set(y[test].tolist())
    again = holdout_split(len(y), fraction, seed, stratify=y)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 500), st.floats(0.01, 0.99), st.integers(0, 2**32))
def test_plain_split_properties(n, fraction, seed):
    train, test = holdout_split(n, fraction, seed)
    assert len(test) == min(max(round(n * fraction), 1), n - 1)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(n))


# ---- training views ---------------------------------------------------------------------------


def test_feature_columns():
    rows = [[i if i != 3 else "", ["r", "g", ""][i % 3], i % 2] for i in range(20)]
    d = load(make_csv(["n", "s", "y"], rows))
    cols = feature_columns(d, [0, 3, 5])
    assert list(cols) == ["n", "s"] and cols["n"].dtype == np.float64 and cols["s"].dtype == object
    assert cols["n"][0] == 0.0 and math.isnan(cols["n"][1]) and cols["s"].tolist() == ["r", "r", None]
    cols = feature_columns(d, np.array([1, 2]))
    assert cols["n"].tolist() == [1.0, 2.0] and cols["s"].tolist() == ["g", None]
    assert len(feature_columns(d)["n"]) == 20 and len(feature_columns(d, [])["s"]) == 0
    with pytest.raises(DatasetError, match="row indices"):
        feature_columns(d, [20])
    with pytest.raises(DatasetError, match="integers"):
        feature_columns(d, [0.5])


def test_split_then_views_end_to_end():
    rows = [[i, ["x", "y"][i % 2], ["a", "b", "c"][i % 3]] for i in range(60)]
    d = load(make_csv(["n", "s", "label"], rows), target="label")
    train, test = holdout_split(d.rows, 0.25, 11, stratify=d.target)
    X_train, X_test = feature_columns(d, train), feature_columns(d, test)
    assert len(X_train["n"]) == 45 and len(X_test["s"]) == 15
    assert set(d.target[test]) == {"a", "b", "c"}
