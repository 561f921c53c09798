"""Compare finished runs: per head and run, top-1 / top-3 / balanced accuracy with 95 % bootstrap intervals over
the test images, the majority baseline, parameters, training time and inference cost (timed side by side).

    # train the four arms of a variant (skipping finished ones), then tabulate them:
    .venv/bin/python experiments/compare.py --name wikiart_cpu --train experiments/configs --variant cpu \\
        --runs runs/cpu --timing
    # any finished runs or evaluation folders, labelled:
    .venv/bin/python experiments/compare.py --name wikiart_protocols \\
        --run "painter split=runs/cpu/multihead" --run "image split=runs/cpu_random/multihead"

A run is a training workdir (its `eval_test/` is read) or an evaluation folder written by `artnet evaluate`
(holding `predictions.npz` and `report.json`). Writes `experiments/results/<name>.csv` and `.md`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from artnet import labels, metrics  # noqa: E402

ARMS = ("multihead", "single_school", "single_timeframe", "single_type")
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
)


def train_missing_arms(config_dir: Path, variant: str, runs_dir: Path, overrides: list[str]) -> None:
    """Train each arm whose workdir has no finished model (a killed arm resumes)."""
    from artnet import cli

    for arm in ARMS:
        workdir = runs_dir / arm
        if (workdir / "eval_test" / "predictions.npz").is_file():
            continue
        args = ["train", "--config", f"{config_dir / arm}.py:{variant}", "--workdir", str(workdir)]
        for item in overrides:
            args += ["--set", item]
        print(f"training {arm} ({variant}) in {workdir}", flush=True)
        if cli.main(args) != 0:
            raise SystemExit(f"training {arm} failed; see the messages above")


def _eval_dir(path: Path) -> Path:
    return path / "eval_test" if (path / "eval_test" / "predictions.npz").is_file() else path


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def rows_for_run(label: str, path: Path, seed: int = 0) -> list[dict]:
    evaluation = _eval_dir(path)
    if not (evaluation / "predictions.npz").is_file():
        raise FileNotFoundError(f"{path}: no predictions.npz (is the run finished? train it or run artnet evaluate)")
    predictions = np.load(evaluation / "predictions.npz")
    report = _read_json(evaluation / "report.json")
    workdir = evaluation.parent if evaluation != path else path
    summary = _read_json(workdir / "train_summary.json")
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
        result = report.get("heads", {}).get(head) or metrics.head_metrics(
            y_true, probs, list(labels.VOCABULARIES[head]), int(np.bincount(y_true[known]).argmax())
        )
        top1_low, top1_high = metrics.bootstrap_interval(correct, seed=seed)
        bal_low, bal_high = metrics.bootstrap_balanced_accuracy_interval(y_true, y_pred, seed=seed)
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
            }
        )
    return rows


def time_models(model_paths: dict[str, Path], rounds: int = 5, batch: int = 8, images: int = 32) -> dict[str, float]:
    """Median ms per image of each model's forward pass, the models interleaved round by round."""
    import tensorflow as tf

    from artnet.export import load_model

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


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def to_markdown(rows: list[dict], title: str, notes: list[str]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        "| run | head | n | top-1 % [95 % CI] | top-3 % | balanced acc. % [95 % CI] | majority % | params | "
        "train s | ms/img |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ms = "" if row["ms_per_image"] is None else f"{row['ms_per_image']:.1f}"
        lines.append(
            f"| {row['run']} | {row['head']} | {row['n']} | {_percent(row['top1'])} "
            f"[{_percent(row['top1_low'])}, {_percent(row['top1_high'])}] | {_percent(row['top3'])} | "
            f"{_percent(row['balanced_accuracy'])} [{_percent(row['balanced_accuracy_low'])}, "
            f"{_percent(row['balanced_accuracy_high'])}] | {_percent(row['majority_baseline'])} | "
            f"{row['parameters'] or ''} | {row['train_seconds'] or ''} | {ms} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results file stem: experiments/results/<name>.csv/.md")
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=PATH", help="a finished run (repeatable)")
    parser.add_argument("--runs", type=Path, help="a folder with one workdir per arm (multihead, single_*)")
    parser.add_argument("--train", type=Path, metavar="CONFIG_DIR", help="train missing arms from these configs")
    parser.add_argument("--variant", default="cpu", help="config variant for --train (default: cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for --train")
    parser.add_argument("--timing", action="store_true", help="time each run's model side by side")
    parser.add_argument("--title", default=None)
    parser.add_argument("--note", action="append", default=[], help="a line for the table's preamble")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    runs: dict[str, Path] = {}
    if args.runs:
        if args.train:
            train_missing_arms(args.train, args.variant, args.runs, args.set)
        runs.update({arm: args.runs / arm for arm in ARMS if (args.runs / arm).exists()})
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--run {item!r} is not LABEL=PATH")
        runs[label] = Path(path)
    if not runs:
        parser.error("nothing to compare: give --runs or --run")

    rows = [row for label, path in runs.items() for row in rows_for_run(label, path)]
    command = shlex.join([".venv/bin/python", "experiments/compare.py", *(argv if argv is not None else sys.argv[1:])])
    notes = list(args.note) + [f"command: `{command}`"]
    if args.timing:
        models = {label: path / "model.keras" for label, path in runs.items() if (path / "model.keras").is_file()}
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
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    markdown = to_markdown(rows, args.title or args.name, notes)
    (args.out_dir / f"{args.name}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
