"""The download path against a local server on 127.0.0.1 that injects faults (no internet needed)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artnet.data.atomic_files import PARTIAL, remove_stale_parts, write_atomically
from artnet.data.wga import download
from artnet.data.wga.build import plan_build
from artnet.data.wga.catalog import parse_catalog, read_catalog_bytes, usable_paintings
from artnet.data.wga.catalog_pin import CATALOG_SHA256_ENV, CatalogMismatchError, read_checksums, verify_catalog
from artnet.data.wga.http_client import DownloadConfig, RateLimiter

GOOD = "art/p/painter00/work0.jpg"
OTHERS = [f"art/p/painter0{n}/work{w}.jpg" for n in range(1, 4) for w in range(3)]


def fast_config(server, **overrides) -> DownloadConfig:
    settings = dict(base_url=server.base_url, workers=8, max_rate=0, timeout=0.5, retries=3, backoff=0.01)
    settings.update(overrides)
    return DownloadConfig(**settings)


def test_retryable_faults_are_retried_and_404_is_missing(wga_server, tmp_path):
    wga_server.faults[GOOD] = [500, 503, "truncate"]
    wga_server.faults[OTHERS[0]] = ["hang"]
    wga_server.faults[OTHERS[1]] = ["reset", 429]
    wga_server.faults[OTHERS[2]] = ["garbage"]
    paths = [GOOD, *OTHERS, "art/n/nowhere/lost.jpg"]
    result = download.mirror_images(paths, tmp_path, fast_config(wga_server))
    assert result.status["art/n/nowhere/lost.jpg"] == download.MISSING
    assert all(result.status[p] == download.FOUND for p in [GOOD, *OTHERS])
    assert wga_server.hits[GOOD] == 4 and wga_server.hits[OTHERS[1]] == 3
    assert result.retried >= 7
    for path in [GOOD, *OTHERS]:
        assert (tmp_path / path).read_bytes() == (wga_server.mirror / path).read_bytes()
    assert not list(tmp_path.rglob(f"*{PARTIAL}*")), "no partial files may survive"


def test_exhausted_retries_fail_and_undecodable_bodies_are_corrupt(wga_server, tmp_path):
    wga_server.faults[GOOD] = [500] * 10
    wga_server.faults[OTHERS[0]] = ["garbage"] * 10
    result = download.mirror_images([GOOD, OTHERS[0]], tmp_path, fast_config(wga_server, retries=2))
    assert result.status == {GOOD: download.FAILED, OTHERS[0]: download.CORRUPT}
    assert "HTTP 500" in result.errors[GOOD]
    assert wga_server.hits[GOOD] == 3
    assert not (tmp_path / GOOD).exists() and not (tmp_path / OTHERS[0]).exists()


def test_a_second_run_refetches_nothing_it_already_has(wga_server, tmp_path):
    paths = [GOOD, *OTHERS, "art/n/nowhere/lost.jpg"]
    download.mirror_images(paths[:4], tmp_path, fast_config(wga_server))  # "interrupted" after 4
    before = sum(wga_server.hits.values())
    result = download.mirror_images(paths, tmp_path, fast_config(wga_server))
    assert result.cached == 4 and result.attempted == len(paths) - 4
    assert result.fetched == len(paths) - 5  # the 404 was requested, but nothing came back
    assert sum(wga_server.hits.values()) - before == len(paths) - 4
    again = download.mirror_images(paths, tmp_path, fast_config(wga_server))
    assert again.attempted == 0  # the 404 is remembered too
    assert sum(wga_server.hits.values()) - before == len(paths) - 4


def test_rate_limit_spaces_requests():
    limiter = RateLimiter(rate=50.0)
    import time

    start = time.monotonic()
    for _ in range(11):
        limiter.wait()
    assert time.monotonic() - start >= 10 / 50.0 * 0.9


def test_requests_carry_artnet_user_agent(wga_server, tmp_path):
    seen = {}
    handler = wga_server.httpd.RequestHandlerClass
    original = handler.do_GET

    def spy(self):
        seen["ua"] = self.headers.get("User-Agent")
        original(self)

    handler.do_GET = spy
    try:
        download.mirror_images([GOOD], tmp_path, fast_config(wga_server))
    finally:
        handler.do_GET = original
    assert seen["ua"].startswith("artnet/")


def test_config_from_environment():
    config = DownloadConfig.from_env({"ARTNET_WGA_WORKERS": "16", "ARTNET_WGA_BASE_URL": "http://x/"})
    assert config.workers == 16 and config.base_url == "http://x"
    with pytest.raises(ValueError, match="ARTNET_WGA_MAX_RATE"):
        DownloadConfig.from_env({"ARTNET_WGA_MAX_RATE": "fast"})


def test_download_build_with_faults_matches_manual_build_and_resumes(wga_server, dummy_data, tmp_path):
    paintings = usable_paintings(parse_catalog(read_catalog_bytes(dummy_data))[0])
    wga_server.faults["database/download/data_txt.zip"] = [503]
    for row, fault in zip(paintings[:8], [500, "hang", "truncate", "reset", 503, 500, "garbage", 429], strict=True):
        wga_server.faults[row.image_path] = [fault]
    config = fast_config(wga_server)
    downloaded = plan_build(protocol="artist", work_dir=tmp_path / "dl", download_config=config, config_name="t")
    manual = plan_build(protocol="artist", work_dir=tmp_path / "manual", manual_dir=dummy_data, config_name="t")
    assert downloaded.summary["mode"] == "download" and downloaded.summary["download"]["retries"] >= 9
    for name in manual.splits:
        assert [r.catalog_index for r in downloaded.splits[name]] == [r.catalog_index for r in manual.splits[name]]
    counts = {key: sum(split[key] for split in downloaded.summary["images"].values()) for key in ("missing", "corrupt")}
    assert counts == {"missing": 1, "corrupt": 1}  # the lost panel (404) and the text file named .jpg

    # Interrupted build: drop half the mirror, rebuild; only the dropped images are fetched again.
    mirror = tmp_path / "dl" / "mirror"
    dropped = [row.image_path for row in paintings[::2] if (mirror / row.image_path).is_file()]
    for path in dropped:
        (mirror / path).unlink()
    before = sum(wga_server.hits.values())
    resumed = plan_build(protocol="artist", work_dir=tmp_path / "dl", download_config=config, config_name="t")
    assert resumed.summary["download"]["fetched"] == len(dropped) + 1  # + the corrupt one, tried again
    # Each dropped image once; the corrupt one with all its retries (the server may have mended it).
    assert sum(wga_server.hits.values()) - before == len(dropped) + 1 + config.retries
    assert {n: len(r) for n, r in resumed.splits.items()} == {n: len(r) for n, r in manual.splits.items()}


def test_a_tls_failure_mid_body_is_retried(wga_server, tmp_path, monkeypatch):
    import ssl

    import urllib3

    real_request, failures = urllib3.PoolManager.request, []

    def flaky_request(self, method, url, **kwargs):
        if not failures:
            failures.append(url)
            raise ssl.SSLError("UNEXPECTED_EOF_WHILE_READING")
        return real_request(self, method, url, **kwargs)

    monkeypatch.setattr(urllib3.PoolManager, "request", flaky_request)
    result = download.mirror_images([GOOD], tmp_path, fast_config(wga_server))
    assert failures and result.status == {GOOD: download.FOUND} and result.retried == 1


def test_a_disk_error_stops_the_download_at_once_and_keeps_what_was_written(wga_server, tmp_path, monkeypatch):
    """Not a per-image fault: it aborts, without first working through every queued download."""
    real_write, written = download.write_atomically, []

    def write_then_fill_the_disk(path, body):
        if written:  # (not `len(written) == 1`: two threads can both write before either checks)
            raise OSError(28, "No space left on device")
        real_write(path, body)
        written.append(path)

    monkeypatch.setattr(download, "write_atomically", write_then_fill_the_disk)
    many = [GOOD, *OTHERS] + [f"art/z/nowhere/{i}.jpg" for i in range(200)]  # 404s: quick to serve, many to queue
    with pytest.raises(OSError, match="No space left"):
        download.mirror_images(many, tmp_path, fast_config(wga_server, workers=2, timeout=10))
    assert sum(wga_server.hits.values()) < 40  # the rest of the 210 queued requests were cancelled
    assert all(path.is_file() for path in written) and not list(tmp_path.rglob(f"*{PARTIAL}*"))


@pytest.mark.parametrize("from_environment", [True, False])
def test_a_manual_dir_without_a_catalogue_says_where_it_came_from(tmp_path, monkeypatch, from_environment):
    from artnet.data.wga.build import MANUAL_DIR_ENV
    from artnet.data.wga.catalog import CatalogError

    empty = tmp_path / "mirror"
    empty.mkdir()
    if from_environment:
        monkeypatch.setenv(MANUAL_DIR_ENV, str(empty))
    else:
        monkeypatch.delenv(MANUAL_DIR_ENV, raising=False)
    origin = f"\\${MANUAL_DIR_ENV}" if from_environment else "--manual_dir"
    with pytest.raises(CatalogError, match=f"{empty} \\(from {origin}\\) holds no data_txt.zip"):
        plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=empty)


def test_stopping_the_image_check_cancels_the_images_not_yet_started(tmp_path, monkeypatch):
    import threading
    import time

    from artnet.data.wga import prepare

    started = []
    lock = threading.Lock()

    def slow_prepare(row, source_dir, cache_dir):
        with lock:
            started.append(row)
        time.sleep(0.05)
        return row, ""

    monkeypatch.setattr(prepare, "_prepare_one", slow_prepare)
    rows = list(range(200))  # stand-ins: only counted
    checking = prepare.prepare_images(rows, tmp_path, tmp_path)
    next(checking)
    checking.close()  # what a Ctrl-C in the build loop does to the generator
    assert len(started) < 20  # not the 200 queued (at 50 ms each that would be seconds of work after the stop)


# The catalogue pin: datasets/wga/checksums.tsv, and $ARTNET_WGA_CATALOG_SHA256 to accept another export on purpose.
CHECKSUMS = Path(__file__).resolve().parents[1] / "datasets" / "wga" / "checksums.tsv"


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_catalogue_checksums_tsv_does_not_pin_is_refused_saying_what_was_found(dummy_data, tmp_path):
    catalogue = dummy_data / "catalog.csv"
    found = sha256_of(catalogue)
    with pytest.raises(CatalogMismatchError) as error:
        plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=dummy_data, checksums_file=CHECKSUMS)
    message = str(error.value)
    # 54 ordinary rows + 6 tricky ones + 2 malformed (the blank line is not a row).
    size = catalogue.stat().st_size
    assert f"found:    {catalogue} (in the manual dir): {size:,} bytes, sha256 {found}, 62 data rows" in message
    pinned = read_checksums(CHECKSUMS)["catalog.csv"]  # a bare catalog.csv is held to the pinned zip's member
    assert f"expected: catalog.csv of {pinned.size:,} bytes, sha256 {pinned.sha256}" in message
    assert str(CHECKSUMS) in message
    assert f"set {CATALOG_SHA256_ENV}={found} (or {CATALOG_SHA256_ENV}=any to skip this check)" in message
    assert not list((tmp_path / "work").glob("prepared-*")), "refused before any image was prepared"


def test_the_accept_variable_takes_the_named_catalogue_only_or_any(dummy_data, tmp_path, monkeypatch):
    found = sha256_of(dummy_data / "catalog.csv")

    def build():
        work_dir = tmp_path / "work"
        return plan_build(protocol="random", work_dir=work_dir, manual_dir=dummy_data, checksums_file=CHECKSUMS)

    monkeypatch.setenv(CATALOG_SHA256_ENV, found)
    plan = build()
    assert sum(len(rows) for rows in plan.splits.values()) == 56
    assert plan.summary["catalogue"]["file"] == "catalog.csv" and plan.summary["catalogue"]["sha256"] == found

    other = "0" * 64  # an export pinned on purpose that is not the one in the mirror: still refused
    monkeypatch.setenv(CATALOG_SHA256_ENV, other)
    with pytest.raises(CatalogMismatchError, match=f"expected: sha256 {other}, set by \\${CATALOG_SHA256_ENV}"):
        build()

    monkeypatch.setenv(CATALOG_SHA256_ENV, "any")
    assert build().summary["catalogue"]["sha256"] == found

    monkeypatch.setenv(CATALOG_SHA256_ENV, "yes")
    with pytest.raises(ValueError, match=f"{CATALOG_SHA256_ENV}='yes' is neither a sha256"):
        build()


def test_a_downloaded_catalogue_that_does_not_match_stops_before_any_image_is_fetched(wga_server, tmp_path):
    with pytest.raises(CatalogMismatchError) as error:
        config = fast_config(wga_server)
        plan_build(protocol="artist", work_dir=tmp_path / "dl", download_config=config, checksums_file=CHECKSUMS)
    message = str(error.value)
    zipped = tmp_path / "dl" / "mirror" / "data_txt.zip"
    # The zip as served is what is hashed, and it is held to the zip's entry.
    assert f"{zipped}, downloaded from {wga_server.base_url}{download.CATALOG_URL_PATH}" in message
    assert f"sha256 {sha256_of(zipped)}, 62 data rows" in message
    pinned = read_checksums(CHECKSUMS)["data_txt.zip"]
    assert f"expected: data_txt.zip of {pinned.size:,} bytes, sha256 {pinned.sha256}" in message
    assert set(wga_server.hits) == {download.CATALOG_URL_PATH.lstrip("/")}


def test_the_real_sample_catalogue_is_the_pinned_export_zipped_or_unzipped(wga_sample, tmp_path):
    pinned = read_checksums(CHECKSUMS)
    zipped = wga_sample / "data_txt.zip"
    assert verify_catalog(zipped, checksums_file=CHECKSUMS, origin=str(zipped)) == pinned["data_txt.zip"].sha256
    bare = tmp_path / "catalog.csv"
    bare.write_bytes(read_catalog_bytes(zipped))
    assert verify_catalog(bare, checksums_file=CHECKSUMS, origin=str(bare)) == pinned["catalog.csv"].sha256


def test_a_malformed_checksums_line_is_named(tmp_path):
    bad = tmp_path / "checksums.tsv"
    bad.write_text("https://www.wga.hu/database/download/data_txt.zip\t1522461\tnot-a-sha\tdata_txt.zip\n")
    with pytest.raises(ValueError, match="checksums.tsv line 1: expected url<TAB>size<TAB>sha256<TAB>filename"):
        read_checksums(bad)


def test_partial_files_of_a_killed_build_are_removed_and_a_live_writers_kept(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)  # a process that has exited: its pid names no writer now
    folder = tmp_path / "mirror" / "art" / "a" / "x"
    folder.mkdir(parents=True)
    left = folder / f".one{PARTIAL}{dead}-abc12345.jpg"
    left_by_artnet_0_1 = folder / f".four.jpg.{dead}.abc12345.part"  # the name the writer had before
    live = folder / f".two{PARTIAL}{os.getpid()}-def45678.jpg"
    other = folder / ".notes.part"  # not a name the writer makes: not ours to delete
    for path in (left, left_by_artnet_0_1, live, other):
        path.write_bytes(b"half a jpeg")
    assert remove_stale_parts(tmp_path / "mirror") == 2
    assert not left.exists() and not left_by_artnet_0_1.exists() and live.exists() and other.exists()
    write_atomically(folder / "three.jpg", b"data")  # its temporary name carries this pid
    assert (folder / "three.jpg").read_bytes() == b"data" and remove_stale_parts(tmp_path / "mirror") == 0
