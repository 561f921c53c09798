"""Where labelled images come from: a split of a built `wga` config, or a labelled folder.

A `Source` is encoded images (a tf.data stream of bytes, not yet decoded) plus one int label array per head
(-1 = unknown) and per-example metadata. A labelled folder is images + a CSV with `file,timeframe,school,type`
(blank = unknown: the format of WikiArt's sample).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.config import DataConfig, TrainConfig
from artnet.data.wga.dates import parse_date
from artnet.data.wga.splits import split_of_fraction, stable_fraction

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Source:
    """Encoded images and their labels, before any decoding."""

    name: str
    images: tf.data.Dataset  # scalar tf.string per example: encoded bytes
    labels: dict[str, np.ndarray]  # head -> int array, -1 = unknown
    meta: list[dict] = dataclasses.field(default_factory=list)  # author, title, url… when known
    # A subset remembers the source it was taken from and which of its examples it kept, so that the feature
    # cache of the whole serves every subset (the nested training fractions of a grid extract nothing new).
    origin: tuple[Source, np.ndarray] | None = dataclasses.field(default=None, repr=False, compare=False)
    digest: str | None = dataclasses.field(default=None, repr=False, compare=False)  # memo of features.data_digest

    def __len__(self) -> int:
        return len(next(iter(self.labels.values())))

    @property
    def years(self) -> np.ndarray:
        """Each example's year (the `year` of its meta: a wga best estimate, a folder's `year` column), -1 unknown."""
        metas = self.meta or [{} for _ in range(len(self))]
        return np.asarray([_year_or_unknown(item.get("year")) for item in metas], dtype=np.int64)

    @property
    def painters(self) -> np.ndarray:
        """Each example's painter (its meta's `author`, whitespace and case normalised), "" where unknown: the
        unit that a painter-disjoint split keeps apart, and that honest intervals resample
        (`artnet.evaluation.metrics`)."""
        metas = self.meta or [{} for _ in range(len(self))]
        return np.asarray([painter_key(item.get("author")) for item in metas], dtype=str)


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
    meta_keys = ("author", "title", "date", "year", "url", "catalog_index")
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
    stratify: bool = True,
) -> Source:
    """A labelled folder: `labels.csv` (or `csv`) with a `file` column and blank-for-unknown label columns.

    Files are looked up as `<folder>/<file>`, else `<folder>/images/<file>`; missing ones are skipped with a
    warning. A folder admits only its own files: a name that is absolute, holds a `..` segment or leads out of
    the folder once symlinks are resolved is refused, and refused rows are counted, reported with their reasons
    and skipped (they are never read, trained on or exported). With `split`, keep only that part of a
    deterministic 70/15/15 split of the groups of `split_by` (default: author, so no painter is in two splits):
    group-stratified (`stratified_group_splits`) so that every class with at least 3 painters has training
    painters, or, with `stratify=False`, by the hash of each group alone (the rule of the `wga` builder's `artist`
    protocol).
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
        keys = table[split_by].map(lambda key: " ".join(str(key).split()).casefold()).tolist()
        salt = f"folder-{split_by}"
        if stratify:
            all_labels = {head: _label_column(table, head) for head in labels.HEADS}
            of_group = stratified_group_splits(keys, all_labels, salt)
        else:
            of_group = {key: split_of_fraction(stable_fraction(key, salt)) for key in set(keys)}
        table = table[[of_group[key] == split for key in keys]]
    looked_up = [_find_image(folder, name) for name in table["file"]]
    refused = {name: reason for name, (_, reason) in zip(table["file"], looked_up, strict=True) if reason}
    if refused:
        reasons = Counter(refused.values())
        print(
            f"warning: {len(refused)} rows of {csv_path} refused, their files never read: "
            + ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
            + f" (e.g. {next(iter(refused))!r})"
        )
    paths = [path for path, _ in looked_up]
    found = np.asarray([path is not None for path in paths], dtype=bool)
    if not found.any():
        also = f" ({len(refused)} refused)" if refused else ""
        raise FileNotFoundError(f"none of the {len(paths)} files listed in {csv_path} exist under {folder}{also}")
    if not found.all():
        missing = [
            name for name, (path, reason) in zip(table["file"], looked_up, strict=True) if not path and not reason
        ]
        if missing:
            print(f"warning: {len(missing)} files listed in {csv_path} are missing and skipped (e.g. {missing[0]})")
        table, paths = table[found], [path for path in paths if path is not None]
    # Labels from the filtered table only: images and labels are zipped by position downstream.
    head_labels = {head: _label_column(table, head) for head in labels.HEADS}
    meta_columns = [c for c in ("author", "title", "year", "file") if c in table.columns]
    meta = table[meta_columns].to_dict("records")
    for item in meta:  # an optional `year` column: "1520", "c. 1520", "1505-10" -> an int; blank -> None
        year = parse_date(item["year"]).year if "year" in item else -1
        if year < 0:  # else WikiArt's file-name convention: "claude-monet_water-lilies-1916.jpg"
            year = year_from_file_name(item.get("file", ""))
        item["year"] = year if year >= 0 else None
    images = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string)).map(
        tf.io.read_file, num_parallel_calls=AUTOTUNE
    )
    name = f"{folder}" + (f":{split}" if split else "")
    return Source(name=name, images=images, labels=head_labels, meta=meta)


