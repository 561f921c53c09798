import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artnet import labels
from artnet.wga.catalog import (
    CatalogError,
    image_path_of,
    parse_catalog,
    read_catalog_bytes,
    usable_paintings,
    year_of,
)

HEADER = "AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME"
URL = "https://www.wga.hu/html/a/aachen/allegory.html"


def catalogue(*rows: str, header: str = HEADER, encoding: str = "cp1252", newline: str = "\r\n") -> bytes:
    return (newline.join((header, *rows)) + newline).encode(encoding)


def test_real_format_row_decodes_cp1252_and_maps_labels():
    data = catalogue(
        f"AACHEN, Hans von;(b. 1552, Köln, d. 1615, Praha);Allegory;1598;Oil on copper;Munich;{URL};"
        "painting;mythological;German;1601-1650"
    )
    rows, report = parse_catalog(data)
    assert report.encoding == "cp1252"
    (row,) = rows
    assert row.born_died == "(b. 1552, Köln, d. 1615, Praha)"
    assert row.catalog_index == 0
    assert row.image_path == "art/a/aachen/allegory.jpg"
    assert row.label_indices == {
        "school": labels.SCHOOLS.index("German"),
        "timeframe": labels.TIMEFRAMES.index("1601-1650"),
        "type": labels.TYPES.index("mythological"),
    }


def test_bom_blank_lines_whitespace_and_mixed_case():
    data = b"\xef\xbb\xbf" + catalogue(
        "",
        f" A, B ; x ; T ; c. 1510 ; tech ; loc ; {URL} ; Painting ; RELIGIOUS ; italian ; 1501-1550 ",
        "   ",
        encoding="utf-8",
    )
    rows, report = parse_catalog(data)
    assert report.encoding == "utf-8-sig"
    assert report.blank_lines == 2
    (row,) = rows
    assert row.author == "A, B" and row.is_painting and row.year == 1510
    assert all(index != labels.UNKNOWN for index in row.label_indices.values())


def test_quoted_field_with_semicolon_and_literal_quote_in_title():
    rows, report = parse_catalog(
        catalogue(f'A;;The "Quiet" Room;-;"Oil on canvas; 120 x 90 cm";loc;{URL};painting;genre;Dutch;1601-1650')
    )
    assert report.malformed_rows == 0
    assert rows[0].title == 'The "Quiet" Room'
    assert rows[0].technique == "Oil on canvas; 120 x 90 cm"


def test_rows_with_too_few_or_too_many_fields_are_counted_not_fatal():
    good = f"A;;T;1500;t;l;{URL};painting;genre;Dutch;1601-1650"
    rows, report = parse_catalog(catalogue(good, "A;B;C", good + ";extra;fields", good))
    assert len(rows) == 2
    assert report.malformed_rows == 2 and len(report.malformed_examples) == 2
    # Malformed rows still take their row number: catalog_index matches the file's row order.
    assert [row.catalog_index for row in rows] == [0, 3]


@pytest.mark.parametrize(
    ("date", "year"),
    [("1598", 1598), ("c. 1510", 1510), ("1620s", 1620), ("-", -1), ("", -1), ("1598-1602", 1598), ("162628", -1)],
)
def test_odd_dates(date, year):
    assert year_of(date) == year


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (URL, "art/a/aachen/allegory.jpg"),
        ("https://www.wga.hu/html/z/zzzarchi/18c/2/04f_1701.html", "art/z/zzzarchi/18c/2/04f_1701.jpg"),
        ("https://www.wga.hu/frames-e.html", None),
        ("https://www.wga.hu/html/../../etc/passwd.html", None),
        ("", None),
    ],
)
def test_image_path_of(url, path):
    assert image_path_of(url) == path


def test_not_a_catalogue_is_a_clear_error():
    with pytest.raises(CatalogError, match="not a WGA catalogue"):
        parse_catalog(b"name,age\nann,3\n")
    with pytest.raises(CatalogError, match="empty"):
        parse_catalog(b"")


def test_zip_input_and_missing_files(tmp_path):
    archive = tmp_path / "data_txt.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("catalog.csv", catalogue(f"A;;T;1500;t;l;{URL};painting;genre;Dutch;1601-1650"))
    rows, _ = parse_catalog(read_catalog_bytes(tmp_path))
    assert len(rows) == 1
    with pytest.raises(CatalogError, match="catalogue not found"):
        read_catalog_bytes(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="data_txt.zip or catalog.csv"):
        read_catalog_bytes(tmp_path / "empty")
    broken = tmp_path / "broken" / "data_txt.zip"
    broken.parent.mkdir()
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(CatalogError):
        parse_catalog(broken.read_bytes())


def test_usable_paintings_keeps_rows_with_one_known_label():
    rows, _ = parse_catalog(
        catalogue(
            f"A;;english;1700;t;l;{URL};painting;portrait;English;1701-1750",
            f"A;;nothing known;-;t;l;{URL};painting;other;Other;1351-1400",
            f"A;;statue;1500;t;l;{URL};sculpture;religious;Italian;1451-1500",
        )
    )
    kept = usable_paintings(rows)
    assert [row.title for row in kept] == ["english"]
    assert kept[0].label_indices["school"] == labels.UNKNOWN


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_any_bytes_give_rows_or_a_clear_error(data):
    try:
        rows, report = parse_catalog(data)
    except CatalogError:
        return
    assert report.data_rows >= len(rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=14))
def test_fuzz_rows_after_a_real_header(fields):
    data = (HEADER + "\r\n" + ";".join(fields) + "\r\n").encode("utf-8")
    rows, report = parse_catalog(data)
    assert len(rows) + report.malformed_rows + report.blank_lines >= 1 or not fields


def test_real_catalogue_matches_the_published_figures(wga_sample):
    rows, report = parse_catalog(read_catalog_bytes(wga_sample))
    assert len(rows) == 44_809 and report.malformed_rows == 0
    paintings = [row for row in rows if row.is_painting]
    assert len(paintings) == 30_309
    known = {head: sum(row.label_indices[head] != labels.UNKNOWN for row in paintings) for head in labels.HEADS}
    assert known == {"timeframe": 28_067, "school": 27_553, "type": 28_814}
    assert sum(all(i != labels.UNKNOWN for i in row.label_indices.values()) for row in paintings) == 24_107
    assert len(usable_paintings(rows)) == 30_305
    assert sum("(detail" in row.title for row in paintings) == 4_855


def test_zip_bytes_are_accepted_directly():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("catalog.csv", catalogue(f"A;;T;1500;t;l;{URL};painting;genre;Dutch;1601-1650"))
    rows, _ = parse_catalog(out.getvalue())
    assert rows[0].school == "Dutch"
