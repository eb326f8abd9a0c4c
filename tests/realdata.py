"""Datasets nobody here wrote, as the CSV bytes a user would upload.

- ``penguins()``: the Palmer penguins table exactly as the ``palmerpenguins`` package ships it
  (``NA`` for missing values, 344 rows, string and numeric columns, 2 rows without a body mass).
- ``sklearn_csv(name)``: scikit-learn's bundled wine, breast-cancer, diabetes and iris sets (read
  from the package's files, no network), written as CSV with a ``target`` column; class labels
  are the dataset's own names where it has them.
"""
from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

# name -> (loader, task, label names used as classes)
SKLEARN_SETS = {
    "wine": ("load_wine", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "iris": ("load_iris", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}


@functools.cache
def penguins_path() -> Path:
    import palmerpenguins

    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


@functools.cache
def penguins() -> bytes:
    """The file as shipped, byte for byte."""
    return penguins_path().read_bytes()


@functools.cache
def sklearn_csv(name: str) -> bytes:
    import sklearn.datasets

    loader, task = SKLEARN_SETS[name]
    bunch = getattr(sklearn.datasets, loader)(scaled=False) if name == "diabetes" else \
        getattr(sklearn.datasets, loader)()
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names + ["target"])
    labels = list(getattr(bunch, "target_names", []))
    for x, y in zip(bunch.data.tolist(), bunch.target.tolist()):
        target = labels[int(y)] if task == "classification" and len(labels) else y
        writer.writerow([repr(v) for v in x] + [target])
    return buf.getvalue().encode()


def task_of(name: str) -> str:
    return SKLEARN_SETS[name][1]
