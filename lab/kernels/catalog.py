"""The kernel catalog: TOML files under ``kernels/`` (and the user's own), read into data.

Each file describes one kernel target (a kernel series on one architecture) and
where to get it. Nothing here touches the network: resolving an entry to concrete
packages is the fetcher's job.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.errors import CatalogError, UsageError
from lab.host.resources import package_dir
from lab.kernels.arches import Arch, get_arch, host_arch

#: The catalog shipped with ebpf-lab: the checkout's ``kernels/``, installed as ``lab/kernels``.
BUILTIN_DIR = package_dir("lab.kernels.builtin")
#: Colon-separated extra catalog directories (a user's own kernels).
EXTRA_ENV = "EBPF_LAB_KERNELS"
#: The series the hello lab runs on when no kernel is named.
DEFAULT_SERIES = "6.1"


@dataclass(frozen=True)
class KernelSpec:
    """One catalog entry: a kernel series for one architecture."""

    #: Short readable id used on the command line and in test ids: ``6.1-amd64``.
    id: str
    #: Major.minor series, compared by ``@pytest.mark.kernel``.
    series: str
    #: Guest architecture.
    arch: Arch
    #: ``debian`` (resolved through apt) or ``local`` (files the user already has).
    source: str
    #: Debian suites searched for the packages, e.g. ``("bookworm",)``.
    suites: tuple[str, ...] = ()
    #: Debian kernel flavor: ``amd64``, ``arm64``, ``cloud-amd64``…
    flavor: str = ""
    #: One line for ``lab kernels``.
    description: str = ""
    #: For ``local`` kernels: the kernel image to boot.
    image: Path | None = None
    #: For ``local`` kernels: the ``lib/modules/<release>`` directory (optional).
    modules: Path | None = None
    #: For ``local`` kernels: a headers directory (a kernel build tree or ``linux-headers-*``).
    headers: Path | None = None
    #: Debian suite whose userland (python3-bpfcc) suits this kernel, for root-disk guests.
    userland: str = ""
    #: Boot *userland* from its own root disk even on the host's architecture (``--userland debian``).
    own_userland: bool = False
    #: What a lab may need that this kernel does not do, with why (``[lacks]`` in the entry):
    #: ``(("entry-kprobes", "Debian's riscv64 6.12 ..."),)``; see lab.labs.runner.unsupported.
    lacks: tuple[tuple[str, str], ...] = ()
    #: The file the entry came from, for error messages.
    path: Path = field(default=Path(), compare=False)

    @property
    def series_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.series.split("."))

    @property
    def foreign(self) -> bool:
        """The kernel is for another architecture than the host's (see :attr:`Arch.foreign`)."""
        return self.arch.foreign

    @property
    def lacking(self) -> dict[str, str]:
        """What labs may need that a guest of this entry lacks, with why: the kernel's own
        ``lacks``, and the programs Debian does not build for its arch when it boots its own userland."""
        missing = dict(self.lacks)
        if self.own_userland or self.foreign:
            for package in self.arch.missing_in(self.userland):
                missing.setdefault(package, f"Debian {self.userland} has no {package} for {self.arch.debian}")
        return missing


