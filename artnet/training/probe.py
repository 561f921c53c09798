"""The linear probe: the bar every fine-tuned recipe must clear.

Frozen backbone, pooled features (from the feature cache; with the config's `style_layers`, joined by their
style statistics, so that the probe sees what the model's heads see), one multinomial logistic regression per head
(scikit-learn), its L2 strength `C` and class weighting chosen on the validation split, which is painter-disjoint
from train (so the choice is painter-grouped). The chosen probe is refit on train and scored once on test; its
test evaluation is written in the same form as a trained model's (`report.json`, `predictions.npz`), so the
comparison runner tabulates it beside the fine-tuned arms.

    .venv/bin/artnet probe --config experiments/configs/cpu.py:multihead --workdir runs/cpu/probe
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from artnet import labels
from artnet.config import TrainConfig
from artnet.data.atomic_files import atomic_path, write_atomically
from artnet.data.sources import Source
from artnet.evaluation import metrics
from artnet.evaluation.evaluate import majority_classes
from artnet.models.artnet import POOLED as POOLED_LAYER
from artnet.models.artnet import STYLE_NORM
from artnet.models.year import YEAR_SCALE, normalised_years, year_metrics
from artnet.training.feature_cache import FeatureSpec, cached_layers, style_layer_spec
from artnet.training.records import write_label_counts
from artnet.workdir import Evaluation, Workdir

# Standardised 1280-d features: on the WikiArt sample validation chose C at the grid's low edge twice (1e-3, then
# 1e-4), so the grid reaches 1e-5; C >= 0.3 only ever overfit while taking most of the fitting time.
C_GRID = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
CLASS_WEIGHTS = (None, "balanced")


@dataclasses.dataclass
class ProbeChoice:
    head: str
    C: float
    class_weight: str | None
    validation_balanced_accuracy: float
    validation_top1: float
    grid: list[dict]


def _fit(x, y, C: float, class_weight):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight=class_weight, max_iter=3000, tol=1e-4))
    return model.fit(x, y)


def _fit_along_c(x, y, C_values, class_weight):
    """Yields (C, fitted pipeline) for each C, ascending, each fit starting from the previous solution.

    The loss is strictly convex, so a warm start heads for the same optimum as `_fit`, only sooner: the weights
    change little from one C to the next, and the strongly regularised fits at the start of the path converge in
    a few iterations. Standardisation is fitted once and shared. Measured against cold fits on the cpu recipe's
    features (benchmarks/probe_path.py): 1.8x faster, the same C in 5 of 6 head x weighting grids (the sixth
    within 0.3 point); both stop on the solver's tolerance, so single probabilities differ by up to 0.16. On the
    full recipe's ~10.8k NASNetLarge statistics this is what keeps the grid affordable.
    """
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    regression = LogisticRegression(class_weight=class_weight, max_iter=3000, tol=1e-4, warm_start=True)
    for C in sorted(C_values):
        regression.set_params(C=C).fit(z, y)
        # the same step names as make_pipeline's, so both kinds of fitted probe read alike
        yield C, Pipeline([("standardscaler", scaler), ("logisticregression", copy.deepcopy(regression))])


def full_probabilities(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over the whole vocabulary (classes absent from training get 0)."""
    out = np.zeros((len(x), num_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def frozen_features(source: Source, config: TrainConfig, image_size, cache_dir=None, views: int = 1) -> np.ndarray:
    """(views x n, d) float32 features of `source` that `config`'s heads see, frozen: the pooled features, joined
    by the style statistics of `config.style_layers` when it has them (one cache, one backbone pass); the plain
    view alone by default, else view after view (`photo_views` says when training rows take every view)."""
    spec = FeatureSpec(
        backbone=config.backbone,
        weights=config.backbone_weights,
        image_size=image_size,
        framing=config.data.framing,
        views=views,
        augment=config.data.augment if views > 1 else FeatureSpec().augment,
    )
    specs = [spec]
    if config.style_layers:
        specs.append(dataclasses.replace(spec, layer=style_layer_spec(config.style_layers)))
    parts = cached_layers(source, specs, cache_dir)
    return np.concatenate([part.reshape(-1, part.shape[-1]) for part in parts], axis=1).astype(np.float32)


def photo_views(config: TrainConfig) -> int:
    """How many views of each training image the probe fits on: all of the feature cache's views when they hold
    phone-photo cut-outs (`Augment(photo=True)`: the heads must read photos too), else the plain view alone (what
    the recipe's probe was chosen with)."""
    return config.data.feature_views if config.data.augment.photo and config.data.feature_views > 1 else 1


def choose_and_fit(head: str, train_x, train_y, val_x, val_y, class_weights=CLASS_WEIGHTS):
    """Grid over C x class weighting on validation balanced accuracy; returns (fitted model, choice)."""
    known_train, known_val = train_y >= 0, val_y >= 0
    grid, best = [], None
    for class_weight in class_weights:
        for C, model in _fit_along_c(train_x[known_train], train_y[known_train], C_GRID, class_weight):
            predicted = model.predict(val_x[known_val])
            scores = {
                "C": C,
                "class_weight": class_weight,
                "balanced_accuracy": float(balanced_accuracy_score(val_y[known_val], predicted)),
                "top1": float(accuracy_score(val_y[known_val], predicted)),
            }
            grid.append(scores)
            if best is None or scores["balanced_accuracy"] > best[1]["balanced_accuracy"]:
                best = (model, scores)
    model, scores = best
    choice = ProbeChoice(head, scores["C"], scores["class_weight"], scores["balanced_accuracy"], scores["top1"], grid)
    return model, choice


# The year probe: ridge regression of the normalised year on standardised pooled features.
ALPHA_GRID = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
MIN_YEARS = 10  # fewer known training years than this: no year probe


@dataclasses.dataclass
class YearProbe:
    """A fitted ridge regression of the year, with a constant σ: its residual spread on validation."""

    model: object
    alpha: float
    sigma: float  # normalised units (YEAR_SCALE years each)
    validation_mae: float
    grid: list[dict]

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(μ, log σ) per example: the year head's output format, so `year_metrics` scores both alike."""
        mean = self.model.predict(x)
        return np.stack([mean, np.full(len(x), np.log(self.sigma))], axis=1)


def choose_and_fit_year(train_x, train_years, val_x, val_years) -> YearProbe | None:
    """Ridge over `ALPHA_GRID`, chosen on validation mean absolute error in years; None without enough years."""
    train_z, train_known = normalised_years(train_years)
    val_z, val_known = normalised_years(val_years)
    if train_known.sum() < MIN_YEARS or not val_known.any():
        return None
    grid, best = [], None
    for alpha in ALPHA_GRID:
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(train_x[train_known], train_z[train_known])
        residual = model.predict(val_x[val_known]) - val_z[val_known]
        mae = float(np.abs(residual).mean() * YEAR_SCALE)
        grid.append({"alpha": alpha, "validation_mae_years": mae})
        if best is None or mae < best[1]:
            best = (model, mae, alpha, float(residual.std()))
    model, mae, alpha, sigma = best
    return YearProbe(model, alpha, max(sigma, 1e-3), mae, grid)


@dataclasses.dataclass
class FittedProbe:
    """The probe arm fitted on train (its choices made on validation): a classifier per head, the year's ridge
    when there were years enough, and the training split's baselines that its evaluations compare against."""

    description: str
    heads: dict[str, object]
    year: YearProbe | None
    train_counts: dict[str, list[int]]
    train_year: float | None


def run_probe(
    config: TrainConfig,
    workdir: str | Path,
    sources: dict[str, Source],
    cache_dir: str | Path | None = None,
    also_evaluate: dict[str, Source] | None = None,
) -> dict:
    """Probe every head of `config` on its data; writes `<workdir>/eval_test/` and `probe.json`; returns the report.

    `also_evaluate` ({name: source}) scores the same fitted probe on other collections too (the cross-collection
    check), each into `<workdir>/eval_<name>/` with the training split's majority baselines.
    """
    started = time.monotonic()
    files = Workdir(Path(workdir))
    files.root.mkdir(parents=True, exist_ok=True)
    features = {
        split: frozen_features(source, config, config.image_size, cache_dir) for split, source in sources.items()
    }
    train_counts = write_label_counts(files, sources["train"])
    probe, choices = fit_probe(config, features, sources, train_counts)
    report = write_probe_evaluation(probe, sources["test"], features["test"], files.test_evaluation.root)
    for name, source in (also_evaluate or {}).items():
        source_features = frozen_features(source, config, config.image_size, cache_dir)
        write_probe_evaluation(probe, source, source_features, files.root / f"eval_{name}")
    seconds = round(time.monotonic() - started, 1)
    write_atomically(files.probe_choices, json.dumps({"choices": choices, "seconds": seconds}, indent=2).encode())
    summary = {"seconds": seconds, "parameters": None, "kind": "linear probe"}
    write_atomically(files.train_summary, json.dumps(summary).encode())
    return report


def fit_probe(
    config: TrainConfig, features: dict[str, np.ndarray], sources: dict[str, Source], train_counts: dict
) -> tuple[FittedProbe, dict]:
    """The probe of every head of `config` (and of the year), fitted on train and chosen on validation; returns it
    with its choices and their validation grids (what `probe.json` records)."""
    fitted, choices = {}, {}
    for head in config.heads:
        fitted[head], choice = choose_and_fit(
            head,
            features["train"],
            sources["train"].labels[head],
            features["validation"],
            sources["validation"].labels[head],
        )
        choices[head] = dataclasses.asdict(choice)
    year_probe = choose_and_fit_year(
        features["train"], sources["train"].years, features["validation"], sources["validation"].years
    )
    if year_probe is not None:
        choices[labels.YEAR] = {
            "alpha": year_probe.alpha,
            "sigma_years": year_probe.sigma * YEAR_SCALE,
            "validation_mae_years": year_probe.validation_mae,
            "grid": year_probe.grid,
        }
    train_years = sources["train"].years[sources["train"].years >= 0]
    train_year = float(train_years.mean()) if len(train_years) else None
    description = f"linear probe on {config.backbone} pooled features" + (
        f" and the style statistics of {', '.join(config.style_layers)}" if config.style_layers else ""
    )
    return FittedProbe(description, fitted, year_probe, train_counts, train_year), choices


def probe_report(probe: FittedProbe, source: Source, source_features: np.ndarray) -> tuple[dict, dict]:
    """The probe's evaluation of `source` in a trained model's form (`artnet.evaluation.evaluate`): (report,
    probabilities per head, and the year's (μ, log σ) when there is a year probe)."""
    majority = majority_classes(probe.train_counts, source)
    report = {
        "model": probe.description,
        "data": source.name,
        "examples": len(source),
        "majority_baseline_from": "the training split's label counts",
        "heads": {},
    }
    probabilities = {}
    for head, model in probe.heads.items():
        names = list(labels.VOCABULARIES[head])
        probabilities[head] = full_probabilities(model, source_features, len(names))
        report["heads"][head] = metrics.head_metrics(source.labels[head], probabilities[head], names, majority[head])
        if head == "timeframe":  # how far in time, as for a trained model (artnet.evaluation.evaluate)
            report["heads"][head].update(
                metrics.timeframe_year_metrics(source.labels[head], probabilities[head], names, source.years)
            )
    if probe.year is not None:
        probabilities[labels.YEAR] = probe.year.raw(source_features)
        report[labels.YEAR] = year_metrics(
            source.years, probabilities[labels.YEAR], source.labels["timeframe"], constant=probe.train_year
        )
    return report, probabilities


def write_probe_evaluation(probe: FittedProbe, source: Source, source_features: np.ndarray, folder: Path) -> dict:
    """`probe_report` written into `folder` as a trained model's evaluation is (report.json/.md, predictions.npz),
    each file whole or not at all, report.json last: `Evaluation.exists()` (what the comparison runner skips on)
    then means every file is there."""
    evaluation = Evaluation(folder)
    evaluation.root.mkdir(parents=True, exist_ok=True)
    report, probabilities = probe_report(probe, source, source_features)
    truth = {f"{h}_true": source.labels[h] for h in labels.HEADS}
    painters = source.painters
    with atomic_path(evaluation.predictions) as partial:
        np.savez_compressed(partial, **probabilities, **truth, year_true=source.years, painter=painters)
    write_atomically(evaluation.report_md, metrics.format_report_markdown(report).encode())
    write_atomically(evaluation.report_json, json.dumps(report, indent=2).encode())
    return report


# --- the probe as the starting point of fine-tuning (LP-FT) ------------------------------------------------------

ABSENT_CLASS_LOGIT = -30.0  # a class the training split never shows: the probe cannot answer it, nor can the head


def probe_into_heads(model, config: TrainConfig, sources: dict[str, Source], cache_dir=None) -> dict:
    """Fit the linear probe of each head on the cached frozen features that `model`'s heads see (pooled, and the
    style statistics with style layers) and write it into the model's layers: the head's Dense takes the probe's
    weights with its standardisation folded in, and the style statistics' BatchNormalization is set to the same
    standardisation. The model then computes the probe exactly (at inference), and fine-tuning starts from it.
    Returns the choices made on validation, per head."""
    views = photo_views(config)
    train_x = frozen_features(sources["train"], config, model.image_size, cache_dir, views=views)
    val_x = frozen_features(sources["validation"], config, model.image_size, cache_dir)
    width = model.get_layer(POOLED_LAYER).output.shape[-1]  # the pooled part; the rest is style statistics
    # Balanced class weights when the recipe balances its losses (class_weight_power 1), else both are tried.
    weighting = ("balanced",) if config.class_weight_power == 1 else CLASS_WEIGHTS
    # The style statistics' BatchNormalization standardises them once for every head, by all training rows;
    # each head's probe standardised them by its own rows (those with a known label): the difference is folded
    # into that head's weights, as the pooled part's whole standardisation is.
    style_mean, style_scale = train_x[:, width:].mean(axis=0), train_x[:, width:].std(axis=0)
    style_scale = np.where(style_scale > 0, style_scale, 1.0)
    choices = {}
    for head in model.heads:
        train_y = np.tile(sources["train"].labels[head], views)  # the same label for every view of a painting
        fitted, choice = choose_and_fit(head, train_x, train_y, val_x, sources["validation"].labels[head], weighting)
        scaler, regression = fitted[0], fitted[-1]
        coef, intercept = regression.coef_, regression.intercept_
        if len(regression.classes_) == 2:  # scikit-learn's binary form: one logit, for the second class
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        mean, scale = scaler.mean_, scaler.scale_
        pooled_coef = coef[:, :width] / scale[:width]  # on the raw pooled features
        style_coef = coef[:, width:] / scale[width:]  # on the raw style statistics...
        kernel = np.concatenate([pooled_coef, style_coef * style_scale], axis=1).T  # ...as the BN hands them on
        bias = intercept - pooled_coef @ mean[:width] - style_coef @ (mean[width:] - style_mean)
        full_kernel = np.zeros((kernel.shape[0], len(labels.VOCABULARIES[head])), np.float32)
        full_bias = np.full(len(labels.VOCABULARIES[head]), ABSENT_CLASS_LOGIT, np.float32)
        full_kernel[:, regression.classes_], full_bias[regression.classes_] = kernel, bias
        model.get_layer(head).set_weights([full_kernel, full_bias])
        choices[head] = {k: v for k, v in dataclasses.asdict(choice).items() if k != "grid"}
    if model.style_layers:
        norm = model.get_layer(STYLE_NORM)
        gamma = np.sqrt(style_scale**2 + norm.epsilon) / style_scale  # so that the BN computes (x - mean) / scale
        norm.set_weights([gamma, np.zeros_like(style_mean), style_mean, style_scale**2])
    return choices
