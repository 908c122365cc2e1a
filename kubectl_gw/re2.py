"""Regular expressions Envoy can compile: RE2 syntax, checked with Python's ``re`` plus a scan.

Gateway API RegularExpression matches, Emissary regexes and ingress-nginx regex paths all end up
in Envoy, which compiles them with RE2. Python's ``re`` accepts more than RE2 (look-around,
back-references, atomic groups, possessive quantifiers...), and Envoy refuses a whole route
configuration over one pattern it cannot compile, so every place that accepts a pattern asks
:func:`problem` first. One checker for the converters and the controller, so they agree.
"""

from __future__ import annotations

import re

LOOK_AROUND = "look-around assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2"
BACK_REFERENCES = "back-references are not supported by RE2"
_GROUPS = (
    ("(?=", LOOK_AROUND),
    ("(?!", LOOK_AROUND),
    ("(?<=", LOOK_AROUND),
    ("(?<!", LOOK_AROUND),
    ("(?>", "atomic groups (?>...) are not supported by RE2"),
    ("(?(", "conditionals (?(...)...) are not supported by RE2"),
    ("(?P=", "recursion and named back-references are not supported by RE2"),
    ("(?P>", "recursion and named back-references are not supported by RE2"),
    ("(?R", "recursion and named back-references are not supported by RE2"),
    ("(?#", "comment groups (?#...) are not supported by RE2"),
)
_FLAGS = frozenset("imsU")  # RE2's inline flags


def problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a regular expression RE2 (and Python) accept, or None."""
    try:
        re.compile(pattern)
    except re.error as err:
        return f"invalid regular expression: {err}"
    return unsupported(pattern)


def unsupported(pattern: str) -> str | None:
    """What in a pattern Python compiles RE2 does not support, or None (a scan that skips
    escapes and character classes, where these constructs mean nothing)."""
    i, in_class, quantified = 0, False, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "uUN":
                return rf"\{nxt} escapes are not supported by RE2 (it has \x{{...}})"
            octal = len(pattern) > i + 3 and all(c in "01234567" for c in pattern[i + 1 : i + 4])
            if in_class and ((nxt in "123456789" and not octal) or nxt == "b"):
                return rf"\{nxt} in a character class is not supported by RE2"
            if not in_class and ((nxt in "123456789" and not octal) or nxt in "gk"):
                return BACK_REFERENCES
            if not in_class and nxt == "Z":
                return r"\Z is not supported by RE2 (it has \z)"
            i, quantified = i + 2, False
            continue
        if in_class:
            in_class = char != "]"
            i += 1
            continue
        if char == "[":
            in_class, quantified = True, False
            i += 1
            if i < len(pattern) and pattern[i] == "^":
                i += 1
            if i < len(pattern) and pattern[i] == "]":
                i += 1  # a leading ] is a literal
            continue
        if pattern.startswith("(?", i):
            for prefix, message in _GROUPS:
                if pattern.startswith(prefix, i):
                    return message
            if i + 2 < len(pattern) and pattern[i + 2].isdigit():
                return "recursion and named back-references are not supported by RE2"
            j = i + 2
            while j < len(pattern) and pattern[j] not in ":)P<":
                if pattern[j] not in _FLAGS and pattern[j] != "-":
                    return f"inline flag {pattern[j]!r} is not supported by RE2 (only i, m, s, U)"
                j += 1
        if char == "+" and quantified:
            return "possessive quantifiers are not supported by RE2"
        # a quantifier just ended (a following ? makes it lazy, which RE2 has)
        quantified = char in "*+?}" and not (char == "?" and quantified)
        i += 1
    return None
