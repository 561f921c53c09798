"""Time as time, on validation: plain cross-entropy vs the ordinal timeframe loss vs the year head, and their probes.

Each model is the cpu recipe variant of `experiments/recipe_search.py` of that name (trained there; this script
only scores), and the probes are the linear probe's timeframe regression and the ridge year probe
(`artnet.training.probe`), on the same painter-disjoint VALIDATION images. Per model: top-1 block, within ±1 block,
and the
mean and median absolute error in years (a block's centre for a timeframe head; the predicted year for the year
head, read as a block for the block columns), each with a 95 % percentile-bootstrap interval over validation
images (1,000 resamples). Beside them: a block drawn uniformly at random, always answering the training
majority block, and always answering the training mean year.

    .venv/bin/python experiments/time_heads.py   # after recipe_search.py has trained its variants

Writes experiments/results/time_heads.csv and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from artnet import labels  # noqa: E402
from artnet.evaluation import intervals, metrics  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# label -> the recipe_search variant that trained it
MODELS = {
    "cross-entropy (the cpu recipe)": "from block7a, converged",
    "ordinal timeframe loss": "from block7a, ordinal timeframe",
    "year head (timeframe head of the same model)": "from block7a, year head",
}
YEAR_HEAD_MODEL = "from block7a, year head"
COLUMNS = (
    "model",
    "reads",
    "n_blocks",
    "top1",
    "top1_low",
    "top1_high",
    "within_one_block",
    "within_one_block_low",
    "within_one_block_high",
    "n_years",
    "mae",
    "mae_low",
    "mae_high",
    "median_ae",
    "median_ae_low",
    "median_ae_high",
)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def variant_predictions(name: str, runs: Path, sources) -> dict[str, np.ndarray]:
    """The variant's validation outputs (saved by recipe_search, else computed from its model and saved)."""
    saved = runs / slug(name) / "validation_predictions.npz"
    if saved.is_file():
        with np.load(saved) as data:
            return {key: data[key] for key in data.files}
    recipe_search = _recipe_search()
    from artnet.config import apply_overrides, load_config
    from artnet.serving.export import load_model

    model_path = runs / slug(name) / "model.keras"
    if not model_path.is_file():
        raise SystemExit(f"{model_path} is missing: run experiments/recipe_search.py --only '{name}' first")
    config = apply_overrides(load_config(recipe_search.RECIPE), recipe_search.COMMON + recipe_search.VARIANTS[name])
    plain, _ = recipe_search.validation_probabilities(load_model(model_path), config, sources)
    np.savez_compressed(saved, **plain)
    return plain


