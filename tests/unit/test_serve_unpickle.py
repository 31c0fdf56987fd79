"""Hiding modules while a model is unpickled: only from the loading thread, and only until it is done."""

from __future__ import annotations

import importlib
import sys
import threading

import pytest

from mlops_operator.runtime.serve_unpickle import hidden_modules

pytestmark = pytest.mark.unit


@pytest.fixture()
def module_name(tmp_path, monkeypatch) -> str:
    """A module nobody has imported yet, with a submodule."""
    name = f"deferred_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / name / "part.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


def test_given_a_hidden_module_when_the_loading_thread_imports_it_then_module_not_found_naming_it(module_name):
    with hidden_modules((module_name,)):
        with pytest.raises(ModuleNotFoundError) as err:
            importlib.import_module(module_name + ".part")
    assert err.value.name == module_name and module_name not in sys.modules


def test_given_a_hidden_module_when_another_thread_imports_it_meanwhile_then_it_loads_there(module_name):
    seen: list[int] = []
    with hidden_modules((module_name,)):
        worker = threading.Thread(target=lambda: seen.append(importlib.import_module(module_name).VALUE))
        worker.start()
        worker.join(timeout=30)
        assert seen == [1]
        assert importlib.import_module(module_name).VALUE == 1  # imported now: nothing left to hide


def test_given_the_block_ended_when_the_module_is_imported_then_it_loads(module_name):
    with hidden_modules((module_name,)):
        pass
    assert importlib.import_module(module_name + ".part").VALUE == 2
    assert not [f for f in sys.meta_path if type(f).__name__ == "_HiddenOnThisThread"]
