"""Photos against scans: the same held-out paintings, scored clean and as gallery photos, with and without the
photo step.

    python experiments/photo_vs_scan.py --model runs/sample/export --folder ../shared/wikiart-sample \
        --split test --paintings 300 --out experiments/results/photo_vs_scan

For each painting of a labelled folder (`labels.csv`; a blank label is unknown), the model answers three times:
from the clean image, from a rendered gallery photo taken whole (what artnet did before the photo step), and from
the same photo through the photo step (find, rectify). Balanced accuracy per head, beside chance and the evaluated
data's own majority class. Paintings are drawn every k-th row so they span painters; the photo of painting i is
rendered with seed i (`artnet.testing.gallery_photo`), half easy and half hard; `--renderer snapshot` renders it
with `artnet.testing.snapshot_photo` instead, a second generator written apart from the first (and from the
training cut-outs), to see whether a result holds beyond one renderer's look. The model must not have trained on
these painters: `--split test` keeps the painters of the folder's own painter-disjoint test split, exactly as
training splits a labelled folder (`artnet.data.sources.folder_source`), which is what the main job does with the
WikiArt sample.

`--probe-of CONFIG` adds the third baseline beside chance and the majority: the linear probe of that training
config (logistic regression per head on the frozen backbone's features of its training split, with its cached
views, C chosen on its validation split: `artnet.training.probe.probe_into_heads`), scored on the same paintings,
clean and through the photo step.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet import labels  # noqa: E402
from artnet.data.images import load_path  # noqa: E402
from artnet.data.sources import folder_source  # noqa: E402
from artnet.evaluation.intervals import paired_difference  # noqa: E402
from artnet.serving.predictor import Predictor  # noqa: E402
from artnet.testing.gallery_photo import render_gallery_photo  # noqa: E402
from artnet.testing.snapshot_photo import render_snapshot  # noqa: E402

WAYS = ("clean", "photo, whole image", "photo, photo step")
RENDERERS = ("gallery", "snapshot")
PROBE_WAYS = ("probe, clean", "probe, photo step")  # with --probe-of: the linear probe's answers
# The photo cut at the picture's true corners (what a perfect photo step would read): the light's share of a loss
# against the finding's. Tables made before it have no such column.
TRUE_CORNERS = "photo, true corners"
BY_PAINTER = "step_minus_clean_interval_by_painter"


def read_folder(folder: Path, count: int, split: str | None = None) -> list[dict]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if split is not None:  # the painters training put in this split of the folder
        painters = {item.get("author") for item in folder_source(folder, split=split).meta}
        rows = [row for row in rows if row["author"] in painters]
    return rows[:: max(1, len(rows) // count)][:count]


def truth(rows: list[dict], head: str) -> np.ndarray:
    vocabulary = labels.VOCABULARIES[head]
    return np.asarray([vocabulary.index(row[head]) if row[head] in vocabulary else -1 for row in rows])


def top1(predictions: list[dict], head: str) -> np.ndarray:
    vocabulary = labels.VOCABULARIES[head]
    return np.asarray([vocabulary.index(prediction[head][0][0]) for prediction in predictions])


def score(rows: list[dict], answers: dict[str, list[dict]], heads) -> dict:
    table = {}
    for head in heads:
        y = truth(rows, head)
        known = y >= 0
        if not known.any():
            continue
        clean, step = (top1(answers[way], head)[known] for way in (WAYS[0], WAYS[2]))
        table[head] = {
            "n": int(known.sum()),
            **baselines(y[known], head),
            **{
                way: float(balanced_accuracy_score(y[known], top1(answers[way], head)[known]))
                for way in (*WAYS, TRUE_CORNERS, *PROBE_WAYS)
                if answers.get(way)
            },
            "step_minus_clean_interval": paired_interval(y[known], clean, step),
        }
        painters = np.asarray([row.get("author") or "" for row in rows])[known]
        if len(set(painters)) > 1:  # one painter's paintings are alike: resample whole painters too
            table[head][BY_PAINTER] = paired_interval(y[known], clean, step, painters)
    return table


def baselines(known: np.ndarray, head: str) -> dict:
    """Chance (the balanced accuracy of any constant or random answer, over the classes present) and the majority
    class of the evaluated paintings' known labels, with what always answering it scores top-1."""
    counts = np.bincount(known, minlength=len(labels.VOCABULARIES[head]))
    return {
        "chance": 1 / int((counts > 0).sum()),
        "majority": labels.VOCABULARIES[head][int(counts.argmax())],
        "majority_top1": float(counts.max() / counts.sum()),
    }


def paired_interval(y: np.ndarray, clean: np.ndarray, step: np.ndarray, groups=None) -> list[float]:
    """95 % bootstrap interval of balanced accuracy (photo step) - (clean), each painting answered both ways (a
    paired difference: `artnet.evaluation.intervals.paired_difference`, 2,000 replicates). With `groups` (each
    painting's painter) whole painters are resampled: the cluster bootstrap."""
    _, low, high = paired_difference(y, clean, step, groups, n_resamples=2000)["balanced_accuracy"]
    return [low, high]


