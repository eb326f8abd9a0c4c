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

import tempfile
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from layers import builder

_ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
_RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12}
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
            raise ValueError(f"DependencyLayers: python {python!r} is not supported; expected one of {sorted(_RUNTIMES)}")
        self.architecture = _ARCHITECTURES[arch]
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
