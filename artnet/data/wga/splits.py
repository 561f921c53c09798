"""Deterministic splits of the WGA paintings under two protocols, and the stratified sample.

Every assignment comes from a SHA-256 of a stable key (never from row order or a random seed),
so the same catalogue gives the same split on any machine, and a painting keeps its split when
WGA adds rows to a later export.

- `artist`: the key is the author, so all of an author's rows (detail crops included) share a
  split and no painter is seen in training and test alike.
- `random`: the key is the painting's URL: image-level, comparable with the 2020 report and SemArt.
  Detail crops of a painting may land on both sides: that leakage is what the protocols measure.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable

from artnet import labels
from artnet.data.wga.catalog import CatalogRow

SPLITS: tuple[str, ...] = ("train", "validation", "test")
FRACTIONS: tuple[float, ...] = (0.70, 0.15, 0.15)
PROTOCOLS: tuple[str, ...] = ("artist", "random")
SAMPLE_PER_CELL = 25  # paintings per school x timeframe cell in the `sample` config


def stable_fraction(key: str, salt: str) -> float:
    """A number in [0, 1) that depends only on `salt` and `key`."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of_fraction(fraction: float) -> str:
    boundary = 0.0
    for name, share in zip(SPLITS, FRACTIONS, strict=True):
        boundary += share
        if fraction < boundary:
            return name
    return SPLITS[-1]


def split_key(row: CatalogRow, protocol: str) -> str:
    if protocol == "artist":
        return row.author_key
    if protocol == "random":
        return row.url
    raise ValueError(f"unknown split protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def split_of(row: CatalogRow, protocol: str) -> str:
    return split_of_fraction(stable_fraction(split_key(row, protocol), f"wga-split-{protocol}"))


def assign_splits(rows: Iterable[CatalogRow], protocol: str) -> dict[str, list[CatalogRow]]:
    """Rows grouped by split, each in catalogue order."""
    grouped: dict[str, list[CatalogRow]] = {name: [] for name in SPLITS}
    for row in rows:
        grouped[split_of(row, protocol)].append(row)
    return grouped


def select_sample(
    rows: Iterable[CatalogRow],
    per_cell: int = SAMPLE_PER_CELL,
    is_available: Callable[[CatalogRow], bool] | None = None,
) -> list[CatalogRow]:
    """A small stratified subset: up to `per_cell` paintings per known school x timeframe cell.

    Within a cell, paintings are taken in the order of a stable hash of their URL, skipping those
    `is_available` rejects (e.g. images absent from a partial mirror), so the choice depends only
    on the catalogue and on which images exist. Returned in catalogue order.
    """
    cells: dict[tuple[int, int], list[CatalogRow]] = defaultdict(list)
    for row in rows:
        label = row.label_indices
        if label["school"] != labels.UNKNOWN and label["timeframe"] != labels.UNKNOWN:
            cells[label["school"], label["timeframe"]].append(row)
    chosen: list[CatalogRow] = []
    for cell_rows in cells.values():
        cell_rows.sort(key=lambda row: stable_fraction(row.url, "wga-sample"))
        taken = 0
        for row in cell_rows:
            if taken == per_cell:
                break
            if is_available is None or is_available(row):
                chosen.append(row)
                taken += 1
    return sorted(chosen, key=lambda row: row.catalog_index)
