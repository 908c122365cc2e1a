"""``kubectl gw migrate``: everything around the conversion engine.

Gather the sources (files, or the cluster: Ingresses, IngressClasses, Services, Secret
*metadata*, the ConfigMaps annotations refer to, Emissary kinds), pick a provider, run its pure
``convert(objects, options)``, then write the result (stdout, or one file per namespace written
all-or-nothing), the summary and the report, and optionally server-side apply it.

Secret data never enters this process from the cluster (metadata-only reads) and is dropped from
Secrets given in files before any converter sees them.

Nothing here exits: failures are ``KgwError`` subclasses; ``StrictError`` (exit 3) when
``--strict`` and the report has entries that are not fully converted.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TextIO, TypeVar, cast

from converters.api import (
    DEFAULT_GATEWAY_CLASS,
    DEFAULT_GATEWAY_NAMESPACE,
    NGINX_ANNOTATION_PREFIX,
    Converter,
    ExistingGateway,
    MigrateOptions,
    Target,
)
from converters.provenance import MANAGED_BY, MANAGED_BY_LABEL, is_managed
from converters.report import INCOMPLETE, STATUSES, Conversion, Report, Status
from kubectl_gw.errors import ClusterError, NotBuiltError, StrictError, UserError
from kubectl_gw.model import (
    EMISSARY_GROUP,
    KINDS,
    KindInfo,
    KubeObject,
    ObjectRef,
    kind_info,
    output_sort_key,
    split_api_version,
)

if TYPE_CHECKING:
    from kubectl_gw.kube import Cluster, KubeTarget

# --------------------------------------------------------------------------- providers

PROVIDERS: dict[str, str] = {
    "ingress-nginx": "converters.ingress_nginx",
    "emissary": "converters.emissary",
}
"""Provider name → module exposing ``convert(objects, options) -> Conversion``."""

DEFAULT_PROVIDER = "ingress-nginx"
EMISSARY_PROVIDER = "emissary"

OutputFormat = Literal["yaml", "json"]
ReportFormat = Literal["table", "json", "yaml"]
DryRun = Literal["none", "client", "server"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("yaml", "json")
REPORT_FORMATS: tuple[ReportFormat, ...] = ("table", "json", "yaml")
DRY_RUN_MODES: tuple[DryRun, ...] = ("none", "client", "server")

# The Helm chart's controller ConfigMap; read when present and --nginx-configmap is not given.
DEFAULT_NGINX_CONFIGMAP = ("ingress-nginx", "ingress-nginx-controller")
# ingress-nginx annotations (after the prefix) whose value names another object: ``name`` in the
# Ingress's namespace, or ``namespace/name``.
NGINX_REFERENCES: dict[str, str] = {
    "custom-headers": "ConfigMap",
    "auth-proxy-set-headers": "ConfigMap",
    "fastcgi-params-configmap": "ConfigMap",
    "auth-secret": "Secret",
    "auth-tls-secret": "Secret",
    "proxy-ssl-secret": "Secret",
}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TLS_SECRET_TYPE = "kubernetes.io/tls"
PROGRESS_MIN = 25  # a progress bar (TTY only) from this many objects on
CLUSTER_FILE_STEM = "_cluster"  # cannot clash with a namespace (DNS labels never start with _)
OUTPUT_DIR_MARKER = ".kubectl-gw"
OUTPUT_DIR_MARKER_TEXT = (
    "Written by `kubectl gw migrate --output-dir`; the directory is replaced as a whole on "
    "every run.\n"
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _info(group: str, kind: str) -> KindInfo:
    found = next((k for k in KINDS if k.group == group and k.kind == kind), None)
    assert found is not None, (group, kind)
    return found


INGRESS = _info("networking.k8s.io", "Ingress")
INGRESS_CLASS = _info("networking.k8s.io", "IngressClass")
SERVICE = _info("", "Service")
SECRET = _info("", "Secret")
CONFIGMAP = _info("", "ConfigMap")
NAMESPACE = _info("", "Namespace")
EMISSARY_KINDS: tuple[KindInfo, ...] = tuple(k for k in KINDS if k.family == "emissary")


# --------------------------------------------------------------------------- flag parsing


def parse_gateway(text: str) -> ExistingGateway:
    """``--gateway NS/NAME[/SECTION]``, validated; a ``UserError`` names what is wrong."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"--gateway: expected NS/NAME or NS/NAME/SECTION, got {text!r}")
    namespace, name = parts[0], parts[1]
    section = parts[2] if len(parts) == 3 else None
    _check_dns(f"--gateway {text!r}: namespace", namespace, label=True)
    _check_dns(f"--gateway {text!r}: name", name, label=False)
    if section is not None:
        _check_dns(f"--gateway {text!r}: section (listener name)", section, label=False)
    return ExistingGateway(namespace, name, section)


