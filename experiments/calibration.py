"""Honest confidence, measured: a trained run's calibration (fitted on its validation split) scored on its
painter-split test, on another collection, and on photos of the test paintings.

    .venv/bin/python experiments/calibration.py --run runs/cpu/multihead --folder ../shared/wikiart-sample \
        --wga-data-dir data/tfds --photos 300 --out experiments/results/calibration

It never trains and never refits: it reads the run's export (`calibration.json`, through the serving code's
guarded reader) and the test predictions its evaluation saved, and scores per head, with the calibration as
served: top-1 and top-3 accuracy beside chance and the training majority; ECE before and after the temperature;
the empirical coverage and mean size of the conformal sets against their target; the share of "cannot tell" sets
(more than half the classes); and the AURC (the calibrated top probability as confidence) beside the oracle's.
Three benchmarks:

- `test`: the run's own painter-split test (`eval_test/predictions.npz`, written by `artnet train`).
- `WGA (cross-collection)`: the paintings of a built `wga/<config>` (`--wga-data-dir`; all splits by default),
  scored by the WikiArt-trained model with its WikiArt calibration: coverage is promised for paintings exchangeable
  with the calibration split, which these are not. Built with `tfds build datasets/wga --config random --data_dir
  data/tfds --manual_dir ../shared/wga-sample`; evaluated once into `<run>/eval_wga_<config>/` and reused.
- `photos`: `--photos` paintings of the folder's painter-split test rendered as gallery photos and read through
  the photo step, as `experiments/photo_vs_scan.py` does (its functions), beside the same paintings' clean images.
  The raw probabilities are cached in `<run>/calibration_photos.npz`.

Writes `calibration.md` and `calibration.csv` under `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet import labels  # noqa: E402
from artnet.evaluation import metrics  # noqa: E402
from artnet.evaluation.calibration import calibration_metrics  # noqa: E402
from artnet.evaluation.report import percent  # noqa: E402
from artnet.workdir import Workdir  # noqa: E402

ALL = 100  # a top_k beyond every vocabulary: the whole distribution
HALF_DRAWS = 40  # painter halves of the validation split (`painter_halves`)
COLUMNS = (
    "benchmark",
    "calibration",
    "head",
    "n",
    "top1",
    "top3",
    "chance",
    "majority",
    "temperature",
    "ece_before",
    "ece_after",
    "coverage_target",
    "coverage",
    "mean_set_size",
    "cannot_tell",
    "aurc",
    "aurc_oracle",
)


def score(benchmark: str, probabilities: dict, truth: dict, calibrations: dict, majority: dict) -> list[dict]:
    """One row per calibration (`calibrations`: its name -> per head, a `HeadCalibration`) and calibrated head: the
    figures of the top (`calibration.calibration_metrics`, `metrics`)."""
    rows = []
    for name, calibration in calibrations.items():
        rows += score_one(benchmark, name, probabilities, truth, calibration, majority)
    return rows


def score_one(benchmark: str, name: str, probabilities: dict, truth: dict, calibration: dict, majority) -> list:
    rows = []
    for head, calibrated in calibration.items():
        y, probs = np.asarray(truth[head]), np.asarray(probabilities[head], dtype=np.float64)
        known = y >= 0
        if not known.any():
            continue
        values = calibration_metrics(y, probs, calibrated)
        rows.append(
            {
                "benchmark": benchmark,
                "calibration": name,
                "head": head,
                "n": int(known.sum()),
                "top1": metrics.top_k_accuracy(y, probs, 1),
                "top3": metrics.top_k_accuracy(y, probs, 3),
                "chance": 1 / probs.shape[1],
                "majority": float(np.mean(y[known] == majority[head])),
                **{key: values[key] for key in ("temperature", "ece_before", "ece_after", "coverage_target")},
                **{key: values[key] for key in ("coverage", "mean_set_size", "cannot_tell")},
                "aurc": values["aurc_after"],
                "aurc_oracle": values["aurc_oracle"],
            }
        )
    return rows


def both_calibrations(run: Workdir, served: dict) -> tuple[dict, str]:
    """The calibrations compared, by name: fitted on validation alone, and (where the run holds out-of-fold
    answers) on validation and the training folds, both at the served coverage, as `artnet.run.fit_calibration`
    fits them; and the name of the one the export serves (the one whose temperatures it holds)."""
    from artnet.evaluation.calibration import calibrate_from_predictions

    coverage = next(iter(served.values())).sets.coverage
    validation = run.validation_evaluation.predictions
    calibrations = {"validation": calibrate_from_predictions(validation, coverage)}
    if run.out_of_fold.is_file():
        with np.load(run.out_of_fold) as saved:
            out_of_fold = dict(saved)
        folds = int(out_of_fold["fold"].max()) + 1
        calibrations[f"validation + {folds} folds"] = calibrate_from_predictions(validation, coverage, also=out_of_fold)
    same = [
        name
        for name, fitted in calibrations.items()
        if all(abs(fitted[head].temperature - served[head].temperature) < 1e-6 for head in served)
    ]
    return calibrations, same[0] if same else "neither (the export's calibration.json was fitted otherwise)"


def test_benchmark(run: Workdir) -> tuple[dict, dict]:
    """The run's test predictions (probabilities and labels per head), as its evaluation saved them."""
    with np.load(run.test_evaluation.predictions) as saved:
        return {h: saved[h] for h in labels.HEADS if h in saved}, {h: saved[f"{h}_true"] for h in labels.HEADS}


