"""Naming photographed paintings: named right, named wrong, not named; for paintings the index holds and not.

    python benchmarks/photo_naming.py --index 150 --outside 150 --out benchmarks/results

Index: every k-th WikiArt-sample painting (`--index` of them). Outside: as many other paintings, none of them in
the index. Each painting is photographed by `artnet.testing.gallery_photo` twice: a VALIDATION photo (seed i,
easy or hard by turns), on which the inlier threshold is checked: the lowest that names at most 1 % of outside
photos is printed, and the served threshold (`naming.MIN_INLIERS`) must name none of them while naming the indexed
ones; and a TEST photo (another seed, the other difficulty), reported once at the served threshold. Every query goes
through the serving path: the photo step (find, rectify), then `artnet.serving.naming.PaintingNamer` over all
indexed paintings. Then the four NGI wall photos (`../shared/gallery-photos/ngi`): their six reference paintings
join the index, and each of the 11 paintings on the walls is cut out at its annotated corners and named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet.data.images import load_path  # noqa: E402
from artnet.data.photo import painting_of_photo, rectify  # noqa: E402
from artnet.serving.naming import MIN_INLIERS, PaintingNamer  # noqa: E402
from artnet.testing.gallery_photo import render_gallery_photo  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def best_counts(namer: PaintingNamer, paintings: list[np.ndarray], seed_offset: int, hard_first: bool) -> list:
    """(best inlier count, the index position it points at) for a photo of each painting."""
    results = []
    for number, painting in enumerate(tqdm(paintings, desc="photos", file=sys.stderr)):
        difficulty = "hard" if (number % 2 == 0) == hard_first else "easy"
        photo = render_gallery_photo(painting, seed=seed_offset + number, difficulty=difficulty).image
        naming = namer.name(painting_of_photo(photo)[0])
        results.append((naming.inliers, naming.item))
    return results


def outcome(results, truths, threshold: int) -> dict:
    """Shares named right, named wrong and not named (truth None: the painting is outside the index)."""
    right = wrong = 0
    for (inliers, item), truth in zip(results, truths, strict=True):
        if inliers >= threshold:
            right += item == truth
            wrong += item != truth
    n = len(results)
    return {"n": n, "named_right": right / n, "named_wrong": wrong / n, "not_named": (n - right - wrong) / n}


def choose_threshold(outside_counts: list[int], allowed: float = 0.01) -> int:
    """The lowest inlier count that names at most `allowed` of the outside photos."""
    for threshold in range(4, 1000):
        if np.mean(np.asarray(outside_counts) >= threshold) <= allowed:
            return threshold
    return 1000


def ngi(root: Path, namer_images: list[np.ndarray], threshold: int) -> dict:
    positions = json.loads((root / "positions.json").read_text())
    references = sorted({painting["name"] for gallery in positions["galleries"] for painting in gallery["paintings"]})
    namer = PaintingNamer([*namer_images, *(load_path(root / "paintings" / name) for name in references)], threshold)
    results, truths = [], []
    for gallery in positions["galleries"]:
        path = root / "gallery" / gallery["name"]
        photo = load_path(path)
        scale = photo.shape[1] / Image.open(path).size[0]  # decoded at a reduced size: corners follow
        for painting in gallery["paintings"]:
            naming = namer.name(rectify(photo, scale * np.asarray(painting["points"], np.float64)))
            results.append((naming.inliers, naming.item))
            truths.append(len(namer_images) + references.index(painting["name"]))
    return outcome(results, truths, threshold)


def table(rows: dict) -> str:
    lines = ["| photos | n | named right | named wrong | not named |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        cells = " | ".join(f"{100 * row[key]:.1f} %" for key in ("named_right", "named_wrong", "not_named"))
        lines.append(f"| {name} | {row['n']} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=int, default=150, help="WikiArt-sample paintings in the index")
    parser.add_argument("--outside", type=int, default=150, help="paintings outside the index")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    files = sorted((args.shared / "wikiart-sample" / "images").glob("*.jpg"))
    if not files:
        parser.error(f"no paintings under {args.shared}/wikiart-sample/images: pass --shared")
    chosen = files[:: max(1, len(files) // (args.index + args.outside))][: args.index + args.outside]
    indexed = [load_path(path) for path in chosen[0::2][: args.index]]
    outside = [load_path(path) for path in chosen[1::2][: args.outside]]
    namer = PaintingNamer(indexed, min_inliers=1)
    validation_outside = best_counts(namer, outside, 0, hard_first=True)
    lowest = choose_threshold([inliers for inliers, _ in validation_outside])
    threshold = max(lowest, MIN_INLIERS)  # served with a margin over the validation outside photos' counts
    validation_indexed = best_counts(namer, indexed, 0, hard_first=True)
    test_indexed = best_counts(namer, indexed, 10_000, hard_first=False)
    test_outside = best_counts(namer, outside, 10_000, hard_first=False)
    rows = {
        "validation, indexed": outcome(validation_indexed, list(range(len(indexed))), threshold),
        "validation, outside": outcome(validation_outside, [None] * len(outside), threshold),
        "TEST, indexed": outcome(test_indexed, list(range(len(indexed))), threshold),
        "TEST, outside": outcome(test_outside, [None] * len(outside), threshold),
    }
    if (args.shared / "gallery-photos" / "ngi").is_dir():
        rows["NGI walls, cut at their corners (6 references + the index)"] = ngi(
            args.shared / "gallery-photos" / "ngi", indexed, threshold
        )
    highest = max(inliers for inliers, _ in validation_outside)
    text = table(rows) + (
        f"\n\nThreshold: {threshold} RANSAC inliers (served: naming.MIN_INLIERS = {MIN_INLIERS}); the lowest that "
        f"validation allows (at most 1 % of outside photos named) is {lowest}, and the most any validation outside "
        f"photo reached is {highest}."
    )
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "photo_naming.md").write_text(text + "\n")
        counts = {  # each photo's best count and the painting it pointed at: any other threshold, recomputed
            "validation_indexed": validation_indexed,
            "validation_outside": validation_outside,
            "test_indexed": test_indexed,
            "test_outside": test_outside,
        }
        (args.out / "photo_naming.json").write_text(
            json.dumps({"threshold": threshold, "lowest_allowed": lowest, "rows": rows, "counts": counts}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
