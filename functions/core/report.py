"""One self-contained HTML report per model: ``reports/<model>/<timestamp>.html`` in the artifacts bucket.

    registry (versions, production alias, quality history) ─┐
    drift/<m>/<newest>.json   (latest drift check)          ├─► render_report ──► reports/<m>/<ts>.html
    models/<m>/v<N>/baseline.json (production's baseline)   │
    quality/<m>/<newest>.json (latest quality check)       ─┘

Written by the drift check (after its JSON report), by the quality check and by ``shipyard report
MODEL``. Sections: header, versions and their gate scores, the latest drift per feature with a
distribution plot per feature (reference vs current), quality over time, the latest quality check's
confusion matrix or residual summary. See docs/reports.md.

The page opens offline: charts are inline SVG rendered here by pygal (pure Python, ~0.6 MB), with
pygal's own script tags, comments and XML namespaces stripped, and no external resource (script,
stylesheet, font, image) referenced. Every user-controlled string is HTML-escaped (pygal builds its
SVG with ElementTree, which escapes text too).

``render_report`` is pure (data in, HTML out). ``current_distributions`` summarises the drift window
per feature on the baseline's bins; the drift check stores it in its JSON report as
``distributions`` so the report can plot reference against current without the captured rows.
numpy + stdlib (+ pygal, imported when a chart is drawn): this module runs in Lambda.
"""
from __future__ import annotations

import html
import json
import logging
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from functions.core.drift import (
    NUMBER,
    STRING,
    DriftInputError,
    _knots,
    _sketch_cdf,
    category_counts,
    numeric_values,
)
from functions.core.layout import DRIFT_PREFIX, QUALITY_PREFIX, REPORTS_PREFIX, models_prefix

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/html; charset=utf-8"
#: Equal-width bins of a numeric feature's plot between the baseline's 0.5 % and 99.5 % quantiles,
#: plus one bin below and one above for the tails.
NUMERIC_BINS = 20
#: Categories plotted per string feature (the rest are pooled as "(other)").
MAX_CATEGORIES = 12
OTHER = "(other)"


# --------------------------------------------------------------------------- distributions


def _numeric_edges(fb: Mapping[str, Any]) -> np.ndarray:
    q = [float(v) for v in fb.get("quantiles") or []]
    lo, hi = (q[1], q[-2]) if len(q) >= 4 else (float(fb.get("min", 0.0)), float(fb.get("max", 0.0)))
    if not hi > lo:
        lo, hi = float(fb.get("min", lo)), float(fb.get("max", hi))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, NUMERIC_BINS + 1)


def _reference_numeric(fb: Mapping[str, Any], edges: np.ndarray) -> list[float]:
    """Shares of the training values below, inside each bin of, and above ``edges`` (sum 1)."""
    if fb.get("values") and fb.get("counts"):  # few distinct values: the exact distribution
        values = np.asarray(fb["values"], dtype=float)
        counts = np.asarray(fb["counts"], dtype=float)
        cdf = np.array([counts[values <= e].sum() for e in edges]) / counts.sum()
        below = counts[values < edges[0]].sum() / counts.sum()
    else:
        p, q = _knots(fb["quantiles"], fb.get("tail_quantiles"))
        cdf = _sketch_cdf(p, q, edges, left=False)
        below = float(_sketch_cdf(p, q, edges[:1], left=True)[0])
    inner = np.diff(cdf)
    # The first bin includes its left edge: values equal to edges[0] belong to it.
    first = cdf[0] - below
    shares = [float(below), float(inner[0] + first), *(float(v) for v in inner[1:]), float(1.0 - cdf[-1])]
    return [max(0.0, s) for s in shares]


