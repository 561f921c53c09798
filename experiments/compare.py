"""Compare finished runs: per head and run, top-1 / top-3 / balanced accuracy with 95 % bootstrap intervals over
the test images, the majority baseline, parameters, training time and inference cost (timed side by side).

    # train the four arms of a recipe (skipping finished ones), then tabulate them:
    .venv/bin/python experiments/compare.py --name wikiart_cpu --train experiments/configs/cpu.py \\
        --runs runs/cpu --timing
    # the same recipe with an option (here: split by image), every arm gets it:
    .venv/bin/python experiments/compare.py --name x --train experiments/configs/cpu.py:split=image --runs runs/x
    # any finished runs or evaluation folders, labelled:
    .venv/bin/python experiments/compare.py --name wikiart_protocols \\
        --run "painter split=runs/cpu/multihead" --run "image split=runs/cpu_random/multihead"

A run is a training workdir (its test evaluation is read) or an evaluation folder written by `artnet evaluate`
(holding `predictions.npz` and `report.json`). Baselines come from each run's own report, which computed them
from its training counts (`artnet.evaluation.evaluate`). Writes `experiments/results/<name>.csv` and `.md`.

    # and each run's difference from one of them, paired, with intervals that resample images and painters:
    .venv/bin/python experiments/compare.py --name x --run "probe=runs/cpu/probe" --run "recipe=runs/cpu/multihead" \\
        --against probe

`--against LABEL` adds, per other run, head and metric, B - A on the same test images with two 95 % paired
bootstrap intervals: resampling images, and resampling painters (the cluster bootstrap, `intervals.paired_difference`),
which is the honest one on a painter-disjoint split; also written to `<name>_differences.csv`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from artnet import labels  # noqa: E402
from artnet.config import ARMS  # noqa: E402
from artnet.evaluation import intervals, metrics  # noqa: E402
from artnet.workdir import Evaluation, Workdir, read_json  # noqa: E402

_percent = functools.partial(metrics.percent, missing="", suffix="")  # a table cell: the header says %

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = (
    "run",
    "head",
    "n",
    "top1",
    "top1_low",
    "top1_high",
    "top3",
    "balanced_accuracy",
    "balanced_accuracy_low",
    "balanced_accuracy_high",
    "majority_baseline",
    "parameters",
    "train_seconds",
    "ms_per_image",
    "data",
    "within_one_block",
    "year_n",
    "year_mae",
    "year_mae_low",
    "year_mae_high",
    "year_median_ae",
    "year_mae_chance",
)


def arm_spec(recipe: str, arm: str) -> str:
    """`experiments/configs/cpu.py` or `cpu.py:split=image` and an arm -> `cpu.py:<arm>[,split=image]`."""
    path, _, options = recipe.partition(":")
    return f"{path}:{arm}" + (f",{options}" if options else "")


def train_missing_arms(recipe: str, runs_dir: Path, overrides: list[str]) -> None:
    """Train each arm of `recipe` whose workdir is not finished (a killed arm resumes)."""
    from artnet.config import apply_overrides, load_config
    from artnet.run import run_experiment

    for arm in ARMS:
        workdir = Workdir(runs_dir / arm)
        if workdir.finished():
            continue
        spec = arm_spec(recipe, arm)
        print(f"training {spec} in {workdir.root}", flush=True)
        run_experiment(apply_overrides(load_config(spec), overrides), workdir.root)


def evaluation_of(path: Path) -> tuple[Evaluation, Workdir | None]:
    """A training workdir's test evaluation (and the workdir), or an evaluation folder itself."""
    workdir = Workdir(path)
    if workdir.test_evaluation.exists():
        return workdir.test_evaluation, workdir
    return Evaluation(path), None