def id_order(kernel_id: str) -> tuple:  # type: ignore[type-arg]
    """Sort key for kernel ids, numbers compared as numbers: 5.10 before 6.1 before 6.12-amd64."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", kernel_id) if p)


def _parse(path: Path, data: dict) -> KernelSpec:
    def need(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise CatalogError(f"{path}: missing or invalid '{key}'", hint="see 'Kernels' in ebpf-lab's README for the format")
        return value

    series = need("series")
    try:
        tuple(int(p) for p in series.split("."))
    except ValueError:
        raise CatalogError(f"{path}: series {series!r} is not like '6.1'", hint="fix the catalog file") from None
    try:
        arch = get_arch(need("arch"))
    except UsageError as exc:
        raise CatalogError(f"{path}: {exc.message}", hint=exc.hint) from None
    source = data.get("source", "debian")
    kernel_id = data.get("id") or f"{series}-{arch.debian}"
    if source == "debian":
        suites = data.get("suites") or ([data["suite"]] if "suite" in data else [])
        if not suites or not all(isinstance(s, str) for s in suites):
            raise CatalogError(f"{path}: a debian kernel needs 'suite' (or 'suites')", hint="e.g. suite = \"bookworm\"")
        return KernelSpec(
            id=kernel_id, series=series, arch=arch, source=source, suites=tuple(suites),
            flavor=data.get("flavor", arch.debian), description=data.get("description", ""),
            userland=data.get("userland", suites[0].split("-")[0]), lacks=_lacks(data, path), path=path,
        )
    if source == "local":
        def local(key: str) -> Path | None:
            value = data.get(key)
            return (path.parent / Path(value).expanduser()).resolve() if value else None

        image = local("image")
        if image is None:
            raise CatalogError(f"{path}: a local kernel needs 'image'", hint="the path of a bzImage/vmlinuz/Image")
        return KernelSpec(
            id=kernel_id, series=series, arch=arch, source=source, image=image,
            modules=local("modules"), headers=local("headers"),
            description=data.get("description", "a kernel of your own"), userland=data.get("userland", ""), path=path,
        )
    raise CatalogError(f"{path}: unknown source {source!r}", hint="use 'debian' or 'local'")


def _lacks(data: dict, path: Path) -> tuple[tuple[str, str], ...]:
    table = data.get("lacks", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
        raise CatalogError(f"{path}: 'lacks' must be a table of name = \"why\"",
                           hint='e.g. [lacks] entry-kprobes = "the kernel refuses kprobes at a function\'s entry"')
    return tuple(sorted(table.items()))


def load_file(path: Path) -> KernelSpec:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"malformed catalog file {path}: {exc}", hint="fix or remove it") from None
    return _parse(path, data)


def catalog_dirs() -> list[Path]:
    dirs = [BUILTIN_DIR]
    user = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "ebpf-lab" / "kernels"
    dirs.append(user)
    dirs += [Path(p) for p in os.environ.get(EXTRA_ENV, "").split(":") if p]
    return dirs


def load_catalog(*, dirs: list[Path] | None = None) -> dict[str, KernelSpec]:
    """Every catalog entry, by id; a later directory overrides an earlier one."""
    entries: dict[str, KernelSpec] = {}
    for directory in dirs if dirs is not None else catalog_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            spec = load_file(path)
            entries[spec.id] = spec
    return dict(sorted(entries.items(), key=lambda kv: (kv[1].foreign, kv[1].arch.debian, kv[1].series_tuple)))


def default_kernel_id() -> str:
    return f"{DEFAULT_SERIES}-{host_arch().debian}"


def select(catalog: dict[str, KernelSpec], *, kernels: str | None, arches: str | None = None,
           userland: str | None = None) -> list[KernelSpec]:
    """Kernels named by ``--kernel`` (id, series, comma list, glob or ``all``) and ``--arch``,
    with the userland ``--userland`` chose (see with_userland).

    With no ``--arch``, a series or glob means the host's architecture; ``all``
    means every architecture only when ``--arch all`` says so too.
    """
    if arches in (None, ""):
        wanted_arches = None if (kernels and _names_arch(kernels, catalog)) else {host_arch().debian}
    elif arches == "all":
        wanted_arches = None
    else:
        wanted_arches = {get_arch(a.strip()).debian for a in arches.split(",") if a.strip()}
    patterns = [p.strip() for p in (kernels or "").split(",") if p.strip()]
    if not patterns:
        return with_userland(default_kernels(catalog, arches=wanted_arches), userland)
    chosen: dict[str, KernelSpec] = {}
    for pattern in patterns:
        matched = [
            spec for spec in catalog.values()
            if (wanted_arches is None or spec.arch.debian in wanted_arches) and _matches(spec, pattern)
        ]
        if not matched:
            known = ", ".join(catalog) or "none"
            raise UsageError(f"no kernel in the catalog matches {pattern!r}" + (f" for arch {arches}" if arches else ""),
                             hint=f"known kernels: {known} (see 'lab kernels')")
        for spec in matched:
            chosen[spec.id] = spec
    return with_userland(list(chosen.values()), userland)


def default_kernels(catalog: dict[str, KernelSpec], *, arches: set[str] | None) -> list[KernelSpec]:
    """The kernel each of *arches* (Debian names; None: every arch) runs on when none is named. Pure.

    DEFAULT_SERIES where the arch has it; else its oldest series above it, else its newest:
    Debian built riscv64, and ebpf-lab catalogs s390x and ppc64el, from trixie (6.12) on only.
    An entry that ``lacks`` something is passed over when the arch has another: 6.12-riscv64
    refuses the tutorial's kprobe, so ``--arch riscv64`` means 7.2-riscv64.
    """
    by_arch: dict[str, list[KernelSpec]] = {}
    for spec in catalog.values():
        if arches is None or spec.arch.debian in arches:
            by_arch.setdefault(spec.arch.debian, []).append(spec)
    if not by_arch:
        known = ", ".join(catalog) or "none"
        raise UsageError(f"no kernel in the catalog for arch {', '.join(sorted(arches or ()))}",
                         hint=f"known kernels: {known} (see 'lab kernels')")
    default = tuple(int(p) for p in DEFAULT_SERIES.split("."))
    chosen = []
    for specs in by_arch.values():
        # A kernel that cannot run the tutorial (its lacks) is the default only when nothing else is there.
        specs = [s for s in specs if not s.lacks] or specs
        series = sorted({s.series_tuple for s in specs})
        pick = next((t for t in series if t >= default), series[-1])
        # Every entry of that series, as the pattern DEFAULT_SERIES would match (a user's own 6.1 too).
        chosen += [s for s in specs if s.series_tuple == pick]
    return chosen


#: Debian suite names a ``--userland debian:<suite>`` may give (not checked against the mirror here).
_SUITE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def parse_userland(text: str | None) -> tuple[str, str]:
    """``--userland``: ``host`` (default), ``debian`` (each kernel's own suite) or ``debian:<suite>``. Pure.

    Returns (mode, suite); suite is empty unless one was named.
    """
    value = (text or "host").strip()
    if value == "host":
        return "host", ""
    mode, _, suite = value.partition(":")
    if mode == "debian" and (not suite or set(suite) <= _SUITE_CHARS):
        return "debian", suite
    raise UsageError(f"unknown userland {value!r}",
                     hint="use 'host', 'debian' (each kernel's own Debian suite) or 'debian:<suite>', e.g. debian:trixie")


def with_userland(specs: list[KernelSpec], text: str | None) -> list[KernelSpec]:
    """*specs* with the userland ``--userland`` chose. A foreign architecture always boots a Debian
    userland (the host's cannot run there): ``host`` leaves it at the kernel's own suite."""
    mode, suite = parse_userland(text)
    if mode == "host":
        return specs
    chosen = []
    for spec in specs:
        name = suite or spec.userland
        if not name:
            raise UsageError(f"kernel {spec.id} names no Debian suite for --userland debian",
                             hint=f"use --userland debian:<suite>, or add userland = \"<suite>\" to {spec.path}")
        chosen.append(replace(spec, userland=name, own_userland=True))
    return chosen


def _names_arch(kernels: str, catalog: dict[str, KernelSpec]) -> bool:
    """True when every pattern already names full ids (``6.1-arm64``), so no arch filter applies."""
    return all(p.strip() in catalog for p in kernels.split(",") if p.strip())


def _matches(spec: KernelSpec, pattern: str) -> bool:
    if pattern == "all":
        return True
    return (
        pattern == spec.id
        or pattern == spec.series
        or fnmatch.fnmatchcase(spec.id, pattern)
        or fnmatch.fnmatchcase(spec.series, pattern)
    )
