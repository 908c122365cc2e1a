"""Gateway API hostname rules: matching, listener/route intersection, specificity.

Pure functions over strings. A hostname is either precise (``www.example.com``) or a wildcard
whose leftmost label is ``*`` (``*.example.com``); the wildcard matches **one or more** labels,
so ``*.example.com`` covers ``a.b.example.com`` but not ``example.com``. An unset hostname
(listener or route) is the catch-all ``*``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

CATCH_ALL = "*"

# The pure string functions the engine calls per route and listener are cached: a controller
# recomputes them for the same few thousand names on every reconcile.
_cached = functools.lru_cache(maxsize=1 << 16)


@_cached
def normalize(hostname: str | None) -> str:
    """Lower-case; ``None`` and ``""`` become the catch-all ``*``."""
    return (hostname or CATCH_ALL).lower().rstrip(".") or CATCH_ALL


def is_wildcard(hostname: str) -> bool:
    return hostname == CATCH_ALL or hostname.startswith("*.")


@_cached
def covers(pattern: str, hostname: str) -> bool:
    """Does ``pattern`` (precise or wildcard) match every name ``hostname`` matches?

    ``covers("*.example.com", "a.example.com")``, ``covers("*.com", "*.example.com")`` and
    ``covers("x.com", "x.com")`` are true; a precise pattern never covers a wildcard.
    """
    pattern, hostname = normalize(pattern), normalize(hostname)
    if pattern in (CATCH_ALL, hostname):
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".example.com"
    if hostname == CATCH_ALL:
        return False
    if hostname.startswith("*."):
        return hostname[1:].endswith(suffix) and len(hostname) > len(pattern)
    return hostname.endswith(suffix) and len(hostname) > len(suffix)


def matches(pattern: str, host: str) -> bool:
    """Does the request host ``host`` (no port) match ``pattern``?"""
    host = host.lower().rstrip(".")
    return bool(host) and covers(pattern, host)


def intersect(listener: str | None, route: str | None) -> str | None:
    """The hostname both sides accept, the more specific of the two, or None."""
    a, b = normalize(listener), normalize(route)
    if covers(a, b):
        return b
    if covers(b, a):
        return a
    return None


def effective(listener: str | None, route_hostnames: Sequence[str] | None) -> list[str]:
    """The hostnames programmed for a route on a listener: each route hostname intersected with
    the listener's, deduplicated, in the route's order. Empty means no intersection. A route
    without hostnames takes the listener's (``*`` for an unset one)."""
    if not route_hostnames:
        return [normalize(listener)]
    out: list[str] = []
    for name in route_hostnames:
        got = intersect(listener, name)
        if got is not None and got not in out:
            out.append(got)
    return out


@_cached
def specificity(hostname: str) -> tuple[int, int]:
    """Sort key, larger = more specific, per the HTTPRoute precedence rules: characters in a
    matching non-wildcard hostname, then characters in the matching hostname."""
    hostname = normalize(hostname)
    if hostname == CATCH_ALL:
        return (0, 0)
    return (0 if is_wildcard(hostname) else len(hostname), len(hostname))


@_cached
def listener_specificity(hostname: str | None) -> tuple[int, int, int]:
    """Sort key for choosing among listeners that differ only by hostname (larger wins):
    precise over wildcard over unset; among wildcards, more labels right of the ``*``."""
    hostname = normalize(hostname)
    if hostname == CATCH_ALL:
        return (0, 0, 0)
    if hostname.startswith("*."):
        return (1, hostname.count("."), len(hostname))
    return (2, hostname.count("."), len(hostname))


def best_listener_hostname(host: str, candidates: Iterable[str | None]) -> str | None:
    """Of the listener hostnames that match ``host``, the most specific (None if none)."""
    found = [normalize(c) for c in candidates if matches(normalize(c), host)]
    if not found:
        return None
    return max(found, key=listener_specificity)


def valid(hostname: str) -> bool:
    """A syntactically valid Gateway API hostname (RFC 1123 labels, optional leading ``*.``)."""
    name = hostname.lower()
    if name.startswith("*."):
        name = name[2:]
    if not name or len(hostname) > 253 or name.endswith("."):
        return False
    for label in name.split("."):
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label):
            return False
    return True
