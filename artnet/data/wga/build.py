"""Everything the `wga` TFDS builder does before it writes records, as plain testable Python.

catalogue -> usable paintings -> (sample selection) -> images from a mirror (manual or downloaded)
-> images checked and shrunk into a cache -> splits -> a summary of what was found and what was not.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from artnet import labels
from artnet.data import images
from artnet.data.wga.catalog import (
    CatalogError,
    CatalogRow,
    UnsafePathError,
    check_image_path,
    parse_catalog,
    path_clashes,
    read_catalog_bytes,
    usable_paintings,
)
from artnet.data.wga.download import (
    CATALOG_URL_PATH,
    CORRUPT,
    FAILED,
    FOUND,
    MISSING,
    DownloadConfig,
    fetch_catalog,
    is_path_error,
    mirror_images,
    remove_stale_parts,
    write_atomically,
)
from artnet.data.wga.splits import SPLITS, assign_splits, select_sample, split_of

MANUAL_DIR_ENV = "ARTNET_WGA_MANUAL_DIR"
WORK_DIR_ENV = "ARTNET_WGA_WORK_DIR"  # mirror + prepared images; default <download_dir>/wga
# Accept a catalogue other than the one checksums.tsv pins: its sha256 (that export only), or "any" (no check).
CATALOG_SHA256_ENV = "ARTNET_WGA_CATALOG_SHA256"
_POLICY = f"s{images.MAX_SHORT_SIDE}-l{images.MAX_LONG_SIDE}-q{images.JPEG_QUALITY}"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass
class BuildPlan:
    """The rows of each split whose image is ready, where that image is, and the summary."""

    splits: dict[str, list[CatalogRow]]
    image_files: dict[int, Path]  # catalog_index -> prepared JPEG
    summary: dict


@dataclasses.dataclass(frozen=True)
class CatalogChecksum:
    """One line of the builder's checksums.tsv (TFDS's format): a catalogue file, its size and sha256."""

    url: str
    size: int
    sha256: str
    filename: str


class CatalogMismatchError(CatalogError):
    """The catalogue found is not the export the build is pinned to; the message says how to accept it."""


def read_checksums(path: str | os.PathLike) -> dict[str, CatalogChecksum]:
    """`checksums.tsv` as {filename: entry}: tab-separated url, size, sha256, filename; `#` comments allowed."""
    entries = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not fields[1].isdigit() or not _SHA256.fullmatch(fields[2]):
            raise ValueError(f"{path} line {number}: expected url<TAB>size<TAB>sha256<TAB>filename, got {line!r}")
        url, size, sha256, filename = fields
        entries[filename] = CatalogChecksum(url=url, size=int(size), sha256=sha256, filename=filename)
    return entries


def catalog_file_in(directory: Path) -> Path:
    """The file a mirror's catalogue is read from: `data_txt.zip` when present, else `catalog.csv`.

    The same order as `read_catalog_bytes`, so the file whose sha256 is checked is the file that is parsed.
    """
    zipped = Path(directory) / "data_txt.zip"
    return zipped if zipped.is_file() else Path(directory) / "catalog.csv"


def verify_catalog(
    catalog_file: Path,
    *,
    checksums_file: str | os.PathLike,
    origin: str,
    data_rows: int | None = None,
    accept: str | None = None,
) -> str:
    """The sha256 of `catalog_file` if it is the pinned export, else `CatalogMismatchError`.

    What is hashed is the file as found: wga.hu's `data_txt.zip` itself when the catalogue came zipped (downloaded,
    or a mirror holding it), else the bare `catalog.csv`; each is compared with the checksums.tsv entry of that
    name (the `catalog.csv` entry is the member inside the pinned zip, so an unzipped copy of the same export
    passes too). `accept` is the value of $ARTNET_WGA_CATALOG_SHA256: a sha256 pins that export instead of
    checksums.tsv's, `any` skips the check.
    """
    data = Path(catalog_file).read_bytes()
    found = hashlib.sha256(data).hexdigest()
    accept = (accept or "").strip().lower()
    if accept == "any":
        return found
    if accept and not _SHA256.fullmatch(accept):
        raise ValueError(
            f"{CATALOG_SHA256_ENV}={accept!r} is neither a sha256 (64 hex digits) nor 'any'; set it to the sha256 "
            "the build error printed for the catalogue you mean to accept, or unset it"
        )
    if accept:
        if found == accept:
            return found
        expected = f"sha256 {accept}, set by ${CATALOG_SHA256_ENV}"
        advice = (
            f"set {CATALOG_SHA256_ENV}={found} to accept this one, or unset it to build the export "
            f"{checksums_file} pins"
        )
    else:
        entry = read_checksums(checksums_file).get(Path(catalog_file).name)
        if entry is not None and entry.sha256 == found:
            return found
        expected = (
            f"{entry.filename} of {entry.size:,} bytes, sha256 {entry.sha256} ({entry.url}), as {checksums_file} pins"
            if entry is not None
            else f"an entry named {Path(catalog_file).name} in {checksums_file}, which has none"
        )
        advice = (
            f"to build from this catalogue on purpose, set {CATALOG_SHA256_ENV}={found} "
            f"(or {CATALOG_SHA256_ENV}=any to skip this check)"
        )
    rows = f", {data_rows:,} data rows" if data_rows is not None else ""
    raise CatalogMismatchError(
        "the WGA catalogue found is not the export this build is pinned to, so it stops before reading any image.\n"
        f"  found:    {origin}: {len(data):,} bytes, sha256 {found}{rows}\n"
        f"  expected: {expected}\n"
        "wga.hu may have published a newer export, or the mirror holds another or a hand-edited catalogue: "
        f"{advice}. Paintings of the pinned export keep their splits in a newer one (hash splits), but the counts "
        "quoted in datasets/wga/README.md will differ."
    )


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

    catalog_file = catalog_file_in(source_dir)
    rows, report = parse_catalog(read_catalog_bytes(catalog_file))
    if checksums_file is not None:
        origin = (
            f"{catalog_file}, downloaded from {download_config.base_url}{CATALOG_URL_PATH} (a copy kept from an "
            "earlier build is reused: delete it to fetch wga.hu's current one)"
            if mode == "download"
            else f"{catalog_file} (in the manual dir)"
        )
        catalog_sha256 = verify_catalog(
            catalog_file,
            checksums_file=checksums_file,
            origin=origin,
            data_rows=report.data_rows,
            accept=os.environ.get(CATALOG_SHA256_ENV),
        )
    else:
        catalog_sha256 = hashlib.sha256(catalog_file.read_bytes()).hexdigest()
    paintings = usable_paintings(rows)
    # Paths no mirror can hold are refused up front, over the whole catalogue (not only the sample), so the same
    # catalogue always refuses the same rows: each is counted as failed with its reason, and the build goes on.
    status: dict[str, str] = {}
    errors: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for path, (reason, message) in path_problems(row.image_path for row in paintings).items():
        status[path], reasons[path], errors[path] = FAILED, reason, message
    if sample_per_cell:
        exists = (
            (lambda row: row.image_path not in status and _locate(source_dir, row.image_path)[0] is None)
            if mode == "manual"
            else None
        )
        paintings = select_sample(paintings, per_cell=sample_per_cell, is_available=exists)

    download_figures = {}
    if mode == "download":
        wanted = [row.image_path for row in paintings if row.image_path not in status]
        result = mirror_images(wanted, source_dir, download_config)
        status.update(result.status)
        errors.update(result.errors)
        reasons.update(result.reasons)
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
            if row.image_path not in status:
                outcome, reason, message = _locate(source_dir, row.image_path)
                if outcome:
                    status[row.image_path], reasons[row.image_path] = outcome, reason
                if message:
                    errors[row.image_path] = message

    cache_dir = work_dir / f"prepared-{_POLICY}" / hashlib.sha1(str(source_dir.resolve()).encode()).hexdigest()[:10]
    remove_stale_parts(cache_dir)  # what a killed build was writing into the prepared-image cache
    to_prepare = [row for row in paintings if status.get(row.image_path, FOUND) == FOUND]
    image_files: dict[int, Path] = {}
    damaged: list[CatalogRow] = []
    for row, error, reason in _prepare_all(to_prepare, source_dir, cache_dir):
        if error:
            status[row.image_path], errors[row.image_path], reasons[row.image_path] = CORRUPT, error, reason
            damaged.append(row)
        else:
            status[row.image_path] = FOUND
            image_files[row.catalog_index] = cache_dir / row.image_path
    if mode == "download" and damaged:
        # Each of these decoded when it was fetched, so the copy on disk went bad since (a cut-short write, a
        # damaged disk): fetch it again, once, rather than mark it corrupt on every rebuild.
        paths = [row.image_path for row in damaged]
        again = mirror_images(paths, source_dir, download_config, description="re-fetching", refetch=paths)
        status.update(again.status)
        errors.update(again.errors)
        reasons.update(again.reasons)
        download_figures["refetched"] = again.attempted
        retry = [row for row in damaged if again.status.get(row.image_path) == FOUND]
        for row, error, reason in _prepare_all(retry, source_dir, cache_dir):
            if error:
                status[row.image_path], errors[row.image_path], reasons[row.image_path] = CORRUPT, error, reason
            else:
                status[row.image_path] = FOUND
                errors.pop(row.image_path, None)
                image_files[row.catalog_index] = cache_dir / row.image_path

    ready = [row for row in paintings if row.catalog_index in image_files]
    splits = assign_splits(ready, protocol)
    summary = _summarise(
        paintings, status, splits, protocol=protocol, mode=mode, source_dir=source_dir, report=report.as_dict()
    )
    # The sha256 of the file as found (data_txt.zip or catalog.csv): what verify_catalog compares, so it can be
    # given to $ARTNET_WGA_CATALOG_SHA256 as it stands.
    summary["catalogue"].update(file=catalog_file.name, sha256=catalog_sha256)
    summary.update(config=config_name, download=download_figures, seconds=round(time.monotonic() - started, 1))
    selected = {row.image_path for row in paintings}  # a sample config counts only the rows it chose
    failed = [path for path in selected if status.get(path) in (FAILED, CORRUPT)]
    summary["failure_reasons"] = dict(sorted(collections.Counter(reasons[path] for path in failed).items()))
    summary["errors"] = dict(list(sorted(errors.items()))[:50])
    _write_summary(work_dir / f"summary-{config_name or protocol}.json", summary)
    return BuildPlan(splits=splits, image_files=image_files, summary=summary)


def path_problems(paths) -> dict[str, tuple[str, str]]:
    """{path: (reason, message)} for image paths no mirror can hold: unsafe (`check_image_path`) or clashing."""
    paths, problems = set(paths), {}
    for path in paths:
        try:
            check_image_path(path)
        except UnsafePathError as error:
            problems[path] = ("unsafe path", str(error))
    for path, message in path_clashes(paths - problems.keys()).items():
        problems[path] = ("file/folder clash", message)
    return problems


def _locate(source_dir: Path, path: str) -> tuple[str | None, str, str]:
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
    outcome, reason, message = _locate(source_dir, row.image_path)
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
    if summary.get("failure_reasons"):
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary["failure_reasons"].items())
        lines.append(f"  not found because: {reasons} (examples under 'errors' in the summary file)")
    if summary.get("download"):
        figures = summary["download"]
        lines.append(
            f"  download: {figures['fetched']} fetched, {figures['already_present']} already present, "
            f"{figures['retries']} retries, {figures['images_per_second']} images/s"
        )
    return "\n".join(lines)
