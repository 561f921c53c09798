"""The LiteRT models against the Keras model: balanced accuracy per head on a painter-split test, file sizes, and
latency on one core, all in one run.

    python benchmarks/litert_vs_keras.py --model runs/cpu/multihead --out benchmarks/results/litert

`--model`: a finished run's folder (its `export/model.keras` is measured, its `config.json` names the data) or an
export folder with `--config` (a recipe, e.g. `experiments/configs/cpu.py:multihead`, whose test split is used).
The three LiteRT files are converted here as `artnet export --litert` converts them (`artnet.serving.litert`):
float32, float16 weights, and full-integer int8 calibrated on `--calibration` images drawn (seed 0) from the
config's TRAINING split. Every model reads the same pixels: each test image decoded and framed to the model's
square by `artnet.data.preprocessing` (the serving function's resize), so the table measures the conversion
alone. The Keras row is the model's own function after that resize (`litert.litert_function`: the pixels cast,
the network, the heads), batched.

Latency: one image at a time, TensorFlow held to one thread (intra- and inter-op) and each LiteRT interpreter
given `num_threads=1`, in this same process; medians (min, max) over `--runs` calls after a warm-up. The Keras
rows are the predictor (`artnet.serving.predictor.Predictor.predict` on a 224 px image, painting search off: the
resize, the forward pass with the embedding, the top-k) and the bare forward pass.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# Not named litert.py: TensorFlow's converter tries `import litert` first, and every benchmark's own folder is on
# the path (a benchmarks/litert.py once broke every other script in it as TensorFlow imported it instead).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from artnet.config import from_dict, load_config  # noqa: E402
from artnet.data.preprocessing import decode_and_resize  # noqa: E402
from artnet.data.sources import load_sources  # noqa: E402
from artnet.evaluation.metrics import balanced_accuracy  # noqa: E402
from artnet.serving import litert  # noqa: E402
from artnet.serving.export import load_model  # noqa: E402
from artnet.serving.predictor import Predictor  # noqa: E402
from artnet.workdir import Export, Workdir, read_json  # noqa: E402

CLASS_HEADS = ("school", "timeframe", "type")
VARIANTS = {"LiteRT float32": "none", "LiteRT float16": "float16", "LiteRT int8": "int8"}


def pixels_of(source, size: int, framing: str) -> np.ndarray:
    """Every image of `source` as the model's uint8 square, in order."""
    images = source.images.map(lambda encoded: decode_and_resize(encoded, size, framing))
    return np.stack([image.numpy() for image in images])


