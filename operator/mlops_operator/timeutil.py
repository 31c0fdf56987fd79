"""Time helpers shared across layers, with no dependencies of their own.

Timestamps the project writes (status fields, manifests, summaries, quality reports) are RFC 3339 in UTC
with second precision and a ``Z`` suffix, e.g. ``2026-01-31T12:00:00Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ts: datetime) -> str:
    """``ts`` as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (a naive ``ts`` is taken as local time, as ``astimezone`` does)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
