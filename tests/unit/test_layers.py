"""Dependency layers: lock files, trimming, strip safety, caching, the construct, and (slow) real
builds imported by a CPython 3.12 that sees nothing but the layer and Lambda's runtime packages."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest

from layers import builder

ROOT = Path(__file__).resolve().parents[2]
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
# Packages with compiled code: the lock must carry an x86_64 and an aarch64 wheel hash.
BINARY = {"numpy", "onnxruntime", "protobuf", "wrapt", "scipy", "scikit-learn", "onnx", "ml-dtypes"}


def _runs_python312(candidate: str) -> bool:
    """Whether `candidate` runs as CPython 3.12 (a pyenv shim is on PATH even when it cannot run 3.12)."""
    try:
        proc = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "3.12"


def _python312() -> str | None:
    """A CPython 3.12 that runs: a `python3.12` on PATH, else the newest 3.12.x in pyenv's versions directory."""
    candidates = [str(Path(d) / "python3.12") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if versions.is_dir():
        def version_key(p: Path) -> tuple:
            return tuple(int(x) if x.isdigit() else -1 for x in p.parents[1].name.split("."))

        candidates += [str(p) for p in sorted(versions.glob("3.12*/bin/python3.12"), key=version_key, reverse=True)]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and _runs_python312(candidate):
            return candidate
    return None


def python312_or_skip() -> str:
    """`_python312()`, or skip the test; on CI (CI=true) a missing 3.12 fails instead, so the check cannot vanish."""
    python = _python312()
    if python is None:
        message = "no python3.12 on PATH or in pyenv's versions to import the layers with"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{message} (CI is set: this check must run there)")
        pytest.skip(message)
    return python


def _fake_python(path: Path, works: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 3.12\n" if works
                    else "#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    path.chmod(0o755)
    return path


def test_python312_is_found_on_path_or_in_any_pyenv_version(tmp_path, monkeypatch):
    _fake_python(tmp_path / "shims" / "python3.12", works=False)  # a pyenv shim with no 3.12 selected
    monkeypatch.setenv("PATH", str(tmp_path / "shims"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    _fake_python(tmp_path / "pyenv" / "versions" / "3.12.4" / "bin" / "python3.12")
    newest = _fake_python(tmp_path / "pyenv" / "versions" / "3.12.10" / "bin" / "python3.12")
    _fake_python(tmp_path / "pyenv" / "versions" / "3.13.0" / "bin" / "python3.13")
    assert _python312() == str(newest)
    on_path = _fake_python(tmp_path / "bin" / "python3.12")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "shims"), str(tmp_path / "bin")]))
    assert _python312() == str(on_path)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_python312_fails_on_ci_and_skips_elsewhere(tmp_path, monkeypatch, ci, outcome):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        python312_or_skip()


# --------------------------------------------------------------------------- requirement files


@pytest.mark.parametrize("name", builder.LAYERS)
def test_lock_is_fully_pinned_with_hashes_for_both_architectures(name):
    locked = builder.parse_requirements((ROOT / "layers" / f"{name}.txt").read_text())
    assert locked, f"{name}.txt is empty"
    for req in locked:
        assert req.version, f"{name}.txt: {req.line} is not pinned with =="
        assert req.hashes and all(SHA256.match(h) for h in req.hashes), req
        assert req.name not in builder.RUNTIME_PROVIDED, f"{req.name} is in the Lambda runtime"
        if req.name in BINARY:
            assert len(req.hashes) >= 2, f"{req.name}: one wheel hash per architecture expected"
    names = [r.name for r in locked]
    assert len(names) == len(set(names)), "a package is listed twice"


@pytest.mark.parametrize("name", builder.LAYERS)
def test_every_top_level_requirement_is_in_the_lock_at_its_pin(name):
    top = builder.parse_requirements((ROOT / "layers" / f"{name}.in").read_text())
    locked = {r.name: r for r in builder.parse_requirements((ROOT / "layers" / f"{name}.txt").read_text())}
    for req in top:
        assert req.version, f"{name}.in: {req.line} is not pinned"
        assert req.name in locked, f"{req.name} missing from {name}.txt"
        assert locked[req.name].version == req.version, req.name
        assert set(req.extras) <= set(locked[req.name].extras), req.name


