"""Deterministic names and label values for the objects the operator creates.

Children are found again by name after a crash, so names are pure functions of the parent: no
``generateName``, no randomness. Kubernetes caps Job names (they become the ``job-name`` label) and label
values at 63 characters; a longer name is truncated and suffixed with a short hash of the full name, so
two long parents that share a prefix still get different children.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_HASH_LEN = 8
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def _shorten(text: str, limit: int, strip: str) -> str:
    """``text`` if it fits, else its head plus ``-<hash of text>``; the head never ends in ``strip``."""
    if len(text) <= limit:
        return text
    head = text[: limit - _HASH_LEN - 1].rstrip(strip)
    return f"{head}-{_digest(text)}"


def child_name(*parts: str, limit: int = MAX_NAME) -> str:
    """Join ``parts`` with ``-`` into a DNS-1123 label of at most ``limit`` characters.

    >>> child_name("mv", "bc-v7", "train")
    'mv-bc-v7-train'
    >>> len(child_name("mv", "x" * 80, "train"))
    63
    """
    return _shorten("-".join(p for p in parts if p), limit, "-.")


def label_value(value: str) -> str:
    """A valid label value for ``value`` (<= 63 chars, alphanumeric ends); hashed when it had to change.

    >>> label_value("breast-cancer")
    'breast-cancer'
    """
    if len(value) <= MAX_NAME and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value).strip("-_.") or "x"
    head = cleaned[: MAX_NAME - _HASH_LEN - 1].rstrip("-_.")
    return f"{head}-{_digest(value)}"
