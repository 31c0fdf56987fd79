"""The six kinds as the plugin names them: plural, short names and ``kind/name`` references. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_operator.api.v1alpha1 import GROUP, KINDS, VERSION

KIND_ORDER = ("FeatureSet", "ModelVersion", "ModelDeployment", "RetrainPolicy", "HyperparameterSearch",
              "BatchPrediction")
PLURALS = {k.kind: k.plural for k in KINDS}
SHORT = {k.kind: k.short_names[0] for k in KINDS}

_ALIASES: dict[str, str] = {}
for _info in KINDS:
    for _alias in (_info.kind.lower(), _info.plural, _info.singular, *_info.short_names):
        _ALIASES[_alias] = _info.kind
        _ALIASES[f"{_alias}.{GROUP}"] = _info.kind


@dataclass(frozen=True)
class Ref:
    kind: str  # e.g. ModelVersion
    name: str

    def __str__(self) -> str:
        return f"{SHORT[self.kind]}/{self.name}"


def kind_of(text: str) -> str:
    """``mv``, ``modelversion``, ``modelversions`` or ``modelversions.mlops.dev`` -> ``ModelVersion``."""
    kind = _ALIASES.get(text.lower())
    if kind is None:
        known = ", ".join(f"{SHORT[k]} ({k})" for k in KIND_ORDER)
        raise ValueError(f"unknown kind {text!r}: use one of {known}")
    return kind


def parse_ref(args: list[str], allowed: tuple[str, ...] = KIND_ORDER) -> Ref:
    """``["mv/bc-v1"]`` or ``["mv", "bc-v1"]`` -> Ref; ValueError with a usage hint otherwise."""
    if len(args) == 1 and "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
    elif len(args) == 2 and "/" not in args[0]:
        kind_text, name = args
    else:
        raise ValueError(f"expected <kind>/<name> or <kind> <name>, got {' '.join(args)!r}")
    if not name:
        raise ValueError(f"no name in {'/'.join(args)!r}")
    kind = kind_of(kind_text)
    if kind not in allowed:
        raise ValueError(f"{kind} is not supported here: use {' or '.join(SHORT[k] for k in allowed)}")
    return Ref(kind, name)


API = (GROUP, VERSION)