def rows_for_run(label: str, path: Path, seed: int = 0) -> list[dict]:
    evaluation, workdir = evaluation_of(path)
    if not evaluation.exists():
        raise FileNotFoundError(
            f"{path}: no predictions.npz and report.json (is the run finished? train it or run artnet evaluate)"
        )
    predictions = np.load(evaluation.predictions)
    report = read_json(evaluation.report_json)
    summary = workdir.read_train_summary() if workdir else {}
    rows = []
    for head in labels.HEADS:
        if head not in predictions.files:
            continue
        y_true, probs = predictions[f"{head}_true"], predictions[head]
        known = y_true >= 0
        if not known.any():
            continue
        y_pred = probs.argmax(axis=1)
        correct = (y_pred[known] == y_true[known]).astype(np.float64)
        result = report["heads"].get(head)
        if result is None:
            raise ValueError(f"{evaluation.report_json} has no {head!r} head, but its predictions do: re-evaluate it")
        time_columns = {}
        if head == "timeframe":  # how far in time: the block's centre against the year, where known
            time_columns = year_columns(
                result, y_true, y_pred, predictions["year_true"] if "year_true" in predictions.files else None, seed
            )
        top1_low, top1_high = intervals.bootstrap_interval(correct, seed=seed)
        bal_low, bal_high = intervals.bootstrap_balanced_accuracy_interval(y_true, y_pred, seed=seed)
        rows.append(
            {
                "run": label,
                "head": head,
                "n": int(known.sum()),
                "top1": result["top1"],
                "top1_low": top1_low,
                "top1_high": top1_high,
                "top3": result["top3"],
                "balanced_accuracy": result["balanced_accuracy"],
                "balanced_accuracy_low": bal_low,
                "balanced_accuracy_high": bal_high,
                "majority_baseline": result["majority_baseline"],
                "parameters": summary.get("parameters"),
                "train_seconds": summary.get("seconds"),
                "ms_per_image": None,
                "data": report.get("data", ""),
                **time_columns,
            }
        )
    if labels.YEAR in predictions.files and labels.YEAR in report:  # a year head (or the ridge year probe)
        rows.append(year_row(label, report, predictions, summary, seed))
    return rows


def year_columns(result: dict, y_true, y_pred, years, seed: int) -> dict:
    """The timeframe head's time columns: ±1 block and years of error (interval where the years were saved)."""
    columns = {
        "within_one_block": result.get("within_one_block"),
        "year_n": result.get("year_n"),
        "year_mae": result.get("year_mae"),
        "year_median_ae": result.get("year_median_ae"),
        "year_mae_chance": result.get("year_mae_chance"),
    }
    if years is not None:
        dated = (np.asarray(years) >= 0) & (y_true >= 0)
        if dated.any():
            centres = metrics.block_centres(labels.TIMEFRAMES)
            error = np.abs(centres[y_pred[dated]] - years[dated])
            columns["year_mae_low"], columns["year_mae_high"] = intervals.bootstrap_interval(error, seed=seed)
    return columns


def year_row(label: str, report: dict, predictions, summary: dict, seed: int) -> dict:
    """The year head's row: its predicted year scored in years, and read as a block (top-1, ±1 block)."""
    from artnet.models.year import year_estimate

    scored = report[labels.YEAR]
    row = {
        "run": label,
        "head": labels.YEAR,
        "n": scored["n"],
        "top1": scored.get("block_top1"),
        "parameters": summary.get("parameters"),
        "train_seconds": summary.get("seconds"),
        "data": report.get("data", ""),
        "within_one_block": scored.get("within_one_block"),
        "year_n": scored["n"],
        "year_mae": scored.get("mae"),
        "year_median_ae": scored.get("median_ae"),
        "year_mae_chance": scored.get("mae_chance"),
    }
    years = predictions["year_true"]
    dated = years >= 0
    if dated.any():
        mean, _ = year_estimate(predictions[labels.YEAR])
        row["year_mae_low"], row["year_mae_high"] = intervals.bootstrap_interval(
            np.abs(mean[dated] - years[dated]), seed=seed
        )
    return row


