"""Size budgets and wiring of every Lambda function, on the stack synthesized with the REAL layers.

- Budgets (``infra.layers.SizeBudget``, enforced at synth): inference function + its layers
  ≤ 130 MB unzipped, training function + its layers ≤ 220 MB. The real stack passes with the real
  (built, cached) arm64 layers; an over-budget stack fails synth with a message naming the
  function, each layer with its size, the total and the budget.
- Wiring, generic over every ``AWS::Lambda::Function`` in the template (the pipeline's and drift
  monitor's functions included): the train function gets the training layer only, every other
  function the inference layer only; each function's code asset holds exactly the ``functions/``
  package; and (slow, python3.12) each handler imports with nothing but its own layer, its asset
  and Lambda's runtime packages on ``sys.path`` — the train function also runs the train step's core.

The first run builds the arm64 layers (~40 s cold, cached in ~/.cache/shipyard/layers after).
"""
from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra.layers import BUDGETS, LAMBDA_UNZIPPED_LIMIT, SizeBudget
from infra.stack import build_app
from layers import builder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARCH = builder.DEFAULT_ARCHITECTURE  # the stack's default; one architecture keeps the build short
# Handlers whose function must carry the training layer; every other function gets the inference layer.
TRAINING_HANDLERS = {"functions.pipeline.train.handler"}


class Synth:
    def __init__(self, app, stack, outdir: Path):
        self.app, self.stack, self.outdir = app, stack, outdir
        self.template = json.loads((outdir / stack.template_file).read_text())
        self.resources = self.template["Resources"]

    def functions(self) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == "AWS::Lambda::Function"}

    def layer_names(self) -> dict[str, str]:
        """Logical id of each DependencyLayers layer -> its name (inference/training)."""
        return {self.stack.get_logical_id(layer.node.default_child): name
                for name, layer in self.stack.layers.layers.items()}

    def asset_path(self, code: dict) -> Path:
        key = code["S3Key"]
        assert isinstance(key, str), code
        digest = key.split(".", 1)[0]
        for candidate in (self.outdir / f"asset.{digest}", self.outdir / f"asset.{digest}.zip"):
            if candidate.exists():
                return candidate
        raise AssertionError(f"no staged asset for {key} in {self.outdir}")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Synth:
    """The cdk.json app with the real layers (built or taken from the builder's cache)."""
    outdir = tmp_path_factory.mktemp("cdk.out.real")
    app, stack = build_app(outdir=outdir, build_layers=True, nag=False)
    assembly = app.synth()
    return Synth(app, stack, Path(assembly.directory))


# --------------------------------------------------------------------------- budgets


def test_real_stack_fits_every_budget_with_the_real_layers(real):
    layers = real.stack.layers
    assert not layers.placeholder, "the layers must be really built for this test"
    assert layers.sizes["inference"] > 50e6 and layers.sizes["training"] > 150e6, layers.sizes
    sizes = SizeBudget.of(real.stack).measure()
    assert len(sizes) == len(real.functions())
    report = "\n".join(s.describe() for s in sizes)
    print(report)
    for size in sizes:
        assert size.code_bytes is not None and 0 < size.code_bytes < 5e6, size.describe()
        assert all(b is not None for _n, b in size.layers), size.describe()
        assert size.total <= size.budget <= LAMBDA_UNZIPPED_LIMIT, size.describe()
        expected = "training" if any("(training," in name for name, _b in size.layers) else "inference"
        assert size.role == expected and size.budget == BUDGETS[expected], size.describe()
    assert any(s.role == "inference" for s in sizes)
    if any("/Pipeline/Train" in s.path for s in sizes):
        (train,) = [s for s in sizes if s.path.endswith("/Pipeline/Train")]
        assert train.role == "training" and train.total <= 220_000_000, train.describe()


def _synth_error(app) -> str:
    with pytest.raises(Exception) as caught:
        app.synth()
    return str(caught.value)


_SIZE = r"\d+\.\d MB"


def test_a_function_over_its_budget_fails_synth_naming_function_layers_total_and_budget(tmp_path):
    app, stack = build_app(outdir=tmp_path, build_layers=True, nag=False)
    # A plausible wiring mistake: a function given both layers (~87 + ~217 MB on arm64).
    function = getattr(getattr(stack, "pipeline", None), "train_function", None)
    extra = stack.layers.inference
    if function is None:  # no pipeline in this stack: the inference function given the training layer
        function, extra = stack.inference.function, stack.layers.training
    function.add_layers(extra)
    message = _synth_error(app)
    path = function.node.path
    assert "size budget exceeded" in message, message
    assert re.search(
        rf"{re.escape(path)} \(training function\): function code {_SIZE}"
        rf"( \+ layer {re.escape(stack.node.path)}/Layers/(Inference|Training) "
        rf"\((inference|training), {ARCH}\) {_SIZE}){{2}}"
        rf" = (?P<total>\d+\.\d) MB unzipped, budget 220\.0 MB \(Lambda's limit is 262\.1 MB\)",
        message,
    ), message
    total = float(re.search(r"= (\d+\.\d) MB unzipped", message).group(1))
    assert total > 262.1  # both layers together would not even fit Lambda
    # Only that function is named: the others are within their budgets.
    assert message.count("size budget exceeded") == 1, message


def test_budgets_are_per_role_and_name_the_inference_function(tmp_path):
    app, stack = build_app(outdir=tmp_path, build_layers=True, nag=False)
    SizeBudget.of(stack, {"inference": 50_000_000, "training": 220_000_000})
    message = _synth_error(app)
    path = stack.inference.function.node.path
    assert re.search(
        rf"{re.escape(path)} \(inference function\): function code {_SIZE} \+ layer "
        rf"{re.escape(stack.node.path)}/Layers/Inference \(inference, {ARCH}\) {_SIZE} = {_SIZE} unzipped, "
        r"budget 50\.0 MB", message), message
    assert "(training function)" not in message  # the train function is within 220 MB