def markdown(table: dict, found: float) -> str:
    probed = all(way in row for row in table.values() for way in PROBE_WAYS)
    probe_columns = " linear probe: clean / photo step |" if probed else ""
    true_corners = all(TRUE_CORNERS in row for row in table.values())
    by_painter = all(BY_PAINTER in row for row in table.values())  # tables made before it have no such column
    lines = [
        "| head | n | clean | photo, whole image | photo, photo step | step - clean [95 % interval] "
        f"| chance (= majority, balanced) | majority, top-1 |{probe_columns}"
        + (" photo, true corners |" * true_corners)
        + (" step - clean, painters resampled |" * by_painter),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        + (" ---: |" if probed else "")
        + " ---: |" * true_corners
        + " ---: |" * by_painter,
    ]
    for head, row in table.items():
        cells = " | ".join(f"{100 * row[way]:.1f}" for way in WAYS)
        low, high = row["step_minus_clean_interval"]
        difference = f"{100 * (row[WAYS[2]] - row[WAYS[0]]):+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        majority = f"{100 * row['majority_top1']:.1f} ({row['majority']})"
        probe = " " + " / ".join(f"{100 * row[way]:.1f}" for way in PROBE_WAYS) + " |" if probed else ""
        cut = f" {100 * row[TRUE_CORNERS]:.1f} |" if true_corners else ""
        painters = " [{:+.1f}, {:+.1f}] |".format(*(100 * bound for bound in row[BY_PAINTER])) if by_painter else ""
        lines.append(
            f"| {head} | {row['n']} | {cells} | {difference} | {100 * row['chance']:.1f} | {majority} |{probe}{cut}"
            f"{painters}"
        )
    note = (
        "Balanced accuracy, % (majority: top-1 of always answering the evaluated paintings' most frequent class). "
        "The interval resamples the paintings"
        + (" (and, in the last column, whole painters, as a painter's paintings move together)" * by_painter)
        + f". The photo step found a painting in {100 * found:.1f} % of the photos."
    )
    return "\n".join(lines) + "\n\n" + note


def render(painting: np.ndarray, index: int, renderer: str, first_seed: int = 0):
    """The photo of painting number `index` (seed `first_seed + index`) by one of the `RENDERERS`: `.image`, and
    `.corners`, the picture's true corners in it."""
    if renderer == "snapshot":
        return render_snapshot(painting, seed=first_seed + index)
    return render_gallery_photo(painting, seed=first_seed + index, difficulty="easy" if index % 2 else "hard")


def at_true_corners(located: Predictor, rendered) -> dict:
    """The answer (with the embedding) from a rendered photo cut at its picture's true corners: what a perfect
    photo step would read. A picture running out of the photo is read at the part in view (corners clipped)."""
    photo = rendered.image
    in_view = np.clip(rendered.corners, 0, [photo.shape[1] - 1, photo.shape[0] - 1])
    cut, where = located.cut_out(photo, photo.shape[1], corners=in_view.tolist())
    return located.predict_pixels([located.fit_pixels(cut)], [where])[0]


def linear_probe(spec: str):
    """The linear probe of training config `spec`, written into a model of that config (heads only), so that the
    predictor serves it through the same photo step as the model under test."""
    from artnet.config import load_config
    from artnet.data.sources import load_sources
    from artnet.training.probe import probe_into_heads
    from artnet.training.strategy import make_strategy
    from artnet.training.train import build_model

    config = load_config(spec)
    model = build_model(config, make_strategy("none"))
    probe_into_heads(model, config, load_sources(config))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an export folder or a .keras file")
    parser.add_argument("--folder", required=True, type=Path, help="a labelled folder (labels.csv + images)")
    parser.add_argument("--paintings", type=int, default=300)
    parser.add_argument("--split", default="test", help="the folder's painter split to score (default: test)")
    parser.add_argument("--out", type=Path, help="folder for photo_vs_scan.md and .json")
    parser.add_argument(
        "--probe-of", metavar="CONFIG", help="also score this training config's linear probe (file.py[:variant])"
    )
    parser.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="gallery",
        help="gallery: artnet.testing.gallery_photo (easy and hard by turns; the training cut-outs' sibling); "
        "snapshot: artnet.testing.snapshot_photo, an independent second generator",
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="painting i is rendered with seed FIRST_SEED + i (default 0); seeds the locator was never looked at "
        "on (5000 and on) keep the photos held out from its tuning",
    )
    args = parser.parse_args(argv)
    rows = read_folder(args.folder, args.paintings, args.split)
    located = Predictor(args.model)
    whole = Predictor(located.model, locate_painting=False)  # the same model, every image taken whole
    probe = located_probe = None
    if args.probe_of:
        probe_model = linear_probe(args.probe_of)
        probe, located_probe = Predictor(probe_model, locate_painting=False), Predictor(probe_model)
    answers = {way: [] for way in (*WAYS, TRUE_CORNERS, *(PROBE_WAYS if probe else ()))}
    found = 0
    for index, row in enumerate(tqdm(rows, desc="paintings", file=sys.stderr)):
        painting = load_path(args.folder / row["file"])
        rendered = render(painting, index, args.renderer, args.first_seed)
        photo = rendered.image
        answers[TRUE_CORNERS].append(at_true_corners(located, rendered))
        answers["clean"].append(whole.predict(painting))
        answers["photo, whole image"].append(whole.predict(photo))
        through = located.predict(photo)
        found += through["outline"] is not None
        answers["photo, photo step"].append(through)
        if probe:
            answers["probe, clean"].append(probe.predict(painting))
            answers["probe, photo step"].append(located_probe.predict(photo))
    table = score(rows, answers, located.heads)
    text = markdown(table, found / len(rows))
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "photo_vs_scan.md").write_text(text + "\n")
        (args.out / "photo_vs_scan.json").write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "probe_of": args.probe_of,
                    "renderer": args.renderer,
                    "first_seed": args.first_seed,
                    "paintings": len(rows),
                    "heads": table,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