def parse_namespaced_name(flag: str, text: str) -> tuple[str, str]:
    """``NS/NAME`` for flags such as ``--nginx-configmap``."""
    parts = text.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"{flag}: expected NS/NAME, got {text!r}")
    _check_dns(f"{flag} {text!r}: namespace", parts[0], label=True)
    _check_dns(f"{flag} {text!r}: name", parts[1], label=False)
    return parts[0], parts[1]


def _check_dns(what: str, value: str, *, label: bool) -> None:
    limit, pattern = (63, _DNS_LABEL) if label else (253, _DNS_SUBDOMAIN)
    kind = "DNS-1123 label" if label else "DNS-1123 subdomain"
    chars = "lowercase letters, digits and '-'" + ("" if label else ", '.'")
    if len(value) > limit or not pattern.match(value):
        raise UserError(f"{what} {value!r} is not a valid {kind} ({chars}, at most {limit})")


def check_annotation_prefix(prefix: str) -> str:
    if len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
        raise UserError(
            f"--annotation-prefix {prefix!r} is not a DNS subdomain such as "
            f"{NGINX_ANNOTATION_PREFIX}"
        )
    return prefix


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class MigrateRequest:
    """Everything ``migrate`` was asked to do, checked, as plain values."""

    filenames: tuple[str, ...] = ()
    namespace: str | None = None  # -n (None: the context's, or everything in files)
    all_namespaces: bool = False
    provider: str | None = None  # None: detected
    options: MigrateOptions = field(default_factory=MigrateOptions)
    nginx_configmap: tuple[str, str] | None = None  # --nginx-configmap NS/NAME
    output: OutputFormat = "yaml"
    output_dir: Path | None = None
    report_path: str | None = None  # "-" for stderr, in place of the summary
    report_format: ReportFormat = "table"
    strict: bool = False
    apply: bool = False
    dry_run: DryRun = "none"


