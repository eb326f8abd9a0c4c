"""Generate ``infra/estimator_params.json``: each supported estimator's constructor parameters.

``infra.config`` checks a model's ``params`` at synth against this catalogue, without importing
scikit-learn (the CDK app must not need the training stack). The catalogue is generated from the
installed scikit-learn — each estimator's ``__init__`` signature and its
``_parameter_constraints`` (what scikit-learn's own ``set_params``/``fit`` validation enforces) —
translated into the forms a JSON value can take:

``null``; ``bool``; ``int`` / ``number`` (int or float) / ``float`` (a float, not an int:
scikit-learn's ``RealNotInt``, where ``1`` and ``1.0`` mean different things) with ``closed``
(``left``, ``right``, ``both``, ``neither``: which ends are included) and optional ``min`` /
``max`` (a missing one is infinite, and ``closed`` says whether infinity itself is taken);
``string`` (any, or one of ``options``); ``values`` (a fixed set of
numbers, non-finite ones written as ``"inf"``/``"-inf"``); ``array``; ``object``; ``any`` (no
constraint). Forms a JSON config cannot express (an estimator object, a kernel, a callable, a
``RandomState``) are listed as ``objects``, by description, so the error can say so.

Regenerate after a scikit-learn upgrade (``tests/infra/test_config.py`` fails until you do)::

    .venv/bin/python -m infra.estimator_params          # rewrites infra/estimator_params.json
"""
from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
from pathlib import Path

CATALOGUE = Path(__file__).resolve().with_name("estimator_params.json")
REGENERATE = "python -m infra.estimator_params"


def _number(value):
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def _value(value):
    from numbers import Integral

    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, Integral):
        return int(value)
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return number


def _forms(constraint) -> tuple[list[dict], list[str]]:
    """(JSON forms, descriptions of Python-only forms) of one scikit-learn constraint."""
    from numbers import Integral, Real

    import numpy as np
    from sklearn.utils import _param_validation as pv

    c = pv.make_constraint(constraint)
    if isinstance(c, pv._NoneConstraint):
        return [{"type": "null"}], []
    if isinstance(c, pv._Booleans):
        return [{"type": "bool"}], []
    if isinstance(c, pv.Interval):
        kind = ("float" if c.type is pv.RealNotInt else "int" if c.type is Integral else "number")
        form = {"type": kind}
        lo, hi = _number(c.left), _number(c.right)
        if lo is not None:
            form["min"] = lo
        if hi is not None:
            form["max"] = hi
        form["closed"] = c.closed  # also says whether an unbounded side takes +-inf
        return [form], []
    if isinstance(c, pv.StrOptions):
        return [{"type": "string", "options": sorted(c.options)}], []
    if isinstance(c, pv.Options):
        return [{"type": "values", "values": sorted((_value(v) for v in c.options), key=str)}], []
    if isinstance(c, pv._VerboseHelper):
        return [{"type": "int", "min": 0, "closed": "left"}, {"type": "bool"}], []
    if isinstance(c, pv._RandomStates):
        return ([{"type": "int", "min": 0, "max": 2**32 - 1, "closed": "both"}, {"type": "null"}],
                ["a numpy RandomState"])
    if isinstance(c, pv._CVObjects):
        return ([{"type": "int", "min": 2, "closed": "left"}, {"type": "null"}],
                ["a cross-validation splitter or an iterable of splits"])
    if isinstance(c, (pv._ArrayLikes, pv._IterablesNotString)):
        return [{"type": "array"}], []
    if isinstance(c, pv._NanConstraint):
        return [{"type": "values", "values": ["nan"]}], []
    if isinstance(c, pv._InstancesOf):
        t = c.type
        if t is bool:
            return [{"type": "bool"}], []
        if t in (int, Integral):
            return [{"type": "int"}], []
        if t in (float, Real):
            return [{"type": "number"}], []
        if t is str:
            return [{"type": "string"}], []
        if t is list:
            return [{"type": "array"}], []
        if t is np.ndarray:  # an instance check: a JSON list is not an ndarray
            return [], ["a numpy array"]
        if t is dict:
            return [{"type": "object"}], []
        return [], [f"a {t.__name__}" if t is tuple else f"a {t.__name__} object"]
    if isinstance(c, pv.HasMethods):
        return [], [f"an estimator object (with {', '.join(c.methods)})"]
    if isinstance(c, pv._Callables):
        return [], ["a callable"]
    if isinstance(c, pv._SparseMatrices):
        return [], ["a sparse matrix"]
    raise ValueError(f"no JSON form known for scikit-learn constraint {c!r}; extend _forms()")


def describe_estimator(path: str) -> dict[str, dict]:
    """``{param: {"accepts": [...], "objects": [...]}}`` for the estimator at dotted ``path``,
    in signature order (``{"accepts": [{"type": "any"}]}`` for an unconstrained parameter)."""
    module, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    constraints = getattr(cls, "_parameter_constraints", {})
    out: dict[str, dict] = {}
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        rules = constraints.get(param.name, "no_validation")
        if rules == "no_validation":
            out[param.name] = {"accepts": [{"type": "any"}]}
            continue
        accepts: list[dict] = []
        objects: list[str] = []
        for rule in rules:
            forms, python_only = _forms(rule)
            accepts += [f for f in forms if f not in accepts]
            objects += [o for o in python_only if o not in objects]
        entry = {"accepts": accepts}
        if objects:
            entry["objects"] = objects
        out[param.name] = entry
    return out


def generate() -> dict:
    """The catalogue for every estimator in ``infra.config``'s CLASSIFIERS and REGRESSORS."""
    import sklearn

    from infra.config import CLASSIFIERS, REGRESSORS

    return {
        "scikit-learn": sklearn.__version__,
        "regenerate": REGENERATE,
        "estimators": {path: describe_estimator(path) for path in sorted(CLASSIFIERS | REGRESSORS)},
    }


def dumps(catalogue: dict) -> str:
    """One line per parameter: diffs stay readable when scikit-learn changes a signature."""
    lines = ["{",
             f'  "scikit-learn": {json.dumps(catalogue["scikit-learn"])},',
             f'  "regenerate": {json.dumps(catalogue["regenerate"])},',
             '  "estimators": {']
    estimators = list(catalogue["estimators"].items())
    for i, (path, params) in enumerate(estimators):
        lines.append(f"    {json.dumps(path)}: {{")
        items = list(params.items())
        for j, (name, entry) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"      {json.dumps(name)}: {json.dumps(entry, allow_nan=False)}{comma}")
        lines.append("    }" + ("," if i < len(estimators) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    text = dumps(generate())
    CATALOGUE.write_text(text, encoding="utf-8")
    print(f"wrote {CATALOGUE} ({len(json.loads(text)['estimators'])} estimators)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