def painter_key(author) -> str:
    """An author as one painter: whitespace and case normalised ("" for a missing author)."""
    return " ".join(str(author or "").split()).casefold()


def _year_or_unknown(year) -> int:
    return int(year) if isinstance(year, int | np.integer) and year >= 0 else -1


def _label_column(table, head: str) -> np.ndarray:
    return np.asarray([labels.label_index(head, v) for v in table.get(head, [""] * len(table))], dtype=np.int64)


SPLITS = ("train", "validation", "test")
FRACTIONS = (0.70, 0.15, 0.15)
STRATUM_HEAD = "school"  # a painter's school is one label; their timeframes and types vary from work to work
MIN_GROUPS_TO_TRAIN = 3  # a class this many groups hold always has training groups


def stratified_group_splits(groups: list[str], head_labels: dict[str, np.ndarray], salt: str) -> dict[str, str]:
    """Each group (painter) -> train / validation / test, deterministically, no group in two splits.

    Groups are stratified by their most frequent known `STRATUM_HEAD` class, and each stratum is cut 70/15/15 in
    the order of the groups' hashes (a stratum of 3 or more groups gives each split at least one). Then any class
    of any head that at least `MIN_GROUPS_TO_TRAIN` groups hold but no training group does gets the first of
    them (by hash) moved to train. A pure hash split, by contrast, left German (3 painters in the WikiArt
    sample) without a single training image, so no model could ever answer German.
    """
    order = sorted(set(groups), key=lambda group: (stable_fraction(group, salt), group))
    members: dict[str, list[int]] = {group: [] for group in order}
    for index, group in enumerate(groups):
        members[group].append(index)

    def classes_of(group: str, head: str) -> np.ndarray:
        values = head_labels[head][members[group]]
        return values[values >= 0]

    strata: dict[int, list[str]] = {}
    for group in order:
        known = classes_of(group, STRATUM_HEAD)
        strata.setdefault(int(np.bincount(known).argmax()) if len(known) else -1, []).append(group)
    assignment: dict[str, str] = {}
    for stratum_groups in strata.values():
        n = len(stratum_groups)
        n_validation = max(1, round(FRACTIONS[1] * n)) if n >= 3 else 0
        n_test = max(1, round(FRACTIONS[2] * n)) if n >= 3 else (1 if n == 2 else 0)
        n_train = n - n_validation - n_test
        for position, group in enumerate(stratum_groups):
            assignment[group] = (
                "train" if position < n_train else "validation" if position < n_train + n_validation else "test"
            )
    for head in labels.HEADS:
        holders: dict[int, list[str]] = {}
        for group in order:
            for value in set(classes_of(group, head).tolist()):
                holders.setdefault(value, []).append(group)
        for holding in holders.values():
            if len(holding) >= MIN_GROUPS_TO_TRAIN and not any(assignment[g] == "train" for g in holding):
                assignment[holding[0]] = "train"
    return assignment


def subset(source: Source, keep: np.ndarray, name: str) -> Source:
    """The examples of `source` where `keep` (a boolean array) is true, in order."""
    keep = np.asarray(keep, dtype=bool)
    indices = np.flatnonzero(keep)
    if source.origin is not None:  # a subset of a subset: index the root, once
        root, root_indices = source.origin
        origin = (root, root_indices[indices])
    else:
        origin = (source, indices)
    mask = tf.constant(keep)
    selected = source.images.enumerate().filter(lambda index, _: mask[index]).map(lambda _, encoded: encoded)
    return Source(
        name=name,
        images=selected,
        labels={head: values[keep] for head, values in source.labels.items()},
        meta=[item for item, kept in zip(source.meta, keep, strict=True) if kept] if source.meta else [],
        origin=origin,
    )


