"""Out-of-fold answers for calibration: what models trained without some painters say about those painters.

A run's calibration (`artnet.evaluation.calibration`: a temperature and a conformal set rule per head) must be
fitted on answers about painters the model never trained on. The validation split alone holds few of them (the
WikiArt sample's has 25, 13 with a school, and one painter holds 63 % of its images), and coverage then moves by
tens of points with which painters those are. Cross-fitting adds the training painters: they are cut into
`folds` groups by painter (a stable hash, so a painter never straddles two), and for each group the run's own
recipe trains a model without it and answers for it. Together with the served model's answers on validation,
every painter of train and validation then has answers from a model that never saw them: five times the painters
for the WikiArt sample (`experiments/calibration.py` measures both).

The fold models train as the served model was made, from the feature cache (`artnet.training.cache_fit`), so
each costs the run's training minus its feature extraction; image training would cost `folds` whole runs, and is
refused (`TrainConfig.validate`). "As the served model was made" includes LP-FT's verdict: where validation undid
the run's fine-tuning (probe.json), the served model is its probe, and the fold models are probes too (fold
models that kept their own fine-tuning answered with other confidence than the model they stand in for: on the
cpu recipe, test ECE 0.046 / 0.179 / 0.035 against 0.031 / 0.122 / 0.025 with matched folds). They are a little
weaker than the served model (less data). Their answers are kept in the workdir (`out_of_fold.npz`), checked
when read back, so a rerun reuses them.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np

from artnet.config import TrainConfig
from artnet.data import pipeline
from artnet.data.atomic_files import atomic_path
from artnet.data.sources import Source, subset
from artnet.data.wga.splits import stable_fraction
from artnet.evaluation.evaluate import predict_probabilities
from artnet.training.cache_fit import fit_from_cache
from artnet.training.checked_files import warn
from artnet.training.lpft import read_probe_choices
from artnet.training.strategy import make_strategy
from artnet.training.train import begin, build_model
from artnet.workdir import Workdir

FOLD_SALT = "calibration-fold"
PAINTER = "painter"  # the npz key of each answer's painter
FOLD = "fold"  # and of its fold
RECIPE = "unfreeze"  # and of the fold models' `unfreeze` ("none": heads only, as a probe whose fine-tuning was undone)


def painter_folds(source: Source, folds: int) -> np.ndarray:
    """Each example's fold, 0..folds-1, by its painter's stable hash: a painter's works share one fold.
    ValueError when the source does not name its painters (cross-fitting by image would leak a painter's style
    from the fold models' training into their answers)."""
    painters = source.painters
    if not len(painters) or (painters == "").any():
        raise ValueError(
            f"{source.name}: cross-fitted calibration folds by painter, and some examples name none: "
            "set calibration_folds=0 (validation only), or give every example its author"
        )
    return np.asarray([min(int(stable_fraction(p, FOLD_SALT) * folds), folds - 1) for p in painters])


def out_of_fold_predictions(config: TrainConfig, sources: dict[str, Source], workdir: Workdir) -> dict:
    """Per class head, the training split's answers (probabilities, in the split's order), each from the fold model
    that did not train on its painter; with each head's labels (`<head>_true`), `painter` and `fold`. Read back
    from `workdir.out_of_fold` when an earlier run made them for the same split and fold count."""
    folds, train = config.calibration_folds, sources["train"]
    fold_of = painter_folds(train, folds)
    config = fold_recipe(config, workdir)
    stored = read_out_of_fold(workdir, config, fold_of)
    if stored is not None:
        return stored
    answers = {head: np.zeros((len(train), 0)) for head in config.heads}
    for fold in range(folds):
        held_out = fold_of == fold
        painters = len(set(train.painters[held_out]))
        print(
            f"calibration fold {fold + 1}/{folds}: training without {painters} painters ({held_out.sum()} images)",
            flush=True,
        )
        model = train_without(config, sources, held_out, workdir.root / "calibration_folds" / f"fold{fold}")
        predicted = predict_probabilities(model, subset(train, held_out, f"{train.name}[fold {fold}]"))
        for head in config.heads:
            if answers[head].shape[1] == 0:
                answers[head] = np.zeros((len(train), predicted[head].shape[1]))
            answers[head][held_out] = predicted[head]
    record = {
        **answers,
        **{f"{head}_true": train.labels[head] for head in config.heads},
        PAINTER: train.painters,
        FOLD: fold_of,
        RECIPE: np.asarray(config.unfreeze),
    }
    with atomic_path(workdir.out_of_fold) as partial, partial.open("wb") as stream:
        np.savez(stream, **record)
    shutil.rmtree(workdir.root / "calibration_folds", ignore_errors=True)  # each fold's logs: the answers are kept
    return record


def fold_recipe(config: TrainConfig, workdir: Workdir) -> TrainConfig:
    """The config the fold models train with: the run's, heads only where LP-FT undid the run's fine-tuning (its
    probe.json says so), since the served model is then the probe (see the top)."""
    if config.heads_from != "probe" or not workdir.probe_choices.is_file():
        return config
    verdict = read_probe_choices(workdir).get("fine_tune")
    if isinstance(verdict, dict) and verdict.get("kept") is False:
        return dataclasses.replace(config, unfreeze="none")
    return config


def train_without(config: TrainConfig, sources: dict[str, Source], held_out: np.ndarray, folder):
    """The run's recipe on the training split less `held_out`, validated on the run's validation split, in
    `folder` (its probe choices and epoch logs); returns the model."""
    workdir = Workdir(folder)
    workdir.root.mkdir(parents=True, exist_ok=True)
    begin(config, workdir, chief=True)  # the run's seed, so a rerun trains the same fold models
    train = sources["train"]
    kept = {**sources, "train": subset(train, ~held_out, f"{train.name}[less a calibration fold]")}
    tables = pipeline.head_weight_tables(kept["train"].labels, config.heads, config.class_weight_power)
    model = build_model(config, make_strategy("none"))
    fit_from_cache(model, config, kept, tables, workdir)
    return model


def read_out_of_fold(workdir: Workdir, config: TrainConfig, fold_of: np.ndarray) -> dict | None:
    """The stored answers when they fit this run (the same heads, examples, painters' folds), else None, with a
    one-line warning when a file was there but unusable (it is then made again)."""
    path = workdir.out_of_fold
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            record = {key: saved[key] for key in saved.files}
    except (OSError, ValueError, EOFError) as error:
        warn(f"{path} is unreadable ({type(error).__name__}: {error}); the fold models are trained again")
        return None
    rows = len(fold_of)
    fits = (
        np.array_equal(record.get(FOLD), fold_of)
        and str(record.get(RECIPE, "")) == config.unfreeze
        and all(record.get(head) is not None and record[head].shape[0] == rows for head in config.heads)
        and all(np.isfinite(record[head]).all() for head in config.heads)
    )
    if not fits:
        warn(f"{path} is from another split, fold count or recipe; the fold models are trained again")
        return None
    return record
