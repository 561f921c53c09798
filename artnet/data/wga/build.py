"""Everything the `wga` TFDS builder does before it writes records, as plain testable Python.

catalogue -> usable paintings -> (sample selection) -> images from a mirror (manual or downloaded)
-> images checked and shrunk into a cache -> splits -> a summary of what was found and what was not.

This module is that sequence (`plan_build`, one named function per phase) and where its inputs come from (the
manual dir, the work dir). Each phase's own rules live in the module it names: `catalog`, `catalog_pin`,
`image_paths`, `download`, `prepare`, `splits` and `summary`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from artnet.data.atomic_files import remove_stale_parts
from artnet.data.wga.catalog import (
    CatalogError,
    CatalogRow,
    ParseReport,
    parse_catalog,
    read_catalog_bytes,
    usable_paintings,
)
from artnet.data.wga.catalog_pin import CATALOG_SHA256_ENV, verify_catalog
from artnet.data.wga.download import (
    CATALOG_URL_PATH,
    CORRUPT,
    FAILED,
    FOUND,
    MirrorResult,
    fetch_catalog,
    mirror_images,
)
from artnet.data.wga.http_client import DownloadConfig, DownloadError, ServerUnreachableError
from artnet.data.wga.image_paths import path_problems
from artnet.data.wga.prepare import cache_dir_for, locate_image, prepare_images
from artnet.data.wga.splits import assign_splits, select_sample
from artnet.data.wga.summary import summarise, write_summary

MANUAL_DIR_ENV = "ARTNET_WGA_MANUAL_DIR"
WORK_DIR_ENV = "ARTNET_WGA_WORK_DIR"  # mirror + prepared images; default <download_dir>/wga
# The end of every message that stops a download build: the way to build without wga.hu.
OFFLINE_ROUTE = (
    "To build without wga.hu, give a mirror folder holding data_txt.zip (or catalog.csv) and art/: "
    f"`tfds build datasets/wga --manual_dir DIR`, or set {MANUAL_DIR_ENV}=DIR, or run `make demo WGA_MANUAL_DIR=DIR` "
    "(see datasets/wga/README.md)."
)


@dataclasses.dataclass
class BuildPlan:
    """The rows of each split whose image is ready, where that image is, and the summary."""

    splits: dict[str, list[CatalogRow]]
    image_files: dict[int, Path]  # catalog_index -> prepared JPEG
    summary: dict


@dataclasses.dataclass
class _Outcomes:
    """Per image path: its status (found / missing / failed / corrupt), the full error message and the short
    reason the summary counts. One record that every phase writes to, so each image's fate is told one way."""

    status: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)

    def merge(self, result: MirrorResult) -> None:
        self.status.update(result.status)
        self.errors.update(result.errors)
        self.reasons.update(result.reasons)


def catalog_file_in(directory: Path) -> Path:
    """The file a mirror's catalogue is read from: `data_txt.zip` when present, else `catalog.csv`.

    The same order as `read_catalog_bytes`, so the file whose sha256 is checked is the file that is parsed.
    """
    zipped = Path(directory) / "data_txt.zip"
    return zipped if zipped.is_file() else Path(directory) / "catalog.csv"


def manual_dir_from_env() -> Path | None:
    value = os.environ.get(MANUAL_DIR_ENV)
    return Path(value) if value else None


def work_dir_for(download_dir: Path) -> Path:
    return Path(os.environ.get(WORK_DIR_ENV) or Path(download_dir) / "wga")


def has_catalog(directory: str | os.PathLike | None) -> bool:
    if not directory:
        return False
    directory = Path(directory)
    return (directory / "data_txt.zip").is_file() or (directory / "catalog.csv").is_file()