# --------------------------------------------------------------------------- wiring


def _handlers(real: Synth) -> dict[str, str]:
    return {lid: r["Properties"]["Handler"] for lid, r in real.functions().items()}


def test_each_function_gets_exactly_the_layer_it_needs(real):
    names = real.layer_names()
    handlers = _handlers(real)
    assert "functions.inference.handler.handler" in handlers.values()
    for logical_id, resource in real.functions().items():
        props = resource["Properties"]
        refs = [ref.get("Ref") if isinstance(ref, dict) else ref for ref in props.get("Layers", [])]
        got = sorted(names.get(ref, f"unknown layer {ref}") for ref in refs)
        expected = ["training"] if props["Handler"] in TRAINING_HANDLERS else ["inference"]
        assert got == expected, f"{logical_id} ({props['Handler']}): layers {got}, expected {expected}"
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == [ARCH], logical_id
    for layer in real.stack.layers.layers.values():
        props = real.resources[real.stack.get_logical_id(layer.node.default_child)]["Properties"]
        assert props["CompatibleArchitectures"] == [ARCH] and props["CompatibleRuntimes"] == ["python3.12"]


def _functions_tree() -> set[str]:
    files = set()
    for path in (ROOT / "functions").rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and "__pycache__" not in rel.parts and not path.name.endswith(".pyc") \
                and not any(part.startswith(".") for part in rel.parts):
            files.add(rel.as_posix())
    return files


def test_every_function_asset_holds_only_the_functions_package(real):
    expected = _functions_tree()
    assert "functions/inference/handler.py" in expected
    for logical_id, resource in real.functions().items():
        props = resource["Properties"]
        asset = real.asset_path(props["Code"])
        assert asset.is_dir(), f"{logical_id}: code asset {asset} is not a staged directory"
        files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}
        assert {f.split("/", 1)[0] for f in files} == {"functions"}, (logical_id, sorted(files)[:20])
        assert files == expected, (logical_id, sorted(files ^ expected))
        module = props["Handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
        assert module in files, f"{logical_id}: handler module {module} missing from its asset"


def test_layer_assets_hold_only_python(real):
    for name, layer in real.stack.layers.layers.items():
        props = real.resources[real.stack.get_logical_id(layer.node.default_child)]["Properties"]
        asset = real.asset_path(props["Content"])
        with zipfile.ZipFile(asset) as archive:
            names = archive.namelist()
        outside = [n for n in names if not n.startswith("python/")]
        assert names and not outside, (name, outside[:5])
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names), name
        assert sum(i.file_size for i in zipfile.ZipFile(asset).infolist()) == real.stack.layers.sizes[name]


def test_each_function_imports_with_only_its_own_layer_on_python312(real, tmp_path):
    """Each handler, from its staged asset, with its layer (the x86_64 build of the same lock:
    this machine cannot run arm64) and Lambda's runtime packages only; the train function also
    runs the train step's core (fit, convert, parity with onnxruntime, baseline)."""
    from tests.unit.test_layers import _lambda_like_path, python312_or_skip

    python = python312_or_skip()
    names = real.layer_names()
    runtime = _lambda_like_path(tmp_path)
    csv_path = tmp_path / "dataset.csv"
    lines = ["x1,x2,colour,y"]
    for i in range(200):
        colour = "rgb"[i % 3]
        lines.append(f"{i % 7 / 3:.3f},{(i * 13) % 11 - 5},{colour},{'ab'[(i % 7 + (colour == 'r') * 3) > 4]}")
    csv_path.write_text("\n".join(lines) + "\n")
    builds = {}
    for logical_id, resource in real.functions().items():
        props = resource["Properties"]
        layer_names = [names[ref["Ref"]] for ref in props.get("Layers", [])]
        paths = []
        for name in layer_names:
            if name not in builds:
                builds[name] = builder.build_layer(name, architecture="x86_64", out_dir=tmp_path / "build",
                                                   log=lambda _m: None)
            paths.append(str(builds[name].path / "python"))
        env = {k: v if isinstance(v, str) else "placeholder"
               for k, v in props.get("Environment", {}).get("Variables", {}).items()}
        module, attr = props["Handler"].rsplit(".", 1)
        code = (
            "import importlib, json, sys\n"
            f"sys.path[:0] = {paths + [str(real.asset_path(props['Code']))]!r}\n"
            f"sys.path.append({str(runtime)!r})\n"
            f"handler = getattr(importlib.import_module({module!r}), {attr!r})\n"
            "assert callable(handler)\n"
            "third = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'scipy', 'skl2onnx', 'onnx', 'onnxruntime', 'numpy', 'pydantic')})\n"
            "print('imported', json.dumps(third))\n"
        )
        if props["Handler"] in TRAINING_HANDLERS:
            spec = {"target": "y", "task": "classification",
                    "estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}}
            code += (
                "from functions.core import training\n"
                f"result = training.train(open({str(csv_path)!r}, 'rb').read(), {spec!r})\n"
                "print('parity', result.parity['passed'], json.dumps(result.parity, default=str))\n"
            )
        result = subprocess.run(
            [python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=600,
            env={**env, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                 "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "POWERTOOLS_TRACE_DISABLED": "true", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, f"{logical_id} ({props['Handler']}) with layers {layer_names}:\n" \
                                       + result.stdout + result.stderr[-3000:]
        assert "imported" in result.stdout
        if props["Handler"] in TRAINING_HANDLERS:
            assert "parity True" in result.stdout, result.stdout
