"""The Emissary provider's internal shapes: normalised source resources and their report notes.

Every Emissary resource, whatever it came from (a CRD of any version, YAML in a
``getambassador.io/config`` annotation, a path of an ``ambassador``-class Ingress), becomes a
:class:`Src` whose ``spec`` already has v3alpha1 meaning. Each handler that looks at a field
records a :class:`Note` under the field's report key; at the end every spec field that no handler
claimed is reported ``unsupported``, so nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.report import Report, Status
from kubectl_gw.model import ObjectRef

RANK: dict[Status, int] = {"converted": 0, "ignored": 1, "partial": 2, "unsupported": 3, "error": 4}
EG_API_VERSION = "gateway.envoyproxy.io/v1alpha1"


@dataclass
class Note:
    status: Status
    message: str
    outputs: list[ObjectRef] | None  # None: the outputs of the whole source (filled at the end)


@dataclass
class Src:
    """One Emissary resource, normalised to v3alpha1 meaning."""

    ref: ObjectRef  # the report source: the resource, or the Ingress a path came from
    kind: str
    version: str  # v1 | v2 | v3alpha1 (what the author wrote)
    namespace: str
    name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    origin: str = ""  # "" for a CRD; else where it was embedded ("Service ns/x annotation ...")
    key_prefix: str = "spec."  # report keys are key_prefix + field path
    single_key: str = ""  # Ingress paths: every note folds into this one report key
    renamed: dict[str, str] = field(default_factory=dict)  # v3 field → the field as written
    notes: dict[str, Note] = field(default_factory=dict)
    outputs: list[ObjectRef] = field(default_factory=list)
    dropped: bool = False  # not converted at all (error / other install)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def key(self, path: str) -> str:
        top, dot, rest = path.partition(".")
        top = self.renamed.get(top, top)
        return self.key_prefix + top + (dot + rest if dot else "")

    def note(
        self,
        path: str,
        status: Status,
        message: str,
        outputs: list[ObjectRef] | None = None,
    ) -> None:
        """Record what became of ``path``; a second note on the same key merges into the first
        (worst status wins, messages are joined)."""
        key = self.key(path)
        found = self.notes.get(key)
        if found is None:
            self.notes[key] = Note(status, message, outputs)
            return
        if RANK[status] > RANK[found.status]:
            found.status = status
        if message and message not in found.message:
            found.message = f"{found.message}; {message}" if found.message else message
        if outputs:
            found.outputs = (found.outputs or []) + [
                o for o in outputs if o not in (found.outputs or [])
            ]

    def claimed(self, path: str) -> bool:
        return self.key(path) in self.notes

    def error(self, path: str, message: str) -> None:
        self.note(path, "error", message, [])
        self.dropped = True


def flush(sources: list[Src], report: Report, emitted: set[ObjectRef]) -> None:
    """Claim every unclaimed top-level field, then write the notes into ``report``."""
    for src in sources:
        for top in src.spec:
            if not any(
                k == src.key(top)
                or k.startswith(src.key(top) + ".")
                or k.startswith(src.key(top) + "[")
                for k in src.notes
            ):
                if src.dropped:
                    src.note(
                        top,
                        "ignored",
                        "not converted with the rest of this resource "
                        "(see its error or ignored entry)",
                        [],
                    )
                else:
                    src.note(
                        top,
                        "unsupported",
                        f"field {top} is not known to kubectl-gw; not converted",
                        [],
                    )
        outs = [o for o in src.outputs if o in emitted]
        if src.single_key:
            status: Status = "converted"
            messages: list[str] = []
            outputs: list[ObjectRef] = []
            for key, note in src.notes.items():
                if RANK[note.status] > RANK[status]:
                    status = note.status
                if note.message:
                    messages.append(f"{key.removeprefix(src.key_prefix)}: {note.message}")
                for o in outs if note.outputs is None else note.outputs:
                    if o not in outputs and o in emitted:
                        outputs.append(o)
            if src.dropped and status != "error":
                status = "error" if any(n.status == "error" for n in src.notes.values()) else status
            report.add(src.ref, src.single_key, status, "; ".join(messages), outputs)
            continue
        for key, note in src.notes.items():
            listed = outs if note.outputs is None else [o for o in note.outputs if o in emitted]
            if note.status in ("error", "unsupported", "ignored") and note.outputs is None:
                listed = []
            report.add(src.ref, key, note.status, note.message, listed)
