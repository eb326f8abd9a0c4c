"""A synthesized CloudFormation template, its Lambda assets, intrinsic functions and creation order.

`Template.load(cdk_out_dir)` reads what `cdk synth` wrote: the stack template and its
`*.assets.json` manifest, which maps each Lambda `Code.S3Key` to a directory in `cdk.out`.
`Resolver` evaluates intrinsic functions against the resources created so far, the way
CloudFormation does at deploy time; `creation_order` sorts resources by their references.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template cannot be deployed locally as written (names the resource and what was wrong)."""


class _NoValue:
    """AWS::NoValue: the property is removed from its object or list."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class FileAsset:
    """A file asset of the assembly's manifest: ``source`` (a file, or a directory to zip) goes to
    ``bucket``/``key``, both as the manifest writes them (``${AWS::AccountId}``/``${AWS::Region}`` unresolved)."""
    source: Path
    packaging: str  # "file" (as is) or "zip" (the directory zipped)
    bucket: str
    key: str


@dataclass
class Template:
    body: dict
    stack_name: str
    directory: Path | None = None
    # S3 object key of a file asset -> its local directory (or file) in cdk.out
    assets: dict[str, Path] = field(default_factory=dict)
    # every file asset of the manifest with its packaging and destinations (published by assets.py)
    file_assets: list[FileAsset] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, dict]:
        return self.body.get("Resources", {})

    @classmethod
    def from_dict(cls, body: dict, stack_name: str = "Stack", directory: Path | None = None,
                  assets: dict[str, Path] | None = None) -> Template:
        return cls(body=body, stack_name=stack_name, directory=directory, assets=dict(assets or {}))

    @classmethod
    def load(cls, cdk_out: str | Path, stack_name: str | None = None) -> Template:
        """The stack template in a `cdk.out` directory (the only stack, or the one named). Asset paths
        are absolute (resolved against the directory now), so a relative `cdk_out` (`--assembly
        cdk.out`) still names them once the workers run from their own directories."""
        cdk_out = Path(cdk_out).resolve()
        manifest_path = cdk_out / "manifest.json"
        candidates: list[tuple[str, Path, Path | None]] = []  # (stack name, template, assets manifest)
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            artifacts = manifest.get("artifacts", {})
            for art_id, art in artifacts.items():
                if art.get("type") != "aws:cloudformation:stack":
                    continue
                props = art.get("properties", {})
                name = props.get("stackName") or art.get("displayName") or art_id
                tpl = cdk_out / props.get("templateFile", f"{art_id}.template.json")
                assets_file = None
                for dep in art.get("dependencies", []):
                    dep_art = artifacts.get(dep, {})
                    if dep_art.get("type") == "cdk:asset-manifest":
                        assets_file = cdk_out / dep_art["properties"]["file"]
                if assets_file is None and (cdk_out / f"{art_id}.assets.json").exists():
                    assets_file = cdk_out / f"{art_id}.assets.json"
                candidates.append((name, tpl, assets_file))
        else:
            for tpl in sorted(cdk_out.glob("*.template.json")):
                art_id = tpl.name[: -len(".template.json")]
                assets_file = cdk_out / f"{art_id}.assets.json"
                candidates.append((art_id, tpl, assets_file if assets_file.exists() else None))
        if stack_name:
            chosen = [c for c in candidates if c[0] == stack_name or c[1].name.startswith(stack_name + ".")]
        else:
            chosen = candidates
        if len(chosen) != 1:
            names = ", ".join(c[0] for c in candidates) or "none"
            raise TemplateError(
                f"expected one stack {'named ' + repr(stack_name) + ' ' if stack_name else ''}in {cdk_out} "
                f"(found: {names})"
            )
        name, tpl, assets_file = chosen[0]
        body = json.loads(tpl.read_text())
        assets: dict[str, Path] = {}
        file_assets: list[FileAsset] = []
        if assets_file is not None and assets_file.exists():
            for entry in json.loads(assets_file.read_text()).get("files", {}).values():
                source = cdk_out / entry["source"]["path"]
                for dest in entry.get("destinations", {}).values():
                    assets[dest["objectKey"]] = source
                    file_assets.append(FileAsset(source, entry["source"].get("packaging", "file"),
                                                 dest["bucketName"], dest["objectKey"]))
        return cls(body=body, stack_name=name, directory=cdk_out, assets=assets, file_assets=file_assets)

    def asset_path(self, logical_id: str, code: dict) -> Path | None:
        """The local asset directory of a function/layer's `Code` (or None if it is inline / unknown)."""
        key = code.get("S3Key") if isinstance(code, dict) else None
        if isinstance(key, str) and key in self.assets:
            return self._existing(logical_id, self.assets[key])
        meta = self.resources.get(logical_id, {}).get("Metadata", {})
        path = meta.get("aws:asset:path")
        if path and self.directory is not None:
            return self._existing(logical_id, Path(self.directory) / path)
        return None

    @staticmethod
    def _existing(logical_id: str, path: Path) -> Path:
        """`path` made absolute; a TemplateError naming the resource when it is not there (a moved or
        partly copied cdk.out): start-up fails instead of every invocation of the function."""
        path = Path(path).resolve()
        if not path.exists():
            raise TemplateError(f"{logical_id}: its code asset {path} does not exist (is the cloud assembly "
                                "complete? synthesize it again)")
        return path


