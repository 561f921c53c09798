"""Scans through the photo step: how often a clean scan is cut into, and what that costs the answers.

    python experiments/scans_through_photo_step.py --model runs/cpu/multihead/export \
        --folder ../shared/wikiart-sample --split test --paintings 600 \
        --out experiments/results/scans_through_photo_step

`artnet predict`, the demo and the API read every image through the photo step (`artnet.data.photo`), scans
included: a scan should pass through unchanged, but a shape inside a painting (a window, a painted border) can look
like a framed picture and be cut out. For held-out paintings of a labelled folder (its painter-disjoint `--split`,
as `experiments/photo_vs_scan.py` draws them) this scores the model on each clean image taken whole and through the
photo step, and reports the share cut into, the balanced accuracy both ways (beside chance), and the top-1
accuracy of the cut ones both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_vs_scan import read_folder, top1, truth  # noqa: E402

from artnet.data.images import load_path  # noqa: E402
from artnet.serving.predictor import Predictor  # noqa: E402


def main(argv=None) -> int:
    # The same arguments as photo_vs_scan.py's, written out: tests/test_docs.py reads each script's add_argument
    # calls to check the flags its documented commands use.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an export folder or a .keras file")
    parser.add_argument("--folder", required=True, type=Path, help="a labelled folder (labels.csv + images)")
    parser.add_argument("--paintings", type=int, default=600)
    parser.add_argument("--split", default="test", help="the folder's painter split to score (default: test)")
    parser.add_argument("--out", type=Path, help="folder for scans_through_photo_step.md and .json")
    args = parser.parse_args(argv)
    rows = read_folder(args.folder, args.paintings, args.split)
    through = Predictor(args.model)
    whole = Predictor(through.model, locate_painting=False)  # the same model, every image taken whole
    answers = {"whole": [], "photo step": []}
    cut = []
    for row in tqdm(rows, desc="scans", file=sys.stderr):
        scan = load_path(args.folder / row["file"])
        answers["whole"].append(whole.predict(scan))
        answers["photo step"].append(through.predict(scan))
        cut.append(answers["photo step"][-1]["outline"] is not None)
    cut = np.asarray(cut)
    table = {}
    for head in through.heads:
        y = truth(rows, head)
        known = y >= 0
        if not known.any():
            continue
        taken_whole, stepped = top1(answers["whole"], head), top1(answers["photo step"], head)
        table[head] = {
            "n": int(known.sum()),
            "chance": 1 / len(np.unique(y[known])),  # balanced accuracy of any constant answer
            "majority_top1": float(np.bincount(y[known]).max() / known.sum()),  # always the majority, top-1
            "whole": float(balanced_accuracy_score(y[known], taken_whole[known])),
            "photo step": float(balanced_accuracy_score(y[known], stepped[known])),
            "cut_n": int((known & cut).sum()),
            "cut_top1_whole": float(np.mean((taken_whole == y)[known & cut])) if (known & cut).any() else None,
            "cut_top1_step": float(np.mean((stepped == y)[known & cut])) if (known & cut).any() else None,
        }
    text = markdown(table, float(cut.mean()), len(rows), args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scans_through_photo_step.md").write_text(text + "\n")
        (args.out / "scans_through_photo_step.json").write_text(
            json.dumps(
                {"model": str(args.model), "paintings": len(rows), "cut": float(cut.mean()), "heads": table}, indent=1
            )
        )
    return 0


def markdown(table: dict, cut_share: float, count: int, args) -> str:
    def percent(value):
        return "" if value is None else f"{100 * value:.1f}"

    lines = [
        f"{count} clean scans ({args.split} split of {args.folder.name}, model {args.model}): "
        f"{100 * cut_share:.1f} % cut into by the photo step.",
        "",
        "| head | n | chance (balanced) | majority (top-1) | balanced, whole | balanced, photo step | cut into: n | "
        "top-1 of those, whole | top-1 of those, photo step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for head, row in table.items():
        lines.append(
            f"| {head} | {row['n']} | {percent(row['chance'])} | {percent(row['majority_top1'])} | "
            f"{percent(row['whole'])} | "
            f"{percent(row['photo step'])} | {row['cut_n']} | {percent(row['cut_top1_whole'])} | "
            f"{percent(row['cut_top1_step'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
