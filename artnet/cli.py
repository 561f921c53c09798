"""The `artnet` command. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from artnet.training.cluster import PEER_TIMEOUT, cluster_from_environment
from artnet.workdir import Evaluation, Export, Workdir, read_json


def _data_stats(args: argparse.Namespace) -> int:
    folder, wga_config, data_dir, split_by = args.folder, args.config, args.data_dir, "author"
    if ".py" in args.config:  # a training config (file.py[:variant]): count the data it trains on (its main source)
        from artnet.config import load_config

        data = load_config(args.config).data
        if data.source == "folder":
            folder, split_by = data.folder, data.split_by
        else:
            wga_config, data_dir = data.wga_config, data.data_dir
    if folder and not args.out:  # checked before TensorFlow loads: the error is the only line printed
        raise ValueError("data-stats --folder needs --out (the labelled folder itself may be read-only)")
    from artnet.evaluation.data_stats import folder_statistics, to_markdown, wga_statistics

    if folder:
        stats, out = folder_statistics(folder, args.out, split_by=split_by)
        print(to_markdown(stats, f"{folder} (split by {split_by})"))
    else:
        stats, out = wga_statistics(wga_config, data_dir, args.out)
        print(to_markdown(stats, f"wga/{wga_config} {stats['version']} ({data_dir})"))
    print(f"saved {out / 'statistics.json'}, {out / 'statistics.md'} and {out / 'statistics.png'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from artnet.config import apply_overrides, load_config

    # The config and its overrides are checked before TensorFlow loads: a typo is the only line printed. So is
    # the cluster of a multi-worker run (TF_CONFIG), which TensorFlow would meet with a traceback.
    config = apply_overrides(load_config(args.config), args.set or [])
    if config.strategy == "multi_worker":
        cluster_from_environment(os.environ)
    from artnet.run import headline, run_experiment
    from artnet.training.errors import TrainingError

    try:
        result = run_experiment(config, args.workdir, peer_timeout=args.peer_timeout)
    except TrainingError as error:  # a message that says what to do; no traceback needed
        print(f"artnet train: error: {error}", file=sys.stderr)
        return 2
    files = result.workdir
    if not result.chief:  # a multi-worker job's other workers train; the chief evaluates and exports
        print(f"{result.worker}: trained; the chief evaluates on test and exports to {files.export.root}")
        return 0
    print(f"test: {headline(result.report)}; report in {files.test_evaluation.root}, export in {files.export.root}")
    return 0


def _seconds(text: str) -> float:
    """A positive number of seconds (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _probe(args: argparse.Namespace) -> int:
    from artnet.config import apply_overrides, load_config

    config = apply_overrides(load_config(args.config), args.set or [])  # before TensorFlow loads, as for train
    from artnet.data.sources import load_sources
    from artnet.training.probe import run_probe

    also = {}
    if args.also_wga:
        from artnet.data.sources import wga_source

        wga_config, _, split = args.also_wga.partition(":")
        also[f"wga_{wga_config}"] = wga_source(wga_config, split or "train+validation+test", args.data_dir)
    report = run_probe(config, args.workdir, load_sources(config), also_evaluate=also)
    files = Workdir(Path(args.workdir))
    print(files.test_evaluation.report_md.read_text())
    print(f"choices (C, class weighting, validation scores) in {files.probe_choices}")
    return 0 if report["heads"] else 1


def _source_from_args(args: argparse.Namespace):
    from artnet.data.sources import folder_source, wga_source

    if args.folder:
        return folder_source(args.folder, args.csv, split=args.split if args.split != "all" else None)
    return wga_source(args.wga_config, args.split, args.data_dir)


def _evaluate(args: argparse.Namespace) -> int:
    if args.csv and not args.folder:  # else the label file would be ignored and the wga split evaluated
        raise ValueError("evaluate --csv is the label file of a --folder: give --folder too")
    from artnet.evaluation.evaluate import evaluate
    from artnet.serving.export import load_model

    _warn_if_sample_scale(Path(args.model))
    model = load_model(args.model)
    counts = _train_counts(Path(args.model), args.counts)
    evaluate(
        model,
        _source_from_args(args),
        args.out,
        train_counts=counts,
        batch_size=args.batch_size,
        split_rule=args.split_rule,
    )
    print(Evaluation(Path(args.out)).report_md.read_text())
    return 0


def _train_counts(model: Path, counts: str | None) -> dict | None:
    """The training split's label counts (for majority baselines): --counts, else label_counts.json beside the
    model (a training workdir), else the model card beside it (an export folder), else None."""
    if counts:
        return json.loads(Path(counts).read_text())["counts"]
    folder = (model if model.is_dir() else model.parent).resolve()
    for path, key in ((Workdir(folder).label_counts, "counts"), (Export(folder).card, "train_counts")):
        found = read_json(path).get(key)
        if found:
            return found
    return None


SAMPLE_SCALE_EXAMPLES = 5_000  # as the demo's model card: below this, a model demonstrates the pipeline


def _warn_if_sample_scale(model: Path) -> None:
    """One line on stderr when the model beside its export's card or training run saw few training images."""
    folder = (model if model.is_dir() else model.parent).resolve()
    seen = read_json(Export(folder).card).get("train_examples")
    if seen is None:
        counts = read_json(Workdir(folder).label_counts).get("counts") or {}
        seen = max((sum(values) for values in counts.values()), default=None)
    if seen is not None and seen < SAMPLE_SCALE_EXAMPLES:
        print(
            f"artnet: warning: {model} is a sample-scale model ({seen} training images < {SAMPLE_SCALE_EXAMPLES}): "
            "its answers demonstrate the pipeline, they are not reliable attributions",
            file=sys.stderr,
        )


def _calibrate(args: argparse.Namespace) -> int:
    from artnet.run import recalibrate

    report = recalibrate(args.workdir, args.folds)
    for head, calibrated in report.get("calibration", {}).items():
        print(
            f"{head}: test coverage {100 * calibrated['coverage']:.1f} % for {100 * calibrated['coverage_target']:.0f}"
            f" % sets (mean size {calibrated['mean_set_size']:.2f}), ECE {calibrated['ece_before']:.3f} -> "
            f"{calibrated['ece_after']:.3f}"
        )
    print(f"re-exported {Workdir(args.workdir).export.root} with the new calibration.json")
    return 0


def _export(args: argparse.Namespace) -> int:
    from artnet.serving.export import export, load_model, refuse_non_empty

    refuse_non_empty(args.out, args.force)  # before the model loads: the error is the only line printed
    model = load_model(args.model)
    source = Export.of(args.model)
    carried = next((f.root for f in (source, Workdir(source.root).export) if f.card.is_file()), None)
    images = _representative(args, model) if args.litert else None
    out = export(model, args.out, litert=args.litert, representative=images, carry_from=carried)
    print(f"exported to {out}: " + ", ".join(sorted(path.name for path in out.iterdir())))
    return 0


def _representative(args: argparse.Namespace, model) -> list | None:
    """Up to `REPRESENTATIVE_IMAGES` training images (uint8, framed to the model's square) for the int8 model's
    calibration: from --representative, else from the training split of the run's config.json (beside the model
    or above its export); None, saying why on stderr, when neither is at hand (the float files are still written).
    Data loading lives here: the serving layer may not import the data sources."""
    import numpy as np
    import tensorflow as tf

    from artnet.data.images import load_rgb
    from artnet.data.preprocessing import resize_and_crop
    from artnet.serving.batch_predict import expand_inputs
    from artnet.serving.litert import INT8_FILE, REPRESENTATIVE_IMAGES

    picks = np.random.default_rng(0)  # the same calibration set on every export of the same data
    if args.representative:
        paths = [path for path in expand_inputs([args.representative]) if path.is_file()]
        if not Path(args.representative).is_dir() or not paths:
            raise FileNotFoundError(f"--representative {args.representative}: not a folder holding images")
        chosen = sorted(picks.permutation(len(paths))[:REPRESENTATIVE_IMAGES])
        encoded = [paths[index] for index in chosen]
    else:
        root = Export.of(args.model).root
        runs = [Workdir(root), *([Workdir(root.parent)] if Workdir(root.parent).export.root == root else [])]
        config = next((run.config for run in runs if run.config.is_file()), None)
        if config is None:
            print(
                f"artnet export: no {INT8_FILE}: no config.json beside {args.model} names its training data; "
                "pass --representative DIR (a folder of a few hundred training images)",
                file=sys.stderr,
            )
            return None
        from artnet.config import from_dict
        from artnet.data.sources import load_sources

        try:
            train = load_sources(from_dict(json.loads(config.read_text())))["train"]
        except Exception as error:  # a missing dataset, a moved folder: int8 waits, the float files do not
            reason = (str(error).strip().splitlines() or [""])[0][:300]  # TFDS's messages run to many lines
            print(
                f"artnet export: no {INT8_FILE}: the training split of {config} cannot be read "
                f"({type(error).__name__}: {reason}); pass --representative DIR",
                file=sys.stderr,
            )
            return None
        chosen = set(picks.permutation(len(train))[:REPRESENTATIVE_IMAGES].tolist())
        encoded = [data.numpy() for index, data in enumerate(train.images) if index in chosen]
    size, framing = int(model.image_size), model.framing
    return [resize_and_crop(tf.constant(load_rgb(image)), size, framing).numpy() for image in encoded]


def _space(args: argparse.Namespace) -> int:
    from artnet.serving.space import write_space

    out = write_space(Export.of(args.model).root, args.out, include_index=args.with_index, force=args.force)
    print(f"Space folder in {out}: upload it with `hf upload USER/SPACE {out} . --repo-type space`")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from artnet.serving.batch_predict import run_batch_prediction
    from artnet.serving.export import load_model

    _warn_if_sample_scale(Path(args.model))
    return run_batch_prediction(
        load_model(args.model),
        args.paths,
        args.out,
        top_k=args.top_k,
        batch_size=args.batch_size,
        locate_painting=not args.whole_image,
    )


def _demo(args: argparse.Namespace) -> int:
    from artnet.serving.launch import launch, parse_auth

    auth = parse_auth(args.auth, args.auth_file)  # before TensorFlow and the model load: a typo is one line
    from artnet.serving.demo import build_demo, example_images
    from artnet.serving.threads import limit_serving_threads

    export_dir = Export.of(args.model).root
    limit_serving_threads()  # before the model loads: TensorFlow's thread pools are fixed by its first op
    demo = build_demo(export_dir, examples=example_images(export_dir))
    launch(demo, server_name=args.host, server_port=args.port, share=args.share, auth=auth)
    return 0


def build_parser() -> argparse.ArgumentParser:
    # Over 80 lines on purpose: it is the whole command line as one declarative table, read top to bottom in the
    # order `artnet --help` lists it; the work of each command is in its `_command` function above.
    parser = argparse.ArgumentParser(prog="artnet", description=__doc__)
    from artnet import __version__

    parser.add_argument("--version", action="version", version=f"artnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    stats = commands.add_parser(
        "data-stats", help="counts per split x head x class of a built wga config (tables 1-2 of the 2020 report)"
    )
    stats.add_argument(
        "--config",
        default="artist",
        help="wga config (artist, random or sample; default: artist), or a training config file.py[:variant]: "
        "the data it trains on",
    )
    stats.add_argument("--data-dir", default="data/tfds", help="TFDS data_dir the dataset was built into")
    stats.add_argument("--folder", default=None, help="a labelled folder (labels.csv + images) instead of wga")
    stats.add_argument("--out", default=None, help="folder for statistics.json/.md (default: beside the records)")
    stats.set_defaults(run=_data_stats)

    train = commands.add_parser("train", help="train a config (file.py[:variant]) in a workdir; resumes if killed")
    train.add_argument("--config", required=True, help="config file, e.g. experiments/configs/multihead.py:cpu")
    train.add_argument("--workdir", required=True, help="where checkpoints, logs and the export go")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    train.add_argument(
        "--peer-timeout",
        type=_seconds,
        default=PEER_TIMEOUT,
        metavar="SECONDS",
        help=f"strategy multi_worker: how long each worker waits for every task of TF_CONFIG to start, then stops "
        f"with an error naming those that never answered (default {PEER_TIMEOUT:g})",
    )
    train.set_defaults(run=_train)

    probe = commands.add_parser(
        "probe", help="the linear-probe arm of a config: frozen features + logistic regression per head"
    )
    probe.add_argument("--config", required=True, help="config file, e.g. experiments/configs/cpu.py:multihead")
    probe.add_argument("--workdir", required=True, help="where its test evaluation and choices go")
    probe.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    probe.add_argument(
        "--also-wga",
        metavar="CONFIG[:SPLIT]",
        help="also score on a built wga config (e.g. random:train+validation+test)",
    )
    probe.add_argument("--data-dir", default="data/tfds", help="TFDS data_dir of --also-wga")
    probe.set_defaults(run=_probe)

    evaluate = commands.add_parser("evaluate", help="report.json/.md + plots for a model on a wga split or a folder")
    evaluate.add_argument("--model", required=True, help="a .keras file or an export folder")
    evaluate.add_argument("--out", required=True, help="folder for report.json, report.md and the PNGs")
    evaluate.add_argument("--wga-config", default="artist")
    evaluate.add_argument("--data-dir", default="data/tfds")
    evaluate.add_argument("--split", default="test", help="train, validation, test (or all, for a folder)")
    evaluate.add_argument("--folder", default=None, help="a labelled folder instead of the wga dataset")
    evaluate.add_argument("--csv", default=None, help="its label file (default <folder>/labels.csv)")
    evaluate.add_argument("--counts", default=None, help="label_counts.json of the training run (majority baseline)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument(
        "--split-rule", default=None, help="how the evaluated data was split from training (default: from the source)"
    )
    evaluate.set_defaults(run=_evaluate)

    calibrate = commands.add_parser(
        "calibrate", help="fit a finished run's calibration again (cross-fitted with --folds) and re-export it"
    )
    calibrate.add_argument("--workdir", required=True, help="a finished run's folder (artnet train --workdir)")
    calibrate.add_argument(
        "--folds",
        type=int,
        default=5,
        help="also calibrate on the training painters' answers from this many fold models (0: validation alone)",
    )
    calibrate.set_defaults(run=_calibrate)

    export = commands.add_parser("export", help="write model.keras + a SavedModel (uint8 images in) + labels.json")
    export.add_argument("--model", required=True, help="a .keras file, an export folder or a run's folder")
    export.add_argument("--out", required=True, help="a new or empty folder (see --force)")
    export.add_argument("--force", action="store_true", help="replace what --out holds")
    export.add_argument(
        "--litert",
        action="store_true",
        help="also write LiteRT models for offline apps: model.tflite, model_fp16.tflite and model_int8.tflite "
        "(calibrated on training images: the run's, or --representative; minutes)",
    )
    export.add_argument(
        "--representative", metavar="DIR", help="with --litert: a folder of training images to calibrate int8 on"
    )
    export.set_defaults(run=_export)

    space = commands.add_parser("space", help="a folder that runs the demo as a Hugging Face Space (upload it)")
    space.add_argument("--model", required=True, help="export folder (model.keras, model_card.json, index/)")
    space.add_argument("--out", required=True, help="the Space folder to write")
    space.add_argument(
        "--with-index",
        action="store_true",
        help="also copy the similar-paintings thumbnails (off: WGA images are not for republishing)",
    )
    space.add_argument("--force", action="store_true", help="replace what --out holds")
    space.set_defaults(run=_space)

    predict = commands.add_parser("predict", help="batch prediction over files and folders -> JSON lines or CSV")
    predict.add_argument("--model", required=True, help="a .keras file or an export folder")
    predict.add_argument("paths", nargs="+", help="image files and folders (searched recursively)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--out", default=None, help="output file (.jsonl or .csv); default: standard output")
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument(
        "--whole-image",
        action="store_true",
        help="take every image whole, as a scan (default: find the painting in a photo and cut it out)",
    )
    predict.set_defaults(run=_predict)

    demo = commands.add_parser("demo", help="the Gradio demo for an export folder (artnet train writes one)")
    demo.add_argument("--model", required=True, help="export folder (model.keras, model_card.json, index/)")
    demo.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve your network")
    demo.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="require this login to see the demo")
    demo.add_argument(
        "--auth-file", default=None, metavar="FILE", help="logins, one USER:PASSWORD a line (keeps them out of ps)"
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"artnet {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