# --------------------------------------------------------------------------- references and order


def references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt, ${X} and ${X.Attr} in Fn::Sub)."""
    found: set[str] = set()

    def walk(v: Any, sub_vars: frozenset = frozenset()) -> None:
        if isinstance(v, dict):
            if len(v) == 1:
                (k, arg), = v.items()
                if k == "Ref" and isinstance(arg, str):
                    if not arg.startswith("AWS::") and arg not in sub_vars:
                        found.add(arg)
                    return
                if k == "Fn::GetAtt":
                    target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                    if isinstance(target, str):
                        found.add(target)
                    if isinstance(arg, list):
                        walk(arg[1:])
                    return
                if k == "Fn::Sub":
                    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
                    for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                        base = name.split(".", 1)[0]
                        if name not in variables and not base.startswith("AWS::"):
                            found.add(base)
                    walk(variables)
                    return
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return found


def creation_order(resources: dict[str, dict]) -> list[str]:
    """Logical ids so that every resource comes after those it references (Ref/GetAtt/Sub/DependsOn)."""
    deps: dict[str, set[str]] = {}
    for lid, res in resources.items():
        d = references(res.get("Properties", {}))
        depends_on = res.get("DependsOn", [])
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        d |= set(depends_on)
        deps[lid] = {x for x in d if x in resources and x != lid}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(lid: str, path: list[str]) -> None:
        s = state.get(lid)
        if s == 2:
            return
        if s == 1:
            cycle = " -> ".join(path[path.index(lid):] + [lid])
            raise TemplateError(f"circular dependency between resources: {cycle}")
        state[lid] = 1
        for dep in sorted(deps[lid]):
            visit(dep, path + [lid])
        state[lid] = 2
        order.append(lid)

    for lid in resources:  # keep template order where free
        visit(lid, [])
    return order


# --------------------------------------------------------------------------- intrinsic functions


@dataclass
class Resolver:
    """Evaluates intrinsic functions with the physical ids/attributes of created resources."""

    template: Template
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    stack_id: str = ""
    _conditions: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stack_id:
            self.stack_id = (f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/"
                             f"{self.template.stack_name}/{uuid.uuid4()}")
        for name, spec in self.template.body.get("Parameters", {}).items():
            if name not in self.parameters:
                if "Default" not in spec:
                    raise TemplateError(f"parameter {name!r} has no Default; pass a value in parameters=")
                default = spec["Default"]
                if spec.get("Type", "").startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                    default = [s.strip() for s in str(default).split(",")]
                self.parameters[name] = default

    # pseudo parameters
    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.template.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.template.body.get("Conditions", {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def ref(self, name: str, where: str = "") -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        if name in self.template.resources:
            raise TemplateError(f"{where or 'a value'} refers to {name!r}, which was not created")
        raise TemplateError(f"{where or 'a value'} refers to {name!r}, which the template does not declare")

    def get_att(self, lid: str, attr: str, where: str = "") -> Any:
        if lid not in self.attributes:
            if lid in self.template.resources:
                raise TemplateError(f"{where or 'a value'} reads {lid}.{attr}, but {lid} was not created")
            raise TemplateError(f"{where or 'a value'} reads {lid}.{attr}, but the template has no {lid}")
        attrs = self.attributes[lid]
        if attr not in attrs:
            rtype = self.template.resources.get(lid, {}).get("Type", "?")
            raise TemplateError(
                f"{where or 'a value'} reads {lid}.{attr}: the local cloud does not provide attribute {attr!r} "
                f"of {rtype} (has: {', '.join(sorted(attrs)) or 'none'})"
            )
        return attrs[attr]

    def resolve(self, value: Any, where: str = "") -> Any:
        if isinstance(value, list):
            out = [self.resolve(v, where) for v in value]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            fn = self._functions().get(key)
            if fn is not None:
                return fn(arg, where)
            if key.startswith("Fn::"):
                raise TemplateError(f"{where or 'a value'} uses {key}, which the local cloud does not evaluate")
        out = {}
        for k, v in value.items():
            r = self.resolve(v, f"{where}.{k}" if where else k)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _functions(self) -> dict[str, Callable[[Any, str], Any]]:
        return {
            "Ref": lambda a, w: self.ref(a, w),
            "Fn::GetAtt": self._get_att,
            "Fn::Join": self._join,
            "Fn::Sub": self._sub,
            "Fn::Select": self._select,
            "Fn::Split": lambda a, w: str(self.resolve(a[1], w)).split(self.resolve(a[0], w)),
            "Fn::If": self._if,
            "Fn::Equals": lambda a, w: self.resolve(a[0], w) == self.resolve(a[1], w),
            "Fn::Not": lambda a, w: not self.resolve(a[0], w),
            "Fn::And": lambda a, w: all(self.resolve(x, w) for x in a),
            "Fn::Or": lambda a, w: any(self.resolve(x, w) for x in a),
            "Condition": lambda a, w: self.condition(a),
            "Fn::GetAZs": lambda a, w: [f"{self.resolve(a, w) or self.region}{z}" for z in "abc"],
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda a, w: base64.b64encode(str(self.resolve(a, w)).encode()).decode(),
            "Fn::ToJsonString": lambda a, w: json.dumps(self.resolve(a, w), separators=(",", ":")),
            "Fn::Length": lambda a, w: len(self.resolve(a, w)),
            "Fn::ImportValue": lambda a, w: self._unsupported("Fn::ImportValue", w),
        }

    def _unsupported(self, fn: str, where: str) -> Any:
        raise TemplateError(f"{where or 'a value'} uses {fn}: cross-stack references are not available locally")

    def _get_att(self, arg: Any, where: str) -> Any:
        if isinstance(arg, str):
            lid, attr = arg.split(".", 1)
        else:
            lid, attr = arg[0], self.resolve(arg[1], where)
        return self.get_att(lid, attr, where)

    def _join(self, arg: Any, where: str) -> str:
        sep, items = arg
        items = self.resolve(items, where)
        if not isinstance(items, list):
            raise TemplateError(f"{where}: Fn::Join needs a list, got {items!r}")
        return str(self.resolve(sep, where)).join(_to_str(i) for i in items)

    def _select(self, arg: Any, where: str) -> Any:
        index, items = int(self.resolve(arg[0], where)), self.resolve(arg[1], where)
        try:
            return items[index]
        except (IndexError, TypeError) as err:
            raise TemplateError(f"{where}: Fn::Select index {index} out of range of {items!r}") from err

    def _if(self, arg: Any, where: str) -> Any:
        name, yes, no = arg
        return self.resolve(yes if self.condition(name) else no, where)

    def _find_in_map(self, arg: Any, where: str) -> Any:
        name, k1, k2 = (self.resolve(a, where) for a in arg[:3])
        try:
            return self.template.body["Mappings"][name][k1][k2]
        except KeyError as err:
            raise TemplateError(f"{where}: Fn::FindInMap {name}/{k1}/{k2} not found") from err

    def _sub(self, arg: Any, where: str) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {k: self.resolve(v, where) for k, v in (arg[1] if len(arg) > 1 else {}).items()}

        def replace(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _to_str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                lid, attr = name.split(".", 1)
                return _to_str(self.get_att(lid, attr, where))
            return _to_str(self.ref(name, where))

        return re.sub(r"\$\{([^}]*)\}", replace, text)


def _to_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)