def wga_benchmark(run: Workdir, model, data_dir: Path, config: str, split: str, calibration: dict, counts):
    """The WGA paintings' predictions, from `evaluate` into `<run>/eval_wga_<config>` (reused when there)."""
    from artnet.data.sources import wga_source
    from artnet.evaluation.evaluate import evaluate
    from artnet.workdir import Evaluation

    files = Evaluation(run.root / f"eval_wga_{config}")
    if not files.exists():
        evaluate(model, wga_source(config, split, data_dir), files.root, train_counts=counts, calibration=calibration)
    with np.load(files.predictions) as saved:
        return {h: saved[h] for h in labels.HEADS if h in saved}, {h: saved[f"{h}_true"] for h in labels.HEADS}


def photo_benchmark(run: Workdir, predictor, folder: Path, paintings: int) -> tuple[dict, dict, dict, list[dict]]:
    """Raw probabilities of `paintings` test paintings: as gallery photos through the photo step, and clean (the
    same paintings as scans); cached in `<run>/calibration_photos.npz`. Also the labels and the rows read."""
    from artnet.data.images import load_path
    from artnet.testing.gallery_photo import render_gallery_photo
    from experiments.photo_vs_scan import read_folder, truth

    rows = read_folder(folder, paintings, "test")
    cache = run.root / "calibration_photos.npz"
    heads = predictor.heads
    if cache.is_file():
        with np.load(cache) as saved:
            if len(saved["files"]) == len(rows) and list(saved["files"]) == [row["file"] for row in rows]:
                photos = {h: saved[f"photo_{h}"] for h in heads}
                clean = {h: saved[f"clean_{h}"] for h in heads}
                return photos, clean, {h: truth(rows, h) for h in heads}, rows
    whole = type(predictor)(predictor.model, top_k=ALL, locate_painting=False, calibration={})
    photos, clean = {h: [] for h in heads}, {h: [] for h in heads}
    for index, row in enumerate(tqdm(rows, desc="photos", file=sys.stderr)):
        painting = load_path(folder / row["file"])
        # As photo_vs_scan: painting i is photographed with seed i, easy and hard by turns.
        photo = render_gallery_photo(painting, seed=index, difficulty="easy" if index % 2 else "hard").image
        for answers, prediction in ((photos, predictor.predict(photo)), (clean, whole.predict(painting))):
            for head in heads:
                answers[head].append(distribution(prediction, head))
    photos = {h: np.stack(v) for h, v in photos.items()}
    clean = {h: np.stack(v) for h, v in clean.items()}
    arrays = {f"photo_{h}": photos[h] for h in heads} | {f"clean_{h}": clean[h] for h in heads}
    np.savez_compressed(cache, files=np.asarray([row["file"] for row in rows]), **arrays)
    return photos, clean, {h: truth(rows, h) for h in heads}, rows


