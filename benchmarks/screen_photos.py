"""Photos of screens: false alarms on real images, detection on rendered screen photos, and the time the check adds.

    .venv/bin/python benchmarks/screen_photos.py --out benchmarks/results/screen_photos.json

The photo step (`artnet.data.photo.locate`) adds a sentence to its reason where a photo looks like a photo of a
screen (`artnet.data.screen`). An alarm here is that sentence in `locate(image).reason`, exactly as served.

False alarms, the sets the thresholds were set from (the check must stay under 0.5 % on each): every real WGA
thumbnail of `../shared/wga-sample/art` (1,151), the first `--wikiart` WikiArt images of
`../shared/wikiart-sample/images` (sorted by name), `--gallery` gallery photos rendered at each difficulty
(`artnet.testing.gallery_photo`, easy and hard) of the WikiArt paintings after those, and the 96 real gallery
photos of `../shared/gallery-photos` (Estense frames and NGI walls).

Detection: `--renders` screen photos (`artnet.testing.screen_photo`) of the LAST WikiArt paintings, held out from
all of the above. They are our own renders, not real photos of screens (none were available), so the rate is
optimistic. A second row reads the same renders the way serving reads an upload: JPEG bytes decoded at a reduced
size (`artnet.data.images.load_photo`), which washes the finest grids out.

Time: a 12-megapixel photo (a rendered gallery photo upscaled to 4000 x 3000), `locate` with the check and without
it, interleaved, one OpenCV thread; medians of `--runs` runs. Needs `../shared`.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet.data import screen  # noqa: E402
from artnet.data.images import load_path, load_photo  # noqa: E402
from artnet.data.photo import SCREEN, locate  # noqa: E402
from artnet.testing.gallery_photo import render_gallery_photo  # noqa: E402
from artnet.testing.screen_photo import render_screen_photo  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


class _Tally:
    """Alarms over the images added, and the strongest evidence seen (for the margin to the threshold)."""

    def __init__(self):
        self.alarms, self.prominences = 0, []

    def add(self, rgb: np.ndarray) -> None:
        location = locate(rgb)
        self.alarms += SCREEN in location.reason
        evidence = screen.screen_evidence(rgb, location.corners)
        self.prominences.append(evidence.prominence if evidence is not None else 0.0)

    def figures(self) -> dict:
        n = len(self.prominences)
        return {
            "n": n,
            "alarms": int(self.alarms),
            "rate": self.alarms / n if n else None,
            # The strongest colour-turning peak (screen.screen_evidence; 0 where nothing could be read): how far
            # each set stays below the threshold.
            "prominence_max": float(max(self.prominences)) if n else None,
            "prominence_median": float(statistics.median(self.prominences)) if n else None,
        }


def _read(images) -> dict:
    tally = _Tally()
    for rgb in images:
        tally.add(rgb)
    return tally.figures()


def _as_served(rgb: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return load_photo(buffer.getvalue())[0]


def _timing(runs: int) -> dict:
    rng = np.random.default_rng(0)
    painting = cv2.resize(rng.uniform(0, 255, (24, 18, 3)).astype(np.uint8), (900, 1200), cv2.INTER_CUBIC)
    photo = render_gallery_photo(painting, seed=1, difficulty="easy", long_side=1600).image
    big = cv2.resize(photo, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    with_check, without_check, extra, check_alone = [], [], [], []
    corners = locate(big).corners
    for _ in range(runs):
        times = {}
        for switched_on in (True, False):
            screen.SCREEN_CHECK = switched_on
            start = time.perf_counter()
            locate(big)
            times[switched_on] = 1000 * (time.perf_counter() - start)
        screen.SCREEN_CHECK = True
        start = time.perf_counter()
        screen.screen_evidence(big, corners)
        check_alone.append(1000 * (time.perf_counter() - start))
        with_check.append(times[True])
        without_check.append(times[False])
        extra.append(times[True] - times[False])
    return {
        "photo": "4000x3000",
        "runs": runs,
        "locate_with_check_ms": statistics.median(with_check),
        "locate_without_check_ms": statistics.median(without_check),
        "extra_ms_median_of_pairs": statistics.median(extra),
        "check_alone_ms": statistics.median(check_alone),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wikiart", type=int, default=2400, help="WikiArt images for false alarms (the first)")
    parser.add_argument("--gallery", type=int, default=300, help="gallery photos rendered at each difficulty")
    parser.add_argument("--renders", type=int, default=300, help="screen photos rendered (the last paintings)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if not (SHARED / "wikiart-sample" / "images").is_dir():
        print(f"needs {SHARED} (the real images)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    wikiart = sorted((SHARED / "wikiart-sample" / "images").glob("*.jpg"))
    held_out = wikiart[-args.renders :]
    wikiart, spare = wikiart[: args.wikiart], wikiart[args.wikiart : -args.renders]
    if len(spare) < args.gallery:
        parser.error("not enough WikiArt paintings left for the gallery photos: lower --wikiart or --gallery")
    gallery_paintings = spare[: args.gallery]
    real_photos = sorted((SHARED / "gallery-photos" / "estense" / "photos").glob("*.jpg"))
    real_photos += sorted((SHARED / "gallery-photos" / "ngi" / "gallery").glob("*.jpg"))

    def renders():
        for seed, path in enumerate(held_out):
            yield render_screen_photo(load_path(path), seed=seed).image

    def gallery(difficulty: str):
        for seed, path in enumerate(gallery_paintings):
            yield render_gallery_photo(load_path(path), seed=seed, difficulty=difficulty).image

    wga = sorted((SHARED / "wga-sample").rglob("*.jpg"))
    started = time.perf_counter()
    false_alarms = {
        "WGA thumbnails (real scans)": _read(load_path(path) for path in wga),
        "WikiArt images (real scans)": _read(load_path(path) for path in wikiart),
        "gallery photos rendered, easy": _read(gallery("easy")),
        "gallery photos rendered, hard": _read(gallery("hard")),
        "real gallery photos (Estense, NGI)": _read(load_path(path) for path in real_photos),
    }
    direct, served = _Tally(), _Tally()
    for image in renders():
        direct.add(image)
        served.add(_as_served(image))
    detections = {
        "screen photos rendered (1600x1200)": direct.figures(),
        "the same, as served (JPEG bytes, reduced decoding)": served.figures(),
    }
    timing = _timing(args.runs)
    print(
        f"Screen check: a peak >= {screen.MIN_PROMINENCE} (log power over its ring) whose colour turns >= "
        f"{screen.MIN_TURN}; {time.perf_counter() - started:.0f} s\n"
    )
    print("| set | an alarm is | images | alarms | rate | strongest turning peak: max | median |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, rows in (("a false alarm", false_alarms), ("a detection", detections)):
        for name, row in rows.items():
            print(
                f"| {name} | {kind} | {row['n']} | {row['alarms']} | {100 * row['rate']:.2f} % | "
                f"{row['prominence_max']:.2f} | {row['prominence_median']:.2f} |"
            )
    print(
        f"\n12-megapixel photo ({timing['photo']}), one thread, medians of {timing['runs']} interleaved runs: locate "
        f"{timing['locate_without_check_ms']:.1f} ms without the check, {timing['locate_with_check_ms']:.1f} ms with "
        f"it; extra {timing['extra_ms_median_of_pairs']:.1f} ms (median of the pairs); the check alone "
        f"{timing['check_alone_ms']:.1f} ms"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "command": "python benchmarks/screen_photos.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "thresholds": {"min_prominence": screen.MIN_PROMINENCE, "min_turn": screen.MIN_TURN},
            "false_alarms": false_alarms,
            "detections": detections,
            "timing": timing,
        }
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