def painter_fraction(source: Source, fraction: float, salt: str = "train-fraction") -> Source:
    """The examples of the painters whose hash falls below `fraction`: nested, so that the 10 % set lies inside
    the 25 % set and so on (learning curves over training painters). 1.0 returns `source` itself."""
    if fraction >= 1.0:
        return source
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if not source.meta or not all("author" in item for item in source.meta):
        raise ValueError(f"{source.name}: a painter fraction needs each example's author in its metadata")
    authors = [painter_key(item["author"]) for item in source.meta]
    keep = np.asarray([stable_fraction(author, salt) < fraction for author in authors])
    return subset(source, keep, f"{source.name}[{fraction:.0%} of painters]")


def concat_sources(parts: list[Source]) -> Source:
    """Several sources as one (e.g. a wga split plus the same split of extra labelled folders)."""
    if len(parts) == 1:
        return parts[0]
    images = parts[0].images
    for part in parts[1:]:
        images = images.concatenate(part.images)
    return Source(
        name=" + ".join(part.name for part in parts),
        images=images,
        labels={head: np.concatenate([part.labels[head] for part in parts]) for head in labels.HEADS},
        meta=[item for part in parts for item in (part.meta or [{} for _ in range(len(part))])],
    )


def load_sources(config: TrainConfig) -> dict[str, Source]:
    """Train / validation / test of the config's data: its main source plus the same split of each extra folder."""
    settings = config.data
    if settings.source not in ("wga", "folder"):
        raise ValueError(f"unknown data source {settings.source!r}: wga or folder")
    sources = {
        split: concat_sources([_main_source(settings, split), *_extra_sources(settings, split)]) for split in SPLITS
    }
    sources["train"] = painter_fraction(sources["train"], settings.train_fraction)
    return sources


def _main_source(settings: DataConfig, split: str) -> Source:
    if settings.source == "wga":
        return wga_source(settings.wga_config, split, settings.data_dir)
    return folder_source(
        settings.folder, settings.csv or None, split=split, split_by=settings.split_by, stratify=settings.stratify
    )


def _extra_sources(settings: DataConfig, split: str) -> list[Source]:
    return [
        folder_source(folder, split=split, split_by=settings.split_by, stratify=settings.stratify)
        for folder in settings.extra_folders
    ]


_FILE_NAME_YEAR = re.compile(r"[-_]((?:13|14|15|16|17|18|19)\d\d)(?:-\d{1,4})?\.[A-Za-z]+$")


def year_from_file_name(name: str) -> int:
    """The year that ends a WikiArt-style file name (`..._the-milkmaid-1658.jpg`, `...-1505-1510.jpg` -> the
    first), or -1. Only 1300-1999, and only at the very end, so that titles with numbers stay unknown."""
    match = _FILE_NAME_YEAR.search(Path(str(name)).name)
    return int(match.group(1)) if match else -1


def _find_image(folder: Path, name: str) -> tuple[str | None, str | None]:
    """(path, None) for a listed file found inside `folder` (the path with symlinks resolved: what is checked is
    what is read); (None, None) for a missing one; (None, reason) for a name that is refused."""
    text = str(name)
    if not text.strip() or "\0" in text:
        return None, "empty or NUL file names"
    relative = PurePosixPath(text)  # `images//a.jpg`, `./a.jpg` -> `images/a.jpg`, `a.jpg`
    if relative.is_absolute() or PureWindowsPath(text).drive or text.startswith("\\"):
        return None, "absolute paths"
    if ".." in relative.parts:
        return None, "'..' paths"
    root = folder.resolve()
    for candidate in (folder / relative, folder / "images" / relative):
        try:
            resolved = candidate.resolve()
            if not resolved.is_relative_to(root):
                if candidate.exists() or candidate.is_symlink():
                    return None, "symlinks out of the folder"
                continue
            if resolved.is_file():
                return str(resolved), None
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            return None, "unreadable paths (a symlink loop?)"
    return None, None
