"""Text for every verb, from the plain data the pure modules return. Pure (strings in, string out).

Plain, aligned text; ``dump`` gives the same data as JSON or YAML (``-o json|yaml``).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import yaml


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    raise ValueError(f"unknown output format {fmt!r}: json or yaml")


def num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], gap: int = 3) -> str:
    """Columns padded to their widest cell (the last column is not padded), like ``kubectl get``."""
    cells = [[str(h) for h in headers]] + [["-" if c is None or c == "" else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        line = "".join(c.ljust(widths[i] + gap) if i < len(r) - 1 else c for i, c in enumerate(r))
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def _columns(lines: list[tuple[str, str, str]], gap: int = 2) -> list[str]:
    """Rows (label, phase, detail) aligned; a row with neither phase nor detail (a title) is not measured."""
    items = [(a, b, c) for a, b, c in lines if b or c]
    w0 = max((len(a) for a, _, _ in items), default=0)
    w1 = max((len(b) for _, b, _ in items), default=0)
    return [f"{a.ljust(w0 + gap)}{b.ljust(w1 + gap)}{c}".rstrip() if (b or c) else a for a, b, c in lines]


# ---------------------------------------------------------------------------------------------- get


def _not_ready(row: dict[str, Any]) -> str:
    nr = row.get("notReady")
    if not nr or row.get("phase") in ("Ready", "Succeeded", "Idle", "CoolingDown"):
        return ""
    text = nr.get("reason") or ""
    if nr.get("message"):
        text += f": {nr['message']}"
    return text


def _join(row: dict[str, Any], *parts: str | None) -> str:
    """The parts that are set, two spaces apart, then why the object is not Ready (if it is not)."""
    return "  ".join([p for p in parts if p] + [_not_ready(row)]).strip()


def _featureset(row: dict[str, Any]) -> str:
    latest = row.get("latestVersion")
    rows = f" ({row['rows']} rows)" if row.get("rows") is not None else ""
    return _join(row, latest and f"latest {latest}{rows}", "quality failed" if row.get("qualityPassed") is False else None,
                 row.get("activeJob") and f"job {row['activeJob']}")


def _version(row: dict[str, Any]) -> str:
    metric = row.get("metric") or {}
    return _join(row, (row.get("stage") or "-").ljust(10),
                 metric.get("name") and f"{metric['name']}={num(metric.get('value'))}",
                 row.get("data") and f"data {row['data']}")


def _deployment(row: dict[str, Any]) -> str:
    weights, runs, pp = row.get("weights") or {}, row.get("analysis") or [], row.get("postPromotion")
    return _join(
        row, row.get("strategy") or "Recreate",
        row.get("step") and f"step {row['step']}",
        " ".join(f"{v}:{w}%" for v, w in weights.items()),
        row.get("mirrorPercent") and row.get("candidate") and f"mirror {row['mirrorPercent']}% to {row['candidate']}",
        "spec.paused" if row.get("paused") else None,
        pp and f"post-promotion until {pp.get('until')} (previous {pp.get('previous')} warm)",
        runs and "analysis " + ", ".join(
            f"{r.get('metric')} {'ok' if r.get('passed') else 'FAIL'} {num(r.get('value'))}" for r in runs),
        row.get("blocked") and "blocked " + ",".join(row["blocked"]),
        row.get("endpoint") if row.get("phase") == "Succeeded" else None)


def _policy(row: dict[str, Any]) -> str:
    if row["kind"] == "RetrainPolicy":
        last = row.get("lastTrigger") or {}
        return _join(row, f"retrains {row.get('retrains', 0)}",
                     row.get("active") and "training " + ",".join(row["active"]),
                     last and f"last {last.get('source')} {last.get('at', '')} -> {last.get('modelVersion', '-')}")
    best = row.get("best") or {}
    return _join(row, f"trials {row.get('completed', 0)}/{row.get('maxTrials') or '-'}",
                 best.get("trial") and f"best {best['trial']}={num(best.get('value'))}",
                 row.get("registered") and f"registered {row['registered']}")


def _batch(row: dict[str, Any]) -> str:
    rows = f" ({row['rows']} rows)" if row.get("rows") is not None else ""
    return _join(row, f"with {row.get('modelVersion')}", row.get("schedule") and f"schedule {row['schedule']!r}",
                 row.get("lastRun") and f"last run {row['lastRun']}{rows}", row.get("activeJob") and f"job {row['activeJob']}")


_SHORT = {"FeatureSet": "fs", "ModelVersion": "mv", "ModelDeployment": "mdep", "RetrainPolicy": "rp",
          "HyperparameterSearch": "hps", "BatchPrediction": "bp"}
_SECTIONS = (("features", _featureset), ("versions", _version), ("deployments", _deployment), ("policies", _policy),
             ("batch", _batch))


def tree(models: list[dict[str, Any]], all_namespaces: bool = False) -> str:
    """One tree per model: features -> versions -> deployments -> policies -> batch, columns aligned across trees."""
    if not models:
        return "No mlops.dev resources found.\n"
    lines: list[tuple[str, str, str]] = []
    for m in models:
        title = m["model"] if m["model"] is not None else "(FeatureSets no model uses)"
        lines.append((f"{m['namespace']}/{title}" if all_namespaces else title, "", ""))
        sections = [(s, m[s], fn) for s, fn in _SECTIONS if m.get(s)]
        for i, (section, rows, fn) in enumerate(sections):
            last_section = i == len(sections) - 1
            lines.append((("└── " if last_section else "├── ") + section, "", ""))
            stem = "    " if last_section else "│   "
            for j, row in enumerate(rows):
                branch = "└── " if j == len(rows) - 1 else "├── "
                lines.append((stem + branch + f"{_SHORT[row['kind']]}/{row['name']}", row.get("phase") or "-", fn(row)))
        lines.append(("", "", ""))
    return "\n".join(_columns(lines)).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------------------ history


def history(data: dict[str, Any]) -> str:
    head = f"{data['name']}: phase {data.get('phase') or '-'}, stable {data.get('stable') or '-'}"
    if data.get("candidate"):
        head += f", candidate {data['candidate']}"
    out = head + "\n"
    if data.get("blocked"):
        out += f"blocked (track skips them until `kubectl mlops retry {data['name']}`): {', '.join(data['blocked'])}\n"
    pp = data.get("postPromotion")
    if pp:
        out += f"post-promotion window: {pp.get('version')} until {pp.get('until')} (previous {pp.get('previous')} warm)\n"
    if not data.get("entries"):
        return out + "No finished rollouts yet.\n"
    rows = [(e.get("at"), e.get("event"), e.get("version"), e.get("reason")) for e in data["entries"]]
    return out + "\n" + table(("AT", "EVENT", "VERSION", "REASON"), rows)


# ------------------------------------------------------------------------------------------ compare


def compare(data: dict[str, Any]) -> str:
    rows = []
    section = None
    for r in data["rows"]:
        label = r["field"] if r["section"] == section else f"{r['section']}.{r['field']}"
        section = r["section"]
        delta = r.get("delta")
        rows.append(("*" if r["differs"] else " ", label, num(r["a"]), num(r["b"]),
                     (("+" if delta > 0 else "") + num(delta)) if delta is not None else " "))
    return table(("", "FIELD", data["a"], data["b"], "DELTA"), rows, gap=2)


# ---------------------------------------------------------------------------------------------- why


def why(data: dict[str, Any]) -> str:
    out = []
    for step in data["chain"]:
        pad = "   " * step["depth"] + ("└─ " if step["depth"] else "")
        head = f"{pad}{step['object']}"
        if step.get("phase"):
            head += f"  {step['phase']}"
        ready = step.get("ready")
        if ready and ready.get("status") != "True":
            head += f"  Ready={ready.get('status')} {ready.get('reason') or ''}".rstrip()
        out.append(head)
        inner = "   " * step["depth"] + ("   " if step["depth"] else "") + "   "
        if ready and ready.get("status") != "True" and ready.get("message"):
            out.append(f"{inner}{ready['message']}")
        for cond in step.get("conditions") or ():
            out.append(f"{inner}{cond['type']}={cond['status']} {cond.get('reason') or ''}: {cond.get('message') or ''}".rstrip(": "))
        for line in step.get("detail") or ():
            out.append(f"{inner}{line}")
    if data.get("healthy"):
        out.append("\nHealthy: nothing to fix.")
    if data.get("next"):
        out.append("\nNext:")
        out.extend(f"  {c}" for c in data["next"])
    return "\n".join(out) + "\n"
