"""The linear probe's grid, side by side: every C fitted cold (as before) against one warm-started path along C.

    .venv/bin/python benchmarks/probe_path.py                    # the cpu recipe's frozen features, every head
    .venv/bin/python benchmarks/probe_path.py --heads timeframe --train-fraction 0.5

The features are the cpu recipe's (experiments/configs/cpu.py:multihead: EfficientNet-Lite0 pooled features and
the style statistics of its stage ends, 2,176 per image) on ../shared/wikiart-sample, from the feature cache
(filled on first use: one backbone pass over train and validation). For each head and class weighting, both ways
fit the whole `artnet.training.probe.C_GRID` on train and score validation; the table gives each way's seconds, the C
each
chooses and the largest difference between the two ways' validation probabilities at every C (the loss is strictly
convex, so both should reach the same optimum, to the solver's tolerance). The cold fits run first, then the path,
in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "experiments" / "configs" / "cpu.py") + ":multihead"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=["school", "timeframe", "type"])
    parser.add_argument("--train-fraction", type=float, default=1.0, help="data.train_fraction (nested painters)")
    args = parser.parse_args()

    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    from artnet.config import apply_overrides, load_config
    from artnet.data.sources import load_sources
    from artnet.training.probe import C_GRID, CLASS_WEIGHTS, _fit, _fit_along_c, frozen_features

    config = apply_overrides(load_config(RECIPE), [f"data.train_fraction={args.train_fraction}"])
    if not Path(config.data.folder).is_dir():
        sys.exit(f"no {config.data.folder}: this benchmark needs ../shared/wikiart-sample beside the project")
    sources = load_sources(config)
    train_x, val_x = (frozen_features(sources[s], config, config.image_size) for s in ("train", "validation"))
    print(f"features: train {train_x.shape}, validation {val_x.shape}", flush=True)

    rows, totals = [], {"cold": 0.0, "path": 0.0}
    for head in args.heads:
        train_y, val_y = sources["train"].labels[head], sources["validation"].labels[head]
        known_train, known_val = train_y >= 0, val_y >= 0
        x, y, vx, vy = train_x[known_train], train_y[known_train], val_x[known_val], val_y[known_val]
        for class_weight in CLASS_WEIGHTS:
            started = time.perf_counter()
            cold = {C: _fit(x, y, C, class_weight) for C in C_GRID}
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            path = dict(_fit_along_c(x, y, C_GRID, class_weight))
            path_s = time.perf_counter() - started

            def chosen(models, vx=vx, vy=vy):
                scores = {C: balanced_accuracy_score(vy, m.predict(vx)) for C, m in models.items()}
                return max(C_GRID, key=lambda C: (scores[C], -C)), scores

            (cold_c, cold_scores), (path_c, path_scores) = chosen(cold), chosen(path)
            gap = max(np.abs(cold[C].predict_proba(vx) - path[C].predict_proba(vx)).max() for C in C_GRID)
            totals["cold"] += cold_s
            totals["path"] += path_s
            rows.append(
                f"| {head} | {class_weight or 'none'} | {cold_s:.1f} | {path_s:.1f} | {cold_s / path_s:.1f}x "
                f"| {cold_c:g} ({100 * cold_scores[cold_c]:.1f}) | {path_c:g} ({100 * path_scores[path_c]:.1f}) "
                f"| {gap:.4f} |"
            )
            print(rows[-1], flush=True)
    print(f"\n{len(C_GRID)} C values per row; train {len(train_x)} rows x {train_x.shape[1]} features\n")
    print(
        "| head | class weight | cold s | path s | speed-up | cold: C (val bal. %) | path: C (val bal. %) "
        "| max prob gap |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- | ---: |")
    print("\n".join(rows))
    print(f"| all | | {totals['cold']:.1f} | {totals['path']:.1f} | {totals['cold'] / totals['path']:.1f}x | | | |")


if __name__ == "__main__":
    main()