def time_models(model_paths: dict[str, Path], rounds: int = 5, batch: int = 8, images: int = 32) -> dict[str, float]:
    """Median ms per image of each model's forward pass, the models interleaved round by round."""
    import tensorflow as tf

    from artnet.serving.export import load_model

    models = {label: load_model(path) for label, path in model_paths.items()}
    timings: dict[str, list[float]] = {label: [] for label in models}
    rng = np.random.default_rng(0)
    inputs = {}
    for label, model in models.items():
        pixels = rng.uniform(0, 255, (images, model.image_size, model.image_size, 3)).astype(np.float32)
        inputs[label] = tf.data.Dataset.from_tensor_slices(pixels).batch(batch)
        model.predict(inputs[label], verbose=0)  # build and trace outside the clock
    for _ in range(rounds):
        for label, model in models.items():
            started = time.perf_counter()
            model.predict(inputs[label], verbose=0)
            timings[label].append((time.perf_counter() - started) * 1000 / images)
    return {label: float(np.median(values)) for label, values in timings.items()}


DIFFERENCE_COLUMNS = (
    "run",
    "against",
    "head",
    "metric",
    "n",
    "painters",
    "difference",
    "image_low",
    "image_high",
    "painter_low",
    "painter_high",
)


def difference_rows(runs: dict[str, Path], against: str, seed: int = 0) -> list[dict]:
    """Each run minus the `against` run, per head and metric, paired on the same test images (see the module doc)."""
    base = np.load(evaluation_of(runs[against])[0].predictions)
    painters = base["painter"] if "painter" in base.files else None  # older evaluations did not save them
    rows = []
    for label, path in runs.items():
        if label == against:
            continue
        other = np.load(evaluation_of(path)[0].predictions)
        for head in labels.HEADS:
            if head not in base.files or head not in other.files:
                continue
            y_true = base[f"{head}_true"]
            if not np.array_equal(y_true, other[f"{head}_true"]):
                raise ValueError(
                    f"{label} and {against} were not tested on the same {head} labels: no paired difference"
                )
            a, b = base[head].argmax(axis=1), other[head].argmax(axis=1)
            by_image = intervals.paired_difference(y_true, a, b, seed=seed)
            by_painter = (
                intervals.paired_difference(y_true, a, b, groups=painters, seed=seed) if painters is not None else {}
            )
            known = y_true >= 0
            head_row = {"run": label, "against": against, "head": head, "n": int(known.sum())}
            if painters is not None:
                head_row["painters"] = len(set(painters[known]) - {""})
            for metric, (difference, low, high) in by_image.items():
                row = head_row | {"metric": metric, "difference": difference, "image_low": low, "image_high": high}
                if metric in by_painter:
                    row |= {"painter_low": by_painter[metric][1], "painter_high": by_painter[metric][2]}
                rows.append(row)
    return rows


