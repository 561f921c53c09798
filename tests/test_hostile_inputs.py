"""Issue 14's attacks, each against the local fake wga.hu (artnet.testing.fake_server) or a copied dummy mirror.

Hostile catalogue rows, servers that never stop, lie about sizes, trickle or redirect away, zip bombs, symlinks out
of the mirror, files damaged on disk, and `artnet predict` inputs that are not regular files or not UTF-8 names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from artnet.data import images
from artnet.data.atomic_files import write_atomically
from artnet.data.wga import download
from artnet.data.wga.build import plan_build
from artnet.data.wga.catalog import CatalogError, parse_catalog, read_catalog_bytes
from artnet.data.wga.http_client import MAX_BODY_BYTES, DownloadConfig
from artnet.data.wga.image_paths import image_path_of
from artnet.data.wga.summary import format_summary
from artnet.testing.fake_server import FaultyWgaServer

GOOD = "art/p/painter00/work0.jpg"
OTHER = "art/p/painter01/work0.jpg"
LABELS = "painting;religious;Italian;1501-1550"


def fast_config(server, **overrides) -> DownloadConfig:
    settings = dict(base_url=server.base_url, workers=4, max_rate=0, timeout=1.0, retries=2, backoff=0.01)
    settings.update(overrides)
    return DownloadConfig(**settings)


def jpeg(seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 36), (seed * 40 % 256, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


def copy_mirror(dummy_data: Path, target: Path, extra_lines: list[str] = (), images_at: dict[str, bytes] = ()) -> Path:
    shutil.copytree(dummy_data, target)
    for path, body in dict(images_at).items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(body)
    with open(target / "catalog.csv", "ab") as catalogue:
        for line in extra_lines:
            catalogue.write(line.encode("cp1252") + b"\r\n")
    return target


def row(author: str, url: str, title: str = "Hostile") -> str:
    return f"{author};(1480-1540);{title};1510;Oil;Here;{url};{LABELS}"


# --- a bad catalogue row never aborts a build -------------------------------------------------------------------

UNICODE_PATH = "art/u/unicode/%C3%A9t%C3%A9.jpg"
HOSTILE_ROWS = [
    row("UNICODE, Painter", "https://www.wga.hu/html/u/unicode/été.html"),
    row("LONG, Painter", f"https://www.wga.hu/html/l/long/{'x' * 250}.html"),
    row("CLASH, Painter", "https://www.wga.hu/html/c/clash/b.html"),
    row("CLASH, Painter", "https://www.wga.hu/html/c/clash/b.jpg/c.html"),
    row("BACKSLASH, Painter", "https://www.wga.hu/html/b/back\\slash.html"),
    row("HUGE, Painter", "https://www.wga.hu/html/h/huge/field.html", title="x" * 140_000),  # csv.Error
]


def test_non_ascii_urls_are_percent_encoded_and_backslashes_kept_for_refusal():
    assert image_path_of("https://www.wga.hu/html/u/unicode/été.html") == UNICODE_PATH
    assert image_path_of("https://www.wga.hu/html/b/back\\slash.html") == "art/b/back%5Cslash.jpg"


def test_a_field_over_the_csv_limit_is_a_malformed_row_not_an_exception(dummy_data):
    baseline = parse_catalog(read_catalog_bytes(dummy_data))[1]
    text = (dummy_data / "catalog.csv").read_bytes() + HOSTILE_ROWS[-1].encode("cp1252") + b"\r\n"
    rows, report = parse_catalog(text)
    assert report.malformed_rows == baseline.malformed_rows + 1
    assert "field larger than field limit" in report.malformed_examples[-1]
    assert report.data_rows == baseline.data_rows + 1  # the row keeps its number: later catalog_index are stable


@pytest.mark.parametrize("mode", ["download", "manual"])
def test_hostile_rows_are_counted_as_failed_and_the_build_goes_on_identically(dummy_data, tmp_path, mode):
    mirror = copy_mirror(
        dummy_data,
        tmp_path / "mirror",
        HOSTILE_ROWS,
        {UNICODE_PATH: jpeg(1), "art/c/clash/b.jpg": jpeg(2)},
    )
    with FaultyWgaServer(mirror) as server:
        kwargs = dict(manual_dir=mirror) if mode == "manual" else dict(download_config=fast_config(server))
        first = plan_build(protocol="artist", work_dir=tmp_path / "work", config_name="t", **kwargs)
        again = plan_build(protocol="artist", work_dir=tmp_path / "work", config_name="t", **kwargs)
    summary = first.summary
    reasons = summary["failure_reasons"]
    assert reasons["unsafe path"] == 2  # the 250-character name and the backslash
    assert reasons["file/folder clash"] == 2  # both sides of it, whichever came first
    assert any("file/folder clash" in message for message in summary["errors"].values())
    assert "file/folder clash 2" in format_summary(summary) and "unsafe path 2" in format_summary(summary)
    baseline = parse_catalog(read_catalog_bytes(dummy_data))[1]
    assert summary["catalogue"]["malformed_rows"] == baseline.malformed_rows + 1
    unicode_rows = [r for rows in first.splits.values() for r in rows if r.author == "UNICODE, Painter"]
    assert len(unicode_rows) == 1 and first.image_files[unicode_rows[0].catalog_index].is_file()
    assert {n: [r.catalog_index for r in rows] for n, rows in again.splits.items()} == {
        n: [r.catalog_index for r in rows] for n, rows in first.splits.items()
    }


def test_a_symlink_out_of_the_manual_dir_is_refused(dummy_data, tmp_path):
    mirror = copy_mirror(dummy_data, tmp_path / "mirror")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(jpeg(3))
    (mirror / GOOD).unlink()
    (mirror / GOOD).symlink_to(outside)
    plan = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=mirror)
    assert plan.summary["failure_reasons"]["outside the mirror"] == 1
    assert "leads outside the mirror" in plan.summary["errors"][GOOD]
    assert all(r.image_path != GOOD for rows in plan.splits.values() for r in rows)


# --- bounded downloads --------------------------------------------------------------------------------------------


def test_an_endless_body_is_cut_at_the_cap_and_not_retried(wga_server, tmp_path):
    wga_server.faults[GOOD] = ["endless"] * 3
    result = download.mirror_images([GOOD], tmp_path, fast_config(wga_server))
    assert result.status[GOOD] == download.FAILED and result.reasons[GOOD] == "too large"
    assert wga_server.hits[GOOD] == 1
    # The client hung up near the cap (socket buffers let the server get a little further).
    assert wga_server.sent[GOOD] < MAX_BODY_BYTES + 16 * 2**20


def test_a_content_length_over_the_cap_is_refused_unread(wga_server, tmp_path):
    wga_server.faults[GOOD] = ["huge"] * 3
    result = download.mirror_images([GOOD], tmp_path, fast_config(wga_server))
    assert result.status[GOOD] == download.FAILED and result.reasons[GOOD] == "too large"
    assert "declares 10,000,000,000,000 bytes" in result.errors[GOOD]
    assert wga_server.hits[GOOD] == 1


@pytest.mark.parametrize(
    "fault",
    [
        "trickle",  # the body a byte every 0.2 s: each read arrives within the 1 s timeout
        # The status line and headers so: they are read inside urllib3, whose timeouts bound each read, and only
        # the deadline's watchdog, which shuts the socket down, stops them.
        "trickle-headers",
    ],
)
def test_a_trickling_server_meets_the_total_deadline(dummy_data, tmp_path, fault):
    """Only the 1.5 s total deadline can stop a trickle (each byte arrives within the 1 s read timeout). Nothing here
    is timed: the download must end at all (within a generous 60 s; without the deadline it takes minutes per
    attempt for the body, for ever for the headers), and end by the deadline's path, the server's bytes cut short."""
    results = []
    with FaultyWgaServer(dummy_data, trickle_seconds=0.2) as server:
        server.faults[GOOD] = [fault] * 3
        config = fast_config(server, deadline=1.5, retries=1)
        worker = threading.Thread(
            target=lambda: results.append(download.mirror_images([GOOD], tmp_path, config)), daemon=True
        )
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the download of a trickling server never ended: no total deadline"
    (result,) = results
    assert result.status[GOOD] == download.FAILED and result.reasons[GOOD] == "deadline"
    assert "was not complete after 1.5 s (the total deadline per request" in result.errors[GOOD]
    assert server.hits[GOOD] == 2 and result.retried == 1  # the deadline ends an attempt; the retry meets it too
    # Each attempt was cut off long before the server was done: a trickle of the whole file (or of the endless
    # header) would have sent it all.
    whole = len((dummy_data / GOOD).read_bytes()) if fault == "trickle" else 10_000
    assert 0 < server.sent[GOOD] < whole / 4
    assert not (tmp_path / GOOD).exists()


@pytest.mark.parametrize(
    "location, followed",
    [
        ("ftp://127.0.0.1/art/x.jpg", False),
        ("http://localhost:{port}/" + OTHER, False),  # another host name, same machine
        ("https://evil.example/" + OTHER, False),
        ("/" + OTHER, True),  # same host: followed
    ],
)
def test_redirects_are_followed_only_on_the_same_host(wga_server, tmp_path, location, followed):
    port = wga_server.httpd.server_address[1]
    wga_server.faults[GOOD] = [("redirect", location.format(port=port))] * 3
    result = download.mirror_images([GOOD], tmp_path, fast_config(wga_server))
    if followed:
        assert result.status[GOOD] == download.FOUND
        assert (tmp_path / GOOD).read_bytes() == (wga_server.mirror / OTHER).read_bytes()
    else:
        assert result.status[GOOD] == download.FAILED and result.reasons[GOOD] == "redirect refused"
        assert wga_server.hits[GOOD] == 1 and wga_server.hits[OTHER] == 0


def zip_bomb(path: Path) -> Path:
    """A data_txt.zip of ~70 KB whose catalog.csv inflates past 64 MB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        header = b"AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME\r\n"
        archive.writestr("catalog.csv", header + b" " * (65 * 2**20))
    return path