def _recipe_search():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_search", HERE / "recipe_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block_scores(name: str, reads: str, predicted_block, predicted_year, blocks, years) -> dict:
    """Per-example values -> the row: point estimates and bootstrap intervals."""
    row = {"model": name, "reads": reads}
    labelled = blocks >= 0
    distance = np.abs(predicted_block[labelled] - blocks[labelled])
    row["n_blocks"] = int(labelled.sum())
    for key, values in (("top1", distance == 0), ("within_one_block", distance <= 1)):
        row[key] = float(values.mean())
        row[f"{key}_low"], row[f"{key}_high"] = intervals.bootstrap_interval(values.astype(float))
    dated = years >= 0
    error = np.abs(predicted_year[dated] - years[dated])
    row["n_years"] = int(dated.sum())
    for key, statistic in (("mae", np.mean), ("median_ae", np.median)):
        row[key] = float(statistic(error))
        row[f"{key}_low"], row[f"{key}_high"] = intervals.bootstrap_interval(error, statistic=statistic)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/recipe_search"))
    parser.add_argument("--probe", type=Path, default=Path("runs/cpu/probe"), help="the probe arm's workdir")
    parser.add_argument("--out", type=Path, default=RESULTS / "time_heads")
    args = parser.parse_args(argv)

    from artnet.config import load_config
    from artnet.data.sources import load_sources
    from artnet.models.year import block_of_year, year_estimate
    from artnet.training.feature_cache import FeatureSpec, cached_features
    from artnet.training.probe import _fit, choose_and_fit_year, full_probabilities
    from artnet.workdir import Workdir

    recipe_search = _recipe_search()
    config = load_config(recipe_search.RECIPE)
    sources = load_sources(config)
    validation, train = sources["validation"], sources["train"]
    blocks, years = validation.labels["timeframe"], validation.years
    centres = metrics.block_centres(labels.TIMEFRAMES)
    rows = []

    # Baselines: what a model scores without looking at the painting.
    k = len(labels.TIMEFRAMES)
    uniform = timeframe_chance(blocks, years, centres)
    rows.append({"model": "chance: a block uniformly at random", "reads": "expected value", **uniform})
    majority = int(np.bincount(train.labels["timeframe"][train.labels["timeframe"] >= 0], minlength=k).argmax())
    rows.append(
        block_scores(
            f"always the training majority block ({labels.TIMEFRAMES[majority]})",
            "block centre",
            np.full(len(blocks), majority),
            np.full(len(blocks), centres[majority]),
            blocks,
            years,
        )
    )
    train_years = train.years[train.years >= 0]
    mean_year = float(train_years.mean())
    rows.append(
        block_scores(
            f"always the training mean year ({mean_year:.0f})",
            "year",
            block_of_year(np.full(len(blocks), mean_year)),
            np.full(len(blocks), mean_year),
            blocks,
            years,
        )
    )

    # The probes, on the pooled features: the timeframe probe with the C the probe arm chose, the ridge year probe.
    spec = FeatureSpec(config.backbone, config.backbone_weights, config.image_size, framing=config.data.framing)
    train_x = cached_features(train, spec)[0].astype(np.float32)
    val_x = cached_features(validation, spec)[0].astype(np.float32)
    choice = json.loads(Workdir(args.probe).probe_choices.read_text())["choices"]["timeframe"]
    known = train.labels["timeframe"] >= 0
    probe = _fit(train_x[known], train.labels["timeframe"][known], choice["C"], choice["class_weight"])
    probe_block = full_probabilities(probe, val_x, k).argmax(axis=1)
    rows.append(
        block_scores(
            f"linear probe, timeframe (C={choice['C']:g})",
            "block centre",
            probe_block,
            centres[probe_block],
            blocks,
            years,
        )
    )
    year_probe = choose_and_fit_year(train_x, train.years, val_x, validation.years)
    probe_year, _ = year_estimate(year_probe.raw(val_x))
    rows.append(
        block_scores(
            f"linear probe, year (ridge, alpha={year_probe.alpha:g}; alpha chosen on this validation split)",
            "year",
            block_of_year(probe_year),
            probe_year,
            blocks,
            years,
        )
    )

    for label, name in MODELS.items():
        outputs = variant_predictions(name, args.runs, sources)
        predicted = outputs["timeframe"].argmax(axis=1)
        rows.append(block_scores(label, "block centre", predicted, centres[predicted], blocks, years))
        if name == YEAR_HEAD_MODEL:
            mean, _ = year_estimate(outputs[labels.YEAR])
            rows.append(
                block_scores("year head (its predicted year)", "year", block_of_year(mean), mean, blocks, years)
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    command = shlex.join(
        [".venv/bin/python", "experiments/time_heads.py", *(argv if argv is not None else sys.argv[1:])]
    )
    markdown = to_markdown(rows, command, len(validation))
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


def timeframe_chance(blocks, years, centres) -> dict:
    """Exact expected values of a block drawn uniformly at random (no interval: nothing is drawn from data)."""
    labelled = blocks >= 0
    distance = np.abs(np.arange(len(centres))[None, :] - blocks[labelled][:, None])
    dated = years >= 0
    error = np.abs(centres[None, :] - years[dated][:, None])
    return {
        "n_blocks": int(labelled.sum()),
        "top1": 1 / len(centres),
        "within_one_block": float(np.mean(distance <= 1)),
        "n_years": int(dated.sum()),
        "mae": float(error.mean()),
        "median_ae": float(np.median(error)),
    }


def _interval(row, key, scale=100.0, digits=1) -> str:
    value = row.get(key)
    if value is None or value == "":
        return ""
    text = f"{scale * value:.{digits}f}"
    if row.get(f"{key}_low") not in (None, ""):
        text += f" [{scale * row[f'{key}_low']:.{digits}f}, {scale * row[f'{key}_high']:.{digits}f}]"
    return text


def to_markdown(rows: list[dict], command: str, examples: int) -> str:
    lines = [
        "# Time as time: cross-entropy vs ordinal loss vs year head (validation split only)",
        "",
        f"- data: ../shared/wikiart-sample, group-stratified by painter; the validation split ({examples} images of "
        "painters in no training step). The models are the recipe_search variants of the same name: the cpu recipe "
        "from block7a, converged (experiments/results/recipe_search.md)",
        "- reads: how a prediction becomes a year (a block's centre) or a block (the block of the predicted year)",
        "- top-1 and ±1 block over the images with a known timeframe (n blocks); years over those with a known year "
        "(n years); [95 % bootstrap interval over validation images]; images of one painter are not independent, "
        "so the intervals are, if anything, too narrow",
        f"- command: `{command}`",
        "",
        "| model | reads | n blocks | top-1 % | ±1 block % | n years | mean error, years | median error, years |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['reads']} | {row['n_blocks']} | {_interval(row, 'top1')} | "
            f"{_interval(row, 'within_one_block')} | {row['n_years']} | {_interval(row, 'mae', 1.0, 0)} | "
            f"{_interval(row, 'median_ae', 1.0, 0)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
