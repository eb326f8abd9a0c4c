"""``shipyard evaluate MODEL FILE.csv [--version N] [--json]``: a served version scored on a labelled file.

Through the API, not the artifact
    The rows are predicted by the stack's API, ``POST /models/{name}/predict?version=N``, with
    the very path ``shipyard predict`` uses (``infra.predict.predict_rows``: requests of at most
    the API's limit, refused rows reported by file line). The other way would be to download the
    version's ``model.onnx`` and run ``functions.core.onnx_model.OnnxModel`` here. The API is
    chosen because it evaluates exactly what is served: the artifact object version the
    registry recorded, checked against its sha256, the serving schema's validation of every
    instance (``FeatureSchema.to_feeds``), the inference layer's onnxruntime rather than whichever
    one is installed where the CLI runs. It needs only what ``predict`` needs (API access), not
    ``s3:GetObject`` on the artifact bucket and onnxruntime on the caller's machine. The costs:
    the API must be up, a large file takes ``rows / 1000`` requests, and the rows are inference
    traffic: counted in the ``Predictions`` metric and captured (sampled) like any request, so
    they take part in the next drift check. (A way to mark evaluation traffic so capture skips
    it would need a change in the inference function.)

What is scored
    The version is ``--version N`` or production's, resolved once (``GET /models/{name}``) and
    pinned for every request. Its record (``GET /models/{name}/versions/{N}``) gives the target,
    the task, the classes and the features; only the features are sent (other columns are left
    out, with a note). Rows whose target cell is missing (empty, ``NA``, … as in training data)
    are skipped and counted. The metric is the one configured for the model in ./cdk.json, else
    the one the version was validated with (its recorded ``metrics.metric``), else the task's
    default; it is shown beside the version's recorded holdout value. The other metrics of the
    task come too. Classification adds a confusion matrix (rows: true label, columns:
    predicted; a label the model does not know gets a row of its own and counts as wrong);
    regression a residual summary (``true - predicted``: mean, standard deviation, quantiles,
    MAE, RMSE).

Exit status 0 when every row with a target was scored; 1 when the API refused rows (the
metrics are then over the rows it predicted, and say so), or on any error.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from infra.predict import Api, PredictError, Table, predict_rows, progress_printer, read_table, report_problems

_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)
QUANTILES = (("min", 0.0), ("p05", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95),
             ("max", 1.0))


def label_of(cell: str, classes: list | None) -> Any:
    """A target cell as a class label, as training reads it: an integer when the model's classes
    are integers and the cell is one, else the text as written."""
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes) and _INT_RE.match(cell.strip()):
        return int(cell.strip())
    return cell


def _metric_value(metric: str, y_true: list, y_pred: list, probabilities, classes) -> tuple[float | None, str | None]:
    from functions.core.metrics import score

    try:
        value = score(metric, y_true, y_pred, probabilities=probabilities, classes=classes)
    except ValueError as err:
        return None, str(err)
    return (value, None) if math.isfinite(value) else (None, f"{metric} is not finite")


def classification_metrics(metrics: list[str], y_true: list, y_pred: list, probabilities: list | None,
                           classes: list) -> dict[str, dict]:
    """Each metric's value (or why it has none). Labels the model does not know count as wrong."""
    known = set(classes)
    unknown = [i for i, y in enumerate(y_true) if y not in known]
    out: dict[str, dict] = {}
    for metric in metrics:
        if metric == "roc_auc":
            if probabilities is None:
                out[metric] = {"value": None, "error": "the model gives no probabilities"}
                continue
            keep = [i for i in range(len(y_true)) if y_true[i] in known]
            value, error = _metric_value(metric, [y_true[i] for i in keep], [y_pred[i] for i in keep],
                                         [probabilities[i] for i in keep], classes)
            entry: dict[str, Any] = {"value": value}
            if unknown:
                entry["note"] = f"over the {len(keep)} rows whose label is a class of the model"
        elif unknown:  # score over every label there is, as text (labels of mixed types do not sort)
            value, error = _metric_value(metric, [str(y) for y in y_true], [str(y) for y in y_pred], None, None)
            entry = {"value": value}
        else:
            value, error = _metric_value(metric, y_true, y_pred, None, classes)
            entry = {"value": value}
        if error:
            entry["error"] = error
        out[metric] = entry
    return out


def confusion_matrix(y_true: list, y_pred: list, classes: list) -> dict:
    """``{"labels": [...], "matrix": [[...]]}``: matrix[i][j] rows of true label i predicted as j.
    The model's classes first, in its order, then any other true label (in order of appearance)."""
    labels = list(classes) + [y for y in dict.fromkeys(y_true) if y not in set(classes)]
    index = {y: i for i, y in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred):
        if p not in index:  # a prediction outside the classes the API said (never expected)
            index[p] = len(labels)
            labels.append(p)
            for row in matrix:
                row.append(0)
            matrix.append([0] * len(labels))
        matrix[index[t]][index[p]] += 1
    return {"labels": labels, "matrix": matrix}


