"""Deterministic, valid and collision-free names for generated objects.

Names are derived from what they stand for (a class, a namespace and host, ...). Sanitising
into DNS-1123 is lossy (``*.example.com`` and ``example.com`` must not both become
``example-com``), so names are allocated for a whole conversion at once: every key whose
readable name is unique keeps it, and every key that would share a name with another, or whose
name had to be shortened, gets a short hash of the key appended. The result does not depend on
the order in which keys are presented.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")


def readable(*parts: str) -> str:
    """The DNS-1123 label-ish form of ``parts``: lowercase, ``*`` → ``wildcard``, other
    characters → ``-``, trimmed of leading and trailing dashes."""
    text = "-".join(p for p in parts if p).lower().replace("*", "wildcard")
    text = _DASHES.sub("-", _INVALID.sub("-", text)).strip("-")
    return text or "x"


def short_hash(key: Hashable, length: int = 6) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:length]


def _fit(name: str, suffix: str, limit: int) -> str:
    room = limit - len(suffix) - 1 if suffix else limit
    base = name[:room].rstrip("-") or "x"
    return f"{base}-{suffix}" if suffix else base


def allocate(wanted: Mapping[Hashable, str], *, limit: int = DNS_LABEL_MAX) -> dict[Hashable, str]:
    """Map each key to a unique name, starting from the readable name wanted for it."""
    by_name: dict[str, list[Hashable]] = defaultdict(list)
    for key, name in wanted.items():
        by_name[readable(name)].append(key)
    out: dict[Hashable, str] = {}
    for name, keys in by_name.items():
        clash = len(keys) > 1
        for key in keys:
            needs_hash = clash or len(name) > limit
            out[key] = _fit(name, short_hash(key) if needs_hash else "", limit)
    return out


def allocate_one(*parts: str, limit: int = DNS_LABEL_MAX) -> str:
    """A single name with no peers to collide with (still shortened with a hash if needed)."""
    key = tuple(parts)
    return allocate({key: readable(*parts)}, limit=limit)[key]


def unique(names: Iterable[str]) -> bool:
    listed = list(names)
    return len(listed) == len(set(listed))
