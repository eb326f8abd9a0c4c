"""`DependencyLayers`: the Lambda layers that carry Shipyard's third-party dependencies.

Two layers, both for CPython 3.12 on one architecture:

- ``inference``: onnxruntime, numpy, Powertools (tracer, validation) — the serving function.
- ``training``: scikit-learn, skl2onnx, onnx, scipy, numpy, joblib, threadpoolctl, protobuf,
  Powertools — the pipeline's train/validate functions.

The layers are built by ``layers/builder.py`` (pip for the Lambda platform, no Docker) and cached,
so after the first build a synth only checks a marker file. The asset is the builder's zip of
the built directory (``layers/build/<arch>/<name>.zip``, the directory itself if the zip is
missing) and its hash is the builder's cache key (requirements lock + architecture + Python +
builder version + strip tool), so CDK neither fingerprints nor re-zips 300 MB on every synth.
"""
from __future__ import annotations

import dataclasses
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct, IConstruct, IValidation

from infra.lambdas import lambda_architecture
from layers import builder

_RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12}
# Unzipped bytes of a function's code plus all its layers, per role (MB = 10^6 bytes). Lambda's
# hard limit is 250 MiB = 262,144,000 bytes; the budgets keep room under it.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
BUDGETS: dict[str, int] = {"inference": 130_000_000, "training": 220_000_000}

_DESCRIPTIONS = {
    "inference": "Shipyard inference dependencies: onnxruntime, numpy, aws-lambda-powertools",
    "training": "Shipyard training dependencies: scikit-learn, skl2onnx, onnx, scipy, numpy, powertools",
}


