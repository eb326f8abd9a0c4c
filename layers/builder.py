"""Build Shipyard's Lambda dependency layers without Docker.

A layer is made by asking pip for the *Lambda target's* wheels (manylinux, CPython 3.12, arm64
or x86_64) from a hash-locked requirements file, whatever machine runs the build:

    pip install --target <tmp>/python --platform manylinux_2_28_<arch> --platform manylinux2014_<arch>
        --implementation cp --python-version 3.12 --only-binary=:all: --require-hashes --no-deps
        -r layers/<name>.txt

then trimming what Lambda never loads, stripping symbol tables off extension modules where a
strip tool for the target architecture is at hand (every stripped file is checked, else the
original is kept), measuring, and moving the result into place atomically.

Results are cached by the sha256 of (requirements file, architecture, Python version, builder
version) in ``~/.cache/shipyard/layers``; a second build of the same inputs only checks a marker.

    python -m layers.builder build [--arch arm64|x86_64 ...] [--layer inference|training ...]
    python -m layers.builder lock  [--layer ...]     # regenerate layers/<name>.txt from <name>.in

This module uses the standard library only (plus pip, run as a subprocess), so that
``infra/layers.py`` can call it during ``cdk synth``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# Bump when a change here changes what ends up in a layer: it is part of the cache key.
BUILDER_VERSION = "3"

LAYER_DIR = Path(__file__).resolve().parent
LAYERS = ("inference", "training")
DEFAULT_OUT_DIR = LAYER_DIR / "build"
DEFAULT_PYTHON = "3.12"
DEFAULT_ARCHITECTURE = "arm64"

# Lambda's names for architectures -> the machine name in manylinux platform tags.
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
_ARCH_ALIASES = {"arm64": "arm64", "aarch64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}
_ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64

# Provided by every Lambda Python runtime (boto3 and what it depends on): never bundled.
# Powertools needs jmespath; aws-xray-sdk needs botocore; both take the runtime's copies.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
)

Log = Callable[[str], None]


def _default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    env = os.environ.get("SHIPYARD_LAYER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shipyard" / "layers"


class LayerBuildError(RuntimeError):
    """A layer could not be built; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class LayerBuild:
    """A built layer. ``path`` is the directory to give Lambda (it holds ``python/``)."""

    path: Path
    unzipped_bytes: int
    zipped_bytes: int
    cached: bool
    name: str = ""
    architecture: str = ""
    key: str = ""
    zip_path: Path | None = None


# --------------------------------------------------------------------------- requirement files


@dataclasses.dataclass(frozen=True)
class Requirement:
    name: str  # normalized (PEP 503)
    version: str | None  # the exact version when pinned with ==, else None
    extras: tuple[str, ...]
    hashes: tuple[str, ...]  # "sha256:<hex>"
    line: str  # the requirement text as written (without options)


