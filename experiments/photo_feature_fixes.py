"""Fixes in feature space: can the served heads read a photo's features better after a fix fitted on the
training images' cached photo views?

    python experiments/photo_feature_fixes.py collect --model runs/main_photo/export \
        --folder ../shared/wikiart-sample --split validation --paintings 900 --renderer gallery --out val_gallery.npz
    python experiments/photo_feature_fixes.py screen --run runs/main_photo --embeddings val_gallery.npz \
        val_snapshot.npz --out experiments/results/photo_feature_fixes/validation

The linear probe loses as much on photos as the trained heads do, so the photo's cost lies in the frozen features
(`photo_vs_scan.py`). The feature cache holds, for every training image, the plain view and two photo cut-outs
(`artnet.data.photo_residue`) of the same image: pairs that the heads' training never uses as pairs. Two fixes
use them, both fitted on the training split alone, their strength chosen on a fifth of its painters held out:
- **map**: ridge regression from a photo view's pooled features to its plain view's, applied to a photo's
  cut-out (only where the photo step found a painting) before the served heads;
- **photo heads**: logistic regression per head on the photo views alone, answering for photo cut-outs.

`collect` renders each painting's photo as `photo_vs_scan.py` does (same paintings, same seeds) and keeps the
served model's pooled features of the clean image, of the photo through the photo step and of the photo cut at
the picture's true corners; `screen` scores the served heads and both fixes on them, with chance and the
evaluated paintings' majority beside. Balanced accuracy per head, as everywhere in the project.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_vs_scan import at_true_corners, baselines, read_folder, render, truth  # noqa: E402

from artnet import labels  # noqa: E402

HEADS = ("school", "timeframe", "type")
WAYS = ("clean", "step", "true")  # the clean image; the photo through the photo step; cut at the true corners
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
LOGISTIC_CS = (0.001, 0.01, 0.1)
HELD_OUT_SHARE = 0.2  # of the training painters, for choosing each fix's strength (never validation)


def collect(model: str, folder: Path, split: str, paintings: int, renderer: str, out: Path) -> None:
    """The served model's pooled features of each painting clean, through the photo step and at its true
    corners, with its labels, painter and whether the photo step found a painting: one .npz."""
    from artnet.data.images import load_path
    from artnet.serving.predictor import Predictor

    out.parent.mkdir(parents=True, exist_ok=True)  # before the long loop, not after it: no run lost to a path
    rows = read_folder(folder, paintings, split)
    located = Predictor(model)
    whole = Predictor(located.model, locate_painting=False)
    features = {way: [] for way in WAYS}
    found = []
    for index, row in enumerate(tqdm(rows, desc="paintings", file=sys.stderr)):
        painting = load_path(folder / row["file"])
        rendered = render(painting, index, renderer)
        through = located.predict(rendered.image)
        answers = {"clean": whole.predict(painting), "step": through, "true": at_true_corners(located, rendered)}
        for way in WAYS:
            features[way].append(np.asarray(answers[way]["embedding"], np.float32))
        found.append(through["outline"] is not None)
    np.savez(
        out,
        **{way: np.stack(vectors) for way, vectors in features.items()},
        found=np.asarray(found),
        painter=np.asarray([row.get("author") or "" for row in rows]),
        **{f"y_{head}": truth(rows, head) for head in HEADS},
    )


def held_out(painters: np.ndarray, share: float = HELD_OUT_SHARE, seed: int = 0) -> np.ndarray:
    """A mask of the images of `share` of the painters (whole painters: their images are alike)."""
    names = np.unique(painters)
    chosen = np.random.default_rng(seed).choice(names, max(1, int(len(names) * share)), replace=False)
    return np.isin(painters, chosen)


def fit_map(clean: np.ndarray, photo: np.ndarray, hold: np.ndarray) -> tuple[Ridge, dict]:
    """Ridge regression photo view -> the same image's plain view (`photo`: views x n x d, `clean`: n x d), its
    strength the one with the least error on the `hold` images; refitted on all. Returns it and the errors."""

    def pairs(mask):
        return np.concatenate([view[mask] for view in photo]), np.tile(clean[mask], (len(photo), 1))

    fit_x, fit_y = pairs(~hold)
    check_x, check_y = pairs(hold)
    errors = {"identity": float(((check_x - check_y) ** 2).mean())}
    for alpha in RIDGE_ALPHAS:
        errors[alpha] = float(((Ridge(alpha=alpha).fit(fit_x, fit_y).predict(check_x) - check_y) ** 2).mean())
    alpha = min(RIDGE_ALPHAS, key=errors.get)
    return Ridge(alpha=alpha).fit(*pairs(np.ones_like(hold))), errors


def fit_photo_heads(photo: np.ndarray, targets: dict, hold: np.ndarray) -> tuple[dict, dict]:
    """Per head, logistic regression (class-balanced) on the photo views alone; C the best balanced accuracy on
    the `hold` images, refitted on all. Returns {head: (weights, bias)} as the served heads' shapes, and each
    head's chosen C. A class training never saw gets a bias no answer can reach."""
    heads, chosen = {}, {}
    for head, y in targets.items():
        known = y >= 0
        fit_x, fit_y = _stacked(photo, y, known & ~hold)
        check_x, check_y = _stacked(photo, y, known & hold)
        scores = {
            c: balanced_accuracy_score(check_y, _logistic(c).fit(fit_x, fit_y).predict(check_x)) for c in LOGISTIC_CS
        }
        chosen[head] = max(LOGISTIC_CS, key=scores.get)
        model = _logistic(chosen[head]).fit(*_stacked(photo, y, known))
        classes = len(labels.VOCABULARIES[head])
        weights = np.zeros((photo.shape[-1], classes), np.float32)
        bias = np.full(classes, -1e9, np.float32)
        weights[:, model.classes_], bias[model.classes_] = model.coef_.T, model.intercept_
        heads[head] = (weights, bias)
    return heads, chosen


