"""Make openapi.json: the DigitalOcean API operations Phoenix and its lab use, from upstream.

Run by hand (it needs PyYAML) when the upstream description moves
(`python3 contracts/digitalocean/bundle.py PATH/TO/digitalocean-openapi/specification`); the
output is committed, so tests and CI never need the full description. What it does, and
nothing else:

- keeps only OPERATIONS, with every $ref resolved inline (no examples, code samples or
  descriptions: they are documentation, not contract);
- tightens the response objects Phoenix reads: an `allOf` of objects becomes one object,
  and every object with `properties` gets `additionalProperties: false`, so a field the lab
  invents (or DigitalOcean would not send) fails validation;
- the same for request bodies: a field Phoenix sends that DigitalOcean does not know fails.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

OPERATIONS = {  # path: methods, exactly as in DigitalOcean-public.v2.yaml
    "/v2/account/keys": ("get", "post"),
    "/v2/account/keys/{ssh_key_identifier}": ("get", "delete"),
    "/v2/actions": ("get",),
    "/v2/actions/{action_id}": ("get",),
    "/v2/droplets": ("get", "post", "delete"),
    "/v2/droplets/{droplet_id}": ("get", "delete"),
    "/v2/droplets/{droplet_id}/actions": ("get", "post"),
    "/v2/droplets/{droplet_id}/actions/{action_id}": ("get",),
    "/v2/reserved_ips": ("get", "post"),
    "/v2/reserved_ips/{reserved_ip}": ("get", "delete"),
    "/v2/reserved_ips/{reserved_ip}/actions": ("post",),
    "/v2/reserved_ips/{reserved_ip}/actions/{action_id}": ("get",),
    "/v2/tags": ("get", "post"),
    "/v2/tags/{tag_id}": ("get",),
}
# `discriminator` only names branches of a oneOf by file reference (which the bundle no longer
# has); the oneOf itself still decides.
DROP = {
    "example",
    "examples",
    "x-codeSamples",
    "description",
    "summary",
    "externalDocs",
    "discriminator",
}

_files: dict[Path, object] = {}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: `off` (a droplet status) stays a string, not False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load(path: Path) -> object:
    if path not in _files:
        _files[path] = yaml.load(path.read_text(), Loader=_Loader)
    return _files[path]


def resolve(node: object, base: Path, depth: int = 0, names: bool = False) -> object:
    """`node` with every $ref (relative file#/pointer) replaced by what it points at."""
    if depth > 60:
        raise RecursionError(f"$ref cycle near {base}")
    if isinstance(node, list):
        return [resolve(item, base, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        file, _, pointer = ref.partition("#")
        target = (base.parent / file).resolve() if file else base
        value = _load(target)
        for part in filter(None, pointer.split("/")):
            value = value[part.replace("~1", "/").replace("~0", "~")]
        merged = resolve(value, target, depth + 1)
        extra = {k: v for k, v in node.items() if k != "$ref" and k not in DROP}
        return {**merged, **resolve(extra, base, depth + 1)} if extra else merged
    # Under `properties` the keys are field names ("description" is one of a size's).
    return {
        k: resolve(v, base, depth + 1, names=k == "properties" and not names)
        for k, v in node.items()
        if names or k not in DROP
    }


def _merge_all_of(schema: dict) -> dict:
    parts = [tighten(p) for p in schema["allOf"]]
    out = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        for key, value in part.items():
            if key == "properties":
                out.setdefault("properties", {}).update(value)
            elif key == "required":
                out["required"] = sorted(set(out.get("required", [])) | set(value))
            elif key != "additionalProperties":
                out.setdefault(key, value)
    return out


def tighten(schema: object) -> object:
    """Closed objects: unknown response fields fail."""
    if isinstance(schema, list):
        return [tighten(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "allOf" in schema and all(isinstance(p, dict) for p in schema["allOf"]):
        schema = _merge_all_of(schema)
    out = {
        k: tighten(v) if k in ("items", "oneOf", "anyOf", "not") else v for k, v in schema.items()
    }
    if "properties" in out:
        out["properties"] = {k: tighten(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def bundle(spec_dir: Path) -> dict:
    root_file = spec_dir / "DigitalOcean-public.v2.yaml"
    root = _load(root_file)
    paths: dict = {}
    for path, methods in OPERATIONS.items():
        item = root["paths"][path]
        for method in methods:
            op = resolve(item[method], root_file)
            for response in op.get("responses", {}).values():
                response["description"] = response.get("description", "")  # required by OAS
                for media in (response.get("content") or {}).values():
                    media["schema"] = tighten(media.get("schema", {}))
            for media in ((op.get("requestBody") or {}).get("content") or {}).values():
                media["schema"] = tighten(media.get("schema", {}))
            paths.setdefault(path, {})[method] = op
    return {
        "openapi": root["openapi"],
        "info": {
            "title": "DigitalOcean API (the subset Phoenix uses)",
            "version": root["info"]["version"],
        },
        "servers": [{"url": "https://api.digitalocean.com"}],
        "paths": paths,
    }


if __name__ == "__main__":
    spec = Path(sys.argv[1]).resolve()
    out = Path(__file__).with_name("openapi.json")
    out.write_text(json.dumps(bundle(spec), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
