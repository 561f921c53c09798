"""Recipe search for the cpu recipe, on validation only: which training recipe earns its fine-tuning?

Every variant is the cpu recipe (`experiments/configs/cpu.py:multihead`) plus overrides, trained from the feature
cache (the frozen front of EfficientNet-Lite0 runs once per view; only the unfrozen tail trains), and scored on
the painter-disjoint VALIDATION split, plain and with test-time flip (the mean of the image's and its mirror's
probabilities). The linear probe is scored on the same validation images. Nothing here looks at the test split:
the winner is then trained once with `artnet train` and reported on test by `experiments/compare.py`.

    .venv/bin/python experiments/recipe_search.py --out experiments/results/recipe_search   # resumable

Writes `<out>.csv` and `<out>.md` (one row per variant x head) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from artnet import labels  # noqa: E402
from artnet.config import apply_overrides, load_config  # noqa: E402
from artnet.evaluation import metrics  # noqa: E402

_percent = functools.partial(metrics.percent, missing="", suffix="")  # a table cell: the header says %

RECIPE = str(Path(__file__).resolve().parent / "configs" / "cpu.py") + ":multihead"
COMMON = ["data.feature_views=2"]
CONVERGE = ["head_epochs=15", "early_stopping_patience=2"]
LAST_STAGE = ["unfreeze=block7a_expand_conv", "epochs=27"]  # the last stage + top conv: 1.0 of 3.4 M weights
# The per-channel mean and std of each stage's output below the last stage (frozen, so cacheable): style statistics.
STYLE = ["style_layers=block2b_add,block3b_add,block4c_add,block5c_add,block6d_add"]
PROBE_ONLY = ["heads_from=probe", "epochs=0", "head_epochs=0"]  # the model is its linear probe
LITE2 = ["backbone=efficientnet_lite2"]
LITE2_STYLE = "style_layers=block2c_add,block3c_add,block4d_add,block5d_add,block6e_add"  # Lite2's stage ends
# name -> overrides on top of the cpu recipe (and COMMON). Epoch counts are maxima: early stopping on validation
# loss (patience 2, best weights restored) decides, except in `today`, the old recipe as it was (fine-tuning the
# last two stages, 2 + 2 epochs). Fine-tuning from block6a costs ~2 min per epoch from the cache on 2 cores,
# from block7a ~4x less: the search explores from block7a.
VARIANTS: dict[str, list[str]] = {
    "today (2+2 epochs, from block6a)": ["unfreeze=block6a_expand_conv", "early_stopping_patience=0"],
    "heads only, converged": ["head_epochs=40", "epochs=40", "early_stopping_patience=3"],
    "from block7a, converged": CONVERGE + LAST_STAGE,
    "from block7a, label smoothing 0.1": CONVERGE + LAST_STAGE + ["label_smoothing=0.1"],
    "from block7a, class weights ^0.5": CONVERGE + LAST_STAGE + ["class_weight_power=0.5"],
    "from block7a, ordinal timeframe": CONVERGE + LAST_STAGE + ["timeframe_loss=ordinal"],
    "from block7a, year head": CONVERGE + LAST_STAGE + ["year_head=true"],
    "from block7a, AdamW (weight decay 0.05)": CONVERGE + LAST_STAGE + ["optimizer=adamw", "weight_decay=0.05"],
    "from block7a, fine-tune lr 3e-4": CONVERGE + LAST_STAGE + ["fine_tune_learning_rate=3e-4"],
    "from block7a, 4 views (+2 affine warps)": CONVERGE + LAST_STAGE + ["data.feature_views=4"],
    "from block7a, MixUp 0.2 (of cached features)": CONVERGE + LAST_STAGE + ["data.augment.mixup=0.2"],
    "heads only, style statistics (stages 2-6), converged": ["head_epochs=40", "epochs=40", "early_stopping_patience=3"]
    + STYLE,
    "from block7a, style statistics (stages 2-6)": CONVERGE + LAST_STAGE + STYLE,
    # LP-FT (Kumar et al. 2022): each head starts as its linear probe on the same frozen features, then the last
    # stage fine-tunes; unless that raises the mean validation balanced accuracy, the model stays the probe.
    "linear probe in the model, pooled + style statistics": PROBE_ONLY + STYLE,
    "LP-FT from block7a": CONVERGE + LAST_STAGE + ["heads_from=probe"],
    "LP-FT from block7a, style statistics (stages 2-6)": CONVERGE + LAST_STAGE + ["heads_from=probe"] + STYLE,
    # The recipe above with keras-cv RandAugment (2 ops, magnitude 0.3) after the warps of views 3 and 4: does
    # stronger augmentation let the last stage fine-tune past its probe?
    "LP-FT from block7a, style statistics, 4 views (+2 warps with RandAugment)": CONVERGE
    + LAST_STAGE
    + ["heads_from=probe"]
    + STYLE
    + ["data.feature_views=4", "data.augment.randaugment=true"],
    # Deeper: the last two stages (block6a on) and the top convolution, to convergence, from the pooled probe (the
    # style statistics' block6d_add would lie in the unfrozen part, which the cache refuses).
    "LP-FT from block6a, converged": CONVERGE
    + ["unfreeze=block6a_expand_conv", "epochs=27", "heads_from=probe", "style_layers="],
    # A larger backbone of the same family (EfficientNet-Lite2, 260 px, ~1.8x Lite0's forward cost), its own
    # stage ends as style layers: does the probe gain more from a better frozen network than from fine-tuning?
    # (style first: its one backbone pass caches the pooled features too)
    "linear probe in the model, Lite2, pooled + style statistics": LITE2 + PROBE_ONLY + [LITE2_STYLE],
    "linear probe in the model, Lite2, pooled": LITE2 + PROBE_ONLY + ["style_layers="],
    # Lite0 at 288 px (the thumbnails are 224 px, upsampled): FixRes (Touvron et al. 2019) found that a network
    # trained on random-resized crops sees objects larger in training than at test, so it scores better when
    # tested at ~1.15-1.3x its training size. Is it the same for the probe's frozen features?
    "linear probe in the model, 288 px, pooled + style statistics": PROBE_ONLY + STYLE + ["image_size=288"],
    "linear probe in the model, 288 px, pooled": PROBE_ONLY + ["image_size=288", "style_layers="],
    # Not run yet (out of time on 2 cores): from block6a with the style statistics (only on images, since
    # block6d_add would lie in the unfrozen part, which the cache refuses); CutMix (it cuts images, and the cache
    # holds features); early stopping on balanced accuracy rather than validation loss.
}
COLUMNS = (
    "variant",
    "head",
    "n",
    "top1",
    "balanced_accuracy",
    "top1_flip",
    "balanced_accuracy_flip",
    "within_one_block",
    "year_mae",
    "year_median_ae",
    "epochs",
    "seconds",
)


def validation_probabilities(model, config, sources) -> tuple[dict, dict]:
    """Per head, validation probabilities plain and with test-time flip, from cached front features (and, with a
    year head, its raw (μ, log σ) outputs under `year`; flipped: the mean of the two views' outputs)."""
    import keras

    from artnet.models.artnet import POOLED
    from artnet.training.compile import cut_layer, heads_only
    from artnet.training.feature_cache import FeatureSpec, cached_features

    backbone = model.backbone
    # A heads-only model is scored through the same path, from the input of the last stage.
    cut = cut_layer(backbone, "block7a_expand_conv" if heads_only(config) else config.unfreeze)
    spec = FeatureSpec(
        config.backbone, config.backbone_weights, model.image_size, layer=cut, views=2, framing=model.framing
    )
    views = [cached_features(sources["validation"], spec)]
    tail = keras.Model(backbone.get_layer(cut).output, backbone.output)
    inputs = [keras.Input(tuple(views[0].shape[2:]))]
    features = model.get_layer(POOLED)(tail(inputs[0]))
    if model.style_layers:  # the cached style statistics, normalised and joined by the model's own layers
        from artnet.models.artnet import FEATURES, STYLE_NORM
        from artnet.training.feature_cache import style_layer_spec

        style_spec = dataclasses.replace(spec, layer=style_layer_spec(model.style_layers))
        views.append(cached_features(sources["validation"], style_spec))
        inputs.append(keras.Input(tuple(views[1].shape[2:])))
        features = model.get_layer(FEATURES)([features, model.get_layer(STYLE_NORM)(inputs[1])])
    tasks = getattr(model, "tasks", None) or model.heads
    network = keras.Model(inputs, {task: model.get_layer(task)(features) for task in tasks})
    plain = network.predict([view[0].astype(np.float32) for view in views], batch_size=64, verbose=0)
    mirrored = network.predict([view[1].astype(np.float32) for view in views], batch_size=64, verbose=0)
    return (
        {task: np.asarray(plain[task]) for task in tasks},
        {task: (np.asarray(plain[task]) + np.asarray(mirrored[task])) / 2 for task in tasks},
    )


def scores(y_true: np.ndarray, probabilities: np.ndarray) -> tuple[int, float, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    known = y_true >= 0
    predicted = probabilities.argmax(axis=1)[known]
    return (
        int(known.sum()),
        float(accuracy_score(y_true[known], predicted)),
        float(balanced_accuracy_score(y_true[known], predicted)),
    )


def probe_rows(sources, config, probe_dir: Path) -> list[dict]:
    """The linear probe on the same validation images (C and class weighting chosen there: its best case).

    Read from the probe arm's own choices (`artnet probe`, its `probe.json`) when they exist; else fitted here.
    """
    from artnet.workdir import Workdir

    choices_file = Workdir(probe_dir).probe_choices
    if choices_file.is_file():
        rows = []
        for head, choice in json.loads(choices_file.read_text())["choices"].items():
            if head == labels.YEAR:  # the ridge year probe: scored in years only
                rows.append(
                    {
                        "variant": f"linear probe (ridge, alpha={choice['alpha']:g})",
                        "head": head,
                        "n": int((sources["validation"].years >= 0).sum()),
                        "year_mae": choice["validation_mae_years"],
                    }
                )
                continue
            rows.append(
                {
                    "variant": f"linear probe (C={choice['C']}, {choice['class_weight'] or 'unweighted'})",
                    "head": head,
                    "n": int((sources["validation"].labels[head] >= 0).sum()),
                    "top1": choice["validation_top1"],
                    "balanced_accuracy": choice["validation_balanced_accuracy"],
                    "top1_flip": None,
                    "balanced_accuracy_flip": None,
                    "epochs": None,
                    "seconds": None,
                }
            )
        return rows
    from artnet.training.feature_cache import FeatureSpec, cached_features
    from artnet.training.probe import choose_and_fit

    spec = FeatureSpec(config.backbone, config.backbone_weights, config.image_size, framing=config.data.framing)
    train_x = cached_features(sources["train"], spec)[0].astype(np.float32)
    val_x = cached_features(sources["validation"], spec)[0].astype(np.float32)
    rows = []
    for head in labels.HEADS:
        started = time.monotonic()
        _, choice = choose_and_fit(
            head, train_x, sources["train"].labels[head], val_x, sources["validation"].labels[head]
        )
        n = int((sources["validation"].labels[head] >= 0).sum())
        rows.append(
            {
                "variant": f"linear probe (C={choice.C}, {choice.class_weight or 'unweighted'})",
                "head": head,
                "n": n,
                "top1": choice.validation_top1,
                "balanced_accuracy": choice.validation_balanced_accuracy,
                "top1_flip": None,
                "balanced_accuracy_flip": None,
                "epochs": None,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    return rows


def run_variant(name: str, overrides: list[str], runs: Path, sources) -> list[dict]:
    from artnet.training.train import train

    config = apply_overrides(load_config(RECIPE), COMMON + overrides)
    workdir = runs / "".join(c if c.isalnum() else "_" for c in name).strip("_")
    if workdir.exists():  # a variant without rows is trained afresh: an earlier attempt's logs would be appended to
        shutil.rmtree(workdir)
    started = time.monotonic()
    model = train(config, workdir, sources)
    seconds = round(time.monotonic() - started, 1)
    log = workdir / "metrics.jsonl"  # absent when no epoch ran (the probe written into the heads, alone)
    epochs = sum(1 for _ in log.read_text().splitlines()) if log.is_file() else 0
    plain, flipped = validation_probabilities(model, config, sources)
    rows = []
    for head in model.heads:
        y_true = sources["validation"].labels[head]
        n, top1, balanced = scores(y_true, plain[head])
        _, top1_flip, balanced_flip = scores(y_true, flipped[head])
        time_scores = {}
        if head == "timeframe":
            from artnet.evaluation import metrics

            time_scores = metrics.timeframe_year_metrics(
                y_true, plain[head], labels.TIMEFRAMES, sources["validation"].years
            )
        rows.append(
            {
                "variant": name,
                "head": head,
                "n": n,
                "top1": top1,
                "balanced_accuracy": balanced,
                "top1_flip": top1_flip,
                "balanced_accuracy_flip": balanced_flip,
                "within_one_block": time_scores.get("within_one_block"),
                "year_mae": time_scores.get("year_mae"),
                "year_median_ae": time_scores.get("year_median_ae"),
                "epochs": epochs,
                "seconds": seconds,
            }
        )
    if labels.YEAR in plain:  # the year head: scored in years, and read as a block (its top-1 and ±1 block)
        from artnet.models.year import year_metrics

        validation = sources["validation"]
        scored = year_metrics(validation.years, plain[labels.YEAR], validation.labels["timeframe"])
        flipped_scored = year_metrics(validation.years, flipped[labels.YEAR], validation.labels["timeframe"])
        rows.append(
            {
                "variant": name,
                "head": labels.YEAR,
                "n": scored["n"],
                "top1": scored["block_top1"],
                "balanced_accuracy": None,
                "top1_flip": flipped_scored["block_top1"],
                "balanced_accuracy_flip": None,
                "within_one_block": scored["within_one_block"],
                "year_mae": scored["mae"],
                "year_median_ae": scored["median_ae"],
                "epochs": epochs,
                "seconds": seconds,
            }
        )
    np.savez_compressed(workdir / "validation_predictions.npz", **plain)  # for experiments/time_heads.py
    return rows


def committed_rows(path: Path) -> list[dict]:
    """The rows of a table this script wrote (`<out>.csv`), with its numbers as numbers and blanks as None."""

    def value(text: str):
        if text == "":
            return None
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() and "." not in text else number

    with path.open(newline="") as table:
        return [
            {key: (text if key in ("variant", "head") else value(text)) for key, text in row.items()}
            for row in csv.DictReader(table)
        ]


def to_markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Recipe search (validation split only)",
        "",
        "- data: ../shared/wikiart-sample, group-stratified by painter; validation = painters seen in no training step",
        "- every variant: cpu recipe, EfficientNet-Lite0 (ImageNet), trained on the feature cache (2 views: image + "
        "mirror), overrides as named; `flip` = test-time flip; the probe's C and class weighting were chosen on "
        "this same validation split (its best case); the `Lite2` rows swap the backbone for EfficientNet-Lite2 "
        "(260 px, ImageNet), its own stage ends as style layers; the `288 px` rows feed Lite0 the 224 px images "
        "upscaled to 288 px",
        "- train s: wall time of training on the shared 2-core machine, including the one-off feature extraction "
        "for the first variant that needed its layer (`today`: block5c_add; `from block7a, converged`: block6d_add; "
        "in a later session, on a fresh machine, `AdamW`: pooled and block6d_add again; `4 views`: its 4 views; "
        "`Lite2, pooled + style statistics`: Lite2's pooled and style layers, train and validation, while tests ran; "
        "`288 px, pooled + style statistics`: its pooled and style layers, while tests ran; `RandAugment`: its 4 "
        "views of block7a's input, RandAugment at ~8 images/s; `LP-FT from block6a`: block6a's input, train and "
        "validation)",
        "- LP-FT rows: when fine-tuning lowers the mean validation balanced accuracy, the probe's weights go back, "
        "so the row is the probe in the model (`fine_tune` in the variant's probe.json: kept or not, the score at the "
        "start and at the end)",
        "- timeframe only: `±1 block` = top-1 block within one of the true one; `years` / `median` = mean / median "
        "absolute error of the top-1 block's centre against the painting's year, where the year is known (blank: not "
        "measured for that row)",
        "- `year` rows (the year head of `year_head=true`): n = validation paintings with a known year; top-1 and "
        "±1 block = the block of the predicted year against the timeframe label; years = its absolute error in "
        "years. Intervals for the time columns: experiments/results/time_heads.md",
        f"- command: `{command}`",
        "",
        "| variant | head | n | top-1 % | balanced % | top-1 % flip | balanced % flip | ±1 block % | years | median "
        "| epochs | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        row = {key: row.get(key) for key in COLUMNS}  # older rows lack the newer columns
        lines.append(
            f"| {row['variant']} | {row['head']} | {row['n']} | {_percent(row['top1'])} | "
            f"{_percent(row['balanced_accuracy'])} | {_percent(row['top1_flip'])} | "
            f"{_percent(row['balanced_accuracy_flip'])} | {_percent(row['within_one_block'])} | "
            f"{'' if row['year_mae'] is None else round(row['year_mae'])} | "
            f"{'' if row['year_median_ae'] is None else round(row['year_median_ae'])} | {row['epochs'] or ''} | "
            f"{row['seconds'] or ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/recipe_search"))
    parser.add_argument("--runs", type=Path, default=Path("runs/recipe_search"))
    parser.add_argument("--probe", type=Path, default=Path("runs/cpu/probe"), help="the probe arm's workdir")
    parser.add_argument("--only", action="append", default=[], help="run only these variants (repeatable)")
    args = parser.parse_args(argv)
    from artnet.data.sources import load_sources

    base = load_config(RECIPE)
    sources = load_sources(base)
    done_file = args.runs / "rows.jsonl"  # resumable: finished variants are not trained again
    args.runs.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.is_file() else []
    if not done and args.out.with_suffix(".csv").is_file():  # a fresh checkout: resume from the committed table
        done = committed_rows(args.out.with_suffix(".csv"))
        done_file.write_text("".join(json.dumps(row) + "\n" for row in done))
    finished = {row["variant"] for row in done}
    todo = [(name, overrides) for name, overrides in VARIANTS.items() if not args.only or name in args.only]
    if not any(row["variant"].startswith("linear probe") for row in done):
        todo.insert(0, ("linear probe", None))
    for name, overrides in todo:
        if name in finished:
            continue
        print(f"=== {name}", flush=True)
        rows = (
            probe_rows(sources, base, args.probe)
            if overrides is None
            else run_variant(name, overrides, args.runs, sources)
        )
        with done_file.open("a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        done += rows
    command = shlex.join(
        [".venv/bin/python", "experiments/recipe_search.py", *(argv if argv is not None else sys.argv[1:])]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(done)
    markdown = to_markdown(done, command)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
