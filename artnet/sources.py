"""Where labelled images come from: a split of a built `wga` config, or a labelled folder.

A `Source` is encoded images (a tf.data stream of bytes, not yet decoded) plus one int label array per head
(-1 = unknown) and per-example metadata. A labelled folder is images + a CSV with `file,timeframe,school,type`
(blank = unknown: the format of WikiArt's sample).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.wga.splits import split_of_fraction, stable_fraction

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Source:
    """Encoded images and their labels, before any decoding."""

    name: str
    images: tf.data.Dataset  # scalar tf.string per example: encoded bytes
    labels: dict[str, np.ndarray]  # head -> int array, -1 = unknown
    meta: list[dict] = dataclasses.field(default_factory=list)  # author, title, url… when known

    def __len__(self) -> int:
        return len(next(iter(self.labels.values())))


def built_wga_builder(config: str, data_dir: str | Path):
    """The TFDS builder of a built `wga/<config>`, or FileNotFoundError saying how to build it."""
    import tensorflow_datasets as tfds

    message = (
        f"no built wga/{config} under {data_dir}: build it with "
        f"`tfds build datasets/wga --config {config} --data_dir {data_dir}`"
    )
    try:
        builder = tfds.builder(f"wga/{config}", data_dir=str(data_dir))
    except Exception as error:  # noqa: BLE001 (TFDS raises several types for "not built")
        raise FileNotFoundError(f"{message} ({error})") from error
    if not builder.is_prepared():
        raise FileNotFoundError(message)
    return builder


def wga_source(config: str, split: str, data_dir: str | Path) -> Source:
    """A split of a built `wga/<config>` (see `tfds build datasets/wga`)."""
    import tensorflow_datasets as tfds

    builder = built_wga_builder(config, data_dir)
    built = set(builder.info.splits)
    for name in (part.split("[")[0].strip() for part in split.split("+")):
        if name not in built:
            raise ValueError(
                f"wga/{config} under {data_dir} has no {name!r} split (it has {', '.join(sorted(built))}): its build "
                "found no paintings for that split; build from a larger mirror or the full download to fill it"
            )
    dataset = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False)
    meta_keys = ("author", "title", "date", "url", "catalog_index")
    label_rows = {head: [] for head in labels.HEADS}
    meta = []
    for example in dataset.map(lambda ex: {k: ex[k] for k in (*labels.HEADS, *meta_keys)}).as_numpy_iterator():
        for head in labels.HEADS:
            label_rows[head].append(int(example[head]))
        meta.append(
            {k: (v.decode("utf-8") if isinstance(v, bytes) else int(v)) for k, v in example.items() if k in meta_keys}
        )
    return Source(
        name=f"wga/{config}:{split}",
        images=dataset.map(lambda ex: ex["image"]),
        labels={head: np.asarray(values, dtype=np.int64) for head, values in label_rows.items()},
        meta=meta,
    )


def folder_source(
    folder: str | Path,
    csv: str | Path | None = None,
    split: str | None = None,
    split_by: str = "author",
) -> Source:
    """A labelled folder: `labels.csv` (or `csv`) with a `file` column and blank-for-unknown label columns.

    Files are looked up as `<folder>/<file>`, else `<folder>/images/<file>`; missing ones are skipped with a
    warning. With `split`, keep only that part of a deterministic 70/15/15 split by the hash of `split_by`
    (default: author, so no painter is in two splits), the same rule as the `wga` builder's `artist` protocol.
    """
    import pandas as pd

    folder = Path(folder)
    csv_path = Path(csv) if csv else folder / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"no label file {csv_path}: a labelled folder needs a CSV with a `file` column")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "file" not in table.columns:
        raise ValueError(f"{csv_path} has no `file` column (columns: {', '.join(table.columns)})")
    if split is not None:
        if split_by not in table.columns:
            raise ValueError(f"cannot split {csv_path} by {split_by!r}: no such column")
        keys = table[split_by].map(lambda key: " ".join(str(key).split()).casefold())
        table = table[[split_of_fraction(stable_fraction(k, f"folder-{split_by}")) == split for k in keys]]
    paths = [_find_image(folder, name) for name in table["file"]]
    found = np.asarray([path is not None for path in paths], dtype=bool)
    if not found.any():
        raise FileNotFoundError(f"none of the {len(paths)} files listed in {csv_path} exist under {folder}")
    if not found.all():
        missing = [name for name, ok in zip(table["file"], found, strict=True) if not ok]
        print(f"warning: {len(missing)} files listed in {csv_path} are missing and skipped (e.g. {missing[0]})")
        table, paths = table[found], [path for path in paths if path is not None]
    # Labels from the filtered table only: images and labels are zipped by position downstream.
    head_labels = {
        head: np.asarray([labels.label_index(head, v) for v in table.get(head, [""] * len(table))], dtype=np.int64)
        for head in labels.HEADS
    }
    meta_columns = [c for c in ("author", "title", "year", "file") if c in table.columns]
    meta = table[meta_columns].to_dict("records")
    images = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string)).map(
        tf.io.read_file, num_parallel_calls=AUTOTUNE
    )
    name = f"{folder}" + (f":{split}" if split else "")
    return Source(name=name, images=images, labels=head_labels, meta=meta)


def _find_image(folder: Path, name: str) -> str | None:
    for candidate in (folder / name, folder / "images" / name):
        if candidate.is_file():
            return str(candidate)
    return None
