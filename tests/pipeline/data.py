"""CSV bytes for the pipeline tests (synthetic, from tests.models)."""
from __future__ import annotations

import csv
import io

from tests import models


def to_csv(columns, rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode()


def animals(n: int = 240, seed: int = 0) -> bytes:
    return to_csv(*models.classification_table(n=n, seed=seed))


def prices(n: int = 200, seed: int = 1) -> bytes:
    return to_csv(*models.regression_table(n=n, seed=seed))


def animals_with_extra_column(n: int = 240, seed: int = 5) -> bytes:
    columns, rows = models.classification_table(n=n, seed=seed)
    return to_csv(columns[:3] + ["weight"] + columns[3:], [r[:3] + [float(i % 7)] + r[3:] for i, r in enumerate(rows)])


def replace_cell(body: bytes, line: int, column: int, value: str) -> bytes:
    lines = body.decode().splitlines()
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()
