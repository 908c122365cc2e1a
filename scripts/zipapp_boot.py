"""Start-up code of the single-file plugin (the zipapp that krew installs as ``kubectl-gw``).

``scripts/build_dist.py`` copies this file into the zipapp as ``_kgw_boot.py``, next to a
three-line ``__main__.py`` that calls :func:`main`. It uses the standard library only and keeps
old syntax, so that an interpreter older than 3.11 still gets a one-line explanation.

The zip holds two parts:

- at its root, the product and the pure-Python dependencies of the offline commands (click,
  ruamel.yaml, jinja2, tabulate, ...). The zip is ``sys.path[0]``, so they win over whatever
  the interpreter has installed. ``--help``, completion and ``migrate -f`` run from here and
  never write anything.
- zips inside the zip: the cluster client (``kubernetes`` and what only it needs) in
  ``_late/cluster.zip``, and ``pydantic_core``, which has no pure fallback, built once per
  CPython version in ``_late/native-<cache tag>.zip`` (zipimport cannot load a shared
  library; nesting keeps their ~3000 files out of the directory zipimport reads at every
  start). The first import of one of their names -- only cluster commands do that -- unpacks
  the cluster zip and the running interpreter's native zip once into ``$KUBECTL_GW_CACHE_DIR`` (else
  ``$XDG_CACHE_HOME/kubectl-gw``, else ``~/.cache/kubectl-gw``), under ``zipapp/`` and a name
  that carries the build's content hash, atomically; unpacks of other builds for the same
  interpreter are removed then. Imported from a real directory, those modules get their
  bytecode cached, so only the first cluster command pays for compiling ``kubernetes``.

Which program runs: ``kubectl_complete-gw`` (the completion helper kubectl >= 1.26 calls) when
the launcher passes ``entry="complete"`` or when ``argv[0]``'s base name starts with
``kubectl_complete``; ``kubectl-gw`` otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import zipfile

# zipfile, tempfile, shutil and io are imported where a late unpack needs them: every start
# pays for what is imported here.

MIN_PYTHON = (3, 11)
BUILD_INFO = "_kgw_boot.json"
LATE_CLUSTER = "_late/cluster.zip"
LATE_NATIVE = "_late/native-{tag}.zip"
UNPACK_DIR = "zipapp"
ENTRY_COMPLETE = "complete"
ENTRY_MAIN = "main"


def archive_path() -> Path:
    """The zipapp file this module was imported from."""
    return Path(__file__).absolute().parent  # not resolve(): zipimport knows the unresolved path


def read_build_info(archive: Path) -> dict[str, object]:
    """The build facts ``build_dist.py`` stored in the zip (version, platform, hashes)."""
    loader = globals().get("__loader__")
    get_data = getattr(loader, "get_data", None)
    if get_data is not None:  # zipimport already holds the zip's directory: no second parse
        raw = get_data(str(archive / BUILD_INFO))
    else:
        import zipfile

        with zipfile.ZipFile(archive) as zf:
            raw = zf.read(BUILD_INFO)
    data: dict[str, object] = json.loads(raw.decode("utf-8"))
    return data


def cache_home() -> Path:
    """Where the late part is unpacked (see the module docstring)."""
    configured = os.environ.get("KUBECTL_GW_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kubectl-gw"


class LateUnavailableError(ImportError):
    """The running interpreter has no bundled native part, or the unpack failed."""


def unpack_late_part(archive: Path, info: dict[str, object], tag: str, root: Path) -> Path:
    """Unpack the cluster zip and the TAG native zip of ARCHIVE into ROOT once; return the dir.

    The directory name carries the content hash, so a new build never reuses an old unpack; a
    half-finished unpack is never visible (temporary directory, then one rename).
    """
    hashes = info.get("native")
    if not isinstance(hashes, dict) or tag not in hashes:
        have = ", ".join(sorted(hashes)) if isinstance(hashes, dict) else "none"
        raise LateUnavailableError(
            "this kubectl-gw build carries the cluster client's native part for "
            f"{have} on {info.get('platform')}, not for {tag}; "
            "use one of those Pythons, or install kubectl-gw with pipx"
        )
    parent = root / UNPACK_DIR
    name = f"{info.get('version')}-{tag}-{str(hashes[tag])[:16]}"
    final = parent / name
    if (final / ".complete").is_file():
        return final
    import io
    import shutil
    import tempfile
    import zipfile

    parts = (LATE_CLUSTER, LATE_NATIVE.format(tag=tag))
    try:
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=parent))
        try:
            with zipfile.ZipFile(archive) as outer:
                for part in parts:
                    with zipfile.ZipFile(io.BytesIO(outer.read(part))) as inner:
                        extract_all(inner, scratch)
            (scratch / ".complete").write_text(str(hashes[tag]) + "\n")
            try:
                scratch.rename(final)
            except OSError:
                if not (final / ".complete").is_file():
                    raise  # not a lost race with another process: a real failure
        finally:
            if scratch.is_dir():
                shutil.rmtree(scratch, ignore_errors=True)
    except OSError as err:
        raise LateUnavailableError(
            f"cannot unpack the cluster client into {parent}: {err} "
            "(set KUBECTL_GW_CACHE_DIR to a writable directory)"
        ) from err
    prune_other_builds(parent, keep=name, tag=tag)
    return final


def extract_all(zf: zipfile.ZipFile, into: Path) -> None:
    """Extract every file of ZF under INTO with its recorded mode (names were made by the build)."""
    import shutil

    for member in zf.infolist():
        if member.is_dir():
            continue
        target = into.joinpath(*member.filename.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        target.chmod((member.external_attr >> 16) & 0o777 or 0o644)


def prune_other_builds(parent: Path, keep: str, tag: str) -> None:
    """Remove unpacks of other builds for the same interpreter (best effort)."""
    import shutil

    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name != keep and not entry.name.startswith(".") and f"-{tag}-" in entry.name:
            shutil.rmtree(entry, ignore_errors=True)


class LateFinder:
    """A ``sys.meta_path`` finder that unpacks the late part on the first import needing it."""

    def __init__(self, archive: Path, info: dict[str, object]) -> None:
        self.archive = archive
        self.info = info
        names = info.get("lazy_packages")
        self.names = frozenset(names) if isinstance(names, list) else frozenset()
        self.directory: Path | None = None

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if path is not None or fullname not in self.names:
            return None  # submodules follow their package's __path__
        if self.directory is None:
            tag = sys.implementation.cache_tag or sys.implementation.name
            self.directory = unpack_late_part(self.archive, self.info, tag, cache_home())
            # after the zip, before site-packages; importlib.metadata finds the dist-info here
            zip_entry = str(self.archive)
            where = sys.path.index(zip_entry) + 1 if zip_entry in sys.path else 0
            sys.path.insert(where, str(self.directory))
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(fullname, [str(self.directory)])


def choose_entry(entry: str | None, argv0: str) -> str:
    """``complete`` or ``main`` (see the module docstring)."""
    if entry in (ENTRY_COMPLETE, ENTRY_MAIN):
        return entry
    if Path(argv0).name.startswith("kubectl_complete"):
        return ENTRY_COMPLETE
    return ENTRY_MAIN


def main(entry: str | None = None) -> None:
    """Check the interpreter, hook the late finder in, run the chosen program."""
    if sys.version_info < MIN_PYTHON:
        found = ".".join(str(part) for part in sys.version_info[:3])
        sys.stderr.write(f"error: kubectl-gw needs Python 3.11 or newer; python3 is {found}\n")
        sys.exit(2)
    archive = archive_path()
    sys.meta_path.insert(0, LateFinder(archive, read_build_info(archive)))  # type: ignore[arg-type]
    if choose_entry(entry, sys.argv[0] if sys.argv else "") == ENTRY_COMPLETE:
        from kubectl_gw import completion

        completion.main()
    else:
        from kubectl_gw import cli

        cli.main()
