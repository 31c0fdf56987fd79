"""Deterministic traffic split and shadow sampling. Pure, no I/O, no randomness.

Smooth weighted round-robin (nginx's algorithm): each pick adds every variant's weight to its running
score, takes the highest, and subtracts the total from the winner. Over every window of `total` picks the
counts are exact, and the minority variant is spread evenly instead of arriving in bursts.
Worked example, weights stable 9 / candidate 1 (10 % canary):
    scores before each pick (S, C): (9,1) (8,2) (7,3) (6,4) (5,5) (4,6) (13,-3) (12,-2) (11,-1) (10,0)
    picks 1..10 -> S S S S S C S S S S   (a tie goes to the first variant), then the cycle repeats,
so 100 000 picks give exactly 90 000 / 10 000, and any window of 10 consecutive picks has one C.
"""

from __future__ import annotations

from math import gcd


class SmoothWeightedPicker:
    """Picks variant names in proportion to integer weights; a zero weight is never picked."""

    def __init__(self, weights: dict[str, int]):
        active = {name: w for name, w in weights.items() if w > 0}
        if not active:
            raise ValueError("at least one variant needs a positive weight")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must be non-negative")
        divisor = 0
        for w in active.values():
            divisor = gcd(divisor, w)
        self._names = list(active)
        self._weights = [w // divisor for w in active.values()]  # smaller numbers, identical sequence
        self._total = sum(self._weights)
        self._scores = [0] * len(self._names)
        self._single = self._names[0] if len(self._names) == 1 else None

    def pick(self) -> str:
        if self._single is not None:
            return self._single
        scores, weights = self._scores, self._weights
        best = 0
        for i in range(len(scores)):
            scores[i] += weights[i]
            if scores[i] > scores[best]:
                best = i
        scores[best] -= self._total
        return self._names[best]


class PercentSampler:
    """True for exactly `basis_points / 10000` of calls, evenly spaced (an error-diffusion accumulator)."""

    def __init__(self, basis_points: int):
        if not 0 <= basis_points <= 10_000:
            raise ValueError("basis points must be within 0..10000")
        self._step = basis_points
        self._acc = 0

    def sample(self) -> bool:
        if self._step == 0:
            return False
        self._acc += self._step
        if self._acc >= 10_000:
            self._acc -= 10_000
            return True
        return False
