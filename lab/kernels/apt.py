"""A private apt: resolve and download Debian packages of any suite and architecture.

It has its own sources list, lists and cache directories, so it never touches the
host's apt state and can reach suites the host does not use (bullseye, trixie, sid,
backports) and architectures it does not run (arm64, riscv64). Signatures are
checked by apt itself against the system's Debian archive keyring.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FetchError, HostError
from lab.host import process
from lab.host.locks import file_lock
from lab.settings import MIRROR_ENV

log = logging.getLogger(__name__)

#: The keyring apt verifies the archive's Release files with.
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclass(frozen=True)
class Source:
    """One apt source: where packages come from and which suites it serves."""

    uri: str
    suites: tuple[str, ...]


def parse_one_line_sources(text: str) -> list[Source]:
    """Parse classic ``deb URI SUITE COMPONENTS`` lines (``sources.list``)."""
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):
            # Options such as [signed-by=...] may contain spaces only inside the brackets.
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            sources.append(Source(uri=words[0], suites=(words[1],)))
    return sources


def parse_deb822_sources(text: str) -> list[Source]:
    """Parse deb822 ``.sources`` stanzas (``Types:``, ``URIs:``, ``Suites:``)."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        for uri in fields.get("uris", "").split():
            sources.append(Source(uri=uri, suites=suites))
    return sources


def pick_debian_mirror(sources: list[Source]) -> str | None:
    """The first source that serves Debian's main archive (not security, not a third party).

    A mirror is recognised by its suites (a Debian release name, possibly with
    ``-updates``/``-backports``), so a renamed or local mirror is found too.
    """
    releases = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "stable", "testing", "unstable", "oldstable"}
    for source in sources:
        for suite in source.suites:
            if suite.endswith("-security") or "/" in suite:
                continue
            if suite.split("-", 1)[0] in releases:
                return source.uri.rstrip("/")
    return None


