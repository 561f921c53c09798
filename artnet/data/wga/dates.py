"""Read a catalogue DATE ("c. 1510", "1505-10", "1620s", "early 16th century", ...) as years.

wga.hu's DATE column is free text, typed by hand over two decades; this module owns every rule that turns it into a
best-estimate year, its bounds and a precision (`parse_date`), and the counts per form that the dataset card quotes
(`date_counts`). It is apart from the catalogue parser because it is a language of its own, with its own tests, and
the labelled-folder source reads its `year` field with it too.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable

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


_YEAR = re.compile(r"(?<!\d)(1[0-9]{3})(?!\d)")


def year_of(date: str) -> int:
    """The first four-digit year 1000-1999 in `date`, or -1: how version 1.0.0 of the dataset read DATE."""
    match = _YEAR.search(date or "")
    return int(match.group(1)) if match else -1