def residual_summary(y_true: list[float], y_pred: list[float]) -> dict:
    """Residuals ``true - predicted``: count, mean, std (population), quantiles, MAE, RMSE."""
    r = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    out: dict[str, Any] = {"rows": int(r.size), "mean": float(r.mean()), "std": float(r.std())}
    out.update({name: float(np.quantile(r, q)) for name, q in QUANTILES})
    out["mae"] = float(np.mean(np.abs(r)))
    out["rmse"] = float(math.sqrt(np.mean(r ** 2)))
    return out


def _lines(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, lines[:limit]))
    return shown + (f", … ({len(lines)} in all)" if len(lines) > limit else "")


def evaluate(api: Api, model: str, path: Path, *, version: int | None = None, spec: dict | None = None,
             batch_size: int = 1000, progress=None, err=None) -> dict:
    """The evaluation of ``model`` (version ``version``, production's when None) on the file at ``path``."""
    err = err or sys.stderr
    from functions.core.dataset import cell_value, is_missing
    from functions.core.metrics import METRICS

    if not path.name.lower().endswith((".csv", ".csv.gz")):
        raise PredictError(f"{path}: evaluate reads a labelled CSV (.csv or .csv.gz)")
    table = read_table(path)
    record = api.version_record(model, version)
    pinned = int(record["version"])
    schema = record.get("schema") or {}
    target, task = schema.get("target"), schema.get("task")
    if not target or task not in METRICS:
        raise PredictError(f"model {model!r} v{pinned} has no usable feature schema (status "
                           f"{record.get('status')!r}); expected a trained version")
    features = [f["name"] for f in schema.get("features") or []]
    classes = list(schema.get("classes") or []) if task == "classification" else None
    columns = table.columns or []
    if target not in columns:
        raise PredictError(f"{path}: no column {target!r}, the target of model {model!r} v{pinned}: evaluate needs "
                           f"labelled rows; the columns are {columns}")
    missing = [f for f in features if f not in columns]
    if missing:
        raise PredictError(f"{path}: model {model!r} v{pinned} takes features {missing} that the file does not "
                           f"have; the columns are {columns}")
    extra = [c for c in columns if c not in features and c != target]
    if extra:
        print(f"shipyard: leaving out column{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
              f"(not {'features' if len(extra) > 1 else 'a feature'} of {model!r} v{pinned})", file=err)

    assert table.cells is not None and table.lines is not None
    t = columns.index(target)
    labelled, skipped = [], []
    for r, row in enumerate(table.cells):
        (skipped if is_missing(row[t]) else labelled).append(r)
    if not labelled:
        raise PredictError(f"{path}: no row has a target ({target!r} is missing on every row)")
    y_true: list[Any] = []
    for r in labelled:
        cell = table.cells[r][t]
        if task == "regression":
            value = cell_value(cell)
            if not isinstance(value, float):
                raise PredictError(f"{path}: line {table.lines[r]}: target {target!r} is {cell!r}; expected a number "
                                   f"(model {model!r} is a regressor), or an empty cell to skip the row")
            y_true.append(value)
        else:
            y_true.append(label_of(cell, classes))
    sent = Table(table.path, [{f: table.instances[r][f] for f in features} for r in labelled], list(features),
                 [table.lines[r] for r in labelled], [table.cells[r] for r in labelled])
    result = predict_rows(api, model, sent, version=pinned, batch_size=batch_size, progress=progress)
    scored = result.predicted
    if not scored:
        report_problems(sent, result, err)
        raise PredictError(f"the API predicted none of the {len(labelled)} rows of {path}")
    truth = [y_true[i] for i in scored]
    predictions = [result.predictions[i] for i in scored]

    metrics_of_task = list(METRICS[task])
    recorded = record.get("metrics") or {}
    metric = (spec or {}).get("metric") or recorded.get("metric") or metrics_of_task[0]
    if metric not in metrics_of_task:
        raise PredictError(f"metric {metric!r} is not a {task} metric; expected one of {metrics_of_task}")
    out: dict[str, Any] = {
        "model": model, "version": pinned, "production": version is None, "file": str(path),
        "target": target, "task": task, "metric": metric,
        "rows": {"file": len(table.cells), "scored": len(scored), "without_target": len(skipped),
                 "without_target_lines": [table.lines[r] for r in skipped],
                 "refused": len(result.refused) + len(result.unsent)},
    }
    if task == "classification":
        probabilities = [result.probabilities[i] for i in scored] if result.probabilities else None
        model_classes = list(result.classes or classes or [])
        values = classification_metrics(metrics_of_task, truth, predictions, probabilities, model_classes)
        out["confusion_matrix"] = confusion_matrix(truth, predictions, model_classes)
        unknown = sorted({repr(y) for y in truth if y not in set(model_classes)})
        if unknown:
            out["unknown_labels"] = unknown
    else:
        flat = [float(np.asarray(p, dtype=np.float64).reshape(-1)[0]) for p in predictions]
        values = {m: dict(zip(("value", "error"), _metric_value(m, truth, flat, None, None))) for m in metrics_of_task}
        for v in values.values():
            if v.get("error") is None:
                v.pop("error", None)
        out["residuals"] = residual_summary(truth, flat)
    out["value"] = values[metric].get("value")
    out["metrics"] = values
    if isinstance(recorded.get(metric), (int, float)):
        out["recorded"] = {"metric": metric, "value": float(recorded[metric]), "on": "holdout",
                           "rows": recorded.get("holdout_rows")}
    if not result.complete:
        out["refused"] = [{"line": sent.lines[x.row], "request": x.request, "message": x.message}
                          for x in result.refused]
        out["not_predicted_lines"] = [sent.lines[r] for r in result.unsent]
        if result.stopped:
            out["stopped"] = str(result.stopped)
    out["_result"], out["_sent"] = result, sent
    return out