def _current_numeric(column: Any, edges: np.ndarray, name: str) -> tuple[list[float], int]:
    x, _ = numeric_values(column, name)
    if not x.size:
        return [0.0] * (len(edges) + 1), 0
    below = int(np.sum(x < edges[0]))
    above = int(np.sum(x > edges[-1]))
    inside = np.histogram(x[(x >= edges[0]) & (x <= edges[-1])], bins=edges)[0]
    counts = [below, *(int(c) for c in inside), above]
    return [c / x.size for c in counts], int(x.size)


def _categories(ref: Mapping[str, int], cur: Mapping[str, int]) -> list[str]:
    """Most frequent training categories, then unseen current ones, at most MAX_CATEGORIES."""
    names = sorted(ref, key=lambda c: (-ref[c], c))[:MAX_CATEGORIES]
    unseen = sorted((c for c in cur if c not in ref), key=lambda c: (-cur[c], c))
    room = max(0, MAX_CATEGORIES - len(names))
    return names + unseen[:max(room, min(3, len(unseen)))]


def _shares(counts: Mapping[str, int], names: Sequence[str]) -> list[float]:
    total = float(sum(counts.values()))
    if not total:
        return [0.0] * (len(names) + 1)
    shown = [counts.get(c, 0) / total for c in names]
    return [*shown, max(0.0, 1.0 - sum(shown))]


def reference_distribution(fb: Mapping[str, Any],
                           current: Mapping[str, int] | None = None) -> dict[str, Any] | None:
    """The plot data of one baseline feature without a current window (``current`` for categories)."""
    try:
        if fb.get("type") == NUMBER:
            if not fb.get("count"):
                return None
            edges = _numeric_edges(fb)
            return {"type": NUMBER, "edges": [float(e) for e in edges],
                    "reference": _reference_numeric(fb, edges), "current": None, "current_count": None}
        if fb.get("type") == STRING:
            ref = {str(k): int(v) for k, v in (fb.get("categories") or {}).items()}
            if not ref:
                return None
            names = _categories(ref, current or {})
            return {"type": STRING, "categories": names + [OTHER], "reference": _shares(ref, names),
                    "current": None, "current_count": None}
    except (DriftInputError, KeyError, TypeError, ValueError) as err:
        logger.warning("baseline feature cannot be plotted: %s", err)
    return None