def plan_build(
    *,
    protocol: str,
    work_dir: Path,
    manual_dir: Path | None = None,
    sample_per_cell: int | None = None,
    download_config: DownloadConfig | None = None,
    config_name: str = "",
    checksums_file: str | os.PathLike | None = None,
) -> BuildPlan:
    """Gather and check every image a config needs; see the module docstring.

    `checksums_file` (the builder's checksums.tsv) pins the catalogue: one that does not match it (or
    $ARTNET_WGA_CATALOG_SHA256) is refused before any image is read; see `verify_catalog`. None: no check, for
    plain-Python callers over test mirrors.
    """
    started = time.monotonic()
    work_dir = Path(work_dir)
    mode, source_dir, download_config = _open_source(work_dir, manual_dir, download_config)
    catalog_file = catalog_file_in(source_dir)
    rows, report = parse_catalog(read_catalog_bytes(catalog_file))
    catalog_sha256 = _catalog_sha256(catalog_file, report, mode, download_config, checksums_file)
    paintings = usable_paintings(rows)
    # Paths no mirror can hold are refused up front, over the whole catalogue (not only the sample), so the same
    # catalogue always refuses the same rows: each is counted as failed with its reason, and the build goes on.
    outcomes = _Outcomes()
    for path, (reason, message) in path_problems(row.image_path for row in paintings).items():
        outcomes.status[path], outcomes.reasons[path], outcomes.errors[path] = FAILED, reason, message
    if sample_per_cell:
        paintings = select_sample(
            paintings, per_cell=sample_per_cell, is_available=_availability(mode, source_dir, outcomes.status)
        )

    download_figures = {}
    if mode == "download":
        download_figures = _download_images(paintings, source_dir, download_config, outcomes)
    else:
        _find_manual_images(paintings, source_dir, outcomes)

    cache_dir = cache_dir_for(work_dir, source_dir)
    remove_stale_parts(cache_dir)  # what a killed build was writing into the prepared-image cache
    image_files: dict[int, Path] = {}
    to_prepare = [row for row in paintings if outcomes.status.get(row.image_path, FOUND) == FOUND]
    damaged = _prepare(to_prepare, source_dir, cache_dir, outcomes, image_files)
    if mode == "download" and damaged:
        download_figures["refetched"] = _refetch(damaged, source_dir, cache_dir, download_config, outcomes, image_files)

    ready = [row for row in paintings if row.catalog_index in image_files]
    splits = assign_splits(ready, protocol)
    summary = summarise(
        paintings, outcomes.status, splits, protocol=protocol, mode=mode, source_dir=source_dir, report=report.as_dict()
    )
    # The sha256 of the file as found (data_txt.zip or catalog.csv): what verify_catalog compares, so it can be
    # given to $ARTNET_WGA_CATALOG_SHA256 as it stands.
    summary["catalogue"].update(file=catalog_file.name, sha256=catalog_sha256)
    summary.update(config=config_name, download=download_figures, seconds=round(time.monotonic() - started, 1))
    selected = {row.image_path for row in paintings}  # a sample config counts only the rows it chose
    failed = [path for path in selected if outcomes.status.get(path) in (FAILED, CORRUPT)]
    summary["failure_reasons"] = dict(sorted(collections.Counter(outcomes.reasons[path] for path in failed).items()))
    summary["errors"] = dict(list(sorted(outcomes.errors.items()))[:50])
    write_summary(work_dir / f"summary-{config_name or protocol}.json", summary)
    return BuildPlan(splits=splits, image_files=image_files, summary=summary)


def _open_source(
    work_dir: Path, manual_dir: Path | None, download_config: DownloadConfig | None
) -> tuple[str, Path, DownloadConfig | None]:
    """(mode, the mirror's folder, download config): a manual dir holding a catalogue, else a download into
    `work_dir/mirror` (its catalogue fetched now); a manual dir without one is an error, not a silent download."""
    if has_catalog(manual_dir):
        return "manual", Path(manual_dir), download_config
    if manual_dir:
        given_by = f"${MANUAL_DIR_ENV}" if Path(manual_dir) == manual_dir_from_env() else "--manual_dir"
        raise CatalogError(
            f"manual dir {manual_dir} (from {given_by}) holds no data_txt.zip or catalog.csv: put wga.hu's "
            f"catalogue there beside the art/ folder, or give no manual dir (unset {MANUAL_DIR_ENV}) to download "
            "from wga.hu"
        )
    download_config = download_config or DownloadConfig.from_env()
    source_dir = work_dir / "mirror"
    try:
        fetch_catalog(download_config, source_dir)
    except DownloadError as error:
        what = f"cannot download the WGA catalogue from {download_config.base_url}"
        raise _with_offline_route(error, what) from None
    return "download", source_dir, download_config


def _with_offline_route(error: DownloadError, what: str) -> DownloadError:
    """`error` told in one line that ends with the way to build offline, as the same kind of error.

    One line, because `tfds build` prints the exception last, under its traceback: that line is what a newcomer
    reads. The urllib3 traceback it came from is left out (`from None` at the raise): it says nothing more.
    """
    message = f"{what}: {error}. {OFFLINE_ROUTE}"
    if isinstance(error, ServerUnreachableError):
        return ServerUnreachableError(message)
    return DownloadError(message, retryable=error.retryable, status=error.status, kind=error.kind)