def differences_markdown(rows: list[dict]) -> list[str]:
    def points(value) -> str:
        return "" if value is None or value == "" else f"{100 * value:+.1f}"

    lines = [
        "",
        f"Differences against `{rows[0]['against']}`, in points (run minus it, on the same test images), with 95 % "
        "paired bootstrap intervals resampling images and resampling painters (all of a drawn painter's images "
        "together: the honest interval when no test painter was seen in training).",
        "",
        "| run | head | metric | n | painters | difference | images: 95 % CI | painters: 95 % CI |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        metric = "top-1" if row["metric"] == "top1" else "balanced acc."
        painter_interval = (
            f"[{points(row['painter_low'])}, {points(row['painter_high'])}]"
            if row.get("painter_low") is not None
            else ""
        )
        lines.append(
            f"| {row['run']} | {row['head']} | {metric} | {row['n']} | {row.get('painters', '')} | "
            f"{points(row['difference'])} | [{points(row['image_low'])}, {points(row['image_high'])}] | "
            f"{painter_interval} |"
        )
    return lines


def to_markdown(rows: list[dict], title: str, notes: list[str], differences: list[dict] | None = None) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        "| run | head | n | top-1 % [95 % CI] | top-3 % | balanced acc. % [95 % CI] | majority % | params | "
        "train s | ms/img |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row["head"] == labels.YEAR:
            continue  # years only: in the time table below
        ms = "" if row["ms_per_image"] is None else f"{row['ms_per_image']:.1f}"
        lines.append(
            f"| {row['run']} | {row['head']} | {row['n']} | {_percent(row['top1'])} "
            f"[{_percent(row['top1_low'])}, {_percent(row['top1_high'])}] | {_percent(row['top3'])} | "
            f"{_percent(row['balanced_accuracy'])} [{_percent(row['balanced_accuracy_low'])}, "
            f"{_percent(row['balanced_accuracy_high'])}] | {_percent(row['majority_baseline'])} | "
            f"{row['parameters'] or ''} | {row['train_seconds'] or ''} | {ms} |"
        )
    timed = [row for row in rows if row.get("year_n")]
    if timed:
        lines += [
            "",
            "Time in years: the timeframe head read as its block's centre, the year head (`year`) as its predicted "
            "year; ±1 block = within one block of the true one; errors over the images with a known year (n years), "
            "[95 % bootstrap interval]; chance = a block drawn uniformly at random.",
            "",
            "| run | head | ±1 block % | n years | mean error, years [95 % CI] | median error, years | chance mean |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in timed:
            interval = ""
            if row.get("year_mae_low") is not None:
                interval = f" [{row['year_mae_low']:.0f}, {row['year_mae_high']:.0f}]"
            lines.append(
                f"| {row['run']} | {row['head']} | {_percent(row.get('within_one_block'))} | {row['year_n']} | "
                f"{_years(row.get('year_mae'))}{interval} | {_years(row.get('year_median_ae'))} | "
                f"{_years(row.get('year_mae_chance'))} |"
            )
    if differences:
        lines += differences_markdown(differences)
    return "\n".join(lines) + "\n"


def _years(value) -> str:
    return "" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results file stem: experiments/results/<name>.csv/.md")
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=PATH", help="a finished run (repeatable)")
    parser.add_argument("--runs", type=Path, help="a folder with one workdir per arm (multihead, single_*)")
    parser.add_argument(
        "--train", metavar="RECIPE[:OPTIONS]", help="train missing arms of this recipe, e.g. experiments/configs/cpu.py"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for --train")
    parser.add_argument("--timing", action="store_true", help="time each run's model side by side")
    parser.add_argument("--title", default=None)
    parser.add_argument("--note", action="append", default=[], help="a line for the table's preamble")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--against", metavar="LABEL", help="add each run's paired difference from this run")
    args = parser.parse_args(argv)

    runs: dict[str, Path] = {}
    if args.runs:
        if args.train:
            train_missing_arms(args.train, args.runs, args.set)
        runs.update({arm: args.runs / arm for arm in ARMS if (args.runs / arm).exists()})
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--run {item!r} is not LABEL=PATH")
        runs[label] = Path(path)
    if not runs:
        parser.error("nothing to compare: give --runs or --run")
    if args.against and args.against not in runs:
        parser.error(f"--against {args.against!r} is not one of the runs: {', '.join(runs)}")

    rows = [row for label, path in runs.items() for row in rows_for_run(label, path)]
    command = shlex.join([".venv/bin/python", "experiments/compare.py", *(argv if argv is not None else sys.argv[1:])])
    notes = list(args.note) + [f"command: `{command}`"]
    if args.timing:
        models = {label: Workdir(path).model for label, path in runs.items() if Workdir(path).model.is_file()}
        timings = time_models(models)
        for row in rows:
            row["ms_per_image"] = timings.get(row["run"])
        singles = [label for label in timings if label.startswith("single_")]
        if "multihead" in timings and len(singles) == 3:
            three = sum(timings[label] for label in singles)
            notes.append(
                f"inference, batch 8, median of 5 interleaved rounds: one three-head pass {timings['multihead']:.1f} "
                f"ms/image vs three single-head passes {three:.1f} ms/image ({three / timings['multihead']:.2f}x)"
            )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with (args.out_dir / f"{args.name}.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    differences = difference_rows(runs, args.against) if args.against else None
    if differences:
        with (args.out_dir / f"{args.name}_differences.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=DIFFERENCE_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(differences)
    markdown = to_markdown(rows, args.title or args.name, notes, differences)
    (args.out_dir / f"{args.name}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
