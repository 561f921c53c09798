"""The three vocabularies and the head order: the ground floor everything else imports.

A painting's label for a head is either an index into that head's vocabulary or ``UNKNOWN`` (-1).
Unknown labels are *masked*, not dropped: a painting of the English school still teaches
``timeframe`` and ``type`` (see ``artnet.data.pipeline.sample_weights``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

UNKNOWN = -1

# Fixed order of the heads in dict outputs, reports and tables. Tested: do not reorder.
HEADS: tuple[str, ...] = ("school", "timeframe", "type")
# The optional regression task beside the heads (`artnet.models.year`): the painting's year, with an uncertainty.
YEAR = "year"

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


def validate_heads(heads: Iterable[str] | str) -> tuple[str, ...]:
    """`heads` as a tuple in the fixed order of `HEADS`, or ValueError naming each misspelt head.

    The one place heads are checked: configs, the model and the pipeline all call it, so `heads=school,tyep`
    is refused at once instead of quietly training a school-only model.
    """
    if isinstance(heads, str):
        heads = [part.strip() for part in heads.split(",") if part.strip()]
    heads = tuple(heads)
    unknown = [head for head in heads if head not in HEADS]
    if unknown:
        raise ValueError("; ".join(_unknown_head_message(head) for head in unknown))
    if not heads:
        raise ValueError(f"heads must name at least one of {', '.join(HEADS)}")
    return tuple(head for head in HEADS if head in heads)


def _unknown_head_message(head: str) -> str:
    close = difflib.get_close_matches(str(head), HEADS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown head {head!r}{hint}; the heads are {', '.join(HEADS)}"


def validate_head_keys(mapping: dict, what: str) -> dict:
    """`mapping` unchanged if every key is a head, else ValueError naming the misspelt keys (and `what` it is)."""
    unknown = [key for key in mapping if key not in HEADS]
    if unknown:
        raise ValueError(f"{what}: " + "; ".join(_unknown_head_message(key) for key in unknown))
    return mapping


def label_index(head: str, raw: str | None) -> int:
    """Index of a raw catalogue string in ``head``'s vocabulary, or ``UNKNOWN``.

    Tolerant of case, surrounding whitespace and the spellings WGA and WikiArt use
    (``"Still-life"``, ``"still life"``, ``"1601 - 1650"``).
    """
    if head not in _LOOKUP:
        raise KeyError(_unknown_head_message(head))
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
