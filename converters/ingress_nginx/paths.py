"""Ingress paths → Gateway API path matches, with ingress-nginx's semantics.

- A host is in *regex mode* when any (non-canary) Ingress of the host sets ``use-regex`` or a
  non-empty ``rewrite-target``. Then every path of the host, of every Ingress and path type,
  is ``location ~* "^<path>"``: a case-insensitive regex anchored only at the start, i.e. a
  prefix. Gateway API regexes are full matches (RE2 in Envoy), hence ``(?i)<path>.*``.
- Otherwise ``Exact`` → Exact, ``Prefix`` → PathPrefix (segment-aware in both), and
  ``ImplementationSpecific`` → nginx's plain string prefix: a regex ``<escaped path>.*``.
- A path ending in ``/`` (not ``/`` itself) also gets a 301 from the slash-less path.
- Values Gateway API rejects for Exact/PathPrefix (``//``, ``/./``, ``%2f``, odd characters)
  fall back to an equivalent regex.

Regexes are checked for RE2 compatibility here (Envoy uses RE2; nginx PCRE): look-around,
back-references, conditionals, atomic groups and possessive quantifiers are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from kubectl_gw import re2

MatchType = Literal["Exact", "PathPrefix", "RegularExpression"]

_GW_SAFE = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_GW_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
_RE2_META = set("\\.+*?()|[]{}^$")


class RegexError(ValueError):
    pass


@dataclass(frozen=True)
class PathMatch:
    type: MatchType
    value: str

    def to_data(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value}

    @property
    def key(self) -> tuple[str, str]:
        """What makes two paths the same nginx location (for duplicates and canaries)."""
        return (self.type, self.value)


def re2_escape(text: str) -> str:
    return "".join("\\" + c if c in _RE2_META else c for c in text)


def gateway_safe(value: str) -> bool:
    if not value.startswith("/") or not _GW_SAFE.match(value):
        return False
    if any(bad in value for bad in _GW_FORBIDDEN):
        return False
    return not (value.endswith("/..") or value.endswith("/."))


def check_re2(pattern: str) -> None:
    """Raise :class:`RegexError` if ``pattern`` does not compile or uses what RE2 lacks."""
    why = re2.problem(pattern)
    if why is not None:
        raise RegexError(why)


def regex_mode_match(path: str) -> PathMatch:
    """nginx ``location ~* "^<path>"`` as a full-match Gateway API regex."""
    check_re2(path)
    body = f"(?:{path})" if "|" in path else path
    return PathMatch("RegularExpression", f"(?i){body}.*")


def plain_match(path: str, path_type: str) -> PathMatch:
    """A path of a host that is not in regex mode."""
    if path_type == "Exact":
        if gateway_safe(path):
            return PathMatch("Exact", path)
        return PathMatch("RegularExpression", re2_escape(path))
    if path_type == "Prefix":
        if gateway_safe(path):
            return PathMatch("PathPrefix", path)
        base = re2_escape(path.rstrip("/"))
        return PathMatch("RegularExpression", f"{base}(/.*)?")
    # ImplementationSpecific: nginx emits a plain prefix location, a string prefix.
    if path == "/":
        return PathMatch("PathPrefix", "/")
    return PathMatch("RegularExpression", f"{re2_escape(path)}.*")


def needs_slash_redirect(path: str, path_type: str, regex_mode: bool) -> bool:
    """nginx answers ``/foo`` with a 301 to ``/foo/`` for a location ``/foo/``."""
    if regex_mode or path == "/" or not path.endswith("/"):
        return False
    return path_type in ("Prefix", "Exact") and gateway_safe(path.rstrip("/"))


def slash_redirect_match(path: str) -> PathMatch:
    return PathMatch("Exact", path.rstrip("/"))