def _num(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def format_evaluation(ev: dict) -> str:
    from infra.commandline import _table

    rows = ev["rows"]
    which = " (production)" if ev["production"] else ""
    lines = [f"model {ev['model']} v{ev['version']}{which} on {ev['file']}"]
    counts = f"rows: {rows['file']:,} in the file, {rows['scored']:,} scored"
    if rows["without_target"]:
        counts += (f", {rows['without_target']:,} without a target skipped "
                   f"(line{'s' if rows['without_target'] > 1 else ''} {_lines(rows['without_target_lines'])})")
    if rows["refused"]:
        counts += f", {rows['refused']:,} not predicted (see below)"
    lines.append(counts)
    main = ev["metrics"][ev["metric"]]
    head = f"{ev['metric']}  {_num(main.get('value'))}"
    if ev.get("recorded"):
        rec = ev["recorded"]
        on = f", {rec['rows']} rows" if rec.get("rows") else ""
        head += f"   (recorded for v{ev['version']} at training, on its holdout{on}: {_num(rec['value'])})"
    if main.get("error"):
        head += f"   ({main['error']})"
    lines.append(head)
    others = [f"{m} {_num(v.get('value'))}" for m, v in ev["metrics"].items() if m != ev["metric"]]
    if others:
        lines.append("also: " + "  ".join(others))
    if ev.get("unknown_labels"):
        lines.append(f"labels the model does not know (counted as wrong): {', '.join(ev['unknown_labels'])}")
    if "confusion_matrix" in ev:
        cm = ev["confusion_matrix"]
        labels, matrix = cm["labels"], cm["matrix"]
        table_rows = []
        for label, row in zip(labels, matrix):
            total = sum(row)
            i = labels.index(label)
            recall = f"{row[i] / total:.3f}" if total else "-"
            table_rows.append([label, *row, total, recall])
        col_totals = [sum(row[j] for row in matrix) for j in range(len(labels))]
        table_rows.append(["total", *col_totals, sum(col_totals), ""])
        lines += ["", "confusion matrix (rows: true label, columns: predicted)",
                  _table(table_rows, ["true \\ predicted", *map(str, labels), "total", "recall"])]
    if "residuals" in ev:
        res = ev["residuals"]
        names = ["mean", "std", *(n for n, _ in QUANTILES)]
        lines += ["", f"residuals (true - predicted) over {res['rows']:,} rows",
                  _table([[_num(res[n]) for n in names]], names),
                  f"MAE {_num(res['mae'])}  RMSE {_num(res['rmse'])}"]
    return "\n".join(lines)


def run_evaluate(args, api: Api, spec: dict) -> int:
    progress = progress_printer()
    ev = evaluate(api, args.model, Path(args.file), version=args.version, spec=spec, batch_size=args.batch_size,
                  progress=progress)
    result, sent = ev.pop("_result"), ev.pop("_sent")
    if getattr(progress, "tty", False) and result.requests > 1:
        print(file=sys.stderr)
    print(json.dumps(ev, indent=2, default=str) if args.json else format_evaluation(ev))
    report_problems(sent, result)
    return 0 if result.complete else 1
