"""Errors shared across layers, with no dependencies of their own.

``InvalidInput`` is raised wherever the user's spec or data is unusable: by the feature math in
``features/``, by the runtime entrypoints in ``runtime/`` (which map it to exit code 2, so the Job fails
at once and is never retried). It lives here, below both, so that ``features/`` never imports ``runtime/``.
``runtime.job_main`` and ``runtime.train_config`` re-export it under its old names.
"""

from __future__ import annotations


class InvalidInput(Exception):
    """The user's spec or data cannot be used; retrying will not help (exit code 2)."""
