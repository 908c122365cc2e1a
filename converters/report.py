"""The report every conversion produces: one entry per source object and key.

Contract (shared by every converter, the CLI and ``--report``): ``source`` (apiVersion, kind,
namespace, name), ``key`` (an annotation key or a spec path such as
``spec.rules[0].http.paths[1]``), ``status``, ``message``, ``outputs`` (the objects it became).
A converter never prints: it returns objects and this report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from kubectl_gw.model import KubeObject, ObjectRef

Status = Literal["converted", "partial", "unsupported", "ignored", "error"]
STATUSES: tuple[Status, ...] = get_args(Status)
# Statuses that mean "not fully converted": --strict exits 3 when any entry has one.
INCOMPLETE: frozenset[Status] = frozenset({"partial", "unsupported", "error"})


@dataclass(frozen=True)
class ReportEntry:
    source: ObjectRef
    key: str
    status: Status
    message: str
    outputs: tuple[ObjectRef, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {
            "source": _ref_data(self.source),
            "key": self.key,
            "status": self.status,
            "message": self.message,
            "outputs": [_ref_data(o) for o in self.outputs],
        }


def _ref_data(ref: ObjectRef) -> dict[str, str]:
    data = {"apiVersion": ref.api_version, "kind": ref.kind}
    if ref.namespace:
        data["namespace"] = ref.namespace
    data["name"] = ref.name
    return data


@dataclass
class Report:
    entries: list[ReportEntry] = field(default_factory=list)

    def add(
        self,
        source: ObjectRef,
        key: str,
        status: Status,
        message: str,
        outputs: tuple[ObjectRef, ...] | list[ObjectRef] = (),
    ) -> ReportEntry:
        entry = ReportEntry(source, key, status, message, tuple(outputs))
        self.entries.append(entry)
        return entry

    def extend(self, other: Report) -> None:
        self.entries.extend(other.entries)

    def sorted_entries(self) -> list[ReportEntry]:
        """By source, then in the order the converter said them (stable sort)."""
        return sorted(
            self.entries,
            key=lambda e: (e.source.kind, e.source.namespace, e.source.name, e.source.api_version),
        )

    def incomplete(self) -> list[ReportEntry]:
        return [e for e in self.entries if e.status in INCOMPLETE]

    def counts_by_source(self) -> dict[ObjectRef, Counter[Status]]:
        counts: dict[ObjectRef, Counter[Status]] = {}
        for entry in self.sorted_entries():
            counts.setdefault(entry.source, Counter())[entry.status] += 1
        return counts

    def to_data(self) -> list[dict[str, Any]]:
        return [e.to_data() for e in self.sorted_entries()]


@dataclass
class Conversion:
    """What a converter returns: the Gateway API objects and the report about its sources."""

    objects: list[KubeObject] = field(default_factory=list)
    report: Report = field(default_factory=Report)
