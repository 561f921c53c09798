"""Counts of a built `wga` config or a labelled folder: split x head x class (paintings and painters), unknowns
included, and authors per split.

These are the 2020 report's tables 1 and 2, made from the dataset actually built rather than from
folders counted by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from artnet import labels

UNKNOWN_NAME = "(unknown)"


def count_examples(examples, splits: list[str]) -> dict:
    """`examples[split]` yields dicts with the three label indices and `author`."""
    counts = {head: {split: Counter() for split in splits} for head in labels.HEADS}
    painters = {head: {split: {} for split in splits} for head in labels.HEADS}
    authors: dict[str, set] = {split: set() for split in splits}
    sizes: dict[str, int] = {}
    for split in splits:
        n = 0
        for example in examples[split]:
            n += 1
            authors[split].add(example["author"])
            for head in labels.HEADS:
                name = labels.label_name(head, int(example[head])) or UNKNOWN_NAME
                counts[head][split][name] += 1
                painters[head][split].setdefault(name, set()).add(example["author"])
        sizes[split] = n
    return {
        "splits": sizes,
        "authors": {split: len(names) for split, names in authors.items()},
        "authors_shared_between_splits": len(
            set.union(*[authors[a] & authors[b] for a in splits for b in splits if a < b] or [set()])
        ),
        "heads": {
            head: {
                name: {split: counts[head][split][name] for split in splits}
                for name in (*labels.VOCABULARIES[head], UNKNOWN_NAME)
            }
            for head in labels.HEADS
        },
        # Painters per class and split: a class without training painters is one no model can learn.
        "painters": {
            head: {
                name: {split: len(painters[head][split].get(name, ())) for split in splits}
                for name in (*labels.VOCABULARIES[head], UNKNOWN_NAME)
            }
            for head in labels.HEADS
        },
    }


def to_markdown(stats: dict, title: str) -> str:
    splits = list(stats["splits"])
    lines = [f"# {title}", "", "| split | examples | authors |", "| --- | ---: | ---: |"]
    lines += [f"| {s} | {stats['splits'][s]} | {stats['authors'][s]} |" for s in splits]
    lines += ["", f"Authors in more than one split: {stats['authors_shared_between_splits']}"]
    for head, table in stats["heads"].items():
        painters = stats.get("painters", {}).get(head)
        lines += ["", f"## {head}", ""]
        header = "| class | " + " | ".join(splits) + " | total |"
        if painters:
            header += " " + " | ".join(f"painters {s}" for s in splits) + " |"
        lines += [header, "| --- |" + " ---: |" * (len(splits) + 1 + (len(splits) if painters else 0))]
        for name, row in table.items():
            values = [row[s] for s in splits]
            line = f"| {name} | " + " | ".join(map(str, values)) + f" | {sum(values)} |"
            if painters:
                line += " " + " | ".join(str(painters[name][s]) for s in splits) + " |"
            lines.append(line)
    return "\n".join(lines) + "\n"


def plot_statistics(stats: dict, path: Path, title: str) -> None:
    """One bar chart per head: examples per class, a bar per split (unknowns last)."""
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

    splits = list(stats["splits"])
    figure = Figure(figsize=(15, 4.5), constrained_layout=True)
    for axis, (head, table) in zip(figure.subplots(1, len(stats["heads"])), stats["heads"].items(), strict=True):
        names = list(table)
        width = 0.8 / max(1, len(splits))
        for offset, split in enumerate(splits):
            positions = [i + offset * width for i in range(len(names))]
            axis.bar(positions, [table[name][split] for name in names], width, label=split)
        axis.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(names))], names, rotation=60, ha="right")
        axis.set_title(head)
        axis.set_ylabel("paintings")
    figure.axes[0].legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def folder_statistics(
    folder: str | Path, out_dir: str | Path | None = None, split_by: str = "author"
) -> tuple[dict, Path]:
    """Count a labelled folder as training splits it (group-stratified by `split_by`) and save the tables."""
    # Here, not at the top: sources imports TensorFlow, and counting a built dataset's labels should not wait for it.
    from artnet.data.sources import SPLITS, folder_source

    def examples(split):
        source = folder_source(folder, split=split, split_by=split_by)
        for index, item in enumerate(source.meta):
            yield {**{head: source.labels[head][index] for head in labels.HEADS}, "author": item.get(split_by, "")}

    stats = count_examples({split: examples(split) for split in SPLITS}, list(SPLITS))
    stats["folder"] = str(folder)
    out = Path(out_dir) if out_dir else Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "statistics.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    (out / "statistics.md").write_text(to_markdown(stats, f"{folder} (split by {split_by})"))
    plot_statistics(stats, out / "statistics.png", f"{folder}: images per class and split")
    return stats, out


def wga_statistics(config: str, data_dir: str | Path, out_dir: str | Path | None = None) -> tuple[dict, Path]:
    """Count a built `wga/<config>` and save `statistics.json` and `.md` (default: beside its records)."""
    import tensorflow as tf  # heavy: imported by the one function that reads TFRecords
    import tensorflow_datasets as tfds

    from artnet.data.sources import built_wga_builder

    builder = built_wga_builder(config, data_dir)
    splits = [s for s in ("train", "validation", "test") if s in builder.info.splits]
    keep = (*labels.HEADS, "author")

    def examples(split):
        dataset = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        dataset = dataset.map(lambda ex: {key: ex[key] for key in keep}, num_parallel_calls=tf.data.AUTOTUNE)
        for example in dataset.as_numpy_iterator():
            example["author"] = example["author"].decode("utf-8")
            yield example

    stats = count_examples({split: examples(split) for split in splits}, splits)
    stats["config"] = config
    stats["version"] = str(builder.info.version)
    out = Path(out_dir) if out_dir else Path(builder.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "statistics.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    (out / "statistics.md").write_text(to_markdown(stats, f"wga/{config} {stats['version']}"))
    plot_statistics(stats, out / "statistics.png", f"wga/{config} {stats['version']}: paintings per class and split")
    return stats, out
