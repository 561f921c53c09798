"""The feature cache, side by side: a heads epoch and a fine-tune epoch trained from images and from the cache.

    .venv/bin/python benchmarks/feature_cache.py                      # the cpu recipe, 25 % of its training painters
    .venv/bin/python benchmarks/feature_cache.py --fraction 1 --epochs 2

Both runs are the cpu recipe (experiments/configs/cpu.py:multihead: EfficientNet-Lite0, heads on the frozen
backbone, then fine-tuning from `block7a_expand_conv`) on the same painters, with `--epochs` epochs per phase and
no early stopping, in one process, one after the other:
  images: `data.feature_views=0`, every step decodes, augments and runs the whole backbone (frozen front too);
  cache:  the recipe's own `data.feature_views=2` (each image and its mirror), heads on pooled features, the
          fine-tune phase running only the unfrozen tail on the cached input of `block7a_expand_conv`.
Per phase the table gives the last epoch's seconds (the first also pays for tracing), with validation, and
examples per second. The one-off extraction that fills the cache is reported from the cache's own records
(`<key>.json`, "seconds"), or measured when the cache is cold (`--cold` uses an empty temporary cache folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "experiments" / "configs" / "cpu.py") + ":multihead"


def epoch_seconds(metrics_jsonl: Path) -> dict[str, list[float]]:
    """Per phase, each epoch's own seconds (the log's "seconds" count from the phase's start)."""
    phases: dict[str, list[float]] = {}
    for line in metrics_jsonl.read_text().splitlines():
        record = json.loads(line)
        times = phases.setdefault(record["phase"], [])
        times.append(record["seconds"] - (sum(times) if times else 0.0))
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.25, help="data.train_fraction (nested painters)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per phase (the last one is reported)")
    parser.add_argument("--cold", action="store_true", help="an empty cache folder: measure the extraction too")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="artnet-cache-bench-"))
    if args.cold:
        os.environ["ARTNET_FEATURE_CACHE"] = str(work / "feature-cache")
    from artnet.config import apply_overrides, load_config
    from artnet.training.feature_cache import default_cache_dir
    from artnet.training.train import train

    common = [
        f"data.train_fraction={args.fraction}",
        f"head_epochs={args.epochs}",
        f"epochs={2 * args.epochs}",
        "early_stopping_patience=0",
    ]
    rows, walls = {}, {}
    cache = default_cache_dir()
    before = set(cache.glob("*.json")) if cache.is_dir() else set()
    try:
        for name, views in (("cache", 2), ("images", 0)):
            config = apply_overrides(load_config(RECIPE), [*common, f"data.feature_views={views}"])
            started = time.monotonic()
            train(config, work / name)
            walls[name] = time.monotonic() - started
            rows[name] = epoch_seconds(work / name / "metrics.jsonl")
        extracted = [json.loads(path.read_text()) for path in sorted(set(cache.glob("*.json")) - before)]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(args, rows, walls, extracted)


def report(args, rows: dict, walls: dict, extracted: list[dict]) -> None:
    print(
        f"\ncpu recipe, {100 * args.fraction:g} % of the training painters, {args.epochs} epochs per phase, "
        f"{os.cpu_count()} cores\n"
    )
    print("| phase | from | last epoch s | speed-up |")
    print("| --- | --- | ---: | ---: |")
    for phase in ("heads", "fine_tune"):
        images, cached = rows["images"][phase][-1], rows["cache"][phase][-1]
        print(f"| {phase} | images | {images:.1f} | 1.0x |")
        print(f"| {phase} | cache | {cached:.1f} | {images / cached:.1f}x |")
    print(
        f"\nwhole runs (both phases, model building and tracing included): images {walls['images']:.0f} s, "
        f"cache {walls['cache']:.0f} s"
    )
    if extracted:
        print("\nextracted into the cache during this run (one-off):")
        for about in extracted:
            spec = about["spec"]
            print(
                f"- {about['source']}: {about['examples']} images x {spec['views']} view(s) at {spec['layer']}: "
                f"{about['seconds']:.0f} s"
            )
    else:
        print(
            "\nthe cache was warm (nothing extracted in this run); its one-off extractions are listed in "
            f"{os.environ.get('ARTNET_FEATURE_CACHE', '~/.cache/artnet/features')}/*.json"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
