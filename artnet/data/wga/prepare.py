"""From a mirror's images to the prepared-image cache the records are written from.

Each image is found inside the mirror (`locate_image`: a symlink that leads out of it is refused), decoded, checked
and shrunk to the size policy of `artnet.data.images` (`prepare_images`, on all cores), and kept in a cache folder
named by that policy and by the mirror, so a rebuild reuses every image that still decodes and a changed policy
never reads a stale one. The build plan decides which rows to prepare; this module only knows images and files.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from artnet.data import images
from artnet.data.wga.atomic_files import is_path_error, write_atomically
from artnet.data.wga.catalog import CatalogRow
from artnet.data.wga.download import FAILED, MISSING

_POLICY = f"s{images.MAX_SHORT_SIDE}-l{images.MAX_LONG_SIDE}-q{images.JPEG_QUALITY}"


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


def _prepare_one(row: CatalogRow, source_dir: Path, cache_dir: Path) -> tuple[CatalogRow, str, str]:
    """(row, "", "") once `cache_dir/<image path>` holds the prepared image, else (row, message, reason)."""
    target = cache_dir / row.image_path
    try:
        # A cached image is used only if it still decodes: a file cut short by a crash is prepared again.
        images.verify_image(target.read_bytes())
        return row, "", ""
    except (OSError, images.ImageError):
        pass
    outcome, reason, message = locate_image(source_dir, row.image_path)
    if outcome:
        return row, message or f"{source_dir / row.image_path} vanished during the build", reason
    try:
        data, _ = images.prepare_image((source_dir / row.image_path).read_bytes())
    except images.ImageError as error:
        return row, str(error), "corrupt image"
    except OSError as error:
        return row, f"cannot read {source_dir / row.image_path}: {error}", "unreadable"
    try:
        write_atomically(target, data)
    except OSError as error:
        if not is_path_error(error):
            raise  # a full disk stops the build
        return row, f"cannot store {target}: {error.strerror or error}", "cannot store"
    return row, "", ""


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
