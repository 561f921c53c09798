"""Which calibration, fitted where: a run's test ECE and set coverage per head for each source, and the floor.

    python experiments/calibration_variants.py --run runs/cpu/multihead \
        --out experiments/results/calibration/variants.md

No model runs: this reads the answers a run stored, on validation (`eval_validation/predictions.npz`), on the
training painters from the fold models that never saw them (`out_of_fold.npz`, written by `artnet calibrate
--folds K`) and on test (`eval_test/predictions.npz`). For each head it fits one temperature
(`artnet.evaluation.calibration.fit_temperature`) on validation alone, on the out-of-fold answers alone, and on
both pooled (what a run with `calibration_folds` serves), and scores each on test: ECE (15 bins), mean top
probability and top-1 accuracy. The last row searches test itself for the temperature with the least test ECE.
It is not a choice anyone could make (test is never fitted on); it is the floor of temperature scaling: no
temperature, wherever it is fitted, scores a lower test ECE (up to the grid's spacing). Beside them, each head's
class shares on test and in the pooled calibration answers: a temperature rescales confidence, and cannot follow a
test split whose classes are mixed otherwise. With each fitted temperature come the 90 % APS sets fitted on the
same answers (`calibrate_head`), and their test coverage with a 95 % interval that resamples the test painters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet import labels  # noqa: E402
from artnet.evaluation.calibration import apply_temperature, calibrate_head  # noqa: E402
from artnet.evaluation.conformal import prediction_set_mask, set_coverage  # noqa: E402
from artnet.evaluation.intervals import cluster_members, cluster_resample  # noqa: E402
from artnet.evaluation.metrics import expected_calibration_error  # noqa: E402

HEADS = ("school", "timeframe", "type")
FLOOR = "test itself, least ECE (a floor, not a choice)"


def answers(path: Path, head: str, painters: bool = False) -> tuple[np.ndarray, ...]:
    """(probabilities, labels) of one head's known labels in a stored predictions file, and with `painters` each
    answer's painter ("" where unknown) after them."""
    with np.load(path, allow_pickle=False) as stored:
        y = stored[f"{head}_true"]
        known = y >= 0
        found = (stored[head][known], y[known])
        if painters:
            names = stored["painter"][known] if "painter" in stored.files else np.full(int(known.sum()), "")
            found += (names,)
        return found


def coverage_interval(mask: np.ndarray, y: np.ndarray, painters: np.ndarray, draws: int = 2000) -> tuple:
    """The 95 % interval of a set rule's test coverage, resampling test painters (all of a drawn painter's images
    together): what another draw of test painters could have shown."""
    held = mask[np.arange(len(y)), y].astype(float)
    members = cluster_members(painters, len(y))
    rng = np.random.default_rng(0)
    replicates = [held[cluster_resample(members, rng)].mean() for _ in range(draws)]
    return float(np.percentile(replicates, 2.5)), float(np.percentile(replicates, 97.5))


def least_ece_temperature(probs: np.ndarray, y: np.ndarray, also=()) -> float:
    """The temperature with the least ECE on (probs, y), searched on a grid of 601 values from 1/8 to 8 evenly in
    log T and among `also` (the other rows' temperatures, so that none beats the floor): ECE is a step function of
    T, so a grid, not a gradient."""
    grid = [*np.exp(np.linspace(np.log(1 / 8), np.log(8), 601)), *also]
    return float(min(grid, key=lambda t: expected_calibration_error(y, apply_temperature(probs, t))))


