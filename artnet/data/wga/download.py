"""Mirror wga.hu images concurrently, politely and resumably.

The builder downloads into a local mirror laid out exactly like `--manual_dir` (`art/…/*.jpg`), then
reads the mirror the same way in both modes. An image is written under its final name only after it
decoded completely (temp file + atomic rename), so a killed build leaves no half files and a rerun
skips everything already verified. 404s are recorded as missing (and remembered, so a rerun does not
ask again); timeouts, resets, truncated bodies, 429 and 5xx are retried with exponential backoff; a server that
cannot be reached at all (`ServerUnreachableError`) stops the loop at once.

This module is the mirror loop: what to fetch, in which threads, and what each image's outcome was. The HTTP
client it fetches with (retries, deadlines, caps) is `artnet.data.wga.http_client`; the atomic writes are
`artnet.data.atomic_files`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from artnet.data.atomic_files import is_path_error, remove_stale_parts, write_atomically
from artnet.data.images import ImageError, verify_image
from artnet.data.wga.catalog import check_member_size
from artnet.data.wga.http_client import DownloadConfig, DownloadError, Fetcher, ServerUnreachableError

CATALOG_URL_PATH = "/database/download/data_txt.zip"
MISSING_LOG = "missing.json"

# Statuses of one image, in the build summary.
FOUND, MISSING, FAILED, CORRUPT = "found", "missing", "failed", "corrupt"


@dataclasses.dataclass
class MirrorResult:
    """Status per relative image path, plus counts for the summary."""

    status: dict[str, str]
    errors: dict[str, str]
    reasons: dict[str, str]  # path -> short reason ("http 500", "too large", ...) of each image not found
    attempted: int  # paths requested from the server this run
    fetched: int  # of those, bodies received (stored, or refused as corrupt)
    cached: int
    retried: int
    seconds: float

    def counts(self) -> dict[str, int]:
        counts = {FOUND: 0, MISSING: 0, FAILED: 0, CORRUPT: 0}
        for status in self.status.values():
            counts[status] += 1
        return counts


def fetch_catalog(config: DownloadConfig, mirror_dir: Path) -> Path:
    """`data_txt.zip` in the mirror, downloaded unless a complete copy is already there."""
    target = mirror_dir / "data_txt.zip"
    if target.is_file() and target.stat().st_size > 0:
        return target

    def verify_zip(body: bytes) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                for member in archive.infolist():  # a zip bomb is refused (CatalogError) before it is inflated
                    check_member_size(member, config.base_url + CATALOG_URL_PATH)
                if archive.testzip() is not None:
                    raise ImageError("damaged catalogue zip")
        except zipfile.BadZipFile as error:
            raise ImageError(f"catalogue is not a zip: {error}") from error

    body = Fetcher(config).get(config.base_url + CATALOG_URL_PATH, verify=verify_zip)
    write_atomically(target, body)
    return target


def mirror_images(
    paths: Iterable[str],
    mirror_dir: Path,
    config: DownloadConfig,
    *,
    description: str = "wga images",
    refetch: Iterable[str] = (),
) -> MirrorResult:
    """Make `mirror_dir/<path>` exist and decode for every relative `art/…` path, as far as possible.

    `paths` must have passed `image_paths.check_image_path`. Those in `refetch` are fetched again even if present
    (images in the mirror that decoded once but failed preparation since: damaged on disk).
    """
    mirror_dir = Path(mirror_dir)
    started = time.monotonic()
    swept = remove_stale_parts(mirror_dir)
    if swept:
        print(f"removed {swept} partial file(s) left in {mirror_dir} by an interrupted build")
    missing_log = mirror_dir / MISSING_LOG
    known_missing = set(json.loads(missing_log.read_text())) if missing_log.is_file() else set()
    status, todo = _sort_out(paths, mirror_dir, known_missing, set(refetch))
    cached = len(status)
    errors: dict[str, str] = {}
    reasons: dict[str, str] = {}
    fetcher = Fetcher(config)
    if todo:
        _fetch_all(todo, mirror_dir, fetcher, config, description, status, errors, reasons)
    newly_missing = {path for path, outcome in status.items() if outcome == MISSING}
    if newly_missing - known_missing:
        mirror_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(missing_log, json.dumps(sorted(known_missing | newly_missing), indent=0).encode())
    return MirrorResult(
        status=status,
        errors=errors,
        reasons=reasons,
        attempted=len(todo),
        fetched=sum(status[path] in (FOUND, CORRUPT) for path in todo),
        cached=cached,
        retried=fetcher.retried,
        seconds=time.monotonic() - started,
    )


def _sort_out(
    paths: Iterable[str], mirror_dir: Path, known_missing: set[str], refetch: set[str]
) -> tuple[dict[str, str], list[str]]:
    """({path: status} of the images this run need not ask for, [paths to fetch]), unique and in order."""
    status: dict[str, str] = {}
    todo: list[str] = []
    for path in dict.fromkeys(paths):  # unique, in order
        if path in refetch:
            todo.append(path)
        elif (mirror_dir / path).is_file():
            status[path] = FOUND  # written only after it decoded: verified
        elif path in known_missing:
            status[path] = MISSING
        else:
            todo.append(path)
    return status, todo


def _fetch_all(
    todo: list[str],
    mirror_dir: Path,
    fetcher: Fetcher,
    config: DownloadConfig,
    description: str,
    status: dict[str, str],
    errors: dict[str, str],
    reasons: dict[str, str],
) -> None:
    """Fetch and store `todo` on `config.workers` threads, recording each image's outcome in the three dicts."""
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wga-fetch") as pool:
        futures = [pool.submit(_fetch_one, fetcher, config.base_url, mirror_dir, path) for path in todo]
        try:
            with tqdm(total=len(futures), desc=description, unit="img") as bar:
                for future in as_completed(futures):
                    path, outcome, message, reason = future.result()
                    status[path] = outcome
                    if message:
                        errors[path], reasons[path] = message, reason
                    bar.update()
                    bar.set_postfix(missing=sum(s == MISSING for s in status.values()), refresh=False)
        except BaseException:
            # A full disk, an unreachable server, Ctrl-C: stop now rather than after every queued download. What
            # was written is complete (atomic writes) and a rerun resumes from it.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _fetch_one(fetcher: Fetcher, base_url: str, mirror_dir: Path, path: str) -> tuple[str, str, str, str]:
    """(path, status, message, reason) of one image fetched and stored; an error that is not the path's raises."""
    try:
        body = fetcher.get(f"{base_url}/{path}", verify=verify_image)
    except ServerUnreachableError:
        raise  # not this image's fault: every other one would fail the same way, so the loop stops
    except DownloadError as error:
        return path, (MISSING if error.status in (404, 410) else FAILED), str(error), error.kind
    except ImageError as error:
        return path, CORRUPT, str(error), "corrupt image"
    try:
        write_atomically(mirror_dir / path, body)
    except OSError as error:
        if not is_path_error(error):
            raise
        return path, FAILED, f"cannot store {path}: {error.strerror or error}", "cannot store"
    return path, FOUND, "", ""