def system_mirror(*, etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror to use: ``$EBPF_LAB_MIRROR``, else the one the host's apt uses."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override.rstrip("/")
    sources: list[Source] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        sources += parse_one_line_sources(main_list.read_text(errors="replace"))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line_sources(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                sources += parse_deb822_sources(path.read_text(errors="replace"))
    mirror = pick_debian_mirror(sources)
    if mirror is None:
        raise HostError(
            "no Debian mirror found in /etc/apt/sources.list{,.d}",
            hint=f"set {MIRROR_ENV} to a Debian archive URL",
        )
    return mirror


def parse_depends(text: str) -> list[str]:
    """Package names from ``apt-cache depends`` output (Depends lines only)."""
    names = []
    for line in text.splitlines():
        match = re.match(r"\s*\|?Depends:\s*<?([^\s>:]+)", line)
        if match:
            names.append(match.group(1))
    return names


class PrivateApt:
    """apt-get and apt-cache under a configuration of our own in *root*."""

    def __init__(self, *, root: Path, mirror: str, suites: tuple[str, ...], arch: str) -> None:
        self.root = root
        self.mirror = mirror
        self.suites = suites
        self.arch = arch

    def _options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={r / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", f"Dir::State::status={r / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", f"APT::Architecture={self.arch}",
            "-o", f"APT::Architectures={self.arch}",
            "-o", "Acquire::Languages=none",
            "-o", "Acquire::Retries=3",
            # A mirror that accepts connections and never answers: 15 s without a byte fails an
            # attempt. apt makes two per try, so with the retries above a stalled mirror is
            # reported after two minutes; with apt's default (30 s here) it took four.
            "-o", "Acquire::http::Timeout=15",
            "-o", "Acquire::https::Timeout=15",
            "-o", "APT::Get::AllowUnauthenticated=false",
            "-o", "Debug::NoLocking=true",
        ]

    def _prepare(self) -> None:
        for sub in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        lines = [
            f"deb [arch={self.arch} signed-by={KEYRING}] {self.mirror} {suite} main"
            for suite in self.suites
        ]
        (self.root / "sources.list").write_text("\n".join(lines) + "\n")

    def _run(self, argv: list[str], *, cwd: Path | None = None, timeout: float = 900.0,
             with_stderr: bool = False) -> str:
        verb = _verb(argv)
        network = f"check the network to the Debian mirror {self.mirror} (or set {MIRROR_ENV})"
        # LC_ALL=C: the output is parsed (E:, Err:, Candidate:), so it must not be translated.
        result = process.run(argv, what=f"{argv[0]} {verb} for {' '.join(self.suites)}/{self.arch}", timeout=timeout,
                             cwd=cwd, env={**os.environ, "LC_ALL": "C"}, check=False, error=FetchError,
                             timeout_hint=network)
        if result.returncode != 0:
            reason, verification = describe_failure(result.stdout + "\n" + result.stderr)
            raise FetchError(
                f"{argv[0]} {verb} failed for {' '.join(self.suites)}/{self.arch}: {reason}",
                hint=(f"the Debian mirror {self.mirror} served files that fail apt's verification (a broken "
                      f"mirror, or a proxy that changes files): try again later, or set {MIRROR_ENV} to another mirror"
                      if verification else network),
            )
        return result.stdout + result.stderr if with_stderr else result.stdout

    def update(self, *, max_age: float = 6 * 3600) -> None:
        """Refresh the package lists unless they are younger than *max_age* seconds."""
        with file_lock(self.root / "lock", what="updating apt lists"):
            self._prepare()
            stamp = self.root / "updated"
            import time

            if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age:
                return
            out = self._run(["apt-get", *self._options(), "update"], with_stderr=True)
            # apt-get update exits 0 when no index could be fetched; without this check the
            # user would only learn later that "no packages" were found.
            errors = parse_update_errors(out)
            if errors:
                raise FetchError(
                    f"cannot download the package lists for {' '.join(self.suites)}/{self.arch} "
                    f"from the Debian mirror {self.mirror}: {errors[0]}",
                    hint=f"check the network (or proxy) to the mirror, or set {MIRROR_ENV} to a reachable one",
                )
            if "W: GPG error" in out or "NO_PUBKEY" in out:
                raise FetchError(
                    f"the Debian archive's signature for {' '.join(self.suites)} could not be verified",
                    hint="install a newer debian-archive-keyring",
                )
            stamp.touch()

    def depends(self, package: str) -> list[str]:
        """The direct Depends of *package* (a virtual or meta package resolves to real ones)."""
        out = self._run(["apt-cache", *self._options(), "depends", "--no-recommends", "--no-suggests", package])
        return parse_depends(out)

    def has(self, package: str) -> bool:
        out = self._run(["apt-cache", *self._options(), "policy", package])
        return "Candidate:" in out and "Candidate: (none)" not in out

    def version(self, package: str) -> str:
        out = self._run(["apt-cache", *self._options(), "policy", package])
        match = re.search(r"Candidate:\s*(\S+)", out)
        if not match or match.group(1) == "(none)":
            raise FetchError(f"package {package} not found in {' '.join(self.suites)}/{self.arch}")
        return match.group(1)

    def sha256s(self, packages: list[str]) -> dict[str, str]:
        """The archive's SHA256 of each ``name=version`` in *packages*, by package name."""
        out = self._run(["apt-cache", *self._options(), "show", *packages])
        return parse_sha256s(out)

    def download(self, packages: list[str], *, dest: Path) -> list[Path]:
        """Download *packages* (``name`` or ``name=version``) as .deb files into *dest*."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", *self._options(), "download", *packages], cwd=dest, timeout=1800.0)
        return sorted(dest.glob("*.deb"))


#: mmdebstrap's closing lines, which say that apt failed but not why (the line before them does).
_WRAPPERS = re.compile(r"E: (mmdebstrap failed to run|apt-get .* failed)$")


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """Why apt (or mmdebstrap, which runs it) failed: its last ``E:``, ``W:`` or ``Err`` line that
    is not mmdebstrap's own summary, else its last line. Pure."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("E:", "W:", "Err"))]
    return next((line for line in reversed(said) if not _WRAPPERS.match(line)), said[-1] if said else
                lines[-1] if lines else "")


def _verb(argv: list[str]) -> str:
    """The apt sub-command in *argv* (after the ``-o`` options), for error messages."""
    words = argv[1:]
    for index, word in enumerate(words):
        if not word.startswith("-") and (index == 0 or words[index - 1] != "-o"):
            return word
    return "?"


def parse_update_errors(text: str) -> list[str]:
    """Why index downloads failed, from ``apt-get update`` output (``Err:`` and the line after it)."""
    lines = text.splitlines()
    reasons = []
    for index, line in enumerate(lines):
        if line.startswith("Err:"):
            detail = lines[index + 1].strip() if index + 1 < len(lines) and lines[index + 1].startswith(" ") else ""
            reasons.append(detail or line.strip())
    return reasons


#: apt's words when what it downloaded is not what the signed Release file vouches for.
_VERIFICATION = ("Hash Sum mismatch", "signatures were invalid", "BADSIG", "is not signed", "File has unexpected size")


def describe_failure(text: str) -> tuple[str, bool]:
    """Why apt failed, in one line, from its output; and whether it was a verification failure. Pure.

    apt names the file on an ``Err:`` line and says why on the indented line below it
    (``Hash Sum mismatch``, ``BADSIG ...``): both, for the first failure. Else its last
    ``E:``/``W:`` line.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    verification = any(word in text for word in _VERIFICATION)
    for index, line in enumerate(lines):
        if line.startswith("Err:"):
            what = line.split(None, 1)[1] if " " in line else line
            detail = lines[index + 1].strip() if index + 1 < len(lines) and lines[index + 1].startswith(" ") else ""
            return (f"{what}: {detail}" if detail else what), verification
    last = next((line for line in reversed(lines) if line.startswith(("E:", "W:"))), lines[-1] if lines else "")
    return last.strip(), verification


def parse_sha256s(text: str) -> dict[str, str]:
    """``{package: sha256}`` from ``apt-cache show`` stanzas."""
    found: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        name = re.search(r"^Package:\s*(\S+)", stanza, re.MULTILINE)
        digest = re.search(r"^SHA256:\s*([0-9a-f]{64})", stanza, re.MULTILINE)
        if name and digest:
            found.setdefault(name.group(1), digest.group(1))
    return found