def painter_halves(run: Workdir, calibration: dict, draws: int = 40, seed: int = 0) -> list[dict]:
    """Validation only: how far coverage and ECE move with the painters. Each draw splits the validation painters
    in two halves, calibrates on one (`calibrate_head` at the export's coverage, as a run does) and scores the
    other; per head, the median, the 5th and 95th percentiles and the mean over the draws. Nothing here sees the
    test split."""
    from artnet.evaluation.calibration import calibrate_head

    with np.load(run.validation_evaluation.predictions) as saved:
        painters = saved["painter"]
        scored = {head: (saved[f"{head}_true"], saved[head]) for head in calibration}
    names = np.unique(painters)
    rng = np.random.default_rng(seed)
    splits = [np.isin(painters, rng.choice(names, len(names) // 2, replace=False)) for _ in range(draws)]
    rows = []
    for head, (y, probs) in scored.items():
        coverage, ece = [], []
        for fit in splits:
            fitted = calibrate_head(probs[fit], y[fit], calibration[head].sets.coverage)
            values = calibration_metrics(y[~fit], probs[~fit], fitted)
            if values["n"]:
                coverage.append(values["coverage"])
                ece.append(values["ece_after"])
        known = y >= 0
        rows.append(
            {
                "head": head,
                "painters": len(names),
                "top1": float(np.mean(probs[known].argmax(axis=1) == y[known])),
                "coverage": np.percentile(coverage, [50, 5, 95]).tolist() + [float(np.mean(coverage))],
                "ece_after": np.percentile(ece, [50, 5, 95]).tolist() + [float(np.mean(ece))],
            }
        )
    return rows


def halves_markdown(rows: list[dict], draws: int) -> list[str]:
    lines = [
        "",
        "## How far coverage moves with the painters (validation only)",
        "",
        f"Each of {draws} draws calibrates on half the validation painters and scores the other half: the spread "
        f"is what a {rows[0]['painters']}-painter calibration split can promise about new painters (the export's "
        "coverage target).",
        "",
        "| head | validation painters | validation top-1 | coverage: mean [5th, 95th percentile] | ECE after T: mean "
        "[5th, 95th] |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        _, c5, c95, cmean = row["coverage"]
        _, e5, e95, emean = row["ece_after"]
        lines.append(
            f"| {row['head']} | {row['painters']} | {percent(row['top1'])} | {percent(cmean)} [{percent(c5)}, "
            f"{percent(c95)}] | {emean:.3f} [{e5:.3f}, {e95:.3f}] |"
        )
    return lines


def distribution(prediction: dict, head: str) -> np.ndarray:
    """A head's probabilities in class order, from a prediction ranking every class."""
    names = labels.VOCABULARIES[head]
    vector = np.zeros(len(names))
    for name, probability in prediction[head]:
        vector[names.index(name)] = probability
    return vector


def examples(export: Path, folder: Path, rows: list[dict], count: int = 3) -> list[str]:
    """What the demo's answer says (titles and note, `artnet.serving.cards`) for `count` paintings spread over
    `rows`."""
    from artnet.data.images import load_path
    from artnet.serving.cards import confidence_note, head_title
    from artnet.serving.predictor import SETS, Predictor

    predictor = Predictor(export, locate_painting=False)
    coverage = next(iter(predictor.calibration.values())).sets.coverage
    lines = []
    for row in rows[:: max(1, len(rows) // count)][:count]:  # spread over the rows, so over painters
        result = predictor.predict(load_path(folder / row["file"]))
        truth = ", ".join(f"{head} {row[head] or 'unknown'}" for head in predictor.heads)
        titles = [head_title(h, result[h], result[SETS][h], coverage) for h in predictor.heads]
        lines += [f"- `{row['file']}` ({row['author']}; truth: {truth})"]
        lines += [f"  - {title}" for title in titles]
        lines += [f"  - note: {confidence_note(predictor.heads, result, coverage)}"]
    return lines


def _cell(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key in ("n", "head", "benchmark", "calibration"):
        return str(value)
    if key in ("temperature", "mean_set_size"):
        return f"{value:.2f}"
    if key.startswith(("ece", "aurc")):
        return f"{value:.3f}"
    return percent(value)


def markdown(rows: list[dict], command: str, notes: list[str], example_lines: list[str], halves=()) -> str:
    lines = [
        "# Calibration, prediction sets and abstention, measured",
        "",
        f"- command: `{command}`",
        *[f"- {note}" for note in notes],
        "",
        "Accuracies, coverage and 'cannot tell' (sets holding more than half the classes) in percent; ECE (15 bins) "
        "and AURC as fractions. Majority: always answering the training split's most frequent class. AURC: the "
        "calibrated top probability as confidence; the oracle ranks every right answer first.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| --- | --- |" + " ---: |" * (len(COLUMNS) - 2),
    ]
    lines += ["| " + " | ".join(_cell(key, row[key]) for key in COLUMNS) + " |" for row in rows]
    lines += ["", "## Coverage against its target", ""]
    for row in rows:
        gap = 100 * (row["coverage"] - row["coverage_target"])
        verdict = "within 2 points" if abs(gap) <= 2 else ("over-covers" if gap > 0 else "under-covers")
        lines.append(
            f"- {row['benchmark']}, {row['calibration']}, {row['head']}: {percent(row['coverage'])} for a "
            f"{percent(row['coverage_target'])} "
            f"target ({gap:+.1f} points, {verdict}), mean set {row['mean_set_size']:.2f} of "
            f"{len(labels.VOCABULARIES[row['head']])} classes; ECE {row['ece_before']:.3f} -> {row['ece_after']:.3f}"
        )
    if halves:
        lines += halves_markdown(halves, HALF_DRAWS)
    if example_lines:
        lines += ["", "## What the answer says for three test paintings (clean scans)", "", *example_lines]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a finished run's workdir (artnet train --workdir)")
    parser.add_argument("--folder", type=Path, help="the labelled folder it trained on, for the photo benchmark")
    parser.add_argument("--photos", type=int, default=300, help="test paintings photographed (0: none)")
    parser.add_argument("--wga-data-dir", type=Path, help="where wga/<config> is built (leave out: no WGA check)")
    parser.add_argument("--wga-config", default="random")
    parser.add_argument("--wga-split", default="train+validation+test")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/calibration"))
    args = parser.parse_args(argv)
    command = shlex.join([".venv/bin/python", "experiments/calibration.py", *(argv or sys.argv[1:])])

    from artnet.serving.predictor import Predictor, read_calibration

    run = Workdir(args.run)
    if not run.finished():
        parser.error(f"{run.root} is not a finished run (train it first: artnet train --workdir {run.root})")
    calibration = read_calibration(run.export.root)
    if not calibration:
        parser.error(f"{run.export.calibration} is missing: this export is uncalibrated, nothing to measure")
    counts = run.read_label_counts()["counts"]
    majority = {head: int(np.argmax(counts[head])) for head in calibration}
    calibrations, served = both_calibrations(run, calibration)
    first = next(iter(calibration.values())).sets
    notes = [
        f"run: {run.root} ({json.loads(run.config.read_text()).get('description', '?')}); coverage target "
        f"{percent(first.coverage)} ({first.method.upper()} sets); the export serves the `{served}` calibration",
        "calibrations: `validation` is fitted on the served model's answers on the validation split; "
        "`validation + K folds` also on the training painters' answers from K fold models that never saw them "
        "(`artnet.training.cross_fit`, stored in the run's out_of_fold.npz by `artnet calibrate`)",
    ]
    rows = score("test", *test_benchmark(run), calibrations, majority)
    # Raw probabilities (calibration={}): the calibration is applied in `score`, before and after are both shown.
    predictor = Predictor(run.export.root, top_k=ALL, calibration={})
    if args.wga_data_dir:
        wga = wga_benchmark(
            run, predictor.model, args.wga_data_dir, args.wga_config, args.wga_split, calibration, counts
        )
        rows += score("WGA (cross-collection)", *wga, calibrations, majority)
        notes.append(f"WGA: every painting of wga/{args.wga_config}:{args.wga_split} under {args.wga_data_dir}")
    example_lines = []
    if args.folder and args.photos:
        photos, clean, truth, painted = photo_benchmark(run, predictor, args.folder, args.photos)
        rows += score("test paintings, clean", clean, truth, calibrations, majority)
        rows += score("test paintings as photos (photo step)", photos, truth, calibrations, majority)
        notes.append(
            f"photos: {len(painted)} paintings of the painter-split test of {args.folder}, rendered by "
            "artnet.testing.gallery_photo (seed = row, easy and hard by turns), read through the photo step"
        )
        example_lines = examples(run.export.root, args.folder, painted)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "calibration.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    halves = painter_halves(run, calibration, HALF_DRAWS)  # `evaluate` saves each painting's painter
    text = markdown(rows, command, notes, example_lines, halves)
    (args.out / "calibration.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
