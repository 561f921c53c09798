"""From a phone photo's JPEG bytes to the model's input pixels: decode, locate, rectify, resize; on one core.

    python benchmarks/photo_speed.py --runs 15

A 12-megapixel photo (4032 x 3024, JPEG quality 90) of a rendered gallery wall is read from bytes the way serving
reads it (`artnet.data.images.load_photo`: JPEG decoding at a reduced size where the photo is large), the painting
found and rectified (`artnet.data.photo`) and resized to the model's input (`Predictor.fit_pixels`). Beside it, the
same steps with full-size decoding, and the forward pass of an EfficientNet-Lite0 model (random weights: the time
does not depend on them). OpenCV and TensorFlow are held to one thread. Medians (min, max) of `--runs` runs.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artnet.data.images import load_photo  # noqa: E402
from artnet.data.photo import painting_of_photo  # noqa: E402
from artnet.testing.gallery_photo import render_gallery_photo  # noqa: E402


def twelve_megapixel_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    painting = cv2.resize(rng.uniform(0, 255, (24, 18, 3)).astype(np.uint8), (900, 1200), cv2.INTER_CUBIC)
    photo = render_gallery_photo(painting, seed=1, difficulty="easy", long_side=1600).image
    big = cv2.resize(photo, (4032, 3024), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def timed(function, runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times), max(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from artnet.models.artnet import ArtNet
    from artnet.serving.predictor import Predictor

    predictor = Predictor(ArtNet(backbone="efficientnet_lite0", backbone_weights=None))
    data = twelve_megapixel_jpeg()

    def reduced():
        rgb, _ = load_photo(data)
        return predictor.fit_pixels(painting_of_photo(rgb)[0])

    def full_size():
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        return predictor.fit_pixels(painting_of_photo(rgb)[0])

    pixels = reduced()
    forward = predictor._forward  # the compiled serving function: one image
    batch = tf.constant(pixels[np.newaxis])
    rows = {
        "bytes -> input pixels (reduced-size decoding, as served)": timed(reduced, args.runs),
        "bytes -> input pixels (full-size decoding)": timed(full_size, args.runs),
        "decode only, reduced size": timed(lambda: load_photo(data), args.runs),
        "locate + rectify on the decoded photo": timed(lambda: painting_of_photo(load_photo(data)[0]), args.runs),
        "forward pass, EfficientNet-Lite0, one image": timed(lambda: forward(batch), args.runs),
    }
    print(f"12-megapixel JPEG, {len(data) / 2**20:.1f} MiB; one thread; ms over {args.runs} runs\n")
    print("| step | median ms | min | max |\n| --- | ---: | ---: | ---: |")
    for name, (median, low, high) in rows.items():
        print(f"| {name} | {median:.0f} | {low:.0f} | {high:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
