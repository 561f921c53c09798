"""Parse the Web Gallery of Art catalogue (`catalog.csv` inside wga.hu's `data_txt.zip`).

The file is `;`-separated, Windows-1252, CRLF; a field that holds a `;` is quoted, and a `"` inside
an unquoted title is literal. Real exports and hand-edited mirrors carry a BOM, blank lines, stray
whitespace and rows with too few or too many fields; those are counted in a `ParseReport`, never a
crash. Only a file that is not a WGA catalogue at all raises `CatalogError`.

A row's 0-based index among the data rows (header excluded) is its `catalog_index`, which is also
the image number SemArt uses for the same export.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit

from artnet import labels

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
# Linux allows 255 bytes per name; the atomic writer adds ".<name>.<8 random>.part", so names are held to 200.
MAX_NAME_BYTES = 200
# What an image path may hold after percent-encoding: unreserved ASCII, "%" escapes, "/" between segments.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]+")
_QUOTE_SAFE = "/%!$&'()*+,;=:@~"  # kept as they are by image_path_of; all else is %-encoded
_YEAR = re.compile(r"(?<!\d)(1[0-9]{3})(?!\d)")


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


def image_path_of(page_url: str) -> str | None:
    """`https://www.wga.hu/html/a/aachen/allegory.html` -> `art/a/aachen/allegory.jpg`."""
    path = urlsplit(page_url.strip()).path
    marker = "/html/"
    if marker not in path:
        return None
    relative = path.split(marker, 1)[1]
    stem, dot, suffix = relative.rpartition(".")
    if not dot or suffix.lower() not in ("html", "htm") or not stem or ".." in stem.split("/"):
        return None
    # Non-ASCII letters become %XX (UTF-8), as a browser would send them: the path is then plain ASCII both on
    # the wire and on disk. Existing escapes and "/" are kept; a backslash becomes %5C and is refused later.
    return f"art/{quote(stem, safe=_QUOTE_SAFE)}.jpg"


class UnsafePathError(ValueError):
    """An image path that cannot be fetched or stored safely; the message says why."""


def check_image_path(path: str) -> None:
    """Raise `UnsafePathError` unless `path` is plain relative ASCII with names the file system can hold.

    The row that carries such a path is counted as failed, with this reason, and the build goes on.
    """
    if "\\" in path or "%5c" in path.lower():
        raise UnsafePathError(f"backslash in image path {path[:120]!r}: not a wga.hu path")
    if not _SAFE_PATH.fullmatch(path):
        raise UnsafePathError(f"image path {path[:120]!r} holds characters outside plain ASCII path segments")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments) or path.startswith("/"):
        raise UnsafePathError(f"image path {path[:120]!r} has an empty, '.' or '..' segment")
    longest = max(segments, key=len)
    if len(longest.encode()) > MAX_NAME_BYTES:
        raise UnsafePathError(
            f"a name in image path {path[:80]!r}... is {len(longest.encode())} bytes, over the {MAX_NAME_BYTES} the "
            "file system can hold with its temporary suffix"
        )


def path_clashes(paths: Iterable[str]) -> dict[str, str]:
    """{path: reason} for paths that are also a folder of another path (`a/b.jpg` and `a/b.jpg/c.jpg`).

    Both sides are refused, whatever order they come in, so a rebuild gives the same dataset.
    """
    paths = set(paths)
    clashes = {}
    for path in paths:
        parts = path.split("/")
        for end in range(1, len(parts)):
            folder = "/".join(parts[:end])
            if folder in paths:
                reason = f"file/folder clash: {folder} is an image and also a folder holding {path}"
                clashes[path] = clashes.setdefault(folder, reason)
    return clashes


def year_of(date: str) -> int:
    match = _YEAR.search(date or "")
    return int(match.group(1)) if match else -1


# --- DATE ---------------------------------------------------------------------------------------------------

DATE_PRECISIONS = ("exact", "circa", "range", "decade", "century", "unknown")
# The forms of the table, told apart by shape alone (`date_form`); `parse_date` reads many more.
DATE_FORMS = ("year", "circa", "range", "decade", "other", "empty")
CIRCA_YEARS = 5  # "c. 1520" -> 1515..1525
OPEN_YEARS = 10  # "after 1588" -> 1588..1598, "before 1588" -> 1578..1588
MIN_YEAR, MAX_YEAR = 100, 2100  # a number outside this is not read as a year
_Y = r"[1-9]\d{2,3}"  # a three- or four-digit year (the catalogue has "c. 800" and "800-30")
_CIRCA = re.compile(r"^(?:c|ca|circa|about|around)\s*[.,\-]*\s*(?=\d)")
_PLAIN_YEAR = re.compile(rf"^({_Y})\.?$")
_RANGE = re.compile(rf"^({_Y})\s*[-\u2013\u2014/]\s*(\d{{1,4}})(s?)[.,]?$")
_DECADE = re.compile(rf"^(early|mid|late)?[\s-]*({_Y}0)'?s$")
_CENTURY = re.compile(r"^(early|mid|late)?[\s-]*(\d{1,2})(?:st|nd|rd|th)\s+century$")
_OPEN = re.compile(rf"^(after|before)\s+({_Y})$")
_EXCEL = re.compile(r"^(\d{4})-(\d{2})-01 00:00:00$")  # "1904-06" that a spreadsheet read as June 1904
_GLUED = re.compile(r"^(1\d)(\d\d)(\d\d)$")  # "162628": "1626-28" that lost its dash
_YEAR_TOKEN = re.compile(rf"(?<!\d)({_Y})(?:\s*[-\u2013\u2014/]\s*(\d{{1,4}}))?(?!\d)")
_UNCERTAIN = re.compile(r"\(\?\)|\bor later\b|\bafter\b|\bbefore\b|^(?:c|ca|circa|about|around)\b")
_DATE_FORM_PATTERNS = (
    ("year", re.compile(r"^\d{4}$")),
    ("circa", re.compile(r"^c\. ?\d{4}$")),
    ("range", re.compile(r"^(?:c\. )?\d{4}-(?:\d{2}|\d{4})$")),
    ("decade", re.compile(r"^\d{4}s$")),
)


@dataclasses.dataclass(frozen=True)
class ParsedDate:
    """A DATE read as years: `year` is the best estimate (the middle of [year_min, year_max], rounded down).

    Unknown dates are all -1 with precision "unknown"; otherwise year_min <= year <= year_max.
    """

    year: int
    year_min: int
    year_max: int
    precision: str


UNKNOWN_DATE = ParsedDate(-1, -1, -1, "unknown")


def _span(low: int, high: int, precision: str) -> ParsedDate:
    low, high = min(low, high), max(low, high)
    if low < MIN_YEAR or high > MAX_YEAR:
        return UNKNOWN_DATE
    return ParsedDate((low + high) // 2, low, high, precision)


def _range_end(start: int, end_digits: str) -> int:
    """The end of "1505-10" (1510), "1503-5" (1505), "1595-05" (1605), "1598-1602" (1602)."""
    if len(end_digits) >= len(str(start)):
        return int(end_digits)
    unit = 10 ** len(end_digits)
    end = start - start % unit + int(end_digits)
    return end + unit if end < start else end


def _part(low: int, high: int, part: str | None) -> tuple[int, int]:
    """The early / mid / late third of [low, high], or all of it."""
    third = (high - low + 1) // 3
    if part == "early":
        return low, low + third - 1
    if part == "late":
        return high - third + 1, high
    if part == "mid":
        return low + third, high - third
    return low, high


def parse_date(date: str | None) -> ParsedDate:
    """A WGA `DATE` as years; never raises. The forms the catalogue holds:

    exact: "1520", "completed 1565", "September 1889, Saint-Rémy" (the year is given; a month or place is kept
    out); circa: "c. 1520", "c.1520", "about 1520", "around 1200", "1655 (?)" (+-`CIRCA_YEARS`), "after 1588",
    "before 1588", "1480 or later" (`OPEN_YEARS` on the open side); range: "1505-10", "c. 1490-1500",
    "1503-5", "800-30", "1530-40s", "Winter 1887/88, Paris", "1520 or 1527", "1475-83, 1508-12" (earliest to
    latest year named), "1904-06-01 00:00:00" (a spreadsheet's reading of "1904-06"), "162628" (a lost dash);
    decade: "1620s", "1740's", "late 1560s" (last third); century: "16th century" (1501-1600), "early 16th
    century" (first third); unknown: "", "-", anything else ("11757").
    """
    text = " ".join(str(date or "").split()).lower().rstrip(",")
    if not text.strip("-. ") or len(text) > 200:
        return UNKNOWN_DATE
    circa = _CIRCA.match(text)
    body = text[circa.end() :] if circa else text
    if match := _PLAIN_YEAR.match(body):
        year = int(match.group(1))
        return _span(year - CIRCA_YEARS, year + CIRCA_YEARS, "circa") if circa else _span(year, year, "exact")
    if match := _RANGE.match(body):
        start = int(match.group(1))
        end = _range_end(start, match.group(2))
        if match.group(3):  # "1530-40s": to the end of the last decade
            end += 9 if end % 10 == 0 else 0
        return _span(start, end, "range")
    if circa:
        text = body
    if match := _DECADE.match(text):
        low, high = _part(int(match.group(2)), int(match.group(2)) + 9, match.group(1))
        return _span(low, high, "decade")
    if match := _CENTURY.match(text):
        century = int(match.group(2))
        if century < 1:
            return UNKNOWN_DATE
        low, high = _part(100 * century - 99, 100 * century, match.group(1))
        return _span(low, high, "century")
    if match := _OPEN.match(text):
        year = int(match.group(2))
        if match.group(1) == "after":
            return _span(year, year + OPEN_YEARS, "circa")
        return _span(year - OPEN_YEARS, year, "circa")
    if match := _EXCEL.match(text):
        start, month = int(match.group(1)), match.group(2)
        return _span(start, _range_end(start, month.lstrip("0") or "0") if month != "00" else start, "range")
    if match := _GLUED.match(text):
        start = int(match.group(1) + match.group(2))
        end = _range_end(start, match.group(3))
        return _span(start, end, "range") if end - start < 100 else UNKNOWN_DATE
    return _span_of_tokens(text, uncertain=bool(circa))


def _span_of_tokens(text: str, uncertain: bool) -> ParsedDate:
    """Every year and range named ("1520 and after 1528", "June 1889, Arles"): earliest to latest."""
    years = []
    for match in _YEAR_TOKEN.finditer(text):
        start = int(match.group(1))
        years.append(start)
        if match.group(2):
            years.append(_range_end(start, match.group(2)))
    if not years:
        return UNKNOWN_DATE
    low, high = min(years), max(years)
    if low != high:
        return _span(low, high, "range")
    if uncertain or _UNCERTAIN.search(text):
        if re.search(r"\bafter\b|\bor later\b", text):
            return _span(low, low + OPEN_YEARS, "circa")
        if re.search(r"\bbefore\b", text):
            return _span(low - OPEN_YEARS, low, "circa")
        return _span(low - CIRCA_YEARS, low + CIRCA_YEARS, "circa")
    return _span(low, low, "exact")


def date_form(date: str | None) -> str:
    """Which form of the issue's table a DATE has, by its shape: year, circa, range, decade, other or empty."""
    text = (date or "").strip()
    if text in ("", "-"):
        return "empty"
    return next((form for form, pattern in _DATE_FORM_PATTERNS if pattern.fullmatch(text)), "other")


def date_counts(dates: Iterable[str]) -> dict[str, dict[str, int]]:
    """{"form": count per `DATE_FORMS`, "precision": count per `DATE_PRECISIONS`} of some DATE strings."""
    forms = Counter()
    precisions = Counter()
    for date in dates:
        forms[date_form(date)] += 1
        precisions[parse_date(date).precision] += 1
    return {
        "form": {form: forms[form] for form in DATE_FORMS},
        "precision": {precision: precisions[precision] for precision in DATE_PRECISIONS},
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
