"""What a call or a batch returns: small frozen values over Bitrix24's JSON envelopes.

https://apidocs.bitrix24.com/api-reference/data-types.html#time
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from b24app.errors import B24Error, make_error


@dataclass(frozen=True)
class Time:
    """The `time` object of a response; keys Bitrix24 left out are None."""

    start: float | None = None
    finish: float | None = None
    duration: float | None = None
    processing: float | None = None
    operating: float | None = None
    operating_reset_at: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> Time | None:
        """A Time from a `time` mapping; None when absent (or an empty `[]`)."""
        if not isinstance(raw, Mapping) or not raw:
            return None
        return cls(**{name: _float(raw.get(name)) for name in cls.__dataclass_fields__})


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Response:
    """One call's answer: `result`, `total` and `next` (list methods), `time`."""

    method: str
    result: Any
    total: int | None = None
    next: int | None = None
    time: Time | None = None

    @classmethod
    def parse(cls, method: str, body: Mapping[str, Any]) -> Response:
        """A Response from a successful JSON envelope."""
        return cls(
            method=method,
            result=body.get("result"),
            total=_int(body.get("total")),
            next=_int(body.get("next")),
            time=Time.parse(body.get("time")),
        )


def keyed(container: Any) -> dict[str, Any]:
    """A batch section as a dict keyed by command key.

    Bitrix24 sends empty sections as `[]`, and a PHP array whose keys are 0..n-1 as a JSON list.
    """
    if isinstance(container, Mapping):
        return {str(k): v for k, v in container.items()}
    if isinstance(container, list):
        return {str(i): v for i, v in enumerate(container)}
    return {}


@dataclass(frozen=True)
class BatchResult:
    """Every command's outcome side by side: `results` of those that ran, `errors` (typed, the
    same classes as single calls) of those that failed; commands in neither were not run
    (`halt` stopped the batch). `totals`, `nexts`, `times` mirror `result_total`,
    `result_next`, `result_time`."""

    results: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, B24Error] = field(default_factory=dict)
    totals: Mapping[str, int] = field(default_factory=dict)
    nexts: Mapping[str, int] = field(default_factory=dict)
    times: Mapping[str, Time] = field(default_factory=dict)
    time: Time | None = None
    keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, body: Mapping[str, Any], methods: Mapping[str, str]) -> BatchResult:
        """A BatchResult from the batch envelope; `methods` maps each sent key to its method."""
        inner = body.get("result")
        inner = inner if isinstance(inner, Mapping) else {}
        errors: dict[str, B24Error] = {}
        for key, raw in keyed(inner.get("result_error")).items():
            raw = raw if isinstance(raw, Mapping) else {"error_description": str(raw)}
            timing = Time.parse(raw.get("time"))
            errors[key] = make_error(
                str(raw.get("error") or ""),
                str(raw.get("error_description") or ""),
                method=methods.get(key),
                reset_at=timing.operating_reset_at if timing else None,
            )
        times = {k: t for k, v in keyed(inner.get("result_time")).items() if (t := Time.parse(v))}
        return cls(
            results=keyed(inner.get("result")),
            errors=errors,
            totals={
                k: n
                for k, v in keyed(inner.get("result_total")).items()
                if (n := _int(v)) is not None
            },
            nexts={
                k: n
                for k, v in keyed(inner.get("result_next")).items()
                if (n := _int(v)) is not None
            },
            times=times,
            time=Time.parse(body.get("time")),
            keys=tuple(methods),
        )

    def ok(self, key: str) -> bool:
        """True when command `key` ran without error."""
        return key in self.results and key not in self.errors

    @property
    def skipped(self) -> tuple[str, ...]:
        """Keys of commands that neither succeeded nor failed (not run after a halt)."""
        return tuple(k for k in self.keys if k not in self.results and k not in self.errors)

    def __getitem__(self, key: str) -> Any:
        """The result of command `key`; raises its error if it failed, KeyError if it never ran."""
        if key in self.errors:
            raise self.errors[key]
        return self.results[key]

    def raise_first(self) -> None:
        """Raise the error of the first failed command, in sending order, if any failed."""
        for key in self.keys or tuple(self.errors):
            if key in self.errors:
                raise self.errors[key]

    def merged(self, other: BatchResult) -> BatchResult:
        """This result and `other` as one (for commands sent in several requests)."""
        return BatchResult(
            results={**self.results, **other.results},
            errors={**self.errors, **other.errors},
            totals={**self.totals, **other.totals},
            nexts={**self.nexts, **other.nexts},
            times={**self.times, **other.times},
            time=other.time or self.time,
            keys=self.keys + other.keys,
        )


def link_id(value: Any) -> int | None:
    """An id in an answer (`ID`, a link field such as `CONTACT_ID`) as a positive int; "0", "",
    None, booleans and non-numbers mean none."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
