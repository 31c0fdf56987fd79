"""Turn a pydantic model's JSON Schema into a Kubernetes *structural* OpenAPI v3 schema.

Kubernetes accepts only structural schemas in a CRD: every node has a type (or is int-or-string or
preserves unknown fields), no ``$ref``, ``anyOf``/``oneOf`` only as pure value validation, and
``additionalProperties`` never beside ``properties``. Pydantic emits JSON Schema 2020-12, so this module
inlines references, collapses ``Optional[X]`` to ``X`` (absent = null for Kubernetes), maps
``int | str`` to int-or-string and ``dict[str, Any]`` to preserve-unknown-fields, turns enum-/pattern-keyed
maps into CEL rules, and drops what a CRD does not carry (titles, defaults: defaults are applied by the
models, so the apiserver never rewrites a user's object).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROPPED = frozenset({"title", "default", "examples", "$defs", "discriminator", "readOnly", "writeOnly"})
_MERGED_LISTS = ("x-kubernetes-validations",)


class UnsupportedSchema(ValueError):
    """The model uses a construct with no structural equivalent; change the model, not the generator."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI schema of ``model`` (wire names, i.e. camelCase aliases)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), path=model.__name__)


def cel_string(value: str) -> str:
    """A CEL string literal (single-quoted) for ``value``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _merge(base: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in local.items():
        if key in _MERGED_LISTS and key in out:
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str, partial: bool = False) -> dict[str, Any]:
    """Convert one node; ``partial`` for the siblings of a $ref/anyOf (they carry no type of their own)."""
    node = {k: v for k, v in node.items() if k not in _DROPPED}
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        return _merge(_convert(target, defs, path), _convert(node, defs, path, partial=True))
    if "anyOf" in node:
        return _any_of(node, defs, path)
    if "allOf" in node or "oneOf" in node:
        raise UnsupportedSchema(f"{path}: allOf/oneOf are not generated (use a CelRule)")
    if "not" in node and set(node["not"]) != {"required"}:
        # `not: {required: [...]}` is the one junctor we emit: "these fields not together", for fields CEL
        # cannot see (typeless). Anything richer belongs in a CelRule.
        raise UnsupportedSchema(f"{path}: only `not: {{required: [...]}}` is supported")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    _exclusive_bounds(node)
    if "properties" in node:
        node["properties"] = {k: _convert(v, defs, f"{path}.{k}") for k, v in node["properties"].items()}
        if "required" in node:
            node["required"] = sorted(node["required"])
    if "items" in node:
        node["items"] = _convert(node["items"], defs, f"{path}[]")
    if "patternProperties" in node:
        _pattern_properties(node, path)
    if "propertyNames" in node:
        _key_rules(node, _convert(node.pop("propertyNames"), defs, path, partial=True))
    if "additionalProperties" in node:
        _additional_properties(node, defs, path)
    if not partial and node.get("type") is None and not _typeless_ok(node):
        raise UnsupportedSchema(f"{path}: no type (use AnyValue for a free-form value)")
    return node


def _typeless_ok(node: dict[str, Any]) -> bool:
    return bool(node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string"))


def _any_of(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
    local = _convert(node, defs, path, partial=True)
    if len(variants) == 1:
        return _merge(_convert(variants[0], defs, path), local)
    converted = [_convert(v, defs, path) for v in variants]
    types = {v.get("type") for v in converted}
    if types == {"integer", "string"}:
        # The form Kubernetes itself uses for resource.Quantity / IntOrString.
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        return _merge(out, local)
    if types == {"integer", "number"}:
        return _merge({"type": "number"}, local)
    raise UnsupportedSchema(f"{path}: union of {sorted(map(str, types))} has no structural form")


def _exclusive_bounds(node: dict[str, Any]) -> None:
    """JSON Schema 2020-12 numeric exclusive bounds -> OpenAPI v3.0 boolean form."""
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            node[plain] = value
            node[bound] = True


def _additional_properties(node: dict[str, Any], defs: dict[str, Any], path: str) -> None:
    extra = node.pop("additionalProperties")
    if extra is True or extra == {}:
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        if "properties" in node:
            raise UnsupportedSchema(f"{path}: additionalProperties beside properties is not structural")
        node["additionalProperties"] = _convert(extra, defs, f"{path}{{}}")
    # False: unknown fields are pruned (or refused by strict field validation) by the apiserver anyway.


def _pattern_properties(node: dict[str, Any], path: str) -> None:
    """``dict[Pattern, X]``: one value schema for every key, the key pattern moves to propertyNames."""
    patterns = node.pop("patternProperties")
    if len(patterns) != 1 or "additionalProperties" in node:
        raise UnsupportedSchema(f"{path}: only one key pattern per map is supported")
    (pattern, value), = patterns.items()
    node["additionalProperties"] = value
    node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}


def _key_rules(node: dict[str, Any], keys: dict[str, Any]) -> None:
    """Map key constraints (``propertyNames``) have no OpenAPI v3.0 form: express them in CEL."""
    rules = []
    if "enum" in keys:
        allowed = ", ".join(cel_string(str(v)) for v in keys["enum"])
        rules.append({"rule": f"self.all(k, k in [{allowed}])",
                      "message": "keys must be one of: " + ", ".join(map(str, keys["enum"]))})
    if "maxLength" in keys:
        rules.append({"rule": f"self.all(k, size(k) <= {keys['maxLength']})",
                      "message": f"keys must be at most {keys['maxLength']} characters"})
    if "pattern" in keys:
        rules.append({"rule": f"self.all(k, k.matches({cel_string(keys['pattern'])}))",
                      "message": f"keys must match {keys['pattern']}"})
    if rules:
        node["x-kubernetes-validations"] = rules + node.get("x-kubernetes-validations", [])
