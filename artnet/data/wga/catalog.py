"""Parse the Web Gallery of Art catalogue (`catalog.csv` inside wga.hu's `data_txt.zip`).

The file is `;`-separated, Windows-1252, CRLF; a field that holds a `;` is quoted, and a `"` inside
an unquoted title is literal. Real exports and hand-edited mirrors carry a BOM, blank lines, stray
whitespace and rows with too few or too many fields; those are counted in a `ParseReport`, never a
crash. Only a file that is not a WGA catalogue at all raises `CatalogError`.

A row's 0-based index among the data rows (header excluded) is its `catalog_index`, which is also
the image number SemArt uses for the same export.

This module owns the file and its rows: finding it (a folder, `data_txt.zip` or a bare `catalog.csv`), the
zip-bomb limit, the encoding and the fields. What a row's fields mean lives beside it: DATE is read by
`artnet.data.wga.dates`, the page URL becomes an image path by `artnet.data.wga.image_paths`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import zipfile
from collections import Counter
from pathlib import Path

from artnet import labels
from artnet.data.wga.dates import ParsedDate, parse_date
from artnet.data.wga.image_paths import image_path_of

CATALOG_MEMBER = "catalog.csv"
COLUMNS: tuple[str, ...] = (
    "AUTHOR",
    "BORN-DIED",
    "TITLE",
    "DATE",
    "TECHNIQUE",
    "LOCATION",
    "URL",
    "FORM",
    "TYPE",
    "SCHOOL",
    "TIMEFRAME",
)
# Columns without which a file cannot be a usable WGA catalogue.
REQUIRED_COLUMNS = ("AUTHOR", "TITLE", "URL", "FORM", "TYPE", "SCHOOL", "TIMEFRAME")
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
# The catalogue is ~12 MB uncompressed; a member claiming more than this is refused before it is inflated.
MAX_MEMBER_BYTES = 64 * 1024 * 1024


class CatalogError(ValueError):
    """The input is missing or is not a WGA catalogue; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    """One catalogue row, raw strings stripped of surrounding whitespace."""

    catalog_index: int
    author: str
    born_died: str
    title: str
    date: str
    technique: str
    location: str
    url: str
    form: str
    type: str
    school: str
    timeframe: str

    @property
    def is_painting(self) -> bool:
        return self.form.lower() == "painting"

    @property
    def label_indices(self) -> dict[str, int]:
        """Each head's class index, or `labels.UNKNOWN` (-1)."""
        return {head: labels.label_index(head, getattr(self, head)) for head in labels.HEADS}

    @property
    def has_known_label(self) -> bool:
        return any(index != labels.UNKNOWN for index in self.label_indices.values())

    @property
    def image_path(self) -> str | None:
        """Relative path of the row's image in a wga.hu mirror (`art/…/name.jpg`), or None."""
        return image_path_of(self.url)

    @property
    def parsed_date(self) -> ParsedDate:
        """DATE parsed: best-estimate year, bounds and precision (see `parse_date`)."""
        return parse_date(self.date)

    @property
    def year(self) -> int:
        """Best-estimate year of DATE ("c. 1510" -> 1510, "1505-10" -> 1507, "1620s" -> 1624), or -1."""
        return self.parsed_date.year

    @property
    def author_key(self) -> str:
        """The author's identity for author-disjoint splits: case- and space-insensitive."""
        return " ".join(self.author.split()).casefold()


@dataclasses.dataclass
class ParseReport:
    """What the parser met, for the build summary: nothing is dropped silently."""

    data_rows: int = 0
    blank_lines: int = 0
    malformed_rows: int = 0
    malformed_examples: list[str] = dataclasses.field(default_factory=list)
    encoding: str = ""
    forms: Counter = dataclasses.field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "data_rows": self.data_rows,
            "blank_lines": self.blank_lines,
            "malformed_rows": self.malformed_rows,
            "malformed_examples": self.malformed_examples,
            "encoding": self.encoding,
            "forms": dict(self.forms.most_common()),
        }


