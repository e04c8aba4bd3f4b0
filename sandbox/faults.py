"""Injected failures: what a real portal and network do to a client on a bad day.

Spec language (`--faults`, `Sandbox(faults=...)`, admin `POST /_sandbox/faults`)::

    SPEC    := ITEM ("," ITEM)*
    ITEM    := KIND [":" TRIGGER] ["@" SECONDS]
    TRIGGER := PROBABILITY            a float in [0, 1], drawn from a seeded RNG (deterministic)
             | "every=" N             every N-th REST request (N, 2N, 3N, ...)
    KIND    := "500"                  HTTP 500 INTERNAL_SERVER_ERROR, the call does not run
             | "drop_before"          close the socket without an answer; the call did NOT run
             | "drop_after"           run the call (writes are stored), then close the socket
                                      without an answer -- the case that makes clients duplicate
             | "slow"                 run the call, then wait SECONDS (default 1.0) before answering
             | "expire"               expire every access token now (mass expiry), then serve

A missing trigger means probability 1. Example:
`500:0.05,drop_after:0.05,slow:0.02@1.5,expire:every=500`.
Faults apply to REST requests only (not to the OAuth server or the admin endpoint), after the
rate limiter has accepted the request.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

KINDS = ("500", "drop_before", "drop_after", "slow", "expire")


class FaultSpecError(ValueError):
    """A `--faults` spec that does not parse."""


@dataclass(frozen=True)
class FaultRule:
    """One ITEM of a spec."""

    kind: str
    probability: float = 1.0
    every: int = 0  # > 0: fire on every N-th request instead of by probability
    seconds: float = 1.0


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request."""

    error_500: bool = False
    drop_before: bool = False
    drop_after: bool = False
    slow_seconds: float = 0.0
    expire_tokens: bool = False

    @property
    def kinds(self) -> list[str]:
        """The fault kinds this plan injects (for counters)."""
        fired = []
        if self.error_500:
            fired.append("500")
        if self.drop_before:
            fired.append("drop_before")
        if self.drop_after:
            fired.append("drop_after")
        if self.slow_seconds:
            fired.append("slow")
        if self.expire_tokens:
            fired.append("expire")
        return fired


NO_FAULT = FaultPlan()


def _number(text: str, item: str, what: str, low: float, high: float, cast: type = float) -> float:
    try:
        value = cast(text)
    except ValueError:
        raise FaultSpecError(f"bad {what} {text!r} in {item!r}") from None
    if not low <= value <= high:
        raise FaultSpecError(f"{what} must be within [{low}, {high}] in {item!r}")
    return value


def _parse_item(item: str) -> FaultRule:
    text, _, seconds_text = item.partition("@")
    kind, _, trigger = text.partition(":")
    kind, trigger = kind.strip(), trigger.strip()
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r} in {item!r} (kinds: {', '.join(KINDS)})")
    seconds = _number(seconds_text, item, "seconds", 0, 3600) if seconds_text else 1.0
    if trigger.startswith("every="):
        every = _number(trigger[len("every=") :], item, "every=N", 1, 10**9, int)
        return FaultRule(kind, every=int(every), seconds=seconds)
    probability = _number(trigger, item, "probability", 0.0, 1.0) if trigger else 1.0
    return FaultRule(kind, probability=probability, seconds=seconds)


def parse_faults(spec: str | None) -> tuple[FaultRule, ...]:
    """Parse a spec (None or "" = no faults); FaultSpecError names the bad item."""
    if not spec or not spec.strip():
        return ()
    return tuple(_parse_item(item) for item in spec.split(",") if item.strip())


class FaultInjector:
    """Decides, per REST request, which faults fire; deterministic for a given seed and spec."""

    def __init__(self, spec: str | None = None, *, seed: int = 1) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self.configure(spec)

    def configure(self, spec: str | None) -> None:
        """Replace the rules (and restart the RNG and the request count)."""
        rules = parse_faults(spec)
        with self._lock:
            self._rules = rules
            self._spec = spec or ""
            self._random = random.Random(self._seed)
            self._count = 0

    @property
    def spec(self) -> str:
        """The spec in force."""
        return self._spec

    def decide(self) -> FaultPlan:
        """Draw the faults for the next REST request."""
        with self._lock:
            if not self._rules:
                return NO_FAULT
            self._count += 1
            fired: dict[str, float] = {}
            for rule in self._rules:
                # One draw per rule per request, so the sequence does not depend on what fired.
                draw = self._random.random()
                hit = (self._count % rule.every == 0) if rule.every else draw < rule.probability
                if hit:
                    fired[rule.kind] = rule.seconds
        if not fired:
            return NO_FAULT
        drop_before = "drop_before" in fired
        error_500 = "500" in fired and not drop_before
        drop_after = "drop_after" in fired and not (drop_before or error_500)
        return FaultPlan(
            error_500=error_500,
            drop_before=drop_before,
            drop_after=drop_after,
            slow_seconds=fired.get("slow", 0.0) if not (drop_before or error_500) else 0.0,
            expire_tokens="expire" in fired,
        )