def keras_probabilities(model, pixels: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    forward = tf.function(litert.litert_function(model))
    parts = [forward(tf.constant(pixels[start : start + batch])) for start in range(0, len(pixels), batch)]
    return {head: np.concatenate([part[head].numpy() for part in parts]) for head in model.heads}


def lite_probabilities(path: Path, pixels: np.ndarray, heads) -> dict[str, np.ndarray]:
    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    answers = [runner(images=image[np.newaxis]) for image in pixels]
    return {head: np.concatenate([answer[head] for answer in answers]) for head in heads}


def timed(function, runs: int) -> tuple[float, float, float]:
    function()  # warm-up: tracing, allocation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times), max(times)


def resolve(model_arg: str, config_arg: str | None):
    """(the export, the training config) of --model / --config."""
    root = Path(model_arg)
    files = Workdir(root).export if Workdir(root).export.model.is_file() else Export.of(root)
    if config_arg:
        return files, load_config(config_arg)
    for run in (Workdir(root), Workdir(files.root.parent)):
        if run.config.is_file():
            return files, from_dict(json.loads(run.config.read_text()))
    raise FileNotFoundError(f"no config.json beside {model_arg}: pass --config RECIPE")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a finished run's folder, or an export folder (--config)")
    parser.add_argument("--config", default=None, help="the recipe whose test split is measured (default: the run's)")
    parser.add_argument("--out", required=True, help="writes OUT.md and OUT.csv")
    parser.add_argument("--calibration", type=int, default=litert.REPRESENTATIVE_IMAGES, help="int8 images")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per latency row")
    args = parser.parse_args(argv)
    files, config = resolve(args.model, args.config)
    model = load_model(files.model)
    size, framing = int(model.image_size), model.framing
    sources = load_sources(config)
    test, train = sources["test"], sources["train"]
    print(f"test: {test.name}, {len(test)} images; calibration: {args.calibration} of {len(train)} training images")
    chosen = np.sort(np.random.default_rng(0).permutation(len(train))[: args.calibration])
    keep = set(chosen.tolist())
    calibration = [
        decode_and_resize(data, size, framing).numpy() for index, data in enumerate(train.images) if index in keep
    ]
    pixels = pixels_of(test, size, framing)
    heads = [head for head in model.heads if head in CLASS_HEADS]

    rows = [{"model": "Keras", "file": "model.keras", "bytes": files.model.stat().st_size}]
    answers = {"Keras": keras_probabilities(model, pixels)}
    with tempfile.TemporaryDirectory(prefix="artnet-litert-bench-") as folder:
        folder = Path(folder)
        archive = folder / "archive"
        litert.write_serving_archive(model, archive)
        paths = {}
        for name, quantization in VARIANTS.items():
            start = time.perf_counter()
            data = litert.convert(model, archive, quantization, calibration if quantization == "int8" else None)
            paths[name] = folder / litert.FILES[quantization]
            paths[name].write_bytes(data)
            print(f"{name}: converted in {time.perf_counter() - start:.0f} s, {len(data) / 2**20:.1f} MiB")
            rows.append({"model": name, "file": paths[name].name, "bytes": len(data)})
            answers[name] = lite_probabilities(paths[name], pixels, heads)

        for row in rows:
            for head in heads:
                truth, predicted = test.labels[head], answers[row["model"]][head].argmax(axis=1)
                row[f"{head} balanced accuracy"] = balanced_accuracy(truth, predicted)
                row[f"{head} top-1 agreement with Keras"] = float(
                    np.mean(predicted == answers["Keras"][head].argmax(axis=1))
                )

        image = pixels[0]
        predictor = Predictor(model, locate_painting=False)
        forward = tf.function(litert.litert_function(model))
        batch = tf.constant(image[np.newaxis])
        latency = {
            "Keras": timed(lambda: predictor.predict(image), args.runs),
            "Keras forward pass only": timed(lambda: forward(batch), args.runs),
        }
        for name, path in paths.items():
            runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
            latency[name] = timed(lambda runner=runner: runner(images=image[np.newaxis]), args.runs)
    for row in rows:
        row["latency ms (median, min, max)"] = latency[row["model"]]
    rows.append(
        {"model": "Keras forward pass only", "latency ms (median, min, max)": latency["Keras forward pass only"]}
    )
    write_tables(args, rows, heads, test, files)
    return 0


def write_tables(args, rows: list[dict], heads: list[str], test, files: Export) -> None:
    # The run's own figures only where its own test split is the one measured here.
    own = args.config is None
    report = read_json(Workdir(files.root.parent).test_evaluation.report_json).get("heads", {}) if own else {}
    present = {head: int(len(np.unique(test.labels[head][test.labels[head] >= 0]))) for head in heads}
    lines = [
        f"Model: `{files.root}` on `{test.name}` ({len(test)} images, painters disjoint from training); "
        f"int8 calibrated on {args.calibration} training images; latency: one image, one thread, median (min, max) "
        f"of {args.runs} calls, on a 2-core machine shared with other jobs ({time.strftime('%Y-%m-%d')}).",
        "",
        "| model | file | MiB | " + " | ".join(f"{head} bal. acc." for head in heads) + " | ms/image (one thread) |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in heads) + " | ---: |",
    ]
    for row in rows:
        median, low, high = row["latency ms (median, min, max)"]
        cells = [f"{100 * row[f'{head} balanced accuracy']:.1f} %" for head in heads] if "file" in row else []
        size = f"{row['bytes'] / 2**20:.1f}" if "bytes" in row else ""
        cells = cells or ["" for _ in heads]
        lines.append(
            f"| {row['model']} | {row.get('file', '')} | {size} | "
            + " | ".join(cells)
            + f" | {median:.1f} ({low:.1f}, {high:.1f}) |"
        )
    chance = " | ".join(f"{100 / present[head]:.1f} %" for head in heads)
    lines.append(f"| chance = always the majority class (balanced accuracy 1/classes) | | | {chance} | |")
    keras, int8 = rows[0], next(row for row in rows if row["model"] == "LiteRT int8")
    change = {head: 100 * (int8[f"{head} balanced accuracy"] - keras[f"{head} balanced accuracy"]) for head in heads}
    lines += [
        "",
        "int8 minus Keras, balanced accuracy (points): "
        + ", ".join(f"{head} {delta:+.2f}" for head, delta in change.items())
        + f"; int8 loses at most 1 point on every head: {'yes' if min(change.values()) >= -1.0 else 'NO'}.",
        "Top-1 agreement with Keras: "
        + "; ".join(
            f"{row['model']} "
            + ", ".join(f"{head} {100 * row[f'{head} top-1 agreement with Keras']:.1f} %" for head in heads)
            for row in rows[1:]
            if "file" in row
        )
        + ".",
    ]
    if report:
        lines.append(
            "The run's own test report (`eval_test/report.json`, served pipeline): "
            + ", ".join(f"{head} {100 * report[head]['balanced_accuracy']:.1f} %" for head in heads if head in report)
            + "."
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fields = ["model", "file", "bytes"] + [f"{head} balanced accuracy" for head in heads]
    fields += [f"{head} top-1 agreement with Keras" for head in heads]
    fields += ["latency ms median", "latency ms min", "latency ms max"]
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            median, low, high = row["latency ms (median, min, max)"]
            record = {k: v for k, v in row.items() if k in fields}
            writer.writerow(
                {
                    **record,
                    "latency ms median": f"{median:.2f}",
                    "latency ms min": f"{low:.2f}",
                    "latency ms max": f"{high:.2f}",
                }
            )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
