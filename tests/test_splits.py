import random
from collections import Counter

from artnet import labels
from artnet.data.wga.catalog import CatalogRow, parse_catalog, read_catalog_bytes, usable_paintings
from artnet.data.wga.splits import SPLITS, assign_splits, select_sample, split_of, stable_fraction


def row(index: int, author: str, school: str = "Dutch", timeframe: str = "1601-1650") -> CatalogRow:
    return CatalogRow(
        catalog_index=index,
        author=author,
        born_died="",
        title=f"work {index}",
        date="-",
        technique="",
        location="",
        url=f"https://www.wga.hu/html/x/{author.lower().replace(' ', '')}/{index}.html",
        form="painting",
        type="genre",
        school=school,
        timeframe=timeframe,
    )


def test_stable_fraction_is_a_pure_function_of_key_and_salt():
    assert stable_fraction("REMBRANDT", "s") == stable_fraction("REMBRANDT", "s")
    assert stable_fraction("REMBRANDT", "s") != stable_fraction("REMBRANDT", "t")
    assert 0.0 <= stable_fraction("x", "s") < 1.0


def test_fractions_are_near_70_15_15():
    rows = [row(i, f"author {i}") for i in range(20_000)]
    sizes = {name: len(group) / len(rows) for name, group in assign_splits(rows, "random").items()}
    assert abs(sizes["train"] - 0.70) < 0.02
    assert abs(sizes["validation"] - 0.15) < 0.02
    assert abs(sizes["test"] - 0.15) < 0.02


def test_artist_protocol_keeps_each_author_in_one_split_regardless_of_order():
    rows = [row(i, f"painter {i % 97}") for i in range(2_000)]
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != rows

    def split_by_row(grouped: dict) -> dict[int, str]:
        assignment = {r.catalog_index: name for name, group in grouped.items() for r in group}
        assert len(assignment) == sum(len(group) for group in grouped.values())  # no row in two splits
        return assignment

    in_order, reordered = assign_splits(rows, "artist"), assign_splits(shuffled, "artist")
    for grouped in (in_order, reordered):
        authors = {name: {r.author_key for r in group} for name, group in grouped.items()}
        assert all(authors[name] for name in SPLITS)  # 97 painters: every split gets some
        for a in SPLITS:
            for b in SPLITS:
                if a < b:
                    assert not authors[a] & authors[b]
    # Every row lands in the same split whichever order the catalogue lists it in, and it is the split that
    # split_of gives that row alone.
    assert split_by_row(reordered) == split_by_row(in_order)
    assert split_by_row(in_order) == {r.catalog_index: split_of(r, "artist") for r in rows}
    assert len(split_by_row(in_order)) == len(rows)
    # Each split keeps the order it was given.
    assert in_order["train"] == [r for r in rows if split_of(r, "artist") == "train"]
    assert reordered["train"] == [r for r in shuffled if split_of(r, "artist") == "train"]


def test_author_key_ignores_case_and_spacing():
    assert split_of(row(1, "REMBRANDT  Harmenszoon"), "artist") == split_of(row(2, "rembrandt harmenszoon"), "artist")


def test_random_protocol_spreads_one_author_over_splits():
    rows = [row(i, "prolific painter") for i in range(300)]
    assert sum(bool(group) for group in assign_splits(rows, "random").values()) == 3


def test_sample_caps_cells_and_respects_availability():
    rows = [row(i, f"a{i}", school=s, timeframe=t) for i, (s, t) in enumerate([("Dutch", "1601-1650")] * 40)]
    rows += [row(100 + i, f"b{i}", school="English", timeframe="1601-1650") for i in range(5)]  # no cell
    chosen = select_sample(rows, per_cell=25)
    assert len(chosen) == 25 and all(r.school == "Dutch" for r in chosen)
    assert chosen == sorted(chosen, key=lambda r: r.catalog_index)
    odd_only = select_sample(rows, per_cell=25, is_available=lambda r: r.catalog_index % 2 == 1)
    assert len(odd_only) == 20 and all(r.catalog_index % 2 for r in odd_only)
    assert select_sample(rows, per_cell=25) == chosen  # deterministic


def test_real_catalogue_artist_splits_share_no_author(wga_sample):
    paintings = usable_paintings(parse_catalog(read_catalog_bytes(wga_sample))[0])
    grouped = assign_splits(paintings, "artist")
    authors = {name: {r.author_key for r in group} for name, group in grouped.items()}
    assert not (authors["train"] & authors["validation"] or authors["train"] & authors["test"])
    assert not authors["validation"] & authors["test"]
    shares = {name: len(group) / len(paintings) for name, group in grouped.items()}
    assert 0.6 < shares["train"] < 0.8 and 0.08 < shares["validation"] < 0.22 and 0.08 < shares["test"] < 0.22
    sample = select_sample(paintings)
    cells = Counter((r.label_indices["school"], r.label_indices["timeframe"]) for r in sample)
    assert max(cells.values()) == 25 and 1_000 <= len(sample) <= 1_500
    assert labels.UNKNOWN not in {key for cell in cells for key in cell}
