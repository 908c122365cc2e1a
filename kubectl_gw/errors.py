"""One error hierarchy for the whole tool; the CLI layer alone maps it to exit codes.

Engines raise these with a message that reads well as a single line after ``error:``.
Nothing below the CLI prints or exits.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code the plugin uses."""

    OK = 0
    RUNTIME = 1  # the cluster or a runtime part failed
    USAGE = 2  # bad flags or bad input
    STRICT = 3  # --strict: something was not fully converted


class KgwError(Exception):
    """Base of every error kubectl-gw reports to the user."""

    exit_code: ExitCode = ExitCode.RUNTIME


class UserError(KgwError):
    """The user asked for something impossible or gave bad flags."""

    exit_code = ExitCode.USAGE


class InputError(UserError):
    """An input file, directory or stream cannot be read as Kubernetes objects."""


class NotBuiltError(UserError):
    """A command that exists in the CLI surface but has not been implemented."""


class ClusterError(KgwError):
    """Talking to the API server failed (unreachable, forbidden, bad kubeconfig, ...)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status the API server answered, when it answered


class RuntimePartError(KgwError):
    """A runtime part (Envoy, the xDS server, a child process) failed."""


class StrictError(KgwError):
    """``--strict`` was given and the conversion was not complete."""

    exit_code = ExitCode.STRICT