_REQ_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;]*?)\s*(?:;.*)?$"
)


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> list[Requirement]:
    """Parse a pip requirements file (the subset our .in/.txt files use: pins and --hash)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        line = line.strip()
        if current:
            current += " " + line
        else:
            current = line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current:
            logical.append(current)
        current = ""
    if current:
        logical.append(current)

    requirements = []
    for entry in logical:
        if entry.startswith("-"):
            raise ValueError(f"unsupported option line in requirements: {entry!r}")
        parts = entry.split()
        hashes, rest = [], []
        i = 0
        while i < len(parts):
            part = parts[i]
            if part.startswith("--hash="):
                hashes.append(part[len("--hash="):])
            elif part == "--hash" and i + 1 < len(parts):
                hashes.append(parts[i + 1])
                i += 1
            elif part.startswith("-"):
                raise ValueError(f"unsupported option {part!r} in {entry!r}")
            else:
                rest.append(part)
            i += 1
        req_text = " ".join(rest)
        match = _REQ_RE.match(req_text)
        if not match:
            raise ValueError(f"cannot parse requirement {req_text!r}")
        spec = match.group("spec").replace(" ", "")
        version = spec[2:] if spec.startswith("==") and "," not in spec and "*" not in spec else None
        extras = tuple(
            sorted(normalize_name(e) for e in (match.group("extras") or "").split(",") if e.strip())
        )
        requirements.append(
            Requirement(normalize_name(match.group("name")), version, extras, tuple(hashes), req_text)
        )
    return requirements


def requirements_file(name: str, kind: str = "txt") -> Path:
    if name not in LAYERS:
        raise LayerBuildError(f"unknown layer {name!r}; expected one of {', '.join(LAYERS)}")
    return LAYER_DIR / f"{name}.{kind}"


def normalize_architecture(architecture: str) -> str:
    try:
        return _ARCH_ALIASES[architecture.lower()]
    except KeyError:
        raise LayerBuildError(
            f"unknown architecture {architecture!r}; expected arm64 or x86_64"
        ) from None


def platform_args(architecture: str, python: str = DEFAULT_PYTHON) -> list[str]:
    machine = ARCHITECTURES[normalize_architecture(architecture)]
    return [
        "--platform", f"manylinux_2_28_{machine}",
        "--platform", f"manylinux2014_{machine}",
        "--implementation", "cp",
        "--python-version", python,
        "--only-binary=:all:",
    ]


def cache_key(
    name: str, architecture: str, python: str, requirements: bytes, strip: str = "none"
) -> str:
    """What a built layer depends on: its locked requirements, the target, this builder, and
    the strip tool used (``strip``: its name, or "none")."""
    digest = hashlib.sha256()
    for part in (
        f"shipyard-layer-builder/{BUILDER_VERSION}",
        name,
        normalize_architecture(architecture),
        python,
        f"strip={strip}",
    ):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(requirements).digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- trimming

# Directory names removed wherever they occur (outside protected trees). Only `tests`/`test`,
# not `testing`: numpy.testing and friends are imported at run time by libraries.
TRIM_DIR_NAMES = frozenset({"__pycache__", "tests", "test"})
# File suffixes Lambda never reads: type stubs, Cython sources/declarations, C/C++ sources and
# headers (only needed to compile against a package), stale bytecode of another Python.
TRIM_SUFFIXES = (".pyi", ".pxd", ".pyx", ".pxi", ".c", ".h", ".hpp", ".cpp", ".cc", ".pyc")
# Top-level entries of python/ that are never imported: console scripts whose shebang points
# at the build machine's interpreter.
TRIM_TOP_LEVEL = frozenset({"bin"})


def is_protected(rel: Path) -> bool:
    """Paths (relative to python/) the trimmer must never touch.

    - ``*.libs/``: the shared libraries auditwheel vendored (numpy.libs, scipy.libs, ...); the
      extension modules load them by exact file name through their RPATH.
    - ``numpy/f2py``: numpy imports it (``numpy.f2py`` is a lazy attribute that scipy and
      introspection touch), and its ``tests``/``*.c`` files are package data it reads.
    """
    parts = rel.parts
    if any(part.endswith(".libs") for part in parts):
        return True
    if len(parts) >= 2 and parts[0] == "numpy" and parts[1] == "f2py":
        return True
    return False


@dataclasses.dataclass
class TrimReport:
    removed_files: int = 0
    removed_bytes: int = 0


def _tree_bytes(path: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                files += 1
                size += os.path.getsize(full)
    return files, size


def trim(site: Path) -> TrimReport:
    """Remove from ``site`` (a layer's python/ directory) what Lambda never uses."""
    report = TrimReport()

    def remove_dir(path: Path) -> None:
        files, size = _tree_bytes(path)
        report.removed_files += files
        report.removed_bytes += size
        shutil.rmtree(path)

    for entry in list(site.iterdir()):
        if entry.name in TRIM_TOP_LEVEL and entry.is_dir() and not entry.is_symlink():
            remove_dir(entry)

    for dirpath, dirnames, filenames in os.walk(site, topdown=True):
        here = Path(dirpath)
        rel_here = here.relative_to(site)
        if is_protected(rel_here):
            dirnames[:] = []
            continue
        keep = []
        for dirname in dirnames:
            rel = rel_here / dirname
            if is_protected(rel):
                continue  # don't descend, don't remove
            if dirname in TRIM_DIR_NAMES and not (here / dirname).is_symlink():
                remove_dir(here / dirname)
            else:
                keep.append(dirname)
        dirnames[:] = keep
        for filename in filenames:
            if filename.endswith(TRIM_SUFFIXES) and not is_protected(rel_here / filename):
                path = here / filename
                report.removed_files += 1
                report.removed_bytes += path.lstat().st_size
                path.unlink()
    return report


# --------------------------------------------------------------------------- pruning

# Parts of packages that the layers' code never loads, each removed with its reason. Unlike the
# generic trimming above these are named one by one, and the slow tests in tests/unit/test_layers.py
# (train + convert + infer, load + infer, under CPython 3.12 with nothing but the layer on sys.path)
# are what shows they are not needed.
PRUNE_PATHS: dict[str, str] = {
    # onnxruntime ships its engine twice: statically inside the Python binding
    # (capi/onnxruntime_pybind11_state*.so, whose DT_NEEDED names only libc/libstdc++/libm/libgcc)
    # and as the C-API shared library for native consumers. No Python module of the package
    # loads the latter (no ctypes/dlopen of it anywhere): 25 MB (arm64) / 28 MB (x86_64).
    "onnxruntime/capi/libonnxruntime.so.*": "C-API library; the Python binding links ORT statically",
    # Offline tools (graph optimizers for transformer models, quantization, conversion scripts):
    # never imported by `import onnxruntime` or InferenceSession; they need torch/onnx extras anyway.
    "onnxruntime/transformers": "offline transformer-model optimizer",
    "onnxruntime/quantization": "offline quantization tool",
    "onnxruntime/tools": "offline conversion/profiling scripts",
}

# The scipy subpackages kept: exactly those that importing *every* module of scikit-learn and
# skl2onnx (and onnx, onnxruntime, joblib) loads, so any estimator a user names still imports.
# Verified under CPython 3.12 by test_training_layer_trains_converts_and_infers_on_python312,
# which re-derives the set from sys.modules and fails if scikit-learn starts needing another.
# Removed: cluster, differentiate, fftpack, misc, odr, signal (~4.5 MB on arm64).
SCIPY_KEEP = frozenset({
    "_lib", "constants", "datasets", "fft", "integrate", "interpolate", "io", "linalg",
    "ndimage", "optimize", "sparse", "spatial", "special", "stats",
})


def prune(site: Path) -> dict[str, int]:
    """Remove :data:`PRUNE_PATHS` and the scipy subpackages outside :data:`SCIPY_KEEP` from
    ``site`` (a layer's python/ directory). Returns removed path (relative) -> bytes.
    Protected trees (``*.libs/``, ``numpy/f2py``) are never touched."""
    removed: dict[str, int] = {}

    def remove(path: Path) -> None:
        rel = path.relative_to(site)
        if is_protected(rel) or path.is_symlink():
            return
        if path.is_dir():
            removed[rel.as_posix()] = _tree_bytes(path)[1]
            shutil.rmtree(path)
        elif path.is_file():
            removed[rel.as_posix()] = path.stat().st_size
            path.unlink()

    for pattern in PRUNE_PATHS:
        for path in sorted(site.glob(pattern)):
            remove(path)
    scipy = site / "scipy"
    if scipy.is_dir() and (scipy / "__init__.py").exists():
        for entry in sorted(scipy.iterdir()):
            if entry.is_dir() and (entry / "__init__.py").exists() and entry.name not in SCIPY_KEEP:
                remove(entry)
    return removed


# --------------------------------------------------------------------------- stripping


def find_strip_tool(architecture: str) -> str | None:
    """A strip that understands the target architecture's ELF files, or None."""
    arch = normalize_architecture(architecture)
    machine = ARCHITECTURES[arch]
    candidates = [f"{machine}-linux-gnu-strip"]
    host = platform.machine().lower()
    if _ARCH_ALIASES.get(host) == arch:
        candidates.append("strip")
    candidates.append("llvm-strip")  # LLVM's strip handles every architecture
    candidates += [f"llvm-strip-{v}" for v in range(20, 13, -1)]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def elf_problem(path: Path, machine: int | None = None) -> str | None:
    """None if ``path`` is a well-formed little-endian ELF64 (of ``machine``), else why not.

    Checks what stripping a patchelf-edited library is known to break: program headers inside
    the file, LOAD segments inside the file and congruent with their alignment
    ("ELF load command address/offset not properly aligned"), section headers inside the file.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        return str(err)
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "not a little-endian ELF64 file"
    e_machine = struct.unpack_from("<H", data, 18)[0]
    if machine is not None and e_machine != machine:
        return f"ELF machine {e_machine}, expected {machine}"
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    size = len(data)
    if e_phoff + e_phnum * e_phentsize > size:
        return "program headers past end of file"
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize
        )
        if p_type == 1:  # PT_LOAD
            if p_offset + p_filesz > size:
                return f"LOAD segment {i} past end of file"
            if p_align > 1 and (p_vaddr - p_offset) % p_align:
                return f"LOAD segment {i} address/offset not properly aligned"
    if e_shoff and e_shoff + e_shnum * e_shentsize > size:
        return "section headers past end of file"
    return None


def program_headers(path: Path) -> list[tuple[int, ...]]:
    """Every program header of an ELF64 LE file as (type, flags, offset, vaddr, paddr, filesz,
    memsz, align): the loader's view of the file."""
    data = path.read_bytes()
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    return [struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize) for i in range(e_phnum)]


