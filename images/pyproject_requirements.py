"""Print the pinned requirements of pyproject.toml (base + chosen extras), one per line.

Why: the image build installs dependencies in their own layer, before the code is copied, so a code
change rebuilds only the last layer. Reading the lists straight from pyproject.toml keeps it the single
source of the pins (no requirements.txt twin to drift). Self-references such as
"mlops-operator[runtime]" inside an extra are expanded, never installed.

Usage: python3 pyproject_requirements.py pyproject.toml [--without-operator-only] [extra ...]

--without-operator-only leaves out the base dependencies listed in [tool.mlops-images] operator-only
(Kopf, the Kubernetes client, ...): the runtime image's processes never import them.
"""
import re
import sys
import tomllib


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """Base dependencies plus each extra, self-references expanded, order kept, duplicates dropped."""
    own = _name(project["name"])
    optional = project.get("optional-dependencies", {})
    out: list[str] = []
    pending = [(req, None) for req in project.get("dependencies", [])]
    pending += [(None, extra) for extra in extras]
    seen_extras: set[str] = set()
    while pending:
        req, extra = pending.pop(0)
        if extra is not None:
            if extra in seen_extras:
                continue
            if extra not in optional:
                raise SystemExit(f"pyproject.toml has no optional-dependencies extra {extra!r}")
            seen_extras.add(extra)
            pending += [(r, None) for r in optional[extra]]
        elif _name(req) == own:
            inner = re.search(r"\[([^\]]*)\]", req)
            pending += [(None, e.strip()) for e in (inner.group(1).split(",") if inner else [])]
        elif req not in out:
            out.append(req)
    return out


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1], "rb") as f:
        doc = tomllib.load(f)
    args = [a for a in sys.argv[2:] if a]
    excluded: set[str] = set()
    if "--without-operator-only" in args:
        args.remove("--without-operator-only")
        excluded = {_name(n) for n in doc.get("tool", {}).get("mlops-images", {}).get("operator-only", [])}
        if not excluded:
            raise SystemExit("pyproject.toml has no [tool.mlops-images] operator-only list")
    print("\n".join(r for r in requirements(doc["project"], args) if _name(r) not in excluded))


if __name__ == "__main__":
    main()
