"""Everything the `wga` TFDS builder does before it writes records, as plain testable Python.

catalogue -> usable paintings -> (sample selection) -> images from a mirror (manual or downloaded)
-> images checked and shrunk into a cache -> splits -> a summary of what was found and what was not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from artnet import labels
from artnet.wga import images
from artnet.wga.catalog import CatalogError, CatalogRow, parse_catalog, read_catalog_bytes, usable_paintings
from artnet.wga.download import (
    CORRUPT,
    FAILED,
    FOUND,
    MISSING,
    DownloadConfig,
    fetch_catalog,
    mirror_images,
    write_atomically,
)
from artnet.wga.splits import SPLITS, assign_splits, select_sample, split_of

MANUAL_DIR_ENV = "ARTNET_WGA_MANUAL_DIR"
WORK_DIR_ENV = "ARTNET_WGA_WORK_DIR"  # mirror + prepared images; default <download_dir>/wga
_POLICY = f"s{images.MAX_SHORT_SIDE}-l{images.MAX_LONG_SIDE}-q{images.JPEG_QUALITY}"


@dataclasses.dataclass
class BuildPlan:
    """The rows of each split whose image is ready, where that image is, and the summary."""

    splits: dict[str, list[CatalogRow]]
    image_files: dict[int, Path]  # catalog_index -> prepared JPEG
    summary: dict


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
) -> BuildPlan:
    """Gather and check every image a config needs; see the module docstring."""
    started = time.monotonic()
    work_dir = Path(work_dir)
    if has_catalog(manual_dir):
        mode, source_dir = "manual", Path(manual_dir)
    elif manual_dir:
        given_by = f"${MANUAL_DIR_ENV}" if Path(manual_dir) == manual_dir_from_env() else "--manual_dir"
        raise CatalogError(
            f"manual dir {manual_dir} (from {given_by}) holds no data_txt.zip or catalog.csv: put wga.hu's "
            f"catalogue there beside the art/ folder, or give no manual dir (unset {MANUAL_DIR_ENV}) to download "
            "from wga.hu"
        )
    else:
        download_config = download_config or DownloadConfig.from_env()
        mode, source_dir = "download", work_dir / "mirror"
        fetch_catalog(download_config, source_dir)

    catalog_bytes = read_catalog_bytes(source_dir)
    rows, report = parse_catalog(catalog_bytes)
    paintings = usable_paintings(rows)
    if sample_per_cell:
        exists = (lambda row: (source_dir / row.image_path).is_file()) if mode == "manual" else None
        paintings = select_sample(paintings, per_cell=sample_per_cell, is_available=exists)

    status: dict[str, str] = {}
    errors: dict[str, str] = {}
    download_figures = {}
    if mode == "download":
        result = mirror_images([row.image_path for row in paintings], source_dir, download_config)
        status, errors = dict(result.status), dict(result.errors)
        download_figures = {
            "requested": result.attempted,
            "fetched": result.fetched,
            "already_present": result.cached,
            "retries": result.retried,
            "seconds": round(result.seconds, 1),
            "images_per_second": round(result.fetched / result.seconds, 2) if result.seconds else None,
        }
    else:
        for row in paintings:
            if not (source_dir / row.image_path).is_file():
                status[row.image_path] = MISSING

    cache_dir = work_dir / f"prepared-{_POLICY}" / hashlib.sha1(str(source_dir.resolve()).encode()).hexdigest()[:10]
    to_prepare = [row for row in paintings if status.get(row.image_path, FOUND) == FOUND]
    image_files: dict[int, Path] = {}
    for row, error in _prepare_all(to_prepare, source_dir, cache_dir):
        if error:
            status[row.image_path], errors[row.image_path] = CORRUPT, error
        else:
            status[row.image_path] = FOUND
            image_files[row.catalog_index] = cache_dir / row.image_path

    ready = [row for row in paintings if row.catalog_index in image_files]
    splits = assign_splits(ready, protocol)
    summary = _summarise(
        paintings, status, splits, protocol=protocol, mode=mode, source_dir=source_dir, report=report.as_dict()
    )
    summary["catalogue"]["sha256"] = hashlib.sha256(catalog_bytes).hexdigest()
    summary.update(config=config_name, download=download_figures, seconds=round(time.monotonic() - started, 1))
    summary["errors"] = dict(list(sorted(errors.items()))[:50])
    _write_summary(work_dir / f"summary-{config_name or protocol}.json", summary)
    return BuildPlan(splits=splits, image_files=image_files, summary=summary)


def _prepare_one(row: CatalogRow, source_dir: Path, cache_dir: Path) -> tuple[CatalogRow, str]:
    target = cache_dir / row.image_path
    if target.is_file():
        return row, ""
    try:
        data, _ = images.prepare_image((source_dir / row.image_path).read_bytes())
    except images.ImageError as error:
        return row, str(error)
    except OSError as error:
        return row, f"cannot read {source_dir / row.image_path}: {error}"
    write_atomically(target, data)
    return row, ""


def _prepare_all(rows: list[CatalogRow], source_dir: Path, cache_dir: Path):
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


def _summarise(paintings, status, splits, *, protocol, mode, source_dir, report) -> dict:
    per_split = {name: {FOUND: 0, MISSING: 0, FAILED: 0, CORRUPT: 0} for name in SPLITS}
    for row in paintings:
        per_split[split_of(row, protocol)][status.get(row.image_path, FOUND)] += 1
    known = {
        name: {head: sum(row.label_indices[head] != labels.UNKNOWN for row in rows) for head in labels.HEADS}
        for name, rows in splits.items()
    }
    return {
        "mode": mode,
        "source": str(source_dir),
        "protocol": protocol,
        "catalogue": report,
        "paintings_selected": len(paintings),
        "images": per_split,
        "examples": {name: len(rows) for name, rows in splits.items()},
        "examples_all_three_labels": sum(
            all(index != labels.UNKNOWN for index in row.label_indices.values())
            for rows in splits.values()
            for row in rows
        ),
        "known_labels": known,
        "authors": {name: len({row.author_key for row in rows}) for name, rows in splits.items()},
    }


def _write_summary(path: Path, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def format_summary(summary: dict) -> str:
    """A short human-readable account of a build, printed at the end of `_split_generators`."""
    lines = [
        f"wga[{summary.get('config') or summary['protocol']}] from {summary['mode']} source {summary['source']}",
        f"  catalogue: {summary['catalogue']['data_rows']} rows, "
        f"{summary['catalogue']['malformed_rows']} malformed (skipped), "
        f"{summary['paintings_selected']} paintings selected",
        "  split        found  missing  failed  corrupt  authors",
    ]
    for name in SPLITS:
        counts = summary["images"][name]
        lines.append(
            f"  {name:<11}{counts[FOUND]:>7}{counts[MISSING]:>9}{counts[FAILED]:>8}{counts[CORRUPT]:>9}"
            f"{summary['authors'][name]:>9}"
        )
    if summary.get("download"):
        figures = summary["download"]
        lines.append(
            f"  download: {figures['fetched']} fetched, {figures['already_present']} already present, "
            f"{figures['retries']} retries, {figures['images_per_second']} images/s"
        )
    return "\n".join(lines)