def head_rows(run: Path, head: str) -> tuple[list[dict], dict]:
    validation = answers(run / "eval_validation" / "predictions.npz", head)
    out_of_fold = answers(run / "out_of_fold.npz", head)
    test_probs, test_y, test_painters = answers(run / "eval_test" / "predictions.npz", head, painters=True)
    pooled = (np.concatenate([validation[0], out_of_fold[0]]), np.concatenate([validation[1], out_of_fold[1]]))
    sources = {
        "none (T = 1)": None,
        "validation alone": validation,
        "out-of-fold alone": out_of_fold,
        "validation + out-of-fold (served)": pooled,
    }
    # Each source's temperature and the 90 % APS sets fitted after it, once (`calibrate_head` fits T as
    # `fit_temperature` does).
    calibrations = {source: calibrate_head(*fitted_on) for source, fitted_on in sources.items() if fitted_on}
    temperatures = {source: calibrations[source].temperature if source in calibrations else 1.0 for source in sources}
    temperatures[FLOOR] = least_ece_temperature(test_probs, test_y, also=temperatures.values())
    rows = []
    for source, temperature in temperatures.items():
        fitted_on = sources.get(source, (test_probs, test_y))
        probs = apply_temperature(test_probs, temperature)
        row = {
            "head": head,
            "fitted on": source,
            "n fitted": 0 if fitted_on is None else len(fitted_on[1]),
            "T": temperature,
            "test ECE": expected_calibration_error(test_y, probs),
            "test mean top probability": float(probs.max(axis=1).mean()),
            "test top-1": float(np.mean(probs.argmax(axis=1) == test_y)),
        }
        if source in calibrations:  # the 90 % APS sets fitted with that temperature
            mask = prediction_set_mask(probs, calibrations[source].sets)
            row["coverage"] = set_coverage(mask, test_y)
            row["coverage interval"] = coverage_interval(mask, test_y, test_painters)
            row["mean set size"] = float(mask.sum(axis=1).mean())
        rows.append(row)
    classes = len(labels.VOCABULARIES[head])
    shares = {
        "test": np.bincount(test_y, minlength=classes) / len(test_y),
        "calibration": np.bincount(pooled[1], minlength=classes) / len(pooled[1]),
    }
    return rows, shares


def markdown(run: Path, tables: dict) -> str:
    lines = [
        f"# Which temperature, fitted where ({run})",
        "",
        f"- command: `python experiments/calibration_variants.py --run {run}`",
        "- ECE: 15 bins, as a fraction, on the run's painter-split test; T: the temperature fitted on that source",
        "",
        "- coverage: of the 90 % APS sets fitted on the same answers, on test, with its 95 % interval resampling the"
        " test painters; set: their mean size",
        "",
        "| head | fitted on | n fitted | T | test ECE | test mean top probability | test top-1 | coverage [95 %] "
        "| set |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rows, _ in tables.values():
        for row in rows:
            covered = ""
            if "coverage" in row:
                low, high = row["coverage interval"]
                covered = f"{100 * row['coverage']:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"
            size = f"{row['mean set size']:.2f}" if "mean set size" in row else ""
            lines.append(
                f"| {row['head']} | {row['fitted on']} | {row['n fitted']} | {row['T']:.2f} | {row['test ECE']:.3f} | "
                f"{100 * row['test mean top probability']:.1f} % | {100 * row['test top-1']:.1f} % | {covered} | "
                f"{size} |"
            )
    lines += ["", "Class shares, test / pooled calibration answers (the classes each holds, in %):", ""]
    for head, (_, shares) in tables.items():
        vocabulary = labels.VOCABULARIES[head]
        held = [
            f"{name} {100 * test:.0f} / {100 * calibration:.0f}"
            for name, test, calibration in zip(vocabulary, shares["test"], shares["calibration"], strict=True)
            if test or calibration
        ]
        lines.append(f"- {head}: " + ", ".join(held))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a finished run with out_of_fold.npz")
    parser.add_argument("--out", type=Path, help="a Markdown file to write the table to")
    args = parser.parse_args(argv)
    for needed in ("eval_validation/predictions.npz", "eval_test/predictions.npz", "out_of_fold.npz"):
        if not (args.run / needed).is_file():
            hint = " (run `artnet calibrate --workdir RUN --folds 5` first)" if "fold" in needed else ""
            parser.error(f"{args.run / needed} is missing{hint}")
    tables = {head: head_rows(args.run, head) for head in HEADS}
    text = markdown(args.run, tables)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
