"""A mini WGA mirror in the real format, with the rows that trip parsers: the builder's dummy data.

    python -m artnet.testing.dummy_mirror OUT_DIR

Writes `catalog.csv` (`;`-separated, Windows-1252, CRLF, as wga.hu serves it) and tiny synthetic JPEGs under
`art/`. Nothing here comes from wga.hu: authors, titles and pictures are invented. It is generated, not
committed, so that no image file in the repository can be mistaken for a copy of a WGA image.

Labels come from `artnet.labels`' vocabularies and image paths from `artnet.data.wga.image_paths.image_path_of`,
the rules the builder itself applies, so the fixture cannot drift from them. Its catalogue is not wga.hu's export:
builds from it set `ARTNET_WGA_CATALOG_SHA256=any` (see `artnet.data.wga.catalog_pin.CATALOG_SHA256_ENV`).
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

from artnet.data.wga.image_paths import image_path_of
from artnet.labels import SCHOOLS, TIMEFRAMES, TYPES

# wga.hu's header, spelt out rather than taken from artnet.data.wga.catalog.COLUMNS: it is the format under test, and
# the rows below list their fields in this order.
HEADER = "AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME"
URL_FIELD = HEADER.split(";").index("URL")
# One of each form the real catalogue holds (see artnet.data.wga.dates.parse_date).
DATES = [
    "1510",
    "c. 1510",
    "1620s",
    "-",
    "1598-1602",
    "after 1650",
    "1505-10",
    "c. 1490-1500",
    "September 1889, Saint-Rémy",
    "16th century",
    "",
]


def _jpeg(seed: int, mode: str = "RGB") -> bytes:
    colour = ((seed * 53) % 256, (seed * 97) % 256, (seed * 151) % 256)
    image = Image.new("RGB", (40 + seed % 7, 30 + seed % 5), colour)
    for x in range(0, image.width, 4):
        image.putpixel((x, seed % image.height), (255, 255, 255))
    out = io.BytesIO()
    image.convert(mode).save(out, format="JPEG", quality=90)
    return out.getvalue()


# wga.hu page URLs of the tricky rows' (invented) painter.
_ODD_PAGE = "https://www.wga.hu/html/z/zoddity/{}.html"
# Tricky rows, each exercising one rule of the parser or the builder: (fields or a raw line, the seed of its
# picture, the bytes of its file, or None for no file in the mirror). A table, not code, so each row reads alone.
_TRICKY_ROWS: list[tuple[list[str] | str, int | bytes | None]] = [
    # Quoted field holding ';' and a literal '"' in a title; stray whitespace; mixed case.
    (
        [
            " ODDITY, Anna ",
            "(b. 1600, Sevilla, d. 1660, Madrid)",
            'The "Quiet" Room',
            "1620s",
            '"Oil on canvas; 120 x 90 cm"',
            "Prado, Madrid",
            _ODD_PAGE.format("quiet"),
            " Painting ",
            "Genre",
            "SPANISH",
            " 1601-1650 ",
        ],
        101,
    ),
    # Unknown school (English) but known timeframe and type: kept, school = -1.
    (
        [
            "ODDITY, Anna",
            "",
            "English guest",
            "1700",
            "Oil",
            "London",
            _ODD_PAGE.format("english"),
            "painting",
            "portrait",
            "English",
            "1701-1750",
        ],
        102,
    ),
    # All three labels unknown: dropped.
    (
        [
            "ODDITY, Anna",
            "",
            "Nothing known",
            "-",
            "Tempera",
            "Siena",
            _ODD_PAGE.format("unknown"),
            "painting",
            "other",
            "Other",
            "1351-1400",
        ],
        103,
    ),
    # Not a painting: dropped even though its image exists.
    (
        [
            "ODDITY, Anna",
            "",
            "A statue",
            "1500",
            "Marble",
            "Firenze",
            _ODD_PAGE.format("statue"),
            "sculpture",
            "religious",
            "Italian",
            "1451-1500",
        ],
        104,
    ),
    # A painting whose image is absent from the mirror: skipped and counted as missing.
    (
        [
            "ODDITY, Anna",
            "",
            "Lost panel",
            "1450",
            "Tempera",
            "Lost",
            _ODD_PAGE.format("lost"),
            "painting",
            "religious",
            "Italian",
            "1401-1450",
        ],
        None,
    ),
    # A text file named .jpg: counted as corrupt, never fatal.
    (
        [
            "ODDITY, Anna",
            "",
            "Not an image",
            "1460",
            "Tempera",
            "Siena",
            _ODD_PAGE.format("notimage"),
            "painting",
            "religious",
            "Italian",
            "1451-1500",
        ],
        b"this is not a JPEG\r\n",
    ),
    # Rows with too few and too many fields: counted as malformed.
    ("ODDITY, Anna;(b. 1600);Too few fields;1620;Oil", None),
    (
        "ODDITY, Anna;;Too;many;fields;1620;Oil;Here;" + _ODD_PAGE.format("many") + ";painting;genre;Dutch;1601-1650",
        None,
    ),
    # A blank line in the middle of the file.
    ("", None),
]


def rows() -> list[tuple[list[str] | str, bytes | None]]:
    """(fields or a raw line, image bytes or None for 'no image in the mirror')."""
    tricky = [(fields, _jpeg(image) if isinstance(image, int) else image) for fields, image in _TRICKY_ROWS]
    return _painter_rows() + tricky


def _painter_rows() -> list[tuple[list[str], bytes]]:
    """18 painters of three works each, every label and DATE form cycled through: the ordinary rows."""
    out: list[tuple[list[str], bytes]] = []
    for author_number in range(18):
        slug = f"painter{author_number:02d}"
        author = f"PAINTER, Number {author_number:02d}"
        school = SCHOOLS[author_number % len(SCHOOLS)]
        for work in range(3):
            seed = author_number * 3 + work
            fields = [
                author,
                "(b. 1480, Köln, d. 1540, Praha)",
                f"Work {work} by {slug}",
                DATES[seed % len(DATES)],
                "Oil on panel, 50 x 40 cm",
                "Private collection",
                f"https://www.wga.hu/html/{slug[0]}/{slug}/work{work}.html",
                "painting",
                TYPES[seed % len(TYPES)],
                school,
                TIMEFRAMES[seed % len(TIMEFRAMES)],
            ]
            out.append((fields, _jpeg(seed, "L" if seed % 11 == 0 else "RGB")))
    return out


def write_mirror(target: str | Path) -> Path:
    """Write the mini mirror into `target` (created if needed) and return it."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for fields, image in rows():
        if isinstance(fields, str):
            lines.append(fields)
            continue
        lines.append(";".join(fields))
        if image is not None:
            path = image_path_of(fields[URL_FIELD])
            if path is None:  # a fixture row whose image the builder could never find: a bug in this file
                raise ValueError(f"dummy row {fields} has an image but no wga.hu page URL to place it at")
            image_file = target / path
            image_file.parent.mkdir(parents=True, exist_ok=True)
            image_file.write_bytes(image)
    (target / "catalog.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return target


def temporary_mirror() -> Path:
    """A fresh mini mirror in a new temporary folder."""
    return write_mirror(Path(tempfile.mkdtemp(prefix="wga-dummy-")))


if __name__ == "__main__":
    print(write_mirror(sys.argv[1] if len(sys.argv) > 1 else "wga-dummy-mirror"))
