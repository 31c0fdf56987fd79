"""The model server's failures, by whose fault they are: the HTTP layer maps each to one status code.

Plain exceptions, so the serving path needs no inference framework. The messages keep the wording clients
of kserve-style servers already see (``Model with name <m> is not ready.``).
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """The client's mistake (400); the message names the problem."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ModelNotReady(RuntimeError):
    """The model is not loaded (503); `detail` says why."""

    def __init__(self, model_name: str, detail: str | None = None):
        message = f"Model with name {model_name} is not ready."
        super().__init__(f"{message} {detail}" if detail else message)
        self.model_name = model_name


class InferenceError(RuntimeError):
    """The model failed on valid input (500)."""