def _stacked(photo: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every photo view of the `mask` images, with their labels."""
    return np.concatenate([view[mask] for view in photo]), np.tile(y[mask], len(photo))


def _logistic(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight="balanced", max_iter=1000)


def top1(features: np.ndarray, heads: dict) -> dict:
    return {head: (features @ weights + bias).argmax(1) for head, (weights, bias) in heads.items()}


def ways_of(data, served: dict, mapper: Ridge, photo_heads: dict) -> dict[str, dict]:
    """Every way of answering the collected paintings: the served heads on each of `WAYS`, then the two fixes on
    the photo cut-outs (through the step: only where it found a painting; elsewhere the served answer)."""
    found = data["found"]
    answers = {way: top1(data[way], served) for way in WAYS}
    mapped = data["step"].copy()
    if found.any():
        mapped[found] = mapper.predict(data["step"][found])
    answers["step, mapped"] = top1(mapped, served)
    answers["true, mapped"] = top1(mapper.predict(data["true"]), served)
    refitted = top1(data["step"], photo_heads)
    answers["step, photo heads"] = {head: np.where(found, refitted[head], answers["step"][head]) for head in served}
    answers["true, photo heads"] = top1(data["true"], photo_heads)
    return answers


def scores(data, answers: dict) -> dict:
    table = {}
    for way, by_head in answers.items():
        table[way] = {}
        for head, predicted in by_head.items():
            y = data[f"y_{head}"]
            known = y >= 0
            table[way][head] = float(balanced_accuracy_score(y[known], predicted[known]))
    return table


def baselines_of(data) -> dict:
    """Chance and the majority per head, of the collected paintings (`photo_vs_scan.baselines`)."""
    return {head: baselines(data[f"y_{head}"][data[f"y_{head}"] >= 0], head) for head in HEADS}


def markdown(name: str, table: dict, base: dict, found: float) -> str:
    lines = [
        f"**{name}** (the photo step found a painting in {100 * found:.1f} %)",
        "",
        "| answered from | " + " | ".join(HEADS) + " | mean |",
        "| --- |" + " ---: |" * (len(HEADS) + 1),
    ]
    for way, row in table.items():
        values = [100 * row[head] for head in HEADS]
        lines.append(f"| {way} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {np.mean(values):.1f} |")
    lines.append("| chance | " + " | ".join(f"{100 * base[h]['chance']:.1f}" for h in HEADS) + " | |")
    majority = [f"{100 * base[h]['majority_top1']:.1f} ({base[h]['majority']}), top-1" for h in HEADS]
    lines.append("| always the majority | " + " | ".join(majority) + " | |")
    return "\n".join(lines)


def screen(run: Path, files: list[Path], out: Path | None) -> str:
    from artnet.config import from_dict
    from artnet.data.sources import load_sources
    from artnet.serving.export import load_model
    from artnet.training.cache_fit import cache_spec
    from artnet.training.feature_cache import cached_features
    from artnet.workdir import Workdir

    workdir = Workdir(run)
    config = from_dict(json.loads(workdir.config.read_text()))
    model = load_model(workdir.model)
    train = load_sources(config)["train"]
    views = cached_features(train, cache_spec(model, config)).astype(np.float32)  # plain, mirror, photo cut-outs
    if views.shape[0] < 3 or not config.data.augment.photo:
        raise SystemExit(f"{run}: its cache holds no photo views (data.augment.photo and feature_views >= 3)")
    clean, photo = views[0], views[2:]
    hold = held_out(np.asarray([item.get("author") or "" for item in train.meta]))
    mapper, errors = fit_map(clean, photo, hold)
    served = {head: tuple(model.get_layer(head).get_weights()) for head in HEADS}
    targets = {head: np.asarray(train.labels[head]) for head in HEADS}
    photo_heads, chosen = fit_photo_heads(photo, targets, hold)
    report = {"run": str(run), "map_errors": {str(k): v for k, v in errors.items()}, "photo_heads_C": chosen}
    texts = [
        f"Map: ridge alpha {mapper.alpha:g} (held-out painters' mean squared error "
        + ", ".join(f"{k}: {v:.4f}" for k, v in errors.items())
        + "); photo heads' C: "
        + ", ".join(f"{head} {c:g}" for head, c in chosen.items())
        + ". Balanced accuracy, %."
    ]
    for path in files:
        data = np.load(path)
        table = scores(data, ways_of(data, served, mapper, photo_heads))
        base = baselines_of(data)
        texts.append(markdown(path.stem, table, base, float(data["found"].mean())))
        report[path.stem] = {"balanced_accuracy": table, "baselines": base, "paintings": int(len(data["found"]))}
    text = "\n\n".join(texts)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "photo_feature_fixes.md").write_text(text + "\n")
        (out / "photo_feature_fixes.json").write_text(json.dumps(report, indent=1))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect", help="pooled features of clean images and their rendered photos")
    gather.add_argument("--model", required=True, help="an export folder or a .keras file")
    gather.add_argument("--folder", required=True, type=Path, help="a labelled folder (labels.csv + images)")
    gather.add_argument("--split", default="validation", help="the folder's painter split (default: validation)")
    gather.add_argument("--paintings", type=int, default=300)
    gather.add_argument("--renderer", choices=("gallery", "snapshot"), default="gallery")
    gather.add_argument("--out", required=True, type=Path, help="the .npz to write")
    judge = commands.add_parser("screen", help="the served heads and both fixes on collected features")
    judge.add_argument("--run", required=True, type=Path, help="the training workdir (its cache and model)")
    judge.add_argument("--embeddings", required=True, type=Path, nargs="+", help=".npz files from collect")
    judge.add_argument("--out", type=Path, help="folder for photo_feature_fixes.md and .json")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.model, args.folder, args.split, args.paintings, args.renderer, args.out)
    else:
        print(screen(args.run, args.embeddings, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
