"""The account of a build: counts per split and status, labels known, authors, and why images were not found.

`summarise` gathers it as a dict (written beside the build as `summary-<config>.json` and kept in the dataset's
metadata), `format_summary` prints its short form at the end of a build. Apart from the build plan so that what a
build *reports* can be read, and changed, without reading how it gathers images.
"""

from __future__ import annotations

import json
from pathlib import Path

from artnet import labels
from artnet.data.wga.download import CORRUPT, FAILED, FOUND, MISSING
from artnet.data.wga.splits import SPLITS, split_of


def summarise(paintings, status, splits, *, protocol, mode, source_dir, report) -> dict:
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


def write_summary(path: Path, summary: dict) -> None:
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