def test_a_zip_bomb_catalogue_is_refused_before_it_is_inflated(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    assert zip_bomb(mirror / "data_txt.zip").stat().st_size < 2**20
    with pytest.raises(CatalogError, match=r"would inflate to 68,[0-9,]+ bytes, over the 67,108,864"):
        read_catalog_bytes(mirror)
    with FaultyWgaServer(mirror) as server:
        with pytest.raises(CatalogError, match="would inflate"):
            plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=fast_config(server))
        assert server.hits["database/download/data_txt.zip"] == 1  # refused, not retried


# --- durable writes -----------------------------------------------------------------------------------------------


def test_atomic_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def spy(descriptor):
        synced.append("folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    write_atomically(tmp_path / "a" / "b.jpg", b"bytes")
    assert synced == ["file", "folder"] and (tmp_path / "a" / "b.jpg").read_bytes() == b"bytes"


def test_a_cut_short_cached_image_is_prepared_again(dummy_data, tmp_path):
    first = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=dummy_data)
    index, cached = next(iter(first.image_files.items()))
    cached.write_bytes(cached.read_bytes()[:30])  # what a crash between write and flush could leave
    again = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=dummy_data)
    assert again.image_files[index] == cached
    images.verify_image(cached.read_bytes())  # whole again
    assert again.summary["images"] == first.summary["images"]