def _catalog_sha256(
    catalog_file: Path,
    report: ParseReport,
    mode: str,
    download_config: DownloadConfig | None,
    checksums_file: str | os.PathLike | None,
) -> str:
    """The sha256 of the catalogue file, once `verify_catalog` has found it pinned (when `checksums_file` is given)."""
    if checksums_file is None:
        return hashlib.sha256(catalog_file.read_bytes()).hexdigest()
    origin = (
        f"{catalog_file}, downloaded from {download_config.base_url}{CATALOG_URL_PATH} (a copy kept from an "
        "earlier build is reused: delete it to fetch wga.hu's current one)"
        if mode == "download"
        else f"{catalog_file} (in the manual dir)"
    )
    return verify_catalog(
        catalog_file,
        checksums_file=checksums_file,
        origin=origin,
        data_rows=report.data_rows,
        accept=os.environ.get(CATALOG_SHA256_ENV),
    )


def _availability(mode: str, source_dir: Path, refused: dict[str, str]) -> Callable[[CatalogRow], bool] | None:
    """What the sample may pick from: in a manual mirror, rows whose image is there (a download fetches what the
    sample picks, so there every row is available: None)."""
    if mode != "manual":
        return None
    return lambda row: row.image_path not in refused and locate_image(source_dir, row.image_path)[0] is None


def _download_images(
    paintings: list[CatalogRow], source_dir: Path, download_config: DownloadConfig, outcomes: _Outcomes
) -> dict:
    """Mirror the images of `paintings` not already refused; the download's figures for the summary."""
    wanted = [row.image_path for row in paintings if row.image_path not in outcomes.status]
    try:
        result = mirror_images(wanted, source_dir, download_config)
    except ServerUnreachableError as error:  # the catalogue came from an earlier build; wga.hu is gone since
        what = f"cannot download the images from {download_config.base_url} (those already in {source_dir} are kept)"
        raise _with_offline_route(error, what) from None
    outcomes.merge(result)
    return {
        "requested": result.attempted,
        "fetched": result.fetched,
        "already_present": result.cached,
        "retries": result.retried,
        "seconds": round(result.seconds, 1),
        "images_per_second": round(result.fetched / result.seconds, 2) if result.seconds else None,
    }


def _find_manual_images(paintings: list[CatalogRow], source_dir: Path, outcomes: _Outcomes) -> None:
    """Record which images of `paintings` a manual mirror lacks or refuses (those found stay unrecorded: found)."""
    for row in paintings:
        if row.image_path not in outcomes.status:
            outcome, reason, message = locate_image(source_dir, row.image_path)
            if outcome:
                outcomes.status[row.image_path], outcomes.reasons[row.image_path] = outcome, reason
            if message:
                outcomes.errors[row.image_path] = message


def _prepare(
    rows: list[CatalogRow],
    source_dir: Path,
    cache_dir: Path,
    outcomes: _Outcomes,
    image_files: dict[int, Path],
    *,
    forget_errors: bool = False,
) -> list[CatalogRow]:
    """Prepare `rows` into the cache, recording each in `image_files` or as corrupt; the rows that failed.

    `forget_errors`: an image prepared now drops the error an earlier attempt left (the re-fetch pass).
    """
    damaged: list[CatalogRow] = []
    for row, prepared, error, reason in prepare_images(rows, source_dir, cache_dir):
        path = row.image_path
        if prepared is None:
            outcomes.status[path], outcomes.errors[path], outcomes.reasons[path] = CORRUPT, error, reason
            damaged.append(row)
        else:
            outcomes.status[path] = FOUND
            if forget_errors:
                outcomes.errors.pop(path, None)
            image_files[row.catalog_index] = prepared
    return damaged


def _refetch(
    damaged: list[CatalogRow],
    source_dir: Path,
    cache_dir: Path,
    download_config: DownloadConfig,
    outcomes: _Outcomes,
    image_files: dict[int, Path],
) -> int:
    """Fetch the images that failed preparation again, once, and prepare those that came; how many were asked for.

    Each of these decoded when it was fetched, so the copy on disk went bad since (a cut-short write, a damaged
    disk): fetching it again beats marking it corrupt on every rebuild.
    """
    paths = [row.image_path for row in damaged]
    try:
        again = mirror_images(paths, source_dir, download_config, description="re-fetching", refetch=paths)
    except ServerUnreachableError as error:
        what = f"cannot fetch again the {len(paths)} damaged image(s) from {download_config.base_url}"
        raise _with_offline_route(error, what) from None
    outcomes.merge(again)
    retry = [row for row in damaged if again.status.get(row.image_path) == FOUND]
    _prepare(retry, source_dir, cache_dir, outcomes, image_files, forget_errors=True)
    return again.attempted
