import io
import re
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artnet import labels
from artnet.data.wga.catalog import CatalogError, parse_catalog, read_catalog_bytes, usable_paintings
from artnet.data.wga.dates import DATE_FORMS, DATE_PRECISIONS, ParsedDate, date_counts, date_form, parse_date, year_of
from artnet.data.wga.image_paths import image_path_of

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
    body = ";".join(fields)  # the fields may hold CR / LF themselves: then they make several lines
    data = (HEADER + "\r\n" + body + "\r\n").encode("utf-8")
    rows, report = parse_catalog(data)
    # The catalogue's own line breaks (CR, LF, CRLF; nothing else ends a line), each line after the header once.
    lines = re.split(r"\r\n|\n|\r", body)
    blank = sum(not line.strip() for line in lines)
    # Every line is accounted for exactly once: a blank line, a row, or a malformed row.
    assert report.blank_lines == blank
    assert report.data_rows == len(lines) - blank
    assert len(rows) + report.malformed_rows == report.data_rows
    assert len(rows) + report.malformed_rows + report.blank_lines == len(lines)
    assert len(report.malformed_examples) == min(report.malformed_rows, 20)
    # A row's catalog_index is its place among the data rows (malformed ones included), in file order.
    indices = [row.catalog_index for row in rows]
    assert indices == sorted(set(indices)) and all(0 <= index < report.data_rows for index in indices)


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


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        # the six forms of the table, and the odd ones the real catalogue holds
        ("1520", (1520, 1520, 1520, "exact")),
        ("c. 1520", (1520, 1515, 1525, "circa")),
        ("c.1250", (1250, 1245, 1255, "circa")),
        ("c 1522", (1522, 1517, 1527, "circa")),
        ("about. 1528", (1528, 1523, 1533, "circa")),
        ("around 1200", (1200, 1195, 1205, "circa")),
        ("ca. 1565", (1565, 1560, 1570, "circa")),
        ("c. 1430.", (1430, 1425, 1435, "circa")),
        ("c. 800", (800, 795, 805, "circa")),
        ("1655 (?)", (1655, 1650, 1660, "circa")),
        ("after 1588", (1593, 1588, 1598, "circa")),
        ("Before 1380", (1375, 1370, 1380, "circa")),
        ("1480 or later", (1485, 1480, 1490, "circa")),
        ("1505-10", (1507, 1505, 1510, "range")),
        ("1503-5", (1504, 1503, 1505, "range")),
        ("1598-1602", (1600, 1598, 1602, "range")),
        ("1595-05", (1600, 1595, 1605, "range")),
        ("c. 1490-1500", (1495, 1490, 1500, "range")),
        ("c. 1495/1497", (1496, 1495, 1497, "range")),
        ("800-30", (815, 800, 830, "range")),
        ("1825\u201427", (1826, 1825, 1827, "range")),
        ("1390-95.", (1392, 1390, 1395, "range")),
        ("1530-40s", (1539, 1530, 1549, "range")),
        ("1520 and 1527", (1523, 1520, 1527, "range")),
        ("1475-83, 1508-12", (1493, 1475, 1512, "range")),
        ("c. 1515 or c. 1545", (1530, 1515, 1545, "range")),
        ("Winter 1887/88, Paris", (1887, 1887, 1888, "range")),
        ("November-January 1884-85, Nuenen", (1884, 1884, 1885, "range")),
        ("1904-06-01 00:00:00", (1905, 1904, 1906, "range")),  # "1904-06" as a spreadsheet read it
        ("1905-10-01 00:00:00", (1907, 1905, 1910, "range")),
        ("162628", (1627, 1626, 1628, "range")),  # a lost dash
        ("1620s", (1624, 1620, 1629, "decade")),
        ("1740's", (1744, 1740, 1749, "decade")),
        ("late 1560s", (1568, 1567, 1569, "decade")),
        ("16th century", (1550, 1501, 1600, "century")),
        ("early 16th century", (1517, 1501, 1533, "century")),
        ("mid-16th century", (1550, 1534, 1567, "century")),
        ("late 16th century", (1584, 1568, 1600, "century")),
        ("September 1889, Saint-R\u00e9my", (1889, 1889, 1889, "exact")),
        ("Summer 1886, Paris", (1886, 1886, 1886, "exact")),
        ("completed 1565", (1565, 1565, 1565, "exact")),
        ("-", (-1, -1, -1, "unknown")),
        ("-.", (-1, -1, -1, "unknown")),
        ("", (-1, -1, -1, "unknown")),
        (None, (-1, -1, -1, "unknown")),
        ("11757", (-1, -1, -1, "unknown")),
        ("unknown", (-1, -1, -1, "unknown")),
    ],
)
def test_parse_date(date, expected):
    assert parse_date(date) == ParsedDate(*expected)


def _check_parsed(parsed):
    assert parsed.precision in DATE_PRECISIONS
    if parsed.precision == "unknown":
        assert (parsed.year, parsed.year_min, parsed.year_max) == (-1, -1, -1)
    else:
        assert 0 <= parsed.year_min <= parsed.year <= parsed.year_max
        assert parsed.year == (parsed.year_min + parsed.year_max) // 2


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_date_never_raises_and_keeps_its_bounds(date):
    _check_parsed(parse_date(date))
    assert date_form(date) in DATE_FORMS


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-20, 99_999).map(str),
            st.sampled_from(["c.", "c. ", "-", "/", "s", "'s", "th century", " or ", ", ", "after ", "early ", "(?)"]),
            st.sampled_from(["00:00:00", "-01 ", "\u2014", " ", "."]),
        ),
        max_size=6,
    ).map("".join)
)
def test_parse_date_on_date_like_strings(date):
    """Strings built from the pieces real DATEs are made of, which plain random text rarely hits."""
    _check_parsed(parse_date(date))


def test_catalog_row_year_is_the_best_estimate():
    rows, _ = parse_catalog(catalogue(f"A;;T;1505-10;t;l;{URL};painting;genre;Dutch;1501-1550"))
    assert rows[0].year == 1507
    assert rows[0].parsed_date == ParsedDate(1507, 1505, 1510, "range")


def test_date_counts_per_form_and_precision():
    counts = date_counts(["1520", "c. 1520", "c.1520", "1505-10", "c. 1490-1500", "1620s", "after 1588", "-", ""])
    assert counts["form"] == {"year": 1, "circa": 2, "range": 2, "decade": 1, "other": 1, "empty": 2}
    assert counts["precision"] == {"exact": 1, "circa": 3, "range": 2, "decade": 1, "century": 0, "unknown": 2}


# The table of the 30,309 painting rows, which the data card reports.
REAL_FORMS = {"year": 9732, "circa": 6237, "range": 8539, "decade": 1406, "other": 687, "empty": 3708}
REAL_PRECISIONS = {"exact": 10057, "circa": 6473, "range": 8626, "decade": 1411, "century": 32, "unknown": 3710}


def test_real_catalogue_date_counts(wga_sample):
    rows, _ = parse_catalog(read_catalog_bytes(wga_sample))
    counts = date_counts(row.date for row in rows if row.is_painting)
    assert counts == {"form": REAL_FORMS, "precision": REAL_PRECISIONS}


def test_the_data_card_reports_the_date_counts():
    from pathlib import Path

    card = (Path(__file__).parent.parent / "datasets" / "wga" / "README.md").read_text()
    for precision, rows in REAL_PRECISIONS.items():
        assert f"| {precision} | {rows:,} |" in card
    for rows in REAL_FORMS.values():
        assert f" | {rows:,} |" in card
