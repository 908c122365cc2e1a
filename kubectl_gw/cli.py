"""The ``kubectl gw`` command line: flags in, engines called, results printed, errors mapped.

Nothing worth testing on its own lives here. Every command that reads a cluster takes the
kubectl flags through ``cluster_options``; every error reaches ``main`` as a ``KgwError`` and
leaves as one ``error:`` line and an exit code (``-v`` adds the traceback).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from kubectl_gw import __version__
from kubectl_gw.errors import ExitCode, KgwError, NotBuiltError
from kubectl_gw.kube import KubeTarget

PROG_NAME = "kubectl gw"
COMPLETE_VAR = "_KUBECTL_GW_COMPLETE"

F = TypeVar("F", bound=Callable[..., Any])

_verbosity = 0  # set by -v wherever it appears; read by main() to decide on tracebacks


def _count_verbosity(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    global _verbosity
    _verbosity = max(_verbosity, value)
    return value


verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    is_eager=True,
    callback=_count_verbosity,
    help="More detail; with an error, its traceback.",
)


def cluster_options(func: F) -> F:
    """kubectl's connection and scope flags, collected into one ``target: KubeTarget``."""

    @click.option("--kubeconfig", metavar="PATH", help="Path to the kubeconfig file to use.")
    @click.option("--context", metavar="NAME", help="The kubeconfig context to use.")
    @click.option(
        "-n", "--namespace", metavar="NS", help="Namespace scope (default: the context's)."
    )
    @click.option(
        "-A",
        "--all-namespaces",
        is_flag=True,
        help="Across all namespaces; -n is then ignored, as in kubectl.",
    )
    @click.option(
        "--request-timeout",
        type=float,
        metavar="SECONDS",
        help="Give up on a single API request after this long.",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        kubeconfig: str | None,
        context: str | None,
        namespace: str | None,
        all_namespaces: bool,
        request_timeout: float | None,
        **kwargs: Any,
    ) -> Any:
        target = KubeTarget(
            kubeconfig=kubeconfig,
            context=context,
            namespace=None if all_namespaces else namespace,
            all_namespaces=all_namespaces,
            request_timeout=request_timeout,
        )
        return func(*args, target=target, **kwargs)

    return wrapper  # type: ignore[return-value]


def output_option(*choices: str, default: str) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def filename_option(func: F) -> F:
    return click.option(
        "-f",
        "--filename",
        "filenames",
        multiple=True,
        metavar="PATH",
        type=click.Path(),
        help="File, directory (recursive) or - for stdin; repeatable. Without it: the cluster.",
    )(func)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@verbose_option
def cli() -> None:
    """Move from Ingress and Emissary-ingress to the Gateway API, and see why routes attach.

    \b
      kubectl gw migrate -f ingress.yaml        convert files, print Gateway API objects
      kubectl gw migrate -A --apply             convert the cluster's Ingresses and apply
      kubectl gw describe httproute NAME        why a route attaches to a listener, or not
      kubectl gw controller run                 serve Gateway API objects with Envoy
    """


# --------------------------------------------------------------------------- version


@cli.command()
@verbose_option
@click.option("--client", is_flag=True, help="Only the client version; do not contact a cluster.")
@output_option("text", "json", "yaml", default="text")
@cluster_options
def version(*, client: bool, output: str, target: KubeTarget) -> None:
    """Print the client version and, unless --client, the API server's."""
    from kubectl_gw import io as kio

    info: dict[str, Any] = {"clientVersion": {"gitVersion": f"v{__version__}"}}
    server_error = None
    if not client:
        from kubectl_gw import kube

        try:
            server = kube.connect(target).server_version()
            info["serverVersion"] = {"gitVersion": server.get("gitVersion", "unknown")}
        except KgwError as err:
            server_error = err
    if output == "text":
        click.echo(f"Client Version: v{__version__}")
        if "serverVersion" in info:
            click.echo(f"Server Version: {info['serverVersion']['gitVersion']}")
    else:
        click.echo(kio.dump_data(info, output), nl=False)
    if server_error is not None:
        raise server_error


# --------------------------------------------------------------------------- migrate


@cli.command()
@verbose_option
@filename_option
@output_option("yaml", "json", default="yaml")
@cluster_options
def migrate(*, filenames: tuple[str, ...], output: str, target: KubeTarget) -> None:
    """Convert Ingress (ingress-nginx) and Emissary resources to the Gateway API."""
    del output, target  # used once conversion lands
    if not filenames:
        raise NotBuiltError("migrate: reading sources from a cluster is not built yet; use -f")
    from kubectl_gw import io as kio

    loaded = kio.load_inputs(filenames)
    for note in loaded.notes:
        click.echo(f"note: {note}", err=True)
    raise NotBuiltError(
        f"migrate: read {len(loaded.objects)} objects; the conversion itself is not built yet"
    )


# --------------------------------------------------------------------------- not built yet


@cli.command(context_settings={"ignore_unknown_options": True})
@verbose_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def describe(args: tuple[str, ...]) -> None:
    """Explain route attachment: which route attaches to which listener, and why not."""
    raise NotBuiltError("describe is not built yet")


@cli.group()
def controller() -> None:
    """The embedded controller that programs Envoy from Gateway API objects."""


@controller.command("run", context_settings={"ignore_unknown_options": True})
@verbose_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def controller_run(args: tuple[str, ...]) -> None:
    """Watch Gateway API objects and serve them with a real Envoy."""
    raise NotBuiltError("controller run is not built yet")


@cli.command(context_settings={"ignore_unknown_options": True})
@verbose_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def install(args: tuple[str, ...]) -> None:
    """Install the Gateway API CRDs and the controller's GatewayClass into a cluster."""
    raise NotBuiltError("install is not built yet")


# --------------------------------------------------------------------------- entry point


def _usage_line(err: click.ClickException) -> str:
    message = err.format_message().strip().replace("\n", " ")
    ctx = getattr(err, "ctx", None)
    if isinstance(err, click.UsageError) and ctx is not None:
        return f"{message} (see '{ctx.command_path} --help')"
    return message


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code; never raises for user-facing failures."""
    global _verbosity
    _verbosity = 0
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name=PROG_NAME,
            complete_var=COMPLETE_VAR,
            standalone_mode=False,
        )
    except KgwError as err:
        _report(err, str(err))
        return int(err.exit_code)
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except click.exceptions.Abort:
        _report(None, "aborted")
        return int(ExitCode.RUNTIME)
    except click.ClickException as err:
        _report(err, _usage_line(err))
        return int(ExitCode.USAGE) if isinstance(err, click.UsageError) else err.exit_code
    except KeyboardInterrupt:
        _report(None, "interrupted")
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as err:  # a bug: still one line unless -v
        _report(err, f"internal error: {type(err).__name__}: {err} (rerun with -v for details)")
        return int(ExitCode.RUNTIME)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def _report(err: BaseException | None, line: str) -> None:
    if err is not None and _verbosity > 0:
        traceback.print_exception(err, file=sys.stderr)
    first = line.strip().splitlines()[0] if line.strip() else "failed"
    click.echo(f"error: {first}", err=True)


def main() -> None:
    """Console-script entry point ``kubectl-gw``."""
    code = run()
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    sys.exit(code)
