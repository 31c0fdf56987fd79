"""The API reference (``docs/api-reference.md``) rendered from the CRDs' OpenAPI schemas.

Written by ``python -m mlops_operator.api.crdgen`` next to the CRDs and checked for staleness with them, so
the reference says exactly what the apiserver enforces: every field's type, description, default and
bounds, and every CEL rule's message. Pure: a CRD in, Markdown out.
"""

from __future__ import annotations

from typing import Any, Iterator

PATH = "docs/api-reference.md"


def _cell(text: str, table: bool = True) -> str:
    """One line of text; a pipe is escaped where it would end a table cell."""
    line = " ".join(str(text).split())
    return line.replace("|", "\\|") if table else line


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return "any"
    kind = node.get("type", "")
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    if node.get("format"):
        return f"{kind} ({node['format']})"
    return kind or "object"


_BOUNDS = (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"), ("exclusiveMaximum", "< {}"),
           ("minLength", "length ≥ {}"), ("maxLength", "length ≤ {}"), ("minItems", "items ≥ {}"),
           ("maxItems", "items ≤ {}"), ("minProperties", "keys ≥ {}"), ("maxProperties", "keys ≤ {}"))


def _details(node: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "default" in node:
        out.append(f"default `{node['default']}`")
    out += [fmt.format(node[key]) for key, fmt in _BOUNDS if key in node]
    if "pattern" in node:
        out.append(f"pattern `{node['pattern']}`")
    for alt in node.get("anyOf", []):  # int-or-string alternatives carry their own bounds
        out += [fmt.format(alt[key]) for key, fmt in _BOUNDS if key in alt]
    return out


def _walk(node: dict[str, Any], path: str, required: bool = False,
          is_field: bool = False) -> Iterator[tuple[str, dict[str, Any], bool, bool]]:
    """(path, node, required, is a named field) for ``node`` and everything below it, fields sorted by name;
    list items are ``path[]`` and map values ``path.*``."""
    yield path, node, required, is_field
    needed = set(node.get("required", []))
    for name in sorted(node.get("properties", {})):
        yield from _walk(node["properties"][name], f"{path}.{name}", name in needed, True)
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], path + ".*")


def _table(schema: dict[str, Any], root: str) -> list[str]:
    lines = ["| field | type | description |", "| --- | --- | --- |"]
    for path, node, required, is_field in _walk(schema, root):
        if not is_field:
            continue
        text = _cell(node.get("description", ""))
        details = _details(node)
        if required:
            details.insert(0, "**required**")
        if details:
            text += (" " if text else "") + "(" + "; ".join(_cell(d) for d in details) + ")"
        lines.append(f"| `{path}` | {_cell(_type(node))} | {text} |")
    return lines


def _anchor(kind: str) -> str:
    return kind.lower()


def kind_section(crd: dict[str, Any]) -> list[str]:
    spec = crd["spec"]
    names, version = spec["names"], spec["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    lines = [f"## {names['kind']}", "", _cell(schema.get("description", "")), "",
             f"`kubectl get {names['plural']}` (short names: {', '.join(names.get('shortNames', []))}; "
             f"category: {', '.join(names.get('categories', []))}). Columns: "
             + ", ".join(f"{c['name']} (`{c['jsonPath']}`)" for c in version.get("additionalPrinterColumns", []))
             + ".", ""]
    for part in ("spec", "status"):
        node = schema["properties"][part]
        lines += [f"### {names['kind']} {part}", "", _cell(node.get("description", "")), ""]
        lines += _table(node, part)
        rules = [(path, rule["message"]) for path, sub, _, _ in _walk(node, part)
                 for rule in sub.get("x-kubernetes-validations", [])]
        if rules:
            lines += ["", "Rules the apiserver checks at apply time (CEL):", ""]
            lines += [f"- `{path}`: {_cell(message, table=False)}" for path, message in rules]
        lines.append("")
    return lines


def render(crds: list[dict[str, Any]]) -> str:
    """The whole reference for ``crds`` (in the order given)."""
    group = crds[0]["spec"]["group"]
    version = crds[0]["spec"]["versions"][0]["name"]
    lines = [
        f"# API reference: {group}/{version}",
        "",
        "<!-- Generated by `python -m mlops_operator.api.crdgen` (make crds) from the CRDs; do not edit. -->",
        "",
        "Every field of every kind, as the apiserver validates it: type, description, default and bounds, and the",
        "cross-field rules checked at `kubectl apply`. Status fields are written by the operator only. The",
        "conventions shared by every status (phase, conditions, `Reconciling`/`Stalled`, `observedGeneration`)",
        "are explained in [architecture.md](architecture.md#status-and-condition-conventions).",
        "",
        "Kinds: " + ", ".join(f"[{c['spec']['names']['kind']}](#{_anchor(c['spec']['names']['kind'])})" for c in crds),
        "",
    ]
    for crd in crds:
        lines += kind_section(crd)
    return "\n".join(lines).rstrip("\n") + "\n"