class DependencyLayers(Construct):
    """The ``inference`` and ``training`` layers for one architecture.

    :param architecture: ``"arm64"`` (default) or ``"x86_64"``; the layers' compatible architecture.
    :param python: the Lambda Python version; only ``"3.12"`` is supported.
    :param build: build the layers if they are not built (cached). With ``build=False`` an
        existing build is used if there is one; otherwise each layer is an empty placeholder
        (for fast synth in tests), flagged by ``placeholder`` and a synth warning — never deploy that.
    :param out_dir: where layers are built (default ``layers/build``).
    :param cache_dir: the builder's cache (default ``~/.cache/shipyard/layers``).

    Attributes: ``inference``, ``training`` (``lambda_.LayerVersion``), ``builds`` (name →
    ``LayerBuild`` or ``None`` for a placeholder), ``sizes`` (name → unzipped bytes, for the size
    budget; 0 for a placeholder), ``architecture`` (``lambda_.Architecture``), ``runtime``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        architecture: str = "arm64",
        python: str = "3.12",
        build: bool = True,
        out_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        arch = builder.normalize_architecture(architecture)
        if python not in _RUNTIMES:
            raise ValueError(f"DependencyLayers: python {python!r} is not supported; "
                             f"expected one of {sorted(_RUNTIMES)}")
        self.architecture = lambda_architecture(arch)
        self.runtime = _RUNTIMES[python]
        self.builds: dict[str, builder.LayerBuild | None] = {}
        self.sizes: dict[str, int] = {}
        self.placeholder = False

        layers: dict[str, lambda_.LayerVersion] = {}
        for name in builder.LAYERS:
            built = self._built(name, arch, python, build, out_dir, cache_dir)
            self.builds[name] = built
            if built is not None:
                # The builder's deterministic zip of exactly that directory: CDK then copies one
                # file per synth and uploads it as is, instead of copying and re-zipping ~300 MB.
                code = lambda_.Code.from_asset(
                    str(built.zip_path or built.path),
                    asset_hash=built.key,
                    asset_hash_type=cdk.AssetHashType.CUSTOM,
                )
                self.sizes[name] = built.unzipped_bytes
            else:
                self.placeholder = True
                code = lambda_.Code.from_asset(_placeholder_dir())
                self.sizes[name] = 0
                cdk.Annotations.of(self).add_warning_v2(
                    f"shipyard:layers:placeholder:{name}",
                    f"layer {name!r} ({arch}) is not built: synthesized an empty placeholder. "
                    "Run `shipyard layers build` before deploying.",
                )
            layers[name] = lambda_.LayerVersion(
                self,
                name.capitalize(),
                code=code,
                compatible_runtimes=[self.runtime],
                compatible_architectures=[self.architecture],
                description=_DESCRIPTIONS[name] + f" ({arch}, python{python})",
            )
        self.inference: lambda_.LayerVersion = layers["inference"]
        self.training: lambda_.LayerVersion = layers["training"]
        self.layers: dict[str, lambda_.LayerVersion] = layers

        # The size budget covers every Lambda function of the stack, whoever creates it.
        self.budget = SizeBudget.of(cdk.Stack.of(self))
        for name, layer in layers.items():
            self.budget.register_layer(layer, name=f"{layer.node.path} ({name}, {arch})",
                                       unzipped_bytes=self.sizes[name],
                                       role=name)

    @staticmethod
    def _built(name, arch, python, build, out_dir, cache_dir) -> builder.LayerBuild | None:
        if build:
            return builder.build_layer(
                name, architecture=arch, python=python, out_dir=out_dir, cache_dir=cache_dir
            )
        return builder.existing_build(name, architecture=arch, python=python, out_dir=out_dir)


_PLACEHOLDER: str | None = None


def _placeholder_dir() -> str:
    """An (almost) empty layer directory, made once per process."""
    global _PLACEHOLDER
    if _PLACEHOLDER is None or not Path(_PLACEHOLDER).exists():
        root = Path(tempfile.mkdtemp(prefix="shipyard-layer-placeholder-"))
        (root / "python").mkdir()
        (root / "python" / "SHIPYARD_PLACEHOLDER").write_text(
            "This layer was synthesized without being built; run `shipyard layers build`.\n"
        )
        _PLACEHOLDER = str(root)
    return _PLACEHOLDER


# --------------------------------------------------------------------------- size budget


@dataclasses.dataclass(frozen=True)
class FunctionSize:
    """One function's unzipped size as Lambda counts it: its code plus each attached layer."""

    path: str  # construct path of the function
    role: str  # "inference" or "training"
    code_bytes: int | None  # None when the code's size cannot be known (inline, image, unstaged)
    layers: tuple[tuple[str, int | None], ...]  # (layer name, unzipped bytes or None if unknown)
    budget: int

    @property
    def total(self) -> int:
        return (self.code_bytes or 0) + sum(size or 0 for _name, size in self.layers)

    @property
    def over(self) -> bool:
        return self.total > self.budget

    def describe(self) -> str:
        mb = builder.human_size
        parts = [f"function code {mb(self.code_bytes)}"]
        parts += [f"layer {name} {mb(size)}" for name, size in self.layers]
        return (f"{self.path} ({self.role} function): {' + '.join(parts)} = {mb(self.total)} unzipped, "
                f"budget {mb(self.budget)} (Lambda's limit is {mb(LAMBDA_UNZIPPED_LIMIT)})")


@jsii.implements(IValidation)
class _BudgetValidation:
    def __init__(self, budget: SizeBudget) -> None:
        self._budget = budget

    def validate(self) -> list[str]:
        return [
            f"size budget exceeded: {size.describe()}. Trim the layers (docs/layers.md) or give the "
            "function fewer dependencies."
            for size in self._budget.measure() if size.over
        ]