def current_distributions(baseline: Mapping[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    """Per baseline feature: reference and current shares on the same bins (or categories).

    Numeric: ``{"type": "number", "edges": [21 floats], "reference": [22 shares], "current": [22
    shares], "current_count"}`` where the first share is below ``edges[0]`` and the last above
    ``edges[-1]``. String: ``{"type": "string", "categories": [..., "(other)"], "reference",
    "current", "current_count"}``. Features that cannot be plotted are left out.
    """
    out: dict[str, Any] = {}
    for name, fb in (baseline.get("features") or {}).items():
        if name not in columns:
            continue
        try:
            if fb.get("type") == NUMBER:
                dist = reference_distribution(fb)
                if dist is None:
                    continue
                dist["current"], dist["current_count"] = _current_numeric(columns[name], np.asarray(dist["edges"]),
                                                                          name)
            elif fb.get("type") == STRING:
                counts, _ = category_counts(columns[name], name)
                dist = reference_distribution(fb, counts)
                if dist is None:
                    continue
                dist["current"] = _shares(counts, dist["categories"][:-1])
                dist["current_count"] = int(sum(counts.values()))
            else:
                continue
        except (DriftInputError, KeyError, TypeError, ValueError) as err:
            logger.warning("feature %r: no distribution for the report: %s", name, err)
            continue
        out[name] = dist
    return out


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "–"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return _e(value)
        return f"{value:.{digits}g}"
    return _e(value)


def _edge_label(x: float) -> str:
    return f"{x:.4g}"


_SCRIPT = re.compile(r"<script\b.*?</script>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def _svg(chart) -> str:
    """A pygal chart as inline SVG with no script, comment or namespace URL left in it."""
    out = chart.render(is_unicode=True)
    out = _SCRIPT.sub("", out)
    out = _COMMENT.sub("", out)
    return _XMLNS.sub("", out)


def _config(**kw):
    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", foreground="#333", foreground_strong="#111",
                  foreground_subtle="#888", colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"),
                  font_family="sans-serif", label_font_size=11, major_label_font_size=11,
                  legend_font_size=12, title_font_size=14, value_font_size=10, tooltip_font_size=11)
    config = pygal.Config(js=[], css=["file://style.css", "file://graph.css"], style=style,
                          disable_xml_declaration=True, no_prefix=False, explicit_size=True,
                          **{"legend_at_bottom": True, "legend_at_bottom_columns": 3, "print_values": False,
                             "show_x_guides": False, "truncate_legend": 40, "truncate_label": 24, **kw})
    return pygal, config


def distribution_svg(name: str, dist: Mapping[str, Any]) -> str:
    """Reference (training) against current (captured) shares of one feature, as a bar chart."""
    if dist.get("type") == NUMBER:
        edges = list(dist["edges"])
        labels = [f"< {_edge_label(edges[0])}"] + [
            f"{_edge_label(a)}–{_edge_label(b)}" for a, b in zip(edges[:-1], edges[1:])] + [
            f"> {_edge_label(edges[-1])}"]
    else:
        labels = [str(c) for c in dist["categories"]]
    pygal, config = _config(width=560, height=300, x_label_rotation=35 if dist.get("type") == NUMBER else 20,
                            show_minor_x_labels=dist.get("type") != NUMBER, x_labels_major_every=3,
                            y_title="share of rows", value_formatter=lambda v: f"{v:.1%}")
    chart = pygal.Bar(config, title=f"{name}: reference vs current")
    chart.x_labels = labels
    chart.add("reference (training)", [round(float(v), 5) for v in dist["reference"]])
    if dist.get("current") is not None:
        chart.add(f"current ({dist.get('current_count')} rows)", [round(float(v), 5) for v in dist["current"]])
    return _svg(chart)


# --------------------------------------------------------------------------- sections


def _metric_of(record: Mapping[str, Any]) -> tuple[str | None, Any, Any, Any]:
    """(gate metric, candidate score, production version at validation, its score) of a version."""
    metrics = record.get("metrics") or {}
    validation = metrics.get("validation") or {}
    checks = validation.get("checks") or {}
    metric = checks.get("metric")
    if not metric:
        for name in ("accuracy", "f1", "roc_auc", "r2", "rmse", "mae"):
            if name in metrics:
                metric = name
                break
    score = validation.get("candidate_score")
    if score is None and metric:
        score = metrics.get(metric)
    return metric, score, validation.get("production_version"), validation.get("production_score")


def _versions_section(versions: Sequence[Mapping[str, Any]], production: Any) -> str:
    out = ['<section id="versions"><h2>Versions</h2>']
    if not versions:
        return out[0] + '<p class="empty">no versions yet: upload a dataset to train one</p></section>'
    rows = []
    for v in sorted(versions, key=lambda r: -int(r.get("version") or 0)):
        metric, score, prod_v, prod_score = _metric_of(v)
        at_validation = "–" if prod_v is None else f"v{_e(prod_v)}: {_num(prod_score)}"
        cls = ' class="production"' if production is not None and str(v.get("version")) == str(production) else ""
        rows.append(f"<tr{cls}><td>v{_e(v.get('version'))}</td><td>{_e(v.get('status'))}</td>"
                    f"<td>{_e(metric or '–')}</td><td class=num>{_num(score)}</td><td>{at_validation}</td>"
                    f"<td>{_e(v.get('created_at') or '–')}</td><td class=reason>{_e(v.get('reason') or '')}</td></tr>")
    out.append("<table><thead><tr><th>version</th><th>status</th><th>gate metric</th><th>score</th>"
               "<th>production at validation</th><th>created</th><th>reason</th></tr></thead><tbody>"
               + "".join(rows) + "</tbody></table></section>")
    return "".join(out)


def _drift_section(drift: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> str:
    head = '<section id="drift"><h2>Latest drift check</h2>'
    if not drift:
        return head + '<p class="empty">no drift check yet</p></section>'
    verdict = ("DRIFT DETECTED" if drift.get("drift_detected") else
               "skipped" if drift.get("skipped") else "no drift")
    out = [head, f'<p class="verdict {"bad" if drift.get("drift_detected") else "ok"}"><b>{_e(verdict)}</b> '
                 f'at {_e(drift.get("checked_at"))} on version v{_e(drift.get("version"))}: '
                 f'{_e(drift.get("rows"))} rows checked, drifted share {_num(drift.get("drifted_share"), 3)} '
                 f'(alarm at ≥ {_num(drift.get("share"), 3)}). Report: <code>{_e(drift.get("report_key"))}</code></p>']
    if drift.get("skipped"):
        out.append(f'<p class="empty">{_e(drift.get("reason") or "the check was skipped")}</p>')
    features = drift.get("features") or {}
    if features:
        rows = []
        for name, f in sorted(features.items(), key=lambda kv: (not kv[1].get("drifted"), kv[0])):
            rows.append(f"<tr class=\"{'drifted' if f.get('drifted') else ''}\"><td>{_e(name)}</td>"
                        f"<td>{_e(f.get('type'))}</td><td>{_e(f.get('statistic'))}</td>"
                        f"<td class=num>{_num(f.get('value'))}</td><td class=num>{_num(f.get('threshold'))}</td>"
                        f"<td>{'DRIFTED' if f.get('drifted') else 'ok'}</td>"
                        f"<td class=reason>{_e(f.get('reason') or '')}</td></tr>")
        out.append("<table><thead><tr><th>feature</th><th>type</th><th>statistic</th><th>score</th>"
                   "<th>threshold</th><th>drift</th><th>note</th></tr></thead><tbody>" + "".join(rows)
                   + "</tbody></table>")
    dists = dict(drift.get("distributions") or {})
    names = list(features) or list((baseline or {}).get("features") or {})
    plots = []
    for name in names:
        dist = dists.get(name)
        if dist is None and baseline and name in (baseline.get("features") or {}):
            dist = reference_distribution(baseline["features"][name])
        if dist is None:
            plots.append(f'<figure><figcaption>{_e(name)}</figcaption>'
                         f'<p class="empty">no distribution to plot</p></figure>')
            continue
        note = "" if dist.get("current") is not None else \
            '<p class="empty">current distribution not recorded by this check: reference only</p>'
        try:
            svg = distribution_svg(name, dist)
        except Exception as err:  # noqa: BLE001 - one bad feature must not cost the whole report
            logger.warning("feature %r: plot failed: %s", name, err)
            svg = '<p class="empty">plot failed</p>'
        plots.append(f'<figure><figcaption>{_e(name)}</figcaption>{svg}{note}</figure>')
    if plots:
        out.append('<h3>Distributions (reference = training baseline, current = checked window)</h3>'
                   '<div class="grid">' + "".join(plots) + "</div>")
    out.append("</section>")
    return "".join(out)


def _labelled(q: Mapping[str, Any]) -> Any:
    if q.get("labelled") is not None:
        return q.get("labelled")
    versions = q.get("versions") or {}
    entry = versions.get(str(q.get("version"))) if isinstance(versions, Mapping) else None
    if entry and entry.get("labelled") is not None:
        return entry["labelled"]
    return (q.get("labels") or {}).get("matched")


def _quality_chart(checks: Sequence[Mapping[str, Any]]) -> str:
    chron = list(reversed(checks))
    metric = next((q.get("metric") for q in checks if q.get("metric")), "score")
    min_score = next((q.get("min_score") for q in checks if q.get("min_score") is not None), None)
    pygal, config = _config(width=900, height=320, x_label_rotation=20, show_minor_x_labels=len(chron) <= 12,
                            x_labels_major_count=8, dots_size=3)
    chart = pygal.Line(config, title=f"production {metric} per quality check")
    chart.x_labels = [str(q.get("checked_at") or "?")[:16] for q in chron]

    def val(x):
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
    chart.add(f"{metric} (production)", [val(q.get("score")) for q in chron])
    if min_score is not None:
        chart.add(f"min_score {min_score:g}", [val(min_score)] * len(chron), show_dots=False,
                  stroke_style={"dasharray": "6,4"})
    chart.add("labelled rows", [val(_labelled(q)) for q in chron], secondary=True)
    return _svg(chart)


def _confusion_table(cm: Mapping[str, Any]) -> str:
    labels = [str(x) for x in cm.get("labels") or []]
    matrix = cm.get("matrix") or []
    if not labels or not matrix:
        return '<p class="empty">empty confusion matrix</p>'
    out = ['<table class="confusion"><thead><tr><th>actual \\ predicted</th>']
    out += [f"<th>{_e(lab)}</th>" for lab in labels]
    out.append("</tr></thead><tbody>")
    for label, row in zip(labels, matrix):
        total = sum(v for v in row if isinstance(v, (int, float))) or 1
        out.append(f"<tr><th>{_e(label)}</th>")
        for j, v in enumerate(row):
            share = (v or 0) / total
            color = "44,160,44" if labels[j] == label else "214,39,40"
            fg = "#fff" if share > 0.6 else "#111"
            out.append(f'<td class=num style="background:rgba({color},{share:.2f});color:{fg}">{_num(v)}</td>')
        out.append("</tr>")
    out.append("</tbody></table><p class=note>rows: true label, columns: prediction; shade: share of the row "
               "(green: right, red: wrong)</p>")
    return "".join(out)


def _residual_svg(res: Mapping[str, Any]) -> str:
    keys = [k for k in ("mean", "mae", "rmse", "p50", "p90", "p99") if isinstance(res.get(k), (int, float))]
    pygal, config = _config(width=620, height=280, print_values=True, value_formatter=lambda v: f"{v:.4g}")
    chart = pygal.Bar(config, title=f"residuals of {res.get('count', '?')} labelled rows")
    chart.x_labels = keys
    chart.add("residual statistic", [float(res[k]) for k in keys])
    return _svg(chart)


def _quality_section(quality: Sequence[Mapping[str, Any]] | None, production: Any) -> str:
    head = '<section id="quality"><h2>Quality over time</h2>'
    checks = [q for q in (quality or []) if isinstance(q, Mapping)]
    if not checks:
        return (head + '<p class="empty">no quality checks yet</p></section>'
                '<section id="confusion"><h2>Latest quality check</h2><p class="empty">no quality checks yet</p>'
                "</section>")
    latest = checks[0]
    out = [head]
    scored = [q for q in checks if isinstance(q.get("score"), (int, float))]
    if scored:
        try:
            out.append(_quality_chart(checks))
        except Exception as err:  # noqa: BLE001
            logger.warning("quality chart failed: %s", err)
            out.append('<p class="empty">quality chart failed</p>')
    else:
        out.append('<p class="empty">no scored quality check yet (not enough labels)</p>')
    rows = []
    for q in checks[:20]:
        state = "skipped" if q.get("skipped") else "DEGRADED" if q.get("degraded") else "ok"
        rows.append(f"<tr class=\"{'drifted' if q.get('degraded') else ''}\"><td>{_e(q.get('checked_at'))}</td>"
                    f"<td>v{_e(q.get('version'))}</td><td>{_e(q.get('metric'))}</td>"
                    f"<td class=num>{_num(q.get('score'))}</td><td class=num>{_num(q.get('min_score'))}</td>"
                    f"<td class=num>{_num(_labelled(q))}</td><td class=num>{_num(q.get('coverage'), 3)}</td>"
                    f"<td>{state}</td><td class=reason>{_e(q.get('reason') or '')}</td></tr>")
    out.append("<table><thead><tr><th>checked</th><th>version</th><th>metric</th><th>score</th><th>min_score</th>"
               "<th>labelled</th><th>coverage</th><th>state</th><th>reason</th></tr></thead><tbody>"
               + "".join(rows) + "</tbody></table></section>")
    out.append(f'<section id="confusion"><h2>Latest quality check ({_e(latest.get("checked_at"))})</h2>')
    versions = latest.get("versions") if isinstance(latest.get("versions"), Mapping) else {}
    wanted = [str(v) for v in (latest.get("version"), production) if v is not None]
    entry_v = next((v for v in wanted if v in versions), next(iter(versions), None))
    entry = versions.get(entry_v) if entry_v is not None else None
    if not entry:
        out.append('<p class="empty">the latest quality check holds no per-version results</p></section>')
        return "".join(out)
    out.append(f"<p>version v{_e(entry_v)}: {_num(entry.get('labelled'))} labelled rows, "
               f"{_e(latest.get('metric'))} {_num(entry.get('score'))}</p>")
    if isinstance(entry.get("confusion_matrix"), Mapping):
        out.append("<h3>Confusion matrix</h3>" + _confusion_table(entry["confusion_matrix"]))
    elif isinstance(entry.get("residuals"), Mapping):
        res = entry["residuals"]
        out.append("<h3>Residuals</h3>")
        try:
            out.append(_residual_svg(res))
        except Exception as err:  # noqa: BLE001
            logger.warning("residual chart failed: %s", err)
        out.append("<table><tbody>" + "".join(
            f"<tr><th>{_e(k)}</th><td class=num>{_num(res.get(k))}</td></tr>"
            for k in ("count", "mean", "mae", "rmse", "p50", "p90", "p99")) + "</tbody></table>")
    else:
        out.append('<p class="empty">no confusion matrix or residuals in the latest quality check</p>')
    out.append("</section>")
    return "".join(out)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:#222;
background:#f6f7f9}
header{background:#232f3e;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:24px}
header p{margin:2px 0;color:#d5dbe3}main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:19px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #dde1e6;padding:4px 8px;
text-align:left;vertical-align:top}thead th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.reason{max-width:420px;color:#555}tr.production td{background:#e8f4ea;font-weight:600}
tr.drifted td{background:#fdecea}.empty{color:#777;font-style:italic}.verdict.bad b{color:#c62828}
.verdict.ok b{color:#2e7d32}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #eee;padding:6px}figcaption{font-weight:600;font-size:13px}
svg{max-width:100%;height:auto}table.confusion td{min-width:56px;text-align:center}.note{font-size:12px;color:#666}
code{font-size:12px}
"""


def render_report(model: str, *, versions: Sequence[Mapping[str, Any]], production: Any,
                  drift: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None,
                  quality: Sequence[Mapping[str, Any]] | None, generated_at: datetime | str) -> str:
    """The report of *model* as one self-contained HTML page (pure: data in, HTML out).

    ``versions``: registry version records; ``production``: the production version number or None;
    ``drift``: the latest drift report JSON or None; ``baseline``: the production version's
    baseline.json or None; ``quality``: quality summaries/JSONs, newest first (the first may be the
    full JSON with ``versions``); ``generated_at``: datetime or ISO string.
    """
    when = generated_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") \
        if isinstance(generated_at, datetime) else str(generated_at)
    prod = "none yet" if production is None else f"v{production}"
    body = [
        f"<header><h1>Shipyard report: {_e(model)}</h1>",
        f'<p>production version: <b id="production">{_e(prod)}</b> · generated {_e(when)}</p></header><main>',
        _versions_section(versions or [], production),
        _drift_section(drift, baseline),
        _quality_section(quality, production),
        "</main>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Shipyard report: {_e(model)} ({_e(when)})</title><style>{_CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


# --------------------------------------------------------------------------- gathering and writing


def report_key(model: str, now: datetime) -> str:
    """``reports/<model>/<UTC timestamp>.html``; lexical order is time order (as drift reports)."""
    now = now.astimezone(UTC)
    return f"{REPORTS_PREFIX}{model}/{now:%Y-%m-%dT%H-%M-%S}.{now.microsecond // 1000:03d}Z.html"


def _newest_key(s3, bucket: str, prefix: str, suffix: str) -> str | None:
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(suffix) and (newest is None or obj["Key"] > newest):
                newest = obj["Key"]
    return newest


def _read_json(s3, bucket: str, key: str, what: str) -> Any:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as err:  # noqa: BLE001 - a missing part of the report is shown as missing
        logger.warning("report: cannot read %s s3://%s/%s: %s", what, bucket, key, err)
        return None


def _newest_json(s3, bucket: str, prefix: str, what: str) -> Any:
    try:
        key = _newest_key(s3, bucket, prefix, ".json")
    except Exception as err:  # noqa: BLE001
        logger.warning("report: cannot list s3://%s/%s: %s", bucket, prefix, err)
        return None
    return None if key is None else _read_json(s3, bucket, key, what)


def _baseline_key(model: str, version: int, record: Mapping[str, Any] | None) -> str:
    record = record or {}
    arts = ((record.get("lineage") or {}).get("artifacts") or {}).get("baseline.json") or {}
    if arts.get("key"):
        return str(arts["key"])
    if record.get("artifact_key"):
        return posixpath.join(posixpath.dirname(str(record["artifact_key"])), "baseline.json")
    return models_prefix(model, version) + "baseline.json"


def gather(s3, bucket: str, registry, model: str) -> dict[str, Any]:
    """What :func:`render_report` needs, from the registry and the artifacts bucket.

    Raises the registry's ``ModelNotFound`` for an unknown model; every other missing or unreadable
    part becomes an empty section.
    """
    production = registry.get_model(model)["aliases"].get("production")
    versions = registry.list_versions(model)
    baseline = None
    if production is not None:
        record = next((v for v in versions if str(v.get("version")) == str(production)), None)
        baseline = _read_json(s3, bucket, _baseline_key(model, int(production), record), "baseline")
    drift = _newest_json(s3, bucket, f"{DRIFT_PREFIX}{model}/", "drift report")
    history_of = getattr(registry, "quality_history", None)
    quality: list[dict] = []
    if callable(history_of):
        try:
            quality = list(history_of(model) or [])
        except Exception as err:  # noqa: BLE001
            logger.warning("report: cannot read the quality history of %r: %s", model, err)
    latest = _newest_json(s3, bucket, f"{QUALITY_PREFIX}{model}/", "quality check")
    if isinstance(latest, dict):
        if quality and quality[0].get("checked_at") == latest.get("checked_at"):
            quality[0] = {**quality[0], **latest}
        elif not quality or str(latest.get("checked_at") or "") > str(quality[0].get("checked_at") or ""):
            quality.insert(0, latest)
    return {"versions": versions, "production": production, "drift": drift, "baseline": baseline,
            "quality": quality}


def write_report(s3, bucket: str, registry, model: str, *, now: datetime | None = None) -> str:
    """Gather, render and put ``reports/<model>/<timestamp>.html`` (text/html); returns the key.

    The signature is stable: the drift check, the quality check and ``shipyard report`` call it.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    data = gather(s3, bucket, registry, model)
    page = render_report(model, generated_at=now, **data)
    key = report_key(model, now)
    s3.put_object(Bucket=bucket, Key=key, Body=page.encode("utf-8"), ContentType=CONTENT_TYPE)
    return key