def test_layer_pins_mirror_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = {}
    for spec in extras["runtime"] + extras["training"]:
        for req in builder.parse_requirements(spec):
            pins[req.name] = req.version
    inference = {r.name: r.version for r in builder.parse_requirements((ROOT / "layers/inference.in").read_text())}
    training = {r.name: r.version for r in builder.parse_requirements((ROOT / "layers/training.in").read_text())}
    for runtime_req in builder.parse_requirements("\n".join(extras["runtime"])):
        assert inference[runtime_req.name] == runtime_req.version, runtime_req.name
    for name, version in training.items():
        if name in pins:
            assert version == pins[name], f"training.in pins {name}=={version}, pyproject {pins[name]}"
    for training_req in builder.parse_requirements("\n".join(extras["training"])):
        assert training_req.name in training, training_req.name


def test_parse_requirements_handles_continuations_comments_and_rejects_options():
    text = ("a==1.0 \\\n    --hash=sha256:" + "0" * 64 + " \\\n    --hash=sha256:" + "1" * 64
            + "\n    # via b\nB_c[x,Y]>=2  # note\n")
    a, b = builder.parse_requirements(text)
    assert (a.name, a.version, len(a.hashes)) == ("a", "1.0", 2)
    assert (b.name, b.version, b.extras) == ("b-c", None, ("x", "y"))
    with pytest.raises(ValueError):
        builder.parse_requirements("--index-url https://example.invalid/simple\n")


# --------------------------------------------------------------------------- trimming