class SizeBudget:
    """Checks at synth that every Lambda function of a stack fits its role's size budget.

    A function's size is what Lambda counts against 250 MiB: the unzipped bytes of its code
    asset plus each attached layer. Its role is ``training`` if it carries the training layer
    (or was assigned that role with :meth:`assign_role`), else ``inference``; budgets are
    :data:`BUDGETS` unless given. Over budget, synth fails with a message naming the function,
    each layer with its size, the total and the budget.

    One per stack: ``SizeBudget.of(stack)`` (``DependencyLayers`` creates it).
    """

    def __init__(self, stack: cdk.Stack, budgets: Mapping[str, int] | None = None) -> None:
        self.stack = stack
        self.budgets = dict(BUDGETS if budgets is None else budgets)
        self._layers: dict[str, tuple[str, int, str | None]] = {}  # logical id -> (name, bytes, role)
        self._roles: dict[str, str] = {}  # function path -> role
        stack.node.add_validation(_BudgetValidation(self))

    @classmethod
    def of(cls, stack: cdk.Stack, budgets: Mapping[str, int] | None = None) -> SizeBudget:
        found = getattr(stack, "_shipyard_size_budget", None)
        if found is None:
            found = cls(stack, budgets)
            stack._shipyard_size_budget = found  # one per stack, kept with it
        elif budgets is not None:
            found.budgets = dict(budgets)
        return found

    def register_layer(self, layer: lambda_.LayerVersion, *, name: str, unzipped_bytes: int,
                       role: str | None = None) -> None:
        """Tell the check a layer's unzipped size (otherwise it is read from the layer's asset);
        a layer with a ``role`` makes the functions carrying it functions of that role."""
        if role is not None and role not in self.budgets:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(self.budgets)}")
        self._layers[self._logical_id(layer)] = (name, unzipped_bytes, role)

    def assign_role(self, function: lambda_.Function, role: str) -> None:
        """Give ``function`` the budget of ``role`` whatever layers it carries."""
        if role not in self.budgets:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(self.budgets)}")
        self._roles[function.node.path] = role

    # ---------------------------------------------------------------- measuring

    def _logical_id(self, layer: IConstruct) -> str:
        child = layer.node.default_child
        return self.stack.get_logical_id(child) if isinstance(child, cdk.CfnElement) else layer.node.path

    def measure(self) -> list[FunctionSize]:
        """The size of every Lambda function in the stack (at synth, after assets are staged)."""
        assets = {a.asset_hash: a for a in self.stack.node.find_all() if isinstance(a, s3_assets.Asset)}
        layer_versions = {self.stack.get_logical_id(c): c for c in self.stack.node.find_all()
                          if isinstance(c, lambda_.CfnLayerVersion)}
        sizes = []
        for cfn in self.stack.node.find_all():
            if not isinstance(cfn, lambda_.CfnFunction):
                continue
            function = cfn.node.scope
            path = function.node.path if function is not None else cfn.node.path
            layers: list[tuple[str, int | None]] = []
            roles = set()
            for ref in self.stack.resolve(cfn.layers) or []:
                logical_id = ref.get("Ref") if isinstance(ref, dict) else None
                if logical_id in self._layers:
                    name, size, layer_role = self._layers[logical_id]
                    roles.add(layer_role)
                elif logical_id in layer_versions:
                    layer_cfn = layer_versions[logical_id]
                    name = layer_cfn.node.scope.node.path if layer_cfn.node.scope else logical_id
                    size = self._asset_bytes(self.stack.resolve(layer_cfn.content), assets)
                else:
                    name, size = str(ref), None  # a layer imported by ARN: its size is not known here
                layers.append((name, size))
            role = self._roles.get(path) or ("training" if "training" in roles else "inference")
            code_bytes = self._asset_bytes(self.stack.resolve(cfn.code), assets)
            sizes.append(FunctionSize(path, role, code_bytes, tuple(layers), self.budgets[role]))
        return sizes

    def _asset_bytes(self, location: object, assets: Mapping[str, s3_assets.Asset]) -> int | None:
        """Unzipped bytes of the asset an ``S3Bucket``/``S3Key`` location points at."""
        if not isinstance(location, dict):
            return None
        # resolve() of an L1 property gives the JavaScript names (s3Key), the template S3Key.
        location = {k[:1].upper() + k[1:]: v for k, v in location.items()}
        if "ZipFile" in location:
            return len(str(location["ZipFile"]).encode())
        key = location.get("S3Key")
        if not isinstance(key, str):
            return None
        asset = assets.get(key.rsplit("/", 1)[-1].split(".", 1)[0])
        if asset is None:
            return None
        outdir = Path(cdk.Stage.of(self.stack).outdir).resolve()
        path = Path(asset.asset_path)
        if not path.is_absolute():
            path = outdir / path
        if path.is_dir() and outdir not in path.resolve().parents:
            # Asset staging is off (context aws:cdk:disable-asset-staging): the path is the source
            # directory before the asset's exclude rules, so its size says nothing.
            return None
        return unzipped_bytes(path)


def unzipped_bytes(path: Path) -> int | None:
    """Bytes of the regular files in a directory, or of the members of a zip file."""
    if path.is_dir():
        return builder.tree_size(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist() if not info.is_dir())
    if path.is_file():
        return path.stat().st_size
    return None