def test_a_damaged_mirror_image_is_fetched_again_in_download_mode(wga_server, tmp_path):
    config = fast_config(wga_server)
    first = plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=config)
    mirror = tmp_path / "work" / "mirror"
    (mirror / GOOD).write_bytes((mirror / GOOD).read_bytes()[:30])  # damaged on disk since it was fetched
    cached = list((tmp_path / "work").glob(f"prepared-*/*/{GOOD.removesuffix('.jpg')}.*.jpg"))
    assert len(cached) == 1
    cached[0].unlink()  # so that the build has to read the mirror copy again
    hits = wga_server.hits[GOOD]
    again = plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=config)
    assert wga_server.hits[GOOD] == hits + 1 and again.summary["download"]["refetched"] == 1
    assert (mirror / GOOD).read_bytes() == (wga_server.mirror / GOOD).read_bytes()
    assert again.summary["images"] == first.summary["images"]


# --- artnet predict: regular files only, bounded reads, any file name ----------------------------------------------


def test_a_fifo_or_a_device_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:  # before: open() waited forever for a writer
        with pytest.raises(images.ImageError, match="not a regular file"):
            pool.submit(images.load_path, fifo).result(timeout=10)
    with pytest.raises(images.ImageError, match="not a regular file"):
        images.load_path(Path("/dev/zero"))  # before: read until memory ran out


@pytest.fixture(scope="module")
def predictor():
    import keras

    from artnet.models.artnet import ArtNet
    from artnet.serving.predictor import Predictor

    keras.utils.set_random_seed(0)
    return Predictor(ArtNet("tiny", image_size=32), top_k=2)


def test_predict_survives_a_fifo_and_a_name_that_is_not_utf8(predictor, tmp_path):
    from artnet.serving.batch_predict import run_batch_prediction

    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg(4))
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not valid UTF-8
    odd.write_bytes(jpeg(5))
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    inputs = [str(fifo), str(good), str(odd)]
    for out in (tmp_path / "out.csv", tmp_path / "out.jsonl"):
        with ThreadPoolExecutor(1) as pool:  # before: the FIFO hung the whole batch, good files included
            assert pool.submit(run_batch_prediction, predictor, inputs, str(out)).result(timeout=60) == 0
        text = out.read_text(encoding="utf-8")
        records = (
            list(csv.DictReader(io.StringIO(text)))
            if out.suffix == ".csv"
            else list(map(json.loads, text.split("\n")[:-1]))
        )
        assert [r["path"] for r in records] == [str(fifo), str(good), str(tmp_path / "caf\\xe9.jpg")]
        assert [str(r["ok"]) for r in records] == ["False", "True", "True"]
        assert "not a regular file" in records[0]["error"]
