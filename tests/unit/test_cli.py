"""CLI conventions: exit codes, one-line errors, lazy imports, kubectl flags, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_gw import __version__, cli

BIN = Path(sys.executable).parent


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_version_client(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["version", "--client"], capsys)
    assert (code, out, err) == (0, f"Client Version: v{__version__}\n", "")


def test_usage_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["migrate", "--no-such-flag"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "--no-such-flag" in line
    assert "kubectl gw migrate --help" in line


def test_bad_output_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["version", "--client", "-o", "toml"], capsys)
    assert code == 2
    assert "'toml' is not one of" in one_error_line(err)


def test_verbose_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["migrate", "-v", "-f", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("error: ")


def write_bad_inputs(tmp_path: Path) -> dict[str, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "malformed.yaml").write_text("apiVersion: v1\nkind: [\n")
    bindir = tmp_path / "bindir"
    bindir.mkdir()
    (bindir / "ok.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    (bindir / "image.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "unknown.yaml").write_text(
        "apiVersion: x.io/v1\nkind: Gizmo\nmetadata: {name: g}\n"
    )
    (tmp_path / "empty.yaml").write_text("")
    return {
        "malformed": tmp_path / "malformed.yaml",
        "binary": bindir,
        "unknown": tmp_path / "unknown.yaml",
        "empty": tmp_path / "empty.yaml",
        "missing": tmp_path / "missing.yaml",
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("malformed", "malformed.yaml: document 1: "),
        ("binary", "image.yaml: not UTF-8 text"),
        ("unknown", "no object of a kind kubectl-gw reads in the input (skipped: Gizmo g)"),
        ("empty", "empty.yaml: empty input, no Kubernetes objects in it"),
        ("missing", "missing.yaml: no such file or directory"),
    ],
)
def test_bad_input_through_the_real_entry_point(tmp_path: Path, case: str, expected: str) -> None:
    """The installed console script: one error line, exit 2, no traceback, nothing written."""
    inputs = write_bad_inputs(tmp_path / "in")
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.run(
        [str(BIN / "kubectl-gw"), "migrate", "-f", str(inputs[case])],
        capture_output=True,
        text=True,
        cwd=workdir,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert expected in one_error_line(proc.stderr)
    assert list(workdir.iterdir()) == []


def test_stdin_is_read_with_dash() -> None:
    ingress = (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
        "metadata: {name: web, namespace: shop}\n"
        "spec:\n  ingressClassName: nginx\n  rules:\n  - host: shop.example.com\n"
        "    http:\n      paths:\n      - path: /\n        pathType: Prefix\n"
        "        backend: {service: {name: web, port: {number: 80}}}\n"
        "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\n"
        "metadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n"
    )
    proc = subprocess.run(
        [str(BIN / "kubectl-gw"), "migrate", "-f", "-"],
        input=ingress,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kind: HTTPRoute" in proc.stdout
    assert "shop.example.com" in proc.stdout


def test_offline_commands_never_import_kubernetes(tmp_path: Path) -> None:
    source = tmp_path / "s.yaml"
    source.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    probe = (
        "import sys\n"
        "from kubectl_gw import cli\n"
        "for args in (['--help'], ['version', '--client'], ['migrate', '-f', sys.argv[1]],"
        " ['migrate', '--help'], ['describe', '--help']):\n"
        "    try:\n"
        "        cli.cli.main(args=args, prog_name='kubectl gw', standalone_mode=False)\n"
        "    except Exception:\n"
        "        pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')\n"
        "print('LOADED', loaded)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(source)], capture_output=True, text=True, check=True
    )
    assert "LOADED []" in proc.stdout


def test_help_names_kubectl_gw_as_the_program() -> None:
    proc = subprocess.run(
        [str(BIN / "kubectl-gw"), "--help"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("Usage: kubectl gw ")
    for group in ("migrate", "describe", "controller", "install", "version"):
        assert f"  {group} " in proc.stdout


def complete(*words: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_KUBECTL_GW")}
    proc = subprocess.run(
        [str(BIN / "kubectl_complete-gw"), *words],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return proc.stdout.splitlines()


def test_completion_through_kubectl_protocol() -> None:
    assert complete("") == ["controller", "describe", "install", "migrate", "version", ":4"]
    assert complete("mig") == ["migrate", ":4"]
    assert complete("migrate", "-o", "") == ["yaml", "json", ":4"]
    assert "--kubeconfig" in complete("migrate", "--k")
    assert complete("migrate", "-f", "") == [":0"]  # paths: let the shell complete files


def test_completion_of_describe_kinds() -> None:
    assert complete("describe", "http") == ["httproute", ":4"]
    assert "request" in complete("describe", "")
