"""The three vocabularies and the head order: the ground floor everything else imports.

A painting's label for a head is either an index into that head's vocabulary or ``UNKNOWN`` (-1).
Unknown labels are *masked*, not dropped: a painting of the English school still teaches
``timeframe`` and ``type`` (see ``artnet.data.sample_weights``).
"""

from __future__ import annotations

UNKNOWN = -1

# Fixed order of the heads in dict outputs, reports and tables. Tested: do not reorder.
HEADS: tuple[str, ...] = ("school", "timeframe", "type")

TIMEFRAMES: tuple[str, ...] = tuple(f"{start}-{start + 49}" for start in range(1401, 1900, 50))
SCHOOLS: tuple[str, ...] = ("Dutch", "Flemish", "French", "German", "Italian", "Spanish")
TYPES: tuple[str, ...] = (
    "genre",
    "historical",
    "landscape",
    "mythological",
    "portrait",
    "religious",
    "still-life",
)

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "school": SCHOOLS,
    "timeframe": TIMEFRAMES,
    "type": TYPES,
}

_LOOKUP: dict[str, dict[str, int]] = {
    head: {name.lower(): index for index, name in enumerate(names)} for head, names in VOCABULARIES.items()
}


def label_index(head: str, raw: str | None) -> int:
    """Index of a raw catalogue string in ``head``'s vocabulary, or ``UNKNOWN``.

    Tolerant of case, surrounding whitespace and the spellings WGA and WikiArt use
    (``"Still-life"``, ``"still life"``, ``"1601 - 1650"``).
    """
    if head not in _LOOKUP:
        raise KeyError(f"unknown head {head!r}; the heads are {', '.join(HEADS)}")
    if raw is None:
        return UNKNOWN
    key = " ".join(str(raw).split()).lower()
    if head == "type":
        key = key.replace("still life", "still-life")
    elif head == "timeframe":
        key = key.replace(" ", "")
    return _LOOKUP[head].get(key, UNKNOWN)


def label_name(head: str, index: int) -> str | None:
    """The vocabulary entry for ``index``, or ``None`` for ``UNKNOWN``."""
    if index == UNKNOWN:
        return None
    return VOCABULARIES[head][index]


def timeframe_of_year(year: int) -> int:
    """The timeframe index of a year (1401-1450 is block 0), or ``UNKNOWN`` outside 1401-1900."""
    if 1401 <= year <= 1900:
        return (year - 1401) // 50
    return UNKNOWN
