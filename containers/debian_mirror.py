"""The Debian suite of the base image and the mirrors this machine's apt sources name.

Both formats of apt sources are read: deb822 ``*.sources`` files (parsed with
python-debian) and one-line ``sources.list`` entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822

from containers.commands import ContainerBuildError
from settings.base import load
from settings.site import ImageBuildSettings

SUITE = "bookworm"  # Debian 12: python3 is 3.11, as the lock requires


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str


def _sources_list_entries(text: str) -> Iterator[AptSource]:
    """The ``deb`` entries of the one-line format (``deb [options] URI SUITE COMPONENTS``)."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = re.sub(r"\[[^\]]*\]", " ", line).split()  # drop [arch=... signed-by=...]
        if len(words) >= 3:
            yield AptSource(words[1].rstrip("/"), words[2])


def _deb822_entries(text: str) -> Iterator[AptSource]:
    """The enabled ``deb`` entries of a deb822 ``.sources`` file (sources.list(5))."""
    for stanza in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
        if "deb" not in stanza.get("Types", "").split():
            continue
        if stanza.get("Enabled", "yes").strip().lower() == "no":
            continue
        for uri in stanza.get("URIs", "").split():
            for suite in stanza.get("Suites", "").split():
                yield AptSource(uri.rstrip("/"), suite)


def apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled ``deb`` source of this machine (sources.list and sources.list.d)."""
    entries: list[AptSource] = []
    files = [root / "sources.list"]
    if (root / "sources.list.d").is_dir():
        files += sorted((root / "sources.list.d").iterdir())
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            entries += _deb822_entries(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            entries += _sources_list_entries(text)
    return entries


def debian_sources(suite: str = SUITE, root: Path = Path("/etc/apt")) -> list[str]:
    """The apt lines for mmdebstrap: ``suite``, its updates and security, from the mirrors
    this machine uses. ``MINIVESS_DEBIAN_MIRROR`` / ``MINIVESS_DEBIAN_SECURITY_MIRROR``
    override them (e.g. on a build host that is not Debian)."""
    entries = [e for e in apt_sources(root) if e.uri.startswith(("http://", "https://", "file:"))]
    mirrors = load(ImageBuildSettings)

    def kind(entry: AptSource) -> str:
        name = entry.suite.rsplit("/", 1)[-1]
        for tail in ("-security", "-updates", "-backports", "-proposed-updates"):
            if name.endswith(tail):
                return tail
        return ""

    main = mirrors.debian_mirror or next(
        (e.uri for e in entries if e.suite == suite),
        next((e.uri for e in entries if kind(e) == "" and "/debian" in e.uri), None),
    )
    if not main:
        raise ContainerBuildError(
            "no Debian mirror in /etc/apt/sources.list(.d): set MINIVESS_DEBIAN_MIRROR "
            "(and MINIVESS_DEBIAN_SECURITY_MIRROR) to the mirror URLs"
        )
    security = mirrors.debian_security_mirror or next(
        (e.uri for e in entries if kind(e) == "-security"), main + "-security"
    )
    return [
        f"deb {main} {suite} main",
        f"deb {main} {suite}-updates main",
        f"deb {security} {suite}-security main",
    ]
