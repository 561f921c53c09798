"""Prepare the data that `benchmarks/gpu_check.py` carries to a GPU machine: a painter-disjoint subset, <= 50 MiB.

    .venv/bin/python benchmarks/prepare_gpu_data.py                      # ../shared/wikiart-sample -> data/gpu_check
    .venv/bin/python benchmarks/prepare_gpu_data.py --source DIR --out DIR --max-mib 48

The source is a labelled folder in the WikiArt sample's format (`labels.csv` with `file,author,...,timeframe,school,
type`, blank = unknown; images at `<source>/<file>`). What is written, into an ignored folder (`data/` is never
committed: the images carry their sources' terms):

- `train.tfrecord`, `validation.tfrecord`: one record per painting, the record IS the original JPEG's bytes
  (not re-encoded, no protobuf around it), so `tf.data.TFRecordDataset(path)` yields encoded images directly and
  `read_records` below reads them without TensorFlow;
- `labels.csv`: `split,index,file,author,year,school,timeframe,type` (the source's strings, blank = unknown),
  `index` being the record's position in its split's file;
- `manifest.json`: the selection rule, counts, painters, bytes and the sha256 of every file.

Selection, deterministic (the same source gives byte-identical files):
1. the split is artnet's own painter split of a labelled folder (`stratified_group_splits` over every row of
   `labels.csv`, painters by `painter_key`, salt `folder-author`): the subset's validation painters are the
   validation painters of `folder_source(source, split="validation")`, so no painter is in two splits;
2. the test painters are left out (the GPU check never scores on test), and so are paintings with no known label;
3. the train + validation painters are taken round-robin, in the order of a hash of their names: each round adds
   every painter's next image (in the order of a hash of the file name) while the total stays under `--max-mib`.
   Painters with few images give all of them and the prolific ones are capped, which flattens the sample's skew
   (French, 1851-1900) a little; the split of painters is untouched.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "wikiart-sample"
DEFAULT_OUT = ROOT / "data" / "gpu_check"
LIMIT_MIB = 50.0  # what travels to the device machine beside the working tree (its limit is 64 MiB in all)
DEFAULT_MAX_MIB = 48.0  # the images' budget; labels.csv and manifest.json take well under the rest
SPLITS = ("train", "validation")
SPLIT_SALT = "folder-author"  # artnet.data.sources.folder_source's salt for split_by="author"
ORDER_SALT = "gpu-check"
RECORD_OVERHEAD = 16  # TFRecord framing per record: length (8), its CRC (4), the data's CRC (4)
COLUMNS = ("split", "index", "file", "author", "year", "school", "timeframe", "type")
FORMAT = 1


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _find_image(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / "images" / name):
        if candidate.is_file():
            return candidate
    return None


def select(source: Path, max_bytes: int) -> list[dict]:
    """The rows to keep, each with its `split` and `path`, in the order they are written (by split, then round)."""
    import numpy as np

    from artnet import labels
    from artnet.data.sources import painter_key, stratified_group_splits

    with open(source / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "file" not in rows[0] or "author" not in rows[0]:
        raise SystemExit(f"{source / 'labels.csv'}: needs `file` and `author` columns and at least one row")
    head_labels = {
        head: np.asarray([labels.label_index(head, row.get(head, "")) for row in rows], dtype=np.int64)
        for head in labels.HEADS
    }
    keys = [painter_key(row["author"]) for row in rows]
    of_painter = stratified_group_splits(keys, head_labels, SPLIT_SALT)

    by_painter: dict[str, list[dict]] = {}
    for position, (row, key) in enumerate(zip(rows, keys, strict=True)):
        split = of_painter[key]
        if split not in SPLITS or all(head_labels[head][position] < 0 for head in labels.HEADS):
            continue
        path = _find_image(source, row["file"])
        if path is None:
            continue
        by_painter.setdefault(key, []).append({**row, "split": split, "path": path, "bytes": path.stat().st_size})
    painters = sorted(by_painter, key=lambda key: (_hash(f"{ORDER_SALT}:{key}"), key))
    for key in painters:
        by_painter[key].sort(key=lambda row: (_hash(f"{ORDER_SALT}:{row['file']}"), row["file"]))

    chosen: list[dict] = []
    total = 0
    for round_number in range(max((len(items) for items in by_painter.values()), default=0)):
        for key in painters:
            items = by_painter[key]
            if round_number >= len(items):
                continue
            cost = items[round_number]["bytes"] + RECORD_OVERHEAD
            if total + cost > max_bytes:
                return _in_split_order(chosen)
            chosen.append(items[round_number])
            total += cost
    return _in_split_order(chosen)


def _in_split_order(rows: list[dict]) -> list[dict]:
    return [row for split in SPLITS for row in rows if row["split"] == split]


def prepare(source: Path, out: Path, max_mib: float = DEFAULT_MAX_MIB) -> dict:
    """Write the subset of `source` into `out` (replacing it) and return its manifest."""
    import tensorflow as tf

    source, out = Path(source).resolve(), Path(out).resolve()
    if not (source / "labels.csv").is_file():
        raise SystemExit(f"no {source / 'labels.csv'}: the source must be a labelled folder (the WikiArt sample)")
    if out == source or source in out.parents:
        raise SystemExit(f"refusing to write into the source folder {source} (it is read-only data)")
    if max_mib > LIMIT_MIB:
        raise SystemExit(f"--max-mib {max_mib} is over the {LIMIT_MIB:g} MiB that may travel")
    rows = select(source, int(max_mib * 2**20))
    if not rows:
        raise SystemExit(f"{source}: no train or validation painting with a known label and an image")

    scratch = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    table = []
    for split in SPLITS:
        with tf.io.TFRecordWriter(str(scratch / f"{split}.tfrecord")) as writer:
            for index, row in enumerate(item for item in rows if item["split"] == split):
                writer.write(row["path"].read_bytes())
                table.append({"split": split, "index": index, **{c: row.get(c, "") for c in COLUMNS[2:]}})
    with open(scratch / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)

    manifest = {
        "format": FORMAT,
        "source": source.name,
        "rule": (
            "artnet's painter split of a labelled folder (stratified_group_splits, salt folder-author); test painters "
            "and paintings with no known label left out; painters round-robin by hash until max_mib"
        ),
        "max_mib": max_mib,
        "splits": {},
        "files": {},
    }
    for split in SPLITS:
        members = [row for row in table if row["split"] == split]
        manifest["splits"][split] = {
            "images": len(members),
            "painters": len({row["author"] for row in members}),
            "known": {head: sum(1 for row in members if row[head].strip()) for head in ("school", "timeframe", "type")},
        }
    for path in sorted(scratch.iterdir()):
        manifest["files"][path.name] = {"bytes": path.stat().st_size, "sha256": _sha256_file(path)}
    manifest["data_mib"] = round(sum(item["bytes"] for item in manifest["files"].values()) / 2**20, 2)
    (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = folder_bytes(scratch)
    manifest["total_mib"] = round(total / 2**20, 2)
    if total > LIMIT_MIB * 2**20:  # the rule keeps the images under max_mib; this guards the whole folder
        shutil.rmtree(scratch)
        raise SystemExit(f"the prepared subset is {total / 2**20:.1f} MiB, over the {LIMIT_MIB:g} MiB limit")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(out)
    return manifest


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).iterdir() if path.is_file())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: str | Path) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file, without TensorFlow (CRCs are not checked): for a machine
    that has no TensorFlow (the lent GPU machines), e.g. to feed the same JPEGs to Keras on JAX."""
    with open(path, "rb") as handle:
        while header := handle.read(12):
            if len(header) < 12:
                raise ValueError(f"{path}: truncated record header")
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                raise ValueError(f"{path}: truncated record")
            yield data


