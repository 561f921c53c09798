"""Trust nothing read from disk (or from the network): each test names the attack it stands for.

- a writer killed or failing mid-write leaves the old file whole, and its leftover is swept (`atomic_files`);
- a mirror image replaced by another one is prepared again, not served from the old one's cache;
- a redirect to another port of the same host is refused;
- an unreachable wga.hu gives up at once, with one line that names the way to build offline.

The `.pth` reader's restricted unpickler is tested with the reader, in test_efficientnet_lite.py.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artnet.data import atomic_files, images
from artnet.data.atomic_files import atomic_path, remove_stale_parts, write_atomically
from artnet.data.wga import download
from artnet.data.wga.build import MANUAL_DIR_ENV, WORK_DIR_ENV, plan_build
from artnet.data.wga.catalog import parse_catalog, read_catalog_bytes
from artnet.data.wga.http_client import DownloadConfig, ServerUnreachableError, _redirect_target
from artnet.testing.fake_server import FaultyWgaServer

ROOT = Path(__file__).resolve().parents[1]
GOOD = "art/p/painter00/work0.jpg"
OTHER = "art/p/painter01/work0.jpg"


def fast_config(base_url: str, **overrides) -> DownloadConfig:
    settings = dict(base_url=base_url, workers=4, max_rate=0, timeout=1.0, retries=2, backoff=0.01)
    settings.update(overrides)
    return DownloadConfig(**settings)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if atomic_files.PARTIAL in p.name)


# --- 1. whole or not at all --------------------------------------------------------------------------------------


def test_a_writer_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "best.weights.h5"
    target.write_bytes(b"old, complete")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as partial:
            assert partial.parent == tmp_path and partial.name.endswith(".weights.h5")  # Keras's suffix kept
            partial.write_bytes(b"new, but only ha")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old, complete" and leftovers(tmp_path) == []

    with pytest.raises(FileNotFoundError, match="wrote no file"):  # a writer that wrote elsewhere is no success
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"old, complete"


def test_a_write_that_fails_before_its_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "data_txt.zip"
    target.write_bytes(b"old, complete")

    def failing_fsync(_descriptor):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_atomically(target, b"new bytes")
    assert target.read_bytes() == b"old, complete" and leftovers(tmp_path) == []


def test_writers_that_need_a_file_name_get_one_with_the_targets_suffixes(tmp_path):
    target = tmp_path / "features.npz"
    with atomic_path(target) as partial:
        assert partial.name.endswith(".npz")  # else np.savez would write `<partial>.npz` beside it
        np.savez(partial, features=np.arange(3))
    with np.load(target) as stored:
        np.testing.assert_array_equal(stored["features"], np.arange(3))
    assert leftovers(tmp_path) == []
    assert atomic_files.temporary_path(tmp_path / "model.keras").name.endswith(".keras")


def test_a_killed_writer_leaves_the_old_file_and_its_leftover_is_swept(tmp_path):
    target = tmp_path / "best.weights.h5"
    target.write_bytes(b"old, complete")
    killed = textwrap.dedent(
        f"""
        import os, signal
        from artnet.data.atomic_files import atomic_path
        with atomic_path({str(target)!r}) as partial:
            with open(partial, "wb") as out:
                out.write(b"new, but only ha")
                out.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a power cut would
        """
    )
    run = subprocess.run([sys.executable, "-c", killed], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    assert target.read_bytes() == b"old, complete"  # not the half-written file
    [left] = leftovers(tmp_path)  # the truncated temporary file the kill left
    assert (tmp_path / left).read_bytes() == b"new, but only ha"
    live = atomic_files.temporary_path(target)  # a writer still at work (this process): not swept
    live.write_bytes(b"in progress")
    foreign = tmp_path / ".notes.partial-draft.txt"  # not a name the writer makes: not ours to delete
    foreign.write_bytes(b"keep")

    assert remove_stale_parts(tmp_path) == 1
    assert leftovers(tmp_path) == sorted([live.name, foreign.name]) and target.read_bytes() == b"old, complete"


# --- 2. a prepared image is keyed by its source's content ------------------------------------------------------------


def jpeg(colour: tuple[int, int, int], size=(60, 45)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


def mean_colour(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=float).mean(axis=(0, 1))


def test_a_replaced_mirror_image_is_prepared_again(dummy_data, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(dummy_data, mirror)
    (mirror / GOOD).write_bytes(jpeg((200, 30, 30)))  # red
    first = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=mirror)
    [index] = [row.catalog_index for row in parse_catalog(read_catalog_bytes(mirror))[0] if row.image_path == GOOD]
    assert mean_colour(first.image_files[index])[0] > 150  # red

    # Replaced by a different painting, as a new download or a copy from another mirror would.
    (mirror / GOOD).write_bytes(jpeg((30, 30, 200)))  # blue
    stat = (mirror / GOOD).stat()
    os.utime(mirror / GOOD, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))  # coarse clocks: a later mtime
    again = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=mirror)

    assert mean_colour(again.image_files[index])[2] > 150, "the old image was served from the cache"
    assert not first.image_files[index].exists(), "the old version's prepared copy is left behind"
    images.verify_image(again.image_files[index].read_bytes())


def test_an_unchanged_mirror_is_not_prepared_again(dummy_data, tmp_path, monkeypatch):
    first = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=dummy_data)

    real_prepare, prepared = images.prepare_image, []

    def counting_prepare(data):
        result = real_prepare(data)  # the corrupt images (never cached) are tried again, and fail again
        prepared.append(data)
        return result

    monkeypatch.setattr(images, "prepare_image", counting_prepare)
    again = plan_build(protocol="artist", work_dir=tmp_path / "work", manual_dir=dummy_data)
    assert prepared == [], f"{len(prepared)} unchanged image(s) prepared again"
    assert again.image_files == first.image_files and again.summary["images"] == first.summary["images"]


# --- 3. redirects keep scheme, host and port ---------------------------------------------------------------------


def test_a_redirect_to_another_port_of_the_same_host_is_refused(wga_server, dummy_data, tmp_path):
    with FaultyWgaServer(dummy_data) as elsewhere:  # a second service on the same host, serving the same files
        wga_server.faults[GOOD] = [("redirect", f"{elsewhere.base_url}/{OTHER}")] * 3
        result = download.mirror_images([GOOD], tmp_path, fast_config(wga_server.base_url))
        assert elsewhere.hits[OTHER] == 0, "the redirect was followed to another port"
    assert result.status[GOOD] == download.FAILED and result.reasons[GOOD] == "redirect refused"
    assert "the same scheme, host and port" in result.errors[GOOD] and wga_server.hits[GOOD] == 1


@pytest.mark.parametrize(
    "first, location, followed",
    [
        ("https://www.wga.hu/art/a.jpg", "https://www.wga.hu:443/art/b.jpg", True),  # the default port, spelt out
        ("https://www.wga.hu/art/a.jpg", "/art/b.jpg", True),
        ("http://www.wga.hu/art/a.jpg", "https://www.wga.hu/art/b.jpg", True),  # the same site, encrypted
        ("https://www.wga.hu/art/a.jpg", "https://www.wga.hu:8443/art/b.jpg", False),
        ("https://www.wga.hu/art/a.jpg", "http://www.wga.hu/art/b.jpg", False),  # downgraded
        ("http://127.0.0.1:8000/art/a.jpg", "http://127.0.0.1:8001/art/b.jpg", False),
        ("http://127.0.0.1:8000/art/a.jpg", "https://127.0.0.1:8000/art/b.jpg", False),
        ("https://www.wga.hu/art/a.jpg", "https://www.wga.hu:99999/art/b.jpg", False),  # not a port
    ],
)
def test_redirect_targets(first, location, followed):
    from urllib.parse import urlsplit

    from artnet.data.wga.http_client import DownloadError

    if followed:
        assert _redirect_target(urlsplit(first), first, location).endswith("/art/b.jpg")
    else:
        with pytest.raises(DownloadError, match="refused"):
            _redirect_target(urlsplit(first), first, location)


# --- 5. no network and no mirror -------------------------------------------------------------------------------------

# What the old retry loop would take at least, with these settings: 5 s x (1 + 2 + 4 + 8) x 0.5 (the least jitter).
SLOW_RETRIES = dict(retries=4, backoff=5.0, timeout=5.0)
GENEROUS_SECONDS = 30


def assert_names_the_offline_route(error: BaseException) -> None:
    message = str(error)
    assert "\n" not in message  # one line: the last of the traceback `tfds build` prints
    for route in ("--manual_dir DIR", f"{MANUAL_DIR_ENV}=DIR", "WGA_MANUAL_DIR=DIR", "cannot reach"):
        assert route in message, f"{route!r} not in {message!r}"
    assert traceback.format_exception(error)[-1].strip().endswith(message)
    assert error.__suppress_context__ and error.__cause__ is None  # no urllib3 traceback printed above it


@pytest.mark.parametrize("where", ["an unresolvable host", "a closed port"])
def test_an_unreachable_server_fails_fast_naming_the_offline_route(where, free_port, tmp_path):
    base_url = "http://wga.invalid" if where == "an unresolvable host" else f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as caught:
        plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=fast_config(base_url, **SLOW_RETRIES))
    assert time.monotonic() - started < GENEROUS_SECONDS
    assert_names_the_offline_route(caught.value)
    why = "its name does not resolve" if where == "an unresolvable host" else "the connection was refused"
    assert why in str(caught.value)


def test_a_server_gone_after_the_catalogue_stops_the_image_download_at_once(dummy_data, free_port, tmp_path):
    with FaultyWgaServer(dummy_data) as server:
        plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=fast_config(server.base_url))
    mirror = tmp_path / "work" / "mirror"
    kept = {p for p in mirror.rglob("*.jpg")}
    for path in sorted(kept)[::2]:
        path.unlink()  # so that the rebuild has images to ask for
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as caught:
        config = fast_config(f"http://127.0.0.1:{free_port()}", **SLOW_RETRIES)
        plan_build(protocol="artist", work_dir=tmp_path / "work", download_config=config)
    assert time.monotonic() - started < GENEROUS_SECONDS
    assert_names_the_offline_route(caught.value)
    assert f"those already in {mirror} are kept" in str(caught.value)
    assert {p for p in mirror.rglob("*.jpg")} == set(sorted(kept)[1::2])


def test_the_tfds_builder_ends_on_the_offline_route(free_port, tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from datasets.wga import wga_dataset_builder

    monkeypatch.delenv(MANUAL_DIR_ENV, raising=False)
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    monkeypatch.setenv("ARTNET_WGA_BASE_URL", f"http://127.0.0.1:{free_port()}")
    builder = wga_dataset_builder.Builder(config="sample", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ServerUnreachableError) as caught:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    assert_names_the_offline_route(caught.value)
