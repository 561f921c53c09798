"""One experiment, start to finish: train -> calibrate on validation -> evaluate on test -> export with its card.

`artnet train` and the comparison runner (`experiments/compare.py`) both call `run_experiment`, so a run made
either way leaves the same workdir (`artnet.workdir.Workdir`) and the same card.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from artnet.config import TrainConfig
from artnet.data.sources import Source, load_sources
from artnet.evaluation.calibration import calibrate_from_predictions
from artnet.evaluation.evaluate import evaluate
from artnet.serving.export import export
from artnet.training.cross_fit import PAINTER, out_of_fold_predictions
from artnet.training.strategy import (
    detached,
    is_chief,
    is_multi_worker,
    make_strategy,
    refuse_unsupported,
    release_cluster,
    worker_name,
)
from artnet.training.train import train
from artnet.workdir import Workdir

HEADLINE_METRICS = ("n", "top1", "top3", "balanced_accuracy", "majority_baseline", "chance", "data_majority")
# The share of served prediction sets that should hold the true class (`artnet.evaluation.conformal`).
CALIBRATION_COVERAGE = 0.9
YEAR_METRICS = ("n", "mae", "median_ae", "mae_constant", "constant_year", "within_one_sigma", "within_one_block")


@dataclasses.dataclass
class RunResult:
    """What `run_experiment` made: the trained model, its test report and where everything lies."""

    workdir: Workdir
    model: object  # the trained ArtNet
    report: dict  # the test report (see `artnet.evaluation.evaluate.evaluate`); {} on a worker that is not the chief
    card: dict  # the model card that travels with the export
    chief: bool = True  # False on the other workers of a multi-worker job: they train, the chief reports
    worker: str = "local"  # this process's task in a multi-worker job (`worker1`), else "local"

    @property
    def export_dir(self) -> Path:
        return self.workdir.export.root


def headline(report: dict) -> dict:
    """Per head, the figures a model card and a log line show."""
    return {head: {k: result[k] for k in HEADLINE_METRICS if k in result} for head, result in report["heads"].items()}


def painters(source: Source) -> int | None:
    """Distinct painters of a source, when its metadata names them."""
    names = {item.get("author") for item in source.meta if item.get("author")}
    return len(names) or None


def model_card(sources: dict[str, Source], train_counts: dict, report: dict) -> dict:
    return {
        "data": sources["train"].name,
        "train_examples": len(sources["train"]),
        "train_painters": painters(sources["train"]),
        "test_examples": len(sources["test"]),
        "test_painters": painters(sources["test"]),
        "train_counts": train_counts,  # travels with the export: `artnet evaluate` reads its majority baselines here
        "test": headline(report),
        **({"test_year": {k: report["year"][k] for k in YEAR_METRICS}} if "year" in report else {}),
    }


def fit_calibration(
    model, sources: dict[str, Source], workdir: Workdir, counts, train_year=None, config: TrainConfig | None = None
) -> dict | None:
    """Per head, the temperature and the conformal set rule (`CALIBRATION_COVERAGE`) fitted on answers about
    painters the model never trained on: its answers on the validation split (painter-disjoint), evaluated into
    `workdir.validation_evaluation`, and with `config.calibration_folds` also the training painters' out-of-fold
    answers (`artnet.training.cross_fit`). None, with a note, when the run has no validation split."""
    validation = sources.get("validation")
    if validation is None or not len(validation):
        print("calibration: skipped (no validation split): the export serves uncalibrated probabilities, no sets")
        return None
    files = workdir.validation_evaluation
    evaluate(model, validation, files.root, train_counts=counts, train_year=train_year)
    if not (config and config.calibration_folds):
        return calibrate_from_predictions(files.predictions, coverage=CALIBRATION_COVERAGE)
    out_of_fold = out_of_fold_predictions(config, sources, workdir)
    painters = len((set(out_of_fold[PAINTER]) | set(validation.painters)) - {""})
    print(
        f"calibration: fitted on {len(out_of_fold[PAINTER]) + len(validation)} answers about {painters} unseen "
        f"painters (validation + {config.calibration_folds} training folds)"
    )
    return calibrate_from_predictions(files.predictions, coverage=CALIBRATION_COVERAGE, also=out_of_fold)


def run_experiment(
    config: TrainConfig,
    workdir: str | Path,
    sources: dict[str, Source] | None = None,
    strategy=None,
    callbacks=None,
    similarity_index: bool = True,
    peer_timeout: float | None = None,
) -> RunResult:
    """Train `config` in `workdir` (resuming whatever is there), evaluate on the test split, export.

    `strategy` defaults to `make_strategy(config.strategy)`, created here before any other TensorFlow work
    (multi-worker collectives must come first); `sources` defaults to the config's data. `similarity_index=False`
    leaves out the demo's similar-paintings index (a pass over every training image), for runs that are only
    compared, never served (the grid). `peer_timeout`: how long a multi-worker job's workers wait for each other
    at the start (seconds; default `artnet.training.cluster.PEER_TIMEOUT`).
    """
    workdir = Workdir(Path(workdir))
    config.validate()
    if strategy is None:
        strategy = make_strategy(config.strategy, peer_timeout=peer_timeout)
    refuse_unsupported(strategy, config)
    sources = sources or load_sources(config)
    model = train(config, workdir, sources, strategy=strategy, callbacks=callbacks)
    if is_multi_worker(strategy):  # the last collective is done: the workers part
        release_cluster(strategy)
    if not is_chief(strategy):  # a multi-worker job: the chief evaluates and exports
        return RunResult(workdir=workdir, model=model, report={}, card={}, chief=False, worker=worker_name(strategy))
    if is_multi_worker(strategy):  # alone from here: a copy outside the cluster, or predict() would wait on peers
        model = detached(model)
    index_source = sources["train"] if similarity_index else None
    report, card = calibrate_evaluate_export(model, config, sources, workdir, index_source=index_source)
    return RunResult(workdir=workdir, model=model, report=report, card=card, worker=worker_name(strategy))


def calibrate_evaluate_export(
    model, config: TrainConfig, sources: dict[str, Source], workdir: Workdir, index_source=None, carry_from=None
) -> tuple[dict, dict]:
    """A trained model's last steps, for a run and for `recalibrate`: fit its calibration (`fit_calibration`),
    evaluate the test split with it, export with the card (and `index_source`'s similar-paintings index, or what
    `carry_from`, an earlier export, holds). Returns (the test report, the card)."""
    recorded = workdir.read_label_counts()
    counts, train_year = recorded["counts"], recorded.get("year_mean")
    calibration = fit_calibration(model, sources, workdir, counts, train_year, config)
    test = workdir.test_evaluation.root
    report = evaluate(model, sources["test"], test, train_counts=counts, train_year=train_year, calibration=calibration)
    card = model_card(sources, counts, report)
    cross_fitted = bool(calibration and config.calibration_folds)
    # The card says what the calibration was fitted on; over a carried card, None, not absent: an earlier
    # cross-fitted calibration's note must not speak for this one.
    if cross_fitted or carry_from:
        card["calibration_folds"] = config.calibration_folds if cross_fitted else None
    export(
        model, workdir.export.root, card=card, index_source=index_source, calibration=calibration, carry_from=carry_from
    )
    return report, card


def recalibrate(workdir: str | Path, folds: int) -> dict:
    """Fit a finished run's calibration again, on validation alone (`folds` 0) or cross-fitted over `folds` folds
    of its training painters, without training the served model again: evaluate its test split with the new
    calibration and re-export it (its card and similar-paintings index carried; its calibration line says what
    the calibration was fitted on). Returns the test report. LiteRT files are not carried: they serve the raw
    softmax either way; `artnet export --litert` writes them again."""
    import json

    from artnet.config import from_dict
    from artnet.serving.export import load_model

    workdir = Workdir(Path(workdir))
    if not workdir.finished():
        raise FileNotFoundError(f"{workdir.root} is not a finished run: train it first (artnet train)")
    config = dataclasses.replace(from_dict(json.loads(workdir.config.read_text())), calibration_folds=folds)
    config.validate()
    carried = workdir.export.root if workdir.export.card.is_file() else None
    model, sources = load_model(workdir.model), load_sources(config)
    report, _ = calibrate_evaluate_export(model, config, sources, workdir, carry_from=carried)
    return report
