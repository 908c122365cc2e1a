"""Emissary matching and rewriting → Gateway API matches and path filters.

Emissary's ``prefix`` is a plain string prefix (``/man`` matches ``/mankind``) and the default
``rewrite: "/"`` replaces the matched part; Gateway API's ``PathPrefix`` and
``ReplacePrefixMatch`` work on whole segments. :func:`path_plan` picks, per Mapping:

- ``PathPrefix`` when the two agree: the prefix is ``/``, or it ends with ``/`` (then the only
  difference is that the bare ``/foo`` also matches, which the report says) and the rewrite is
  empty or ends with ``/``;
- otherwise the exact equivalent: ``RegularExpression "<escaped prefix>.*"`` plus, for a rewrite,
  Envoy Gateway's ``HTTPRouteFilter`` ``ReplaceRegexMatch{^<escaped prefix>, rewrite}``; with
  ``--target standard`` (no regex rewrite there) ``PathPrefix`` + ``ReplacePrefixMatch`` and a
  ``partial`` entry saying what differs.

Exact and regex Mappings: the matched part is the whole path, so a rewrite replaces the whole
path (``ReplaceFullPath``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubectl_gw import re2

_SPECIAL = set("\\.+*?()|[]{}^$")
_BAD_PATH = ("//", "/./", "/../", "%2f", "%2F", "#")
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_DURATION_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


class MatchError(ValueError):
    pass


def re2_escape(text: str) -> str:
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def check_regex(pattern: str, what: str) -> None:
    """Raise :class:`MatchError` unless RE2 (Envoy's engine, as Emissary's) accepts it."""
    why = re2.problem(pattern)
    if why is not None:
        raise MatchError(f"{what} {pattern!r}: {why}")


def path_ok(value: str) -> bool:
    """Whether Gateway API accepts ``value`` as an Exact or PathPrefix value."""
    return (
        value.startswith("/")
        and not any(bad in value for bad in _BAD_PATH)
        and not value.endswith(("/..", "/."))
        and bool(_PATH_CHARS.match(value))
    )


def duration(ms: int) -> str:
    """Milliseconds as a Gateway API duration (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``)."""
    if ms == 0:
        return "0s"
    parts = []
    rest = ms
    for unit, size in _DURATION_UNITS:
        if rest >= size:
            count, rest = divmod(rest, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def millis(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass
class PathPlan:
    match: dict[str, str]  # {"type": ..., "value": ...}
    rewrite: dict[str, Any] | None = None  # a URLRewrite ``path``
    regex_rewrite: dict[str, str] | None = None  # an HRF replaceRegexMatch
    status: str = "converted"  # converted | partial
    how: str = ""  # for the spec.prefix entry
    rewrite_how: str = ""  # for the spec.rewrite entry
    rewrite_status: str = "converted"
    extra: list[str] = field(default_factory=list)


def path_plan(spec: dict[str, Any], eg: bool) -> PathPlan:
    prefix = spec.get("prefix")
    if not isinstance(prefix, str) or not prefix:
        raise MatchError("no prefix: a Mapping needs prefix")
    is_regex = spec.get("prefix_regex") is True
    is_exact = spec.get("prefix_exact") is True and not is_regex
    case_sensitive = spec.get("case_sensitive") is not False
    rewrite = spec.get("rewrite", "/")
    if rewrite is None:
        rewrite = "/"
    if not isinstance(rewrite, str):
        raise MatchError("rewrite must be a string")
    regex_rewrite = spec.get("regex_rewrite")
    if is_regex:
        check_regex(prefix, "prefix_regex")
    if isinstance(regex_rewrite, dict):
        pattern = regex_rewrite.get("pattern")
        if not isinstance(pattern, str) or not isinstance(regex_rewrite.get("substitution"), str):
            raise MatchError("regex_rewrite needs pattern and substitution strings")
        check_regex(pattern, "regex_rewrite.pattern")
    if is_regex or is_exact:
        if is_regex:
            value = prefix if case_sensitive else f"(?i){prefix}"
            plan = PathPlan(
                {"type": "RegularExpression", "value": value},
                how="prefix_regex: RegularExpression (RE2, whole path, as in Emissary)",
            )
        else:
            if case_sensitive and path_ok(prefix):
                plan = PathPlan({"type": "Exact", "value": prefix}, how="prefix_exact: Exact")
            else:
                flag = "" if case_sensitive else "(?i)"
                plan = PathPlan(
                    {"type": "RegularExpression", "value": f"{flag}{re2_escape(prefix)}"},
                    how="prefix_exact: RegularExpression of the escaped path "
                    "(not a valid Exact value, or case-insensitive)",
                )
        if isinstance(regex_rewrite, dict):
            _regex_rewrite(plan, regex_rewrite, eg)
        elif rewrite:
            plan.rewrite = {"type": "ReplaceFullPath", "replaceFullPath": rewrite}
            plan.rewrite_how = (
                f"the matched part is the whole path: ReplaceFullPath {rewrite!r}"
                " (the query string is kept)"
            )
        else:
            plan.rewrite_how = 'rewrite "": the path is sent unchanged'
        return plan
    # A string prefix.
    escaped = re2_escape(prefix)
    flag = "" if case_sensitive else "(?i)"
    same_segments = case_sensitive and path_ok(prefix) and (prefix == "/" or prefix.endswith("/"))
    rewrite_segments = rewrite == "" or rewrite.endswith("/")
    if isinstance(regex_rewrite, dict):
        if same_segments:
            plan = _prefix_plan(prefix)
        else:
            plan = PathPlan(
                {"type": "RegularExpression", "value": f"{flag}{escaped}.*"},
                how=_regex_how(prefix, case_sensitive),
            )
        _regex_rewrite(plan, regex_rewrite, eg)
        return plan
    if same_segments and rewrite_segments:
        plan = _prefix_plan(prefix)
        if rewrite:
            plan.rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": rewrite}
            plan.rewrite_how = f"ReplacePrefixMatch {rewrite!r} (replaces the prefix {prefix!r})"
        else:
            plan.rewrite_how = 'rewrite "": the path is sent unchanged'
        return plan
    if not eg and rewrite:
        # No regex rewrite in standard Gateway API: segment semantics, and say what differs.
        lenient = prefix if path_ok(prefix) else None
        if lenient is None or not case_sensitive:
            raise MatchError(
                f"prefix {prefix!r} with rewrite {rewrite!r} needs a regex rewrite "
                "(Envoy Gateway HTTPRouteFilter), which --target standard cannot emit"
            )
        plan = PathPlan(
            {"type": "PathPrefix", "value": prefix},
            status="partial",
            how=f"PathPrefix {prefix!r}: --target standard has no regex rewrite, so "
            f"segment matching replaces Emissary's string prefix ({prefix!r} no "
            "longer matches longer words such as "
            f"{prefix.rstrip('/') + 'x'!r})",
        )
        plan.rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": rewrite}
        plan.rewrite_status = "partial"
        plan.rewrite_how = (
            f"ReplacePrefixMatch {rewrite!r}: segment-based, so the result can "
            f"differ from Emissary's literal replacement by a '/'"
        )
        return plan
    plan = PathPlan(
        {"type": "RegularExpression", "value": f"{flag}{escaped}.*"},
        how=_regex_how(prefix, case_sensitive),
    )
    if rewrite:
        if not eg:
            raise MatchError("unreachable")  # pragma: no cover
        plan.regex_rewrite = {"pattern": f"{flag}^{escaped}", "substitution": rewrite}
        plan.rewrite_how = (
            f"Envoy Gateway HTTPRouteFilter ReplaceRegexMatch "
            f"^{escaped} → {rewrite!r}: Emissary's literal prefix replacement"
        )
    else:
        plan.rewrite_how = 'rewrite "": the path is sent unchanged'
    return plan


def _prefix_plan(prefix: str) -> PathPlan:
    if prefix == "/":
        how = 'PathPrefix "/": the same as Emissary\'s prefix "/" (every path)'
    else:
        how = (
            f"PathPrefix {prefix!r}: Emissary's string prefix ends with '/', so only whole "
            f"segments follow it; equivalent except that {prefix.rstrip('/')!r} itself "
            "now matches too"
        )
    return PathPlan({"type": "PathPrefix", "value": prefix}, how=how)


def _regex_how(prefix: str, case_sensitive: bool) -> str:
    why = (
        "case_sensitive: false"
        if not case_sensitive
        else f"Emissary's prefix is a plain string prefix ({prefix!r} also matches "
        f"{prefix + 'x'!r}), which PathPrefix's segment matching cannot express"
    )
    return f"RegularExpression, the exact equivalent: {why}"


def _regex_rewrite(plan: PathPlan, regex_rewrite: dict[str, Any], eg: bool) -> None:
    if not eg:
        plan.rewrite_status = "unsupported"
        plan.rewrite_how = (
            "regex_rewrite needs Envoy Gateway's HTTPRouteFilter "
            "(ReplaceRegexMatch); --target standard: not converted"
        )
        return
    plan.regex_rewrite = {
        "pattern": str(regex_rewrite["pattern"]),
        "substitution": str(regex_rewrite["substitution"]),
    }
    plan.rewrite_how = "Envoy Gateway HTTPRouteFilter ReplaceRegexMatch (same RE2 engine)"


# --------------------------------------------------------------------------- hostnames

_GW_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def gw_hostname(glob: str) -> tuple[str | None, str]:
    """A DNS glob as a Gateway API hostname: (hostname or None for "any", problem or "")."""
    if glob in ("", "*"):
        return None, ""
    host = glob.lower()
    problem = ""
    if ":" in host:
        host, _, port = host.partition(":")
        problem = f"the port suffix :{port} is dropped (Gateway API hostnames have no port)"
    if host.endswith(".*") or host == "*" or (host.endswith("*") and not host.startswith("*")):
        return None, (
            f"the trailing wildcard {glob!r} has no Gateway API equivalent: the "
            "hostname restriction is dropped"
        )
    if host.endswith("."):
        host = host[:-1]
    if not _GW_HOST.match(host):
        return None, f"{glob!r} is not a valid Gateway API hostname: the restriction is dropped"
    return host, problem


def glob_compatible(g1: str, g2: str) -> bool:
    """Whether some hostname matches both DNS globs (Emissary's ``hostglob_matches``)."""
    if g1 == g2 or g1 == "*" or g2 == "*":
        return True
    if not g1 or not g2 or g1[0] == "." or g2[0] == ".":
        return False
    s1, e1, s2, e2 = g1[0] == "*", g1[-1] == "*", g2[0] == "*", g2[-1] == "*"
    if (s1 and e1) or (s2 and e2):
        return False
    if s1 and s2:
        return g1[1:].endswith(g2[1:]) or g2[1:].endswith(g1[1:])
    if e1 and e2:
        return g1[:-1].startswith(g2[:-1]) or g2[:-1].startswith(g1[:-1])
    if (s1 and e2) or (e1 and s2):
        return True
    if s1:
        return len(g2) > len(g1) - 1 and g2.endswith(g1[1:])
    if s2:
        return len(g1) > len(g2) - 1 and g1.endswith(g2[1:])
    if e1:
        return len(g2) > len(g1) - 1 and g2.startswith(g1[:-1])
    if e2:
        return len(g1) > len(g2) - 1 and g1.startswith(g2[:-1])
    return False