def parse_listener_ports(values: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``--listener-port FROM=TO`` (repeatable) → sorted (from, to) pairs."""
    pairs: dict[int, int] = {}
    for value in values:
        left, sep, right = value.partition("=")
        try:
            source, target = int(left), int(right)
        except ValueError:
            source = target = 0
        if not sep or not (1 <= source <= 65535 and 1 <= target <= 65535):
            raise UserError(f"--listener-port: expected FROM=TO with ports 1-65535, got {value!r}")
        pairs[source] = target
    return tuple(sorted(pairs.items()))


def build_request(
    *,
    filenames: Sequence[str] = (),
    namespace: str | None = None,
    all_namespaces: bool = False,
    provider: str | None = None,
    ingress_classes: Sequence[str] = (),
    include_classless: bool = False,
    gateway_class: str | None = None,
    gateway_namespace: str | None = None,
    gateway: str | None = None,
    gateway_per_namespace: bool = False,
    target: str = "envoy-gateway",
    output: str = "yaml",
    output_dir: str | None = None,
    report: str | None = None,
    report_format: str | None = None,
    strict: bool = False,
    apply: bool = False,
    dry_run: str = "none",
    nginx_configmap: str | None = None,
    annotation_prefix: str | None = None,
    ambassador_id: str | None = None,
    listener_ports: Sequence[str] = (),
) -> MigrateRequest:
    """Check the flags together and turn them into a ``MigrateRequest`` (``UserError`` on a
    bad or contradictory combination, one line each)."""
    if provider is not None and provider not in PROVIDERS:
        raise UserError(f"--provider: unknown provider {provider!r} (known: {_known()})")
    existing = parse_gateway(gateway) if gateway is not None else None
    if existing is not None and gateway_per_namespace:
        raise UserError("--gateway and --gateway-per-namespace cannot be used together")
    if existing is not None and gateway_namespace is not None:
        raise UserError("--gateway-namespace has no effect with --gateway (its NS is used)")
    if gateway_namespace is not None:
        _check_dns("--gateway-namespace", gateway_namespace, label=True)
    if gateway_class is not None:
        _check_dns("--gateway-class", gateway_class, label=False)
    for name in ingress_classes:
        _check_dns("--ingress-class", name, label=False)
    if target not in ("envoy-gateway", "standard"):
        raise UserError(f"--target: expected envoy-gateway or standard, got {target!r}")
    if output not in OUTPUT_FORMATS:
        raise UserError(f"-o: expected yaml or json, got {output!r}")
    if report_format is not None and report is None:
        raise UserError("--report-format needs --report PATH (or --report - for stderr)")
    fmt = report_format or "table"
    if fmt not in REPORT_FORMATS:
        raise UserError(f"--report-format: expected table, json or yaml, got {fmt!r}")
    if dry_run not in DRY_RUN_MODES:
        raise UserError(f"--dry-run: expected none, client or server, got {dry_run!r}")
    if dry_run != "none" and not apply:
        raise UserError(f"--dry-run={dry_run} only applies to --apply; add --apply")
    if report is not None and not report:
        raise UserError("--report: expected a file path or -")
    if output_dir is not None and not output_dir:
        raise UserError("--output-dir: expected a directory path")
    configmap = (
        parse_namespaced_name("--nginx-configmap", nginx_configmap)
        if nginx_configmap is not None
        else None
    )
    prefix = check_annotation_prefix(annotation_prefix or NGINX_ANNOTATION_PREFIX)
    options = MigrateOptions(
        ingress_classes=tuple(dict.fromkeys(ingress_classes)),
        include_classless=include_classless,
        gateway_class=gateway_class or DEFAULT_GATEWAY_CLASS,
        gateway_namespace=(existing.namespace if existing else None)
        or gateway_namespace
        or DEFAULT_GATEWAY_NAMESPACE,
        gateway=existing,
        gateway_per_namespace=gateway_per_namespace,
        target=cast(Target, target),
        annotation_prefix=prefix,
        ambassador_id=ambassador_id or None,
        listener_ports=parse_listener_ports(listener_ports),
    )
    return MigrateRequest(
        filenames=tuple(filenames),
        namespace=None if all_namespaces else namespace,
        all_namespaces=all_namespaces,
        provider=provider,
        options=options,
        nginx_configmap=configmap,
        output=output,
        output_dir=Path(output_dir) if output_dir else None,
        report_path=report,
        report_format=fmt,
        strict=strict,
        apply=apply,
        dry_run=dry_run,
    )


def _known() -> str:
    return ", ".join(sorted(PROVIDERS))


# --------------------------------------------------------------------------- providers


def _families(objects: Iterable[KubeObject]) -> tuple[bool, bool]:
    """(any Ingress, any Emissary kind or ``getambassador.io/*`` annotation)."""
    has_ingress = False
    has_emissary = False
    for obj in objects:
        group, _version = split_api_version(obj["apiVersion"])
        if obj["kind"] == "Ingress" and group == INGRESS.group:
            has_ingress = True
        elif group == EMISSARY_GROUP:
            has_emissary = True
        else:
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if any(key.startswith(f"{EMISSARY_GROUP}/") for key in annotations):
                has_emissary = True
    return has_ingress, has_emissary


def detect_provider(objects: Iterable[KubeObject]) -> str:
    """``emissary`` when the sources hold Emissary kinds or ``getambassador.io`` annotations and
    no Ingress; otherwise ``ingress-nginx``."""
    has_ingress, has_emissary = _families(objects)
    return EMISSARY_PROVIDER if has_emissary and not has_ingress else DEFAULT_PROVIDER


def load_converter(name: str, registry: Mapping[str, str] = PROVIDERS) -> Converter:
    """The provider's ``convert``, imported only now (``NotBuiltError`` if it does not exist)."""
    module_name = registry.get(name)
    if module_name is None:
        raise UserError(f"unknown provider {name!r} (known: {', '.join(sorted(registry))})")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            raise NotBuiltError(f"migrate: the {name} provider is not built yet") from err
        raise
    convert = getattr(module, "convert", None)
    if not callable(convert):
        raise NotBuiltError(f"migrate: the {name} provider has no convert() yet")
    return cast(Converter, convert)


# --------------------------------------------------------------------------- sources


@dataclass
class Sources:
    objects: list[KubeObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nginx_configmap: KubeObject | None = None


def scrub_secret(obj: KubeObject) -> KubeObject:
    """A Secret reduced to what a converter may see: identity, labels, annotations (without
    kubectl's last-applied copy, which holds the data) and type. Never ``data``."""
    meta: dict[str, Any] = dict(obj.get("metadata") or {})
    kept = {
        k: meta[k]
        for k in ("name", "namespace", "labels", "annotations", "uid", "creationTimestamp")
        if k in meta
    }
    annotations = kept.get("annotations")
    if isinstance(annotations, dict):
        kept["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": kept}
    secret_type = cast(dict[str, Any], obj).get("type")
    if isinstance(secret_type, str):
        out["type"] = secret_type
    return cast(KubeObject, out)


def _is_secret(obj: KubeObject) -> bool:
    return obj["kind"] == "Secret" and obj["apiVersion"] == "v1"


def _namespaced(obj: KubeObject) -> bool:
    info = kind_info(obj["apiVersion"], obj["kind"])
    return info.namespaced if info is not None else bool(obj["metadata"].get("namespace"))


def gather_from_files(
    filenames: Sequence[str],
    *,
    namespace: str | None,
    stdin: IO[bytes] | None = None,
) -> Sources:
    """Objects from ``-f``: Secrets scrubbed, namespace-less namespaced objects put in ``-n``
    (or ``default``, as ``kubectl apply -f`` would), and with ``-n`` only that namespace kept."""
    from kubectl_gw import io as kio

    loaded = kio.load_inputs(filenames, stdin=stdin)
    sources = Sources(notes=list(loaded.notes))
    dropped = 0
    for item in loaded.objects:
        obj = item.obj
        if _namespaced(obj):
            meta = obj["metadata"]
            if not meta.get("namespace"):
                obj = cast(
                    KubeObject, {**obj, "metadata": {**meta, "namespace": namespace or "default"}}
                )
            elif namespace is not None and meta["namespace"] != namespace:
                dropped += 1
                continue
        sources.objects.append(scrub_secret(obj) if _is_secret(obj) else obj)
    if dropped:
        sources.notes.append(f"-n {namespace}: left out {dropped} objects of other namespaces")
    return sources


class SourceReader(Protocol):
    """What gathering needs from a cluster (``ClusterReader`` wraps ``kube.Cluster``)."""

    def list_objects(self, info: KindInfo, namespace: str | None) -> list[KubeObject]: ...

    def get_object(self, info: KindInfo, namespace: str, name: str) -> KubeObject | None: ...

    def list_secret_metadata(
        self, namespace: str | None, *, tls_only: bool = False
    ) -> list[KubeObject]: ...

    def get_secret_metadata(self, namespace: str, name: str) -> KubeObject | None: ...

    def serves(self, group: str, version: str) -> bool: ...


class ClusterReader:
    """``SourceReader`` over a connected ``kube.Cluster`` (metadata-only for Secrets)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def list_objects(self, info: KindInfo, namespace: str | None) -> list[KubeObject]:
        return self.cluster.list_objects(info, namespace)

    def get_object(self, info: KindInfo, namespace: str, name: str) -> KubeObject | None:
        return self.cluster.get_object(info, namespace, name)

    def list_secret_metadata(
        self, namespace: str | None, *, tls_only: bool = False
    ) -> list[KubeObject]:
        from kubectl_gw import kube

        selector = f"type={TLS_SECRET_TYPE}" if tls_only else None
        return kube.list_metadata(self.cluster, SECRET, namespace, field_selector=selector)

    def get_secret_metadata(self, namespace: str, name: str) -> KubeObject | None:
        from kubectl_gw import kube

        return kube.get_metadata(self.cluster, SECRET, namespace, name)

    def serves(self, group: str, version: str) -> bool:
        try:
            found = self.cluster.request("GET", f"/apis/{group}")
        except ClusterError as err:
            if err.status == 404:
                return False
            raise
        versions = (found or {}).get("versions") or []
        return any(v.get("version") == version for v in versions)


def _optional_list(
    reader: SourceReader, info: KindInfo, namespace: str | None, notes: list[str]
) -> list[KubeObject]:
    """A list that may be forbidden (403: noted) or not served (404: nothing)."""
    try:
        return reader.list_objects(info, namespace)
    except ClusterError as err:
        if err.status == 404:
            return []
        if err.status == 403:
            notes.append(f"cannot list {info.plural} (forbidden); continuing without them")
            return []
        raise


def _reference(value: str, default_namespace: str) -> tuple[str, str] | None:
    value = value.strip()
    parts = value.split("/")
    if len(parts) == 1 and parts[0]:
        return default_namespace, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    return None  # malformed: the converter reports it


def gather_from_cluster(
    reader: SourceReader,
    namespace: str | None,
    *,
    annotation_prefix: str = NGINX_ANNOTATION_PREFIX,
    progress: Callable[[Sequence[Any], str], Iterable[Any]] | None = None,
) -> Sources:
    """Read the sources of a migration from a cluster: ``namespace`` None means all."""
    sources = Sources()
    notes = sources.notes
    objects = sources.objects
    ingresses = reader.list_objects(INGRESS, namespace)
    objects.extend(ingresses)
    objects.extend(_optional_list(reader, INGRESS_CLASS, None, notes))
    objects.extend(reader.list_objects(SERVICE, namespace))
    tls = {ObjectRef.of(s) for s in reader.list_secret_metadata(namespace, tls_only=True)}
    secrets: dict[tuple[str, str], KubeObject] = {}
    for listed in reader.list_secret_metadata(namespace):
        secret = scrub_secret(listed)
        if ObjectRef.of(secret) in tls:
            cast(dict[str, Any], secret)["type"] = TLS_SECRET_TYPE
        secrets[(secret["metadata"].get("namespace", ""), secret["metadata"]["name"])] = secret
    if reader.serves(EMISSARY_GROUP, EMISSARY_KINDS[0].versions[0]):
        for info in EMISSARY_KINDS:
            objects.extend(_optional_list(reader, info, namespace, notes))

    # Objects that annotations name, read one by one (they may live in other namespaces).
    wanted: dict[tuple[str, str, str], None] = {}
    for ingress in ingresses:
        ing_meta = ingress["metadata"]
        for key, value in (ing_meta.get("annotations") or {}).items():
            prefix, _, suffix = key.partition("/")
            kind = NGINX_REFERENCES.get(suffix) if prefix == annotation_prefix else None
            ref = _reference(value, ing_meta.get("namespace", "")) if kind else None
            if kind and ref and (kind != "Secret" or ref not in secrets):
                wanted[(kind, *ref)] = None
    pending = sorted(wanted)
    for kind, ns, name in progress(pending, "reading") if progress else pending:
        if kind == "Secret":
            found = reader.get_secret_metadata(ns, name)
            if found is not None:
                secrets[(ns, name)] = scrub_secret(found)
        else:
            found = _optional_get(reader, CONFIGMAP, ns, name, notes)
            if found is not None:
                objects.append(found)
    objects.extend(secrets[key] for key in sorted(secrets))
    return sources


def _optional_get(
    reader: SourceReader, info: KindInfo, namespace: str, name: str, notes: list[str]
) -> KubeObject | None:
    try:
        return reader.get_object(info, namespace, name)
    except ClusterError as err:
        if err.status == 403:
            notes.append(f"cannot read {info.kind} {namespace}/{name} (forbidden)")
            return None
        raise


def find_nginx_configmap(
    sources: Sources,
    wanted: tuple[str, str] | None,
    reader: SourceReader | None,
) -> KubeObject | None:
    """The ingress-nginx controller ConfigMap: ``--nginx-configmap`` (which must exist), else
    the Helm default name when it happens to be there."""
    ns, name = wanted or DEFAULT_NGINX_CONFIGMAP
    for obj in sources.objects:
        meta = obj["metadata"]
        if obj["kind"] == "ConfigMap" and (meta.get("namespace"), meta["name"]) == (ns, name):
            found: KubeObject | None = obj
            break
    else:
        found = None
        if reader is not None:
            found = _optional_get(reader, CONFIGMAP, ns, name, sources.notes)
    if found is None and wanted is not None:
        where = "the cluster" if reader is not None else "the input files"
        raise UserError(f"--nginx-configmap {ns}/{name}: no such ConfigMap in {where}")
    if found is not None and wanted is None:
        sources.notes.append(f"using the ingress-nginx controller ConfigMap {ns}/{name}")
    return found


# --------------------------------------------------------------------------- output


def render_objects(objects: Iterable[KubeObject], fmt: OutputFormat) -> str:
    from kubectl_gw import io as kio

    return kio.to_json(objects) if fmt == "json" else kio.to_yaml(objects)


def files_by_namespace(objects: Sequence[KubeObject], fmt: OutputFormat) -> dict[str, str]:
    """``<namespace>.<fmt>`` per namespace, ``_cluster.<fmt>`` for cluster-scoped objects."""
    groups: dict[str, list[KubeObject]] = {}
    for obj in objects:
        ns = (obj["metadata"].get("namespace") or "") if _namespaced(obj) else ""
        groups.setdefault(ns or CLUSTER_FILE_STEM, []).append(obj)
    return {f"{stem}.{fmt}": render_objects(groups[stem], fmt) for stem in sorted(groups)}


def write_output_dir(
    directory: Path,
    files: Mapping[str, str],
    *,
    write: Callable[[Path, str], None] | None = None,
) -> None:
    """Write ``files`` as the whole content of ``directory``, all or nothing.

    Everything is written to a temporary sibling directory first and then renamed into place;
    a previous output (recognised by its marker file) is swapped out and removed only once the
    new one is in place. A failure at any point leaves the old state and no temporary files.
    A non-empty directory that kubectl-gw did not write is never touched.
    """
    writer = write or _write_file
    directory = directory.absolute()
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--output-dir {directory}: exists and is not a directory")
    previous = directory.is_dir() and any(directory.iterdir())
    if previous and not (directory / OUTPUT_DIR_MARKER).is_file():
        raise UserError(
            f"--output-dir {directory}: not empty and not written by kubectl-gw; "
            "choose a new or empty directory"
        )
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".new", dir=parent))
    except OSError as err:
        raise UserError(f"--output-dir {directory}: {err.strerror or err}") from err
    old: Path | None = None
    try:
        for name in sorted(files):
            writer(staging / name, files[name])
        writer(staging / OUTPUT_DIR_MARKER, OUTPUT_DIR_MARKER_TEXT)
        staging.chmod(0o755)
        if previous:
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=parent))
            directory.rename(old / "out")
            try:
                staging.rename(directory)
            except BaseException:
                (old / "out").rename(directory)
                raise
        else:
            staging.rename(directory)  # replaces an empty directory, too
    except OSError as err:
        raise UserError(f"--output-dir {directory}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _write_file(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------- report rendering

_SEVERITY: tuple[Status, ...] = ("error", "unsupported", "partial", "converted", "ignored")


def _table(rows: list[list[str]]) -> str:
    from tabulate import simple_separated_format, tabulate

    text = tabulate(rows, tablefmt=simple_separated_format("   "), disable_numparse=True)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _ref_text(ref: ObjectRef) -> str:
    return f"{ref.kind}/{ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind}/{ref.name}"


def summary_table(report: Report) -> str:
    """One line per source object: its overall result and how many keys had each status."""
    counts = report.counts_by_source()
    if not counts:
        return ""
    rows = [["KIND", "NAMESPACE", "NAME", "RESULT", *[s.upper() for s in STATUSES]]]
    for source, counter in counts.items():
        worst = next(s for s in _SEVERITY if counter[s])
        rows.append(
            [
                source.kind,
                source.namespace,
                source.name,
                worst,
                *[str(counter[s]) for s in STATUSES],
            ]
        )
    return _table(rows)


def summary_line(report: Report, objects: int, provider: str) -> str:
    totals = Counter(e.status for e in report.entries)
    sources = len(report.counts_by_source())
    detail = ", ".join(f"{totals[s]} {s}" for s in STATUSES if totals[s])
    return f"{provider}: {sources} source objects -> {objects} Gateway API objects" + (
        f"; report entries: {detail}" if detail else ""
    )


def render_report(report: Report, fmt: ReportFormat, provider: str) -> str:
    if fmt == "table":
        rows = [["KIND", "NAMESPACE", "NAME", "KEY", "STATUS", "MESSAGE", "OUTPUTS"]]
        for entry in report.sorted_entries():
            rows.append(
                [
                    entry.source.kind,
                    entry.source.namespace,
                    entry.source.name,
                    entry.key,
                    entry.status,
                    _one_line(entry.message),
                    ", ".join(_ref_text(o) for o in entry.outputs),
                ]
            )
        return _table(rows) if len(rows) > 1 else ""
    from kubectl_gw import io as kio

    totals = Counter(e.status for e in report.entries)
    data = {
        "kind": "MigrationReport",
        "provider": provider,
        "summary": {s: totals[s] for s in STATUSES},
        "incomplete": sum(totals[s] for s in INCOMPLETE),
        "entries": report.to_data(),
    }
    return kio.dump_data(data, fmt)


# --------------------------------------------------------------------------- apply


class Applier(Protocol):
    """What applying needs from a cluster (``kube.Cluster`` has exactly these)."""

    def get_object(self, info: KindInfo, namespace: str | None, name: str) -> KubeObject | None: ...

    def apply(
        self, obj: KubeObject, info: KindInfo, *, dry_run: bool = False, force: bool = False
    ) -> KubeObject: ...


@dataclass
class ApplyResult:
    applied: list[ObjectRef] = field(default_factory=list)
    conflicts: list[ObjectRef] = field(default_factory=list)
    failed: list[ObjectRef] = field(default_factory=list)
    skipped: list[ObjectRef] = field(default_factory=list)
    created_namespaces: list[str] = field(default_factory=list)


def resource_name(info: KindInfo, name: str) -> str:
    """kubectl's ``-o name`` form: ``httproute.gateway.networking.k8s.io/web``."""
    kind = info.kind.lower()
    return f"{kind}.{info.group}/{name}" if info.group else f"{kind}/{name}"


T = TypeVar("T")
Progress = Callable[[Sequence[T], str], Iterable[T]]


def _no_progress(items: Sequence[T], _label: str) -> Iterable[T]:
    return items


def apply_objects(
    applier: Applier,
    objects: Sequence[KubeObject],
    report: Report,
    *,
    dry_run: DryRun,
    gateway_namespace: str,
    echo: Callable[[str], None],
    warn: Callable[[str], None],
    progress: Progress[tuple[KubeObject, KindInfo]] = _no_progress,
) -> ApplyResult:
    """Server-side apply ``objects`` in kind order, as field manager ``kubectl-gw``.

    Ingresses are never sent. An existing object without kubectl-gw's managed-by label is a
    conflict: reported, not applied. Namespaces are never created, except the gateway namespace
    (said in the report). Every problem becomes an ``error`` report entry naming the object.
    """
    result = ApplyResult()
    suffix = {"none": "", "client": " (dry run)", "server": " (server dry run)"}[dry_run]
    sources_of = _sources_by_output(report)

    def problem(obj_ref: ObjectRef, message: str) -> None:
        warn(message)
        for source in sources_of.get(obj_ref) or [obj_ref]:
            report.add(source, "apply", "error", message, [obj_ref])

    plan: list[tuple[KubeObject, KindInfo]] = []
    for obj in sorted(objects, key=output_sort_key):
        ref = ObjectRef.of(obj)
        info = kind_info(obj["apiVersion"], obj["kind"])
        if info is None:
            problem(ref, f"{ref}: unknown kind, not applied")
            result.skipped.append(ref)
        elif info.family == "ingress":
            problem(ref, f"{ref}: kubectl-gw never modifies {info.kind} objects; not applied")
            result.skipped.append(ref)
        else:
            plan.append((obj, info))

    # Namespaces: only the gateway namespace may be created.
    missing: set[str] = set()
    validate_later: set[str] = set()
    for ns in sorted({o["metadata"].get("namespace", "") for o, i in plan if i.namespaced}):
        if not ns or _namespace_exists(applier, ns):
            continue
        if ns != gateway_namespace:
            missing.add(ns)
            continue
        ns_obj = cast(
            KubeObject,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
            },
        )
        ns_ref = ObjectRef.of(ns_obj)
        try:
            if dry_run != "client":
                applier.apply(ns_obj, NAMESPACE, dry_run=dry_run == "server")
        except ClusterError as err:
            problem(ns_ref, f"{ns_ref}: cannot create the gateway namespace: {err}")
            missing.add(ns)
            continue
        if dry_run != "none":
            validate_later.add(ns)
            if dry_run == "server":
                warn(
                    f"namespace {ns} does not exist yet, so the API server cannot validate the "
                    "objects that go there in a dry run"
                )
        result.created_namespaces.append(ns)
        echo(f"{resource_name(NAMESPACE, ns)} serverside-applied{suffix}")
        report.add(
            ns_ref,
            "apply",
            "converted",
            f"namespace {ns} did not exist; "
            + ("it would be created" if dry_run != "none" else "created it")
            + " for the Gateway API objects that live there (label "
            f"{MANAGED_BY_LABEL}={MANAGED_BY})",
            [ns_ref],
        )

    for obj, info in progress(plan, "applying"):
        ref = ObjectRef.of(obj)
        obj_ns = obj["metadata"].get("namespace") if info.namespaced else None
        if obj_ns in missing:
            problem(
                ref,
                f"{ref}: namespace {obj_ns} does not exist; kubectl-gw only creates the "
                f"gateway namespace ({gateway_namespace}); not applied",
            )
            result.skipped.append(ref)
            continue
        if obj_ns in validate_later:
            # The namespace exists only in this dry run: the API server cannot check the object.
            echo(f"{resource_name(info, ref.name)} serverside-applied{suffix}")
            result.applied.append(ref)
            continue
        try:
            existing = applier.get_object(info, obj_ns, ref.name)
            if existing is not None and not is_managed(existing):
                problem(
                    ref,
                    f"{ref}: conflict: it already exists and is not managed by kubectl-gw "
                    f"(no label {MANAGED_BY_LABEL}={MANAGED_BY}); left as it is, not applied",
                )
                result.conflicts.append(ref)
                continue
            if dry_run != "client":
                applier.apply(_with_managed_label(obj), info, dry_run=dry_run == "server")
        except ClusterError as err:
            hint = f" (is the {info.kind} CRD installed?)" if err.status == 404 else ""
            problem(ref, f"{ref}: apply failed: {err}{hint}")
            result.failed.append(ref)
            continue
        echo(f"{resource_name(info, ref.name)} serverside-applied{suffix}")
        result.applied.append(ref)
    return result


def _namespace_exists(applier: Applier, name: str) -> bool:
    try:
        return applier.get_object(NAMESPACE, None, name) is not None
    except ClusterError as err:
        if err.status == 403:  # cannot tell: let the apply itself say what is wrong
            return True
        raise


def _sources_by_output(report: Report) -> dict[ObjectRef, list[ObjectRef]]:
    found: dict[ObjectRef, dict[ObjectRef, None]] = {}
    for entry in report.entries:
        for out in entry.outputs:
            found.setdefault(out, {})[entry.source] = None
    return {out: sorted(sources) for out, sources in found.items()}


def _with_managed_label(obj: KubeObject) -> KubeObject:
    if is_managed(obj):
        return obj
    meta: dict[str, Any] = dict(obj["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY}
    return cast(KubeObject, {**obj, "metadata": meta})


# --------------------------------------------------------------------------- orchestration


@dataclass
class Console:
    """Where ``migrate`` writes: objects and apply lines to ``out``, the rest to ``err``."""

    out: IO[str]
    err: IO[str]

    def echo(self, text: str) -> None:
        self.out.write(text + "\n")

    def warn(self, text: str) -> None:
        self.err.write(f"warning: {text}\n")

    def note(self, text: str) -> None:
        self.err.write(f"note: {text}\n")

    def progress(self, items: Sequence[T], label: str) -> Iterable[T]:
        if len(items) < PROGRESS_MIN or not _isatty(self.err):
            return items
        return _progress_iter(items, label, self.err)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _progress_iter(items: Sequence[T], label: str, stream: IO[str]) -> Iterator[T]:
    import click

    with click.progressbar(items, label=label, file=cast(TextIO, stream)) as bar:
        yield from bar


@dataclass
class MigrateOutcome:
    provider: str
    conversion: Conversion
    applied: ApplyResult | None = None


def run(
    request: MigrateRequest,
    console: Console,
    *,
    target: KubeTarget | None = None,
    converter: Converter | None = None,
    connect: Callable[[KubeTarget], Any] | None = None,
    reader_factory: Callable[[Any], SourceReader] = ClusterReader,
    stdin: IO[bytes] | None = None,
) -> MigrateOutcome:
    """Do one ``migrate``: gather, convert, write, apply, report. Raises ``StrictError`` last,
    after everything else is written, when ``--strict`` and the report is incomplete."""
    if request.report_path not in (None, "-"):
        _check_writable(Path(str(request.report_path)))  # fail before anything is applied
    cluster = None
    reader: SourceReader | None = None
    if request.filenames:  # bad input files fail before any cluster is contacted
        sources = gather_from_files(request.filenames, namespace=request.namespace, stdin=stdin)
        if request.apply:
            cluster = _connect(target, connect)
    else:
        cluster = _connect(target, connect)
        reader = reader_factory(cluster)
        scope = None if request.all_namespaces else request.namespace or cluster.namespace
        sources = gather_from_cluster(
            reader,
            scope,
            annotation_prefix=request.options.annotation_prefix,
            progress=console.progress,
        )
    provider = request.provider or detect_provider(sources.objects)
    options = request.options
    if provider == DEFAULT_PROVIDER:
        configmap = find_nginx_configmap(sources, request.nginx_configmap, reader)
        options = replace(options, nginx_configmap=configmap)
    elif request.nginx_configmap is not None:
        raise UserError(f"--nginx-configmap only applies to --provider {DEFAULT_PROVIDER}")
    for note in sources.notes:
        console.note(note)
    if request.provider is None:
        has_ingress, has_emissary = _families(sources.objects)
        if provider != DEFAULT_PROVIDER:
            console.note(
                f"no Ingress in the sources, Emissary resources found: provider {provider}"
            )
        elif has_ingress and has_emissary:
            console.note(
                f"Emissary resources found too; they are not converted by {provider} "
                f"(run again with --provider {EMISSARY_PROVIDER})"
            )

    convert = converter or load_converter(provider)
    conversion = convert(sources.objects, options)
    objects = sorted(conversion.objects, key=output_sort_key)
    incomplete = conversion.report.incomplete()

    if request.output_dir is not None:
        write_output_dir(request.output_dir, files_by_namespace(objects, request.output))
    elif not request.apply:
        console.out.write(render_objects(objects, request.output))

    applied: ApplyResult | None = None
    if request.apply:
        if request.strict and incomplete:
            console.note("--strict: the conversion is incomplete, so nothing was applied")
        else:
            assert cluster is not None
            applied = apply_objects(
                cluster,
                objects,
                conversion.report,
                dry_run=request.dry_run,
                gateway_namespace=options.gateway_namespace,
                echo=console.echo,
                warn=console.warn,
                progress=console.progress,
            )

    report = conversion.report
    if request.report_path is not None:
        text = render_report(report, request.report_format, provider)
        if request.report_path == "-":
            console.err.write(text)
        else:
            from kubectl_gw import io as kio

            try:
                kio.write_atomic(Path(request.report_path), text)
            except OSError as err:
                raise UserError(f"--report {request.report_path}: {err.strerror or err}") from err
    if request.report_path != "-":
        console.err.write(summary_table(report))
    console.err.write(summary_line(report, len(objects), provider) + "\n")

    if applied is not None and applied.failed:
        raise ClusterError(
            f"{len(applied.failed)} of {len(objects)} objects could not be applied"
            " (see the warnings and the report)"
        )
    incomplete = report.incomplete()
    if request.strict and incomplete:
        raise StrictError(
            f"--strict: {len(incomplete)} report entries are not fully converted "
            f"({_status_counts(incomplete)})"
        )
    return MigrateOutcome(provider, conversion, applied)


def _check_writable(path: Path) -> None:
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--report {path}: {err.strerror or err}") from err
    if path.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"--report {path}: cannot write there")


def _status_counts(entries: Iterable[Any]) -> str:
    totals = Counter(e.status for e in entries)
    return ", ".join(f"{totals[s]} {s}" for s in STATUSES if totals[s])


def _connect(target: KubeTarget | None, connect: Callable[[KubeTarget], Any] | None) -> Any:
    from kubectl_gw.kube import KubeTarget as _Target

    chosen = target or _Target()
    if connect is not None:
        return connect(chosen)
    from kubectl_gw import kube

    return kube.connect(chosen)
