"""Unpickling a version's `model.joblib` without pandas when the estimator does not need it.

scikit-learn imports pandas at import time whenever it is installed, and pandas imports pyarrow: about
100 MiB of a serving process that an estimator fitted on arrays never uses. scikit-learn tells a DataFrame
from an array by looking in `sys.modules`, and imports pandas inside the functions that need it, so nothing
it does later depends on that first import.

So the first attempt unpickles with pandas and pyarrow hidden (`None` in `sys.modules`, which makes their
import fail). A pickle that needs them (a FeatureSet pipeline, an object from any module that imports pandas)
fails that attempt with ImportError, and the second attempt loads them as usual. Once the estimator is
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

_hiding = threading.Lock()


@contextmanager
def hidden_modules(names: tuple[str, ...]) -> Iterator[None]:
    """Make `import <name>` fail for each name not yet imported (one already imported stays), until the block ends."""
    with _hiding:
        hidden = [name for name in names if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" marker
        try:
            yield
        finally:
            for name in hidden:
                if sys.modules.get(name, False) is None:
                    del sys.modules[name]


def unpickle_estimator(data: bytes) -> Any:
    """The estimator in `data` (joblib bytes whose sha256 the caller has checked), with pandas only if it needs it."""
    import joblib

    try:
        with hidden_modules(DEFERRED_MODULES):
            return joblib.load(io.BytesIO(data))
    except ImportError as exc:
        log.info("the estimator needs %s: loading it with pandas", exc.name or exc)
    return joblib.load(io.BytesIO(data))