def _touch(root: Path, rel: str, data: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_trim_removes_what_lambda_never_uses_and_never_touches_libs_or_f2py(tmp_path):
    site = tmp_path / "python"
    removed = [
        "pkg/tests/test_a.py", "pkg/sub/test/test_b.py", "pkg/__pycache__/m.cpython-311.pyc",
        "pkg/m.pyi", "pkg/_c.pxd", "pkg/_c.pyx", "pkg/_c.pxi", "pkg/src/ext.c", "pkg/include/api.h",
        "pkg/src/ext.cpp", "bin/f2py", "pkg/stale.pyc",
    ]
    kept = [
        "pkg/__init__.py", "pkg/_c.cpython-312-x86_64-linux-gnu.so", "pkg/testing/__init__.py",
        "pkg/data/model.json", "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/RECORD",
        # *.libs: vendored shared libraries, whatever they look like
        "numpy.libs/libscipy_openblas64_-abc.so", "scipy.libs/tests/keep.h", "pkg.libs/__pycache__/x.pyc",
        # numpy/f2py: package data numpy reads, tests and C sources included
        "numpy/f2py/__init__.py", "numpy/f2py/tests/test_f2py.py", "numpy/f2py/src/fortranobject.c",
        "numpy/f2py/src/fortranobject.h",
    ]
    for rel in removed + kept:
        _touch(site, rel, b"12345")
    report = builder.trim(site)
    for rel in removed:
        assert not (site / rel).exists(), rel
    for rel in kept:
        assert (site / rel).exists(), rel
    assert report.removed_files == len(removed)
    assert report.removed_bytes == 5 * len(removed)
    assert not (site / "bin").exists() and not (site / "pkg/tests").exists()


def test_protected_paths():
    assert builder.is_protected(Path("numpy.libs/libgfortran.so.5"))
    assert builder.is_protected(Path("numpy/f2py/tests"))
    assert not builder.is_protected(Path("numpy/_core/tests"))
    assert not builder.is_protected(Path("numpy/f2pyish"))


def test_prune_removes_named_package_parts_and_scipy_outside_the_allow_list(tmp_path):
    site = tmp_path / "python"
    removed = [
        "onnxruntime/capi/libonnxruntime.so.1.31.1", "onnxruntime/transformers/__init__.py",
        "onnxruntime/quantization/quantize.py", "onnxruntime/tools/__init__.py",
        "scipy/signal/__init__.py", "scipy/signal/_sigtools.so", "scipy/odr/__init__.py",
        "scipy/cluster/__init__.py",
    ]
    kept = [
        "onnxruntime/__init__.py", "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so",
        "onnxruntime/capi/libonnxruntime_providers_shared.so", "onnxruntime/backend/__init__.py",
        "scipy/__init__.py", "scipy/_lib/__init__.py", "scipy/stats/__init__.py", "scipy/sparse/__init__.py",
        "scipy/optimize/__init__.py", "scipy/version.py", "scipy.libs/libscipy_openblas.so",
        "scipy/signalish.py",  # files at scipy/ top level are kept
        "numpy/f2py/__init__.py",
    ]
    for rel in removed + kept:
        _touch(site, rel, b"123")
    pruned = builder.prune(site)
    for rel in removed:
        assert not (site / rel).exists(), rel
    for rel in kept:
        assert (site / rel).exists(), rel
    assert set(pruned) == {"onnxruntime/capi/libonnxruntime.so.1.31.1", "onnxruntime/transformers",
                           "onnxruntime/quantization", "onnxruntime/tools", "scipy/signal", "scipy/odr",
                           "scipy/cluster"}
    assert sum(pruned.values()) == 3 * len(removed)
    # A layer without scipy or onnxruntime: nothing to do.
    other = tmp_path / "other"
    _touch(other, "pkg/signal/__init__.py")
    assert builder.prune(other) == {} and (other / "pkg/signal/__init__.py").exists()


# --------------------------------------------------------------------------- strip safety


def _elf(p_offset: int, p_vaddr: int, p_align: int = 0x10000, machine: int = 183) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", header, 18, machine)
    struct.pack_into("<QQ", header, 32, 64, 0)  # e_phoff, e_shoff
    struct.pack_into("<HHHH", header, 54, 56, 1, 64, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, p_offset, p_vaddr, p_vaddr, 16, 16, p_align)
    return bytes(header) + ph + b"\0" * (max(0, p_offset + 16 - 120))


def test_elf_check_catches_misaligned_load_segments(tmp_path):
    good = _touch(tmp_path, "good.so", _elf(0x100, 0x10100))
    bad = _touch(tmp_path, "bad.so", _elf(0x100, 0x10000))  # the "not properly aligned" corruption
    short = _touch(tmp_path, "short.so", _elf(0x100, 0x10100)[:130])
    assert builder.elf_problem(good, 183) is None
    assert "not properly aligned" in builder.elf_problem(bad, 183)
    assert "past end of file" in builder.elf_problem(short, 183)
    assert "machine" in builder.elf_problem(good, 62)
    assert builder.elf_problem(_touch(tmp_path, "x.so", b"not elf"), None) == "not an ELF file"


def test_strip_leaves_libs_and_foreign_files_alone(tmp_path):
    site = tmp_path / "python"
    lib = _touch(site, "pkg.libs/libx.so", _elf(0x100, 0x10100, machine=62))
    foreign = _touch(site, "pkg/_m.so", _elf(0x100, 0x10100, machine=183))  # aarch64 in an x86_64 build
    before = (lib.read_bytes(), foreign.read_bytes())
    builder.strip_extensions(site, "x86_64", log=lambda _m: None)
    assert (lib.read_bytes(), foreign.read_bytes()) == before


# --------------------------------------------------------------------------- cache key, caching


def test_cache_key_follows_every_input():
    base = builder.cache_key("inference", "arm64", "3.12", b"numpy==2.4.6\n", "llvm-strip")
    assert base == builder.cache_key("inference", "aarch64", "3.12", b"numpy==2.4.6\n", "llvm-strip")
    changed = [
        builder.cache_key("inference", "arm64", "3.12", b"numpy==2.4.7\n", "llvm-strip"),
        builder.cache_key("inference", "x86_64", "3.12", b"numpy==2.4.6\n", "llvm-strip"),
        builder.cache_key("inference", "arm64", "3.13", b"numpy==2.4.6\n", "llvm-strip"),
        builder.cache_key("training", "arm64", "3.12", b"numpy==2.4.6\n", "llvm-strip"),
        builder.cache_key("inference", "arm64", "3.12", b"numpy==2.4.6\n", "none"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


@pytest.fixture
def fake_pip(monkeypatch):
    """Replace pip with a writer of a small fake site-packages; counts calls."""
    calls = []

    def install(requirements, site, arch, python, log):
        calls.append((requirements.name, arch))
        _touch(site, "pkg/__init__.py", b"VALUE = 42\n")
        _touch(site, "pkg/tests/test_pkg.py", b"assert True\n")
        _touch(site, "pkg/__init__.pyi", b"VALUE: int\n")
        _touch(site, "pkg.libs/libfoo.so", b"\0" * 100)

    monkeypatch.setattr(builder, "_pip_install", install)
    return calls


def test_build_is_cached_and_laid_out_for_lambda(tmp_path, fake_pip):
    out, cache = tmp_path / "build", tmp_path / "cache"
    first = builder.build_layer("inference", architecture="x86_64", out_dir=out, cache_dir=cache,
                                strip=False, log=lambda _m: None)
    assert first.cached is False and first.path == out / "x86_64" / "inference"
    assert (first.path / "python" / "pkg" / "__init__.py").read_bytes() == b"VALUE = 42\n"
    assert not (first.path / "python" / "pkg" / "tests").exists()
    assert first.unzipped_bytes == builder.tree_size(first.path) == len(b"VALUE = 42\n") + 100
    assert first.zip_path == out / "x86_64" / "inference.zip" and first.zip_path.stat().st_size == first.zipped_bytes
    second = builder.build_layer("inference", architecture="x86_64", out_dir=out, cache_dir=cache,
                                 strip=False, log=lambda _m: None)
    assert second.cached is True and len(fake_pip) == 1
    assert (second.unzipped_bytes, second.zipped_bytes) == (first.unzipped_bytes, first.zipped_bytes)
    # A fresh work tree (layers/build wiped) is refilled from the cache, without pip.
    shutil.rmtree(out)
    third = builder.build_layer("inference", architecture="x86_64", out_dir=out, cache_dir=cache,
                                strip=False, log=lambda _m: None)
    assert third.cached is True and len(fake_pip) == 1 and (third.path / "python/pkg/__init__.py").exists()
    assert builder.existing_build("inference", architecture="x86_64", out_dir=out, strip=False) is not None
    assert builder.existing_build("training", architecture="x86_64", out_dir=out, strip=False) is None


def test_failed_build_leaves_nothing_behind(tmp_path, fake_pip, monkeypatch):
    out, cache = tmp_path / "build", tmp_path / "cache"

    def broken_trim(site):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(builder, "trim", broken_trim)
    with pytest.raises(RuntimeError, match="disk on fire"):
        builder.build_layer("training", architecture="arm64", out_dir=out, cache_dir=cache,
                            strip=False, log=lambda _m: None)
    assert not (out / "arm64").exists()
    assert list(cache.iterdir()) == []


def test_concurrent_builds_of_one_layer_agree(tmp_path, fake_pip):
    from concurrent.futures import ThreadPoolExecutor

    out, cache = tmp_path / "build", tmp_path / "cache"

    def build(_):
        return builder.build_layer("inference", architecture="arm64", out_dir=out, cache_dir=cache,
                                   strip=False, log=lambda _m: None)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(4)))
    assert {r.key for r in results} == {results[0].key}
    assert (out / "arm64" / "inference" / "python" / "pkg" / "__init__.py").exists()
    assert [p.name for p in cache.iterdir()] == [results[0].key]
    assert not [p for p in (out / "arm64").iterdir() if p.name.startswith(".")]


def test_zip_is_deterministic(tmp_path):
    _touch(tmp_path / "a", "python/m.py", b"print(1)\n")
    size1 = builder.zip_tree(tmp_path / "a", tmp_path / "1.zip")
    os.utime(tmp_path / "a/python/m.py", (1, 1))
    size2 = builder.zip_tree(tmp_path / "a", tmp_path / "2.zip")
    assert size1 == size2 and (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()


def test_unknown_layer_or_architecture_is_refused():
    with pytest.raises(builder.LayerBuildError, match="unknown layer"):
        builder.build_layer("gpu")
    with pytest.raises(builder.LayerBuildError, match="unknown architecture"):
        builder.build_layer("inference", architecture="sparc")


# --------------------------------------------------------------------------- the construct


def test_construct_uses_the_built_layers(tmp_path, fake_pip):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.layers import DependencyLayers

    out, cache = tmp_path / "build", tmp_path / "cache"
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "S")
    layers = DependencyLayers(stack, "Layers", architecture="arm64", out_dir=out, cache_dir=cache)
    template = Template.from_stack(stack)
    resources = template.find_resources("AWS::Lambda::LayerVersion")
    assert len(resources) == 2
    for resource in resources.values():
        assert resource["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        assert resource["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert set(layers.sizes) == {"inference", "training"} and all(layers.sizes.values())
    assert layers.placeholder is False
    assert layers.inference is not layers.training
    assert (out / "arm64" / "inference" / "python").is_dir()


def test_construct_without_build_synthesizes_a_flagged_placeholder(tmp_path, fake_pip):
    import aws_cdk as cdk
    from aws_cdk.assertions import Annotations, Match

    from infra.layers import DependencyLayers

    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "S")
    layers = DependencyLayers(stack, "Layers", architecture="x86_64", build=False, out_dir=tmp_path / "none")
    assert layers.placeholder is True and layers.sizes == {"inference": 0, "training": 0}
    assert fake_pip == []
    Annotations.from_stack(stack).has_warning("*", Match.string_like_regexp("not built"))


# --------------------------------------------------------------------------- real builds (slow)

# Lambda's Python runtime ships boto3 and its dependencies; the layers rely on that.
_RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")


def _lambda_like_path(tmp_path: Path) -> Path:
    """A directory standing in for the runtime's own packages (pure Python, from this venv)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    import botocore

    site = Path(botocore.__file__).parents[1]
    for name in _RUNTIME_MODULES:
        if (site / name).exists():
            (runtime / name).symlink_to(site / name)
    return runtime


def _function_asset(tmp_path: Path) -> Path:
    """A stand-in for the function's code (/var/task on Lambda): the ``functions`` package only."""
    task = tmp_path / "task"
    task.mkdir(exist_ok=True)
    if not (task / "functions").exists():
        (task / "functions").symlink_to(ROOT / "functions")
    return task


def _run_in_layer(python: str, layer: Path, runtime: Path, code: str, tmp_path: Path) -> str:
    # -I: no environment, no user site; -S: no site-packages of that interpreter either, so only
    # the function's code (/var/task), the layer (Lambda puts /opt/python on sys.path) and the
    # runtime stand-in are importable.
    prelude = (
        "import sys\n"
        f"sys.path[:0] = [{str(layer / 'python')!r}, {str(_function_asset(tmp_path))!r}]\n"
        f"sys.path.append({str(runtime)!r})\n"
    )
    script = tmp_path / "check.py"
    script.write_text(prelude + code)
    result = subprocess.run(
        [python, "-I", "-S", str(script)], capture_output=True, text=True, timeout=600,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "POWERTOOLS_TRACE_DISABLED": "true",
             "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_inference_layer_loads_a_model_and_infers_on_python312(tmp_path):
    """Load + infer: a real converted model through the serving code, and the handler imports."""
    python = python312_or_skip()
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.models import classifier

    built = builder.build_layer("inference", architecture="x86_64", out_dir=tmp_path / "build")
    assert built.unzipped_bytes < 130_000_000

    weights = numpy_helper.from_array(np.array([[1.0], [2.0]], dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    model_path = tmp_path / "tiny.onnx"
    model_path.write_bytes(model.SerializeToString())

    trained = classifier()  # fitted and converted here, by the venv's scikit-learn + skl2onnx
    (tmp_path / "model.onnx").write_bytes(trained.onnx)
    (tmp_path / "schema.json").write_text(json.dumps(trained.schema.to_dict()))
    records = trained.records(20)
    expected = [str(v) for v in trained.pipeline.predict(trained.sklearn_matrix(records))]
    (tmp_path / "records.json").write_text(json.dumps(records))

    out = _run_in_layer(python, built.path, _lambda_like_path(tmp_path), f"""
import json
import numpy, onnxruntime
assert numpy.__file__.startswith(sys.path[0]) and onnxruntime.__file__.startswith(sys.path[0])
session = onnxruntime.InferenceSession({str(model_path)!r}, providers=["CPUExecutionProvider"])
(y,) = session.run(None, {{"X": numpy.array([[1, 1], [3, 4]], dtype=numpy.float32)}})
print(y.ravel().tolist())
import numpy.f2py
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.validation import validate
validate(event={{"instances": []}}, schema={{"type": "object", "required": ["instances"]}})
# The serving path: a real model loaded and run by the function's own code.
from functions.core.onnx_model import OnnxModel
from functions.core.schema import FeatureSchema
schema = FeatureSchema.from_dict(json.load(open({str(tmp_path / "schema.json")!r})))
model = OnnxModel.from_bytes(open({str(tmp_path / "model.onnx")!r}, "rb").read(), schema)
result = model.predict(schema.to_feeds(json.load(open({str(tmp_path / "records.json")!r}))))
print("labels", json.dumps([str(v) for v in result["predictions"]]))
import functions.inference.handler  # the whole handler module imports with this layer alone
for absent in ("sklearn", "scipy", "skl2onnx", "onnx"):
    try:
        __import__(absent)
    except ImportError:
        pass
    else:
        raise AssertionError(absent + " is importable from the inference layer")
print(sys.version_info[:2])
""", tmp_path)
    assert "[3.0, 11.0]" in out
    assert "(3, 12)" in out
    labels = json.loads(out.split("labels ", 1)[1].splitlines()[0])
    assert labels == expected


# What the training layer runs: every module of scikit-learn and skl2onnx imports (any estimator a
# user names), then the train step's own code fits, converts and checks ONNX-vs-sklearn parity with
# onnxruntime — the training layer is all the train function gets.
_TRAIN_CHECK = """\
import importlib, pkgutil, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
# 1. Every module of scikit-learn and skl2onnx imports, so any estimator a user names loads;
#    the scipy subpackages that takes must all be in the layer (SCIPY_KEEP).
import sklearn, skl2onnx
SKIP = (".tests", "conftest", "._build_utils", "array_api_compat.torch", "array_api_compat.cupy",
        "array_api_compat.dask", "array_api_extra._lib._testing", "array_api_extra._lib._backends")
failed = []
for pkg in (sklearn, skl2onnx):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not any(s in info.name for s in SKIP):
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
assert not failed, failed
print("scipy:", ",".join(sorted({n.split(".")[1] for n in sys.modules if n.startswith("scipy.")})))
# 2. The train step: the framework's pipeline (impute + scale, impute + one-hot, estimator), fitted,
#    converted with skl2onnx, and scored by onnxruntime against scikit-learn (parity).
import onnxruntime
from functions.core import convert
from functions.core.onnx_model import OnnxModel
from functions.core.schema import FeatureSchema
assert onnxruntime.__file__.startswith(sys.path[0]), onnxruntime.__file__
rng = np.random.default_rng(0)
n = 300
x1, x2 = rng.normal(size=n), rng.normal(2.0, 3.0, size=n)
colour = rng.choice(["blue", "green", "red"], size=n)
score = x1 + 0.3 * x2 + np.where(colour == "red", 1.5, np.where(colour == "blue", -1.0, 0.0))
label = np.where(score > 1.2, "fish", np.where(score > 0.0, "dog", "cat"))
cls_rows = [[float(a), float(b), str(c), str(t)] for a, b, c, t in zip(x1, x2, colour, label)]
reg_rows = [[float(a), float(b), str(c), float(s)] for a, b, c, s in zip(x1, x2, colour, 3 * score)]
for rows in (cls_rows, reg_rows):
    rows[3][0] = None
    rows[7][2] = None
columns = ["x1", "x2", "colour", "y"]
forest, boosting = {"n_estimators": 10, "random_state": 0}, {"n_estimators": 20, "random_state": 0}
cases = [("classification", cls_rows, "sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
         ("classification", cls_rows, "sklearn.ensemble.RandomForestClassifier", forest),
         ("classification", cls_rows, "sklearn.ensemble.GradientBoostingClassifier", boosting),
         ("regression", reg_rows, "sklearn.linear_model.Ridge", {"alpha": 0.5}),
         ("regression", reg_rows, "sklearn.ensemble.RandomForestRegressor", forest),
         ("regression", reg_rows, "sklearn.ensemble.GradientBoostingRegressor", boosting)]
for task, rows, estimator, params in cases:
    schema = FeatureSchema.from_rows(columns, rows, "y", task)
    X, y = convert.matrix(schema, rows, columns), convert.target(schema, rows, columns)
    pipeline = convert.build_pipeline(schema, estimator, params).fit(X, y)
    model = OnnxModel.from_bytes(convert.to_onnx(pipeline, schema), schema)
    records = [dict(zip(columns[:3], r[:3])) for r in rows]
    got = model.predict(schema.to_feeds(records))
    expected = pipeline.predict(convert.matrix(schema, records))
    if task == "classification":
        assert (np.array(got["predictions"]) == expected).mean() > 0.98, estimator
        np.testing.assert_allclose(got["probabilities"], pipeline.predict_proba(X), atol=1e-4)
    else:
        np.testing.assert_allclose(got["predictions"], expected, rtol=1e-4, atol=1e-3)
    print("parity", estimator.rsplit(".", 1)[1])
# 3. The train step's core as the train function runs it: CSV bytes -> validated dataset, holdout
#    split, fit, ONNX conversion, parity checked with onnxruntime, drift baseline.
import importlib.util
if importlib.util.find_spec("functions.core.training") is not None:
    import csv, io
    from functions.core import training
    buffer = io.StringIO()
    csv.writer(buffer).writerows([columns] + [["" if v is None else v for v in r] for r in cls_rows])
    result = training.train(buffer.getvalue().encode(), {"target": "y", "task": "classification",
                            "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}})
    assert result.parity["passed"] and result.onnx and result.baseline, result.parity
    print("core train parity", result.parity["passed"])
print("trained", sys.version_info[:2])
"""


@pytest.mark.slow
def test_training_layer_trains_converts_and_infers_on_python312(tmp_path):
    python = python312_or_skip()
    built = builder.build_layer("training", architecture="x86_64", out_dir=tmp_path / "build")
    assert built.unzipped_bytes < 220_000_000
    out = _run_in_layer(python, built.path, _lambda_like_path(tmp_path), _TRAIN_CHECK, tmp_path)
    assert "trained (3, 12)" in out
    if (ROOT / "functions" / "core" / "training.py").exists():
        assert "core train parity True" in out, out
    for estimator in ("LogisticRegression", "RandomForestClassifier", "GradientBoostingClassifier", "Ridge",
                      "RandomForestRegressor", "GradientBoostingRegressor"):
        assert f"parity {estimator}" in out, out
    # The scipy allow-list is verified: what scikit-learn + skl2onnx import is all in the layer.
    # (Subpackages are told from modules by the full scipy of this venv, which nothing trimmed.)
    import scipy

    full = Path(scipy.__file__).parent
    used = set(out.split("scipy: ", 1)[1].splitlines()[0].split(","))
    subpackages = {name for name in used if (full / name / "__init__.py").exists()}
    assert subpackages and subpackages <= builder.SCIPY_KEEP, subpackages - builder.SCIPY_KEEP
    removed = {p.name for p in full.iterdir() if (p / "__init__.py").exists()} - builder.SCIPY_KEEP
    assert removed >= {"cluster", "odr", "signal"} and not used & removed
    assert not any((built.path / "python" / "scipy" / name).exists() for name in removed)
    assert not list((built.path / "python" / "onnxruntime" / "capi").glob("libonnxruntime.so*"))
