"""The catalogue pin: a build reads only the wga.hu export it was checked against, unless told otherwise.

The builder's `checksums.tsv` (TFDS's format) names the catalogue file, its size and sha256; `verify_catalog`
compares the file a build found (the downloaded or manual `data_txt.zip`, or a bare `catalog.csv`) with it before
any image is read, and $ARTNET_WGA_CATALOG_SHA256 accepts another export on purpose (its sha256, or `any`). It is a
module of its own because it is the one rule about *which* catalogue, apart from how one is read
(`artnet.data.wga.catalog`) or what a build does with it (`artnet.data.wga.build`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

from artnet.data.wga.catalog import CatalogError

# Accept a catalogue other than the one checksums.tsv pins: its sha256 (that export only), or "any" (no check).
CATALOG_SHA256_ENV = "ARTNET_WGA_CATALOG_SHA256"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class CatalogChecksum:
    """One line of the builder's checksums.tsv (TFDS's format): a catalogue file, its size and sha256."""

    url: str
    size: int
    sha256: str
    filename: str


class CatalogMismatchError(CatalogError):
    """The catalogue found is not the export the build is pinned to; the message says how to accept it."""


def read_checksums(path: str | os.PathLike) -> dict[str, CatalogChecksum]:
    """`checksums.tsv` as {filename: entry}: tab-separated url, size, sha256, filename; `#` comments allowed."""
    entries = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not fields[1].isdigit() or not _SHA256.fullmatch(fields[2]):
            raise ValueError(f"{path} line {number}: expected url<TAB>size<TAB>sha256<TAB>filename, got {line!r}")
        url, size, sha256, filename = fields
        entries[filename] = CatalogChecksum(url=url, size=int(size), sha256=sha256, filename=filename)
    return entries


def verify_catalog(
    catalog_file: Path,
    *,
    checksums_file: str | os.PathLike,
    origin: str,
    data_rows: int | None = None,
    accept: str | None = None,
) -> str:
    """The sha256 of `catalog_file` if it is the pinned export, else `CatalogMismatchError`.

    What is hashed is the file as found: wga.hu's `data_txt.zip` itself when the catalogue came zipped (downloaded,
    or a mirror holding it), else the bare `catalog.csv`; each is compared with the checksums.tsv entry of that
    name (the `catalog.csv` entry is the member inside the pinned zip, so an unzipped copy of the same export
    passes too). `accept` is the value of $ARTNET_WGA_CATALOG_SHA256: a sha256 pins that export instead of
    checksums.tsv's, `any` skips the check.
    """
    data = Path(catalog_file).read_bytes()
    found = hashlib.sha256(data).hexdigest()
    accept = (accept or "").strip().lower()
    if accept == "any":
        return found
    if accept and not _SHA256.fullmatch(accept):
        raise ValueError(
            f"{CATALOG_SHA256_ENV}={accept!r} is neither a sha256 (64 hex digits) nor 'any'; set it to the sha256 "
            "the build error printed for the catalogue you mean to accept, or unset it"
        )
    if accept:
        if found == accept:
            return found
        expected = f"sha256 {accept}, set by ${CATALOG_SHA256_ENV}"
        advice = (
            f"set {CATALOG_SHA256_ENV}={found} to accept this one, or unset it to build the export "
            f"{checksums_file} pins"
        )
    else:
        entry = read_checksums(checksums_file).get(Path(catalog_file).name)
        if entry is not None and entry.sha256 == found:
            return found
        expected = (
            f"{entry.filename} of {entry.size:,} bytes, sha256 {entry.sha256} ({entry.url}), as {checksums_file} pins"
            if entry is not None
            else f"an entry named {Path(catalog_file).name} in {checksums_file}, which has none"
        )
        advice = (
            f"to build from this catalogue on purpose, set {CATALOG_SHA256_ENV}={found} "
            f"(or {CATALOG_SHA256_ENV}=any to skip this check)"
        )
    rows = f", {data_rows:,} data rows" if data_rows is not None else ""
    raise CatalogMismatchError(
        "the WGA catalogue found is not the export this build is pinned to, so it stops before reading any image.\n"
        f"  found:    {origin}: {len(data):,} bytes, sha256 {found}{rows}\n"
        f"  expected: {expected}\n"
        "wga.hu may have published a newer export, or the mirror holds another or a hand-edited catalogue: "
        f"{advice}. Paintings of the pinned export keep their splits in a newer one (hash splits), but the counts "
        "quoted in datasets/wga/README.md will differ."
    )
