"""Reading ingress-nginx annotations, and the promise that each is reported exactly once.

Every family module reads its keys through :class:`Annotations` and *claims* each key it
handles with a status and a message. :meth:`Annotations.finish` reports every key under the
prefix that nobody claimed (unknown keys), so each annotation appears once per Ingress.
Outputs may be named before they exist: :data:`ROUTES` stands for "the routes this Ingress's
rules ended up in" and is resolved when the routes are built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from converters.report import Report, Status
from kubectl_gw.model import ObjectRef

ROUTES: Final = "@routes"
Output = ObjectRef | str

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)?\s*$")


class AnnotationValueError(ValueError):
    """An annotation value that does not parse; the message says what was expected."""


@dataclass
class Claim:
    key: str
    status: Status
    message: str
    outputs: list[Output] = field(default_factory=list)


@dataclass
class Annotations:
    prefix: str
    values: dict[str, str]  # short key (without prefix) -> value, only keys under the prefix
    other: dict[str, str]  # every other annotation, full key
    claims: dict[str, Claim] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, str] | None, prefix: str) -> Annotations:
        values: dict[str, str] = {}
        other: dict[str, str] = {}
        lead = prefix.rstrip("/") + "/"
        for key, value in (raw or {}).items():
            if key.startswith(lead):
                values[key[len(lead) :]] = "" if value is None else str(value)
            else:
                other[key] = "" if value is None else str(value)
        return cls(prefix.rstrip("/"), values, other)

    def full(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def present(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k in self.values]

    def claimed(self, key: str) -> bool:
        return key in self.claims

    def claim(self, key: str, status: Status, message: str, outputs: Sequence[Output] = ()) -> None:
        """Record the outcome of one key (the first claim wins; later ones are ignored)."""
        if key in self.values and key not in self.claims:
            self.claims[key] = Claim(key, status, message, list(outputs))

    def claim_all(
        self, keys: Iterable[str], status: Status, message: str, outputs: Sequence[Output] = ()
    ) -> None:
        for key in keys:
            self.claim(key, status, message, outputs)

    # ------------------------------------------------------------------ typed getters

    def bool(self, key: str, default: bool = False) -> bool:
        raw = self.values.get(key)
        if raw is None:
            return default
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise AnnotationValueError(f'expected "true" or "false", got {raw!r}')

    def int(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        raw = self.values.get(key)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise AnnotationValueError(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise AnnotationValueError(f"expected an integer >= {minimum}, got {raw!r}")
        return value

    def csv(self, key: str) -> list[str]:
        raw = self.values.get(key) or ""
        return [p.strip() for p in raw.split(",") if p.strip()]

    def finish(self, report: Report, source: ObjectRef, routes: Sequence[ObjectRef]) -> None:
        """Report every claim (resolving :data:`ROUTES`), then every unclaimed key."""
        for key in sorted(self.values):
            claim = self.claims.get(key)
            if claim is None:
                report.add(
                    source,
                    self.full(key),
                    "unsupported",
                    "not an annotation kubectl-gw knows for ingress-nginx; nothing was converted",
                )
                continue
            outputs: list[ObjectRef] = []
            for out in claim.outputs:
                if isinstance(out, str):
                    outputs.extend(routes)
                else:
                    outputs.append(out)
            report.add(source, self.full(key), claim.status, claim.message, _dedupe(outputs))


def _dedupe(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    seen: list[ObjectRef] = []
    for ref in refs:
        if ref not in seen:
            seen.append(ref)
    return seen


def parse_size(raw: str) -> int:
    """nginx sizes: ``8``, ``8k``, ``20m``, ``1g`` → bytes."""
    match = _SIZE.match(raw)
    if not match:
        raise AnnotationValueError(f"expected a size such as 8k, 20m or 1g, got {raw!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    return int(number * scale)


def quantity(size: int) -> str:
    """Bytes → the shortest exact Kubernetes quantity (``20Mi``, ``512Ki``, ``1000``)."""
    for suffix, scale in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def parse_seconds(raw: str) -> int:
    """nginx timeouts in annotations are whole seconds (``60`` or ``60s``); ms/m/h accepted."""
    match = _DURATION.match(raw)
    if not match:
        raise AnnotationValueError(f"expected a number of seconds, got {raw!r}")
    value, unit = int(match.group(1)), match.group(2) or "s"
    if unit == "ms":
        return max(1, value // 1000) if value else 0
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def duration(seconds: int) -> str:
    """Seconds → a Gateway API duration (``90s``, ``2m``, ``1h``)."""
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