def read_labels(folder: str | Path) -> dict[str, list[dict]]:
    """`labels.csv` of a prepared folder, per split, in record order."""
    with open(Path(folder) / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {split: sorted((r for r in rows if r["split"] == split), key=lambda r: int(r["index"])) for split in SPLITS}


def write_fake_folder(
    folder: str | Path,
    schools=("Dutch", "French", "Italian"),
    painters_per_school: int = 4,
    images_per_painter: int = 3,
    size: int = 48,
) -> Path:
    """A tiny labelled folder in the WikiArt sample's format (noise JPEGs), for `--smoke` and the tests."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    timeframes = ("1601-1650", "1651-1700", "1851-1900")
    types = ("portrait", "landscape", "genre")
    rows = []
    for s, school in enumerate(schools):
        for p in range(painters_per_school):
            author = f"PAINTER{s}{p}, Fake"
            for i in range(images_per_painter):
                name = f"images/fake_{s}_{p}_{i}.jpg"
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / name, quality=90)
                row = {"file": name, "author": author, "title": f"work {i}", "year": ""}
                row.update(timeframe=timeframes[(p + i) % 3], school=school, type=types[(s + i) % 3])
                if i == 1:  # unknown labels are blank, as in the sample
                    row["type"] = ""
                rows.append(row)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "author", "title", "year", "timeframe", "school", "type"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a labelled folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: %(default)s)")
    parser.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB, help="the images' byte budget")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    manifest = prepare(args.source, args.out, args.max_mib)
    for split, counts in manifest["splits"].items():
        known = ", ".join(f"{head} {n}" for head, n in counts["known"].items())
        print(f"{split}: {counts['images']} images of {counts['painters']} painters (known labels: {known})")
    print(f"wrote {args.out}: {manifest['total_mib']:.2f} MiB (limit {LIMIT_MIB:g} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