def _dynamic_view(readelf: str | None, path: Path) -> str | None:
    """The dynamic section and dynamic symbols as readelf prints them (what the loader uses)."""
    if readelf is None:
        return None
    result = subprocess.run([readelf, "-W", "--dynamic", "--dyn-syms", str(path)],
                            capture_output=True, text=True)
    if result.returncode:
        return f"readelf failed: {result.stderr.strip()}"
    # The file name appears in the output; drop it so before/after compare equal.
    return result.stdout.replace(str(path), "<file>")


def _is_extension(path: Path) -> bool:
    name = path.name
    return name.endswith(".so") or ".so." in name


def strip_extensions(site: Path, architecture: str, log: Log = _default_log) -> tuple[int, int, str]:
    """Strip unneeded symbols from extension modules under ``site``, except in ``*.libs``.

    Each file is stripped into a copy that must pass :func:`elf_problem` and, where readelf is
    at hand (GNU readelf reads every architecture), keep its dynamic section and dynamic symbol
    table exactly, before it replaces the original; otherwise the original is kept.
    Returns (files stripped, bytes saved, note).
    """
    arch = normalize_architecture(architecture)
    tool = find_strip_tool(arch)
    if tool is None:
        machine = ARCHITECTURES[arch]
        return 0, 0, (
            f"not stripping: no strip for {machine} here (apt-get install "
            f"binutils-{machine.replace('_', '-')}-linux-gnu or llvm)"
        )
    machine = _ELF_MACHINE[arch]
    readelf = shutil.which("readelf") or shutil.which("llvm-readelf")
    stripped = saved = 0
    kept: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(site):
        rel_dir = Path(dirpath).relative_to(site)
        if is_protected(rel_dir) and any(p.endswith(".libs") for p in rel_dir.parts):
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.endswith(".libs")]
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_symlink() or not _is_extension(path):
                continue
            if elf_problem(path, machine) is not None:
                continue  # not an ELF of the target: leave it alone
            before = path.stat().st_size
            tmp = path.with_name(path.name + ".strip-tmp")
            result = subprocess.run(
                [tool, "--strip-unneeded", "-o", str(tmp), str(path)],
                capture_output=True, text=True,
            )
            if result.returncode:
                problem = result.stderr.strip() or f"exit {result.returncode}"
            else:
                problem = elf_problem(tmp, machine)
                if problem is None and program_headers(path) != program_headers(tmp):
                    # Stripping only drops non-loaded sections; if it re-lays out the loaded
                    # segments the file was edited by patchelf (auditwheel's RPATH to *.libs),
                    # the case where strip is known to corrupt binaries. Not worth the risk.
                    problem = "strip would move its loaded segments (a patchelf-edited file)"
                if problem is None and _dynamic_view(readelf, path) != _dynamic_view(readelf, tmp):
                    problem = "dynamic section or dynamic symbols changed"
            if problem:
                tmp.unlink(missing_ok=True)
                kept.setdefault(re.sub(r"segment \d+", "segment", problem), []).append(
                    str(path.relative_to(site))
                )
                continue
            after = tmp.stat().st_size
            if after >= before:
                tmp.unlink()
                continue
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
            stripped += 1
            saved += before - after
    for problem, paths in sorted(kept.items()):
        log(f"  kept {len(paths)} unstripped ({problem}), e.g. {paths[0]}")
    note = f"stripped {stripped} extension modules with {Path(tool).name}"
    note += f", checked with {Path(readelf).name}" if readelf else " (readelf absent: ELF layout checked only)"
    refused = sum(len(paths) for paths in kept.values())
    if refused:
        note += f"; {refused} kept as they were"
    return stripped, saved, note


