"""The import contracts of `make lint` (pyproject.toml, [tool.importlinter]) hold, and they bite.

The real contracts run against a scratch copy of `operator/mlops_operator`; the copy passes as it is, and
each case adds one import that crosses a layer the wrong way and must make `lint-imports` fail, naming
the broken contract. The layers and their reasons: docs/architecture.md.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "operator" / "mlops_operator"


def lint_imports_bin() -> str:
    """lint-imports from this interpreter's environment; fails (never skips) when it is missing."""
    path = pathlib.Path(sys.executable).parent / "lint-imports"
    if not path.is_file():
        pytest.fail(f"{path} not found: `make venv` installs the dev extras (import-linter is pinned there)")
    return str(path)


def lint(tree: pathlib.Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repository's contracts against the package copy in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "operator"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([lint_imports_bin(), "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> pathlib.Path:
    """A copy of the package and of pyproject.toml (its contracts) in a temporary tree."""
    tree = tmp_path_factory.mktemp("layers")
    shutil.copytree(PACKAGE, tree / "operator" / "mlops_operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_given_the_tree_as_it_is_when_linted_then_every_contract_is_kept(scratch):
    result = lint(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (module that gains the import, the import, the contract that must break)
UPWARD = [
    ("api/v1alpha1/common.py", "import mlops_operator.logic.status", "operator-layers"),
    ("builders/names.py", "import mlops_operator.providers.kube", "operator-layers"),
    ("logic/gates.py", "import mlops_operator.handlers.references", "operator-layers"),
    ("providers/kube.py", "import mlops_operator.web", "operator-layers"),
    ("web.py", "import mlops_operator.main", "operator-layers"),
    ("handlers/reconciler.py", "import mlops_operator.web", "operator-layers"),
    ("instruments.py", "import mlops_operator.handlers.reconciler", "operator-layers"),
    ("features/stats.py", "import mlops_operator.runtime.job_main", "pod-layers"),
    ("logic/analysis.py", "import numpy", "operator-image"),
    ("providers/storage.py", "import mlops_operator.features.dtypes", "operator-image"),
    ("runtime/serve.py", "import mlops_operator.handlers.reconciler", "pods-not-operator"),
    ("errors.py", "import mlops_operator.api.v1alpha1.common", "neutral"),
    ("runtime/serve_model.py", "import kserve", "serving-lean"),
    ("runtime/train.py", "import kubernetes", "runtime-image"),
]


@pytest.mark.parametrize(("module", "statement", "contract"), UPWARD,
                         ids=[f"{m}:{s.split()[-1]}" for m, s, _ in UPWARD])
def test_given_one_import_the_wrong_way_when_linted_then_lint_fails_naming_the_contract(
        scratch, tmp_path, module, statement, contract):
    tree = tmp_path / "tree"
    shutil.copytree(scratch, tree)
    target = tree / "operator" / "mlops_operator" / module
    target.write_text(target.read_text() + f"\n{statement}  # the crossing this test plants\n")

    result = lint(tree)

    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    names = _contract_names(tree)
    assert names[contract] in "\n".join(broken), result.stdout
    importer = "mlops_operator." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout


def _contract_names(tree: pathlib.Path) -> dict[str, str]:
    """Contract id -> the name lint-imports prints."""
    config = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}
