"""Unpickling a version's `model.joblib` without pandas when the estimator does not need it.

scikit-learn imports pandas at import time whenever it is installed, and pandas imports pyarrow: about
100 MiB of a serving process that an estimator fitted on arrays never uses. scikit-learn tells a DataFrame
from an array by looking in `sys.modules`, and imports pandas inside the functions that need it, so nothing
it does later depends on that first import.

So the first attempt unpickles with pandas and pyarrow hidden from the loading thread: their import fails
there, and other threads are not affected. A pickle that needs them (a FeatureSet pipeline, an object from
any module that imports pandas) fails that attempt with ImportError, and the second attempt loads them as
usual. Once the estimator is
loaded they are importable again: a model that builds a DataFrame per request imports pandas on first use.
rich (about 2 MiB) is hidden the same way: scikit-learn only draws training progress bars with it, which a
serving process never shows.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("mlops_operator.serve")

# Loaded only when the estimator needs them (pandas imports pyarrow when it is installed).
DEFERRED_MODULES = ("pandas", "pyarrow", "rich")

class _HiddenOnThisThread:
    """A meta path finder refusing `names` (and their submodules) to the thread that installed it.

    Only the loading thread is refused: a request served meanwhile on another thread (inference logging
    writing Parquet, an entity lookup) imports them as usual, and once imported they are simply there.
    """

    def __init__(self, names: tuple[str, ...]):
        self.names = frozenset(names)
        self.thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"{fullname} is not loaded while the model is unpickled", name=fullname)
        return None


@contextmanager
def hidden_modules(names: tuple[str, ...]) -> Iterator[None]:
    """Make `import <name>` fail on this thread for each name not yet imported, until the block ends."""
    finder = _HiddenOnThisThread(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def unpickle_estimator(data: bytes) -> Any:
    """The estimator in `data` (joblib bytes whose sha256 the caller has checked), with pandas only if it needs it."""
    import joblib

    try:
        with hidden_modules(DEFERRED_MODULES):
            return joblib.load(io.BytesIO(data))
    except ImportError as exc:
        log.info("the estimator needs %s: loading it with pandas", exc.name or exc)
    return joblib.load(io.BytesIO(data))