def decode_catalog_bytes(data: bytes) -> tuple[str, str]:
    """Text and the encoding used: UTF-8 when it is (BOM or valid), else Windows-1252."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; replace them rather than fail on one odd byte.
        return data.decode("cp1252", errors="replace"), "cp1252"


def read_catalog_bytes(path: str | Path) -> bytes:
    """The raw `catalog.csv` bytes from `data_txt.zip`, a `catalog.csv`, or a folder holding either."""
    path = Path(path)
    if path.is_dir():
        for name in ("data_txt.zip", CATALOG_MEMBER):
            if (path / name).is_file():
                return read_catalog_bytes(path / name)
        raise CatalogError(
            f"no WGA catalogue in {path}: expected data_txt.zip or catalog.csv there "
            "(download https://www.wga.hu/database/download/data_txt.zip)"
        )
    if not path.is_file():
        raise CatalogError(
            f"WGA catalogue not found: {path} (give data_txt.zip from "
            "https://www.wga.hu/database/download/data_txt.zip, or a folder holding it)"
        )
    if zipfile.is_zipfile(path):
        return _csv_from_zip(path, str(path))
    return path.read_bytes()


def _csv_from_zip(archive_file, name: str) -> bytes:
    """The catalogue inside wga.hu's data_txt.zip (`catalog.csv`, else its only / first .csv member)."""
    try:
        with zipfile.ZipFile(archive_file) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not members:
                raise CatalogError(f"{name} holds no .csv file; is it wga.hu's data_txt.zip?")
            preferred = [n for n in members if Path(n).name.lower() == CATALOG_MEMBER]
            member = archive.getinfo((preferred or members)[0])
            check_member_size(member, name)
            # zipfile stops inflating at the declared size, so the read is bounded by the check above.
            with archive.open(member) as stream:
                return stream.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as error:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method zipfile lacks.
        raise CatalogError(f"{name} is a damaged or unreadable zip ({error}); download it again") from error


def check_member_size(member: zipfile.ZipInfo, name: str) -> None:
    """Refuse a zip member that would inflate past `MAX_MEMBER_BYTES` (a zip bomb), before inflating it."""
    if member.file_size > MAX_MEMBER_BYTES:
        raise CatalogError(
            f"{name}: member {member.filename} would inflate to {member.file_size:,} bytes, over the "
            f"{MAX_MEMBER_BYTES:,} a WGA catalogue can plausibly need; this is not wga.hu's data_txt.zip"
        )


def parse_catalog(data: bytes | str) -> tuple[list[CatalogRow], ParseReport]:
    """All data rows of a catalogue, and a report of what was skipped and why.

    `data` may be the raw bytes of `catalog.csv` or of `data_txt.zip`, or already-decoded text.
    Raises `CatalogError` only when no WGA header can be found.
    """
    report = ParseReport()
    if isinstance(data, bytes):
        if data[:4] == b"PK\x03\x04":
            data = _csv_from_zip(io.BytesIO(data), "the catalogue zip")
        text, report.encoding = decode_catalog_bytes(data)
    else:
        text, report.encoding = data.lstrip("\ufeff"), "text"

    # Only CR/LF end a line: str.splitlines would also split on \x1c, \x85, \u2028 … inside titles.
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # the line break that ends the last row opens no new line
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise CatalogError("the catalogue is empty")
    header = [field.strip().upper() for field in lines[header_at].lstrip("\ufeff").split(";")]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise CatalogError(
            "not a WGA catalogue: its first line should be the header "
            f"{';'.join(COLUMNS)!r} but lacks {', '.join(missing)} "
            f"(it reads {lines[header_at][:120]!r})"
        )
    position = {name: header.index(name) for name in COLUMNS if name in header}

    rows: list[CatalogRow] = []
    for line_number, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        if not line.strip():
            report.blank_lines += 1
            continue
        index = report.data_rows
        report.data_rows += 1
        try:
            fields = _split_fields(line)
            problem = f"{len(fields)} fields, expected {len(header)}" if len(fields) != len(header) else ""
        except csv.Error as error:  # e.g. a field over the csv module's 131,072-character limit
            problem = f"unreadable ({error})"
        if problem:
            report.malformed_rows += 1
            if len(report.malformed_examples) < 20:
                report.malformed_examples.append(f"line {line_number}: {problem}: {line[:100]!r}")
            continue
        values = {name: fields[at].strip() for name, at in position.items()}
        row = CatalogRow(
            catalog_index=index,
            author=values.get("AUTHOR", ""),
            born_died=values.get("BORN-DIED", ""),
            title=values.get("TITLE", ""),
            date=values.get("DATE", ""),
            technique=values.get("TECHNIQUE", ""),
            location=values.get("LOCATION", ""),
            url=values.get("URL", ""),
            form=values.get("FORM", ""),
            type=values.get("TYPE", ""),
            school=values.get("SCHOOL", ""),
            timeframe=values.get("TIMEFRAME", ""),
        )
        report.forms[row.form.lower()] += 1
        rows.append(row)
    return rows, report


def _split_fields(line: str) -> list[str]:
    """`;`-separated fields; a field holding `;` comes quoted (`"Oil on canvas; 175 x 120 cm"`).

    Lines are parsed one at a time so that an unbalanced quote spoils one row, not the rest of the file.
    """
    return next(csv.reader([line], delimiter=";", quotechar='"', skipinitialspace=False), [])


def usable_paintings(rows: list[CatalogRow]) -> list[CatalogRow]:
    """The rows artnet learns from: paintings with an image URL and at least one known label."""
    return [row for row in rows if row.is_painting and row.has_known_label and row.image_path]
