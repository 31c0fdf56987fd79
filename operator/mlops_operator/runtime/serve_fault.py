"""`MLOPS_FAULT`: a deliberate misbehaviour switch, FOR TESTING ROLLBACKS ONLY.

End-to-end tests need a "bad version" to prove that canary analysis catches it and traffic returns to
stable. Setting `MLOPS_FAULT` on a server makes it that bad version without building a bad model:

    MLOPS_FAULT=error          every predict answers 500 (an InferenceError, like a broken model)
    MLOPS_FAULT=error:0.2      every 5th predict answers 500 (deterministic spacing, not random)
    MLOPS_FAULT=slow:0.2       every predict takes 0.2 s longer (awaited, so other requests still flow)
    MLOPS_FAULT=slow:0.05,error:0.1   both

Only predictions are affected; health, readiness and metrics stay truthful, exactly as a degraded model
would look to the rollout analysis. Never set it in production: the server logs a warning at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Fault:
    error_rate: float = 0.0
    delay_seconds: float = 0.0
    spec: str = ""
    _calls: int = field(default=0, repr=False)

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.delay_seconds > 0

    def should_fail(self) -> bool:
        """True on exactly floor(n * rate) of the first n calls, evenly spaced."""
        if self.error_rate <= 0:
            return False
        before = math.floor(self._calls * self.error_rate + 1e-9)
        self._calls += 1
        return math.floor(self._calls * self.error_rate + 1e-9) > before


def parse_fault(spec: str | None) -> Fault:
    """Parse `MLOPS_FAULT`; a malformed value is a deployment mistake, so it raises ValueError (fail at start)."""
    fault = Fault(spec=(spec or "").strip())
    for item in filter(None, (part.strip() for part in fault.spec.split(","))):
        kind, _, arg = item.partition(":")
        try:
            value = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"MLOPS_FAULT: {item!r} has a non-numeric argument") from None
        if kind == "error":
            rate = 1.0 if value is None else value
            if not 0 < rate <= 1:
                raise ValueError(f"MLOPS_FAULT: error rate must be in (0, 1], got {arg}")
            fault.error_rate = rate
        elif kind == "slow":
            if value is None or not 0 < value <= 60:
                raise ValueError(f"MLOPS_FAULT: slow needs seconds in (0, 60], got {arg!r}")
            fault.delay_seconds = value
        else:
            raise ValueError(f"MLOPS_FAULT: unknown fault {kind!r}; expected error[:rate] or slow:<seconds>")
    return fault