# --------------------------------------------------------------------------- measuring, zipping


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path``: what Lambda counts against 250 MB unzipped."""
    return _tree_bytes(path)[1]


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_tree(root: Path, dest: Path) -> int:
    """Zip ``root``'s contents (deterministically) into ``dest``; returns the zip's size."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                info = zipfile.ZipInfo(full.relative_to(root).as_posix(), _ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o755 if os.access(full, os.X_OK) else 0o644) << 16
                with open(full, "rb") as src, archive.open(info, "w") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    return dest.stat().st_size


def human_size(n: int | None) -> str:
    """Bytes as decimal megabytes (10^6, as the size budgets count), ``size unknown`` for ``None``."""
    return "size unknown" if n is None else f"{n / 1e6:.1f} MB"


# --------------------------------------------------------------------------- building

_META = "layer.json"


def _replace_dir(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``, replacing what was there with as short a gap as rename allows."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(dest, old)
    try:
        os.rename(src, dest)
    except OSError:
        if not dest.exists():
            if old is not None:
                os.rename(old, dest)
            raise
        # Another process put its copy in place meanwhile (same cache entry): keep that one.
        shutil.rmtree(src, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pip_install(requirements: Path, site: Path, architecture: str, python: str, log: Log) -> None:
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(site),
        *platform_args(architecture, python),
        "--require-hashes", "--no-deps", "-r", str(requirements),
        "--no-compile", "--no-warn-script-location", "--disable-pip-version-check",
        "--no-input", "--progress-bar", "off", "--quiet",
    ]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise LayerBuildError(f"pip failed for {requirements.name} ({architecture}):\n{tail}")
    log(f"  pip installed {requirements.name} in {time.monotonic() - started:.1f}s")


def _check_locked(requirements: Path) -> None:
    for req in parse_requirements(requirements.read_text()):
        if req.version is None or not req.hashes:
            raise LayerBuildError(
                f"{requirements.name}: {req.line!r} is not pinned with hashes; "
                f"run `python -m layers.builder lock`"
            )
        if req.name in RUNTIME_PROVIDED:
            raise LayerBuildError(
                f"{requirements.name}: {req.name} is provided by the Lambda runtime; don't bundle it"
            )


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _materialize(entry: Path, dest: Path, log: Log) -> None:
    """Copy a cache entry's layer directory to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        shutil.copytree(entry / "layer", tmp / "layer", symlinks=True)
        shutil.copy2(entry / _META, tmp / "layer.json")
        _link_or_copy(entry / "layer.zip", tmp / "layer.zip")
        # The zip and the marker live beside the layer directory, not inside what Lambda ships;
        # the marker goes last: it is what says the layer in place is complete.
        dest.with_name(dest.name + ".json").unlink(missing_ok=True)
        _replace_dir(tmp / "layer", dest)
        os.replace(tmp / "layer.zip", dest.with_name(dest.name + ".zip"))
        os.replace(tmp / "layer.json", dest.with_name(dest.name + ".json"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  placed in {dest}")


def _key_for(name: str, arch: str, python: str, strip: bool) -> str:
    requirements = requirements_file(name)
    if not requirements.exists():
        raise LayerBuildError(f"{requirements} is missing; run `python -m layers.builder lock`")
    _check_locked(requirements)
    strip_tool = find_strip_tool(arch) if strip else None
    return cache_key(
        name, arch, python, requirements.read_bytes(), Path(strip_tool).name if strip_tool else "none"
    )


def existing_build(
    name: str,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    python: str = DEFAULT_PYTHON,
    out_dir: Path | str | None = None,
    strip: bool = True,
    _key: str | None = None,
) -> LayerBuild | None:
    """The layer as built in ``out_dir`` if it is up to date with its inputs, else None."""
    arch = normalize_architecture(architecture)
    key = _key or _key_for(name, arch, python, strip)
    dest = (Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR) / arch / name
    marker = dest.with_name(name + ".json")
    if not (marker.exists() and (dest / "python").is_dir() and dest.with_name(name + ".zip").exists()):
        return None
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        return None
    return _result(meta, dest, cached=True)


def build_layer(
    name: str,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    python: str = DEFAULT_PYTHON,
    out_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    strip: bool = True,
    log: Log | None = None,
) -> LayerBuild:
    """Build (or take from cache) layer ``name`` for ``architecture``.

    The result is ``<out_dir>/<architecture>/<name>/python/...``; ``LayerBuild.path`` is
    ``<out_dir>/<architecture>/<name>``, the directory to hand to Lambda's LayerVersion.
    """
    log = log or _default_log
    arch = normalize_architecture(architecture)
    requirements = requirements_file(name)
    key = _key_for(name, arch, python, strip)
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = out_dir / arch / name
    entry = cache_dir / key

    # 1. Already in place: nothing to do.
    existing = existing_build(name, architecture=arch, python=python, out_dir=out_dir, strip=strip,
                              _key=key)
    if existing is not None:
        return existing

    # 2. In the cache: copy into place.
    if (entry / _META).exists() and (entry / "layer" / "python").is_dir():
        meta = json.loads((entry / _META).read_text())
        log(f"layer {name} ({arch}): from cache {entry}")
        _materialize(entry, dest, log)
        return _result(meta, dest, cached=True)

    # 3. Build into a temporary directory inside the cache, then rename it into the cache.
    started = time.monotonic()
    log(f"layer {name} ({arch}, python {python}): building from {requirements.name}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-{arch}-", dir=cache_dir))
    try:
        site = work / "layer" / "python"
        site.mkdir(parents=True)
        _pip_install(requirements, site, arch, python, log)
        installed = tree_size(site)
        report = trim(site)
        log(f"  trimmed {report.removed_files} files, {human_size(report.removed_bytes)}")
        pruned = prune(site)
        if pruned:
            log(f"  pruned {human_size(sum(pruned.values()))} of unused package parts: "
                + ", ".join(sorted(pruned)))
        strip_note, stripped_bytes = "not stripping (disabled)", 0
        if strip:
            _n, stripped_bytes, strip_note = strip_extensions(site, arch, log)
        log(f"  {strip_note}" + (f", saved {human_size(stripped_bytes)}" if stripped_bytes else ""))
        unzipped = tree_size(work / "layer")
        zipped = zip_tree(work / "layer", work / "layer.zip")
        meta = {
            "name": name,
            "architecture": arch,
            "python": python,
            "key": key,
            "builder_version": BUILDER_VERSION,
            "requirements_sha256": hashlib.sha256(requirements.read_bytes()).hexdigest(),
            "installed_bytes": installed,
            "trimmed_bytes": report.removed_bytes,
            "pruned": {k: pruned[k] for k in sorted(pruned)},
            "stripped_bytes": stripped_bytes,
            "strip": strip_note,
            "unzipped_bytes": unzipped,
            "zipped_bytes": zipped,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / _META).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(work, entry)
        except OSError:
            if not (entry / _META).exists():
                raise
            # A concurrent build of the same inputs finished first: use its result.
            shutil.rmtree(work, ignore_errors=True)
            meta = json.loads((entry / _META).read_text())
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(
        f"  built in {time.monotonic() - started:.1f}s: {human_size(unzipped)} unzipped, "
        f"{human_size(zipped)} zipped"
    )
    _materialize(entry, dest, log)
    return _result(meta, dest, cached=False)


def _result(meta: dict, dest: Path, *, cached: bool) -> LayerBuild:
    zip_path = dest.with_name(dest.name + ".zip")
    return LayerBuild(
        path=dest,
        unzipped_bytes=int(meta["unzipped_bytes"]),
        zipped_bytes=int(meta["zipped_bytes"]),
        cached=cached,
        name=meta.get("name", ""),
        architecture=meta.get("architecture", ""),
        key=meta.get("key", ""),
        zip_path=zip_path if zip_path.exists() else None,
    )


# --------------------------------------------------------------------------- locking


def _pip_report(requirements_in: Path, architecture: str, python: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--quiet", "--disable-pip-version-check", "--no-input",
            "--report", str(report), *platform_args(architecture, python),
            "-r", str(requirements_in),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise LayerBuildError(f"pip could not resolve {requirements_in.name} for {architecture}:\n"
                                  + result.stderr[-2000:])
        return json.loads(report.read_text())["install"]


def _via(resolved: dict[str, dict], top_level: set[str], source_name: str) -> dict[str, set[str]]:
    """For each package, which resolved packages require it (markers evaluated for the target)."""
    try:
        from packaging.requirements import Requirement as PkgRequirement
    except ImportError:  # pragma: no cover - packaging ships with every venv we use
        return {}
    via: dict[str, set[str]] = {name: set() for name in resolved}
    for parent, item in resolved.items():
        extras = set(item.get("requested_extras") or [])
        for spec in item["metadata"].get("requires_dist") or []:
            req = PkgRequirement(spec)
            child = normalize_name(req.name)
            if child not in resolved:
                continue
            if req.marker is not None:
                env = {"python_version": DEFAULT_PYTHON, "python_full_version": DEFAULT_PYTHON + ".0",
                       "sys_platform": "linux", "platform_system": "Linux",
                       "implementation_name": "cpython", "platform_python_implementation": "CPython",
                       "os_name": "posix"}
                if not any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                    continue
            via[child].add(parent)
    for name in top_level:
        via.setdefault(name, set()).add(f"-r {source_name}")
    return via


def lock(name: str, *, python: str = DEFAULT_PYTHON, log: Log | None = None) -> Path:
    """Resolve ``<name>.in`` for both architectures and write the hash-locked ``<name>.txt``."""
    log = log or _default_log
    source = requirements_file(name, "in")
    top = {r.name for r in parse_requirements(source.read_text())}
    per_arch: dict[str, dict[str, dict]] = {}
    for arch in ARCHITECTURES:
        log(f"resolving {source.name} for {arch}")
        per_arch[arch] = {
            normalize_name(i["metadata"]["name"]): i for i in _pip_report(source, arch, python)
        }
    names = sorted(set().union(*per_arch.values()))
    lines = [
        f"# Generated by `python -m layers.builder lock --layer {name}` from {source.name}: do not edit.",
        f"# Target: Lambda python{python}, manylinux_2_28 / manylinux2014, arm64 (aarch64) and x86_64;",
        "# one --hash per distinct wheel of each architecture. Install with --require-hashes --no-deps.",
        "# Left out (provided by the Lambda runtime): " + ", ".join(sorted(RUNTIME_PROVIDED)),
        "",
    ]
    first = next(iter(per_arch.values()))
    via = _via(first, top, source.name)
    for pkg in names:
        versions = {arch: res[pkg]["metadata"]["version"] for arch, res in per_arch.items() if pkg in res}
        if len(versions) != len(per_arch) or len(set(versions.values())) != 1:
            raise LayerBuildError(f"{pkg} resolves differently per architecture: {versions}")
        if pkg in RUNTIME_PROVIDED:
            continue
        hashes = sorted({
            res[pkg]["download_info"]["archive_info"]["hashes"]["sha256"] for res in per_arch.values()
        })
        item = first[pkg]
        extras = sorted(set(item.get("requested_extras") or []))
        req = f"{pkg}{'[' + ','.join(extras) + ']' if extras else ''}=={item['metadata']['version']}"
        lines.append(req + " \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "")
                  for i, h in enumerate(hashes)]
        parents = sorted(via.get(pkg, ()))
        if parents:
            lines.append("    # via " + ", ".join(parents))
    target = requirements_file(name, "txt")
    target.write_text("\n".join(lines) + "\n")
    log(f"wrote {target} ({sum(1 for line in lines if '==' in line)} packages)")
    return target


# --------------------------------------------------------------------------- CLI


def _summary(builds: Iterable[LayerBuild]) -> str:
    rows = [f"{'layer':<10} {'arch':<7} {'unzipped':>10} {'zipped':>10}  source"]
    for b in builds:
        rows.append(
            f"{b.name:<10} {b.architecture:<7} {human_size(b.unzipped_bytes):>10} "
            f"{human_size(b.zipped_bytes):>10}  {'cache' if b.cached else 'built'}  {b.path}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers.builder", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build layers (cached)")
    p_build.add_argument("--arch", action="append", choices=sorted(_ARCH_ALIASES),
                         help=f"architecture, repeatable (default {DEFAULT_ARCHITECTURE})")
    p_build.add_argument("--layer", action="append", choices=LAYERS, help="layer, repeatable (default all)")
    p_build.add_argument("--python", default=DEFAULT_PYTHON)
    p_build.add_argument("--out-dir", type=Path, default=None)
    p_build.add_argument("--cache-dir", type=Path, default=None)
    p_build.add_argument("--no-strip", action="store_true", help="don't strip extension modules")
    p_lock = sub.add_parser("lock", help="regenerate layers/<name>.txt from layers/<name>.in")
    p_lock.add_argument("--layer", action="append", choices=LAYERS)
    p_lock.add_argument("--python", default=DEFAULT_PYTHON)
    args = parser.parse_args(argv)

    try:
        if args.command == "lock":
            for name in args.layer or LAYERS:
                lock(name, python=args.python)
            return 0
        builds = []
        archs = list(dict.fromkeys(normalize_architecture(a) for a in (args.arch or [DEFAULT_ARCHITECTURE])))
        for arch in archs:
            for name in args.layer or LAYERS:
                started = time.monotonic()
                build = build_layer(name, architecture=arch, python=args.python, out_dir=args.out_dir,
                                    cache_dir=args.cache_dir, strip=not args.no_strip)
                _default_log(f"layer {name} ({arch}): {human_size(build.unzipped_bytes)} unzipped, "
                             f"{human_size(build.zipped_bytes)} zipped"
                             f"{' (cached)' if build.cached else ''} [{time.monotonic() - started:.1f}s]")
                builds.append(build)
        print(_summary(builds))
        return 0
    except LayerBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
