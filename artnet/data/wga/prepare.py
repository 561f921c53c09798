"""From a mirror's images to the prepared-image cache the records are written from.

Each image is found inside the mirror (`locate_image`: a symlink that leads out of it is refused), decoded, checked
and shrunk to the size policy of `artnet.data.images` (`prepare_images`, on all cores), and kept in a cache folder
named by that policy and by the mirror, so a rebuild reuses every image that still decodes and a changed policy
never reads a stale one. A prepared image is named by the size and modification time of the source it was made
from (`prepared_path`), so a mirror image replaced by another one is prepared again, never served from the cache
of the old one. The build plan decides which rows to prepare; this module only knows images and files.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from artnet.data import images
from artnet.data.atomic_files import is_path_error, write_atomically
from artnet.data.wga.catalog import CatalogRow
from artnet.data.wga.download import FAILED, MISSING

_POLICY = f"s{images.MAX_SHORT_SIDE}-l{images.MAX_LONG_SIDE}-q{images.JPEG_QUALITY}"
_KEY_CHARS = 12  # hex digits of `source_key` in a prepared image's name


def cache_dir_for(work_dir: Path, source_dir: Path) -> Path:
    """The prepared-image folder of one mirror under one size policy: a new policy or mirror starts afresh."""
    return Path(work_dir) / f"prepared-{_POLICY}" / hashlib.sha1(str(source_dir.resolve()).encode()).hexdigest()[:10]


def locate_image(source_dir: Path, path: str) -> tuple[str | None, str, str]:
    """(None, "", "") when `source_dir/path` is a file inside `source_dir` once symlinks are resolved; else
    (status, reason, message): a symlink out of the mirror is refused, so a mirror admits only its own images."""
    root = source_dir.resolve()
    try:
        file = (root / path).resolve()
        if not file.is_relative_to(root):
            return FAILED, "outside the mirror", f"{source_dir / path} leads outside the mirror, to {file}: refused"
        return (None, "", "") if file.is_file() else (MISSING, "absent", "")
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        return FAILED, "unreadable", f"cannot look up {source_dir / path}: {error}"


def source_key(status: os.stat_result) -> str:
    """What names a source image's version in the cache: its size and modification time (ns), hashed.

    A replaced file (a new download, a copy from another mirror, an edit) changes one or the other; reading every
    source image to hash its bytes would cost a full read of the mirror on each rebuild.
    """
    return hashlib.sha1(f"{status.st_size}:{status.st_mtime_ns}".encode()).hexdigest()[:_KEY_CHARS]


def prepared_path(cache_dir: Path, image_path: str, key: str) -> Path:
    """`art/a/x/allegory.jpg` of the source version `key` -> `<cache_dir>/art/a/x/allegory.<key>.jpg`."""
    relative = Path(image_path)
    return Path(cache_dir) / relative.parent / f"{relative.stem}.{key}.jpg"


def _read_source(file: Path) -> tuple[str, bytes]:
    """(source_key, bytes) of a mirror image, both from one open file: what is keyed is what was read."""
    with open(file, "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise images.ImageError("not a regular file")
        if status.st_size > images.MAX_BYTES:
            raise images.ImageError(f"file too large: {status.st_size:,} bytes > {images.MAX_BYTES:,}")
        return source_key(status), stream.read(images.MAX_BYTES + 1)


def _forget_other_versions(target: Path, cache_dir: Path, image_path: str) -> None:
    """Delete the prepared copies of `image_path` other than `target`: older versions of its source, and the
    unkeyed `<cache_dir>/<image path>` that artnet 0.1 wrote. Best effort: a copy left behind is never read."""
    stem = Path(image_path).stem
    version = re.compile(re.escape(stem) + rf"\.[0-9a-f]{{{_KEY_CHARS}}}\.jpg")
    try:
        others = [p for p in target.parent.iterdir() if p != target and version.fullmatch(p.name)]
        for other in [*others, Path(cache_dir) / image_path]:
            other.unlink(missing_ok=True)
    except OSError:
        pass


def _prepare_one(row: CatalogRow, source_dir: Path, cache_dir: Path) -> tuple[CatalogRow, Path | None, str, str]:
    """(row, the prepared image, "", "") once it is in `cache_dir`, else (row, None, message, reason)."""
    outcome, reason, message = locate_image(source_dir, row.image_path)
    if outcome:
        return row, None, message or f"{source_dir / row.image_path} vanished during the build", reason
    source = source_dir / row.image_path
    try:
        # The cached copy of this version of the source, used only if it still decodes: a file cut short by a
        # crash is prepared again, and so is a source replaced since (another size or modification time).
        cached = prepared_path(cache_dir, row.image_path, source_key(source.stat()))
        images.verify_image(images.read_path(cached))
        return row, cached, "", ""
    except (OSError, images.ImageError):
        pass
    try:
        key, raw = _read_source(source)
        data, _ = images.prepare_image(raw)
    except images.ImageError as error:
        return row, None, str(error), "corrupt image"
    except OSError as error:
        return row, None, f"cannot read {source}: {error}", "unreadable"
    target = prepared_path(cache_dir, row.image_path, key)
    try:
        write_atomically(target, data)
    except OSError as error:
        if not is_path_error(error):
            raise  # a full disk stops the build
        return row, None, f"cannot store {target}: {error.strerror or error}", "cannot store"
    _forget_other_versions(target, cache_dir, row.image_path)
    return row, target, "", ""


def prepare_images(rows: list[CatalogRow], source_dir: Path, cache_dir: Path):
    """Decode, check and shrink images on all cores (PIL releases the GIL while it decodes).

    A Ctrl-C (or any error) in the consumer stops at once: the images not yet started are cancelled instead of
    being decoded first; those written are complete (atomic renames) and a rebuild reuses them.
    """
    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    try:
        results = pool.map(lambda row: _prepare_one(row, source_dir, cache_dir), rows)
        yield from tqdm(results, total=len(rows), desc="checking images", unit="img")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
